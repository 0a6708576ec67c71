//! The canonical encoding of an entry (leaf data): `0x01 || postcard(EntryV1)`, the caller's
//! content first and the sequencer's fields (`seq`, `timestamp_ms`, `prev_hash`) last, so the
//! SHA-256 state over the content is computed before the entry is sequenced
//! ([`PreparedEntry`]). Decoding accepts only bytes that re-encode to themselves.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    Entry, EntryRef, InvalidInput, IssuerSignature, LEAF_VERSION_1, MAX_DECODE_PAYLOAD, MAX_REFS,
    Name, NewEntry, Oid,
};
use crate::hash::{Hash, leaf_hash};

/// Stored or received leaf data that is not a valid version-1 entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Empty input.
    #[error("leaf data is empty")]
    Empty,
    /// A version byte this build does not know.
    #[error("leaf data has version {0}; this build reads version 1 only: upgrade onoal")]
    UnknownVersion(u8),
    /// Postcard could not parse the body.
    #[error("leaf data does not parse: {0}")]
    Malformed(String),
    /// The body parses but a field breaks a rule (name, OID, limits).
    #[error("leaf data holds an invalid field: {0}")]
    InvalidField(InvalidInput),
    /// Bytes after the entry.
    #[error("leaf data has {0} bytes after the entry")]
    TrailingBytes(usize),
    /// Parses, but is not the canonical encoding of what it parses to.
    #[error("leaf data is not in canonical encoding")]
    NotCanonical,
}

mod fixed64 {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::ser::SerializeTuple;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(64)?;
        for b in v {
            t.serialize_element(b)?;
        }
        t.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = [u8; 64];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; 64], A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(64, V)
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct SignatureWire {
    public_key: [u8; 32],
    #[serde(with = "fixed64")]
    signature: [u8; 64],
}

#[derive(Serialize)]
pub(super) struct SignedContentWire<'a> {
    stream: &'a str,
    entry_type: &'a str,
    subject: Option<&'a str>,
    issuer: Option<&'a str>,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
    refs: &'a [EntryRef],
}

/// Fields 1-7 of `EntryV1`: everything the caller gives. Postcard writes a nested struct as
/// its fields in order, so this is fields 1-6 (what the issuer signs) then the signature.
#[derive(Serialize)]
pub(super) struct ContentWire<'a> {
    signed: SignedContentWire<'a>,
    signature: Option<SignatureWire>,
}

#[derive(Deserialize)]
struct EntryV1Wire<'a> {
    #[serde(borrow)]
    stream: &'a str,
    #[serde(borrow)]
    entry_type: &'a str,
    #[serde(borrow)]
    subject: Option<&'a str>,
    #[serde(borrow)]
    issuer: Option<&'a str>,
    #[serde(with = "serde_bytes", borrow)]
    payload: &'a [u8],
    refs: Vec<EntryRef>,
    signature: Option<SignatureWire>,
    seq: u64,
    timestamp_ms: u64,
    prev_hash: [u8; 32],
}

impl NewEntry {
    pub(super) fn signed_wire(&self) -> SignedContentWire<'_> {
        SignedContentWire {
            stream: self.stream.as_str(),
            entry_type: self.entry_type.as_str(),
            subject: self.subject.as_ref().map(Oid::as_str),
            issuer: self.issuer.as_ref().map(Oid::as_str),
            payload: &self.payload,
            refs: &self.refs,
        }
    }

    pub(super) fn content_wire(&self) -> ContentWire<'_> {
        ContentWire {
            signed: self.signed_wire(),
            signature: self
                .signature
                .map(|s| SignatureWire { public_key: s.public_key, signature: s.signature }),
        }
    }

    /// Encodes the content (`0x01 || fields 1-7`) and hashes it as far as SHA-256 can go
    /// without the fields the sequencer assigns.
    pub fn prepare(self) -> PreparedEntry {
        let mut encoded = Vec::with_capacity(self.payload.len() + 64);
        encoded.push(LEAF_VERSION_1);
        encoded = postcard::to_extend(&self.content_wire(), encoded)
            .expect("postcard serialises strings, bytes and integers into a Vec without error");
        let mut midstate = ring::digest::Context::new(&ring::digest::SHA256);
        midstate.update(&[0x00]);
        midstate.update(&encoded);
        PreparedEntry { content: self, encoded, midstate }
    }
}

/// An entry whose content is encoded and whose leaf hash is computed up to the sequencer's
/// fields.
#[derive(Clone)]
pub struct PreparedEntry {
    /// The content.
    pub content: NewEntry,
    encoded: Vec<u8>,
    midstate: ring::digest::Context,
}

impl fmt::Debug for PreparedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedEntry").field("content", &self.content).finish_non_exhaustive()
    }
}

/// Appends `value` as an unsigned LEB128 varint (postcard's encoding of u64).
pub(crate) fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

impl PreparedEntry {
    /// Payload length.
    pub fn payload_len(&self) -> usize {
        self.content.payload.len()
    }

    /// Length of the leaf data [`Self::seal`] writes, at most (the seq and time varints at
    /// their longest).
    pub fn leaf_len_max(&self) -> usize {
        self.encoded.len() + 2 * 10 + 32
    }

    /// Completes the entry: writes its leaf data into `leaf_data` (cleared first) and returns
    /// its leaf hash.
    pub fn seal(
        &self,
        seq: u64,
        timestamp_ms: u64,
        prev_hash: &Hash,
        leaf_data: &mut Vec<u8>,
    ) -> Hash {
        leaf_data.clear();
        leaf_data.extend_from_slice(&self.encoded);
        let suffix_at = leaf_data.len();
        push_varint(leaf_data, seq);
        push_varint(leaf_data, timestamp_ms);
        leaf_data.extend_from_slice(&prev_hash.0);
        let mut ctx = self.midstate.clone();
        ctx.update(&leaf_data[suffix_at..]);
        let digest = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Hash(out)
    }
}

impl Entry {
    /// The canonical leaf data: version byte then postcard (docs/format.md).
    pub fn leaf_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.payload.len() + 128);
        out.push(LEAF_VERSION_1);
        out = postcard::to_extend(&self.content.content_wire(), out)
            .expect("postcard serialises strings, bytes and integers into a Vec without error");
        push_varint(&mut out, self.seq);
        push_varint(&mut out, self.timestamp_ms);
        out.extend_from_slice(&self.prev_hash.0);
        out
    }

    /// RFC 9162 leaf hash of [`Self::leaf_data`].
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.leaf_data())
    }

    /// Parses canonical leaf data.
    ///
    /// # Errors
    /// [`DecodeError`] for an unknown version, malformed or non-canonical bytes, invalid
    /// fields or trailing bytes. Never panics.
    pub fn decode(leaf_data: &[u8]) -> Result<Self, DecodeError> {
        let (&version, body) = leaf_data.split_first().ok_or(DecodeError::Empty)?;
        if version != LEAF_VERSION_1 {
            return Err(DecodeError::UnknownVersion(version));
        }
        let (wire, rest): (EntryV1Wire<'_>, _) =
            postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        if wire.payload.len() > MAX_DECODE_PAYLOAD {
            return Err(DecodeError::InvalidField(InvalidInput::PayloadTooLarge {
                len: wire.payload.len(),
                max: MAX_DECODE_PAYLOAD,
            }));
        }
        if wire.refs.len() > MAX_REFS {
            return Err(DecodeError::InvalidField(InvalidInput::TooManyRefs {
                count: wire.refs.len(),
            }));
        }
        let opt_oid = |s: Option<&str>| s.map(Oid::parse).transpose();
        let content = NewEntry {
            stream: Name::stream(wire.stream).map_err(DecodeError::InvalidField)?,
            entry_type: Name::entry_type(wire.entry_type).map_err(DecodeError::InvalidField)?,
            subject: opt_oid(wire.subject).map_err(DecodeError::InvalidField)?,
            issuer: opt_oid(wire.issuer).map_err(DecodeError::InvalidField)?,
            payload: wire.payload.to_vec(),
            refs: wire.refs,
            signature: wire
                .signature
                .map(|s| IssuerSignature { public_key: s.public_key, signature: s.signature }),
        };
        let entry = Self {
            seq: wire.seq,
            timestamp_ms: wire.timestamp_ms,
            content,
            prev_hash: Hash(wire.prev_hash),
        };
        if entry.leaf_data() != leaf_data {
            return Err(DecodeError::NotCanonical);
        }
        Ok(entry)
    }
}
