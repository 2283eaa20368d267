//! Peer status: every peer this node calls, with reachability, latency and its circuit
//! breaker (SPEC §4, §5.3).

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::peers::set::PeerView;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Peers {
    pub items: Vec<PeerView>,
    pub count: usize,
}

#[utoipa::path(get, path = "/api/p2p/peers", tag = "p2p", responses((status = 200, body = Peers)))]
pub async fn peers(State(state): State<AppState>) -> Json<Peers> {
    let items = state.network.peers.views();
    Json(Peers {
        count: items.len(),
        items,
    })
}
