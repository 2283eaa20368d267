//! Peer status: every peer this node calls, with reachability, latency and its circuit
//! breaker (`crate::peers`).

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::peers::set::PeerView;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Peers {
    pub(crate) items: Vec<PeerView>,
    pub(crate) count: usize,
}

#[utoipa::path(get, path = "/api/p2p/peers", tag = "p2p", responses((status = 200, body = Peers)))]
pub(crate) async fn peers(State(state): State<AppState>) -> Json<Peers> {
    let items = state.consensus.network.peers.views();
    Json(Peers {
        count: items.len(),
        items,
    })
}
