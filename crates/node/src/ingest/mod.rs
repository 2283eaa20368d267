//! The submit path ([`submit`]): parse, rules 1–11, signatures verified in batches of
//! concurrent submissions ([`verifier`]), rows written together, one transaction per
//! group ([`writer`]), acknowledged after the commit. `/verify`'s nonce lookups are
//! gathered the same way ([`nonces`]). Every stage sits behind a bounded queue; a full
//! queue is answered with 503 at once rather than queuing without end.

pub(crate) mod nonces;
pub(crate) mod submit;
pub(crate) mod verifier;
pub(crate) mod writer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bizra_ledger::params::NetworkAnchor;
use bizra_store::AnyStore;
use tokio::sync::Notify;

use crate::events::Events;
use crate::metrics::Metrics;
use nonces::{NonceLookup, NonceLookupConfig};
use verifier::{Verifier, VerifierConfig};
use writer::{Writer, WriterConfig};

/// The submit path's stages and what it tells others.
pub(crate) struct Ingest {
    /// Gathers signatures of concurrent single submissions into batches.
    pub(crate) verifier: Verifier,
    /// Group-commits attestation rows.
    pub(crate) writer: Writer,
    /// `/verify`'s rule-13 lookups, gathered.
    pub(crate) nonces: NonceLookup,
    pub(crate) pending: Arc<Pending>,
    metrics: Arc<Metrics>,
    events: Events,
    anchor: NetworkAnchor,
    /// Pending attestations that wake the proposer before its next look.
    full_block: usize,
}

impl Ingest {
    /// Starts the stages' tasks.
    pub(crate) fn start(
        store: &AnyStore,
        metrics: Arc<Metrics>,
        events: Events,
        anchor: NetworkAnchor,
        full_block: usize,
    ) -> Ingest {
        Ingest {
            verifier: Verifier::start(VerifierConfig::default(), metrics.clone()),
            writer: Writer::start(store.clone(), WriterConfig::default(), metrics.clone()),
            nonces: NonceLookup::start(
                store.clone(),
                NonceLookupConfig::default(),
                metrics.clone(),
            ),
            pending: Arc::new(Pending::default()),
            metrics,
            events,
            anchor,
            full_block,
        }
    }
}

/// Accepted attestations not yet in a block, as the submit path counts them (a hint:
/// the proposer reads the store), and the signal that wakes the proposer early.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    wake: Notify,
}

impl Pending {
    /// Counts `n` newly stored attestations; wakes the proposer at `full_block`.
    pub(crate) fn add(&self, n: usize, full_block: usize) {
        let pending = self.count.fetch_add(n, Ordering::Relaxed) + n;
        if pending >= full_block {
            self.wake.notify_one();
        }
    }

    /// `n` went into a block.
    pub(crate) fn taken(&self, n: usize) {
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(n))
            });
    }

    /// The store holds nothing pending.
    pub(crate) fn none_left(&self) {
        self.count.store(0, Ordering::Relaxed);
    }

    /// Wakes the proposer now (a registry entry was filed, say).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when the proposer is woken.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }
}

/// The queue is full or the stage has stopped: the request is refused, nothing was
/// stored, and the client may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Overloaded {
    #[error("the {0} queue is full")]
    Full(&'static str),
    #[error("the {0} stage has stopped")]
    Stopped(&'static str),
}

/// Queues `job` for a stage with a channel for its answer and waits for it. A full queue
/// is refused at once; a stage that stopped (or dropped the job) is `Stopped`.
pub(crate) async fn ask<J, R>(
    queue: &tokio::sync::mpsc::Sender<(J, tokio::sync::oneshot::Sender<R>)>,
    job: J,
    stage: &'static str,
) -> Result<R, Overloaded> {
    use tokio::sync::mpsc::error::TrySendError;
    let (done, answer) = tokio::sync::oneshot::channel();
    queue.try_send((job, done)).map_err(|e| match e {
        TrySendError::Full(_) => Overloaded::Full(stage),
        TrySendError::Closed(_) => Overloaded::Stopped(stage),
    })?;
    answer.await.map_err(|_| Overloaded::Stopped(stage))
}

impl Overloaded {
    pub(crate) fn stage(&self) -> &'static str {
        match self {
            Overloaded::Full(s) | Overloaded::Stopped(s) => s,
        }
    }
}
