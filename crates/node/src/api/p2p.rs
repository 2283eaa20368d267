//! Peer status. A single-validator network has no peers; the validator network (peer
//! client, breakers) plugs in here.

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Peers {
    pub items: Vec<PeerView>,
    pub count: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PeerView {
    pub url: String,
}

#[utoipa::path(get, path = "/api/p2p/peers", tag = "p2p", responses((status = 200, body = Peers)))]
pub async fn peers(State(state): State<AppState>) -> Json<Peers> {
    let items: Vec<PeerView> = state
        .config
        .peers
        .iter()
        .map(|u| PeerView { url: u.clone() })
        .collect();
    Json(Peers {
        count: items.len(),
        items,
    })
}
