//! `/ledger/...`: the own log (and, with `?ledger=ID`, a replica) — append, read, query,
//! checkpoints, proofs, verify jobs, replicas and forks.

// utoipa's path macro names parameter types with a path prefix of its own.
#![allow(unused_qualifications)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use super::error::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use onoal_engine::import::EntryInput;
use onoal_engine::{Filter, LedgerId, Log, NewEntry};

use super::error::{ApiError, ErrorBody};
use super::{AppState, blocking};
use crate::control::LogLookupError;
use crate::control::views::{
    self, AppendView, CheckpointView, ConsistencyProofView, EntryView, ForkView,
    InclusionProofView, QueryPageView, ReceiptView, ReplicaView,
};

/// Most entries one append request may carry.
pub(crate) const MAX_APPEND_ENTRIES: usize = 100_000;

/// Which log: the own (no `ledger`) or a replica.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LedgerParam {
    /// Read the replica of this ledger instead of the own log.
    pub(crate) ledger: Option<String>,
}

pub(crate) fn parse_ledger_id(s: &str) -> Result<LedgerId, ApiError> {
    s.parse::<LedgerId>()
        .map_err(|_| ApiError::bad_request(format!("{s:?} is not a ledger id (UUID)")))
}

/// The own log, or the replica (full or sparse) of `id`.
pub(crate) fn log_of(state: &AppState, id: Option<&str>) -> Result<Log, ApiError> {
    state.control.log(id).map_err(|e| match e {
        LogLookupError::BadId(_) => ApiError::bad_request(e.to_string()),
        _ => ApiError::not_found(e.to_string()).hint("sync it first: POST /mesh/sync"),
    })
}

/// The body of an append: entries in the `onoal import` format.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppendBody {
    /// The entries, appended as one group in this order.
    #[schema(value_type = Vec<EntryInputSchema>)]
    entries: Vec<EntryInput>,
}

/// One entry to append (the `onoal import` line format).
#[derive(ToSchema)]
#[schema(as = EntryInput)]
#[allow(dead_code)]
pub(crate) struct EntryInputSchema {
    /// Stream name.
    stream: String,
    /// Entry type.
    #[schema(rename = "type")]
    entry_type: String,
    /// Subject OID.
    subject: Option<String>,
    /// Issuer OID.
    issuer: Option<String>,
    /// Payload text (exactly one of payload and payload_b64).
    payload: Option<String>,
    /// Payload, standard base64.
    payload_b64: Option<String>,
    /// References to entries of other ledgers, each `LEDGER_ID:SEQ:LEAF_HASH`.
    refs: Option<Vec<String>>,
    /// The issuer's Ed25519 public key, hex (with issuer_signature).
    issuer_key: Option<String>,
    /// The issuer's signature over the content (docs/format.md), hex; checked on append.
    issuer_signature: Option<String>,
}

fn parse_entries(
    headers: &HeaderMap,
    body: &[u8],
    max_payload: usize,
) -> Result<Vec<NewEntry>, ApiError> {
    let ndjson = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.starts_with("application/x-ndjson") || v.starts_with("application/jsonl")
    });
    let inputs: Vec<EntryInput> = if ndjson {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            if out.len() >= MAX_APPEND_ENTRIES {
                return Err(too_many());
            }
            out.push(serde_json::from_str(line).map_err(|e| {
                ApiError::bad_request(format!("line {}: not an entry: {e}", i + 1))
                    .hint("one JSON object per line: {\"stream\",\"type\",\"payload\" or \"payload_b64\"}")
            })?);
        }
        out
    } else {
        let b: AppendBody = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the body is not an append request: {e}"))
                .hint("send {\"entries\": [{\"stream\": S, \"type\": T, \"payload\": TEXT}]}, or JSON Lines with Content-Type: application/x-ndjson")
        })?;
        b.entries
    };
    if inputs.is_empty() {
        return Err(ApiError::bad_request("no entries to append"));
    }
    if inputs.len() > MAX_APPEND_ENTRIES {
        return Err(too_many());
    }
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.into_entry(max_payload)
                .map_err(|err| ApiError::bad_request(format!("entry {i}: {err}")))
        })
        .collect()
}

fn too_many() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("more than {MAX_APPEND_ENTRIES} entries in one request"),
    )
    .hint("split the entries into several requests")
}

/// Appends entries as one group; answers once they are durable.
#[utoipa::path(post, path = "/ledger/entries", tag = "ledger",
    request_body(content = AppendBody, description = "JSON, or JSON Lines of entries with Content-Type: application/x-ndjson"),
    responses((status = 200, body = AppendView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn append(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<AppendView>, ApiError> {
    let body = body.map_err(|e| {
        ApiError::new(e.status(), "too_large", e.body_text())
            .hint("split the entries into several requests")
    })?;
    let max_payload = state.control.node().ledger().max_payload_bytes();
    let entries = parse_entries(&headers, &body, max_payload)?;
    drop(body);
    // The token stream is written by the transfer desk only (its book follows its own writes).
    if entries.iter().any(|e| e.stream.as_str() == crate::transfer::STREAM) {
        return Err(ApiError::bad_request(format!(
            "the stream {} is written by transfers and mints only",
            crate::transfer::STREAM
        ))
        .hint("onoal mint / onoal transfer start (POST /tokens/mint, POST /transfers)"));
    }
    let (receipts, tree_size) = state.control.append(entries).await?;
    Ok(Json(AppendView {
        receipts: receipts
            .iter()
            .map(|r| ReceiptView { seq: r.seq, leaf_hash: r.leaf_hash.to_hex() })
            .collect(),
        tree_size,
    }))
}

/// Filters, cursor and page size of a query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct QueryParams {
    /// Read the replica of this ledger.
    ledger: Option<String>,
    /// Only entries of this stream.
    stream: Option<String>,
    /// Only entries of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    entry_type: Option<String>,
    /// Only entries about this subject OID.
    subject: Option<String>,
    /// Only entries by this issuer OID.
    issuer: Option<String>,
    /// Only entries at or after this time (ms since the epoch).
    since: Option<u64>,
    /// Only entries at or before this time (ms since the epoch).
    until: Option<u64>,
    /// The next_cursor of the previous page.
    cursor: Option<String>,
    /// Page size (default 100, 1 to 10000).
    limit: Option<usize>,
}

/// Finds entries by stream, type, subject, issuer and time.
#[utoipa::path(get, path = "/ledger/entries", tag = "ledger", params(QueryParams),
    responses((status = 200, body = QueryPageView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn query(
    State(state): State<AppState>,
    Query(q): Query<QueryParams>,
) -> Result<Json<QueryPageView>, ApiError> {
    if let Some(l) = q.limit
        && !(1..=onoal_engine::log::MAX_QUERY_LIMIT).contains(&l)
    {
        return Err(ApiError::bad_request(format!(
            "limit {l} is out of range; give 1 to {}",
            onoal_engine::log::MAX_QUERY_LIMIT
        )));
    }
    let log = log_of(&state, q.ledger.as_deref())?;
    let filter = Filter {
        stream: q.stream,
        entry_type: q.entry_type,
        subject: q.subject,
        issuer: q.issuer,
        since_ms: q.since,
        until_ms: q.until,
    };
    filter.validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let query = onoal_engine::Query { filter, cursor: q.cursor, limit: q.limit, max_bytes: None };
    let page = blocking(move || Ok(log.query(&query)?)).await?;
    Ok(Json(QueryPageView::from(&page)))
}

/// The entry at SEQ.
#[utoipa::path(get, path = "/ledger/entries/{seq}", tag = "ledger",
    params(("seq" = u64, Path, description = "Sequence number"), LedgerParam),
    responses((status = 200, body = EntryView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_entry(
    State(state): State<AppState>,
    Path(seq): Path<u64>,
    Query(p): Query<LedgerParam>,
) -> Result<Json<EntryView>, ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    let e = blocking(move || Ok(log.entry(seq)?)).await?;
    Ok(Json(EntryView::from(&e)))
}

/// Which checkpoint: of the own log or a replica; any, or one witnesses cosigned.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LatestParams {
    /// Read the replica of this ledger instead of the own log.
    pub(crate) ledger: Option<String>,
    /// The newest checkpoint that carries witness cosignatures.
    pub(crate) cosigned: Option<bool>,
}

/// How far back `?cosigned=true` looks for a cosigned checkpoint.
const COSIGNED_LOOKBACK: usize = 4096;

/// The newest stored checkpoint (`?cosigned=true`: the newest carrying witness cosignatures).
#[utoipa::path(get, path = "/ledger/checkpoint", tag = "ledger", params(LatestParams),
    responses((status = 200, body = CheckpointView), (status = 404, body = ErrorBody)))]
pub(crate) async fn latest_checkpoint(
    State(state): State<AppState>,
    Query(p): Query<LatestParams>,
) -> Result<Json<CheckpointView>, ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    if p.cosigned == Some(true) {
        let cp = blocking(move || Ok(log.latest_cosigned_checkpoint(u64::MAX, COSIGNED_LOOKBACK)?))
        .await?
        .ok_or_else(|| {
            ApiError::not_found("no stored checkpoint carries witness cosignatures").hint(
                "name witnesses when starting the node: onoal serve --witness LEDGER_ID (and pin them)",
            )
        })?;
        return Ok(Json(CheckpointView::from(&cp)));
    }
    let cp = blocking(move || Ok(log.latest_checkpoint()?)).await?.ok_or_else(|| {
        ApiError::not_found("no checkpoint is stored yet").hint("POST /ledger/checkpoint signs one")
    })?;
    Ok(Json(CheckpointView::from(&cp)))
}

/// Signs a checkpoint of the current size (or returns the one already signed for it).
#[utoipa::path(post, path = "/ledger/checkpoint", tag = "ledger",
    responses((status = 200, body = CheckpointView)))]
pub(crate) async fn sign_checkpoint(
    State(state): State<AppState>,
) -> Result<Json<CheckpointView>, ApiError> {
    let ledger = state.control.node().ledger().clone();
    let cp = blocking(move || Ok(ledger.checkpoint_now()?)).await?;
    Ok(Json(CheckpointView::from(&cp)))
}

/// Stored checkpoint sizes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointSizes {
    /// Ascending.
    pub sizes: Vec<u64>,
}

/// Sizes of every stored checkpoint.
#[utoipa::path(get, path = "/ledger/checkpoints", tag = "ledger", params(LedgerParam),
    responses((status = 200, body = CheckpointSizes)))]
pub(crate) async fn checkpoint_sizes(
    State(state): State<AppState>,
    Query(p): Query<LedgerParam>,
) -> Result<Json<CheckpointSizes>, ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    let sizes = blocking(move || Ok(log.checkpoint_sizes()?)).await?;
    Ok(Json(CheckpointSizes { sizes }))
}

/// The stored checkpoint of exactly SIZE.
#[utoipa::path(get, path = "/ledger/checkpoints/{size}", tag = "ledger",
    params(("size" = u64, Path, description = "Tree size"), LedgerParam),
    responses((status = 200, body = CheckpointView), (status = 404, body = ErrorBody)))]
pub(crate) async fn checkpoint_at(
    State(state): State<AppState>,
    Path(size): Path<u64>,
    Query(p): Query<LedgerParam>,
) -> Result<Json<CheckpointView>, ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    let cp = blocking(move || Ok(log.checkpoint_at(size)?)).await?.ok_or_else(|| {
        ApiError::not_found(format!("no checkpoint of size {size} is stored"))
            .hint("GET /ledger/checkpoints lists the stored sizes")
    })?;
    Ok(Json(CheckpointView::from(&cp)))
}

/// `seq`, `size`, `ledger`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionParams {
    /// The entry.
    seq: u64,
    /// Tree size (default: the current size).
    size: Option<u64>,
    /// A replica instead of the own log.
    ledger: Option<String>,
}

/// RFC 9162 inclusion proof of an entry.
#[utoipa::path(get, path = "/ledger/proof/inclusion", tag = "ledger", params(InclusionParams),
    responses((status = 200, body = InclusionProofView), (status = 404, body = ErrorBody)))]
pub(crate) async fn inclusion(
    State(state): State<AppState>,
    Query(p): Query<InclusionParams>,
) -> Result<Json<InclusionProofView>, ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    Ok(Json(blocking(move || Ok(InclusionProofView::build(&log, p.seq, p.size)?)).await?))
}

/// `old`, `new`, `ledger`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyParams {
    /// Older tree size.
    old: u64,
    /// Newer tree size.
    new: u64,
    /// A replica instead of the own log.
    ledger: Option<String>,
}

/// RFC 9162 consistency proof between two sizes.
#[utoipa::path(get, path = "/ledger/proof/consistency", tag = "ledger", params(ConsistencyParams),
    responses((status = 200, body = ConsistencyProofView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn consistency(
    State(state): State<AppState>,
    Query(p): Query<ConsistencyParams>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    Ok(Json(blocking(move || Ok(ConsistencyProofView::build(&log, p.old, p.new)?)).await?))
}

/// A verify job's state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct VerifyJob {
    /// The job.
    pub job: u64,
    /// The audited log.
    pub ledger_id: String,
    /// `running`, `sound` or `failed`.
    pub state: String,
    /// Entries checked so far.
    pub entries_done: u64,
    /// Entries to check.
    pub entries_total: u64,
    /// When sound: entries, tiles, checkpoints verified and the root.
    pub entries: Option<u64>,
    /// Tiles recomputed.
    pub tiles: Option<u64>,
    /// Checkpoints checked.
    pub checkpoints: Option<u64>,
    /// Root of the audited tree (hex).
    pub root: Option<String>,
    /// When failed: the evidence.
    pub error: Option<String>,
}

/// Verify jobs of this node (kept until the node stops; at most `MAX_JOBS`, oldest dropped).
#[derive(Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, Arc<Mutex<VerifyJob>>>>,
}

const MAX_JOBS: usize = 64;

/// Starts a full audit of the own log (or a replica) in the background.
#[utoipa::path(post, path = "/ledger/verify", tag = "ledger", params(LedgerParam),
    responses((status = 202, body = VerifyJob), (status = 404, body = ErrorBody)))]
pub(crate) async fn start_verify(
    State(state): State<AppState>,
    Query(p): Query<LedgerParam>,
) -> Result<(StatusCode, Json<VerifyJob>), ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    let id = state.jobs.next.fetch_add(1, Ordering::Relaxed) + 1;
    let job = Arc::new(Mutex::new(VerifyJob {
        job: id,
        ledger_id: log.identity().ledger_id.to_string(),
        state: "running".into(),
        entries_total: log.durable_size(),
        ..VerifyJob::default()
    }));
    {
        let mut jobs = state.jobs.jobs.lock();
        if jobs.len() >= MAX_JOBS
            && let Some(oldest) = jobs.keys().min().copied()
        {
            jobs.remove(&oldest);
        }
        jobs.insert(id, job.clone());
    }
    let snapshot = job.lock().clone();
    tokio::task::spawn_blocking(move || {
        let progress = |p: onoal_engine::VerifyProgress| {
            let mut j = job.lock();
            j.entries_done = p.entries_done;
            j.entries_total = p.entries_total;
        };
        let result = log.verify(&progress);
        let mut j = job.lock();
        match result {
            Ok(r) => {
                j.state = "sound".into();
                j.entries_done = r.entries;
                j.entries = Some(r.entries);
                j.tiles = Some(r.tiles);
                j.checkpoints = Some(r.checkpoints);
                j.root = Some(r.root.to_hex());
            }
            Err(e) => {
                j.state = "failed".into();
                j.error = Some(e.to_string());
            }
        }
    });
    Ok((StatusCode::ACCEPTED, Json(snapshot)))
}

/// A verify job's progress or result.
#[utoipa::path(get, path = "/ledger/verify/{job}", tag = "ledger",
    params(("job" = u64, Path, description = "The job number POST /ledger/verify returned")),
    responses((status = 200, body = VerifyJob), (status = 404, body = ErrorBody)))]
pub(crate) async fn verify_job(
    State(state): State<AppState>,
    Path(job): Path<u64>,
) -> Result<Json<VerifyJob>, ApiError> {
    let j = state.jobs.jobs.lock().get(&job).cloned().ok_or_else(|| {
        ApiError::not_found(format!("no verify job {job}")).hint("POST /ledger/verify starts one")
    })?;
    let view = j.lock().clone();
    Ok(Json(view))
}

/// Replicas.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplicaList {
    /// Full, then sparse.
    pub replicas: Vec<ReplicaView>,
}

/// Replicas and their sync state.
#[utoipa::path(get, path = "/ledger/replicas", tag = "ledger",
    responses((status = 200, body = ReplicaList)))]
pub(crate) async fn replicas(State(state): State<AppState>) -> Result<Json<ReplicaList>, ApiError> {
    let ledger = state.control.node().ledger().clone();
    let replicas = blocking(move || Ok(views::replicas(&ledger)?)).await?;
    Ok(Json(ReplicaList { replicas }))
}

/// Forks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForkList {
    /// Every fork found while syncing, with both checkpoints as evidence.
    pub forks: Vec<ForkView>,
}

/// Forks found while syncing.
#[utoipa::path(get, path = "/ledger/forks", tag = "ledger",
    responses((status = 200, body = ForkList)))]
pub(crate) async fn forks(State(state): State<AppState>) -> Result<Json<ForkList>, ApiError> {
    let ledger = state.control.node().ledger().clone();
    let forks = blocking(move || Ok(views::forks(&ledger)?)).await?;
    Ok(Json(ForkList { forks }))
}

/// What dropping a replica did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Dropped {
    /// The ledger.
    pub ledger_id: String,
    /// False: there was no replica of it.
    pub dropped: bool,
}

/// Deletes the forked replica of a ledger (and its fork evidence); the next sync starts
/// afresh. A replica that has not forked is refused (DELETE /ledger/replicas/{id} deletes any).
#[utoipa::path(delete, path = "/ledger/forks/{ledger_id}", tag = "ledger",
    params(("ledger_id" = String, Path, description = "The forked ledger")),
    responses((status = 200, body = Dropped), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn drop_fork(
    State(state): State<AppState>,
    Path(ledger_id): Path<String>,
) -> Result<Json<Dropped>, ApiError> {
    drop_log(state, &ledger_id, true).await
}

/// Deletes the replica of a ledger (its entries and sync state); the next sync starts afresh.
#[utoipa::path(delete, path = "/ledger/replicas/{ledger_id}", tag = "ledger",
    params(("ledger_id" = String, Path, description = "The replicated ledger")),
    responses((status = 200, body = Dropped), (status = 400, body = ErrorBody)))]
pub(crate) async fn drop_replica(
    State(state): State<AppState>,
    Path(ledger_id): Path<String>,
) -> Result<Json<Dropped>, ApiError> {
    drop_log(state, &ledger_id, false).await
}

async fn drop_log(
    state: AppState,
    ledger_id: &str,
    only_forked: bool,
) -> Result<Json<Dropped>, ApiError> {
    let id = parse_ledger_id(ledger_id)?;
    let ledger = state.control.node().ledger().clone();
    if only_forked {
        let forks = {
            let ledger = ledger.clone();
            blocking(move || Ok(views::forks(&ledger)?)).await?
        };
        if !forks.iter().any(|f| f.ledger_id == id.to_string()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_forked",
                format!("the replica of {id} has not forked"),
            )
            .hint(format!("DELETE /ledger/replicas/{id} deletes a healthy replica")));
        }
    }
    state.control.unfollow(id);
    let dropped = blocking(move || Ok(ledger.drop_replica(&id)?)).await?;
    Ok(Json(Dropped { ledger_id: id.to_string(), dropped }))
}
