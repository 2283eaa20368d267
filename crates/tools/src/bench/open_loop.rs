//! The open model: request `i` is due at `start + i / rate`, whether or not earlier ones
//! have been answered, and its latency is counted from that intended time. A slow server
//! (or a full in-flight cap) therefore shows up in the tail instead of silently lowering
//! the offered load (coordinated omission).
//!
//! Request `i` belongs to worker `i % workers`. Tokio's timers have millisecond
//! granularity, which alone would add up to 1 ms to every latency; a ticker thread
//! sleeping with the OS's high-resolution timer wakes the workers at the intended times
//! instead.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;

use super::conn::{connect, exchange_within, Sender};
use super::record::{Failure, Recorder, Tally};
use super::scenario::{Kind, Maker, Tag};

/// A constant arrival rate over a fixed number of requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Requests per second.
    pub rate: f64,
    /// Requests in the run: `rate × duration`, rounded.
    pub total: u64,
}

impl Schedule {
    pub fn new(rate: f64, duration: Duration) -> Schedule {
        let total = (rate * duration.as_secs_f64()).round();
        Schedule {
            rate,
            total: if total.is_finite() && total > 0.0 {
                total as u64
            } else {
                0
            },
        }
    }

    /// When request `i` is due, from the start.
    pub fn intended(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * 1e9 / self.rate) as u64)
    }

    /// How many requests are due `elapsed` after the start: the `n` such that requests
    /// `0..n` have `intended(i) <= elapsed` (capped at `total`).
    pub fn due(&self, elapsed: Duration) -> u64 {
        let guess = (elapsed.as_nanos() as f64 * self.rate / 1e9).floor() + 1.0;
        let mut n = if guess.is_finite() && guess > 0.0 {
            (guess as u64).min(self.total)
        } else {
            0
        };
        // The float guess can be off by one at a boundary; `intended` is the reference.
        while n < self.total && self.intended(n) <= elapsed {
            n += 1;
        }
        while n > 0 && self.intended(n - 1) > elapsed {
            n -= 1;
        }
        n
    }

    /// How many requests worker `worker` of `workers` sends.
    pub fn share(&self, worker: usize, workers: usize) -> u64 {
        let (k, t) = (worker as u64, workers.max(1) as u64);
        if self.total > k {
            (self.total - k).div_ceil(t)
        } else {
            0
        }
    }

    /// How many requests of kind `kind` worker `worker` sends when request `i` is of kind
    /// `kind_of(i)` (the pre-signed supply each worker needs).
    pub fn demand(
        &self,
        worker: usize,
        workers: usize,
        kind: Kind,
        kind_of: impl Fn(u64) -> Kind,
    ) -> u64 {
        let t = workers.max(1) as u64;
        (worker as u64..self.total)
            .step_by(t as usize)
            .filter(|i| kind_of(*i) == kind)
            .count() as u64
    }
}

/// Wakes the owner of each request at its intended time; runs on its own OS thread.
pub fn ticker(schedule: Schedule, start: Instant, wakers: &[Arc<Notify>], stop: &AtomicBool) {
    let t = wakers.len().max(1) as u64;
    let mut next = 0;
    while next < schedule.total && !stop.load(Ordering::Relaxed) {
        let at = start + schedule.intended(next);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let due = schedule
            .due(Instant::now().saturating_duration_since(start))
            .max(next + 1);
        if due - next >= t {
            wakers.iter().for_each(|w| w.notify_one());
        } else {
            for i in next..due {
                if let Some(w) = wakers.get((i % t) as usize) {
                    w.notify_one();
                }
            }
        }
        next = due;
    }
}

/// What one open-loop worker needs.
pub struct Plan {
    pub schedule: Schedule,
    pub start: Instant,
    pub worker: usize,
    pub workers: usize,
    /// In-flight requests of this worker at most (each holds a connection).
    pub max_inflight: usize,
    pub timeout: Duration,
    pub addr: SocketAddr,
}

/// New connections being opened at once, per worker, at most. A burst of requests over
/// the idle connections would otherwise open hundreds at once, overflow the server's
/// listen backlog and wait for SYN retransmits (1 s), measuring the storm rather than the
/// server; requests over the limit wait for a connection, their latency still counted
/// from their intended time.
pub const MAX_CONNECTING: usize = 8;

struct Done {
    result: Result<(u16, Sender), Failure>,
    tag: Tag,
    intended: Instant,
    /// The request opened its connection.
    opened: bool,
}

async fn one(
    sender: Option<Sender>,
    addr: SocketAddr,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
    tag: Tag,
    intended: Instant,
    timeout: Duration,
) -> Done {
    let opened = sender.is_none();
    let result = async {
        let mut s = match sender {
            Some(s) => s,
            None => connect(addr, timeout).await?,
        };
        let status = exchange_within(&mut s, req, timeout).await?;
        Ok((status, s))
    }
    .await;
    Done {
        result,
        tag,
        intended,
        opened,
    }
}

/// Runs one worker's share of the schedule; `idle` are connections opened beforehand.
pub async fn run(
    plan: Plan,
    mut maker: Maker,
    mut rec: Recorder,
    mut idle: Vec<Sender>,
    wake: Arc<Notify>,
) -> Tally {
    let Plan {
        schedule,
        start,
        worker,
        workers,
        max_inflight,
        timeout,
        addr,
    } = plan;
    let step = workers.max(1) as u64;
    let mut next = worker as u64;
    let mut backlog: VecDeque<u64> = VecDeque::new();
    let mut inflight = FuturesUnordered::new();
    let mut connecting = 0;
    loop {
        let now = Instant::now();
        let due = schedule.due(now.saturating_duration_since(start));
        while next < due {
            backlog.push_back(next);
            next += step;
        }
        while inflight.len() < max_inflight.max(1) {
            let Some(&i) = backlog.front() else { break };
            let sender = loop {
                match idle.pop() {
                    Some(s) if s.is_closed() => continue,
                    other => break other,
                }
            };
            if sender.is_none() && connecting >= MAX_CONNECTING {
                break;
            }
            backlog.pop_front();
            let intended = start + schedule.intended(i);
            match maker.make(i) {
                Ok((req, tag)) => {
                    rec.sent();
                    if sender.is_none() {
                        connecting += 1;
                        rec.connected();
                    }
                    inflight.push(one(sender, addr, req, tag, intended, timeout));
                }
                Err(_) => {
                    // Cannot happen when the supply was sized from the schedule; counted
                    // rather than hidden if it does.
                    rec.exhausted();
                    rec.failure(
                        now.saturating_duration_since(intended),
                        Failure::Unsent,
                        now,
                    );
                    idle.extend(sender);
                }
            }
        }
        if next >= schedule.total && backlog.is_empty() && inflight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            Some(done) = inflight.next(), if !inflight.is_empty() => {
                let now = Instant::now();
                if done.opened {
                    connecting -= 1;
                }
                let latency = now.saturating_duration_since(done.intended);
                match done.result {
                    Ok((status, sender)) => {
                        rec.response(latency, status, done.tag, now);
                        idle.push(sender);
                    }
                    Err(f) => rec.failure(latency, f, now),
                }
            }
            _ = wake.notified(), if next < schedule.total => {}
        }
    }
    rec.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate() {
        let s = Schedule::new(20_000.0, Duration::from_secs(10));
        assert_eq!(s.total, 200_000);
        assert_eq!(s.intended(0), Duration::ZERO);
        assert_eq!(s.intended(1), Duration::from_micros(50));
        assert_eq!(s.intended(20_000), Duration::from_secs(1));
        assert_eq!(s.intended(199_999), Duration::from_nanos(9_999_950_000));
        let slow = Schedule::new(0.5, Duration::from_secs(10));
        assert_eq!(slow.total, 5);
        assert_eq!(slow.intended(3), Duration::from_secs(6));
    }

    #[test]
    fn due_agrees_with_intended() {
        for rate in [1.0, 3.0, 7.5, 1000.0, 20_000.0, 123_457.0] {
            let s = Schedule::new(rate, Duration::from_secs(2));
            assert_eq!(s.due(Duration::ZERO), s.total.min(1));
            for ns in [
                1u64,
                49_999,
                50_000,
                333_333_333,
                999_999_999,
                1_000_000_000,
            ] {
                let e = Duration::from_nanos(ns);
                let n = s.due(e);
                if n > 0 {
                    assert!(s.intended(n - 1) <= e, "rate {rate} at {e:?}");
                }
                if n < s.total {
                    assert!(s.intended(n) > e, "rate {rate} at {e:?}");
                }
            }
            assert_eq!(s.due(Duration::from_secs(3)), s.total);
        }
    }

    #[test]
    fn shares_cover_the_schedule_once() {
        let s = Schedule::new(1001.0, Duration::from_secs(1));
        for workers in 1..=5 {
            let sum: u64 = (0..workers).map(|w| s.share(w, workers)).sum();
            assert_eq!(sum, s.total);
        }
        assert_eq!(Schedule::new(2.0, Duration::from_secs(1)).share(3, 4), 0);
    }

    #[test]
    fn demand_counts_one_kind() {
        let s = Schedule::new(100.0, Duration::from_secs(1));
        let kind_of = |i: u64| {
            if i.is_multiple_of(20) {
                Kind::AttestationSubmit
            } else {
                Kind::AttestationGet
            }
        };
        let total: u64 = (0..3)
            .map(|w| s.demand(w, 3, Kind::AttestationSubmit, kind_of))
            .sum();
        assert_eq!(total, 5);
        assert_eq!(s.demand(0, 1, Kind::AttestationGet, kind_of), 95);
    }
}
