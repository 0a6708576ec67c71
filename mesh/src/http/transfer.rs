//! Two-phase token transfers (the seed's use case 2): start one, see one on both sides, list
//! them, the balances they leave, and minting (docs/design/mesh.md, "Transfers"); registered
//! assets (use case 3): register one, list those held, find and prove an asset's owner.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::extract::Json as Body;
use super::error::extract::{Path, Query};
use super::error::{ApiError, ErrorBody};
use super::mesh::{parse_destination, remote_error};
use crate::net::{AssetView, HeldAsset, RegistrationView, TransferError, TransferView};
use crate::transfer::Balance;

/// Longest lock timeout a transfer may ask for.
const MAX_TIMEOUT_SECS: u64 = 24 * 3600;
/// The lock timeout when none is given.
pub(crate) const DEFAULT_TIMEOUT_SECS: u64 = 30;

fn api_error(e: &TransferError) -> ApiError {
    match e {
        TransferError::Disabled => ApiError::new(StatusCode::NOT_FOUND, "disabled", e.to_string()),
        TransferError::Invalid(_) => ApiError::bad_request(e.to_string()),
        TransferError::NotFound(_) => ApiError::not_found(e.to_string()),
        TransferError::Remote(r) => remote_error(r),
        _ => ApiError::internal(e.to_string()),
    }
}

/// `POST /transfers`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    /// The destination: a ledger id or an OID.
    pub(crate) to: String,
    /// The asset.
    pub(crate) asset: String,
    /// The amount.
    pub(crate) amount: u64,
    /// The transfer's id; a fresh UUID when absent.
    pub(crate) id: Option<String>,
    /// Seconds the source waits for the destination's reservation before it unlocks (30).
    pub(crate) timeout_secs: Option<u64>,
}

/// Starts a transfer: writes the lock (the amount is no longer available) and returns; the
/// node then runs reserve, commit, credit and confirm with the destination, or unlocks at the
/// timeout or on a refusal. Follow it with `GET /transfers/{id}`.
#[utoipa::path(post, path = "/transfers", tag = "transfers", request_body = StartBody,
    responses((status = 202, body = TransferView),
              (status = 400, description = "Bad id, amount or asset; not enough available", body = ErrorBody),
              (status = 404, description = "Unknown destination", body = ErrorBody)))]
pub(crate) async fn start(
    State(state): State<AppState>,
    Body(body): Body<StartBody>,
) -> Result<(StatusCode, Json<TransferView>), ApiError> {
    let to = parse_destination(&body.to).map_err(ApiError::bad_request)?;
    let secs = body.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if secs == 0 || secs > MAX_TIMEOUT_SECS {
        return Err(ApiError::bad_request(format!("timeout_secs must be 1 to {MAX_TIMEOUT_SECS}")));
    }
    let node = state.control.node().clone();
    let timeout = std::time::Duration::from_secs(secs);
    let v = node
        .transfer_start(&to, &body.asset, body.amount, body.id, timeout)
        .await
        .map_err(|e| api_error(&e))?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

/// Every transfer of this ledger (as source or destination), newest first.
#[utoipa::path(get, path = "/transfers", tag = "transfers",
    responses((status = 200, body = Vec<TransferView>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
) -> Result<Json<Vec<TransferView>>, ApiError> {
    state.control.node().transfer_list().await.map(Json).map_err(|e| api_error(&e))
}

/// `GET /transfers/{id}` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct StatusParams {
    /// Also ask the other ledger for its side (its steps, verified by proof).
    #[serde(default)]
    pub(crate) peer: bool,
}

/// One transfer: this ledger's steps and phase, and with `peer=true` the other ledger's,
/// verified against a checkpoint signed by its key.
#[utoipa::path(get, path = "/transfers/{id}", tag = "transfers", params(("id" = String, Path, description = "The transfer id"),
        ("peer" = Option<bool>, Query, description = "Also ask the other ledger for its side")),
    responses((status = 200, body = TransferView), (status = 404, body = ErrorBody)))]
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<StatusParams>,
) -> Result<Json<TransferView>, ApiError> {
    let node = state.control.node().clone();
    node.transfer_status(&id, p.peer).await.map(Json).map_err(|e| api_error(&e))
}

/// Balances per asset, derived from the token entries: available, locked, incoming, minted,
/// received, sent.
#[utoipa::path(get, path = "/balance", tag = "transfers",
    responses((status = 200, body = Vec<Balance>), (status = 404, body = ErrorBody)))]
pub(crate) async fn balance(State(state): State<AppState>) -> Result<Json<Vec<Balance>>, ApiError> {
    state.control.node().balances().await.map(Json).map_err(|e| api_error(&e))
}

/// `POST /tokens/mint`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintBody {
    /// The asset.
    pub(crate) asset: String,
    /// The amount.
    pub(crate) amount: u64,
}

/// What a mint wrote.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct Minted {
    /// The mint entry's seq.
    pub(crate) seq: u64,
    /// The asset's balance after it.
    pub(crate) balance: Balance,
}

/// Mints tokens of an asset on this ledger (an entry of the stream `tokens`).
#[utoipa::path(post, path = "/tokens/mint", tag = "transfers", request_body = MintBody,
    responses((status = 200, body = Minted), (status = 400, body = ErrorBody)))]
pub(crate) async fn mint(
    State(state): State<AppState>,
    Body(body): Body<MintBody>,
) -> Result<Json<Minted>, ApiError> {
    let node = state.control.node().clone();
    let seq = node.mint(&body.asset, body.amount).await.map_err(|e| api_error(&e))?;
    let balance = node
        .balances()
        .await
        .map_err(|e| api_error(&e))?
        .into_iter()
        .find(|b| b.asset == body.asset)
        .unwrap_or_default();
    Ok(Json(Minted { seq, balance }))
}

/// `POST /assets`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    /// The asset's id (1 to 128 letters, digits or `-_.:`).
    pub(crate) id: String,
    /// Its owner: this ledger's OID (the default) or an OID under it.
    pub(crate) owner: Option<String>,
    /// What it is: any JSON, at most 4 KiB.
    #[schema(value_type = Option<Object>)]
    pub(crate) meta: Option<serde_json::Value>,
}

/// Registers an asset on this ledger (use case 3): a `register` entry of the stream `tokens`,
/// one unit that exists once. The node announces it in its record (DHT under the asset id,
/// registry) within a quarter second; a transfer of it moves the ownership.
#[utoipa::path(post, path = "/assets", tag = "assets", request_body = RegisterBody,
    responses((status = 201, body = RegistrationView),
              (status = 400, description = "Bad id, owner or meta; an asset this ledger knows already", body = ErrorBody)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Body(body): Body<RegisterBody>,
) -> Result<(StatusCode, Json<RegistrationView>), ApiError> {
    let node = state.control.node().clone();
    let v = node
        .asset_register(&body.id, body.owner.as_deref(), body.meta)
        .await
        .map_err(|e| api_error(&e))?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// The registered assets this ledger holds.
#[utoipa::path(get, path = "/assets", tag = "assets",
    responses((status = 200, body = Vec<HeldAsset>), (status = 404, body = ErrorBody)))]
pub(crate) async fn held(State(state): State<AppState>) -> Result<Json<Vec<HeldAsset>>, ApiError> {
    state.control.node().assets_held().await.map(Json).map_err(|e| api_error(&e))
}

/// `GET /assets/{id}` parameters.
#[derive(Debug, Deserialize)]
pub(crate) struct TraceParams {
    /// How long the DHT and registry lookups may take, ms (3000).
    pub(crate) wait_ms: Option<u64>,
}

/// Who owns a registered asset, proven: the ledgers that claim it (here, DHT, registry), each
/// walked along its proven hand-overs to the owner and back to the registration. 404 when no
/// ledger claims it; `verified: false` when no claim holds or two do (`contested`).
#[utoipa::path(get, path = "/assets/{id}", tag = "assets", params(("id" = String, Path, description = "The asset id"),
        ("wait_ms" = Option<u64>, Query, description = "Lookup deadline, ms (3000)")),
    responses((status = 200, body = AssetView), (status = 404, body = ErrorBody)))]
pub(crate) async fn trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(p): Query<TraceParams>,
) -> Result<Json<AssetView>, ApiError> {
    let wait = std::time::Duration::from_millis(p.wait_ms.unwrap_or(3000).clamp(100, 30_000));
    let node = state.control.node().clone();
    let v = node.asset_trace(&id, wait).await.map_err(|e| api_error(&e))?;
    if v.claims.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_asset",
            format!(
                "no ledger claims the asset {id}: not here, not in the DHT, not in the registry"
            ),
        )
        .hint("an asset is registered with `onoal asset register --id ID` on its owner's ledger"));
    }
    Ok(Json(v))
}
