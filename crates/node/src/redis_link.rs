//! The node's one connection to Redis, shared by the L2 cache and the rate limiter.
//!
//! Redis is an accelerator, never a dependency: every command is bounded by a short
//! timeout, and the first error or timeout opens a short back-off during which callers
//! are told "down" at once instead of each waiting for the timeout again. The node starts
//! and serves with Redis down; the connection is made (and remade) in the background.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::metrics::Metrics;

/// After a failed command, how long callers skip Redis before trying it again.
pub(crate) const BACKOFF: Duration = Duration::from_secs(1);
/// Pause between attempts to make the first connection.
const CONNECT_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// Not connected yet, or backing off after a failure.
    #[error("redis is down")]
    Down,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl LinkError {
    /// The `reason` label of the fallback counters.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            LinkError::Down => "down",
            LinkError::Timeout(_) => "timeout",
            LinkError::Redis(_) => "error",
        }
    }
}

pub(crate) struct RedisLink {
    conn: ArcSwapOption<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` before which commands are not tried.
    down_until_ms: AtomicU64,
    metrics: Arc<Metrics>,
}

impl RedisLink {
    /// Checks the URL (a malformed one is a configuration error) and starts connecting in
    /// the background; the link says [`LinkError::Down`] until connected.
    pub(crate) fn start(
        url: &str,
        prefix: String,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RedisLink>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let link = Arc::new(RedisLink {
            conn: ArcSwapOption::empty(),
            prefix,
            timeout,
            epoch: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            metrics,
        });
        // The connector holds only a weak reference: a dropped node ends it.
        let weak = Arc::downgrade(&link);
        let config = ConnectionManagerConfig::new()
            // Reconnects are retried a few times, quickly; commands never wait for them
            // past `timeout` anyway.
            .set_number_of_retries(2)
            .set_factor(10)
            .set_max_delay(500)
            .set_connection_timeout(Duration::from_millis(500))
            .set_response_timeout(timeout.max(Duration::from_millis(10)) * 4);
        tokio::spawn(async move {
            loop {
                let attempt = tokio::time::timeout(
                    Duration::from_secs(2),
                    ConnectionManager::new_with_config(client.clone(), config.clone()),
                )
                .await;
                let Some(link) = weak.upgrade() else { return };
                match attempt {
                    Ok(Ok(manager)) => {
                        tracing::info!("redis connected");
                        link.conn.store(Some(Arc::new(manager)));
                        return;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "redis: cannot connect yet"),
                    Err(_) => tracing::warn!("redis: connection attempt timed out"),
                }
                drop(link);
                tokio::time::sleep(CONNECT_RETRY).await;
            }
        });
        Ok(link)
    }

    /// `prefix` + `suffix`: every key this node writes.
    pub(crate) fn key(&self, suffix: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + suffix.len());
        k.push_str(&self.prefix);
        k.push_str(suffix);
        k
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs one command (or pipeline) within the timeout. A failure starts the back-off
    /// so that the next callers do not wait for Redis too.
    pub(crate) async fn run<T, F, Fut>(&self, within: Duration, f: F) -> Result<T, LinkError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.down_until_ms.load(Ordering::Relaxed) > self.now_ms() {
            return Err(LinkError::Down);
        }
        let Some(conn) = self.conn.load_full() else {
            return Err(LinkError::Down);
        };
        let result = match tokio::time::timeout(within, f((*conn).clone())).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => LinkError::Redis(e),
            Err(_) => LinkError::Timeout(within),
        };
        self.trip(&result);
        Err(result)
    }

    /// [`run`](Self::run) with the configured timeout.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T, LinkError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.run(self.timeout, f).await
    }

    fn trip(&self, e: &LinkError) {
        let until = self.now_ms() + BACKOFF.as_millis() as u64;
        let before = self.down_until_ms.swap(until, Ordering::Relaxed);
        if before <= self.now_ms() {
            // Once per outage, not once per request.
            tracing::warn!(error = %e, backoff_ms = BACKOFF.as_millis() as u64,
                "redis failed; serving without it for now");
        }
        self.metrics.redis_failure(e.reason());
    }

    /// A PING, for `/ready`: the round trip time, or why not.
    pub(crate) async fn ping(&self) -> Result<Duration, LinkError> {
        let Some(conn) = self.conn.load_full() else {
            return Err(LinkError::Down);
        };
        let start = Instant::now();
        let mut c = (*conn).clone();
        // Not through `run`: a probe ignores the back-off, so that `/ready` tells the truth
        // as soon as Redis is back.
        match tokio::time::timeout(
            self.timeout.max(Duration::from_millis(250)),
            redis::cmd("PING").query_async::<String>(&mut c),
        )
        .await
        {
            Ok(Ok(_)) => {
                self.down_until_ms.store(0, Ordering::Relaxed);
                Ok(start.elapsed())
            }
            Ok(Err(e)) => Err(LinkError::Redis(e)),
            Err(_) => Err(LinkError::Timeout(self.timeout)),
        }
    }
}
