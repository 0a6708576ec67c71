//! Keys of the DHT's 256-bit space and contacts.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;
use onoal_engine::hash::sha256;

use crate::id::PeerId;

/// A point in the DHT's key space: node ids and record keys alike.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// A node's id: SHA-256 of its Ed25519 public key.
    pub fn of_peer(peer: &PeerId) -> Self {
        Self(sha256(&[peer.as_bytes()]).0)
    }

    /// A node's id from its key's bytes.
    pub fn of_node(node: &NodeKey) -> Self {
        Self(sha256(&[&node.0]).0)
    }

    /// Where a ledger's record lives: SHA-256 of the ledger id's text form
    /// (`550e8400-e29b-41d4-a716-446655440000`).
    pub fn of_ledger(ledger: &LedgerId) -> Self {
        Self(sha256(&[ledger.to_string().as_bytes()]).0)
    }

    /// Where the records of an OID prefix live: SHA-256 of the prefix's text
    /// (`oid:onoal:org`).
    pub fn of_oid(prefix: &str) -> Self {
        Self(sha256(&[prefix.as_bytes()]).0)
    }

    /// Where the records of the ledgers claiming a registered asset live: SHA-256 of
    /// `asset:` and the asset's id (`asset:car-17`; OIDs start with `oid:`, so the two never
    /// meet).
    pub fn of_asset(asset: &str) -> Self {
        Self(sha256(&[b"asset:", asset.as_bytes()]).0)
    }

    /// XOR distance.
    pub fn distance(&self, other: &Self) -> Distance {
        let mut d = [0u8; 32];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// The bucket `other` falls in, seen from `self`: the number of leading bits they share
    /// (0..=255); `None` for `self`.
    pub fn bucket_of(&self, other: &Self) -> Option<usize> {
        let d = self.distance(other);
        let zeros = d.leading_zeros();
        (zeros < 256).then_some(zeros)
    }

    /// A key in bucket `bucket` of `self` (shares exactly `bucket` leading bits), the rest from
    /// `random`.
    pub fn in_bucket(&self, bucket: usize, random: [u8; 32]) -> Self {
        let mut out = random;
        for bit in 0..=bucket.min(255) {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let mine = self.0[byte] & mask;
            let value = if bit == bucket { mine ^ mask } else { mine };
            out[byte] = (out[byte] & !mask) | value;
        }
        Self(out)
    }

    /// The first 8 hex digits.
    pub fn fmt_short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.fmt_short())
    }
}

/// An XOR distance; smaller is closer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Distance(pub [u8; 32]);

impl Distance {
    /// Leading zero bits (256 for distance 0).
    pub fn leading_zeros(&self) -> usize {
        let mut zeros = 0;
        for b in self.0 {
            if b == 0 {
                zeros += 8;
            } else {
                return zeros + b.leading_zeros() as usize;
            }
        }
        zeros
    }
}

/// A node's Ed25519 public key as bytes. The DHT does not decompress keys (that costs more
/// than the rest of handling an answer); the transport checks a key when it connects, and a
/// key no one can hold fails that handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey(pub [u8; 32]);

impl NodeKey {
    /// The key of `peer`.
    pub fn of(peer: &PeerId) -> Self {
        Self(*peer.as_bytes())
    }

    /// As a peer id (`None` if not a usable key).
    pub fn peer(&self) -> Option<PeerId> {
        PeerId::from_bytes(&self.0).filter(|p| !p.key().is_weak())
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", hex::encode(&self.0[..4]))
    }
}

/// A node of the DHT: its key (which fixes its id) and where it listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The node's Ed25519 key (the QUIC handshake must present it).
    pub peer: NodeKey,
    /// Its id, SHA-256 of the key.
    pub id: Key,
    /// Its QUIC address.
    pub addr: SocketAddr,
}

impl Contact {
    /// The contact of `peer` at `addr`.
    pub fn new(peer: PeerId, addr: SocketAddr) -> Self {
        let peer = NodeKey::of(&peer);
        Self { peer, id: Key::of_node(&peer), addr }
    }

    /// On the wire.
    pub fn to_wire(&self) -> WireContact {
        WireContact { key: self.peer.0, addr: self.addr }
    }
}

/// A contact on the wire: the id is recomputed by the receiver, never taken from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireContact {
    /// Ed25519 key.
    pub key: [u8; 32],
    /// QUIC address.
    pub addr: SocketAddr,
}

impl WireContact {
    /// The contact (its id recomputed from the key).
    pub fn contact(&self) -> Contact {
        let peer = NodeKey(self.key);
        Contact { peer, id: Key::of_node(&peer), addr: self.addr }
    }
}
