//! Sparse replicas (filtered syncs): entries that arrive with their inclusion proofs, stored
//! without a tree.

use super::bundle::BundleError;
use super::state::SyncStatus;
use super::{ReplicaError, ReplicaWriter};
use crate::hash::{Hash, leaf_hash};
use crate::log::Shape;
use crate::log::sparse::encode_proof;
use crate::merkle;
use crate::record::Entry;
use crate::store::Batch;
use crate::store::keys::{self, Cf};
use crate::store::postings::Postings;

/// An entry as a filtered sync receives it: its leaf data and its inclusion proof in the tree
/// of the checkpoint being synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenEntry {
    /// Leaf data.
    pub leaf_data: Vec<u8>,
    /// RFC 9162 inclusion proof.
    pub proof: Vec<Hash>,
}

impl ReplicaWriter {
    /// Stores entries of a filtered sync in a sparse replica: each must decode canonically at
    /// its seq, lie in the held checkpoint's tree and carry a valid inclusion proof into it.
    /// All or nothing, in one fsynced write (with the checkpoint if it is new). Entries already
    /// held must be identical; their proofs move to the new checkpoint. Returns how many
    /// entries were new.
    ///
    /// # Errors
    /// [`ReplicaError::Bundle`] naming the first entry that fails; a full replica; storage.
    pub fn commit_proven(&mut self, entries: Vec<ProvenEntry>) -> Result<u64, ReplicaError> {
        if self.log.shape() != Shape::Sparse {
            return Err(ReplicaError::Corrupt(
                "proven entries go to a sparse replica (sparse_writer), not a full one".into(),
            ));
        }
        if self.record.status == SyncStatus::Forked {
            return Err(ReplicaError::Forked(self.ledger_id()));
        }
        let Some(cp) = self.state.last_checkpoint.clone() else {
            return Err(ReplicaError::StaleBundle { bundle_size: 0, held_size: 0 });
        };
        let decoded: Vec<(Entry, Hash)> = entries
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let entry = Entry::decode(&p.leaf_data).map_err(|e| BundleError::Undecodable {
                    seq: i as u64,
                    reason: format!("(position {i} of the page) {e}"),
                })?;
                let seq = entry.seq;
                entry
                    .content
                    .check_issuer_signature()
                    .map_err(|_| BundleError::BadIssuerSignature { seq })?;
                let h = leaf_hash(&p.leaf_data);
                merkle::verify_inclusion(seq, cp.size, &h, &p.proof, &cp.root).map_err(|e| {
                    BundleError::RootMismatch {
                        first: seq,
                        end: seq + 1,
                        size: cp.size,
                        computed: match e {
                            merkle::ProofError::RootMismatch { computed, .. } => computed,
                            _ => Hash::ZERO,
                        },
                        expected: cp.root,
                    }
                })?;
                Ok((entry, h))
            })
            .collect::<Result<_, BundleError>>()?;
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| decoded[i].0.seq);
        order.dedup_by_key(|i| decoded[*i].0.seq);
        let store = self.log.store.clone();
        let number = self.log.state.number;
        let view = self.log.view()?;
        let mut batch = Batch::default();
        let mut postings = Postings::default();
        let mut new = 0u64;
        for &i in &order {
            let (entry, h) = &decoded[i];
            let seq = entry.seq;
            match view.stored(seq)? {
                Some(held) if held.leaf_hash != *h => {
                    return Err(BundleError::HeldEntryDiffers { seq }.into());
                }
                Some(_) => {}
                None => {
                    store.put(
                        &mut batch,
                        Cf::Entries,
                        &keys::entry_key(number, seq),
                        &entries[i].leaf_data,
                    );
                    postings.add_entry(seq, &entry.content);
                    new += 1;
                }
            }
            let proof = encode_proof(cp.size, &entries[i].proof);
            store.put(&mut batch, Cf::SyncState, &keys::proof_key(number, seq), &proof);
        }
        drop(view);
        for (key, value) in postings.finish(number) {
            store.put(&mut batch, Cf::Index, &key, &value);
        }
        // Complete only once the filtered sync has all its pages (the driver says so).
        self.record.status = SyncStatus::InProgress;
        self.record.last_error = None;
        self.write(batch)?;
        Ok(new)
    }
}
