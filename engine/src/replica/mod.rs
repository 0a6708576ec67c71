//! Replicas: verified copies of remote ledgers, kept in the same database as the own log.
//!
//! A replica is only ever written through a [`ReplicaWriter`], and only with data that was
//! verified against a checkpoint signed by the remote ledger's pinned key:
//!
//! 1. [`ReplicaWriter::accept_checkpoint`] checks a checkpoint's signature and its consistency
//!    with the newest checkpoint the replica already holds. Two validly signed checkpoints that
//!    disagree are a fork: both are kept as evidence and the replica refuses every further
//!    write until an operator drops it ([`crate::Ledger::drop_replica`]).
//! 2. [`verify_bundle`] (a pure function: any thread) checks up to 256 entries — one level-0
//!    tile — against that checkpoint ([`bundle`]).
//! 3. [`ReplicaWriter::commit_all`] appends verified bundles (entries, tiles, indexes, head and
//!    sync state) in ONE fsynced write. Bundles are committed in order; a sync that is
//!    interrupted resumes after the last committed bundle.
//!
//! A *sparse* replica (a filtered sync) takes entries with their inclusion proofs instead
//! ([`ReplicaWriter::commit_proven`], [`sparse`]).

pub mod bundle;
mod sparse;
mod state;
mod writer;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use bundle::{
    BUNDLE_ENTRIES, BundleError, VerifiedBundle, bundle_len, bundle_path_from_inclusion,
    verify_bundle,
};
pub use sparse::ProvenEntry;
pub use state::{ForkEvidence, ForkProof, SyncRecord, SyncStatus};
pub use writer::{Accepted, ReplicaWriter};

use crate::error::ReadError;
use crate::identity::Identity;
use crate::ids::LedgerId;
use crate::log::state::{LogState, Logs, WriterHead};
use crate::log::{Log, Shape};
use crate::store::keys::{self, Cf, HeadRecord};
use crate::store::{Batch, Store, StoreError};

/// Why a replica write was refused. Nothing is written when any of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The checkpoint's signature does not verify with the pinned key.
    #[error("checkpoint signature does not verify with the pinned key of {ledger_id}: {reason}")]
    BadSignature {
        /// The replicated ledger.
        ledger_id: LedgerId,
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
        ledger_id: LedgerId,
        /// Why they conflict.
        reason: String,
    },
    /// The replica forked earlier; it takes no writes.
    #[error(
        "the replica of {0} has forked and takes no writes; inspect `onoal forks --json`, then `onoal forks drop {0}` to sync it afresh"
    )]
    Forked(LedgerId),
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
    Busy(LedgerId),
    /// The ledger is open read-only.
    #[error("the ledger is open read-only; replicas are written by the process that owns it")]
    ReadOnly,
    /// The identity given differs from the one pinned for this replica.
    #[error(
        "ledger {ledger_id} is pinned with key {pinned}, not {given}; if the key really changed, drop the replica first"
    )]
    KeyMismatch {
        /// The replicated ledger.
        ledger_id: LedgerId,
        /// Pinned key (hex).
        pinned: String,
        /// Given key (hex).
        given: String,
    },
    /// A ledger cannot replicate itself.
    #[error("ledger {0} is this ledger; it cannot be its own replica")]
    OwnLedger(LedgerId),
    /// RocksDB refused.
    #[error("storage error: {0}")]
    Storage(String),
    /// Stored replica data is damaged.
    #[error("stored replica data is damaged: {0}; run `onoal verify --ledger ...`")]
    Corrupt(String),
}

impl From<StoreError> for ReplicaError {
    fn from(e: StoreError) -> Self {
        Self::Storage(e.0)
    }
}

impl From<ReadError> for ReplicaError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Storage(s) => Self::Storage(s),
            other => Self::Corrupt(other.to_string()),
        }
    }
}

/// Opens the writer of the `shape` replica of `identity` (created when new, with `identity` as
/// its pinned identity). At most one writer per replica exists at a time.
pub(crate) fn open_writer(
    store: &Arc<Store>,
    logs: &Logs,
    own: &LedgerId,
    identity: &Identity,
    shape: Shape,
) -> Result<ReplicaWriter, ReplicaError> {
    let id = identity.ledger_id;
    if id == *own {
        return Err(ReplicaError::OwnLedger(id));
    }
    let (state, _) = logs.get_or_create(shape, identity, |number| {
        let mut value = number.to_be_bytes().to_vec();
        value.extend_from_slice(&identity.encode());
        let mut batch = Batch::default();
        store.put(&mut batch, Cf::Meta, &keys::directory_key(&id, shape == Shape::Sparse), &value);
        store.put(&mut batch, Cf::Meta, &keys::head_key(number), &HeadRecord::default().encode());
        Ok(store.write(batch, true)?)
    })?;
    if state.identity.public_key != identity.public_key {
        return Err(ReplicaError::KeyMismatch {
            ledger_id: id,
            pinned: hex::encode(state.identity.public_key.as_bytes()),
            given: hex::encode(identity.public_key.as_bytes()),
        });
    }
    if state.writer_active.swap(true, Ordering::AcqRel) {
        return Err(ReplicaError::Busy(id));
    }
    // From here on, the writer's Drop clears writer_active.
    let log = Log::new(store.clone(), state);
    let loaded = WriterHead::load(store, &log.state);
    let record = state::read_record(store, log.state.number);
    let mut writer =
        ReplicaWriter::new(log, loaded.map_err(|e| ReplicaError::Corrupt(e.to_string())), record)?;
    let other = match shape {
        Shape::Full => Shape::Sparse,
        Shape::Sparse => Shape::Full,
    };
    writer.sibling = logs.get(other, &id).map(|s| Log::new(store.clone(), s));
    Ok(writer)
}

/// The writer of the own log, for a restore (the ledger's pipeline is not running).
pub(crate) fn open_own_writer(
    store: &Arc<Store>,
    logs: &Logs,
) -> Result<ReplicaWriter, ReplicaError> {
    let state = logs.own.clone();
    if state.writer_active.swap(true, Ordering::AcqRel) {
        return Err(ReplicaError::Busy(state.identity.ledger_id));
    }
    let log = Log::new(store.clone(), state);
    let loaded = WriterHead::load(store, &log.state);
    ReplicaWriter::new(log, loaded.map_err(|e| ReplicaError::Corrupt(e.to_string())), Ok(None))
}

/// The sync record of the `shape` replica of `ledger_id`.
pub(crate) fn sync_record(
    store: &Store,
    logs: &Logs,
    shape: Shape,
    ledger_id: &LedgerId,
) -> Result<Option<SyncRecord>, ReplicaError> {
    match logs.get(shape, ledger_id) {
        None => Ok(None),
        Some(s) => state::read_record(store, s.number),
    }
}

/// Deletes every replica of `ledger_id` and everything stored for it (entries, tiles, indexes,
/// checkpoints, sync state, fork evidence). Returns false when there was none.
pub(crate) fn drop_replica(
    store: &Store,
    logs: &Logs,
    ledger_id: &LedgerId,
) -> Result<bool, ReplicaError> {
    let mut dropped = false;
    for shape in [Shape::Full, Shape::Sparse] {
        dropped |= logs.remove_with(shape, ledger_id, |state: &LogState| {
            if state.writer_active.load(Ordering::Acquire) {
                return Err(ReplicaError::Busy(*ledger_id));
            }
            let n = state.number;
            let (from, to) = (n.to_be_bytes(), keys::log_end(n));
            let mut batch = Batch::default();
            for cf in [Cf::Entries, Cf::Tiles, Cf::Index, Cf::Checkpoints, Cf::SyncState] {
                store.delete_range(&mut batch, cf, &from, &to);
            }
            let dir = keys::directory_key(ledger_id, shape == Shape::Sparse);
            store.delete(&mut batch, Cf::Meta, &dir);
            store.delete(&mut batch, Cf::Meta, &keys::head_key(n));
            Ok(store.write(batch, true)?)
        })?;
    }
    Ok(dropped)
}
