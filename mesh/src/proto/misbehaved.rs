//! Violations of the protocol by a peer: one variant per violation, with its evidence. Each
//! ends the session (or the stream) and is recorded against the peer; none is ever a panic.

use onoal_engine::replica::BundleError;

use super::cert::CertificateError;

/// A violation of the protocol by a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// A checkpoint whose signature does not verify with the pinned key.
    #[error("sent a checkpoint with a bad signature: {0}")]
    BadSignature(String),
    /// A checkpoint not proven consistent with the one held.
    #[error("sent an inconsistent checkpoint: {old_size} -> {new_size}: {reason}")]
    InconsistentCheckpoint {
        /// Size held.
        old_size: u64,
        /// Size received.
        new_size: u64,
        /// Why the proof failed.
        reason: String,
    },
    /// Two validly signed checkpoints of the ledger disagree.
    #[error("served a fork of the ledger: {0}")]
    Fork(String),
    /// A bundle that does not verify against the checkpoint.
    #[error("sent a bad bundle: {0}")]
    BadBundle(BundleError),
    /// A bundle header whose entry count is not the bundle's size in the tree.
    #[error(
        "sent a bad bundle: bundle {first} announces {count} entries, the tree of {size} has {expected} there"
    )]
    BundleCount {
        /// First seq.
        first: u64,
        /// Entries announced.
        count: u32,
        /// Tree size.
        size: u64,
        /// Entries the tree has there.
        expected: u64,
    },
    /// A frame above the cap.
    #[error("sent a frame of {len} bytes; the cap is {max}")]
    OversizeFrame {
        /// Announced length.
        len: u32,
        /// Cap.
        max: u32,
    },
    /// A response that does not decode.
    #[error("violated the protocol: undecodable response: {0}")]
    UndecodableResponse(String),
    /// A request that does not decode.
    #[error("violated the protocol: undecodable request: {0}")]
    UndecodableRequest(String),
    /// A response of another kind than the request asks for.
    #[error("violated the protocol: answered {request} with {response}")]
    UnexpectedResponse {
        /// The request's kind.
        request: &'static str,
        /// The response's kind.
        response: &'static str,
    },
    /// A ledger certificate that does not verify.
    #[error("violated the protocol: certificate: {0}")]
    BadCertificate(CertificateError),
    /// A certificate for another key than the one of the connection (or the pinned one).
    #[error("violated the protocol: {0}")]
    CertificateMismatch(&'static str),
    /// A filtered sync's entry that does not match, lies before the cursor or beyond the tree,
    /// or comes out of order.
    #[error("violated the protocol: sent an entry outside the filter, the cursor or the tree")]
    EntryOutsideFilter,
    /// A filtered page whose next cursor does not advance.
    #[error("violated the protocol: a filtered page's next cursor does not advance")]
    CursorStalled,
    /// A visibility policy or trust statement that does not check against its signer's key.
    #[error("sent trust data that does not check: {0}")]
    BadTrustData(String),
    /// A relay served a replica beyond what the replica's origin allows this receiver.
    #[error("served data beyond its origin's visibility policy: {0}")]
    BeyondPolicy(String),
    /// A request accepted on a stream and never answered.
    #[error("did not answer the {request} request within {after_ms} ms")]
    Unresponsive {
        /// The request's kind.
        request: &'static str,
        /// The deadline it missed.
        after_ms: u64,
    },
}

impl PeerMisbehaved {
    /// What it costs the peer's trust ([`crate::trust::Penalty`]): proven lies (a forged
    /// checkpoint signature, a fork) drop it to 0; data that does not verify costs much;
    /// malformed input less; slowness little.
    pub fn penalty(&self) -> crate::trust::Penalty {
        use crate::trust::Penalty;
        match self {
            Self::BadSignature(_) | Self::Fork(_) => Penalty::Proven,
            Self::InconsistentCheckpoint { .. }
            | Self::BadBundle(_)
            | Self::BundleCount { .. }
            | Self::BadCertificate(_)
            | Self::CertificateMismatch(_)
            | Self::EntryOutsideFilter
            | Self::BadTrustData(_) => Penalty::Severe,
            Self::BeyondPolicy(_) => Penalty::Moderate,
            Self::OversizeFrame { .. }
            | Self::UndecodableResponse(_)
            | Self::UndecodableRequest(_)
            | Self::UnexpectedResponse { .. } => Penalty::Moderate,
            Self::CursorStalled | Self::Unresponsive { .. } => Penalty::Mild,
        }
    }

    /// Short kind name for records and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadSignature(_) => "bad_signature",
            Self::InconsistentCheckpoint { .. } => "inconsistent_checkpoint",
            Self::Fork(_) => "fork",
            Self::BadBundle(_) | Self::BundleCount { .. } => "bad_bundle",
            Self::OversizeFrame { .. } => "oversize_frame",
            Self::UndecodableResponse(_)
            | Self::UndecodableRequest(_)
            | Self::UnexpectedResponse { .. }
            | Self::BadCertificate(_)
            | Self::CertificateMismatch(_)
            | Self::EntryOutsideFilter
            | Self::CursorStalled => "protocol_violation",
            Self::Unresponsive { .. } => "timeout",
            Self::BadTrustData(_) => "bad_trust_data",
            Self::BeyondPolicy(_) => "beyond_policy",
        }
    }
}
