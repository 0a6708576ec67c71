//! The dashboard at `/`: one HTML page and one script, embedded in the binary (no CDN, no
//! build step). The script reads the API (`/status`, `/ledger/replicas`, `/mesh/peers`,
//! `/mesh/topology`, `/witness`, `/balance`, `/transfers`, `/assets`) and the WebSocket feed,
//! with the token from the page's `#token=` fragment when the node has one.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");

pub(crate) async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        INDEX,
    )
        .into_response()
}

pub(crate) async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}
