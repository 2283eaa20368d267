//! The response cache: serialized, compressed responses in memory (L1).
//!
//! Two kinds of entries:
//! - **immutable** objects (a finalized attestation or block): no TTL, strong `ETag`,
//!   `Cache-Control: immutable`; they never change, so an entry is never stale;
//! - **views** of the head (tipset, status, stats): a 60 s TTL, and dropped whenever a
//!   block lands so that readers see the new head at once.
//!
//! Bodies of 1 KiB or more are stored compressed (`bizra_wire::Codec`) and sent as stored to
//! clients that accept the codec. The first client that does not accept it costs one
//! decompression; the entry then keeps its identity body too (weighed against the
//! budget like the rest), so that such clients are not served a decompression per hit.
//!
//! With Redis configured, a shared L2 ([`l2`]) sits behind L1 with the same keys and
//! stored bytes: lookups go L1 → L2 → the caller's store read; an L2 hit is promoted to
//! L1, and a new entry is written to both. Views are keyed by a digest of the head they
//! show (tips, their weight, finality), not by a per-process counter, so replicas that
//! have applied the same blocks share them and a landed block moves every replica to a
//! new key: nothing needs deleting across replicas, old keys expire.

pub(crate) mod l2;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bizra_ledger::Hash32;
use bytes::Bytes;

use crate::metrics::Metrics;
use bizra_wire::codec::{Codec, MIN_COMPRESS};

/// Default memory budget of immutable entries, in stored (compressed) bytes.
pub(crate) const DEFAULT_BUDGET_BYTES: u64 = 256 * 1024 * 1024;
/// TTL of head views.
pub(crate) const VIEW_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    Attestation(Hash32),
    Block(Hash32),
    /// A view of the head whose `Head::view_id` is this.
    View(&'static str, u128),
}

/// Views that go to L2. Stats stays in L1: it carries this node's own counters
/// (`blocks_produced`), which another replica must not serve as its own.
const SHARED_VIEWS: &[&str] = &["tipset"];

impl CacheKey {
    fn shared(&self) -> bool {
        match self {
            CacheKey::View(name, _) => SHARED_VIEWS.contains(name),
            _ => true,
        }
    }
}

/// One response as it is stored: the body (compressed or not) and its headers.
#[derive(Debug)]
pub(crate) struct CachedResponse {
    stored: Bytes,
    codec: Option<Codec>,
    /// The identity body of a compressed entry, once a client that does not accept
    /// `codec` has asked for it.
    identity: Option<Bytes>,
    etag: HeaderValue,
    immutable: bool,
}

impl CachedResponse {
    /// 304 when `If-None-Match` names this entity; otherwise the body, as stored when the
    /// client accepts its codec, else decompressed.
    pub(crate) fn respond(&self, request: &HeaderMap) -> Response {
        let cache_control = if self.immutable {
            HeaderValue::from_static("public, max-age=31536000, immutable")
        } else {
            HeaderValue::from_static("no-cache")
        };
        if etag_matches(request, &self.etag) {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            let h = r.headers_mut();
            h.insert(header::ETAG, self.etag.clone());
            h.insert(header::CACHE_CONTROL, cache_control);
            return r;
        }
        let (body, encoding) = match (self.codec, &self.identity) {
            (Some(c), _) if c.accepted_by(request) => (self.stored.clone(), Some(c.token())),
            (Some(_), Some(raw)) => (raw.clone(), None),
            (Some(c), None) => match c.decompress(&self.stored) {
                Ok(raw) => (Bytes::from(raw), None),
                Err(e) => {
                    tracing::error!(error = %e, "cached body does not decompress");
                    return crate::problem::Problem::internal("cached response is damaged")
                        .into_response();
                }
            },
            (None, _) => (self.stored.clone(), None),
        };
        let mut r = Response::new(Body::from(body));
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::ETAG, self.etag.clone());
        h.insert(header::CACHE_CONTROL, cache_control);
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if let Some(enc) = encoding {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(enc));
        }
        r
    }

    /// This entry with its identity body as well, when answering `request` would
    /// otherwise decompress the stored body (and it decompresses).
    fn with_identity_for(&self, request: &HeaderMap) -> Option<CachedResponse> {
        let codec = self.codec.filter(|c| !c.accepted_by(request))?;
        if self.identity.is_some() || etag_matches(request, &self.etag) {
            return None;
        }
        // On failure `respond` answers with the error.
        let raw = codec.decompress(&self.stored).ok()?;
        Some(CachedResponse {
            stored: self.stored.clone(),
            codec: self.codec,
            identity: Some(Bytes::from(raw)),
            etag: self.etag.clone(),
            immutable: self.immutable,
        })
    }

    /// Bytes held, for the cache's weigher.
    fn weight(&self) -> u32 {
        let identity = self.identity.as_ref().map_or(0, Bytes::len);
        u32::try_from(self.stored.len() + identity + 128).unwrap_or(u32::MAX)
    }
}

fn etag_matches(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(ours) = etag.to_str() else {
        return false;
    };
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == ours || tag.strip_prefix("W/") == Some(ours))
}

/// Blocks whose Merkle trees are kept for proofs (a 4096-attestation block's tree is
/// about 260 KiB).
pub(crate) const TREE_CACHE_BLOCKS: u64 = 64;

pub(crate) struct ResponseCache {
    immutable: moka::sync::Cache<CacheKey, Arc<CachedResponse>>,
    /// Merkle trees of recently read blocks: the first read of each attestation in a
    /// block then costs a lookup instead of rebuilding the block's tree. Async, so that
    /// concurrent misses for one block wait for a single build.
    trees: moka::future::Cache<Hash32, Arc<bizra_ledger::merkle::Tree>>,
    views: moka::sync::Cache<CacheKey, Arc<CachedResponse>>,
    codec: Codec,
    l2: Option<l2::L2>,
    metrics: Arc<Metrics>,
    raw_bytes: AtomicU64,
    stored_bytes: AtomicU64,
}

impl ResponseCache {
    pub(crate) fn new(codec: Codec, budget_bytes: u64, metrics: Arc<Metrics>) -> ResponseCache {
        ResponseCache {
            immutable: moka::sync::Cache::builder()
                .weigher(|_, v: &Arc<CachedResponse>| v.weight())
                .max_capacity(budget_bytes)
                .build(),
            trees: moka::future::Cache::new(TREE_CACHE_BLOCKS),
            views: moka::sync::Cache::builder()
                .max_capacity(64)
                .time_to_live(VIEW_TTL)
                .build(),
            codec,
            l2: None,
            metrics,
            raw_bytes: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
        }
    }

    /// Adds the shared L2 tier behind L1.
    pub(crate) fn with_l2(mut self, l2: l2::L2) -> ResponseCache {
        self.l2 = Some(l2);
        self
    }

    /// L1, then L2 (at most the Redis timeout; an outage is a miss). An L2 hit is kept
    /// in L1.
    async fn lookup(&self, key: &CacheKey) -> Option<Arc<CachedResponse>> {
        if let Some(hit) = self.get(key) {
            return Some(hit);
        }
        let l2 = self.l2.as_ref().filter(|_| key.shared())?;
        let entry = Arc::new(l2.get(key).await?);
        self.insert_l1(key.clone(), entry.clone());
        Some(entry)
    }

    fn insert_l1(&self, key: CacheKey, entry: Arc<CachedResponse>) {
        if entry.immutable {
            self.immutable.insert(key, entry);
        } else {
            self.views.insert(key, entry);
        }
    }

    /// The cached answer to `request` for `key`, if there is one (see [`Self::lookup`]).
    /// A compressed entry asked for by a client that does not accept its codec is
    /// replaced in L1 by one that also holds the identity body.
    pub(crate) async fn serve(&self, key: &CacheKey, request: &HeaderMap) -> Option<Response> {
        let mut hit = self.lookup(key).await?;
        if let Some(fuller) = hit.with_identity_for(request) {
            hit = Arc::new(fuller);
            self.insert_l1(key.clone(), hit.clone());
        }
        Some(hit.respond(request))
    }

    /// L1 only.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Arc<CachedResponse>> {
        let hit = match key {
            CacheKey::View(..) => self.views.get(key),
            _ => self.immutable.get(key),
        };
        if hit.is_some() {
            self.metrics.cache_hit("l1");
        } else {
            self.metrics.cache_miss("l1");
        }
        hit
    }

    /// Serializes `value`, compresses it when large enough, stores it under `key`, and
    /// returns the entry. Immutable keys get no TTL; views expire and are dropped on the
    /// next block. Handlers serialize their answers themselves (`put_bytes`); the tests
    /// use this.
    #[cfg(test)]
    fn put_json<T: serde::Serialize>(
        &self,
        key: CacheKey,
        value: &T,
    ) -> Result<Arc<CachedResponse>, serde_json::Error> {
        self.put(key, value, false)
    }

    /// Stores `value` under `key`; with `keep_identity`, a compressed entry keeps its identity
    /// body as well (as [`Self::serve`] would after the first such request).
    fn put<T: serde::Serialize>(
        &self,
        key: CacheKey,
        value: &T,
        keep_identity: bool,
    ) -> Result<Arc<CachedResponse>, serde_json::Error> {
        let raw = Bytes::from(serde_json::to_vec(value)?);
        let immutable = !matches!(key, CacheKey::View(..));
        let etag = entity_tag(&raw);
        let (stored, codec, identity) = if raw.len() >= MIN_COMPRESS {
            match self.codec.compress(&raw) {
                Ok(z) if z.len() < raw.len() => {
                    self.note_ratio(raw.len(), z.len());
                    (
                        Bytes::from(z),
                        Some(self.codec),
                        keep_identity.then_some(raw),
                    )
                }
                Ok(_) => (raw, None, None),
                Err(e) => {
                    tracing::warn!(error = %e, "compression failed; caching uncompressed");
                    (raw, None, None)
                }
            }
        } else {
            (raw, None, None)
        };
        let entry = Arc::new(CachedResponse {
            stored,
            codec,
            identity,
            etag,
            immutable,
        });
        if let Some(l2) = self.l2.as_ref().filter(|_| key.shared()) {
            let ttl = if immutable { l2::L2_TTL } else { VIEW_TTL };
            l2.put(&key, &entry, ttl);
        }
        self.insert_l1(key, entry.clone());
        Ok(entry)
    }

    /// The Merkle tree of a block, built from what `ids` returns on a miss. Block
    /// contents never change, so a kept tree is never stale. Concurrent misses for the
    /// same block share one `ids` call and one build: the first reads of a block's
    /// attestations come in bursts, and each would otherwise read the block and hash
    /// its tree again.
    pub(crate) async fn tree<E>(
        &self,
        block: &Hash32,
        ids: impl std::future::Future<Output = Result<Vec<Hash32>, E>>,
    ) -> Result<Arc<bizra_ledger::merkle::Tree>, Arc<E>>
    where
        E: Send + Sync + 'static,
    {
        self.trees
            .try_get_with(*block, async move {
                Ok(Arc::new(bizra_ledger::merkle::Tree::new(&ids.await?)))
            })
            .await
    }

    pub(crate) async fn cached_tree(
        &self,
        block: &Hash32,
    ) -> Option<Arc<bizra_ledger::merkle::Tree>> {
        self.trees.get(block).await
    }

    /// Stores `value` under `key` and answers this request from the stored entry.
    pub(crate) fn store_and_respond<T: serde::Serialize>(
        &self,
        key: CacheKey,
        value: &T,
        request: &HeaderMap,
    ) -> Result<Response, serde_json::Error> {
        let keep_identity = !self.codec.accepted_by(request);
        Ok(self.put(key, value, keep_identity)?.respond(request))
    }

    /// A block landed: head views are stale.
    pub(crate) fn invalidate_views(&self) {
        self.views.invalidate_all();
    }

    fn note_ratio(&self, raw: usize, stored: usize) {
        let r = self.raw_bytes.fetch_add(raw as u64, Ordering::Relaxed) + raw as u64;
        let s = self
            .stored_bytes
            .fetch_add(stored as u64, Ordering::Relaxed)
            + stored as u64;
        if r > 0 {
            self.metrics
                .cache_compression_ratio
                .set(s as f64 / r as f64);
        }
    }

    /// Refreshes the size gauges (called at scrape time).
    pub(crate) fn export(&self) {
        self.immutable.run_pending_tasks();
        self.metrics
            .cache_entries
            .set(self.immutable.entry_count() as i64 + self.views.entry_count() as i64);
        self.metrics
            .cache_bytes
            .set(self.immutable.weighted_size() as i64);
    }
}

/// A strong entity tag: BLAKE3 of the identity body, 128 bits.
fn entity_tag(raw: &[u8]) -> HeaderValue {
    let h = blake3::hash(raw);
    let hex = hex::encode(&h.as_bytes()[..16]);
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    fn cache() -> ResponseCache {
        ResponseCache::new(Codec::default(), 1 << 20, Arc::new(Metrics::new()))
    }

    async fn body(r: Response) -> Vec<u8> {
        to_bytes(r.into_body(), usize::MAX).await.unwrap().to_vec()
    }

    #[tokio::test]
    async fn large_bodies_are_stored_compressed_and_served_either_way() {
        let c = cache();
        let value: Vec<String> = (0..200).map(|i| format!("attestation-{i}")).collect();
        let key = CacheKey::Attestation(Hash32::digest(b"a"));
        c.put_json(key.clone(), &value).unwrap();
        let hit = c.get(&key).unwrap();
        assert!(hit.codec.is_some());

        let mut zstd = HeaderMap::new();
        zstd.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("zstd"));
        let r = hit.respond(&zstd);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "zstd");
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        let z = body(r).await;
        assert_eq!(
            Codec::default().decompress(&z).unwrap(),
            serde_json::to_vec(&value).unwrap()
        );

        let plain = hit.respond(&HeaderMap::new());
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body(plain).await, serde_json::to_vec(&value).unwrap());
    }

    #[tokio::test]
    async fn identity_bodies_are_kept_once_a_client_needs_them() {
        let c = cache();
        let value: Vec<String> = (0..200).map(|i| format!("attestation-{i}")).collect();
        let raw = serde_json::to_vec(&value).unwrap();
        let mut zstd = HeaderMap::new();
        zstd.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("zstd"));
        let identity = HeaderMap::new();

        let key = CacheKey::Attestation(Hash32::digest(b"served"));
        let stored = c.put_json(key.clone(), &value).unwrap();
        let compressed_weight = stored.weight();
        assert!(stored.identity.is_none());

        // A client that takes the codec, or revalidates, adds nothing.
        let r = c.serve(&key, &zstd).await.unwrap();
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "zstd");
        let mut revalidate = HeaderMap::new();
        revalidate.insert(header::IF_NONE_MATCH, stored.etag.clone());
        let r = c.serve(&key, &revalidate).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(c.get(&key).unwrap().identity.is_none());

        // The first identity client decompresses; the entry keeps the result, weighed.
        let r = c.serve(&key, &identity).await.unwrap();
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body(r).await, raw);
        let kept = c.get(&key).unwrap();
        assert_eq!(kept.identity.as_deref(), Some(&raw[..]));
        assert_eq!(kept.weight(), compressed_weight + raw.len() as u32);
        assert_eq!(body(c.serve(&key, &identity).await.unwrap()).await, raw);
        let r = c.serve(&key, &zstd).await.unwrap();
        assert_eq!(Codec::default().decompress(&body(r).await).unwrap(), raw);

        // An entry made for an identity client keeps the body it already had.
        let key = CacheKey::Attestation(Hash32::digest(b"stored"));
        let r = c.store_and_respond(key.clone(), &value, &identity).unwrap();
        assert_eq!(body(r).await, raw);
        assert_eq!(c.get(&key).unwrap().identity.as_deref(), Some(&raw[..]));
        let key = CacheKey::Attestation(Hash32::digest(b"stored for zstd"));
        c.store_and_respond(key.clone(), &value, &zstd).unwrap();
        assert!(c.get(&key).unwrap().identity.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_of_one_block_build_its_tree_once() {
        let c = Arc::new(cache());
        let block = Hash32::digest(b"block");
        let ids: Vec<Hash32> = (0..100u32)
            .map(|i| Hash32::digest(&i.to_le_bytes()))
            .collect();
        let reads = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (c, ids, reads) = (c.clone(), ids.clone(), reads.clone());
                tokio::spawn(async move {
                    c.tree(&block, async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        // A store read: long enough for every task to miss meanwhile.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>(ids)
                    })
                    .await
                    .unwrap()
                    .root()
                })
            })
            .collect();
        let want = bizra_ledger::merkle::Tree::new(&ids).root();
        for t in tasks {
            assert_eq!(t.await.unwrap(), want);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(c.cached_tree(&block).await.is_some());

        // A failed read is not kept: the next miss tries again.
        let other = Hash32::digest(b"other");
        let failed = c
            .tree(&other, async {
                Err::<Vec<Hash32>, _>(std::io::Error::other("store down"))
            })
            .await;
        assert!(failed.is_err());
        assert!(c.cached_tree(&other).await.is_none());
    }

    #[tokio::test]
    async fn if_none_match_gets_304() {
        let c = cache();
        let entry = c
            .put_json(CacheKey::Block(Hash32::digest(b"b")), &"x")
            .unwrap();
        let etag = entry.respond(&HeaderMap::new()).headers()[header::ETAG].clone();
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(entry.respond(&h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(entry.respond(&h).status(), StatusCode::OK);
    }

    #[test]
    fn only_views_that_hold_nothing_node_local_go_to_l2() {
        assert!(CacheKey::View("tipset", 1).shared());
        assert!(!CacheKey::View("stats", 1).shared());
        assert!(CacheKey::Block(Hash32::digest(b"b")).shared());
    }

    #[test]
    fn views_are_dropped_when_a_block_lands() {
        let c = cache();
        c.put_json(CacheKey::View("tipset", 1), &1).unwrap();
        assert!(c.get(&CacheKey::View("tipset", 1)).is_some());
        c.invalidate_views();
        assert!(c.get(&CacheKey::View("tipset", 1)).is_none());
    }
}
