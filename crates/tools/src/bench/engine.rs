//! Worker threads: each is an OS thread with its own single-threaded tokio runtime that
//! owns its share of the connections (as wrk does), so the hot path has no work stealing,
//! no cross-thread wake-ups and no locks. Connections are opened before the clock starts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::conn::{connect, Inline, Sender};
use super::record::{Live, Recorder, Tally};
use super::scenario::{Maker, Workload};
use super::{closed_loop, open_loop, progress, BenchError};

/// How the load is offered.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    Open {
        schedule: open_loop::Schedule,
        /// In-flight cap over all workers.
        max_inflight: usize,
    },
    Closed {
        duration: Duration,
    },
}

/// Everything a run needs.
pub struct Plan {
    pub load: Load,
    pub addr: SocketAddr,
    /// Connections opened before the start (closed loop: exactly these).
    pub connections: usize,
    pub threads: usize,
    pub timeout: Duration,
    pub work: Arc<Workload>,
    /// Each worker's range of pre-signed bodies in `work.submit`.
    pub submit_slices: Vec<(usize, usize)>,
    pub progress: bool,
}

/// The merged outcome and when the clock started.
pub struct Outcome {
    pub tally: Tally,
    pub start: Instant,
    pub elapsed: Duration,
}

/// `n` split over `parts` as evenly as possible; part `k`'s size.
pub fn split(n: usize, parts: usize, k: usize) -> usize {
    let parts = parts.max(1);
    n / parts + usize::from(k < n % parts)
}

/// Runs the plan on `plan.threads` worker threads and blocks until all are done.
pub fn run(plan: Plan) -> Result<Outcome, BenchError> {
    let threads = plan.threads.max(1);
    let live = Arc::new(Live::new()?);
    let ready = Arc::new(Barrier::new(threads + 1));
    let start_at = Arc::new(OnceLock::<Instant>::new());
    let go = Arc::new(Barrier::new(threads + 1));
    let wakers: Vec<Arc<Notify>> = (0..threads).map(|_| Arc::new(Notify::new())).collect();
    let plan = Arc::new(plan);

    let mut handles = Vec::with_capacity(threads);
    for (k, wake) in wakers.iter().enumerate() {
        let (plan, live, ready, go, start_at, wake) = (
            plan.clone(),
            live.clone(),
            ready.clone(),
            go.clone(),
            start_at.clone(),
            wake.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("bench-{k}"))
            .spawn(move || worker(k, threads, &plan, live, &ready, &go, &start_at, wake))
            .map_err(BenchError::Runtime)?;
        handles.push(h);
    }

    ready.wait();
    let start = Instant::now();
    let _ = start_at.set(start);
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = match plan.load {
        Load::Open { schedule, .. } => {
            let (wakers, stop) = (wakers.clone(), stop.clone());
            Some(
                std::thread::Builder::new()
                    .name("bench-ticker".into())
                    .spawn(move || open_loop::ticker(schedule, start, &wakers, &stop))
                    .map_err(BenchError::Runtime)?,
            )
        }
        Load::Closed { .. } => None,
    };
    let printer = if plan.progress {
        let live = live.clone();
        Some(
            std::thread::Builder::new()
                .name("bench-progress".into())
                .spawn(move || progress::run(live, start, threads))
                .map_err(BenchError::Runtime)?,
        )
    } else {
        None
    };
    go.wait();

    let mut tally = Tally::new()?;
    let mut first_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => tally.merge(t)?,
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => first_error = first_error.or(Some(BenchError::WorkerPanicked)),
        }
    }
    stop.store(true, Ordering::Relaxed);
    // A failed worker must still release the progress thread.
    live.workers_done.store(threads, Ordering::Release);
    for t in ticker.into_iter().chain(printer) {
        let _ = t.join();
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = tally
        .finished_at
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(start));
    Ok(Outcome {
        tally,
        start,
        elapsed,
    })
}

#[allow(clippy::too_many_arguments)]
fn worker(
    k: usize,
    threads: usize,
    plan: &Plan,
    live: Arc<Live>,
    ready: &Barrier,
    go: &Barrier,
    start_at: &OnceLock<Instant>,
    wake: Arc<Notify>,
) -> Result<Tally, BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    // Whatever happens, pass both barriers: the coordinator waits on them.
    let prepared = rt.map_err(BenchError::Runtime).and_then(|rt| {
        let n = split(plan.connections, threads, k);
        let (addr, timeout) = (plan.addr, plan.timeout);
        let conns = match plan.load {
            Load::Open { .. } => Conns::Driven(rt.block_on(open_all(n, || connect(addr, timeout)))),
            Load::Closed { .. } => {
                Conns::Inline(rt.block_on(open_all(n, || Inline::connect(addr, timeout))))
            }
        };
        let rec = Recorder::new(live.clone())?;
        Ok((rt, conns, rec))
    });
    ready.wait();
    go.wait();
    let (rt, conns, rec) = prepared?;
    let start = start_at.get().copied().unwrap_or_else(Instant::now);
    let slice = plan.submit_slices.get(k).copied().unwrap_or((0, 0));
    let maker = Maker::new(plan.work.clone(), k, threads, slice);
    let tally = match (plan.load, conns) {
        (
            Load::Open {
                schedule,
                max_inflight,
            },
            Conns::Driven(conns),
        ) => {
            let p = open_loop::Plan {
                schedule,
                start,
                worker: k,
                workers: threads,
                max_inflight: split(max_inflight, threads, k).max(1),
                timeout: plan.timeout,
                addr: plan.addr,
            };
            let idle = conns.into_iter().flatten().collect();
            rt.block_on(open_loop::run(p, maker, rec, idle, wake))
        }
        (Load::Closed { duration }, Conns::Inline(conns)) => {
            let p = closed_loop::Plan {
                end: start + duration,
                worker: k,
                workers: threads,
                timeout: plan.timeout,
                addr: plan.addr,
            };
            rt.block_on(closed_loop::run(p, maker, rec, conns))?
        }
        // Opened above to match the load.
        _ => rec.finish(),
    };
    live.workers_done.fetch_add(1, Ordering::Release);
    Ok(tally)
}

/// Connections of the open loop (driver tasks of their own, so an idle connection notices
/// a close) or of the closed loop (driven inline).
enum Conns {
    Driven(Vec<Option<Sender>>),
    Inline(Vec<Option<Inline>>),
}

/// Opens `n` connections concurrently; `None` where opening failed.
async fn open_all<C, F>(n: usize, open: impl Fn() -> F) -> Vec<Option<C>>
where
    F: std::future::Future<Output = Result<C, super::record::Failure>>,
{
    let opening: futures::stream::FuturesOrdered<_> =
        (0..n).map(|_| async { open().await.ok() }).collect();
    futures::StreamExt::collect(opening).await
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn split_is_even_and_complete() {
        assert_eq!(
            (0..3).map(|k| split(64, 3, k)).collect::<Vec<_>>(),
            [22, 21, 21]
        );
        assert_eq!((0..4).map(|k| split(2, 4, k)).sum::<usize>(), 2);
        assert_eq!(split(5, 0, 0), 5);
    }
}
