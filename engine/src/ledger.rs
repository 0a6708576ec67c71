//! The ledger: open/create, the group-commit sequencer, reads, proofs and checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use ed25519_dalek::VerifyingKey;
use parking_lot::{Mutex, RwLock};
use rocksdb::{DB, Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use crate::sequencer::{self, Command, SequencerState};

use crate::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
use crate::error::{AppendError, OpenError, ReadError};
use crate::hash::{Hash, empty_root, leaf_hash};
use crate::identity::{SecretKey, key_path};
use crate::merkle::{self, NodeId};
use crate::record::{Entry, NewEntry, Oid, PreparedEntry};
use crate::store::{
    self, CF_CHECKPOINTS, CF_ENTRIES, CF_INDEX, CF_META, CF_TILES, HeadRecord, IndexKind, OWN_LOG,
};
use crate::tile::{self, TileId};

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

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sync" => Ok(Self::Sync),
            "buffered" => Ok(Self::Buffered),
            _ => Err(format!("durability {s:?} is not one of: sync, buffered")),
        }
    }
}

/// The ledger's public identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Ledger id (UUID).
    pub ledger_id: uuid::Uuid,
    /// Ledger OID; also the checkpoint origin and note key name.
    pub oid: Oid,
    /// Ed25519 public key.
    pub public_key: VerifyingKey,
}

impl Identity {
    /// The C2SP verifier key of this ledger's checkpoints.
    pub fn verifier(&self) -> NoteVerifier {
        // The OID alphabet has no '+' or white space, so it is always a valid key name.
        NoteVerifier::new(self.oid.as_str(), self.public_key)
            .unwrap_or_else(|_| unreachable!("OIDs are valid note key names"))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend_from_slice(self.ledger_id.as_bytes());
        out.extend_from_slice(self.public_key.as_bytes());
        out.extend_from_slice(self.oid.as_str().as_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 1 + 16 + 32 + 5 || bytes[0] != 1 {
            return None;
        }
        let ledger_id = uuid::Uuid::from_slice(&bytes[1..17]).ok()?;
        let public_key = VerifyingKey::from_bytes(bytes[17..49].try_into().ok()?).ok()?;
        let oid = Oid::parse(std::str::from_utf8(&bytes[49..]).ok()?).ok()?;
        Some(Self { ledger_id, oid, public_key })
    }
}

/// What `append` returns once the entry is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's position.
    pub seq: u64,
    /// Its leaf hash (also its chain link).
    pub leaf_hash: Hash,
}

/// A checkpoint with the exact signed note it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// Parsed body.
    pub checkpoint: Checkpoint,
    /// The note text as stored.
    pub note: String,
}

impl std::ops::Deref for SignedCheckpoint {
    type Target = Checkpoint;
    fn deref(&self) -> &Checkpoint {
        &self.checkpoint
    }
}

/// An entry read back, with its exact leaf bytes and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// The decoded entry.
    pub entry: Entry,
    /// The bytes hashed as the RFC 9162 leaf.
    pub leaf_data: Vec<u8>,
    /// `SHA-256(0x00 || leaf_data)`.
    pub leaf_hash: Hash,
}

/// Filters of a query. All given filters must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Stream name.
    pub stream: Option<String>,
    /// Entry type.
    pub entry_type: Option<String>,
    /// Subject OID.
    pub subject: Option<String>,
    /// Issuer OID.
    pub issuer: Option<String>,
    /// Earliest timestamp (inclusive, ms).
    pub since_ms: Option<u64>,
    /// Latest timestamp (inclusive, ms).
    pub until_ms: Option<u64>,
    /// Resume after a previous page (its `next_cursor`).
    pub cursor: Option<String>,
    /// Page size; defaults to 100, at most 10,000.
    pub limit: Option<usize>,
}

/// One page of query results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPage {
    /// Matching entries in seq order.
    pub entries: Vec<StoredEntry>,
    /// Pass as `cursor` to get the next page; `None` when there are no more matches.
    pub next_cursor: Option<String>,
}

/// Tree size, root and latest checkpoint size, read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Entries in the log.
    pub size: u64,
    /// Root of the tree of `size` leaves.
    pub root: Hash,
    /// Timestamp of the last entry.
    pub last_timestamp_ms: u64,
}

/// Builder for [`Ledger`].
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

    /// Largest payload `append` accepts. Defaults to 1 MiB; capped at 64 MiB.
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
            Some(s) => uuid::Uuid::parse_str(s).map_err(|_| OpenError::BadLedgerId(s.clone()))?,
            None => uuid::Uuid::new_v4(),
        };
        std::fs::create_dir_all(&path).map_err(io)?;
        let key = SecretKey::generate().map_err(io)?;
        key.write_file(&key_path(&path), oid.as_str()).map_err(io)?;
        let db = store::open_db(&path.join(DB_DIR), self.cache_bytes, false)
            .map_err(|e| OpenError::Storage { path: path.clone(), message: e.into_string() })?;
        let identity = Identity { ledger_id, oid, public_key: key.public() };
        let cf =
            db.cf_handle(CF_META).ok_or_else(|| corrupt(&path, "meta column family missing"))?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf, store::META_SCHEMA, store::SCHEMA_VERSION.to_be_bytes());
        batch.put_cf(cf, store::META_IDENTITY, identity.encode());
        batch.put_cf(cf, store::head_key(OWN_LOG), HeadRecord::default().encode());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)
            .map_err(|e| OpenError::Storage { path: path.clone(), message: e.into_string() })?;
        drop(db);
        self.open()
    }

    /// Opens an existing ledger for writing (takes the directory's lock).
    ///
    /// # Errors
    /// Not a ledger, in use by another process, another schema version, a missing, unreadable
    /// or different key file, damaged metadata.
    pub fn open(self) -> Result<Ledger, OpenError> {
        let (db, identity) = open_checked(&self.path, self.cache_bytes, false)?;
        let key = SecretKey::read_file(&key_path(&self.path))?;
        if key.public() != identity.public_key {
            return Err(OpenError::KeyMismatch {
                path: key_path(&self.path),
                expected: hex::encode(identity.public_key.as_bytes()),
                found: hex::encode(key.public().as_bytes()),
            });
        }
        let shared = Shared::new(db, identity, &self.path, self.max_payload)?;
        let state = SequencerState::load(&shared, &shared.own)
            .map_err(|detail| corrupt(&self.path, &detail))?;
        let signer = NoteSigner::new(shared.own.identity.oid.as_str(), key.signing_key().clone())
            .map_err(|e| corrupt(&self.path, &e.to_string()))?;
        let (tx, threads) = sequencer::spawn(
            shared.clone(),
            state,
            signer,
            self.durability,
            self.checkpoint_interval,
        )
        .map_err(|source| OpenError::Io { path: self.path.clone(), source })?;
        Ok(Ledger {
            own: Log { state: shared.own.clone(), shared },
            tx: Some(tx),
            threads: Mutex::new(threads),
        })
    }

    /// Opens a ledger for reading only. Works while another process holds it open for writing;
    /// the view is the state at the time of opening. Needs no key file.
    ///
    /// # Errors
    /// Not a ledger, another schema version, damaged metadata, storage errors.
    pub fn open_read_only(self) -> Result<Ledger, OpenError> {
        let (db, identity) = open_checked(&self.path, self.cache_bytes, true)?;
        let shared = Shared::new(db, identity, &self.path, self.max_payload)?;
        Ok(Ledger {
            own: Log { state: shared.own.clone(), shared },
            tx: None,
            threads: Mutex::new(Vec::new()),
        })
    }
}

fn corrupt(path: &Path, detail: &str) -> OpenError {
    OpenError::Corrupt { path: path.to_owned(), detail: detail.to_owned() }
}

fn open_checked(path: &Path, cache: usize, read_only: bool) -> Result<(DB, Identity), OpenError> {
    let db_path = path.join(DB_DIR);
    if !db_path.join("CURRENT").is_file() {
        return Err(OpenError::NotALedger { path: path.to_owned() });
    }
    // A read-only open next to a running writer can read a MANIFEST that names a file the
    // writer's compaction deletes a moment later; a fresh attempt reads the newer MANIFEST.
    let mut attempt = 0;
    let opened = loop {
        match store::open_db(&db_path, cache, read_only) {
            Err(e)
                if read_only
                    && attempt < 20
                    && e.as_ref().contains("No such file or directory") =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(5 * attempt));
            }
            other => break other,
        }
    };
    let db = opened.map_err(|e| {
        if store::is_lock_error(&e) {
            OpenError::InUse { path: path.to_owned() }
        } else {
            OpenError::Storage { path: path.to_owned(), message: e.into_string() }
        }
    })?;
    let cf = db.cf_handle(CF_META).ok_or_else(|| corrupt(path, "meta column family missing"))?;
    let storage =
        |e: rocksdb::Error| OpenError::Storage { path: path.to_owned(), message: e.into_string() };
    let version = db
        .get_cf(cf, store::META_SCHEMA)
        .map_err(storage)?
        .ok_or_else(|| OpenError::NotALedger { path: path.to_owned() })?;
    let version = <[u8; 4]>::try_from(version.as_slice())
        .map(u32::from_be_bytes)
        .map_err(|_| corrupt(path, "schema version record is not 4 bytes"))?;
    if version != store::SCHEMA_VERSION {
        return Err(OpenError::SchemaVersion {
            path: path.to_owned(),
            found: version,
            supported: store::SCHEMA_VERSION,
        });
    }
    let identity = db
        .get_cf(cf, store::META_IDENTITY)
        .map_err(storage)?
        .and_then(|b| Identity::decode(&b))
        .ok_or_else(|| corrupt(path, "identity record missing or malformed"))?;
    Ok((db, identity))
}

pub(crate) struct Shared {
    pub(crate) db: DB,
    pub(crate) path: PathBuf,
    max_payload: usize,
    /// The own log (number 0).
    pub(crate) own: Arc<LogState>,
    /// Verified replicas of remote ledgers, by ledger id.
    pub(crate) replicas: RwLock<HashMap<uuid::Uuid, Arc<LogState>>>,
    /// Sparse replicas (filtered syncs), by ledger id.
    pub(crate) sparse_replicas: RwLock<HashMap<uuid::Uuid, Arc<LogState>>>,
    /// Group writes (counted from 0 at open) that fail as if the device returned an error.
    #[cfg(feature = "__internal-fault-injection")]
    pub(crate) injected_failures: Mutex<(u64, Vec<u64>)>,
}

/// What the ledger keeps in memory about one log (its own, or a replica).
pub(crate) struct LogState {
    /// Local log number: the first 4 bytes of every key of this log.
    pub(crate) number: u32,
    /// Whose log it is (for a replica: the pinned identity of the remote ledger).
    pub(crate) identity: Identity,
    /// Size of the tree whose entries and tiles are durable; proofs up to it need no snapshot,
    /// because a tile only ever grows and hashes of complete subtrees never change.
    pub(crate) durable_size: AtomicU64,
    /// Full tiles of tile level >= 1 (immutable once full; a few MB for 10^8 entries).
    upper_tiles: RwLock<HashMap<TileId, Arc<[u8]>>>,
    /// Hashes of incomplete ranges `[start, end)` at right edges (immutable once in the tree).
    border_hashes: RwLock<HashMap<(u64, u64), Hash>>,
    /// Set while a [`crate::replica::ReplicaWriter`] holds this log.
    pub(crate) writer_active: std::sync::atomic::AtomicBool,
    /// A sparse replica: entries matched by filtered syncs, each with its inclusion proof, and
    /// no tree (see `crate::replica`).
    pub(crate) sparse: bool,
}

impl LogState {
    pub(crate) fn new(number: u32, identity: Identity) -> Self {
        Self {
            number,
            identity,
            durable_size: AtomicU64::new(0),
            upper_tiles: RwLock::new(HashMap::new()),
            border_hashes: RwLock::new(HashMap::new()),
            writer_active: std::sync::atomic::AtomicBool::new(false),
            sparse: false,
        }
    }
}

/// Most remembered right-edge range hashes before the memory is cleared.
const MAX_BORDER_HASHES: usize = 1 << 16;

enum TileBytes<'a> {
    Pinned(rocksdb::DBPinnableSlice<'a>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for TileBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Pinned(p) => p,
            Self::Shared(a) => a,
        }
    }
}

/// Tree hashes for proof code: pinned tiles (no copy), cached upper tiles, remembered borders.
struct ProofSource<'a> {
    shared: &'a Shared,
    log: &'a LogState,
    recent: Vec<(TileId, TileBytes<'a>)>,
}

impl merkle::NodeSource for ProofSource<'_> {
    type Error = ReadError;

    fn node(&mut self, node: NodeId) -> Result<Hash, ReadError> {
        let (tid, row, pos) = tile::locate(node);
        let idx = match self.recent.iter().position(|(t, _)| *t == tid) {
            Some(i) => i,
            None => {
                let cached = (tid.level > 0)
                    .then(|| self.log.upper_tiles.read().get(&tid).cloned())
                    .flatten();
                let bytes = match cached {
                    Some(b) => TileBytes::Shared(b),
                    None => {
                        let v = self
                            .shared
                            .db
                            .get_pinned_cf(
                                self.shared.cf(CF_TILES),
                                store::tile_key(self.log.number, tid),
                            )?
                            .ok_or_else(|| {
                                ReadError::Corrupt(format!(
                                    "tile {}/{} is missing",
                                    tid.level, tid.index
                                ))
                            })?;
                        if tid.level > 0 && v.len() == tile::encoded_len(tile::TILE_WIDTH) {
                            let b: Arc<[u8]> = Arc::from(&v[..]);
                            self.log.upper_tiles.write().insert(tid, b.clone());
                            TileBytes::Shared(b)
                        } else {
                            TileBytes::Pinned(v)
                        }
                    }
                };
                self.recent.push((tid, bytes));
                self.recent.len() - 1
            }
        };
        tile::read_node(&self.recent[idx].1, row, pos).ok_or_else(|| {
            ReadError::Corrupt(format!(
                "tile {}/{} lacks node at row {row} position {pos}",
                tid.level, tid.index
            ))
        })
    }

    fn remembered(&mut self, start: u64, end: u64) -> Option<Hash> {
        self.log.border_hashes.read().get(&(start, end)).copied()
    }

    fn remember(&mut self, start: u64, end: u64, hash: Hash) {
        let mut memo = self.log.border_hashes.write();
        if memo.len() >= MAX_BORDER_HASHES {
            memo.clear();
        }
        memo.insert((start, end), hash);
    }
}

impl Shared {
    fn new(
        db: DB,
        identity: Identity,
        path: &Path,
        max_payload: usize,
    ) -> Result<Arc<Self>, OpenError> {
        let shared = Arc::new(Self {
            db,
            path: path.to_owned(),
            max_payload,
            own: Arc::new(LogState::new(OWN_LOG, identity)),
            replicas: RwLock::new(HashMap::new()),
            sparse_replicas: RwLock::new(HashMap::new()),
            #[cfg(feature = "__internal-fault-injection")]
            injected_failures: Mutex::new((0, Vec::new())),
        });
        let head_size =
            View::new(&shared, &shared.own).map_err(|e| corrupt(path, &e.to_string()))?.head.size;
        shared.own.durable_size.store(head_size, Ordering::Release);
        let replicas =
            crate::replica::load_directory(&shared, false).map_err(|e| corrupt(path, &e))?;
        *shared.replicas.write() = replicas;
        let sparse =
            crate::replica::load_directory(&shared, true).map_err(|e| corrupt(path, &e))?;
        *shared.sparse_replicas.write() = sparse;
        Ok(shared)
    }

    pub(crate) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // All column families are opened (or created) in store::open_db.
        self.db.cf_handle(name).unwrap_or_else(|| unreachable!("column family {name} is opened"))
    }
}

/// Read access to one log of the database: the ledger's own log or a verified replica of a
/// remote ledger. Both answer the same reads with the same code.
#[derive(Clone)]
pub struct Log {
    pub(crate) shared: Arc<Shared>,
    pub(crate) state: Arc<LogState>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("ledger_id", &self.state.identity.ledger_id)
            .field("number", &self.state.number)
            .finish()
    }
}

impl Log {
    /// Whose log this is.
    pub fn identity(&self) -> &Identity {
        &self.state.identity
    }

    /// True for a replica of a remote ledger.
    pub fn is_replica(&self) -> bool {
        self.state.number != OWN_LOG
    }

    /// True for a sparse replica (a filtered sync): some entries with their inclusion proofs,
    /// no tree.
    pub fn is_sparse(&self) -> bool {
        self.state.sparse
    }

    /// Entries whose tree is durable: proofs, roots and checkpoints up to this size can be
    /// served. It can trail [`Self::head`] for a moment while a group is being acknowledged.
    pub fn durable_size(&self) -> u64 {
        self.state.durable_size.load(Ordering::Acquire)
    }

    /// A node source for proofs of trees up to the durable size, without a snapshot.
    fn proof_source(&self) -> ProofSource<'_> {
        ProofSource { shared: &self.shared, log: &self.state, recent: Vec::new() }
    }

    fn check_proof_size(&self, size: u64) -> Result<(), ReadError> {
        let durable = self.state.durable_size.load(Ordering::Acquire);
        if size > durable {
            return Err(ReadError::OutOfRange { what: "tree size", value: size, size: durable });
        }
        Ok(())
    }

    /// A consistent read view (RocksDB snapshot).
    pub(crate) fn view(&self) -> Result<View<'_>, ReadError> {
        View::new(&self.shared, &self.state)
    }

    /// Size, root and last timestamp.
    ///
    /// # Errors
    /// Storage errors or damaged data.
    pub fn head(&self) -> Result<Head, ReadError> {
        if self.state.sparse {
            // The tree a sparse replica knows is its newest checkpoint's.
            return Ok(match self.latest_checkpoint()? {
                Some(cp) => Head { size: cp.size, root: cp.root, last_timestamp_ms: 0 },
                None => Head { size: 0, root: empty_root(), last_timestamp_ms: 0 },
            });
        }
        let v = self.view()?;
        Ok(Head {
            size: v.head.size,
            root: v.root(v.head.size)?,
            last_timestamp_ms: v.head.last_timestamp_ms,
        })
    }

    /// The entry at `seq`.
    ///
    /// # Errors
    /// [`ReadError::OutOfRange`] beyond the log; storage errors or damaged data.
    pub fn entry(&self, seq: u64) -> Result<StoredEntry, ReadError> {
        let v = self.view()?;
        if self.state.sparse {
            return v.sparse_entry(seq)?.ok_or(ReadError::NotHeld { seq });
        }
        if seq >= v.head.size {
            return Err(ReadError::OutOfRange { what: "seq", value: seq, size: v.head.size });
        }
        v.entry(seq)
    }

    /// Entries `[start, end)` (clamped to the log).
    ///
    /// # Errors
    /// Storage errors or damaged data.
    pub fn range(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ReadError> {
        let v = self.view()?;
        if self.state.sparse {
            return v.sparse_scan(start, end);
        }
        v.range(start, end.min(v.head.size))
    }

    /// Leaf data of entries `[start, end)` (clamped to the log), as stored: what sync sends.
    ///
    /// # Errors
    /// Storage errors or a missing entry.
    pub fn leaf_data_range(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        let v = self.view()?;
        let end = end.min(v.head.size);
        let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
        if start >= end {
            return Ok(out);
        }
        let mut ro = v.read_opts();
        ro.set_iterate_upper_bound(store::entry_key(self.state.number, end).to_vec());
        let from = store::entry_key(self.state.number, start);
        let it = self.shared.db.iterator_cf_opt(
            self.shared.cf(CF_ENTRIES),
            ro,
            IteratorMode::From(&from, Direction::Forward),
        );
        for (expected, item) in (start..end).zip(it) {
            let (k, val) = item?;
            if store::entry_key_seq(self.state.number, &k) != Some(expected) {
                return Err(ReadError::Corrupt(format!("entry {expected} is missing")));
            }
            out.push(val.into_vec());
        }
        if out.len() as u64 != end - start {
            return Err(ReadError::Corrupt(format!(
                "entry {} is missing",
                start + out.len() as u64
            )));
        }
        Ok(out)
    }

    /// Calls `f` with the leaf data of each entry `[start, end)` (clamped to the log), in order,
    /// straight from RocksDB's buffers: what a sync source frames without copying.
    ///
    /// # Errors
    /// Storage errors or a missing entry.
    pub fn visit_leaf_data(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(&[u8]),
    ) -> Result<u64, ReadError> {
        let v = self.view()?;
        let end = end.min(v.head.size);
        if start >= end {
            return Ok(0);
        }
        let mut ro = v.read_opts();
        ro.set_iterate_upper_bound(store::entry_key(self.state.number, end).to_vec());
        let mut it = self.shared.db.raw_iterator_cf_opt(self.shared.cf(CF_ENTRIES), ro);
        it.seek(store::entry_key(self.state.number, start));
        let mut expected = start;
        while let (Some(k), Some(val)) = (it.key(), it.value()) {
            if store::entry_key_seq(self.state.number, k) != Some(expected) {
                return Err(ReadError::Corrupt(format!("entry {expected} is missing")));
            }
            f(val);
            expected += 1;
            it.next();
        }
        it.status()?;
        if expected != end {
            return Err(ReadError::Corrupt(format!("entry {expected} is missing")));
        }
        Ok(end - start)
    }

    /// Entries matching `query`, one page at a time.
    ///
    /// # Errors
    /// Bad cursor, storage errors or damaged data.
    pub fn query(&self, query: &Query) -> Result<QueryPage, ReadError> {
        let v = self.view()?;
        if self.state.sparse {
            return v.sparse_query(query);
        }
        v.query(query)
    }

    /// Root of the tree of `size` leaves.
    ///
    /// # Errors
    /// Size beyond the log; storage errors or damaged data.
    pub fn root_at(&self, size: u64) -> Result<Hash, ReadError> {
        if self.state.sparse {
            return self.checkpoint_at(size)?.map(|c| c.root).ok_or(ReadError::NoCheckpoint(size));
        }
        self.check_proof_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        merkle::root(size, &mut self.proof_source())
    }

    /// RFC 9162 inclusion proof of `seq` in the tree of `size`.
    ///
    /// # Errors
    /// Size beyond the log or seq not below size; storage errors or damaged data.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        if self.state.sparse {
            return match crate::replica::stored_proof(self, seq)? {
                Some((s, proof)) if s == size => Ok(proof),
                Some((s, _)) => Err(ReadError::SparseProofSize { seq, size: s }),
                None => Err(ReadError::NotHeld { seq }),
            };
        }
        self.check_proof_size(size)?;
        Ok(merkle::inclusion_proof(seq, size, &mut self.proof_source())??)
    }

    /// RFC 9162 consistency proof between `old` and `new` (0 < old <= new <= size).
    ///
    /// # Errors
    /// Sizes out of order or beyond the log; storage errors or damaged data.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ReadError> {
        if self.state.sparse {
            return Err(ReadError::Sparse(
                "consistency proofs need the tree; sync in full or incremental mode",
            ));
        }
        self.check_proof_size(new)?;
        Ok(merkle::consistency_proof(old, new, &mut self.proof_source())??)
    }

    /// The stored checkpoint of exactly `size`.
    ///
    /// # Errors
    /// Storage errors or a damaged note.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, ReadError> {
        let cf = self.shared.cf(CF_CHECKPOINTS);
        match self.shared.db.get_cf(cf, store::checkpoint_key(self.state.number, size))? {
            None => Ok(None),
            Some(bytes) => self.parse_note(&bytes).map(Some),
        }
    }

    /// The stored checkpoint with the largest size.
    ///
    /// # Errors
    /// Storage errors or a damaged note.
    pub fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, ReadError> {
        self.latest_checkpoint_at_most(u64::MAX)
    }

    /// The stored checkpoint with the largest size not above `size`. A replica serves the
    /// newest checkpoint its entries cover: `latest_checkpoint_at_most(head.size)`.
    ///
    /// # Errors
    /// Storage errors or a damaged note.
    pub fn latest_checkpoint_at_most(
        &self,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>, ReadError> {
        let cf = self.shared.cf(CF_CHECKPOINTS);
        let upper = store::checkpoint_key(self.state.number, size);
        let mut it = self.shared.db.iterator_cf(cf, IteratorMode::From(&upper, Direction::Reverse));
        match it.next() {
            Some(Ok((k, v))) if k.starts_with(&self.state.number.to_be_bytes()) => {
                self.parse_note(&v).map(Some)
            }
            Some(Err(e)) => Err(e.into()),
            _ => Ok(None),
        }
    }

    /// Sizes of all stored checkpoints, ascending.
    ///
    /// # Errors
    /// Storage errors.
    pub fn checkpoint_sizes(&self) -> Result<Vec<u64>, ReadError> {
        let cf = self.shared.cf(CF_CHECKPOINTS);
        let start = store::checkpoint_key(self.state.number, 0);
        let mut out = Vec::new();
        for item in self.shared.db.iterator_cf(cf, IteratorMode::From(&start, Direction::Forward)) {
            let (k, _) = item?;
            match store::entry_key_seq(self.state.number, &k) {
                Some(size) => out.push(size),
                None => break,
            }
        }
        Ok(out)
    }

    fn parse_note(&self, bytes: &[u8]) -> Result<SignedCheckpoint, ReadError> {
        let checkpoint = self
            .state
            .identity
            .verifier()
            .open(bytes)
            .map_err(|e| ReadError::Corrupt(format!("stored checkpoint: {e}")))?;
        let note = String::from_utf8(bytes.to_vec())
            .map_err(|_| ReadError::Corrupt("stored checkpoint is not UTF-8".into()))?;
        Ok(SignedCheckpoint { checkpoint, note })
    }
}

/// An open ledger. `append` may be called from any number of threads at once.
pub struct Ledger {
    own: Log,
    tx: Option<Sender<Command>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.own.shared.path)
            .field("ledger_id", &self.own.state.identity.ledger_id)
            .field("read_only", &self.tx.is_none())
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
    }
}

impl Ledger {
    /// Starts configuring a ledger at `path` (the data directory).
    pub fn builder(path: impl AsRef<Path>) -> LedgerBuilder {
        LedgerBuilder {
            path: path.as_ref().to_owned(),
            durability: Durability::Sync,
            checkpoint_interval: Duration::from_secs(1),
            max_payload: 1 << 20,
            cache_bytes: 64 << 20,
            ledger_id: None,
        }
    }

    /// The ledger's identity.
    pub fn identity(&self) -> &Identity {
        &self.own.state.identity
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.own.shared.path
    }

    /// Test hook: the next group writes numbered in `writes` (0 = the next write) fail with an
    /// injected I/O error instead of reaching RocksDB.
    #[cfg(feature = "__internal-fault-injection")]
    pub fn dangerous_fail_group_writes(&self, writes: &[u64]) {
        let mut f = self.own.shared.injected_failures.lock();
        let base = f.0;
        f.1 = writes.iter().map(|w| base + w).collect();
    }

    /// Largest payload `append` accepts.
    pub fn max_payload_bytes(&self) -> usize {
        self.own.shared.max_payload
    }

    /// True when opened with [`LedgerBuilder::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.tx.is_none()
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
        let max_payload = self.own.shared.max_payload;
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
}

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

/// A consistent snapshot of one log.
pub(crate) struct View<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) log: &'a LogState,
    pub(crate) snapshot: rocksdb::Snapshot<'a>,
    pub(crate) head: HeadRecord,
}

impl<'a> View<'a> {
    pub(crate) fn new(shared: &'a Shared, log: &'a LogState) -> Result<Self, ReadError> {
        let snapshot = shared.db.snapshot();
        let head = snapshot
            .get_cf(shared.cf(CF_META), store::head_key(log.number))?
            .and_then(|b| HeadRecord::decode(&b))
            .ok_or_else(|| ReadError::Corrupt("head record missing or malformed".into()))?;
        Ok(Self { shared, log, snapshot, head })
    }

    pub(crate) fn read_opts(&self) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snapshot);
        ro
    }

    pub(crate) fn tile_bytes(&self, id: TileId) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.snapshot.get_cf(self.shared.cf(CF_TILES), store::tile_key(self.log.number, id))?)
    }

    pub(crate) fn root(&self, size: u64) -> Result<Hash, ReadError> {
        if size == 0 {
            return Ok(empty_root());
        }
        // Hashes of complete subtrees never change and tiles only grow, so the current tiles
        // serve any size this snapshot holds.
        merkle::root(
            size,
            &mut ProofSource { shared: self.shared, log: self.log, recent: Vec::new() },
        )
    }

    pub(crate) fn entry(&self, seq: u64) -> Result<StoredEntry, ReadError> {
        let leaf_data = self
            .snapshot
            .get_cf(self.shared.cf(CF_ENTRIES), store::entry_key(self.log.number, seq))?
            .ok_or_else(|| ReadError::Corrupt(format!("entry {seq} is missing")))?;
        let entry = Entry::decode(&leaf_data)
            .map_err(|e| ReadError::Corrupt(format!("entry {seq}: {e}")))?;
        if entry.seq != seq {
            return Err(ReadError::Corrupt(format!(
                "entry stored at {seq} claims seq {}",
                entry.seq
            )));
        }
        let leaf_hash = leaf_hash(&leaf_data);
        Ok(StoredEntry { entry, leaf_data, leaf_hash })
    }

    pub(crate) fn range(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ReadError> {
        (start..end).map(|s| self.entry(s)).collect()
    }

    /// A sparse replica's entry, if held.
    pub(crate) fn sparse_entry(&self, seq: u64) -> Result<Option<StoredEntry>, ReadError> {
        match self
            .snapshot
            .get_cf(self.shared.cf(CF_ENTRIES), store::entry_key(self.log.number, seq))?
        {
            None => Ok(None),
            Some(_) => self.entry(seq).map(Some),
        }
    }

    /// The entries a sparse replica holds in `[start, end)`, in seq order.
    pub(crate) fn sparse_scan(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ReadError> {
        let mut out = Vec::new();
        if start >= end {
            return Ok(out);
        }
        let mut ro = self.read_opts();
        ro.set_iterate_upper_bound(store::entry_key(self.log.number, end).to_vec());
        let from = store::entry_key(self.log.number, start);
        let it = self.shared.db.iterator_cf_opt(
            self.shared.cf(CF_ENTRIES),
            ro,
            IteratorMode::From(&from, Direction::Forward),
        );
        for item in it {
            let (k, _) = item?;
            let Some(seq) = store::entry_key_seq(self.log.number, &k) else { break };
            out.push(self.entry(seq)?);
        }
        Ok(out)
    }

    /// Query over the entries a sparse replica holds (a scan: sparse replicas are small).
    fn sparse_query(&self, q: &Query) -> Result<QueryPage, ReadError> {
        const MAX_LIMIT: usize = 10_000;
        let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
        let lo = match &q.cursor {
            None => 0,
            Some(c) => c.parse::<u64>().map_err(|_| ReadError::BadCursor(c.clone()))?,
        };
        let mut entries = Vec::new();
        let mut next_cursor = None;
        for e in self.sparse_scan(lo, u64::MAX)? {
            if !query_matches(q, &e.entry) {
                continue;
            }
            if entries.len() == limit {
                next_cursor = Some(e.entry.seq.to_string());
                break;
            }
            entries.push(e);
        }
        Ok(QueryPage { entries, next_cursor })
    }

    fn timestamp(&self, seq: u64) -> Result<u64, ReadError> {
        Ok(self.entry(seq)?.entry.timestamp_ms)
    }

    /// First seq in `[lo, hi)` whose timestamp is >= `ts` (timestamps never decrease with seq).
    fn first_seq_at_or_after(&self, ts: u64, mut lo: u64, mut hi: u64) -> Result<u64, ReadError> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.timestamp(mid)? < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    fn query(&self, q: &Query) -> Result<QueryPage, ReadError> {
        const MAX_LIMIT: usize = 10_000;
        let limit = q.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
        let size = self.head.size;
        let mut lo = match &q.cursor {
            None => 0,
            Some(c) => c.parse::<u64>().map_err(|_| ReadError::BadCursor(c.clone()))?,
        };
        let mut hi = size;
        if let Some(since) = q.since_ms {
            lo = lo.max(self.first_seq_at_or_after(since, 0, size)?);
        }
        if let Some(until) = q.until_ms {
            hi = match until.checked_add(1) {
                Some(t) => self.first_seq_at_or_after(t, 0, size)?,
                None => size,
            };
        }
        // The time window is also the seq range [lo, hi); checking it again per entry is cheap.
        let matches = |e: &Entry| query_matches(q, e);
        let mut entries = Vec::new();
        let mut next_cursor = None;
        // Use the most selective index given; other filters are checked on each entry.
        let index = [
            (IndexKind::Subject, &q.subject),
            (IndexKind::Issuer, &q.issuer),
            (IndexKind::Stream, &q.stream),
            (IndexKind::EntryType, &q.entry_type),
        ]
        .into_iter()
        .find_map(|(k, v)| v.as_ref().map(|v| (k, v)));
        let mut consider = |seq: u64, entries: &mut Vec<StoredEntry>| -> Result<bool, ReadError> {
            let e = self.entry(seq)?;
            if matches(&e.entry) {
                if entries.len() == limit {
                    next_cursor = Some(seq.to_string());
                    return Ok(false);
                }
                entries.push(e);
            }
            Ok(true)
        };
        if lo < hi {
            match index {
                None => {
                    for seq in lo..hi {
                        if !consider(seq, &mut entries)? {
                            break;
                        }
                    }
                }
                Some((kind, value)) => {
                    let prefix = store::index_prefix(self.log.number, kind, value);
                    let mut start = prefix.clone();
                    start.extend_from_slice(&lo.to_be_bytes());
                    let cf = self.shared.cf(CF_INDEX);
                    // The posting list holding `lo` starts at or before it: step back one key.
                    let mut back = self.shared.db.iterator_cf_opt(
                        cf,
                        self.read_opts(),
                        IteratorMode::From(&start, Direction::Reverse),
                    );
                    let from = match back.next() {
                        Some(Ok((k, _)))
                            if k.starts_with(&prefix) && k.len() == prefix.len() + 8 =>
                        {
                            k.to_vec()
                        }
                        Some(Err(e)) => return Err(e.into()),
                        _ => start.clone(),
                    };
                    drop(back);
                    let it = self.shared.db.iterator_cf_opt(
                        cf,
                        self.read_opts(),
                        IteratorMode::From(&from, Direction::Forward),
                    );
                    'postings: for item in it {
                        let (k, v) = item?;
                        let Some(seq_bytes) = k.strip_prefix(prefix.as_slice()) else { break };
                        let first = <[u8; 8]>::try_from(seq_bytes)
                            .map(u64::from_be_bytes)
                            .map_err(|_| ReadError::Corrupt("index key of wrong length".into()))?;
                        if first >= hi {
                            break;
                        }
                        let seqs = store::decode_postings(first, &v)
                            .map_err(|e| ReadError::Corrupt(format!("index: {e}")))?;
                        for seq in seqs.into_iter().filter(|s| (lo..hi).contains(s)) {
                            if !consider(seq, &mut entries)? {
                                break 'postings;
                            }
                        }
                    }
                }
            }
        }
        Ok(QueryPage { entries, next_cursor })
    }
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Tables the mesh keeps in the ledger's database (DESIGN.md: peers, connections, routing,
/// trust, messages). Plain keys and values, owned by `onoal-mesh`; the engine only stores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeshTable {
    /// Known and pinned peers.
    Peers,
    /// Connection history.
    Connections,
    /// OID routing table.
    Routing,
    /// Trust edges.
    Trust,
    /// Seen messages.
    Messages,
}

impl MeshTable {
    fn cf_name(self) -> &'static str {
        match self {
            Self::Peers => "peers",
            Self::Connections => "connections",
            Self::Routing => "routing",
            Self::Trust => "trust",
            Self::Messages => "messages",
        }
    }
}

impl Ledger {
    /// The value at `key` of a mesh table.
    ///
    /// # Errors
    /// Storage errors.
    pub fn mesh_get(&self, table: MeshTable, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let shared = &self.own.shared;
        Ok(shared.db.get_cf(shared.cf(table.cf_name()), key)?)
    }

    /// Writes (fsynced) `value` at `key` of a mesh table.
    ///
    /// # Errors
    /// A read-only ledger; storage errors.
    pub fn mesh_put(&self, table: MeshTable, key: &[u8], value: &[u8]) -> Result<(), ReadError> {
        if self.is_read_only() {
            return Err(ReadError::Storage(
                "the ledger is open read-only; stop the process that owns it (onoal serve?) or send the change to it".into(),
            ));
        }
        let shared = &self.own.shared;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(shared.db.put_cf_opt(shared.cf(table.cf_name()), key, value, &wo)?)
    }

    /// Deletes `key` of a mesh table.
    ///
    /// # Errors
    /// A read-only ledger; storage errors.
    pub fn mesh_delete(&self, table: MeshTable, key: &[u8]) -> Result<(), ReadError> {
        if self.is_read_only() {
            return Err(ReadError::ReadOnly);
        }
        let shared = &self.own.shared;
        Ok(shared.db.delete_cf(shared.cf(table.cf_name()), key)?)
    }

    /// Every key and value of a mesh table, in key order.
    ///
    /// # Errors
    /// Storage errors.
    pub fn mesh_scan(&self, table: MeshTable) -> Result<Vec<KeyValue>, ReadError> {
        let shared = &self.own.shared;
        let mut out = Vec::new();
        for item in shared.db.iterator_cf(shared.cf(table.cf_name()), IteratorMode::Start) {
            let (k, v) = item?;
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}

/// True when `entry` matches every filter of `q`, the time window included.
pub fn query_matches(q: &Query, entry: &Entry) -> bool {
    let c = &entry.content;
    q.stream.as_deref().is_none_or(|s| c.stream.as_str() == s)
        && q.entry_type.as_deref().is_none_or(|t| c.entry_type.as_str() == t)
        && q.subject.as_deref().is_none_or(|s| c.subject.as_ref().is_some_and(|o| o.as_str() == s))
        && q.issuer.as_deref().is_none_or(|s| c.issuer.as_ref().is_some_and(|o| o.as_str() == s))
        && q.since_ms.is_none_or(|t| entry.timestamp_ms >= t)
        && q.until_ms.is_none_or(|t| entry.timestamp_ms <= t)
}
