//! What the ledger keeps in memory about its logs: one [`LogState`] per log (the own log and
//! every replica), and the [`Logs`] registry that finds them by ledger id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::ReadError;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::ids::LedgerId;
use crate::store::keys::{self, Cf, HeadRecord, Kind};
use crate::store::{Store, scan};
use crate::tile::TileId;

/// How a log is stored, and so how it answers reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every entry and the whole tree (the own log, a full replica).
    Full,
    /// Some entries, each with its inclusion proof, and no tree (a filtered sync's replica).
    Sparse,
}

/// The durable state of a log changed: what a writer reports to [`crate::Log::on_durable`]
/// subscribers after each successful write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durable {
    /// Entries whose tree is durable.
    pub size: u64,
    /// The newest stored checkpoint whose size is at most `size`, if the writer knows it.
    pub checkpoint_size: Option<u64>,
}

/// A subscriber to durable changes; returns false to unsubscribe.
pub(crate) type DurableCallback = Box<dyn Fn(Durable) -> bool + Send + Sync>;

/// What the ledger keeps in memory about one log (its own, or a replica).
pub(crate) struct LogState {
    /// Local log number: the first 4 bytes of every key of this log.
    pub(crate) number: u32,
    /// Whose log it is (for a replica: the pinned identity of the remote ledger).
    pub(crate) identity: Identity,
    pub(crate) shape: Shape,
    /// Size of the tree whose entries and tiles are durable; proofs up to it need no snapshot,
    /// because a tile only ever grows and hashes of complete subtrees never change.
    pub(crate) durable_size: AtomicU64,
    /// Full tiles of tile level >= 1 (immutable once full; a few MB for 10^8 entries).
    pub(crate) upper_tiles: RwLock<HashMap<TileId, Arc<[u8]>>>,
    /// Hashes of incomplete ranges `[start, end)` at right edges (immutable once in the tree).
    pub(crate) border_hashes: RwLock<HashMap<(u64, u64), Hash>>,
    /// Set while a writer (a replica's) holds this log.
    pub(crate) writer_active: AtomicBool,
    subscribers: Mutex<Vec<DurableCallback>>,
}

impl LogState {
    pub(crate) fn new(number: u32, identity: Identity, shape: Shape) -> Self {
        Self {
            number,
            identity,
            shape,
            durable_size: AtomicU64::new(0),
            upper_tiles: RwLock::new(HashMap::new()),
            border_hashes: RwLock::new(HashMap::new()),
            writer_active: AtomicBool::new(false),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// Records a durable change and tells every subscriber (from the writer's thread).
    pub(crate) fn publish(&self, durable: Durable) {
        self.durable_size.store(durable.size, Ordering::Release);
        self.subscribers.lock().retain(|f| f(durable));
    }

    pub(crate) fn subscribe(&self, f: DurableCallback) {
        self.subscribers.lock().push(f);
    }
}

/// Reads a log's head record.
pub(crate) fn read_head(store: &Store, number: u32) -> Result<HeadRecord, ReadError> {
    store.get(Cf::Meta, &keys::head_key(number))?.and_then(|b| HeadRecord::decode(&b)).ok_or_else(
        || ReadError::Corrupt(format!("head record of log {number} missing or malformed")),
    )
}

/// Every log of a database: the own log and the replicas, by ledger id.
pub(crate) struct Logs {
    pub(crate) own: Arc<LogState>,
    full: RwLock<HashMap<LedgerId, Arc<LogState>>>,
    sparse: RwLock<HashMap<LedgerId, Arc<LogState>>>,
    staging: RwLock<HashMap<LedgerId, Arc<LogState>>>,
}

impl Logs {
    /// Loads the own log's state and the replica directory.
    pub(crate) fn load(store: &Store, identity: Identity) -> Result<Self, ReadError> {
        let own = LogState::new(keys::OWN_LOG, identity, Shape::Full);
        own.durable_size.store(read_head(store, keys::OWN_LOG)?.size, Ordering::Release);
        Ok(Self {
            own: Arc::new(own),
            full: RwLock::new(load_directory(store, Kind::Full)?),
            sparse: RwLock::new(load_directory(store, Kind::Sparse)?),
            staging: RwLock::new(load_directory(store, Kind::Staging)?),
        })
    }

    fn map(&self, kind: Kind) -> &RwLock<HashMap<LedgerId, Arc<LogState>>> {
        match kind {
            Kind::Full => &self.full,
            Kind::Sparse => &self.sparse,
            Kind::Staging => &self.staging,
        }
    }

    /// The replica of `id` of this kind.
    pub(crate) fn get(&self, kind: Kind, id: &LedgerId) -> Option<Arc<LogState>> {
        self.map(kind).read().get(id).cloned()
    }

    /// The replicas of this kind, in log-number order.
    pub(crate) fn all(&self, kind: Kind) -> Vec<Arc<LogState>> {
        let mut out: Vec<_> = self.map(kind).read().values().cloned().collect();
        out.sort_by_key(|s| s.number);
        out
    }

    /// The replica of `id`, registering a new one (number, directory record, empty head,
    /// written by `create`) when there is none. Returns the state and whether it was new.
    pub(crate) fn get_or_create(
        &self,
        kind: Kind,
        identity: &Identity,
        create: impl FnOnce(u32) -> Result<(), ReadError>,
    ) -> Result<(Arc<LogState>, bool), ReadError> {
        // Every map is locked so no two replicas get one number.
        let mut full = self.full.write();
        let mut sparse = self.sparse.write();
        let mut staging = self.staging.write();
        let taken = full
            .values()
            .chain(sparse.values())
            .chain(staging.values())
            .map(|s| s.number)
            .max()
            .unwrap_or(keys::OWN_LOG);
        let map = match kind {
            Kind::Full => &mut *full,
            Kind::Sparse => &mut *sparse,
            Kind::Staging => &mut *staging,
        };
        if let Some(s) = map.get(&identity.ledger_id) {
            return Ok((s.clone(), false));
        }
        let number = taken + 1;
        create(number)?;
        let shape = if kind == Kind::Sparse { Shape::Sparse } else { Shape::Full };
        let s = Arc::new(LogState::new(number, identity.clone(), shape));
        map.insert(identity.ledger_id, s.clone());
        Ok((s, true))
    }

    /// Deletes the replica of `id` of this kind with `delete` (its stored data) and forgets
    /// it, holding the registry so no writer opens it meanwhile. False when there is none.
    pub(crate) fn remove_with<E>(
        &self,
        kind: Kind,
        id: &LedgerId,
        delete: impl FnOnce(&LogState) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut map = self.map(kind).write();
        let Some(state) = map.get(id) else { return Ok(false) };
        delete(state)?;
        map.remove(id);
        Ok(true)
    }

    /// Makes the staging copy of `id` its full replica, with `swap` (the stored part: one
    /// atomic write) run while both are held. Returns the replaced replica, if any.
    pub(crate) fn promote_with<E>(
        &self,
        id: &LedgerId,
        swap: impl FnOnce(&LogState, Option<&LogState>) -> Result<(), E>,
    ) -> Result<Option<Arc<LogState>>, E>
    where
        E: From<ReadError>,
    {
        let mut full = self.full.write();
        let mut staging = self.staging.write();
        let Some(new) = staging.get(id).cloned() else {
            return Err(ReadError::Corrupt(format!("no staging copy of {id}")).into());
        };
        let old = full.get(id).cloned();
        swap(&new, old.as_deref())?;
        staging.remove(id);
        full.insert(*id, new);
        Ok(old)
    }
}

/// Reads one kind's log directory: every replica's number and pinned identity.
fn load_directory(
    store: &Store,
    kind: Kind,
) -> Result<HashMap<LedgerId, Arc<LogState>>, ReadError> {
    let mut out = HashMap::new();
    let corrupt = |m: &str| ReadError::Corrupt(m.to_owned());
    let shape = if kind == Kind::Sparse { Shape::Sparse } else { Shape::Full };
    scan::directory(store, kind, |_, v| {
        let number = v
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| corrupt("log directory record is too short"))?;
        let identity = Identity::decode(&v[4..])
            .ok_or_else(|| corrupt("log directory identity is malformed"))?;
        let state = LogState::new(number, identity, shape);
        state.durable_size.store(read_head(store, number)?.size, Ordering::Release);
        out.insert(state.identity.ledger_id, Arc::new(state));
        Ok::<_, ReadError>(())
    })?;
    Ok(out)
}

/// What a writer keeps of its log: the head, the right edge of the tree, and the newest
/// checkpoint. Both the sequencer (own log) and a replica's writer hold one.
#[derive(Clone, Debug)]
pub(crate) struct WriterHead {
    pub(crate) head: HeadRecord,
    pub(crate) edge: crate::tree::RightEdge,
    pub(crate) last_checkpoint: Option<crate::checkpoint::SignedCheckpoint>,
}

impl WriterHead {
    /// Loads the head, the right edge and the newest checkpoint of `log` from storage.
    pub(crate) fn load(store: &Store, log: &LogState) -> Result<Self, ReadError> {
        let head = read_head(store, log.number)?;
        let edge = crate::tree::RightEdge::load(head.size, |id| {
            store.get(Cf::Tiles, &keys::tile_key(log.number, id))
        })
        .map_err(|e| ReadError::Corrupt(e.to_string()))?;
        let last_checkpoint =
            match scan::latest_checkpoint_at_most(store, None, log.number, u64::MAX)? {
                None => None,
                Some((_, note)) => Some(
                    crate::checkpoint::SignedCheckpoint::open(&log.identity.verifier(), &note)
                        .map_err(|e| {
                            ReadError::Corrupt(format!("latest stored checkpoint: {e}"))
                        })?,
                ),
            };
        Ok(Self { head, edge, last_checkpoint })
    }
}
