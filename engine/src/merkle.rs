//! RFC 9162 Merkle tree math as pure functions.
//!
//! Nothing here touches storage: tree hashes are reached through a caller's closure that
//! returns the hash of a *complete* subtree, named by [`NodeId`] (level, index). Node
//! `(level, index)` covers the leaves `[index << level, (index + 1) << level)`; level 0 is the
//! leaf hashes. Proof generation follows RFC 9162 section 2.1.3.1 / 2.1.4.1 and the verifiers
//! section 2.1.3.2 / 2.1.4.2; verifiers never panic on any input.

use crate::hash::{Hash, empty_root, node_hash};

/// A complete subtree of the Merkle tree: `2^level` leaves starting at `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height above the leaves; 0 is a leaf hash.
    pub level: u8,
    /// Position among the nodes of that level, from the left.
    pub index: u64,
}

impl NodeId {
    /// Node `index` at `level`.
    pub const fn new(level: u8, index: u64) -> Self {
        Self { level, index }
    }
}

/// Why a proof was refused, or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {size}; use an index below the size")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The sizes of a consistency proof are not `0 < old <= new`.
    #[error(
        "no consistency proof between sizes {old} and {new}: sizes must satisfy 0 < old <= new"
    )]
    BadSizes {
        /// Old tree size.
        old: u64,
        /// New tree size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has {got} hashes where {expected} are needed")]
    WrongLength {
        /// Hashes needed.
        expected: usize,
        /// Hashes given.
        got: usize,
    },
    /// The proof does not lead to the expected root.
    #[error("proof does not match the root: computed {computed}, expected {expected}")]
    RootMismatch {
        /// Root recomputed from the proof.
        computed: Hash,
        /// Root the caller trusts.
        expected: Hash,
    },
}

/// Where the proof code gets tree hashes: complete subtrees by [`NodeId`], and optionally a
/// memory for hashes of incomplete ranges at the right edge (they never change once the range
/// is in the tree, and every proof against the same size needs the same few).
pub trait NodeSource {
    /// Error of a failed lookup.
    type Error;
    /// Hash of the complete subtree `id`.
    ///
    /// # Errors
    /// When the hash cannot be read.
    fn node(&mut self, id: NodeId) -> Result<Hash, Self::Error>;
    /// A remembered hash of the incomplete range `[start, end)`.
    fn remembered(&mut self, _start: u64, _end: u64) -> Option<Hash> {
        None
    }
    /// Remembers the hash of the incomplete range `[start, end)`.
    fn remember(&mut self, _start: u64, _end: u64, _hash: Hash) {}
}

impl<E, F: FnMut(NodeId) -> Result<Hash, E>> NodeSource for F {
    type Error = E;
    fn node(&mut self, id: NodeId) -> Result<Hash, E> {
        self(id)
    }
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Hash of the leaves `[start, end)` as RFC 9162 MTH, where `start` is a multiple of the
/// largest power of two not above `end - start` (true for every subtree RFC 9162 visits).
pub fn subtree_hash<S: NodeSource + ?Sized>(
    start: u64,
    end: u64,
    fetch: &mut S,
) -> Result<Hash, S::Error> {
    let size = end - start;
    if size == 0 {
        return Ok(empty_root());
    }
    if size.is_power_of_two() && start.is_multiple_of(size) {
        let level = size.trailing_zeros() as u8;
        return fetch.node(NodeId::new(level, start >> level));
    }
    if let Some(h) = fetch.remembered(start, end) {
        return Ok(h);
    }
    let k = split_point(size);
    let left = subtree_hash(start, start + k, fetch)?;
    let right = subtree_hash(start + k, end, fetch)?;
    let h = node_hash(&left, &right);
    fetch.remember(start, end, h);
    Ok(h)
}

/// Root hash of the tree of the first `size` leaves.
pub fn root<S: NodeSource + ?Sized>(size: u64, fetch: &mut S) -> Result<Hash, S::Error> {
    subtree_hash(0, size, fetch)
}

/// The nodes whose hashes form the root of a tree of `size` leaves: one complete subtree per
/// set bit of `size`, largest (leftmost) first.
pub fn root_nodes(size: u64) -> impl Iterator<Item = NodeId> {
    (0..64u8)
        .rev()
        .filter(move |l| size >> l & 1 == 1)
        .map(move |l| NodeId::new(l, (size >> l) - 1))
}

/// Folds the hashes of [`root_nodes`] (same order) into the root.
pub fn fold_root(hashes: &[Hash]) -> Hash {
    let mut iter = hashes.iter().rev();
    let Some(first) = iter.next() else {
        return empty_root();
    };
    iter.fold(*first, |acc, left| node_hash(left, &acc))
}

/// RFC 9162 inclusion proof (audit path) of leaf `index` in the tree of `size` leaves,
/// siblings ordered from the leaf up.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    index: u64,
    size: u64,
    fetch: &mut S,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if index >= size {
        return Ok(Err(ProofError::IndexOutOfRange { index, size }));
    }
    let mut path = Vec::with_capacity(64);
    let (mut start, mut end, mut m) = (0u64, size, index);
    // Walk down from the root, collecting siblings root-first, then reverse.
    while end - start > 1 {
        let k = split_point(end - start);
        if m < k {
            path.push(subtree_hash(start + k, end, fetch)?);
            end = start + k;
        } else {
            path.push(subtree_hash(start, start + k, fetch)?);
            start += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(Ok(path))
}

/// RFC 9162 consistency proof between the trees of `old` and `new` leaves (0 < old <= new).
pub fn consistency_proof<S: NodeSource + ?Sized>(
    old: u64,
    new: u64,
    fetch: &mut S,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if old == 0 || old > new {
        return Ok(Err(ProofError::BadSizes { old, new }));
    }
    let mut path = Vec::with_capacity(64);
    // SUBPROOF(m, D[start:end], b), iteratively; hashes collected root-first, reversed after.
    let (mut start, mut end, mut m, mut whole) = (0u64, new, old, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                path.push(subtree_hash(start, end, fetch)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            path.push(subtree_hash(start + k, end, fetch)?);
            end = start + k;
        } else {
            path.push(subtree_hash(start, start + k, fetch)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    path.reverse();
    Ok(Ok(path))
}

/// Checks an RFC 9162 inclusion proof (section 2.1.3.2).
///
/// # Errors
/// Any mismatch: index outside the tree, a proof of the wrong length, or a root that differs.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(index, size, leaf, proof)?;
    if computed != *root {
        return Err(ProofError::RootMismatch { computed, expected: *root });
    }
    Ok(())
}

/// The root an inclusion proof leads to.
///
/// # Errors
/// Index outside the tree, or a proof of the wrong length for `index` and `size`.
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength { expected, got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    Ok(r)
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size` (index < size).
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    // Bits where index and size-1 differ count one level each, plus the levels above on the
    // right edge where the right neighbour exists.
    let last = size - 1;
    let inner = 64 - (index ^ last).leading_zeros() as usize;
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Checks an RFC 9162 consistency proof (section 2.1.4.2). Sizes must satisfy
/// `0 < old <= new`; for `old == new` the proof must be empty and the roots equal.
///
/// # Errors
/// Bad sizes, a proof of the wrong length, or roots that do not follow from the proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength { expected: 0, got: proof.len() });
        }
        if old_root != new_root {
            return Err(ProofError::RootMismatch { computed: *old_root, expected: *new_root });
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old, new);
    if proof.len() != expected {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::WrongLength { expected, got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { expected, got: proof.len() });
    }
    if fr != *old_root {
        return Err(ProofError::RootMismatch { computed: fr, expected: *old_root });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch { computed: sr, expected: *new_root });
    }
    Ok(())
}

/// Number of hashes in the consistency proof between `old` and `new` (0 < old < new).
pub fn consistency_proof_len(old: u64, new: u64) -> usize {
    // As in transparency-dev/merkle's decomposition: the part inside the old tree's last
    // complete subtree plus the right border.
    let level = old.trailing_zeros();
    let index = (old - 1) >> level;
    let last = (new - 1) >> level;
    let inner = 64 - (index ^ last).leading_zeros() as usize;
    let border = (index >> inner).count_ones() as usize;
    let mut len = inner + border;
    // When `old` is not a power of two its own subtree hash is part of the proof.
    if !old.is_power_of_two() {
        len += 1;
    }
    len
}

#[cfg(test)]
pub(crate) mod tests;
