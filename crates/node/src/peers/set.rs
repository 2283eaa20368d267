//! The peers this node calls: one pooled HTTP client for all of them, a circuit breaker
//! and call statistics per peer, every call timed and counted in `/metrics`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use bizra_ledger::Hash32;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::breaker::{Breaker, BreakerConfig, BreakerState, Transition};
use super::retry::{peer_client, RetryPolicy};
use crate::clock::now_ms;
use crate::metrics::{Metrics, PeerLabels, PeerOutcomeLabels, PeerTransitionLabels};

/// Largest response body read from a peer: a block proposal of 4,096 attestations is
/// about 6 MiB; anything far larger is garbage and must not exhaust memory.
pub(crate) const MAX_PEER_BODY: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("circuit breaker open; next probe in {0:?}")]
    BreakerOpen(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    /// The peer answered with a problem (4xx): it is up and said no.
    #[error("refused with {status} {code}: {detail}")]
    Refused {
        status: u16,
        code: String,
        detail: String,
    },
    /// A 5xx, a body that does not parse, a body too large: the peer is unwell.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

impl PeerError {
    fn outcome(&self) -> &'static str {
        match self {
            PeerError::BreakerOpen(_) => "breaker_open",
            PeerError::Connect(_) => "connect",
            PeerError::Timeout => "timeout",
            PeerError::Refused { .. } => "refused",
            PeerError::BadAnswer(_) => "bad_answer",
        }
    }

    /// Whether the call counts as a failure of the peer (a refusal does not: the peer
    /// is up and checked what it was sent).
    fn is_peer_failure(&self) -> bool {
        !matches!(self, PeerError::Refused { .. })
    }
}

/// What the last call to a peer showed.
#[derive(Debug, Clone, Default)]
struct LastCall {
    ok_at_ms: Option<u64>,
    latency_ms: Option<f64>,
    error: Option<String>,
    error_at_ms: Option<u64>,
}

pub(crate) struct Peer {
    /// Base URL without a trailing slash.
    pub(crate) url: String,
    /// The validator this node is, when the genesis or registry names it.
    pub(crate) validator_id: Option<Hash32>,
    breaker: Breaker,
    last: Mutex<LastCall>,
}

/// One peer as `/api/p2p/peers` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct PeerView {
    pub(crate) url: String,
    pub(crate) validator_id: Option<String>,
    /// Whether the last call got an answer.
    pub(crate) reachable: Option<bool>,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) last_ok_at_ms: Option<u64>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_error_at_ms: Option<u64>,
    /// `closed`, `open` or `half_open`.
    pub(crate) circuit_breaker: String,
    /// Calls and failures in the breaker's rolling window.
    pub(crate) window_calls: u32,
    pub(crate) window_failures: u32,
}

/// The peers this node calls: the genesis validators and configured URLs at start, and
/// the validators the registry adds later ([`PeerSet::add_validators`]). Readers take a
/// snapshot of the list; a change swaps in a new one.
pub(crate) struct PeerSet {
    client: reqwest::Client,
    retry: RetryPolicy,
    peers: ArcSwap<Vec<Arc<Peer>>>,
    /// Serializes changes to `peers`.
    changing: Mutex<()>,
    breaker: BreakerConfig,
    metrics: Arc<Metrics>,
}

impl PeerSet {
    /// `peers`: base URLs, with the validator id when known. Duplicate URLs are merged.
    pub(crate) fn new(
        peers: Vec<(String, Option<Hash32>)>,
        call_timeout: Duration,
        breaker: BreakerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<PeerSet, reqwest::Error> {
        let mut list: Vec<Arc<Peer>> = Vec::new();
        for (url, id) in peers {
            let url = url.trim_end_matches('/').to_string();
            if let Some(existing) = list.iter_mut().find(|p| p.url == url) {
                if existing.validator_id.is_none() && id.is_some() {
                    *existing = Arc::new(Peer::new(url, id, breaker.clone()));
                }
                continue;
            }
            list.push(Arc::new(Peer::new(url, id, breaker.clone())));
        }
        for p in &list {
            metrics.add_peer(&p.url);
        }
        Ok(PeerSet {
            client: peer_client(call_timeout)?,
            retry: RetryPolicy::default(),
            peers: ArcSwap::from_pointee(list),
            changing: Mutex::new(()),
            breaker,
            metrics,
        })
    }

    /// The peers now.
    pub(crate) fn peers(&self) -> Arc<Vec<Arc<Peer>>> {
        self.peers.load_full()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.peers.load().is_empty()
    }

    /// Whether `peer` is still one of the peers (a peer the registry named again under
    /// its validator id replaces the configured URL's entry).
    pub(crate) fn contains(&self, peer: &Arc<Peer>) -> bool {
        self.peers.load().iter().any(|p| Arc::ptr_eq(p, peer))
    }

    pub(crate) fn by_validator(&self, id: &Hash32) -> Option<Arc<Peer>> {
        self.peers
            .load()
            .iter()
            .find(|p| p.validator_id.as_ref() == Some(id))
            .cloned()
    }

    /// Makes each validator of `list` (id, base URL) a peer at that URL: one the registry
    /// activated after genesis is called like the others from then on, and one that
    /// registered again at another address is called there. A configured URL without an
    /// id that is one of them becomes that validator's peer. A new or moved peer starts
    /// with a fresh breaker. Returns how many peers were added or changed.
    pub(crate) fn add_validators(&self, list: &[(Hash32, String)]) -> usize {
        let _changing = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<Arc<Peer>> = self.peers.load_full().as_ref().clone();
        let mut changed = 0;
        for (id, url) in list {
            let url = url.trim_end_matches('/').to_string();
            let known = next
                .iter()
                .position(|p| p.validator_id.as_ref() == Some(id));
            if known.is_some_and(|k| next[k].url == url) {
                continue;
            }
            // Another validator at that address: the first one named keeps it.
            if next
                .iter()
                .any(|p| p.url == url && p.validator_id.is_some_and(|v| v != *id))
            {
                continue;
            }
            next.retain(|p| !(p.url == url && p.validator_id.is_none()));
            let peer = Arc::new(Peer::new(url.clone(), Some(*id), self.breaker.clone()));
            self.metrics.add_peer(&url);
            match next
                .iter()
                .position(|p| p.validator_id.as_ref() == Some(id))
            {
                Some(k) => next[k] = peer,
                None => next.push(peer),
            }
            tracing::info!(validator = %id, url, "validator peer added");
            changed += 1;
        }
        if changed > 0 {
            self.peers.store(Arc::new(next));
        }
        changed
    }

    pub(crate) fn views(&self) -> Vec<PeerView> {
        let now = Instant::now();
        self.peers.load().iter().map(|p| p.view(now)).collect()
    }

    pub(crate) async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        peer: &Peer,
        path: &str,
        body: &B,
    ) -> Result<T, PeerError> {
        self.post(peer, path, body, false).await
    }

    /// [`PeerSet::post_json`] through an open breaker as a half-open probe
    /// ([`Breaker::try_acquire_probe`]).
    pub(crate) async fn post_json_probe<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        peer: &Peer,
        path: &str,
        body: &B,
    ) -> Result<T, PeerError> {
        self.post(peer, path, body, true).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        peer: &Peer,
        path: &str,
        body: &B,
        probe: bool,
    ) -> Result<T, PeerError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| PeerError::BadAnswer(format!("cannot encode the request: {e}")))?;
        let url = format!("{}{path}", peer.url);
        self.call(peer, probe, || {
            self.client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
        })
        .await
    }

    /// A GET through an open breaker as a half-open probe.
    pub(crate) async fn get_json_probe<T: DeserializeOwned>(
        &self,
        peer: &Peer,
        path: &str,
    ) -> Result<T, PeerError> {
        let url = format!("{}{path}", peer.url);
        self.call(peer, true, || self.client.get(&url)).await
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        peer: &Peer,
        path: &str,
    ) -> Result<T, PeerError> {
        let url = format!("{}{path}", peer.url);
        self.call(peer, false, || self.client.get(&url)).await
    }

    /// One call through the peer's breaker (as a probe through an open one, with
    /// `probe`), with the retry policy, timed and counted.
    async fn call<T: DeserializeOwned>(
        &self,
        peer: &Peer,
        probe: bool,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, PeerError> {
        let (permit, transition) = if probe {
            peer.breaker.try_acquire_probe(Instant::now())
        } else {
            peer.breaker.try_acquire(Instant::now())
        };
        self.note_transition(peer, transition);
        let permit = match permit {
            Ok(p) => p,
            Err(rejected) => {
                let e = PeerError::BreakerOpen(rejected.retry_after);
                self.count(peer, &e);
                return Err(e);
            }
        };
        let started = Instant::now();
        let fate = crate::faults::next_call();
        if !fate.delay.is_zero() {
            tokio::time::sleep(fate.delay).await;
        }
        let answer = if fate.lose_request {
            Err(PeerError::Connect("request lost (NODE0_NET_FAULTS)".into()))
        } else {
            let (answer, _attempts) = self
                .retry
                .run(|| async {
                    let response = request().send().await?;
                    let status = response.status();
                    let body = read_limited(response).await?;
                    Ok((status, body))
                })
                .await;
            match answer {
                Ok(_) if fate.lose_answer => Err(PeerError::Timeout),
                other => other.map_err(|e| classify(&e)),
            }
        };
        let elapsed = started.elapsed();
        self.metrics
            .peer_request_duration
            .get_or_create(&PeerLabels {
                peer: peer.url.clone(),
            })
            .observe(elapsed.as_secs_f64());
        let result = answer.and_then(|(status, body)| decode(status, &body));
        let failed = result
            .as_ref()
            .err()
            .is_some_and(PeerError::is_peer_failure);
        let transition = peer.breaker.record(permit, !failed, Instant::now());
        self.note_transition(peer, transition);
        peer.note(&result, elapsed);
        match &result {
            Ok(_) => self.count_ok(peer),
            Err(e) => self.count(peer, e),
        }
        result
    }

    fn count_ok(&self, peer: &Peer) {
        self.metrics
            .peer_calls
            .get_or_create(&PeerOutcomeLabels {
                peer: peer.url.clone(),
                outcome: "ok".into(),
            })
            .inc();
    }

    fn count(&self, peer: &Peer, e: &PeerError) {
        self.metrics
            .peer_calls
            .get_or_create(&PeerOutcomeLabels {
                peer: peer.url.clone(),
                outcome: e.outcome().into(),
            })
            .inc();
    }

    fn note_transition(&self, peer: &Peer, t: Option<Transition>) {
        let Some(t) = t else { return };
        tracing::info!(peer = %peer.url, from = t.from.as_str(), to = t.to.as_str(), "circuit breaker");
        self.metrics
            .circuit_breaker_state
            .get_or_create(&PeerLabels {
                peer: peer.url.clone(),
            })
            .set(t.to.gauge());
        self.metrics
            .circuit_breaker_transitions
            .get_or_create(&PeerTransitionLabels {
                peer: peer.url.clone(),
                to: t.to.as_str().into(),
            })
            .inc();
    }
}

impl Peer {
    fn new(url: String, validator_id: Option<Hash32>, breaker: BreakerConfig) -> Peer {
        Peer {
            url,
            validator_id,
            breaker: Breaker::new(breaker),
            last: Mutex::new(LastCall::default()),
        }
    }

    pub(crate) fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// Whether the last call got an answer (`None` before any call).
    pub(crate) fn reachable(&self) -> Option<bool> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match (last.ok_at_ms, last.error_at_ms) {
            (None, None) => None,
            (Some(ok), Some(err)) => Some(ok >= err),
            (ok, _) => Some(ok.is_some()),
        }
    }

    fn note<T>(&self, result: &Result<T, PeerError>, elapsed: Duration) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        match result {
            Ok(_) | Err(PeerError::Refused { .. }) => {
                last.ok_at_ms = Some(now);
                last.latency_ms = Some(elapsed.as_secs_f64() * 1000.0);
                if result.is_ok() {
                    last.error = None;
                }
            }
            Err(e) => {
                last.error = Some(e.to_string());
                last.error_at_ms = Some(now);
            }
        }
    }

    fn view(&self, now: Instant) -> PeerView {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (window_calls, window_failures) = self.breaker.window_counts(now);
        let reachable = match (last.ok_at_ms, last.error_at_ms) {
            (None, None) => None,
            (Some(ok), Some(err)) => Some(ok >= err),
            (ok, _) => Some(ok.is_some()),
        };
        PeerView {
            url: self.url.clone(),
            validator_id: self.validator_id.map(|h| h.to_hex()),
            reachable,
            latency_ms: last.latency_ms,
            last_ok_at_ms: last.ok_at_ms,
            last_error: last.error,
            last_error_at_ms: last.error_at_ms,
            circuit_breaker: self.breaker.state(now).as_str().into(),
            window_calls,
            window_failures,
        }
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_PEER_BODY {
            // Keep what fits: `decode` reports the body as too large.
            body.extend_from_slice(&chunk[..MAX_PEER_BODY.saturating_sub(body.len())]);
            body.push(0);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn classify(e: &reqwest::Error) -> PeerError {
    if e.is_timeout() {
        PeerError::Timeout
    } else if e.is_connect() {
        PeerError::Connect(e.to_string())
    } else {
        PeerError::BadAnswer(e.to_string())
    }
}

fn decode<T: DeserializeOwned>(status: reqwest::StatusCode, body: &[u8]) -> Result<T, PeerError> {
    if body.len() > MAX_PEER_BODY {
        return Err(PeerError::BadAnswer(format!(
            "body larger than {MAX_PEER_BODY} bytes"
        )));
    }
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|e| PeerError::BadAnswer(format!("body does not parse: {e}")));
    }
    if status.is_client_error() {
        #[derive(serde::Deserialize)]
        struct ProblemBody {
            code: Option<String>,
            detail: Option<String>,
        }
        let p: Option<ProblemBody> = serde_json::from_slice(body).ok();
        return Err(PeerError::Refused {
            status: status.as_u16(),
            code: p
                .as_ref()
                .and_then(|p| p.code.clone())
                .unwrap_or_else(|| "unknown".into()),
            detail: p.and_then(|p| p.detail).unwrap_or_default(),
        });
    }
    Err(PeerError::BadAnswer(format!("status {status}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn every_outcome_and_breaker_state_has_a_series_from_the_start() {
        let errors = [
            PeerError::BreakerOpen(Duration::ZERO),
            PeerError::Connect(String::new()),
            PeerError::Timeout,
            PeerError::Refused {
                status: 409,
                code: String::new(),
                detail: String::new(),
            },
            PeerError::BadAnswer(String::new()),
        ];
        for e in &errors {
            assert!(
                crate::metrics::PEER_OUTCOMES.contains(&e.outcome()),
                "{}",
                e.outcome()
            );
        }
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            assert!(crate::metrics::BREAKER_STATES.contains(&state.as_str()));
        }
    }

    #[tokio::test]
    async fn registered_validators_become_peers_at_their_address() {
        let id = |b: u8| Hash32([b; 32]);
        let set = PeerSet::new(
            vec![
                ("http://a:1".into(), Some(id(1))),
                ("http://c:3/".into(), None),
            ],
            Duration::from_millis(200),
            BreakerConfig::default(),
            Arc::new(Metrics::new()),
        )
        .expect("peer set");
        let before = set.peers();
        // Known at its address: nothing changes.
        assert_eq!(set.add_validators(&[(id(1), "http://a:1/".into())]), 0);
        assert!(Arc::ptr_eq(&before, &set.peers()));
        // A new validator, and one at a configured URL that had no id.
        assert_eq!(
            set.add_validators(&[(id(2), "http://b:2".into()), (id(3), "http://c:3".into())]),
            2
        );
        let urls = |set: &PeerSet| {
            set.peers()
                .iter()
                .map(|p| (p.url.clone(), p.validator_id))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            urls(&set),
            vec![
                ("http://a:1".to_string(), Some(id(1))),
                ("http://b:2".to_string(), Some(id(2))),
                ("http://c:3".to_string(), Some(id(3))),
            ]
        );
        assert!(set.by_validator(&id(2)).is_some());
        // Registered again elsewhere: called there; an address another validator has
        // stays that validator's.
        assert_eq!(set.add_validators(&[(id(1), "http://a:9".into())]), 1);
        assert_eq!(set.add_validators(&[(id(4), "http://b:2".into())]), 0);
        assert_eq!(
            set.by_validator(&id(1)).map(|p| p.url.clone()),
            Some("http://a:9".into())
        );
        assert!(set.by_validator(&id(4)).is_none());
        assert!(!before.iter().all(|p| set.contains(p)));
    }

    use futures::stream::{self, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that flaps, every second: 300 ms healthy (`200 {}`), 600 ms sick (`503`),
    /// 100 ms hanging up on every connection. It fails more often than not, so the
    /// breaker opens, probes and closes again and again.
    fn flapping_server(
        listener: tokio::net::TcpListener,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let started = Instant::now();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok((mut sock, _))) =
                    tokio::time::timeout(Duration::from_millis(50), listener.accept()).await
                else {
                    continue;
                };
                let phase = started.elapsed().as_millis() % 1000;
                tokio::spawn(async move {
                    if phase >= 900 {
                        return; // dropped: the connection closes unanswered
                    }
                    let mut buf = [0u8; 4096];
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer: &[u8] = if phase < 300 {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
                    } else {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    };
                    let _ = sock.write_all(answer).await;
                });
            }
        })
    }

    fn resident_bytes() -> u64 {
        std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .map_or(0, |pages| pages * 4096)
    }

    async fn calls(set: &PeerSet, peer: &Peer, n: usize) {
        stream::iter(0..n)
            .for_each_concurrent(32, |i| async move {
                // Some calls are dropped mid-flight, as a fan-out drops calls once it
                // has its quorum: their breaker permits must be released all the same.
                let call = set.get_json::<serde_json::Value>(peer, "/soak");
                let refused = if i % 7 == 0 {
                    tokio::time::timeout(Duration::from_micros(300), call)
                        .await
                        .ok()
                } else {
                    Some(call.await)
                };
                // A caller refused by an open breaker does not spin; a fan-out would
                // wait for the next block.
                if let Some(Err(PeerError::BreakerOpen(_))) = refused {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
    }

    /// The seed's timer-leak fix, proven: 200,000 calls against a peer that keeps going
    /// up and down leave the task count and the resident memory where they were after
    /// the warm-up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn soak_against_a_flapping_peer_leaks_no_tasks_or_memory() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let server = flapping_server(listener, stop.clone());
        let metrics = Arc::new(Metrics::new());
        let set = PeerSet::new(
            vec![(format!("http://127.0.0.1:{port}"), None)],
            Duration::from_millis(200),
            BreakerConfig {
                open_for: Duration::from_millis(20),
                ..Default::default()
            },
            metrics.clone(),
        )
        .unwrap();
        let peer = set.peers()[0].clone();
        calls(&set, &peer, 20_000).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tasks_before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let rss_before = resident_bytes();
        calls(&set, &peer, 180_000).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tasks_after = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let rss_after = resident_bytes();
        stop.store(true, Ordering::Relaxed);
        let _ = server.await;

        assert!(
            tasks_after <= tasks_before + 4,
            "tasks grew from {tasks_before} to {tasks_after}"
        );
        assert!(
            rss_after <= rss_before + (16 << 20),
            "resident memory grew from {rss_before} to {rss_after} bytes"
        );
        let text = metrics.render();
        let count = |outcome: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("peer_calls_total")
                        && l.contains(&format!("outcome=\"{outcome}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        eprintln!(
            "soak: ok {} bad_answer {} breaker_open {}; tasks {tasks_before} -> {tasks_after}; resident {rss_before} -> {rss_after} bytes",
            count("ok"),
            count("bad_answer"),
            count("breaker_open")
        );
        // The peer was really called, really failed, and the breaker really cut calls.
        assert!(
            count("ok") > 0.0 && count("bad_answer") > 0.0 && count("breaker_open") > 0.0,
            "{text}"
        );
        assert!(
            text.contains("to=\"open\"") && text.contains("to=\"closed\""),
            "{text}"
        );
        let (window_calls, _) = peer.breaker.window_counts(Instant::now());
        assert!(window_calls > 0);
    }
}
