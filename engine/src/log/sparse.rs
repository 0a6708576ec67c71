//! A sparse replica's own reads: each held entry's stored inclusion proof (`sync_state`
//! `log || 'p' || seq` -> tree size BE || hashes).

use super::state::LogState;
use crate::error::ReadError;
use crate::hash::Hash;
use crate::store::Store;
use crate::store::keys::{self, Cf};

/// The stored inclusion proof of a sparse replica's entry: (tree size, proof).
pub(crate) fn stored_proof(
    store: &Store,
    log: &LogState,
    seq: u64,
) -> Result<Option<(u64, Vec<Hash>)>, ReadError> {
    let Some(v) = store.get(Cf::SyncState, &keys::proof_key(log.number, seq))? else {
        return Ok(None);
    };
    decode_proof(&v)
        .map(Some)
        .ok_or_else(|| ReadError::Corrupt(format!("stored proof of entry {seq} is malformed")))
}

/// `size BE || hashes`.
pub(crate) fn encode_proof(size: u64, proof: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 32 * proof.len());
    out.extend_from_slice(&size.to_be_bytes());
    for h in proof {
        out.extend_from_slice(h.as_bytes());
    }
    out
}

fn decode_proof(v: &[u8]) -> Option<(u64, Vec<Hash>)> {
    if v.len() < 8 || !(v.len() - 8).is_multiple_of(32) {
        return None;
    }
    let size = u64::from_be_bytes(v[..8].try_into().ok()?);
    let proof = v[8..].chunks_exact(32).map(Hash::from_slice).collect::<Option<_>>()?;
    Some((size, proof))
}
