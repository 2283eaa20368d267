//! Which replica signs for the validator (its blocks and its votes) when several share
//! one PostgreSQL store: the one holding the store's lease (named `producer`, as earlier
//! builds named it). A background task renews it every [`RENEW_EVERY`] for
//! [`LEASE_TTL`]; if the holder dies, its lease lapses and another replica takes it within
//! about `LEASE_TTL + RENEW_EVERY`.
//!
//! The holder counts itself leader only until `LEASE_TTL - SAFETY` after it *sent* its
//! last successful renewal, so it stops signing before the database could hand the
//! lease to someone else, even if its process stalls or the database becomes
//! unreachable. On the embedded store the one process always leads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bizra_store::{AnyStore, Store};
use tokio::sync::watch;

use crate::metrics::Metrics;

pub(crate) const LEASE_NAME: &str = "producer";
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(3);
pub(crate) const RENEW_EVERY: Duration = Duration::from_millis(500);
/// Margin for clock-rate differences and the time between a check and a write.
const SAFETY: Duration = Duration::from_millis(1000);

/// This process's view of the lease. Cheap to read from any task.
pub(crate) struct Leadership {
    holder: String,
    /// Always leading: the store is not shared.
    sole: bool,
    base: Instant,
    /// Leading until this many ms after `base`; 0 = not leading.
    until_ms: AtomicU64,
    /// Last state logged and exported, to report transitions once.
    was_leader: AtomicBool,
}

impl Leadership {
    pub(crate) fn new(store: &AnyStore, node_id: &str) -> Arc<Leadership> {
        let mut random = [0u8; 6];
        // Without randomness two replicas could share a holder name; the pid keeps
        // them apart on one host even then.
        let _ = getrandom::fill(&mut random);
        Arc::new(Leadership {
            holder: format!(
                "{}-{}-{}",
                &node_id[..node_id.len().min(12)],
                std::process::id(),
                hex::encode(random)
            ),
            sole: !store.is_shared(),
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
            was_leader: AtomicBool::new(false),
        })
    }

    /// The name this process holds the lease under.
    pub(crate) fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether this process may produce a block right now.
    pub(crate) fn is_leader(&self) -> bool {
        self.sole
            || self.base.elapsed().as_millis() < u128::from(self.until_ms.load(Ordering::Acquire))
    }

    /// Whether several replicas share the store (so the chain must be followed).
    pub(crate) fn shared(&self) -> bool {
        !self.sole
    }

    /// Renews the lease until `shutdown`. The caller then [`Leadership::release`]s it,
    /// once the proposer has stopped.
    pub(crate) async fn run(
        self: Arc<Self>,
        store: AnyStore,
        metrics: Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.sole {
            metrics.producer_leader.set(1);
            return;
        }
        let mut tick = tokio::time::interval(RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if *shutdown.borrow() {
                break;
            }
            let sent = self.base.elapsed();
            match store
                .acquire_lease(LEASE_NAME, &self.holder, LEASE_TTL)
                .await
            {
                Ok(true) => {
                    let until = sent + LEASE_TTL.saturating_sub(SAFETY);
                    self.until_ms
                        .store(until.as_millis() as u64, Ordering::Release);
                }
                Ok(false) => self.until_ms.store(0, Ordering::Release),
                // Not renewed: leadership runs out at the deadline already set.
                Err(e) => tracing::warn!(error = %e, "signing lease not renewed"),
            }
            self.report(&metrics);
        }
    }

    /// Gives the lease up so another replica takes over at once rather than after the
    /// ttl. Call only when no block is being produced any more.
    pub(crate) async fn release(&self, store: &AnyStore, metrics: &Metrics) {
        if self.sole {
            return;
        }
        self.until_ms.store(0, Ordering::Release);
        if let Err(e) = store.release_lease(LEASE_NAME, &self.holder).await {
            tracing::warn!(error = %e, "signing lease not released; it lapses by itself");
        }
        self.report(metrics);
    }

    fn report(&self, metrics: &Metrics) {
        let now = self.is_leader();
        if self.was_leader.swap(now, Ordering::Relaxed) != now {
            if now {
                tracing::info!(holder = %self.holder, "this replica now produces blocks");
            } else {
                tracing::info!(holder = %self.holder, "this replica no longer produces blocks");
            }
        }
        metrics.producer_leader.set(i64::from(now));
    }
}
