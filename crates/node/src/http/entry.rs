//! Where each request enters the node: `GET /health` is answered here, everything else
//! goes on to the router and its middleware.
//!
//! Liveness is answered ahead of the middleware for two reasons. An orchestrator that
//! polls it must get its 200 while the node sheds load: behind the concurrency limit a
//! busy node answered 503 and could be restarted for being busy. And it is the route
//! monitors and load balancers call most, so it should cost no more than it needs: it
//! does no I/O (no timeout), its body is under the compression threshold, probes are
//! exempt from rate limits, and it has one route (no routing). What every answer
//! carries, it keeps: the trace id header, the HTTP metrics, the log line (at debug).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use axum::serve::IncomingStream;
use axum::Router;
use futures::future::Either;
use tower::Service;

use super::{health, trace};
use crate::http::listener::{CountingListener, PeerAddr};
use crate::metrics::HttpRouteMetrics;
use crate::state::AppState;

/// Makes one [`Entry`] per accepted connection (what `axum::serve` calls a make-service).
#[derive(Clone)]
pub(crate) struct MakeEntry {
    router: Router,
    liveness: Arc<Liveness>,
}

impl MakeEntry {
    pub(crate) fn new(router: Router, state: AppState) -> MakeEntry {
        let metrics = state.metrics.http_route("GET", "/health", 200);
        MakeEntry {
            router,
            liveness: Arc::new(Liveness { state, metrics }),
        }
    }
}

impl Service<IncomingStream<'_, CountingListener>> for MakeEntry {
    type Response = Entry;
    type Error = Infallible;
    type Future = Ready<Result<Entry, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'_, CountingListener>) -> Self::Future {
        ready(Ok(Entry {
            router: self.router.clone(),
            liveness: self.liveness.clone(),
            peer: PeerAddr(*stream.remote_addr()),
        }))
    }
}

/// The service of one connection.
#[derive(Clone)]
pub(crate) struct Entry {
    router: Router,
    liveness: Arc<Liveness>,
    peer: PeerAddr,
}

impl Service<Request<Body>> for Entry {
    type Response = Response;
    type Error = Infallible;
    type Future =
        Either<Ready<Result<Response, Infallible>>, <Router as Service<Request<Body>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<Body>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // A body (odd on a GET) takes the router's path, which drains what it refuses.
        if req.method() == Method::GET
            && req.uri().path() == "/health"
            && req.body().is_end_stream()
        {
            return Either::Left(ready(Ok(self.liveness.answer(&req))));
        }
        // The peer address reaches the rate limiter as `ConnectInfo`.
        req.extensions_mut().insert(ConnectInfo(self.peer));
        Either::Right(self.router.call(req))
    }
}

/// What answering `GET /health` needs, resolved once (`metrics`: the 200 series).
struct Liveness {
    state: AppState,
    metrics: HttpRouteMetrics,
}

impl Liveness {
    fn answer(&self, req: &Request<Body>) -> Response {
        let start = Instant::now();
        let trace_id = crate::trace_id::of_request(req.headers());
        let resp = health::liveness(&self.state);
        let elapsed = start.elapsed();
        match resp.status() {
            StatusCode::OK => self.metrics.observe(elapsed),
            other => self
                .state
                .metrics
                .observe_http("GET", "/health", other.as_u16(), elapsed),
        }
        trace::answered(resp, &trace_id, &Method::GET, "/health", elapsed)
    }
}
