//! Replicas: verified copies of remote ledgers, kept in the same database as the own log.
//!
//! A replica is only ever written through a [`ReplicaWriter`], and only with data that was
//! verified against a checkpoint signed by the remote ledger's pinned key:
//!
//! 1. [`ReplicaWriter::accept_checkpoint`] checks a checkpoint's signature and its consistency
//!    with the newest checkpoint the replica already holds, and stores it. Two validly signed
//!    checkpoints that disagree are a fork: both are kept as evidence and the replica refuses
//!    every further write until an operator drops it ([`crate::Ledger::drop_replica`]).
//! 2. [`verify_bundle`] (a pure function: any thread) checks up to 256 entries — one level-0
//!    tile, `[256 k, min(256 (k+1), size))` — against that checkpoint: each entry decodes, has
//!    its seq, links to the previous one, and the subtree they hash to reaches the checkpoint's
//!    root through the given path.
//! 3. [`ReplicaWriter::commit`] appends a verified bundle (entries, tiles, indexes, head and
//!    sync state) in ONE fsynced RocksDB write. Bundles are committed in order; a sync that is
//!    interrupted resumes after the last committed bundle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, leaf_hash, node_hash};
use crate::ledger::{Identity, Ledger, Log, LogState, Shared, SignedCheckpoint};
use crate::merkle;
use crate::record::Entry;
use crate::sequencer::{SequencerState, push_leaf, push_node, put_dirty_tiles};
use crate::store::{
    self, CF_CHECKPOINTS, CF_ENTRIES, CF_INDEX, CF_META, CF_SYNC_STATE, CF_TILES, HeadRecord,
    OWN_LOG,
};
use crate::tile::{TILE_WIDTH, Tile, TileId};

/// Entries per bundle: one level-0 tile.
pub const BUNDLE_ENTRIES: u64 = TILE_WIDTH as u64;

/// Prefix of the log directory keys in `meta`: `log/ || ledger id (16 bytes)`.
const LOG_DIRECTORY_PREFIX: &[u8] = b"log/";
/// Prefix of the sparse replica directory keys in `meta`: `sparse/ || ledger id`.
const SPARSE_DIRECTORY_PREFIX: &[u8] = b"sparse/";

fn directory_prefix(sparse: bool) -> &'static [u8] {
    if sparse { SPARSE_DIRECTORY_PREFIX } else { LOG_DIRECTORY_PREFIX }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn directory_key(ledger_id: &uuid::Uuid, sparse: bool) -> Vec<u8> {
    let mut k = directory_prefix(sparse).to_vec();
    k.extend_from_slice(ledger_id.as_bytes());
    k
}

/// Reads the log directory: every replica's number and pinned identity.
pub(crate) fn load_directory(
    shared: &Shared,
    sparse: bool,
) -> Result<HashMap<uuid::Uuid, Arc<LogState>>, String> {
    let mut out = HashMap::new();
    let cf = shared.cf(CF_META);
    let prefix = directory_prefix(sparse);
    let it = shared.db.iterator_cf(cf, IteratorMode::From(prefix, Direction::Forward));
    for item in it {
        let (k, v) = item.map_err(|e| e.into_string())?;
        if !k.starts_with(prefix) {
            break;
        }
        let number = v
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or("log directory record is too short")?;
        let identity = Identity::decode(&v[4..]).ok_or("log directory identity is malformed")?;
        let mut state = LogState::new(number, identity);
        state.sparse = sparse;
        let head = shared
            .db
            .get_cf(cf, store::head_key(number))
            .map_err(|e| e.into_string())?
            .and_then(|b| HeadRecord::decode(&b))
            .ok_or_else(|| format!("head record of replica log {number} missing or malformed"))?;
        state.durable_size.store(head.size, Ordering::Release);
        out.insert(state.identity.ledger_id, Arc::new(state));
    }
    Ok(out)
}

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

/// Why a replica write was refused. Nothing is written when any of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The checkpoint's signature does not verify with the pinned key.
    #[error("checkpoint signature does not verify with the pinned key of {ledger_id}: {reason}")]
    BadSignature {
        /// The replicated ledger.
        ledger_id: uuid::Uuid,
        /// Parser or signature failure.
        reason: String,
    },
    /// The consistency proof from the held checkpoint to the new one does not verify.
    #[error(
        "the checkpoint of size {new_size} is not proven consistent with the held checkpoint of size {old_size}: {reason}"
    )]
    Inconsistent {
        /// Held size.
        old_size: u64,
        /// Received size.
        new_size: u64,
        /// Proof failure.
        reason: String,
    },
    /// Two validly signed checkpoints disagree; both were stored as evidence.
    #[error(
        "fork of ledger {ledger_id}: {reason}; both checkpoints are kept as evidence (`onoal forks --json`); syncing it stops until you drop the replica (`onoal forks drop {ledger_id}`)"
    )]
    Fork {
        /// The replicated ledger.
        ledger_id: uuid::Uuid,
        /// Why they conflict.
        reason: String,
    },
    /// The replica forked earlier; it takes no writes.
    #[error(
        "the replica of {0} has forked and takes no writes; inspect `onoal forks --json`, then `onoal forks drop {0}` to sync it afresh"
    )]
    Forked(uuid::Uuid),
    /// A bundle failed verification.
    #[error("bad bundle: {0}")]
    Bundle(#[from] BundleError),
    /// The bundle was verified against another checkpoint than the held one.
    #[error(
        "the bundle was verified against checkpoint size {bundle_size}, the replica holds {held_size}"
    )]
    StaleBundle {
        /// The bundle's checkpoint size.
        bundle_size: u64,
        /// The held checkpoint size.
        held_size: u64,
    },
    /// The bundle does not continue the replica.
    #[error(
        "the bundle starts at {first}, the replica holds {held} entries; bundles are committed in order"
    )]
    Gap {
        /// First seq of the bundle.
        first: u64,
        /// Entries held.
        held: u64,
    },
    /// Another writer (a sync in progress) holds this replica.
    #[error("another sync of ledger {0} is running in this process; wait for it to finish")]
    Busy(uuid::Uuid),
    /// The ledger is open read-only.
    #[error("the ledger is open read-only; replicas are written by the process that owns it")]
    ReadOnly,
    /// The identity given differs from the one pinned for this replica.
    #[error(
        "ledger {ledger_id} is pinned with key {pinned}, not {given}; if the key really changed, drop the replica first"
    )]
    KeyMismatch {
        /// The replicated ledger.
        ledger_id: uuid::Uuid,
        /// Pinned key (hex).
        pinned: String,
        /// Given key (hex).
        given: String,
    },
    /// A ledger cannot replicate itself.
    #[error("ledger {0} is this ledger; it cannot be its own replica")]
    OwnLedger(uuid::Uuid),
    /// RocksDB refused.
    #[error("storage error: {0}")]
    Storage(String),
    /// Stored replica data is damaged.
    #[error("stored replica data is damaged: {0}; run `onoal verify --ledger ...`")]
    Corrupt(String),
}

impl From<rocksdb::Error> for ReplicaError {
    fn from(e: rocksdb::Error) -> Self {
        Self::Storage(e.into_string())
    }
}

impl From<crate::error::ReadError> for ReplicaError {
    fn from(e: crate::error::ReadError) -> Self {
        match e {
            crate::error::ReadError::Storage(s) => Self::Storage(s),
            other => Self::Corrupt(other.to_string()),
        }
    }
}

/// Why a bundle does not verify against a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Start or length is not one level-0 tile of the checkpoint's tree.
    #[error(
        "bundle [{first}, {first}+{count}) is not a tile of a tree of size {size}: it must start at a multiple of 256 and hold min(256, size - first) entries"
    )]
    WrongShape {
        /// First seq.
        first: u64,
        /// Entries given.
        count: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// An entry does not decode.
    #[error("entry {seq} does not decode: {reason}")]
    Undecodable {
        /// Position in the log.
        seq: u64,
        /// Decoder message.
        reason: String,
    },
    /// An entry claims another seq than its position.
    #[error("entry at {seq} claims seq {found}")]
    SeqMismatch {
        /// Position.
        seq: u64,
        /// Claimed seq.
        found: u64,
    },
    /// An entry's `prev_hash` is not the previous entry's leaf hash.
    #[error("chain broken at entry {seq}")]
    ChainBroken {
        /// First entry whose link is wrong.
        seq: u64,
    },
    /// An entry's timestamp is below its predecessor's.
    #[error("entry {seq} has a timestamp before its predecessor's")]
    TimeWentBack {
        /// The entry.
        seq: u64,
    },
    /// The entries do not hash to the checkpoint's root through the path.
    #[error("entries [{first}, {end}) do not hash to the checkpoint's root (size {size})")]
    RootMismatch {
        /// First seq.
        first: u64,
        /// End seq.
        end: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// Entries the replica already holds differ from the bundle's.
    #[error("entry {seq} differs from the one the replica holds")]
    HeldEntryDiffers {
        /// The entry.
        seq: u64,
    },
}

/// Entries checked against a checkpoint by [`verify_bundle`]; only it constructs one.
#[derive(Debug)]
pub struct VerifiedBundle {
    first: u64,
    checkpoint_size: u64,
    checkpoint_root: Hash,
    entries: Vec<(Vec<u8>, Hash, Entry)>,
    /// The bundle's level-0 tile (its leaf hashes and interior nodes), built while verifying.
    tile: Tile,
}

impl VerifiedBundle {
    /// First seq.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no entries (never, for a verified bundle).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of leaf data.
    pub fn leaf_bytes(&self) -> usize {
        self.entries.iter().map(|(d, _, _)| d.len()).sum()
    }
}

/// The path a source sends with bundle `first`: the part of the inclusion proof of leaf
/// `first` in the tree of `size` that lies above the bundle's subtree.
///
/// # Errors
/// `first` is not a bundle start below `size`.
pub fn bundle_path_from_inclusion(
    first: u64,
    size: u64,
    inclusion_of_first: &[Hash],
) -> Result<Vec<Hash>, BundleError> {
    let count = bundle_len(first, size).ok_or(BundleError::WrongShape { first, count: 0, size })?;
    let inner = merkle::inclusion_proof_len(0, count);
    Ok(inclusion_of_first.get(inner..).unwrap_or_default().to_vec())
}

/// Entries in bundle `first` of a tree of `size`, when `first` is a bundle start below `size`.
pub fn bundle_len(first: u64, size: u64) -> Option<u64> {
    (first.is_multiple_of(BUNDLE_ENTRIES) && first < size)
        .then(|| (size - first).min(BUNDLE_ENTRIES))
}

/// RFC 9162 hash of a list of leaf hashes (split at the largest power of two below n).
fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => crate::hash::empty_root(),
        1 => leaves[0],
        n => {
            let k = (n as u64 - 1).checked_ilog2().map_or(1, |b| 1usize << b);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// Checks bundle `first` (leaf data of entries `[first, first + len)`) against `checkpoint`:
/// the shape is one level-0 tile of its tree, every entry decodes canonically with its own
/// seq, links to its predecessor inside the bundle, and the entries' subtree hash reaches the
/// checkpoint's root through `path` (see [`bundle_path_from_inclusion`]). Pure and parallel:
/// leaf hashes are computed on all cores for full bundles.
///
/// # Errors
/// The first violation found.
pub fn verify_bundle(
    checkpoint: &Checkpoint,
    first: u64,
    leaves: Vec<Vec<u8>>,
    path: &[Hash],
) -> Result<VerifiedBundle, BundleError> {
    let size = checkpoint.size;
    let count = leaves.len() as u64;
    if bundle_len(first, size) != Some(count) {
        return Err(BundleError::WrongShape { first, count, size });
    }
    let decode = |(i, data): (usize, Vec<u8>)| {
        let seq = first + i as u64;
        let entry = Entry::decode(&data)
            .map_err(|e| BundleError::Undecodable { seq, reason: e.to_string() })?;
        if entry.seq != seq {
            return Err(BundleError::SeqMismatch { seq, found: entry.seq });
        }
        let h = leaf_hash(&data);
        Ok((data, h, entry))
    };
    let entries: Vec<(Vec<u8>, Hash, Entry)> =
        leaves.into_iter().enumerate().map(decode).collect::<Result<_, _>>()?;
    for w in 1..entries.len() {
        let seq = first + w as u64;
        if entries[w].2.prev_hash != entries[w - 1].1 {
            return Err(BundleError::ChainBroken { seq });
        }
        if entries[w].2.timestamp_ms < entries[w - 1].2.timestamp_ms {
            return Err(BundleError::TimeWentBack { seq });
        }
    }
    if first == 0 && entries.first().is_some_and(|e| e.2.prev_hash != Hash::ZERO) {
        return Err(BundleError::ChainBroken { seq: 0 });
    }
    let mut tile = Tile::new();
    let mut full_root = None;
    for e in &entries {
        full_root = tile.push(e.1);
    }
    let subtree = match full_root {
        Some(root) => root,
        None => subtree_root(tile.bottom()),
    };
    let nodes = size.div_ceil(BUNDLE_ENTRIES);
    let root = merkle::root_from_inclusion(first / BUNDLE_ENTRIES, nodes, &subtree, path);
    if root.ok() != Some(checkpoint.root) {
        return Err(BundleError::RootMismatch { first, end: first + count, size });
    }
    Ok(VerifiedBundle {
        first,
        checkpoint_size: size,
        checkpoint_root: checkpoint.root,
        entries,
        tile,
    })
}

/// What [`ReplicaWriter::accept_checkpoint`] did with a valid checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Newer than the held one, proven consistent, stored.
    New,
    /// The same as the held one.
    Same,
    /// Older than the held one (the source is behind); nothing stored.
    Older,
}

/// The only writer of one replica (at most one per replica and process).
pub struct ReplicaWriter {
    log: Log,
    state: SequencerState,
    record: SyncRecord,
    /// Size of the newest checkpoint on disk. An accepted checkpoint newer than it is written
    /// with the next write (the first bundle committed against it, or a status change), so a
    /// validly signed checkpoint whose entries never verify leaves nothing behind.
    persisted_checkpoint: Option<u64>,
}

impl std::fmt::Debug for ReplicaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaWriter")
            .field("ledger_id", &self.log.identity().ledger_id)
            .field("held", &self.state.head.size)
            .finish()
    }
}

impl Drop for ReplicaWriter {
    fn drop(&mut self) {
        self.log.state.writer_active.store(false, Ordering::Release);
    }
}

fn sync_state_key(number: u32) -> [u8; 4] {
    number.to_be_bytes()
}

fn read_record(shared: &Shared, number: u32) -> Result<Option<SyncRecord>, ReplicaError> {
    match shared.db.get_cf(shared.cf(CF_SYNC_STATE), sync_state_key(number))? {
        None => Ok(None),
        Some(b) => postcard::from_bytes(&b)
            .map(Some)
            .map_err(|e| ReplicaError::Corrupt(format!("sync state of log {number}: {e}"))),
    }
}

impl Ledger {
    /// The replica of `ledger_id`, if this ledger holds one.
    pub fn replica(&self, ledger_id: &uuid::Uuid) -> Option<Log> {
        self.log_in(false, ledger_id)
    }

    /// Every replica this ledger holds, by ledger id.
    pub fn replicas(&self) -> Vec<Log> {
        self.logs_in(false)
    }

    fn log_in(&self, sparse: bool, ledger_id: &uuid::Uuid) -> Option<Log> {
        let shared = &self.log().shared;
        let map = if sparse { &shared.sparse_replicas } else { &shared.replicas };
        let state = map.read().get(ledger_id).cloned()?;
        Some(Log { shared: shared.clone(), state })
    }

    /// The replicas (or sparse replicas) in log-number order.
    fn logs_in(&self, sparse: bool) -> Vec<Log> {
        let shared = &self.log().shared;
        let map = if sparse { &shared.sparse_replicas } else { &shared.replicas };
        let mut out: Vec<Log> = map
            .read()
            .values()
            .map(|state| Log { shared: shared.clone(), state: state.clone() })
            .collect();
        out.sort_by_key(|l| l.state.number);
        out
    }

    /// The own log (when `ledger_id` is this ledger's) or a replica.
    pub fn log_of(&self, ledger_id: &uuid::Uuid) -> Option<Log> {
        if *ledger_id == self.identity().ledger_id {
            Some(self.log().clone())
        } else {
            self.replica(ledger_id)
        }
    }

    /// The sync record of a replica.
    ///
    /// # Errors
    /// Storage errors or a damaged record.
    pub fn sync_record(&self, ledger_id: &uuid::Uuid) -> Result<Option<SyncRecord>, ReplicaError> {
        let Some(log) = self.replica(ledger_id) else { return Ok(None) };
        read_record(&log.shared, log.state.number)
    }

    /// Opens the writer of the replica of `identity` (created when new, with `identity` as its
    /// pinned identity). At most one writer per replica exists at a time.
    ///
    /// # Errors
    /// Read-only ledger, own ledger, a different pinned key, a writer already active, storage.
    pub fn replica_writer(&self, identity: &Identity) -> Result<ReplicaWriter, ReplicaError> {
        self.open_writer(identity, false)
    }

    /// Opens the writer of the sparse replica of `identity` (filtered syncs: entries with
    /// their inclusion proofs, no tree). As [`Self::replica_writer`].
    ///
    /// # Errors
    /// As [`Self::replica_writer`].
    pub fn sparse_writer(&self, identity: &Identity) -> Result<ReplicaWriter, ReplicaError> {
        self.open_writer(identity, true)
    }

    /// The sparse replica of `ledger_id`, if this ledger holds one.
    pub fn sparse_replica(&self, ledger_id: &uuid::Uuid) -> Option<Log> {
        self.log_in(true, ledger_id)
    }

    /// Every sparse replica.
    pub fn sparse_replicas(&self) -> Vec<Log> {
        self.logs_in(true)
    }

    /// The sync record of a sparse replica.
    ///
    /// # Errors
    /// Storage errors or a damaged record.
    pub fn sparse_sync_record(
        &self,
        ledger_id: &uuid::Uuid,
    ) -> Result<Option<SyncRecord>, ReplicaError> {
        let Some(log) = self.sparse_replica(ledger_id) else { return Ok(None) };
        read_record(&log.shared, log.state.number)
    }

    fn open_writer(
        &self,
        identity: &Identity,
        sparse: bool,
    ) -> Result<ReplicaWriter, ReplicaError> {
        if self.is_read_only() {
            return Err(ReplicaError::ReadOnly);
        }
        let id = identity.ledger_id;
        if id == self.identity().ledger_id {
            return Err(ReplicaError::OwnLedger(id));
        }
        let shared = self.log().shared.clone();
        let state = {
            let mut full = shared.replicas.write();
            let mut sparse_map = shared.sparse_replicas.write();
            let taken =
                full.values().chain(sparse_map.values()).map(|s| s.number).max().unwrap_or(OWN_LOG);
            let replicas = if sparse { &mut *sparse_map } else { &mut *full };
            match replicas.get(&id) {
                Some(s) => {
                    if s.identity.public_key != identity.public_key {
                        return Err(ReplicaError::KeyMismatch {
                            ledger_id: id,
                            pinned: hex::encode(s.identity.public_key.as_bytes()),
                            given: hex::encode(identity.public_key.as_bytes()),
                        });
                    }
                    s.clone()
                }
                None => {
                    let number = taken + 1;
                    let mut value = number.to_be_bytes().to_vec();
                    value.extend_from_slice(&identity.encode());
                    let mut batch = WriteBatch::default();
                    batch.put_cf(shared.cf(CF_META), directory_key(&id, sparse), value);
                    batch.put_cf(
                        shared.cf(CF_META),
                        store::head_key(number),
                        HeadRecord::default().encode(),
                    );
                    let mut wo = WriteOptions::default();
                    wo.set_sync(true);
                    shared.db.write_opt(batch, &wo)?;
                    let mut state = LogState::new(number, identity.clone());
                    state.sparse = sparse;
                    let s = Arc::new(state);
                    replicas.insert(id, s.clone());
                    s
                }
            }
        };
        if state.writer_active.swap(true, Ordering::AcqRel) {
            return Err(ReplicaError::Busy(id));
        }
        let log = Log { shared: shared.clone(), state };
        // From here on, Drop clears writer_active.
        let loaded = SequencerState::load(&shared, &log.state);
        let record = read_record(&shared, log.state.number);
        let mut writer = ReplicaWriter {
            log,
            state: SequencerState {
                head: HeadRecord::default(),
                edge: Vec::new(),
                last_checkpoint: None,
            },
            record: SyncRecord {
                status: SyncStatus::New,
                checkpoint_size: 0,
                checkpoint_root: crate::hash::empty_root(),
                synced_size: 0,
                last_leaf_hash: Hash::ZERO,
                last_error: None,
                fork: None,
                updated_ms: 0,
            },
            persisted_checkpoint: None,
        };
        writer.state = loaded.map_err(ReplicaError::Corrupt)?;
        writer.persisted_checkpoint = writer.state.last_checkpoint.as_ref().map(|c| c.size);
        if let Some(r) = record? {
            writer.record = r;
        }
        Ok(writer)
    }

    /// Deletes a replica and everything stored for it (entries, tiles, indexes, checkpoints,
    /// sync state, fork evidence). The operator's way out of a fork.
    ///
    /// # Errors
    /// Read-only ledger, a sync of it running, storage errors. Returns false when there was no
    /// such replica.
    pub fn drop_replica(&self, ledger_id: &uuid::Uuid) -> Result<bool, ReplicaError> {
        if self.is_read_only() {
            return Err(ReplicaError::ReadOnly);
        }
        let shared = self.log().shared.clone();
        let mut dropped = false;
        for sparse in [false, true] {
            let mut replicas =
                if sparse { shared.sparse_replicas.write() } else { shared.replicas.write() };
            let Some(state) = replicas.get(ledger_id).cloned() else { continue };
            if state.writer_active.load(Ordering::Acquire) {
                return Err(ReplicaError::Busy(*ledger_id));
            }
            let n = state.number;
            let (from, to) = (n.to_be_bytes(), (n + 1).to_be_bytes());
            let mut batch = WriteBatch::default();
            for cf in [CF_ENTRIES, CF_TILES, CF_INDEX, CF_CHECKPOINTS, CF_SYNC_STATE] {
                batch.delete_range_cf(shared.cf(cf), from, to);
            }
            batch.delete_cf(shared.cf(CF_META), directory_key(ledger_id, sparse));
            batch.delete_cf(shared.cf(CF_META), store::head_key(n));
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            shared.db.write_opt(batch, &wo)?;
            replicas.remove(ledger_id);
            dropped = true;
        }
        Ok(dropped)
    }
}

/// Key of a sparse replica's stored proof of `seq`: `log || 'p' || seq` in `sync_state`.
fn proof_key(number: u32, seq: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..4].copy_from_slice(&number.to_be_bytes());
    k[4] = b'p';
    k[5..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The stored inclusion proof of a sparse replica's entry: (tree size, proof).
pub(crate) fn stored_proof(
    log: &Log,
    seq: u64,
) -> Result<Option<(u64, Vec<Hash>)>, crate::error::ReadError> {
    let shared = &log.shared;
    let Some(v) = shared.db.get_cf(shared.cf(CF_SYNC_STATE), proof_key(log.state.number, seq))?
    else {
        return Ok(None);
    };
    let bad =
        || crate::error::ReadError::Corrupt(format!("stored proof of entry {seq} is malformed"));
    if v.len() < 8 || (v.len() - 8) % 32 != 0 {
        return Err(bad());
    }
    let size = u64::from_be_bytes(v[..8].try_into().map_err(|_| bad())?);
    let proof = v[8..].chunks_exact(32).filter_map(Hash::from_slice).collect();
    Ok(Some((size, proof)))
}

/// An entry as a filtered sync receives it: its leaf data and its inclusion proof in the tree
/// of the checkpoint being synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenEntry {
    /// Leaf data.
    pub leaf_data: Vec<u8>,
    /// RFC 9162 inclusion proof.
    pub proof: Vec<Hash>,
}

impl ReplicaWriter {
    /// Read access to the replica.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Entries held.
    pub fn held(&self) -> u64 {
        self.state.head.size
    }

    /// The newest accepted checkpoint.
    pub fn checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.state.last_checkpoint.as_ref()
    }

    /// The stored sync record.
    pub fn record(&self) -> &SyncRecord {
        &self.record
    }

    fn ledger_id(&self) -> uuid::Uuid {
        self.log.identity().ledger_id
    }

    fn write(&mut self, mut batch: WriteBatch) -> Result<(), ReplicaError> {
        self.record.updated_ms = now_ms();
        self.record.synced_size = self.state.head.size;
        self.record.last_leaf_hash = self.state.head.last_leaf_hash;
        if let Some(cp) = &self.state.last_checkpoint {
            self.record.checkpoint_size = cp.size;
            self.record.checkpoint_root = cp.root;
        }
        let bytes = postcard::to_stdvec(&self.record)
            .map_err(|e| ReplicaError::Storage(format!("encoding the sync state: {e}")))?;
        let shared = &self.log.shared;
        batch.put_cf(shared.cf(CF_SYNC_STATE), sync_state_key(self.log.state.number), bytes);
        let pending = self
            .state
            .last_checkpoint
            .as_ref()
            .filter(|cp| Some(cp.size) != self.persisted_checkpoint);
        if let Some(cp) = pending {
            batch.put_cf(
                shared.cf(CF_CHECKPOINTS),
                store::checkpoint_key(self.log.state.number, cp.size),
                cp.note.as_bytes(),
            );
        }
        let pending_size = pending.map(|cp| cp.size);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        shared.db.write_opt(batch, &wo)?;
        if pending_size.is_some() {
            self.persisted_checkpoint = pending_size;
        }
        Ok(())
    }

    /// Forgets an accepted checkpoint that is not on disk yet (its entries failed to verify):
    /// the replica's newest checkpoint is again the stored one.
    ///
    /// # Errors
    /// Storage errors reading the stored checkpoint.
    pub fn discard_unwritten_checkpoint(&mut self) -> Result<(), ReplicaError> {
        let current = self.state.last_checkpoint.as_ref().map(|c| c.size);
        if current != self.persisted_checkpoint {
            self.state.last_checkpoint = self.log.latest_checkpoint()?;
        }
        Ok(())
    }

    /// Records a sync's status (and error) without changing the replica's data.
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_status(
        &mut self,
        status: SyncStatus,
        error: Option<String>,
    ) -> Result<(), ReplicaError> {
        if self.record.status == SyncStatus::Forked {
            return Ok(());
        }
        self.record.status = status;
        self.record.last_error = error;
        self.write(WriteBatch::default())
    }

    fn forked(&mut self, received: &str, reason: String) -> ReplicaError {
        let held = self.state.last_checkpoint.as_ref().map(|c| c.note.clone()).unwrap_or_default();
        self.record.status = SyncStatus::Forked;
        self.record.last_error = Some(reason.clone());
        self.record.fork = Some(ForkEvidence {
            held,
            received: received.to_owned(),
            reason: reason.clone(),
            detected_ms: now_ms(),
        });
        if let Err(e) = self.write(WriteBatch::default()) {
            return e;
        }
        ReplicaError::Fork { ledger_id: self.ledger_id(), reason }
    }

    fn open_note(&self, note: &str) -> Result<Checkpoint, ReplicaError> {
        let id = self.ledger_id();
        let cp = self
            .log
            .identity()
            .verifier()
            .open(note.as_bytes())
            .map_err(|e| ReplicaError::BadSignature { ledger_id: id, reason: e.to_string() })?;
        if cp.origin != self.log.identity().oid.as_str() {
            return Err(ReplicaError::BadSignature {
                ledger_id: id,
                reason: format!(
                    "origin {:?} is not the ledger's OID {}",
                    cp.origin,
                    self.log.identity().oid
                ),
            });
        }
        Ok(cp)
    }

    /// Checks `note` (signature with the pinned key, origin = the ledger's OID) and its
    /// consistency with the held checkpoint (`consistency` = RFC 9162 proof from the held size
    /// to the note's size; empty when nothing is held), and makes it the newest. It is written
    /// with the next write: the first bundle committed against it, or [`Self::set_status`]
    /// (a light replica); [`Self::discard_unwritten_checkpoint`] drops it.
    ///
    /// # Errors
    /// [`ReplicaError::BadSignature`], [`ReplicaError::Inconsistent`] (nothing stored),
    /// [`ReplicaError::Fork`] (same size, another root: evidence stored), storage errors.
    pub fn accept_checkpoint(
        &mut self,
        note: &str,
        consistency: &[Hash],
    ) -> Result<Accepted, ReplicaError> {
        if self.record.status == SyncStatus::Forked {
            return Err(ReplicaError::Forked(self.ledger_id()));
        }
        let cp = self.open_note(note)?;
        if let Some(held) = self.state.last_checkpoint.clone() {
            if cp.size < held.size {
                return Ok(Accepted::Older);
            }
            if cp.size == held.size {
                if cp.root == held.root {
                    return Ok(Accepted::Same);
                }
                return Err(self.forked(
                    note,
                    format!("two checkpoints of size {} with different roots", cp.size),
                ));
            }
            if held.size > 0 {
                merkle::verify_consistency(held.size, cp.size, &held.root, &cp.root, consistency)
                    .map_err(|e| ReplicaError::Inconsistent {
                    old_size: held.size,
                    new_size: cp.size,
                    reason: e.to_string(),
                })?;
            }
        }
        self.state.last_checkpoint =
            Some(SignedCheckpoint { checkpoint: cp, note: note.to_owned() });
        Ok(Accepted::New)
    }

    /// After [`ReplicaError::Inconsistent`]: `note` is the source's checkpoint of the held
    /// size. If it is validly signed and has another root, the ledger forked: the evidence is
    /// stored and [`ReplicaError::Fork`] returned. Otherwise the source merely sent a bad proof.
    ///
    /// # Errors
    /// [`ReplicaError::Fork`] when proven; [`ReplicaError::BadSignature`] for a bad note.
    pub fn check_fork(&mut self, note: &str) -> Result<(), ReplicaError> {
        let cp = self.open_note(note)?;
        let Some(held) = self.state.last_checkpoint.clone() else { return Ok(()) };
        if cp.size == held.size && cp.root != held.root {
            return Err(self.forked(
                note,
                format!("two checkpoints of size {} with different roots", cp.size),
            ));
        }
        Ok(())
    }

    /// Appends a verified bundle to the replica in one fsynced write: the entries beyond those
    /// held, tiles, indexes, head and sync state. Entries of the bundle the replica already
    /// holds must be identical.
    ///
    /// # Errors
    /// The bundle was checked against another checkpoint, does not continue the replica, or
    /// differs from held entries; storage errors. Nothing is written on error.
    pub fn commit(&mut self, bundle: VerifiedBundle) -> Result<u64, ReplicaError> {
        self.commit_all(vec![bundle])
    }

    /// Appends consecutive verified bundles in ONE fsynced write (group commit of what arrived
    /// together); all or nothing, as [`Self::commit`].
    ///
    /// # Errors
    /// As [`Self::commit`], for the first bundle that fails; nothing is written then.
    pub fn commit_all(&mut self, bundles: Vec<VerifiedBundle>) -> Result<u64, ReplicaError> {
        if self.record.status == SyncStatus::Forked {
            return Err(ReplicaError::Forked(self.ledger_id()));
        }
        let saved_edge = self.state.edge.clone();
        let saved_head = self.state.head;
        let number = self.log.state.number;
        let shared = self.log.shared.clone();
        // Sized up front: entries, their keys and a tile per bundle, so the batch never regrows.
        let capacity: usize = bundles
            .iter()
            .map(|b| b.leaf_bytes() + b.len() * 24 + crate::tile::encoded_len(TILE_WIDTH) + 64)
            .sum::<usize>()
            + 4096;
        let mut batch = WriteBatch::with_capacity_bytes(capacity);
        let mut postings = store::Postings::default();
        let mut dirty = vec![false; self.state.edge.len() + 1];
        let mut staged = Ok(());
        for bundle in &bundles {
            staged = self.stage(bundle, &mut batch, &mut postings, &mut dirty);
            if staged.is_err() {
                break;
            }
        }
        let written = staged.and_then(|()| {
            let cf_tiles = shared.cf(CF_TILES);
            put_dirty_tiles(
                &self.state.edge,
                &dirty,
                self.state.head.size,
                &mut batch,
                cf_tiles,
                number,
            );
            for (key, value) in postings.finish(number) {
                batch.put_cf(shared.cf(CF_INDEX), key, value);
            }
            batch.put_cf(shared.cf(CF_META), store::head_key(number), self.state.head.encode());
            let target = self.state.last_checkpoint.as_ref().map(|c| c.size);
            self.record.status = if Some(self.state.head.size) == target {
                SyncStatus::Complete
            } else {
                SyncStatus::InProgress
            };
            self.record.last_error = None;
            self.write(batch)
        });
        if let Err(e) = written {
            self.state.edge = saved_edge;
            self.state.head = saved_head;
            return Err(e);
        }
        self.log.state.durable_size.store(self.state.head.size, Ordering::Release);
        Ok(self.state.head.size)
    }

    fn stage(
        &mut self,
        bundle: &VerifiedBundle,
        batch: &mut WriteBatch,
        postings: &mut store::Postings,
        dirty: &mut Vec<bool>,
    ) -> Result<(), ReplicaError> {
        let held_cp = self.state.last_checkpoint.as_ref().map(|c| (c.size, c.root));
        if held_cp != Some((bundle.checkpoint_size, bundle.checkpoint_root)) {
            return Err(ReplicaError::StaleBundle {
                bundle_size: bundle.checkpoint_size,
                held_size: held_cp.map_or(0, |c| c.0),
            });
        }
        let held = self.state.head.size;
        let first = bundle.first;
        let end = first + bundle.entries.len() as u64;
        if first > held || end < held {
            return Err(ReplicaError::Gap { first, held });
        }
        // Held entries of this tile are the bottom row of the right-edge level-0 tile.
        let overlap = (held - first) as usize;
        if overlap > 0 {
            let bottom = self.state.edge.first().map(|t| t.bottom()).unwrap_or_default();
            for i in 0..overlap {
                if bottom.get(i) != Some(&bundle.entries[i].1) {
                    return Err(BundleError::HeldEntryDiffers { seq: first + i as u64 }.into());
                }
            }
        }
        let Some(next) = bundle.entries.get(overlap) else { return Ok(()) };
        if next.2.prev_hash != self.state.head.last_leaf_hash {
            return Err(BundleError::ChainBroken { seq: held }.into());
        }
        if next.2.timestamp_ms < self.state.head.last_timestamp_ms {
            return Err(BundleError::TimeWentBack { seq: held }.into());
        }
        let shared = self.log.shared.clone();
        let number = self.log.state.number;
        let (cf_entries, cf_tiles) = (shared.cf(CF_ENTRIES), shared.cf(CF_TILES));
        // A whole bundle starting an empty level-0 tile brings that tile, already hashed.
        let whole_tile = overlap == 0 && self.state.edge.first().is_none_or(|t| t.width() == 0);
        for (data, h, entry) in &bundle.entries[overlap..] {
            let seq = entry.seq;
            batch.put_cf(cf_entries, store::entry_key(number, seq), data);
            postings.add_entry(seq, &entry.content);
            if !whole_tile {
                push_leaf(&mut self.state.edge, dirty, seq, *h, batch, cf_tiles, number);
            }
            self.state.head = HeadRecord {
                size: seq + 1,
                last_leaf_hash: *h,
                last_timestamp_ms: entry.timestamp_ms,
            };
        }
        if whole_tile {
            if self.state.edge.is_empty() {
                self.state.edge.push(Tile::new());
            }
            if dirty.is_empty() {
                dirty.push(false);
            }
            let last = end - 1;
            match bundle.tile.root().filter(|_| bundle.tile.is_full()) {
                Some(root) => {
                    let id = TileId { level: 0, index: first / BUNDLE_ENTRIES };
                    batch.put_cf(cf_tiles, store::tile_key(number, id), bundle.tile.encode());
                    self.state.edge[0] = Tile::new();
                    dirty[0] = false;
                    push_node(&mut self.state.edge, dirty, 1, last, root, batch, cf_tiles, number);
                }
                None => {
                    self.state.edge[0] = bundle.tile.clone();
                    dirty[0] = true;
                }
            }
        }
        Ok(())
    }
}

impl ReplicaWriter {
    /// Stores entries of a filtered sync in a sparse replica: each must decode canonically at
    /// its seq, lie in the held checkpoint's tree and carry a valid inclusion proof into it.
    /// All or nothing, in one fsynced write (with the checkpoint if it is new). Entries already
    /// held must be identical; their proofs move to the new checkpoint. Returns how many
    /// entries were new.
    ///
    /// # Errors
    /// [`ReplicaError::Bundle`] naming the first entry that fails; a full replica; storage.
    pub fn commit_proven(&mut self, mut entries: Vec<ProvenEntry>) -> Result<u64, ReplicaError> {
        if !self.log.state.sparse {
            return Err(ReplicaError::Corrupt(
                "proven entries go to a sparse replica (sparse_writer), not a full one".into(),
            ));
        }
        if self.record.status == SyncStatus::Forked {
            return Err(ReplicaError::Forked(self.ledger_id()));
        }
        let Some(cp) = self.state.last_checkpoint.clone() else {
            return Err(ReplicaError::StaleBundle { bundle_size: 0, held_size: 0 });
        };
        let decoded: Vec<(Entry, Hash)> = entries
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let entry = Entry::decode(&p.leaf_data).map_err(|e| BundleError::Undecodable {
                    seq: i as u64,
                    reason: format!("(position {i} of the page) {e}"),
                })?;
                let seq = entry.seq;
                let h = leaf_hash(&p.leaf_data);
                merkle::verify_inclusion(seq, cp.size, &h, &p.proof, &cp.root).map_err(|_| {
                    BundleError::RootMismatch { first: seq, end: seq + 1, size: cp.size }
                })?;
                Ok((entry, h))
            })
            .collect::<Result<_, BundleError>>()?;
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| decoded[i].0.seq);
        order.dedup_by_key(|i| decoded[*i].0.seq);
        let shared = self.log.shared.clone();
        let number = self.log.state.number;
        let view = self.log.view()?;
        let mut batch = WriteBatch::default();
        let mut postings = store::Postings::default();
        let mut new = 0u64;
        for &i in &order {
            let (entry, h) = &decoded[i];
            let seq = entry.seq;
            match view.sparse_entry(seq)? {
                Some(held) if held.leaf_hash != *h => {
                    return Err(BundleError::HeldEntryDiffers { seq }.into());
                }
                Some(_) => {}
                None => {
                    batch.put_cf(
                        shared.cf(CF_ENTRIES),
                        store::entry_key(number, seq),
                        &entries[i].leaf_data,
                    );
                    postings.add_entry(seq, &entry.content);
                    new += 1;
                }
            }
            let mut proof = cp.size.to_be_bytes().to_vec();
            for h in &std::mem::take(&mut entries[i].proof) {
                proof.extend_from_slice(h.as_bytes());
            }
            batch.put_cf(shared.cf(CF_SYNC_STATE), proof_key(number, seq), proof);
        }
        drop(view);
        for (key, value) in postings.finish(number) {
            batch.put_cf(shared.cf(CF_INDEX), key, value);
        }
        self.record.status = SyncStatus::Complete;
        self.record.last_error = None;
        self.write(batch)?;
        Ok(new)
    }
}

impl Log {
    /// Audit of a sparse replica: every held entry decodes at its seq and its stored proof
    /// verifies against a stored checkpoint whose signature verifies.
    pub(crate) fn verify_sparse(&self) -> Result<crate::VerifyReport, crate::VerifyError> {
        use crate::VerifyError;
        let verifier = self.identity().verifier();
        let mut roots: HashMap<u64, Hash> = HashMap::new();
        for size in self.checkpoint_sizes()? {
            let note =
                self.checkpoint_at(size)?.ok_or(crate::error::ReadError::NoCheckpoint(size))?;
            let cp = verifier
                .open(note.note.as_bytes())
                .map_err(|e| VerifyError::CheckpointBadSignature { size, reason: e.to_string() })?;
            roots.insert(size, cp.root);
        }
        let entries = self.range(0, u64::MAX)?;
        for e in &entries {
            let seq = e.entry.seq;
            let invalid = |reason: String| VerifyError::SparseProofInvalid { seq, reason };
            let (size, proof) =
                stored_proof(self, seq)?.ok_or_else(|| invalid("its proof is missing".into()))?;
            let root = roots
                .get(&size)
                .ok_or_else(|| invalid(format!("no stored checkpoint of size {size}")))?;
            merkle::verify_inclusion(seq, size, &e.leaf_hash, &proof, root)
                .map_err(|err| invalid(err.to_string()))?;
        }
        let head = self.head()?;
        Ok(crate::VerifyReport {
            entries: entries.len() as u64,
            tiles: 0,
            checkpoints: roots.len() as u64,
            root: head.root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_root_matches_merkle_root() {
        for n in 1..600u64 {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            fn node(leaves: &[Hash], level: u8, index: u64) -> Hash {
                if level == 0 {
                    return leaves[index as usize];
                }
                node_hash(
                    &node(leaves, level - 1, 2 * index),
                    &node(leaves, level - 1, 2 * index + 1),
                )
            }
            let expected = merkle::root(n, &mut |id: merkle::NodeId| -> Result<Hash, ()> {
                Ok(node(&leaves, id.level, id.index))
            });
            assert_eq!(Ok(subtree_root(&leaves)), expected, "n = {n}");
        }
    }

    #[test]
    fn bundle_lengths() {
        assert_eq!(bundle_len(0, 1), Some(1));
        assert_eq!(bundle_len(0, 300), Some(256));
        assert_eq!(bundle_len(256, 300), Some(44));
        assert_eq!(bundle_len(256, 256), None);
        assert_eq!(bundle_len(1, 300), None);
    }
}
