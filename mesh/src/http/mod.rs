//! The node's HTTP API (axum), described by OpenAPI (utoipa) at `/openapi.json`.
//!
//! Routes: `/health`, `/metrics`, `/status`, `/ledger/...` (append, get, query, checkpoints,
//! proofs, verify jobs, replicas, forks, the WebSocket feed), `/mesh/...` (the seed's routes),
//! `/tlog/{ledger}/...` (the C2SP tlog-tiles read API) and the dashboard at `/`. The route
//! handlers only translate: every decision is in [`Control`], the engine and the mesh.
//!
//! Loopback by default. A non-loopback address needs a bearer token and TLS
//! ([`HttpConfig::check`]); with a token every route but `/health` and the dashboard's static
//! files asks for it (`Authorization: Bearer T`, or `?access_token=T` where a browser cannot set
//! headers: the WebSocket).

mod dashboard;
pub(crate) mod error;
mod ledger;
pub(crate) mod listen;
mod mesh;
mod openapi;
mod tlog;
mod transfer;
mod watch;
mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

pub use error::ErrorBody;
pub use ledger::{CheckpointSizes, Dropped, ForkList, ReplicaList, VerifyJob};
pub use mesh::{
    ConnectRequest, ConnectionList, ConnectionView, DisconnectRequest, Disconnected,
    DiscoverParams, DiscoverResult, DiscoveryView, FollowList, MemberRequest, MessageList,
    MessageParams, MessageView, PeerList, RefCheckList, RemoteQueryBody, RemoteQueryView,
    RemoteVerifyBody, RemoteVerifyView, RouteView, SwimMemberView, SyncAnswer, SyncRequest,
    Topology, TopologyEdge, TopologyNode, TrustAnchor, TrustList, TrustSet, TrustShow, Unfollowed,
    VisibilitySet, VisibilityShow, message_list, parse_destination,
};
pub use openapi::openapi_json;

use crate::control::Control;
use error::ApiError;

/// Default address of the API.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7480";
/// Default cap on a request body.
pub const DEFAULT_MAX_BODY: usize = 64 << 20;

/// How the API is served.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The bearer token every route but `/health` requires, when set.
    pub token: Option<String>,
    /// TLS certificate chain and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
}

impl HttpConfig {
    /// Loopback-only defaults at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            tls: None,
            max_body: DEFAULT_MAX_BODY,
            header_timeout: Duration::from_secs(10),
        }
    }

    /// Refuses a configuration that would expose the node: a non-loopback address without both
    /// a token and TLS; an empty token.
    ///
    /// # Errors
    /// A message saying what to add.
    pub fn check(&self) -> Result<(), String> {
        if self.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err("the HTTP token is empty; write a token to the file or let `onoal serve` create one".into());
        }
        if self.addr.ip().is_loopback() {
            return Ok(());
        }
        match (&self.token, &self.tls) {
            (Some(_), Some(_)) => Ok(()),
            (None, _) => Err(format!(
                "refusing to serve HTTP on {} without a bearer token: anyone who reaches it could append and pin peers; pass --http-token-file FILE (created if missing) and --http-tls-cert/--http-tls-key, or keep the API on loopback",
                self.addr
            )),
            (Some(_), None) => Err(format!(
                "refusing to serve HTTP on {} without TLS: the bearer token would cross the network in clear; pass --http-tls-cert and --http-tls-key, or keep the API on loopback",
                self.addr
            )),
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) control: Control,
    pub(crate) token: Option<Arc<str>>,
    pub(crate) jobs: Arc<ledger::Jobs>,
}

/// The router with every route (no listener): what tests and embedders mount.
pub fn router(control: Control, config: &HttpConfig) -> Router {
    let state =
        AppState { control, token: config.token.as_deref().map(Arc::from), jobs: Arc::default() };
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/openapi.json", get(openapi_route))
        .route("/ledger/entries", post(ledger::append).get(ledger::query))
        .route("/ledger/entries/{seq}", get(ledger::get_entry))
        .route("/ledger/checkpoint", get(ledger::latest_checkpoint).post(ledger::sign_checkpoint))
        .route("/ledger/checkpoints", get(ledger::checkpoint_sizes))
        .route("/ledger/checkpoints/{size}", get(ledger::checkpoint_at))
        .route("/ledger/proof/inclusion", get(ledger::inclusion))
        .route("/ledger/proof/consistency", get(ledger::consistency))
        .route("/ledger/verify", post(ledger::start_verify))
        .route("/ledger/verify/{job}", get(ledger::verify_job))
        .route("/ledger/replicas", get(ledger::replicas))
        .route("/ledger/replicas/{ledger_id}", delete(ledger::drop_replica))
        .route("/ledger/forks", get(ledger::forks))
        .route("/ledger/forks/{ledger_id}", delete(ledger::drop_fork))
        .route("/ledger/watch", get(watch::watch))
        .route("/mesh/peers", get(mesh::peers))
        .route("/mesh/connect", post(mesh::connect))
        .route("/mesh/disconnect", post(mesh::disconnect))
        .route("/mesh/topology", get(mesh::topology))
        .route("/mesh/discover", get(mesh::discover))
        .route("/mesh/discovery", get(mesh::discovery))
        .route("/mesh/messages", get(mesh::messages))
        .route("/mesh/connections", get(mesh::connections).post(mesh::connect_member))
        .route("/mesh/connections/{ledger_id}", delete(mesh::disconnect_member))
        .route("/mesh/query", post(mesh::query))
        .route("/mesh/verify", post(mesh::verify))
        .route("/mesh/refs", get(mesh::ref_records))
        .route("/mesh/refs/{seq}", get(mesh::refs))
        .route("/mesh/sync", post(mesh::sync))
        .route("/mesh/follows", get(mesh::follows))
        .route("/mesh/follows/{ledger_id}", delete(mesh::unfollow))
        .route("/mesh/trust", get(mesh::trust).post(mesh::trust_set))
        .route("/mesh/visibility", get(mesh::visibility).post(mesh::visibility_set))
        .route("/mesh/route", get(mesh::route))
        .route("/mesh/trust/anchors", post(mesh::trust_anchor_add))
        .route("/mesh/trust/path/{from}/{to}", get(mesh::trust_path))
        .route("/mesh/trust/anchors/{ledger_id}", delete(mesh::trust_anchor_remove))
        .route("/mesh/trust/{ledger_id}", get(mesh::trust_show))
        .route("/transfers", post(transfer::start).get(transfer::list))
        .route("/transfers/{id}", get(transfer::status))
        .route("/balance", get(transfer::balance))
        .route("/tokens/mint", post(transfer::mint))
        .route("/assets", post(transfer::register).get(transfer::held))
        .route("/assets/{id}", get(transfer::trace))
        .route("/tlog/{ledger}/checkpoint", get(tlog::checkpoint))
        .route("/witness", get(witness::info))
        .route("/witness/add-checkpoint", post(witness::add_checkpoint))
        .route("/witness/evidence", delete(witness::drop_evidence))
        .route("/witness/{origin_hash}/checkpoint", get(witness::checkpoint))
        .route("/tlog/{ledger}/tile/{*path}", get(tlog::tile))
        .route("/", get(dashboard::index))
        .route("/dashboard.js", get(dashboard::script))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(state)
}

/// A running API server.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    /// Binds `config.addr` and serves the API of `control` until dropped or stopped.
    ///
    /// # Errors
    /// A refused configuration ([`HttpConfig::check`]), unreadable TLS files, a taken address.
    pub async fn start(control: Control, config: HttpConfig) -> Result<Self, String> {
        config.check()?;
        let app = router(control, &config);
        let (addr, task) = listen::serve(app, &config).await?;
        Ok(Self { addr, task })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting; open requests are dropped.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Equal without an early exit on the first differing byte.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token check (see the module doc for what is open).
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else { return next.run(request).await };
    let path = request.uri().path();
    // C2SP witnesses answer anyone: they check the checkpoint's signature, not the caller.
    let c2sp_witness = path == "/witness/add-checkpoint"
        || (path.starts_with("/witness/") && path.ends_with("/checkpoint"));
    if matches!(path, "/health" | "/" | "/dashboard.js") || c2sp_witness {
        return next.run(request).await;
    }
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let from_query = request
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("access_token=")));
    match from_header.or(from_query) {
        Some(given) if same_secret(given.trim().as_bytes(), token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the bearer token is wrong")
                .hint("use the token in the node's --http-token-file")
                .into_response()
        }
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this node's API needs a bearer token",
        )
        .hint("send Authorization: Bearer TOKEN (the token is in the node's --http-token-file)")
        .into_response(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
    .hint("GET /openapi.json lists each route's methods")
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route").hint("GET /openapi.json lists the routes")
}

/// Liveness and readiness.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Always true while the process answers.
    pub live: bool,
    /// True when the ledger answers reads.
    pub ready: bool,
    /// Entries in the own log.
    pub tree_size: u64,
}

#[utoipa::path(get, path = "/health", tag = "node",
    responses((status = 200, description = "The node is live and ready", body = Health),
              (status = 503, description = "Live, but the ledger does not answer", body = Health)))]
async fn health(State(state): State<AppState>) -> Response {
    let log = state.control.node().ledger().log().clone();
    let ready = tokio::task::spawn_blocking(move || log.head().is_ok()).await.unwrap_or(false);
    let body =
        Health { live: true, ready, tree_size: state.control.node().ledger().log().durable_size() };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    let control = state.control.clone();
    match tokio::task::spawn_blocking(move || control.metrics_text()).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("metrics task failed: {e}")).into_response(),
    }
}

#[utoipa::path(get, path = "/status", tag = "node",
    responses((status = 200, body = crate::control::StatusView)))]
async fn status(
    State(state): State<AppState>,
) -> Result<axum::Json<crate::control::StatusView>, ApiError> {
    let control = state.control.clone();
    let s = tokio::task::spawn_blocking(move || control.status())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(axum::Json(s))
}

async fn openapi_route() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// Runs blocking engine work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("a storage task failed: {e}")))?
}
