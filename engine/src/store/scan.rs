//! Typed range scans shared by the read side, the writers and the audit: the entries of a log,
//! its checkpoints, its posting lists, and the replica directory.

use super::keys::{self, Cf, IndexKind};
use super::postings::decode_postings;
use super::{Snapshot, Store, StoreError};
use crate::error::ReadError;
use crate::ids::LedgerId;

/// Calls `f(seq, leaf data)` for every stored entry of `log` in `[start, end)`, in seq order
/// (gaps are skipped: callers that need every entry check the seqs). `f` returns `Ok(false)`
/// to stop.
///
/// # Errors
/// Storage errors, or `f`'s.
pub(crate) fn entries<E: From<StoreError>>(
    store: &Store,
    at: Option<&Snapshot<'_>>,
    log: u32,
    start: u64,
    end: u64,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool, E>,
) -> Result<(), E> {
    if start >= end {
        return Ok(());
    }
    let from = keys::entry_key(log, start);
    let until = keys::entry_key(log, end);
    store.visit(at, Cf::Entries, &from, Some(&until), |k, v| match keys::entry_key_seq(log, k) {
        Some(seq) => f(seq, v),
        None => Ok(false),
    })
}

/// Calls `f` with the leaf data of every entry of `log` in `[start, end)`, in order, and
/// checks that none is missing. Returns how many were visited (`end - start`).
///
/// # Errors
/// A missing entry (the log is damaged), storage errors.
pub(crate) fn contiguous_entries(
    store: &Store,
    at: Option<&Snapshot<'_>>,
    log: u32,
    start: u64,
    end: u64,
    mut f: impl FnMut(&[u8]),
) -> Result<u64, ReadError> {
    let mut expected = start;
    entries(store, at, log, start, end, |seq, v| {
        if seq != expected {
            return Err(ReadError::Corrupt(format!("entry {expected} is missing")));
        }
        f(v);
        expected += 1;
        Ok(true)
    })?;
    if expected < end {
        return Err(ReadError::Corrupt(format!("entry {expected} is missing")));
    }
    Ok(end.saturating_sub(start))
}

/// Calls `f(size, note bytes)` for every stored checkpoint of `log`, by size.
///
/// # Errors
/// Storage errors, or `f`'s.
pub(crate) fn checkpoints<E: From<StoreError>>(
    store: &Store,
    at: Option<&Snapshot<'_>>,
    log: u32,
    mut f: impl FnMut(u64, &[u8]) -> Result<bool, E>,
) -> Result<(), E> {
    let from = keys::checkpoint_key(log, 0);
    let until = keys::log_end(log);
    store.visit(at, Cf::Checkpoints, &from, Some(&until), |k, v| {
        match keys::entry_key_seq(log, k) {
            Some(size) => f(size, v),
            None => Ok(false),
        }
    })
}

/// The stored checkpoint of `log` with the largest size not above `size`: (size, note bytes).
///
/// # Errors
/// Storage errors.
pub(crate) fn latest_checkpoint_at_most(
    store: &Store,
    at: Option<&Snapshot<'_>>,
    log: u32,
    size: u64,
) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    let upper = keys::checkpoint_key(log, size);
    Ok(store
        .last_at_or_before(at, Cf::Checkpoints, &upper, &log.to_be_bytes())?
        .and_then(|(k, v)| keys::entry_key_seq(log, &k).map(|s| (s, v))))
}

/// Calls `f(seq)` for every seq in `range` that the posting lists of `(kind, value)` of `log`
/// hold, in seq order. `f` returns `Ok(false)` to stop.
///
/// # Errors
/// A damaged posting list, storage errors, or `f`'s.
pub(crate) fn postings(
    store: &Store,
    at: &Snapshot<'_>,
    log: u32,
    (kind, value): (IndexKind, &str),
    range: std::ops::Range<u64>,
    mut f: impl FnMut(u64) -> Result<bool, ReadError>,
) -> Result<(), ReadError> {
    let (lo, hi) = (range.start, range.end);
    // No stored entry has a value this long: nothing matches.
    let Some(prefix) = keys::index_prefix(log, kind, value) else { return Ok(()) };
    let mut start = prefix.clone();
    start.extend_from_slice(&lo.to_be_bytes());
    // The posting list holding `lo` starts at or before it: step back one key.
    let from = match store.last_at_or_before(Some(at), Cf::Index, &start, &prefix)? {
        Some((k, _)) if k.len() == prefix.len() + 8 => k,
        _ => start,
    };
    store.visit(Some(at), Cf::Index, &from, None, |k, v| {
        let Some(seq_bytes) = k.strip_prefix(prefix.as_slice()) else { return Ok(false) };
        let first = <[u8; 8]>::try_from(seq_bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| ReadError::Corrupt("index key of wrong length".into()))?;
        if first >= hi {
            return Ok(false);
        }
        let seqs =
            decode_postings(first, v).map_err(|e| ReadError::Corrupt(format!("index: {e}")))?;
        for seq in seqs.into_iter().filter(|s| (lo..hi).contains(s)) {
            if !f(seq)? {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// Calls `f(key, posting list bytes)` for every index key of `log`, in key order.
///
/// # Errors
/// Storage errors, or `f`'s.
pub(crate) fn index_keys<E: From<StoreError>>(
    store: &Store,
    at: Option<&Snapshot<'_>>,
    log: u32,
    f: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
) -> Result<(), E> {
    let from = log.to_be_bytes();
    let until = keys::log_end(log);
    store.visit(at, Cf::Index, &from, Some(&until), f)
}

/// Calls `f(ledger id, value)` for every replica of one kind in the log directory.
///
/// # Errors
/// Storage errors, or `f`'s.
pub(crate) fn directory<E: From<StoreError>>(
    store: &Store,
    kind: keys::Kind,
    mut f: impl FnMut(Option<LedgerId>, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let prefix = keys::directory_prefix(kind);
    store.visit(None, Cf::Meta, prefix, None, |k, v| {
        let Some(id) = k.strip_prefix(prefix) else { return Ok(false) };
        f(LedgerId::from_slice(id), v)?;
        Ok(true)
    })
}
