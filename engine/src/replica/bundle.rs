//! Bundles: the entries of one node of a checkpoint's tree, verified as a unit against the
//! checkpoint. A bundle of width `w` (a power of two up to 256) starting at a multiple of `w` is
//! `[first, min(first + w, size))`: a complete subtree, or the tree's right-edge node at that
//! level. Width 256 is one level-0 tile (the `Bundle` request); smaller widths keep a request's
//! bytes bounded when entries are large (the `Range` request). Pure: any thread, no storage.

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
        "bundle [{first}, {first}+{count}) is not a node of a tree of size {size}: it must start at a multiple of its width (a power of two up to 256) and hold min(width, size - first) entries"
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
    /// An entry carries an issuer signature that does not verify over its content.
    #[error("entry {seq} carries an issuer signature that does not verify over its content")]
    BadIssuerSignature {
        /// Position in the log.
        seq: u64,
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
    /// The width it was verified as (256: a whole tile).
    pub(crate) width: u64,
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

    /// The width it was verified as.
    pub fn width(&self) -> u64 {
        self.width
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
    range_path_from_inclusion(first, BUNDLE_ENTRIES, size, inclusion_of_first)
}

/// The path of the bundle of width `width` at `first` (see [`bundle_path_from_inclusion`]).
///
/// # Errors
/// Not a bundle of that width below `size`.
pub fn range_path_from_inclusion(
    first: u64,
    width: u64,
    size: u64,
    inclusion_of_first: &[Hash],
) -> Result<Vec<Hash>, BundleError> {
    let count =
        range_len(first, width, size).ok_or(BundleError::WrongShape { first, count: 0, size })?;
    let inner = merkle::inclusion_proof_len(0, count);
    Ok(inclusion_of_first.get(inner..).unwrap_or_default().to_vec())
}

/// Entries in bundle `first` of a tree of `size`, when `first` is a bundle start below `size`.
pub fn bundle_len(first: u64, size: u64) -> Option<u64> {
    range_len(first, BUNDLE_ENTRIES, size)
}

/// Entries in the bundle of width `width` at `first` of a tree of `size`: when `width` is a
/// power of two up to 256 and `first` a multiple of it below `size`.
pub fn range_len(first: u64, width: u64, size: u64) -> Option<u64> {
    (width.is_power_of_two()
        && width <= BUNDLE_ENTRIES
        && first.is_multiple_of(width)
        && first < size)
        .then(|| (size - first).min(width))
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
    verify_range(checkpoint, first, BUNDLE_ENTRIES, leaves, path)
}

/// Checks the bundle of width `width` at `first` against `checkpoint`, as [`verify_bundle`]
/// does for whole tiles: the subtree of its entries is a node of the tree at level
/// log2(`width`), index `first / width`, which reaches the root through `path`.
///
/// # Errors
/// The first violation found.
pub fn verify_range(
    checkpoint: &Checkpoint,
    first: u64,
    width: u64,
    leaves: Vec<Vec<u8>>,
    path: &[Hash],
) -> Result<VerifiedBundle, BundleError> {
    let size = checkpoint.size;
    let count = leaves.len() as u64;
    if range_len(first, width, size) != Some(count) {
        return Err(BundleError::WrongShape { first, count, size });
    }
    let decode = |(i, data): (usize, Vec<u8>)| {
        let seq = first + i as u64;
        let mut entry = Entry::decode(&data)
            .map_err(|e| BundleError::Undecodable { seq, reason: e.to_string() })?;
        if entry.seq != seq {
            return Err(BundleError::SeqMismatch { seq, found: entry.seq });
        }
        entry
            .content
            .check_issuer_signature()
            .map_err(|_| BundleError::BadIssuerSignature { seq })?;
        // The leaf data holds the payload; the decoded copy is not needed past here (commits
        // index by stream, type, subject and issuer), so it is not kept twice in memory.
        entry.content.payload = Vec::new();
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
    let nodes = size.div_ceil(width);
    let root = merkle::root_from_inclusion(first / width, nodes, &subtree, path);
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
        width,
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
    fn ranges_of_every_width_verify_against_the_root_and_nothing_else_does() {
        use crate::checkpoint::Checkpoint;
        use crate::hash::Hash;
        use crate::record::{Name, NewEntry};
        // A chain of 700 entries, hashed into a tree.
        let mut leaves = Vec::new();
        let mut prev = Hash::ZERO;
        for seq in 0..700u64 {
            let e = Entry {
                seq,
                timestamp_ms: 1,
                content: NewEntry::new(
                    Name::stream("s").unwrap(),
                    Name::entry_type("t").unwrap(),
                    vec![seq as u8; 3],
                ),
                prev_hash: prev,
            };
            let data = e.leaf_data();
            prev = leaf_hash(&data);
            leaves.push(data);
        }
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        for size in [1u64, 5, 256, 300, 700] {
            let mut tree = merkle::tests::MemTree::new(hashes[..size as usize].to_vec());
            let root = merkle::root(size, &mut tree.fetch()).unwrap();
            let cp = Checkpoint { origin: "o".into(), size, root, extensions: vec![] };
            for width in [1u64, 2, 8, 64, 256] {
                let mut first = 0;
                while first < size {
                    let n = range_len(first, width, size).unwrap();
                    let proof =
                        merkle::inclusion_proof(first, size, &mut tree.fetch()).unwrap().unwrap();
                    let path = range_path_from_inclusion(first, width, size, &proof).unwrap();
                    let part = leaves[first as usize..(first + n) as usize].to_vec();
                    let v = verify_range(&cp, first, width, part.clone(), &path)
                        .unwrap_or_else(|e| panic!("size {size} width {width} first {first}: {e}"));
                    assert_eq!((v.first(), v.len() as u64, v.width()), (first, n, width));
                    // Another width for the same entries (unless a right-edge tail small enough
                    // to be the same node one level down), or a changed path, does not verify.
                    if n > width / 2 && n > 1 {
                        assert!(verify_range(&cp, first, width / 2, part.clone(), &path).is_err());
                    }
                    if let Some(h) = path.first() {
                        let mut bad = path.clone();
                        bad[0] = Hash([h.0[0] ^ 1; 32]);
                        assert!(verify_range(&cp, first, width, part, &bad).is_err());
                    }
                    first += n;
                }
            }
        }
        assert_eq!(range_len(3, 2, 10), None);
        assert_eq!(range_len(0, 3, 10), None);
        assert_eq!(range_len(0, 512, 1000), None);
    }

    #[test]
    fn a_bundle_whose_issuer_signature_fails_is_refused_though_its_tree_is_sound() {
        use crate::checkpoint::Checkpoint;
        use crate::record::{Name, NewEntry};
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let make = |tamper: bool| {
            let mut prev = Hash::ZERO;
            let mut leaves = Vec::new();
            for seq in 0..4u64 {
                let mut content = NewEntry::new(
                    Name::stream("s").unwrap(),
                    Name::entry_type("t").unwrap(),
                    vec![seq as u8; 3],
                )
                .sign(&key);
                if tamper && seq == 2 {
                    // Signed, then changed: a source that signs a checkpoint over it anyway.
                    content.payload = b"changed".to_vec();
                }
                let e = Entry { seq, timestamp_ms: 1, content, prev_hash: prev };
                let data = e.leaf_data();
                prev = leaf_hash(&data);
                leaves.push(data);
            }
            let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
            let mut tree = merkle::tests::MemTree::new(hashes);
            let root = merkle::root(4, &mut tree.fetch()).unwrap();
            (leaves, Checkpoint { origin: "o".into(), size: 4, root, extensions: vec![] })
        };
        let (leaves, cp) = make(false);
        assert!(verify_range(&cp, 0, 4, leaves, &[]).is_ok());
        let (leaves, cp) = make(true);
        assert_eq!(
            verify_range(&cp, 0, 4, leaves, &[]).err(),
            Some(BundleError::BadIssuerSignature { seq: 2 })
        );
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
