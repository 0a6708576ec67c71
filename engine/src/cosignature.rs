//! C2SP `tlog-cosignature` (Ed25519, `cosignature/v1`): a witness's statement that a
//! checkpoint is consistent with every other checkpoint of the log it has seen.
//!
//! ```text
//! — <witness name> base64(key id (4) || timestamp (u64, big-endian) || Ed25519 signature (64))
//! ```
//!
//! The key id is the first 4 bytes of `SHA-256(name || 0x0A || 0x04 || public key)`; the signed
//! message is `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint's whole note body
//! (origin, size, root and extension lines, each ending in `\n`). A verifier key is written
//! `<name>+<8 hex digits of key id>+<base64(0x04 || public key)>`. The same signature lines sit
//! below the log's own in the note (C2SP `signed-note`): [`add_signatures`] puts them there and
//! [`Cosigners::count`] counts the valid ones of a quorum.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::hash::sha256;

/// Signature type byte of Ed25519 cosignatures (`cosignature/v1`).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// The em dash that starts a signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// Bytes of a cosignature after its key id: timestamp and signature.
const TIMESTAMPED_LEN: usize = 8 + 64;

/// A cosignature that does not parse or does not verify, or a malformed witness key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CosignatureError {
    /// A witness verifier key that does not parse.
    #[error("malformed witness key: {0}; expected <name>+<8 hex key id>+<base64(0x04 || key)>")]
    MalformedKey(&'static str),
    /// The note is not a signed note.
    #[error("malformed signed note: {0}")]
    MalformedNote(&'static str),
    /// A line by this witness that is not a cosignature of the note.
    #[error("the cosignature by {name} does not verify over this checkpoint")]
    BadSignature {
        /// The witness.
        name: String,
    },
}

/// The message a `cosignature/v1` signs: header, time line, the checkpoint's note body.
pub fn signed_message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// C2SP key id of an Ed25519 cosigner: first 4 bytes of SHA-256(name || 0x0A || 0x04 || key).
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let h = sha256(&[name.as_bytes(), b"\n", &[ALG_COSIGNATURE_V1], public_key]);
    [h.0[0], h.0[1], h.0[2], h.0[3]]
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// A note split into its body (ending in `\n`) and its signature lines (without `\n`).
///
/// # Errors
/// Not UTF-8 text with a blank line before a block of `— ` lines ending in a newline.
pub fn split_note(note: &str) -> Result<(&str, Vec<&str>), CosignatureError> {
    let split = note
        .rfind("\n\n")
        .ok_or(CosignatureError::MalformedNote("no blank line before the signatures"))?;
    let (body, sigs) = (&note[..=split], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(CosignatureError::MalformedNote("signature block must end with a newline"));
    }
    let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
    if lines.iter().any(|l| !l.starts_with(SIG_PREFIX)) {
        return Err(CosignatureError::MalformedNote("a signature line does not start with '— '"));
    }
    Ok((body, lines))
}

/// `note` with `lines` (signature lines, with or without their `\n`) added below its own; a
/// line by the same key name and key id as one already there replaces it (a newer
/// cosignature of the same witness), identical lines are kept once.
///
/// # Errors
/// A note or a line that is not a signed-note signature line.
pub fn add_signatures(note: &str, lines: &[String]) -> Result<String, CosignatureError> {
    let (body, existing) = split_note(note)?;
    let mut kept: Vec<String> = existing.iter().map(|l| (*l).to_owned()).collect();
    for line in lines {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let who = signer_of(line).ok_or(CosignatureError::MalformedNote(
            "a signature line is not '— <name> <base64>'",
        ))?;
        if let Some(i) = kept.iter().position(|k| signer_of(k) == Some(who)) {
            // The log's own line is never replaced (its key id differs from any witness's).
            kept[i] = line.to_owned();
        } else {
            kept.push(line.to_owned());
        }
    }
    let mut out = format!("{body}\n");
    for l in kept {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(out)
}

/// The key name and key id of a signature line, if it is one.
fn signer_of(line: &str) -> Option<(&str, [u8; 4])> {
    let rest = line.strip_prefix(SIG_PREFIX)?;
    let (name, sig) = rest.split_once(' ')?;
    let raw = B64.decode(sig).ok()?;
    let id: [u8; 4] = raw.get(..4)?.try_into().ok()?;
    Some((name, id))
}

/// Checks `cosignature/v1` lines of one witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// A verifier for the witness `name` with `key`.
    ///
    /// # Errors
    /// A name that is empty, contains `+` or white space.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CosignatureError> {
        if !valid_key_name(name) {
            return Err(CosignatureError::MalformedKey("name is empty or has '+' or spaces"));
        }
        Ok(Self { name: name.to_owned(), key_id: key_id(name, key.as_bytes()), key })
    }

    /// Parses a witness verifier key `<name>+<hex key id>+<base64(0x04 || key)>`.
    ///
    /// # Errors
    /// [`CosignatureError::MalformedKey`] when any part is wrong or the key id does not match.
    pub fn from_vkey(vkey: &str) -> Result<Self, CosignatureError> {
        let (name, id, key) = crate::checkpoint::parse_vkey(
            vkey,
            ALG_COSIGNATURE_V1,
            "not an Ed25519 cosignature key (type byte 0x04); a log's key (0x01) cannot cosign",
        )
        .map_err(CosignatureError::MalformedKey)?;
        let verifier = Self::new(name, key)?;
        if verifier.key_id != id {
            return Err(CosignatureError::MalformedKey("key id does not match name and key"));
        }
        Ok(verifier)
    }

    /// The C2SP verifier key string.
    pub fn to_vkey(&self) -> String {
        let mut raw = vec![ALG_COSIGNATURE_V1];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_id), B64.encode(raw))
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The witness's public key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks one signature line over the note body `body`: `Ok(None)` when the line is not by
    /// this witness (another name or key id), `Ok(Some(timestamp))` when it is a valid
    /// cosignature.
    ///
    /// # Errors
    /// [`CosignatureError::BadSignature`] for a line by this witness that does not verify.
    pub fn verify_line(&self, body: &str, line: &str) -> Result<Option<u64>, CosignatureError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let Some(rest) = line.strip_prefix(SIG_PREFIX) else { return Ok(None) };
        let Some((name, sig_b64)) = rest.split_once(' ') else { return Ok(None) };
        if name != self.name {
            return Ok(None);
        }
        let Ok(raw) = B64.decode(sig_b64) else { return Ok(None) };
        if raw.len() < 4 || raw[..4] != self.key_id {
            return Ok(None);
        }
        let bad = || CosignatureError::BadSignature { name: self.name.clone() };
        if raw.len() != 4 + TIMESTAMPED_LEN {
            return Err(bad());
        }
        let timestamp = u64::from_be_bytes(raw[4..12].try_into().map_err(|_| bad())?);
        if timestamp > i64::MAX as u64 {
            return Err(bad());
        }
        let sig: [u8; 64] = raw[12..].try_into().map_err(|_| bad())?;
        self.key
            .verify_strict(signed_message(body, timestamp).as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| bad())?;
        Ok(Some(timestamp))
    }

    /// The time of this witness's valid cosignature in `note`, if it carries one.
    ///
    /// # Errors
    /// A malformed note, or a line by this witness that does not verify.
    pub fn verify_note(&self, note: &str) -> Result<Option<u64>, CosignatureError> {
        let (body, lines) = split_note(note)?;
        let mut found = None;
        for l in lines {
            if let Some(t) = self.verify_line(body, l)? {
                found = Some(t);
            }
        }
        Ok(found)
    }
}

/// Produces `cosignature/v1` lines with a witness key.
pub struct Cosigner {
    verifier: CosignatureVerifier,
    key: SigningKey,
}

impl Cosigner {
    /// A cosigner named `name`.
    ///
    /// # Errors
    /// A name that is empty, contains `+` or white space.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CosignatureError> {
        Ok(Self { verifier: CosignatureVerifier::new(name, key.verifying_key())?, key })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> &CosignatureVerifier {
        &self.verifier
    }

    /// The cosignature line (ending in `\n`) over the note body `body` at `timestamp`
    /// (seconds since the epoch).
    pub fn cosign(&self, body: &str, timestamp: u64) -> String {
        let sig = self.key.sign(signed_message(body, timestamp).as_bytes());
        let mut raw = Vec::with_capacity(4 + TIMESTAMPED_LEN);
        raw.extend_from_slice(&self.verifier.key_id);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.verifier.name, B64.encode(raw))
    }
}

/// The witnesses a client trusts, and how many of them must have cosigned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cosigners {
    /// Trusted witnesses.
    pub witnesses: Vec<CosignatureVerifier>,
    /// Valid cosignatures by distinct trusted witnesses required.
    pub quorum: usize,
}

impl Cosigners {
    /// Names of the trusted witnesses with a valid cosignature in `note`. Lines by unknown keys
    /// are ignored; a line by a trusted witness that does not verify is an error (the note was
    /// changed).
    ///
    /// # Errors
    /// A malformed note or a bad cosignature by a trusted witness.
    pub fn cosigned_by(&self, note: &str) -> Result<Vec<String>, CosignatureError> {
        let mut out = Vec::new();
        for w in &self.witnesses {
            if w.verify_note(note)?.is_some() && !out.iter().any(|n| n == w.name()) {
                out.push(w.name().to_owned());
            }
        }
        Ok(out)
    }

    /// Whether `note` carries the quorum; the names found either way.
    ///
    /// # Errors
    /// As [`Self::cosigned_by`].
    pub fn check(&self, note: &str) -> Result<(bool, Vec<String>), CosignatureError> {
        let by = self.cosigned_by(note)?;
        Ok((by.len() >= self.quorum, by))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, NoteSigner};
    use crate::hash::Hash;

    /// The example of c2sp.org/tlog-cosignature, written out by hand: the signed message is
    /// exactly these bytes, and the line is key id || big-endian time || signature.
    #[test]
    fn the_spec_example_message_and_line_by_hand() {
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let message = "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(signed_message(body, 1_679_315_147), message);

        let key = SigningKey::from_bytes(&[7; 32]);
        let name = "witness.example.com/w1";
        // Key id by hand: SHA-256 over the name, a newline, 0x04 and the key.
        let mut pre = name.as_bytes().to_vec();
        pre.push(b'\n');
        pre.push(0x04);
        pre.extend_from_slice(key.verifying_key().as_bytes());
        let digest = ring::digest::digest(&ring::digest::SHA256, &pre);
        let mut raw = digest.as_ref()[..4].to_vec();
        raw.extend_from_slice(&1_679_315_147u64.to_be_bytes());
        raw.extend_from_slice(&key.sign(message.as_bytes()).to_bytes());
        let by_hand = format!("\u{2014} {name} {}\n", B64.encode(&raw));

        let cosigner = Cosigner::new(name, key).unwrap();
        assert_eq!(cosigner.cosign(body, 1_679_315_147), by_hand);
        let v = CosignatureVerifier::from_vkey(&cosigner.verifier().to_vkey()).unwrap();
        assert_eq!(v.verify_line(body, &by_hand), Ok(Some(1_679_315_147)));
        // Another time or body: refused; another witness's line: not ours.
        assert!(v.verify_line(&body.replace("163", "164"), &by_hand).is_err());
        let other = Cosigner::new("w2", SigningKey::from_bytes(&[8; 32])).unwrap();
        assert_eq!(v.verify_line(body, &other.cosign(body, 1)), Ok(None));
    }

    fn note(size: u64) -> (NoteSigner, String) {
        let signer = NoteSigner::new("oid:onoal:org:a", SigningKey::from_bytes(&[1; 32])).unwrap();
        let cp = Checkpoint {
            origin: "oid:onoal:org:a".into(),
            size,
            root: Hash([9; 32]),
            extensions: vec![],
        };
        let n = signer.sign(&cp);
        (signer, n)
    }

    #[test]
    fn cosigned_notes_still_open_with_the_logs_key_and_count_a_quorum() {
        let (signer, n) = note(10);
        let (body, _) = split_note(&n).unwrap();
        let w1 = Cosigner::new("w1", SigningKey::from_bytes(&[2; 32])).unwrap();
        let w2 = Cosigner::new("w2", SigningKey::from_bytes(&[3; 32])).unwrap();
        let w3 = Cosigner::new("w3", SigningKey::from_bytes(&[4; 32])).unwrap();
        let cosigned = add_signatures(&n, &[w1.cosign(body, 100), w2.cosign(body, 101)]).unwrap();
        assert!(signer.verifier().open(cosigned.as_bytes()).is_ok());
        let policy = Cosigners {
            witnesses: vec![w1.verifier().clone(), w2.verifier().clone(), w3.verifier().clone()],
            quorum: 2,
        };
        assert_eq!(policy.check(&cosigned).unwrap(), (true, vec!["w1".into(), "w2".into()]));
        assert_eq!(policy.check(&n).unwrap(), (false, vec![]));
        // A newer line of w1 replaces the older; the same line twice is kept once.
        let again =
            add_signatures(&cosigned, &[w1.cosign(body, 200), w2.cosign(body, 101)]).unwrap();
        assert_eq!(again.matches("\u{2014} w1 ").count(), 1);
        assert_eq!(again.matches("\u{2014} w2 ").count(), 1);
        assert_eq!(w1.verifier().verify_note(&again), Ok(Some(200)));
        // A cosignature of another checkpoint moved onto this one is refused.
        let (_, other) = note(11);
        let (other_body, _) = split_note(&other).unwrap();
        let moved = add_signatures(&n, &[w3.cosign(other_body, 5)]).unwrap();
        assert!(matches!(
            policy.cosigned_by(&moved),
            Err(CosignatureError::BadSignature { name }) if name == "w3"
        ));
    }

    #[test]
    fn witness_keys_parse_strictly() {
        let w = Cosigner::new("w1", SigningKey::from_bytes(&[2; 32])).unwrap();
        let vkey = w.verifier().to_vkey();
        assert_eq!(&CosignatureVerifier::from_vkey(&vkey).unwrap(), w.verifier());
        // A log's key (type 0x01) is not a witness key.
        let (signer, _) = note(1);
        assert!(CosignatureVerifier::from_vkey(&signer.verifier().to_vkey()).is_err());
        for bad in ["", "w1", "w1+00000000+AAAA", &vkey.replace("w1+", "w2+")] {
            assert!(CosignatureVerifier::from_vkey(bad).is_err(), "{bad}");
        }
        for i in 0..64u8 {
            let w = Cosigner::new("w", SigningKey::from_bytes(&[i; 32])).unwrap();
            assert!(CosignatureVerifier::from_vkey(&w.verifier().to_vkey()).is_ok());
        }
    }

    #[test]
    fn arbitrary_lines_never_panic() {
        let w = Cosigner::new("w1", SigningKey::from_bytes(&[2; 32])).unwrap();
        for line in
            ["", "—", "\u{2014} w1", "\u{2014} w1 !!", "\u{2014} w1 AAAA", "— w1 AAAAAAAAAAA="]
        {
            let _ = w.verifier().verify_line("x\n", line);
            let _ = add_signatures("a\n1\nx\n\n\u{2014} a AAAA\n", &[line.to_owned()]);
        }
    }
}
