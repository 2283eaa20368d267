//! Per-request middleware: the trace id, one log line (at debug for a successful probe),
//! HTTP metrics, and problem+json for every error the framework itself produces (404
//! route, 405 method, 413, timeouts).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::MatchedPath;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::metrics::Metrics;
use crate::problem::{ErrorCode, Problem, PROBLEM_JSON};
use crate::trace_id::{self, TRACE_HEADER};

/// Inner layer (on matched routes only): hands the route template out to [`Trace`],
/// which runs before routing and so cannot see it on the request.
#[derive(Clone, Copy, Default)]
pub(crate) struct CarryRouteLayer;

impl<S> Layer<S> for CarryRouteLayer {
    type Service = CarryRoute<S>;
    fn layer(&self, inner: S) -> CarryRoute<S> {
        CarryRoute { inner }
    }
}

#[derive(Clone)]
pub(crate) struct CarryRoute<S> {
    inner: S,
}

impl<S> Service<Request<Body>> for CarryRoute<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CarryRouteFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let matched = req.extensions().get::<MatchedPath>().cloned();
        CarryRouteFuture {
            inner: self.inner.call(req),
            matched,
        }
    }
}

pin_project! {
    pub(crate) struct CarryRouteFuture<F> {
        #[pin]
        inner: F,
        matched: Option<MatchedPath>,
    }
}

impl<F, E> Future for CarryRouteFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = ready!(this.inner.poll(cx))?;
        if let Some(m) = this.matched.take() {
            resp.extensions_mut().insert(m);
        }
        Poll::Ready(Ok(resp))
    }
}

/// The outer layer: the trace id (a task-local while the request runs, and a response
/// header), problem+json for the framework's own errors, the HTTP metrics and the log
/// line. A hand-written service rather than `from_fn`: that one clones and boxes the
/// inner service and boxes its future on every request (BENCHMARKS.md).
#[derive(Clone)]
pub(crate) struct TraceLayer {
    metrics: Arc<Metrics>,
}

impl TraceLayer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> TraceLayer {
        TraceLayer { metrics }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Trace<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<Body>> for Trace<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let start = Instant::now();
        let trace_id = trace_id::of_request(req.headers());
        let method = req.method().clone();
        // `call` of the services inside only builds their futures; the handlers run
        // when the future is polled, inside the task-local's scope.
        let inner = trace_id::scope(trace_id.clone(), self.inner.call(req));
        TraceFuture {
            inner,
            start,
            trace_id,
            method,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project! {
    pub(crate) struct TraceFuture<F> {
        #[pin]
        inner: TaskLocalFuture<String, F>,
        start: Instant,
        trace_id: String,
        method: Method,
        metrics: Arc<Metrics>,
    }
}

impl<F, B> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = ready!(this.inner.poll(cx));
        let mut resp = resp.map(Body::new);
        let status = resp.status();
        if status.is_client_error() || status.is_server_error() {
            // In the scope again: the problem body carries the trace id.
            resp = trace_id::sync_scope(this.trace_id.clone(), || as_problem(resp));
        }
        let route = resp.extensions().get::<MatchedPath>().cloned();
        let route = route.as_ref().map_or("unmatched", |p| p.as_str());
        Poll::Ready(Ok(finish(
            resp,
            *this.start,
            this.trace_id,
            this.method,
            route,
            this.metrics,
        )))
    }
}

/// The trace id header, the metrics and the log line of an answered request; `route`
/// is its route template, or "unmatched".
fn finish(
    resp: Response,
    start: Instant,
    trace_id: &str,
    method: &Method,
    route: &str,
    metrics: &Metrics,
) -> Response {
    let elapsed = start.elapsed();
    metrics.observe_http(method.as_str(), route, resp.status().as_u16(), elapsed);
    answered(resp, trace_id, method, route, elapsed)
}

/// The trace id header and the log line of an answered request, its metrics counted.
pub(crate) fn answered(
    mut resp: Response,
    trace_id: &str,
    method: &Method,
    route: &str,
    elapsed: std::time::Duration,
) -> Response {
    if let Ok(v) = HeaderValue::from_str(trace_id) {
        resp.headers_mut().insert(TRACE_HEADER, v);
    }
    let status = resp.status().as_u16();
    // Probes are polled all the time by orchestrators and monitors: their lines would
    // bury the requests an operator looks for, and formatting them was a large share of
    // the node's CPU on `/health` (BENCHMARKS.md). A failed probe is still logged at info.
    macro_rules! request_line {
        ($level:ident) => {
            tracing::$level!(
                target: "node0::http",
                trace_id = %trace_id,
                method = %method,
                route = %route,
                status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            )
        };
    }
    if super::health::is_probe(route) && status < 400 {
        request_line!(debug);
    } else {
        request_line!(info);
    }
    resp
}

/// Error responses that are not problem+json yet (the framework's own) become one.
fn as_problem(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    // Problem bodies and deliberate JSON answers (`/ready` and consensus health at 503)
    // stay as they are; the framework's plain-text errors are rewritten.
    let is_json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(PROBLEM_JSON.as_bytes()) || v.starts_with(b"application/json")
    });
    if is_json {
        return resp;
    }
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "request body is too large"),
        // Problems and the load-shed answer are JSON already: a bare 503 is the
        // per-request timeout.
        StatusCode::SERVICE_UNAVAILABLE => {
            (ErrorCode::Timeout, "the request did not complete in time")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (ErrorCode::UnsupportedMediaType, "send application/json")
        }
        s if s.is_server_error() => (ErrorCode::Internal, "the server failed to answer"),
        _ => (ErrorCode::BadRequest, "the request is not valid"),
    };
    // The status stays the framework's own (a 4xx the table does not name, say).
    let mut p = Problem::new(code, detail).with_status(status);
    p.retry_after_s = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .or((status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
    p.to_response()
}
