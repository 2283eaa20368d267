//! A circuit breaker per peer validator. Pure logic: no tasks, no timers, no I/O; every
//! method takes the current time, so behaviour is deterministic in tests.
//!
//! Closed, it counts call outcomes in a rolling window held as a fixed ring of time
//! buckets, so memory stays constant however many calls are made. It opens when at
//! least `failure_ratio_bps` of the calls in the window failed and the window holds at
//! least `min_calls`. Open, it rejects calls for `open_for`, then turns half-open and
//! admits at most `half_open_probes` probe calls at a time: `close_after` successful
//! probes close it (with an empty window), one failed probe opens it again.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Buckets in the rolling window; each spans `window / BUCKETS`.
const BUCKETS: usize = 12;

/// Thresholds and durations of a [`Breaker`].
#[derive(Debug, Clone)]
pub(crate) struct BreakerConfig {
    /// Span of the rolling window of counted calls.
    pub(crate) window: Duration,
    /// Fewest calls in the window before the breaker may open.
    pub(crate) min_calls: u32,
    /// Share of failed calls in the window, in basis points, at or above which it opens.
    pub(crate) failure_ratio_bps: u32,
    /// How long it stays open before admitting probes.
    pub(crate) open_for: Duration,
    /// Most probe calls in flight at once while half-open.
    pub(crate) half_open_probes: u32,
    /// Successful probes that close it.
    pub(crate) close_after: u32,
}

impl Default for BreakerConfig {
    /// 50 % of at least 10 calls in 60 s; open 30 s; 3 probes, 3 to close.
    fn default() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(60),
            min_calls: 10,
            failure_ratio_bps: 5000,
            open_for: Duration::from_secs(30),
            half_open_probes: 3,
            close_after: 3,
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are rejected until `open_for` has passed.
    Open,
    /// A few probe calls decide whether to close or open again.
    HalfOpen,
}

impl BreakerState {
    /// The name used in logs, metrics labels and the API.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the state gauge: 0 closed, 1 open, 2 half-open.
    pub(crate) fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// A state change, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    /// The state before.
    pub(crate) from: BreakerState,
    /// The state after.
    pub(crate) to: BreakerState,
}

/// A call refused by the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// How long until the breaker admits a call again; zero when half-open with every
    /// probe slot taken (a slot frees as soon as a probe ends).
    pub(crate) retry_after: Duration,
}

/// Leave to make one call. Pass it back to [`Breaker::record`] with the outcome, or drop
/// it if the call ended without one (cancelled because a quorum was reached elsewhere):
/// that frees its half-open probe slot and counts nothing.
pub(crate) struct Permit {
    inner: Arc<Mutex<Inner>>,
    /// The half-open period this permit is a probe of; `None` for a call made while
    /// closed. Taken when the permit is used, so `Drop` releases a slot at most once.
    probe: Option<u64>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.probe.is_some())
            .finish()
    }
}

impl Permit {
    /// Frees the probe slot this permit holds, if its half-open period is still current.
    fn release(&mut self) {
        if let Some(period) = self.probe.take() {
            lock(&self.inner).release_probe(period);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release();
    }
}

/// A circuit breaker for one peer. Cheap to share behind an `Arc`; all methods take
/// `&self`.
pub(crate) struct Breaker {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("Breaker")
            .field("phase", &inner.phase)
            .finish()
    }
}

/// A poisoned lock only means another thread panicked mid-update; every update leaves
/// the counts consistent enough to keep going, and a breaker must never panic a caller.
fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Index of the time slice this bucket counts, since `Inner::origin`.
    slice: u64,
    calls: u32,
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Which half-open period this is, so permits from an earlier one are ignored.
        period: u64,
        in_flight: u32,
        successes: u32,
    },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: BreakerConfig,
    /// Time slices are counted from here; set by the first call that needs a time.
    origin: Option<Instant>,
    /// The latest time seen, so a caller's earlier `now` cannot rewind the ring.
    latest: Option<Instant>,
    slice_nanos: u64,
    buckets: [Bucket; BUCKETS],
    phase: Phase,
    /// Half-open periods entered so far.
    periods: u64,
}

impl Inner {
    fn new(config: BreakerConfig) -> Inner {
        let slice_nanos = u64::try_from(config.window.as_nanos() / BUCKETS as u128)
            .unwrap_or(u64::MAX)
            .max(1);
        Inner {
            config,
            origin: None,
            latest: None,
            slice_nanos,
            buckets: [Bucket::default(); BUCKETS],
            phase: Phase::Closed,
            periods: 0,
        }
    }

    /// The time slice `now` falls in (never earlier than the latest seen).
    fn slice(&mut self, now: Instant) -> u64 {
        let now = match self.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        self.latest = Some(now);
        let origin = *self.origin.get_or_insert(now);
        let elapsed = now.saturating_duration_since(origin).as_nanos();
        u64::try_from(elapsed / u128::from(self.slice_nanos)).unwrap_or(u64::MAX)
    }

    /// The slice `now` falls in, without remembering `now`.
    fn peek_slice(&self, now: Instant) -> Option<u64> {
        let origin = self.origin?;
        let now = match self.latest {
            Some(latest) if latest > now => latest,
            _ => now,
        };
        let elapsed = now.saturating_duration_since(origin).as_nanos();
        Some(u64::try_from(elapsed / u128::from(self.slice_nanos)).unwrap_or(u64::MAX))
    }

    /// (calls, failures) in the window ending at slice `current`. A bucket counts only
    /// if its slice lies wholly after `current - BUCKETS`, so every counted call is
    /// younger than the window.
    fn counts_at(&self, current: u64) -> (u32, u32) {
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| b.slice >= oldest && b.slice <= current && b.calls > 0)
            .fold((0u32, 0u32), |(c, f), b| {
                (c.saturating_add(b.calls), f.saturating_add(b.failures))
            })
    }

    fn count(&mut self, success: bool, now: Instant) -> u64 {
        let slice = self.slice(now);
        let bucket = &mut self.buckets[(slice % BUCKETS as u64) as usize];
        if bucket.slice != slice {
            // The slot last held a slice that has since left the window.
            *bucket = Bucket {
                slice,
                calls: 0,
                failures: 0,
            };
        }
        bucket.calls = bucket.calls.saturating_add(1);
        if !success {
            bucket.failures = bucket.failures.saturating_add(1);
        }
        slice
    }

    fn should_open(&self, current: u64) -> bool {
        let (calls, failures) = self.counts_at(current);
        calls >= self.config.min_calls.max(1)
            && u64::from(failures) * 10_000
                >= u64::from(calls) * u64::from(self.config.failure_ratio_bps)
    }

    fn open(&mut self, now: Instant) -> Transition {
        let from = self.phase.state();
        self.phase = Phase::Open {
            until: now + self.config.open_for,
        };
        Transition {
            from,
            to: BreakerState::Open,
        }
    }

    fn release_probe(&mut self, period: u64) {
        if let Phase::HalfOpen {
            period: current,
            in_flight,
            ..
        } = &mut self.phase
        {
            if *current == period {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }
}

impl Breaker {
    /// A closed breaker with an empty window.
    pub(crate) fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            inner: Arc::new(Mutex::new(Inner::new(config))),
        }
    }

    /// Asks to make a call now. Closed: always Ok. Open: Err until `open_for` has
    /// passed, then the breaker turns half-open (and reports that transition).
    /// HalfOpen: Ok while fewer than `half_open_probes` probes are in flight.
    pub(crate) fn try_acquire(
        &self,
        now: Instant,
    ) -> (Result<Permit, Rejected>, Option<Transition>) {
        let mut inner = lock(&self.inner);
        let mut transition = None;
        let probe = match inner.phase {
            Phase::Closed => None,
            Phase::Open { until } if now < until => {
                let rejected = Rejected {
                    retry_after: until - now,
                };
                return (Err(rejected), None);
            }
            Phase::Open { .. } => {
                inner.periods += 1;
                let period = inner.periods;
                inner.phase = Phase::HalfOpen {
                    period,
                    in_flight: 1,
                    successes: 0,
                };
                transition = Some(Transition {
                    from: BreakerState::Open,
                    to: BreakerState::HalfOpen,
                });
                Some(period)
            }
            Phase::HalfOpen {
                period,
                in_flight,
                successes,
            } => {
                // At least one probe, or a half-open breaker could never close.
                if in_flight >= inner.config.half_open_probes.max(1) {
                    let rejected = Rejected {
                        retry_after: Duration::ZERO,
                    };
                    return (Err(rejected), None);
                }
                inner.phase = Phase::HalfOpen {
                    period,
                    in_flight: in_flight + 1,
                    successes,
                };
                Some(period)
            }
        };
        drop(inner);
        let permit = Permit {
            inner: Arc::clone(&self.inner),
            probe,
        };
        (Ok(permit), transition)
    }

    /// [`Breaker::try_acquire`], except that an open breaker turns half-open now: a
    /// probe asked for because the peers with closed breakers cannot make a quorum, or
    /// the liveness probe, so that a peer that came back counts within a slot and not
    /// after `open_for`. Half-open still admits at most `half_open_probes` at once.
    pub(crate) fn try_acquire_probe(
        &self,
        now: Instant,
    ) -> (Result<Permit, Rejected>, Option<Transition>) {
        {
            let mut inner = lock(&self.inner);
            if let Phase::Open { until } = inner.phase {
                if now < until {
                    inner.phase = Phase::Open { until: now };
                }
            }
        }
        self.try_acquire(now)
    }

    /// The outcome of a permitted call. Every outcome is counted in the window; a
    /// probe's outcome also decides the half-open breaker. The permit must come from
    /// this breaker; one from another breaker only has its probe slot released there.
    pub(crate) fn record(
        &self,
        mut permit: Permit,
        success: bool,
        now: Instant,
    ) -> Option<Transition> {
        let probe = if Arc::ptr_eq(&permit.inner, &self.inner) {
            permit.probe.take()
        } else {
            permit.release();
            None
        };
        drop(permit);
        let mut inner = lock(&self.inner);
        let slice = inner.count(success, now);
        match (inner.phase, probe) {
            (Phase::Closed, _) => {
                if inner.should_open(slice) {
                    return Some(inner.open(now));
                }
                None
            }
            (
                Phase::HalfOpen {
                    period,
                    in_flight,
                    successes,
                },
                Some(probe_period),
            ) if period == probe_period => {
                if !success {
                    return Some(inner.open(now));
                }
                let successes = successes + 1;
                if successes >= inner.config.close_after {
                    inner.phase = Phase::Closed;
                    // Failures from before the outage must not reopen it at once.
                    inner.buckets = [Bucket::default(); BUCKETS];
                    return Some(Transition {
                        from: BreakerState::HalfOpen,
                        to: BreakerState::Closed,
                    });
                }
                inner.phase = Phase::HalfOpen {
                    period,
                    in_flight: in_flight.saturating_sub(1),
                    successes,
                };
                None
            }
            // A call admitted before the breaker last changed: counted, decides nothing.
            _ => None,
        }
    }

    /// The state at `now`: half-open once `open_for` has passed, without changing it.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match lock(&self.inner).phase {
            Phase::Open { until } if now >= until => BreakerState::HalfOpen,
            phase => phase.state(),
        }
    }

    /// (calls, failures) in the window at `now`, for `/api/p2p/peers`.
    pub(crate) fn window_counts(&self, now: Instant) -> (u32, u32) {
        let inner = lock(&self.inner);
        match inner.peek_slice(now) {
            Some(slice) => inner.counts_at(slice),
            None => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Makes a call at `now` and records its outcome; panics if it was rejected.
    fn call(b: &Breaker, success: bool, now: Instant) -> Option<Transition> {
        let (permit, _) = b.try_acquire(now);
        let permit = permit.expect("call admitted");
        b.record(permit, success, now)
    }

    /// A breaker opened at `t0 + 1 s` by ten failures.
    fn opened(t0: Instant) -> Breaker {
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..10 {
            call(&b, false, t0 + secs(1));
        }
        assert_eq!(b.state(t0 + secs(1)), BreakerState::Open);
        b
    }

    #[test]
    fn state_names_and_gauges() {
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::Open.as_str(), "open");
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
        assert_eq!(BreakerState::Closed.gauge(), 0);
        assert_eq!(BreakerState::Open.gauge(), 1);
        assert_eq!(BreakerState::HalfOpen.gauge(), 2);
    }

    #[test]
    fn opens_at_five_failures_of_ten() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerConfig::default());
        for i in 0..5 {
            assert_eq!(call(&b, true, t0 + secs(i)), None);
        }
        for i in 5..9 {
            assert_eq!(call(&b, false, t0 + secs(i)), None);
        }
        assert_eq!(b.window_counts(t0 + secs(9)), (9, 4));
        let t = call(&b, false, t0 + secs(9));
        assert_eq!(
            t,
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        assert_eq!(b.state(t0 + secs(9)), BreakerState::Open);
    }

    #[test]
    fn stays_closed_at_four_failures_of_ten() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerConfig::default());
        for i in 0..4 {
            assert_eq!(call(&b, false, t0 + secs(i)), None);
        }
        for i in 4..10 {
            assert_eq!(call(&b, true, t0 + secs(i)), None);
        }
        assert_eq!(b.window_counts(t0 + secs(10)), (10, 4));
        assert_eq!(b.state(t0 + secs(10)), BreakerState::Closed);
    }

    #[test]
    fn stays_closed_below_min_calls() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerConfig::default());
        for i in 0..9 {
            assert_eq!(call(&b, false, t0 + secs(i)), None);
        }
        assert_eq!(b.window_counts(t0 + secs(9)), (9, 9));
        assert_eq!(b.state(t0 + secs(9)), BreakerState::Closed);
    }

    #[test]
    fn old_failures_slide_out_of_the_window() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..9 {
            call(&b, false, t0);
        }
        assert_eq!(b.window_counts(t0 + secs(59)), (9, 9));
        // 61 s later those nine are gone, so one more failure is 1 of 1, not 10 of 10.
        assert_eq!(b.window_counts(t0 + secs(61)), (0, 0));
        assert_eq!(call(&b, false, t0 + secs(61)), None);
        assert_eq!(b.window_counts(t0 + secs(61)), (1, 1));
        assert_eq!(b.state(t0 + secs(61)), BreakerState::Closed);
    }

    #[test]
    fn open_rejects_with_retry_after() {
        let t0 = Instant::now();
        let b = opened(t0);
        let (r, t) = b.try_acquire(t0 + secs(11));
        assert_eq!(r.unwrap_err().retry_after, secs(20));
        assert_eq!(t, None);
        let (r, _) = b.try_acquire(t0 + Duration::from_millis(30_999));
        assert_eq!(r.unwrap_err().retry_after, Duration::from_millis(1));
        assert_eq!(b.state(t0 + secs(30)), BreakerState::Open);
        assert_eq!(b.state(t0 + secs(31)), BreakerState::HalfOpen);
    }

    #[test]
    fn half_open_admits_at_most_three_probes() {
        let t0 = Instant::now();
        let b = opened(t0);
        let now = t0 + secs(31);
        let (p1, t) = b.try_acquire(now);
        assert_eq!(
            t,
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen
            })
        );
        let (p2, t2) = b.try_acquire(now);
        let (p3, _) = b.try_acquire(now);
        assert_eq!(t2, None);
        let (p4, t4) = b.try_acquire(now);
        assert!(p1.is_ok() && p2.is_ok() && p3.is_ok());
        assert_eq!(p4.unwrap_err().retry_after, Duration::ZERO);
        assert_eq!(t4, None);
        assert_eq!(b.state(now), BreakerState::HalfOpen);
    }

    #[test]
    fn three_successful_probes_close_it() {
        let t0 = Instant::now();
        let b = opened(t0);
        let now = t0 + secs(31);
        let permits: Vec<Permit> = (0..3)
            .map(|_| b.try_acquire(now).0.expect("probe"))
            .collect();
        let mut transitions = Vec::new();
        for p in permits {
            transitions.push(b.record(p, true, now));
        }
        assert_eq!(transitions[0], None);
        assert_eq!(transitions[1], None);
        assert_eq!(
            transitions[2],
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Closed
            })
        );
        assert_eq!(b.state(now), BreakerState::Closed);
        // The window was cleared: the ten failures no longer count.
        assert_eq!(b.window_counts(now), (0, 0));
        assert_eq!(call(&b, false, now), None);
        assert_eq!(b.state(now), BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens_it() {
        let t0 = Instant::now();
        let b = opened(t0);
        let now = t0 + secs(31);
        let p1 = b.try_acquire(now).0.expect("probe");
        let p2 = b.try_acquire(now).0.expect("probe");
        assert_eq!(b.record(p1, true, now), None);
        assert_eq!(
            b.record(p2, false, now + secs(1)),
            Some(Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open
            })
        );
        let (r, _) = b.try_acquire(now + secs(2));
        assert_eq!(r.unwrap_err().retry_after, secs(29));
        assert_eq!(b.state(now + secs(31)), BreakerState::HalfOpen);
    }

    #[test]
    fn a_dropped_permit_frees_its_probe_slot_and_counts_nothing() {
        let t0 = Instant::now();
        let b = opened(t0);
        let now = t0 + secs(31);
        let p1 = b.try_acquire(now).0.expect("probe");
        let p2 = b.try_acquire(now).0.expect("probe");
        let p3 = b.try_acquire(now).0.expect("probe");
        assert!(b.try_acquire(now).0.is_err());

        drop(p1);
        let p4 = b.try_acquire(now).0.expect("slot freed by the drop");
        assert!(b.try_acquire(now).0.is_err());

        drop(p2);
        let p5 = b.try_acquire(now).0.expect("slot freed by drop");
        assert!(b.try_acquire(now).0.is_err());

        // Dropped calls count nothing.
        let before = b.window_counts(now);
        drop(p3);
        drop(p4);
        assert_eq!(b.window_counts(now), before);
        drop(p5);
        assert_eq!(b.state(now), BreakerState::HalfOpen);
    }

    #[test]
    fn stale_probe_does_not_touch_a_later_half_open_period() {
        let t0 = Instant::now();
        let b = opened(t0);
        let now = t0 + secs(31);
        let stale = b.try_acquire(now).0.expect("probe");
        let fail = b.try_acquire(now).0.expect("probe");
        assert!(b.record(fail, false, now).is_some());
        let later = now + secs(31);
        let permits: Vec<Permit> = (0..3)
            .map(|_| b.try_acquire(later).0.expect("probe"))
            .collect();
        // Releasing a probe of the earlier period must not free a slot in this one.
        drop(stale);
        assert!(b.try_acquire(later).0.is_err());
        drop(permits);
    }

    #[test]
    fn a_million_calls_keep_memory_constant() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerConfig::default());
        let size = std::mem::size_of::<Inner>();
        for i in 0..1_000_000u64 {
            // Spread over 200 s so the ring wraps many times; one in three fails.
            let now = t0 + Duration::from_micros(i * 200);
            let permit = b.try_acquire(now).0.expect("closed");
            b.record(permit, i % 3 != 0, now);
        }
        let inner = lock(&b.inner);
        assert_eq!(inner.buckets.len(), BUCKETS);
        assert_eq!(std::mem::size_of_val(&*inner), size);
        drop(inner);
        let (calls, failures) = b.window_counts(t0 + secs(200));
        // At most one window's worth of the 5000 calls a second.
        assert!(calls <= 300_000, "{calls}");
        assert!(calls >= 275_000, "{calls}");
        assert!(failures < calls / 2);
        assert_eq!(Arc::strong_count(&b.inner), 1);
    }

    #[test]
    fn poisoned_lock_does_not_panic() {
        let b = Arc::new(Breaker::new(BreakerConfig::default()));
        let b2 = Arc::clone(&b);
        let _ = std::thread::spawn(move || {
            let _guard = b2.inner.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(b.inner.is_poisoned());
        let now = Instant::now();
        assert_eq!(call(&b, true, now), None);
        assert_eq!(b.window_counts(now), (1, 0));
    }

    proptest! {
        /// For random call sequences: the breaker only opens from closed with at least
        /// `min_calls` in the window, and the window never counts more calls than were
        /// made within the last `window` (nor fewer than in the last `window` minus one
        /// bucket).
        #[test]
        fn window_and_opening_match_a_model(
            steps in proptest::collection::vec((0u64..8_000, any::<bool>()), 1..300)
        ) {
            let config = BreakerConfig::default();
            let bucket = config.window / BUCKETS as u32;
            let b = Breaker::new(config.clone());
            let t0 = Instant::now();
            let mut now = t0;
            // Calls counted since the window was last cleared: (time, success).
            let mut made: Vec<(Instant, bool)> = Vec::new();
            for (advance_ms, success) in steps {
                now += Duration::from_millis(advance_ms);
                let (permit, _) = b.try_acquire(now);
                let Ok(permit) = permit else { continue };
                made.push((now, success));
                let transition = b.record(permit, success, now);
                if let Some(Transition { to: BreakerState::Closed, .. }) = transition {
                    // Closing clears the window.
                    made.clear();
                }

                let in_window = made
                    .iter()
                    .filter(|(t, _)| now.duration_since(*t) < config.window)
                    .count() as u32;
                let surely_in = made
                    .iter()
                    .filter(|(t, _)| now.duration_since(*t) < config.window - bucket)
                    .count() as u32;
                let (calls, failures) = b.window_counts(now);
                prop_assert!(calls <= in_window, "{calls} > {in_window}");
                prop_assert!(calls >= surely_in, "{calls} < {surely_in}");
                prop_assert!(failures <= calls);

                if let Some(Transition { from: BreakerState::Closed, to: BreakerState::Open }) =
                    transition
                {
                    prop_assert!(calls >= config.min_calls, "opened with {calls} calls");
                    prop_assert!(u64::from(failures) * 10_000
                        >= u64::from(calls) * u64::from(config.failure_ratio_bps));
                }
                if transition.is_none() && b.state(now) == BreakerState::Closed {
                    // Closed and unchanged: the failure ratio must be below the threshold
                    // or the window too small.
                    prop_assert!(calls < config.min_calls
                        || u64::from(failures) * 10_000
                            < u64::from(calls) * u64::from(config.failure_ratio_bps));
                }
            }
        }
    }
}
