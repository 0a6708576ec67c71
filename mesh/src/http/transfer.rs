//! Two-phase token transfers (the seed's use case 2): start one, see one on both sides, list
//! them, the balances they leave, and minting (docs/design/mesh.md, "Transfers").

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
use crate::net::{TransferError, TransferView};
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
