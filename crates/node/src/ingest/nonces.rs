//! Rule 13 lookups for `/verify`, gathered: concurrent requests queue their (key, nonce)
//! pairs, and one task looks up everything queued in one store call.
//!
//! A lookup of its own per request cost a store round trip each (on SQLite, two thread
//! hand-offs to sqlx's worker), much of `/verify`'s CPU (BENCHMARKS.md). Gathering adds no
//! wait: a batch takes only what is already queued, so a lone request is looked up at once,
//! and under load the requests that arrive while earlier batches run form the next one.

use std::collections::HashMap;
use std::sync::Arc;

use bizra_ledger::crypto::PublicKey;
use bizra_ledger::Hash32;
use bizra_store::{AnyStore, Store, StoreError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::Overloaded;
use crate::metrics::Metrics;

type Reply = oneshot::Sender<Result<Option<Hash32>, StoreError>>;
type Job = ((PublicKey, String), Reply);

#[derive(Debug, Clone, Copy)]
pub(crate) struct NonceLookupConfig {
    /// Most pairs in one store call.
    pub(crate) max_batch: usize,
    /// Requests that may wait.
    pub(crate) queue: usize,
    /// Store calls at the same time (at most the store's reader connections).
    pub(crate) parallel: usize,
}

impl Default for NonceLookupConfig {
    fn default() -> Self {
        NonceLookupConfig {
            max_batch: 256,
            queue: 16_384,
            parallel: 2,
        }
    }
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub(crate) struct NonceLookup {
    tx: mpsc::Sender<Job>,
}

impl NonceLookup {
    /// Starts the gathering task; it ends when every handle is dropped.
    pub(crate) fn start(store: AnyStore, config: NonceLookupConfig, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(config.queue);
        tokio::spawn(gather(rx, store, config, metrics));
        NonceLookup { tx }
    }

    /// The digest of the attestation that used `nonce` under `key`, if any.
    pub(crate) async fn owner(
        &self,
        key: PublicKey,
        nonce: String,
    ) -> Result<Result<Option<Hash32>, StoreError>, Overloaded> {
        super::ask(&self.tx, (key, nonce), "nonce lookup").await
    }

    /// Requests waiting to be gathered.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn gather(
    mut rx: mpsc::Receiver<Job>,
    store: AnyStore,
    config: NonceLookupConfig,
    metrics: Arc<Metrics>,
) {
    let slots = Arc::new(Semaphore::new(config.parallel.max(1)));
    loop {
        // Wait for a free slot first: requests arriving meanwhile join the next batch.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut jobs = vec![first];
        while jobs.len() < config.max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        metrics.nonce_lookup_batch_size.observe(jobs.len() as f64);
        let store = store.clone();
        tokio::spawn(async move {
            let (pairs, replies): (Vec<_>, Vec<Reply>) = jobs.into_iter().unzip();
            let answers = lookup(&store, &pairs).await;
            drop(permit);
            match answers {
                Ok(owners) => {
                    for (reply, owner) in replies.into_iter().zip(owners) {
                        let _ = reply.send(Ok(owner));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

/// One store call for distinct pairs; answers in the order of `pairs`. The same pair
/// queued many times (one attestation verified over and over) costs one row.
async fn lookup(
    store: &AnyStore,
    pairs: &[(PublicKey, String)],
) -> Result<Vec<Option<Hash32>>, StoreError> {
    let mut distinct: Vec<(PublicKey, String)> = Vec::with_capacity(pairs.len());
    let mut index: HashMap<&(PublicKey, String), usize> = HashMap::with_capacity(pairs.len());
    for p in pairs {
        if !index.contains_key(p) {
            index.insert(p, distinct.len());
            distinct.push(p.clone());
        }
    }
    let owners = store.nonce_owners(&distinct).await?;
    if owners.len() != distinct.len() {
        return Err(StoreError::Corrupt(format!(
            "nonce lookup answered {} of {} pairs",
            owners.len(),
            distinct.len()
        )));
    }
    Ok(pairs.iter().map(|p| owners[index[p]]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bizra_ledger::crypto::Keypair;
    use bizra_store::NewAttestation;

    async fn store_with_one(dir: &std::path::Path) -> (AnyStore, PublicKey, String, Hash32) {
        let store = AnyStore::open_sqlite(dir.join("s.sqlite"), Default::default())
            .await
            .unwrap();
        let kp = Keypair::from_seed([7; 32]);
        let digest = Hash32([9; 32]);
        let row = NewAttestation {
            digest,
            attester_pubkey: kp.public(),
            nonce: "n-1".into(),
            attester_id: "alice".into(),
            body: b"{}".to_vec(),
            impact_score: 1.0,
            received_at_ms: 1,
        };
        store.insert_attestations(&[row]).await.unwrap();
        (store, kp.public(), "n-1".into(), digest)
    }

    #[tokio::test]
    async fn concurrent_lookups_share_store_calls_and_get_their_own_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key, nonce, digest) = store_with_one(dir.path()).await;
        let metrics = Arc::new(Metrics::new());
        let lookups = NonceLookup::start(store, NonceLookupConfig::default(), metrics.clone());
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let l = lookups.clone();
            // Every fifth asks for the stored pair (some twice in one batch), the rest
            // for nonces nobody used, or the stored nonce under another key.
            let (k, n) = match i % 5 {
                0 => (key, nonce.clone()),
                1 => (Keypair::from_seed([8; 32]).public(), nonce.clone()),
                _ => (key, format!("free-{i}")),
            };
            tasks.push(tokio::spawn(async move { (i, l.owner(k, n).await) }));
        }
        for t in tasks {
            let (i, r) = t.await.unwrap();
            let owner = r.unwrap().unwrap();
            assert_eq!(owner, (i % 5 == 0).then_some(digest), "request {i}");
        }
        let text = metrics.render();
        let count: u64 = text
            .lines()
            .find(|l| l.starts_with("nonce_lookup_batch_size_count"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(
            count < 200,
            "every request made its own store call: {count}"
        );
    }

    #[tokio::test]
    async fn a_store_error_reaches_every_request_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key, nonce, _) = store_with_one(dir.path()).await;
        store.close().await;
        let lookups = NonceLookup::start(
            store,
            NonceLookupConfig::default(),
            Arc::new(Metrics::new()),
        );
        let r = lookups.owner(key, nonce).await.unwrap();
        assert!(r.is_err(), "{r:?}");
    }
}
