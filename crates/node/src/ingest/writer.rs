//! Group commit: one task owns attestation writes; requests queue their rows, and the
//! task writes everything queued (up to `max_rows`) in one transaction, then answers each
//! request with its own outcomes. While one transaction commits, the next group forms, so
//! the fsync cost is shared by every request that arrived meanwhile. A request is
//! acknowledged only after the transaction holding its rows has committed.

use std::sync::Arc;
use std::time::Instant;

use bizra_store::{AnyStore, InsertOutcome, NewAttestation, Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use super::Overloaded;
use crate::metrics::Metrics;

type Reply = oneshot::Sender<Result<Vec<InsertOutcome>, StoreError>>;
type Job = (Vec<NewAttestation>, Reply);

#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterConfig {
    /// Most rows in one transaction.
    pub(crate) max_rows: usize,
    /// Requests that may wait for the writer.
    pub(crate) queue: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_rows: 4096,
            queue: 16_384,
        }
    }
}

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task; it ends when every handle is dropped.
    pub(crate) fn start(store: AnyStore, config: WriterConfig, metrics: Arc<Metrics>) -> Writer {
        let (tx, rx) = mpsc::channel(config.queue);
        tokio::spawn(run(rx, store, config, metrics));
        Writer { tx }
    }

    /// Stores `rows` in the next group; the outcomes are in input order.
    pub(crate) async fn write(
        &self,
        rows: Vec<NewAttestation>,
    ) -> Result<Result<Vec<InsertOutcome>, StoreError>, Overloaded> {
        super::ask(&self.tx, rows, "write").await
    }

    /// Requests waiting for the writer.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    store: AnyStore,
    config: WriterConfig,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut rows = jobs[0].0.len();
        while rows < config.max_rows {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.0.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (groups, replies): (Vec<Vec<NewAttestation>>, Vec<Reply>) = jobs.into_iter().unzip();
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        let all: Vec<NewAttestation> = groups.into_iter().flatten().collect();
        let started = Instant::now();
        let result = store.insert_attestations(&all).await;
        metrics
            .store_write_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.group_commit_rows.observe(all.len() as f64);
        match result {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let mine: Vec<InsertOutcome> = outcomes.by_ref().take(n).collect();
                    let _ = reply.send(Ok(mine));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
