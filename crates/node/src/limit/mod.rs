//! Rate limiting (SPEC §5.5): GCRA quotas per client address and route class.
//!
//! Without Redis the in-process limiter ([`local`]) decides. With Redis, one Lua script
//! ([`gcra::SCRIPT`]) decides for all replicas in one round trip, against one TAT key
//! per client and class; when Redis errs or is slower than its timeout, the local
//! limiter decides instead (counted in `rate_limit_fallbacks_total`). Refusals are 429
//! problem+json with `Retry-After` and the `RateLimit-*` headers of the IETF draft,
//! which allowed answers carry too. `/health`, `/ready` and `/metrics` are exempt.

pub mod client;
pub mod gcra;
pub mod local;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::api::problem::Problem;
use crate::config::RateLimitConfig;
use crate::listener::PeerAddr;
use crate::metrics::Metrics;
use crate::redis_link::RedisLink;
use crate::state::AppState;
use gcra::{Decision, Gcra};
use local::LocalClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Read,
    Submit,
    Admin,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Submit => "submit",
            Class::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The class of a request, or `None` for the exempt routes: the operational ones, and
/// the validator network's (a proposal's proposer signature is checked before any other
/// work, a certificate is at most one signature per active validator, and a proposer
/// making a block every slot must never be throttled by its own validators).
pub fn classify(method: &Method, path: &str) -> Option<Class> {
    if crate::api::health::is_probe(path)
        || matches!(path, "/api/consensus/submit-block" | "/api/consensus/qc")
    {
        return None;
    }
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        return Some(Class::Read);
    }
    if path.starts_with("/api/validator/attestation/") {
        // submit, batch and verify: the signature-checking write path.
        Some(Class::Submit)
    } else {
        // The registry writes (register, exit, slash), peer calls, and anything else
        // that changes state.
        Some(Class::Admin)
    }
}

struct ClassLimiter {
    gcra: Gcra,
    local: LocalClass,
}

pub struct Limiter {
    classes: [ClassLimiter; 3],
    redis: Option<Arc<RedisLink>>,
    trusted: Vec<IpNet>,
    sha: String,
    metrics: Arc<Metrics>,
}

impl Limiter {
    /// The limiter, and a task that keeps the local limiter's memory bounded.
    pub fn start(
        config: &RateLimitConfig,
        trusted: Vec<IpNet>,
        redis: Option<Arc<RedisLink>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Limiter> {
        let class = |q| {
            let gcra = Gcra::new(q);
            ClassLimiter {
                gcra,
                local: LocalClass::new(gcra),
            }
        };
        let limiter = Arc::new(Limiter {
            classes: [
                class(config.read),
                class(config.submit),
                class(config.admin),
            ],
            redis,
            trusted,
            sha: redis::Script::new(gcra::SCRIPT).get_hash().to_owned(),
            metrics,
        });
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(local::SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(l) = weak.upgrade() else { return };
                let keys: usize = l.classes.iter().map(|c| c.local.sweep()).sum();
                l.metrics.rate_limit_keys.set(keys as i64);
            }
        });
        limiter
    }

    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client::bucket(client::client_ip(peer, headers, &self.trusted))
    }

    /// Decides one request of `class` from `client` (already a bucket).
    pub async fn decide(&self, class: Class, client: IpAddr) -> Decision {
        let c = &self.classes[class.index()];
        let local = c.local.check(&client);
        let Some(link) = &self.redis else {
            return local;
        };
        let key = link.key(&format!("rl:{}:{client}", class.as_str()));
        let (interval, burst) = (c.gcra.interval_us, c.gcra.burst);
        let sha = self.sha.clone();
        let reply = link
            .call(|mut conn| async move {
                let evalsha = redis::cmd("EVALSHA")
                    .arg(&sha)
                    .arg(1)
                    .arg(&key)
                    .arg(interval)
                    .arg(burst)
                    .query_async::<Vec<i64>>(&mut conn)
                    .await;
                match evalsha {
                    // Redis restarted or flushed its scripts: EVAL sends the body once
                    // and caches it again for the EVALSHAs after it.
                    Err(e) if e.kind() == redis::ErrorKind::NoScriptError => {
                        redis::cmd("EVAL")
                            .arg(gcra::SCRIPT)
                            .arg(1)
                            .arg(&key)
                            .arg(interval)
                            .arg(burst)
                            .query_async::<Vec<i64>>(&mut conn)
                            .await
                    }
                    other => other,
                }
            })
            .await;
        match reply.map(|r| Decision::from_script(&c.gcra, &r)) {
            Ok(Some(d)) => d,
            Ok(None) => {
                self.metrics.rate_limit_fallback("error");
                local
            }
            Err(e) => {
                self.metrics.rate_limit_fallback(e.reason());
                local
            }
        }
    }
}

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn set_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(d.limit));
    h.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(d.remaining));
    h.insert(RATELIMIT_RESET.clone(), HeaderValue::from(d.reset_s()));
}

/// The middleware as a tower layer (innermost of the stack in `api::router`).
#[derive(Clone)]
pub struct LimitLayer {
    limiter: Option<Arc<Limiter>>,
    metrics: Arc<Metrics>,
}

impl LimitLayer {
    pub fn new(state: &AppState) -> LimitLayer {
        LimitLayer {
            limiter: state.limiter.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

impl<S> Layer<S> for LimitLayer {
    type Service = Limit<S>;
    fn layer(&self, inner: S) -> Limit<S> {
        Limit {
            inner,
            limiter: self.limiter.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Classify, find the client, decide; 429 or pass with the headers. An exempt request,
/// or any request with limiting off, goes straight to the inner service: no task, no
/// allocation.
#[derive(Clone)]
pub struct Limit<S> {
    inner: S,
    limiter: Option<Arc<Limiter>>,
    metrics: Arc<Metrics>,
}

type Limited = BoxFuture<'static, Result<Response, Infallible>>;

impl<S> Service<Request> for Limit<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, Limited>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let Some(limiter) = self.limiter.clone() else {
            return Either::Left(self.inner.call(req));
        };
        let Some(class) = classify(req.method(), req.uri().path()) else {
            return Either::Left(self.inner.call(req));
        };
        // The service made ready by `poll_ready` answers this request; the clone stays
        // for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        Either::Right(Box::pin(async move {
            // Requests that did not come through the TCP listener (in-process tests)
            // have no peer address; they share one key.
            let peer = req
                .extensions()
                .get::<ConnectInfo<PeerAddr>>()
                .map(|c| c.0 .0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let client = limiter.client(peer, req.headers());
            let d = limiter.decide(class, client).await;
            if !d.allowed {
                metrics.limited(class.as_str());
                let retry = d.retry_after_s();
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "too many {} requests from this client; retry in {retry} s",
                        class.as_str()
                    ),
                );
                p.retry_after_s = Some(u32::try_from(retry).unwrap_or(u32::MAX));
                let mut resp = p.into_response();
                set_headers(resp.headers_mut(), &d);
                return Ok(resp);
            }
            let mut resp = inner.call(req).await?;
            set_headers(resp.headers_mut(), &d);
            Ok(resp)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let get = Method::GET;
        let post = Method::POST;
        for exempt in ["/health", "/ready", "/metrics"] {
            assert_eq!(classify(&get, exempt), None);
        }
        assert_eq!(classify(&get, "/healthz"), Some(Class::Read));
        assert_eq!(
            classify(&get, "/api/validator/attestation/00ff"),
            Some(Class::Read)
        );
        assert_eq!(classify(&get, "/api/consensus/tipset"), Some(Class::Read));
        for submit in ["submit", "batch", "verify"] {
            assert_eq!(
                classify(&post, &format!("/api/validator/attestation/{submit}")),
                Some(Class::Submit)
            );
        }
        for admin in ["/api/validator/register", "/api/validator/slash"] {
            assert_eq!(classify(&post, admin), Some(Class::Admin));
        }
        for peer in ["/api/consensus/submit-block", "/api/consensus/qc"] {
            assert_eq!(classify(&post, peer), None);
        }
    }
}
