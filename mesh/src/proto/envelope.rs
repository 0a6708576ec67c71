//! The mesh message envelope (the seed's `MeshMessage`): who sent it, to whom, how far it may
//! still travel, a type-specific payload, and the origin's Ed25519 signature. And the receiver's
//! first line of defence, [`Inbox`]: size, decoding, hop limits, signature, timestamp window and
//! a bounded seen-cache, each rejection counted per delivering peer.
//!
//! What is signed (docs/protocol.md, "Mesh messages"): everything the origin decides — id, type,
//! timestamp, from, to, payload — behind a context string. Not `path` and `ttl`: every relay
//! appends itself to the path and decrements the TTL, and it cannot sign for the origin. A relay
//! can therefore lie about the path and the TTL, and nothing else; receivers bound both
//! (`path.len() + ttl <= MAX_HOPS`, no node twice, not themselves), so a lie can shorten a
//! message's life but not extend it past [`MAX_HOPS`].

use std::collections::{HashMap, VecDeque};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

use crate::id::PeerId;
use crate::proto::record::PeerRecord;

/// ALPN of mesh messages, version 1.
pub const ALPN_MESH: &[u8] = b"onoal-mesh/1";

/// Largest encoded message a node reads (payloads are records, queries and small answers;
/// bulk data travels over sync).
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// Most hops a message can make: `path.len() + ttl` never exceeds it.
pub const MAX_HOPS: u8 = 16;

/// Domain separation of envelope signatures.
const CONTEXT: &[u8] = b"onoal mesh message v1\n";

/// The seed's 14 message types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MessageType {
    /// Announce presence (a join); payload: the sender's peer record.
    PeerAnnounce,
    /// Ask for the peer records the receiver knows.
    PeerDiscover,
    /// Ask for a sync (answered over the sync protocol).
    SyncRequest,
    /// Answer to `SyncRequest`.
    SyncResponse,
    /// Cross-ledger query.
    QueryRequest,
    /// Answer to `QueryRequest`.
    QueryResponse,
    /// Ask for a proof to be checked.
    ProofVerify,
    /// Answer to `ProofVerify`.
    ProofResponse,
    /// Check a cross-ledger reference.
    ReferenceCheck,
    /// Answer to `ReferenceCheck`.
    ReferenceResponse,
    /// Ask for a trust statement.
    TrustRequest,
    /// Answer to `TrustRequest`.
    TrustResponse,
    /// Keep-alive.
    Heartbeat,
    /// A change of the topology (a leave, a fork seen).
    TopologyUpdate,
}

impl MessageType {
    /// All types, in the seed's order.
    pub const ALL: [Self; 14] = [
        Self::PeerAnnounce,
        Self::PeerDiscover,
        Self::SyncRequest,
        Self::SyncResponse,
        Self::QueryRequest,
        Self::QueryResponse,
        Self::ProofVerify,
        Self::ProofResponse,
        Self::ReferenceCheck,
        Self::ReferenceResponse,
        Self::TrustRequest,
        Self::TrustResponse,
        Self::Heartbeat,
        Self::TopologyUpdate,
    ];

    /// The seed's name (`peer_announce`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PeerAnnounce => "peer_announce",
            Self::PeerDiscover => "peer_discover",
            Self::SyncRequest => "sync_request",
            Self::SyncResponse => "sync_response",
            Self::QueryRequest => "query_request",
            Self::QueryResponse => "query_response",
            Self::ProofVerify => "proof_verify",
            Self::ProofResponse => "proof_response",
            Self::ReferenceCheck => "reference_check",
            Self::ReferenceResponse => "reference_response",
            Self::TrustRequest => "trust_request",
            Self::TrustResponse => "trust_response",
            Self::Heartbeat => "heartbeat",
            Self::TopologyUpdate => "topology_update",
        }
    }

    /// Whether this version acts on the type. The others are answered "not supported" (the
    /// `*_response` types travel as replies; sync runs over `onoal-sync/1`; trust statements
    /// travel over sync as `Request::Trust`).
    pub fn supported(self) -> bool {
        matches!(
            self,
            Self::PeerAnnounce
                | Self::PeerDiscover
                | Self::Heartbeat
                | Self::TopologyUpdate
                | Self::QueryRequest
                | Self::ReferenceCheck
                | Self::ProofVerify
        )
    }
}

/// The origin of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The origin's ledger id.
    pub ledger_id: LedgerId,
    /// The origin's OID (checked where it matters: a record binds it).
    pub oid: String,
    /// The origin's Ed25519 key: the signature's key.
    pub public_key: [u8; 32],
}

/// The destination; both `None` is a broadcast.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The destination ledger.
    pub ledger_id: Option<LedgerId>,
    /// The destination OID (or OID prefix).
    pub oid: Option<String>,
}

/// A mesh message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshMessage {
    /// Unique id (a random UUID), the key of the seen-cache.
    pub id: [u8; 16],
    /// Type.
    pub kind: MessageType,
    /// When the origin made it (ms since the epoch).
    pub timestamp_ms: u64,
    /// Origin.
    pub from: Origin,
    /// Destination.
    pub to: Destination,
    /// The keys of the relays it passed, in order (not signed).
    pub path: Vec<[u8; 32]>,
    /// Hops it may still make (not signed).
    pub ttl: u8,
    /// Type-specific payload (postcard).
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The origin's Ed25519 signature over [`MeshMessage::signed_bytes`].
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// The part the origin signs.
#[derive(Serialize)]
struct Signed<'a> {
    id: &'a [u8; 16],
    kind: MessageType,
    timestamp_ms: u64,
    from: &'a Origin,
    to: &'a Destination,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
}

impl MeshMessage {
    /// A new message from the holder of `key`, signed, with a fresh id.
    pub fn new(
        key: &SigningKey,
        from: (LedgerId, &str),
        to: Destination,
        kind: MessageType,
        payload: Vec<u8>,
        ttl: u8,
        timestamp_ms: u64,
    ) -> Self {
        let id = *uuid::Uuid::new_v4().as_bytes();
        Self::with_id(id, key, from, to, kind, payload, ttl, timestamp_ms)
    }

    /// As [`Self::new`], with the id chosen by the caller (a routed payload is sealed under
    /// its message's id before the message is signed).
    #[allow(clippy::too_many_arguments)]
    pub fn with_id(
        id: [u8; 16],
        key: &SigningKey,
        from: (LedgerId, &str),
        to: Destination,
        kind: MessageType,
        payload: Vec<u8>,
        ttl: u8,
        timestamp_ms: u64,
    ) -> Self {
        let mut message = Self {
            id,
            kind,
            timestamp_ms,
            from: Origin {
                ledger_id: from.0,
                oid: from.1.to_owned(),
                public_key: key.verifying_key().to_bytes(),
            },
            to,
            path: Vec::new(),
            ttl: ttl.min(MAX_HOPS),
            payload,
            signature: Vec::new(),
        };
        message.signature = key.sign(&message.signed_bytes()).to_bytes().to_vec();
        message
    }

    /// The bytes the origin signs: a context string, then the postcard encoding of id, type,
    /// timestamp, from, to and payload (docs/protocol.md).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let signed = Signed {
            id: &self.id,
            kind: self.kind,
            timestamp_ms: self.timestamp_ms,
            from: &self.from,
            to: &self.to,
            payload: &self.payload,
        };
        let mut out = CONTEXT.to_vec();
        // Encoding plain structs into a Vec cannot fail.
        out.extend_from_slice(&postcard::to_stdvec(&signed).unwrap_or_default());
        out
    }

    /// Whether the signature verifies with `from.public_key`.
    pub fn signature_valid(&self) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.from.public_key) else { return false };
        let Ok(signature) = Signature::from_slice(&self.signature) else { return false };
        !key.is_weak() && key.verify_strict(&self.signed_bytes(), &signature).is_ok()
    }

    /// The origin as a peer key, if the key is a curve point.
    pub fn origin(&self) -> Option<PeerId> {
        PeerId::from_bytes(&self.from.public_key)
    }

    /// The message as a relay forwards it: `relay` appended to the path, one hop fewer.
    /// `None` when it may not travel further.
    pub fn forwarded_by(&self, relay: &PeerId) -> Option<Self> {
        let ttl = self.ttl.checked_sub(1).filter(|t| *t > 0)?;
        let mut next = self.clone();
        next.path.push(*relay.as_bytes());
        next.ttl = ttl;
        Some(next)
    }

    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes without checking anything but the encoding (use [`Inbox::accept`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, Rejected> {
        postcard::from_bytes(bytes).map_err(|_| Rejected::Malformed)
    }
}

/// The payload of a `peer_discover`: which records the asker wants.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoverQuery {
    /// Only ledgers under this OID prefix.
    pub oid_prefix: Option<String>,
    /// At most this many (capped at [`MAX_DISCOVER_RECORDS`]).
    pub limit: u16,
}

/// The payload of a `topology_update`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TopologyChange {
    /// The origin is shutting down (the seed's leave): stop heartbeating it.
    Leaving,
}

/// Most records one `peer_discover` answer carries.
pub const MAX_DISCOVER_RECORDS: usize = 64;

/// Largest reply a node reads.
pub const MAX_REPLY_BYTES: u32 = 1 << 20;

/// What a node answers a mesh message with, on the message's stream. The QUIC connection
/// authenticates the replier; records inside are self-signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MeshReply {
    /// Taken.
    Ack,
    /// The records asked for (`peer_discover`).
    Records(Vec<PeerRecord>),
    /// The type is defined but this version does not act on it yet.
    NotSupported {
        /// The seed's type name.
        kind: String,
    },
    /// The message was dropped by the inbox (the reason's short name).
    Dropped {
        /// Why.
        reason: String,
    },
    /// The payload is not what the type requires.
    Invalid {
        /// Why.
        reason: String,
    },
    /// The destination's answer to a routed request, sealed for the origin (relays pass it
    /// back unchanged along the path it came).
    Sealed {
        /// `seal_reply` bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// A relay could not pass a routed request on (no route, TTL spent, no answer in time).
    Unreachable {
        /// Why, as the relay that gave up says it.
        reason: String,
    },
}

impl MeshReply {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

/// Why a received message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("the message is over {MAX_MESSAGE_BYTES} bytes")]
    Oversize,
    /// Not a message.
    #[error("the message does not decode")]
    Malformed,
    /// The origin's signature does not verify.
    #[error("the message's signature does not verify")]
    BadSignature,
    /// Its id was seen before.
    #[error("the message was seen before (a replay or a second copy)")]
    Replay,
    /// Older than the replay window.
    #[error("the message is older than the replay window")]
    Stale,
    /// From the future, beyond the allowed clock skew.
    #[error("the message's timestamp is in the future")]
    Future,
    /// `path.len() + ttl` over [`MAX_HOPS`], or a TTL of 0.
    #[error("the message's hop count is out of bounds")]
    Hops,
    /// The path holds a node twice, or this node, or the origin.
    #[error("the message went in a loop")]
    Loop,
    /// Delivered by a peer that is neither its origin nor its last relay.
    #[error("the message was delivered by a peer that is neither its origin nor its last relay")]
    Sender,
}

impl Rejected {
    /// All reasons.
    pub const ALL: [Self; 9] = [
        Self::Oversize,
        Self::Malformed,
        Self::BadSignature,
        Self::Replay,
        Self::Stale,
        Self::Future,
        Self::Hops,
        Self::Loop,
        Self::Sender,
    ];

    /// Short name (metrics label, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Replay => "replay",
            Self::Stale => "stale",
            Self::Future => "future",
            Self::Hops => "hops",
            Self::Loop => "loop",
            Self::Sender => "sender",
        }
    }
}

/// Limits of an [`Inbox`].
#[derive(Clone, Copy, Debug)]
pub struct InboxConfig {
    /// How old a message may be (ms).
    pub window_ms: u64,
    /// How far in the future a timestamp may be (clock skew, ms).
    pub skew_ms: u64,
    /// Most message ids remembered.
    pub seen_capacity: usize,
    /// Most peers counted one by one (further peers share one counter).
    pub counted_peers: usize,
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self { window_ms: 5 * 60_000, skew_ms: 30_000, seen_capacity: 1 << 16, counted_peers: 4096 }
    }
}

/// Drops per reason, for one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DropCounts {
    /// Count per reason (only reasons that happened).
    pub by_reason: std::collections::BTreeMap<&'static str, u64>,
    /// Messages accepted.
    pub accepted: u64,
}

/// A receiver's checks, in order: size, decoding, hops, loops, timestamp window, seen-cache,
/// signature (the expensive check last; an id enters the cache only once its signature
/// verified, so a forged copy cannot shadow the real message).
///
/// The seen-cache is bounded: when it is full, the oldest id leaves, and the window's lower
/// edge moves up to that id's timestamp, so an evicted id can never be replayed — under a
/// flood the window shrinks instead of the memory growing.
pub struct Inbox {
    local: PeerId,
    config: InboxConfig,
    seen: HashMap<[u8; 16], u64>,
    order: VecDeque<([u8; 16], u64)>,
    floor_ms: u64,
    counts: HashMap<PeerId, DropCounts>,
    others: DropCounts,
}

impl Inbox {
    /// An empty inbox of the node `local`.
    pub fn new(local: PeerId, config: InboxConfig) -> Self {
        Self {
            local,
            config,
            seen: HashMap::new(),
            order: VecDeque::new(),
            floor_ms: 0,
            counts: HashMap::new(),
            others: DropCounts::default(),
        }
    }

    /// Checks `bytes` that `peer` delivered over an authenticated connection: as [`Self::accept`],
    /// and the deliverer must be the message's origin (no path) or its last relay.
    ///
    /// # Errors
    /// [`Rejected`]: the message is dropped.
    pub fn accept_delivered(
        &mut self,
        peer: PeerId,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<MeshMessage, Rejected> {
        if let Ok(m) = MeshMessage::decode(bytes) {
            let deliverer = m.path.last().copied().unwrap_or(m.from.public_key);
            if deliverer != *peer.as_bytes() {
                *self.counts_mut(peer).by_reason.entry(Rejected::Sender.as_str()).or_default() += 1;
                return Err(Rejected::Sender);
            }
        }
        self.accept(peer, bytes, now_ms)
    }

    /// Checks `bytes` delivered by `peer` at `now_ms`; counts the outcome against `peer`.
    ///
    /// # Errors
    /// [`Rejected`]: the message is dropped.
    pub fn accept(
        &mut self,
        peer: PeerId,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<MeshMessage, Rejected> {
        let outcome = self.check(bytes, now_ms);
        let counts = self.counts_mut(peer);
        match &outcome {
            Ok(_) => counts.accepted += 1,
            Err(reason) => *counts.by_reason.entry(reason.as_str()).or_default() += 1,
        }
        outcome
    }

    fn check(&mut self, bytes: &[u8], now_ms: u64) -> Result<MeshMessage, Rejected> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Rejected::Oversize);
        }
        let message = MeshMessage::decode(bytes)?;
        if message.ttl == 0 || message.path.len() + usize::from(message.ttl) > usize::from(MAX_HOPS)
        {
            return Err(Rejected::Hops);
        }
        let mut hops: Vec<&[u8; 32]> = message.path.iter().collect();
        hops.push(&message.from.public_key);
        hops.sort_unstable();
        let repeated = hops.windows(2).any(|w| w[0] == w[1]);
        if repeated || hops.binary_search(&self.local.as_bytes()).is_ok() {
            return Err(Rejected::Loop);
        }
        if message.timestamp_ms > now_ms.saturating_add(self.config.skew_ms) {
            return Err(Rejected::Future);
        }
        if message.timestamp_ms < now_ms.saturating_sub(self.config.window_ms)
            || message.timestamp_ms <= self.floor_ms
        {
            return Err(Rejected::Stale);
        }
        if self.seen.contains_key(&message.id) {
            return Err(Rejected::Replay);
        }
        if !message.signature_valid() {
            return Err(Rejected::BadSignature);
        }
        self.remember(message.id, message.timestamp_ms, now_ms);
        Ok(message)
    }

    fn remember(&mut self, id: [u8; 16], timestamp_ms: u64, now_ms: u64) {
        let oldest_kept = now_ms.saturating_sub(self.config.window_ms);
        while let Some(&(old, ts)) = self.order.front() {
            if ts >= oldest_kept && self.order.len() < self.config.seen_capacity {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
            if ts >= oldest_kept {
                // Evicted while still inside the window: nothing at or below it is accepted.
                self.floor_ms = self.floor_ms.max(ts);
            }
        }
        self.seen.insert(id, timestamp_ms);
        self.order.push_back((id, timestamp_ms));
    }

    fn counts_mut(&mut self, peer: PeerId) -> &mut DropCounts {
        if self.counts.len() >= self.config.counted_peers && !self.counts.contains_key(&peer) {
            return &mut self.others;
        }
        self.counts.entry(peer).or_default()
    }

    /// Counts a message from `peer` dropped before it reached the inbox (oversize frames are
    /// refused by the reader before they are allocated).
    pub fn count(&mut self, peer: PeerId, reason: Rejected) {
        *self.counts_mut(peer).by_reason.entry(reason.as_str()).or_default() += 1;
    }

    /// What `peer` delivered, by outcome.
    pub fn counts(&self, peer: &PeerId) -> DropCounts {
        self.counts.get(peer).cloned().unwrap_or_default()
    }

    /// Every counted peer.
    pub fn all_counts(&self) -> impl Iterator<Item = (&PeerId, &DropCounts)> {
        self.counts.iter()
    }

    /// Ids remembered now.
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests;
