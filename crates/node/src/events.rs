//! The live event stream behind `/api/events` (SSE) and `/ws/live-updates`: a bounded
//! broadcast channel; a subscriber that falls behind loses the oldest events, counted.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

/// Events a subscriber may hold unread before it starts losing them.
pub(crate) const EVENT_BUFFER: usize = 1024;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    /// `block_proposed`, `block_certified`, `block_finalized`, `attestation_accepted`,
    /// `validator_update`.
    pub(crate) kind: &'static str,
    pub(crate) data: serde_json::Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Events {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    pub(crate) fn new() -> Events {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Events { tx }
    }

    /// Sends to every current subscriber; with none, the event is simply not kept.
    pub(crate) fn publish(&self, kind: &'static str, data: serde_json::Value) {
        let _ = self.tx.send(Arc::new(Event { kind, data }));
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
