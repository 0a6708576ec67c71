//! Column families and key encodings. Every key of a per-log family starts with the 4-byte
//! local log number (big-endian), so the own log and every replica share one database and one
//! code path. docs/format.md draws every key and value.

use crate::hash::Hash;
use crate::ids::LedgerId;
use crate::tile::TileId;

/// A column family of the data directory's RocksDB (DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Cf {
    /// Schema version, identity, the log directory, head records.
    Meta,
    /// `log || seq` -> leaf data.
    Entries,
    /// `log || tile level || tile index` -> tile hashes.
    Tiles,
    /// `log || kind || len || value || first seq` -> posting list.
    Index,
    /// `log || tree size` -> signed checkpoint note.
    Checkpoints,
    /// Tables the mesh keeps (see [`crate::AuxTable`]).
    Peers,
    /// Connection history.
    Connections,
    /// OID routing table.
    Routing,
    /// Trust edges.
    Trust,
    /// Originated messages.
    Messages,
    /// Replica sync records and sparse replicas' stored proofs.
    SyncState,
    /// What this node witnessed: per log, the newest checkpoint it cosigned; fork evidence.
    Witness,
}

impl Cf {
    /// Position in [`Self::ALL`] (the declaration order).
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// Every column family, in creation order.
    pub(crate) const ALL: [Self; 12] = [
        Self::Meta,
        Self::Entries,
        Self::Tiles,
        Self::Index,
        Self::Checkpoints,
        Self::Peers,
        Self::Connections,
        Self::Routing,
        Self::Trust,
        Self::Messages,
        Self::SyncState,
        Self::Witness,
    ];

    /// The RocksDB name.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Entries => "entries",
            Self::Tiles => "tiles",
            Self::Index => "index",
            Self::Checkpoints => "checkpoints",
            Self::SyncState => "sync_state",
            Self::Peers => "peers",
            Self::Connections => "connections",
            Self::Routing => "routing",
            Self::Trust => "trust",
            Self::Messages => "messages",
            Self::Witness => "witness",
        }
    }
}

/// Schema version written at creation; opening another version is refused.
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// Local log number of the ledger's own log.
pub(crate) const OWN_LOG: u32 = 0;

/// Meta key of the schema version (u32 BE).
pub(crate) const META_SCHEMA: &[u8] = b"schema_version";
/// Meta key of the identity record.
pub(crate) const META_IDENTITY: &[u8] = b"identity";
/// Prefix of the replica directory keys in `meta`: `log/ || ledger id (16 bytes)`.
pub(crate) const LOG_DIRECTORY_PREFIX: &[u8] = b"log/";
/// Prefix of the sparse replica directory keys in `meta`: `sparse/ || ledger id`.
pub(crate) const SPARSE_DIRECTORY_PREFIX: &[u8] = b"sparse/";
/// Prefix of the staging replica directory keys in `meta`: `staging/ || ledger id` (a full
/// sync's new copy, until it has verified and replaces the replica).
pub(crate) const STAGING_DIRECTORY_PREFIX: &[u8] = b"staging/";

/// Which directory a replica is listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A full replica.
    Full,
    /// A sparse replica (filtered syncs).
    Sparse,
    /// A full sync's new copy, not yet the replica.
    Staging,
}

/// Index kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

impl IndexKind {
    /// The kind of a stored key byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b's' => Some(Self::Stream),
            b't' => Some(Self::EntryType),
            b'u' => Some(Self::Subject),
            b'i' => Some(Self::Issuer),
            _ => None,
        }
    }

    /// Lower-case name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::EntryType => "type",
            Self::Subject => "subject",
            Self::Issuer => "issuer",
        }
    }
}

/// Meta key of a log's head record.
pub(crate) fn head_key(log: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(b"head");
    k[4..].copy_from_slice(&log.to_be_bytes());
    k
}

/// `log || seq`.
pub(crate) fn entry_key(log: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&log.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Sequence number of an entry key (or tree size of a checkpoint key) of `log`, if it is one.
pub(crate) fn entry_key_seq(log: u32, key: &[u8]) -> Option<u64> {
    if key.len() != 12 || key[..4] != log.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(key[4..].try_into().ok()?))
}

/// `log || level || index`.
pub(crate) fn tile_key(log: u32, tile: TileId) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..4].copy_from_slice(&log.to_be_bytes());
    k[4] = tile.level;
    k[5..].copy_from_slice(&tile.index.to_be_bytes());
    k
}

/// `log || size`.
pub(crate) fn checkpoint_key(log: u32, size: u64) -> [u8; 12] {
    entry_key(log, size)
}

/// The first key of the next log number: the exclusive end of every per-log range.
pub(crate) fn log_end(log: u32) -> [u8; 4] {
    log.saturating_add(1).to_be_bytes()
}

/// Prefix of one index key: `log || kind || len(value) || value`; `None` for a value longer
/// than 255 bytes, which no stored entry can have (names are at most 128 bytes, OIDs 255).
pub(crate) fn index_prefix(log: u32, kind: IndexKind, value: &str) -> Option<Vec<u8>> {
    let len = u8::try_from(value.len()).ok()?;
    let mut k = Vec::with_capacity(6 + value.len() + 8);
    k.extend_from_slice(&log.to_be_bytes());
    k.push(kind as u8);
    k.push(len);
    k.extend_from_slice(value.as_bytes());
    Some(k)
}

/// Splits an index key of `log` into (kind, value, first seq).
pub(crate) fn parse_index_key(log: u32, key: &[u8]) -> Option<(IndexKind, &str, u64)> {
    let rest = key.strip_prefix(&log.to_be_bytes())?;
    let (&kind, rest) = rest.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if rest.len() != len + 8 {
        return None;
    }
    let value = std::str::from_utf8(&rest[..len]).ok()?;
    let first = u64::from_be_bytes(rest[len..].try_into().ok()?);
    Some((IndexKind::from_byte(kind)?, value, first))
}

/// Directory key of a replica: `log/ || id`, `sparse/ || id` or `staging/ || id`.
pub(crate) fn directory_key(ledger_id: &LedgerId, kind: Kind) -> Vec<u8> {
    let mut k = directory_prefix(kind).to_vec();
    k.extend_from_slice(ledger_id.as_bytes());
    k
}

/// The prefix of one kind's directory keys.
pub(crate) fn directory_prefix(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::Full => LOG_DIRECTORY_PREFIX,
        Kind::Sparse => SPARSE_DIRECTORY_PREFIX,
        Kind::Staging => STAGING_DIRECTORY_PREFIX,
    }
}

/// Key of a replica's sync record in `sync_state`: the log number.
pub(crate) fn sync_state_key(log: u32) -> [u8; 4] {
    log.to_be_bytes()
}

/// Key of a sparse replica's stored proof of `seq`: `log || 'p' || seq` in `sync_state`.
pub(crate) fn proof_key(log: u32, seq: u64) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..4].copy_from_slice(&log.to_be_bytes());
    k[4] = b'p';
    k[5..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The head of a log: everything needed to go on appending, read in O(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[allow(unreachable_pub, reason = "re-exported to the fuzz targets under cfg(fuzzing)")]
pub struct HeadRecord {
    /// Entries in the log.
    pub size: u64,
    /// Leaf hash of entry `size - 1` (zero when empty).
    pub last_leaf_hash: Hash,
    /// Timestamp of entry `size - 1` (0 when empty).
    pub last_timestamp_ms: u64,
}

#[allow(unreachable_pub, reason = "re-exported to the fuzz targets under cfg(fuzzing)")]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_families_are_indexed_in_creation_order() {
        for (i, cf) in Cf::ALL.into_iter().enumerate() {
            assert_eq!(cf.index(), i, "{}", cf.name());
        }
    }

    #[test]
    fn index_keys_round_trip() {
        let mut k = index_prefix(7, IndexKind::Subject, "oid:x:y").unwrap();
        assert_eq!(&k[..6], &[0, 0, 0, 7, b'u', 7]);
        k.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(parse_index_key(7, &k), Some((IndexKind::Subject, "oid:x:y", 42)));
        assert_eq!(parse_index_key(8, &k), None);
        assert_eq!(parse_index_key(7, &k[..k.len() - 1]), None);
        assert_eq!(index_prefix(7, IndexKind::Stream, &"a".repeat(256)), None);
    }

    #[test]
    fn head_records_round_trip() {
        let h = HeadRecord { size: 9, last_leaf_hash: Hash([3; 32]), last_timestamp_ms: 77 };
        assert_eq!(HeadRecord::decode(&h.encode()), Some(h));
        assert_eq!(HeadRecord::decode(&h.encode()[1..]), None);
    }
}
