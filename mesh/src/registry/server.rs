//! `onoal registry serve`: the registry core over HTTP (axum).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/records` | register or refresh a record: `{"record": base64(postcard(PeerRecord))}` |
//! | `GET /v1/records/{ledger_id}` | the live record of a ledger, or 404 |
//! | `GET /v1/records?oid_prefix=P&limit=N` | live records under an OID prefix (all when no prefix: the most recently refreshed first) |
//! | `GET /v1/records?asset=ID&limit=N` | live records that announce a registered asset, newest first |
//! | `GET /health` | liveness and the number of records |
//!
//! With an API key every route but `/health` needs `Authorization: Bearer KEY`. Records are
//! signed by their ledgers, so the key decides who may use the registry, not what is true.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use onoal_engine::time::now_ms;
use onoal_engine::{LedgerId, Oid};

use super::{Entry, MAX_LOOKUP, Registry, RegistryConfig, RegistryError};
use crate::http::HttpConfig;
use crate::http::error::ApiError;
use crate::proto::record::PeerRecord;

/// Largest registration body (a record is at most a few KiB).
const MAX_BODY: usize = 64 << 10;

/// A registration: the record's postcard bytes in base64.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// base64 of the record's postcard bytes.
    pub record: String,
}

/// The answer to a registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisterAnswer {
    /// `new`, `updated` or `refreshed`.
    pub status: String,
    /// The registered ledger.
    pub ledger_id: String,
    /// Register again within this time, or the record is dropped.
    pub refresh_within_ms: u64,
}

/// A record as the registry serves it: readable fields, and the signed bytes a client checks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegistryRecord {
    /// Ledger id.
    pub ledger_id: String,
    /// OID.
    pub oid: String,
    /// Ed25519 key (hex).
    pub public_key: String,
    /// QUIC address.
    pub quic: Option<String>,
    /// Registered assets the ledger announces (claims; `onoal asset verify` proves them).
    #[serde(default)]
    pub assets: Vec<String>,
    /// Record sequence.
    pub sequence: u64,
    /// The record's own expiry (ms since the epoch).
    pub expires_ms: u64,
    /// Last registration (ms since the epoch).
    pub refreshed_ms: u64,
    /// base64 of the record's postcard bytes: what a client decodes and checks.
    pub record: String,
}

impl From<&Entry> for RegistryRecord {
    fn from(e: &Entry) -> Self {
        Self {
            ledger_id: e.record.ledger_id.to_string(),
            oid: e.record.oid.clone(),
            public_key: hex::encode(e.record.public_key),
            quic: e.record.endpoints.quic.clone(),
            assets: e.record.assets.clone(),
            sequence: e.record.sequence,
            expires_ms: e.record.expires_ms,
            refreshed_ms: e.refreshed_ms,
            record: B64.encode(e.record.encode()),
        }
    }
}

/// A list of records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegistryList {
    /// The records.
    pub records: Vec<RegistryRecord>,
}

/// The registry's health.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegistryHealth {
    /// Always true while it answers.
    pub live: bool,
    /// Records held.
    pub records: usize,
}

#[derive(Clone)]
struct RegistryState {
    registry: Arc<Mutex<Registry>>,
    api_key: Option<Arc<str>>,
    refresh_within_ms: u64,
}

/// Refuses a setup that would leak the API key: a key on a non-loopback address without TLS.
///
/// # Errors
/// A message saying what to add.
pub fn check(http: &HttpConfig) -> Result<(), String> {
    if http.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err("the registry's API key file is empty; write a key into it".into());
    }
    if http.token.is_some() && http.tls.is_none() && !http.addr.ip().is_loopback() {
        return Err(format!(
            "refusing to serve the registry on {} with an API key but without TLS: the key would cross the network in clear; pass --tls-cert and --tls-key, or listen on loopback",
            http.addr
        ));
    }
    Ok(())
}

/// Binds `http.addr` and serves a registry; returns the bound address and the accept task.
/// Expired records are dropped every 10 seconds.
///
/// # Errors
/// A message when the address cannot be bound or the setup is refused ([`check`]).
pub async fn serve(
    http: &HttpConfig,
    config: RegistryConfig,
) -> Result<(SocketAddr, JoinHandle<()>), String> {
    check(http)?;
    let refresh_within_ms = u64::try_from(config.expire_after.as_millis()).unwrap_or(u64::MAX);
    let registry = Arc::new(Mutex::new(Registry::new(config)));
    let state = RegistryState {
        registry: registry.clone(),
        api_key: http.token.as_deref().map(|t| Arc::from(t.trim())),
        refresh_within_ms,
    };
    let app = Router::new()
        .route("/v1/records", post(register).get(list))
        .route("/v1/records/{ledger_id}", get(lookup))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .route("/health", get(health))
        .fallback(|| async {
            ApiError::not_found("no such route")
                .hint("the registry serves /v1/records, /v1/records/{ledger_id} and /health")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state);
    let (addr, task) = crate::http::listen::serve(app, http).await?;
    let expiry = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            let dropped = registry.lock().expire(now_ms());
            if dropped > 0 {
                tracing::info!(dropped, "registry: records not refreshed in time dropped");
            }
        }
    });
    let task = tokio::spawn(async move {
        let _ = task.await;
        expiry.abort();
    });
    Ok((addr, task))
}

async fn authorize(State(state): State<RegistryState>, request: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else { return next.run(request).await };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if crate::http::same_secret(g.trim().as_bytes(), key.as_bytes()) => {
            next.run(request).await
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this registry needs its API key",
        )
        .hint("send Authorization: Bearer KEY (onoal serve --registry-api-key-file FILE)")
        .into_response(),
    }
}

async fn register(
    State(state): State<RegistryState>,
    Json(request): Json<RegisterRequest>,
) -> Result<Json<RegisterAnswer>, ApiError> {
    let bytes = B64
        .decode(request.record.trim())
        .map_err(|e| ApiError::bad_request(format!("the record is not base64: {e}")))?;
    let record: PeerRecord = postcard::from_bytes(&bytes).map_err(|e| {
        ApiError::bad_request(format!("the record does not decode: {e}"))
            .hint("send base64 of a peer record's postcard bytes, as `onoal serve --registry` does")
    })?;
    let ledger = record.ledger_id;
    let outcome = state.registry.lock().register(record, now_ms());
    match outcome {
        Ok(r) => Ok(Json(RegisterAnswer {
            status: r.as_str().into(),
            ledger_id: ledger.to_string(),
            refresh_within_ms: state.refresh_within_ms,
        })),
        Err(e @ RegistryError::Invalid(_)) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_record", e.to_string())
                .hint("a ledger registers its own record, signed with its key and not expired"))
        }
        Err(e @ (RegistryError::Stale { .. } | RegistryError::KeyConflict { .. })) => {
            Err(ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()))
        }
        Err(e @ RegistryError::Full(_)) => {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "full", e.to_string())
                .hint("records that are not refreshed expire; try again later"))
        }
    }
}

fn parse_ledger(s: &str) -> Result<LedgerId, ApiError> {
    s.parse::<LedgerId>()
        .map_err(|e| ApiError::bad_request(format!("{s:?} is not a ledger id: {e}")))
}

async fn lookup(
    State(state): State<RegistryState>,
    Path(ledger): Path<String>,
) -> Result<Json<RegistryRecord>, ApiError> {
    let ledger = parse_ledger(&ledger)?;
    let registry = state.registry.lock();
    match registry.get(&ledger, now_ms()) {
        Some(e) => Ok(Json(e.into())),
        None => Err(ApiError::not_found(format!("the registry holds no live record of {ledger}"))),
    }
}

/// Query of `GET /v1/records`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    oid_prefix: Option<String>,
    asset: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<RegistryState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<RegistryList>, ApiError> {
    let limit = q.limit.unwrap_or(MAX_LOOKUP);
    if !(1..=MAX_LOOKUP).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: 1 to {MAX_LOOKUP}"
        )));
    }
    let now = now_ms();
    let registry = state.registry.lock();
    let found = match (q.oid_prefix.as_deref(), q.asset.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give oid_prefix or asset, not both"));
        }
        (None, Some(asset)) => registry.by_asset(asset, now, limit),
        (Some(p), None) => {
            let prefix = Oid::parse(p).map_err(|e| {
                ApiError::bad_request(format!("{p:?} is not an OID prefix: {e}"))
                    .hint("an OID prefix looks like oid:onoal:org")
            })?;
            registry.by_oid_prefix(&prefix, now, limit)
        }
        (None, None) => registry.recent(now, limit),
    };
    Ok(Json(RegistryList { records: found.into_iter().map(RegistryRecord::from).collect() }))
}

async fn health(State(state): State<RegistryState>) -> Json<RegistryHealth> {
    Json(RegistryHealth { live: true, records: state.registry.lock().len() })
}
