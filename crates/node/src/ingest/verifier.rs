//! Batch signature verification for concurrent submissions: requests queue their
//! (key, signature, message); one task takes everything queued (up to `max_batch`) as soon
//! as a verification slot is free, checks the batch on the blocking pool, and answers each
//! request. What arrives while every slot is busy waits for the next batch, so batches
//! grow with the load and no request waits on a timer. (A gathering window of up to 2 ms
//! cost closed-loop submission throughput: BENCHMARKS.md, decision log.)
//!
//! A batch of 64 costs about half as much per signature as single checks (BENCHMARKS.md),
//! and verdicts are the same either way (ZIP-215, see `bizra_ledger::crypto`).

use std::sync::Arc;

use bizra_ledger::crypto::{verify_batch, BatchItem};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Overloaded;
use crate::metrics::Metrics;

type Job = (BatchItem, oneshot::Sender<bool>);

#[derive(Debug, Clone, Copy)]
pub(crate) struct VerifierConfig {
    pub(crate) max_batch: usize,
    pub(crate) queue: usize,
    /// Batches verified at the same time (one per core leaves the reactor responsive).
    pub(crate) parallel: usize,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            max_batch: 64,
            queue: 16_384,
            parallel: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub(crate) struct Verifier {
    tx: mpsc::Sender<Job>,
}

impl Verifier {
    /// Starts the gathering task. It ends when every handle is dropped.
    pub(crate) fn start(config: VerifierConfig, metrics: Arc<Metrics>) -> Verifier {
        let (tx, rx) = mpsc::channel(config.queue);
        tokio::spawn(gather(rx, config, metrics));
        Verifier { tx }
    }

    /// Verifies one signature as part of whatever batch is forming.
    pub(crate) async fn verify(&self, item: BatchItem) -> Result<bool, Overloaded> {
        super::ask(&self.tx, item, "signature").await
    }

    /// Items waiting to be gathered.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn gather(mut rx: mpsc::Receiver<Job>, config: VerifierConfig, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(config.parallel.max(1)));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let mut jobs = Vec::with_capacity(config.max_batch);
        jobs.push(first);
        while jobs.len() < config.max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics.signature_batch_size.observe(jobs.len() as f64);
        tokio::spawn(async move {
            let (items, replies): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
            let verdicts = tokio::task::spawn_blocking(move || verify_batch(&items)).await;
            drop(permit);
            match verdicts {
                Ok(v) => {
                    for (reply, ok) in replies.into_iter().zip(v) {
                        let _ = reply.send(ok);
                    }
                }
                // The verifier panicked: dropping the senders answers each request with
                // `Stopped`, a 503, and nothing is stored.
                Err(e) => tracing::error!(error = %e, "signature batch failed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bizra_ledger::crypto::Keypair;

    fn item(seed: u8, msg: &[u8]) -> BatchItem {
        let kp = Keypair::from_seed([seed; 32]);
        BatchItem {
            key: kp.public(),
            sig: kp.sign(msg),
            msg: msg.to_vec(),
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_keep_their_verdicts() {
        let metrics = Arc::new(Metrics::new());
        let v = Verifier::start(VerifierConfig::default(), metrics.clone());
        let mut tasks = Vec::new();
        for i in 0..100u8 {
            let v = v.clone();
            let mut it = item(i, b"m");
            if i % 10 == 3 {
                it.msg = b"tampered".to_vec();
            }
            tasks.push(tokio::spawn(async move { (i, v.verify(it).await) }));
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            assert_eq!(r, Ok(i % 10 != 3), "item {i}");
        }
        // Fewer batches than requests: they were gathered.
        let text = metrics.render();
        let count_line = text
            .lines()
            .find(|l| l.starts_with("signature_batch_size_count"))
            .unwrap();
        let batches: u64 = count_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(batches < 100, "{count_line}");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let config = VerifierConfig {
            queue: 1,
            parallel: 1,
            ..Default::default()
        };
        let v = Verifier::start(config, Arc::new(Metrics::new()));
        // Fill the queue faster than the gatherer drains it.
        let mut results = Vec::new();
        let mut waits = Vec::new();
        for i in 0..50u8 {
            let v = v.clone();
            waits.push(tokio::spawn(async move { v.verify(item(i, b"x")).await }));
        }
        for w in waits {
            results.push(w.await.unwrap());
        }
        assert!(results.contains(&Err(Overloaded::Full("signature"))));
        assert!(results.contains(&Ok(true)));
    }
}
