//! SHA-256 and the RFC 9162 hash domains (leaf = 0x00, node = 0x01).
//!
//! Hashing goes through `ring`, whose assembly uses SHA-NI where the CPU has it and tuned
//! AVX2/SSSE3 code where it does not (about 2x the portable `sha2` crate on a CPU without
//! SHA-NI; see docs/design/hashing.md).

use std::fmt;

/// Size of a SHA-256 hash in bytes.
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash in the Merkle tree: a leaf hash, an interior node hash or a root.
///
/// Serialized (postcard, wire and sync state) as its 32 bytes, no length prefix.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Hash(pub [u8; HASH_LEN]);

impl Hash {
    /// 32 zero bytes: the `prev_hash` of entry 0.
    pub const ZERO: Self = Self([0; HASH_LEN]);

    /// The bytes of the hash.
    pub fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// Reads a hash from exactly 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; HASH_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// Parses 64 lowercase or uppercase hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; HASH_LEN];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Standard base64 with padding, as in C2SP checkpoints.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// The first 8 hex digits, for logs.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let digest = ctx.finish();
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(digest.as_ref());
    Hash(out)
}

/// RFC 9162 leaf hash: SHA-256(0x00 || leaf_data).
pub fn leaf_hash(leaf_data: &[u8]) -> Hash {
    sha256(&[&[0x00], leaf_data])
}

/// RFC 9162 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    sha256(&[&buf])
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    sha256(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leaf_and_node_domains_differ() {
        let l = leaf_hash(b"x");
        assert_ne!(l, sha256(&[b"x"]));
        assert_eq!(node_hash(&l, &l), sha256(&[&[1], &l.0, &l.0]));
    }

    #[test]
    fn hex_round_trip_and_bad_input() {
        let h = leaf_hash(b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
        assert_eq!(Hash::from_slice(&[0; 31]), None);
    }
}
