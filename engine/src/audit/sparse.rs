//! The audit of a sparse replica: every held entry decodes at its seq and its stored proof
//! verifies against a stored checkpoint whose signature verifies.

use std::collections::HashMap;

use crate::error::{ReadError, VerifyError};
use crate::hash::Hash;
use crate::log::Log;
use crate::merkle;

use super::VerifyReport;

pub(super) fn verify(log: &Log) -> Result<VerifyReport, VerifyError> {
    let verifier = log.identity().verifier();
    let mut roots: HashMap<u64, Hash> = HashMap::new();
    for size in log.checkpoint_sizes()? {
        let note = log.checkpoint_at(size)?.ok_or(ReadError::NoCheckpoint(size))?;
        let cp = verifier
            .open(note.note.as_bytes())
            .map_err(|e| VerifyError::CheckpointBadSignature { size, reason: e.to_string() })?;
        roots.insert(size, cp.root);
    }
    let entries = log.range(0, u64::MAX)?;
    for e in &entries {
        let seq = e.entry.seq;
        let invalid = |reason: String| VerifyError::SparseProofInvalid { seq, reason };
        let (size, proof) =
            log.stored_proof(seq)?.ok_or_else(|| invalid("its proof is missing".into()))?;
        let root = roots
            .get(&size)
            .ok_or_else(|| invalid(format!("no stored checkpoint of size {size}")))?;
        merkle::verify_inclusion(seq, size, &e.leaf_hash, &proof, root)
            .map_err(|err| invalid(err.to_string()))?;
    }
    super::index::check_sparse(&log.view()?)?;
    let head = log.head()?;
    Ok(VerifyReport {
        entries: entries.len() as u64,
        tiles: 0,
        checkpoints: roots.len() as u64,
        root: head.root,
    })
}
