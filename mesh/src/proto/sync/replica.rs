//! What a receiver does with a session's events, on its replica: the engine calls behind
//! [`super::Event`], with their outcomes sorted into what the peer did wrong
//! ([`PeerMisbehaved`]) and what went wrong here. Blocking (fsynced writes): a driver runs these
//! off its async workers. The network driver and the simulator share them.

use onoal_engine::checkpoint::Checkpoint;
use onoal_engine::replica::{
    ProvenEntry, ReplicaError, ReplicaWriter, SyncStatus, VerifiedBundle, verify_range,
};
use onoal_engine::{Hash, TreeSize};

use super::bundle::ReceivedBundle;
use super::error::SessionError;
use super::session::{AcceptVerdict, SessionMode};
use crate::proto::message::ProvenEntryWire;
use crate::proto::misbehaved::PeerMisbehaved;

/// A bad signature or bundle is the peer's violation; a fork is the origin's (its key signed
/// both histories), recorded as evidence in the replica and reported by the driver against the
/// origin, not against whoever relayed it.
fn replica_error(e: ReplicaError) -> SessionError {
    match e {
        ReplicaError::BadSignature { reason, .. } => {
            SessionError::Misbehaved(PeerMisbehaved::BadSignature(reason))
        }
        ReplicaError::Bundle(b) => SessionError::Misbehaved(PeerMisbehaved::BadBundle(b)),
        other => SessionError::Replica(other),
    }
}

/// [`super::Event::AcceptCheckpoint`]: checks `note` and its consistency proof with the
/// replica; a light sync records its status.
pub fn accept(
    writer: &mut ReplicaWriter,
    note: &str,
    consistency: &[Hash],
    light: bool,
) -> AcceptVerdict {
    match writer.accept_checkpoint(note, consistency) {
        Ok(_) => {
            if light && let Err(e) = writer.set_status(SyncStatus::CheckpointOnly, None) {
                return AcceptVerdict::Refused(replica_error(e));
            }
            AcceptVerdict::Accepted(TreeSize(writer.checkpoint().map_or(0, |c| c.size)))
        }
        Err(ReplicaError::Inconsistent { old_size, new_size, reason }) => {
            AcceptVerdict::Inconsistent(PeerMisbehaved::InconsistentCheckpoint {
                old_size,
                new_size,
                reason,
            })
        }
        Err(e) => AcceptVerdict::Refused(replica_error(e)),
    }
}

/// A follower's witness policy on a received checkpoint: `Ok` when `note` carries the
/// quorum of cosignatures by trusted witnesses.
///
/// # Errors
/// Too few cosignatures ([`SessionError::Uncosigned`]); a bad cosignature by a trusted witness
/// is the peer's violation (the note was changed).
pub fn cosigned(
    policy: &onoal_engine::cosignature::Cosigners,
    note: &str,
) -> Result<(), SessionError> {
    match policy.check(note) {
        Ok((true, _)) => Ok(()),
        Ok((false, by)) => Err(SessionError::Uncosigned {
            size: note.lines().nth(1).and_then(|l| l.parse().ok()).unwrap_or(0),
            have: by,
            need: policy.quorum,
        }),
        Err(e) => Err(SessionError::Misbehaved(PeerMisbehaved::BadSignature(e.to_string()))),
    }
}

/// [`super::Event::CheckFork`]: compares the source's checkpoint of the held size with the
/// held one; a fork's evidence is stored.
///
/// # Errors
/// The fork (or a bad signature on the note).
pub fn check_fork(writer: &mut ReplicaWriter, note: &str) -> Result<(), SessionError> {
    writer.check_fork(note).map_err(replica_error)
}

/// [`super::Event::CheckForkProof`]: checks the source's root at the held size and its proof
/// to the refused checkpoint; a proven fork's evidence is stored.
///
/// # Errors
/// The fork.
pub fn check_fork_proof(
    writer: &mut ReplicaWriter,
    old_root: Hash,
    proof: &[Hash],
) -> Result<(), SessionError> {
    writer.check_fork_proof(old_root, proof).map_err(replica_error)
}

/// Verifies a received bundle against the accepted checkpoint (CPU work: any thread).
///
/// # Errors
/// The bundle's first violation.
pub fn verify(
    checkpoint: &Checkpoint,
    bundle: ReceivedBundle,
) -> Result<VerifiedBundle, SessionError> {
    verify_range(checkpoint, bundle.first, bundle.width, bundle.leaves, &bundle.path)
        .map_err(|e| SessionError::Misbehaved(PeerMisbehaved::BadBundle(e)))
}

/// What one [`super::Event::Commit`] did.
#[derive(Debug)]
pub struct Committed {
    /// Entries held now, or why the commit failed.
    pub result: Result<TreeSize, SessionError>,
    /// Bundles in the commit.
    pub bundles: usize,
    /// New entries written.
    pub entries: u64,
    /// Leaf bytes of the bundles.
    pub bytes: u64,
}

/// [`super::Event::Commit`]: appends consecutive verified bundles in one fsynced write.
pub fn commit(writer: &mut ReplicaWriter, bundles: Vec<VerifiedBundle>) -> Committed {
    let n = bundles.len();
    let bytes: u64 = bundles.iter().map(|b| b.leaf_bytes() as u64).sum();
    let before = writer.held();
    let result = writer.commit_all(bundles).map(TreeSize).map_err(replica_error);
    let entries = result.as_ref().map_or(0, |held| held.0.saturating_sub(before));
    Committed { result, bundles: n, entries, bytes }
}

/// [`super::Event::CommitPage`]: stores a filtered page (each proof checked against the
/// accepted checkpoint) in the sparse replica. Returns how many entries were new.
///
/// # Errors
/// A bad proof (the peer's), or the replica's refusal.
pub fn commit_page(
    writer: &mut ReplicaWriter,
    entries: Vec<ProvenEntryWire>,
) -> Result<u64, SessionError> {
    let proven = entries
        .into_iter()
        .map(|e| ProvenEntry { leaf_data: e.leaf_data, proof: e.proof })
        .collect();
    writer.commit_proven(proven).map_err(replica_error)
}

/// After [`super::Event::Done`] or [`super::Event::NothingToSync`]: an entry sync's replica
/// that holds its newest checkpoint's entries is complete, and so is a filtered sync's once it
/// has every page (a light sync keeps `checkpoint_only`).
///
/// # Errors
/// Storage errors.
pub fn finish(writer: &mut ReplicaWriter, mode: &SessionMode) -> Result<(), SessionError> {
    let complete = match mode {
        SessionMode::Entries => writer.checkpoint().is_some_and(|c| c.size == writer.held()),
        SessionMode::Filtered(_) => writer.checkpoint().is_some(),
        SessionMode::CheckpointOnly => false,
    };
    if complete {
        writer.set_status(SyncStatus::Complete, None).map_err(replica_error)?;
    }
    Ok(())
}

/// After a failed sync: an accepted checkpoint whose entries did not verify is not kept, and
/// the failure is recorded in the replica's sync state (best effort: the sync already failed).
pub fn record_failure(writer: &mut ReplicaWriter, error: &str) {
    let _ = writer.discard_unwritten_checkpoint();
    let _ = writer.set_status(SyncStatus::Failed, Some(error.to_owned()));
}
