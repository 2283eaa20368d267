//! The shared L2 tier of the response cache: Redis, behind L1.
//!
//! An entry is the L1 entry as it is: the stored (compressed) body, its codec and its
//! entity tag, in a small binary envelope, so a replica serves another's entry without
//! recompressing it and with the same `ETag`. Reads wait at most the link's timeout;
//! writes go through a bounded queue drained by one task, and are dropped (and counted)
//! when the queue is full or Redis is down: a request never waits for an L2 write.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{CacheKey, CachedResponse};
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use bizra_wire::Codec;

/// TTL of immutable entries in Redis. Views use the L1 view TTL.
pub(crate) const L2_TTL: Duration = Duration::from_secs(300);
/// Writes waiting for the writer task; past it new writes are dropped.
pub(crate) const WRITE_QUEUE: usize = 1024;
/// Most writes sent in one pipeline.
const WRITE_BATCH: usize = 64;

const MAGIC: &[u8; 4] = b"N0L2";
const VERSION: u8 = 1;
const HEADER: usize = 12;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("too short")]
    Short,
    #[error("not a node0 L2 entry of this version")]
    Magic,
    #[error("unknown codec {0}")]
    Codec(u8),
    #[error("bad entity tag")]
    Etag,
}

/// `N0L2`, version, flags (bit 0: immutable), codec kind, codec parameter (i32 LE),
/// entity-tag length, entity tag, body.
pub(crate) fn encode(entry: &CachedResponse) -> Vec<u8> {
    let etag = entry.etag.as_bytes();
    let etag_len = etag.len().min(255);
    let mut out = Vec::with_capacity(HEADER + etag_len + entry.stored.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(u8::from(entry.immutable));
    let (kind, param) = match entry.codec {
        None => (0u8, 0i32),
        Some(Codec::Zstd { level }) => (1, level),
        Some(Codec::Brotli { quality }) => (2, quality as i32),
        Some(Codec::Gzip { level }) => (3, level as i32),
    };
    out.push(kind);
    out.extend_from_slice(&param.to_le_bytes());
    out.push(etag_len as u8);
    out.extend_from_slice(&etag[..etag_len]);
    out.extend_from_slice(&entry.stored);
    out
}

pub(crate) fn decode(data: &[u8]) -> Result<CachedResponse, EnvelopeError> {
    if data.len() < HEADER {
        return Err(EnvelopeError::Short);
    }
    if &data[..4] != MAGIC || data[4] != VERSION {
        return Err(EnvelopeError::Magic);
    }
    let immutable = data[5] & 1 == 1;
    let param = i32::from_le_bytes([data[7], data[8], data[9], data[10]]);
    let codec = match data[6] {
        0 => None,
        1 => Some(Codec::Zstd { level: param }),
        2 => Some(Codec::Brotli {
            quality: param.max(0) as u32,
        }),
        3 => Some(Codec::Gzip {
            level: param.max(0) as u32,
        }),
        k => return Err(EnvelopeError::Codec(k)),
    };
    let etag_len = data[11] as usize;
    let body_at = HEADER + etag_len;
    if data.len() < body_at {
        return Err(EnvelopeError::Short);
    }
    let etag = HeaderValue::from_bytes(&data[HEADER..body_at]).map_err(|_| EnvelopeError::Etag)?;
    Ok(CachedResponse {
        stored: Bytes::copy_from_slice(&data[body_at..]),
        codec,
        identity: None,
        etag,
        immutable,
    })
}

/// The Redis key of a cache key; `c1` names this envelope's layout.
pub(crate) fn redis_key(link: &RedisLink, key: &CacheKey) -> String {
    match key {
        CacheKey::Attestation(h) => link.key(&format!("c1:att:{}", h.to_hex())),
        CacheKey::Block(h) => link.key(&format!("c1:blk:{}", h.to_hex())),
        CacheKey::View(name, head) => link.key(&format!("c1:view:{name}:{head:032x}")),
    }
}

struct Write {
    key: String,
    value: Vec<u8>,
    ttl_s: u64,
}

pub(crate) struct L2 {
    link: Arc<RedisLink>,
    writes: mpsc::Sender<Write>,
    metrics: Arc<Metrics>,
}

impl L2 {
    /// Starts the writer task.
    pub(crate) fn new(link: Arc<RedisLink>, metrics: Arc<Metrics>) -> L2 {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(writer(link.clone(), rx, metrics.clone()));
        L2 {
            link,
            writes: tx,
            metrics,
        }
    }

    /// The entry, or `None` on a miss, a damaged entry, or Redis down or slow (counted).
    pub(crate) async fn get(&self, key: &CacheKey) -> Option<CachedResponse> {
        let rkey = redis_key(&self.link, key);
        let got = self
            .link
            .call(|mut c| async move {
                redis::cmd("GET")
                    .arg(&rkey)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await;
        match got {
            Ok(Some(bytes)) => match decode(&bytes) {
                Ok(entry) if entry.immutable == !matches!(key, CacheKey::View(..)) => {
                    self.metrics.cache_hit("l2");
                    Some(entry)
                }
                Ok(_) | Err(_) => {
                    tracing::warn!(?key, "L2 entry is not a node0 entry of this version");
                    self.metrics.cache_miss("l2");
                    None
                }
            },
            Ok(None) => {
                self.metrics.cache_miss("l2");
                None
            }
            Err(e) => {
                self.metrics.cache_l2_fallback(e.reason());
                None
            }
        }
    }

    /// Queues the entry for Redis; never waits. A full queue drops it (counted).
    pub(crate) fn put(&self, key: &CacheKey, entry: &CachedResponse, ttl: Duration) {
        let write = Write {
            key: redis_key(&self.link, key),
            value: encode(entry),
            ttl_s: ttl.as_secs().max(1),
        };
        if self.writes.try_send(write).is_err() {
            self.metrics.cache_l2_writes_dropped.inc();
        }
    }
}

/// Drains the write queue: everything waiting (up to a batch) in one pipeline.
async fn writer(link: Arc<RedisLink>, mut rx: mpsc::Receiver<Write>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let n = batch.len();
        let mut pipe = redis::pipe();
        for w in batch.drain(..) {
            pipe.cmd("SET")
                .arg(w.key)
                .arg(w.value)
                .arg("EX")
                .arg(w.ttl_s)
                .ignore();
        }
        // A pipeline of writes is given a few times the read timeout: nobody waits for it.
        let within = link.timeout() * 4;
        if let Err(e) = link
            .run(within, |mut c| async move {
                pipe.query_async::<()>(&mut c).await
            })
            .await
        {
            for _ in 0..n {
                metrics.cache_l2_fallback(e.reason());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(codec: Option<Codec>, immutable: bool) -> CachedResponse {
        CachedResponse {
            stored: Bytes::from_static(b"\x28\xb5\x2f\xfd body bytes"),
            codec,
            identity: None,
            etag: HeaderValue::from_static("\"0123456789abcdef\""),
            immutable,
        }
    }

    #[test]
    fn envelope_round_trips() {
        for (codec, immutable) in [
            (None, true),
            (Some(Codec::Zstd { level: -3 }), true),
            (Some(Codec::Brotli { quality: 5 }), false),
            (Some(Codec::Gzip { level: 9 }), true),
        ] {
            let e = entry(codec, immutable);
            let d = decode(&encode(&e)).unwrap();
            assert_eq!(d.stored, e.stored);
            assert_eq!(d.codec, e.codec);
            assert_eq!(d.etag, e.etag);
            assert_eq!(d.immutable, e.immutable);
        }
        let empty = CachedResponse {
            stored: Bytes::new(),
            ..entry(None, false)
        };
        assert!(decode(&encode(&empty)).unwrap().stored.is_empty());
    }

    #[test]
    fn damaged_envelopes_are_refused() {
        let good = encode(&entry(Some(Codec::default()), true));
        assert_eq!(decode(&good[..5]).err(), Some(EnvelopeError::Short));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad).err(), Some(EnvelopeError::Magic));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(decode(&bad).err(), Some(EnvelopeError::Magic));
        let mut bad = good.clone();
        bad[6] = 9;
        assert_eq!(decode(&bad).err(), Some(EnvelopeError::Codec(9)));
        let mut bad = good.clone();
        bad[11] = 250;
        assert_eq!(decode(&bad).err(), Some(EnvelopeError::Short));
        let mut bad = good.clone();
        bad[12] = b'\n';
        assert_eq!(decode(&bad).err(), Some(EnvelopeError::Etag));
    }
}
