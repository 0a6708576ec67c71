//! Entries and their canonical encoding (leaf data), names and OIDs.
//!
//! `leaf_data = 0x01 || postcard(EntryV1)`; the RFC 9162 leaf hash of an entry is
//! `SHA-256(0x00 || leaf_data)`, and the same hash is the entry's link in the hash chain
//! (entry `n + 1` carries it as `prev_hash`). The caller's content comes first and the fields
//! the sequencer assigns (`seq`, `timestamp_ms`, `prev_hash`) last, so the SHA-256 state over
//! the content is computed on the caller's thread ([`PreparedEntry`]) and the sequencer only
//! hashes the last few bytes of each entry. The byte layout is fixed forever for version 1 and
//! drawn in docs/format.md. Decoding accepts only the canonical encoding: anything that does not
//! re-encode to the same bytes is refused, so one entry has exactly one leaf hash.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hash::{Hash, leaf_hash};

/// Version byte that starts every version-1 leaf.
pub const LEAF_VERSION_1: u8 = 0x01;
/// Longest stream or entry-type name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest OID, in bytes.
pub const MAX_OID_LEN: usize = 255;
/// Most references one entry may carry.
pub const MAX_REFS: usize = 64;
/// Largest payload the decoder accepts from storage or a peer (the append limit is configurable
/// below this; defaults to 1 MiB).
pub const MAX_DECODE_PAYLOAD: usize = 64 << 20;
/// Domain separator for issuer signatures.
const ISSUER_SIGNATURE_CONTEXT: &[u8] = b"onoal entry issuer signature v1\n";

/// An invalid stream name, entry type, OID or entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// A stream or entry type that is empty, too long or has a character outside `[a-z0-9._/-]`.
    #[error("invalid {what} {value:?}: use 1 to 128 characters of a-z, 0-9, '.', '_', '/' and '-'")]
    Name {
        /// "stream" or "entry type".
        what: &'static str,
        /// The rejected text.
        value: String,
    },
    /// An OID not of the form `oid:comp:comp...` with components of `[a-z0-9_-]`.
    #[error(
        "invalid OID {value:?}: write 'oid:' then one or more ':'-separated components of a-z, 0-9, '_' and '-' (at most 255 bytes), e.g. oid:onoal:org:myorg"
    )]
    Oid {
        /// The rejected text.
        value: String,
    },
    /// A payload over the ledger's limit.
    #[error(
        "payload of {len} bytes is over this ledger's limit of {max} bytes; split it, or raise the limit when opening the ledger"
    )]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// More references than an entry may carry.
    #[error("entry has {count} references; at most {MAX_REFS} are allowed")]
    TooManyRefs {
        /// Number given.
        count: usize,
    },
    /// The issuer signature does not verify over the entry's content.
    #[error(
        "the issuer signature does not verify over this entry's content; sign the entry again with the issuer's key"
    )]
    BadIssuerSignature,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'/' | b'-'))
}

/// A stream name or entry type: 1..=128 bytes of `[a-z0-9._/-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates a stream name.
    ///
    /// # Errors
    /// [`InvalidInput::Name`] when empty, longer than 128 bytes or with another character.
    pub fn stream(s: &str) -> Result<Self, InvalidInput> {
        Self::parse(s, "stream")
    }

    /// Validates an entry type.
    ///
    /// # Errors
    /// [`InvalidInput::Name`] when empty, longer than 128 bytes or with another character.
    pub fn entry_type(s: &str) -> Result<Self, InvalidInput> {
        Self::parse(s, "entry type")
    }

    fn parse(s: &str, what: &'static str) -> Result<Self, InvalidInput> {
        if valid_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInput::Name { what, value: s.chars().take(200).collect() })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A hierarchical object identifier, e.g. `oid:onoal:org:myorg`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(String);

impl Oid {
    /// Validates an OID: `oid:` then components of `[a-z0-9_-]` separated by `:`.
    ///
    /// # Errors
    /// [`InvalidInput::Oid`] for anything else, or over 255 bytes.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let ok = s.len() <= MAX_OID_LEN
            && s.strip_prefix("oid:").is_some_and(|rest| {
                rest.split(':').all(|c| {
                    !c.is_empty()
                        && c.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
                })
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidInput::Oid { value: s.chars().take(300).collect() })
        }
    }

    /// The OID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components after `oid:`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0["oid:".len()..].split(':')
    }

    /// Tree distance between two OIDs: `(len a + len b) - 2 * common prefix length`.
    pub fn distance(&self, other: &Self) -> usize {
        let common = self.components().zip(other.components()).take_while(|(a, b)| a == b).count();
        self.components().count() + other.components().count() - 2 * common
    }
}

impl FromStr for Oid {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({})", self.0)
    }
}

/// A reference from an entry to an entry of a ledger (possibly another one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRef {
    /// The referenced ledger's id (UUID bytes).
    pub ledger_id: [u8; 16],
    /// Sequence number of the referenced entry.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: [u8; 32],
}

/// An issuer's Ed25519 signature over an entry's content fields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IssuerSignature {
    /// The issuer's public key.
    pub public_key: [u8; 32],
    /// Signature over [`NewEntry::signing_bytes`].
    pub signature: [u8; 64],
}

impl fmt::Debug for IssuerSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IssuerSignature(key {})", hex::encode(&self.public_key[..4]))
    }
}

/// An entry as a caller hands it to `append`: content only; the ledger assigns `seq`,
/// `timestamp_ms` and `prev_hash`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEntry {
    /// Stream the entry belongs to.
    pub stream: Name,
    /// Application-defined type.
    pub entry_type: Name,
    /// What the entry is about.
    pub subject: Option<Oid>,
    /// Who issued it.
    pub issuer: Option<Oid>,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// References to other entries.
    pub refs: Vec<EntryRef>,
    /// Optional issuer signature, verified on append.
    pub signature: Option<IssuerSignature>,
}

impl NewEntry {
    /// An entry with no subject, issuer, references or signature.
    pub fn new(stream: Name, entry_type: Name, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            stream,
            entry_type,
            subject: None,
            issuer: None,
            payload: payload.into(),
            refs: Vec::new(),
            signature: None,
        }
    }

    /// Sets the subject OID.
    pub fn with_subject(mut self, subject: Oid) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Sets the issuer OID.
    pub fn with_issuer(mut self, issuer: Oid) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// The bytes an issuer signs: a context string, then the postcard encoding of stream, type,
    /// subject, issuer, payload and refs (docs/format.md).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = ISSUER_SIGNATURE_CONTEXT.to_vec();
        // Serialising borrowed strings and bytes into a Vec cannot fail.
        out.extend(postcard::to_allocvec(&self.signed_wire()).unwrap_or_default());
        out
    }

    /// Signs the content with the issuer's key.
    pub fn sign(mut self, key: &SigningKey) -> Self {
        let sig = key.sign(&self.signing_bytes());
        self.signature = Some(IssuerSignature {
            public_key: key.verifying_key().to_bytes(),
            signature: sig.to_bytes(),
        });
        self
    }

    /// Checks limits and the issuer signature (if any).
    ///
    /// # Errors
    /// Payload over `max_payload`, too many refs, or a signature that does not verify.
    pub fn validate(&self, max_payload: usize) -> Result<(), InvalidInput> {
        if self.payload.len() > max_payload {
            return Err(InvalidInput::PayloadTooLarge {
                len: self.payload.len(),
                max: max_payload,
            });
        }
        if self.refs.len() > MAX_REFS {
            return Err(InvalidInput::TooManyRefs { count: self.refs.len() });
        }
        if let Some(sig) = &self.signature {
            let key = VerifyingKey::from_bytes(&sig.public_key)
                .map_err(|_| InvalidInput::BadIssuerSignature)?;
            key.verify_strict(&self.signing_bytes(), &Signature::from_bytes(&sig.signature))
                .map_err(|_| InvalidInput::BadIssuerSignature)?;
        }
        Ok(())
    }
}

/// An entry of the log, as stored and hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// 0-based position in the log.
    pub seq: u64,
    /// Milliseconds since the Unix epoch, assigned by the sequencer; never decreases with seq.
    pub timestamp_ms: u64,
    /// Stream, type, subject, issuer, payload, refs and signature as appended.
    pub content: NewEntry,
    /// Leaf hash of entry `seq - 1`; 32 zero bytes for entry 0.
    pub prev_hash: Hash,
}

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
struct SignatureWire {
    public_key: [u8; 32],
    #[serde(with = "fixed64")]
    signature: [u8; 64],
}

#[derive(Serialize)]
struct SignedContentWire<'a> {
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
struct ContentWire<'a> {
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
    fn signed_wire(&self) -> SignedContentWire<'_> {
        SignedContentWire {
            stream: self.stream.as_str(),
            entry_type: self.entry_type.as_str(),
            subject: self.subject.as_ref().map(Oid::as_str),
            issuer: self.issuer.as_ref().map(Oid::as_str),
            payload: &self.payload,
            refs: &self.refs,
        }
    }

    fn content_wire(&self) -> ContentWire<'_> {
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
        // Serialising plain data into a Vec cannot fail.
        encoded = postcard::to_extend(&self.content_wire(), encoded).unwrap_or_default();
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
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
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
        // Serialising plain data into a Vec cannot fail.
        out = postcard::to_extend(&self.content.content_wire(), out).unwrap_or_default();
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

/// A signing key for issuer signatures, from 32 seed bytes.
pub fn issuer_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            seq: 300,
            timestamp_ms: 1_700_000_000_000,
            content: NewEntry::new(
                Name::stream("orders/eu").unwrap(),
                Name::entry_type("order.created").unwrap(),
                b"hello".to_vec(),
            )
            .with_subject(Oid::parse("oid:onoal:customer:42").unwrap()),
            prev_hash: Hash([7; 32]),
        }
    }

    #[test]
    fn names_and_oids_are_validated() {
        assert!(Name::stream("a").is_ok());
        assert!(Name::stream(&"a".repeat(128)).is_ok());
        assert!(Name::stream(&"a".repeat(129)).is_err());
        assert!(Name::stream("").is_err());
        assert!(Name::stream("Upper").is_err());
        assert!(Name::entry_type("white space").is_err());
        assert!(Oid::parse("oid:onoal:org:myorg").is_ok());
        for bad in ["oid:", "oid:a::b", "onoal:org", "oid:A", "oid:a.b", "oid:a:"] {
            assert!(Oid::parse(bad).is_err(), "{bad}");
        }
        assert!(Oid::parse(&format!("oid:{}", "a".repeat(252))).is_err());
    }

    #[test]
    fn oid_distance() {
        let a = Oid::parse("oid:onoal:org:a").unwrap();
        let b = Oid::parse("oid:onoal:org:b:x").unwrap();
        assert_eq!(a.distance(&b), 3);
        assert_eq!(a.distance(&a), 0);
    }

    #[test]
    fn encoding_is_pinned_byte_by_byte() {
        let e = sample();
        let bytes = e.leaf_data();
        // version, "orders/eu", "order.created", Some(subject), None, payload, no refs, no
        // signature, then seq=300 (ac 02), timestamp (6 bytes), prev_hash.
        assert_eq!(bytes[0], 0x01);
        assert_eq!(bytes[1], 9);
        assert_eq!(&bytes[2..11], b"orders/eu");
        assert_eq!(bytes[11], 13);
        assert_eq!(&bytes[12..25], b"order.created");
        assert_eq!(bytes[25], 1);
        assert_eq!(bytes[26], 21);
        assert_eq!(&bytes[27..48], b"oid:onoal:customer:42");
        assert_eq!(&bytes[48..56], &[0, 5, b'h', b'e', b'l', b'l', b'o', 0]);
        assert_eq!(bytes[56], 0, "no signature");
        assert_eq!(&bytes[57..59], &[0xac, 0x02]);
        assert_eq!(&bytes[59..65], &[0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31]);
        assert_eq!(&bytes[65..], &[7u8; 32]);
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        assert_eq!(e.leaf_hash(), leaf_hash(&bytes));
    }

    #[test]
    fn sealing_a_prepared_entry_equals_encoding_the_entry() {
        let e = sample();
        let prepared = e.content.clone().sign(&issuer_key_from_seed(&[2; 32])).prepare();
        let mut buf = Vec::new();
        for (seq, ts) in [(0u64, 0u64), (127, 128), (300, 1_700_000_000_000), (u64::MAX, u64::MAX)]
        {
            let h = prepared.seal(seq, ts, &e.prev_hash, &mut buf);
            let full = Entry {
                seq,
                timestamp_ms: ts,
                content: prepared.content.clone(),
                prev_hash: e.prev_hash,
            };
            assert_eq!(buf, full.leaf_data());
            assert_eq!(h, leaf_hash(&buf));
            assert_eq!(Entry::decode(&buf).unwrap(), full);
        }
    }

    #[test]
    fn varint_matches_postcard() {
        for v in [0u64, 1, 127, 128, 300, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut ours = Vec::new();
            push_varint(&mut ours, v);
            assert_eq!(ours, postcard::to_allocvec(&v).unwrap(), "{v}");
        }
    }

    #[test]
    fn decode_rejects_bad_bytes() {
        let bytes = sample().leaf_data();
        assert_eq!(Entry::decode(&[]), Err(DecodeError::Empty));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(Entry::decode(&v2), Err(DecodeError::UnknownVersion(2)));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(Entry::decode(&trailing), Err(DecodeError::TrailingBytes(1)));
        // Overlong varint for seq: ac 82 00 decodes to 300 but is not canonical.
        let mut overlong = bytes[..57].to_vec();
        overlong.extend_from_slice(&[0xac, 0x82, 0x00]);
        overlong.extend_from_slice(&bytes[59..]);
        assert_eq!(Entry::decode(&overlong), Err(DecodeError::NotCanonical));
        for cut in 0..bytes.len() {
            assert!(Entry::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn issuer_signature_verifies_and_detects_changes() {
        let key = issuer_key_from_seed(&[9; 32]);
        let signed = sample().content.sign(&key);
        assert!(signed.validate(1 << 20).is_ok());
        let mut changed = signed.clone();
        changed.payload.push(1);
        assert_eq!(changed.validate(1 << 20), Err(InvalidInput::BadIssuerSignature));
        assert!(matches!(
            signed.validate(2),
            Err(InvalidInput::PayloadTooLarge { len: 5, max: 2 })
        ));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn name() -> impl Strategy<Value = Name> {
            "[a-z0-9._/-]{1,128}".prop_map(|s| Name::stream(&s).unwrap())
        }

        fn oid() -> impl Strategy<Value = Oid> {
            proptest::collection::vec("[a-z0-9_-]{1,12}", 1..6)
                .prop_map(|c| Oid::parse(&format!("oid:{}", c.join(":"))).unwrap())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn entry_round_trips_and_prepared_seal_agrees(
                stream in name(), ty in name(), subject in proptest::option::of(oid()),
                issuer in proptest::option::of(oid()),
                payload in proptest::collection::vec(any::<u8>(), 0..600),
                refs in proptest::collection::vec((any::<[u8; 16]>(), any::<u64>(), any::<[u8; 32]>()), 0..3),
                seq in any::<u64>(), ts in any::<u64>(), prev in any::<[u8; 32]>(), signed in any::<bool>(),
            ) {
                let mut content = NewEntry::new(stream, ty, payload);
                content.subject = subject;
                content.issuer = issuer;
                content.refs = refs.into_iter().map(|(ledger_id, seq, leaf_hash)| EntryRef { ledger_id, seq, leaf_hash }).collect();
                if signed {
                    content = content.sign(&issuer_key_from_seed(&[4; 32]));
                }
                let e = Entry { seq, timestamp_ms: ts, content, prev_hash: Hash(prev) };
                let bytes = e.leaf_data();
                prop_assert_eq!(Entry::decode(&bytes).unwrap(), e.clone());
                let mut sealed = Vec::new();
                let h = e.content.clone().prepare().seal(seq, ts, &Hash(prev), &mut sealed);
                prop_assert_eq!(&sealed, &bytes);
                prop_assert_eq!(h, leaf_hash(&bytes));
            }

            /// Arbitrary bytes never panic the decoder, and whatever it accepts is canonical.
            #[test]
            fn decode_accepts_only_canonical_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let mut v = vec![LEAF_VERSION_1];
                v.extend_from_slice(&bytes);
                for input in [&bytes[..], &v[..]] {
                    if let Ok(e) = Entry::decode(input) {
                        prop_assert_eq!(e.leaf_data(), input.to_vec());
                    }
                }
            }
        }
    }
}
