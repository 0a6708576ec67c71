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
    BUNDLE_ENTRIES, BundleError, VerifiedBundle, bundle_len, bundle_path_from_inclusion, range_len,
    range_path_from_inclusion, verify_bundle, verify_range,
};
pub use sparse::ProvenEntry;
pub use state::{ForkEvidence, ForkProof, SyncRecord, SyncStatus};
pub use writer::{Accepted, ReplicaWriter};

use crate::error::ReadError;
use crate::identity::Identity;
use crate::ids::LedgerId;
use crate::log::Log;
use crate::log::state::{LogState, Logs, WriterHead};
use crate::store::keys::{self, Cf, HeadRecord, Kind};
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

/// Opens the writer of the replica of `identity` of this kind (created when new, with
/// `identity` as its pinned identity). At most one writer per replica exists at a time.
pub(crate) fn open_writer(
    store: &Arc<Store>,
    logs: &Logs,
    own: &LedgerId,
    identity: &Identity,
    kind: Kind,
) -> Result<ReplicaWriter, ReplicaError> {
    let id = identity.ledger_id;
    if id == *own {
        return Err(ReplicaError::OwnLedger(id));
    }
    let (state, _) = logs.get_or_create(kind, identity, |number| {
        let mut value = number.to_be_bytes().to_vec();
        value.extend_from_slice(&identity.encode());
        let mut batch = Batch::default();
        store.put(&mut batch, Cf::Meta, &keys::directory_key(&id, kind), &value);
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
    let sibling = match kind {
        Kind::Full => Some(Kind::Sparse),
        Kind::Sparse => Some(Kind::Full),
        Kind::Staging => None,
    };
    writer.sibling = sibling.and_then(|k| logs.get(k, &id)).map(|s| Log::new(store.clone(), s));
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

/// At a writable open no sync runs: a record still saying `in_progress` belongs to a sync that
/// was stopped (the process was killed, or could not write its failure, e.g. on a full disk).
/// It is marked failed, with that as its error, so the status describes what is held; staging
/// copies of full syncs that never finished are deleted.
pub(crate) fn mark_interrupted(store: &Store, logs: &Logs) -> Result<(), ReplicaError> {
    for state in logs.all(Kind::Full).into_iter().chain(logs.all(Kind::Sparse)) {
        let Some(mut record) = state::read_record(store, state.number)? else { continue };
        if record.status != SyncStatus::InProgress {
            continue;
        }
        record.status = SyncStatus::Failed;
        record.last_error = Some(
            "interrupted: the process stopped before the sync finished (killed, or it could not record its failure); the next sync resumes from what is held".into(),
        );
        record.updated_ms = crate::time::now_ms();
        let mut batch = Batch::default();
        store.put(
            &mut batch,
            Cf::SyncState,
            &keys::sync_state_key(state.number),
            &record.encode()?,
        );
        store.write(batch, true)?;
    }
    for state in logs.all(Kind::Staging) {
        drop_kind(store, logs, Kind::Staging, &state.identity.ledger_id)?;
    }
    Ok(())
}

/// The sync record of the replica of `ledger_id` of this kind.
pub(crate) fn sync_record(
    store: &Store,
    logs: &Logs,
    kind: Kind,
    ledger_id: &LedgerId,
) -> Result<Option<SyncRecord>, ReplicaError> {
    match logs.get(kind, ledger_id) {
        None => Ok(None),
        Some(s) => state::read_record(store, s.number),
    }
}

/// Puts the deletion of everything stored for log `n` (listed in `kind`'s directory) into
/// `batch`.
fn delete_log(store: &Store, batch: &mut Batch, n: u32, kind: Kind, ledger_id: &LedgerId) {
    let (from, to) = (n.to_be_bytes(), keys::log_end(n));
    for cf in [Cf::Entries, Cf::Tiles, Cf::Index, Cf::Checkpoints, Cf::SyncState] {
        store.delete_range(batch, cf, &from, &to);
    }
    store.delete(batch, Cf::Meta, &keys::directory_key(ledger_id, kind));
    store.delete(batch, Cf::Meta, &keys::head_key(n));
}

fn drop_kind(
    store: &Store,
    logs: &Logs,
    kind: Kind,
    ledger_id: &LedgerId,
) -> Result<bool, ReplicaError> {
    logs.remove_with(kind, ledger_id, |state: &LogState| {
        if state.writer_active.load(Ordering::Acquire) {
            return Err(ReplicaError::Busy(*ledger_id));
        }
        let mut batch = Batch::default();
        delete_log(store, &mut batch, state.number, kind, ledger_id);
        Ok(store.write(batch, true)?)
    })
}

/// Deletes every replica of `ledger_id` and everything stored for it (entries, tiles, indexes,
/// checkpoints, sync state, fork evidence). Returns false when there was none.
pub(crate) fn drop_replica(
    store: &Store,
    logs: &Logs,
    ledger_id: &LedgerId,
) -> Result<bool, ReplicaError> {
    let mut dropped = false;
    for kind in [Kind::Full, Kind::Sparse, Kind::Staging] {
        dropped |= drop_kind(store, logs, kind, ledger_id)?;
    }
    Ok(dropped)
}

/// Deletes the staging copy of `ledger_id`.
pub(crate) fn drop_staging(
    store: &Store,
    logs: &Logs,
    ledger_id: &LedgerId,
) -> Result<bool, ReplicaError> {
    drop_kind(store, logs, Kind::Staging, ledger_id)
}

/// Opens a fresh staging copy of the replica of `identity` for a full sync (an earlier one is
/// deleted first): the replica stays as it is until the copy has verified.
pub(crate) fn staging_writer(
    store: &Arc<Store>,
    logs: &Logs,
    own: &LedgerId,
    identity: &Identity,
) -> Result<ReplicaWriter, ReplicaError> {
    drop_kind(store, logs, Kind::Staging, &identity.ledger_id)?;
    if let Some(full) = logs.get(Kind::Full, &identity.ledger_id)
        && full.identity.public_key != identity.public_key
    {
        return Err(ReplicaError::KeyMismatch {
            ledger_id: identity.ledger_id,
            pinned: hex::encode(full.identity.public_key.as_bytes()),
            given: hex::encode(identity.public_key.as_bytes()),
        });
    }
    open_writer(store, logs, own, identity, Kind::Staging)
}

/// Replaces the full replica of `ledger_id` with its verified staging copy, in one write. The
/// copy must not contradict what the replica held: the replica's newest checkpoint must be the
/// copy's tree at that size (or the reverse, when the replica was ahead). A contradiction is a
/// fork: the replica is kept, with both notes as evidence, and the copy deleted.
pub(crate) fn promote_staging(
    store: &Arc<Store>,
    logs: &Logs,
    own: &LedgerId,
    ledger_id: &LedgerId,
) -> Result<(), ReplicaError> {
    let staged = logs.get(Kind::Staging, ledger_id).ok_or_else(|| {
        ReplicaError::Corrupt(format!("no staging copy of {ledger_id} to promote"))
    })?;
    let copy = Log::new(store.clone(), staged);
    if let Some(old) = logs.get(Kind::Full, ledger_id) {
        let old_log = Log::new(store.clone(), old);
        if let (Some(held), Some(new)) = (old_log.latest_checkpoint()?, copy.latest_checkpoint()?) {
            let agrees = if held.size <= copy.durable_size() {
                copy.root_at(held.size)? == held.root
            } else if new.size <= old_log.durable_size() {
                old_log.root_at(new.size)? == new.root
            } else {
                true
            };
            if !agrees {
                let identity = old_log.identity().clone();
                drop_kind(store, logs, Kind::Staging, ledger_id)?;
                let mut w = open_writer(store, logs, own, &identity, Kind::Full)?;
                return Err(w.record_fork(
                    &new.note,
                    format!("a full sync brought checkpoint {} which contradicts the held checkpoint of size {}", new.size, held.size),
                ));
            }
        }
    }
    logs.promote_with(ledger_id, |new: &LogState, old: Option<&LogState>| {
        if new.writer_active.load(Ordering::Acquire)
            || old.is_some_and(|o| o.writer_active.load(Ordering::Acquire))
        {
            return Err(ReplicaError::Busy(*ledger_id));
        }
        let mut batch = Batch::default();
        if let Some(old) = old {
            delete_log(store, &mut batch, old.number, Kind::Full, ledger_id);
        }
        let mut value = new.number.to_be_bytes().to_vec();
        value.extend_from_slice(&new.identity.encode());
        store.delete(&mut batch, Cf::Meta, &keys::directory_key(ledger_id, Kind::Staging));
        store.put(&mut batch, Cf::Meta, &keys::directory_key(ledger_id, Kind::Full), &value);
        Ok(store.write(batch, true)?)
    })?;
    Ok(())
}
