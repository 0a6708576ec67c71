//! A consistent read view of one log: a RocksDB snapshot and the head record it holds. Entry
//! reads, ranges, queries and the audit use it; proofs up to the durable size do not need one.

use super::proofs::ProofSource;
use super::state::LogState;
use crate::error::ReadError;
use crate::hash::{Hash, empty_root, leaf_hash};
use crate::merkle;
use crate::record::Entry;
use crate::store::keys::{self, Cf, HeadRecord};
use crate::store::{Snapshot, Store, scan};
use crate::tile::TileId;

/// An entry read back, with its exact leaf bytes and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// The decoded entry.
    pub entry: Entry,
    /// The bytes hashed as the RFC 9162 leaf.
    pub leaf_data: Vec<u8>,
    /// `SHA-256(0x00 || leaf_data)`.
    pub leaf_hash: Hash,
}

/// Decodes stored leaf data found under `seq`.
pub(crate) fn decode_stored(seq: u64, leaf_data: Vec<u8>) -> Result<StoredEntry, ReadError> {
    let entry =
        Entry::decode(&leaf_data).map_err(|e| ReadError::Corrupt(format!("entry {seq}: {e}")))?;
    if entry.seq != seq {
        return Err(ReadError::Corrupt(format!("entry stored at {seq} claims seq {}", entry.seq)));
    }
    let leaf_hash = leaf_hash(&leaf_data);
    Ok(StoredEntry { entry, leaf_data, leaf_hash })
}

/// A consistent snapshot of one log.
pub(crate) struct View<'a> {
    pub(crate) store: &'a Store,
    pub(crate) log: &'a LogState,
    pub(crate) snapshot: Snapshot<'a>,
    pub(crate) head: HeadRecord,
}

impl<'a> View<'a> {
    pub(crate) fn new(store: &'a Store, log: &'a LogState) -> Result<Self, ReadError> {
        let snapshot = store.snapshot();
        let head = store
            .get_at(&snapshot, Cf::Meta, &keys::head_key(log.number))?
            .and_then(|b| HeadRecord::decode(&b))
            .ok_or_else(|| ReadError::Corrupt("head record missing or malformed".into()))?;
        Ok(Self { store, log, snapshot, head })
    }

    pub(crate) fn tile_bytes(&self, id: TileId) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.store.get_at(&self.snapshot, Cf::Tiles, &keys::tile_key(self.log.number, id))?)
    }

    /// Root of the tree of `size` leaves (at most the snapshot's head).
    pub(crate) fn root(&self, size: u64) -> Result<Hash, ReadError> {
        if size == 0 {
            return Ok(empty_root());
        }
        // Hashes of complete subtrees never change and tiles only grow, so the current tiles
        // serve any size this snapshot holds.
        merkle::root(size, &mut ProofSource::new(self.store, self.log))
    }

    /// The stored entry at `seq`, if any.
    pub(crate) fn stored(&self, seq: u64) -> Result<Option<StoredEntry>, ReadError> {
        match self.store.get_at(
            &self.snapshot,
            Cf::Entries,
            &keys::entry_key(self.log.number, seq),
        )? {
            None => Ok(None),
            Some(data) => decode_stored(seq, data).map(Some),
        }
    }

    /// The entry at `seq`, which must be stored.
    pub(crate) fn entry(&self, seq: u64) -> Result<StoredEntry, ReadError> {
        self.stored(seq)?.ok_or_else(|| ReadError::Corrupt(format!("entry {seq} is missing")))
    }

    /// Entries `[start, end)`, every one of which must be stored.
    pub(crate) fn range(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ReadError> {
        (start..end).map(|s| self.entry(s)).collect()
    }

    /// The stored entries in `[start, end)`, in seq order (gaps allowed).
    pub(crate) fn scan(&self, start: u64, end: u64) -> Result<Vec<StoredEntry>, ReadError> {
        let mut out = Vec::new();
        scan::entries(self.store, Some(&self.snapshot), self.log.number, start, end, |seq, v| {
            out.push(decode_stored(seq, v.to_vec())?);
            Ok::<_, ReadError>(true)
        })?;
        Ok(out)
    }

    fn timestamp(&self, seq: u64) -> Result<u64, ReadError> {
        Ok(self.entry(seq)?.entry.timestamp_ms)
    }

    /// First seq in `[lo, hi)` whose timestamp is >= `ts` (timestamps never decrease with seq).
    pub(crate) fn first_seq_at_or_after(
        &self,
        ts: u64,
        mut lo: u64,
        mut hi: u64,
    ) -> Result<u64, ReadError> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.timestamp(mid)? < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }
}
