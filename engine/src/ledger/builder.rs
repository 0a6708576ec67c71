//! Opening a data directory: settings ([`LedgerBuilder`]), creation, and the checks every open
//! makes (schema version, identity, key file) before the pipeline starts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;

use super::highwater::HighWater;
use super::sequencer::{Command, Group, Sequencer};
use super::{DB_DIR, DEFAULT_CHECKPOINT_INTERVAL, Durability, HighWaterFile, Ledger, Mode};
use crate::checkpoint::NoteSigner;
use crate::error::OpenError;
use crate::identity::{Identity, SecretKey, key_path};
use crate::ids::LedgerId;
use crate::log::Log;
use crate::log::state::{Logs, WriterHead};
use crate::record::Oid;
use crate::store::keys::{self, Cf, HeadRecord, OWN_LOG};
use crate::store::{Batch, Store, StoreError};

/// Settings for opening or creating a [`Ledger`].
#[derive(Clone, Debug)]
pub struct LedgerBuilder {
    path: PathBuf,
    durability: Durability,
    checkpoint_interval: Duration,
    max_payload: usize,
    cache_bytes: usize,
    ledger_id: Option<String>,
}

impl LedgerBuilder {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            durability: Durability::Sync,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            max_payload: 1 << 20,
            cache_bytes: 64 << 20,
            ledger_id: None,
        }
    }

    /// Durability of acknowledged appends. Defaults to [`Durability::Sync`] (fsync per group).
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Longest time between a change and its signed checkpoint. Defaults to 1 s; shorter
    /// intervals sign (and store) more checkpoints.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d;
        self
    }

    /// Largest payload `append` accepts. Defaults to 1 MiB; capped at 64 MiB (the largest
    /// payload any reader decodes).
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.max_payload = n.min(crate::record::MAX_DECODE_PAYLOAD);
        self
    }

    /// RocksDB block cache size. Defaults to 64 MiB; larger helps random proofs on big logs.
    pub fn cache_bytes(mut self, n: usize) -> Self {
        self.cache_bytes = n;
        self
    }

    /// Ledger id for `create`; defaults to a random UUID v4.
    pub fn ledger_id(mut self, id: impl Into<String>) -> Self {
        self.ledger_id = Some(id.into());
        self
    }

    fn storage_error(&self, e: StoreError) -> OpenError {
        OpenError::Storage { path: self.path.clone(), message: e.0 }
    }

    fn corrupt(&self, detail: impl std::fmt::Display) -> OpenError {
        OpenError::Corrupt { path: self.path.clone(), detail: detail.to_string() }
    }

    /// Creates a new ledger in an empty or missing directory and opens it for writing.
    ///
    /// # Errors
    /// [`OpenError::AlreadyExists`] when the directory is not empty, I/O and storage errors.
    pub fn create(self, oid: Oid) -> Result<Ledger, OpenError> {
        let path = self.path.clone();
        let io = |source| OpenError::Io { path: path.clone(), source };
        if path.exists() {
            let mut it = std::fs::read_dir(&path).map_err(io)?;
            if it.next().is_some() {
                return Err(OpenError::AlreadyExists { path });
            }
        }
        let ledger_id = match &self.ledger_id {
            Some(s) => s.parse::<LedgerId>().map_err(|_| OpenError::BadLedgerId(s.clone()))?,
            None => LedgerId::random(),
        };
        std::fs::create_dir_all(&path).map_err(io)?;
        let key = SecretKey::generate().map_err(io)?;
        key.write_file(&key_path(&path), oid.as_str()).map_err(io)?;
        let store = Store::open(&path.join(DB_DIR), self.cache_bytes, false)
            .map_err(|e| self.storage_error(e))?;
        let identity = Identity { ledger_id, oid, public_key: key.public() };
        let mut batch = Batch::default();
        store.put(&mut batch, Cf::Meta, keys::META_SCHEMA, &keys::SCHEMA_VERSION.to_be_bytes());
        store.put(&mut batch, Cf::Meta, keys::META_IDENTITY, &identity.encode());
        store.put(&mut batch, Cf::Meta, &keys::head_key(OWN_LOG), &HeadRecord::default().encode());
        store.write(batch, true).map_err(|e| self.storage_error(e))?;
        drop(store);
        self.open()
    }

    /// Opens an existing ledger for writing (takes the directory's lock).
    ///
    /// # Errors
    /// Not a ledger, in use by another process, another schema version, a missing, unreadable
    /// or different key file, damaged metadata; entries it acknowledged or signed are missing
    /// ([`OpenError::EntriesLost`]: restore them with `onoal restore`).
    pub fn open(self) -> Result<Ledger, OpenError> {
        self.open_mode(Mode::Write)
    }

    /// Opens a ledger for reading only. Works while another process holds it open for writing;
    /// the view is the state at the time of opening. Needs no key file.
    ///
    /// # Errors
    /// Not a ledger, another schema version, damaged metadata, storage errors, lost entries.
    pub fn open_read_only(self) -> Result<Ledger, OpenError> {
        self.open_mode(Mode::Read)
    }

    /// Opens a ledger whose acknowledged entries were lost, to rebuild them from a peer's
    /// verified replica ([`Ledger::restore_writer`], then [`Ledger::finish_restore`]). No
    /// appends meanwhile: the ledger must not hand out seqs it already handed out.
    ///
    /// # Errors
    /// As [`Self::open`], except that lost entries are what it is for.
    pub fn open_for_restore(self) -> Result<Ledger, OpenError> {
        self.open_mode(Mode::Restore)
    }

    fn open_mode(self, mode: Mode) -> Result<Ledger, OpenError> {
        let (store, identity) = self.open_checked(mode == Mode::Read)?;
        let key = match mode {
            Mode::Read => None,
            Mode::Write | Mode::Restore => {
                let key = SecretKey::read_file(&key_path(&self.path))?;
                if key.public() != identity.public_key {
                    return Err(OpenError::KeyMismatch {
                        path: key_path(&self.path),
                        expected: hex::encode(identity.public_key.as_bytes()),
                        found: hex::encode(key.public().as_bytes()),
                    });
                }
                Some(key)
            }
        };
        let store = Arc::new(store);
        let logs = Arc::new(Logs::load(&store, identity).map_err(|e| self.corrupt(e))?);
        let own = Log::new(store.clone(), logs.own.clone());
        let hw = HighWater::read(&self.path, &logs.own.identity.verifier())?.unwrap_or_default();
        if mode != Mode::Restore {
            self.check_high_water(&own, &hw)?;
        }
        let highwater = (mode != Mode::Read)
            .then(|| Arc::new(HighWaterFile { dir: self.path.clone(), state: Mutex::new(hw) }));
        if mode == Mode::Write {
            crate::replica::mark_interrupted(&store, &logs).map_err(|e| self.corrupt(e))?;
        }
        let (tx, threads) = match (mode, key, &highwater) {
            (Mode::Write, Some(key), Some(hw)) => {
                let (tx, threads) = self.start_pipeline(&store, &logs, &key, hw)?;
                (Some(tx), threads)
            }
            _ => (None, Vec::new()),
        };
        Ok(Ledger {
            path: self.path,
            store,
            logs,
            own,
            max_payload: self.max_payload,
            mode,
            highwater,
            tx,
            threads: Mutex::new(threads),
        })
    }

    /// The log must hold everything this ledger acknowledged (at its last clean close) and
    /// signed, with the signed root: a log only grows.
    fn check_high_water(&self, own: &Log, hw: &HighWater) -> Result<(), OpenError> {
        let held = own.durable_size();
        if held < hw.floor() {
            return Err(OpenError::EntriesLost {
                path: self.path.clone(),
                held,
                acknowledged: hw.head,
                signed: hw.signed_size(),
            });
        }
        if let Some(cp) = &hw.signed {
            let found = own.root_at(cp.size).map_err(|e| self.corrupt(e))?;
            if found != cp.root {
                return Err(OpenError::Diverged {
                    path: self.path.clone(),
                    size: cp.size,
                    expected: cp.root,
                    found,
                });
            }
        }
        Ok(())
    }

    /// Starts the sequencer and writer threads.
    fn start_pipeline(
        &self,
        store: &Arc<Store>,
        logs: &Arc<Logs>,
        key: &SecretKey,
        highwater: &Arc<HighWaterFile>,
    ) -> Result<(crossbeam_channel::Sender<Command>, Vec<std::thread::JoinHandle<()>>), OpenError>
    {
        let state = WriterHead::load(store, &logs.own).map_err(|e| self.corrupt(e))?;
        let signer = NoteSigner::new(logs.own.identity.oid.as_str(), key.signing_key().clone())
            .map_err(|e| self.corrupt(e))?;
        let io = |source| OpenError::Io { path: self.path.clone(), source };
        let (tx, rx) = crossbeam_channel::bounded::<Command>(4096);
        // A rendezvous: the sequencer prepares one group while the writer writes the previous
        // one, then waits; commands arriving meanwhile form the next group, so groups grow with
        // the load instead of splitting it.
        let (group_tx, group_rx) = crossbeam_channel::bounded::<Group>(0);
        let failed_epoch = Arc::new(AtomicU64::new(u64::MAX));
        let writer = {
            let (store, log, failed) = (store.clone(), logs.own.clone(), failed_epoch.clone());
            let (durability, hw) = (self.durability, highwater.clone());
            std::thread::Builder::new()
                .name("onoal-writer".into())
                .spawn(move || {
                    super::writer::run(&store, &log, durability, &group_rx, &failed, &hw)
                })
                .map_err(io)?
        };
        let sequencer = Sequencer {
            store: store.clone(),
            log: logs.own.clone(),
            state,
            signer,
            interval: self.checkpoint_interval,
            epoch: 0,
            failed_epoch,
            group_tx,
            leaf_buf: Vec::new(),
        };
        let sequencer = std::thread::Builder::new()
            .name("onoal-sequencer".into())
            .spawn(move || sequencer.run(&rx))
            .map_err(io)?;
        Ok((tx, vec![sequencer, writer]))
    }

    fn open_checked(&self, read_only: bool) -> Result<(Store, Identity), OpenError> {
        let path = &self.path;
        let db_path = path.join(DB_DIR);
        if !db_path.join("CURRENT").is_file() {
            return Err(OpenError::NotALedger { path: path.clone() });
        }
        // A read-only open next to a running writer can read a MANIFEST that names a file the
        // writer's compaction deletes a moment later; a fresh attempt reads the newer MANIFEST.
        let mut attempt = 0;
        let opened = loop {
            match Store::open(&db_path, self.cache_bytes, read_only) {
                Err(e) if read_only && attempt < 20 && e.is_missing_file() => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(5 * attempt));
                }
                other => break other,
            }
        };
        let store = opened.map_err(|e| {
            if e.is_lock() {
                OpenError::InUse { path: path.clone() }
            } else if e.is_corruption() {
                OpenError::StorageDamaged {
                    path: path.clone(),
                    detail: e.0,
                    acknowledged: HighWater::unverified_floor(path),
                }
            } else {
                self.storage_error(e)
            }
        })?;
        let version = store
            .get(Cf::Meta, keys::META_SCHEMA)
            .map_err(|e| self.storage_error(e))?
            .ok_or_else(|| OpenError::NotALedger { path: path.clone() })?;
        let version = <[u8; 4]>::try_from(version.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| self.corrupt("schema version record is not 4 bytes"))?;
        if version != keys::SCHEMA_VERSION {
            return Err(OpenError::SchemaVersion {
                path: path.clone(),
                found: version,
                supported: keys::SCHEMA_VERSION,
            });
        }
        let identity = store
            .get(Cf::Meta, keys::META_IDENTITY)
            .map_err(|e| self.storage_error(e))?
            .and_then(|b| Identity::decode(&b))
            .ok_or_else(|| self.corrupt("identity record missing or malformed"))?;
        Ok((store, identity))
    }
}
