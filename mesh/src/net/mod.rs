//! The quinn driver: a [`Node`] serves its own log and its replicas, and syncs replicas from
//! peers. It only moves frames; verification is `onoal_engine::replica`, the message rules are
//! [`crate::proto`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::task::JoinHandle;

use onoal_engine::identity::SecretKey;
use onoal_engine::replica::{
    self, Accepted, ReplicaError, ReplicaWriter, SyncStatus, VerifiedBundle,
};
use onoal_engine::{Identity, Ledger};

use crate::peer;
use crate::proto::session::{Event, RequestId, SessionError, SessionMode, SyncSession};
use crate::proto::{
    self, ALPN_SYNC, DEFAULT_MAX_FRAME, ErrorCode, LedgerCertificate, MAX_WAIT_MS, PeerMisbehaved,
    Request, Response,
};
use crate::tls;

mod server;
use server::serve_connection;

/// How long a ledger certificate this node issues is valid.
const CERTIFICATE_VALIDITY_MS: u64 = 24 * 3600 * 1000;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Why a sync (or connecting for one) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The ledger to sync has no pinned key here.
    #[error("ledger {0} is not pinned; pin its key first: onoal peer add {0}@HOST:PORT --key HEX")]
    NotPinned(uuid::Uuid),
    /// No address to reach the ledger.
    #[error("no address known for {0}; pass --from HOST:PORT or pin it with an address")]
    NoAddress(uuid::Uuid),
    /// No pinned peer listens at the given address.
    #[error(
        "no pinned peer at {0}; pin the node there first: onoal peer add LEDGER_ID@{0} --key HEX"
    )]
    UnknownSource(String),
    /// The server presented another key than the one pinned.
    #[error(
        "refused the connection to {addr}: it presented key {found}, but {expected} is pinned for it; if the peer's key really changed, pin the new one with onoal peer add"
    )]
    KeyMismatch {
        /// Address dialled.
        addr: SocketAddr,
        /// Pinned key (hex).
        expected: String,
        /// Presented key (hex).
        found: String,
    },
    /// The connection failed or dropped.
    #[error("connection to {addr} failed: {reason}; is `onoal serve` running there?")]
    Connect {
        /// Address dialled.
        addr: SocketAddr,
        /// Transport message.
        reason: String,
    },
    /// The peer broke the protocol or sent data that does not verify; nothing of it was
    /// written and the violation is recorded against the peer.
    #[error("peer {peer} {violation}")]
    PeerMisbehaved {
        /// Peer key (hex, short).
        peer: String,
        /// What it did.
        violation: PeerMisbehaved,
    },
    /// The peer refused the request.
    #[error("the peer refused: {message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The local replica refused (fork recorded, busy, storage).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Local storage or setup failed.
    #[error("{0}")]
    Local(String),
}

impl SyncError {
    /// True for errors worth retrying after reconnecting (follow mode): transport failures
    /// and a peer's internal errors.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Refused { code: ErrorCode::Internal, .. })
    }
}

fn connect_err(addr: SocketAddr) -> impl Fn(String) -> SyncError {
    move |reason| SyncError::Connect { addr, reason }
}

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

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Self::Full),
            "incremental" => Ok(Self::Incremental),
            "checkpoint" => Ok(Self::Checkpoint),
            _ => Err(format!("sync mode {s:?} is not one of: full, incremental, checkpoint")),
        }
    }
}

/// What one sync did.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSummary {
    /// The replicated ledger.
    pub ledger_id: uuid::Uuid,
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
    /// Entries held now.
    pub held: u64,
    /// Size of the checkpoint being synced to.
    pub target: u64,
}

/// Node settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Largest frame accepted from a peer. Defaults to 4 MiB.
    pub max_frame: u32,
    /// Bundle requests in flight per sync (256 entries each). Defaults to 32: fewer leave the
    /// pipe idle between round trips, more only add memory (measured in docs/performance.md).
    pub window: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { max_frame: DEFAULT_MAX_FRAME, window: 32 }
    }
}

pub(crate) struct Inner {
    ledger: Arc<Ledger>,
    secret: SecretKey,
    endpoint: Endpoint,
    certificate: LedgerCertificate,
    config: NodeConfig,
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

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // The seed's heartbeat: keep-alive well inside the idle timeout.
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000))));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(256));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t.stream_receive_window(quinn::VarInt::from_u32(8 << 20));
    t.receive_window(quinn::VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    Arc::new(t)
}

pub(crate) async fn read_frame(recv: &mut RecvStream, max: u32) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.map_err(|e| FrameError::Io(e.to_string()))?;
    let len = proto::frame_len(header, max).map_err(FrameError::Peer)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| FrameError::Io(e.to_string()))?;
    Ok(body)
}

pub(crate) async fn write_frame(send: &mut SendStream, body: &[u8]) -> Result<(), String> {
    let mut out = Vec::with_capacity(body.len() + 4);
    proto::encode_frame(body, &mut out);
    send.write_all(&out).await.map_err(|e| e.to_string())
}

pub(crate) enum FrameError {
    Io(String),
    Peer(PeerMisbehaved),
}

impl Node {
    /// Binds a QUIC endpoint at `addr` for `ledger`, whose key is `secret`. Call inside a tokio
    /// runtime; call [`Self::serve`] to answer peers.
    ///
    /// # Errors
    /// The key does not belong to the ledger, the address cannot be bound.
    pub fn bind(
        ledger: Arc<Ledger>,
        secret: SecretKey,
        addr: SocketAddr,
        config: NodeConfig,
    ) -> Result<Self, SyncError> {
        if secret.public() != ledger.identity().public_key {
            return Err(SyncError::Local("the key does not belong to this ledger".into()));
        }
        let server = tls::server_config(&secret, &[ALPN_SYNC])
            .map_err(|e| SyncError::Local(format!("TLS setup: {e}")))?;
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server)
            .map_err(|e| SyncError::Local(format!("QUIC TLS setup: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
        server.transport_config(transport());
        let endpoint = Endpoint::server(server, addr)
            .map_err(|e| SyncError::Local(format!("cannot listen on {addr}: {e}")))?;
        let certificate = LedgerCertificate::issue(
            ledger.identity(),
            secret.signing_key(),
            now_ms(),
            CERTIFICATE_VALIDITY_MS,
        );
        Ok(Self { inner: Arc::new(Inner { ledger, secret, endpoint, certificate, config }) })
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

    /// Accepts peers until [`Self::close`].
    pub fn serve(&self) -> JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            while let Some(incoming) = inner.endpoint.accept().await {
                let inner = inner.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(inner, incoming).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
        })
    }

    /// Closes every connection and waits until peers were told.
    pub async fn close(&self) {
        self.inner.endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
        self.inner.endpoint.wait_idle().await;
    }

    /// Connects to `addr`, requiring the server to present `expected`, and exchanges
    /// certificates.
    ///
    /// # Errors
    /// [`SyncError::KeyMismatch`], [`SyncError::Connect`], a bad certificate.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expected: VerifyingKey,
    ) -> Result<Connection, SyncError> {
        let (client, seen) = tls::client_config(&self.inner.secret, expected, &[ALPN_SYNC])
            .map_err(|e| SyncError::Local(format!("TLS setup: {e}")))?;
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client)
            .map_err(|e| SyncError::Local(format!("QUIC TLS setup: {e}")))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client));
        client.transport_config(transport());
        let mismatch = |seen: &tls::SeenKey| {
            seen.get().filter(|k| *k != expected).map(|found| SyncError::KeyMismatch {
                addr,
                expected: hex::encode(expected.as_bytes()),
                found: hex::encode(found.as_bytes()),
            })
        };
        let connecting = self
            .inner
            .endpoint
            .connect_with(client, addr, "onoal")
            .map_err(|e| connect_err(addr)(e.to_string()))?;
        let conn = match connecting.await {
            Ok(c) => c,
            Err(e) => {
                return Err(mismatch(&seen).unwrap_or_else(|| connect_err(addr)(e.to_string())));
            }
        };
        // Hello: exchange and check certificates.
        let hello = Request::Hello { certificate: self.inner.certificate.clone() };
        let response = self.request(&conn, &hello).await?;
        let Response::Hello { certificate } = response else {
            return Err(self.misbehaved(
                &conn,
                PeerMisbehaved::ProtocolViolation("answered Hello with another message".into()),
            ));
        };
        let identity = certificate.verify(now_ms()).map_err(|e| {
            self.misbehaved(&conn, PeerMisbehaved::ProtocolViolation(format!("certificate: {e}")))
        })?;
        if identity.public_key != expected {
            return Err(self.misbehaved(
                &conn,
                PeerMisbehaved::ProtocolViolation(
                    "its certificate names another key than its handshake".into(),
                ),
            ));
        }
        self.learn_certificate(&certificate, Some(addr.to_string()));
        Ok(conn)
    }

    fn learn_certificate(&self, certificate: &LedgerCertificate, address: Option<String>) {
        let ledger = &self.inner.ledger;
        if ledger.is_read_only() {
            return;
        }
        let id = uuid::Uuid::from_bytes(certificate.ledger_id);
        if let Ok(Some(mut record)) = peer::get(ledger, &id)
            && record.public_key == certificate.public_key
        {
            record.oid = Some(certificate.oid.clone());
            record.certificate = Some(certificate.clone());
            record.last_seen_ms = now_ms();
            record.capabilities = vec![String::from_utf8_lossy(ALPN_SYNC).into_owned()];
            if let Some(a) = address
                && !record.addresses.contains(&a)
            {
                record.addresses.push(a);
            }
            if let Err(e) = peer::put(ledger, &record) {
                tracing::warn!(error = %e, "could not store a peer's certificate");
            }
        }
    }

    fn misbehaved(&self, conn: &Connection, violation: PeerMisbehaved) -> SyncError {
        let key = tls::peer_key(conn);
        if let Some(k) = key {
            peer::report(&self.inner.ledger, k.as_bytes(), &violation, now_ms());
        }
        conn.close(quinn::VarInt::from_u32(1), violation.kind().as_bytes());
        SyncError::PeerMisbehaved {
            peer: key.map(|k| hex::encode(&k.as_bytes()[..8])).unwrap_or_default(),
            violation,
        }
    }

    /// One request on its own stream; a refusal, a transport failure or a violation becomes the
    /// matching [`SyncError`] (violations are recorded against the peer).
    async fn request(&self, conn: &Connection, request: &Request) -> Result<Response, SyncError> {
        let response = request_once(conn, request, self.inner.config.max_frame)
            .await
            .map_err(|f| self.session_error(conn, f.into_session()))?;
        if let Response::Error { code, message } = response {
            return Err(SyncError::Refused { code, message });
        }
        Ok(response)
    }

    /// Where to sync `ledger_id` from: `from`, or its pinned address; with the key to expect.
    fn source(
        &self,
        ledger_id: uuid::Uuid,
        from: Option<&str>,
    ) -> Result<(SocketAddr, VerifyingKey), SyncError> {
        let ledger = &self.inner.ledger;
        let (address, key) = match from {
            Some(a) => {
                let peers = peer::list(ledger).map_err(SyncError::Local)?;
                let p = peers
                    .iter()
                    .find(|p| p.addresses.iter().any(|x| x == a))
                    .ok_or_else(|| SyncError::UnknownSource(a.to_owned()))?;
                (a.to_owned(), p.public_key)
            }
            None => {
                let p = peer::get(ledger, &ledger_id)
                    .map_err(SyncError::Local)?
                    .ok_or(SyncError::NotPinned(ledger_id))?;
                let a = p.addresses.first().cloned().ok_or(SyncError::NoAddress(ledger_id))?;
                (a, p.public_key)
            }
        };
        let addr = resolve(&address)?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| SyncError::Local("a pinned key is not a valid Ed25519 key".into()))?;
        Ok((addr, key))
    }

    /// The identity to replicate `ledger_id` under: its pinned key and its OID (from the
    /// replica, the peer record, or a certificate the source serves, checked against the key).
    async fn identity_of(
        &self,
        conn: &Connection,
        ledger_id: uuid::Uuid,
    ) -> Result<Identity, SyncError> {
        let ledger = &self.inner.ledger;
        let record = peer::get(ledger, &ledger_id)
            .map_err(SyncError::Local)?
            .ok_or(SyncError::NotPinned(ledger_id))?;
        let key = VerifyingKey::from_bytes(&record.public_key)
            .map_err(|_| SyncError::Local("the pinned key is not a valid Ed25519 key".into()))?;
        if let Some(r) = ledger.replica(&ledger_id) {
            return Ok(r.identity().clone());
        }
        if let Some(oid) = record.oid.as_deref().and_then(|o| onoal_engine::Oid::parse(o).ok()) {
            return Ok(Identity { ledger_id, oid, public_key: key });
        }
        let response =
            self.request(conn, &Request::Certificate { ledger: *ledger_id.as_bytes() }).await?;
        let Response::Certificate { certificate } = response else {
            return Err(self.misbehaved(
                conn,
                PeerMisbehaved::ProtocolViolation(
                    "answered Certificate with another message".into(),
                ),
            ));
        };
        match certificate.verify(now_ms()) {
            Ok(identity) if identity.public_key == key && identity.ledger_id == ledger_id => {
                self.learn_certificate(&certificate, None);
                Ok(identity)
            }
            Ok(_) => Err(self.misbehaved(
                conn,
                PeerMisbehaved::ProtocolViolation(
                    "served a certificate of another key or ledger".into(),
                ),
            )),
            Err(e) => Err(self
                .misbehaved(conn, PeerMisbehaved::ProtocolViolation(format!("certificate: {e}")))),
        }
    }

    /// Syncs the replica of `ledger_id` once, from `from` (an address of a pinned peer) or from
    /// the ledger's pinned address.
    ///
    /// # Errors
    /// [`SyncError`]; on a peer's violation nothing of it is written and it is recorded.
    pub async fn sync(
        &self,
        ledger_id: uuid::Uuid,
        from: Option<&str>,
        mode: SyncMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        self.check_not_forked(ledger_id)?;
        let (addr, key) = self.source(ledger_id, from)?;
        let conn = self.connect(addr, key).await?;
        let result = self.sync_on(&conn, ledger_id, mode, progress).await;
        conn.close(quinn::VarInt::from_u32(0), b"done");
        result
    }

    fn check_not_forked(&self, ledger_id: uuid::Uuid) -> Result<(), SyncError> {
        let ledger = &self.inner.ledger;
        for record in [ledger.sync_record(&ledger_id)?, ledger.sparse_sync_record(&ledger_id)?] {
            if record.is_some_and(|r| r.status == SyncStatus::Forked) {
                return Err(ReplicaError::Forked(ledger_id).into());
            }
        }
        Ok(())
    }

    /// Filtered sync: the entries of `ledger_id` matching `filter`, each with its inclusion
    /// proof in a checkpoint signed by the ledger's pinned key, into a sparse replica. It proves
    /// that every entry received is in the log; it cannot prove that none were left out.
    ///
    /// # Errors
    /// As [`Self::sync`].
    pub async fn sync_filtered(
        &self,
        ledger_id: uuid::Uuid,
        from: Option<&str>,
        filter: &proto::EntryFilter,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        self.check_not_forked(ledger_id)?;
        let (addr, key) = self.source(ledger_id, from)?;
        let conn = self.connect(addr, key).await?;
        let result = self.filtered_on(&conn, ledger_id, filter, progress).await;
        conn.close(quinn::VarInt::from_u32(0), b"done");
        result
    }

    async fn filtered_on(
        &self,
        conn: &Connection,
        ledger_id: uuid::Uuid,
        filter: &proto::EntryFilter,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let started = Instant::now();
        let identity = self.identity_of(conn, ledger_id).await?;
        let mut writer = self.inner.ledger.sparse_writer(&identity)?;
        let from_size = writer.log().range(0, u64::MAX).map(|v| v.len() as u64).unwrap_or(0);
        let result = self.filtered_with(conn, &mut writer, filter, progress).await;
        let (entries, bytes) = match result {
            Ok(counts) => counts,
            Err(e) => {
                record_failure(&mut writer, &e);
                return Err(e);
            }
        };
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

    async fn filtered_with(
        &self,
        conn: &Connection,
        writer: &mut ReplicaWriter,
        filter: &proto::EntryFilter,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(u64, u64), SyncError> {
        let ledger = *writer.log().identity().ledger_id.as_bytes();
        let have = writer.checkpoint().map_or(0, |c| c.size);
        match self.request(conn, &Request::Checkpoint { ledger, have }).await? {
            Response::Checkpoint { note, consistency } => {
                self.accept(conn, writer, &note, &consistency, have).await?;
            }
            Response::NoCheckpoint => return Ok((0, 0)),
            _ => {
                return Err(self.misbehaved(
                    conn,
                    PeerMisbehaved::ProtocolViolation(
                        "answered Checkpoint with another message".into(),
                    ),
                ));
            }
        }
        let Some(size) = writer.checkpoint().map(|c| c.size) else { return Ok((0, 0)) };
        let query = filter.to_query(0, 1);
        let (mut cursor, mut new, mut bytes, mut seen) = (0u64, 0u64, 0u64, 0u64);
        loop {
            let request =
                Request::Entries { ledger, size, filter: filter.clone(), cursor, limit: 1000 };
            let Response::Entries { entries, next_cursor: next } =
                self.request(conn, &request).await?
            else {
                return Err(self.misbehaved(
                    conn,
                    PeerMisbehaved::ProtocolViolation(
                        "answered Entries with another message".into(),
                    ),
                ));
            };
            // Every entry must match the filter, lie at or after the cursor, in seq order.
            let mut last = None;
            for e in &entries {
                let ok = onoal_engine::Entry::decode(&e.leaf_data).ok().filter(|d| {
                    onoal_engine::ledger::query_matches(&query, d)
                        && d.seq >= cursor
                        && d.seq < size
                        && last.is_none_or(|l| d.seq > l)
                });
                let Some(d) = ok else {
                    return Err(self.misbehaved(
                        conn,
                        PeerMisbehaved::ProtocolViolation(
                            "sent an entry outside the filter, the cursor or the tree".into(),
                        ),
                    ));
                };
                last = Some(d.seq);
                bytes += e.leaf_data.len() as u64;
            }
            seen += entries.len() as u64;
            let proven = entries
                .into_iter()
                .map(|e| replica::ProvenEntry { leaf_data: e.leaf_data, proof: e.proof })
                .collect();
            match writer.commit_proven(proven) {
                Ok(n) => new += n,
                Err(ReplicaError::Bundle(e)) => {
                    return Err(self.misbehaved(conn, PeerMisbehaved::BadBundle(e.to_string())));
                }
                Err(e) => return Err(e.into()),
            }
            progress(SyncProgress { held: seen, target: size });
            match next {
                None => break,
                Some(n) if last.is_none_or(|l| n > l) && n > cursor => cursor = n,
                Some(_) => {
                    return Err(self.misbehaved(
                        conn,
                        PeerMisbehaved::ProtocolViolation(
                            "a filtered page's next cursor does not advance".into(),
                        ),
                    ));
                }
            }
        }
        Ok((new, bytes))
    }

    /// Keeps the replica of `ledger_id` in step: syncs, then waits for newer checkpoints
    /// (the source answers as soon as one exists) and syncs again; reconnects after transport
    /// failures. Returns only on a non-transient error.
    ///
    /// # Errors
    /// Misbehaviour, a fork, local failures.
    pub async fn follow(
        &self,
        ledger_id: uuid::Uuid,
        from: Option<&str>,
        on_sync: &(dyn Fn(&SyncSummary) + Send + Sync),
    ) -> Result<(), SyncError> {
        self.check_not_forked(ledger_id)?;
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt: Result<(), SyncError> = async {
                let (addr, key) = self.source(ledger_id, from)?;
                let conn = self.connect(addr, key).await?;
                backoff = Duration::from_millis(100);
                loop {
                    let summary =
                        self.sync_on(&conn, ledger_id, SyncMode::Incremental, &|_| {}).await?;
                    on_sync(&summary);
                    let have = summary.checkpoint_size;
                    loop {
                        let wait = Request::WaitCheckpoint {
                            ledger: *ledger_id.as_bytes(),
                            have,
                            wait_ms: MAX_WAIT_MS,
                        };
                        match self.request(&conn, &wait).await? {
                            Response::Checkpoint { .. } => break,
                            Response::NoCheckpoint => continue,
                            _ => {
                                return Err(self.misbehaved(
                                    &conn,
                                    PeerMisbehaved::ProtocolViolation(
                                        "answered WaitCheckpoint with another message".into(),
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
            .await;
            match attempt {
                Err(e) if e.is_transient() => {
                    tracing::info!(error = %e, "follow: reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    async fn sync_on(
        &self,
        conn: &Connection,
        ledger_id: uuid::Uuid,
        mode: SyncMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<SyncSummary, SyncError> {
        let started = Instant::now();
        let identity = self.identity_of(conn, ledger_id).await?;
        let ledger = self.inner.ledger.clone();
        if mode == SyncMode::Full
            && ledger.sync_record(&ledger_id)?.is_some_and(|r| r.status != SyncStatus::Forked)
        {
            ledger.drop_replica(&ledger_id)?;
        }
        let writer = ledger.replica_writer(&identity)?;
        let from_size = writer.held();
        let mut slot = Some(writer);
        let result = self.sync_with(conn, &mut slot, mode, progress).await;
        let Some(mut writer) = slot else {
            return Err(SyncError::Local("the replica writer was lost in a failed commit".into()));
        };
        let (entries, bytes) = match result {
            Ok(counts) => counts,
            Err(e) => {
                record_failure(&mut writer, &e);
                return Err(e);
            }
        };
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

    /// Drives a [`SyncSession`]: checkpoint, then bundles; returns (entries, bytes) received.
    async fn sync_with(
        &self,
        conn: &Connection,
        slot: &mut Option<ReplicaWriter>,
        mode: SyncMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(u64, u64), SyncError> {
        let Some(writer) = slot.take() else {
            return Err(SyncError::Local("no replica writer".into()));
        };
        let mut driver = Driver { writer: Some(writer), commits: VecDeque::new(), running: None };
        let result = self.drive(conn, &mut driver, mode, progress).await;
        // A commit in flight always finishes (it cannot be cancelled): wait for the writer.
        if let Some(task) = driver.running.take()
            && let Ok((w, _, _, _)) = task.await
        {
            driver.writer = Some(w);
        }
        *slot = driver.writer.take();
        result
    }

    async fn drive(
        &self,
        conn: &Connection,
        driver: &mut Driver,
        mode: SyncMode,
        progress: &(dyn Fn(SyncProgress) + Send + Sync),
    ) -> Result<(u64, u64), SyncError> {
        let Some(w) = driver.writer.as_mut() else {
            return Err(SyncError::Local("no replica writer".into()));
        };
        let ledger = *w.log().identity().ledger_id.as_bytes();
        let have = w.checkpoint().map_or(0, |c| c.size);
        let session_mode = match mode {
            SyncMode::Checkpoint => SessionMode::CheckpointOnly,
            SyncMode::Full | SyncMode::Incremental => SessionMode::Entries,
        };
        let mut session: SyncSession<VerifiedBundle> = SyncSession::new(
            ledger,
            w.held(),
            have,
            session_mode,
            self.inner.config.window,
            Instant::now(),
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(RequestId, Arrival)>();
        let mut target: Option<Arc<onoal_engine::checkpoint::Checkpoint>> = None;
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        let (mut entries, mut bytes) = (0u64, 0u64);
        let outcome: Result<(), SyncError> = 'session: loop {
            // Handling an event can queue requests (and the reverse), so go round until both
            // queues are empty before waiting.
            let mut pending_events = true;
            while pending_events {
                pending_events = false;
                while let Some((id, request)) = session.poll_transmit() {
                    let conn = conn.clone();
                    let tx = tx.clone();
                    let max = self.inner.config.max_frame;
                    tasks.retain(|t| !t.is_finished());
                    match (request, &target) {
                        (Request::Bundle { first, .. }, Some(cp)) => {
                            let cp = cp.clone();
                            tasks.push(tokio::spawn(async move {
                                let r = fetch_bundle(conn, ledger, cp, first, max).await;
                                let _ = tx.send((id, Arrival::Bundle(r)));
                            }));
                        }
                        (request, _) => {
                            tasks.push(tokio::spawn(async move {
                                let r = request_once(&conn, &request, max).await;
                                let _ = tx.send((id, Arrival::Response(r)));
                            }));
                        }
                    }
                }
                while let Some(event) = session.poll_event() {
                    match event {
                        Event::AcceptCheckpoint { note, consistency } => {
                            let Some(w) = driver.writer.as_mut() else {
                                break 'session Err(SyncError::Local("no replica writer".into()));
                            };
                            if let Err(e) = self.accept(conn, w, &note, &consistency, have).await {
                                break 'session Err(e);
                            }
                            if session_mode == SessionMode::CheckpointOnly {
                                w.set_status(SyncStatus::CheckpointOnly, None)?;
                            }
                            let size = w.checkpoint().map_or(0, |c| c.size);
                            target = w.checkpoint().map(|c| Arc::new(c.checkpoint.clone()));
                            session.checkpoint_accepted(Instant::now(), Ok(size));
                        }
                        Event::NothingToSync | Event::Done => {
                            if let Some(w) = driver.writer.as_mut()
                                && session_mode == SessionMode::Entries
                                && w.checkpoint().is_some_and(|c| c.size == w.held())
                            {
                                w.set_status(SyncStatus::Complete, None)?;
                            }
                            break 'session Ok(());
                        }
                        Event::Commit(bundles) => driver.commits.push_back(bundles),
                        Event::Failed(e) => break 'session Err(self.session_error(conn, e)),
                    }
                    pending_events = true;
                }
            }
            // One commit at a time; the writer moves into a blocking task and comes back.
            if driver.running.is_none()
                && let Some(bundles) = driver.commits.pop_front()
                && let Some(mut w) = driver.writer.take()
            {
                let n = bundles.len();
                let nb: u64 = bundles.iter().map(|b| b.leaf_bytes() as u64).sum();
                let before = w.held();
                driver.running = Some(tokio::task::spawn_blocking(move || {
                    let r = w.commit_all(bundles);
                    let committed = r.as_ref().map_or(0, |held| held - before);
                    (w, n, r.map(|h| (h, committed)), nb)
                }));
            }
            let deadline = session.poll_timeout();
            tokio::select! {
                arrival = rx.recv() => {
                    let Some((id, arrival)) = arrival else {
                        break 'session Err(SyncError::Local("request tasks stopped".into()));
                    };
                    let now = Instant::now();
                    match arrival {
                        Arrival::Response(Ok(r)) => session.handle_response(now, id, r),
                        Arrival::Response(Err(f)) | Arrival::Bundle(Err(f)) => {
                            session.handle_failure(now, id, f.into_session());
                        }
                        Arrival::Bundle(Ok(b)) => session.handle_bundle(now, id, Ok(b)),
                    }
                }
                done = async {
                    match driver.running.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                }, if driver.running.is_some() => {
                    driver.running = None;
                    let (w, n, result, nb) = done.map_err(|e| SyncError::Local(format!("commit task failed (the sync resumes from the last commit): {e}")))?;
                    driver.writer = Some(w);
                    let now = Instant::now();
                    match result {
                        Ok((held, committed)) => {
                            entries += committed;
                            bytes += nb;
                            progress(SyncProgress { held, target: target.as_ref().map_or(held, |c| c.size) });
                            session.committed(now, n, Ok(held));
                        }
                        Err(ReplicaError::Bundle(e)) => {
                            session.committed(now, n, Err(SessionError::Misbehaved(PeerMisbehaved::BadBundle(e.to_string()))));
                        }
                        Err(e) => break 'session Err(e.into()),
                    }
                }
                () = sleep_until(deadline) => session.handle_timeout(Instant::now()),
            }
        };
        for t in tasks {
            t.abort();
        }
        outcome.map(|()| (entries, bytes))
    }

    fn session_error(&self, conn: &Connection, e: SessionError) -> SyncError {
        match e {
            SessionError::Misbehaved(v) => self.misbehaved(conn, v),
            SessionError::Refused(code, message) => SyncError::Refused { code, message },
            SessionError::TimedOut { request } => SyncError::Connect {
                addr: conn.remote_address(),
                reason: format!("request {request} got no answer within 30 s"),
            },
            SessionError::Transport(reason) => {
                SyncError::Connect { addr: conn.remote_address(), reason }
            }
            SessionError::Local(m) => SyncError::Local(m),
        }
    }

    async fn accept(
        &self,
        conn: &Connection,
        writer: &mut ReplicaWriter,
        note: &str,
        consistency: &[onoal_engine::Hash],
        have: u64,
    ) -> Result<Accepted, SyncError> {
        match writer.accept_checkpoint(note, consistency) {
            Ok(a) => Ok(a),
            Err(ReplicaError::BadSignature { reason, .. }) => {
                Err(self.misbehaved(conn, PeerMisbehaved::BadSignature(reason)))
            }
            Err(ReplicaError::Fork { reason, .. }) => {
                Err(self.misbehaved(conn, PeerMisbehaved::Fork(reason)))
            }
            Err(ReplicaError::Inconsistent { old_size, new_size, reason }) => {
                // A bad proof, or a fork? Ask for its checkpoint of the size we hold.
                let ledger = *writer.log().identity().ledger_id.as_bytes();
                if let Ok(Response::Checkpoint { note: old, .. }) =
                    self.request(conn, &Request::CheckpointAt { ledger, size: have }).await
                    && let Err(ReplicaError::Fork { reason, .. }) = writer.check_fork(&old)
                {
                    return Err(self.misbehaved(conn, PeerMisbehaved::Fork(reason)));
                }
                Err(self.misbehaved(
                    conn,
                    PeerMisbehaved::InconsistentCheckpoint(format!(
                        "{old_size} -> {new_size}: {reason}"
                    )),
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// After a failed sync: an accepted checkpoint whose entries did not verify is not kept, and
/// the failure is recorded in the replica's sync state (best effort: the sync already failed).
fn record_failure(writer: &mut ReplicaWriter, e: &SyncError) {
    let _ = writer.discard_unwritten_checkpoint();
    let _ = writer.set_status(SyncStatus::Failed, Some(e.to_string()));
}

enum BundleFailure {
    Peer(PeerMisbehaved),
    Refused(ErrorCode, String),
    Transport(String),
    Local(String),
}

impl BundleFailure {
    fn into_session(self) -> SessionError {
        match self {
            Self::Peer(v) => SessionError::Misbehaved(v),
            Self::Refused(code, m) => SessionError::Refused(code, m),
            Self::Transport(m) => SessionError::Transport(m),
            Self::Local(m) => SessionError::Local(m),
        }
    }
}

/// What a request task hands back to the session driver.
enum Arrival {
    Response(Result<Response, BundleFailure>),
    Bundle(Result<VerifiedBundle, BundleFailure>),
}

/// The writer and the commits waiting for it, while a session runs.
struct Driver {
    writer: Option<ReplicaWriter>,
    commits: VecDeque<Vec<VerifiedBundle>>,
    #[allow(clippy::type_complexity)]
    running: Option<JoinHandle<(ReplicaWriter, usize, Result<(u64, u64), ReplicaError>, u64)>>,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// One request on its own stream, answered by one response frame.
async fn request_once(
    conn: &Connection,
    request: &Request,
    max: u32,
) -> Result<Response, BundleFailure> {
    let (mut send, mut recv) =
        conn.open_bi().await.map_err(|e| BundleFailure::Transport(e.to_string()))?;
    let body = postcard::to_stdvec(request).map_err(|e| BundleFailure::Local(e.to_string()))?;
    write_frame(&mut send, &body).await.map_err(BundleFailure::Transport)?;
    let _ = send.finish();
    let frame = match read_frame(&mut recv, max).await {
        Ok(f) => f,
        Err(FrameError::Io(e)) => return Err(BundleFailure::Transport(e)),
        Err(FrameError::Peer(v)) => return Err(BundleFailure::Peer(v)),
    };
    postcard::from_bytes(&frame).map_err(|e| {
        BundleFailure::Peer(PeerMisbehaved::ProtocolViolation(format!("undecodable response: {e}")))
    })
}

async fn fetch_bundle(
    conn: Connection,
    ledger: [u8; 16],
    checkpoint: Arc<onoal_engine::checkpoint::Checkpoint>,
    first: u64,
    max: u32,
) -> Result<VerifiedBundle, BundleFailure> {
    let request = Request::Bundle { ledger, size: checkpoint.size, first };
    let (mut send, mut recv) =
        conn.open_bi().await.map_err(|e| BundleFailure::Transport(e.to_string()))?;
    let body = postcard::to_stdvec(&request).map_err(|e| BundleFailure::Local(e.to_string()))?;
    write_frame(&mut send, &body).await.map_err(BundleFailure::Transport)?;
    let _ = send.finish();
    let read = |r: Result<Vec<u8>, FrameError>| match r {
        Ok(f) => Ok(f),
        Err(FrameError::Io(e)) => Err(BundleFailure::Transport(e)),
        Err(FrameError::Peer(v)) => Err(BundleFailure::Peer(v)),
    };
    let header = read(read_frame(&mut recv, max).await)?;
    let response: Response = postcard::from_bytes(&header).map_err(|e| {
        BundleFailure::Peer(PeerMisbehaved::ProtocolViolation(format!("undecodable response: {e}")))
    })?;
    let (count, path) = match response {
        Response::Bundle { count, path } => (count, path),
        Response::Error { code, message } => return Err(BundleFailure::Refused(code, message)),
        _ => {
            return Err(BundleFailure::Peer(PeerMisbehaved::ProtocolViolation(
                "answered Bundle with another message".into(),
            )));
        }
    };
    let expected = replica::bundle_len(first, checkpoint.size).unwrap_or(0);
    if u64::from(count) != expected {
        return Err(BundleFailure::Peer(PeerMisbehaved::BadBundle(format!(
            "bundle {first} announces {count} entries, the tree of {} has {expected} there",
            checkpoint.size
        ))));
    }
    let mut leaves = Vec::with_capacity(count as usize);
    for _ in 0..count {
        leaves.push(read(read_frame(&mut recv, max).await)?);
    }
    // Verification is CPU work: off the async workers.
    tokio::task::spawn_blocking(move || {
        replica::verify_bundle(&checkpoint, first, leaves, &path)
            .map_err(|e| BundleFailure::Peer(PeerMisbehaved::BadBundle(e.to_string())))
    })
    .await
    .map_err(|e| BundleFailure::Local(e.to_string()))?
}

fn resolve(address: &str) -> Result<SocketAddr, SyncError> {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .map_err(|e| SyncError::Local(format!("cannot resolve {address}: {e}")))?
        .next()
        .ok_or_else(|| SyncError::Local(format!("{address} resolves to no address")))
}
