//! The read side: [`Log`] answers every read of one log of the database — the ledger's own log
//! or a verified replica of a remote ledger — with the same code. A log's [`Shape`] says how it
//! is stored: `Full` (every entry and the tree) or `Sparse` (a filtered sync's entries, each
//! with its stored inclusion proof, and no tree); each read dispatches on it once.

pub(crate) mod proofs;
pub(crate) mod query;
pub(crate) mod sparse;
pub(crate) mod state;
pub(crate) mod view;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use query::{
    DEFAULT_QUERY_BYTES, DEFAULT_QUERY_LIMIT, Filter, MAX_QUERY_LIMIT, Query, QueryPage,
};
pub use state::{Durable, Shape};
pub use view::StoredEntry;

use self::proofs::ProofSource;
use self::state::LogState;
use self::view::View;
use crate::checkpoint::SignedCheckpoint;
use crate::error::ReadError;
use crate::hash::{Hash, empty_root};
use crate::identity::Identity;
use crate::merkle;
use crate::store::keys::{self, Cf, OWN_LOG};
use crate::store::{Store, scan};

/// Tree size, root and last timestamp, read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Entries in the log.
    pub size: u64,
    /// Root of the tree of `size` leaves.
    pub root: Hash,
    /// Timestamp of the last entry.
    pub last_timestamp_ms: u64,
}

/// Read access to one log of the database: the ledger's own log or a verified replica of a
/// remote ledger. Both answer the same reads with the same code. A `Log` keeps the database
/// open: drop it before reopening the directory.
#[derive(Clone)]
pub struct Log {
    pub(crate) store: Arc<Store>,
    pub(crate) state: Arc<LogState>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("ledger_id", &self.state.identity.ledger_id)
            .field("number", &self.state.number)
            .field("shape", &self.state.shape)
            .finish()
    }
}

impl Log {
    pub(crate) fn new(store: Arc<Store>, state: Arc<LogState>) -> Self {
        Self { store, state }
    }

    /// Whose log this is.
    pub fn identity(&self) -> &Identity {
        &self.state.identity
    }

    /// True for a replica of a remote ledger.
    pub fn is_replica(&self) -> bool {
        self.state.number != OWN_LOG
    }

    /// How the log is stored.
    pub fn shape(&self) -> Shape {
        self.state.shape
    }

    /// True for a sparse replica (a filtered sync): some entries with their inclusion proofs,
    /// no tree.
    pub fn is_sparse(&self) -> bool {
        self.state.shape == Shape::Sparse
    }

    /// Entries whose tree is durable: proofs, roots and checkpoints up to this size can be
    /// served. It can trail [`Self::head`] for a moment while a group is being acknowledged.
    pub fn durable_size(&self) -> u64 {
        self.state.durable_size.load(Ordering::Acquire)
    }

    /// Calls `f` (on the writer's thread, so it must be quick) after every write that makes
    /// more of this log durable, until `f` returns false. What a server's long poll waits on.
    pub fn on_durable(&self, f: impl Fn(Durable) -> bool + Send + Sync + 'static) {
        self.state.subscribe(Box::new(f));
    }

    fn check_proof_size(&self, size: u64) -> Result<(), ReadError> {
        let durable = self.durable_size();
        if size > durable {
            return Err(ReadError::OutOfRange { what: "tree size", value: size, size: durable });
        }
        Ok(())
    }

    /// A consistent read view (RocksDB snapshot).
    pub(crate) fn view(&self) -> Result<View<'_>, ReadError> {
        View::new(&self.store, &self.state)
    }

    /// Size, root and last timestamp. A sparse replica's tree is its newest checkpoint's.
    ///
    /// # Errors
    /// Storage errors or damaged data.
    pub fn head(&self) -> Result<Head, ReadError> {
        match self.shape() {
            Shape::Sparse => Ok(match self.latest_checkpoint()? {
                Some(cp) => Head { size: cp.size, root: cp.root, last_timestamp_ms: 0 },
                None => Head { size: 0, root: empty_root(), last_timestamp_ms: 0 },
            }),
            Shape::Full => {
                let v = self.view()?;
                Ok(Head {
                    size: v.head.size,
                    root: v.root(v.head.size)?,
                    last_timestamp_ms: v.head.last_timestamp_ms,
                })
            }
        }
    }

    /// The entry at `seq`.
    ///
    /// # Errors
    /// [`ReadError::OutOfRange`] beyond the log, [`ReadError::NotHeld`] for an entry a sparse
    /// replica does not hold; storage errors or damaged data.
    pub fn entry(&self, seq: u64) -> Result<StoredEntry, ReadError> {
        let v = self.view()?;
        match self.shape() {
            Shape::Sparse => v.stored(seq)?.ok_or(ReadError::NotHeld { seq }),
            Shape::Full if seq >= v.head.size => {
                Err(ReadError::OutOfRange { what: "seq", value: seq, size: v.head.size })
            }
            Shape::Full => v.entry(seq),
        }
    }

    /// Entries `[start, end)` (clamped to the log; a sparse replica's held ones).
    ///
    /// # Errors
    /// Storage errors or damaged data.
    pub fn range(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ReadError> {
        let v = self.view()?;
        match self.shape() {
            Shape::Sparse => v.scan(start, end),
            Shape::Full => v.range(start, end.min(v.head.size)),
        }
    }

    /// Leaf data of entries `[start, end)` (clamped to the log), as stored: what sync sends.
    ///
    /// # Errors
    /// Storage errors or a missing entry.
    pub fn leaf_data_range(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, ReadError> {
        let mut out = Vec::new();
        self.visit_leaf_data(start, end, |leaf| out.push(leaf.to_vec()))?;
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
        f: impl FnMut(&[u8]),
    ) -> Result<u64, ReadError> {
        let v = self.view()?;
        let end = end.min(v.head.size);
        if start >= end {
            return Ok(0);
        }
        scan::contiguous_entries(&self.store, Some(&v.snapshot), self.state.number, start, end, f)
    }

    /// Calls `f` with the leaf data of each entry from `start` on (below `end` and the log's
    /// size), in order, straight from RocksDB's buffers, until `f` returns false; returns how
    /// many were visited. What a sync source streams a bundle with, a chunk at a time.
    ///
    /// # Errors
    /// Storage errors or a missing entry.
    pub fn visit_leaf_data_while(
        &self,
        start: u64,
        end: u64,
        mut f: impl FnMut(&[u8]) -> bool,
    ) -> Result<u64, ReadError> {
        let v = self.view()?;
        let end = end.min(v.head.size);
        let mut expected = start;
        scan::entries(
            &self.store,
            Some(&v.snapshot),
            self.state.number,
            start,
            end,
            |seq, val| {
                if seq != expected {
                    return Err(ReadError::Corrupt(format!("entry {expected} is missing")));
                }
                expected += 1;
                Ok(f(val))
            },
        )?;
        Ok(expected - start)
    }

    /// Entries matching `query`, one page at a time.
    ///
    /// # Errors
    /// Bad cursor, storage errors or damaged data.
    pub fn query(&self, query: &Query) -> Result<QueryPage, ReadError> {
        let v = self.view()?;
        match self.shape() {
            Shape::Sparse => v.sparse_query(query),
            Shape::Full => v.query(query),
        }
    }

    /// Root of the tree of `size` leaves (for a sparse replica: of a stored checkpoint).
    ///
    /// # Errors
    /// Size beyond the log; storage errors or damaged data.
    pub fn root_at(&self, size: u64) -> Result<Hash, ReadError> {
        if self.shape() == Shape::Sparse {
            return self.checkpoint_at(size)?.map(|c| c.root).ok_or(ReadError::NoCheckpoint(size));
        }
        self.check_proof_size(size)?;
        if size == 0 {
            return Ok(empty_root());
        }
        merkle::root(size, &mut ProofSource::new(&self.store, &self.state))
    }

    /// RFC 9162 inclusion proof of `seq` in the tree of `size` (a sparse replica: its stored
    /// proof, for the size it was stored for).
    ///
    /// # Errors
    /// Size beyond the log or seq not below size; storage errors or damaged data.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        if self.shape() == Shape::Sparse {
            return match sparse::stored_proof(&self.store, &self.state, seq)? {
                Some((s, proof)) if s == size => Ok(proof),
                Some((s, _)) => Err(ReadError::SparseProofSize { seq, size: s }),
                None => Err(ReadError::NotHeld { seq }),
            };
        }
        self.check_proof_size(size)?;
        Ok(merkle::inclusion_proof(seq, size, &mut ProofSource::new(&self.store, &self.state))??)
    }

    /// The bottom row of the hash tile at tile `level`, `index` (C2SP `tlog-tiles`: the hashes
    /// of tree level `8 * level` numbered `256 * index ..`), as far as the durable tree covers
    /// it; `None` when none of it is durable yet or the log has no tree (a sparse replica).
    /// Its width is its length / 32. A narrower tile of the same coordinates is a prefix of it:
    /// hashes of complete subtrees never change.
    ///
    /// # Errors
    /// Storage errors or a damaged tile.
    pub fn hash_tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, ReadError> {
        use crate::tile::{TILE_HEIGHT, TILE_WIDTH, TileId, width_from_len};
        if self.shape() == Shape::Sparse || u32::from(level) * u32::from(TILE_HEIGHT) >= 64 {
            return Ok(None);
        }
        let nodes = self.durable_size() >> (u32::from(level) * u32::from(TILE_HEIGHT));
        let covered = nodes.saturating_sub(index.saturating_mul(TILE_WIDTH as u64));
        if covered == 0 {
            return Ok(None);
        }
        let Some(bytes) = self.view()?.tile_bytes(TileId { level, index })? else {
            return Ok(None);
        };
        let stored = width_from_len(bytes.len()).ok_or_else(|| {
            ReadError::Corrupt(format!(
                "tile {level}/{index} has a malformed length {}",
                bytes.len()
            ))
        })?;
        let width = stored.min(usize::try_from(covered).unwrap_or(TILE_WIDTH));
        let mut row = bytes;
        row.truncate(width * crate::hash::HASH_LEN);
        Ok(Some(row))
    }

    /// A sparse replica's stored proof of `seq`: (tree size, proof).
    ///
    /// # Errors
    /// Storage errors or a damaged proof.
    pub fn stored_proof(&self, seq: u64) -> Result<Option<(u64, Vec<Hash>)>, ReadError> {
        sparse::stored_proof(&self.store, &self.state, seq)
    }

    /// RFC 9162 consistency proof between `old` and `new` (0 < old <= new <= size).
    ///
    /// # Errors
    /// Sizes out of order or beyond the log; a sparse replica; storage errors or damaged data.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ReadError> {
        if self.shape() == Shape::Sparse {
            return Err(ReadError::Sparse(
                "consistency proofs need the tree; sync in full or incremental mode",
            ));
        }
        self.check_proof_size(new)?;
        Ok(merkle::consistency_proof(old, new, &mut ProofSource::new(&self.store, &self.state))??)
    }

    /// The stored checkpoint of exactly `size`.
    ///
    /// # Errors
    /// Storage errors or a damaged note.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<SignedCheckpoint>, ReadError> {
        match self.store.get(Cf::Checkpoints, &keys::checkpoint_key(self.state.number, size))? {
            None => Ok(None),
            Some(bytes) => self.parse_note(&bytes).map(Some),
        }
    }

    /// Adds witness cosignature lines (C2SP `cosignature/v1`, checked by the caller) to the
    /// stored checkpoint of `size`, fsynced: it is then served with them, and a replica keeps
    /// what it received. A line by a witness already there replaces its older one. The note must
    /// still open with the log's key. Callers serialise the calls for one log (read, add,
    /// write). Returns the new note, `None` when no checkpoint of `size` is stored.
    ///
    /// # Errors
    /// A line that is not a signature line; a read-only ledger; storage errors.
    pub fn add_cosignatures(
        &self,
        size: u64,
        lines: &[String],
    ) -> Result<Option<SignedCheckpoint>, ReadError> {
        let Some(held) = self.checkpoint_at(size)? else { return Ok(None) };
        let note = crate::cosignature::add_signatures(&held.note, lines)
            .map_err(|e| ReadError::InvalidInput(e.to_string()))?;
        let cosigned = self.parse_note(note.as_bytes())?;
        if cosigned.checkpoint != held.checkpoint {
            return Err(ReadError::InvalidInput("the cosigned note changed the checkpoint".into()));
        }
        let mut batch = crate::store::Batch::default();
        self.store.put(
            &mut batch,
            Cf::Checkpoints,
            &keys::checkpoint_key(self.state.number, size),
            note.as_bytes(),
        );
        self.store.write(batch, true)?;
        Ok(Some(cosigned))
    }

    /// The newest stored checkpoint of at most `at_most` leaves whose note carries signatures
    /// besides the log's own (witness cosignatures, which [`Self::add_cosignatures`] checked
    /// before adding), looking back over at most `lookback` checkpoints.
    ///
    /// # Errors
    /// Storage errors or a damaged note.
    pub fn latest_cosigned_checkpoint(
        &self,
        at_most: u64,
        lookback: usize,
    ) -> Result<Option<SignedCheckpoint>, ReadError> {
        let sizes = self.checkpoint_sizes()?;
        for size in sizes.into_iter().rev().filter(|s| *s <= at_most).take(lookback) {
            if let Some(cp) = self.checkpoint_at(size)?
                && crate::cosignature::split_note(&cp.note).is_ok_and(|(_, l)| l.len() > 1)
            {
                return Ok(Some(cp));
            }
        }
        Ok(None)
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
        match scan::latest_checkpoint_at_most(&self.store, None, self.state.number, size)? {
            None => Ok(None),
            Some((_, note)) => self.parse_note(&note).map(Some),
        }
    }

    /// Sizes of all stored checkpoints, ascending.
    ///
    /// # Errors
    /// Storage errors.
    pub fn checkpoint_sizes(&self) -> Result<Vec<u64>, ReadError> {
        let mut out = Vec::new();
        scan::checkpoints(&self.store, None, self.state.number, |size, _| {
            out.push(size);
            Ok::<_, ReadError>(true)
        })?;
        Ok(out)
    }

    /// Checks a stored note with this log's key.
    pub(crate) fn parse_note(&self, bytes: &[u8]) -> Result<SignedCheckpoint, ReadError> {
        SignedCheckpoint::open(&self.state.identity.verifier(), bytes)
            .map_err(|e| ReadError::Corrupt(format!("stored checkpoint: {e}")))
    }
}
