//! The rate-limit middleware: classifies a request by its route, asks the [`Limiter`]
//! about its client, and answers 429 or passes it on with the `RateLimit-*` headers.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use tower::{Layer, Service};

use super::listener::PeerAddr;
use crate::limit::{Class, Decision, Limiter};
use crate::metrics::Metrics;
use crate::problem::{ErrorCode, Problem};

/// The class of a request, or `None` for the exempt routes: the operational ones, and
/// the validator network's (a proposal's proposer signature is checked before any other
/// work, a certificate is at most one signature per active validator, and a proposer
/// making a block every slot must never be throttled by its own validators).
pub(crate) fn classify(method: &Method, path: &str) -> Option<Class> {
    // The validator network's own calls: blocks, certificates, and the proposals a
    // validator catching up fetches.
    let peer_route = matches!(path, "/api/consensus/submit-block" | "/api/consensus/qc")
        || (path.starts_with("/api/consensus/block/") && path.ends_with("/proposal"));
    if super::health::is_probe(path) || peer_route {
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

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn set_headers(h: &mut HeaderMap, d: &Decision) {
    h.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(d.limit));
    h.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(d.remaining));
    h.insert(RATELIMIT_RESET.clone(), HeaderValue::from(d.reset_s()));
}

/// The middleware as a tower layer (innermost of the stack in `http::router`).
#[derive(Clone)]
pub(crate) struct LimitLayer {
    limiter: Option<Arc<Limiter>>,
    metrics: Arc<Metrics>,
}

impl LimitLayer {
    pub(crate) fn new(limiter: Option<Arc<Limiter>>, metrics: Arc<Metrics>) -> LimitLayer {
        LimitLayer { limiter, metrics }
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
pub(crate) struct Limit<S> {
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
                let p = Problem::retry_later(
                    ErrorCode::RateLimited,
                    format!(
                        "too many {} requests from this client; retry in {retry} s",
                        class.as_str()
                    ),
                    u32::try_from(retry).unwrap_or(u32::MAX),
                );
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
