//! Known peers, stored in the ledger's `peers` table (key = ledger id, value = postcard
//! [`PeerRecord`]), with an in-memory index from key to ledger id so authorising a request
//! never scans the table. Writes are fsynced: call them off async workers.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use onoal_engine::{AuxTable, Ledger, LedgerId};

use crate::id::PeerId;
use crate::proto::{LedgerCertificate, PeerMisbehaved};

/// Most misbehaviour reports kept per peer (the count keeps growing).
const KEPT_REPORTS: usize = 32;
/// Most addresses kept per peer: the one the operator gave first, then the newest dialled.
const KEPT_ADDRESSES: usize = 4;

/// What this ledger knows about another ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// Ledger id.
    pub ledger_id: LedgerId,
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
    /// Keys pinned before this one, oldest first (`peer add --replace-key` keeps them).
    pub replaced_keys: Vec<ReplacedKey>,
}

/// A key that was pinned for a ledger until the operator replaced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedKey {
    /// The old key.
    pub public_key: [u8; 32],
    /// When it was replaced (ms since the epoch).
    pub replaced_at_ms: u64,
}

/// The record layout before `replaced_keys` (postcard is not self-describing: a record
/// written by an older version decodes only as this).
#[derive(Deserialize)]
struct PeerRecordV1 {
    ledger_id: LedgerId,
    public_key: [u8; 32],
    oid: Option<String>,
    addresses: Vec<String>,
    certificate: Option<LedgerCertificate>,
    capabilities: Vec<String>,
    last_seen_ms: u64,
    misbehaviour: Vec<MisbehaviourReport>,
    misbehaviour_count: u64,
}

impl From<PeerRecordV1> for PeerRecord {
    fn from(r: PeerRecordV1) -> Self {
        Self {
            ledger_id: r.ledger_id,
            public_key: r.public_key,
            oid: r.oid,
            addresses: r.addresses,
            certificate: r.certificate,
            capabilities: r.capabilities,
            last_seen_ms: r.last_seen_ms,
            misbehaviour: r.misbehaviour,
            misbehaviour_count: r.misbehaviour_count,
            replaced_keys: Vec::new(),
        }
    }
}

impl PeerRecord {
    /// A fresh record pinning `key` for `ledger_id`.
    pub fn new(ledger_id: LedgerId, key: [u8; 32]) -> Self {
        Self {
            ledger_id,
            public_key: key,
            oid: None,
            addresses: Vec::new(),
            certificate: None,
            capabilities: Vec::new(),
            last_seen_ms: 0,
            misbehaviour: Vec::new(),
            misbehaviour_count: 0,
            replaced_keys: Vec::new(),
        }
    }

    /// The pinned key, if it is a valid Ed25519 key.
    pub fn peer_id(&self) -> Option<PeerId> {
        PeerId::from_bytes(&self.public_key)
    }
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

/// Why the peer table could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The ledger refused (storage, read-only).
    #[error("peer table: {0}")]
    Storage(String),
    /// A stored record does not decode.
    #[error(
        "the peer record of {ledger_id} is damaged ({reason}); remove it and pin the peer again"
    )]
    Damaged {
        /// Whose record.
        ledger_id: String,
        /// Decoder message.
        reason: String,
    },
    /// The ledger is pinned with another key: replacing it must be asked for.
    #[error(
        "{ledger_id} is pinned with key {pinned}, but key {offered} was given. Someone may be \
         impersonating it, or its operator made a new key: ask them, and only then replace the \
         pin (`onoal peer add … --replace-key`; the old key stays in the record's history)"
    )]
    KeyChanged {
        /// The ledger.
        ledger_id: LedgerId,
        /// The pinned key (hex).
        pinned: String,
        /// The key given (hex).
        offered: String,
    },
}

/// The peer table of a ledger, with a key index.
#[derive(Clone)]
pub struct PeerStore {
    ledger: Arc<Ledger>,
    by_key: Arc<RwLock<HashMap<[u8; 32], LedgerId>>>,
    /// Bumped whenever the set of pinned keys changes.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PeerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerStore").field("peers", &self.by_key.read().len()).finish()
    }
}

/// The pinned peers of `ledger` (ids and, when learnt, OIDs), read without a [`PeerStore`]
/// (for naming ledgers from a read-only handle). Damaged rows are skipped.
pub fn pinned_names(ledger: &Ledger) -> Vec<(LedgerId, Option<String>)> {
    ledger
        .aux_scan(AuxTable::Peers)
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| decode(k, v).ok())
        .map(|r| (r.ledger_id, r.oid))
        .collect()
}

fn decode(key: &[u8], value: &[u8]) -> Result<PeerRecord, PeerError> {
    if let Ok((record, [])) = postcard::take_from_bytes::<PeerRecord>(value) {
        return Ok(record);
    }
    postcard::from_bytes::<PeerRecordV1>(value).map(PeerRecord::from).map_err(|e| {
        PeerError::Damaged {
            ledger_id: LedgerId::from_slice(key)
                .map_or_else(|| hex::encode(key), |id| id.to_string()),
            reason: e.to_string(),
        }
    })
}

impl PeerStore {
    /// Loads the table's key index (one scan).
    ///
    /// # Errors
    /// Storage errors or a damaged record.
    pub fn open(ledger: Arc<Ledger>) -> Result<Self, PeerError> {
        let store = Self {
            ledger,
            by_key: Arc::new(RwLock::new(HashMap::new())),
            generation: Arc::default(),
        };
        let index = store.list()?.into_iter().map(|r| (r.public_key, r.ledger_id)).collect();
        *store.by_key.write() = index;
        Ok(store)
    }

    /// The ledger whose table this is.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Reads a peer.
    ///
    /// # Errors
    /// Storage errors or a damaged record.
    pub fn get(&self, id: &LedgerId) -> Result<Option<PeerRecord>, PeerError> {
        match self
            .ledger
            .aux_get(AuxTable::Peers, id.as_bytes())
            .map_err(|e| PeerError::Storage(e.to_string()))?
        {
            None => Ok(None),
            Some(b) => decode(id.as_bytes(), &b).map(Some),
        }
    }

    /// Writes a peer (fsynced).
    ///
    /// # Errors
    /// Storage errors, a read-only ledger.
    pub fn put(&self, record: &PeerRecord) -> Result<(), PeerError> {
        let bytes = postcard::to_stdvec(record).map_err(|e| PeerError::Storage(e.to_string()))?;
        self.ledger
            .aux_put(AuxTable::Peers, record.ledger_id.as_bytes(), &bytes)
            .map_err(|e| PeerError::Storage(e.to_string()))?;
        let mut index = self.by_key.write();
        if index.get(&record.public_key) != Some(&record.ledger_id) {
            index.retain(|_, id| *id != record.ledger_id);
            index.insert(record.public_key, record.ledger_id);
            self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        Ok(())
    }

    /// Removes the peer `id`: its key is no longer served or trusted. False when it was not
    /// pinned.
    ///
    /// # Errors
    /// Storage errors, a read-only ledger.
    pub fn remove(&self, id: &LedgerId) -> Result<bool, PeerError> {
        if self.get(id)?.is_none() {
            return Ok(false);
        }
        self.ledger
            .aux_delete(AuxTable::Peers, id.as_bytes())
            .map_err(|e| PeerError::Storage(e.to_string()))?;
        self.by_key.write().retain(|_, v| v != id);
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(true)
    }

    /// Every peer, by ledger id.
    ///
    /// # Errors
    /// Storage errors or a damaged record.
    pub fn list(&self) -> Result<Vec<PeerRecord>, PeerError> {
        self.ledger
            .aux_scan(AuxTable::Peers)
            .map_err(|e| PeerError::Storage(e.to_string()))?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// True when `key` is pinned for some ledger (an index lookup, no I/O).
    pub fn is_pinned(&self, key: &PeerId) -> bool {
        self.by_key.read().contains_key(key.as_bytes())
    }

    /// The pinned peer whose key is `key`, if any.
    ///
    /// # Errors
    /// As [`Self::get`].
    pub fn by_key(&self, key: &PeerId) -> Result<Option<PeerRecord>, PeerError> {
        let id = self.by_key.read().get(key.as_bytes()).copied();
        match id {
            None => Ok(None),
            Some(id) => self.get(&id),
        }
    }

    /// Pins `key` for ledger `id` at `address` (keeps what else is known when the key is the
    /// same). A ledger pinned with another key is refused ([`PeerError::KeyChanged`]): see
    /// [`Self::replace_key`].
    ///
    /// # Errors
    /// Storage errors, a different pinned key.
    pub fn pin(
        &self,
        id: LedgerId,
        key: [u8; 32],
        address: Option<String>,
    ) -> Result<PeerRecord, PeerError> {
        self.pin_with(id, key, address, None)
    }

    /// Pins `key` for ledger `id` even when another key is pinned, which the operator asked
    /// for: the old key goes to the record's history (`replaced_keys`); what was learnt with
    /// it (certificate, OID, violations) does not carry over, the addresses do.
    ///
    /// # Errors
    /// Storage errors.
    pub fn replace_key(
        &self,
        id: LedgerId,
        key: [u8; 32],
        address: Option<String>,
        now_ms: u64,
    ) -> Result<PeerRecord, PeerError> {
        self.pin_with(id, key, address, Some(now_ms))
    }

    fn pin_with(
        &self,
        id: LedgerId,
        key: [u8; 32],
        address: Option<String>,
        replace_at_ms: Option<u64>,
    ) -> Result<PeerRecord, PeerError> {
        let mut record = match (self.get(&id)?, replace_at_ms) {
            (Some(r), _) if r.public_key == key => r,
            (None, _) => PeerRecord::new(id, key),
            (Some(old), None) => {
                return Err(PeerError::KeyChanged {
                    ledger_id: id,
                    pinned: hex::encode(old.public_key),
                    offered: hex::encode(key),
                });
            }
            (Some(old), Some(at_ms)) => {
                let mut r = PeerRecord::new(id, key);
                r.addresses = old.addresses;
                r.replaced_keys = old.replaced_keys;
                r.replaced_keys
                    .push(ReplacedKey { public_key: old.public_key, replaced_at_ms: at_ms });
                r
            }
        };
        // An address the operator gives replaces what was known (the peer moved); one the
        // node dialled successfully is added by `learn`.
        if let Some(a) = address {
            record.addresses = vec![a];
        }
        self.put(&record)?;
        Ok(record)
    }

    /// Records a verified certificate of a pinned peer (and where it was reached).
    pub fn learn(
        &self,
        certificate: &LedgerCertificate,
        address: Option<String>,
        capability: &str,
        now_ms: u64,
    ) {
        if self.ledger.is_read_only() {
            return;
        }
        if let Ok(Some(mut record)) = self.get(&certificate.ledger_id)
            && record.public_key == certificate.public_key
        {
            record.oid = Some(certificate.oid.clone());
            record.certificate = Some(certificate.clone());
            record.last_seen_ms = now_ms;
            record.capabilities = vec![capability.to_owned()];
            if let Some(a) = address
                && !record.addresses.contains(&a)
            {
                record.addresses.push(a);
                if record.addresses.len() > KEPT_ADDRESSES {
                    record.addresses.remove(1);
                }
            }
            if let Err(e) = self.put(&record) {
                tracing::warn!(error = %e, "could not store a peer's certificate");
            }
        }
    }

    /// The pinned ledger that holds `key`, if any.
    pub fn ledger_of(&self, key: &PeerId) -> Option<LedgerId> {
        self.by_key.read().get(key.as_bytes()).copied()
    }

    /// The pinned ledgers, sorted.
    pub fn pinned_ledgers(&self) -> Vec<LedgerId> {
        let mut ids: Vec<LedgerId> = self.by_key.read().values().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Every pinned (ledger, key), from the index (no I/O).
    pub fn pinned_keys(&self) -> Vec<(LedgerId, [u8; 32])> {
        self.by_key.read().iter().map(|(k, id)| (*id, *k)).collect()
    }

    /// The pinned key of ledger `id`, if pinned (an index lookup, no I/O).
    pub fn key_of(&self, id: &LedgerId) -> Option<[u8; 32]> {
        self.by_key.read().iter().find(|(_, v)| *v == id).map(|(k, _)| *k)
    }

    /// Changes whenever the set of pinned keys changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records a violation against the peer with `key` (if pinned).
    pub fn report(&self, key: &PeerId, violation: &PeerMisbehaved, now_ms: u64) {
        // Look up first: the index lock must not be held while `put` updates it.
        let id = self.by_key.read().get(key.as_bytes()).copied();
        self.report_ledger(id, violation, now_ms);
    }

    /// Records a violation against the ledger `id` (if pinned): what its key signed, whoever
    /// relayed it.
    pub fn report_ledger(&self, id: Option<LedgerId>, violation: &PeerMisbehaved, now_ms: u64) {
        let Some(id) = id else { return };
        if self.ledger.is_read_only() {
            return;
        }
        let Ok(Some(mut record)) = self.get(&id) else { return };
        record.misbehaviour.push(MisbehaviourReport {
            at_ms: now_ms,
            kind: violation.kind().to_owned(),
            detail: violation.to_string(),
        });
        if record.misbehaviour.len() > KEPT_REPORTS {
            record.misbehaviour.remove(0);
        }
        record.misbehaviour_count += 1;
        if let Err(e) = self.put(&record) {
            tracing::warn!(error = %e, "could not record a peer's misbehaviour");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ed25519_dalek::SigningKey;
    use onoal_engine::{AuxTable, Ledger, LedgerId, Oid};

    use super::{PeerError, PeerRecord, PeerStore};

    fn key(seed: u8) -> [u8; 32] {
        SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes()
    }

    fn store(dir: &std::path::Path) -> PeerStore {
        let oid = Oid::parse("oid:onoal:test:peers").unwrap();
        PeerStore::open(Arc::new(Ledger::builder(dir).create(oid).unwrap())).unwrap()
    }

    #[test]
    fn another_key_for_a_pinned_ledger_is_refused_unless_replaced_and_history_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let peers = store(dir.path());
        let id = LedgerId::from_bytes([9; 16]);
        peers.pin(id, key(1), Some("127.0.0.1:1".into())).unwrap();
        // The same key again only updates the address.
        peers.pin(id, key(1), Some("127.0.0.1:2".into())).unwrap();
        let err = peers.pin(id, key(2), None).unwrap_err();
        match &err {
            PeerError::KeyChanged { pinned, offered, .. } => {
                assert_eq!((pinned, offered), (&hex::encode(key(1)), &hex::encode(key(2))));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("--replace-key"), "{err}");
        assert_eq!(peers.get(&id).unwrap().unwrap().public_key, key(1), "nothing changed");
        assert_eq!(peers.ledger_of(&crate::id::PeerId::from_bytes(&key(1)).unwrap()), Some(id));

        let r = peers.replace_key(id, key(2), None, 7_000).unwrap();
        assert_eq!(r.public_key, key(2));
        assert_eq!(r.addresses, vec!["127.0.0.1:2".to_owned()], "a given address replaces");
        let r = peers.replace_key(id, key(3), None, 8_000).unwrap();
        let history: Vec<_> =
            r.replaced_keys.iter().map(|k| (k.public_key, k.replaced_at_ms)).collect();
        assert_eq!(history, vec![(key(1), 7_000), (key(2), 8_000)]);
        // The old keys are no longer served; the index follows the new one.
        assert!(!peers.is_pinned(&crate::id::PeerId::from_bytes(&key(1)).unwrap()));
        assert_eq!(peers.ledger_of(&crate::id::PeerId::from_bytes(&key(3)).unwrap()), Some(id));
        assert_eq!(peers.get(&id).unwrap().unwrap(), r);
    }

    #[test]
    fn dialled_addresses_are_kept_up_to_a_bound_and_a_given_one_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let peers = store(dir.path());
        let id = LedgerId::from_bytes([6; 16]);
        peers.pin(id, key(1), Some("given:1".into())).unwrap();
        let cert = crate::proto::LedgerCertificate {
            ledger_id: id,
            oid: "oid:onoal:org:x".into(),
            public_key: key(1),
            issued_ms: 0,
            expires_ms: u64::MAX,
            signature: vec![],
        };
        for port in 2..9 {
            peers.learn(&cert, Some(format!("dialled:{port}")), "onoal/sync", 5);
            peers.learn(&cert, Some(format!("dialled:{port}")), "onoal/sync", 5);
        }
        let r = peers.get(&id).unwrap().unwrap();
        assert_eq!(r.addresses, ["given:1", "dialled:6", "dialled:7", "dialled:8"]);
        assert_eq!(r.oid.as_deref(), Some("oid:onoal:org:x"));
        peers.pin(id, key(1), Some("moved:9".into())).unwrap();
        assert_eq!(peers.get(&id).unwrap().unwrap().addresses, ["moved:9"]);
    }

    #[test]
    fn a_record_written_before_the_key_history_still_reads() {
        #[derive(serde::Serialize)]
        struct Old {
            ledger_id: LedgerId,
            public_key: [u8; 32],
            oid: Option<String>,
            addresses: Vec<String>,
            certificate: Option<crate::proto::LedgerCertificate>,
            capabilities: Vec<String>,
            last_seen_ms: u64,
            misbehaviour: Vec<super::MisbehaviourReport>,
            misbehaviour_count: u64,
        }
        let dir = tempfile::tempdir().unwrap();
        let peers = store(dir.path());
        let id = LedgerId::from_bytes([4; 16]);
        let old = Old {
            ledger_id: id,
            public_key: key(5),
            oid: Some("oid:onoal:org:x".into()),
            addresses: vec!["h:1".into()],
            certificate: None,
            capabilities: vec![],
            last_seen_ms: 77,
            misbehaviour: vec![],
            misbehaviour_count: 3,
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        peers.ledger().aux_put(AuxTable::Peers, id.as_bytes(), &bytes).unwrap();
        let mut want = PeerRecord::new(id, key(5));
        want.oid = old.oid.clone();
        want.addresses = old.addresses.clone();
        want.last_seen_ms = 77;
        want.misbehaviour_count = 3;
        assert_eq!(peers.get(&id).unwrap(), Some(want));
        // Garbage is still reported as damage, naming the ledger.
        peers.ledger().aux_put(AuxTable::Peers, id.as_bytes(), &[0xff; 3]).unwrap();
        let e = peers.get(&id).unwrap_err().to_string();
        assert!(e.contains(&id.to_string()) && e.contains("damaged"), "{e}");
    }
}
