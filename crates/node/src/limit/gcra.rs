//! GCRA (the generic cell rate algorithm) as pure arithmetic, and the same rule as the
//! Redis script that decides for all replicas in one round trip.
//!
//! A client's state is one number, its theoretical arrival time (TAT): when its bucket
//! would be empty again at the sustained rate. A request is allowed when, charging one
//! more emission interval `T`, the TAT stays within `burst × T` of now.

use std::time::Duration;

use super::Quota;

/// One decision, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    /// The burst: requests a client may make at once.
    pub(crate) limit: u32,
    /// Requests the client may still make now.
    pub(crate) remaining: u32,
    /// Until the client's allowance is whole again.
    pub(crate) reset: Duration,
    /// Until a refused client may try again (zero when allowed).
    pub(crate) retry_after: Duration,
}

impl Decision {
    /// Whole seconds, rounded up, for `Retry-After` (at least 1 when refused).
    pub(crate) fn retry_after_s(&self) -> u64 {
        ceil_s(self.retry_after).max(u64::from(!self.allowed))
    }

    pub(crate) fn reset_s(&self) -> u64 {
        ceil_s(self.reset)
    }
}

fn ceil_s(d: Duration) -> u64 {
    d.as_micros().div_ceil(1_000_000) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Emission interval `T`, in microseconds.
    pub(crate) interval_us: u64,
    pub(crate) burst: u32,
}

impl Gcra {
    pub(crate) fn new(q: Quota) -> Gcra {
        Gcra {
            interval_us: ((1e6 / q.per_second).round() as u64).max(1),
            burst: q.burst.max(1),
        }
    }

    /// The decision at `now_us` for a client whose stored TAT is `tat_us` (none: a new
    /// client), and the TAT to store when allowed: [`SCRIPT`]'s arithmetic in Rust, which
    /// the tests below pin the quota semantics with.
    #[cfg(test)]
    fn decide(&self, tat_us: Option<u64>, now_us: u64) -> (Decision, Option<u64>) {
        let tat = tat_us.unwrap_or(now_us).max(now_us);
        let new_tat = tat + self.interval_us;
        let window = u64::from(self.burst) * self.interval_us;
        let diff = new_tat - now_us;
        if diff > window {
            let d = Decision {
                allowed: false,
                limit: self.burst,
                remaining: 0,
                reset: Duration::from_micros(tat - now_us),
                retry_after: Duration::from_micros(diff - window),
            };
            return (d, None);
        }
        let d = Decision {
            allowed: true,
            limit: self.burst,
            remaining: ((window - diff) / self.interval_us) as u32,
            reset: Duration::from_micros(diff),
            retry_after: Duration::ZERO,
        };
        (d, Some(new_tat))
    }
}

/// The GCRA step (`Gcra::decide` in the tests) inside Redis, on Redis's clock (shared by
/// all replicas). `KEYS[1]`: the client's TAT key; `ARGV[1]`: `T` in µs; `ARGV[2]`: burst.
/// Returns `{allowed, remaining, reset_us, retry_after_us}`. The TAT is written with
/// `%.0f`: Lua's default number format would round microsecond timestamps.
pub(crate) const SCRIPT: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + interval
local window = burst * interval
local diff = new_tat - now
if diff > window then
  return {0, 0, tat - now, diff - window}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(diff / 1000))
return {1, math.floor((window - diff) / interval), diff, 0}
"#;

impl Decision {
    /// From the script's reply.
    pub(crate) fn from_script(g: &Gcra, reply: &[i64]) -> Option<Decision> {
        let [allowed, remaining, reset_us, retry_us] = *reply else {
            return None;
        };
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Some(Decision {
            allowed: allowed == 1,
            limit: g.burst,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: us(reset_us),
            retry_after: us(retry_us),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(per_second: f64, burst: u32) -> Gcra {
        Gcra::new(Quota { per_second, burst })
    }

    /// Runs `n` requests at `now`, threading the TAT through; counts those allowed.
    fn run(g: &Gcra, tat: &mut Option<u64>, now: u64, n: u32) -> u32 {
        let mut ok = 0;
        for _ in 0..n {
            let (d, new) = g.decide(*tat, now);
            if d.allowed {
                ok += 1;
                *tat = new;
            }
        }
        ok
    }

    #[test]
    fn a_new_client_gets_the_burst_then_waits_one_interval() {
        let g = g(10.0, 5);
        assert_eq!(g.interval_us, 100_000);
        let mut tat = None;
        let now = 1_000_000_000;
        let (first, _) = g.decide(tat, now);
        assert_eq!(
            (first.remaining, first.reset),
            (4, Duration::from_millis(100))
        );
        assert_eq!(run(&g, &mut tat, now, 10), 5);
        let (d, none) = g.decide(tat, now);
        assert!(!d.allowed && none.is_none());
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Duration::from_millis(100));
        assert_eq!(d.reset, Duration::from_millis(500));
        assert_eq!((d.retry_after_s(), d.reset_s()), (1, 1));
        // One interval later exactly one more request passes.
        assert_eq!(run(&g, &mut tat, now + 100_000, 3), 1);
        // After the whole window the full burst is back.
        assert_eq!(run(&g, &mut tat, now + 100_000 + 500_000, 10), 5);
    }

    #[test]
    fn sustained_rate_is_the_quota() {
        // 20 per second with a burst of 1: one request every 50 ms, never two.
        let g = g(20.0, 1);
        let mut tat = None;
        let mut allowed = 0;
        for ms in 0..10_000u64 {
            allowed += run(&g, &mut tat, 5_000_000 + ms * 1000, 1);
        }
        assert_eq!(allowed, 200);
    }

    #[test]
    fn remaining_counts_down_and_a_stale_tat_is_ignored() {
        let g = g(1.0, 3);
        let now = 10_000_000;
        let mut tat = Some(1); // long ago
        let mut seen = vec![];
        for _ in 0..4 {
            let (d, new) = g.decide(tat, now);
            seen.push((d.allowed, d.remaining));
            if let Some(n) = new {
                tat = Some(n);
            }
        }
        assert_eq!(seen, [(true, 2), (true, 1), (true, 0), (false, 0)]);
    }

    #[test]
    fn fractional_rates_and_script_replies() {
        let g = g(0.5, 2);
        assert_eq!(g.interval_us, 2_000_000);
        let d = Decision::from_script(&g, &[0, 0, 3_000_000, 1_500_000]).unwrap();
        assert!(!d.allowed);
        assert_eq!((d.retry_after_s(), d.reset_s(), d.limit), (2, 3, 2));
        assert!(Decision::from_script(&g, &[1, 2]).is_none());
    }
}
