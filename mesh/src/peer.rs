//! Known peers, stored in the ledger's `peers` column family: key = ledger id (16 bytes),
//! value = postcard [`PeerRecord`].

use serde::{Deserialize, Serialize};

use onoal_engine::{Ledger, MeshTable};

use crate::proto::{LedgerCertificate, PeerMisbehaved};

/// Most misbehaviour reports kept per peer (the count keeps growing).
const KEPT_REPORTS: usize = 32;

/// What this ledger knows about another ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Ledger id.
    pub ledger_id: [u8; 16],
    /// Pinned Ed25519 key: handshakes and checkpoints of this ledger must use it.
    pub public_key: [u8; 32],
    /// OID, once learned from a verified certificate.
    pub oid: Option<String>,
    /// QUIC addresses (`host:port`).
    pub addresses: Vec<String>,
    /// The newest verified certificate.
    pub certificate: Option<LedgerCertificate>,
    /// Protocols it speaks (ALPNs).
    pub capabilities: Vec<String>,
    /// Last successful handshake (ms since the epoch).
    pub last_seen_ms: u64,
    /// Violations seen, newest last.
    pub misbehaviour: Vec<MisbehaviourReport>,
    /// All violations ever seen.
    pub misbehaviour_count: u64,
}

/// One recorded violation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisbehaviourReport {
    /// When (ms since the epoch).
    pub at_ms: u64,
    /// [`PeerMisbehaved::kind`].
    pub kind: String,
    /// Full message.
    pub detail: String,
}

/// Reads a peer.
///
/// # Errors
/// Storage errors or a damaged record (as text).
pub fn get(ledger: &Ledger, id: &uuid::Uuid) -> Result<Option<PeerRecord>, String> {
    match ledger.mesh_get(MeshTable::Peers, id.as_bytes()).map_err(|e| e.to_string())? {
        None => Ok(None),
        Some(b) => postcard::from_bytes(&b).map(Some).map_err(|e| format!("peer record: {e}")),
    }
}

/// Writes a peer.
///
/// # Errors
/// Storage errors (as text).
pub fn put(ledger: &Ledger, record: &PeerRecord) -> Result<(), String> {
    let bytes = postcard::to_stdvec(record).map_err(|e| e.to_string())?;
    ledger.mesh_put(MeshTable::Peers, &record.ledger_id, &bytes).map_err(|e| e.to_string())
}

/// Every peer.
///
/// # Errors
/// Storage errors or a damaged record (as text).
pub fn list(ledger: &Ledger) -> Result<Vec<PeerRecord>, String> {
    ledger
        .mesh_scan(MeshTable::Peers)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(_, v)| postcard::from_bytes(&v).map_err(|e| format!("peer record: {e}")))
        .collect()
}

/// The pinned peer whose key is `key`, if any.
///
/// # Errors
/// As [`list`].
pub fn by_key(ledger: &Ledger, key: &[u8; 32]) -> Result<Option<PeerRecord>, String> {
    Ok(list(ledger)?.into_iter().find(|p| &p.public_key == key))
}

/// Pins `key` for ledger `id` at `address` (keeps what else is known when the key is the
/// same; replaces the record when the key changed, which the operator asked for).
///
/// # Errors
/// Storage errors.
pub fn pin(
    ledger: &Ledger,
    id: uuid::Uuid,
    key: [u8; 32],
    address: Option<String>,
) -> Result<PeerRecord, String> {
    let mut record = match get(ledger, &id)? {
        Some(r) if r.public_key == key => r,
        _ => PeerRecord {
            ledger_id: *id.as_bytes(),
            public_key: key,
            oid: None,
            addresses: Vec::new(),
            certificate: None,
            capabilities: Vec::new(),
            last_seen_ms: 0,
            misbehaviour: Vec::new(),
            misbehaviour_count: 0,
        },
    };
    if let Some(a) = address {
        record.addresses.retain(|x| *x != a);
        record.addresses.insert(0, a);
    }
    put(ledger, &record)?;
    Ok(record)
}

/// Records a violation against the peer with `key` (if pinned).
pub fn report(ledger: &Ledger, key: &[u8; 32], violation: &PeerMisbehaved, now_ms: u64) {
    let Ok(Some(mut record)) = by_key(ledger, key) else { return };
    record.misbehaviour.push(MisbehaviourReport {
        at_ms: now_ms,
        kind: violation.kind().to_owned(),
        detail: violation.to_string(),
    });
    if record.misbehaviour.len() > KEPT_REPORTS {
        record.misbehaviour.remove(0);
    }
    record.misbehaviour_count += 1;
    if let Err(e) = put(ledger, &record) {
        tracing::warn!(error = %e, "could not record a peer's misbehaviour");
    }
}
