//! The sync protocol without I/O: frame format, messages, the ledger certificate, and the
//! plan of which bundles a receiver still needs. `crate::net` moves the bytes.
//!
//! Wire format (docs/protocol.md): every message is a frame `len (u32 BE) || body`, with `len`
//! checked against a cap *before* anything is allocated. Bodies are postcard. Each request
//! opens its own bidirectional QUIC stream: one request frame, then the response frame; a
//! bundle response is followed by one raw frame per entry (its leaf data).

pub mod session;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use onoal_engine::Hash;

/// ALPN of the sync protocol, version 1.
pub const ALPN_SYNC: &[u8] = b"onoal-sync/1";

/// Largest frame a peer may send, unless configured otherwise. Entries travel one per frame,
/// so this also bounds an entry's leaf data (payload limit 1 MiB by default).
pub const DEFAULT_MAX_FRAME: u32 = 4 << 20;

/// Largest request frame a server reads (requests carry ids, sizes and filters only).
pub const MAX_REQUEST_FRAME: u32 = 16 << 10;

/// Longest wait a follower may ask for in [`Request::WaitCheckpoint`].
pub const MAX_WAIT_MS: u32 = 30_000;

/// A violation of the protocol by a peer. Ends the session; recorded against the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerMisbehaved {
    /// A checkpoint whose signature does not verify with the pinned key.
    #[error("sent a checkpoint with a bad signature: {0}")]
    BadSignature(String),
    /// A checkpoint not proven consistent with the one held.
    #[error("sent an inconsistent checkpoint: {0}")]
    InconsistentCheckpoint(String),
    /// Two validly signed checkpoints of the ledger disagree.
    #[error("served a fork of the ledger: {0}")]
    Fork(String),
    /// A bundle that does not verify against the checkpoint.
    #[error("sent a bad bundle: {0}")]
    BadBundle(String),
    /// A frame above the cap.
    #[error("sent a frame of {len} bytes; the cap is {max}")]
    OversizeFrame {
        /// Announced length.
        len: u32,
        /// Cap.
        max: u32,
    },
    /// Anything else: undecodable frames, wrong response kinds, a bad certificate.
    #[error("violated the protocol: {0}")]
    ProtocolViolation(String),
}

impl PeerMisbehaved {
    /// Short kind name for records and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadSignature(_) => "bad_signature",
            Self::InconsistentCheckpoint(_) => "inconsistent_checkpoint",
            Self::Fork(_) => "fork",
            Self::BadBundle(_) => "bad_bundle",
            Self::OversizeFrame { .. } => "oversize_frame",
            Self::ProtocolViolation(_) => "protocol_violation",
        }
    }
}

/// Checks a frame header: the body length, if within `max`.
///
/// # Errors
/// [`PeerMisbehaved::OversizeFrame`].
pub fn frame_len(header: [u8; 4], max: u32) -> Result<usize, PeerMisbehaved> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(PeerMisbehaved::OversizeFrame { len, max });
    }
    Ok(len as usize)
}

/// `len || body`.
pub fn encode_frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// A request, first frame of a stream opened by the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Request {
    /// Exchange ledger certificates (first request of a connection).
    Hello {
        /// The client's certificate.
        certificate: LedgerCertificate,
    },
    /// The certificate of `ledger` as the server knows it (own, or of a replica it holds).
    Certificate {
        /// Ledger id.
        ledger: [u8; 16],
    },
    /// The newest checkpoint of `ledger` the server can serve, with a consistency proof from
    /// size `have` (no proof when `have` is 0 or not below it).
    Checkpoint {
        /// Ledger id.
        ledger: [u8; 16],
        /// Size of the client's newest checkpoint.
        have: u64,
    },
    /// The stored checkpoint of exactly `size` (fork evidence).
    CheckpointAt {
        /// Ledger id.
        ledger: [u8; 16],
        /// Tree size.
        size: u64,
    },
    /// Bundle `first` of the tree of `size` (a checkpoint size the server holds).
    Bundle {
        /// Ledger id.
        ledger: [u8; 16],
        /// Checkpoint size.
        size: u64,
        /// First seq (a multiple of 256).
        first: u64,
    },
    /// Entries of the tree of `size` matching `filter`, from seq `cursor` on, each with its
    /// inclusion proof: a filtered sync. At most `limit` entries (and about 2 MiB) per page.
    Entries {
        /// Ledger id.
        ledger: [u8; 16],
        /// Checkpoint size the proofs are for.
        size: u64,
        /// Which entries.
        filter: EntryFilter,
        /// First seq to consider.
        cursor: u64,
        /// Most entries in the answer.
        limit: u32,
    },
    /// Like [`Request::Checkpoint`], answered once a checkpoint larger than `have` exists or
    /// after `wait_ms` (at most [`MAX_WAIT_MS`]): live follow.
    WaitCheckpoint {
        /// Ledger id.
        ledger: [u8; 16],
        /// Size of the client's newest checkpoint.
        have: u64,
        /// Longest wait.
        wait_ms: u32,
    },
}

/// Why a server refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The client's key is not pinned here; the operator must `onoal peer add` it.
    NotPinned,
    /// The server holds no such ledger.
    UnknownLedger,
    /// The request's arguments do not fit what the server holds.
    BadRequest,
    /// The server failed internally.
    Internal,
}

/// A response, first frame the server writes on the request's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Response {
    /// The server's certificate.
    Hello {
        /// Certificate.
        certificate: LedgerCertificate,
    },
    /// A ledger certificate.
    Certificate {
        /// Certificate.
        certificate: LedgerCertificate,
    },
    /// A checkpoint note and the consistency proof asked for.
    Checkpoint {
        /// The signed note, exactly as the ledger signed it.
        note: String,
        /// RFC 9162 consistency proof.
        consistency: Vec<Hash>,
    },
    /// No checkpoint (yet, or of that size).
    NoCheckpoint,
    /// A page of a filtered sync.
    Entries {
        /// Matching entries in seq order, with inclusion proofs in the requested tree.
        entries: Vec<ProvenEntryWire>,
        /// Ask again from this seq; `None` when there are no more.
        next_cursor: Option<u64>,
    },
    /// Header of a bundle: `count` raw frames of leaf data follow, then the stream ends.
    Bundle {
        /// Entries that follow.
        count: u32,
        /// Path from the bundle's subtree to the root (see `onoal_engine::replica`).
        path: Vec<Hash>,
    },
    /// Refused.
    Error {
        /// Why.
        code: ErrorCode,
        /// What to do, for the operator.
        message: String,
    },
}

/// Which entries a filtered sync wants. All given fields must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFilter {
    /// Stream name.
    pub stream: Option<String>,
    /// Entry type.
    pub entry_type: Option<String>,
    /// Subject OID.
    pub subject: Option<String>,
    /// Issuer OID.
    pub issuer: Option<String>,
    /// Earliest timestamp (ms, inclusive).
    pub since_ms: Option<u64>,
    /// Latest timestamp (ms, inclusive).
    pub until_ms: Option<u64>,
}

impl EntryFilter {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// As an engine query from `cursor` on.
    pub fn to_query(&self, cursor: u64, limit: usize) -> onoal_engine::Query {
        onoal_engine::Query {
            stream: self.stream.clone(),
            entry_type: self.entry_type.clone(),
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            cursor: Some(cursor.to_string()),
            limit: Some(limit),
        }
    }
}

/// An entry of a filtered sync on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenEntryWire {
    /// Leaf data.
    #[serde(with = "serde_bytes")]
    pub leaf_data: Vec<u8>,
    /// Inclusion proof in the requested tree.
    pub proof: Vec<Hash>,
}

/// Domain separation of certificate signatures.
const CERTIFICATE_CONTEXT: &[u8] = b"onoal ledger certificate v1\n";

/// A ledger's self-signed certificate: binds ledger id, OID and key, with a validity period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerCertificate {
    /// Ledger id (UUID bytes).
    pub ledger_id: [u8; 16],
    /// Hierarchical OID.
    pub oid: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Issued at (ms since the epoch).
    pub issued_ms: u64,
    /// Expires at (ms since the epoch).
    pub expires_ms: u64,
    /// Ed25519 signature by `public_key` over the context and the fields above.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Signature or key invalid.
    #[error("the ledger certificate's signature does not verify")]
    BadSignature,
    /// Outside its validity period.
    #[error("the ledger certificate is not valid now (issued {issued_ms}, expires {expires_ms})")]
    Expired {
        /// Issued.
        issued_ms: u64,
        /// Expires.
        expires_ms: u64,
    },
    /// The OID does not parse.
    #[error("the ledger certificate's OID is invalid: {0}")]
    BadOid(String),
}

impl LedgerCertificate {
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = CERTIFICATE_CONTEXT.to_vec();
        out.extend_from_slice(&self.ledger_id);
        out.extend_from_slice(&(self.oid.len() as u32).to_be_bytes());
        out.extend_from_slice(self.oid.as_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.issued_ms.to_be_bytes());
        out.extend_from_slice(&self.expires_ms.to_be_bytes());
        out
    }

    /// Issues a certificate valid from `now_ms` for `valid_ms`.
    pub fn issue(
        identity: &onoal_engine::Identity,
        key: &SigningKey,
        now_ms: u64,
        valid_ms: u64,
    ) -> Self {
        let mut cert = Self {
            ledger_id: *identity.ledger_id.as_bytes(),
            oid: identity.oid.as_str().to_owned(),
            public_key: *identity.public_key.as_bytes(),
            issued_ms: now_ms,
            expires_ms: now_ms.saturating_add(valid_ms),
            signature: Vec::new(),
        };
        cert.signature = key.sign(&cert.signed_bytes()).to_bytes().to_vec();
        cert
    }

    /// Checks the self-signature and validity at `now_ms`; returns the identity it binds.
    ///
    /// # Errors
    /// [`CertificateError`].
    pub fn verify(&self, now_ms: u64) -> Result<onoal_engine::Identity, CertificateError> {
        let key = VerifyingKey::from_bytes(&self.public_key)
            .map_err(|_| CertificateError::BadSignature)?;
        let sig =
            Signature::from_slice(&self.signature).map_err(|_| CertificateError::BadSignature)?;
        key.verify_strict(&self.signed_bytes(), &sig)
            .map_err(|_| CertificateError::BadSignature)?;
        if now_ms < self.issued_ms.saturating_sub(5 * 60_000) || now_ms > self.expires_ms {
            return Err(CertificateError::Expired {
                issued_ms: self.issued_ms,
                expires_ms: self.expires_ms,
            });
        }
        let oid = onoal_engine::Oid::parse(&self.oid)
            .map_err(|e| CertificateError::BadOid(e.to_string()))?;
        Ok(onoal_engine::Identity {
            ledger_id: uuid::Uuid::from_bytes(self.ledger_id),
            oid,
            public_key: key,
        })
    }
}

/// Which bundles a receiver requests: from the tile holding its first missing entry to the
/// end of the target tree, in order. Pure, so resumption is testable without a network.
pub fn bundle_starts(held: u64, target_size: u64) -> impl Iterator<Item = u64> {
    let bundle = onoal_engine::replica::BUNDLE_ENTRIES;
    let from = held - held % bundle;
    (from..target_size).step_by(bundle as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_above_the_cap_are_refused_before_allocation() {
        assert_eq!(frame_len(100u32.to_be_bytes(), 100), Ok(100));
        assert_eq!(
            frame_len(101u32.to_be_bytes(), 100),
            Err(PeerMisbehaved::OversizeFrame { len: 101, max: 100 })
        );
        let mut out = Vec::new();
        encode_frame(b"abc", &mut out);
        assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn resumption_starts_at_the_tile_of_the_first_missing_entry() {
        assert_eq!(bundle_starts(0, 600).collect::<Vec<_>>(), [0, 256, 512]);
        assert_eq!(bundle_starts(300, 600).collect::<Vec<_>>(), [256, 512]);
        assert_eq!(bundle_starts(512, 600).collect::<Vec<_>>(), [512]);
        assert_eq!(bundle_starts(600, 600).collect::<Vec<_>>(), [512]);
        assert_eq!(bundle_starts(768, 768).count(), 0);
    }

    #[test]
    fn certificates_verify_and_any_change_is_refused() {
        let key = onoal_engine::identity::SecretKey::from_seed(&[3; 32]);
        let identity = onoal_engine::Identity {
            ledger_id: uuid::Uuid::from_bytes([9; 16]),
            oid: onoal_engine::Oid::parse("oid:onoal:test:a").unwrap(),
            public_key: key.public(),
        };
        let cert = LedgerCertificate::issue(&identity, key.signing_key(), 1_000_000, 1_000);
        assert_eq!(cert.verify(1_000_500).unwrap(), identity);
        assert!(matches!(cert.verify(2_000_001), Err(CertificateError::Expired { .. })));
        let bytes = postcard::to_stdvec(&cert).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            if let Ok(c) = postcard::from_bytes::<LedgerCertificate>(&b) {
                assert!(c.verify(1_000_500).is_err(), "byte {i} changed yet verified");
            }
        }
    }
}

#[cfg(test)]
mod decode_props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Whatever a peer sends, decoding returns a value or an error, never a panic or a
        /// huge allocation.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = postcard::from_bytes::<Request>(&bytes);
            let _ = postcard::from_bytes::<Response>(&bytes);
            if let Ok(c) = postcard::from_bytes::<LedgerCertificate>(&bytes) {
                let _ = c.verify(0);
            }
            if bytes.len() >= 4 {
                let header = [bytes[0], bytes[1], bytes[2], bytes[3]];
                let _ = frame_len(header, DEFAULT_MAX_FRAME);
            }
        }

        #[test]
        fn requests_round_trip(ledger in any::<[u8; 16]>(), a in any::<u64>(), b in any::<u64>(), w in any::<u32>()) {
            for r in [
                Request::Checkpoint { ledger, have: a },
                Request::CheckpointAt { ledger, size: a },
                Request::Bundle { ledger, size: a, first: b },
                Request::WaitCheckpoint { ledger, have: a, wait_ms: w },
                Request::Certificate { ledger },
            ] {
                let bytes = postcard::to_stdvec(&r).unwrap();
                prop_assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), r);
            }
        }

        #[test]
        fn responses_round_trip(note in ".{0,200}", n in 0usize..20, count in any::<u32>()) {
            let path: Vec<Hash> = (0..n).map(|i| Hash([i as u8; 32])).collect();
            for r in [
                Response::Checkpoint { note: note.clone(), consistency: path.clone() },
                Response::Bundle { count, path: path.clone() },
                Response::Error { code: ErrorCode::NotPinned, message: note.clone() },
                Response::NoCheckpoint,
            ] {
                let bytes = postcard::to_stdvec(&r).unwrap();
                prop_assert_eq!(postcard::from_bytes::<Response>(&bytes).unwrap(), r);
            }
        }
    }
}
