//! The right edge of a tree: one partial tile per tile level, the only part of the tree that
//! still changes. Both writers (the sequencer of the own log and a replica's writer) grow a
//! tree through a [`RightEdge`]; it is pure: it yields the tiles to store as data and never
//! touches storage itself.

use crate::hash::Hash;
use crate::merkle::{self, NodeId};
use crate::tile::{self, TILE_HEIGHT, TILE_WIDTH, Tile, TileError, TileId};

/// Why a stored right edge cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// A partial tile the size needs is not stored.
    #[error("right-edge tile {level}/{index} is missing")]
    Missing {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
    },
    /// A stored tile is damaged.
    #[error("tile {level}/{index}: {error}")]
    Damaged {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// What is wrong.
        error: TileError,
    },
    /// A stored partial tile has another width than the size needs.
    #[error("right-edge tile {level}/{index} has width {found}, the head needs {expected}")]
    Width {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// Width stored.
        found: usize,
        /// Width the size implies.
        expected: usize,
    },
    /// Reading a tile failed.
    #[error("reading tile {level}/{index}: {reason}")]
    Read {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// The storage error.
        reason: String,
    },
}

/// The partial tiles at the right edge of a tree of `size` leaves, and the tile writes that
/// growing it produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RightEdge {
    size: u64,
    /// `tiles[T]` is the tile at tile level T that the next node of tree level 8T goes into.
    tiles: Vec<Tile>,
    /// Levels whose partial tile changed since the last [`Self::take_writes`].
    dirty: Vec<bool>,
    /// Tiles that filled up since the last [`Self::take_writes`] (each written once, full).
    full: Vec<(TileId, Vec<u8>)>,
}

impl RightEdge {
    /// The edge of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The edge of the stored tree of `size` leaves, reading its partial tiles with `read`.
    ///
    /// # Errors
    /// A partial tile is missing, damaged, of the wrong width, or unreadable.
    pub fn load<E: std::fmt::Display>(
        size: u64,
        mut read: impl FnMut(TileId) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Self, EdgeError> {
        let mut tiles = Vec::new();
        let mut level: u8 = 0;
        loop {
            let count = size >> (u32::from(level) * u32::from(TILE_HEIGHT));
            let width = (count % TILE_WIDTH as u64) as usize;
            let index = count / TILE_WIDTH as u64;
            let tile = if width == 0 {
                Tile::new()
            } else {
                let bytes = read(TileId { level, index })
                    .map_err(|e| EdgeError::Read { level, index, reason: e.to_string() })?
                    .ok_or(EdgeError::Missing { level, index })?;
                let t = Tile::decode_verified(&bytes).map_err(|error| EdgeError::Damaged {
                    level,
                    index,
                    error,
                })?;
                if t.width() != width {
                    return Err(EdgeError::Width {
                        level,
                        index,
                        found: t.width(),
                        expected: width,
                    });
                }
                t
            };
            tiles.push(tile);
            if count < TILE_WIDTH as u64 {
                break;
            }
            level += 1;
        }
        let dirty = vec![false; tiles.len()];
        Ok(Self { size, tiles, dirty, full: Vec::new() })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The partial level-0 tile: the leaf hashes of the last incomplete 256.
    pub fn level0(&self) -> &[Hash] {
        self.tiles.first().map_or(&[], Tile::bottom)
    }

    /// Adds the next leaf.
    pub fn push_leaf(&mut self, leaf: Hash) {
        self.size += 1;
        self.push_node(0, leaf);
    }

    /// Adds a whole level-0 tile (256 leaves, already hashed: a verified bundle's) at a tile
    /// boundary. Its leaves are not re-hashed.
    ///
    /// # Panics
    /// If the tree does not end at a tile boundary or the tile is not full; callers check.
    pub fn push_full_tile(&mut self, tile: &Tile) {
        assert!(
            self.size.is_multiple_of(TILE_WIDTH as u64),
            "a full tile starts at a tile boundary"
        );
        let root = tile.root().expect("push_full_tile takes a full tile");
        let id = TileId { level: 0, index: self.size / TILE_WIDTH as u64 };
        self.size += TILE_WIDTH as u64;
        self.full.push((id, tile.encode()));
        self.ensure_level(0);
        self.tiles[0] = Tile::new();
        self.dirty[0] = false;
        self.push_node(1, root);
    }

    /// Makes `tile` the partial level-0 tile of a tree that ends at a tile boundary (a
    /// verified partial bundle, already hashed).
    ///
    /// # Panics
    /// If the tree does not end at a tile boundary or the tile is full; callers check.
    pub fn push_partial_tile(&mut self, tile: Tile) {
        assert!(self.size.is_multiple_of(TILE_WIDTH as u64), "a tile starts at a tile boundary");
        assert!(!tile.is_full(), "push_full_tile takes full tiles");
        self.size += tile.width() as u64;
        self.ensure_level(0);
        self.tiles[0] = tile;
        self.dirty[0] = true;
    }

    fn ensure_level(&mut self, level: usize) {
        while self.tiles.len() <= level {
            self.tiles.push(Tile::new());
        }
        while self.dirty.len() <= level {
            self.dirty.push(false);
        }
    }

    /// Pushes `node`, the root of the subtree that ends with leaf `size - 1`, into the tile at
    /// tile level `level`; a tile that fills up is queued for writing (once, full) and its root
    /// goes one level up.
    fn push_node(&mut self, level: usize, node: Hash) {
        let (mut level, mut node) = (level, node);
        loop {
            self.ensure_level(level);
            let Some(root) = self.tiles[level].push(node) else {
                self.dirty[level] = true;
                return;
            };
            let count = self.size >> (level as u32 * u32::from(TILE_HEIGHT));
            let index = count / TILE_WIDTH as u64 - 1;
            let id = TileId {
                level: u8::try_from(level).expect("a u64 tree has at most 8 tile levels"),
                index,
            };
            self.full.push((id, self.tiles[level].encode()));
            self.tiles[level] = Tile::new();
            self.dirty[level] = false;
            node = root;
            level += 1;
        }
    }

    /// The tiles to store for what was pushed since the last call: every tile that filled up,
    /// then every partial tile that changed.
    pub fn take_writes(&mut self) -> Vec<(TileId, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.full);
        for (level, dirty) in self.dirty.iter_mut().enumerate() {
            if std::mem::take(dirty) {
                let count = self.size >> (level as u32 * u32::from(TILE_HEIGHT));
                let id = TileId {
                    level: u8::try_from(level).expect("a u64 tree has at most 8 tile levels"),
                    index: count / TILE_WIDTH as u64,
                };
                out.push((id, self.tiles[level].encode()));
            }
        }
        out
    }

    /// Hash of a complete node on the right edge.
    fn edge_node(&self, node: NodeId) -> Option<Hash> {
        let (tid, row, pos) = tile::locate(node);
        let tile = self.tiles.get(usize::from(tid.level))?;
        let count = self.size >> (u32::from(tid.level) * u32::from(TILE_HEIGHT));
        if tid.index != count / TILE_WIDTH as u64 {
            return None;
        }
        tile.node(row, pos)
    }

    /// The root of the tree, from the edge alone.
    ///
    /// # Errors
    /// When the edge lacks a node the root needs (it was loaded from damaged tiles).
    pub fn root(&self) -> Result<Hash, &'static str> {
        let parts: Option<Vec<Hash>> =
            merkle::root_nodes(self.size).map(|n| self.edge_node(n)).collect();
        parts.map(|p| merkle::fold_root(&p)).ok_or("the right edge lacks a root node")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::hash::leaf_hash;

    /// Grows an edge leaf by leaf (and by whole tiles), stores its writes in a map, and checks
    /// the root and a reload against the pure Merkle root at many sizes.
    #[test]
    fn edge_roots_and_reloads_agree_with_the_merkle_root() {
        let leaves: Vec<Hash> = (0..70_000u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut stored: HashMap<TileId, Vec<u8>> = HashMap::new();
        let mut edge = RightEdge::new();
        let mut tree = merkle::tests::MemTree::new(Vec::new());
        let mut i = 0usize;
        while i < leaves.len() {
            // Every third tile arrives whole (as a replica's bundle does).
            if i.is_multiple_of(256) && (i / 256) % 3 == 1 && i + 256 <= leaves.len() {
                let mut t = Tile::new();
                for h in &leaves[i..i + 256] {
                    t.push(*h);
                }
                edge.push_full_tile(&t);
                i += 256;
            } else {
                edge.push_leaf(leaves[i]);
                i += 1;
            }
            if i.is_multiple_of(997) || i == leaves.len() {
                stored.extend(edge.take_writes());
                tree = merkle::tests::MemTree::new(leaves[..i].to_vec());
                let want = merkle::root(i as u64, &mut tree.fetch()).unwrap();
                assert_eq!(edge.root(), Ok(want), "size {i}");
                let reloaded =
                    RightEdge::load(i as u64, |id| Ok::<_, String>(stored.get(&id).cloned()))
                        .unwrap();
                assert_eq!(reloaded.root(), Ok(want), "reloaded at size {i}");
            }
        }
        drop(tree);
        assert!(matches!(
            RightEdge::load(300, |_| Ok::<_, String>(None)),
            Err(EdgeError::Missing { level: 0, index: 1 })
        ));
    }
}
