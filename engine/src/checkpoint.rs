//! C2SP `tlog-checkpoint` bodies inside C2SP `signed-note`s, with Ed25519 note keys.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, base64>\n
//! [<extension line>\n ...]
//! \n
//! — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\n
//! ```
//!
//! The key id is the first 4 bytes of `SHA-256(name || 0x0A || 0x01 || public key)`; the
//! signature covers the text before the blank line (including its final newline). A verifier
//! key is written `<name>+<8 hex digits of key id>+<base64(0x01 || public key)>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::hash::{Hash, sha256};

/// Ed25519 signature type byte of C2SP signed notes.
const ALG_ED25519: u8 = 0x01;
/// The em dash that starts a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// A checkpoint body: which log, how big, what root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (for Onoal: the ledger OID).
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// Extension lines, opaque.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text that is signed: origin, size, base64 root, extensions, each ending in `\n`.
    pub fn body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, self.root.to_base64());
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

/// A checkpoint with the exact signed note it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// Parsed body.
    pub checkpoint: Checkpoint,
    /// The note text as signed and stored.
    pub note: String,
}

impl SignedCheckpoint {
    /// Checks `note` with `verifier` (see [`NoteVerifier::open`]) and keeps its text.
    ///
    /// # Errors
    /// As [`NoteVerifier::open`].
    pub fn open(verifier: &NoteVerifier, note: &[u8]) -> Result<Self, CheckpointError> {
        let checkpoint = verifier.open(note)?;
        let note = String::from_utf8(note.to_vec())
            .map_err(|_| CheckpointError::MalformedNote("not UTF-8"))?;
        Ok(Self { checkpoint, note })
    }
}

impl std::ops::Deref for SignedCheckpoint {
    type Target = Checkpoint;
    fn deref(&self) -> &Checkpoint {
        &self.checkpoint
    }
}

/// A checkpoint note that is not well formed, or not signed by the expected key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not UTF-8, a control character, no blank line before the signatures, and the like.
    #[error("malformed signed note: {0}")]
    MalformedNote(&'static str),
    /// The body lacks origin, size or root, or one of them does not parse.
    #[error("malformed checkpoint body: {0}")]
    MalformedBody(&'static str),
    /// No signature line by the expected key name and key id.
    #[error(
        "the note carries no signature by key {name}+{key_id}; check that you use the ledger's verifier key"
    )]
    NoSignature {
        /// Expected key name.
        name: String,
        /// Expected key id, hex.
        key_id: String,
    },
    /// A signature by the expected key that does not verify.
    #[error("the signature by {name} does not verify: the note was changed or forged")]
    BadSignature {
        /// Key name.
        name: String,
    },
    /// The origin line is not the key's name.
    #[error("checkpoint origin {found:?} is not the expected origin {expected:?}")]
    WrongOrigin {
        /// Origin the verifier expects.
        expected: String,
        /// Origin in the note.
        found: String,
    },
    /// A verifier key string that does not parse.
    #[error("malformed verifier key: {0}; expected <name>+<8 hex key id>+<base64(0x01 || key)>")]
    MalformedKey(&'static str),
}

/// C2SP key id: first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let h = sha256(&[name.as_bytes(), b"\n", &[ALG_ED25519], public_key]);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// Verifies notes signed by one Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// A verifier for `name` and `key`.
    ///
    /// # Errors
    /// A name that is empty, contains `+` or white space.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        if !valid_key_name(name) {
            return Err(CheckpointError::MalformedKey("name is empty or has '+' or spaces"));
        }
        Ok(Self { name: name.to_owned(), key_id: key_id(name, key.as_bytes()), key })
    }

    /// Parses a C2SP verifier key `<name>+<hex key id>+<base64(0x01 || key)>`.
    ///
    /// # Errors
    /// [`CheckpointError::MalformedKey`] when any part is wrong or the key id does not match.
    pub fn from_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        let (name, id, key) = parse_vkey(vkey, ALG_ED25519, "not an Ed25519 key (type byte 0x01)")
            .map_err(CheckpointError::MalformedKey)?;
        let verifier = Self::new(name, key)?;
        if verifier.key_id != id {
            return Err(CheckpointError::MalformedKey("key id does not match name and key"));
        }
        Ok(verifier)
    }

    /// The C2SP verifier key string.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_id), B64.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks a signed checkpoint note and returns its body. The origin must equal the key name.
    ///
    /// # Errors
    /// [`CheckpointError`] for any malformed part, a missing or failing signature, or a
    /// different origin. Never panics on any input.
    pub fn open(&self, note: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let text =
            std::str::from_utf8(note).map_err(|_| CheckpointError::MalformedNote("not UTF-8"))?;
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(CheckpointError::MalformedNote("control character other than newline"));
        }
        let split = text
            .rfind("\n\n")
            .ok_or(CheckpointError::MalformedNote("no blank line before the signatures"))?;
        let (body, sigs) = (&text[..=split], &text[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(CheckpointError::MalformedNote("signature block must end with a newline"));
        }
        let mut found = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(CheckpointError::MalformedNote("signature line does not start with '— '"))?;
            let (name, sig_b64) = rest
                .split_once(' ')
                .ok_or(CheckpointError::MalformedNote("signature line lacks a space"))?;
            let raw = B64
                .decode(sig_b64)
                .map_err(|_| CheckpointError::MalformedNote("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(CheckpointError::MalformedNote("signature too short"));
            }
            if name != self.name || raw[..4] != self.key_id {
                continue; // a cosignature by some other key
            }
            let sig: [u8; 64] = raw[4..]
                .try_into()
                .map_err(|_| CheckpointError::BadSignature { name: self.name.clone() })?;
            self.key
                .verify_strict(body.as_bytes(), &Signature::from_bytes(&sig))
                .map_err(|_| CheckpointError::BadSignature { name: self.name.clone() })?;
            found = true;
        }
        if !found {
            return Err(CheckpointError::NoSignature {
                name: self.name.clone(),
                key_id: hex::encode(self.key_id),
            });
        }
        let checkpoint = parse_body(body)?;
        if checkpoint.origin != self.name {
            return Err(CheckpointError::WrongOrigin {
                expected: self.name.clone(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

/// Splits a C2SP verifier key `<name>+<8 hex key id>+<base64(alg || 32-byte Ed25519 key)>` of
/// signature type `alg` into its name, key id and key; the caller checks the key id, whose
/// derivation depends on the type. `wrong_type` is the error for another type byte.
pub(crate) fn parse_vkey<'a>(
    vkey: &'a str,
    alg: u8,
    wrong_type: &'static str,
) -> Result<(&'a str, [u8; 4], VerifyingKey), &'static str> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected three '+'-separated parts");
    };
    let mut id = [0u8; 4];
    if id_hex.len() != 8 || hex::decode_to_slice(id_hex, &mut id).is_err() {
        return Err("key id is not 8 hex digits");
    }
    let raw = B64.decode(key_b64).map_err(|_| "bad base64")?;
    let key_bytes = match raw.split_first() {
        Some((&a, rest)) if a == alg => rest,
        _ => return Err(wrong_type),
    };
    let key_bytes: [u8; 32] = key_bytes.try_into().map_err(|_| "public key is not 32 bytes")?;
    let key =
        VerifyingKey::from_bytes(&key_bytes).map_err(|_| "public key is not a valid point")?;
    Ok((name, id, key))
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    // body ends with '\n'; its lines are origin, size, root, extensions.
    let mut lines = body[..body.len() - 1].split('\n');
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(CheckpointError::MalformedBody("empty origin"))?;
    let size_text = lines.next().ok_or(CheckpointError::MalformedBody("missing size"))?;
    let canonical_number = !size_text.is_empty()
        && size_text.bytes().all(|b| b.is_ascii_digit())
        && (size_text == "0" || !size_text.starts_with('0'));
    if !canonical_number {
        return Err(CheckpointError::MalformedBody("size is not a decimal number"));
    }
    let size = size_text.parse().map_err(|_| CheckpointError::MalformedBody("size overflows"))?;
    let root_text = lines.next().ok_or(CheckpointError::MalformedBody("missing root hash"))?;
    let root = B64
        .decode(root_text)
        .ok()
        .and_then(|b| Hash::from_slice(&b))
        .ok_or(CheckpointError::MalformedBody("root is not a base64 SHA-256 hash"))?;
    let mut extensions = Vec::new();
    for l in lines {
        if l.is_empty() {
            return Err(CheckpointError::MalformedBody("empty extension line"));
        }
        extensions.push(l.to_owned());
    }
    Ok(Checkpoint { origin: origin.to_owned(), size, root, extensions })
}

/// Signs checkpoint notes with an Ed25519 key under a key name.
pub struct NoteSigner {
    verifier: NoteVerifier,
    key: SigningKey,
}

impl NoteSigner {
    /// A signer for `name`.
    ///
    /// # Errors
    /// A name that is empty, contains `+` or white space.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        Ok(Self { verifier: NoteVerifier::new(name, key.verifying_key())?, key })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The signed note for `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let sig = self.key.sign(body.as_bytes());
        let mut raw = self.verifier.key_id.to_vec();
        raw.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.verifier.name, B64.encode(raw))
    }
}

#[cfg(test)]
mod tests;
