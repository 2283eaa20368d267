//! Recording outcomes: one [`Recorder`] per worker thread (no sharing on the hot path),
//! folded into the shared [`Live`] view every [`FLUSH_EVERY`] for the progress line, and
//! merged into one [`Tally`] at the end.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::scenario::{Kind, Tag};
use super::BenchError;
use crate::latency::{histogram, micros, HistogramError};

/// How often a worker publishes its counts and interval histogram.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A request that got no HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The TCP connection could not be opened.
    Connect,
    /// The connection failed mid-request (reset, protocol error).
    Io,
    /// No answer within `--timeout`.
    Timeout,
    /// Scheduled but never started (open loop: still queued when the run ended).
    Unsent,
}

/// Counts of [`Failure`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Failures {
    pub connect: u64,
    pub io: u64,
    pub timeout: u64,
    pub unsent: u64,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.timeout + self.unsent
    }
    fn add(&mut self, o: &Failures) {
        self.connect += o.connect;
        self.io += o.io;
        self.timeout += o.timeout;
        self.unsent += o.unsent;
    }
}

/// What the progress thread reads while the run goes on.
pub struct Live {
    pub sent: AtomicU64,
    pub completed: AtomicU64,
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    /// Latencies recorded since the progress thread last took them.
    pub interval: Mutex<Histogram<u64>>,
    pub workers_done: AtomicUsize,
}

impl Live {
    pub fn new() -> Result<Live, BenchError> {
        Ok(Live {
            sent: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            interval: Mutex::new(histogram()?),
            workers_done: AtomicUsize::new(0),
        })
    }
}

/// The outcome of a run (or of one worker before merging).
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of every finished request (answered or failed), µs.
    pub latency: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    /// Requests started.
    pub sent: u64,
    /// Requests with an outcome: a status or a failure.
    pub completed: u64,
    pub ok: u64,
    pub errors: u64,
    pub failures: Failures,
    /// Indices into the pre-signed set of submits answered 201, with when each was (meant
    /// to be) sent.
    pub acked: Vec<(u32, Instant)>,
    /// Connections opened during the run (beyond those opened before the start).
    pub connects: u64,
    /// A worker ran out of pre-signed attestations before the duration ended.
    pub exhausted: bool,
    /// When the last request finished.
    pub finished_at: Option<Instant>,
}

impl Tally {
    pub fn new() -> Result<Tally, BenchError> {
        Ok(Tally {
            latency: histogram()?,
            statuses: BTreeMap::new(),
            sent: 0,
            completed: 0,
            ok: 0,
            errors: 0,
            failures: Failures::default(),
            acked: Vec::new(),
            connects: 0,
            exhausted: false,
            finished_at: None,
        })
    }

    pub fn merge(&mut self, o: Tally) -> Result<(), BenchError> {
        self.latency.add(&o.latency).map_err(HistogramError::from)?;
        for (s, n) in o.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.sent += o.sent;
        self.completed += o.completed;
        self.ok += o.ok;
        self.errors += o.errors;
        self.failures.add(&o.failures);
        self.acked.extend(o.acked);
        self.connects += o.connects;
        self.exhausted |= o.exhausted;
        self.finished_at = match (self.finished_at, o.finished_at) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

/// A worker's private recorder.
pub struct Recorder {
    tally: Tally,
    statuses: Vec<u64>,
    interval: Histogram<u64>,
    live: Arc<Live>,
    published: (u64, u64, u64, u64),
    next_flush: Instant,
}

impl Recorder {
    pub fn new(live: Arc<Live>) -> Result<Recorder, BenchError> {
        Ok(Recorder {
            tally: Tally::new()?,
            statuses: vec![0; 1000],
            interval: histogram()?,
            live,
            published: (0, 0, 0, 0),
            next_flush: Instant::now() + FLUSH_EVERY,
        })
    }

    pub fn sent(&mut self) {
        self.tally.sent += 1;
    }

    pub fn connected(&mut self) {
        self.tally.connects += 1;
    }

    pub fn exhausted(&mut self) {
        self.tally.exhausted = true;
    }

    /// An answered request; `now` is when its body was read.
    pub fn response(&mut self, latency: Duration, status: u16, tag: Tag, now: Instant) {
        let us = micros(latency);
        self.tally.latency.saturating_record(us);
        self.interval.saturating_record(us);
        self.tally.completed += 1;
        if let Some(slot) = self.statuses.get_mut(usize::from(status)) {
            *slot += 1;
        }
        if tag.kind.is_success(status) {
            self.tally.ok += 1;
            if let (Kind::AttestationSubmit, Some(i)) = (tag.kind, tag.submit) {
                self.tally
                    .acked
                    .push((i, now.checked_sub(latency).unwrap_or(now)));
            }
        } else {
            self.tally.errors += 1;
        }
        self.tick(now);
    }

    /// A request that got no status; its latency is still recorded, so a timeout or a
    /// request stuck in the queue weighs on the tail as it should.
    pub fn failure(&mut self, latency: Duration, failure: Failure, now: Instant) {
        let us = micros(latency);
        self.tally.latency.saturating_record(us);
        self.interval.saturating_record(us);
        self.tally.completed += 1;
        self.tally.errors += 1;
        let f = &mut self.tally.failures;
        match failure {
            Failure::Connect => f.connect += 1,
            Failure::Io => f.io += 1,
            Failure::Timeout => f.timeout += 1,
            Failure::Unsent => f.unsent += 1,
        }
        self.tick(now);
    }

    fn tick(&mut self, now: Instant) {
        self.tally.finished_at = Some(now);
        if now >= self.next_flush {
            self.flush();
            self.next_flush = now + FLUSH_EVERY;
        }
    }

    /// Publishes counts and the interval histogram to [`Live`].
    pub fn flush(&mut self) {
        let t = &self.tally;
        let (s, c, o, e) = self.published;
        self.live.sent.fetch_add(t.sent - s, Ordering::Relaxed);
        self.live
            .completed
            .fetch_add(t.completed - c, Ordering::Relaxed);
        self.live.ok.fetch_add(t.ok - o, Ordering::Relaxed);
        self.live.errors.fetch_add(t.errors - e, Ordering::Relaxed);
        self.published = (t.sent, t.completed, t.ok, t.errors);
        if let Ok(mut h) = self.live.interval.lock() {
            // Same bounds on both sides, so adding cannot fail.
            let _ = h.add(&self.interval);
        }
        self.interval.reset();
    }

    pub fn finish(mut self) -> Tally {
        self.flush();
        for (status, n) in self.statuses.iter().enumerate() {
            if *n > 0 {
                self.tally.statuses.insert(status as u16, *n);
            }
        }
        self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: Kind, submit: Option<u32>) -> Tag {
        Tag { kind, submit }
    }

    #[test]
    fn counts_statuses_failures_and_acks() {
        let live = Arc::new(Live::new().unwrap());
        let mut r = Recorder::new(live.clone()).unwrap();
        let now = Instant::now();
        r.sent();
        r.response(
            Duration::from_micros(500),
            200,
            tag(Kind::Health, None),
            now,
        );
        r.sent();
        r.response(
            Duration::from_micros(700),
            503,
            tag(Kind::Health, None),
            now,
        );
        r.sent();
        r.response(
            Duration::from_millis(2),
            201,
            tag(Kind::AttestationSubmit, Some(7)),
            now,
        );
        r.failure(Duration::from_secs(10), Failure::Timeout, now);
        let t = r.finish();
        assert_eq!((t.sent, t.completed, t.ok, t.errors), (3, 4, 2, 2));
        assert_eq!(t.statuses.get(&200), Some(&1));
        assert_eq!(t.statuses.get(&503), Some(&1));
        assert_eq!(t.failures.timeout, 1);
        assert_eq!(t.acked.len(), 1);
        assert_eq!(t.acked[0].0, 7);
        assert_eq!(now - t.acked[0].1, Duration::from_millis(2));
        assert_eq!(t.latency.len(), 4);
        // Published to the live view on finish.
        assert_eq!(live.completed.load(Ordering::Relaxed), 4);
        assert_eq!(live.interval.lock().unwrap().len(), 4);
    }

    #[test]
    fn merge_adds_everything() {
        let live = Arc::new(Live::new().unwrap());
        let now = Instant::now();
        let mut a = Recorder::new(live.clone()).unwrap();
        a.response(
            Duration::from_micros(100),
            200,
            tag(Kind::Tipset, None),
            now,
        );
        let mut b = Recorder::new(live).unwrap();
        b.response(
            Duration::from_micros(300),
            200,
            tag(Kind::Tipset, None),
            now,
        );
        b.failure(Duration::from_micros(1), Failure::Connect, now);
        let mut t = a.finish();
        t.merge(b.finish()).unwrap();
        assert_eq!(t.completed, 3);
        assert_eq!(t.statuses.get(&200), Some(&2));
        assert_eq!(t.failures.connect, 1);
        assert_eq!(t.latency.max(), 300);
    }
}
