//! RocksDB layout: column families, key encodings, open modes. The only module that names
//! RocksDB types besides the ledger's read and write paths; docs/format.md draws every key.

#[cfg(feature = "storage")]
use std::path::Path;

#[cfg(feature = "storage")]
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, DBCompressionType, Options};

use crate::hash::Hash;
use crate::tile::TileId;

/// Column families, as in DESIGN.md. Every key of a per-log family starts with the 4-byte
/// local log number.
pub const CF_META: &str = "meta";
/// `log || seq` -> leaf data.
pub const CF_ENTRIES: &str = "entries";
/// `log || tile level || tile index` -> tile hashes.
pub const CF_TILES: &str = "tiles";
/// `log || kind || len || key || first seq` -> the group's matching seqs (posting list).
pub const CF_INDEX: &str = "index";
/// `log || tree size` -> signed checkpoint note.
pub const CF_CHECKPOINTS: &str = "checkpoints";
/// Replica log number -> postcard `SyncRecord` (see `replica`).
pub const CF_SYNC_STATE: &str = "sync_state";
/// Column families reserved for the mesh; created now so the layout never changes.
pub const CF_MESH: [&str; 6] =
    ["peers", "connections", "routing", "trust", "messages", "sync_state"];

/// Schema version written at creation; opening another version is refused.
pub const SCHEMA_VERSION: u32 = 1;
/// Local log number of the ledger's own log.
pub const OWN_LOG: u32 = 0;

/// Meta key of the schema version (u32 BE).
pub const META_SCHEMA: &[u8] = b"schema_version";
/// Meta key of the identity record.
pub const META_IDENTITY: &[u8] = b"identity";

/// Index kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IndexKind {
    /// By stream name.
    Stream = b's',
    /// By entry type.
    EntryType = b't',
    /// By subject OID.
    Subject = b'u',
    /// By issuer OID.
    Issuer = b'i',
}

/// Meta key of a log's head record.
pub fn head_key(log: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(b"head");
    k[4..].copy_from_slice(&log.to_be_bytes());
    k
}

/// `log || seq`.
pub fn entry_key(log: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&log.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Sequence number of an entry key of `log`, if it is one.
pub fn entry_key_seq(log: u32, key: &[u8]) -> Option<u64> {
    if key.len() != 12 || key[..4] != log.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(key[4..].try_into().ok()?))
}

/// `log || level || index`.
pub fn tile_key(log: u32, tile: TileId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..4].copy_from_slice(&log.to_be_bytes());
    k[4] = tile.level;
    k[5..].copy_from_slice(&tile.index.to_be_bytes());
    k
}

/// `log || size`.
pub fn checkpoint_key(log: u32, size: u64) -> [u8; 12] {
    entry_key(log, size)
}

/// Prefix of one index key: `log || kind || len(value) || value`. Values are at most 255 bytes.
pub fn index_prefix(log: u32, kind: IndexKind, value: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + value.len() + 8);
    k.extend_from_slice(&log.to_be_bytes());
    k.push(kind as u8);
    // Names are <= 128 bytes and OIDs <= 255 bytes, checked at construction.
    k.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(value.as_bytes());
    k
}

/// Index postings of one group: for each (kind, value), the seqs of the group that have it.
/// Written as one key per (kind, value) per group: `prefix || first seq` -> varint deltas
/// (first delta 0), so an index costs one RocksDB key per group and distinct value, not one
/// per entry.
#[derive(Default)]
pub struct Postings {
    lists: std::collections::HashMap<Vec<u8>, Vec<u64>>,
    key: Vec<u8>,
}

impl Postings {
    /// Records that entry `seq` has `value` under `kind`. Seqs must be added in increasing order.
    pub fn add(&mut self, kind: IndexKind, value: &str, seq: u64) {
        self.key.clear();
        self.key.push(kind as u8);
        // Names are <= 128 bytes and OIDs <= 255 bytes, checked at construction.
        self.key.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
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
    pub fn add_entry(&mut self, seq: u64, content: &crate::record::NewEntry) {
        self.add(IndexKind::Stream, content.stream.as_str(), seq);
        self.add(IndexKind::EntryType, content.entry_type.as_str(), seq);
        if let Some(s) = &content.subject {
            self.add(IndexKind::Subject, s.as_str(), seq);
        }
        if let Some(s) = &content.issuer {
            self.add(IndexKind::Issuer, s.as_str(), seq);
        }
    }

    /// The keys and values to write for `log`.
    pub fn finish(self, log: u32) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> {
        self.lists.into_iter().map(move |(kind_value, seqs)| {
            let mut key = Vec::with_capacity(4 + kind_value.len() + 8);
            key.extend_from_slice(&log.to_be_bytes());
            key.extend_from_slice(&kind_value);
            key.extend_from_slice(&seqs[0].to_be_bytes());
            let mut value = Vec::with_capacity(seqs.len() * 2);
            let mut prev = seqs[0];
            for s in seqs {
                push_varint(&mut value, s - prev);
                prev = s;
            }
            (key, value)
        })
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a posting list stored under first seq `first`.
///
/// # Errors
/// A truncated or overlong varint.
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

/// The head of a log: everything needed to go on appending, read in O(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HeadRecord {
    /// Entries in the log.
    pub size: u64,
    /// Leaf hash of entry `size - 1` (zero when empty).
    pub last_leaf_hash: Hash,
    /// Timestamp of entry `size - 1` (0 when empty).
    pub last_timestamp_ms: u64,
}

impl HeadRecord {
    /// `0x01 || size BE || last leaf hash || last timestamp BE` (49 bytes).
    pub fn encode(&self) -> [u8; 49] {
        let mut out = [0u8; 49];
        out[0] = 1;
        out[1..9].copy_from_slice(&self.size.to_be_bytes());
        out[9..41].copy_from_slice(&self.last_leaf_hash.0);
        out[41..].copy_from_slice(&self.last_timestamp_ms.to_be_bytes());
        out
    }

    /// Parses [`Self::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 49 || bytes[0] != 1 {
            return None;
        }
        Some(Self {
            size: u64::from_be_bytes(bytes[1..9].try_into().ok()?),
            last_leaf_hash: Hash::from_slice(&bytes[9..41])?,
            last_timestamp_ms: u64::from_be_bytes(bytes[41..].try_into().ok()?),
        })
    }
}

/// Every column family of a data directory, in creation order.
pub fn column_families() -> Vec<&'static str> {
    let mut v = vec![CF_META, CF_ENTRIES, CF_TILES, CF_INDEX, CF_CHECKPOINTS];
    v.extend(CF_MESH);
    v
}

/// Opens the RocksDB of a data directory.
#[cfg(feature = "storage")]
pub(crate) fn open_db(
    path: &Path,
    cache_bytes: usize,
    read_only: bool,
) -> Result<DB, rocksdb::Error> {
    let cache = Cache::new_lru_cache(cache_bytes);
    let cf_opts = |name: &str| {
        let mut o = Options::default();
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        o.set_block_based_table_factory(&table);
        // Hashes do not compress; entries and indexes do.
        o.set_compression_type(if name == CF_TILES {
            DBCompressionType::None
        } else {
            DBCompressionType::Lz4
        });
        o.set_write_buffer_size(64 << 20);
        o
    };
    let mut opts = Options::default();
    opts.create_if_missing(!read_only);
    opts.create_missing_column_families(!read_only);
    opts.set_max_background_jobs(2);
    opts.set_keep_log_file_num(4);
    let cfs: Vec<ColumnFamilyDescriptor> =
        column_families().into_iter().map(|n| ColumnFamilyDescriptor::new(n, cf_opts(n))).collect();
    if read_only {
        DB::open_cf_descriptors_read_only(&opts, path, cfs, false)
    } else {
        DB::open_cf_descriptors(&opts, path, cfs)
    }
}

/// True when a RocksDB open error means another process holds the lock.
#[cfg(feature = "storage")]
pub(crate) fn is_lock_error(e: &rocksdb::Error) -> bool {
    let s = e.to_string();
    s.contains("lock file") || s.contains("LOCK") || s.contains("lock hold")
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
