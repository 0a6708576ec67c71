//! RocksDB layout: column families, key encodings, open modes. The only module that names
//! RocksDB types besides the ledger's read and write paths; docs/format.md draws every key.

use std::path::Path;

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
/// `log || kind || len || key || seq` -> empty.
pub const CF_INDEX: &str = "index";
/// `log || tree size` -> signed checkpoint note.
pub const CF_CHECKPOINTS: &str = "checkpoints";
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

/// Writes a full index key `prefix || seq` into `out` (cleared first).
pub fn write_index_key(out: &mut Vec<u8>, log: u32, kind: IndexKind, value: &str, seq: u64) {
    out.clear();
    out.extend_from_slice(&log.to_be_bytes());
    out.push(kind as u8);
    out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
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

fn all_cfs() -> Vec<&'static str> {
    let mut v = vec![CF_META, CF_ENTRIES, CF_TILES, CF_INDEX, CF_CHECKPOINTS];
    v.extend(CF_MESH);
    v
}

/// Opens the RocksDB of a data directory.
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
        all_cfs().into_iter().map(|n| ColumnFamilyDescriptor::new(n, cf_opts(n))).collect();
    if read_only {
        DB::open_cf_descriptors_read_only(&opts, path, cfs, false)
    } else {
        DB::open_cf_descriptors(&opts, path, cfs)
    }
}

/// True when a RocksDB open error means another process holds the lock.
pub(crate) fn is_lock_error(e: &rocksdb::Error) -> bool {
    let s = e.to_string();
    s.contains("lock file") || s.contains("LOCK") || s.contains("lock hold")
}
