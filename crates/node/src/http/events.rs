//! Live events over Server-Sent Events and WebSocket.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::Response;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::events::Event;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Counts an open stream in `event_subscribers` for as long as it lives.
struct Subscribed(AppState);

impl Subscribed {
    fn new(state: AppState) -> Subscribed {
        state.metrics.event_subscribers.inc();
        Subscribed(state)
    }
    fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.metrics.event_subscribers.dec();
    }
}

/// `block_proposed`, `block_certified`, `block_finalized`, `attestation_accepted`,
/// `validator_update`.
#[utoipa::path(get, path = "/api/events", tag = "events", responses((status = 200, content_type = "text/event-stream")))]
pub(crate) async fn sse(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let guard = Subscribed::new(state.clone());
    let mut stop = state.shutdown.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let stream =
        BroadcastStream::new(state.events.subscribe()).filter_map(move |item| match item {
            Ok(ev) => Some(Ok(to_sse(&ev))),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                guard.metrics().events_dropped.inc_by(n);
                None
            }
        });
    let stream = futures::StreamExt::take_until(stream, Box::pin(stopped));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn to_sse(ev: &Arc<Event>) -> SseEvent {
    SseEvent::default()
        .event(ev.kind)
        .data(serde_json::to_string(&ev.data).unwrap_or_default())
}

#[utoipa::path(get, path = "/ws/live-updates", tag = "events", responses((status = 101, description = "WebSocket of the same events as /api/events")))]
pub(crate) async fn ws(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| pump(state, socket))
}

async fn pump(state: AppState, mut socket: WebSocket) {
    let guard = Subscribed::new(state.clone());
    let mut rx = state.events.subscribe();
    let mut stop = state.shutdown.subscribe();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    let text = serde_json::json!({"event": ev.kind, "data": ev.data}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    guard.metrics().events_dropped.inc_by(n);
                }
                Err(RecvError::Closed) => break,
            },
            msg = socket.recv() => match msg {
                // The client only listens; close or error ends the stream.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}
