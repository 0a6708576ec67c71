//! One error enum per operation. `Display` says what happened and what to do next.

use std::path::PathBuf;

use crate::hash::Hash;
use crate::identity::KeyFileError;
use crate::merkle::ProofError;
use crate::record::InvalidInput;

/// Why a data directory could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The path holds no ledger.
    #[error(
        "{path} is not an Onoal ledger; create one with `onoal init --oid <OID>` or pass the right --data directory"
    )]
    NotALedger {
        /// The path.
        path: PathBuf,
    },
    /// `create` on a directory that already holds a ledger or other files.
    #[error("{path} already exists and is not empty; choose a new directory to create a ledger in")]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// Another process holds the ledger open for writing.
    #[error(
        "the ledger at {path} is in use by another process (e.g. a running `onoal serve`); stop it, or use a reading command"
    )]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// The directory was written by a different schema version.
    #[error(
        "the ledger at {path} has schema version {found}; this build reads version {supported}: use a matching onoal build"
    )]
    SchemaVersion {
        /// The path.
        path: PathBuf,
        /// Version on disk.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The key file is missing, unreadable or malformed.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The key file holds a different key than the one the ledger was created with.
    #[error(
        "key file {path} holds public key {found}, but this ledger was created with {expected}; restore the ledger's own key file"
    )]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
        /// Public key recorded in the ledger.
        expected: String,
        /// Public key of the key file.
        found: String,
    },
    /// Stored metadata or the right edge of the tree is damaged.
    #[error(
        "the ledger at {path} is damaged: {detail}; run `onoal verify` and restore from a replica or backup"
    )]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// Entries this ledger acknowledged or signed are missing from its storage.
    #[error(
        "the ledger at {path} holds {held} entries, but it had acknowledged {acknowledged} and signed a checkpoint of {signed}: entries from {held} on were lost (its write-ahead log was damaged, truncated or deleted). Nothing was changed; restore them from a peer that holds a replica: onoal restore --from HOST:PORT"
    )]
    EntriesLost {
        /// The path.
        path: PathBuf,
        /// Entries the storage holds.
        held: u64,
        /// Entries acknowledged at the last clean close.
        acknowledged: u64,
        /// Size of the newest checkpoint signed.
        signed: u64,
    },
    /// The stored tree is not the one this ledger signed.
    #[error(
        "the ledger at {path} has root {found} at size {size}, but it signed {expected} for that size: its storage holds another history than the one it signed. Nothing was changed; restore from a peer (onoal restore --from HOST:PORT) or a backup"
    )]
    Diverged {
        /// The path.
        path: PathBuf,
        /// The signed size.
        size: u64,
        /// The signed root.
        expected: Hash,
        /// The stored tree's root at that size.
        found: Hash,
    },
    /// RocksDB found damaged data (a checksum mismatch, a bad record, a missing WAL).
    #[error(
        "the ledger at {path} is damaged: {detail}. Nothing was changed; it had acknowledged {acknowledged} entries. Restore them from a peer (onoal restore --from HOST:PORT) or a backup"
    )]
    StorageDamaged {
        /// The path.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
        /// What the high-water marks say was acknowledged.
        acknowledged: u64,
    },
    /// The high-water file cannot be used.
    #[error(transparent)]
    HighWater(#[from] crate::ledger::HighWaterError),
    /// RocksDB refused.
    #[error("storage error opening {path}: {message}")]
    Storage {
        /// The path.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A file system operation failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Invalid creation parameters.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A ledger id that is not a UUID.
    #[error("ledger id {0:?} is not a UUID (e.g. 0b5e3c1a-...); omit it to get a random one")]
    BadLedgerId(String),
}

/// Why an append was not acknowledged. Nothing of an unacknowledged group is durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// Entry `index` of the call is invalid; nothing of the call was appended.
    #[error("entry {index} of the batch: {reason}")]
    Invalid {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        reason: InvalidInput,
    },
    /// The ledger was opened read-only.
    #[error("the ledger is open read-only; open it for writing to append")]
    ReadOnly,
    /// The write failed (disk full, I/O error); the group was not acknowledged.
    #[error(
        "the write failed and nothing of this group was acknowledged: {0}; free disk space or fix the device, then retry"
    )]
    Storage(String),
    /// The ledger is closing.
    #[error("the ledger is closed")]
    Closed,
}

/// A read, query or proof that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A position or size beyond the log.
    #[error("{what} {value} is beyond the log, which has {size} entries")]
    OutOfRange {
        /// What was asked ("seq", "tree size").
        what: &'static str,
        /// The value asked.
        value: u64,
        /// Current log size.
        size: u64,
    },
    /// The proof cannot be built for these arguments.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// No checkpoint of that size is stored.
    #[error(
        "no checkpoint of size {0} is stored; list the stored sizes with `onoal checkpoints` or ask for the latest"
    )]
    NoCheckpoint(u64),
    /// A bad cursor.
    #[error("cursor {0:?} is not valid; pass the next_cursor of a previous page")]
    BadCursor(String),
    /// Stored data is damaged.
    #[error("stored data is damaged: {0}; run `onoal verify`")]
    Corrupt(String),
    /// RocksDB refused.
    #[error("storage error: {0}")]
    Storage(String),
    /// A sparse replica (a filtered sync) does not hold this entry.
    #[error(
        "entry {seq} is not held by this sparse replica (it holds only the entries its filtered syncs matched)"
    )]
    NotHeld {
        /// The entry.
        seq: u64,
    },
    /// A sparse replica holds each entry's proof for one tree size only.
    #[error(
        "this sparse replica holds the proof of entry {seq} in the tree of size {size} only; ask for that size (--size {size})"
    )]
    SparseProofSize {
        /// The entry.
        seq: u64,
        /// The size its stored proof is for.
        size: u64,
    },
    /// The operation needs the whole tree, which a sparse replica does not have.
    #[error("a sparse replica holds entries with their proofs, not the tree: {0}")]
    Sparse(&'static str),
    /// Checkpoint signing needs a writable ledger.
    #[error(
        "the ledger is open read-only and has no checkpoint of its current size yet; the writing process signs one within its checkpoint interval"
    )]
    ReadOnly,
    /// An argument the caller gave is not acceptable (the message says which and why).
    #[error("{0}")]
    InvalidInput(String),
}

impl From<crate::store::StoreError> for ReadError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Storage(e.0)
    }
}

impl From<crate::store::StoreError> for VerifyError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Read(e.into())
    }
}

/// The first inconsistency a full audit found, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// An entry below the head is missing.
    #[error("entry {seq} is missing")]
    EntryMissing {
        /// The missing seq.
        seq: u64,
    },
    /// Stored leaf data does not decode.
    #[error("entry {seq} does not decode: {reason}")]
    EntryUndecodable {
        /// The seq.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The entry carries an issuer signature that does not verify over its content.
    #[error("entry {seq} carries an issuer signature that does not verify over its content")]
    IssuerSignature {
        /// The seq.
        seq: u64,
    },
    /// The entry stored under key `seq` says it is another seq.
    #[error("entry stored at {seq} claims seq {found}")]
    SeqMismatch {
        /// Key position.
        seq: u64,
        /// Seq inside the entry.
        found: u64,
    },
    /// The leaf hash of entry `seq` differs from the one in its tile: the entry or the tile
    /// hash was changed.
    #[error(
        "entry {seq} hashes to {computed}, but its tile holds {in_tile}: the entry or its tile was changed"
    )]
    LeafHashMismatch {
        /// The entry.
        seq: u64,
        /// Leaf hash stored in the level-0 tile.
        in_tile: Hash,
        /// Leaf hash recomputed from the stored entry.
        computed: Hash,
    },
    /// `prev_hash` of entry `seq` is not the leaf hash of entry `seq - 1`.
    #[error("hash chain broken at entry {seq}: prev_hash is {found}, leaf hash of entry {} is {expected}", seq.saturating_sub(1))]
    ChainBroken {
        /// The entry whose link is wrong.
        seq: u64,
        /// Leaf hash of the previous entry.
        expected: Hash,
        /// prev_hash stored in the entry.
        found: Hash,
    },
    /// A tile hash differs from the one recomputed from the entries below it.
    #[error(
        "tile {level}/{index} position {position} (row {row}): stored {stored}, recomputed {computed}"
    )]
    TileMismatch {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// Row inside the tile (0 = bottom).
        row: usize,
        /// Position in the row.
        position: usize,
        /// Hash in storage.
        stored: Hash,
        /// Hash recomputed.
        computed: Hash,
    },
    /// A tile is missing or has the wrong length.
    #[error("tile {level}/{index}: {detail}")]
    TileDamaged {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// What is wrong.
        detail: String,
    },
    /// The head record disagrees with the entries.
    #[error("head record: {0}")]
    HeadMismatch(String),
    /// A stored checkpoint's signature does not verify.
    #[error("checkpoint of size {size}: {reason}")]
    CheckpointBadSignature {
        /// Checkpoint size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// A stored checkpoint's root is not the tree's root at its size.
    #[error(
        "checkpoint of size {size} has root {found}, but the tree of that size has root {expected}"
    )]
    CheckpointRootMismatch {
        /// Checkpoint size.
        size: u64,
        /// Root recomputed from the tree.
        expected: Hash,
        /// Root in the note.
        found: Hash,
    },
    /// The index lists an entry under a value it does not have, or misses one it has: queries
    /// and filtered syncs would return wrong pages.
    #[error(
        "index damaged: {}; queries and filtered syncs of that {kind} would be wrong. Restore the ledger from a peer (onoal restore) or a backup",
        if *listed {
            format!("it lists entry {seq} under {kind} {value:?}, which the entry does not have")
        } else {
            format!("entry {seq} has {kind} {value:?}, but the index does not list it there")
        }
    )]
    IndexMismatch {
        /// The entry.
        seq: u64,
        /// Which index (stream, type, subject, issuer).
        kind: &'static str,
        /// The value.
        value: String,
        /// True: listed without having it; false: has it without being listed.
        listed: bool,
    },
    /// An index record that does not parse.
    #[error("index damaged: {0}; restore the ledger from a peer (onoal restore) or a backup")]
    IndexDamaged(String),
    /// A sparse replica's entry whose stored inclusion proof does not verify.
    #[error("entry {seq} of the sparse replica: {reason}")]
    SparseProofInvalid {
        /// The entry.
        seq: u64,
        /// What failed.
        reason: String,
    },
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
}
