//! Tree hashes for the proof code: level-0 tiles pinned in RocksDB's block cache (no copy), full
//! upper tiles cached in memory (immutable once full), and hashes of incomplete right-edge
//! ranges remembered (they never change once in the tree). Proofs for any size up to the
//! durable size read the current tiles without a snapshot: a tile only grows.

use std::sync::Arc;

use super::state::LogState;
use crate::error::ReadError;
use crate::hash::Hash;
use crate::merkle::{self, NodeId};
use crate::store::keys::{self, Cf};
use crate::store::{Pinned, Store};
use crate::tile::{self, TileId};

/// Most remembered right-edge range hashes before the memory is cleared.
const MAX_BORDER_HASHES: usize = 1 << 16;

enum TileBytes<'a> {
    Pinned(Pinned<'a>),
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

/// A [`merkle::NodeSource`] over one log's stored tiles.
pub(crate) struct ProofSource<'a> {
    store: &'a Store,
    log: &'a LogState,
    recent: Vec<(TileId, TileBytes<'a>)>,
}

impl<'a> ProofSource<'a> {
    pub(crate) fn new(store: &'a Store, log: &'a LogState) -> Self {
        Self { store, log, recent: Vec::new() }
    }

    fn load(&self, tid: TileId) -> Result<TileBytes<'a>, ReadError> {
        if tid.level > 0
            && let Some(b) = self.log.upper_tiles.read().get(&tid).cloned()
        {
            return Ok(TileBytes::Shared(b));
        }
        let v =
            self.store.get_pinned(Cf::Tiles, &keys::tile_key(self.log.number, tid))?.ok_or_else(
                || ReadError::Corrupt(format!("tile {}/{} is missing", tid.level, tid.index)),
            )?;
        if tid.level > 0 && v.len() == tile::encoded_len(tile::TILE_WIDTH) {
            let b: Arc<[u8]> = Arc::from(&v[..]);
            self.log.upper_tiles.write().insert(tid, b.clone());
            return Ok(TileBytes::Shared(b));
        }
        Ok(TileBytes::Pinned(v))
    }
}

impl merkle::NodeSource for ProofSource<'_> {
    type Error = ReadError;

    fn node(&mut self, node: NodeId) -> Result<Hash, ReadError> {
        let (tid, row, pos) = tile::locate(node);
        let idx = match self.recent.iter().position(|(t, _)| *t == tid) {
            Some(i) => i,
            None => {
                let bytes = self.load(tid)?;
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
