//! The discovery driver: moves the DHT core's requests over QUIC (`onoal-dht/1`), answers
//! mesh messages (`onoal-mesh/1`: announce, discover, heartbeat), talks to bootstrap nodes and
//! exchanges records with known peers (gossip). Every decision is in the cores
//! ([`crate::dht::Dht`], [`crate::proto::envelope::Inbox`], [`crate::proto::record::RecordBook`]);
//! this file holds sockets, tasks and deadlines.
//!
//! Known is not trusted: a discovered peer may send these messages, and nothing else. What a
//! node serves of its data is still decided by pinning (docs/design/mesh.md).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use quinn::Connection;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use onoal_engine::time::now_ms;
use onoal_engine::{AuxTable, LedgerId, Oid};

use super::dns::{self, DnsConfig};
use super::router::ProtocolHandler;
use super::stream::{read_frame, write_frame};
use super::{Inner, Node};
use crate::dht::{
    ALPN_DHT, Contact, Dht, DhtConfig, DhtEvent, DhtRequest, DhtResponse, LookupId, LookupOutcome,
    MAX_DHT_MESSAGE, NodeKey, RequestId,
};
use crate::id::PeerId;
use crate::membership::{MemberConnection, Membership, MembershipConfig, Status};
use crate::outbox::{Outbox, OutboxRow, Outcome, Outgoing, RetryPolicy, Write};
use crate::proto::envelope::TopologyChange;
use crate::proto::envelope::{
    ALPN_MESH, Destination, DiscoverQuery, Inbox, InboxConfig, MAX_DISCOVER_RECORDS,
    MAX_MESSAGE_BYTES, MAX_REPLY_BYTES, MeshMessage, MeshReply, MessageType, Rejected,
};
use crate::proto::record::{
    Endpoints, Known, Metadata, Offered, PeerRecord, RecordBook, RecordFields, Source,
};
use crate::proto::sync::SessionError;
use crate::registry::client::{RegistryCallError, RegistryClient};
use crate::swim::{ALPN_SWIM, Swim, SwimConfig, SwimEvent, SwimId};
use crate::tls;

/// How long one DHT request or mesh message may take, connecting included.
const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
/// How long a client has to send its request once it opened a stream, and to take the answer.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once for the DHT and mesh messages together.
const MAX_SERVED: usize = 256;
/// Client connections kept for reuse.
const POOL: usize = 256;
/// How often the driver looks for members due a heartbeat.
const HEARTBEAT_TICK: Duration = Duration::from_millis(200);
/// How long a goodbye may take at shutdown, to all members together.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(2);
/// How long a record this node signs is valid; it is re-signed at half of it.
const RECORD_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Ledgers a node remembers from discovery.
const BOOK_CAPACITY: usize = 100_000;
/// How soon the registry or DNS is asked again after a failure.
const DIRECTORY_RETRY: Duration = Duration::from_secs(5);
/// Records a node takes from the registry when it joins (the most recently refreshed).
const DIRECTORY_PEERS: usize = 64;
/// Records of new SWIM members fetched at once.
const SWIM_FETCHES: usize = 8;
/// The trust a ledger needs for its node to count as trusted in the DHT's buckets (the
/// default visibility's threshold: a pinned peer is trusted, a stranger is not).
const ROUTING_TRUST: f64 = 0.4;

/// A DHT request's answer (`None`: it failed), back from its task to the driver.
type Answered = (RequestId, Option<DhtResponse>);

/// Discovery settings of a node.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// Bootstrap nodes: ledger id, key and QUIC address.
    pub bootstrap: Vec<(LedgerId, PeerId, SocketAddr)>,
    /// The QUIC address others should dial (defaults to the bound address, loopback for an
    /// unspecified one).
    pub advertise: Option<SocketAddr>,
    /// The HTTP API's URL, if one is served, for the record.
    pub http: Option<String>,
    /// A human name for the record.
    pub name: Option<String>,
    /// How often a node exchanges records with a few known peers.
    pub gossip_interval: Duration,
    /// How many peers each exchange asks.
    pub fanout: usize,
    /// Heartbeats: interval, misses before a member is disconnected, most members.
    pub membership: MembershipConfig,
    /// The DHT's settings.
    pub dht: DhtConfig,
    /// A registry this node registers with and looks ledgers up in.
    pub registry: Option<RegistryClient>,
    /// DNS SRV discovery: the name to resolve and the server to ask.
    pub dns: Option<DnsConfig>,
    /// How often the registry and DNS are asked again (the seed's refreshInterval); after a
    /// failure they are asked again in 5 seconds.
    pub refresh_interval: Duration,
    /// SWIM membership (foca): probe period, suspicion time, most members.
    pub swim: SwimConfig,
    /// Connect only to links (pinned peers and bootstrap nodes), as a firewall would; records
    /// still spread through the links, and routed messages travel hop by hop over them.
    pub links_only: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            bootstrap: Vec::new(),
            advertise: None,
            http: None,
            name: None,
            gossip_interval: Duration::from_secs(5),
            fanout: 3,
            membership: MembershipConfig::default(),
            dht: DhtConfig::default(),
            registry: None,
            dns: None,
            refresh_interval: crate::registry::DEFAULT_REFRESH_INTERVAL,
            swim: SwimConfig::default(),
            links_only: false,
        }
    }
}

/// Counters of the discovery layer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) dht_served: AtomicU64,
    pub(crate) messages_accepted: AtomicU64,
    pub(crate) messages_dropped: AtomicU64,
    pub(crate) records_refused: AtomicU64,
    pub(crate) swim_refused: AtomicU64,
    pub(crate) swim_down: AtomicU64,
}

/// The discovery state of a node, shared by its handlers and its driver.
pub(crate) struct Discovery {
    pub(crate) dht: Mutex<Dht>,
    pub(crate) book: Mutex<RecordBook>,
    pub(crate) inbox: Mutex<Inbox>,
    pub(crate) membership: Mutex<Membership>,
    own: Mutex<PeerRecord>,
    /// The registered assets this ledger announces in its record (use case 3).
    assets: Mutex<Vec<String>>,
    pub(crate) counters: Counters,
    wake: Notify,
    results: mpsc::UnboundedSender<Answered>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Answered>>>,
    waiters: Mutex<HashMap<LookupId, oneshot::Sender<LookupOutcome>>>,
    pool: Mutex<HashMap<NodeKey, Connection>>,
    mesh_pool: Mutex<HashMap<NodeKey, Connection>>,
    served: Arc<Semaphore>,
    config: Mutex<DiscoveryConfig>,
    /// Ledgers the operator disconnected (`peer disconnect`): known, not heartbeated, until
    /// `peer connect`.
    muted: Mutex<std::collections::BTreeSet<LedgerId>>,
    /// Set when it says goodbye: it sends no more heartbeats or gossip.
    leaving: std::sync::atomic::AtomicBool,
    /// SWIM membership; `None` until discovery starts.
    pub(crate) swim: Mutex<Option<Swim>>,
    swim_wake: Notify,
    swim_fetches: Arc<Semaphore>,
    swim_pool: Mutex<HashMap<NodeKey, Connection>>,
    /// Messages this node originates and wants delivered (the `messages` table).
    pub(crate) outbox: Mutex<Outbox>,
    outbox_wake: Notify,
    /// The pins: a discovered record never names a pinned ledger with another key.
    peers: crate::peer::PeerStore,
}

/// Why a ledger cannot be made a member.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// Neither known nor found.
    #[error(
        "ledger {0} is not known and was not found; look for it with `onoal discover --id`, or pin it with `onoal peer add`"
    )]
    Unknown(LedgerId),
    /// Its record has no QUIC address (or no usable key).
    #[error("ledger {0}'s record gives no QUIC address to reach it")]
    NoAddress(LedgerId),
    /// This node's own ledger.
    #[error("ledger {0} is this node's own ledger")]
    Itself(LedgerId),
    /// No room.
    #[error(
        "this node already keeps in touch with its maximum of {0} members; disconnect one first (`onoal peer disconnect ID`)"
    )]
    Full(usize),
}

fn advertised(bound: SocketAddr, advertise: Option<SocketAddr>) -> SocketAddr {
    advertise.unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        } else {
            bound
        }
    })
}

impl Discovery {
    pub(crate) fn new(
        inner_key: &onoal_engine::identity::SecretKey,
        ledger: &onoal_engine::Ledger,
        bound: SocketAddr,
        peers: crate::peer::PeerStore,
    ) -> Self {
        let config = DiscoveryConfig::default();
        let me = PeerId::new(inner_key.public());
        let contact = Contact::new(me, advertised(bound, None));
        let (results, receiver) = mpsc::unbounded_channel();
        let own = sign_record(inner_key, ledger, contact.addr, &config, &[], now_ms());
        Self {
            dht: Mutex::new(Dht::new(contact, config.dht.clone(), Instant::now(), now_ms())),
            book: Mutex::new(RecordBook::new(BOOK_CAPACITY)),
            inbox: Mutex::new(Inbox::new(me, InboxConfig::default())),
            membership: Mutex::new(Membership::new(config.membership)),
            own: Mutex::new(own),
            assets: Mutex::new(Vec::new()),
            counters: Counters::default(),
            wake: Notify::new(),
            results,
            receiver: Mutex::new(Some(receiver)),
            waiters: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            mesh_pool: Mutex::new(HashMap::new()),
            served: Arc::new(Semaphore::new(MAX_SERVED)),
            config: Mutex::new(config),
            muted: Mutex::new(std::collections::BTreeSet::new()),
            leaving: std::sync::atomic::AtomicBool::new(false),
            swim: Mutex::new(None),
            swim_wake: Notify::new(),
            swim_fetches: Arc::new(Semaphore::new(SWIM_FETCHES)),
            swim_pool: Mutex::new(HashMap::new()),
            outbox: Mutex::new(Outbox::new(RetryPolicy::default())),
            outbox_wake: Notify::new(),
            peers,
        }
    }

    /// This node's signed record.
    pub(crate) fn own_record(&self) -> PeerRecord {
        self.own.lock().clone()
    }

    /// Every record known, with its source.
    pub(crate) fn known(&self) -> Vec<Known> {
        let mut all: Vec<Known> = self.book.lock().iter().cloned().collect();
        all.sort_by_key(|k| (k.source, k.record.oid.clone()));
        all
    }

    fn offer(&self, record: PeerRecord, source: Source) -> Offered {
        if record.public_key == self.own.lock().public_key {
            // This node's own record, come back from the DHT or a peer.
            return Offered::Unchanged;
        }
        let quic = record.endpoints.quic.as_deref().and_then(|a| a.parse::<SocketAddr>().ok());
        let key = record.peer();
        let ledger = record.ledger_id;
        if let Ok(Some(pin)) = self.peers.get(&ledger)
            && pin.public_key != record.public_key
            && let Some(held) = pin.peer_id()
        {
            tracing::debug!(%ledger, source = source.as_str(), "a discovered record names a pinned ledger with another key; refused");
            self.counters.records_refused.fetch_add(1, Ordering::Relaxed);
            return Offered::KeyConflict { held, source: Source::Manual };
        }
        let offered = self.book.lock().offer(record, source, now_ms());
        match &offered {
            Offered::New | Offered::Updated => {
                if let (Some(addr), Some(key)) = (quic, key) {
                    self.dht.lock().add_contact(Contact::new(key, addr), Instant::now());
                    if !self.muted.lock().contains(&ledger) {
                        self.membership.lock().track(ledger, key, addr, Instant::now(), now_ms());
                    }
                    self.wake.notify_one();
                }
            }
            Offered::Invalid(_) | Offered::KeyConflict { .. } => {
                self.counters.records_refused.fetch_add(1, Ordering::Relaxed);
            }
            Offered::Unchanged => {}
        }
        offered
    }
}

fn sign_record(
    secret: &onoal_engine::identity::SecretKey,
    ledger: &onoal_engine::Ledger,
    quic: SocketAddr,
    config: &DiscoveryConfig,
    assets: &[String],
    now: u64,
) -> PeerRecord {
    let identity = ledger.identity();
    let fields = RecordFields {
        endpoints: Endpoints {
            quic: Some(quic.to_string()),
            http: config.http.clone(),
            ..Endpoints::default()
        },
        capabilities: vec!["sync".into(), "dht".into(), "mesh".into()],
        metadata: Metadata {
            name: config.name.clone(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            ..Metadata::default()
        },
        assets: assets.to_vec(),
    };
    let expires = now + u64::try_from(RECORD_VALIDITY.as_millis()).unwrap_or(u64::MAX);
    // The sequence is the signing time: a restarted node's record replaces its older ones.
    PeerRecord::sign(secret.signing_key(), identity.ledger_id, &identity.oid, fields, now, expires)
}

impl Node {
    pub(crate) fn discovery(&self) -> &Arc<Discovery> {
        &self.inner.discovery
    }

    /// Starts discovery: applies `config`, re-signs this node's record, contacts the bootstrap
    /// nodes, joins the DHT (a lookup of itself), publishes the record, and keeps exchanging
    /// records with known peers. Called by [`Node::serve_with`].
    pub(super) fn start_discovery(&self, config: DiscoveryConfig) {
        let d = self.discovery().clone();
        let bound = self.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = advertised(bound, config.advertise);
        {
            let me = PeerId::new(self.inner.secret.public());
            let mut dht = d.dht.lock();
            *dht = Dht::new(Contact::new(me, addr), config.dht.clone(), Instant::now(), now_ms());
        }
        let assets = d.assets.lock().clone();
        *d.own.lock() =
            sign_record(&self.inner.secret, &self.inner.ledger, addr, &config, &assets, now_ms());
        *d.membership.lock() = Membership::new(config.membership);
        let me = SwimId {
            ledger_id: self.inner.ledger.identity().ledger_id,
            key: *self.inner.secret.public().as_bytes(),
            addr,
            bump: 0,
        };
        // Seeded from the clock and the key: nodes started together choose differently.
        let seed = now_ms() ^ u64::from_le_bytes(me.key[..8].try_into().unwrap_or_default());
        *d.swim.lock() = Some(Swim::new(me, config.swim, seed));
        *d.config.lock() = config;
        let Some(receiver) = d.receiver.lock().take() else { return };
        let node = self.clone();
        tokio::spawn(async move { node.drive_discovery(receiver).await });
        let node = self.clone();
        tokio::spawn(async move { node.drive_swim().await });
        // Rows from before this start: unfinished ones fail (their sender is gone).
        match self.inner.ledger.aux_scan(AuxTable::Messages) {
            Ok(stored) => {
                let rows = stored
                    .iter()
                    .filter(|(k, _)| !super::ref_verifier::is_ref_check_key(k))
                    .filter_map(|(_, v)| OutboxRow::decode(v));
                d.outbox.lock().restore(rows, now_ms());
                self.flush_outbox();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the messages table"),
        }
        let node = self.clone();
        tokio::spawn(async move { node.drive_outbox().await });
    }

    async fn drive_discovery(self, mut results: mpsc::UnboundedReceiver<Answered>) {
        let d = self.discovery().clone();
        let (bootstrap, gossip_every, registry, dns, refresh) = {
            let c = d.config.lock();
            (
                c.bootstrap.clone(),
                c.gossip_interval,
                c.registry.clone(),
                c.dns.clone(),
                c.refresh_interval,
            )
        };
        if let Some(client) = registry {
            tokio::spawn(self.clone().use_registry(client, refresh));
        }
        if let Some(dns) = dns {
            tokio::spawn(self.clone().use_dns(dns, refresh));
        }
        for (_, peer, addr) in &bootstrap {
            d.dht.lock().add_bootstrap(Contact::new(*peer, *addr), Instant::now());
        }
        let mut pins_seen = self.inner.peers.generation();
        tokio::spawn(self.clone().add_pinned_contacts());
        let bootstrapping = self.clone();
        tokio::spawn(async move {
            let peers: Vec<(Option<LedgerId>, PeerId, SocketAddr)> =
                bootstrap.iter().map(|(id, k, a)| (Some(*id), *k, *a)).collect();
            // A bootstrap node may come up after this one: asked again every 5 s until one
            // answers with its records.
            while !peers.is_empty()
                && bootstrapping.exchange(&peers, Source::Bootstrap).await == 0
                && !bootstrapping.discovery().leaving.load(Ordering::Relaxed)
            {
                tokio::time::sleep(DIRECTORY_RETRY).await;
            }
        });
        {
            let own = d.own_record();
            let mut dht = d.dht.lock();
            let me = dht.local().id;
            dht.find_node(me, Instant::now());
            dht.publish(own, Instant::now());
        }
        let mut gossip = tokio::time::interval(gossip_every);
        gossip.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resign = tokio::time::interval(RECORD_VALIDITY / 2);
        resign.tick().await;
        let mut beat = tokio::time::interval(HEARTBEAT_TICK);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.pump();
            let deadline = d.dht.lock().poll_timeout();
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = results.recv() => {
                    let Some((id, response)) = result else { return };
                    let mut dht = d.dht.lock();
                    match response {
                        Some(r) => dht.handle_response(id, r, Instant::now()),
                        None => dht.handle_failure(id, Instant::now()),
                    }
                }
                () = d.wake.notified() => {}
                () = sleep => d.dht.lock().handle_timeout(Instant::now()),
                _ = gossip.tick() => {
                    if d.leaving.load(Ordering::Relaxed) {
                        continue;
                    }
                    let trusted = self.routing_trusted();
                    if let Some(swim) = d.swim.lock().as_mut() {
                        swim.set_trusted(trusted.iter().map(|k| k.0));
                    }
                    d.dht.lock().set_trusted(trusted);
                    let peers = self.gossip_targets();
                    let node = self.clone();
                    tokio::spawn(async move { node.exchange(&peers, Source::Gossip).await });
                    let pins = self.inner.peers.generation();
                    if pins != pins_seen {
                        pins_seen = pins;
                        tokio::spawn(self.clone().add_pinned_contacts());
                    }
                }
                _ = beat.tick() => self.heartbeats(),
                _ = resign.tick() => {
                    let record = {
                        let c = d.config.lock();
                        let addr = d.dht.lock().local().addr;
                        let assets = d.assets.lock().clone();
                        sign_record(&self.inner.secret, &self.inner.ledger, addr, &c, &assets, now_ms())
                    };
                    *d.own.lock() = record.clone();
                    d.dht.lock().publish(record, Instant::now());
                }
            }
        }
    }

    /// The keys of the ledgers this node trusts at least [`ROUTING_TRUST`] (pinned ones, and
    /// discovered ones a trust path reaches), for the DHT's bucket rule.
    fn routing_trusted(&self) -> Vec<NodeKey> {
        let (trust, now) = (&self.inner.trust, now_ms());
        let me = trust.me();
        let mut keys = self.inner.peers.pinned_keys();
        keys.extend(
            self.discovery().known().iter().map(|k| (k.record.ledger_id, k.record.public_key)),
        );
        keys.into_iter()
            .filter(|(id, _)| trust.level(me, id, now) >= ROUTING_TRUST)
            .map(|(_, k)| NodeKey(k))
            .collect()
    }

    /// Sends what the DHT wants sent; hands finished lookups to their waiters.
    fn pump(&self) {
        let d = self.discovery();
        loop {
            let Some(t) = d.dht.lock().poll_transmit() else { break };
            let node = self.clone();
            tokio::spawn(async move {
                let response = node.dht_request(t.to, &t.request).await;
                let _ = node.discovery().results.send((t.id, response));
            });
        }
        loop {
            let Some(DhtEvent::LookupFinished(outcome)) = d.dht.lock().poll_event() else { break };
            for record in &outcome.records {
                d.offer(record.clone(), Source::Dht);
            }
            if let Some(tx) = d.waiters.lock().remove(&outcome.id) {
                let _ = tx.send(outcome);
            }
        }
    }

    /// Whether this node keeps to its links (`serve --links-only`).
    pub(crate) fn discovery_config_links_only(&self) -> bool {
        self.discovery().config.lock().links_only
    }

    /// The bootstrap nodes' keys.
    pub(crate) fn bootstrap_keys(&self) -> Vec<[u8; 32]> {
        self.discovery().config.lock().bootstrap.iter().map(|(_, k, _)| *k.as_bytes()).collect()
    }

    /// A connection for `alpn` to `contact`, reused when one is open.
    /// A connection for `alpn` (the DHT's or mesh messages') to `contact`, reused while it is
    /// open: a heartbeat or a lookup step is then one stream, not a handshake.
    async fn pooled(&self, contact: &Contact, alpn: &'static [u8]) -> Option<Connection> {
        let d = self.discovery();
        let pool = match alpn {
            ALPN_DHT => &d.pool,
            ALPN_SWIM => &d.swim_pool,
            _ => &d.mesh_pool,
        };
        if let Some(c) = pool.lock().get(&contact.peer).filter(|c| c.close_reason().is_none()) {
            return Some(c.clone());
        }
        let peer = contact.peer.peer()?;
        let conn = self.dial(contact.addr, peer, alpn, REQUEST_DEADLINE).await.ok()?;
        let mut pool = pool.lock();
        if pool.len() >= POOL {
            pool.retain(|_, c| c.close_reason().is_none());
            if pool.len() >= POOL
                && let Some(k) = pool.keys().next().copied()
            {
                pool.remove(&k);
            }
        }
        pool.insert(contact.peer, conn.clone());
        Some(conn)
    }

    async fn dht_request(&self, to: Contact, request: &DhtRequest) -> Option<DhtResponse> {
        let work = async {
            let conn = self.pooled(&to, ALPN_DHT).await?;
            let (mut send, mut recv) = conn.open_bi().await.ok()?;
            write_frame(&mut send, &request.encode()).await.ok()?;
            let _ = send.finish();
            let body = read_frame(&mut recv, MAX_DHT_MESSAGE as u32).await.ok()?;
            DhtResponse::decode(&body)
        };
        tokio::time::timeout(REQUEST_DEADLINE, work).await.ok().flatten()
    }

    /// A pooled mesh-message connection to `peer` at `addr`, dialled within `deadline` when
    /// none is open.
    pub(crate) async fn pooled_mesh(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        deadline: Duration,
    ) -> Option<Connection> {
        tokio::time::timeout(deadline, self.pooled(&Contact::new(peer, addr), ALPN_MESH))
            .await
            .ok()
            .flatten()
    }

    /// Sends one mesh message to `peer` at `addr` (its QUIC handshake must present `peer`) and
    /// returns the reply; `None` when there was none within the deadline (3 s).
    pub async fn send_mesh_message(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        message: &MeshMessage,
    ) -> Option<MeshReply> {
        self.send_mesh_bytes(peer, addr, &message.encode()).await
    }

    /// As [`Self::send_mesh_message`], for bytes that may not be a message at all (tests of
    /// what a node does with bad input).
    pub async fn send_mesh_bytes(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        bytes: &[u8],
    ) -> Option<MeshReply> {
        let work = async {
            let conn = self.pooled(&Contact::new(peer, addr), ALPN_MESH).await?;
            let (mut send, mut recv) = conn.open_bi().await.ok()?;
            write_frame(&mut send, bytes).await.ok()?;
            let _ = send.finish();
            let body = read_frame(&mut recv, MAX_REPLY_BYTES).await.ok()?;
            postcard::from_bytes(&body).ok()
        };
        tokio::time::timeout(REQUEST_DEADLINE, work).await.ok().flatten()
    }

    /// Sends `bytes` as one SWIM datagram to `peer` at `addr` (tests of what a node does with
    /// bad input); whether it was sent.
    pub async fn send_swim_bytes(&self, peer: PeerId, addr: SocketAddr, bytes: &[u8]) -> bool {
        let send = async {
            let conn = self.pooled(&Contact::new(peer, addr), ALPN_SWIM).await?;
            conn.send_datagram(bytes.to_vec().into()).ok()
        };
        tokio::time::timeout(REQUEST_DEADLINE, send).await.ok().flatten().is_some()
    }

    /// Sends one DHT request to `peer` at `addr` and returns the answer (`None`: none within
    /// the deadline, or not a DHT answer).
    pub async fn dht_call(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        request: &DhtRequest,
    ) -> Option<DhtResponse> {
        self.dht_request(Contact::new(peer, addr), request).await
    }

    fn message(&self, kind: MessageType, payload: Vec<u8>, to: Option<LedgerId>) -> MeshMessage {
        let identity = self.inner.ledger.identity();
        MeshMessage::new(
            self.inner.secret.signing_key(),
            (identity.ledger_id, identity.oid.as_str()),
            Destination { ledger_id: to, oid: None },
            kind,
            payload,
            1,
            now_ms(),
        )
    }

    /// Announces this node to each of `peers` and asks each for the records it knows. A peer
    /// named by ledger id (a bootstrap node) must answer with its own record of that id first.
    /// Returns how many peers answered with records.
    async fn exchange(
        &self,
        peers: &[(Option<LedgerId>, PeerId, SocketAddr)],
        source: Source,
    ) -> usize {
        let mut answered = 0;
        let d = self.discovery().clone();
        let own = d.own_record().encode();
        let query = postcard::to_stdvec(&DiscoverQuery {
            oid_prefix: None,
            limit: u16::try_from(MAX_DISCOVER_RECORDS).unwrap_or(64),
        })
        .unwrap_or_default();
        for (expected, peer, addr) in peers {
            let announce = self.message(MessageType::PeerAnnounce, own.clone(), None);
            if self.deliver(&announce, *expected, *peer, *addr).await.is_none() {
                tracing::debug!(peer = %peer.fmt_short(), %addr, "announce got no answer");
                continue;
            }
            if let Some(ledger) = expected {
                self.swim_join(*ledger, *peer, *addr);
            }
            let discover = self.message(MessageType::PeerDiscover, query.clone(), None);
            if let Some(MeshReply::Records(records)) =
                self.send_mesh_message(*peer, *addr, &discover).await
            {
                let first = records.first();
                if let Some(id) = expected
                    && first.is_none_or(|r| r.ledger_id != *id || r.public_key != *peer.as_bytes())
                {
                    tracing::warn!(%addr, expected = %id, source = source.as_str(), "the node at this address is not the ledger named for it; its records are ignored");
                    d.counters.records_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                answered += 1;
                for record in records.into_iter().take(MAX_DISCOVER_RECORDS) {
                    if record.public_key != *self.inner.secret.public().as_bytes() {
                        d.offer(record, source);
                    }
                }
            }
        }
        answered
    }

    /// Offers `records` from `source`; returns the peers that were new or changed (to announce
    /// this node to).
    fn take_records(
        &self,
        records: Vec<PeerRecord>,
        source: Source,
    ) -> Vec<(Option<LedgerId>, PeerId, SocketAddr)> {
        let d = self.discovery();
        let mut fresh = Vec::new();
        for record in records {
            let addr = record.endpoints.quic.as_deref().and_then(|a| a.parse().ok());
            let peer = record.peer();
            if matches!(d.offer(record, source), Offered::New | Offered::Updated)
                && let (Some(addr), Some(peer)) = (addr, peer)
            {
                fresh.push((None, peer, addr));
            }
        }
        fresh
    }

    /// Registers this node's record with the registry and takes the records it lists, every
    /// `every` (sooner when the registry asks for it), every 5 seconds after a failure.
    async fn use_registry(self, client: RegistryClient, every: Duration) {
        let d = self.discovery().clone();
        let fanout = d.config.lock().fanout;
        let mut failing = None::<bool>;
        loop {
            let (own, c) = (d.own_record(), client.clone());
            let answer = tokio::task::spawn_blocking(move || {
                (c.register(&own), c.list(None, DIRECTORY_PEERS))
            })
            .await;
            let Ok((registered, listed)) = answer else { return };
            let mut wait = every;
            match (&registered, failing) {
                (Ok(a), Some(true) | None) => {
                    tracing::info!(registry = client.url(), status = %a.status, "registered with the registry");
                    wait = every
                        .min(Duration::from_millis(a.refresh_within_ms / 3).max(DIRECTORY_RETRY));
                }
                (Ok(a), Some(false)) => {
                    wait = every
                        .min(Duration::from_millis(a.refresh_within_ms / 3).max(DIRECTORY_RETRY));
                }
                (Err(e), Some(false) | None) => {
                    tracing::warn!(error = %e, "cannot register with the registry; trying again every 5 s");
                }
                (Err(_), Some(true)) => {}
            }
            failing = Some(registered.is_err());
            match listed {
                Ok(records) => {
                    let mut fresh = self.take_records(records, Source::Registry);
                    fresh.truncate(fanout);
                    // Announce this node to a few of them, so they learn of it without waiting
                    // for the registry.
                    self.exchange(&fresh, Source::Gossip).await;
                }
                Err(e) => tracing::debug!(error = %e, "the registry did not list its records"),
            }
            tokio::time::sleep(if registered.is_ok() { wait } else { DIRECTORY_RETRY }).await;
        }
    }

    /// Resolves the DNS name and contacts each ledger found like a bootstrap node, every
    /// `every`, every 5 seconds while nothing is found.
    async fn use_dns(self, config: DnsConfig, every: Duration) {
        loop {
            let found = match dns::resolve(&config).await {
                Ok((targets, skipped)) => {
                    for why in skipped {
                        tracing::warn!(name = %config.name, "DNS target skipped: {why}");
                    }
                    let peers: Vec<_> =
                        targets.iter().map(|t| (Some(t.ledger), t.key, t.addr)).collect();
                    self.exchange(&peers, Source::Dns).await;
                    !peers.is_empty()
                }
                Err(e) => {
                    tracing::warn!("{e}; trying again in 5 s");
                    false
                }
            };
            tokio::time::sleep(if found { every } else { DIRECTORY_RETRY }).await;
        }
    }

    /// Sends a heartbeat to each member that is due one; records answers, misses and the
    /// status changes they cause (logged, and kept in the `connections` table).
    fn heartbeats(&self) {
        let d = self.discovery().clone();
        if d.leaving.load(Ordering::Relaxed) {
            return;
        }
        let (due, deadline) = {
            let interval = d.config.lock().membership.interval;
            let deadline = interval.clamp(Duration::from_secs(1), REQUEST_DEADLINE);
            (d.membership.lock().due(Instant::now()), deadline)
        };
        for (ledger, peer, addr) in due {
            let node = self.clone();
            tokio::spawn(async move {
                let beat = node.message(MessageType::Heartbeat, Vec::new(), Some(ledger));
                let started = Instant::now();
                let answer =
                    tokio::time::timeout(deadline, node.send_mesh_message(peer, addr, &beat)).await;
                let d = node.discovery();
                match answer {
                    Ok(Some(MeshReply::Ack)) => {
                        d.membership.lock().answered(&ledger, started.elapsed(), now_ms())
                    }
                    other => {
                        tracing::debug!(%ledger, after_ms = started.elapsed().as_millis() as u64, answered = other.is_ok(), "heartbeat missed");
                        d.membership.lock().missed(&ledger, now_ms());
                    }
                }
                node.record_changes();
            });
        }
        self.record_changes();
    }

    /// Sends `message` to `peer` at `addr` through the outbox: recorded in the `messages`
    /// table, tried now (this call waits for the answer, within 3 s) and, without one, again
    /// with backoff. `to_ledger` names the receiver in the record when the envelope does not.
    /// Returns the first attempt's answer.
    pub async fn deliver(
        &self,
        message: &MeshMessage,
        to_ledger: Option<LedgerId>,
        peer: PeerId,
        addr: SocketAddr,
    ) -> Option<MeshReply> {
        let d = self.discovery().clone();
        let bytes = message.encode();
        let out = Outgoing {
            message_id: message.id,
            message_type: message.kind.as_str().to_owned(),
            from_ledger_id: message.from.ledger_id,
            to_ledger_id: message.to.ledger_id.or(to_ledger),
            to_key: *peer.as_bytes(),
            to_addr: addr,
            message: bytes.clone(),
            ttl: message.ttl,
        };
        let kept = d.outbox.lock().enqueue(out, now_ms());
        if let Err(e) = kept {
            tracing::warn!(error = %e, "message sent without a record");
            return self.send_mesh_bytes(peer, addr, &bytes).await;
        }
        let attempt = d.outbox.lock().start(&message.id, now_ms());
        let reply = match attempt {
            Some(a) => self.send_mesh_bytes(peer, addr, &a.message).await,
            None => None,
        };
        d.outbox.lock().answered(&message.id, outcome_of(reply.as_ref()), now_ms());
        self.flush_outbox();
        d.outbox_wake.notify_one();
        reply
    }

    /// Tries the outbox's messages again when they are due.
    async fn drive_outbox(self) {
        let d = self.discovery().clone();
        loop {
            let attempts = d.outbox.lock().due(now_ms());
            self.flush_outbox();
            for a in attempts {
                let (node, d) = (self.clone(), d.clone());
                tokio::spawn(async move {
                    let reply = match PeerId::from_bytes(&a.to_key) {
                        Some(peer) => node.send_mesh_bytes(peer, a.to_addr, &a.message).await,
                        None => None,
                    };
                    d.outbox.lock().answered(&a.message_id, outcome_of(reply.as_ref()), now_ms());
                    node.flush_outbox();
                    d.outbox_wake.notify_one();
                });
            }
            let next = d.outbox.lock().poll_timeout();
            let wait = next.map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
            let sleep = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = d.outbox_wake.notified() => {}
                () = sleep => {}
            }
        }
    }

    /// Writes the outbox's changes to the `messages` table (on the blocking pool).
    fn flush_outbox(&self) {
        let writes: Vec<Write> = {
            let mut o = self.discovery().outbox.lock();
            std::iter::from_fn(|| o.poll_write()).collect()
        };
        if writes.is_empty() {
            return;
        }
        let ledger = self.inner.ledger.clone();
        tokio::task::spawn_blocking(move || {
            for w in writes {
                let done = match &w {
                    Write::Put(row) => {
                        ledger.aux_put(AuxTable::Messages, &row.message_id, &row.encode())
                    }
                    Write::Delete(id) => ledger.aux_delete(AuxTable::Messages, id),
                };
                if let Err(e) = done {
                    tracing::warn!(error = %e, "cannot record a message's delivery");
                }
            }
        });
    }

    /// The messages this node originated, newest first (the `messages` table).
    pub fn outbox(&self) -> Vec<OutboxRow> {
        self.discovery().outbox.lock().rows().into_iter().cloned().collect()
    }

    /// Runs SWIM's timers and acts on what it asks for. Ends when the node says goodbye.
    async fn drive_swim(self) {
        let d = self.discovery().clone();
        loop {
            self.pump_swim();
            if d.leaving.load(Ordering::Relaxed) {
                return;
            }
            let deadline = d.swim.lock().as_ref().and_then(Swim::poll_timeout);
            let sleep = async {
                match deadline {
                    Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = d.swim_wake.notified() => {}
                () = sleep => {
                    if let Some(swim) = d.swim.lock().as_mut() {
                        swim.handle_timeout(Instant::now());
                    }
                }
            }
        }
    }

    /// Sends SWIM's packets (one datagram each, on a pooled `onoal-swim/1` connection that
    /// must present the member's key), and fetches the signed record of each member SWIM
    /// reports up that this node has no record of.
    fn pump_swim(&self) {
        let d = self.discovery().clone();
        loop {
            let Some(event) = d.swim.lock().as_mut().and_then(Swim::poll_event) else { break };
            match event {
                SwimEvent::Transmit { to, data } => {
                    let Some(peer) = PeerId::from_bytes(&to.key) else { continue };
                    let node = self.clone();
                    tokio::spawn(async move {
                        let send = async {
                            let conn = node.pooled(&Contact::new(peer, to.addr), ALPN_SWIM).await?;
                            conn.send_datagram(data.into()).ok()
                        };
                        let _ = tokio::time::timeout(REQUEST_DEADLINE, send).await;
                    });
                }
                SwimEvent::Up(member) => {
                    tracing::debug!(ledger = %member.ledger_id, addr = %member.addr, "SWIM member up");
                    let known = d
                        .book
                        .lock()
                        .get(&member.ledger_id)
                        .is_some_and(|k| k.record.public_key == member.key);
                    let Some(peer) = PeerId::from_bytes(&member.key) else { continue };
                    // SWIM's word is a candidate: the record comes from the member itself, signed,
                    // over a connection that presents its key. A few fetches at once; a member
                    // skipped now is found by the next gossip round.
                    if !known && let Ok(permit) = d.swim_fetches.clone().try_acquire_owned() {
                        let node = self.clone();
                        tokio::spawn(async move {
                            let target = [(Some(member.ledger_id), peer, member.addr)];
                            node.exchange(&target, Source::Gossip).await;
                            drop(permit);
                        });
                    }
                }
                SwimEvent::Down(member) => {
                    d.counters.swim_down.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(ledger = %member.ledger_id, addr = %member.addr, "SWIM member down");
                }
            }
        }
    }

    /// Asks `ledger` (key `peer`, at `addr`) to let this node into its SWIM cluster, unless
    /// it is a member already.
    fn swim_join(&self, ledger: LedgerId, peer: PeerId, addr: SocketAddr) {
        let d = self.discovery();
        if let Some(swim) = d.swim.lock().as_mut() {
            if swim.members().any(|m| m.key == *peer.as_bytes()) {
                return;
            }
            let to = SwimId { ledger_id: ledger, key: *peer.as_bytes(), addr, bump: 0 };
            swim.join(to, Instant::now());
        }
        d.swim_wake.notify_one();
    }

    /// Logs status changes and writes each member's row to the `connections` table.
    fn record_changes(&self) {
        let d = self.discovery();
        let mut rows = Vec::new();
        {
            let mut m = d.membership.lock();
            while let Some(change) = m.poll_change() {
                tracing::info!(ledger = %change.ledger_id, status = change.status.as_str(), "member status");
                if let Some(c) = m.get(&change.ledger_id) {
                    rows.push(c.clone());
                }
            }
        }
        self.store_rows(rows);
    }

    /// Writes members' rows to the `connections` table (on the blocking pool).
    fn store_rows(&self, rows: Vec<MemberConnection>) {
        if rows.is_empty() {
            return;
        }
        let ledger = self.inner.ledger.clone();
        tokio::task::spawn_blocking(move || {
            for row in rows {
                let bytes = postcard::to_stdvec(&row).unwrap_or_default();
                if let Err(e) =
                    ledger.aux_put(AuxTable::Connections, row.ledger_id.as_bytes(), &bytes)
                {
                    tracing::warn!(error = %e, "cannot record a member's status");
                }
            }
        });
    }

    /// Tells every connected member that this node leaves (a signed `topology_update`), within
    /// two seconds in all. Called by [`Node::close`].
    pub(crate) async fn say_goodbye(&self) {
        let d = self.discovery().clone();
        // Nothing it sends after the goodbye may bring it back at its members: no more
        // heartbeats or gossip from here (what it signed before, a member ignores).
        d.leaving.store(true, Ordering::Relaxed);
        let members: Vec<_> = d
            .membership
            .lock()
            .connections()
            .into_iter()
            .filter(|c| c.status == Status::Connected)
            .filter_map(|c| Some((c.ledger_id, PeerId::from_bytes(&c.public_key)?, c.addr)))
            .collect();
        if let Some(swim) = d.swim.lock().as_mut() {
            swim.leave(Instant::now());
        }
        self.pump_swim();
        let payload = postcard::to_stdvec(&TopologyChange::Leaving).unwrap_or_default();
        let sends = members.into_iter().map(|(ledger, peer, addr)| {
            let message = self.message(MessageType::TopologyUpdate, payload.clone(), Some(ledger));
            async move { self.deliver(&message, Some(ledger), peer, addr).await }
        });
        let _ = tokio::time::timeout(GOODBYE_DEADLINE, futures_util::future::join_all(sends)).await;
    }

    /// Keeps in touch with `ledger` (`onoal peer connect`): finds its record (known, or looked
    /// up within `deadline`), makes it a member, and waits up to `deadline` for its first
    /// heartbeat answer. Undoes [`Self::disconnect_member`].
    ///
    /// # Errors
    /// [`MemberError`].
    pub async fn connect_member(
        &self,
        ledger: LedgerId,
        deadline: Duration,
    ) -> Result<MemberConnection, MemberError> {
        if ledger == self.inner.ledger.identity().ledger_id {
            return Err(MemberError::Itself(ledger));
        }
        let started = Instant::now();
        let known = self.discover_ledger(ledger, deadline).await;
        let record = &known.first().ok_or(MemberError::Unknown(ledger))?.record;
        let addr = record.endpoints.quic.as_deref().and_then(|a| a.parse::<SocketAddr>().ok());
        let (Some(addr), Some(peer)) = (addr, record.peer()) else {
            return Err(MemberError::NoAddress(ledger));
        };
        let d = self.discovery().clone();
        d.muted.lock().remove(&ledger);
        {
            let mut m = d.membership.lock();
            if !m.track(ledger, peer, addr, Instant::now(), now_ms()) {
                return Err(MemberError::Full(d.config.lock().membership.max_members));
            }
        }
        self.heartbeats();
        while started.elapsed() < deadline {
            let row = d.membership.lock().get(&ledger).cloned();
            match row {
                Some(r) if r.status == Status::Connected || r.error_count > 0 => return Ok(r),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        d.membership.lock().get(&ledger).cloned().ok_or(MemberError::Unknown(ledger))
    }

    /// Stops keeping in touch with `ledger` (`onoal peer disconnect`): no more heartbeats, and
    /// gossip does not bring it back until [`Self::connect_member`]. Its record stays known and
    /// a pin is untouched. Returns whether it was a member.
    pub fn disconnect_member(&self, ledger: LedgerId) -> bool {
        let d = self.discovery().clone();
        d.muted.lock().insert(ledger);
        let Some(mut row) = d.membership.lock().forget(&ledger) else { return false };
        row.status = Status::Disconnected;
        row.updated_ms = now_ms();
        self.store_rows(vec![row]);
        true
    }

    /// Members: the ledgers this node heartbeats, with the seed's mesh_connections columns.
    pub fn connections(&self) -> Vec<MemberConnection> {
        self.discovery().membership.lock().connections()
    }

    /// A few random known peers with a QUIC address (the fanout).
    /// Pinned peers with a QUIC address become DHT contacts: a mesh of pins alone (no
    /// bootstrap node, registry or DNS) still has a DHT to look ledgers and assets up in. An
    /// address that does not answer is dropped by the DHT as any silent contact is.
    async fn add_pinned_contacts(self) {
        let peers = self.inner.peers.clone();
        let Ok(Ok(pinned)) = self.blocking(move || peers.list()).await else { return };
        let contacts: Vec<Contact> = pinned
            .iter()
            .filter_map(|p| {
                let addr = p.addresses.iter().find_map(|a| a.parse::<SocketAddr>().ok())?;
                Some(Contact::new(p.peer_id()?, addr))
            })
            .collect();
        if contacts.is_empty() {
            return;
        }
        let d = self.discovery();
        {
            let mut dht = d.dht.lock();
            let me = dht.local().peer;
            for c in contacts.into_iter().filter(|c| c.peer != me) {
                dht.add_contact(c, Instant::now());
            }
        }
        d.wake.notify_one();
    }

    fn gossip_targets(&self) -> Vec<(Option<LedgerId>, PeerId, SocketAddr)> {
        let d = self.discovery();
        let fanout = d.config.lock().fanout;
        let mut all: Vec<(Option<LedgerId>, PeerId, SocketAddr)> = d
            .book
            .lock()
            .iter()
            .filter_map(|k| {
                let addr = k.record.endpoints.quic.as_deref()?.parse().ok()?;
                Some((None, k.record.peer()?, addr))
            })
            .collect();
        if self.discovery_config_links_only() {
            all.retain(|(_, p, _)| self.is_link(p.as_bytes()));
        }
        // A cheap shuffle: the order of a random key's distances.
        let salt = uuid::Uuid::new_v4();
        all.sort_by_key(|(_, p, _)| onoal_engine::hash::sha256(&[salt.as_bytes(), p.as_bytes()]));
        all.truncate(fanout);
        all
    }

    /// Announces `assets` (registered assets this ledger holds; at most
    /// [`crate::proto::record::MAX_ASSETS`], the first ones kept) in a new record: signed at
    /// once, published in the DHT under each asset too, and registered with the registry.
    pub(crate) fn announce_assets(&self, mut assets: Vec<String>) {
        let d = self.discovery().clone();
        assets.truncate(crate::proto::record::MAX_ASSETS);
        *d.assets.lock() = assets.clone();
        let record = {
            let c = d.config.lock();
            let addr = d.dht.lock().local().addr;
            // A newer sequence than the record it replaces, even within one millisecond.
            let now = now_ms().max(d.own.lock().sequence + 1);
            sign_record(&self.inner.secret, &self.inner.ledger, addr, &c, &assets, now)
        };
        *d.own.lock() = record.clone();
        d.dht.lock().publish(record.clone(), Instant::now());
        d.wake.notify_one();
        tracing::info!(assets = ?assets, "announced the registered assets this ledger holds");
        let client = d.config.lock().registry.clone();
        if let Some(client) = client {
            tokio::task::spawn_blocking(move || {
                if let Err(e) = client.register(&record) {
                    tracing::debug!(error = %e, "cannot register the new record; the next refresh will");
                }
            });
        }
    }

    /// Ledgers whose records claim the registered asset `asset`: those in the record book, in
    /// the DHT (within `deadline`) and in the registry. Claims only; `Node::asset_trace`
    /// proves them.
    pub async fn discover_asset(&self, asset: &str, deadline: Duration) -> Vec<Known> {
        let d = self.discovery().clone();
        let wanted = asset.to_owned();
        let (found, listed) = self
            .lookup_with_registry(
                |dht| dht.find_asset(asset, Instant::now()),
                move |client| client.by_asset(&wanted, DIRECTORY_PEERS),
                deadline,
            )
            .await;
        // The DHT's records were offered to the book as they came (source `dht`).
        self.take_records(listed.clone(), Source::Registry);
        let mut claims: Vec<PeerRecord> = listed;
        if let Some(outcome) = found {
            claims.extend(outcome.records);
        }
        let book = d.book.lock();
        let mut out: Vec<Known> =
            book.iter().filter(|k| k.record.assets.iter().any(|a| a == asset)).cloned().collect();
        // A record of a claim newer or older than the book's is still a claim (the walk from
        // it proves or refutes it): keep the ledgers the book no longer lists for the asset.
        for r in claims {
            let now = now_ms();
            if r.assets.iter().any(|a| a == asset)
                && r.check(now).is_ok()
                && !out.iter().any(|k| k.record.ledger_id == r.ledger_id)
            {
                out.push(Known { record: r, source: Source::Dht });
            }
        }
        out.sort_by_key(|k| k.record.oid.clone());
        out
    }

    /// Looks a ledger up: the record book first, then the DHT (within `deadline`).
    ///
    /// # Errors
    /// When the lookup cannot be started.
    pub async fn discover_ledger(&self, ledger: LedgerId, deadline: Duration) -> Vec<Known> {
        let d = self.discovery().clone();
        if let Some(k) = d.book.lock().get(&ledger).cloned() {
            return vec![k];
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut dht = d.dht.lock();
            let id = dht.find_ledger(ledger, Instant::now());
            d.waiters.lock().insert(id, tx);
        }
        d.wake.notify_one();
        let started = Instant::now();
        let _ = tokio::time::timeout(deadline, rx).await;
        if let Some(k) = d.book.lock().get(&ledger).cloned() {
            return vec![k];
        }
        let client = d.config.lock().registry.clone();
        if let Some(client) = client {
            let ask = tokio::task::spawn_blocking(move || client.lookup(ledger));
            let left = deadline.saturating_sub(started.elapsed()).max(Duration::from_millis(500));
            if let Ok(Ok(Ok(Some(record)))) = tokio::time::timeout(left, ask).await {
                self.take_records(vec![record], Source::Registry);
            }
        }
        d.book.lock().get(&ledger).cloned().into_iter().collect()
    }

    /// Ledgers under an OID prefix: those in the record book and those the DHT finds.
    pub async fn discover_oid(&self, prefix: &Oid, deadline: Duration) -> Vec<Known> {
        let d = self.discovery().clone();
        let p = prefix.clone();
        let (_, listed) = self
            .lookup_with_registry(
                |dht| dht.find_oid(prefix, Instant::now()),
                move |client| client.list(Some(&p), DIRECTORY_PEERS),
                deadline,
            )
            .await;
        self.take_records(listed, Source::Registry);
        let book = d.book.lock();
        let mut found: Vec<Known> = book.by_oid_prefix(prefix).cloned().collect();
        found.sort_by_key(|k| k.record.oid.clone());
        found
    }

    /// Starts a DHT lookup (`start`) and asks the registry, when one is configured (`ask`, on a
    /// blocking thread), at once; waits for both at most `deadline`. The lookup's outcome, if
    /// it finished, and the registry's records (unchecked: the caller offers them to the book).
    async fn lookup_with_registry(
        &self,
        start: impl FnOnce(&mut Dht) -> LookupId,
        ask: impl FnOnce(RegistryClient) -> Result<Vec<PeerRecord>, RegistryCallError> + Send + 'static,
        deadline: Duration,
    ) -> (Option<LookupOutcome>, Vec<PeerRecord>) {
        let d = self.discovery().clone();
        let (tx, rx) = oneshot::channel();
        {
            let mut dht = d.dht.lock();
            let id = start(&mut dht);
            d.waiters.lock().insert(id, tx);
        }
        d.wake.notify_one();
        let client = d.config.lock().registry.clone();
        let registry = async {
            let Some(client) = client else { return Vec::new() };
            let asked = tokio::task::spawn_blocking(move || ask(client));
            match tokio::time::timeout(deadline, asked).await {
                Ok(Ok(Ok(records))) => records,
                _ => Vec::new(),
            }
        };
        let (found, listed) = tokio::join!(tokio::time::timeout(deadline, rx), registry);
        (found.ok().and_then(Result::ok), listed)
    }

    /// Records known to this node (every source), its own record, and the DHT's counters.
    pub fn discovery_status(&self) -> DiscoveryStatus {
        let d = self.discovery();
        let dht = d.dht.lock();
        DiscoveryStatus {
            own: d.own_record(),
            known: d.known(),
            dht_nodes: dht.table().len(),
            dht_records_held: dht.store().len(),
            dht: dht.stats().clone(),
            dht_served: d.counters.dht_served.load(Ordering::Relaxed),
            messages_accepted: d.counters.messages_accepted.load(Ordering::Relaxed),
            messages_dropped: d.counters.messages_dropped.load(Ordering::Relaxed),
            records_refused: d.counters.records_refused.load(Ordering::Relaxed),
            swim_members: d
                .swim
                .lock()
                .as_ref()
                .map(|s| s.members().cloned().collect())
                .unwrap_or_default(),
            swim_refused: d.counters.swim_refused.load(Ordering::Relaxed),
            swim_down: d.counters.swim_down.load(Ordering::Relaxed),
            dropped_by_peer: d
                .inbox
                .lock()
                .all_counts()
                .filter(|(_, c)| !c.by_reason.is_empty())
                .map(|(p, c)| (p.to_hex(), c.by_reason.clone()))
                .collect(),
        }
    }
}

/// What [`Node::discovery_status`] reports.
#[derive(Clone, Debug)]
pub struct DiscoveryStatus {
    /// This node's record.
    pub own: PeerRecord,
    /// Records known, with their sources.
    pub known: Vec<Known>,
    /// Nodes in the DHT routing table.
    pub dht_nodes: usize,
    /// Records held for others.
    pub dht_records_held: usize,
    /// DHT counters.
    pub dht: crate::dht::DhtStats,
    /// DHT requests answered.
    pub dht_served: u64,
    /// Mesh messages accepted.
    pub messages_accepted: u64,
    /// Mesh messages dropped.
    pub messages_dropped: u64,
    /// Records refused (invalid, or a key conflict).
    pub records_refused: u64,
    /// SWIM's live members.
    pub swim_members: Vec<SwimId>,
    /// SWIM packets refused (not SWIM, another key than the connection's, full).
    pub swim_refused: u64,
    /// Members SWIM declared down.
    pub swim_down: u64,
    /// Dropped messages per delivering peer and reason.
    pub dropped_by_peer:
        std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, u64>>,
}

/// Serves DHT requests.
pub(crate) struct DhtHandler(pub(crate) Arc<Inner>);

/// Serves mesh messages.
pub(crate) struct MeshHandler(pub(crate) Arc<Inner>);

/// Takes SWIM's datagrams.
pub(crate) struct SwimHandler(pub(crate) Arc<Inner>);

impl ProtocolHandler for SwimHandler {
    fn handle(self: Arc<Self>, conn: Connection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let inner = self.0.clone();
        Box::pin(async move {
            let Some(peer) = tls::peer_key(&conn).map(PeerId::new) else {
                return conn.close(quinn::VarInt::from_u32(1), b"no usable key");
            };
            let key = *peer.as_bytes();
            let Ok(_permit) = inner.discovery.served.clone().try_acquire_owned() else {
                return conn.close(quinn::VarInt::from_u32(3), b"too many connections");
            };
            let d = &inner.discovery;
            while let Ok(datagram) = conn.read_datagram().await {
                let refused = match d.swim.lock().as_mut() {
                    Some(swim) => swim.handle_data(&key, &datagram, Instant::now()).err(),
                    None => None,
                };
                if let Some(why) = refused {
                    d.counters.swim_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %peer.fmt_short(), reason = %why, "SWIM packet refused");
                }
                d.swim_wake.notify_one();
            }
        })
    }
}

async fn serve_streams<F, Fut>(inner: Arc<Inner>, conn: Connection, max: u32, answer: F)
where
    F: Fn(Arc<Inner>, PeerId, SocketAddr, Vec<u8>) -> Fut + Send + Sync + 'static + Clone,
    Fut: Future<Output = Vec<u8>> + Send + 'static,
{
    let Some(peer) = tls::peer_key(&conn).map(PeerId::new) else {
        return conn.close(quinn::VarInt::from_u32(1), b"no usable key");
    };
    let Ok(_permit) = inner.discovery.served.clone().try_acquire_owned() else {
        return conn.close(quinn::VarInt::from_u32(3), b"too many connections");
    };
    let remote = conn.remote_address();
    loop {
        let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
        let (inner, answer) = (inner.clone(), answer.clone());
        tokio::spawn(async move {
            let body = match tokio::time::timeout(READ_DEADLINE, read_frame(&mut recv, max)).await {
                Ok(Ok(body)) => body,
                Ok(Err(SessionError::Misbehaved(_))) => {
                    // Announced more than the cap: dropped before anything was allocated.
                    inner.discovery.inbox.lock().count(peer, Rejected::Oversize);
                    inner.discovery.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
                    let _ = send.reset(quinn::VarInt::from_u32(1));
                    return;
                }
                _ => {
                    let _ = send.reset(quinn::VarInt::from_u32(1));
                    return;
                }
            };
            let reply = answer(inner, peer, remote, body).await;
            // A client that does not read its answer costs the deadline, not the task forever.
            match tokio::time::timeout(READ_DEADLINE, write_frame(&mut send, &reply)).await {
                Ok(Ok(())) => {
                    let _ = send.finish();
                }
                _ => {
                    let _ = send.reset(quinn::VarInt::from_u32(2));
                }
            }
        });
    }
}

impl ProtocolHandler for DhtHandler {
    fn handle(self: Arc<Self>, conn: Connection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let inner = self.0.clone();
        Box::pin(serve_streams(
            inner,
            conn,
            MAX_DHT_MESSAGE as u32,
            |inner, peer, remote, body| async move {
                let d = &inner.discovery;
                let response = match DhtRequest::decode(&body) {
                    Some(request) => {
                        d.counters.dht_served.fetch_add(1, Ordering::Relaxed);
                        let from = Contact::new(peer, remote);
                        let r = d.dht.lock().handle_request(from, request, Instant::now());
                        d.wake.notify_one();
                        r
                    }
                    None => DhtResponse::Refused(crate::dht::StoreRefusal::Invalid),
                };
                response.encode()
            },
        ))
    }
}

impl ProtocolHandler for MeshHandler {
    fn handle(self: Arc<Self>, conn: Connection) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let inner = self.0.clone();
        let max = u32::try_from(MAX_MESSAGE_BYTES).unwrap_or(u32::MAX) + 1;
        Box::pin(serve_streams(inner, conn, max, |inner, peer, _remote, body| async move {
            let d = &inner.discovery;
            let accepted = d.inbox.lock().accept_delivered(peer, &body, now_ms());
            let message = match accepted {
                Ok(m) => m,
                Err(reason) => {
                    d.counters.messages_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %peer.fmt_short(), reason = reason.as_str(), "mesh message dropped");
                    return MeshReply::Dropped { reason: reason.as_str().into() }.encode();
                }
            };
            d.counters.messages_accepted.fetch_add(1, Ordering::Relaxed);
            if matches!(
                message.kind,
                MessageType::QueryRequest | MessageType::ReferenceCheck | MessageType::ProofVerify
            ) {
                return super::routed::handle(inner.clone(), peer, message).await.encode();
            }
            d.membership.lock().heard(&message.from.ledger_id, message.timestamp_ms, now_ms());
            answer_message(d, &message).encode()
        }))
    }
}

/// What an answer means for the message's delivery.
fn outcome_of(reply: Option<&MeshReply>) -> Outcome {
    match reply {
        None => Outcome::NoAnswer("no answer within 3 s".into()),
        // The first attempt arrived, its answer did not.
        Some(MeshReply::Dropped { reason }) if reason == "replay" => Outcome::Delivered,
        Some(MeshReply::Dropped { reason }) => Outcome::Refused(format!("dropped: {reason}")),
        Some(MeshReply::Invalid { reason }) => Outcome::Refused(format!("invalid: {reason}")),
        Some(MeshReply::NotSupported { kind }) => {
            Outcome::Refused(format!("the receiver does not support {kind}"))
        }
        Some(_) => Outcome::Delivered,
    }
}

/// What a node answers to an accepted message.
fn answer_message(d: &Discovery, message: &MeshMessage) -> MeshReply {
    match message.kind {
        MessageType::PeerAnnounce => {
            let Ok(record) = postcard::from_bytes::<PeerRecord>(&message.payload) else {
                return MeshReply::Invalid { reason: "peer_announce carries a peer record".into() };
            };
            if record.public_key != message.from.public_key
                || record.ledger_id != message.from.ledger_id
            {
                d.counters.records_refused.fetch_add(1, Ordering::Relaxed);
                return MeshReply::Invalid {
                    reason: "a peer announces its own record only".into(),
                };
            }
            match d.offer(record, Source::Gossip) {
                Offered::Invalid(e) => MeshReply::Invalid { reason: e.to_string() },
                _ => MeshReply::Ack,
            }
        }
        MessageType::PeerDiscover => {
            let query: DiscoverQuery = postcard::from_bytes(&message.payload).unwrap_or_default();
            let limit = usize::from(query.limit).clamp(1, MAX_DISCOVER_RECORDS);
            let prefix = query.oid_prefix.as_deref().and_then(|p| Oid::parse(p).ok());
            let mut records = vec![d.own_record()];
            let book = d.book.lock();
            let known: Vec<&Known> = match &prefix {
                Some(p) => book.by_oid_prefix(p).collect(),
                None => book.iter().collect(),
            };
            records.extend(
                known
                    .into_iter()
                    .filter(|k| k.record.public_key != message.from.public_key)
                    .map(|k| k.record.clone()),
            );
            records.truncate(limit);
            MeshReply::Records(records)
        }
        MessageType::Heartbeat => MeshReply::Ack,
        MessageType::TopologyUpdate => {
            match postcard::from_bytes::<TopologyChange>(&message.payload) {
                Ok(TopologyChange::Leaving) => {
                    d.membership.lock().left(
                        &message.from.ledger_id,
                        message.timestamp_ms,
                        now_ms(),
                    );
                    MeshReply::Ack
                }
                Err(_) => MeshReply::Invalid { reason: "unknown topology change".into() },
            }
        }
        other => MeshReply::NotSupported { kind: other.as_str().into() },
    }
}
