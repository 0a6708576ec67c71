//! The index audit: the posting lists must list exactly the entries that have each value, no
//! more and no fewer — otherwise queries and filtered syncs silently return wrong pages.
//!
//! Each (seq, kind, value) pairing is hashed with a key chosen at random for this audit, and
//! the hashes are summed per level-0 tile twice: from the entries (during the leaf pass, on all
//! cores) and from the posting lists (one scan of the index). Equal sums per tile mean equal
//! sets (up to a chance of about 2^-60 per tile, and the key is unknown to whoever damaged the
//! index); for the first tile that differs, the exact sets are compared to name the difference.
//!
//! The hash is a polynomial in the key over the prime field 2^61 - 1 (kind, then the value in
//! 7-byte words, its length, then the seq: distinct pairings give distinct polynomials, which
//! agree at a random key with probability at most their degree / 2^61), passed through the
//! splitmix64 finalizer so that sums of different sets do not cancel linearly. It is several
//! times cheaper than SipHash on short values, and the per-list part is computed once per
//! posting list.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};

/// The Mersenne prime 2^61 - 1.
const P: u64 = (1 << 61) - 1;

/// `a * b mod P` for `a, b < P`.
fn mul_mod(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    let s = (r as u64 & P) + (r >> 61) as u64;
    if s >= P { s - P } else { s }
}

/// `a + b mod P` for `a < P` and any `b < 2^62`.
fn add_mod(a: u64, b: u64) -> u64 {
    let s = a + (b & P) + (b >> 61);
    let s = (s & P) + (s >> 61);
    if s >= P { s - P } else { s }
}

use crate::error::VerifyError;
use crate::log::view::View;
use crate::record::NewEntry;
use crate::store::keys::{self, IndexKind};
use crate::store::postings::{decode_postings, for_each_index};
use crate::store::scan;
use crate::tile::TILE_WIDTH;

/// The keyed hash of this audit: its key, a random point of the field.
pub(super) struct IndexDigest {
    key: u64,
}

impl IndexDigest {
    pub(super) fn new() -> Self {
        // std's RandomState is seeded from the OS's randomness.
        let random = RandomState::new().hash_one(0x006f_6e6f_616c_u64);
        Self { key: 2 + random % (P - 2) }
    }

    /// The polynomial of one (kind, value) up to the seq: computed once per posting list.
    fn value(&self, kind: IndexKind, value: &str) -> u64 {
        let mut h = u64::from(kind as u8) + 1;
        for word in value.as_bytes().chunks(7) {
            let mut w = [0u8; 8];
            w[..word.len()].copy_from_slice(word);
            h = add_mod(mul_mod(h, self.key), u64::from_le_bytes(w));
        }
        add_mod(mul_mod(h, self.key), value.len() as u64)
    }

    /// One pairing's digest from its (kind, value) polynomial and its seq.
    fn mix(&self, value: u64, seq: u64) -> u64 {
        let mut z = add_mod(mul_mod(value, self.key), seq);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The sum over the pairings of entry `seq`.
    pub(super) fn entry(&self, seq: u64, content: &NewEntry) -> u64 {
        let mut sum = 0u64;
        for_each_index(content, |kind, value| {
            sum = sum.wrapping_add(self.mix(self.value(kind, value), seq));
        });
        sum
    }
}

/// Calls `f(kind, value, seqs)` for every posting list of the index of the view's log.
fn postings(
    view: &View<'_>,
    mut f: impl FnMut(IndexKind, &str, &[u64]) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let log = view.log.number;
    scan::index_keys(view.store, Some(&view.snapshot), log, |k, v| {
        let (kind, value, first) = keys::parse_index_key(log, k).ok_or_else(|| {
            VerifyError::IndexDamaged(format!("a key of {} bytes does not parse", k.len()))
        })?;
        let seqs = decode_postings(first, v).map_err(|e| {
            VerifyError::IndexDamaged(format!(
                "the list of {} {value:?} at {first}: {e}",
                kind.as_str()
            ))
        })?;
        if seqs.first() != Some(&first) {
            return Err(VerifyError::IndexDamaged(format!(
                "the list of {} {value:?} stored under {first} does not start there",
                kind.as_str()
            )));
        }
        f(kind, value, &seqs)?;
        Ok(true)
    })
}

/// Checks the posting lists of a full log of `size` entries against the per-tile sums of its
/// entries (`entry_sums[t]` for tile `t`).
pub(super) fn check_full(
    view: &View<'_>,
    digest: &IndexDigest,
    entry_sums: &[u64],
) -> Result<(), VerifyError> {
    let size = view.head.size;
    let mut sums = vec![0u64; entry_sums.len()];
    postings(view, |kind, value, seqs| {
        let hash = digest.value(kind, value);
        for &seq in seqs {
            if seq >= size {
                return Err(VerifyError::IndexMismatch {
                    seq,
                    kind: kind.as_str(),
                    value: value.to_owned(),
                    listed: true,
                });
            }
            let t = (seq / TILE_WIDTH as u64) as usize;
            sums[t] = sums[t].wrapping_add(digest.mix(hash, seq));
        }
        Ok(())
    })?;
    match sums.iter().zip(entry_sums).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(t) => {
            let start = t as u64 * TILE_WIDTH as u64;
            Err(locate(view, start, (start + TILE_WIDTH as u64).min(size)))
        }
    }
}

/// Compares the exact pairings of the entries the view holds in `[start, end)` with those the
/// index lists there, and names the first difference.
pub(super) fn locate(view: &View<'_>, start: u64, end: u64) -> VerifyError {
    match exact(view, start, end) {
        Ok(Some(e)) => e,
        Ok(None) => VerifyError::IndexDamaged("the posting lists disagree with the entries".into()),
        Err(e) => e,
    }
}

type Pairing = (u64, &'static str, String);

fn exact(view: &View<'_>, start: u64, end: u64) -> Result<Option<VerifyError>, VerifyError> {
    let mut have: BTreeSet<Pairing> = BTreeSet::new();
    for e in view.scan(start, end)? {
        for_each_index(&e.entry.content, |kind, value| {
            have.insert((e.entry.seq, kind.as_str(), value.to_owned()));
        });
    }
    let mut listed: BTreeSet<Pairing> = BTreeSet::new();
    postings(view, |kind, value, seqs| {
        for &seq in seqs.iter().filter(|s| (start..end).contains(s)) {
            listed.insert((seq, kind.as_str(), value.to_owned()));
        }
        Ok(())
    })?;
    let extra = listed.difference(&have).next().map(|p| (p, true));
    let missing = have.difference(&listed).next().map(|p| (p, false));
    let first = match (extra, missing) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    Ok(first.map(|((seq, kind, value), listed)| VerifyError::IndexMismatch {
        seq: *seq,
        kind,
        value: value.clone(),
        listed,
    }))
}

/// Checks the index of a sparse replica (small: compared exactly).
pub(super) fn check_sparse(view: &View<'_>) -> Result<(), VerifyError> {
    match exact(view, 0, u64::MAX)? {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(d: &IndexDigest, pairings: &[(u64, IndexKind, &str)]) -> u64 {
        pairings
            .iter()
            .fold(0u64, |s, &(seq, kind, value)| s.wrapping_add(d.mix(d.value(kind, value), seq)))
    }

    #[test]
    fn equal_sets_sum_equal_and_changed_sets_do_not() {
        use IndexKind::{EntryType, Stream};
        let d = IndexDigest::new();
        let set = [(1, Stream, "orders"), (2, Stream, "invoices"), (2, EntryType, "created")];
        let reordered = [set[2], set[0], set[1]];
        assert_eq!(sum(&d, &set), sum(&d, &reordered));
        // Values swapped between seqs (a linear hash would miss this), a seq moved, a value
        // changed by one byte, a kind changed, a pairing dropped, a pairing doubled, and values
        // that differ only in zero padding of the last word.
        let changed: [&[(u64, IndexKind, &str)]; 7] = [
            &[(2, Stream, "orders"), (1, Stream, "invoices"), (2, EntryType, "created")],
            &[(3, Stream, "orders"), (2, Stream, "invoices"), (2, EntryType, "created")],
            &[(1, Stream, "orderz"), (2, Stream, "invoices"), (2, EntryType, "created")],
            &[(1, EntryType, "orders"), (2, Stream, "invoices"), (2, EntryType, "created")],
            &[(1, Stream, "orders"), (2, Stream, "invoices")],
            &[
                (1, Stream, "orders"),
                (1, Stream, "orders"),
                (2, Stream, "invoices"),
                (2, EntryType, "created"),
            ],
            &[(1, Stream, "orders\0"), (2, Stream, "invoices"), (2, EntryType, "created")],
        ];
        for c in changed {
            assert_ne!(sum(&d, &set), sum(&d, c), "{c:?}");
        }
    }

    #[test]
    fn field_arithmetic_stays_reduced() {
        let big = P - 1;
        assert_eq!(mul_mod(big, big), 1); // (-1)^2
        assert_eq!(add_mod(big, 1), 0);
        assert_eq!(add_mod(0, u64::MAX), u64::MAX % P);
        assert!(mul_mod(big, 2) < P);
    }
}
