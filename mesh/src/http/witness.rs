//! The C2SP tlog-witness HTTP interface of the node's witness: `POST /witness/add-checkpoint`
//! (submission), `GET /witness/{origin hash}/checkpoint` (monitoring), and `GET /witness` (what
//! it witnessed, its key, the split views it caught, the own log's witnesses). The two C2SP
//! routes answer anyone, as the spec says (a witness authenticates the checkpoint's signature,
//! not the caller); `GET /witness` asks for the token like the rest of the API.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::extract::{Path, Query};
use super::error::{ApiError, ErrorBody};
use super::{AppState, blocking};
use crate::net::WitnessInfo;
use crate::witness::AddCheckpoint;

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// C2SP tlog-witness `add-checkpoint`: `old N`, proof lines, an empty line, the checkpoint.
#[utoipa::path(post, path = "/witness/add-checkpoint", tag = "witness",
    request_body(content = String, content_type = "text/plain", description = "old size line, consistency proof lines, empty line, signed checkpoint"),
    responses((status = 200, description = "Cosignature lines", content_type = "text/plain"),
              (status = 400, description = "Malformed request"),
              (status = 403, description = "Not signed by the log's key"),
              (status = 404, description = "A log this witness does not know"),
              (status = 409, description = "The witness holds another size (the body)", content_type = "text/x.tlog.size"),
              (status = 422, description = "Inconsistent with what the witness cosigned")))]
pub(crate) async fn add_checkpoint(State(state): State<AppState>, body: Bytes) -> Response {
    let request = match AddCheckpoint::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            return text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", format!("{e}\n"));
        }
    };
    let answer = state.control.node().witness_add_checkpoint(request).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type =
        if answer.status == 409 { "text/x.tlog.size" } else { "text/plain; charset=utf-8" };
    text(status, content_type, answer.body)
}

/// C2SP tlog-witness monitoring: the newest checkpoint this witness cosigned for the log whose
/// origin's SHA-256 is `origin_hash` (lowercase hex), with its cosignature.
#[utoipa::path(get, path = "/witness/{origin_hash}/checkpoint", tag = "witness",
    params(("origin_hash" = String, Path, description = "SHA-256 of the log's origin line, lowercase hex")),
    responses((status = 200, description = "The cosigned checkpoint", content_type = "text/plain"),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    Path(origin_hash): Path<String>,
) -> Result<Response, ApiError> {
    let hash = onoal_engine::Hash::from_hex(&origin_hash)
        .filter(|_| origin_hash.bytes().all(|b| !b.is_ascii_uppercase()))
        .ok_or_else(|| {
            ApiError::not_found(format!("{origin_hash:?} is not a lowercase hex SHA-256"))
                .hint("the SHA-256 of the log's origin line, e.g. printf %s ORIGIN | sha256sum")
        })?;
    let node = state.control.node().clone();
    let note = blocking(move || Ok(node.witnessed_checkpoint(&hash))).await?.ok_or_else(|| {
        ApiError::not_found("this witness never cosigned a checkpoint of that log")
    })?;
    Ok(text(StatusCode::OK, "text/plain; charset=utf-8", note))
}

/// The witness: its name and vkey, the logs it witnessed, the split views it caught, and the
/// own log's witnesses and quorum.
#[utoipa::path(get, path = "/witness", tag = "witness",
    responses((status = 200, body = WitnessInfo), (status = 404, body = ErrorBody)))]
pub(crate) async fn info(
    State(state): State<AppState>,
) -> Result<axum::Json<WitnessInfo>, ApiError> {
    let node = state.control.node().clone();
    let info = blocking(move || Ok(node.witness_info())).await?.ok_or_else(|| {
        ApiError::not_found("this node does not witness").hint("onoal serve enables the witness")
    })?;
    Ok(axum::Json(info))
}

/// `DELETE /witness/evidence` parameters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EvidenceParams {
    /// The log's origin line (its OID).
    origin: String,
}

/// What was dropped.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct Dropped {
    /// The origin.
    origin: String,
    /// Evidence rows removed.
    dropped: usize,
}

/// Drops the split-view evidence held about a log (its operator settled the matter): the ledger
/// is synced again. A forked replica stays forked until `DELETE /ledger/forks/{ledger_id}`.
#[utoipa::path(delete, path = "/witness/evidence", tag = "witness", params(EvidenceParams),
    responses((status = 200, body = Dropped), (status = 404, body = ErrorBody)))]
pub(crate) async fn drop_evidence(
    State(state): State<AppState>,
    Query(p): Query<EvidenceParams>,
) -> Result<axum::Json<Dropped>, ApiError> {
    let node = state.control.node().clone();
    let dropped = node.drop_evidence(&p.origin).await.map_err(ApiError::internal)?;
    if dropped == 0 {
        return Err(ApiError::not_found(format!("no split-view evidence about {}", p.origin))
            .hint("onoal witness info lists what is held"));
    }
    Ok(axum::Json(Dropped { origin: p.origin, dropped }))
}
