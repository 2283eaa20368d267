//! The retry policy for calls to peer validators: at most 3 attempts with jittered
//! 50 ms / 200 ms backoff, on connect and timeout errors only. An HTTP status is an
//! answer, and a failure while reading or decoding a body may follow a request
//! the peer already acted on, so neither is ever retried.

use std::future::Future;
use std::time::Duration;

/// The per-call timeout of [`peer_client`] unless configured otherwise.
pub(crate) const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// How often and after what pauses a failed peer call is tried again.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included; 0 is taken as 1.
    pub(crate) attempts: u32,
    /// The pause before each retry; the last entry repeats if there are more retries.
    pub(crate) backoff: Vec<Duration>,
    /// Jitter in basis points of each pause: 5000 spreads it over ±50 %.
    pub(crate) jitter_bps: u32,
}

impl Default for RetryPolicy {
    /// 3 attempts, 50 ms then 200 ms, ±50 %.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: vec![Duration::from_millis(50), Duration::from_millis(200)],
            jitter_bps: 5000,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry `retry` (1-based: 1 is the pause before the second
    /// attempt), jittered so peers retried together do not hit a validator in step.
    pub(crate) fn delay(&self, retry: u32) -> Duration {
        let Some(index) = retry.checked_sub(1) else {
            return Duration::ZERO;
        };
        let Some(base) = self
            .backoff
            .get(index as usize)
            .or_else(|| self.backoff.last())
        else {
            return Duration::ZERO;
        };
        let jitter = u64::from(self.jitter_bps.min(10_000));
        if jitter == 0 {
            return *base;
        }
        let mut random = [0u8; 8];
        // Without randomness the un-jittered pause is still a valid pause.
        if getrandom::fill(&mut random).is_err() {
            return *base;
        }
        // A factor uniform over [1 - jitter, 1 + jitter], in basis points.
        let factor = 10_000 - jitter + u64::from_le_bytes(random) % (2 * jitter + 1);
        let nanos = base.as_nanos().saturating_mul(u128::from(factor)) / 10_000;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Whether an error may be retried: a connect error or a timeout, but not one
    /// met while reading or decoding a body (the peer may already have acted).
    pub(crate) fn retryable(err: &reqwest::Error) -> bool {
        (err.is_connect() || err.is_timeout()) && !err.is_body() && !err.is_decode()
    }

    /// Runs `attempt` up to `attempts` times, sleeping [`delay`](Self::delay) between
    /// tries, while the error is [`retryable`](Self::retryable). Returns the last
    /// result and how many attempts were made.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> (Result<T, reqwest::Error>, u32)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, reqwest::Error>>,
    {
        let attempts = self.attempts.max(1);
        let mut made = 0;
        loop {
            made += 1;
            let result = attempt().await;
            match &result {
                Err(err) if made < attempts && Self::retryable(err) => {
                    tokio::time::sleep(self.delay(made)).await;
                }
                _ => return (result, made),
            }
        }
    }
}

/// The pooled client for peer calls: keep-alive, at most 512 idle connections per host,
/// 15 s idle timeout, a per-call timeout (default [`DEFAULT_CALL_TIMEOUT`]), connect
/// timeout 1 s, no proxy from the environment (peers are reached directly).
pub(crate) fn peer_client(call_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .pool_idle_timeout(Duration::from_secs(15))
        .timeout(call_timeout)
        .connect_timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A local server that answers every request with `response` and counts connections.
    async fn answering(response: &'static [u8]) -> (String, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    // Read the request head before answering.
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = socket.write_all(response).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (url, accepted)
    }

    #[test]
    fn delays_are_jittered_around_the_backoff() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let d1 = policy.delay(1);
            assert!(d1 >= Duration::from_millis(25) && d1 <= Duration::from_millis(75));
            let d2 = policy.delay(2);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(300));
        }
        // The jitter is real: 200 draws are not all the same.
        let draws: std::collections::HashSet<Duration> =
            (0..200).map(|_| policy.delay(1)).collect();
        assert!(draws.len() > 1);
        assert_eq!(policy.delay(0), Duration::ZERO);
        let d3 = policy.delay(3);
        assert!(d3 >= Duration::from_millis(100) && d3 <= Duration::from_millis(300));
        let exact = RetryPolicy {
            jitter_bps: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(exact.delay(1), Duration::from_millis(50));
        assert_eq!(exact.delay(2), Duration::from_millis(200));
    }

    #[tokio::test]
    async fn connect_refused_is_tried_three_times() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let client = peer_client(DEFAULT_CALL_TIMEOUT).unwrap();
        let (result, attempts) = RetryPolicy::default().run(|| client.get(&url).send()).await;
        let err = result.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert_eq!(attempts, 3);
    }

    #[tokio::test]
    async fn silent_server_times_out_three_times() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU32::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            // Keep every connection open and never answer.
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        let client = peer_client(Duration::from_millis(100)).unwrap();
        let (result, attempts) = RetryPolicy::default().run(|| client.get(&url).send()).await;
        let err = result.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(attempts, 3);
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn http_500_is_not_retried() {
        let (url, accepted) = answering(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let client = &peer_client(DEFAULT_CALL_TIMEOUT).unwrap();
        let url = url.as_str();
        let (result, attempts) = RetryPolicy::default()
            .run(|| async move { client.get(url).send().await?.error_for_status() })
            .await;
        let err = result.unwrap_err();
        assert_eq!(
            err.status(),
            Some(reqwest::StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert!(!RetryPolicy::retryable(&err));
        assert_eq!(attempts, 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn decode_error_is_not_retried() {
        let (url, accepted) = answering(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\nconnection: close\r\n\r\nnope!",
        )
        .await;
        let client = &peer_client(DEFAULT_CALL_TIMEOUT).unwrap();
        let url = url.as_str();
        let (result, attempts) = RetryPolicy::default()
            .run(|| async move {
                client
                    .get(url)
                    .send()
                    .await?
                    .json::<serde_json::Value>()
                    .await
            })
            .await;
        let err = result.unwrap_err();
        assert!(err.is_decode(), "{err:?}");
        assert_eq!(attempts, 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
