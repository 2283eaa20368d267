//! `/`: a small page that shows the node's state and its live events.

use axum::response::Html;

pub(crate) async fn index() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
