//! The routed-message driver: a request sealed for a ledger anywhere in the mesh travels hop by
//! hop over `onoal-mesh/1` streams (each relay opens a stream to its next hop and waits), and the
//! destination's sealed answer comes back along the same streams: the reverse path. The
//! decisions are the routing core's (`findPath`, the forwarding core's seen-cache, TTL and loop
//! rules); this module only moves bytes, keeps deadlines and records outcomes.
//!
//! Deadlines: a node that may still send a message `t` hops waits at most `t` x
//! [`HOP_DEADLINE`] for its answer, so every relay gives up before the one before it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;

use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::time::now_ms;
use onoal_engine::{Filter, LedgerId, LogIndex, Oid, TreeSize};

use super::stream::{read_frame, write_frame};
use super::{Inner, Node};
use crate::id::PeerId;
use crate::proto::cert::LedgerCertificate;
use crate::proto::envelope::{Destination as Addressed, MeshMessage, MeshReply, MessageType};
use crate::proto::message::{ErrorCode, Request, Response};
use crate::proto::routed::{
    AnswerError, Checks, Expectation, MAX_ANSWER_BYTES, MAX_QUERY_ENTRIES, MAX_QUERY_ENTRY_BYTES,
    RoutedAnswer, RoutedRequest, Verdict, VerifiedPage, VerifiedStatement, VerifyStatement,
    verify_query, verify_statement,
};
use crate::proto::serve::{self, Decision};
use crate::routing::forward::{Dropped, Forward, Routed};
use crate::routing::seal::{self, ReplyKey};
use crate::routing::{Destination, NoPath, Strategy};

/// How long a node waits per hop the message may still make.
pub const HOP_DEADLINE: Duration = Duration::from_secs(2);

/// Most neighbours one node floods a routed request to.
pub const FLOOD_FANOUT: usize = 8;

/// Longest wait for a QUIC handshake with a next hop (a dead hop costs this, not the whole
/// deadline, so there is time left for another).
pub const DIAL_DEADLINE: Duration = Duration::from_secs(1);

type HopFuture = std::pin::Pin<Box<dyn Future<Output = (LedgerId, HopOutcome)> + Send>>;

/// Counts of routed messages at this node.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    originated: AtomicU64,
    relayed: AtomicU64,
    answered: AtomicU64,
    rejected: AtomicU64,
    unreachable: AtomicU64,
}

/// What happened to routed messages at a node (`GET /mesh/discovery` → `routed`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RoutedCounts {
    /// Requests this node sent (queries it asked).
    pub originated: u64,
    /// Requests it passed on whose answer came back through it.
    pub relayed: u64,
    /// Requests for its own ledger it answered.
    pub answered: u64,
    /// Answers that came back here but did not open or verify (a relay cheated, or the
    /// destination lied).
    pub rejected: u64,
    /// Requests it could not pass on (no route, TTL spent, no answer in time).
    pub unreachable: u64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the origin seals: who asks (its certificate, checked against the envelope's key) and
/// what.
#[derive(Serialize, serde::Deserialize)]
struct Call {
    certificate: LedgerCertificate,
    request: RoutedRequest,
}

/// The ledger a routed request is for, with the key its answer must verify under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Ledger id.
    pub ledger: LedgerId,
    /// OID (the origin line of its checkpoints).
    pub oid: String,
    /// Ed25519 key, hex.
    #[serde(skip)]
    pub key: [u8; 32],
    /// Where the key came from: `pinned` or `record` (a signed peer record).
    pub key_source: &'static str,
}

/// Why a routed request got no verified answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The destination is not known here.
    #[error(
        "{0} is not known here (no pin, no peer record, nothing in the DHT): find it with `onoal discover --oid PREFIX` or pin it with `onoal peer add`"
    )]
    Unknown(String),
    /// No way to send it.
    #[error(transparent)]
    NoPath(#[from] NoPath),
    /// Sent, but nothing verified came back in time.
    #[error(
        "no answer from {to} within {secs} s ({detail}); try again, or look at `onoal route --to {to}`"
    )]
    NoAnswer {
        /// Destination.
        to: String,
        /// Seconds waited.
        secs: u64,
        /// What each next hop said.
        detail: String,
    },
    /// The destination refused (its visibility policy, no checkpoint yet, a bad request).
    #[error("{to} refused: {message}")]
    Refused {
        /// Destination.
        to: String,
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// An answer came back that does not verify (counted against the hop it came from).
    #[error(
        "the answer from {to} through {via} does not verify ({reason}); it was discarded and counted against {via}"
    )]
    Bad {
        /// Destination.
        to: String,
        /// The next hop it came through.
        via: LedgerId,
        /// What failed.
        reason: String,
    },
    /// A local failure.
    #[error("{0}")]
    Local(String),
}

/// A verified answer to a cross-ledger query.
#[derive(Debug)]
pub struct RemoteQuery {
    /// Whom it asked.
    pub target: Target,
    /// The verified page.
    pub page: VerifiedPage,
    /// The ledgers it travelled: this node, the relays (as the destination saw them; a key no
    /// record names is shown as `key:HEX`), the destination.
    pub path: Vec<String>,
    /// The next hop the answer came through.
    pub via: LedgerId,
    /// How the first hop was chosen.
    pub strategy: Strategy,
    /// Round trip, ms.
    pub latency_ms: u32,
}

/// A verified answer to a proof verification.
#[derive(Debug)]
pub struct RemoteVerification {
    /// Whom it asked.
    pub target: Target,
    /// The verified statement.
    pub verified: VerifiedStatement,
    /// The ledgers it travelled (as in [`RemoteQuery`]).
    pub path: Vec<String>,
    /// The next hop the answer came through.
    pub via: LedgerId,
    /// How the first hop was chosen.
    pub strategy: Strategy,
    /// Round trip, ms.
    pub latency_ms: u32,
}

/// Any verified routed answer.
pub(super) struct Answered<T> {
    pub(super) target: Target,
    pub(super) value: T,
    pub(super) path: Vec<String>,
    pub(super) via: LedgerId,
    pub(super) strategy: Strategy,
    pub(super) latency_ms: u32,
}

/// What a next hop gave back.
enum HopOutcome {
    Answer(Vec<u8>),
    Said(String),
}

impl Node {
    /// What happened to routed messages at this node.
    pub fn routed_counts(&self) -> RoutedCounts {
        let c = &self.inner.routed;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RoutedCounts {
            originated: get(&c.originated),
            relayed: get(&c.relayed),
            answered: get(&c.answered),
            rejected: get(&c.rejected),
            unreachable: get(&c.unreachable),
        }
    }

    fn links_only(&self) -> bool {
        self.discovery_config_links_only()
    }

    /// Whether `key` is one of this node's links: pinned, or a bootstrap node.
    pub(crate) fn is_link(&self, key: &[u8; 32]) -> bool {
        self.inner.peers.pinned_keys().iter().any(|(_, k)| k == key)
            || self.bootstrap_keys().iter().any(|k| k == key)
    }

    /// The ledger, OID and key a routed request to `to` is sealed for: a pinned peer first, then
    /// a known peer record, then a DHT lookup (within 3 s).
    ///
    /// # Errors
    /// [`RemoteError::Unknown`].
    pub async fn resolve_target(&self, to: &Destination) -> Result<Target, RemoteError> {
        let (node, dest) = (self.clone(), to.clone());
        if let Some(t) = self.blocking(move || known_target(&node, &dest)).await.ok().flatten() {
            return Ok(t);
        }
        // A pin whose OID this node has not learnt yet (never synced): say hello to learn it
        // from its certificate.
        if self.hello_unnamed_pins(to).await {
            let (node, dest) = (self.clone(), to.clone());
            if let Some(t) = self.blocking(move || known_target(&node, &dest)).await.ok().flatten()
            {
                return Ok(t);
            }
        }
        let deadline = Duration::from_secs(3);
        match to {
            Destination::Ledger(id) => {
                self.discover_ledger(*id, deadline).await;
            }
            Destination::Oid(o) => {
                if let Ok(prefix) = Oid::parse(o) {
                    self.discover_oid(&prefix, deadline).await;
                }
            }
        }
        let (node, dest) = (self.clone(), to.clone());
        self.blocking(move || known_target(&node, &dest))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| RemoteError::Unknown(to.to_string()))
    }

    /// Where to reach `ledger`: a pinned address, else its record's QUIC endpoint.
    /// Exchanges certificates with the pinned peers whose OID is unknown (the one `to` names,
    /// or up to 8 when `to` is an OID), which records their OIDs; whether any answered.
    async fn hello_unnamed_pins(&self, to: &Destination) -> bool {
        let Ok(pins) = self.inner.peers.list() else { return false };
        let unnamed: Vec<LedgerId> = pins
            .iter()
            .filter(|p| p.oid.is_none() && !p.addresses.is_empty())
            .filter(|p| match to {
                Destination::Ledger(id) => p.ledger_id == *id,
                Destination::Oid(_) => true,
            })
            .map(|p| p.ledger_id)
            .take(8)
            .collect();
        let hellos = unnamed.iter().filter_map(|id| self.contact_of(id)).map(|(peer, addr)| {
            let node = self.clone();
            async move { node.connect(addr, peer).await.is_ok() }
        });
        futures_util::future::join_all(hellos).await.into_iter().any(|ok| ok)
    }

    fn contact_of(&self, ledger: &LedgerId) -> Option<(PeerId, SocketAddr)> {
        use std::net::ToSocketAddrs as _;
        if let Ok(Some(p)) = self.inner.peers.get(ledger) {
            let peer = p.peer_id()?;
            let addr = p.addresses.iter().find_map(|a| a.to_socket_addrs().ok()?.next());
            if let Some(addr) = addr {
                return Some((peer, addr));
            }
        }
        let book = self.discovery().known();
        let k = book.iter().find(|k| k.record.ledger_id == *ledger)?;
        let addr = k.record.endpoints.quic.as_deref()?.to_socket_addrs().ok()?.next()?;
        Some((k.record.peer()?, addr))
    }

    /// Ledger ids of keys, from the pins and the known records.
    fn ledgers_by_key(&self) -> HashMap<[u8; 32], LedgerId> {
        let mut map: HashMap<[u8; 32], LedgerId> = self
            .discovery()
            .known()
            .iter()
            .map(|k| (k.record.public_key, k.record.ledger_id))
            .collect();
        map.extend(self.inner.peers.pinned_keys().into_iter().map(|(id, k)| (k, id)));
        map
    }

    /// Sends the message to each of `hops` at once; each answers within `budget`.
    fn launch(
        &self,
        hops: &[LedgerId],
        bytes: &Arc<Vec<u8>>,
        budget: Duration,
    ) -> FuturesUnordered<HopFuture> {
        hops.iter()
            .map(|hop| {
                let (node, bytes, hop) = (self.clone(), bytes.clone(), *hop);
                Box::pin(async move { (hop, node.send_to_hop(hop, bytes, budget).await) })
                    as HopFuture
            })
            .collect()
    }

    /// Other trusted neighbours to try when the chosen hops gave no answer (none when flooding
    /// is off): not tried yet, not on the path, not where the message came from.
    async fn alternatives(&self, exclude: Vec<LedgerId>) -> Vec<LedgerId> {
        let node = self.clone();
        self.blocking(move || {
            let config = node.routing_config();
            if !config.flood {
                return Vec::new();
            }
            let Ok(table) = node.routing_table() else { return Vec::new() };
            let mut alt: Vec<LedgerId> = table
                .neighbours()
                .filter(|n| n.trust >= config.min_trust && !exclude.contains(&n.ledger))
                .map(|n| n.ledger)
                .collect();
            alt.truncate(FLOOD_FANOUT);
            alt
        })
        .await
        .unwrap_or_default()
    }

    /// Sends `message` to `hop` and waits up to `deadline` for its reply.
    async fn send_to_hop(
        &self,
        hop: LedgerId,
        bytes: Arc<Vec<u8>>,
        deadline: Duration,
    ) -> HopOutcome {
        let node = self.clone();
        let contact = self.blocking(move || node.contact_of(&hop)).await.ok().flatten();
        let Some((peer, addr)) = contact else {
            return HopOutcome::Said(format!("{hop}: no address known"));
        };
        if self.links_only() && !self.is_link(peer.as_bytes()) {
            return HopOutcome::Said(format!("{hop}: not a link of this node (--links-only)"));
        }
        let work = async {
            let conn = self.pooled_mesh(peer, addr, deadline.min(DIAL_DEADLINE)).await.ok_or_else(
                || format!("no QUIC connection within {} s", DIAL_DEADLINE.as_secs()),
            )?;
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            write_frame(&mut send, &bytes).await.map_err(|e| e.to_string())?;
            let _ = send.finish();
            let cap = u32::try_from(MAX_ANSWER_BYTES + 1024).unwrap_or(u32::MAX);
            let body = read_frame(&mut recv, cap).await.map_err(|e| e.to_string())?;
            postcard::from_bytes::<MeshReply>(&body)
                .map_err(|_| "an answer that does not decode".to_owned())
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(Ok(MeshReply::Sealed { bytes })) => HopOutcome::Answer(bytes),
            Ok(Ok(MeshReply::Unreachable { reason })) => {
                HopOutcome::Said(format!("{hop}: {reason}"))
            }
            Ok(Ok(MeshReply::Dropped { reason })) => {
                HopOutcome::Said(format!("{hop} dropped it: {reason}"))
            }
            Ok(Ok(other)) => HopOutcome::Said(format!("{hop} answered {other:?}")),
            Ok(Err(e)) => HopOutcome::Said(format!("{hop}: {e}")),
            Err(_) => HopOutcome::Said(format!("{hop}: no answer within {} s", deadline.as_secs())),
        }
    }

    /// The next hops for `routed` (arrived from `from`, or originated here), as the forwarding
    /// core decides them, at most [`FLOOD_FANOUT`].
    async fn next_hops(
        &self,
        routed: Routed,
        from: Option<LedgerId>,
    ) -> Result<(Vec<LedgerId>, Strategy), String> {
        let node = self.clone();
        self.blocking(move || {
            let table = node.routing_table()?;
            let config = node.routing_config();
            let decision =
                node.inner.forwarder.lock().handle(&routed, from, &table, &config, now_ms());
            match decision {
                Forward::Send { mut to, strategy, .. } => {
                    to.truncate(FLOOD_FANOUT);
                    Ok((to, strategy))
                }
                Forward::Deliver => Err("this node is the destination".to_owned()),
                Forward::Drop(Dropped::Seen) => Err("seen before".to_owned()),
                Forward::Drop(Dropped::Loop) => Err("a loop".to_owned()),
                Forward::Drop(Dropped::TtlSpent) => Err("its TTL is spent".to_owned()),
                Forward::Drop(Dropped::NoRoute) => Err("no route onward".to_owned()),
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The seed's cross-ledger query: asks the ledger `to` names for the entries matching
    /// `filter` from `cursor` on, routed through the mesh, sealed end to end, and verifies the
    /// answer against the target's key before returning it. Nothing is stored.
    ///
    /// # Errors
    /// [`RemoteError`].
    pub async fn remote_query(
        &self,
        to: &Destination,
        filter: Filter,
        cursor: u64,
        limit: u32,
    ) -> Result<RemoteQuery, RemoteError> {
        let request = RoutedRequest::Query {
            filter: filter.clone(),
            cursor: LogIndex(cursor),
            limit: limit.clamp(1, MAX_QUERY_ENTRIES),
        };
        self.remote_call(to, request, MessageType::QueryRequest, filter, cursor).await
    }

    /// The seed's reference check: the entry at `seq` of the ledger `to` names, with its
    /// inclusion proof in that ledger's newest checkpoint, verified; the page holds it, or
    /// nothing when the checkpoint's tree does not.
    ///
    /// # Errors
    /// [`RemoteError`].
    pub async fn remote_entry(
        &self,
        to: &Destination,
        seq: u64,
    ) -> Result<RemoteQuery, RemoteError> {
        let request = RoutedRequest::Entry { seq: LogIndex(seq) };
        let answer = self
            .remote_call(to, request, MessageType::ReferenceCheck, Filter::default(), seq)
            .await?;
        if answer.page.entries.iter().any(|e| e.entry.seq != seq) {
            let reason = format!("it answered another entry than {seq}");
            let via = answer.via;
            return Err(RemoteError::Bad { to: answer.target.oid.clone(), via, reason });
        }
        Ok(answer)
    }

    /// Sends `request` as a routed message of `kind` and verifies the answer as a page of
    /// `filter` from `cursor`.
    async fn remote_call(
        &self,
        to: &Destination,
        request: RoutedRequest,
        kind: MessageType,
        filter: Filter,
        cursor: u64,
    ) -> Result<RemoteQuery, RemoteError> {
        let check = |verifier: &NoteVerifier, _: &Target, answer| {
            verify_query(verifier, &filter, cursor, answer).map(|page| {
                let path = page.path.clone();
                (page, path)
            })
        };
        let a = self.remote_call_checked(to, request, kind, check).await?;
        Ok(RemoteQuery {
            target: a.target,
            page: a.value,
            path: a.path,
            via: a.via,
            strategy: a.strategy,
            latency_ms: a.latency_ms,
        })
    }

    /// The seed's proof verification: asks the ledger `to` names to check its entry `seq`
    /// against `expect` and verifies its signed statement (signature, question, checkpoint,
    /// inclusion proof, and every check against the entry when it is shown).
    ///
    /// # Errors
    /// [`RemoteError`].
    pub async fn remote_verify(
        &self,
        to: &Destination,
        seq: u64,
        expect: Expectation,
    ) -> Result<RemoteVerification, RemoteError> {
        let request = RoutedRequest::Verify { seq: LogIndex(seq), expect: expect.clone() };
        let check = |verifier: &NoteVerifier, target: &Target, answer| {
            let key = VerifyingKey::from_bytes(&target.key).map_err(|_| AnswerError::Malformed)?;
            verify_statement(verifier, &key, target.ledger, seq, &expect, answer).map(|v| {
                let path = v.path.clone();
                (v, path)
            })
        };
        let a = self.remote_call_checked(to, request, MessageType::ProofVerify, check).await?;
        Ok(RemoteVerification {
            target: a.target,
            verified: a.value,
            path: a.path,
            via: a.via,
            strategy: a.strategy,
            latency_ms: a.latency_ms,
        })
    }

    /// Sends `request` as a routed message of `kind`, and returns the first answer that opens
    /// and passes `check` (which also returns the relay path the destination saw).
    pub(super) async fn remote_call_checked<T>(
        &self,
        to: &Destination,
        request: RoutedRequest,
        kind: MessageType,
        check: impl Fn(&NoteVerifier, &Target, RoutedAnswer) -> Result<(T, Vec<[u8; 32]>), AnswerError>,
    ) -> Result<Answered<T>, RemoteError> {
        let target = self.resolve_target(to).await?;
        let (reply_key, message, strategy, hops) = self.originate(&target, &request, kind).await?;
        bump(&self.inner.routed.originated);
        let id = message.id;
        let ttl = message.ttl;
        let bytes = Arc::new(message.encode());
        let deadline = HOP_DEADLINE * u32::from(ttl);
        let started = Instant::now();
        let mut tried = hops.clone();
        tried.push(target.ledger);
        let fallback = self.alternatives(tried.clone()).await;
        let first = if fallback.is_empty() { deadline } else { deadline / 2 };
        let mut pending = self.launch(&hops, &bytes, first);
        let mut fallen_back = false;
        let to_name = target.oid.clone();
        let verifier = NoteVerifier::new(
            &target.oid,
            VerifyingKey::from_bytes(&target.key).map_err(|_| {
                RemoteError::Local(format!("{} has an unusable key", target.ledger))
            })?,
        )
        .map_err(|e| RemoteError::Local(e.to_string()))?;
        let mut said = Vec::new();
        let mut bad = None;
        loop {
            let Some((hop, outcome)) = pending.next().await else {
                // No answer through the chosen hops: once, the other trusted neighbours.
                if fallen_back {
                    break;
                }
                fallen_back = true;
                let alt = self.alternatives(tried.clone()).await;
                if alt.is_empty() {
                    break;
                }
                tracing::debug!(to = %to_name, tried = ?tried, "no answer yet; trying other neighbours");
                tried.extend(&alt);
                pending = self.launch(&alt, &bytes, deadline.saturating_sub(started.elapsed()));
                continue;
            };
            let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
            match outcome {
                HopOutcome::Said(s) => {
                    self.route_outcome_hops(target.ledger, hop, false, 0, 0);
                    said.push(s);
                }
                HopOutcome::Answer(sealed) => match open_answer(&reply_key, &id, &sealed) {
                    Ok(RoutedAnswer::Refused { code, message }) => {
                        // It opened under the reply key: the destination's own refusal.
                        self.route_outcome_hops(target.ledger, hop, true, 1, latency_ms);
                        return Err(RemoteError::Refused { to: to_name, code, message });
                    }
                    Ok(answer) => match check(&verifier, &target, answer) {
                        Ok((value, relays)) => {
                            let hops = u32::try_from(relays.len()).unwrap_or(u32::MAX);
                            self.route_outcome_hops(target.ledger, hop, true, hops + 1, latency_ms);
                            let path = self.path_names(&relays, &target);
                            return Ok(Answered {
                                target,
                                value,
                                path,
                                via: hop,
                                strategy,
                                latency_ms,
                            });
                        }
                        Err(e) => bad = bad.or(Some(self.rejected(&target, hop, e.to_string()))),
                    },
                    Err(reason) => bad = bad.or(Some(self.rejected(&target, hop, reason))),
                },
            }
        }
        if let Some((via, reason)) = bad {
            return Err(RemoteError::Bad { to: to_name, via, reason });
        }
        Err(RemoteError::NoAnswer {
            to: to_name,
            secs: deadline.as_secs(),
            detail: said.join("; "),
        })
    }

    /// An answer through `hop` that does not open or verify: counted against the route.
    fn rejected(&self, target: &Target, hop: LedgerId, reason: String) -> (LedgerId, String) {
        tracing::warn!(via = %hop, to = %target.oid, reason = %reason, "a routed answer does not verify");
        self.route_outcome_hops(target.ledger, hop, false, 0, 0);
        bump(&self.inner.routed.rejected);
        (hop, reason)
    }

    /// Seals `request` for `target` in a signed message and picks its first hops.
    async fn originate(
        &self,
        target: &Target,
        request: &RoutedRequest,
        kind: MessageType,
    ) -> Result<(ReplyKey, MeshMessage, Strategy, Vec<LedgerId>), RemoteError> {
        let identity = self.inner.ledger.identity();
        let id = *uuid::Uuid::new_v4().as_bytes();
        let call =
            Call { certificate: self.inner.core.certificate().clone(), request: request.clone() };
        let plain = postcard::to_stdvec(&call).map_err(|e| RemoteError::Local(e.to_string()))?;
        let key = VerifyingKey::from_bytes(&target.key)
            .map_err(|_| RemoteError::Local(format!("{} has an unusable key", target.ledger)))?;
        let (sealed, reply_key) = seal::seal_request(&key, &id, &plain, rand::random())
            .map_err(|e| RemoteError::Local(format!("cannot seal for {}: {e}", target.ledger)))?;
        let config = self.routing_config();
        let message = MeshMessage::with_id(
            id,
            self.inner.secret.signing_key(),
            (identity.ledger_id, identity.oid.as_str()),
            Addressed { ledger_id: Some(target.ledger), oid: Some(target.oid.clone()) },
            kind,
            sealed,
            config.ttl.max(1),
            now_ms(),
        );
        let routed = Routed {
            id,
            to: Destination::Oid(target.oid.clone()),
            ttl: message.ttl,
            path: Vec::new(),
        };
        match self.next_hops(routed, None).await {
            Ok((hops, strategy)) => Ok((reply_key, message, strategy, hops)),
            // No neighbour leads there: the DHT strategy, a direct connection to its record's
            // address (not for a node that keeps to its links).
            Err(why) if config.dht && !self.links_only() => {
                tracing::debug!(to = %target.oid, why = %why, "no next hop; connecting directly");
                Ok((reply_key, message, Strategy::Dht, vec![target.ledger]))
            }
            Err(why) => Err(RemoteError::NoPath(NoPath::Unreachable {
                to: target.oid.clone(),
                reasons: vec![why],
            })),
        }
    }

    /// Readable names of a path: this node, the relays, the destination.
    fn path_names(&self, relays: &[[u8; 32]], target: &Target) -> Vec<String> {
        let by_key = self.ledgers_by_key();
        let mut names = vec![self.inner.ledger.identity().ledger_id.to_string()];
        names.extend(relays.iter().map(|k| {
            by_key.get(k).map_or_else(|| format!("key:{}", hex::encode(k)), ToString::to_string)
        }));
        names.push(target.ledger.to_string());
        names
    }
}

/// The target as the pins and the known records name it.
fn known_target(node: &Node, to: &Destination) -> Option<Target> {
    let peers = node.inner.peers.list().ok()?;
    let book = node.discovery().known();
    let record_oid = |id: &LedgerId| {
        book.iter().find(|k| k.record.ledger_id == *id).map(|k| k.record.oid.clone())
    };
    for p in &peers {
        let oid = p.oid.clone().or_else(|| record_oid(&p.ledger_id));
        let hit = match to {
            Destination::Ledger(id) => p.ledger_id == *id,
            Destination::Oid(o) => oid.as_deref() == Some(o.as_str()),
        };
        if hit && let Some(oid) = oid {
            return Some(Target {
                ledger: p.ledger_id,
                oid,
                key: p.public_key,
                key_source: "pinned",
            });
        }
    }
    book.iter()
        .find(|k| match to {
            Destination::Ledger(id) => k.record.ledger_id == *id,
            Destination::Oid(o) => k.record.oid == *o,
        })
        // A record never overrides a pin: a pinned ledger with another key is skipped.
        .filter(|k| peers.iter().all(|p| p.ledger_id != k.record.ledger_id))
        .map(|k| Target {
            ledger: k.record.ledger_id,
            oid: k.record.oid.clone(),
            key: k.record.public_key,
            key_source: "record",
        })
}

/// Opens and decodes a sealed answer.
fn open_answer(key: &ReplyKey, id: &[u8; 16], sealed: &[u8]) -> Result<RoutedAnswer, String> {
    let plain = seal::open_reply(key, id, sealed).map_err(|e| e.to_string())?;
    postcard::from_bytes(&plain).map_err(|_| AnswerError::Malformed.to_string())
}

/// A routed request that arrived at this node (accepted by the inbox): answered here when it is
/// for this ledger, else passed on and its answer relayed back.
pub(crate) async fn handle(inner: Arc<Inner>, from: PeerId, message: MeshMessage) -> MeshReply {
    let node = Node { inner };
    let me = node.inner.ledger.identity();
    // Routed by OID when it has one (relays may not know the id), delivered by id.
    let (for_me, to) = match (&message.to.ledger_id, &message.to.oid) {
        (Some(id), oid) => {
            (*id == me.ledger_id, oid.clone().map_or(Destination::Ledger(*id), Destination::Oid))
        }
        (None, Some(oid)) => (*oid == me.oid.as_str(), Destination::Oid(oid.clone())),
        (None, None) => {
            return MeshReply::Invalid { reason: "a routed request names a destination".into() };
        }
    };
    if for_me {
        return answer_here(&node, message).await;
    }
    let Some(onward) = message.forwarded_by(&PeerId::new(node.inner.secret.public())) else {
        return MeshReply::Unreachable { reason: "its TTL is spent".into() };
    };
    let by_key = node.ledgers_by_key();
    let path_ledgers: Vec<LedgerId> = std::iter::once(&message.from.public_key)
        .chain(&message.path)
        .filter_map(|k| by_key.get(k).copied())
        .collect();
    let routed = Routed { id: message.id, to, ttl: message.ttl, path: path_ledgers.clone() };
    let from_ledger = by_key.get(from.as_bytes()).copied();
    let hops = match node.next_hops(routed, from_ledger).await {
        Ok((hops, _)) => hops,
        Err(why) => {
            bump(&node.inner.routed.unreachable);
            return MeshReply::Unreachable { reason: why };
        }
    };
    let deadline = HOP_DEADLINE * u32::from(onward.ttl);
    let bytes = Arc::new(onward.encode());
    let started = Instant::now();
    // Never back to where it came from or along its path.
    let mut tried: Vec<LedgerId> = hops.clone();
    tried.extend(from_ledger);
    tried.extend(path_ledgers);
    if let Some(t) = message.to.ledger_id {
        tried.push(t);
    }
    let fallback = node.alternatives(tried.clone()).await;
    let first = if fallback.is_empty() { deadline } else { deadline / 2 };
    let mut pending = node.launch(&hops, &bytes, first);
    let mut fallen_back = false;
    let mut said = Vec::new();
    loop {
        let Some((hop, outcome)) = pending.next().await else {
            if fallen_back {
                break;
            }
            fallen_back = true;
            let alt = node.alternatives(tried.clone()).await;
            if alt.is_empty() {
                break;
            }
            tried.extend(&alt);
            pending = node.launch(&alt, &bytes, deadline.saturating_sub(started.elapsed()));
            continue;
        };
        match outcome {
            HopOutcome::Answer(bytes) => {
                // The relay cannot open the answer; it came back, which is what it can score.
                if let Some(target) = message.to.ledger_id {
                    let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
                    node.route_outcome_hops(target, hop, true, 2, ms);
                }
                bump(&node.inner.routed.relayed);
                return MeshReply::Sealed { bytes };
            }
            HopOutcome::Said(s) => {
                if let Some(target) = message.to.ledger_id {
                    node.route_outcome_hops(target, hop, false, 0, 0);
                }
                said.push(s);
            }
        }
    }
    bump(&node.inner.routed.unreachable);
    MeshReply::Unreachable { reason: format!("{}: {}", me.ledger_id, said.join("; ")) }
}

/// Opens, answers and seals a request for this ledger.
async fn answer_here(node: &Node, message: MeshMessage) -> MeshReply {
    let opened = seal::open_request(node.inner.secret.signing_key(), &message.id, &message.payload);
    let Ok((plain, reply_key)) = opened else {
        return MeshReply::Invalid {
            reason: "the sealed payload does not open with this ledger's key".into(),
        };
    };
    let Ok(call) = postcard::from_bytes::<Call>(&plain) else {
        return MeshReply::Invalid { reason: "the sealed payload is not a routed request".into() };
    };
    let inner = node.inner.clone();
    let from = message.from.clone();
    let path = message.path.clone();
    let answer = node
        .blocking(move || answer_call(&inner, &from.public_key, from.ledger_id, call, path))
        .await
        .unwrap_or_else(|e| RoutedAnswer::Refused {
            code: ErrorCode::Internal,
            message: e.to_string(),
        });
    bump(&node.inner.routed.answered);
    MeshReply::Sealed { bytes: seal::seal_reply(&reply_key, &message.id, &answer.encode()) }
}

/// The answer to `call` from the holder of `key`, who says it is ledger `claimed`: the reader is
/// that ledger when its certificate proves it, else a stranger (public streams only).
fn answer_call(
    inner: &Inner,
    key: &[u8; 32],
    claimed: LedgerId,
    call: Call,
    path: Vec<[u8; 32]>,
) -> RoutedAnswer {
    let now = now_ms();
    let asker = call
        .certificate
        .verify(now)
        .ok()
        .filter(|i| i.public_key.as_bytes() == key && i.ledger_id == claimed);
    let reader = asker.as_ref().map(|i| i.ledger_id);
    let pinned = inner.peers.pinned_keys().iter().any(|(_, k)| k == key);
    let client = PeerId::from_bytes(key);
    let Some(client) = client else {
        return RoutedAnswer::Refused {
            code: ErrorCode::BadRequest,
            message: "an unusable key".into(),
        };
    };
    let access: serve::Access<'_> =
        &|ledger, scope| inner.trust.admits(ledger, reader.as_ref(), scope, now);
    let run = |request: Request| -> Response {
        match inner.core.handle_request(&client, pinned, access, request, now).0 {
            Decision::Respond(r) => r,
            Decision::Execute(plan) => {
                serve::execute(&inner.ledger, &inner.peers, &inner.trust, plan).response().clone()
            }
            Decision::Wait { .. } | Decision::Witness(_) | Decision::Evidence(_) => {
                Response::Error {
                    code: ErrorCode::BadRequest,
                    message: "not a routed request".into(),
                }
            }
        }
    };
    let me = inner.ledger.identity().ledger_id;
    // The newest checkpoint this node serves, as the asker may read it, and its size.
    let newest = || {
        match run(Request::Checkpoint { ledger: me, have: TreeSize(0) }) {
        Response::Checkpoint { note, .. } => {
            let size = note.lines().nth(1).and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
            Ok((note, size))
        }
        Response::Error { code, message } => Err((code, message)),
        _ => Err((
            ErrorCode::BadRequest,
            "this ledger has no signed checkpoint yet; ask again after its next checkpoint (`onoal checkpoint`)".to_owned(),
        )),
    }
    };
    match call.request {
        RoutedRequest::Query { filter, cursor, limit } => {
            let (note, size) = match newest() {
                Ok(n) => n,
                Err((code, message)) => return RoutedAnswer::Refused { code, message },
            };
            let request = Request::Entries {
                ledger: me,
                size: TreeSize(size),
                filter,
                cursor,
                limit: limit.clamp(1, MAX_QUERY_ENTRIES),
            };
            match run(request) {
                Response::Entries { mut entries, mut next_cursor } => {
                    trim_to_bytes(&mut entries, &mut next_cursor);
                    RoutedAnswer::Query { note, entries, next_cursor, path }
                }
                Response::Error { code, message } => RoutedAnswer::Refused { code, message },
                other => RoutedAnswer::Refused {
                    code: ErrorCode::Internal,
                    message: format!("unexpected {}", other.kind()),
                },
            }
        }
        RoutedRequest::Entry { seq } => {
            let (note, size) = match newest() {
                Ok(n) => n,
                Err((code, message)) => return RoutedAnswer::Refused { code, message },
            };
            if seq.0 >= size {
                return RoutedAnswer::Query { note, entries: Vec::new(), next_cursor: None, path };
            }
            let log = inner.ledger.log();
            let read = log.entry(seq.0).map_err(|e| e.to_string()).and_then(|e| {
                let stream = e.entry.content.stream.as_str().to_owned();
                let proof = log.inclusion_proof(seq.0, size).map_err(|e| e.to_string())?;
                Ok((stream, e.leaf_data, proof))
            });
            let (stream, leaf_data, proof) = match read {
                Ok(r) => r,
                Err(e) => return RoutedAnswer::Refused { code: ErrorCode::Internal, message: e },
            };
            let scope = crate::trust::visibility::Scope::Stream(&stream);
            if let Err(refused) = inner.trust.admits(&me, reader.as_ref(), scope, now) {
                return RoutedAnswer::Refused {
                    code: ErrorCode::NotVisible,
                    message: refused.to_string(),
                };
            }
            let entry = crate::proto::ProvenEntryWire { leaf_data, proof };
            RoutedAnswer::Query { note, entries: vec![entry], next_cursor: None, path }
        }
        RoutedRequest::Transfer { source, transfer, note, steps } => {
            super::transfer::answer(inner, asker.as_ref(), (source, transfer), &note, steps, path)
        }
        RoutedRequest::Asset { asset } => super::asset::answer(inner, &asset, path),
        RoutedRequest::Verify { seq, expect } => {
            let (note, _) = match newest() {
                Ok(n) => n,
                Err((code, message)) => return RoutedAnswer::Refused { code, message },
            };
            let readable = |stream: &str| {
                let scope = crate::trust::visibility::Scope::Stream(stream);
                inner.trust.admits(&me, reader.as_ref(), scope, now)
            };
            answer_verify(inner, note, seq.0, expect, readable, path, now)
        }
    }
}

/// The destination's answer to a proof verification of its entry `seq`: a statement about its
/// newest checkpoint (`note`), signed by its ledger key. The entry is shown when `readable`
/// admits its stream; otherwise the statement is made only for an asker who names the entry's
/// leaf hash (it confirms, and shows nothing).
fn answer_verify(
    inner: &Inner,
    note: String,
    seq: u64,
    expect: Expectation,
    readable: impl Fn(&str) -> Result<(), crate::trust::visibility::Refused>,
    path: Vec<[u8; 32]>,
    now: u64,
) -> RoutedAnswer {
    use ed25519_dalek::Signer as _;
    let internal = |message: String| RoutedAnswer::Refused { code: ErrorCode::Internal, message };
    let me = inner.ledger.identity();
    let cp = match onoal_engine::SignedCheckpoint::open(&me.verifier(), note.as_bytes()) {
        Ok(c) => c.checkpoint,
        Err(e) => return internal(e.to_string()),
    };
    let mut statement = VerifyStatement {
        ledger_id: me.ledger_id,
        seq,
        expect,
        tree_size: cp.size,
        root: cp.root,
        leaf_hash: None,
        checks: Checks::default(),
        verdict: Verdict::NotFound,
        time_ms: now,
    };
    let (mut proof, mut leaf_data) = (Vec::new(), None);
    if seq < cp.size {
        let log = inner.ledger.log();
        let read = log.entry(seq).map_err(|e| e.to_string()).and_then(|e| {
            let p = log.inclusion_proof(seq, cp.size).map_err(|e| e.to_string())?;
            Ok((e, p))
        });
        let (stored, p) = match read {
            Ok(r) => r,
            Err(e) => return internal(e),
        };
        let checks = Checks::of(&stored.entry, &stored.leaf_hash, &statement.expect);
        match readable(stored.entry.content.stream.as_str()) {
            Ok(()) => {
                statement.leaf_hash = Some(stored.leaf_hash);
                statement.checks = checks;
                (proof, leaf_data) = (p, Some(stored.leaf_data));
            }
            Err(refused) => match statement.expect.leaf_hash {
                None => {
                    return RoutedAnswer::Refused {
                        code: ErrorCode::NotVisible,
                        message: format!(
                            "{refused}; to have this ledger confirm the entry without showing it, give its leaf hash (`--leaf-hash`, or `--proof FILE`)"
                        ),
                    };
                }
                Some(h) if h == stored.leaf_hash => {
                    statement.leaf_hash = Some(h);
                    statement.checks = checks;
                    proof = p;
                }
                Some(_) => {
                    statement.checks = Checks { leaf_hash: Some(false), ..Checks::default() };
                }
            },
        }
        statement.verdict =
            if statement.checks.passed() { Verdict::Match } else { Verdict::Mismatch };
    }
    let signature = inner.secret.signing_key().sign(&statement.signing_bytes()).to_bytes().to_vec();
    RoutedAnswer::Verification {
        note,
        statement: statement.encode(),
        signature,
        proof,
        leaf_data,
        path,
    }
}

/// Keeps the page under [`MAX_QUERY_ENTRY_BYTES`] of leaf data (at least one entry); the next
/// page starts after the last entry kept.
fn trim_to_bytes(entries: &mut Vec<crate::proto::ProvenEntryWire>, next: &mut Option<LogIndex>) {
    let mut total = 0usize;
    let keep = entries
        .iter()
        .position(|e| {
            total += e.leaf_data.len() + e.proof.len() * 32;
            total > MAX_QUERY_ENTRY_BYTES
        })
        .map_or(entries.len(), |i| i.max(1));
    if keep < entries.len() {
        entries.truncate(keep);
        if let Some(last) =
            entries.last().and_then(|e| onoal_engine::Entry::decode(&e.leaf_data).ok())
        {
            *next = Some(LogIndex(last.seq + 1));
        }
    }
}

/// The outcome of checking one reference of an entry (`onoal ref check`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RefCheck {
    /// The reference, `LEDGER_ID:SEQ:LEAF_HASH`.
    pub reference: String,
    /// The referenced ledger.
    pub ledger_id: String,
    /// The referenced entry.
    pub seq: u64,
    /// The leaf hash the reference names (hex).
    pub leaf_hash: String,
    /// `verified` (the entry is in a checkpoint signed by that ledger's key and has this leaf
    /// hash), `mismatch` (it is there with another leaf hash), `missing` (that ledger's newest
    /// checkpoint does not reach it), `refused` (its policy does not show it to this ledger)
    /// or `unreachable` (no verified answer).
    pub status: String,
    /// Where the proof came from: `replica` (a verified local replica) or `mesh` (a routed
    /// reference_check).
    pub via: String,
    /// The size of the checkpoint it was checked against.
    pub checkpoint_size: Option<u64>,
    /// What was found, when it is not `verified`.
    pub detail: Option<String>,
}

impl RefCheck {
    fn new(r: &onoal_engine::EntryRef, status: &str, via: &str) -> Self {
        Self {
            reference: r.to_string(),
            ledger_id: r.ledger_id.to_string(),
            seq: r.seq,
            leaf_hash: r.leaf_hash.to_hex(),
            status: status.to_owned(),
            via: via.to_owned(),
            checkpoint_size: None,
            detail: None,
        }
    }
}

/// A reference checked against a local full replica (or this ledger's own log), when it holds
/// a checkpoint that reaches the entry; `None` sends the check through the mesh.
fn replica_check(ledger: &onoal_engine::Ledger, r: &onoal_engine::EntryRef) -> Option<RefCheck> {
    let log = ledger.log_of(&r.ledger_id)?;
    if log.is_sparse() {
        return None;
    }
    let cp = log.latest_checkpoint_at_most(log.durable_size()).ok()??;
    if r.seq >= cp.size {
        return None;
    }
    let e = log.entry(r.seq).ok()?;
    let proof = log.inclusion_proof(r.seq, cp.size).ok()?;
    let mut c = RefCheck::new(r, "verified", "replica");
    c.checkpoint_size = Some(cp.size);
    if onoal_engine::merkle::verify_inclusion(r.seq, cp.size, &e.leaf_hash, &proof, &cp.root)
        .is_err()
    {
        c.status = "unreachable".into();
        c.detail =
            Some("the local replica's proof does not verify: run `onoal verify --ledger`".into());
    } else if e.leaf_hash != r.leaf_hash {
        c.status = "mismatch".into();
        c.detail = Some(format!("entry {} has leaf hash {}", r.seq, e.leaf_hash.to_hex()));
    }
    Some(c)
}

impl Node {
    /// Checks every reference of this ledger's entry `seq`: against a local replica when one
    /// reaches it, else through the mesh (`reference_check`), each against a checkpoint signed
    /// by the referenced ledger's key.
    ///
    /// # Errors
    /// No entry `seq` here.
    pub async fn check_refs(&self, seq: u64) -> Result<Vec<RefCheck>, RemoteError> {
        let ledger = self.inner.ledger.clone();
        let entry = self
            .blocking(move || ledger.log().entry(seq))
            .await
            .map_err(|e| RemoteError::Local(e.to_string()))?
            .map_err(|e| RemoteError::Local(e.to_string()))?;
        let mut out = Vec::new();
        for r in &entry.entry.content.refs {
            out.push(self.check_ref(r).await);
        }
        Ok(out)
    }

    async fn check_ref(&self, r: &onoal_engine::EntryRef) -> RefCheck {
        let (ledger, rr) = (self.inner.ledger.clone(), *r);
        if let Some(c) = self.blocking(move || replica_check(&ledger, &rr)).await.ok().flatten() {
            return c;
        }
        let mut c = RefCheck::new(r, "verified", "mesh");
        match self.remote_entry(&Destination::Ledger(r.ledger_id), r.seq).await {
            Ok(a) => {
                c.checkpoint_size = Some(a.page.checkpoint.size);
                match a.page.entries.first() {
                    Some(e) if e.leaf_hash == r.leaf_hash => {}
                    Some(e) => {
                        c.status = "mismatch".into();
                        c.detail =
                            Some(format!("entry {} has leaf hash {}", r.seq, e.leaf_hash.to_hex()));
                    }
                    None => {
                        c.status = "missing".into();
                        c.detail = Some(format!(
                            "its newest checkpoint (size {}) does not reach entry {}",
                            a.page.checkpoint.size, r.seq
                        ));
                    }
                }
            }
            Err(RemoteError::Refused { message, .. }) => {
                c.status = "refused".into();
                c.detail = Some(message);
            }
            Err(e) => {
                c.status = "unreachable".into();
                c.detail = Some(e.to_string());
            }
        }
        c
    }
}
