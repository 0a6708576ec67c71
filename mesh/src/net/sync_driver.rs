//! The receiver's driver: connects, resolves the identity to replicate under, and pumps a
//! [`SyncSession`] (or a [`FollowSession`] around repeated ones) over a connection. Requests go
//! out on their own streams (bundles read through a [`BundleReader`] and verified on blocking
//! threads); everything the session asks of the replica runs on one blocking "replica" task in
//! order, so commits overlap the network and never touch an async worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::Connection;
use std::collections::VecDeque;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use onoal_engine::checkpoint::Checkpoint;
use onoal_engine::replica::{ReplicaError, ReplicaWriter, SyncStatus, VerifiedBundle};

use onoal_engine::time::now_ms;
use onoal_engine::{Filter, Identity, LedgerId, TreeSize};

use super::error::SyncError;
use super::replica_task::{Done, Job, ReplicaTask};
use super::{Node, stream};
use crate::id::PeerId;
use crate::proto::sync::replica::{self as apply};
use crate::proto::sync::{
    BundleReader, Event, FollowAction, FollowSession, RequestId, SessionError, SessionMode,
    SyncSession,
};
use crate::proto::{ALPN_SYNC, MAX_WAIT_MS, Request, Response, handshake};

/// How much of a ledger to sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// From entry 0 into a fresh replica (an existing one is dropped first).
    Full,
    /// From what the replica holds (the default).
    #[default]
    Incremental,
    /// Only the newest checkpoint and its consistency proof: a light client.
    Checkpoint,
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSummary {
    /// The replicated ledger.
    pub ledger_id: LedgerId,
    /// Entries held before.
    pub from_size: u64,
    /// Entries held after.
    pub to_size: u64,
    /// Size of the newest verified checkpoint.
    pub checkpoint_size: u64,
    /// Entries received and committed.
    pub entries: u64,
    /// Leaf bytes received.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
    /// True: everything written was verified against the signed checkpoint.
    pub verified: bool,
}

/// Progress of a running sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncProgress {
    /// Entries held now (a filtered sync: entries received).
    pub held: u64,
    /// Size of the checkpoint being synced to.
    pub target: u64,
}

/// What a request task hands back.
enum Arrival {
    Response(RequestId, Result<Response, SessionError>),
    Bundle(RequestId, Result<Held, SessionError>),
}

impl Node {
    /// Syncs the replica of `ledger_id` once, from `from` (an address of a pinned peer) or from
    /// the ledger's pinned address.
    ///
    /// # Errors
    /// [`SyncError`]; on a peer's violation nothing of it is written and it is recorded.
    pub async fn sync(
        &self,
        ledger_id: LedgerId,
        from: Option<&str>,
        mode: SyncMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let span = tracing::info_span!("sync", ledger = %ledger_id.fmt_short());
        async {
            self.check_not_forked(ledger_id).await?;
            let (addr, key) = self.source(ledger_id, from).await?;
            let conn = self.connect(addr, key).await?;
            let result = self.sync_on(&conn, ledger_id, mode, progress).await;
            conn.close(quinn::VarInt::from_u32(0), b"done");
            result
        }
        .instrument(span)
        .await
    }

    /// Filtered sync: the entries of `ledger_id` matching `filter`, each with its inclusion
    /// proof in a checkpoint signed by the ledger's pinned key, into a sparse replica. It proves
    /// that every entry received is in the log; it cannot prove that none were left out.
    ///
    /// # Errors
    /// As [`Self::sync`].
    pub async fn sync_filtered(
        &self,
        ledger_id: LedgerId,
        from: Option<&str>,
        filter: &Filter,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let span = tracing::info_span!("filtered_sync", ledger = %ledger_id.fmt_short());
        async {
            self.check_not_forked(ledger_id).await?;
            let (addr, key) = self.source(ledger_id, from).await?;
            let conn = self.connect(addr, key).await?;
            let started = Instant::now();
            let result = async {
                let identity = self.identity_of(&conn, ledger_id).await?;
                let ledger = self.inner.ledger.clone();
                let writer = self.blocking(move || ledger.sparse_writer(&identity)).await??;
                let from_size =
                    writer.log().range(0, u64::MAX).map(|v| v.len() as u64).unwrap_or(0);
                let mode = SessionMode::Filtered(filter.clone());
                let (writer, outcome) = self.drive(&conn, writer, mode, progress).await?;
                let (entries, bytes) = outcome?;
                Ok(SyncSummary {
                    ledger_id,
                    from_size,
                    to_size: from_size + entries,
                    checkpoint_size: writer.checkpoint().map_or(0, |c| c.size),
                    entries,
                    bytes,
                    seconds: started.elapsed().as_secs_f64(),
                    verified: true,
                })
            }
            .await;
            conn.close(quinn::VarInt::from_u32(0), b"done");
            result
        }
        .instrument(span)
        .await
    }

    /// Keeps the replica of `ledger_id` in step: syncs, then waits for newer checkpoints
    /// (the source answers as soon as one exists) and syncs again; reconnects after transport
    /// failures and timeouts. Returns only on an error that is not transient.
    ///
    /// # Errors
    /// Misbehaviour, a fork, local failures.
    pub async fn follow(
        &self,
        ledger_id: LedgerId,
        from: Option<&str>,
        on_sync: &(dyn Fn(&SyncSummary) + Send + Sync),
    ) -> Result<(), SyncError> {
        let span = tracing::info_span!("follow", ledger = %ledger_id.fmt_short());
        async {
            self.check_not_forked(ledger_id).await?;
            let mut follow = FollowSession::new(ledger_id, MAX_WAIT_MS);
            let mut conn: Option<Connection> = None;
            loop {
                let step: Result<(), SyncError> = match follow.poll_action(Instant::now()) {
                    FollowAction::Connect => match self.source(ledger_id, from).await {
                        Ok((addr, key)) => self.connect(addr, key).await.map(|c| {
                            conn = Some(c);
                            follow.connected();
                        }),
                        Err(e) => Err(e),
                    },
                    FollowAction::Sync => match &conn {
                        None => Err(SyncError::Local("no connection to sync on".into())),
                        Some(c) => self
                            .sync_on(c, ledger_id, SyncMode::Incremental, &|_| {})
                            .await
                            .map(|s| {
                                on_sync(&s);
                                follow.synced(TreeSize(s.checkpoint_size));
                            }),
                    },
                    FollowAction::Wait(request) => match &conn {
                        None => Err(SyncError::Local("no connection to wait on".into())),
                        Some(c) => {
                            let deadline = self.inner.config.request_timeout
                                + Duration::from_millis(u64::from(MAX_WAIT_MS));
                            match stream::request(
                                c,
                                &request,
                                self.inner.config.max_frame,
                                deadline,
                            )
                            .await
                            {
                                Ok(Response::Error { code, message }) => {
                                    Err(SyncError::Refused { code, message })
                                }
                                Ok(r) => follow.wait_answered(&r).map_err(|v| {
                                    self.session_error(c, SessionError::Misbehaved(v))
                                }),
                                Err(e) => Err(self.session_error(c, e)),
                            }
                        }
                    },
                    FollowAction::Sleep(until) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
                        Ok(())
                    }
                };
                match step {
                    Ok(()) => {}
                    Err(e) if e.is_transient() => {
                        tracing::info!(error = %e, "follow: reconnecting");
                        if let Some(c) = conn.take() {
                            c.close(quinn::VarInt::from_u32(0), b"reconnecting");
                        }
                        follow.failed(Instant::now());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Rebuilds this ledger's own entries from the replica that peer `peer` (pinned) holds at
    /// `address`, verified against checkpoints signed by this ledger's own key. The ledger must
    /// be open for restore ([`onoal_engine::LedgerBuilder::open_for_restore`]); finish with
    /// [`onoal_engine::Ledger::finish_restore`].
    ///
    /// # Errors
    /// As [`Self::sync`].
    pub async fn restore(
        &self,
        peer: LedgerId,
        address: &str,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let own = self.inner.ledger.identity().ledger_id;
        let span = tracing::info_span!("restore", ledger = %own.fmt_short());
        async {
            let peers = self.inner.peers.clone();
            let record = self
                .blocking(move || peers.get(&peer))
                .await?
                .map_err(|e| SyncError::Local(e.to_string()))?
                .ok_or(SyncError::NotPinned(peer))?;
            let key = record.peer_id().ok_or_else(|| {
                SyncError::Local("the pinned key is not a valid Ed25519 key".into())
            })?;
            let conn = self.connect(resolve(address)?, key).await?;
            let started = Instant::now();
            let result = async {
                let ledger = self.inner.ledger.clone();
                let writer = self.blocking(move || ledger.restore_writer()).await??;
                let from_size = writer.held();
                let (writer, outcome) =
                    self.drive(&conn, writer, SessionMode::Entries, progress).await?;
                let (entries, bytes) = outcome?;
                Ok(SyncSummary {
                    ledger_id: own,
                    from_size,
                    to_size: writer.held(),
                    checkpoint_size: writer.checkpoint().map_or(0, |c| c.size),
                    entries,
                    bytes,
                    seconds: started.elapsed().as_secs_f64(),
                    verified: true,
                })
            }
            .await;
            conn.close(quinn::VarInt::from_u32(0), b"done");
            result
        }
        .instrument(span)
        .await
    }

    async fn check_not_forked(&self, ledger_id: LedgerId) -> Result<(), SyncError> {
        let ledger = self.inner.ledger.clone();
        let records = self
            .blocking(move || -> Result<_, ReplicaError> {
                Ok([ledger.sync_record(&ledger_id)?, ledger.sparse_sync_record(&ledger_id)?])
            })
            .await??;
        if records.iter().flatten().any(|r| r.status == SyncStatus::Forked) {
            return Err(ReplicaError::Forked(ledger_id).into());
        }
        Ok(())
    }

    /// Where to sync `ledger_id` from: `from`, or its pinned address; with the key to expect.
    async fn source(
        &self,
        ledger_id: LedgerId,
        from: Option<&str>,
    ) -> Result<(SocketAddr, PeerId), SyncError> {
        let peers = self.inner.peers.clone();
        let from = from.map(str::to_owned);
        let (address, key) = self
            .blocking(move || -> Result<_, SyncError> {
                let local = |e: crate::peer::PeerError| SyncError::Local(e.to_string());
                match from {
                    Some(a) => {
                        let list = peers.list().map_err(local)?;
                        let p = list
                            .iter()
                            .find(|p| p.addresses.contains(&a))
                            .ok_or_else(|| SyncError::UnknownSource(a.clone()))?;
                        Ok((a, p.public_key))
                    }
                    None => {
                        let p = peers
                            .get(&ledger_id)
                            .map_err(local)?
                            .ok_or(SyncError::NotPinned(ledger_id))?;
                        let a =
                            p.addresses.first().cloned().ok_or(SyncError::NoAddress(ledger_id))?;
                        Ok((a, p.public_key))
                    }
                }
            })
            .await??;
        let addr = resolve(&address)?;
        let key = PeerId::from_bytes(&key)
            .ok_or_else(|| SyncError::Local("a pinned key is not a valid Ed25519 key".into()))?;
        Ok((addr, key))
    }

    /// The identity to replicate `ledger_id` under: its pinned key and its OID (from the
    /// replica, the peer record, or a certificate the source serves, checked against the key).
    async fn identity_of(
        &self,
        conn: &Connection,
        ledger_id: LedgerId,
    ) -> Result<Identity, SyncError> {
        let peers = self.inner.peers.clone();
        let record = self
            .blocking(move || peers.get(&ledger_id))
            .await?
            .map_err(|e| SyncError::Local(e.to_string()))?
            .ok_or(SyncError::NotPinned(ledger_id))?;
        let pinned = record
            .peer_id()
            .ok_or_else(|| SyncError::Local("the pinned key is not a valid Ed25519 key".into()))?;
        let replica = self.inner.ledger.replica(&ledger_id).map(|r| r.identity().clone());
        match handshake::identity_plan(ledger_id, replica.as_ref(), &pinned, record.oid.as_deref())
        {
            handshake::IdentityPlan::Known(identity) => Ok(identity),
            handshake::IdentityPlan::AskCertificate(request) => {
                let c = &self.inner.config;
                let response = stream::request(conn, &request, c.max_frame, c.request_timeout)
                    .await
                    .map_err(|e| self.session_error(conn, e))?;
                if let Response::Error { code, message } = response {
                    return Err(SyncError::Refused { code, message });
                }
                let (certificate, identity) =
                    handshake::check_certificate(response, ledger_id, &pinned, now_ms())
                        .map_err(|v| self.session_error(conn, SessionError::Misbehaved(v)))?;
                let peers = self.inner.peers.clone();
                let capability = String::from_utf8_lossy(ALPN_SYNC).into_owned();
                self.blocking(move || peers.learn(&certificate, None, &capability, now_ms()))
                    .await?;
                Ok(identity)
            }
        }
    }

    async fn sync_on(
        &self,
        conn: &Connection,
        ledger_id: LedgerId,
        mode: SyncMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let started = Instant::now();
        let identity = self.identity_of(conn, ledger_id).await?;
        let ledger = self.inner.ledger.clone();
        // A full sync fills a staging copy; the replica is replaced only once the copy has
        // verified (and does not contradict it).
        let full = mode == SyncMode::Full;
        let writer = self
            .blocking(move || {
                if full {
                    ledger.staging_writer(&identity)
                } else {
                    ledger.replica_writer(&identity)
                }
            })
            .await??;
        let from_size = writer.held();
        let session_mode = if mode == SyncMode::Checkpoint {
            SessionMode::CheckpointOnly
        } else {
            SessionMode::Entries
        };
        let (writer, outcome) = self.drive(conn, writer, session_mode, progress).await?;
        if full {
            let (held, checkpoint_size) =
                (writer.held(), writer.checkpoint().map_or(0, |c| c.size));
            drop(writer);
            let ledger = self.inner.ledger.clone();
            let (entries, bytes) = match outcome {
                Ok(counts) => {
                    self.blocking(move || ledger.promote_staging(&ledger_id)).await??;
                    counts
                }
                Err(e) => {
                    // Best effort: a leftover copy is deleted at the next writable open anyway.
                    let _ = self.blocking(move || ledger.drop_staging(&ledger_id)).await;
                    return Err(e);
                }
            };
            return Ok(SyncSummary {
                ledger_id,
                from_size,
                to_size: held,
                checkpoint_size,
                entries,
                bytes,
                seconds: started.elapsed().as_secs_f64(),
                verified: true,
            });
        }
        let (entries, bytes) = outcome?;
        Ok(SyncSummary {
            ledger_id,
            from_size,
            to_size: writer.held(),
            checkpoint_size: writer.checkpoint().map_or(0, |c| c.size),
            entries,
            bytes,
            seconds: started.elapsed().as_secs_f64(),
            verified: true,
        })
    }

    /// Pumps one session to its end; returns the writer and (entries, bytes) received. On
    /// failure, the failure is recorded in the replica's sync state.
    async fn drive(
        &self,
        conn: &Connection,
        writer: ReplicaWriter,
        mode: SessionMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(ReplicaWriter, Result<(u64, u64), SyncError>), SyncError> {
        let ledger = writer.log().identity().ledger_id;
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
                        task.send(Job::Accept { note, consistency, light })
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

fn resolve(address: &str) -> Result<SocketAddr, SyncError> {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .map_err(|e| SyncError::Local(format!("cannot resolve {address}: {e}")))?
        .next()
        .ok_or_else(|| SyncError::Local(format!("{address} resolves to no address")))
}
