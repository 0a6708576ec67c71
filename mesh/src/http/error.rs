//! Every 4xx/5xx of the API is one JSON object: `{"error": message, "kind": stable name,
//! "hint": what to do}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use onoal_engine::ReadError;
use onoal_engine::replica::ReplicaError;

use crate::control::ControlError;
use crate::net::SyncError;
use crate::peer::PeerError;

/// The body of every error answer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// A stable name for the class of error (`not_found`, `bad_request`, `peer`, ...).
    pub kind: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
}

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), hint: None }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, kind: self.kind.to_owned(), hint: self.hint };
        (self.status, Json(body)).into_response()
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let message = e.to_string();
        match e {
            ReadError::OutOfRange { .. }
            | ReadError::NoCheckpoint(_)
            | ReadError::NotHeld { .. } => Self::not_found(message),
            ReadError::BadCursor(_) => {
                Self::bad_request(message).hint("pass the next_cursor of a previous page")
            }
            ReadError::Sparse(_)
            | ReadError::SparseProofSize { .. }
            | ReadError::Proof(_)
            | ReadError::InvalidInput(_) => Self::bad_request(message),
            ReadError::ReadOnly => Self::new(StatusCode::CONFLICT, "read_only", message),
            _ => Self::internal(message).hint("run `onoal verify` on the node's data directory"),
        }
    }
}

impl From<ReplicaError> for ApiError {
    fn from(e: ReplicaError) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<PeerError> for ApiError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::KeyChanged { .. } => {
                Self::new(StatusCode::CONFLICT, "key_changed", e.to_string()).hint(
                    "pass \"replace_key\": true once the ledger's operator confirmed the new key",
                )
            }
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<SyncError> for ApiError {
    fn from(e: SyncError) -> Self {
        let message = e.to_string();
        match e {
            SyncError::NotPinned(_) | SyncError::UnknownSource(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_pinned", message)
                    .hint("pin the peer first: POST /mesh/connect")
            }
            SyncError::NoAddress(_) => {
                Self::bad_request(message).hint("pass \"from\": \"HOST:PORT\"")
            }
            SyncError::TimedOut { .. } => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message)
            }
            SyncError::Connect { .. } | SyncError::Refused { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "peer_unreachable", message)
            }
            SyncError::KeyMismatch { .. } | SyncError::PeerMisbehaved { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "peer_misbehaved", message)
            }
            SyncError::Uncosigned(_) => Self::new(StatusCode::CONFLICT, "uncosigned", message)
                .hint("the source must publish checkpoints its witnesses cosigned, or lower --require-witnesses"),
            SyncError::Replica(ReplicaError::Fork { .. }) => {
                Self::new(StatusCode::CONFLICT, "fork", message)
                    .hint("GET /ledger/forks shows the evidence")
            }
            _ => Self::internal(message),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotPinned(_) => {
                Self::new(StatusCode::NOT_FOUND, "not_pinned", e.to_string())
                    .hint("pin the peer first: POST /mesh/connect")
            }
            ControlError::AlreadyFollowing(_) => {
                Self::new(StatusCode::CONFLICT, "already_following", e.to_string())
            }
            ControlError::Peer(e) => e.into(),
            ControlError::Sync(e) => e.into(),
            ControlError::Append(e) => match e {
                onoal_engine::AppendError::Invalid { .. } => Self::bad_request(e.to_string()),
                _ => Self::internal(e.to_string()),
            },
            other => Self::internal(other.to_string()),
        }
    }
}

/// Extractors whose rejections are [`ApiError`]s (axum's answer in plain text otherwise).
pub(crate) mod extract {
    use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
    use axum::extract::{FromRequest, FromRequestParts, Request};
    use axum::http::request::Parts;
    use serde::de::DeserializeOwned;

    use super::ApiError;

    fn rejected(status: axum::http::StatusCode, text: String) -> ApiError {
        let kind = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "bad_request"
        };
        let status = if kind == "too_large" { status } else { axum::http::StatusCode::BAD_REQUEST };
        ApiError::new(status, kind, text)
    }

    /// A JSON body.
    pub(crate) struct Json<T>(pub(crate) T);

    impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
        type Rejection = ApiError;

        async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
            match axum::Json::<T>::from_request(req, state).await {
                Ok(axum::Json(v)) => Ok(Self(v)),
                Err(e @ JsonRejection::MissingJsonContentType(_)) => {
                    Err(rejected(e.status(), e.body_text())
                        .hint("send Content-Type: application/json"))
                }
                Err(e) => Err(rejected(e.status(), e.body_text())),
            }
        }
    }

    /// Path parameters.
    pub(crate) struct Path<T>(pub(crate) T);

    impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
        type Rejection = ApiError;

        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
            axum::extract::Path::<T>::from_request_parts(parts, state)
                .await
                .map(|p| Self(p.0))
                .map_err(|e: PathRejection| rejected(e.status(), e.body_text()))
        }
    }

    /// Query parameters.
    pub(crate) struct Query<T>(pub(crate) T);

    impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
        type Rejection = ApiError;

        async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map(|q| Self(q.0))
                .map_err(|e: QueryRejection| rejected(e.status(), e.body_text()))
        }
    }
}
