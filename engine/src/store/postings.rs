//! Index posting lists: for each (kind, value), the seqs of one group that have it, written as
//! one key per (kind, value) per group: `log || kind || len || value || first seq` -> varint
//! deltas (first delta 0). An index thus costs one RocksDB key per group and distinct value,
//! not one per entry.

use std::collections::HashMap;

use super::keys::IndexKind;
use crate::record::{NewEntry, push_varint};

/// The postings of one group (or one replica commit), built in seq order.
#[derive(Default)]
pub(crate) struct Postings {
    lists: HashMap<Vec<u8>, Vec<u64>>,
    key: Vec<u8>,
}

impl Postings {
    /// Records that entry `seq` has `value` under `kind`. Seqs must be added in increasing
    /// order. A value longer than 255 bytes (which no checked name or OID is) is not indexed.
    pub(crate) fn add(&mut self, kind: IndexKind, value: &str, seq: u64) {
        let Ok(len) = u8::try_from(value.len()) else { return };
        self.key.clear();
        self.key.push(kind as u8);
        self.key.push(len);
        self.key.extend_from_slice(value.as_bytes());
        match self.lists.get_mut(self.key.as_slice()) {
            Some(list) => list.push(seq),
            None => {
                self.lists.insert(self.key.clone(), vec![seq]);
            }
        }
    }

    /// Records entry `seq` under every index it has: stream, type, and subject and issuer when
    /// present.
    pub(crate) fn add_entry(&mut self, seq: u64, content: &NewEntry) {
        for_each_index(content, |kind, value| self.add(kind, value, seq));
    }

    /// The keys and values to write for `log`.
    pub(crate) fn finish(self, log: u32) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
        self.lists.into_iter().map(move |(kind_value, seqs)| {
            let mut key = Vec::with_capacity(4 + kind_value.len() + 8);
            key.extend_from_slice(&log.to_be_bytes());
            key.extend_from_slice(&kind_value);
            // Every list holds at least the seq that created it.
            let first = seqs[0];
            key.extend_from_slice(&first.to_be_bytes());
            let mut value = Vec::with_capacity(seqs.len() * 2);
            let mut prev = first;
            for s in seqs {
                push_varint(&mut value, s - prev);
                prev = s;
            }
            (key, value)
        })
    }
}

/// Calls `f` with every (kind, value) an entry is indexed under.
pub(crate) fn for_each_index(content: &NewEntry, mut f: impl FnMut(IndexKind, &str)) {
    f(IndexKind::Stream, content.stream.as_str());
    f(IndexKind::EntryType, content.entry_type.as_str());
    if let Some(s) = &content.subject {
        f(IndexKind::Subject, s.as_str());
    }
    if let Some(s) = &content.issuer {
        f(IndexKind::Issuer, s.as_str());
    }
}

/// Decodes a posting list stored under first seq `first`.
#[allow(unreachable_pub, reason = "re-exported to the fuzz targets under cfg(fuzzing)")]
///
/// # Errors
/// A truncated or overlong varint, or seqs past `u64::MAX`.
pub fn decode_postings(first: u64, mut bytes: &[u8]) -> Result<Vec<u64>, &'static str> {
    let mut out = Vec::new();
    let mut prev = first;
    while !bytes.is_empty() {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let (&b, rest) = bytes.split_first().ok_or("truncated posting list")?;
            bytes = rest;
            if shift >= 64 {
                return Err("overlong varint in posting list");
            }
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        prev = prev.checked_add(v).ok_or("posting list overflows")?;
        out.push(prev);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_round_trip_and_reject_damage() {
        let mut p = Postings::default();
        for s in [5u64, 6, 300, 100_000] {
            p.add(IndexKind::Stream, "orders", s);
        }
        p.add(IndexKind::Subject, "oid:x", 6);
        let mut rows: Vec<_> = p.finish(0).collect();
        rows.sort();
        assert_eq!(rows.len(), 2);
        let (key, value) = &rows[0];
        assert_eq!(&key[..6], &[0, 0, 0, 0, b's', 6]);
        let first = u64::from_be_bytes(key[key.len() - 8..].try_into().unwrap());
        assert_eq!(first, 5);
        assert_eq!(decode_postings(first, value).unwrap(), vec![5, 6, 300, 100_000]);
        assert!(decode_postings(first, &[0x80]).is_err());
        assert!(decode_postings(first, &[0xff; 11]).is_err());
        assert!(decode_postings(u64::MAX, &[1]).is_err());
    }
}
