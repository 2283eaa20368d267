//! The closed loop, for maximum throughput only: each connection sends its next request as
//! soon as the previous answer is read. Its latencies describe a server at saturation, not
//! what a client at a given load sees (that is the open model's job).
//!
//! The connection loops of a worker are local tasks of its single-threaded runtime,
//! sharing the worker's maker and recorder without locks (tasks of their own did more
//! requests per CPU second than polling them all from one `FuturesUnordered`). Requests
//! carry no timer of their own (a timer per request was a visible share of the
//! generator's CPU): a request still unanswered `timeout` after the end of the run is
//! recorded as a timeout then.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::conn::Inline;
use super::record::{Failure, Recorder, Tally};
use super::scenario::Maker;
use super::BenchError;

/// Pause after a failed connect, so an unreachable target is not hammered in a tight loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// What one closed-loop worker needs.
pub struct Plan {
    pub end: Instant,
    pub worker: usize,
    pub workers: usize,
    pub timeout: Duration,
    pub addr: SocketAddr,
}

struct Shared {
    plan: Plan,
    maker: RefCell<Maker>,
    rec: RefCell<Recorder>,
    seq: Cell<u64>,
    /// When each connection's outstanding request started.
    pending: Vec<Cell<Option<Instant>>>,
}

/// Runs one worker; `conns` are its connections (`None` where the pre-open failed).
pub async fn run(
    plan: Plan,
    maker: Maker,
    rec: Recorder,
    conns: Vec<Option<Inline>>,
) -> Result<Tally, BenchError> {
    let deadline = tokio::time::Instant::from_std(plan.end + plan.timeout);
    let shared = Rc::new(Shared {
        seq: Cell::new(plan.worker as u64),
        plan,
        maker: RefCell::new(maker),
        rec: RefCell::new(rec),
        pending: conns.iter().map(|_| Cell::new(None)).collect(),
    });
    let local = tokio::task::LocalSet::new();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let sh = shared.clone();
            local.spawn_local(async move { connection_loop(&sh, i, c).await })
        })
        .collect();
    let drained = local
        .run_until(tokio::time::timeout_at(deadline, async {
            let mut panicked = false;
            for h in handles {
                panicked |= h.await.is_err();
            }
            panicked
        }))
        .await;
    if drained == Ok(true) {
        return Err(BenchError::WorkerPanicked);
    }
    // Dropping the set drops the tasks still running (past the deadline) and their `Rc`s.
    drop(local);
    let shared = Rc::try_unwrap(shared)
        .map_err(|_| BenchError::Internal("a connection task outlived its worker"))?;
    let mut rec = shared.rec.into_inner();
    if drained.is_err() {
        let now = Instant::now();
        for started in shared.pending.iter().filter_map(Cell::get) {
            rec.failure(
                now.saturating_duration_since(started),
                Failure::Timeout,
                now,
            );
        }
    }
    Ok(rec.finish())
}

async fn connection_loop(sh: &Shared, index: usize, mut conn: Option<Inline>) {
    let Some(pending) = sh.pending.get(index) else {
        return;
    };
    let step = sh.plan.workers.max(1) as u64;
    loop {
        let started = Instant::now();
        if started >= sh.plan.end {
            return;
        }
        let seq = sh.seq.get();
        sh.seq.set(seq + step);
        let made = sh.maker.borrow_mut().make(seq);
        let (req, tag) = match made {
            Ok(x) => x,
            Err(_) => {
                sh.rec.borrow_mut().exhausted();
                return;
            }
        };
        sh.rec.borrow_mut().sent();
        let mut c = match conn.take() {
            Some(c) if c.usable() => c,
            _ => {
                sh.rec.borrow_mut().connected();
                match Inline::connect(sh.plan.addr, sh.plan.timeout).await {
                    Ok(c) => c,
                    Err(f) => {
                        let now = Instant::now();
                        sh.rec.borrow_mut().failure(now - started, f, now);
                        tokio::time::sleep(RECONNECT_PAUSE).await;
                        continue;
                    }
                }
            }
        };
        pending.set(Some(started));
        let result = c.exchange(req).await;
        pending.set(None);
        let now = Instant::now();
        match result {
            Ok(status) => {
                sh.rec
                    .borrow_mut()
                    .response(now - started, status, tag, now);
                conn = Some(c);
            }
            Err(f) => sh.rec.borrow_mut().failure(now - started, f, now),
        }
    }
}
