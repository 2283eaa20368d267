//! The live progress line on stderr, once per second.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::record::Live;

/// One progress line.
pub fn line(
    elapsed: Duration,
    sent: u64,
    ok: u64,
    errors: u64,
    rate: f64,
    p99_us: Option<u64>,
) -> String {
    let p99 = p99_us.map_or_else(
        || "-".to_string(),
        |us| format!("{:.3} ms", us as f64 / 1e3),
    );
    format!(
        "{:>6.1}s  sent {sent:>9}  ok {ok:>9}  errors {errors:>6}  rate {rate:>9.0}/s  p99 {p99}",
        elapsed.as_secs_f64()
    )
}

/// Prints a line every second until `workers` workers are done. The p99 is over every
/// latency recorded so far.
pub fn run(live: Arc<Live>, start: Instant, workers: usize) {
    let tty = std::io::stderr().is_terminal();
    let mut cumulative: Option<Histogram<u64>> = None;
    let mut last = (start, 0u64);
    let mut next = start + Duration::from_secs(1);
    let mut printed = false;
    while live.workers_done.load(Ordering::Acquire) < workers {
        let now = Instant::now();
        if now < next {
            // Short naps, so the line stops promptly when the workers finish.
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += Duration::from_secs(1);
        if let Ok(mut interval) = live.interval.lock() {
            match cumulative.as_mut() {
                // Same bounds on both sides, so adding cannot fail.
                Some(c) => {
                    let _ = c.add(&*interval);
                }
                None => cumulative = Some(interval.clone()),
            }
            interval.reset();
        }
        let completed = live.completed.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64();
        let rate = if dt > 0.0 {
            completed.saturating_sub(last.1) as f64 / dt
        } else {
            0.0
        };
        last = (now, completed);
        let p99 = cumulative
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99));
        let text = line(
            now.duration_since(start),
            live.sent.load(Ordering::Relaxed),
            live.ok.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed),
            rate,
            p99,
        );
        let mut err = std::io::stderr().lock();
        // The progress line is advisory: a closed stderr must not stop the run.
        let _ = if tty {
            write!(err, "\r{text}")
        } else {
            writeln!(err, "{text}")
        };
        let _ = err.flush();
        printed = true;
    }
    if tty && printed {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_every_field() {
        let l = line(
            Duration::from_millis(3_000),
            300_123,
            300_100,
            23,
            99_876.4,
            Some(812),
        );
        assert_eq!(
            l,
            "   3.0s  sent    300123  ok    300100  errors     23  rate     99876/s  p99 0.812 ms"
        );
        assert!(line(Duration::ZERO, 0, 0, 0, 0.0, None).ends_with("p99 -"));
    }
}
