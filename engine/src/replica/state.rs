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

/// Reads the sync record of log `number`.
pub(crate) fn read_record(store: &Store, number: u32) -> Result<Option<SyncRecord>, ReplicaError> {
    match store.get(Cf::SyncState, &keys::sync_state_key(number))? {
        None => Ok(None),
        Some(b) => postcard::from_bytes(&b)
            .map(Some)
            .map_err(|e| ReplicaError::Corrupt(format!("sync state of log {number}: {e}"))),
    }
}
