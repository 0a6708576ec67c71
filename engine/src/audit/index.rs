//! The index audit: the posting lists must list exactly the entries that have each value, no
//! more and no fewer — otherwise queries and filtered syncs silently return wrong pages.
//!
//! Each (seq, kind, value) pairing is hashed with a key chosen at random for this audit
//! (SipHash), and the hashes are summed per level-0 tile twice: from the entries (during the
//! leaf pass, on all cores) and from the posting lists (one scan of the index). Equal sums per
//! tile mean equal sets (up to a 2^-64 chance, and the key is unknown to whoever damaged the
//! index); for the first tile that differs, the exact sets are compared to name the difference.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, RandomState};

use crate::error::VerifyError;
use crate::log::view::View;
use crate::record::NewEntry;
use crate::store::keys::{self, IndexKind};
use crate::store::postings::{decode_postings, for_each_index};
use crate::store::scan;
use crate::tile::TILE_WIDTH;

/// The keyed hash of this audit.
pub(super) struct IndexDigest(RandomState);

impl IndexDigest {
    pub(super) fn new() -> Self {
        Self(RandomState::new())
    }

    fn of(&self, seq: u64, kind: IndexKind, value: &str) -> u64 {
        self.0.hash_one((seq, kind as u8, value))
    }

    /// The sum over the pairings of entry `seq`.
    pub(super) fn entry(&self, seq: u64, content: &NewEntry) -> u64 {
        let mut sum = 0u64;
        for_each_index(content, |kind, value| sum = sum.wrapping_add(self.of(seq, kind, value)));
        sum
    }
}

/// Calls `f(seq, kind, value)` for every pairing the index of the view's log lists.
fn postings(
    view: &View<'_>,
    mut f: impl FnMut(u64, IndexKind, &str) -> Result<(), VerifyError>,
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
        for seq in seqs {
            f(seq, kind, value)?;
        }
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
    postings(view, |seq, kind, value| {
        if seq >= size {
            return Err(VerifyError::IndexMismatch {
                seq,
                kind: kind.as_str(),
                value: value.to_owned(),
                listed: true,
            });
        }
        let t = (seq / TILE_WIDTH as u64) as usize;
        sums[t] = sums[t].wrapping_add(digest.of(seq, kind, value));
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
    postings(view, |seq, kind, value| {
        if (start..end).contains(&seq) {
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
