//! Signed peer records (the seed's `LedgerIdentity`) and the book that decides which record of
//! a ledger a node uses when discovery methods disagree.
//!
//! A record is self-signed by the ledger it names: any source (a bootstrap node, the registry,
//! DNS, gossip, the DHT) can carry it, none can forge it. A higher `sequence` replaces a lower
//! one of the same key; a record with a *different* key for a known ledger only replaces the
//! one held when it comes from a source of higher priority (manual > bootstrap > registry >
//! DNS > gossip/DHT), so a discovered record can never take over a pinned ledger.

use std::collections::HashMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use onoal_engine::{LedgerId, Oid};

use crate::id::PeerId;

/// Domain separation of record signatures.
const CONTEXT: &[u8] = b"onoal peer record v1\n";

/// Longest text field (endpoint, capability, metadata value), in bytes.
pub const MAX_FIELD: usize = 256;

/// Most capabilities a record lists.
pub const MAX_CAPABILITIES: usize = 16;

/// Most registered assets a record announces (use case 3), each an id of at most
/// [`MAX_ID_BYTES`] bytes: 20 records of a DHT answer stay under its limit.
pub const MAX_ASSETS: usize = 16;

/// Longest asset (and transfer) id, bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Whether `id` is a valid asset or transfer id: 1 to [`MAX_ID_BYTES`] bytes of ASCII letters,
/// digits and `-_.:` (the one rule; `transfer::check_id` says what is wrong).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Where a ledger can be reached. QUIC is the mesh's; the others are the control plane's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// QUIC `host:port` (sync, mesh messages, DHT).
    pub quic: Option<String>,
    /// HTTP API base URL.
    pub http: Option<String>,
    /// WebSocket URL.
    pub ws: Option<String>,
    /// gRPC `host:port`.
    pub grpc: Option<String>,
}

/// Descriptive fields (the seed's `metadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Human name.
    pub name: Option<String>,
    /// Software version.
    pub version: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Region.
    pub region: Option<String>,
}

/// A ledger's signed description of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Ledger id.
    pub ledger_id: LedgerId,
    /// OID.
    pub oid: String,
    /// Ed25519 key: the signer, and the key its QUIC handshake must present.
    pub public_key: [u8; 32],
    /// Endpoints.
    pub endpoints: Endpoints,
    /// Capabilities (`sync`, `query`, `proof-verify`, `witness`, ...).
    pub capabilities: Vec<String>,
    /// Metadata.
    pub metadata: Metadata,
    /// Registered assets the ledger holds (use case 3), at most [`MAX_ASSETS`]; published in
    /// the DHT under [`crate::dht::Key::of_asset`] too. A claim, proven only by the asset's
    /// history (`onoal asset verify`).
    pub assets: Vec<String>,
    /// Higher replaces lower (a ledger bumps it on every change).
    pub sequence: u64,
    /// Not used after this time (ms since the epoch).
    pub expires_ms: u64,
    /// Signature by `public_key` over the context and every field above.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Why a record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The signature does not verify with the record's key (or the key is unusable).
    #[error("the peer record's signature does not verify")]
    BadSignature,
    /// Past its expiry.
    #[error("the peer record expired at {expires_ms} (now {now_ms})")]
    Expired {
        /// Expiry.
        expires_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// The OID does not parse.
    #[error("the peer record's OID is invalid: {0:?}")]
    BadOid(String),
    /// A field over its limit.
    #[error("the peer record's {0} is too large")]
    TooLarge(&'static str),
}

/// The fields a record signs.
#[derive(Serialize)]
struct Signed<'a> {
    ledger_id: LedgerId,
    oid: &'a str,
    public_key: &'a [u8; 32],
    endpoints: &'a Endpoints,
    capabilities: &'a [String],
    metadata: &'a Metadata,
    assets: &'a [String],
    sequence: u64,
    expires_ms: u64,
}

/// What a new record is made of (everything but the key and the signature).
#[derive(Clone, Debug, Default)]
pub struct RecordFields {
    /// Endpoints.
    pub endpoints: Endpoints,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Metadata.
    pub metadata: Metadata,
    /// Registered assets held.
    pub assets: Vec<String>,
}

impl PeerRecord {
    /// A record of the ledger `ledger_id` / `oid` held by `key`, signed.
    pub fn sign(
        key: &SigningKey,
        ledger_id: LedgerId,
        oid: &Oid,
        fields: RecordFields,
        sequence: u64,
        expires_ms: u64,
    ) -> Self {
        let mut record = Self {
            ledger_id,
            oid: oid.as_str().to_owned(),
            public_key: key.verifying_key().to_bytes(),
            endpoints: fields.endpoints,
            capabilities: fields.capabilities,
            metadata: fields.metadata,
            assets: fields.assets,
            sequence,
            expires_ms,
            signature: Vec::new(),
        };
        record.signature = key.sign(&record.signed_bytes()).to_bytes().to_vec();
        record
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let signed = Signed {
            ledger_id: self.ledger_id,
            oid: &self.oid,
            public_key: &self.public_key,
            endpoints: &self.endpoints,
            capabilities: &self.capabilities,
            metadata: &self.metadata,
            assets: &self.assets,
            sequence: self.sequence,
            expires_ms: self.expires_ms,
        };
        let mut out = CONTEXT.to_vec();
        out.extend_from_slice(&postcard::to_stdvec(&signed).unwrap_or_default());
        out
    }

    /// Checks limits, the OID, the expiry and the signature (in that order: the signature,
    /// the costly check, last).
    ///
    /// # Errors
    /// [`RecordError`]: do not use the record.
    pub fn check(&self, now_ms: u64) -> Result<Oid, RecordError> {
        let fields = [
            &self.endpoints.quic,
            &self.endpoints.http,
            &self.endpoints.ws,
            &self.endpoints.grpc,
            &self.metadata.name,
            &self.metadata.version,
            &self.metadata.description,
            &self.metadata.region,
        ];
        if fields.iter().any(|f| f.as_ref().is_some_and(|s| s.len() > MAX_FIELD)) {
            return Err(RecordError::TooLarge("endpoint or metadata"));
        }
        if self.capabilities.len() > MAX_CAPABILITIES
            || self.capabilities.iter().any(|c| c.len() > MAX_FIELD)
        {
            return Err(RecordError::TooLarge("capability list"));
        }
        if self.assets.len() > MAX_ASSETS || self.assets.iter().any(|a| !is_valid_id(a)) {
            return Err(RecordError::TooLarge("asset list"));
        }
        let oid = Oid::parse(&self.oid).map_err(|_| RecordError::BadOid(self.oid.clone()))?;
        if self.expires_ms <= now_ms {
            return Err(RecordError::Expired { expires_ms: self.expires_ms, now_ms });
        }
        let key =
            VerifyingKey::from_bytes(&self.public_key).map_err(|_| RecordError::BadSignature)?;
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| RecordError::BadSignature)?;
        if key.is_weak() || key.verify_strict(&self.signed_bytes(), &signature).is_err() {
            return Err(RecordError::BadSignature);
        }
        Ok(oid)
    }

    /// The record's key as a peer id (`None` if not a curve point: `check` refuses those).
    pub fn peer(&self) -> Option<PeerId> {
        PeerId::from_bytes(&self.public_key)
    }

    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }
}

/// Whether `oid` lies under `prefix`, component by component (`oid:onoal:org:a` is under
/// `oid:onoal:org` and under itself; `oid:onoal:org:ab` is not under `oid:onoal:org:a`).
pub fn oid_is_under(oid: &str, prefix: &Oid) -> bool {
    Oid::parse(oid).is_ok_and(|oid| {
        let mut ours = oid.components();
        prefix.components().all(|c| ours.next() == Some(c))
    })
}

/// Every prefix of an OID, itself first: `oid:onoal:org:a`, `oid:onoal:org`, `oid:onoal`.
pub fn oid_prefixes(oid: &Oid) -> Vec<String> {
    let parts: Vec<&str> = oid.components().collect();
    (1..=parts.len()).rev().map(|n| format!("oid:{}", parts[..n].join(":"))).collect()
}

/// Where a record came from, highest priority first (the seed's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Pinned by the operator (`onoal peer add`).
    Manual,
    /// Learned from a configured bootstrap node.
    Bootstrap,
    /// Looked up in a registry.
    Registry,
    /// Found through DNS SRV/TXT.
    Dns,
    /// Heard through gossip (membership, peer exchange).
    Gossip,
    /// Found in the DHT.
    Dht,
}

impl Source {
    /// Rank: lower wins. Gossip and the DHT share the lowest.
    fn rank(self) -> u8 {
        match self {
            Self::Manual => 0,
            Self::Bootstrap => 1,
            Self::Registry => 2,
            Self::Dns => 3,
            Self::Gossip | Self::Dht => 4,
        }
    }

    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Bootstrap => "bootstrap",
            Self::Registry => "registry",
            Self::Dns => "dns",
            Self::Gossip => "gossip",
            Self::Dht => "dht",
        }
    }
}

/// A record held, and the best source that vouched for its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The newest valid record.
    pub record: PeerRecord,
    /// Highest-priority source that gave a record with this key.
    pub source: Source,
}

/// What [`RecordBook::offer`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offered {
    /// A ledger not known before.
    New,
    /// A newer record (or a better source) for a known ledger.
    Updated,
    /// Nothing new (same or older sequence, or a weaker source with no news).
    Unchanged,
    /// A different key for a known ledger from a source that does not outrank the holder's:
    /// ignored (a possible impersonation).
    KeyConflict {
        /// The key held.
        held: PeerId,
        /// The source it came from.
        source: Source,
    },
    /// The record is invalid.
    Invalid(RecordError),
}

/// The records a node knows, one per ledger, bounded.
#[derive(Debug, Default)]
pub struct RecordBook {
    records: HashMap<LedgerId, Known>,
    capacity: usize,
}

impl RecordBook {
    /// A book of at most `capacity` ledgers (further discovered ledgers are not kept; manual
    /// ones always are).
    pub fn new(capacity: usize) -> Self {
        Self { records: HashMap::new(), capacity }
    }

    /// Offers `record` from `source` at `now_ms`.
    pub fn offer(&mut self, record: PeerRecord, source: Source, now_ms: u64) -> Offered {
        if let Err(e) = record.check(now_ms) {
            return Offered::Invalid(e);
        }
        let Some(held) = self.records.get_mut(&record.ledger_id) else {
            if self.records.len() >= self.capacity && source != Source::Manual {
                self.expire(now_ms);
                if self.records.len() >= self.capacity {
                    return Offered::Unchanged;
                }
            }
            self.records.insert(record.ledger_id, Known { record, source });
            return Offered::New;
        };
        if held.record.public_key != record.public_key {
            if source.rank() < held.source.rank() {
                *held = Known { record, source };
                return Offered::Updated;
            }
            if let Some(held_key) = held.record.peer() {
                return Offered::KeyConflict { held: held_key, source: held.source };
            }
            *held = Known { record, source };
            return Offered::Updated;
        }
        let mut changed = false;
        if source.rank() < held.source.rank() {
            held.source = source;
            changed = true;
        }
        if record.sequence > held.record.sequence {
            held.record = record;
            changed = true;
        }
        if changed { Offered::Updated } else { Offered::Unchanged }
    }

    /// Drops records past their expiry.
    pub fn expire(&mut self, now_ms: u64) {
        self.records.retain(|_, k| k.source == Source::Manual || k.record.expires_ms > now_ms);
    }

    /// The record of `ledger`.
    pub fn get(&self, ledger: &LedgerId) -> Option<&Known> {
        self.records.get(ledger)
    }

    /// Forgets `ledger`.
    pub fn remove(&mut self, ledger: &LedgerId) -> Option<Known> {
        self.records.remove(ledger)
    }

    /// Every record.
    pub fn iter(&self) -> impl Iterator<Item = &Known> {
        self.records.values()
    }

    /// Records whose OID starts with `prefix` (component-wise).
    pub fn by_oid_prefix<'a>(&'a self, prefix: &'a Oid) -> impl Iterator<Item = &'a Known> + 'a {
        self.records.values().filter(move |k| oid_is_under(&k.record.oid, prefix))
    }

    /// Number of ledgers.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No ledgers.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests;
