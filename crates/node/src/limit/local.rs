//! The in-process limiter: one keyed GCRA (`governor`) per route class. It decides alone
//! without Redis, and alongside Redis it is charged too, so that it is warm when Redis
//! fails and the node takes over with each client's recent use already counted.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::RateLimiter;

use super::gcra::{Decision, Gcra};

type Keyed =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// Most client keys held per class. Stale keys are swept every [`SWEEP_EVERY`]; if more
/// distinct clients than this were active within one window, the class starts afresh
/// (everyone gets a new allowance) rather than let memory grow without bound.
pub(crate) const MAX_KEYS: usize = 100_000;
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct LocalClass {
    gcra: Gcra,
    quota: governor::Quota,
    limiter: ArcSwap<Keyed>,
}

impl LocalClass {
    pub(crate) fn new(gcra: Gcra) -> LocalClass {
        let burst = NonZeroU32::new(gcra.burst).unwrap_or(NonZeroU32::MIN);
        let quota = governor::Quota::with_period(Duration::from_micros(gcra.interval_us))
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        LocalClass {
            gcra,
            quota,
            limiter: ArcSwap::from_pointee(Self::fresh(quota)),
        }
    }

    fn fresh(quota: governor::Quota) -> Keyed {
        RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
    }

    pub(crate) fn check(&self, key: &IpAddr) -> Decision {
        let limiter = self.limiter.load();
        match limiter.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: self.gcra.burst,
                    remaining,
                    // Each used cell comes back after one interval.
                    reset: Duration::from_micros(
                        u64::from(self.gcra.burst - remaining.min(self.gcra.burst))
                            * self.gcra.interval_us,
                    ),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(limiter.clock().now());
                Decision {
                    allowed: false,
                    limit: self.gcra.burst,
                    remaining: 0,
                    reset: Duration::from_micros(
                        u64::from(self.gcra.burst - 1) * self.gcra.interval_us,
                    ) + wait,
                    retry_after: wait,
                }
            }
        }
    }

    /// Drops keys whose allowance is whole again; enforces [`MAX_KEYS`]. Returns the
    /// number of keys held.
    pub(crate) fn sweep(&self) -> usize {
        let limiter = self.limiter.load();
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let n = limiter.len();
        if n > MAX_KEYS {
            tracing::warn!(
                keys = n,
                max = MAX_KEYS,
                "local rate limiter holds too many clients; starting afresh"
            );
            self.limiter.store(Arc::new(Self::fresh(self.quota)));
            return 0;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Quota;

    #[test]
    fn agrees_with_the_gcra_model_on_a_burst() {
        let c = LocalClass::new(Gcra::new(Quota {
            per_second: 1.0,
            burst: 3,
        }));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let seen: Vec<(bool, u32)> = (0..4)
            .map(|_| {
                let d = c.check(&a);
                (d.allowed, d.remaining)
            })
            .collect();
        assert_eq!(seen, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let refused = c.check(&a);
        assert!(refused.retry_after > Duration::from_millis(900));
        assert_eq!(refused.retry_after_s(), 1);
        // Another client has its own allowance.
        assert!(c.check(&b).allowed);
        assert_eq!(c.sweep(), 2, "both keys are still recent");
    }

    #[test]
    fn memory_stays_bounded() {
        // Keys whose allowance is whole again are swept.
        let fast = LocalClass::new(Gcra::new(Quota {
            per_second: 1e6,
            burst: 1,
        }));
        for i in 0..100u8 {
            fast.check(&IpAddr::from([10, 0, 0, i]));
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(fast.sweep(), 0);

        // Past MAX_KEYS recent clients the class starts afresh.
        let slow = LocalClass::new(Gcra::new(Quota {
            per_second: 1.0,
            burst: 1,
        }));
        let first = IpAddr::from([192, 0, 2, 1]);
        assert!(slow.check(&first).allowed);
        assert!(!slow.check(&first).allowed);
        for i in 0..MAX_KEYS as u32 {
            slow.check(&IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        }
        assert_eq!(slow.sweep(), 0);
        assert!(
            slow.check(&first).allowed,
            "a fresh allowance after the reset"
        );
    }
}
