//! Bundles: up to 256 entries (one level-0 tile, `[256 k, min(256 (k+1), size))`) of a
//! checkpoint's tree, verified as a unit against the checkpoint. Pure: any thread, no storage.

use crate::chain::check_links;
use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, leaf_hash};
use crate::merkle::{self, NodeId};
use crate::record::Entry;
use crate::tile::{TILE_WIDTH, Tile};

/// Entries per bundle: one level-0 tile.
pub const BUNDLE_ENTRIES: u64 = TILE_WIDTH as u64;

/// Why a bundle does not verify against a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Start or length is not one level-0 tile of the checkpoint's tree.
    #[error(
        "bundle [{first}, {first}+{count}) is not a tile of a tree of size {size}: it must start at a multiple of 256 and hold min(256, size - first) entries"
    )]
    WrongShape {
        /// First seq.
        first: u64,
        /// Entries given.
        count: u64,
        /// Checkpoint size.
        size: u64,
    },
    /// An entry does not decode.
    #[error("entry {seq} does not decode: {reason}")]
    Undecodable {
        /// Position in the log.
        seq: u64,
        /// Decoder message.
        reason: String,
    },
    /// An entry claims another seq than its position.
    #[error("entry at {seq} claims seq {found}")]
    SeqMismatch {
        /// Position.
        seq: u64,
        /// Claimed seq.
        found: u64,
    },
    /// An entry's `prev_hash` is not the previous entry's leaf hash.
    #[error(
        "chain broken at entry {seq}: prev_hash is {found}, the entry before hashes to {expected}"
    )]
    ChainBroken {
        /// First entry whose link is wrong.
        seq: u64,
        /// Leaf hash of the entry before it.
        expected: Hash,
        /// Its `prev_hash`.
        found: Hash,
    },
    /// An entry's timestamp is below its predecessor's.
    #[error("entry {seq} has a timestamp before its predecessor's")]
    TimeWentBack {
        /// The entry.
        seq: u64,
    },
    /// The entries do not hash to the checkpoint's root through the path.
    #[error(
        "entries [{first}, {end}) do not hash to the checkpoint's root (size {size}): the path leads to {computed}, the checkpoint says {expected}"
    )]
    RootMismatch {
        /// First seq.
        first: u64,
        /// End seq.
        end: u64,
        /// Checkpoint size.
        size: u64,
        /// Root the entries and path lead to (zero when the path has the wrong length).
        computed: Hash,
        /// The checkpoint's root.
        expected: Hash,
    },
    /// Entries the replica already holds differ from the bundle's.
    #[error("entry {seq} differs from the one the replica holds")]
    HeldEntryDiffers {
        /// The entry.
        seq: u64,
    },
}

impl From<crate::chain::ChainBroken> for BundleError {
    fn from(c: crate::chain::ChainBroken) -> Self {
        Self::ChainBroken { seq: c.seq, expected: c.expected, found: c.found }
    }
}

/// Entries checked against a checkpoint by [`verify_bundle`]; only it constructs one.
#[derive(Debug)]
pub struct VerifiedBundle {
    pub(crate) first: u64,
    pub(crate) checkpoint_size: u64,
    pub(crate) checkpoint_root: Hash,
    /// Leaf data, leaf hash and decoded entry of each entry.
    pub(crate) entries: Vec<(Vec<u8>, Hash, Entry)>,
    /// The bundle's level-0 tile (its leaf hashes and interior nodes), built while verifying.
    pub(crate) tile: Tile,
}

impl VerifiedBundle {
    /// First seq.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when it holds no entries (never, for a verified bundle).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of leaf data.
    pub fn leaf_bytes(&self) -> usize {
        self.entries.iter().map(|(d, _, _)| d.len()).sum()
    }
}

/// The path a source sends with bundle `first`: the part of the inclusion proof of leaf
/// `first` in the tree of `size` that lies above the bundle's subtree.
///
/// # Errors
/// `first` is not a bundle start below `size`.
pub fn bundle_path_from_inclusion(
    first: u64,
    size: u64,
    inclusion_of_first: &[Hash],
) -> Result<Vec<Hash>, BundleError> {
    let count = bundle_len(first, size).ok_or(BundleError::WrongShape { first, count: 0, size })?;
    let inner = merkle::inclusion_proof_len(0, count);
    Ok(inclusion_of_first.get(inner..).unwrap_or_default().to_vec())
}

/// Entries in bundle `first` of a tree of `size`, when `first` is a bundle start below `size`.
pub fn bundle_len(first: u64, size: u64) -> Option<u64> {
    (first.is_multiple_of(BUNDLE_ENTRIES) && first < size)
        .then(|| (size - first).min(BUNDLE_ENTRIES))
}

/// The RFC 9162 hash of a tile's leaves: its root when full, else the root of the tree of its
/// `width` leaves, read from its rows (every complete subtree inside a tile is one of them).
pub(crate) fn tile_subtree_root(tile: &Tile) -> Hash {
    if let Some(root) = tile.root() {
        return root;
    }
    let width = tile.width() as u64;
    merkle::root(width, &mut |id: NodeId| {
        tile.node(usize::from(id.level), id.index as usize).ok_or(())
    })
    .expect("a partial tile holds every complete subtree of its leaves")
}

/// Checks bundle `first` (leaf data of entries `[first, first + len)`) against `checkpoint`:
/// the shape is one level-0 tile of its tree, every entry decodes canonically with its own
/// seq, links to its predecessor inside the bundle, and the entries' subtree hash reaches the
/// checkpoint's root through `path` (see [`bundle_path_from_inclusion`]).
///
/// # Errors
/// The first violation found.
pub fn verify_bundle(
    checkpoint: &Checkpoint,
    first: u64,
    leaves: Vec<Vec<u8>>,
    path: &[Hash],
) -> Result<VerifiedBundle, BundleError> {
    let size = checkpoint.size;
    let count = leaves.len() as u64;
    if bundle_len(first, size) != Some(count) {
        return Err(BundleError::WrongShape { first, count, size });
    }
    let decode = |(i, data): (usize, Vec<u8>)| {
        let seq = first + i as u64;
        let entry = Entry::decode(&data)
            .map_err(|e| BundleError::Undecodable { seq, reason: e.to_string() })?;
        if entry.seq != seq {
            return Err(BundleError::SeqMismatch { seq, found: entry.seq });
        }
        let h = leaf_hash(&data);
        Ok((data, h, entry))
    };
    let entries: Vec<(Vec<u8>, Hash, Entry)> =
        leaves.into_iter().enumerate().map(decode).collect::<Result<_, _>>()?;
    // Links inside the bundle; the first entry links to the one before (checked when the
    // bundle is committed), or to zero for entry 0.
    if let Some((_, _, e0)) = entries.first() {
        let prev = if first == 0 { Hash::ZERO } else { e0.prev_hash };
        check_links(first, prev, entries.iter().map(|(_, h, e)| (e.prev_hash, *h)))?;
    }
    for w in 1..entries.len() {
        if entries[w].2.timestamp_ms < entries[w - 1].2.timestamp_ms {
            return Err(BundleError::TimeWentBack { seq: first + w as u64 });
        }
    }
    let mut tile = Tile::new();
    for e in &entries {
        tile.push(e.1);
    }
    let subtree = tile_subtree_root(&tile);
    let nodes = size.div_ceil(BUNDLE_ENTRIES);
    let root = merkle::root_from_inclusion(first / BUNDLE_ENTRIES, nodes, &subtree, path);
    if root.as_ref().ok() != Some(&checkpoint.root) {
        return Err(BundleError::RootMismatch {
            first,
            end: first + count,
            size,
            computed: root.unwrap_or(Hash::ZERO),
            expected: checkpoint.root,
        });
    }
    Ok(VerifiedBundle {
        first,
        checkpoint_size: size,
        checkpoint_root: checkpoint.root,
        entries,
        tile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_tile_roots_match_the_merkle_root() {
        for n in 1..=256u64 {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
            let mut tile = Tile::new();
            for h in &leaves {
                tile.push(*h);
            }
            let mut tree = merkle::tests::MemTree::new(leaves);
            let want = merkle::root(n, &mut tree.fetch()).unwrap();
            assert_eq!(tile_subtree_root(&tile), want, "n = {n}");
        }
    }

    #[test]
    fn bundle_lengths() {
        assert_eq!(bundle_len(0, 1), Some(1));
        assert_eq!(bundle_len(0, 300), Some(256));
        assert_eq!(bundle_len(256, 300), Some(44));
        assert_eq!(bundle_len(256, 256), None);
        assert_eq!(bundle_len(1, 300), None);
    }
}
