//! The quinn driver. A [`Node`] owns one QUIC endpoint: its [`router`] hands accepted
//! connections to the protocol handlers ([`server`] for sync), and its client side connects to
//! peers and drives sync sessions ([`sync_driver`]). It only moves bytes and time: every
//! protocol decision is in [`crate::proto`], every verification in the engine, every storage
//! write on a blocking thread.

mod asset;
mod config;
mod discovery;
pub mod dns;
mod error;
pub mod ref_verifier;
mod replica_task;
pub mod routed;
mod router;
pub mod routing;
mod server;
mod stream;
mod sync_driver;
mod sync_pump;
mod transfer;
mod witness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use quinn::{Connection, Endpoint};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use asset::{AssetView, ClaimView, HeldAsset, RegistrationView};
pub use config::NodeConfig;
pub use discovery::{DiscoveryConfig, DiscoveryStatus, MemberError};
pub use error::SyncError;
pub use sync_driver::{SyncMode, SyncProgress, SyncSummary};
pub use transfer::{PeerSide, StepView, TransferError, TransferView};
pub use witness::{
    CRASH_ENV, OwnWitnesses, WitnessAnswer, WitnessInfo, WitnessStatus, WitnessedView,
    drop_evidence,
};

use onoal_engine::identity::SecretKey;
use onoal_engine::replica::ReplicaError;
use onoal_engine::time::now_ms;
use onoal_engine::{Durable, Ledger, LedgerId, Log};

use crate::dht::ALPN_DHT;
use crate::id::PeerId;
use crate::peer::PeerStore;
use crate::proto::envelope::ALPN_MESH;
use crate::proto::serve::ServeCore;
use crate::proto::sync::SessionError;
use crate::proto::{ALPN_SYNC, LedgerCertificate, PeerMisbehaved, Request, handshake};
use crate::swim::ALPN_SWIM;
use crate::tls;

/// How long a ledger certificate this node issues is valid.
const CERTIFICATE_VALIDITY_MS: u64 = 24 * 3600 * 1000;

pub(crate) struct Inner {
    ledger: Arc<Ledger>,
    peers: PeerStore,
    trust: Arc<crate::trust::store::TrustStore>,
    secret: SecretKey,
    endpoint: Endpoint,
    core: ServeCore,
    config: NodeConfig,
    /// One watch per served log, fed by the log's writer after every durable write.
    watches: Mutex<HashMap<LedgerId, Arc<watch::Sender<Durable>>>>,
    /// Connection and long-poll caps of the serving side.
    limits: server::Limits,
    /// Peer records, the DHT, the mesh-message inbox.
    discovery: Arc<discovery::Discovery>,
    /// `findPath`'s strategies and limits.
    routing: Mutex<crate::routing::RoutingConfig>,
    /// The forwarding core: seen-cache, TTL and loop rules of routed messages.
    forwarder: Mutex<crate::routing::forward::Forwarder>,
    /// What happened to routed messages here.
    routed: routed::Counters,
    /// The witness side, once enabled.
    witness: std::sync::OnceLock<Arc<witness::WitnessService>>,
    /// The own log's witnesses, once started.
    log_witnessing: std::sync::OnceLock<Arc<witness::LogWitnessing>>,
    /// Cosignatures required of the checkpoints this node accepts.
    witness_policy: witness::PolicyLock,
    /// The transfer side, once started.
    transfers: std::sync::OnceLock<Arc<transfer::TransferDesk>>,
}

impl Inner {
    /// A receiver of `log`'s durable changes (the first call subscribes to the writer).
    pub(crate) fn watch(&self, log: &Log) -> watch::Receiver<Durable> {
        let mut watches = self.watches.lock();
        let id = log.identity().ledger_id;
        if let Some(tx) = watches.get(&id) {
            return tx.subscribe();
        }
        let initial = Durable { size: log.durable_size(), checkpoint_size: None };
        let tx = Arc::new(watch::Sender::new(initial));
        let feed = tx.clone();
        // Unsubscribes once the node is gone (it holds the other reference).
        log.on_durable(move |d| {
            feed.send_replace(d);
            Arc::strong_count(&feed) > 1
        });
        let rx = tx.subscribe();
        watches.insert(id, tx);
        rx
    }
}

/// A ledger on the network: serves its own log and replicas to pinned peers, syncs replicas.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.inner.endpoint.local_addr().ok()).finish()
    }
}

fn connect_err(addr: SocketAddr) -> impl Fn(String) -> SyncError {
    move |reason| SyncError::Connect { addr, reason }
}

impl Node {
    /// Binds a QUIC endpoint at `addr` for `ledger`, whose key is `secret`. Call inside a tokio
    /// runtime; call [`Self::serve`] to answer peers.
    ///
    /// # Errors
    /// The key does not belong to the ledger, the peer table is damaged, the address cannot be
    /// bound.
    pub fn bind(
        ledger: Arc<Ledger>,
        secret: SecretKey,
        addr: SocketAddr,
        config: NodeConfig,
    ) -> Result<Self, SyncError> {
        if secret.public() != ledger.identity().public_key {
            return Err(SyncError::Local("the key does not belong to this ledger".into()));
        }
        let peers = PeerStore::open(ledger.clone()).map_err(|e| SyncError::Local(e.to_string()))?;
        let trust = crate::trust::store::TrustStore::open(
            ledger.clone(),
            peers.clone(),
            secret.signing_key().clone(),
        )
        .map_err(|e| SyncError::Local(e.to_string()))?;
        let server = tls::server_config(&secret, &[ALPN_SYNC, ALPN_DHT, ALPN_MESH, ALPN_SWIM])
            .map_err(|e| SyncError::Local(format!("TLS setup: {e}")))?;
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| SyncError::Local(format!("QUIC TLS setup: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(config::server_transport());
        let endpoint = Endpoint::server(server, addr)
            .map_err(|e| SyncError::Local(format!("cannot listen on {addr}: {e}")))?;
        let certificate = LedgerCertificate::issue(
            ledger.identity(),
            secret.signing_key(),
            now_ms(),
            CERTIFICATE_VALIDITY_MS,
        );
        let bound = endpoint.local_addr().unwrap_or(addr);
        let discovery = Arc::new(discovery::Discovery::new(&secret, &ledger, bound, peers.clone()));
        let (ledger_id, oid) = (ledger.identity().ledger_id, ledger.identity().oid.clone());
        let inner = Inner {
            discovery,
            ledger,
            peers,
            trust: Arc::new(trust),
            secret,
            endpoint,
            core: ServeCore::new(certificate),
            config,
            watches: Mutex::new(HashMap::new()),
            limits: server::Limits::default(),
            routing: Mutex::new(crate::routing::RoutingConfig::default()),
            forwarder: Mutex::new(crate::routing::forward::Forwarder::new(ledger_id, oid.as_str())),
            routed: routed::Counters::default(),
            witness: std::sync::OnceLock::new(),
            log_witnessing: std::sync::OnceLock::new(),
            witness_policy: witness::PolicyLock::default(),
            transfers: std::sync::OnceLock::new(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The bound address.
    ///
    /// # Errors
    /// When the socket is gone.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.inner.ledger
    }

    /// This node's trust decisions (direct levels, anchors) and what it derives from them.
    pub fn trust(&self) -> &crate::trust::store::TrustStore {
        &self.inner.trust
    }

    /// The peer table (pin peers through it while the node runs, so it serves them at once).
    pub fn peers(&self) -> &PeerStore {
        &self.inner.peers
    }

    /// A receiver of `log`'s durable changes (size and newest checkpoint), fed by its writer.
    pub fn durable_watch(&self, log: &Log) -> watch::Receiver<Durable> {
        self.inner.watch(log)
    }

    /// Peers connected to this node's server right now: (total, of which pinned keys).
    pub fn served_connections(&self) -> (usize, usize) {
        self.inner.limits.connections()
    }

    /// Accepts peers until [`Self::close`], with discovery's defaults (no bootstrap nodes: the
    /// node answers the DHT and mesh messages and publishes its record to whoever it meets).
    pub fn serve(&self) -> JoinHandle<()> {
        self.serve_with(DiscoveryConfig::default())
    }

    /// Accepts peers until [`Self::close`], and runs discovery with `discovery`.
    pub fn serve_with(&self, discovery: DiscoveryConfig) -> JoinHandle<()> {
        let router = router::Router::default()
            .accept(ALPN_SYNC, Arc::new(server::SyncHandler::new(self.inner.clone())))
            .accept(ALPN_DHT, Arc::new(discovery::DhtHandler(self.inner.clone())))
            .accept(ALPN_MESH, Arc::new(discovery::MeshHandler(self.inner.clone())))
            .accept(ALPN_SWIM, Arc::new(discovery::SwimHandler(self.inner.clone())));
        debug_assert_eq!(router.alpns(), [ALPN_SYNC, ALPN_DHT, ALPN_MESH, ALPN_SWIM]);
        self.start_discovery(discovery);
        tokio::spawn(Arc::new(router).run(self.inner.endpoint.clone()))
    }

    /// Says goodbye to the members it heartbeats (within 2 s), closes every connection and
    /// waits until peers were told.
    pub async fn close(&self) {
        self.say_goodbye().await;
        self.inner.endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
        self.inner.endpoint.wait_idle().await;
    }

    /// Connects to `addr`, requiring the server to present `expected`, and exchanges
    /// certificates; both within the request timeout.
    ///
    /// # Errors
    /// [`SyncError::KeyMismatch`], [`SyncError::Connect`], [`SyncError::TimedOut`], a bad
    /// certificate.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: PeerId,
    ) -> Result<Connection, SyncError> {
        let deadline = self.inner.config.request_timeout;
        let conn = self.dial(addr, expected, ALPN_SYNC, deadline).await?;
        // Hello: exchange and check certificates.
        let hello = Request::Hello { certificate: self.inner.core.certificate().clone() };
        let response = stream::request(&conn, &hello, self.inner.config.max_frame, deadline)
            .await
            .map_err(|e| self.session_error(&conn, e))?;
        let certificate = handshake::check_hello(response, &expected, now_ms())
            .map_err(|v| self.misbehaved(&conn, v))?;
        let (peers, address) = (self.inner.peers.clone(), addr.to_string());
        let capability = String::from_utf8_lossy(ALPN_SYNC).into_owned();
        self.blocking(move || peers.learn(&certificate, Some(address), &capability, now_ms()))
            .await?;
        Ok(conn)
    }

    /// A QUIC connection to `addr` for protocol `alpn`, requiring the server to present
    /// `expected`, within `deadline`.
    pub(crate) async fn dial(
        &self,
        addr: SocketAddr,
        expected: PeerId,
        alpn: &'static [u8],
        deadline: std::time::Duration,
    ) -> Result<Connection, SyncError> {
        if self.discovery_config_links_only() && !self.is_link(expected.as_bytes()) {
            return Err(connect_err(addr)(
                "this node keeps to its links (--links-only): pin the peer or name it with --seed to reach it".into(),
            ));
        }
        let (client, seen) = tls::client_config(&self.inner.secret, *expected.key(), &[alpn])
            .map_err(|e| SyncError::Local(format!("TLS setup: {e}")))?;
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| SyncError::Local(format!("QUIC TLS setup: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(config::client_transport(self.inner.config.window.get()));
        let mismatch = |seen: &tls::SeenKey| {
            seen.get().filter(|k| k != expected.key()).map(|found| SyncError::KeyMismatch {
                addr,
                expected: expected.to_hex(),
                found: hex::encode(found.as_bytes()),
            })
        };
        let connecting = self
            .inner
            .endpoint
            .connect_with(client, addr, "onoal")
            .map_err(|e| connect_err(addr)(e.to_string()))?;
        match tokio::time::timeout(deadline, connecting).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(mismatch(&seen).unwrap_or_else(|| connect_err(addr)(e.to_string()))),
            Err(_) => Err(connect_err(addr)(format!(
                "no QUIC handshake within {} s",
                deadline.as_secs_f64()
            ))),
        }
    }

    /// Runs storage work (fsynced writes, scans) off the async workers.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, SyncError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| SyncError::Local(format!("a storage task failed: {e}")))
    }

    /// Records `violation` against the connection's peer, closes the connection, and returns
    /// the error to report.
    fn misbehaved(&self, conn: &Connection, violation: PeerMisbehaved) -> SyncError {
        let key = tls::peer_key(conn).map(PeerId::new);
        if let Some(k) = key {
            let (peers, trust) = (self.inner.peers.clone(), self.inner.trust.clone());
            let v = violation.clone();
            // Best effort, off the async workers; the sync already failed. The pinned ledger
            // holding the key loses trust by the violation's penalty.
            tokio::task::spawn_blocking(move || {
                peers.report(&k, &v, now_ms());
                if let Some(id) = peers.ledger_of(&k)
                    && let Err(e) = trust.penalize(id, v.penalty(), v.kind(), now_ms())
                {
                    tracing::warn!(error = %e, "cannot record a penalty");
                }
            });
        }
        conn.close(quinn::VarInt::from_u32(1), violation.kind().as_bytes());
        SyncError::PeerMisbehaved {
            peer: key.map(|k| hex::encode(&k.as_bytes()[..8])).unwrap_or_default(),
            violation,
        }
    }

    /// A sync from the peer holding `key` verified: the pinned ledger holding it gains a
    /// little trust (best effort, off the async workers).
    pub(crate) fn verified_outcome(&self, key: &PeerId) {
        let (peers, trust, key) = (self.inner.peers.clone(), self.inner.trust.clone(), *key);
        tokio::task::spawn_blocking(move || {
            if let Some(id) = peers.ledger_of(&key)
                && let Err(e) = trust.succeeded(id, now_ms())
            {
                tracing::warn!(error = %e, "cannot record a verified outcome");
            }
        });
    }

    /// The error to report for a session's (or a request's) failure on `conn`; violations and
    /// timeouts are recorded against the peer.
    pub(crate) fn session_error(&self, conn: &Connection, e: SessionError) -> SyncError {
        let addr = conn.remote_address();
        match e {
            SessionError::Misbehaved(v) => self.misbehaved(conn, v),
            // The server cannot know our ledger id for its instructions; we do.
            SessionError::Refused(code, message) => SyncError::Refused {
                code,
                message: message
                    .replace("YOUR_LEDGER_ID", &self.inner.ledger.identity().ledger_id.to_string()),
            },
            SessionError::TimedOut { kind, after, .. } => {
                let v = PeerMisbehaved::Unresponsive {
                    request: kind,
                    after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                };
                let _ = self.misbehaved(conn, v);
                SyncError::TimedOut { addr, request: kind, after }
            }
            SessionError::Transport(reason) => SyncError::Connect { addr, reason },
            e @ SessionError::Uncosigned { .. } => SyncError::Uncosigned(e.to_string()),
            // Handled inside the session (narrower bundles); it never ends one.
            e @ (SessionError::TooLarge { .. } | SessionError::Deferred) => {
                SyncError::Local(e.to_string())
            }
            SessionError::Replica(e) => {
                // A fork is the origin's doing (its key signed both histories), not the relay's:
                // it is recorded against the origin ledger, whoever brought the evidence.
                if let ReplicaError::Fork { ledger_id, reason } = &e {
                    let (peers, id) = (self.inner.peers.clone(), *ledger_id);
                    let trust = self.inner.trust.clone();
                    let v = PeerMisbehaved::Fork(reason.clone());
                    tokio::task::spawn_blocking(move || {
                        peers.report_ledger(Some(id), &v, now_ms());
                        // A proven fork: the origin's trust drops to 0.
                        if let Err(e) = trust.penalize(id, v.penalty(), v.kind(), now_ms()) {
                            tracing::warn!(error = %e, "cannot record a penalty");
                        }
                    });
                }
                SyncError::Replica(e)
            }
            SessionError::Local(m) => SyncError::Local(m),
        }
    }
}
