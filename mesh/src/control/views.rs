//! The JSON shapes of the control plane. The HTTP API answers with these and the CLI prints
//! them with `--json`, so a script sees the same object whichever way it asks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use onoal_engine::replica::{ForkEvidence, SyncRecord};
use onoal_engine::{Ledger, Log, QueryPage, ReadError, SignedCheckpoint, StoredEntry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::net::SyncSummary;
use crate::peer::PeerRecord;

/// An entry as `get`, `query` and the API show it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EntryView {
    /// Index in the log (0-based).
    pub seq: u64,
    /// Time the ledger assigned, ms since the epoch.
    pub timestamp_ms: u64,
    /// The same time, RFC 3339 in UTC (derived from `timestamp_ms`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    /// Stream name.
    pub stream: String,
    /// Entry type.
    #[serde(rename = "type")]
    pub entry_type: String,
    /// Subject OID.
    pub subject: Option<String>,
    /// Issuer OID.
    pub issuer: Option<String>,
    /// The payload as text, when it is UTF-8 (exactly one of `payload` and `payload_b64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload, standard base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_b64: Option<String>,
    /// Leaf hash of entry seq-1 (hex; zeros for seq 0).
    pub prev_hash: String,
    /// RFC 9162 leaf hash (hex).
    pub leaf_hash: String,
    /// The leaf data the leaf hash is over, standard base64.
    pub leaf_data_b64: String,
    /// References to entries of other ledgers, `LEDGER_ID:SEQ:LEAF_HASH`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refs: Vec<String>,
    /// The issuer's Ed25519 public key (hex), when the entry is issuer-signed; the signature
    /// was checked before this view was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_key: Option<String>,
    /// The issuer's signature over the content (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_signature: Option<String>,
}

impl EntryView {
    /// The payload's bytes (from `payload` or `payload_b64`); `None` when neither or both are
    /// given, or the base64 does not decode.
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        match (&self.payload, &self.payload_b64) {
            (Some(t), None) => Some(t.clone().into_bytes()),
            (None, Some(b)) => B64.decode(b).ok(),
            _ => None,
        }
    }

    /// Whether this view (as read from a file, perhaps written by an older version: base64
    /// payloads, no `time`) shows exactly the entry `derived` was made from.
    pub fn shows_same_entry_as(&self, derived: &Self) -> bool {
        let mut shown = self.clone();
        if shown.payload_bytes().is_none() || shown.payload_bytes() != derived.payload_bytes() {
            return false;
        }
        shown.payload.clone_from(&derived.payload);
        shown.payload_b64.clone_from(&derived.payload_b64);
        if shown.time.is_empty() {
            shown.time.clone_from(&derived.time);
        }
        shown == *derived
    }
}

impl From<&StoredEntry> for EntryView {
    fn from(e: &StoredEntry) -> Self {
        let c = &e.entry.content;
        Self {
            seq: e.entry.seq,
            timestamp_ms: e.entry.timestamp_ms,
            time: onoal_engine::time::rfc3339(e.entry.timestamp_ms),
            stream: c.stream.as_str().to_owned(),
            entry_type: c.entry_type.as_str().to_owned(),
            subject: c.subject.as_ref().map(|o| o.as_str().to_owned()),
            issuer: c.issuer.as_ref().map(|o| o.as_str().to_owned()),
            payload: std::str::from_utf8(&c.payload).ok().map(str::to_owned),
            payload_b64: std::str::from_utf8(&c.payload).is_err().then(|| B64.encode(&c.payload)),
            prev_hash: e.entry.prev_hash.to_hex(),
            leaf_hash: e.leaf_hash.to_hex(),
            leaf_data_b64: B64.encode(&e.leaf_data),
            refs: c.refs.iter().map(ToString::to_string).collect(),
            issuer_key: c.signature.map(|s| hex::encode(s.public_key)),
            issuer_signature: c.signature.map(|s| hex::encode(s.signature)),
        }
    }
}

/// One page of a query.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryPageView {
    /// Matching entries, in seq order.
    pub entries: Vec<EntryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<&QueryPage> for QueryPageView {
    fn from(p: &QueryPage) -> Self {
        Self {
            entries: p.entries.iter().map(EntryView::from).collect(),
            next_cursor: p.next_cursor.clone(),
        }
    }
}

/// What an append acknowledged: durable in the ledger's durability mode.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ReceiptView {
    /// The entry's seq.
    pub seq: u64,
    /// Its leaf hash (hex).
    pub leaf_hash: String,
}

/// The answer to an append.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AppendView {
    /// One receipt per entry, in the order given.
    pub receipts: Vec<ReceiptView>,
    /// Entries in the log after this append was durable.
    pub tree_size: u64,
}

/// A signed checkpoint: the C2SP note and what it says.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    /// Tree size.
    #[serde(rename = "tree_size", alias = "size")]
    pub size: u64,
    /// Root hash (hex).
    pub root: String,
    /// The C2SP signed note, verbatim.
    pub note: String,
    /// Key names of the other signatures on the note: the witnesses that cosigned it (their
    /// lines were checked when they were added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosigned_by: Vec<String>,
}

impl From<&SignedCheckpoint> for CheckpointView {
    fn from(c: &SignedCheckpoint) -> Self {
        let cosigned_by = onoal_engine::cosignature::split_note(&c.note)
            .map(|(_, lines)| {
                lines
                    .iter()
                    .filter_map(|l| l.strip_prefix("\u{2014} ")?.split_once(' ').map(|(n, _)| n))
                    .filter(|n| *n != c.origin)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Self { size: c.size, root: c.root.to_hex(), note: c.note.clone(), cosigned_by }
    }
}

/// RFC 9162 inclusion proof.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct InclusionProofView {
    /// The entry.
    pub seq: u64,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// The entry's leaf hash (hex).
    pub leaf_hash: String,
    /// Root of that tree (hex).
    pub root: String,
    /// Audit path, leaf to root (hex).
    pub proof: Vec<String>,
}

impl InclusionProofView {
    /// The proof of `seq` in the tree of `size` (default: the durable size) of `log`.
    ///
    /// # Errors
    /// Out of range; storage errors.
    pub fn build(log: &Log, seq: u64, size: Option<u64>) -> Result<Self, ReadError> {
        let size = match size {
            Some(s) => s,
            None => log.head()?.size,
        };
        let e = log.entry(seq)?;
        let proof = log.inclusion_proof(seq, size)?;
        Ok(Self {
            seq,
            tree_size: size,
            leaf_hash: e.leaf_hash.to_hex(),
            root: log.root_at(size)?.to_hex(),
            proof: proof.iter().map(|h| h.to_hex()).collect(),
        })
    }
}

/// RFC 9162 consistency proof.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProofView {
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// Root at the older size (hex).
    pub old_root: String,
    /// Root at the newer size (hex).
    pub new_root: String,
    /// The proof (hex).
    pub proof: Vec<String>,
}

impl ConsistencyProofView {
    /// The proof between `old` and `new` of `log`.
    ///
    /// # Errors
    /// Out of range or order; a sparse replica; storage errors.
    pub fn build(log: &Log, old: u64, new: u64) -> Result<Self, ReadError> {
        let proof = log.consistency_proof(old, new)?;
        Ok(Self {
            old_size: old,
            new_size: new,
            old_root: log.root_at(old)?.to_hex(),
            new_root: log.root_at(new)?.to_hex(),
            proof: proof.iter().map(|h| h.to_hex()).collect(),
        })
    }
}

/// A reported violation.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct MisbehaviourView {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// Its kind (stable name).
    pub kind: String,
    /// What happened.
    pub detail: String,
}

/// A pinned peer.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PeerView {
    /// Its ledger id.
    pub ledger_id: String,
    /// Its pinned Ed25519 key (hex).
    pub public_key: String,
    /// Its OID, once its certificate was seen.
    pub oid: Option<String>,
    /// Where it was reached, newest pin first.
    pub addresses: Vec<String>,
    /// Protocols it answered.
    pub capabilities: Vec<String>,
    /// Last contact (ms since the epoch; 0: never).
    pub last_seen_ms: u64,
    /// When its last certificate expires.
    pub certificate_expires_ms: Option<u64>,
    /// Violations ever reported.
    pub misbehaviour_count: u64,
    /// The most recent reports.
    pub misbehaviour: Vec<MisbehaviourView>,
    /// How this node knows it: `manual` (pinned with `peer add`).
    pub source: String,
    /// This node's trust in it, derived (a pin alone: 0.5).
    pub trust: Option<f64>,
    /// Keys pinned before the current one, oldest first (`peer add --replace-key`).
    #[serde(default)]
    pub replaced_keys: Vec<ReplacedKeyView>,
}

/// A key that was pinned until the operator replaced it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplacedKeyView {
    /// The old key (hex).
    pub public_key: String,
    /// When it was replaced (ms since the epoch).
    pub replaced_at_ms: u64,
}

impl PeerView {
    /// With this node's trust in it.
    pub fn with_trust(mut self, trust: &crate::trust::store::TrustStore, now_ms: u64) -> Self {
        if let Ok(id) = self.ledger_id.parse() {
            let level = trust.level(trust.me(), &id, now_ms);
            self.trust = Some((level * 1e6).round() / 1e6);
        }
        self
    }
}

/// A ledger's signed record as discovery found it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    /// Ledger id.
    pub ledger_id: String,
    /// OID.
    pub oid: String,
    /// Ed25519 key (hex): its QUIC handshake must present it.
    pub public_key: String,
    /// QUIC address.
    pub quic: Option<String>,
    /// HTTP API.
    pub http: Option<String>,
    /// WebSocket.
    pub ws: Option<String>,
    /// gRPC.
    pub grpc: Option<String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Name.
    pub name: Option<String>,
    /// Software version.
    pub version: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Record sequence (higher replaces lower).
    pub sequence: u64,
    /// Expiry (ms since the epoch).
    pub expires_ms: u64,
    /// Where it came from: manual, bootstrap, registry, dns, gossip, dht (or `self`).
    pub source: String,
    /// As a member (heartbeated): connected, disconnected or left; `null` when not a member.
    pub status: Option<String>,
    /// Heartbeat round trip, smoothed (ms).
    pub latency_ms: Option<u32>,
    /// Last message from it (ms since the epoch).
    pub last_message_ms: Option<u64>,
}

impl RecordView {
    /// The view of `record` from `source`.
    pub fn new(record: &crate::proto::record::PeerRecord, source: &str) -> Self {
        Self {
            ledger_id: record.ledger_id.to_string(),
            oid: record.oid.clone(),
            public_key: hex::encode(record.public_key),
            quic: record.endpoints.quic.clone(),
            http: record.endpoints.http.clone(),
            ws: record.endpoints.ws.clone(),
            grpc: record.endpoints.grpc.clone(),
            capabilities: record.capabilities.clone(),
            name: record.metadata.name.clone(),
            version: record.metadata.version.clone(),
            region: record.metadata.region.clone(),
            sequence: record.sequence,
            expires_ms: record.expires_ms,
            source: source.to_owned(),
            status: None,
            latency_ms: None,
            last_message_ms: None,
        }
    }

    /// With what membership knows of it.
    pub fn with_member(mut self, member: Option<&crate::membership::MemberConnection>) -> Self {
        if let Some(m) = member {
            self.status = Some(m.status.as_str().to_owned());
            self.latency_ms = m.latency_ms;
            self.last_message_ms = m.last_message_ms;
        }
        self
    }
}

impl From<&crate::proto::record::Known> for RecordView {
    fn from(k: &crate::proto::record::Known) -> Self {
        Self::new(&k.record, k.source.as_str())
    }
}

impl From<&PeerRecord> for PeerView {
    fn from(p: &PeerRecord) -> Self {
        Self {
            ledger_id: p.ledger_id.to_string(),
            public_key: hex::encode(p.public_key),
            oid: p.oid.clone(),
            addresses: p.addresses.clone(),
            capabilities: p.capabilities.clone(),
            last_seen_ms: p.last_seen_ms,
            certificate_expires_ms: p.certificate.as_ref().map(|c| c.expires_ms),
            misbehaviour_count: p.misbehaviour_count,
            misbehaviour: p
                .misbehaviour
                .iter()
                .map(|m| MisbehaviourView {
                    at_ms: m.at_ms,
                    kind: m.kind.clone(),
                    detail: m.detail.clone(),
                })
                .collect(),
            source: "manual".into(),
            trust: None,
            replaced_keys: p
                .replaced_keys
                .iter()
                .map(|k| ReplacedKeyView {
                    public_key: hex::encode(k.public_key),
                    replaced_at_ms: k.replaced_at_ms,
                })
                .collect(),
        }
    }
}

/// A replica and its sync state.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplicaView {
    /// The replicated ledger.
    pub ledger_id: String,
    /// `full` or `sparse` (a filtered sync's entries).
    pub kind: String,
    /// The ledger's OID.
    pub oid: String,
    /// Entries held (the tree size of the held log).
    #[serde(rename = "tree_size", alias = "size")]
    pub size: u64,
    /// Root of the held tree (hex).
    pub root: String,
    /// Size of the newest verified checkpoint.
    pub checkpoint_size: Option<u64>,
    /// Sync status.
    pub status: Option<String>,
    /// The last sync's failure.
    pub last_error: Option<String>,
}

/// Every replica (full, then sparse).
///
/// # Errors
/// Storage errors or a damaged record.
pub fn replicas(ledger: &Ledger) -> Result<Vec<ReplicaView>, onoal_engine::replica::ReplicaError> {
    let mut list = Vec::new();
    for (log, record) in replica_records(ledger)? {
        let head = log.head()?;
        let size = if log.is_sparse() { log.range(0, u64::MAX)?.len() as u64 } else { head.size };
        list.push(ReplicaView {
            ledger_id: log.identity().ledger_id.to_string(),
            kind: if log.is_sparse() { "sparse" } else { "full" }.to_owned(),
            oid: log.identity().oid.as_str().to_owned(),
            size,
            root: head.root.to_hex(),
            checkpoint_size: record.as_ref().map(|r| r.checkpoint_size),
            status: record.as_ref().map(|r| r.status.as_str().to_owned()),
            last_error: record.and_then(|r| r.last_error),
        });
    }
    Ok(list)
}

fn replica_records(
    ledger: &Ledger,
) -> Result<Vec<(Log, Option<SyncRecord>)>, onoal_engine::replica::ReplicaError> {
    let mut out = Vec::new();
    for log in ledger.replicas().into_iter().chain(ledger.sparse_replicas()) {
        let id = log.identity().ledger_id;
        let record = if log.is_sparse() {
            ledger.sparse_sync_record(&id)?
        } else {
            ledger.sync_record(&id)?
        };
        out.push((log, record));
    }
    Ok(out)
}

/// The consistency proof that a fork's two checkpoints disagree.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ForkProofView {
    /// The smaller size.
    pub old_size: u64,
    /// The larger tree's root at the smaller size (hex).
    pub old_root: String,
    /// The larger size.
    pub new_size: u64,
    /// RFC 9162 consistency proof (hex).
    pub consistency: Vec<String>,
}

/// A fork: two validly signed checkpoints of one ledger that disagree.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ForkView {
    /// The forked ledger.
    pub ledger_id: String,
    /// Why the checkpoints conflict.
    pub reason: String,
    /// When it was found (ms since the epoch).
    pub detected_ms: u64,
    /// The checkpoint held (C2SP note).
    pub held_checkpoint: String,
    /// The conflicting one received (C2SP note).
    pub received_checkpoint: String,
    /// Proof, when the sizes differ.
    pub proof: Option<ForkProofView>,
}

impl ForkView {
    fn new(id: String, f: ForkEvidence) -> Self {
        Self {
            ledger_id: id,
            reason: f.reason,
            detected_ms: f.detected_ms,
            held_checkpoint: f.held,
            received_checkpoint: f.received,
            proof: f.proof.map(|p| ForkProofView {
                old_size: p.old_size,
                old_root: p.old_root.to_hex(),
                new_size: p.new_size,
                consistency: p.consistency.iter().map(|h| h.to_hex()).collect(),
            }),
        }
    }
}

/// Every fork found while syncing.
///
/// # Errors
/// Storage errors or a damaged record.
pub fn forks(ledger: &Ledger) -> Result<Vec<ForkView>, onoal_engine::replica::ReplicaError> {
    Ok(replica_records(ledger)?
        .into_iter()
        .filter_map(|(log, record)| {
            let fork = record?.fork?;
            Some(ForkView::new(log.identity().ledger_id.to_string(), fork))
        })
        .collect())
}

/// What one sync did.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncSummaryView {
    /// The replicated ledger.
    pub ledger_id: String,
    /// Entries held before.
    pub from_size: u64,
    /// Entries held after.
    pub to_size: u64,
    /// Size of the newest verified checkpoint.
    pub checkpoint_size: u64,
    /// Entries received and committed.
    pub entries: u64,
    /// Leaf bytes received.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// True: everything written was verified against the signed checkpoint.
    pub verified: bool,
}

impl From<&SyncSummary> for SyncSummaryView {
    fn from(s: &SyncSummary) -> Self {
        Self {
            ledger_id: s.ledger_id.to_string(),
            from_size: s.from_size,
            to_size: s.to_size,
            checkpoint_size: s.checkpoint_size,
            entries: s.entries,
            bytes: s.bytes,
            seconds: s.seconds,
            verified: s.verified,
        }
    }
}

/// The format tag of a proof file.
pub const PROOF_FORMAT: &str = "onoal-proof/1";

/// A self-contained proof that an entry is in a ledger (`onoal proof export`), checkable offline
/// with nothing but the ledger's C2SP vkey (`onoal proof verify`): the entry, its leaf data,
/// its RFC 9162 inclusion proof and the ledger's signed checkpoint the proof leads to.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofFile {
    /// `onoal-proof/1`.
    pub format: String,
    /// The ledger.
    pub ledger_id: String,
    /// Its OID (the checkpoint's origin).
    pub oid: String,
    /// Its C2SP verifier key, as the exporter knew it (a verifier must get the vkey
    /// elsewhere: this copy is a hint, never trusted).
    pub vkey: String,
    /// The entry's seq.
    pub seq: u64,
    /// The entry, readable (checked against the leaf data).
    pub entry: EntryView,
    /// RFC 9162 inclusion proof of the leaf in the tree of `tree_size`, hex hashes.
    pub inclusion_proof: Vec<String>,
    /// The checkpoint's tree size.
    pub tree_size: u64,
    /// The ledger's signed checkpoint note.
    pub checkpoint: String,
}

/// What a verified proof file proves.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ProofVerdict {
    /// Whether it verified.
    pub valid: bool,
    /// Why not, when it did not.
    pub reason: Option<String>,
    /// The entry's seq.
    pub seq: u64,
    /// The ledger's OID, from the vkey.
    pub oid: String,
    /// The checkpoint's size.
    pub tree_size: u64,
}

impl ProofFile {
    /// The proof of entry `seq` of `log` in its newest signed checkpoint.
    ///
    /// # Errors
    /// No checkpoint reaches the entry yet, or a read fails.
    pub fn build(log: &Log, seq: u64) -> Result<Self, String> {
        let cp = log
            .latest_checkpoint_at_most(log.durable_size())
            .map_err(|e| e.to_string())?
            .ok_or("this ledger has no signed checkpoint yet: run `onoal checkpoint`")?;
        if seq >= cp.size {
            return Err(format!(
                "entry {seq} is not in the newest signed checkpoint (size {}); run `onoal checkpoint` and export again",
                cp.size
            ));
        }
        let e = log.entry(seq).map_err(|e| e.to_string())?;
        let proof = log.inclusion_proof(seq, cp.size).map_err(|e| e.to_string())?;
        let identity = log.identity();
        Ok(Self {
            format: PROOF_FORMAT.to_owned(),
            ledger_id: identity.ledger_id.to_string(),
            oid: identity.oid.as_str().to_owned(),
            vkey: identity.verifier().to_vkey(),
            seq,
            entry: EntryView::from(&e),
            inclusion_proof: proof.iter().map(onoal_engine::Hash::to_hex).collect(),
            tree_size: cp.size,
            checkpoint: cp.note.clone(),
        })
    }

    /// Checks the file with `vkey` alone: the checkpoint's signature and origin, the leaf data
    /// against the entry shown and its leaf hash, the inclusion proof against the root.
    pub fn verify(&self, vkey: &str) -> ProofVerdict {
        let mut verdict = ProofVerdict {
            valid: false,
            reason: None,
            seq: self.seq,
            oid: String::new(),
            tree_size: self.tree_size,
        };
        match self.check(vkey) {
            Ok(oid) => {
                verdict.valid = true;
                verdict.oid = oid;
            }
            Err(why) => verdict.reason = Some(why),
        }
        verdict
    }

    fn check(&self, vkey: &str) -> Result<String, String> {
        use onoal_engine::checkpoint::NoteVerifier;
        if self.format != PROOF_FORMAT {
            return Err(format!("not a proof file of format {PROOF_FORMAT} ({:?})", self.format));
        }
        let verifier = NoteVerifier::from_vkey(vkey).map_err(|e| format!("the vkey: {e}"))?;
        let cp = verifier
            .open(self.checkpoint.as_bytes())
            .map_err(|e| format!("the checkpoint does not verify with this vkey: {e}"))?;
        if cp.size != self.tree_size {
            return Err(format!(
                "tree_size says {}, the signed checkpoint {}",
                self.tree_size, cp.size
            ));
        }
        let leaf_data = B64
            .decode(&self.entry.leaf_data_b64)
            .map_err(|_| "the entry's leaf data is not base64".to_owned())?;
        let entry = onoal_engine::Entry::decode(&leaf_data)
            .map_err(|e| format!("the leaf data is not an entry: {e}"))?;
        let leaf_hash = onoal_engine::hash::leaf_hash(&leaf_data);
        let stored = StoredEntry { entry, leaf_data, leaf_hash };
        if stored.entry.seq != self.seq {
            return Err(format!("the leaf data is entry {}, not {}", stored.entry.seq, self.seq));
        }
        if !self.entry.shows_same_entry_as(&EntryView::from(&stored)) {
            return Err("the entry's fields do not match its leaf data".into());
        }
        stored.entry.content.check_issuer_signature().map_err(|_| {
            "the entry's issuer signature does not verify over its content".to_owned()
        })?;
        let proof = self
            .inclusion_proof
            .iter()
            .map(|h| onoal_engine::Hash::from_hex(h).ok_or("an inclusion proof hash is not hex"))
            .collect::<Result<Vec<_>, _>>()?;
        onoal_engine::merkle::verify_inclusion(self.seq, cp.size, &leaf_hash, &proof, &cp.root)
            .map_err(|e| {
                format!("the inclusion proof does not lead to the checkpoint's root: {e}")
            })?;
        Ok(verifier.name().to_owned())
    }
}

#[cfg(test)]
mod entry_view_tests {
    use super::*;

    fn view(payload: &[u8]) -> EntryView {
        EntryView {
            seq: 3,
            timestamp_ms: 1_764_720_000_000,
            time: onoal_engine::time::rfc3339(1_764_720_000_000),
            stream: "s".into(),
            entry_type: "t".into(),
            subject: None,
            issuer: None,
            payload: std::str::from_utf8(payload).ok().map(str::to_owned),
            payload_b64: std::str::from_utf8(payload).is_err().then(|| B64.encode(payload)),
            prev_hash: "00".repeat(32),
            leaf_hash: "11".repeat(32),
            leaf_data_b64: String::new(),
            refs: vec![],
            issuer_key: None,
            issuer_signature: None,
        }
    }

    #[test]
    fn an_older_view_with_base64_and_no_time_shows_the_same_entry_and_lies_do_not() {
        let derived = view(b"hello");
        assert_eq!(derived.time, "2025-12-03T00:00:00.000Z");
        let mut old = derived.clone();
        old.payload = None;
        old.payload_b64 = Some(B64.encode(b"hello"));
        old.time = String::new();
        assert!(old.shows_same_entry_as(&derived));
        assert!(derived.shows_same_entry_as(&derived));
        let mut lie = old.clone();
        lie.payload_b64 = Some(B64.encode(b"hellO"));
        assert!(!lie.shows_same_entry_as(&derived));
        let mut lie = derived.clone();
        lie.time = "2000-01-01T00:00:00.000Z".into();
        assert!(!lie.shows_same_entry_as(&derived));
        let mut both = derived.clone();
        both.payload_b64 = Some(B64.encode(b"hello"));
        assert!(!both.shows_same_entry_as(&derived), "exactly one payload field");
        let bytes = view(&[0xff, 0]);
        assert_eq!((bytes.payload.as_deref(), bytes.payload_b64.as_deref()), (None, Some("/wA=")));
    }
}
