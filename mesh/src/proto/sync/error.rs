//! Why a receiver's session ended early, and the outcomes that are not failures (a bundle too
//! large for the byte cap, or deferred for memory), which the session handles itself.

use std::time::Duration;

use onoal_engine::replica::ReplicaError;

use super::session::RequestId;
use crate::proto::{ErrorCode, PeerMisbehaved};

/// Why a session ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer violated the protocol.
    #[error("{0}")]
    Misbehaved(PeerMisbehaved),
    /// The peer refused a request.
    #[error("the peer refused: {1}")]
    Refused(ErrorCode, String),
    /// The connection failed.
    #[error("{0}")]
    Transport(String),
    /// A bundle's answer grew past the bytes one request may hold (not a violation: entries
    /// may be large). The session asks for its entries again in narrower bundles.
    #[error("a bundle of {entries} entries passed {bytes} bytes")]
    TooLarge {
        /// Entries received before the cap.
        entries: u64,
        /// Bytes received.
        bytes: u64,
    },
    /// The receiver had no memory for a bundle that is not next in line (its byte budget was
    /// full), so it stopped reading it (not a violation). The session asks for it again later
    /// and keeps fewer bundles in flight until commits free the budget.
    #[error("a bundle was deferred: the sync's byte budget was full")]
    Deferred,
    /// A request got no answer in time.
    #[error("the {kind} request got no answer within {} s", after.as_secs_f64())]
    TimedOut {
        /// The request.
        request: RequestId,
        /// Its kind.
        kind: &'static str,
        /// The deadline it missed.
        after: Duration,
    },
    /// The checkpoint lacks the cosignatures this node requires (not a violation: the
    /// source's witnesses may not have cosigned yet, or the source has none).
    #[error(
        "the checkpoint of size {size} carries {} of the {need} witness cosignatures required (by: {}); the source must publish checkpoints its witnesses cosigned (onoal serve --witness ID --witness-quorum K)",
        have.len(), if have.is_empty() { "none".to_owned() } else { have.join(", ") }
    )]
    Uncosigned {
        /// Checkpoint size.
        size: u64,
        /// Trusted witnesses that cosigned it.
        have: Vec<String>,
        /// Required.
        need: usize,
    },
    /// The local replica refused (a fork recorded earlier, busy, storage).
    #[error(transparent)]
    Replica(ReplicaError),
    /// The driver reported a local failure.
    #[error("{0}")]
    Local(String),
}
