//! Latency histograms and their percentiles, one way for every tool of this crate.
//!
//! Latencies are recorded in microseconds into an HDR histogram with 3 significant digits,
//! up to one hour (longer ones saturate). A report gives them as [`Percentiles`]: always in
//! milliseconds with 3 decimals (the recorded microseconds, nothing lost), always under a
//! key ending in `_ms`, always with these JSON names:
//!
//! | name    | what                                                  |
//! |---------|-------------------------------------------------------|
//! | `count` | values recorded                                       |
//! | `min`   | the smallest                                          |
//! | `mean`  | their mean                                            |
//! | `p50`   | 50th percentile                                       |
//! | `p95`   | 95th percentile                                       |
//! | `p99`   | 99th percentile                                       |
//! | `p999`  | 99.9th percentile                                     |
//! | `max`   | the largest                                           |
//!
//! Each percentile is the highest value equivalent to the recorded one at 3 significant
//! digits, so it never understates. An empty histogram gives zeros. The gates of
//! `node0 bench` (`p50_ms` ... `p999_ms`) name the same quantiles.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency the histograms resolve: one hour, in microseconds.
pub const MAX_US: u64 = 3_600_000_000;

#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("histogram: {0}")]
    Create(#[from] hdrhistogram::CreationError),
    #[error("histogram: {0}")]
    Add(#[from] hdrhistogram::AdditionError),
}

/// An empty latency histogram (microseconds, 3 significant digits, up to [`MAX_US`]).
pub fn histogram() -> Result<Histogram<u64>, HistogramError> {
    Ok(Histogram::new_with_bounds(1, MAX_US, 3)?)
}

/// A duration in whole microseconds, saturating (the histograms saturate too).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Percentiles of a latency histogram, in milliseconds (see the module docs for the names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram recorded in microseconds; zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| round3(us as f64 / 1000.0);
        Percentiles {
            count: h.len(),
            min: ms(h.min()),
            mean: round3(h.mean() / 1000.0),
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Rounded to 3 decimals: microseconds when the value is in milliseconds.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values_us: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = histogram().expect("histogram");
        for v in values_us {
            h.record(v).expect("in range");
        }
        h
    }

    #[test]
    fn percentiles_are_milliseconds_of_the_recorded_micros() {
        // 1 ms .. 1000 ms, one each.
        let p = Percentiles::of(&hist((1..=1000).map(|ms| ms * 1000)));
        assert_eq!(p.count, 1000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(p.min, 1.0), "min {}", p.min);
        assert!(close(p.p50, 500.0), "p50 {}", p.p50);
        assert!(close(p.p95, 950.0), "p95 {}", p.p95);
        assert!(close(p.p99, 990.0), "p99 {}", p.p99);
        assert!(close(p.p999, 999.0), "p99.9 {}", p.p999);
        assert!(close(p.max, 1000.0), "max {}", p.max);
        assert!(close(p.mean, 500.5), "mean {}", p.mean);
        assert!(
            p.min <= p.p50
                && p.p50 <= p.p95
                && p.p95 <= p.p99
                && p.p99 <= p.p999
                && p.p999 <= p.max
        );
    }

    #[test]
    fn small_values_keep_their_microseconds() {
        // Below 2048 µs the histogram is exact: 980 at 100 µs, 19 at 2 ms, 1 at 50 ms.
        let p = Percentiles::of(&hist(
            std::iter::repeat_n(100, 980)
                .chain(std::iter::repeat_n(2000, 19))
                .chain([50_000]),
        ));
        assert_eq!((p.min, p.p50, p.p95), (0.1, 0.1, 0.1));
        assert_eq!((p.p99, p.p999), (2.0, 2.0));
        // 50 ms is past 2048 µs, so it is stored at 3 significant digits.
        assert!((50.0..50.05).contains(&p.max), "{}", p.max);
    }

    #[test]
    fn a_tail_shows_in_the_high_percentiles_only() {
        // 990 fast values (50 µs) and 10 slow ones (200 ms): p50 and p95 stay fast, p99.9
        // and max see the tail.
        let p = Percentiles::of(&hist(
            std::iter::repeat_n(50, 990).chain(std::iter::repeat_n(200_000, 10)),
        ));
        assert_eq!(p.p50, 0.05);
        assert_eq!(p.p95, 0.05);
        assert!(p.p999 >= 199.0 && p.max >= 199.0, "{p:?}");
    }

    #[test]
    fn an_empty_histogram_reports_zeros() {
        let p = Percentiles::of(&histogram().expect("histogram"));
        assert_eq!(p, Percentiles::default());
        assert_eq!((p.count, p.max), (0, 0.0));
    }

    #[test]
    fn the_json_names_are_the_documented_ones() {
        let v = serde_json::to_value(Percentiles::of(&hist([10, 20, 3000]))).expect("json");
        let names: Vec<&str> = v
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = ["count", "min", "mean", "p50", "p95", "p99", "p999", "max"];
        want.sort_unstable();
        let mut names = names;
        names.sort_unstable();
        assert_eq!(names, want);
        assert_eq!(v["count"], 3);
        assert_eq!(v["min"], 0.01);
    }

    #[test]
    fn durations_become_saturating_micros() {
        assert_eq!(micros(Duration::from_millis(3)), 3000);
        assert_eq!(micros(Duration::MAX), u64::MAX);
        let mut h = histogram().expect("histogram");
        h.saturating_record(micros(Duration::from_secs(7200)));
        assert!(h.max() >= MAX_US, "{}", h.max());
    }
}
