//! The ledger's identity (id, OID, Ed25519 public key) and its secret key file.
//!
//! The secret key lives in `<data dir>/identity.key` (mode 0600) in the C2SP note signer key
//! format: `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>`. It is never
//! printed or logged: [`SecretKey`] prints as `SecretKey(..)` and is zeroized on drop.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::checkpoint::{NoteVerifier, key_id};
use crate::ids::LedgerId;
use crate::record::Oid;

/// A ledger's public identity: what its checkpoints and certificates bind together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Ledger id.
    pub ledger_id: LedgerId,
    /// Ledger OID; also the checkpoint origin and note key name.
    pub oid: Oid,
    /// Ed25519 public key.
    pub public_key: VerifyingKey,
}

impl Identity {
    /// The C2SP verifier key of this ledger's checkpoints.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier::new(self.oid.as_str(), self.public_key)
            .expect("an OID is a valid note key name: its alphabet has no '+' or white space")
    }

    /// `0x01 || ledger id || public key || OID` (the identity record, docs/format.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend_from_slice(self.ledger_id.as_bytes());
        out.extend_from_slice(self.public_key.as_bytes());
        out.extend_from_slice(self.oid.as_str().as_bytes());
        out
    }

    /// Parses [`Self::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 1 + 16 + 32 + 5 || bytes[0] != 1 {
            return None;
        }
        let ledger_id = LedgerId::from_slice(&bytes[1..17])?;
        let public_key = VerifyingKey::from_bytes(bytes[17..49].try_into().ok()?).ok()?;
        let oid = Oid::parse(std::str::from_utf8(&bytes[49..]).ok()?).ok()?;
        Some(Self { ledger_id, oid, public_key })
    }
}

/// Largest key file read (a key file is about 100 bytes).
const MAX_KEY_FILE: u64 = 4096;

/// File name of the secret key inside a data directory.
pub const KEY_FILE: &str = "identity.key";

/// The ledger's secret signing key.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    ///
    /// # Errors
    /// When the system random source fails.
    pub fn generate() -> Result<Self, std::io::Error> {
        use ring::rand::SecureRandom as _;
        let mut seed = Zeroizing::new([0u8; 32]);
        ring::rand::SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| std::io::Error::other("system random source failed"))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// A key from a 32-byte seed (tests and imports).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// The underlying dalek key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// Writes the key file with mode 0600, atomically (temp file, fsync, rename).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn write_file(&self, path: &Path, name: &str) -> std::io::Result<()> {
        let mut raw = Zeroizing::new(vec![0x01]);
        raw.extend_from_slice(self.0.as_bytes());
        let id = key_id(name, self.public().as_bytes());
        let text = Zeroizing::new(format!(
            "PRIVATE+KEY+{name}+{}+{}\n",
            hex::encode(id),
            B64.encode(raw.as_slice())
        ));
        let tmp = path.with_extension("key.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Reads a key file.
    ///
    /// # Errors
    /// [`KeyFileError`]: missing, unreadable, or not a key file.
    pub fn read_file(path: &Path) -> Result<Self, KeyFileError> {
        use std::io::Read as _;
        let io = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                KeyFileError::Missing { path: path.to_owned() }
            } else {
                KeyFileError::Unreadable { path: path.to_owned(), source: e }
            }
        };
        let malformed = || KeyFileError::Malformed { path: path.to_owned() };
        // A key file is one short line; never read more than a few of them.
        let mut raw = Zeroizing::new(Vec::new());
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_KEY_FILE + 1)
            .read_to_end(&mut raw)
            .map_err(io)?;
        if raw.len() as u64 > MAX_KEY_FILE {
            return Err(malformed());
        }
        let text = Zeroizing::new(String::from_utf8(raw.to_vec()).map_err(|_| malformed())?);
        let rest = text.trim_end().strip_prefix("PRIVATE+KEY+").ok_or_else(malformed)?;
        // name (no '+'), key id, then base64, which may itself contain '+'.
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let raw = Zeroizing::new(B64.decode(key_b64).map_err(|_| malformed())?);
        if raw.len() != 33 || raw[0] != 0x01 {
            return Err(malformed());
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&raw[1..]);
        let key = Self(SigningKey::from_bytes(&seed));
        if hex::encode(key_id(name, key.public().as_bytes())) != id_hex {
            return Err(malformed());
        }
        Ok(key)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// No file at the path.
    #[error(
        "key file {path} is missing; restore it from your backup (a ledger cannot sign without its key)"
    )]
    Missing {
        /// Where it was expected.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read key file {path}: {source}; check its owner and permissions")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a key file of this format.
    #[error(
        "key file {path} is not an Onoal key file (PRIVATE+KEY+<name>+<id>+<base64>); restore it from your backup"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

/// Key path inside a data directory.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join(KEY_FILE)
}
