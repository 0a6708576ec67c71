//! The façade: [`Ledger`] opens a data directory, appends through the group-commit pipeline
//! ([`sequencer`], [`writer`]), signs checkpoints, reads through its own [`Log`], and hands out
//! replica logs and their writers ([`crate::replica`]).

mod builder;
mod highwater;
mod restore;
mod sequencer;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

pub use builder::LedgerBuilder;
pub use highwater::{HIGHWATER_FILE, HighWaterError};
pub use restore::{RestoreError, RestoreReport};
use sequencer::Command;

use crate::checkpoint::SignedCheckpoint;
use crate::error::{AppendError, ReadError};
use crate::hash::Hash;
use crate::identity::Identity;
use crate::ids::LedgerId;
use crate::log::state::Logs;
use crate::log::{Head, Log, Query, QueryPage, StoredEntry};
use crate::record::{NewEntry, PreparedEntry};
use crate::replica::{self, ReplicaError, ReplicaWriter, SyncRecord};
use crate::store::keys::{Cf, Kind};
use crate::store::{Batch, Store, StoreError};

/// Batches at least this large are validated and hashed in parallel.
const PARALLEL_PREPARE_MIN: usize = 256;

/// Sub-directory of the data directory that holds RocksDB.
pub const DB_DIR: &str = "db";

/// When an acknowledged append is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// The WAL is fsynced once per group before any caller of the group is acknowledged:
    /// acknowledged entries survive an OS crash or power loss.
    #[default]
    Sync,
    /// The group is written to the WAL without fsync: acknowledged entries survive a process
    /// crash, but an OS crash may lose the last groups (never the chain's consistency).
    Buffered,
}

/// What `append` returns once the entry is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's position.
    pub seq: u64,
    /// Its leaf hash (also its chain link).
    pub leaf_hash: Hash,
}

/// Where the sequencer answers one `append_batch` call.
pub(crate) type AppendReply = Sender<Result<Vec<Receipt>, AppendError>>;
/// Where the writer answers one `checkpoint_now` call.
pub(crate) type CheckpointReply = Sender<Result<SignedCheckpoint, ReadError>>;

/// Receipts of a submitted batch, once durable.
#[derive(Debug)]
#[must_use = "the batch is acknowledged only when wait() returns Ok"]
pub struct PendingAppend {
    rx: Receiver<Result<Vec<Receipt>, AppendError>>,
}

impl PendingAppend {
    /// Blocks until the batch is durable (or failed).
    ///
    /// # Errors
    /// The batch's [`AppendError`]; nothing of a failed batch is durable.
    pub fn wait(self) -> Result<Vec<Receipt>, AppendError> {
        self.rx.recv().map_err(|_| AppendError::Closed)?
    }
}

/// Tables a layer above the engine keeps in the ledger's database (DESIGN.md: peers,
/// connections, routing, trust, messages). Plain keys and values: the engine only stores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuxTable {
    /// Known and pinned peers.
    Peers,
    /// Connection history.
    Connections,
    /// OID routing table.
    Routing,
    /// Trust edges.
    Trust,
    /// Originated messages.
    Messages,
    /// What this node witnessed (the newest checkpoint cosigned per log, fork evidence).
    Witness,
}

impl AuxTable {
    fn cf(self) -> Cf {
        match self {
            Self::Peers => Cf::Peers,
            Self::Connections => Cf::Connections,
            Self::Routing => Cf::Routing,
            Self::Trust => Cf::Trust,
            Self::Messages => Cf::Messages,
            Self::Witness => Cf::Witness,
        }
    }
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// How a ledger was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Appends through the pipeline.
    Write,
    /// Reads only.
    Read,
    /// Writes only through [`Ledger::restore_writer`] (no pipeline): rebuilding lost entries.
    Restore,
}

/// The high-water file and what it holds, shared by the writer thread and the façade.
pub(crate) struct HighWaterFile {
    pub(crate) dir: PathBuf,
    pub(crate) state: Mutex<highwater::HighWater>,
}

impl HighWaterFile {
    /// Records a newly durable signed checkpoint (before it is handed out).
    pub(crate) fn signed(&self, cp: &SignedCheckpoint) -> std::io::Result<()> {
        let mut hw = self.state.lock();
        if hw.signed_size() >= cp.size {
            return Ok(());
        }
        let mut next = hw.clone();
        next.signed = Some(cp.clone());
        next.write(&self.dir)?;
        *hw = next;
        Ok(())
    }

    /// Records the head at a clean close.
    pub(crate) fn closed(&self, head: u64) -> std::io::Result<()> {
        let mut hw = self.state.lock();
        let mut next = hw.clone();
        next.head = next.head.max(head);
        next.write(&self.dir)?;
        *hw = next;
        Ok(())
    }
}

/// An open ledger. `append` may be called from any number of threads at once.
pub struct Ledger {
    path: PathBuf,
    store: Arc<Store>,
    logs: Arc<Logs>,
    own: Log,
    max_payload: usize,
    mode: Mode,
    highwater: Option<Arc<HighWaterFile>>,
    tx: Option<Sender<Command>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.path)
            .field("ledger_id", &self.identity().ledger_id)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        // Closing the channel ends the sequencer, which ends the writer after the last group.
        self.tx.take();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        if self.mode != Mode::Write {
            return;
        }
        // A clean close moves everything out of the WAL into checksummed tables, then records
        // the head: damage to the WAL of a closed ledger loses nothing, and less than this head
        // after the next open is refused.
        if let Err(e) = self.store.flush_all() {
            tracing::error!(error = %e, "flushing at close failed; the WAL keeps the entries");
        }
        if let Some(hw) = &self.highwater
            && let Err(e) = hw.closed(self.own.durable_size())
        {
            tracing::error!(error = %e, "recording the head at close failed");
        }
    }
}

impl Ledger {
    /// Starts configuring a ledger at `path` (the data directory).
    pub fn builder(path: impl AsRef<Path>) -> LedgerBuilder {
        LedgerBuilder::new(path.as_ref())
    }

    /// The ledger's identity.
    pub fn identity(&self) -> &Identity {
        &self.own.state.identity
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Test hook: the next writes numbered in `writes` (0 = the next write) fail with an
    /// injected I/O error instead of reaching RocksDB.
    #[cfg(feature = "__internal-fault-injection")]
    pub fn dangerous_fail_group_writes(&self, writes: &[u64]) {
        self.store.dangerous_fail_writes(writes);
    }

    /// Largest payload `append` accepts.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload
    }

    /// True when opened with [`LedgerBuilder::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.mode == Mode::Read
    }

    /// Appends one entry; returns once it is durable in the ledger's durability mode.
    ///
    /// # Errors
    /// [`AppendError`]: invalid entry, read-only ledger, failed write.
    pub fn append(&self, entry: NewEntry) -> Result<Receipt, AppendError> {
        let mut r = self.append_batch(vec![entry])?;
        r.pop().ok_or(AppendError::Closed)
    }

    /// Appends entries in order, contiguously; all or none are acknowledged.
    ///
    /// # Errors
    /// As [`Self::append`]; an invalid entry rejects the whole call.
    pub fn append_batch(&self, entries: Vec<NewEntry>) -> Result<Vec<Receipt>, AppendError> {
        self.submit_batch(entries)?.wait()
    }

    /// Hands entries to the sequencer and returns at once; [`PendingAppend::wait`] returns the
    /// receipts once they are durable. Batches submitted from one thread commit in submission
    /// order, so a caller can keep several in flight (as `onoal import` does) and overlap its
    /// own work with the sequencer's hashing and the disk's fsync.
    ///
    /// # Errors
    /// An invalid entry (nothing of the call is submitted), a read-only or closed ledger.
    pub fn submit_batch(&self, entries: Vec<NewEntry>) -> Result<PendingAppend, AppendError> {
        let tx = self.tx.as_ref().ok_or(AppendError::ReadOnly)?;
        // Validation (limits, issuer signatures), encoding and most of the leaf hashing run on
        // the caller's thread, in parallel with the sequencer.
        let max_payload = self.max_payload;
        let check = |(index, e): (usize, NewEntry)| {
            e.validate(max_payload).map_err(|reason| AppendError::Invalid { index, reason })?;
            Ok(e.prepare())
        };
        // Large batches are validated and hashed on all cores (rayon keeps the order).
        let prepared: Vec<PreparedEntry> = if entries.len() >= PARALLEL_PREPARE_MIN {
            use rayon::prelude::*;
            entries.into_par_iter().enumerate().map(check).collect::<Result<_, AppendError>>()?
        } else {
            entries.into_iter().enumerate().map(check).collect::<Result<_, AppendError>>()?
        };
        let (reply, rx) = crossbeam_channel::bounded(1);
        if prepared.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
        } else {
            tx.send(Command::Append { entries: prepared, reply })
                .map_err(|_| AppendError::Closed)?;
        }
        Ok(PendingAppend { rx })
    }

    /// Signs a checkpoint of the current size now (if none exists for it) and returns it.
    ///
    /// # Errors
    /// Storage errors; [`ReadError::ReadOnly`] on a read-only ledger whose current size has no
    /// checkpoint.
    pub fn checkpoint_now(&self) -> Result<SignedCheckpoint, ReadError> {
        let Some(tx) = &self.tx else {
            let head = self.head()?;
            return match self.latest_checkpoint()? {
                Some(cp) if cp.size == head.size => Ok(cp),
                _ => Err(ReadError::ReadOnly),
            };
        };
        let (reply, rx) = crossbeam_channel::bounded(1);
        tx.send(Command::Checkpoint { reply })
            .map_err(|_| ReadError::Storage("the ledger is closed".into()))?;
        rx.recv().map_err(|_| ReadError::Storage("the ledger is closed".into()))?
    }

    /// The own log, for reads; the same reads work on a replica (see [`Self::replica`]).
    pub fn log(&self) -> &Log {
        &self.own
    }

    /// The replica of `ledger_id`, if this ledger holds one.
    pub fn replica(&self, ledger_id: &LedgerId) -> Option<Log> {
        self.logs.get(Kind::Full, ledger_id).map(|s| Log::new(self.store.clone(), s))
    }

    /// Every replica this ledger holds, in the order they were created.
    pub fn replicas(&self) -> Vec<Log> {
        self.logs.all(Kind::Full).into_iter().map(|s| Log::new(self.store.clone(), s)).collect()
    }

    /// The sparse replica of `ledger_id`, if this ledger holds one.
    pub fn sparse_replica(&self, ledger_id: &LedgerId) -> Option<Log> {
        self.logs.get(Kind::Sparse, ledger_id).map(|s| Log::new(self.store.clone(), s))
    }

    /// Every sparse replica.
    pub fn sparse_replicas(&self) -> Vec<Log> {
        self.logs.all(Kind::Sparse).into_iter().map(|s| Log::new(self.store.clone(), s)).collect()
    }

    /// The own log (when `ledger_id` is this ledger's) or a replica.
    pub fn log_of(&self, ledger_id: &LedgerId) -> Option<Log> {
        if *ledger_id == self.identity().ledger_id {
            Some(self.own.clone())
        } else {
            self.replica(ledger_id)
        }
    }

    /// The sync record of a replica.
    ///
    /// # Errors
    /// Storage errors or a damaged record.
    pub fn sync_record(&self, ledger_id: &LedgerId) -> Result<Option<SyncRecord>, ReplicaError> {
        replica::sync_record(&self.store, &self.logs, Kind::Full, ledger_id)
    }

    /// The sync record of a sparse replica.
    ///
    /// # Errors
    /// Storage errors or a damaged record.
    pub fn sparse_sync_record(
        &self,
        ledger_id: &LedgerId,
    ) -> Result<Option<SyncRecord>, ReplicaError> {
        replica::sync_record(&self.store, &self.logs, Kind::Sparse, ledger_id)
    }

    /// Opens the writer of the replica of `identity` (created when new, with `identity` as its
    /// pinned identity). At most one writer per replica exists at a time.
    ///
    /// # Errors
    /// Read-only ledger, own ledger, a different pinned key, a writer already active, storage.
    pub fn replica_writer(&self, identity: &Identity) -> Result<ReplicaWriter, ReplicaError> {
        self.open_replica_writer(identity, Kind::Full)
    }

    /// Opens the writer of the sparse replica of `identity` (filtered syncs: entries with
    /// their inclusion proofs, no tree). As [`Self::replica_writer`].
    ///
    /// # Errors
    /// As [`Self::replica_writer`].
    pub fn sparse_writer(&self, identity: &Identity) -> Result<ReplicaWriter, ReplicaError> {
        self.open_replica_writer(identity, Kind::Sparse)
    }

    fn open_replica_writer(
        &self,
        identity: &Identity,
        kind: Kind,
    ) -> Result<ReplicaWriter, ReplicaError> {
        if self.mode != Mode::Write {
            return Err(ReplicaError::ReadOnly);
        }
        replica::open_writer(&self.store, &self.logs, &self.identity().ledger_id, identity, kind)
    }

    /// Opens the writer of a fresh staging copy of the replica of `identity`, for a full sync:
    /// the replica itself stays as it is until [`Self::promote_staging`] replaces it with the
    /// copy, which happens only once the copy has verified.
    ///
    /// # Errors
    /// As [`Self::replica_writer`].
    pub fn staging_writer(&self, identity: &Identity) -> Result<ReplicaWriter, ReplicaError> {
        if self.mode != Mode::Write {
            return Err(ReplicaError::ReadOnly);
        }
        replica::staging_writer(&self.store, &self.logs, &self.identity().ledger_id, identity)
    }

    /// Replaces the replica of `ledger_id` with its staging copy (one atomic write), unless the
    /// copy contradicts the replica's newest checkpoint: that is a fork, recorded on the kept
    /// replica, and the copy is deleted.
    ///
    /// # Errors
    /// [`ReplicaError::Fork`], a writer active, storage errors.
    pub fn promote_staging(&self, ledger_id: &LedgerId) -> Result<(), ReplicaError> {
        if self.mode != Mode::Write {
            return Err(ReplicaError::ReadOnly);
        }
        replica::promote_staging(&self.store, &self.logs, &self.identity().ledger_id, ledger_id)
    }

    /// Deletes the staging copy of `ledger_id` (a full sync that failed).
    ///
    /// # Errors
    /// A writer active, storage errors.
    pub fn drop_staging(&self, ledger_id: &LedgerId) -> Result<bool, ReplicaError> {
        if self.mode != Mode::Write {
            return Err(ReplicaError::ReadOnly);
        }
        replica::drop_staging(&self.store, &self.logs, ledger_id)
    }

    /// Deletes a replica and everything stored for it (entries, tiles, indexes, checkpoints,
    /// sync state, fork evidence). The operator's way out of a fork.
    ///
    /// # Errors
    /// Read-only ledger, a sync of it running, storage errors. Returns false when there was no
    /// such replica.
    pub fn drop_replica(&self, ledger_id: &LedgerId) -> Result<bool, ReplicaError> {
        if self.mode != Mode::Write {
            return Err(ReplicaError::ReadOnly);
        }
        replica::drop_replica(&self.store, &self.logs, ledger_id)
    }

    /// Size, root and last timestamp. See [`Log::head`].
    ///
    /// # Errors
    /// Storage errors or damaged data.
    pub fn head(&self) -> Result<Head, ReadError> {
        self.own.head()
    }

    /// The entry at `seq`. See [`Log::entry`].
    ///
    /// # Errors
    /// [`ReadError::OutOfRange`] beyond the log; storage errors or damaged data.
    pub fn entry(&self, seq: u64) -> Result<StoredEntry, ReadError> {
        self.own.entry(seq)
    }

    /// Entries `[start, end)` (clamped to the log).
    ///
    /// # Errors
    /// Storage errors or damaged data.
    pub fn range(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ReadError> {
        self.own.range(start, end)
    }

    /// Entries matching `query`, one page at a time.
    ///
    /// # Errors
    /// Bad cursor, storage errors or damaged data.
    pub fn query(&self, query: &Query) -> Result<QueryPage, ReadError> {
        self.own.query(query)
    }

    /// Root of the tree of `size` leaves.
    ///
    /// # Errors
    /// Size beyond the log; storage errors or damaged data.
    pub fn root_at(&self, size: u64) -> Result<Hash, ReadError> {
        self.own.root_at(size)
    }

    /// RFC 9162 inclusion proof of `seq` in the tree of `size`.
    ///
    /// # Errors
    /// Size beyond the log or seq not below size; storage errors or damaged data.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        self.own.inclusion_proof(seq, size)
    }

    /// RFC 9162 consistency proof between `old` and `new` (0 < old <= new <= size).
    ///
    /// # Errors
    /// Sizes out of order or beyond the log; storage errors or damaged data.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ReadError> {
        self.own.consistency_proof(old, new)
    }

    /// The stored checkpoint of exactly `size`.
    ///
    /// # Errors
    /// Storage errors or a damaged note.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, ReadError> {
        self.own.checkpoint_at(size)
    }

    /// The stored checkpoint with the largest size.
    ///
    /// # Errors
    /// Storage errors or a damaged note.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, ReadError> {
        self.own.latest_checkpoint()
    }

    /// Sizes of all stored checkpoints, ascending.
    ///
    /// # Errors
    /// Storage errors.
    pub fn checkpoint_sizes(&self) -> Result<Vec<u64>, ReadError> {
        self.own.checkpoint_sizes()
    }

    /// The value at `key` of an auxiliary table.
    ///
    /// # Errors
    /// Storage errors.
    pub fn aux_get(&self, table: AuxTable, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        if !self.store.has(table.cf()) {
            return Ok(None); // a read-only open of a database older than the table
        }
        Ok(self.store.get(table.cf(), key)?)
    }

    /// Writes (fsynced) `value` at `key` of an auxiliary table.
    ///
    /// # Errors
    /// A read-only ledger; storage errors.
    pub fn aux_put(&self, table: AuxTable, key: &[u8], value: &[u8]) -> Result<(), ReadError> {
        let mut batch = Batch::default();
        self.store.put(&mut batch, table.cf(), key, value);
        self.write_aux(batch)
    }

    /// Deletes (fsynced) `key` of an auxiliary table.
    ///
    /// # Errors
    /// A read-only ledger; storage errors.
    pub fn aux_delete(&self, table: AuxTable, key: &[u8]) -> Result<(), ReadError> {
        let mut batch = Batch::default();
        self.store.delete(&mut batch, table.cf(), key);
        self.write_aux(batch)
    }

    fn write_aux(&self, batch: Batch) -> Result<(), ReadError> {
        if self.mode == Mode::Read {
            return Err(ReadError::Storage(
                "the ledger is open read-only; stop the process that owns it (onoal serve?) or send the change to it".into(),
            ));
        }
        Ok(self.store.write(batch, true)?)
    }

    /// Every key and value of an auxiliary table, in key order.
    ///
    /// # Errors
    /// Storage errors.
    pub fn aux_scan(&self, table: AuxTable) -> Result<Vec<KeyValue>, ReadError> {
        let mut out = Vec::new();
        if !self.store.has(table.cf()) {
            return Ok(out);
        }
        self.store.visit(None, table.cf(), &[], None, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok::<_, StoreError>(true)
        })?;
        Ok(out)
    }
}

/// How long the sequencer waits, at most, before signing a checkpoint of new entries.
pub(crate) const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
