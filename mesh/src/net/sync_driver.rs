//! The receiver's driver: connects, resolves the identity to replicate under, and runs a sync
//! session (pumped by `sync_pump.rs`), or a [`FollowSession`] around repeated ones, over a
//! connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quinn::Connection;
use tracing::Instrument as _;

use onoal_engine::replica::{ReplicaError, SyncStatus};
use onoal_engine::time::now_ms;
use onoal_engine::{Filter, Identity, LedgerId, TreeSize};

use super::error::SyncError;
use super::{Node, stream};
use crate::id::PeerId;
use crate::proto::sync::{FollowAction, FollowSession, SessionError, SessionMode};
use crate::proto::{ALPN_SYNC, MAX_WAIT_MS, PeerMisbehaved, Response, handshake};
use crate::trust::TrustStatement;
use crate::trust::visibility::{Scope, VisibilityPolicy};

/// How often a follower asks its source for the followed ledger's policy and statements.
const TRUST_EXCHANGE_EVERY: Duration = Duration::from_secs(30);

/// How much of a ledger to sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// From entry 0 into a staging copy that replaces the replica once all of it verified.
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
            self.relay_outcome(ledger_id, &key, &result);
            match &result {
                Ok(_) => {
                    self.verified_outcome(&key);
                    let read = (mode != SyncMode::Checkpoint).then_some(None);
                    self.exchange_trust(&conn, ledger_id, key, read).await;
                }
                // Refused by the policy: take the policy, so a relay applies the newest.
                Err(SyncError::Refused { .. }) => {
                    self.exchange_trust(&conn, ledger_id, key, None).await;
                }
                Err(_) => {}
            }
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
            self.relay_outcome(ledger_id, &key, &result);
            match &result {
                Ok(_) => {
                    self.verified_outcome(&key);
                    let read = Some(filter.stream.clone());
                    self.exchange_trust(&conn, ledger_id, key, read).await;
                }
                Err(SyncError::Refused { .. }) => {
                    self.exchange_trust(&conn, ledger_id, key, None).await;
                }
                Err(_) => {}
            }
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
            let mut conn: Option<(Connection, PeerId)> = None;
            // The trust exchange, at most every TRUST_EXCHANGE_EVERY while following.
            let mut exchanged: Option<Instant> = None;
            loop {
                let step: Result<(), SyncError> = match follow.poll_action(Instant::now()) {
                    FollowAction::Connect => match self.source(ledger_id, from).await {
                        Ok((addr, key)) => self.connect(addr, key).await.map(|c| {
                            conn = Some((c, key));
                            follow.connected();
                        }),
                        Err(e) => Err(e),
                    },
                    FollowAction::Sync => match &conn {
                        None => Err(SyncError::Local("no connection to sync on".into())),
                        Some((c, key)) => {
                            let synced =
                                self.sync_on(c, ledger_id, SyncMode::Incremental, &|_| {}).await;
                            if let Ok(s) = &synced {
                                on_sync(s);
                                follow.synced(TreeSize(s.checkpoint_size));
                                if exchanged.is_none_or(|t| t.elapsed() >= TRUST_EXCHANGE_EVERY) {
                                    exchanged = Some(Instant::now());
                                    self.exchange_trust(c, ledger_id, *key, Some(None)).await;
                                }
                            }
                            synced.map(drop)
                        }
                    },
                    FollowAction::Wait(request) => match &conn {
                        None => Err(SyncError::Local("no connection to wait on".into())),
                        Some((c, _)) => {
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
                        if let Some((c, _)) = conn.take() {
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
        let node = self.clone();
        if let Some(reason) = self.blocking(move || node.proven_split_view(ledger_id)).await? {
            return Err(ReplicaError::Fork {
                ledger_id,
                reason: format!(
                    "a witness proved that it shows two histories ({reason}); `onoal witness info` shows the evidence"
                ),
            }
            .into());
        }
        Ok(())
    }

    /// The seed's trust_request after a sync (best effort: an older source does not answer
    /// it): keeps the newest policy of `ledger_id` and the statements it signed, checked
    /// against its pinned key. When they came through a relay (`source` is not the ledger's
    /// key), checks that what was read (`read`: `Some(None)` every stream, `Some(Some(s))`
    /// stream `s`, `None` nothing but checkpoints) was within that policy for this node, and
    /// records a violation against the relay when it was not.
    async fn exchange_trust(
        &self,
        conn: &Connection,
        ledger_id: LedgerId,
        source: PeerId,
        read: Option<Option<String>>,
    ) {
        let c = &self.inner.config;
        let request = crate::proto::Request::Trust { ledger: ledger_id };
        let response = match stream::request(conn, &request, c.max_frame, c.request_timeout).await {
            Ok(Response::Trust { policy, statements }) => (policy, statements),
            Ok(other) => {
                return tracing::debug!(response = other.kind(), "no trust data from the source");
            }
            Err(e) => return tracing::debug!(error = %e, "no trust data from the source"),
        };
        let (peers, trust) = (self.inner.peers.clone(), self.inner.trust.clone());
        let me = self.inner.ledger.identity().ledger_id;
        let outcome = self
            .blocking(move || -> Result<(), PeerMisbehaved> {
                let Some(key) = peers.key_of(&ledger_id) else { return Ok(()) };
                let now = now_ms();
                let bad = |e: String| PeerMisbehaved::BadTrustData(e);
                let (policy, statements) = response;
                if !policy.is_empty() {
                    let p: VisibilityPolicy =
                        postcard::from_bytes(&policy).map_err(|e| bad(e.to_string()))?;
                    if p.ledger != ledger_id {
                        return Err(bad(format!("a policy of {} for {ledger_id}", p.ledger)));
                    }
                    trust.take_policy(p, &key).map_err(|e| bad(e.to_string()))?;
                }
                let list: Vec<TrustStatement> =
                    postcard::from_bytes(&statements).map_err(|e| bad(e.to_string()))?;
                trust
                    .take_statements(ledger_id, &key, list, now)
                    .map_err(|e| bad(e.to_string()))?;
                if source.as_bytes() != &key
                    && let Some(stream) = read
                {
                    let scope = match &stream {
                        Some(s) => Scope::Stream(s),
                        None => Scope::Log,
                    };
                    if let Err(refused) = trust.admits(&ledger_id, Some(&me), scope, now) {
                        return Err(PeerMisbehaved::BeyondPolicy(refused.message));
                    }
                }
                Ok(())
            })
            .await;
        if let Ok(Err(violation)) = outcome {
            tracing::warn!(%violation, "the source of {ledger_id}");
            let _ = self.misbehaved(conn, violation);
        }
    }

    /// A sync of `ledger_id` from `source` (the ledger itself, or a relay) is a routed read: its
    /// outcome scores the route to `ledger_id` through that ledger.
    fn relay_outcome(
        &self,
        ledger_id: LedgerId,
        source: &PeerId,
        result: &Result<SyncSummary, SyncError>,
    ) {
        let Some(via) = self.inner.peers.ledger_of(source) else { return };
        match result {
            Ok(s) => {
                let ms = u32::try_from((s.seconds * 1000.0).round() as u64).unwrap_or(u32::MAX);
                self.route_outcome(ledger_id, via, true, ms);
            }
            Err(e) if !matches!(e, SyncError::Refused { .. }) => {
                self.route_outcome(ledger_id, via, false, 0);
            }
            Err(_) => {}
        }
    }

    /// Where to sync `ledger_id` from: `from`, or its pinned address; with the key to expect.
    pub(super) async fn source(
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
}

fn resolve(address: &str) -> Result<SocketAddr, SyncError> {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .map_err(|e| SyncError::Local(format!("cannot resolve {address}: {e}")))?
        .next()
        .ok_or_else(|| SyncError::Local(format!("{address} resolves to no address")))
}
