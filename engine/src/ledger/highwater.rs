//! The ledger's own high-water marks, kept outside RocksDB in `<data dir>/highwater`: the
//! newest checkpoint it signed (written, fsynced, before that checkpoint is handed out) and the
//! head at its last clean close. A log only grows, so RocksDB recovering less than either means
//! acknowledged entries were lost (a damaged, truncated or deleted write-ahead log); opening
//! then refuses instead of letting the ledger reuse seqs it already handed out.
//!
//! Format (text, one field a line, then the signed note verbatim):
//!
//! ```text
//! onoal highwater 1
//! head <entries at the last clean close>
//! signed <size of the newest signed checkpoint, or none>
//!
//! <the checkpoint note>
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::checkpoint::{NoteVerifier, SignedCheckpoint};

/// File name inside the data directory.
pub const HIGHWATER_FILE: &str = "highwater";
const MAGIC: &str = "onoal highwater 1";
/// Largest file accepted (a note is well under a kilobyte).
const MAX_LEN: u64 = 64 << 10;

/// What the ledger has acknowledged and signed, as far as it wrote down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct HighWater {
    /// Entries at the last clean close.
    pub(crate) head: u64,
    /// The newest checkpoint signed.
    pub(crate) signed: Option<SignedCheckpoint>,
}

/// Why the high-water file cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HighWaterError {
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a high-water file, or its note does not verify with the ledger's key.
    #[error(
        "{path} is damaged ({reason}); it records what this ledger acknowledged and signed. Restore it from a backup, or delete it to open without that check"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl HighWater {
    /// The size below which the log must never be: what was acknowledged or signed.
    pub(crate) fn floor(&self) -> u64 {
        self.head.max(self.signed_size())
    }

    /// Size of the newest signed checkpoint (0: none).
    pub(crate) fn signed_size(&self) -> u64 {
        self.signed.as_ref().map_or(0, |c| c.size)
    }

    /// Reads the file of the data directory `dir`; `None` when there is none (a ledger created
    /// before it existed, or never closed nor signed).
    pub(crate) fn read(
        dir: &Path,
        verifier: &NoteVerifier,
    ) -> Result<Option<Self>, HighWaterError> {
        let path = dir.join(HIGHWATER_FILE);
        let io = |source| HighWaterError::Io { path: path.clone(), source };
        let damaged =
            |reason: &str| HighWaterError::Damaged { path: path.clone(), reason: reason.into() };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let mut text = String::new();
        use std::io::Read as _;
        file.take(MAX_LEN + 1).read_to_string(&mut text).map_err(io)?;
        if text.len() as u64 > MAX_LEN {
            return Err(damaged("too large"));
        }
        let mut lines = text.splitn(4, '\n');
        if lines.next() != Some(MAGIC) {
            return Err(damaged("not a high-water file"));
        }
        let mut number = |field: &str| -> Result<Option<u64>, HighWaterError> {
            let line = lines.next().ok_or_else(|| damaged("truncated"))?;
            let value = line.strip_prefix(field).and_then(|r| r.strip_prefix(' '));
            match value {
                Some("none") => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| damaged("a size is not a number")),
                None => Err(damaged("a field is missing")),
            }
        };
        let head = number("head")?.unwrap_or(0);
        let signed_size = number("signed")?;
        let rest = lines.next().unwrap_or_default();
        let signed = match signed_size {
            None => None,
            Some(size) => {
                let note = rest.strip_prefix('\n').ok_or_else(|| damaged("the note is missing"))?;
                let cp = SignedCheckpoint::open(verifier, note.as_bytes())
                    .map_err(|e| damaged(&format!("its checkpoint does not verify: {e}")))?;
                if cp.size != size {
                    return Err(damaged("its checkpoint has another size"));
                }
                Some(cp)
            }
        };
        Ok(Some(Self { head, signed }))
    }

    /// The floor the file records, read without checking its note (for error messages when the
    /// ledger's identity cannot be read); 0 when there is no readable file.
    pub(crate) fn unverified_floor(dir: &Path) -> u64 {
        let Ok(text) = std::fs::read_to_string(dir.join(HIGHWATER_FILE)) else { return 0 };
        text.lines()
            .skip(1)
            .take(2)
            .filter_map(|l| l.split_once(' ').and_then(|(_, v)| v.parse::<u64>().ok()))
            .max()
            .unwrap_or(0)
    }

    /// Writes the file atomically and durably (temp file, fsync, rename, fsync of the directory).
    pub(crate) fn write(&self, dir: &Path) -> std::io::Result<()> {
        let mut text = format!("{MAGIC}\nhead {}\n", self.head);
        match &self.signed {
            None => text.push_str("signed none\n"),
            Some(cp) => {
                text.push_str(&format!("signed {}\n\n", cp.size));
                text.push_str(&cp.note);
            }
        }
        let path = dir.join(HIGHWATER_FILE);
        let tmp = dir.join(format!("{HIGHWATER_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, NoteSigner};
    use crate::hash::Hash;

    #[test]
    fn high_water_round_trips_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::identity::SecretKey::from_seed(&[5; 32]);
        let signer = NoteSigner::new("oid:onoal:test:hw", key.signing_key().clone()).unwrap();
        let verifier = signer.verifier().clone();
        assert_eq!(HighWater::read(dir.path(), &verifier).unwrap(), None);
        let body = Checkpoint {
            origin: "oid:onoal:test:hw".into(),
            size: 42,
            root: Hash([1; 32]),
            extensions: vec![],
        };
        let note = signer.sign(&body);
        let hw = HighWater { head: 50, signed: Some(SignedCheckpoint { checkpoint: body, note }) };
        hw.write(dir.path()).unwrap();
        let back = HighWater::read(dir.path(), &verifier).unwrap().unwrap();
        assert_eq!(back, hw);
        assert_eq!(back.floor(), 50);
        HighWater { head: 7, signed: None }.write(dir.path()).unwrap();
        assert_eq!(HighWater::read(dir.path(), &verifier).unwrap().unwrap().floor(), 7);
        // A changed byte in the note, or garbage, is refused with a hint.
        hw.write(dir.path()).unwrap();
        let path = dir.path().join(HIGHWATER_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = HighWater::read(dir.path(), &verifier).unwrap_err().to_string();
        assert!(err.contains("damaged") && err.contains("delete it"), "{err}");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(HighWater::read(dir.path(), &verifier).is_err());
    }
}
