//! Pumps one [`SyncSession`] over a connection: each request on its own stream (bundles read
//! through a [`BundleReader`] within the sync's byte budget and verified on blocking threads),
//! everything the session asks of the replica on the one replica task, in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use onoal_engine::TreeSize;
use onoal_engine::checkpoint::Checkpoint;
use onoal_engine::replica::{ReplicaWriter, VerifiedBundle};

use super::error::SyncError;
use super::replica_task::{Done, Job, ReplicaTask};
use super::sync_driver::SyncProgress;
use super::{Node, stream};
use crate::proto::sync::replica::{self as apply};
use crate::proto::sync::{BundleReader, Event, RequestId, SessionError, SessionMode, SyncSession};
use crate::proto::{Request, Response};

/// What a request task hands back.
enum Arrival {
    Response(RequestId, Result<Response, SessionError>),
    Bundle(RequestId, Result<Held, SessionError>),
}

impl Node {
    /// Pumps one session to its end; returns the writer and (entries, bytes) received. On
    /// failure, the failure is recorded in the replica's sync state.
    pub(super) async fn drive(
        &self,
        conn: &Connection,
        writer: ReplicaWriter,
        mode: SessionMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(ReplicaWriter, Result<(u64, u64), SyncError>), SyncError> {
        let ledger = writer.log().identity().ledger_id;
        let policy = self.witness_policy_for(&ledger);
        let held = TreeSize(writer.held());
        let have = TreeSize(writer.checkpoint().map_or(0, |c| c.size));
        let c = &self.inner.config;
        let mut session: SyncSession<Held> = SyncSession::new(
            ledger,
            held,
            have,
            mode.clone(),
            c.window,
            c.request_timeout,
            Instant::now(),
        );
        session.set_bundle_bytes(c.bundle_cap() as u64);
        // Bytes of bundles held at once (in 1 KiB units); the bundle next in line to commit
        // never waits for them, so the sync always progresses.
        let budget =
            Arc::new(Semaphore::new((c.window_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS)));
        let (next_tx, next_rx) = watch::channel(None::<u64>);
        let mut committing: VecDeque<Vec<OwnedSemaphorePermit>> = VecDeque::new();
        let mut task = ReplicaTask::spawn(writer);
        let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
        let mut target: Option<Arc<Checkpoint>> = None;
        let mut requests: Vec<JoinHandle<()>> = Vec::new();
        let (mut entries, mut bytes, mut seen) = (0u64, 0u64, 0u64);
        let light = mode == SessionMode::CheckpointOnly;
        let outcome: Result<(), SessionError> = 'session: loop {
            next_tx.send_if_modified(|n| {
                let changed = *n != session.next_commit();
                *n = session.next_commit();
                changed
            });
            while let Some((id, request)) = session.poll_transmit() {
                requests.retain(|t| !t.is_finished());
                let bundle = session.bundle_of(id);
                let budget = bundle.map(|_| (budget.clone(), next_rx.clone()));
                requests.push(self.spawn_request(
                    conn,
                    id,
                    request,
                    bundle,
                    target.clone(),
                    budget,
                    tx.clone(),
                ));
            }
            while let Some(event) = session.poll_event() {
                let sent = match event {
                    Event::AcceptCheckpoint { note, consistency } => {
                        task.send(Job::Accept { note, consistency, light, policy: policy.clone() })
                    }
                    Event::CheckFork { note } => task.send(Job::CheckFork { note }),
                    Event::CheckForkProof { old_root, proof } => {
                        task.send(Job::CheckForkProof { old_root, proof })
                    }
                    Event::Commit(bundles) => {
                        let (bundles, permits): (Vec<_>, Vec<_>) =
                            bundles.into_iter().map(|h| (h.bundle, h.permits)).unzip();
                        committing.push_back(permits.into_iter().flatten().collect());
                        task.send(Job::Commit(bundles))
                    }
                    Event::CommitPage { entries: page } => {
                        seen += page.len() as u64;
                        bytes += page.iter().map(|e| e.leaf_data.len() as u64).sum::<u64>();
                        task.send(Job::CommitPage(page))
                    }
                    Event::NothingToSync | Event::Done => break 'session Ok(()),
                    Event::Failed(e) => break 'session Err(e),
                };
                if let Err(e) = sent {
                    break 'session Err(e);
                }
            }
            let deadline = session.poll_timeout();
            tokio::select! {
                arrival = rx.recv() => {
                    let now = Instant::now();
                    match arrival {
                        Some(Arrival::Response(id, Ok(r))) => session.handle_response(now, id, r),
                        Some(Arrival::Response(id, Err(e))) => session.handle_failure(now, id, e),
                        Some(Arrival::Bundle(id, b)) => session.handle_bundle(now, id, b),
                        None => break 'session Err(SessionError::Local("request tasks stopped".into())),
                    }
                }
                done = task.done.recv() => {
                    let now = Instant::now();
                    match done {
                        Some(Done::Accepted(verdict, cp)) => {
                            target = cp;
                            session.checkpoint_accepted(now, verdict);
                        }
                        Some(Done::ForkChecked(r)) => session.fork_checked(now, r),
                        Some(Done::ForkProofChecked(r)) => session.fork_proof_checked(now, r),
                        Some(Done::Committed(c)) => {
                            // The committed bundles' bytes are free for the next ones.
                            committing.pop_front();
                            if let Ok(held) = c.result {
                                entries += c.entries;
                                bytes += c.bytes;
                                progress(SyncProgress { held: held.0, target: target.as_ref().map_or(held.0, |t| t.size) });
                            }
                            session.committed(now, c.bundles, c.result);
                        }
                        Some(Done::PageCommitted(r)) => {
                            if let Ok(n) = &r {
                                entries += n;
                                progress(SyncProgress { held: seen, target: target.as_ref().map_or(0, |t| t.size) });
                            }
                            session.page_committed(now, r.map(|_| ()));
                        }
                        None => break 'session Err(SessionError::Local("the replica task stopped".into())),
                    }
                }
                () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            }
        };
        for t in requests {
            t.abort();
        }
        // Every commit sent finishes (it cannot be cancelled); then the writer comes back.
        let writer = task.close().await?;
        let failure = outcome.err().map(|e| self.session_error(conn, e));
        let text = failure.as_ref().map(ToString::to_string);
        let (writer, finished) = self
            .blocking(move || {
                let mut writer = writer;
                let r = match text {
                    Some(t) => {
                        apply::record_failure(&mut writer, &t);
                        Ok(())
                    }
                    None => apply::finish(&mut writer, &mode),
                };
                (writer, r)
            })
            .await?;
        let outcome = match failure {
            Some(e) => Err(e),
            None => finished.map(|()| (entries, bytes)).map_err(|e| self.session_error(conn, e)),
        };
        Ok((writer, outcome))
    }

    /// Sends one request of a session on its own stream; a bundle is read (within the byte
    /// budget) and verified (on a blocking thread) before it is handed back.
    #[allow(clippy::too_many_arguments, reason = "one request's context, passed once")]
    fn spawn_request(
        &self,
        conn: &Connection,
        id: RequestId,
        request: Request,
        bundle: Option<(u64, u64)>,
        target: Option<Arc<Checkpoint>>,
        budget: Option<(Arc<Semaphore>, watch::Receiver<Option<u64>>)>,
        tx: mpsc::UnboundedSender<Arrival>,
    ) -> JoinHandle<()> {
        let conn = conn.clone();
        let max = self.inner.config.max_frame;
        let cap = self.inner.config.bundle_cap() as u64;
        tokio::spawn(
            async move {
                let arrival = match (bundle, target, budget) {
                    (Some((first, width)), Some(cp), Some((budget, next))) => {
                        let reader = BundleReader::new(first, width, cp.size, cap);
                        let mut held = Budget { budget, next, first, permits: Vec::new() };
                        let received =
                            stream::fetch_bundle(&conn, &request, reader, max, &mut held).await;
                        let verified = match received {
                            Ok(b) => tokio::task::spawn_blocking(move || apply::verify(&cp, b))
                                .await
                                .unwrap_or_else(|e| Err(SessionError::Local(e.to_string()))),
                            Err(e) => Err(e),
                        };
                        Arrival::Bundle(
                            id,
                            verified.map(|bundle| Held { bundle, permits: held.permits }),
                        )
                    }
                    _ => Arrival::Response(
                        id,
                        stream::request_undeadlined(&conn, &request, max).await,
                    ),
                };
                let _ = tx.send(arrival);
            }
            .in_current_span(),
        )
    }
}

/// A verified bundle and the budget its bytes hold until it is committed.
pub(super) struct Held {
    bundle: VerifiedBundle,
    permits: Vec<OwnedSemaphorePermit>,
}

/// What one bundle's reading holds of a sync's byte budget.
pub(super) struct Budget {
    budget: Arc<Semaphore>,
    next: watch::Receiver<Option<u64>>,
    first: u64,
    permits: Vec<OwnedSemaphorePermit>,
}

/// How long a bundle that is not next in line waits for budget before it is deferred.
const DEFER_AFTER: Duration = Duration::from_millis(20);

impl Budget {
    /// Takes `bytes` more of the budget, unless this bundle is next in line to commit (it
    /// never waits: the sync must progress). Another bundle waits briefly for them, then is
    /// deferred ([`SessionError::Deferred`]): its stream is dropped unread, which releases the
    /// source's sending of it (a source serves a few bundles at a time per peer, so a bundle
    /// left unread would hold up the one next in line) and QUIC's buffers for it.
    pub(super) async fn reserve(&mut self, bytes: usize) -> Result<(), SessionError> {
        let units = u32::try_from(bytes / 1024 + 1)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        let give_up = tokio::time::Instant::now() + DEFER_AFTER;
        loop {
            if *self.next.borrow_and_update() == Some(self.first) {
                return Ok(());
            }
            tokio::select! {
                p = self.budget.clone().acquire_many_owned(units) => {
                    self.permits.push(p.map_err(|e| SessionError::Local(e.to_string()))?);
                    return Ok(());
                }
                changed = self.next.changed() => {
                    if changed.is_err() {
                        return Err(SessionError::Local("the sync ended".into()));
                    }
                }
                () = tokio::time::sleep_until(give_up) => return Err(SessionError::Deferred),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
