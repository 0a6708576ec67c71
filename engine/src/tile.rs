//! Tree storage in C2SP `tlog-tiles` shape, height 8.
//!
//! A tile at tile level `T`, index `I` holds the hashes of tree level `8T` numbered
//! `256 I .. 256 I + w` (its *bottom row*, exactly a C2SP hash tile of width `w`), followed by
//! the seven interior rows above it inside the tile (`w >> 1`, `w >> 2`, ... `w >> 7` hashes).
//! Storing the interior rows turns every node lookup into one slice read; the C2SP tile is the
//! first `32 w` bytes of the value. The byte layout is in docs/format.md.

use crate::hash::{HASH_LEN, Hash, node_hash};
use crate::merkle::NodeId;

/// Tree levels covered by one tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in the bottom row of a full tile.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;

/// Names a tile: tile level (tree level `8 * level`) and index within the level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level; its bottom row is tree level `8 * level`.
    pub level: u8,
    /// Index among the tiles of that level.
    pub index: u64,
}

/// Where a tree node lives: its tile, the row inside the tile and the position in that row.
pub fn locate(node: NodeId) -> (TileId, usize, usize) {
    let tile_level = node.level / TILE_HEIGHT;
    let row = usize::from(node.level % TILE_HEIGHT);
    let per_tile = (TILE_WIDTH >> row) as u64;
    let tile = TileId { level: tile_level, index: node.index / per_tile };
    (tile, row, (node.index % per_tile) as usize)
}

/// Bytes of an encoded tile of bottom width `width`.
pub const fn encoded_len(width: usize) -> usize {
    let mut total = 0;
    let mut row = 0;
    while row < TILE_HEIGHT as usize {
        total += width >> row;
        row += 1;
    }
    total * HASH_LEN
}

/// Bytes of an encoded full tile.
const FULL_TILE_LEN: usize = encoded_len(TILE_WIDTH);

/// Bottom width of a tile from its encoded length; `None` if no width has that length.
pub fn width_from_len(len: usize) -> Option<usize> {
    // Full tiles are nearly all of them (every node lookup of a proof asks): no search.
    if len == FULL_TILE_LEN {
        return Some(TILE_WIDTH);
    }
    if len == 0 || !len.is_multiple_of(HASH_LEN) || len > FULL_TILE_LEN {
        return None;
    }
    // encoded_len is strictly increasing in width: binary search.
    let (mut lo, mut hi) = (1usize, TILE_WIDTH);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if encoded_len(mid) < len {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    (encoded_len(lo) == len).then_some(lo)
}

/// Byte offset of `(row, pos)` inside an encoded tile of width `width`, if present.
pub fn offset(width: usize, row: usize, pos: usize) -> Option<usize> {
    if row >= usize::from(TILE_HEIGHT) || pos >= width >> row {
        return None;
    }
    // Rows of a full tile start at 2 * 256 - 2 * (256 >> row) hashes; others are summed.
    let before: usize = if width == TILE_WIDTH {
        2 * TILE_WIDTH - 2 * (TILE_WIDTH >> row)
    } else {
        (0..row).map(|r| width >> r).sum()
    };
    Some((before + pos) * HASH_LEN)
}

/// Reads node `(row, pos)` from an encoded tile, checking its length.
pub fn read_node(encoded: &[u8], row: usize, pos: usize) -> Option<Hash> {
    let width = width_from_len(encoded.len())?;
    let at = offset(width, row, pos)?;
    Hash::from_slice(&encoded[at..at + HASH_LEN])
}

/// One tile in memory, growing at the right edge of the tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tile {
    rows: [Vec<Hash>; TILE_HEIGHT as usize],
}

impl Tile {
    /// An empty tile.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes in the bottom row.
    pub fn width(&self) -> usize {
        self.rows[0].len()
    }

    /// True when the bottom row has 256 hashes.
    pub fn is_full(&self) -> bool {
        self.width() == TILE_WIDTH
    }

    /// The bottom row: exactly a C2SP hash tile.
    pub fn bottom(&self) -> &[Hash] {
        &self.rows[0]
    }

    /// Node `(row, pos)` if present.
    pub fn node(&self, row: usize, pos: usize) -> Option<Hash> {
        self.rows.get(row)?.get(pos).copied()
    }

    /// Appends a hash to the bottom row and fills the interior rows it completes.
    /// Returns the tile's root (the node one level above the tile) when the tile becomes full.
    ///
    /// # Panics
    /// If the tile is already full; callers start a new tile first.
    pub fn push(&mut self, hash: Hash) -> Option<Hash> {
        assert!(!self.is_full(), "push into a full tile");
        self.rows[0].push(hash);
        let mut pos = self.rows[0].len() - 1;
        for row in 0..self.rows.len() {
            if pos.is_multiple_of(2) {
                return None;
            }
            let parent = node_hash(&self.rows[row][pos - 1], &self.rows[row][pos]);
            if row + 1 == self.rows.len() {
                return Some(parent);
            }
            self.rows[row + 1].push(parent);
            pos /= 2;
        }
        None
    }

    /// The tile's root hash once full.
    pub fn root(&self) -> Option<Hash> {
        let top = &self.rows[usize::from(TILE_HEIGHT) - 1];
        (top.len() == 2).then(|| node_hash(&top[0], &top[1]))
    }

    /// Serialises the rows, bottom row first (docs/format.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(encoded_len(self.width()));
        for row in &self.rows {
            for h in row {
                out.extend_from_slice(&h.0);
            }
        }
        out
    }

    /// Parses an encoded tile, checking that its interior rows follow from its bottom row.
    ///
    /// # Errors
    /// A length that is no tile's, or an interior hash that differs from the recomputed one
    /// (row, position, stored, computed).
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, TileError> {
        let width = width_from_len(bytes.len()).ok_or(TileError::BadLength { len: bytes.len() })?;
        let mut tile = Self::new();
        for i in 0..width {
            let at = i * HASH_LEN;
            let h = Hash::from_slice(&bytes[at..at + HASH_LEN])
                .expect("the length was checked: every bottom hash is present");
            tile.push(h);
        }
        let encoded = tile.encode();
        if encoded != bytes {
            let first = encoded
                .chunks(HASH_LEN)
                .zip(bytes.chunks(HASH_LEN))
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let (row, pos) = row_and_pos(width, first);
            return Err(TileError::InteriorMismatch {
                row,
                pos,
                stored: Hash::from_slice(&bytes[first * HASH_LEN..(first + 1) * HASH_LEN])
                    .expect("a 32-byte chunk of a tile of checked length"),
                computed: Hash::from_slice(&encoded[first * HASH_LEN..(first + 1) * HASH_LEN])
                    .expect("a 32-byte chunk of a tile of checked length"),
            });
        }
        Ok(tile)
    }
}

fn row_and_pos(width: usize, mut index: usize) -> (usize, usize) {
    for row in 0..usize::from(TILE_HEIGHT) {
        let n = width >> row;
        if index < n {
            return (row, index);
        }
        index -= n;
    }
    (usize::from(TILE_HEIGHT), index)
}

/// A stored tile that is not well formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    /// The byte length matches no tile width.
    #[error("tile has {len} bytes, which is no tile's length")]
    BadLength {
        /// The length found.
        len: usize,
    },
    /// An interior hash does not follow from the hashes below it.
    #[error("tile interior row {row} position {pos}: stored {stored}, computed {computed}")]
    InteriorMismatch {
        /// Row inside the tile.
        row: usize,
        /// Position in the row.
        pos: usize,
        /// Hash found in storage.
        stored: Hash,
        /// Hash recomputed from the row below.
        computed: Hash,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::merkle::NodeId;

    #[test]
    fn lengths_and_widths_invert() {
        assert_eq!(encoded_len(256), 510 * 32);
        assert_eq!(encoded_len(1), 32);
        for w in 1..=TILE_WIDTH {
            assert_eq!(width_from_len(encoded_len(w)), Some(w));
        }
        assert_eq!(width_from_len(0), None);
        assert_eq!(width_from_len(33), None);
        assert_eq!(width_from_len(encoded_len(256) + 32), None);
    }

    #[test]
    fn full_tile_root_is_the_subtree_hash() {
        let leaves: Vec<Hash> = (0..256u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut tile = Tile::new();
        let mut root = None;
        for h in &leaves {
            root = tile.push(*h);
        }
        let mut tree = crate::merkle::tests::MemTree::new(leaves.clone());
        let want = tree.node(NodeId::new(8, 0));
        assert_eq!(want, crate::merkle::root(256, &mut tree.fetch()).unwrap());
        assert_eq!(root, Some(want));
        assert_eq!(tile.root(), Some(want));
        let decoded = Tile::decode_verified(&tile.encode()).unwrap();
        assert_eq!(decoded, tile);
        // Every node read from the encoding matches the in-memory tile.
        let enc = tile.encode();
        for row in 0..8 {
            for pos in 0..(256 >> row) {
                assert_eq!(read_node(&enc, row, pos), tile.node(row, pos));
            }
        }
    }

    #[test]
    fn corrupted_interior_is_reported_with_position() {
        let mut tile = Tile::new();
        for i in 0..10u32 {
            tile.push(leaf_hash(&i.to_be_bytes()));
        }
        let mut enc = tile.encode();
        let at = offset(10, 1, 3).unwrap();
        enc[at] ^= 1;
        match Tile::decode_verified(&enc) {
            Err(TileError::InteriorMismatch { row: 1, pos: 3, .. }) => {}
            other => panic!("expected interior mismatch at (1,3), got {other:?}"),
        }
    }

    #[test]
    fn locate_maps_levels_to_tiles() {
        assert_eq!(locate(NodeId::new(0, 300)), (TileId { level: 0, index: 1 }, 0, 44));
        assert_eq!(locate(NodeId::new(3, 40)), (TileId { level: 0, index: 1 }, 3, 8));
        assert_eq!(locate(NodeId::new(8, 5)), (TileId { level: 1, index: 0 }, 0, 5));
        assert_eq!(locate(NodeId::new(17, 2)), (TileId { level: 2, index: 0 }, 1, 2));
    }
}
