//! What a replica records about its syncs: the [`SyncRecord`] in the `sync_state` column
//! family (status, newest accepted checkpoint, entries held, last error, fork evidence).

use serde::{Deserialize, Serialize};

use super::ReplicaError;
use crate::hash::{Hash, empty_root};
use crate::store::Store;
use crate::store::keys::{self, Cf};

/// Where a replica's sync stands, as stored in the `sync_state` column family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SyncRecord {
    /// Current status.
    pub status: SyncStatus,
    /// Size of the newest accepted checkpoint.
    pub checkpoint_size: u64,
    /// Root of the newest accepted checkpoint.
    pub checkpoint_root: Hash,
    /// Entries held (committed bundles).
    pub synced_size: u64,
    /// Leaf hash of the last entry held.
    pub last_leaf_hash: Hash,
    /// The last failure, if the last sync failed.
    pub last_error: Option<String>,
    /// Two validly signed checkpoints that disagree, when the replica forked.
    pub fork: Option<ForkEvidence>,
    /// When this record was written (ms since the epoch).
    pub updated_ms: u64,
}

/// Status of a replica's sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncStatus {
    /// Never synced.
    New,
    /// Entries up to the accepted checkpoint are still missing.
    InProgress,
    /// Entries held up to the newest accepted checkpoint.
    Complete,
    /// Only checkpoints are kept (a light replica).
    CheckpointOnly,
    /// The last sync failed (see `last_error`); the next one resumes.
    Failed,
    /// Two signed checkpoints disagree; syncing stops until an operator drops the replica.
    Forked,
}

impl SyncStatus {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::InProgress => "in_progress",
            Self::Complete => "complete",
            Self::CheckpointOnly => "checkpoint_only",
            Self::Failed => "failed",
            Self::Forked => "forked",
        }
    }
}

/// Proof of a fork: two checkpoint notes, both validly signed by the ledger's key, that no
/// append-only log can both have produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkEvidence {
    /// The checkpoint this replica held.
    pub held: String,
    /// The conflicting checkpoint received.
    pub received: String,
    /// Why they conflict.
    pub reason: String,
    /// When the fork was detected (ms since the epoch).
    pub detected_ms: u64,
    /// When the two checkpoints have different sizes: the larger one's tree has another root at
    /// the smaller size than the smaller one says, proven by an RFC 9162 consistency proof that
    /// anyone can check with the two notes.
    pub proof: Option<ForkProof>,
}

/// The tree of the larger checkpoint, at the smaller one's size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkProof {
    /// The smaller size.
    pub old_size: u64,
    /// The larger tree's root at the smaller size (not the smaller checkpoint's root).
    pub old_root: Hash,
    /// The larger size.
    pub new_size: u64,
    /// RFC 9162 consistency proof from `old_root` at `old_size` to the larger checkpoint's root.
    pub consistency: Vec<Hash>,
}

/// First byte of a stored record of version 2 (version-1 records start with the status, a
/// single varint byte below 0x80).
const RECORD_V2: u8 = 0xF2;

/// Version-1 layout (fork evidence without a proof), still read.
#[derive(Deserialize)]
struct SyncRecordV1 {
    status: SyncStatus,
    checkpoint_size: u64,
    checkpoint_root: Hash,
    synced_size: u64,
    last_leaf_hash: Hash,
    last_error: Option<String>,
    fork: Option<ForkEvidenceV1>,
    updated_ms: u64,
}

#[derive(Deserialize)]
struct ForkEvidenceV1 {
    held: String,
    received: String,
    reason: String,
    detected_ms: u64,
}

impl SyncRecord {
    /// The record of a replica that never synced.
    pub(crate) fn new() -> Self {
        Self {
            status: SyncStatus::New,
            checkpoint_size: 0,
            checkpoint_root: empty_root(),
            synced_size: 0,
            last_leaf_hash: Hash::ZERO,
            last_error: None,
            fork: None,
            updated_ms: 0,
        }
    }
}

impl SyncRecord {
    /// The stored bytes: `0xF2 || postcard(record)`.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, ReplicaError> {
        postcard::to_extend(self, vec![RECORD_V2])
            .map_err(|e| ReplicaError::Storage(format!("encoding the sync state: {e}")))
    }

    /// Parses a stored record of either version.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if let Some(v2) = bytes.strip_prefix(&[RECORD_V2]) {
            return postcard::from_bytes(v2).map_err(|e| e.to_string());
        }
        let v1: SyncRecordV1 = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        Ok(Self {
            status: v1.status,
            checkpoint_size: v1.checkpoint_size,
            checkpoint_root: v1.checkpoint_root,
            synced_size: v1.synced_size,
            last_leaf_hash: v1.last_leaf_hash,
            last_error: v1.last_error,
            fork: v1.fork.map(|f| ForkEvidence {
                held: f.held,
                received: f.received,
                reason: f.reason,
                detected_ms: f.detected_ms,
                proof: None,
            }),
            updated_ms: v1.updated_ms,
        })
    }
}

/// Reads the sync record of log `number`.
pub(crate) fn read_record(store: &Store, number: u32) -> Result<Option<SyncRecord>, ReplicaError> {
    match store.get(Cf::SyncState, &keys::sync_state_key(number))? {
        None => Ok(None),
        Some(b) => SyncRecord::decode(&b)
            .map(Some)
            .map_err(|e| ReplicaError::Corrupt(format!("sync state of log {number}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_both_versions_decode() {
        #[derive(Serialize)]
        struct V1<'a> {
            status: SyncStatus,
            checkpoint_size: u64,
            checkpoint_root: Hash,
            synced_size: u64,
            last_leaf_hash: Hash,
            last_error: Option<&'a str>,
            fork: Option<(&'a str, &'a str, &'a str, u64)>,
            updated_ms: u64,
        }
        let v1 = V1 {
            status: SyncStatus::Forked,
            checkpoint_size: 300,
            checkpoint_root: Hash([1; 32]),
            synced_size: 300,
            last_leaf_hash: Hash([2; 32]),
            last_error: Some("e"),
            fork: Some(("h", "r", "why", 9)),
            updated_ms: 10,
        };
        let old = SyncRecord::decode(&postcard::to_stdvec(&v1).unwrap()).unwrap();
        assert_eq!(old.fork.as_ref().unwrap().reason, "why");
        assert_eq!((old.updated_ms, old.fork.as_ref().unwrap().proof.clone()), (10, None));
        let mut new = old.clone();
        new.fork.as_mut().unwrap().proof = Some(ForkProof {
            old_size: 5,
            old_root: Hash([3; 32]),
            new_size: 9,
            consistency: vec![Hash([4; 32])],
        });
        assert_eq!(SyncRecord::decode(&new.encode().unwrap()).unwrap(), new);
        assert!(SyncRecord::decode(&[RECORD_V2, 0xff]).is_err());
    }
}
