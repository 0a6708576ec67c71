//! The hash chain: entry `n` carries the leaf hash of entry `n - 1` as its `prev_hash`
//! (32 zero bytes for entry 0). One check, used by the sequencer's readers, bundle
//! verification, replica commits and the audit.

use crate::hash::Hash;

/// A link that does not point at its predecessor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainBroken {
    /// The entry whose `prev_hash` is wrong.
    pub seq: u64,
    /// Leaf hash of the entry before it.
    pub expected: Hash,
    /// The `prev_hash` it carries.
    pub found: Hash,
}

/// Checks the links of consecutive entries starting at `first_seq`: `links` yields each
/// entry's `(prev_hash, leaf_hash)`, and `prev` is the leaf hash of entry `first_seq - 1`
/// (`Hash::ZERO` before entry 0). Returns the last leaf hash (or `prev` when empty).
///
/// # Errors
/// The first entry whose `prev_hash` is not its predecessor's leaf hash.
pub fn check_links(
    first_seq: u64,
    prev: Hash,
    links: impl IntoIterator<Item = (Hash, Hash)>,
) -> Result<Hash, ChainBroken> {
    let mut last = prev;
    for (i, (prev_hash, leaf)) in links.into_iter().enumerate() {
        if prev_hash != last {
            return Err(ChainBroken {
                seq: first_seq + i as u64,
                expected: last,
                found: prev_hash,
            });
        }
        last = leaf;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_wrong_link_is_named() {
        let h = |b: u8| Hash([b; 32]);
        assert_eq!(check_links(0, Hash::ZERO, [(Hash::ZERO, h(1)), (h(1), h(2))]), Ok(h(2)));
        assert_eq!(check_links(5, h(9), []), Ok(h(9)));
        assert_eq!(
            check_links(10, h(1), [(h(1), h(2)), (h(7), h(3))]),
            Err(ChainBroken { seq: 11, expected: h(2), found: h(7) })
        );
    }
}
