//! Where log lines go: an in-memory buffer that one thread writes out in batches.
//!
//! A request must never wait on stdout, so lines are written by a background thread. A
//! queue with one message per line (tracing-appender's) woke that thread for nearly every
//! line under load: on `/health` its wake-ups and the senders' futex calls were a visible
//! share of the node's CPU (BENCHMARKS.md). Here a line is appended to a shared buffer
//! under a mutex, and the thread is woken only when the buffer goes from empty to
//! non-empty or passes [`WAKE_AT`]; it then waits up to [`GATHER`] for more before writing
//! everything in one `write`. An idle line therefore reaches the output within [`GATHER`].
//!
//! Bounded: past [`CAPACITY`] bytes waiting (the output is stuck), lines are dropped and
//! counted; both numbers are in `/metrics` (`log_buffer_bytes`, `log_lines_dropped_total`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather once the first one arrives.
pub const GATHER: Duration = Duration::from_millis(20);
/// Bytes waiting at which the writer thread is woken without waiting out [`GATHER`].
pub const WAKE_AT: usize = 64 * 1024;
/// Bytes waiting beyond which new lines are dropped.
pub const CAPACITY: usize = 16 * 1024 * 1024;

static BUFFERED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Bytes waiting to be written, and lines dropped since start, over every sink in the
/// process (there is one: the node's log).
pub fn stats() -> (usize, u64) {
    (
        BUFFERED.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
    )
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves whole lines or nothing appended.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `MakeWriter` for `tracing_subscriber::fmt`. Cloning shares the buffer.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it wrote everything appended before.
pub struct LogSinkGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogSink {
    /// A sink writing to `out` from a thread named `log-writer`.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> std::io::Result<(LogSink, LogSinkGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(WAKE_AT)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_out(&shared, out)
            })?;
        Ok((
            LogSink {
                shared: shared.clone(),
            },
            LogSinkGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.shared.lock();
        if pending.len() + line.len() > CAPACITY {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was_empty = pending.is_empty();
        pending.extend_from_slice(line);
        BUFFERED.fetch_add(line.len(), Ordering::Relaxed);
        let wake = was_empty || pending.len() >= WAKE_AT;
        drop(pending);
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

fn write_out<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::with_capacity(WAKE_AT);
    loop {
        let mut pending = shared.lock();
        while pending.is_empty() && !shared.stop.load(Ordering::Acquire) {
            pending = shared.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        if pending.is_empty() {
            return; // stopping, and everything is written
        }
        // Let more lines gather, unless plenty are waiting or we are stopping.
        pending = shared
            .wake
            .wait_timeout_while(pending, GATHER, |p| {
                p.len() < WAKE_AT && !shared.stop.load(Ordering::Acquire)
            })
            .map(|(p, _)| p)
            .unwrap_or_else(|p| p.into_inner().0);
        std::mem::swap(&mut *pending, &mut spare);
        drop(pending);
        BUFFERED.fetch_sub(spare.len(), Ordering::Relaxed);
        // Nowhere to report a failing log output; the lines are lost either way.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        // After a burst (up to CAPACITY) the two buffers would keep their size for good.
        spare.shrink_to(4 * WAKE_AT);
    }
}

impl Drop for LogSinkGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Taking the lock orders the store before the thread's next check.
        drop(self.shared.lock());
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One formatted event: `tracing_subscriber::fmt` writes each event with one
/// `write_all`, so a line is appended whole.
pub struct SinkWriter<'a>(&'a LogSink);

impl Write for SinkWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        SinkWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An output the test can read while the sink owns it.
    #[derive(Clone, Default)]
    struct Output(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Output {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            g.0.extend_from_slice(buf);
            g.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Output {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    #[test]
    fn a_lone_line_reaches_the_output_without_more_lines_or_a_stop() {
        let out = Output::default();
        let (sink, _guard) = LogSink::spawn(out.clone()).unwrap();
        sink.make_writer().write_all(b"one\n").unwrap();
        let start = Instant::now();
        while out.text() != "one\n" {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "line never written"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn many_lines_leave_in_few_writes_and_all_are_written_by_the_stop() {
        let out = Output::default();
        let (sink, guard) = LogSink::spawn(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        let line = format!("t{t} line {i}\n");
                        sink.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let text = out.text();
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            // Each thread's lines whole and in its order.
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            assert_eq!(mine.len(), 5_000);
            assert_eq!(mine[4_999], format!("t{t} line 4999"));
            assert!(mine.windows(2).all(|w| {
                let n = |l: &str| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap();
                n(w[0]) + 1 == n(w[1])
            }));
        }
        assert!(out.writes() < 20_000 / 10, "{} writes", out.writes());
    }

    /// An output whose first write waits until the test lets it go.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Output);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.0;
            let mut go = lock.lock().unwrap();
            while !*go {
                go = cv.wait(go).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_bounds_the_buffer_and_counts_dropped_lines() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Output::default();
        let (sink, guard) = LogSink::spawn(Stuck(gate.clone(), out.clone())).unwrap();
        let dropped_before = stats().1;
        let line = vec![b'x'; 1024 * 1024 - 1]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        for _ in 0..40 {
            sink.make_writer().write_all(&line).unwrap();
        }
        let dropped = stats().1 - dropped_before;
        // 16 MiB waiting at most, plus what the thread took before it got stuck.
        assert!(
            (40 - 16 - 16..=40 - 16).contains(&(dropped as usize)),
            "{dropped}"
        );
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        assert_eq!(out.text().lines().count() as u64, 40 - dropped);
    }
}
