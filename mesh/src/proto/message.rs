//! Requests and responses of the sync protocol (docs/protocol.md). Bodies are postcard; the
//! newtypes (`LedgerId`, `TreeSize`, `LogIndex`) are exactly their inner values on the wire.

use serde::{Deserialize, Serialize};

use onoal_engine::{Filter, Hash, LedgerId, LogIndex, TreeSize};

use super::cert::LedgerCertificate;

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
        ledger: LedgerId,
    },
    /// The newest checkpoint of `ledger` the server can serve, with a consistency proof from
    /// size `have` (no proof when `have` is 0 or not below it).
    Checkpoint {
        /// Ledger id.
        ledger: LedgerId,
        /// Size of the client's newest checkpoint.
        have: TreeSize,
    },
    /// The stored checkpoint of exactly `size` (fork evidence).
    CheckpointAt {
        /// Ledger id.
        ledger: LedgerId,
        /// Tree size.
        size: TreeSize,
    },
    /// Bundle `first` of the tree of `size` (a checkpoint size the server holds).
    Bundle {
        /// Ledger id.
        ledger: LedgerId,
        /// Checkpoint size.
        size: TreeSize,
        /// First seq (a multiple of 256).
        first: LogIndex,
    },
    /// Entries of the tree of `size` matching `filter`, from seq `cursor` on, each with its
    /// inclusion proof: a filtered sync. At most `limit` entries (and about 2 MiB) per page.
    Entries {
        /// Ledger id.
        ledger: LedgerId,
        /// Checkpoint size the proofs are for.
        size: TreeSize,
        /// Which entries.
        filter: Filter,
        /// First seq to consider.
        cursor: LogIndex,
        /// Most entries in the answer.
        limit: u32,
    },
    /// Like [`Request::Checkpoint`], answered once a checkpoint larger than `have` exists or
    /// after `wait_ms` (at most [`super::MAX_WAIT_MS`]): live follow.
    WaitCheckpoint {
        /// Ledger id.
        ledger: LedgerId,
        /// Size of the client's newest checkpoint.
        have: TreeSize,
        /// Longest wait.
        wait_ms: u32,
    },
    /// The server's tree's root at `old` and an RFC 9162 consistency proof from it to the
    /// tree of `new` (a checkpoint size the server serves): the fork probe, when a checkpoint
    /// was not proven consistent with the one held.
    Consistency {
        /// Ledger id.
        ledger: LedgerId,
        /// The size held by the client.
        old: TreeSize,
        /// The size of the checkpoint the server sent.
        new: TreeSize,
    },
    /// Like [`Request::Bundle`], for a narrower node of the tree: the entries
    /// `[first, min(first + width, size))`, `width` a power of two up to 256 and `first` a
    /// multiple of it. Receivers ask for these when entries are large, so no answer exceeds
    /// the bytes they hold per request. Answered as a bundle.
    Range {
        /// Ledger id.
        ledger: LedgerId,
        /// Checkpoint size.
        size: TreeSize,
        /// First seq (a multiple of `width`).
        first: LogIndex,
        /// Width.
        width: u32,
    },
    /// The seed's trust_request: the newest visibility policy of `ledger` the server holds,
    /// and the trust statements `ledger` signed (fresh ones when it is the server's own).
    Trust {
        /// Ledger id.
        ledger: LedgerId,
    },
    /// C2SP tlog-witness `add-checkpoint`: cosign `note` (a checkpoint of the client's log),
    /// consistent with the size `old` the client believes the server cosigned last.
    AddCheckpoint {
        /// The size the client believes the witness holds (0: none).
        old: TreeSize,
        /// The client's tree's root at `old` (lets a refusal prove a split view).
        old_root: Option<Hash>,
        /// RFC 9162 consistency proof from `old` to the checkpoint.
        proof: Vec<Hash>,
        /// The signed checkpoint note.
        note: String,
    },
    /// Proven split-view evidence a witness caught (postcard `SplitEvidence`): the receiver
    /// checks it with the log's pinned key, keeps it, and passes it on to its own peers once.
    Evidence {
        /// postcard bytes of the evidence.
        #[serde(with = "serde_bytes")]
        evidence: Vec<u8>,
    },
}

impl Request {
    /// The request's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "Hello",
            Self::Certificate { .. } => "Certificate",
            Self::Checkpoint { .. } => "Checkpoint",
            Self::CheckpointAt { .. } => "CheckpointAt",
            Self::Bundle { .. } => "Bundle",
            Self::Entries { .. } => "Entries",
            Self::WaitCheckpoint { .. } => "WaitCheckpoint",
            Self::Consistency { .. } => "Consistency",
            Self::Range { .. } => "Range",
            Self::Trust { .. } => "Trust",
            Self::AddCheckpoint { .. } => "AddCheckpoint",
            Self::Evidence { .. } => "Evidence",
        }
    }
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
    /// The client has too many requests of this kind open at this server (long polls); try
    /// again later.
    Busy,
    /// The ledger's visibility policy does not let the client read this; the message names
    /// the rule and the streams it may read.
    NotVisible,
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
        next_cursor: Option<LogIndex>,
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
    /// The answer to [`Request::Consistency`].
    Consistency {
        /// The server's tree's root at the old size.
        old_root: Hash,
        /// RFC 9162 consistency proof from the old size to the new one.
        proof: Vec<Hash>,
    },
    /// The seed's trust_response to [`Request::Trust`]: postcard bytes the client checks
    /// against the ledger's key before it keeps anything.
    Trust {
        /// The signed `VisibilityPolicy`; empty when the server holds none.
        #[serde(with = "serde_bytes")]
        policy: Vec<u8>,
        /// The ledger's signed `TrustStatement`s, as one postcard `Vec`.
        #[serde(with = "serde_bytes")]
        statements: Vec<u8>,
    },
    /// The answer to [`Request::AddCheckpoint`], as C2SP's HTTP has it.
    Witness {
        /// 200 (cosigned), 400, 403, 404, 409 (another size held), 422 (inconsistent).
        status: u16,
        /// 200: cosignature lines; 409: the size held and a newline; otherwise the reason.
        body: String,
        /// The witness's cosigning key (C2SP vkey): the channel is authenticated by the
        /// witness's ledger key, so the client learns the cosigning key from it.
        vkey: String,
    },
}

impl Response {
    /// The response's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "Hello",
            Self::Certificate { .. } => "Certificate",
            Self::Checkpoint { .. } => "Checkpoint",
            Self::NoCheckpoint => "NoCheckpoint",
            Self::Entries { .. } => "Entries",
            Self::Bundle { .. } => "Bundle",
            Self::Error { .. } => "Error",
            Self::Consistency { .. } => "Consistency",
            Self::Trust { .. } => "Trust",
            Self::Witness { .. } => "Witness",
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

#[cfg(test)]
mod decode_props {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::{DEFAULT_MAX_FRAME, frame_len};

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
            let ledger = LedgerId::from_bytes(ledger);
            for r in [
                Request::Checkpoint { ledger, have: TreeSize(a) },
                Request::CheckpointAt { ledger, size: TreeSize(a) },
                Request::Bundle { ledger, size: TreeSize(a), first: LogIndex(b) },
                Request::WaitCheckpoint { ledger, have: TreeSize(a), wait_ms: w },
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

    /// The newtypes did not change a byte on the wire: a request encodes as the raw ids and
    /// varints it was before.
    #[test]
    fn wire_bytes_are_pinned() {
        let r = Request::Bundle {
            ledger: LedgerId::from_bytes([7; 16]),
            size: TreeSize(300),
            first: LogIndex(256),
        };
        let mut want = vec![4u8];
        want.extend_from_slice(&[7; 16]);
        want.extend_from_slice(&[0xac, 0x02, 0x80, 0x02]);
        assert_eq!(postcard::to_stdvec(&r).unwrap(), want);
    }
}
