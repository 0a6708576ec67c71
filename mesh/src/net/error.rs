//! Why a sync (or connecting for one) failed, as the node's API reports it.

use std::net::SocketAddr;
use std::time::Duration;

use onoal_engine::LedgerId;
use onoal_engine::replica::ReplicaError;

use crate::proto::{ErrorCode, PeerMisbehaved};

/// Why a sync (or connecting for one) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The ledger to sync has no pinned key here.
    #[error("ledger {0} is not pinned; pin its key first: onoal peer add {0}@HOST:PORT --key HEX")]
    NotPinned(LedgerId),
    /// No address to reach the ledger.
    #[error("no address known for {0}; pass --from HOST:PORT or pin it with an address")]
    NoAddress(LedgerId),
    /// No pinned peer listens at the given address.
    #[error(
        "no pinned peer at {0}; pin the node there first: onoal peer add LEDGER_ID@{0} --key HEX"
    )]
    UnknownSource(String),
    /// The server presented another key than the one pinned.
    #[error(
        "refused the connection to {addr}: it presented key {found}, but {expected} is pinned for it; if its operator confirms the key changed, pin the new one: onoal peer add LEDGER_ID@{addr} --key NEW_KEY --replace-key"
    )]
    KeyMismatch {
        /// Address dialled.
        addr: SocketAddr,
        /// Pinned key (hex).
        expected: String,
        /// Presented key (hex).
        found: String,
    },
    /// The connection failed or dropped.
    #[error("connection to {addr} failed: {reason}; is `onoal serve` running there?")]
    Connect {
        /// Address dialled.
        addr: SocketAddr,
        /// Transport message.
        reason: String,
    },
    /// A request got no answer within the deadline.
    #[error(
        "{addr} did not answer the {request} request within {} s; the peer is stalled or unreachable (the deadline is --timeout)",
        after.as_secs_f64()
    )]
    TimedOut {
        /// Address of the peer.
        addr: SocketAddr,
        /// The request's kind.
        request: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The peer broke the protocol or sent data that does not verify; nothing of it was
    /// written and the violation is recorded against the peer.
    #[error("peer {peer} {violation}")]
    PeerMisbehaved {
        /// Peer key (hex, short).
        peer: String,
        /// What it did.
        violation: PeerMisbehaved,
    },
    /// The peer refused the request.
    #[error("the peer refused: {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The local replica refused (fork recorded, busy, storage).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Local storage or setup failed.
    #[error("{0}")]
    Local(String),
    /// The source's checkpoint lacks the witness cosignatures this node requires.
    #[error("{0}")]
    Uncosigned(String),
}

impl SyncError {
    /// True for errors worth retrying after reconnecting (follow mode): transport failures,
    /// timeouts and a peer's internal errors.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::TimedOut { .. }
                | Self::Refused { code: ErrorCode::Internal | ErrorCode::Busy, .. }
        )
    }
}
