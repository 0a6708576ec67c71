//! The node's control plane: what a running node can be asked to do and show, whichever API
//! asks (HTTP, the CLI through it). [`Control`] owns the node's follow tasks, its metrics and
//! its event feed; [`views`] are the JSON shapes every API answers with.

pub mod feed;
pub mod metrics;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use utoipa::ToSchema;

use onoal_engine::time::now_ms;
use onoal_engine::{AppendError, Filter, LedgerId, NewEntry, Receipt};

use crate::net::{Node, SyncError, SyncMode, SyncSummary};
use crate::peer::{PeerError, PeerRecord};
use metrics::{Metrics, PeerLabel, gauge_value};
use views::SyncSummaryView;

/// Events of the feed that are not read from a log (those are per subscriber; see the HTTP
/// watch route): a replica advanced, a peer's state changed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An entry was appended (durable).
    Entry {
        /// The log it is in.
        ledger_id: String,
        /// Its seq.
        seq: u64,
        /// Its leaf hash (hex).
        leaf_hash: String,
        /// Its stream.
        stream: String,
        /// Its type.
        entry_type: String,
        /// Its timestamp.
        timestamp_ms: u64,
    },
    /// A checkpoint was signed (own log) or accepted (replica).
    Checkpoint {
        /// The log.
        ledger_id: String,
        /// Its size.
        #[serde(rename = "tree_size", alias = "size")]
        size: u64,
    },
    /// A sync of a replica finished.
    Replica {
        /// The replicated ledger.
        ledger_id: String,
        /// Entries held before.
        from_size: u64,
        /// Entries held now.
        to_size: u64,
        /// Newest verified checkpoint.
        checkpoint_size: u64,
    },
    /// A peer was pinned or removed, a follow started, failed or stopped.
    Peer {
        /// The peer's ledger.
        ledger_id: String,
        /// `pinned`, `removed`, `following`, `synced`, `sync_failed`, `unfollowed`.
        state: String,
        /// What happened, when there is more to say.
        detail: Option<String>,
    },
    /// This subscriber fell behind the feed and missed events of peers and replicas (never
    /// entries: those are read from the log).
    Lagged {
        /// Events missed.
        missed: u64,
    },
}

/// A followed ledger.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FollowView {
    /// The followed ledger.
    pub ledger_id: String,
    /// The address it is followed from (none: its pinned address).
    pub from: Option<String>,
    /// Since when (ms since the epoch).
    pub since_ms: u64,
    /// Syncs completed.
    pub syncs: u64,
    /// The last one.
    pub last: Option<SyncSummaryView>,
    /// Why following stopped, when it did (a non-transient error).
    pub stopped: Option<String>,
}

/// What a running node shows as its status.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    /// This ledger.
    pub ledger_id: String,
    /// Its OID.
    pub oid: String,
    /// Its Ed25519 key (hex).
    pub public_key: String,
    /// Its C2SP verifier key.
    pub vkey: String,
    /// Entries (durable).
    pub tree_size: u64,
    /// Root at that size (hex).
    pub root: String,
    /// Newest signed checkpoint's size.
    pub checkpoint_size: Option<u64>,
    /// The QUIC address peers reach it at.
    pub quic_addr: String,
    /// Largest payload an entry may carry.
    pub max_payload_bytes: usize,
    /// Seconds since the node started.
    pub uptime_seconds: f64,
    /// Pinned peers.
    pub peers: usize,
    /// Connected peers (served connections).
    pub connections: usize,
    /// Replicas held.
    pub replicas: usize,
    /// Followed ledgers.
    pub follows: Vec<FollowView>,
}

/// Why [`Control::log`] found no log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogLookupError {
    /// Not a ledger id.
    #[error("{0:?} is not a ledger id (UUID)")]
    BadId(String),
    /// No replica of it here.
    #[error("no replica of {0} here; sync it first")]
    NoReplica(LedgerId),
}

/// Errors of a control request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The ledger is not pinned.
    #[error("{0} is not pinned; pin it first (onoal peer add {0}@HOST:PORT --key HEX)")]
    NotPinned(LedgerId),
    /// Already followed.
    #[error("{0} is already followed")]
    AlreadyFollowing(LedgerId),
    /// Peer table.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A sync.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// An append.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// Something local.
    #[error("{0}")]
    Local(String),
}

struct Follow {
    from: Option<String>,
    since_ms: u64,
    task: JoinHandle<()>,
    state: Arc<Mutex<FollowState>>,
}

#[derive(Default)]
struct FollowState {
    syncs: u64,
    last: Option<SyncSummaryView>,
    stopped: Option<String>,
}

struct Inner {
    node: Node,
    started: Instant,
    quic_addr: String,
    follows: Mutex<HashMap<LedgerId, Follow>>,
    metrics: Metrics,
    events: broadcast::Sender<Event>,
}

/// A running node's control plane. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("node", &self.inner.node).finish()
    }
}

/// Events the feed buffers per subscriber before it reports [`Event::Lagged`].
const EVENT_BUFFER: usize = 1024;

impl Control {
    /// The control plane of `node` (call inside its runtime).
    pub fn new(node: Node) -> Self {
        let log = node.ledger().log().clone();
        let initial = *node.durable_watch(&log).borrow();
        let quic_addr = node.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let inner = Arc::new(Inner {
            node,
            started: Instant::now(),
            quic_addr,
            follows: Mutex::new(HashMap::new()),
            metrics: Metrics::new(initial),
            events: broadcast::channel(EVENT_BUFFER).0,
        });
        let weak = Arc::downgrade(&inner);
        log.on_durable(move |d| match weak.upgrade() {
            Some(inner) => {
                inner.metrics.on_durable(d);
                true
            }
            None => false,
        });
        Self { inner }
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The own log (no id, or this ledger's id) or the replica (full or sparse) of `id`.
    ///
    /// # Errors
    /// [`LogLookupError`].
    pub fn log(&self, id: Option<&str>) -> Result<onoal_engine::Log, LogLookupError> {
        let ledger = self.inner.node.ledger();
        let Some(text) = id else { return Ok(ledger.log().clone()) };
        let id: LedgerId = text.parse().map_err(|_| LogLookupError::BadId(text.to_owned()))?;
        if id == ledger.identity().ledger_id {
            return Ok(ledger.log().clone());
        }
        ledger
            .log_of(&id)
            .or_else(|| ledger.sparse_replica(&id))
            .ok_or(LogLookupError::NoReplica(id))
    }

    /// A new subscriber of the feed (replica and peer events).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.inner.events.send(event);
    }

    fn peer_event(&self, id: LedgerId, state: &str, detail: Option<String>) {
        self.emit(Event::Peer { ledger_id: id.to_string(), state: state.to_owned(), detail });
    }

    /// Appends `entries` as one group; the receipts come once they are durable.
    ///
    /// # Errors
    /// The ledger refused them or failed; nothing of a failed group is acknowledged.
    pub async fn append(
        &self,
        entries: Vec<NewEntry>,
    ) -> Result<(Vec<Receipt>, u64), ControlError> {
        let started = Instant::now();
        let ledger = self.inner.node.ledger().clone();
        let receipts = tokio::task::spawn_blocking(move || ledger.submit_batch(entries)?.wait())
            .await
            .map_err(|e| ControlError::Local(format!("the append task failed: {e}")))??;
        self.observe_append(started.elapsed());
        let size = receipts.last().map_or(0, |r| r.seq + 1);
        Ok((receipts, size.max(self.inner.node.ledger().log().durable_size())))
    }

    /// Records one API append's latency (receiving it to its receipt).
    pub fn observe_append(&self, elapsed: std::time::Duration) {
        self.inner.metrics.append_latency.observe(elapsed.as_secs_f64());
    }

    /// Pins `key` for `id` (replacing the address list's head with `address`); served at once.
    /// Another key pinned for `id` is refused unless `replace_key` (then it is kept in the
    /// record's history and logged at warn level).
    ///
    /// # Errors
    /// Storage errors, [`PeerError::KeyChanged`].
    pub fn pin(
        &self,
        id: LedgerId,
        key: [u8; 32],
        address: Option<String>,
        replace_key: bool,
    ) -> Result<PeerRecord, ControlError> {
        let peers = self.inner.node.peers();
        let record = if replace_key {
            let old = peers.key_of(&id);
            let record = peers.replace_key(id, key, address, now_ms())?;
            if let Some(old) = old.filter(|o| *o != key) {
                tracing::warn!(ledger = %id, old_key = %hex::encode(old), new_key = %hex::encode(key),
                    "pinned key replaced by the operator");
            }
            record
        } else {
            peers.pin(id, key, address)?
        };
        self.peer_event(id, "pinned", Some(hex::encode(key)));
        Ok(record)
    }

    /// Unpins `id` and stops following it; its replica stays. False when it was not pinned.
    ///
    /// # Errors
    /// Storage errors.
    pub fn unpin(&self, id: LedgerId) -> Result<bool, ControlError> {
        self.unfollow(id);
        let removed = self.inner.node.peers().remove(&id)?;
        if removed {
            self.peer_event(id, "removed", None);
        }
        Ok(removed)
    }

    /// Syncs the replica of `id` once (filtered when `filter` is not empty).
    ///
    /// # Errors
    /// [`ControlError::Sync`]: what the sync found.
    pub async fn sync(
        &self,
        id: LedgerId,
        from: Option<&str>,
        mode: SyncMode,
        filter: &Filter,
    ) -> Result<SyncSummary, ControlError> {
        let node = &self.inner.node;
        let r = if filter.is_empty() {
            node.sync(id, from, mode, &|_| {}).await
        } else {
            node.sync_filtered(id, from, filter, &|_| {}).await
        };
        match &r {
            Ok(s) => self.synced(s),
            Err(e) => self.sync_failed(id, e),
        }
        Ok(r?)
    }

    fn synced(&self, s: &SyncSummary) {
        record_sync(&self.inner.metrics, &self.inner.events, s);
    }

    fn sync_failed(&self, id: LedgerId, e: &SyncError) {
        let label = PeerLabel { peer: id.to_string() };
        self.inner.metrics.sync_errors.get_or_create(&label).inc();
        self.peer_event(id, "sync_failed", Some(e.to_string()));
    }

    /// Follows `id` from `from` (or its pinned address) until [`Self::unfollow`]: syncs, then
    /// syncs again whenever it signs a newer checkpoint.
    ///
    /// # Errors
    /// Not pinned, already followed.
    pub fn follow(&self, id: LedgerId, from: Option<String>) -> Result<(), ControlError> {
        if self.inner.node.peers().get(&id)?.is_none() {
            return Err(ControlError::NotPinned(id));
        }
        let mut follows = self.inner.follows.lock();
        if follows.get(&id).is_some_and(|f| !f.task.is_finished()) {
            return Err(ControlError::AlreadyFollowing(id));
        }
        let state = Arc::new(Mutex::new(FollowState::default()));
        let task = {
            let (control, state, from) = (self.clone(), state.clone(), from.clone());
            tokio::spawn(async move {
                let on_sync = |s: &SyncSummary| {
                    tracing::info!(ledger = %s.ledger_id, size = s.to_size, new = s.entries, "synced");
                    control.synced(s);
                    let mut st = state.lock();
                    st.syncs += 1;
                    st.last = Some(SyncSummaryView::from(s));
                };
                let r = control.inner.node.follow(id, from.as_deref(), &on_sync).await;
                if let Err(e) = r {
                    tracing::warn!(ledger = %id, error = %e, "following stopped");
                    control.sync_failed(id, &e);
                    state.lock().stopped = Some(e.to_string());
                }
            })
        };
        follows.insert(id, Follow { from, since_ms: now_ms(), task, state });
        drop(follows);
        self.peer_event(id, "following", None);
        Ok(())
    }

    /// Stops following `id`. False when it was not followed.
    pub fn unfollow(&self, id: LedgerId) -> bool {
        let Some(f) = self.inner.follows.lock().remove(&id) else { return false };
        f.task.abort();
        self.peer_event(id, "unfollowed", None);
        true
    }

    /// The followed ledgers.
    pub fn follows(&self) -> Vec<FollowView> {
        let follows = self.inner.follows.lock();
        let mut list: Vec<FollowView> = follows
            .iter()
            .map(|(id, f)| {
                let st = f.state.lock();
                FollowView {
                    ledger_id: id.to_string(),
                    from: f.from.clone(),
                    since_ms: f.since_ms,
                    syncs: st.syncs,
                    last: st.last.clone(),
                    stopped: st.stopped.clone(),
                }
            })
            .collect();
        list.sort_by(|a, b| a.ledger_id.cmp(&b.ledger_id));
        list
    }

    /// The node's status.
    ///
    /// # Errors
    /// Storage errors.
    pub fn status(&self) -> Result<StatusView, ControlError> {
        let ledger = self.inner.node.ledger();
        let id = ledger.identity();
        let log = ledger.log();
        let size = log.durable_size();
        let local = |e: onoal_engine::ReadError| ControlError::Local(e.to_string());
        Ok(StatusView {
            ledger_id: id.ledger_id.to_string(),
            oid: id.oid.as_str().to_owned(),
            public_key: hex::encode(id.public_key.as_bytes()),
            vkey: id.verifier().to_vkey(),
            tree_size: size,
            root: log.root_at(size).map_err(local)?.to_hex(),
            checkpoint_size: log.latest_checkpoint().map_err(local)?.map(|c| c.size),
            quic_addr: self.inner.quic_addr.clone(),
            max_payload_bytes: ledger.max_payload_bytes(),
            uptime_seconds: self.inner.started.elapsed().as_secs_f64(),
            peers: self.inner.node.peers().list()?.len(),
            connections: self.inner.node.served_connections().0,
            replicas: ledger.replicas().len() + ledger.sparse_replicas().len(),
            follows: self.follows(),
        })
    }

    /// The metrics in Prometheus text format (state gauges read now).
    pub fn metrics_text(&self) -> String {
        let m = &self.inner.metrics;
        let node = &self.inner.node;
        if let Ok(peers) = node.peers().list() {
            m.peers_pinned.set(gauge_value(peers.len()));
            for p in &peers {
                let label = PeerLabel { peer: p.ledger_id.to_string() };
                m.misbehaviour
                    .get_or_create(&label)
                    .set(i64::try_from(p.misbehaviour_count).unwrap_or(i64::MAX));
            }
        }
        let (all, pinned) = node.served_connections();
        m.connections.set(gauge_value(all));
        m.connections_pinned.set(gauge_value(pinned));
        let ledger = node.ledger();
        m.replicas.set(gauge_value(ledger.replicas().len() + ledger.sparse_replicas().len()));
        m.follows.set(gauge_value(self.inner.follows.lock().len()));
        m.encode()
    }

    /// Stops every follow.
    pub fn shutdown(&self) {
        for (_, f) in self.inner.follows.lock().drain() {
            f.task.abort();
        }
    }
}

fn record_sync(metrics: &Metrics, events: &broadcast::Sender<Event>, s: &SyncSummary) {
    let label = PeerLabel { peer: s.ledger_id.to_string() };
    metrics.sync_entries.get_or_create(&label).inc_by(s.entries);
    metrics.sync_bytes.get_or_create(&label).inc_by(s.bytes);
    let _ = events.send(Event::Replica {
        ledger_id: s.ledger_id.to_string(),
        from_size: s.from_size,
        to_size: s.to_size,
        checkpoint_size: s.checkpoint_size,
    });
}
