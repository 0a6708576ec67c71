//! [`ReplicaWriter`]: the only writer of one replica. It accepts checkpoints (signature with the
//! pinned key, consistency with the held one, fork evidence) and commits verified bundles.

use std::sync::atomic::Ordering;

use super::ReplicaError;
use super::bundle::{BUNDLE_ENTRIES, BundleError, VerifiedBundle};
use super::state::{ForkEvidence, ForkProof, SyncRecord, SyncStatus};
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::hash::Hash;
use crate::ids::LedgerId;
use crate::log::state::WriterHead;
use crate::log::{Durable, Log};
use crate::merkle;
use crate::store::Batch;
use crate::store::keys::{self, Cf, HeadRecord};
use crate::store::postings::Postings;
use crate::tile::TILE_WIDTH;
use crate::time::now_ms;

/// What [`ReplicaWriter::accept_checkpoint`] did with a valid checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Newer than the held one, proven consistent, stored.
    New,
    /// The same as the held one.
    Same,
    /// Older than the held one (the source is behind); nothing stored.
    Older,
}

/// The only writer of one replica (at most one per replica and process).
pub struct ReplicaWriter {
    pub(super) log: Log,
    pub(super) state: WriterHead,
    pub(super) record: SyncRecord,
    /// The other replica of the same ledger (full or sparse), whose checkpoints a new one must
    /// not contradict either.
    pub(super) sibling: Option<Log>,
    /// The newest checkpoint refused as not proven consistent: what a fork probe compares.
    rejected: Option<SignedCheckpoint>,
    /// Older checkpoints that could not be compared yet (the replica did not hold their size);
    /// compared when commits reach it.
    unchecked: Vec<SignedCheckpoint>,
    /// Size of the newest checkpoint on disk. An accepted checkpoint newer than it is written
    /// with the next write (the first bundle committed against it, or a status change), so a
    /// validly signed checkpoint whose entries never verify leaves nothing behind.
    persisted_checkpoint: Option<u64>,
}

impl std::fmt::Debug for ReplicaWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaWriter")
            .field("ledger_id", &self.log.identity().ledger_id)
            .field("held", &self.state.head.size)
            .finish()
    }
}

impl Drop for ReplicaWriter {
    fn drop(&mut self) {
        self.log.state.writer_active.store(false, Ordering::Release);
    }
}

impl ReplicaWriter {
    /// Takes over a log whose `writer_active` flag the caller set; clears it when dropped,
    /// also when loading failed.
    pub(super) fn new(
        log: Log,
        loaded: Result<WriterHead, ReplicaError>,
        record: Result<Option<SyncRecord>, ReplicaError>,
    ) -> Result<Self, ReplicaError> {
        let mut writer = Self {
            log,
            state: WriterHead {
                head: HeadRecord::default(),
                edge: crate::tree::RightEdge::new(),
                last_checkpoint: None,
            },
            record: SyncRecord::new(),
            sibling: None,
            rejected: None,
            unchecked: Vec::new(),
            persisted_checkpoint: None,
        };
        writer.state = loaded?;
        writer.persisted_checkpoint = writer.state.last_checkpoint.as_ref().map(|c| c.size);
        if let Some(r) = record? {
            writer.record = r;
        }
        Ok(writer)
    }

    /// Read access to the replica.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Entries held.
    pub fn held(&self) -> u64 {
        self.state.head.size
    }

    /// The newest accepted checkpoint.
    pub fn checkpoint(&self) -> Option<&SignedCheckpoint> {
        self.state.last_checkpoint.as_ref()
    }

    /// The stored sync record.
    pub fn record(&self) -> &SyncRecord {
        &self.record
    }

    pub(super) fn ledger_id(&self) -> LedgerId {
        self.log.identity().ledger_id
    }

    /// Writes `batch` with the sync record (and a newly accepted checkpoint), fsynced.
    pub(super) fn write(&mut self, mut batch: Batch) -> Result<(), ReplicaError> {
        self.record.updated_ms = now_ms();
        self.record.synced_size = self.state.head.size;
        self.record.last_leaf_hash = self.state.head.last_leaf_hash;
        if let Some(cp) = &self.state.last_checkpoint {
            self.record.checkpoint_size = cp.size;
            self.record.checkpoint_root = cp.root;
        }
        let bytes = self.record.encode()?;
        let store = &self.log.store;
        let number = self.log.state.number;
        // The own log (a restore) keeps no sync record.
        if number != keys::OWN_LOG {
            store.put(&mut batch, Cf::SyncState, &keys::sync_state_key(number), &bytes);
        }
        let pending = self
            .state
            .last_checkpoint
            .as_ref()
            .filter(|cp| Some(cp.size) != self.persisted_checkpoint);
        if let Some(cp) = pending {
            store.put(
                &mut batch,
                Cf::Checkpoints,
                &keys::checkpoint_key(number, cp.size),
                cp.note.as_bytes(),
            );
        }
        let pending_size = pending.map(|cp| cp.size);
        store.write(batch, true)?;
        if pending_size.is_some() {
            self.persisted_checkpoint = pending_size;
        }
        Ok(())
    }

    /// Forgets an accepted checkpoint that is not on disk yet (its entries failed to verify):
    /// the replica's newest checkpoint is again the stored one.
    ///
    /// # Errors
    /// Storage errors reading the stored checkpoint.
    pub fn discard_unwritten_checkpoint(&mut self) -> Result<(), ReplicaError> {
        let current = self.state.last_checkpoint.as_ref().map(|c| c.size);
        if current != self.persisted_checkpoint {
            self.state.last_checkpoint = self.log.latest_checkpoint()?;
        }
        Ok(())
    }

    /// Records a sync's status (and error) without changing the replica's data.
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_status(
        &mut self,
        status: SyncStatus,
        error: Option<String>,
    ) -> Result<(), ReplicaError> {
        if self.record.status == SyncStatus::Forked {
            return Ok(());
        }
        self.record.status = status;
        self.record.last_error = error;
        self.write(Batch::default())
    }

    /// Records a fork found outside a checkpoint exchange (a full sync's copy contradicting
    /// the held replica): `received` is the contradicting note.
    pub(super) fn record_fork(&mut self, received: &str, reason: String) -> ReplicaError {
        self.forked(received, reason)
    }

    /// Records a split view another node proved (a witness's evidence: two notes signed by
    /// this ledger's key that no append-only log can both have produced, checked by the caller
    /// with the pinned key): the replica stops syncing, as after a fork found here. Nothing is
    /// recorded when the replica already forked.
    ///
    /// # Errors
    /// Storage errors.
    pub fn record_split_view(
        &mut self,
        held: &str,
        received: &str,
        reason: String,
        proof: Option<ForkProof>,
    ) -> Result<(), ReplicaError> {
        if self.record.status == SyncStatus::Forked {
            return Ok(());
        }
        self.record.status = SyncStatus::Forked;
        self.record.last_error = Some(reason.clone());
        self.record.fork = Some(ForkEvidence {
            held: held.to_owned(),
            received: received.to_owned(),
            reason,
            detected_ms: now_ms(),
            proof,
        });
        self.write(Batch::default())
    }

    fn forked(&mut self, received: &str, reason: String) -> ReplicaError {
        self.forked_with(received, reason, None)
    }

    fn forked_with(
        &mut self,
        received: &str,
        reason: String,
        proof: Option<ForkProof>,
    ) -> ReplicaError {
        let held = self.state.last_checkpoint.as_ref().map(|c| c.note.clone()).unwrap_or_default();
        self.record.status = SyncStatus::Forked;
        self.record.last_error = Some(reason.clone());
        self.record.fork = Some(ForkEvidence {
            held,
            received: received.to_owned(),
            reason: reason.clone(),
            detected_ms: now_ms(),
            proof,
        });
        if let Err(e) = self.write(Batch::default()) {
            return e;
        }
        ReplicaError::Fork { ledger_id: self.ledger_id(), reason }
    }

    fn open_note(&self, note: &str) -> Result<Checkpoint, ReplicaError> {
        let id = self.ledger_id();
        let identity = self.log.identity();
        let cp = identity
            .verifier()
            .open(note.as_bytes())
            .map_err(|e| ReplicaError::BadSignature { ledger_id: id, reason: e.to_string() })?;
        if cp.origin != identity.oid.as_str() {
            return Err(ReplicaError::BadSignature {
                ledger_id: id,
                reason: format!("origin {:?} is not the ledger's OID {}", cp.origin, identity.oid),
            });
        }
        Ok(cp)
    }

    /// Checks `note` (signature with the pinned key, origin = the ledger's OID) and its
    /// consistency with the held checkpoint (`consistency` = RFC 9162 proof from the held size
    /// to the note's size; empty when nothing is held), and makes it the newest. It is written
    /// with the next write: the first bundle committed against it, or [`Self::set_status`]
    /// (a light replica); [`Self::discard_unwritten_checkpoint`] drops it.
    ///
    /// # Errors
    /// [`ReplicaError::BadSignature`], [`ReplicaError::Inconsistent`] (nothing stored),
    /// [`ReplicaError::Fork`] (same size, another root: evidence stored), storage errors.
    pub fn accept_checkpoint(
        &mut self,
        note: &str,
        consistency: &[Hash],
    ) -> Result<Accepted, ReplicaError> {
        if self.record.status == SyncStatus::Forked {
            return Err(ReplicaError::Forked(self.ledger_id()));
        }
        let cp = self.open_note(note)?;
        // The other replica of this ledger holds checkpoints too: none may contradict it.
        if let Some(other) =
            self.sibling.as_ref().map(|s| s.checkpoint_at(cp.size)).transpose()?.flatten()
            && other.root != cp.root
        {
            self.state.last_checkpoint.get_or_insert(other);
            return Err(self.forked(
                note,
                format!("two checkpoints of size {} with different roots", cp.size),
            ));
        }
        if let Some(held) = self.state.last_checkpoint.clone() {
            if cp.size < held.size {
                self.check_older(note, &cp, &held)?;
                return Ok(Accepted::Older);
            }
            if cp.size == held.size {
                if cp.root == held.root {
                    return Ok(Accepted::Same);
                }
                return Err(self.forked(
                    note,
                    format!("two checkpoints of size {} with different roots", cp.size),
                ));
            }
            if held.size > 0 {
                let checked = merkle::verify_consistency(
                    held.size,
                    cp.size,
                    &held.root,
                    &cp.root,
                    consistency,
                );
                if let Err(e) = checked {
                    self.rejected =
                        Some(SignedCheckpoint { checkpoint: cp.clone(), note: note.to_owned() });
                    return Err(ReplicaError::Inconsistent {
                        old_size: held.size,
                        new_size: cp.size,
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.state.last_checkpoint =
            Some(SignedCheckpoint { checkpoint: cp, note: note.to_owned() });
        Ok(Accepted::New)
    }

    /// A validly signed checkpoint older than the held one must be a prefix of what is held:
    /// its root is the held tree's root at its size. Compared now when the replica holds that
    /// many entries, otherwise when commits reach them.
    fn check_older(
        &mut self,
        note: &str,
        cp: &Checkpoint,
        held: &SignedCheckpoint,
    ) -> Result<(), ReplicaError> {
        if self.log.is_sparse() || self.state.head.size < cp.size {
            if self.unchecked.len() < 64
                && !self.unchecked.iter().any(|u| u.size == cp.size && u.root == cp.root)
            {
                self.unchecked
                    .push(SignedCheckpoint { checkpoint: cp.clone(), note: note.to_owned() });
            }
            return Ok(());
        }
        let ours = self.log.root_at(cp.size)?;
        if ours == cp.root {
            return Ok(());
        }
        // Evidence anyone can check: the held checkpoint's tree has another root at this size.
        let proof = (self.state.head.size >= held.size && cp.size > 0)
            .then(|| self.log.consistency_proof(cp.size, held.size))
            .transpose()?
            .map(|consistency| ForkProof {
                old_size: cp.size,
                old_root: ours,
                new_size: held.size,
                consistency,
            });
        Err(self.forked_with(
            note,
            format!(
                "the checkpoint of size {} has root {}, but the tree of the held checkpoint of size {} has root {ours} there",
                cp.size, cp.root, held.size
            ),
            proof,
        ))
    }

    /// After a commit: older checkpoints that could not be compared before are compared now.
    fn check_unchecked(&mut self) -> Result<(), ReplicaError> {
        let Some(held) = self.state.last_checkpoint.clone() else { return Ok(()) };
        let due: Vec<SignedCheckpoint> = {
            let head = self.state.head.size;
            let (due, later) =
                std::mem::take(&mut self.unchecked).into_iter().partition(|u| u.size <= head);
            self.unchecked = later;
            due
        };
        for u in due {
            self.check_older(&u.note.clone(), &u.checkpoint, &held)?;
        }
        Ok(())
    }

    /// After [`ReplicaError::Inconsistent`] and a source's answer to "your tree's root at the
    /// size I hold, and a consistency proof from there to the checkpoint you sent": when the
    /// proof verifies against the refused checkpoint's signed root but the root at the held
    /// size is not the held one, the refused checkpoint's tree is another history — a fork, with
    /// evidence anyone can check. Otherwise nothing is proven (`Ok`): the proof was simply bad.
    ///
    /// # Errors
    /// [`ReplicaError::Fork`] when proven.
    pub fn check_fork_proof(&mut self, old_root: Hash, proof: &[Hash]) -> Result<(), ReplicaError> {
        let (Some(held), Some(new)) = (self.state.last_checkpoint.clone(), self.rejected.clone())
        else {
            return Ok(());
        };
        if old_root == held.root
            || merkle::verify_consistency(held.size, new.size, &old_root, &new.root, proof).is_err()
        {
            return Ok(());
        }
        Err(self.forked_with(
            &new.note,
            format!(
                "the checkpoint of size {} proves root {old_root} at size {}, but the held checkpoint of that size has root {}",
                new.size, held.size, held.root
            ),
            Some(ForkProof {
                old_size: held.size,
                old_root,
                new_size: new.size,
                consistency: proof.to_vec(),
            }),
        ))
    }

    /// After [`ReplicaError::Inconsistent`]: `note` is the source's checkpoint of the held
    /// size. If it is validly signed and has another root, the ledger forked: the evidence is
    /// stored and [`ReplicaError::Fork`] returned. Otherwise the source merely sent a bad proof.
    ///
    /// # Errors
    /// [`ReplicaError::Fork`] when proven; [`ReplicaError::BadSignature`] for a bad note.
    pub fn check_fork(&mut self, note: &str) -> Result<(), ReplicaError> {
        let cp = self.open_note(note)?;
        let Some(held) = self.state.last_checkpoint.clone() else { return Ok(()) };
        if cp.size == held.size && cp.root != held.root {
            return Err(self.forked(
                note,
                format!("two checkpoints of size {} with different roots", cp.size),
            ));
        }
        Ok(())
    }

    /// Appends a verified bundle to the replica in one fsynced write: the entries beyond those
    /// held, tiles, indexes, head and sync state. Entries of the bundle the replica already
    /// holds must be identical.
    ///
    /// # Errors
    /// The bundle was checked against another checkpoint, does not continue the replica, or
    /// differs from held entries; storage errors. Nothing is written on error.
    pub fn commit(&mut self, bundle: VerifiedBundle) -> Result<u64, ReplicaError> {
        self.commit_all(vec![bundle])
    }

    /// Appends consecutive verified bundles in ONE fsynced write (group commit of what arrived
    /// together); all or nothing, as [`Self::commit`].
    ///
    /// # Errors
    /// As [`Self::commit`], for the first bundle that fails; nothing is written then.
    pub fn commit_all(&mut self, bundles: Vec<VerifiedBundle>) -> Result<u64, ReplicaError> {
        if self.record.status == SyncStatus::Forked {
            return Err(ReplicaError::Forked(self.ledger_id()));
        }
        let saved = self.state.clone();
        let written = self.stage_all(&bundles);
        if let Err(e) = written {
            self.state = saved;
            return Err(e);
        }
        let held = self.state.head.size;
        let checkpoint_size =
            self.state.last_checkpoint.as_ref().map(|c| c.size).filter(|&s| s <= held);
        self.log.state.publish(Durable { size: held, checkpoint_size });
        self.check_unchecked()?;
        Ok(held)
    }

    fn stage_all(&mut self, bundles: &[VerifiedBundle]) -> Result<(), ReplicaError> {
        // Sized up front: entries, their keys and a tile per bundle, so the batch never regrows.
        let capacity: usize = bundles
            .iter()
            .map(|b| b.leaf_bytes() + b.len() * 24 + crate::tile::encoded_len(TILE_WIDTH) + 64)
            .sum::<usize>()
            + 4096;
        let mut batch = Batch::with_capacity_bytes(capacity);
        let mut postings = Postings::default();
        for bundle in bundles {
            self.stage(bundle, &mut batch, &mut postings)?;
        }
        let store = self.log.store.clone();
        let number = self.log.state.number;
        for (id, tile) in self.state.edge.take_writes() {
            store.put(&mut batch, Cf::Tiles, &keys::tile_key(number, id), &tile);
        }
        for (key, value) in postings.finish(number) {
            store.put(&mut batch, Cf::Index, &key, &value);
        }
        store.put(&mut batch, Cf::Meta, &keys::head_key(number), &self.state.head.encode());
        let target = self.state.last_checkpoint.as_ref().map(|c| c.size);
        self.record.status = if Some(self.state.head.size) == target {
            SyncStatus::Complete
        } else {
            SyncStatus::InProgress
        };
        self.record.last_error = None;
        self.write(batch)
    }

    fn stage(
        &mut self,
        bundle: &VerifiedBundle,
        batch: &mut Batch,
        postings: &mut Postings,
    ) -> Result<(), ReplicaError> {
        let held_cp = self.state.last_checkpoint.as_ref().map(|c| (c.size, c.root));
        if held_cp != Some((bundle.checkpoint_size, bundle.checkpoint_root)) {
            return Err(ReplicaError::StaleBundle {
                bundle_size: bundle.checkpoint_size,
                held_size: held_cp.map_or(0, |c| c.0),
            });
        }
        let held = self.state.head.size;
        let first = bundle.first;
        let end = first + bundle.entries.len() as u64;
        if first > held || end < held {
            return Err(ReplicaError::Gap { first, held });
        }
        // Held entries of this bundle are in the bottom row of the right-edge level-0 tile (a
        // bundle never spans two tiles: its width divides 256).
        let overlap = (held - first) as usize;
        if overlap > 0 {
            let bottom = self.state.edge.level0();
            let at = (first % BUNDLE_ENTRIES) as usize;
            for i in 0..overlap {
                if bottom.get(at + i) != Some(&bundle.entries[i].1) {
                    return Err(BundleError::HeldEntryDiffers { seq: first + i as u64 }.into());
                }
            }
        }
        let Some(next) = bundle.entries.get(overlap) else { return Ok(()) };
        if next.2.prev_hash != self.state.head.last_leaf_hash {
            return Err(BundleError::ChainBroken {
                seq: held,
                expected: self.state.head.last_leaf_hash,
                found: next.2.prev_hash,
            }
            .into());
        }
        if next.2.timestamp_ms < self.state.head.last_timestamp_ms {
            return Err(BundleError::TimeWentBack { seq: held }.into());
        }
        let store = self.log.store.clone();
        let number = self.log.state.number;
        let mut writer = store.batch_writer(batch);
        // A whole bundle starting an empty level-0 tile brings that tile, already hashed.
        let whole_tile = overlap == 0 && bundle.width == BUNDLE_ENTRIES;
        for (data, h, entry) in &bundle.entries[overlap..] {
            let seq = entry.seq;
            writer.put(Cf::Entries, &keys::entry_key(number, seq), data);
            postings.add_entry(seq, &entry.content);
            if !whole_tile {
                self.state.edge.push_leaf(*h);
            }
            self.state.head = HeadRecord {
                size: seq + 1,
                last_leaf_hash: *h,
                last_timestamp_ms: entry.timestamp_ms,
            };
        }
        if whole_tile {
            if bundle.tile.is_full() {
                self.state.edge.push_full_tile(&bundle.tile);
            } else {
                self.state.edge.push_partial_tile(bundle.tile.clone());
            }
        }
        Ok(())
    }
}
