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

mod codec;
mod name;
#[cfg(test)]
mod tests;

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hash::Hash;
use crate::ids::LedgerId;

pub(crate) use codec::push_varint;
pub use codec::{DecodeError, PreparedEntry};
pub use name::{Name, Oid};

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
    /// A time window whose start is after its end.
    #[error("the time window is empty: since {since_ms} is after until {until_ms}")]
    TimeWindow {
        /// Start (ms).
        since_ms: u64,
        /// End (ms).
        until_ms: u64,
    },
    /// The issuer signature does not verify over the entry's content.
    #[error(
        "the issuer signature does not verify over this entry's content; sign the entry again with the issuer's key"
    )]
    BadIssuerSignature,
}

/// A reference from an entry to an entry of a ledger (possibly another one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRef {
    /// The referenced ledger's id.
    pub ledger_id: LedgerId,
    /// Sequence number of the referenced entry.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
}

/// `LEDGER_ID:SEQ:LEAF_HASH` (hex), the form `onoal append --ref` and import lines take.
impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.ledger_id, self.seq, self.leaf_hash.to_hex())
    }
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
        out.extend(
            postcard::to_allocvec(&self.signed_wire())
                .expect("postcard serialises strings, bytes and integers into a Vec without error"),
        );
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
        self.check_issuer_signature()
    }

    /// Checks the issuer signature, if the entry carries one (an unsigned entry passes).
    /// Replicas, audits and cross-ledger answers call this on every entry they receive or
    /// read, since a source could sign a checkpoint over entries it never validated.
    ///
    /// # Errors
    /// [`InvalidInput::BadIssuerSignature`].
    pub fn check_issuer_signature(&self) -> Result<(), InvalidInput> {
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
