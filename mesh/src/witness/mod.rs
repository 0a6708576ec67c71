//! Witnessing other logs' checkpoints (C2SP `tlog-witness`, `cosignature/v1`), without I/O.
//!
//! A witness keeps, per log (its origin line), the newest checkpoint it cosigned. A log asks it
//! to cosign a new checkpoint with an [`AddCheckpoint`]: the size the log believes the witness
//! holds, a consistency proof from there, the signed note. [`decide`] applies the spec's checks
//! in its order and says what to answer: a cosignature and the new state to persist *before*
//! answering, a conflict (the witness holds another size), or a refusal with the HTTP status of
//! the spec (400 malformed, 403 bad signature, 404 unknown log, 422 inconsistent). A checkpoint
//! that is validly signed but inconsistent with the cosigned one is the split view witnesses
//! exist to catch: the refusal carries [`SplitEvidence`], both notes, proven when the two are of
//! one size or when the log sent its own tree's root at the cosigned size (the mesh request
//! does; C2SP's HTTP body cannot).
//!
//! The driver (`net::witness`) serialises the decisions per witness, persists, and answers over
//! the mesh (`Request::AddCheckpoint`) and over HTTP (`POST /witness/add-checkpoint`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use onoal_engine::checkpoint::{CheckpointError, NoteVerifier};
use onoal_engine::cosignature::{Cosigner, add_signatures, split_note};
use onoal_engine::hash::{Hash, empty_root, sha256};
use onoal_engine::merkle::verify_consistency;

#[cfg(test)]
mod tests;

/// Most consistency proof lines a request may carry (C2SP: fewer than 64).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body accepted (a note with many signatures and a full proof fit easily).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A log's request to cosign a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the log believes the witness cosigned last (0: none).
    pub old: u64,
    /// RFC 9162 consistency proof from `old` to the checkpoint.
    pub proof: Vec<Hash>,
    /// The log's tree's root at `old`, when the log says it (mesh requests do): lets a refusal
    /// carry proven split-view evidence.
    pub old_root: Option<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    /// Parses C2SP's request body: `old N\n`, proof lines, an empty line, the checkpoint.
    ///
    /// # Errors
    /// What is malformed (answered with 400).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(format!("the body is larger than {MAX_REQUEST_BYTES} bytes"));
        }
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
        let (head, note) =
            text.split_once("\n\n").ok_or("no empty line before the checkpoint".to_owned())?;
        let mut lines = head.split('\n');
        let old_line = lines.next().unwrap_or_default();
        let old_text = old_line
            .strip_prefix("old ")
            .ok_or_else(|| format!("the first line {old_line:?} is not `old <size>`"))?;
        let canonical = !old_text.is_empty()
            && old_text.bytes().all(|b| b.is_ascii_digit())
            && (old_text == "0" || !old_text.starts_with('0'));
        let old: u64 = old_text.parse().ok().filter(|_| canonical).ok_or_else(|| {
            format!("old size {old_text:?} is not a decimal without leading zeros")
        })?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(format!("more than {MAX_PROOF_LINES} consistency proof lines"));
            }
            let h = B64
                .decode(l)
                .ok()
                .and_then(|b| Hash::from_slice(&b))
                .ok_or_else(|| format!("proof line {l:?} is not a base64 SHA-256 hash"))?;
            proof.push(h);
        }
        Ok(Self { old, proof, old_root: None, note: note.to_owned() })
    }

    /// The C2SP request body.
    pub fn to_text(&self) -> String {
        let mut s = format!("old {}\n", self.old);
        for h in &self.proof {
            s.push_str(&h.to_base64());
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }
}

/// What a witness keeps per log: the newest checkpoint it cosigned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessedLog {
    /// The log's origin line.
    pub origin: String,
    /// Cosigned tree size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The note as cosigned: the log's signature(s) and this witness's line.
    pub note: String,
    /// When (ms since the epoch).
    pub cosigned_ms: u64,
}

/// Two checkpoints of one log, both signed by its key, that no append-only log can both have
/// produced — or that the log could not show to be consistent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEvidence {
    /// The log's origin line.
    pub origin: String,
    /// The checkpoint this witness cosigned.
    pub held: String,
    /// The conflicting checkpoint the log (or someone relaying it) submitted.
    pub received: String,
    /// Why they conflict.
    pub reason: String,
    /// True when anyone can check it with the log's key alone: two checkpoints of one size with
    /// different roots, or `proof` shows the received tree has another root at the held size.
    pub proven: bool,
    /// The received tree's root at the held size and a consistency proof from it.
    pub proof: Option<SplitProof>,
    /// When it was found (ms since the epoch).
    pub detected_ms: u64,
}

impl SplitEvidence {
    /// Checks the evidence with the log's verifier, as any node can: both notes are signed, and
    /// they conflict by size and root or by the proof. Returns the reason when proven.
    ///
    /// # Errors
    /// Why it proves nothing.
    pub fn check(&self, log: &NoteVerifier) -> Result<String, String> {
        let held = log.open(self.held.as_bytes()).map_err(|e| format!("held note: {e}"))?;
        let received =
            log.open(self.received.as_bytes()).map_err(|e| format!("received note: {e}"))?;
        if held.size == received.size {
            return if held.root == received.root {
                Err("the two checkpoints agree".into())
            } else {
                Ok(format!("two checkpoints of size {} with different roots", held.size))
            };
        }
        let (small, large) =
            if held.size < received.size { (&held, &received) } else { (&received, &held) };
        let p = self.proof.as_ref().ok_or("no proof, and the sizes differ")?;
        if p.old_size != small.size || p.new_size != large.size {
            return Err("the proof is for other sizes".into());
        }
        if p.old_root == small.root {
            return Err("the proof shows the trees agree".into());
        }
        verify_consistency(p.old_size, p.new_size, &p.old_root, &large.root, &p.consistency)
            .map_err(|e| format!("the proof does not verify: {e}"))?;
        Ok(format!(
            "the checkpoint of size {} has root {} at size {}, where the signed checkpoint of that size has {}",
            large.size, p.old_root, small.size, small.root
        ))
    }
}

/// The received tree at the held size: its root there (not the held one) and an RFC 9162
/// consistency proof from it to the received checkpoint's root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitProof {
    /// The smaller size.
    pub old_size: u64,
    /// The larger tree's root at the smaller size.
    pub old_root: Hash,
    /// The larger size.
    pub new_size: u64,
    /// Consistency proof from `old_root` to the larger checkpoint's root.
    pub consistency: Vec<Hash>,
}

/// A witness's answer, as C2SP's HTTP status codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 200: persist `state`, then answer with `line`.
    Cosign {
        /// The new state for the log.
        state: WitnessedLog,
        /// The cosignature line (ends in `\n`).
        line: String,
    },
    /// 409: the witness cosigned `size` last; ask again from there.
    Conflict {
        /// The witness's size for the log.
        size: u64,
    },
    /// Refused (400, 403, 404, 422), with the evidence of a split view when there is one.
    Refused {
        /// HTTP status.
        status: u16,
        /// Why, for the log's operator.
        reason: String,
        /// Both notes, when the checkpoint is signed but inconsistent with the cosigned one.
        evidence: Option<SplitEvidence>,
    },
}

fn refused(status: u16, reason: impl Into<String>) -> Verdict {
    Verdict::Refused { status, reason: reason.into(), evidence: None }
}

/// The origin line of a note (its first line), if it has one.
pub fn origin_of(note: &str) -> Option<&str> {
    note.split_once('\n').map(|(o, _)| o).filter(|o| !o.is_empty())
}

/// The key a witness stores a log's state under: SHA-256 of its origin.
pub fn origin_hash(origin: &str) -> Hash {
    sha256(&[origin.as_bytes()])
}

/// Applies the checks of C2SP tlog-witness `add-checkpoint`, in order, to `request`: `log_key`
/// is the verifier of the note's origin (`None`: not a log this witness knows), `held` what it
/// cosigned for that origin. Pure: the caller persists a [`Verdict::Cosign`]'s state before it
/// answers, atomically with the read of `held` (one decision per origin at a time).
pub fn decide(
    request: &AddCheckpoint,
    log_key: Option<&NoteVerifier>,
    held: Option<&WitnessedLog>,
    cosigner: &Cosigner,
    now_ms: u64,
) -> Verdict {
    let Some(origin) = origin_of(&request.note) else {
        return refused(400, "the checkpoint has no origin line");
    };
    let Some(log_key) = log_key else {
        return refused(
            404,
            format!(
                "this witness does not know the log {origin:?}: its operator pins the ledger (onoal peer add) or adds its key (--witness-log VKEY)"
            ),
        );
    };
    let cp = match log_key.open(request.note.as_bytes()) {
        Ok(cp) => cp,
        Err(e @ (CheckpointError::NoSignature { .. } | CheckpointError::BadSignature { .. })) => {
            return refused(403, e.to_string());
        }
        Err(e) => return refused(400, e.to_string()),
    };
    if request.old > cp.size {
        return refused(
            400,
            format!("old size {} is larger than the checkpoint's size {}", request.old, cp.size),
        );
    }
    let held_size = held.map_or(0, |h| h.size);
    if request.old != held_size {
        return Verdict::Conflict { size: held_size };
    }
    if cp.size == 0 && cp.root != empty_root() {
        return refused(422, "a checkpoint of size 0 must have the empty tree's root");
    }
    let inconsistent = |reason: String, proof: Option<SplitProof>, proven: bool| {
        let evidence = held.map(|h| SplitEvidence {
            origin: origin.to_owned(),
            held: h.note.clone(),
            received: request.note.clone(),
            reason: reason.clone(),
            proven,
            proof,
            detected_ms: now_ms,
        });
        Verdict::Refused { status: 422, reason, evidence }
    };
    // A cosigned empty tree is consistent with every tree: as if nothing were held.
    match held.filter(|h| h.size > 0) {
        None if !request.proof.is_empty() => {
            return refused(422, "old size 0 takes no consistency proof");
        }
        None => {}
        Some(h) if h.size == cp.size && h.root != cp.root => {
            return inconsistent(
                format!(
                    "a checkpoint of size {} with root {}, but this witness cosigned root {} at that size: the log shows different histories",
                    cp.size, cp.root, h.root
                ),
                None,
                true,
            );
        }
        Some(h) if h.size == cp.size => {}
        Some(h) => {
            if let Err(e) = verify_consistency(h.size, cp.size, &h.root, &cp.root, &request.proof) {
                // The log's own root at the held size, when it sent one, proves the split.
                let proof = request.old_root.filter(|r| *r != h.root).and_then(|old_root| {
                    verify_consistency(h.size, cp.size, &old_root, &cp.root, &request.proof)
                        .ok()
                        .map(|()| SplitProof {
                            old_size: h.size,
                            old_root,
                            new_size: cp.size,
                            consistency: request.proof.clone(),
                        })
                });
                let proven = proof.is_some();
                let reason = if proven {
                    format!(
                        "the checkpoint of size {} is not consistent with the cosigned one of size {}: its tree has another root at that size (the log shows different histories)",
                        cp.size, h.size
                    )
                } else {
                    format!(
                        "the consistency proof from the cosigned size {} to {} does not verify: {e}",
                        h.size, cp.size
                    )
                };
                return inconsistent(reason, proof, proven);
            }
        }
    }
    let Ok((body, _)) = split_note(&request.note) else {
        return refused(400, "the note has no signature block");
    };
    let line = cosigner.cosign(body, now_ms / 1000);
    let note = match add_signatures(&request.note, std::slice::from_ref(&line)) {
        Ok(n) => n,
        Err(e) => return refused(400, e.to_string()),
    };
    Verdict::Cosign {
        state: WitnessedLog {
            origin: origin.to_owned(),
            size: cp.size,
            root: cp.root,
            note,
            cosigned_ms: now_ms,
        },
        line,
    }
}
