//! C2SP transparency-log proofs (`c2sp.org/tlog-proof@v1`): an entry's index, its RFC 9162
//! inclusion proof and the log's signed checkpoint in one text file (`.tlog-proof`), checkable
//! offline with the log's verifier key alone.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 of the entry's leaf data>      (Onoal always writes it; optional in the format)
//! index <decimal, no leading zeros>
//! <base64 hash, from the leaf's sibling up>   (zero or more lines)
//!
//! <the signed checkpoint note, verbatim>
//! ```
//!
//! Onoal puts the entry's leaf data (the bytes its leaf hash is over) in the `extra` line, so
//! the file alone says what was logged. The format calls `extra` unauthenticated, and it is
//! here too until the inclusion proof binds its hash to the signed root: [`TlogProof::verify`]
//! checks exactly that.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{Checkpoint, CheckpointError, NoteVerifier};
use crate::hash::{Hash, leaf_hash};
use crate::merkle::{ProofError, verify_inclusion};

/// The first line of every tlog proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Most hashes an inclusion proof of a tree of up to 2^64 leaves has.
const MAX_PROOF_HASHES: usize = 64;

/// A parsed (not yet verified) tlog proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// The `extra` line's bytes (for Onoal: the entry's leaf data), unauthenticated.
    pub extra: Option<Vec<u8>>,
    /// The entry's index in the log.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up to the root's child.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

/// Why a tlog proof does not parse or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogProofError {
    /// Not the format (the line and what is wrong with it).
    #[error("not a c2sp.org/tlog-proof@v1 file: {0}")]
    Malformed(String),
    /// The checkpoint is not signed by the given key, or is not a checkpoint.
    #[error("the checkpoint does not verify with this vkey: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The proof carries no leaf data and none was given.
    #[error(
        "the proof carries no leaf data (no `extra` line); give the logged leaf data (--leaf-data FILE)"
    )]
    NoLeafData,
    /// The index is outside the checkpoint's tree.
    #[error("index {index} is not in the checkpoint's tree of size {size}")]
    IndexOutsideTree {
        /// The proof's index.
        index: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The inclusion proof does not lead from the leaf to the signed root.
    #[error("the inclusion proof does not lead from this leaf to the checkpoint's root: {0}")]
    Inclusion(#[from] ProofError),
}

impl TlogProof {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a proof (strictly: every line as the format says, standard base64, 32-byte
    /// hashes, an index without leading zeros).
    ///
    /// # Errors
    /// [`TlogProofError::Malformed`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        let bad = |what: &str| TlogProofError::Malformed(what.to_owned());
        let mut rest = text;
        let mut line = || -> Result<&str, TlogProofError> {
            let (l, r) =
                rest.split_once('\n').ok_or_else(|| bad("it ends before the checkpoint"))?;
            rest = r;
            Ok(l)
        };
        if line()? != HEADER {
            return Err(bad("the first line must be c2sp.org/tlog-proof@v1"));
        }
        let mut next = line()?;
        let extra = match next.strip_prefix("extra ") {
            Some(b) => {
                let bytes = B64.decode(b).map_err(|_| bad("the extra line is not base64"))?;
                next = line()?;
                Some(bytes)
            }
            None => None,
        };
        let index = next.strip_prefix("index ").ok_or_else(|| bad("no `index N` line"))?;
        let valid = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        let index: u64 = index
            .parse()
            .ok()
            .filter(|_| valid)
            .ok_or_else(|| bad("the index is not a decimal without leading zeros"))?;
        let mut hashes = Vec::new();
        loop {
            let l = line()?;
            if l.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(bad("more than 64 proof hashes"));
            }
            let h = B64
                .decode(l)
                .ok()
                .and_then(|b| Hash::from_slice(&b))
                .ok_or_else(|| bad("a proof line is not a base64 SHA-256 hash"))?;
            hashes.push(h);
        }
        if rest.is_empty() {
            return Err(bad("no checkpoint after the empty line"));
        }
        Ok(Self { extra, index, hashes, checkpoint: rest.to_owned() })
    }

    /// Verifies the proof with the log's key: the checkpoint's signature and origin, then the
    /// inclusion of `leaf_data` (or, when `None`, the `extra` line's bytes) at `index` in its
    /// tree. Returns the checkpoint and the leaf data that was proven.
    ///
    /// # Errors
    /// The first check that fails.
    pub fn verify<'a>(
        &'a self,
        verifier: &NoteVerifier,
        leaf_data: Option<&'a [u8]>,
    ) -> Result<(Checkpoint, &'a [u8]), TlogProofError> {
        let checkpoint = verifier.open(self.checkpoint.as_bytes())?;
        let data = leaf_data.or(self.extra.as_deref()).ok_or(TlogProofError::NoLeafData)?;
        if self.index >= checkpoint.size {
            return Err(TlogProofError::IndexOutsideTree {
                index: self.index,
                size: checkpoint.size,
            });
        }
        verify_inclusion(
            self.index,
            checkpoint.size,
            &leaf_hash(data),
            &self.hashes,
            &checkpoint.root,
        )?;
        Ok((checkpoint, data))
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::checkpoint::NoteSigner;
    use crate::merkle;

    fn node(leaves: &[Hash], id: merkle::NodeId) -> Hash {
        if id.level == 0 {
            return leaves[usize::try_from(id.index).unwrap()];
        }
        let l = merkle::NodeId::new(id.level - 1, id.index * 2);
        let r = merkle::NodeId::new(id.level - 1, id.index * 2 + 1);
        crate::hash::node_hash(&node(leaves, l), &node(leaves, r))
    }

    fn source(leaves: &[Hash]) -> impl FnMut(merkle::NodeId) -> Result<Hash, ()> + '_ {
        move |id| Ok(node(leaves, id))
    }

    /// A signed log of `n` leaves `leaf-0`, `leaf-1`, … and its signer.
    fn log(n: u64) -> (Vec<Vec<u8>>, NoteSigner, String) {
        let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("leaf-{i}").into_bytes()).collect();
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let signer =
            NoteSigner::new("oid:onoal:test:tlog", SigningKey::from_bytes(&[3; 32])).unwrap();
        let root = merkle::root(n, &mut source(&hashes)).unwrap();
        let cp =
            Checkpoint { origin: "oid:onoal:test:tlog".into(), size: n, root, extensions: vec![] };
        let note = signer.sign(&cp);
        (leaves, signer, note)
    }

    fn proof_of(leaves: &[Vec<u8>], note: &str, index: u64) -> TlogProof {
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let size = u64::try_from(hashes.len()).unwrap();
        let proof = merkle::inclusion_proof(index, size, &mut source(&hashes)).unwrap().unwrap();
        TlogProof {
            extra: Some(leaves[usize::try_from(index).unwrap()].clone()),
            index,
            hashes: proof,
            checkpoint: note.to_owned(),
        }
    }

    #[test]
    fn the_text_is_the_format_line_by_line() {
        let h1 = crate::hash::sha256(&[b"hash1"]);
        let h2 = crate::hash::sha256(&[b"hash2"]);
        let p = TlogProof {
            extra: Some(b"extra information".to_vec()),
            index: 10,
            hashes: vec![h1, h2],
            checkpoint: "checkpoint data\n".into(),
        };
        let want = format!(
            "c2sp.org/tlog-proof@v1\nextra {}\nindex 10\n{}\n{}\n\ncheckpoint data\n",
            B64.encode(b"extra information"),
            B64.encode(h1.0),
            B64.encode(h2.0)
        );
        assert_eq!(p.to_text(), want);
        assert_eq!(TlogProof::parse(&want).unwrap(), p);
        let bare = TlogProof { extra: None, index: 0, hashes: vec![], checkpoint: "c\n".into() };
        assert_eq!(bare.to_text(), "c2sp.org/tlog-proof@v1\nindex 0\n\nc\n");
        assert_eq!(TlogProof::parse(&bare.to_text()).unwrap(), bare);
    }

    #[test]
    fn malformed_files_are_refused_with_the_reason() {
        let h = B64.encode([7u8; 32]);
        for (text, want) in [
            ("", "ends before"),
            ("wrong-header\nindex 0\n\nc\n", "first line"),
            ("c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\nc\n", "extra line"),
            ("c2sp.org/tlog-proof@v1\nindex 01\n\nc\n", "leading zeros"),
            ("c2sp.org/tlog-proof@v1\nindex -1\n\nc\n", "leading zeros"),
            ("c2sp.org/tlog-proof@v1\nindex 99999999999999999999\n\nc\n", "leading zeros"),
            ("c2sp.org/tlog-proof@v1\n\n\nc\n", "index"),
            ("c2sp.org/tlog-proof@v1\nindex 3\nAAAA\n\nc\n", "SHA-256"),
            ("c2sp.org/tlog-proof@v1\nindex 3\n", "ends before"),
            ("c2sp.org/tlog-proof@v1\nindex 3\n\n", "no checkpoint"),
        ] {
            let e = TlogProof::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let long = format!("c2sp.org/tlog-proof@v1\nindex 3\n{}\nc\n", format!("{h}\n").repeat(65));
        assert!(TlogProof::parse(&long).unwrap_err().to_string().contains("64"));
    }

    #[test]
    fn every_leaf_verifies_and_every_lie_is_caught() {
        for n in [1u64, 2, 5, 8, 13] {
            let (leaves, signer, note) = log(n);
            for i in 0..n {
                let p = proof_of(&leaves, &note, i);
                let parsed = TlogProof::parse(&p.to_text()).unwrap();
                let (cp, data) = parsed.verify(signer.verifier(), None).unwrap();
                assert_eq!((cp.size, data), (n, leaves[usize::try_from(i).unwrap()].as_slice()));
            }
        }
        let (leaves, signer, note) = log(13);
        let good = proof_of(&leaves, &note, 6);
        let check = |p: &TlogProof, data: Option<&[u8]>| {
            p.verify(signer.verifier(), data).map(|(cp, _)| cp)
        };
        // Other leaf data, in the file or given.
        let mut p = good.clone();
        p.extra = Some(b"leaf-7".to_vec());
        assert!(matches!(check(&p, None), Err(TlogProofError::Inclusion(_))));
        assert!(matches!(check(&good, Some(b"leaf-5")), Err(TlogProofError::Inclusion(_))));
        assert!(check(&good, Some(b"leaf-6")).is_ok());
        // No leaf data at all.
        p.extra = None;
        assert_eq!(check(&p, None).unwrap_err(), TlogProofError::NoLeafData);
        // Another index, a changed hash, a dropped hash.
        let mut p = good.clone();
        p.index = 7;
        assert!(check(&p, None).is_err());
        p.index = 13;
        assert!(matches!(check(&p, None), Err(TlogProofError::IndexOutsideTree { .. })));
        let mut p = good.clone();
        p.hashes[1].0[0] ^= 1;
        assert!(matches!(check(&p, None), Err(TlogProofError::Inclusion(_))));
        let mut p = good.clone();
        p.hashes.pop();
        assert!(matches!(check(&p, None), Err(TlogProofError::Inclusion(_))));
        // A checkpoint by another key, or altered.
        let other =
            NoteSigner::new("oid:onoal:test:tlog", SigningKey::from_bytes(&[4; 32])).unwrap();
        assert!(matches!(
            good.verify(other.verifier(), None),
            Err(TlogProofError::Checkpoint(CheckpointError::NoSignature { .. }))
        ));
        let mut p = good;
        p.checkpoint = p.checkpoint.replacen("13\n", "14\n", 1);
        assert!(matches!(check(&p, None), Err(TlogProofError::Checkpoint(_))));
    }
}
