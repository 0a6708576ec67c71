//! The replica task: one blocking task that owns a replica's writer while a session runs and
//! does what the session asks of it (accept a checkpoint, check a fork, commit bundles or a
//! page) in order, so fsynced writes never run on an async worker and commits overlap the
//! network.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use onoal_engine::Hash;
use onoal_engine::checkpoint::Checkpoint;
use onoal_engine::replica::{ReplicaWriter, VerifiedBundle};

use super::error::SyncError;
use crate::proto::ProvenEntryWire;
use crate::proto::sync::replica::{self as apply, Committed};
use crate::proto::sync::{AcceptVerdict, SessionError};

/// Work for the replica task, in session order.
pub(super) enum Job {
    Accept {
        note: String,
        consistency: Vec<Hash>,
        light: bool,
        policy: Option<Arc<onoal_engine::cosignature::Cosigners>>,
    },
    CheckFork {
        note: String,
    },
    CheckForkProof {
        old_root: Hash,
        proof: Vec<Hash>,
    },
    Commit(Vec<VerifiedBundle>),
    CommitPage(Vec<ProvenEntryWire>),
}

/// The replica task's answer to a [`Job`].
pub(super) enum Done {
    Accepted(AcceptVerdict, Option<Arc<Checkpoint>>),
    ForkChecked(Result<(), SessionError>),
    ForkProofChecked(Result<(), SessionError>),
    Committed(Committed),
    PageCommitted(Result<u64, SessionError>),
}

/// A blocking task that owns the replica writer while a session runs.
pub(super) struct ReplicaTask {
    jobs: mpsc::UnboundedSender<Job>,
    pub(super) done: mpsc::UnboundedReceiver<Done>,
    handle: JoinHandle<ReplicaWriter>,
}

impl ReplicaTask {
    pub(super) fn spawn(mut writer: ReplicaWriter) -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let (tx, done) = mpsc::unbounded_channel::<Done>();
        let handle = tokio::task::spawn_blocking(move || {
            while let Some(job) = rx.blocking_recv() {
                let d = match job {
                    Job::Accept { note, consistency, light, policy } => {
                        let v = match policy.as_deref().map(|p| apply::cosigned(p, &note)) {
                            Some(Err(refused)) => AcceptVerdict::Refused(refused),
                            _ => apply::accept(&mut writer, &note, &consistency, light),
                        };
                        let cp = writer.checkpoint().map(|c| Arc::new(c.checkpoint.clone()));
                        Done::Accepted(v, cp)
                    }
                    Job::CheckFork { note } => {
                        Done::ForkChecked(apply::check_fork(&mut writer, &note))
                    }
                    Job::CheckForkProof { old_root, proof } => Done::ForkProofChecked(
                        apply::check_fork_proof(&mut writer, old_root, &proof),
                    ),
                    Job::Commit(bundles) => Done::Committed(apply::commit(&mut writer, bundles)),
                    Job::CommitPage(entries) => {
                        Done::PageCommitted(apply::commit_page(&mut writer, entries))
                    }
                };
                if tx.send(d).is_err() {
                    break;
                }
            }
            writer
        });
        Self { jobs, done, handle }
    }

    pub(super) fn send(&self, job: Job) -> Result<(), SessionError> {
        self.jobs.send(job).map_err(|_| SessionError::Local("the replica task stopped".into()))
    }

    /// Waits for the jobs sent so far and takes the writer back.
    pub(super) async fn close(self) -> Result<ReplicaWriter, SyncError> {
        drop(self.jobs);
        drop(self.done);
        self.handle.await.map_err(|e| SyncError::Local(format!("the replica task failed: {e}")))
    }
}
