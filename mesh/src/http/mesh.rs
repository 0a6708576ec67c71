//! `/mesh/...`: the seed's routes: peers, connect (pin), disconnect (unpin), topology, sync,
//! follows, the cross-ledger query, routes, trust, visibility, connections, messages and
//! discovery.

use axum::Json;

use super::error::extract::Json as Body;
use axum::extract::State;

use super::error::extract::{Path, Query};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use onoal_engine::{Filter, LedgerId};

use crate::proto::routed::{Checks, Expectation, Verdict};

use super::error::{ApiError, ErrorBody};
use super::ledger::parse_ledger_id;
use super::{AppState, blocking};
use crate::control::FollowView;
use crate::control::views::{PeerView, RecordView, SyncSummaryView};
use crate::id::{KeyTextError, PeerId};
use crate::net::{MemberError, SyncMode};

/// Pinned peers, and the ledgers discovery found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PeerList {
    /// Pinned peers (source `manual`), by ledger id.
    pub peers: Vec<PeerView>,
    /// Ledgers known from discovery, each with its source (bootstrap, registry, dns, gossip,
    /// dht). Known is not trusted: they may exchange discovery messages, not data.
    #[serde(default)]
    pub discovered: Vec<RecordView>,
}

/// Pinned peers with what is known of them, and discovered ledgers.
#[utoipa::path(get, path = "/mesh/peers", tag = "mesh", responses((status = 200, body = PeerList)))]
pub(crate) async fn peers(State(state): State<AppState>) -> Result<Json<PeerList>, ApiError> {
    let peers = state.control.node().peers().clone();
    let list = blocking(move || Ok(peers.list()?)).await?;
    let node = state.control.node();
    let members = node.connections();
    let discovered = node
        .discovery_status()
        .known
        .iter()
        .map(|k| {
            let member = members.iter().find(|m| m.ledger_id == k.record.ledger_id);
            RecordView::from(k).with_member(member)
        })
        .collect();
    let now = onoal_engine::time::now_ms();
    let peers = list.iter().map(|p| PeerView::from(p).with_trust(node.trust(), now)).collect();
    Ok(Json(PeerList { peers, discovered }))
}

/// A member: a ledger this node heartbeats (the seed's mesh_connections columns).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    /// The member's ledger id.
    pub to_ledger_id: String,
    /// Its QUIC address.
    pub addr: String,
    /// `direct`.
    pub connection_type: String,
    /// connected, disconnected or left.
    pub status: String,
    /// Heartbeat round trip, smoothed (ms).
    pub latency_ms: Option<u32>,
    /// Last message from it (ms since the epoch).
    pub last_message_ms: Option<u64>,
    /// Messages from it.
    pub message_count: u64,
    /// Heartbeats it missed.
    pub error_count: u64,
    /// Member since (ms since the epoch).
    pub created_ms: u64,
    /// Status changed (ms since the epoch).
    pub updated_ms: u64,
}

/// Members.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    /// By ledger id.
    pub connections: Vec<ConnectionView>,
}

/// The ledgers this node keeps in touch with, and their state.
#[utoipa::path(get, path = "/mesh/connections", tag = "mesh", responses((status = 200, body = ConnectionList)))]
pub(crate) async fn connections(State(state): State<AppState>) -> Json<ConnectionList> {
    let connections = state.control.node().connections().into_iter().map(connection_view).collect();
    Json(ConnectionList { connections })
}

fn connection_view(c: crate::membership::MemberConnection) -> ConnectionView {
    ConnectionView {
        to_ledger_id: c.ledger_id.to_string(),
        addr: c.addr.to_string(),
        connection_type: c.kind,
        status: c.status.as_str().to_owned(),
        latency_ms: c.latency_ms,
        last_message_ms: c.last_message_ms,
        message_count: c.message_count,
        error_count: c.error_count,
        created_ms: c.created_ms,
        updated_ms: c.updated_ms,
    }
}

/// One message this node originated (the seed's mesh_messages columns).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// The envelope's id (UUID).
    pub message_id: String,
    /// Its type.
    pub message_type: String,
    /// This ledger.
    pub from_ledger_id: String,
    /// The receiver's ledger, when known.
    pub to_ledger_id: Option<String>,
    /// Where it was sent.
    pub to_addr: String,
    /// Hops it may take.
    pub ttl: u8,
    /// pending, sent, delivered or failed.
    pub status: String,
    /// Attempts after the first.
    pub retry_count: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Size of the signed envelope (bytes).
    pub size: usize,
    /// Created (ms since the epoch).
    pub created_ms: u64,
    /// Last attempt.
    pub sent_ms: Option<u64>,
    /// Delivered.
    pub delivered_ms: Option<u64>,
    /// No attempt after this.
    pub expires_ms: u64,
}

impl From<&crate::outbox::OutboxRow> for MessageView {
    fn from(r: &crate::outbox::OutboxRow) -> Self {
        Self {
            message_id: uuid::Uuid::from_bytes(r.message_id).to_string(),
            message_type: r.message_type.clone(),
            from_ledger_id: r.from_ledger_id.to_string(),
            to_ledger_id: r.to_ledger_id.map(|l| l.to_string()),
            to_addr: r.to_addr.to_string(),
            ttl: r.ttl,
            status: r.status.as_str().to_owned(),
            retry_count: r.retry_count,
            last_error: r.last_error.clone(),
            size: r.message.len(),
            created_ms: r.created_ms,
            sent_ms: r.sent_ms,
            delivered_ms: r.delivered_ms,
            expires_ms: r.expires_ms,
        }
    }
}

/// Messages, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    /// Rows counted per status (all of them, before `limit`).
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// The rows.
    pub messages: Vec<MessageView>,
}

/// Which messages to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct MessageParams {
    /// Only this status: pending, sent, delivered or failed.
    pub status: Option<String>,
    /// At most this many rows (1 to 10000, default 100).
    pub limit: Option<usize>,
}

/// Lists `rows` by `status` and `limit` (newest first), with counts per status.
///
/// # Errors
/// A message naming the allowed values.
pub fn message_list(
    rows: &[crate::outbox::OutboxRow],
    status: Option<&str>,
    limit: Option<usize>,
) -> Result<MessageList, String> {
    let status = match status {
        None => None,
        Some(s) => Some(crate::outbox::Delivery::parse(s).ok_or_else(|| {
            format!("status {s:?} is not one of pending, sent, delivered, failed")
        })?),
    };
    let limit = limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(format!("limit {limit} is out of range: give 1 to 10000"));
    }
    let mut by_status = std::collections::BTreeMap::new();
    for r in rows {
        *by_status.entry(r.status.as_str().to_owned()).or_insert(0) += 1;
    }
    let mut sorted: Vec<&crate::outbox::OutboxRow> = rows.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse((r.created_ms, r.message_id)));
    let messages = sorted
        .into_iter()
        .filter(|r| status.is_none_or(|s| r.status == s))
        .take(limit)
        .map(MessageView::from)
        .collect();
    Ok(MessageList { by_status, messages })
}

/// The mesh messages this node originated and wanted delivered, with their status.
#[utoipa::path(get, path = "/mesh/messages", tag = "mesh", params(MessageParams), responses((status = 200, body = MessageList), (status = 400, body = ErrorBody)))]
pub(crate) async fn messages(
    State(state): State<AppState>,
    Query(params): Query<MessageParams>,
) -> Result<Json<MessageList>, ApiError> {
    let rows = state.control.node().outbox();
    message_list(&rows, params.status.as_deref(), params.limit)
        .map(Json)
        .map_err(ApiError::bad_request)
}

/// Keep in touch with a ledger.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// Its ledger id: known to this node, or found through the DHT or the registry.
    pub ledger_id: String,
    /// How long finding it and its first heartbeat may take (ms, 100..=30000; default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Makes a discovered ledger a member: heartbeated, listed in `/mesh/connections`. Answers
/// with its row once its first heartbeat was answered or missed.
#[utoipa::path(post, path = "/mesh/connections", tag = "mesh", request_body = MemberRequest,
    responses((status = 200, body = ConnectionView), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn connect_member(
    State(state): State<AppState>,
    Body(r): Body<MemberRequest>,
) -> Result<Json<ConnectionView>, ApiError> {
    let id = parse_ledger_id(&r.ledger_id)?;
    let timeout_ms = r.timeout_ms.unwrap_or(5000);
    if !(100..=30_000).contains(&timeout_ms) {
        return Err(ApiError::bad_request(format!(
            "timeout_ms {timeout_ms} is out of range: give 100 to 30000"
        )));
    }
    let node = state.control.node().clone();
    match node.connect_member(id, std::time::Duration::from_millis(timeout_ms)).await {
        Ok(row) => Ok(Json(connection_view(row))),
        Err(e @ MemberError::Unknown(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ MemberError::Full(_)) => {
            Err(ApiError::new(axum::http::StatusCode::CONFLICT, "full", e.to_string()))
        }
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

/// Stops heartbeating a ledger; gossip does not bring it back until it is connected again.
/// Its record stays known; a pin is untouched (`/mesh/disconnect` unpins).
#[utoipa::path(delete, path = "/mesh/connections/{ledger_id}", tag = "mesh",
    params(("ledger_id" = String, Path, description = "The member's ledger id")),
    responses((status = 200, body = Disconnected), (status = 400, body = ErrorBody)))]
pub(crate) async fn disconnect_member(
    State(state): State<AppState>,
    Path(ledger_id): Path<String>,
) -> Result<Json<Disconnected>, ApiError> {
    let id = parse_ledger_id(&ledger_id)?;
    let removed = state.control.node().disconnect_member(id);
    Ok(Json(Disconnected { ledger_id: id.to_string(), removed }))
}

/// What to discover.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiscoverParams {
    /// A ledger id.
    pub id: Option<String>,
    /// An OID prefix (`oid:onoal:org`).
    pub oid: Option<String>,
    /// How long the DHT lookup may take (ms, 100..=30000; default 5000).
    pub timeout_ms: Option<u64>,
}

/// Ledgers found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DiscoverResult {
    /// Their records, each with its source.
    pub records: Vec<RecordView>,
}

/// Find a ledger by id, or the ledgers under an OID prefix: the records this node knows, then
/// the DHT.
#[utoipa::path(get, path = "/mesh/discover", tag = "mesh", params(DiscoverParams),
    responses((status = 200, body = DiscoverResult), (status = 400, body = ErrorBody)))]
pub(crate) async fn discover(
    State(state): State<AppState>,
    Query(params): Query<DiscoverParams>,
) -> Result<Json<DiscoverResult>, ApiError> {
    let timeout = params.timeout_ms.unwrap_or(5000);
    if !(100..=30_000).contains(&timeout) {
        return Err(ApiError::bad_request("timeout_ms must be 100 to 30000"));
    }
    let timeout = std::time::Duration::from_millis(timeout);
    let node = state.control.node();
    let found = match (&params.id, &params.oid) {
        (Some(id), None) => node.discover_ledger(parse_ledger_id(id)?, timeout).await,
        (None, Some(oid)) => {
            let oid = onoal_engine::Oid::parse(oid).map_err(|e| {
                ApiError::bad_request(format!("{e}; an OID prefix looks like oid:onoal:org"))
            })?;
            node.discover_oid(&oid, timeout).await
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of id (a ledger id) and oid (an OID prefix)",
            ));
        }
    };
    Ok(Json(DiscoverResult { records: found.iter().map(RecordView::from).collect() }))
}

/// Where to route.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteParams {
    /// A ledger id, or an OID (`oid:onoal:org:b`).
    pub to: String,
}

/// The path `findPath` would take, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RouteView {
    /// The destination as given.
    pub to: String,
    /// direct, oid_prefix, dht or flood.
    pub strategy: String,
    /// The target ledger, when known.
    pub target: Option<String>,
    /// The target's OID, when known.
    pub target_oid: Option<String>,
    /// The neighbours a message would be sent to.
    pub next_hops: Vec<String>,
    /// OID distance from the next hop to the target.
    pub distance: Option<u32>,
    /// Hops it may take.
    pub ttl: u8,
    /// What was tried and what decided, in order.
    pub reasons: Vec<String>,
}

impl RouteView {
    /// The view of `path` to `to`.
    pub fn new(to: String, path: crate::routing::Path) -> Self {
        let strategy = serde_json::to_value(path.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            to,
            strategy,
            target: path.target.map(|t| t.to_string()),
            target_oid: path.target_oid,
            next_hops: path.next_hops.iter().map(ToString::to_string).collect(),
            distance: path.distance,
            ttl: path.ttl,
            reasons: path.reasons,
        }
    }
}

/// Parses a destination: a ledger id or an OID.
///
/// # Errors
/// Neither, with what to give.
pub fn parse_destination(to: &str) -> Result<crate::routing::Destination, String> {
    use crate::routing::Destination;
    if let Ok(id) = to.parse::<LedgerId>() {
        return Ok(Destination::Ledger(id));
    }
    onoal_engine::Oid::parse(to)
        .map(|oid| Destination::Oid(oid.as_str().to_owned()))
        .map_err(|e| format!("{to:?} is neither a ledger id nor an OID ({e})"))
}

/// Where a message to a ledger or an OID would go, and why (`findPath`: a direct peer, an
/// OID-prefix path, a DHT lookup, flooding).
#[utoipa::path(get, path = "/mesh/route", tag = "mesh", params(RouteParams),
    responses((status = 200, body = RouteView), (status = 400, body = ErrorBody),
              (status = 404, description = "No route", body = ErrorBody)))]
pub(crate) async fn route(
    State(state): State<AppState>,
    Query(params): Query<RouteParams>,
) -> Result<Json<RouteView>, ApiError> {
    let to = parse_destination(&params.to).map_err(ApiError::bad_request)?;
    let node = state.control.node().clone();
    let path = tokio::task::spawn_blocking(move || node.route(&to))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "no_route", e.to_string()).hint(
                "pin a peer closer to it, connect to members, or enable dht / flood in [routing]",
            )
        })?;
    Ok(Json(RouteView::new(params.to, path)))
}

/// The discovery layer's state.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DiscoveryView {
    /// This node's signed record, as it publishes it.
    pub own: RecordView,
    /// Ledgers known, per source.
    pub known_by_source: std::collections::BTreeMap<String, u64>,
    /// Nodes in the DHT routing table.
    pub dht_nodes: usize,
    /// Records this node holds for others.
    pub dht_records_held: usize,
    /// DHT requests answered.
    pub dht_served: u64,
    /// DHT requests refused by the rate limit.
    pub dht_rate_limited: u64,
    /// Records refused by this node's DHT store, by reason.
    pub dht_store_refused: std::collections::BTreeMap<String, u64>,
    /// Invalid contacts or records dropped from DHT answers.
    pub dht_invalid_in_answers: u64,
    /// Mesh messages accepted.
    pub messages_accepted: u64,
    /// Mesh messages dropped (bad signature, replay, stale, ...).
    pub messages_dropped: u64,
    /// Peer records refused (invalid, or a different key for a known ledger).
    pub records_refused: u64,
    /// SWIM's live members (ledger id and QUIC address), by ledger id.
    pub swim_members: Vec<SwimMemberView>,
    /// SWIM packets refused (not SWIM, another key than the connection's, full).
    pub swim_refused: u64,
    /// Members SWIM declared down so far.
    pub swim_down: u64,
    /// Dropped messages by delivering peer (key hex) and reason.
    pub dropped_by_peer:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    /// Routed messages: queries asked, relayed, answered here, answers rejected, requests
    /// that could not be passed on.
    pub routed: crate::net::routed::RoutedCounts,
}

/// A live SWIM member.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SwimMemberView {
    /// Its ledger.
    pub ledger_id: String,
    /// Its key (hex).
    pub public_key: String,
    /// Its QUIC address.
    pub quic: String,
}

/// What discovery knows and what it refused.
#[utoipa::path(get, path = "/mesh/discovery", tag = "mesh", responses((status = 200, body = DiscoveryView)))]
pub(crate) async fn discovery(State(state): State<AppState>) -> Json<DiscoveryView> {
    let s = state.control.node().discovery_status();
    let mut known_by_source = std::collections::BTreeMap::new();
    for k in &s.known {
        *known_by_source.entry(k.source.as_str().to_owned()).or_insert(0) += 1;
    }
    Json(DiscoveryView {
        own: RecordView::new(&s.own, "self"),
        known_by_source,
        dht_nodes: s.dht_nodes,
        dht_records_held: s.dht_records_held,
        dht_served: s.dht_served,
        dht_rate_limited: s.dht.rate_limited,
        dht_store_refused: s.dht.store_refused.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        dht_invalid_in_answers: s.dht.invalid_in_answers,
        messages_accepted: s.messages_accepted,
        messages_dropped: s.messages_dropped,
        records_refused: s.records_refused,
        swim_members: {
            let mut m: Vec<SwimMemberView> = s
                .swim_members
                .iter()
                .map(|m| SwimMemberView {
                    ledger_id: m.ledger_id.to_string(),
                    public_key: hex::encode(m.key),
                    quic: m.addr.to_string(),
                })
                .collect();
            m.sort_by(|a, b| a.ledger_id.cmp(&b.ledger_id));
            m
        },
        swim_refused: s.swim_refused,
        swim_down: s.swim_down,
        dropped_by_peer: s
            .dropped_by_peer
            .iter()
            .map(|(p, m)| (p.clone(), m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()))
            .collect(),
        routed: state.control.node().routed_counts(),
    })
}

/// Pin a peer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// Its ledger id.
    pub ledger_id: String,
    /// Its Ed25519 public key, hex.
    pub public_key: String,
    /// HOST:PORT where it serves (optional: a peer that only reads from us has none).
    pub address: Option<String>,
    /// Also follow it (sync now and whenever it signs a newer checkpoint).
    #[serde(default)]
    pub follow: bool,
    /// Replace the key pinned for this ledger (refused with 409 `key_changed` otherwise); the
    /// old key stays in the record's history.
    #[serde(default)]
    pub replace_key: bool,
}

pub(crate) fn parse_key(hex_key: &str) -> Result<[u8; 32], ApiError> {
    match PeerId::parse_hex(hex_key) {
        Ok(id) => Ok(*id.as_bytes()),
        Err(KeyTextError::NotHex32) => {
            Err(ApiError::bad_request("public_key must be 32 bytes of hex (64 characters)"))
        }
        Err(KeyTextError::Unusable) => {
            Err(ApiError::bad_request("public_key is not a usable Ed25519 public key")
                .hint("copy the key `onoal init` or `onoal serve` printed"))
        }
    }
}

/// Pins a peer's key (and address); the running node serves it at once.
#[utoipa::path(post, path = "/mesh/connect", tag = "mesh", request_body = ConnectRequest,
    responses((status = 200, body = PeerView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn connect(
    State(state): State<AppState>,
    Body(r): Body<ConnectRequest>,
) -> Result<Json<PeerView>, ApiError> {
    let id = parse_ledger_id(&r.ledger_id)?;
    let key = parse_key(&r.public_key)?;
    if id == state.control.node().ledger().identity().ledger_id {
        return Err(ApiError::bad_request(format!("{id} is this ledger; pin other ledgers")));
    }
    if let Some(a) = &r.address
        && !a.contains(':')
    {
        return Err(ApiError::bad_request(format!("address {a:?} is not HOST:PORT")));
    }
    let control = state.control.clone();
    let address = r.address.clone();
    let record = blocking(move || Ok(control.pin(id, key, address, r.replace_key)?)).await?;
    if r.follow {
        state.control.follow(id, None)?;
    }
    Ok(Json(PeerView::from(&record)))
}

/// Unpin a peer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    /// Its ledger id.
    pub ledger_id: String,
}

/// What disconnecting did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Disconnected {
    /// The peer.
    pub ledger_id: String,
    /// False: it was not pinned.
    pub removed: bool,
}

/// Unpins a peer and stops following it (its replica stays).
#[utoipa::path(post, path = "/mesh/disconnect", tag = "mesh", request_body = DisconnectRequest,
    responses((status = 200, body = Disconnected), (status = 400, body = ErrorBody)))]
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    Body(r): Body<DisconnectRequest>,
) -> Result<Json<Disconnected>, ApiError> {
    let id = parse_ledger_id(&r.ledger_id)?;
    let control = state.control.clone();
    let removed = blocking(move || Ok(control.unpin(id)?)).await?;
    Ok(Json(Disconnected { ledger_id: id.to_string(), removed }))
}

/// A node of the topology.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopologyNode {
    /// Its ledger id.
    pub ledger_id: String,
    /// Its OID, when known.
    pub oid: Option<String>,
    /// `self`, `peer` (pinned or replicated) or `discovered`.
    pub role: String,
    /// Where it is reached.
    pub addresses: Vec<String>,
    /// Violations recorded against it.
    pub misbehaviour_count: u64,
    /// As a member (heartbeated): connected, disconnected or left.
    #[serde(default)]
    pub status: Option<String>,
    /// Heartbeat round trip, smoothed (ms).
    #[serde(default)]
    pub latency_ms: Option<u32>,
    /// This node's trust in it (derived; absent for itself).
    #[serde(default)]
    pub trust: Option<f64>,
}

/// An edge: `from` knows (`pinned`), follows (`follows`) or holds a replica of (`replica`) `to`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TopologyEdge {
    /// From this ledger.
    pub from: String,
    /// To that one.
    pub to: String,
    /// `pinned`, `follows` or `replica`.
    pub kind: String,
}

/// What this node sees of the mesh: itself, its peers and its replicas. Routes and trust
/// edges join when those are built.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Topology {
    /// Nodes.
    pub nodes: Vec<TopologyNode>,
    /// Edges.
    pub edges: Vec<TopologyEdge>,
}

/// The node's view of the mesh.
#[utoipa::path(get, path = "/mesh/topology", tag = "mesh", responses((status = 200, body = Topology)))]
pub(crate) async fn topology(State(state): State<AppState>) -> Result<Json<Topology>, ApiError> {
    let control = state.control.clone();
    let topo = blocking(move || {
        let node = control.node();
        let me = node.ledger().identity();
        let me_id = me.ledger_id.to_string();
        let mut nodes = vec![TopologyNode {
            ledger_id: me_id.clone(),
            oid: Some(me.oid.as_str().to_owned()),
            role: "self".into(),
            addresses: node.local_addr().map(|a| vec![a.to_string()]).unwrap_or_default(),
            misbehaviour_count: 0,
            status: None,
            latency_ms: None,
            trust: None,
        }];
        let mut edges = Vec::new();
        for p in node.peers().list()? {
            let id = p.ledger_id.to_string();
            edges.push(TopologyEdge { from: me_id.clone(), to: id.clone(), kind: "pinned".into() });
            nodes.push(TopologyNode {
                ledger_id: id,
                oid: p.oid.clone(),
                role: "peer".into(),
                addresses: p.addresses.clone(),
                misbehaviour_count: p.misbehaviour_count,
                status: None,
                latency_ms: None,
                trust: None,
            });
        }
        for k in node.discovery_status().known {
            let id = k.record.ledger_id.to_string();
            if nodes.iter().any(|n| n.ledger_id == id) {
                continue;
            }
            edges.push(TopologyEdge {
                from: me_id.clone(),
                to: id.clone(),
                kind: format!("discovered:{}", k.source.as_str()),
            });
            nodes.push(TopologyNode {
                ledger_id: id,
                oid: Some(k.record.oid.clone()),
                role: "discovered".into(),
                addresses: k.record.endpoints.quic.iter().cloned().collect(),
                misbehaviour_count: 0,
                status: None,
                latency_ms: None,
                trust: None,
            });
        }
        for f in control.follows() {
            edges.push(TopologyEdge {
                from: me_id.clone(),
                to: f.ledger_id,
                kind: "follows".into(),
            });
        }
        let ledger = node.ledger();
        for log in ledger.replicas().into_iter().chain(ledger.sparse_replicas()) {
            let id = log.identity().ledger_id.to_string();
            if !nodes.iter().any(|n| n.ledger_id == id) {
                nodes.push(TopologyNode {
                    ledger_id: id.clone(),
                    oid: Some(log.identity().oid.as_str().to_owned()),
                    role: "peer".into(),
                    addresses: Vec::new(),
                    misbehaviour_count: 0,
                    status: None,
                    latency_ms: None,
                    trust: None,
                });
            }
            edges.push(TopologyEdge { from: me_id.clone(), to: id, kind: "replica".into() });
        }
        for member in node.connections() {
            let id = member.ledger_id.to_string();
            if let Some(n) = nodes.iter_mut().find(|n| n.ledger_id == id) {
                n.status = Some(member.status.as_str().to_owned());
                n.latency_ms = member.latency_ms;
            }
        }
        for r in crate::net::routing::stored_routes(ledger).unwrap_or_default() {
            edges.push(TopologyEdge {
                from: r.next_hop.to_string(),
                to: r.target.to_string(),
                kind: "route".into(),
            });
        }
        let (trust, now) = (node.trust(), onoal_engine::time::now_ms());
        for n in nodes.iter_mut().skip(1) {
            if let Ok(id) = n.ledger_id.parse::<LedgerId>() {
                n.trust = Some((trust.level(trust.me(), &id, now) * 1e6).round() / 1e6);
            }
        }
        Ok(Topology { nodes, edges })
    })
    .await?;
    Ok(Json(topo))
}

/// A cross-ledger query (the seed's CLQP): whom to ask and what.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteQueryBody {
    /// The ledger to ask: its id or its OID.
    pub to: String,
    /// Only entries of this stream.
    pub stream: Option<String>,
    /// Only entries of this type.
    #[serde(rename = "type")]
    pub entry_type: Option<String>,
    /// Only entries about this subject OID.
    pub subject: Option<String>,
    /// Only entries by this issuer OID.
    pub issuer: Option<String>,
    /// Only entries at or after this time (ms since the epoch).
    pub since: Option<u64>,
    /// Only entries at or before this time (ms since the epoch).
    pub until: Option<u64>,
    /// The `next_cursor` of the previous page (a seq).
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 100).
    pub limit: Option<u32>,
}

impl RemoteQueryBody {
    /// The destination, filter, cursor and limit, checked.
    ///
    /// # Errors
    /// A message for the user.
    pub fn parse(&self) -> Result<(crate::routing::Destination, Filter, u64, u32), String> {
        let to = parse_destination(&self.to)?;
        let filter = Filter {
            stream: self.stream.clone(),
            entry_type: self.entry_type.clone(),
            subject: self.subject.clone(),
            issuer: self.issuer.clone(),
            since_ms: self.since,
            until_ms: self.until,
        };
        filter.validate().map_err(|e| e.to_string())?;
        let max = crate::proto::routed::MAX_QUERY_ENTRIES;
        let limit = self.limit.unwrap_or(100);
        if !(1..=max).contains(&limit) {
            return Err(format!("limit {limit} is out of range; give 1 to {max}"));
        }
        let cursor = match &self.cursor {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| format!("cursor {c:?} is not a next_cursor of this query (a seq)"))?,
        };
        Ok((to, filter, cursor, limit))
    }
}

/// A verified answer to a cross-ledger query.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemoteQueryView {
    /// The ledger that answered.
    pub ledger_id: String,
    /// Its OID.
    pub oid: String,
    /// Where this node got the key it verified with: `pinned` or `record`.
    pub key_source: String,
    /// Matching entries, as `onoal query` prints them, each proven in `checkpoint`.
    pub entries: Vec<crate::control::views::EntryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Always true: an answer that does not verify is an error, never printed.
    pub verified: bool,
    /// The ledgers it travelled: this node, the relays, the destination.
    pub path: Vec<String>,
    /// Hops the request made.
    pub hops: usize,
    /// How the first hop was chosen (`direct`, `oid_prefix`, `dht`, `flood`).
    pub strategy: String,
    /// Round trip, ms.
    pub latency_ms: u32,
    /// The tree size the proofs are for.
    pub tree_size: u64,
    /// The destination's signed checkpoint note (C2SP), as it signed it.
    pub checkpoint: String,
}

impl From<&crate::net::routed::RemoteQuery> for RemoteQueryView {
    fn from(q: &crate::net::routed::RemoteQuery) -> Self {
        Self {
            ledger_id: q.target.ledger.to_string(),
            oid: q.target.oid.clone(),
            key_source: q.target.key_source.to_owned(),
            entries: q.page.entries.iter().map(crate::control::views::EntryView::from).collect(),
            next_cursor: q.page.next_cursor.map(|c| c.to_string()),
            verified: true,
            hops: q.path.len().saturating_sub(1),
            path: q.path.clone(),
            strategy: serde_json::to_value(q.strategy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            latency_ms: q.latency_ms,
            tree_size: q.page.checkpoint.size,
            checkpoint: q.page.checkpoint.note.clone(),
        }
    }
}

/// Maps a failed remote query to its status: 404 unknown / no route, 403 refused, 502 a bad
/// answer, 504 no answer in time.
pub(crate) fn remote_error(e: &crate::net::routed::RemoteError) -> ApiError {
    use crate::net::routed::RemoteError as E;
    use axum::http::StatusCode;
    match e {
        E::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, "unknown_ledger", e.to_string()),
        E::NoPath(_) => ApiError::new(StatusCode::NOT_FOUND, "no_route", e.to_string()).hint(
            "pin a peer closer to it, connect to members, or enable dht / flood in [routing]",
        ),
        E::Refused { .. } => ApiError::new(StatusCode::FORBIDDEN, "refused", e.to_string()),
        E::Bad { .. } => ApiError::new(StatusCode::BAD_GATEWAY, "bad_answer", e.to_string()),
        E::NoAnswer { .. } => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "no_answer", e.to_string())
        }
        _ => ApiError::internal(e.to_string()),
    }
}

/// The references of one entry, each checked.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefCheckList {
    /// The entry of this ledger.
    pub seq: u64,
    /// One row per reference, in the entry's order.
    pub refs: Vec<crate::net::routed::RefCheck>,
    /// Whether every reference verified.
    pub all_verified: bool,
}

/// Checks the references of this ledger's entry SEQ (the seed's reference check): each against
/// a checkpoint signed by the referenced ledger's key, from a local replica or through the mesh.
#[utoipa::path(get, path = "/mesh/refs/{seq}", tag = "mesh",
    params(("seq" = u64, Path, description = "Sequence number of an entry of this ledger")),
    responses((status = 200, body = RefCheckList), (status = 404, body = ErrorBody)))]
pub(crate) async fn refs(
    State(state): State<AppState>,
    Path(seq): Path<u64>,
) -> Result<Json<RefCheckList>, ApiError> {
    let node = state.control.node().clone();
    let r =
        node.check_and_record_refs(seq).await.map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(Json(RefCheckList { seq, refs: r.refs, all_verified: r.all_verified }))
}

/// `GET /mesh/refs` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct RefListParams {
    /// Most records (default 100, at most 10000).
    pub(crate) limit: Option<usize>,
}

/// The recorded reference checks, newest entry first: one per entry with references checked
/// by `serve --verify-refs` after it became durable, or by `GET /mesh/refs/{seq}`.
#[utoipa::path(get, path = "/mesh/refs", tag = "mesh", params(RefListParams),
    responses((status = 200, body = Vec<crate::net::ref_verifier::RefCheckRecord>), (status = 400, body = ErrorBody)))]
pub(crate) async fn ref_records(
    State(state): State<AppState>,
    Query(p): Query<RefListParams>,
) -> Result<Json<Vec<crate::net::ref_verifier::RefCheckRecord>>, ApiError> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range; give 1 to 10000"
        )));
    }
    let node = state.control.node().clone();
    let ledger = node.ledger().clone();
    let records = tokio::task::spawn_blocking(move || {
        crate::net::ref_verifier::ref_check_records(&ledger, limit)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(ApiError::internal)?;
    Ok(Json(records))
}

/// Asks another ledger, anywhere in the mesh and addressed by id or OID, for entries (the
/// seed's cross-ledger query): routed hop by hop, sealed end to end, and verified against the
/// ledger's key (its signed checkpoint and an inclusion proof per entry) before it is returned.
/// Nothing is stored.
#[utoipa::path(post, path = "/mesh/query", tag = "mesh", request_body = RemoteQueryBody,
    responses((status = 200, body = RemoteQueryView), (status = 400, body = ErrorBody),
              (status = 403, description = "Refused by the ledger's visibility policy", body = ErrorBody),
              (status = 404, description = "Unknown ledger or no route", body = ErrorBody),
              (status = 502, description = "An answer that does not verify", body = ErrorBody),
              (status = 504, description = "No answer in time", body = ErrorBody)))]
pub(crate) async fn query(
    State(state): State<AppState>,
    Body(body): Body<RemoteQueryBody>,
) -> Result<Json<RemoteQueryView>, ApiError> {
    let (to, filter, cursor, limit) = body.parse().map_err(ApiError::bad_request)?;
    let node = state.control.node().clone();
    let answer =
        node.remote_query(&to, filter, cursor, limit).await.map_err(|e| remote_error(&e))?;
    Ok(Json(RemoteQueryView::from(&answer)))
}

/// A proof verification (the seed's PVP): which entry of which ledger, and what to check.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteVerifyBody {
    /// The ledger to ask: its id or its OID.
    pub to: String,
    /// The entry's seq in that ledger.
    pub seq: u64,
    /// The entry's leaf hash (hex), e.g. from a proof file; needed when this ledger may not
    /// read the entry's stream.
    pub leaf_hash: Option<String>,
    /// The subject OID it must have.
    pub subject: Option<String>,
    /// The issuer OID it must have.
    pub issuer: Option<String>,
    /// The entry type it must have.
    #[serde(rename = "type")]
    pub entry_type: Option<String>,
    /// The issuer public key (hex) its issuer signature must be made with.
    pub issuer_key: Option<String>,
}

impl RemoteVerifyBody {
    /// The destination and the expectation, checked.
    ///
    /// # Errors
    /// A message for the user.
    pub fn parse(&self) -> Result<(crate::routing::Destination, Expectation), String> {
        let to = parse_destination(&self.to)?;
        let leaf_hash = self
            .leaf_hash
            .as_deref()
            .map(|h| {
                onoal_engine::Hash::from_hex(h.trim())
                    .ok_or_else(|| format!("leaf hash {h:?} is not 64 hex digits"))
            })
            .transpose()?;
        let oid = |o: &Option<String>| {
            o.as_deref()
                .map(|s| onoal_engine::Oid::parse(s).map(|o| o.as_str().to_owned()))
                .transpose()
                .map_err(|e| e.to_string())
        };
        let entry_type = self
            .entry_type
            .as_deref()
            .map(|t| onoal_engine::Name::entry_type(t).map(|n| n.as_str().to_owned()))
            .transpose()
            .map_err(|e| e.to_string())?;
        let issuer_key = self
            .issuer_key
            .as_deref()
            .map(|k| {
                hex::decode(k.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(
                    || format!("issuer key {k:?} is not 64 hex digits (an Ed25519 public key)"),
                )
            })
            .transpose()?;
        let expect = Expectation {
            leaf_hash,
            subject: oid(&self.subject)?,
            issuer: oid(&self.issuer)?,
            entry_type,
            issuer_key,
        };
        Ok((to, expect))
    }
}

/// A verified answer to a proof verification.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RemoteVerifyView {
    /// The ledger that stated it.
    pub ledger_id: String,
    /// Its OID.
    pub oid: String,
    /// Where this node got the key it verified with: `pinned` or `record`.
    pub key_source: String,
    /// The entry asked about.
    pub seq: u64,
    /// `match`, `mismatch` or `not_found`, as the ledger signed it.
    pub verdict: Verdict,
    /// Field by field: `null` when not asked, else whether it matched.
    pub checks: Checks,
    /// The entry's leaf hash, proven in `checkpoint` (absent when not found or withheld).
    pub leaf_hash: Option<String>,
    /// The entry, when this node may read it (then every check was re-done here from it).
    pub entry: Option<crate::control::views::EntryView>,
    /// `entry` when this node re-derived the checks from the entry itself, `statement` when it
    /// rests on the ledger's signed statement (the entry was not shown).
    pub checked_by: String,
    /// Always true: an answer whose signature, proof or checks do not hold is an error.
    pub verified: bool,
    /// The signed statement, base64 (postcard; docs/protocol.md), evidence to keep.
    pub statement_b64: String,
    /// Its Ed25519 signature by the ledger's key, hex.
    pub signature: String,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The ledger's signed checkpoint note.
    pub checkpoint: String,
    /// The ledgers it travelled.
    pub path: Vec<String>,
    /// Hops the request made.
    pub hops: usize,
    /// Round trip, ms.
    pub latency_ms: u32,
}

impl From<&crate::net::routed::RemoteVerification> for RemoteVerifyView {
    fn from(v: &crate::net::routed::RemoteVerification) -> Self {
        use base64::Engine as _;
        let s = &v.verified.statement;
        Self {
            ledger_id: v.target.ledger.to_string(),
            oid: v.target.oid.clone(),
            key_source: v.target.key_source.to_owned(),
            seq: s.seq,
            verdict: s.verdict,
            checks: s.checks,
            leaf_hash: s.leaf_hash.map(|h| h.to_hex()),
            entry: v.verified.entry.as_ref().map(crate::control::views::EntryView::from),
            checked_by: if v.verified.entry.is_some() { "entry" } else { "statement" }.to_owned(),
            verified: true,
            statement_b64: base64::engine::general_purpose::STANDARD
                .encode(&v.verified.statement_bytes),
            signature: hex::encode(&v.verified.signature),
            tree_size: v.verified.checkpoint.checkpoint.size,
            checkpoint: v.verified.checkpoint.note.clone(),
            hops: v.path.len().saturating_sub(1),
            path: v.path.clone(),
            latency_ms: v.latency_ms,
        }
    }
}

/// Asks another ledger to verify one of its entries against a subject, issuer, type, issuer key
/// or leaf hash (the seed's proof verification), routed and sealed like `/mesh/query`; its
/// answer is a statement signed by its ledger key that carries the inclusion proof in its
/// signed checkpoint, checked here before it is returned. A `mismatch` is still a 200: the
/// verdict is the answer.
#[utoipa::path(post, path = "/mesh/verify", tag = "mesh", request_body = RemoteVerifyBody,
    responses((status = 200, body = RemoteVerifyView), (status = 400, body = ErrorBody),
              (status = 403, description = "Refused: the entry is not visible and no leaf hash was given", body = ErrorBody),
              (status = 404, description = "Unknown ledger or no route", body = ErrorBody),
              (status = 502, description = "An answer that does not verify", body = ErrorBody),
              (status = 504, description = "No answer in time", body = ErrorBody)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Body(body): Body<RemoteVerifyBody>,
) -> Result<Json<RemoteVerifyView>, ApiError> {
    let (to, expect) = body.parse().map_err(ApiError::bad_request)?;
    let node = state.control.node().clone();
    let answer = node.remote_verify(&to, body.seq, expect).await.map_err(|e| remote_error(&e))?;
    Ok(Json(RemoteVerifyView::from(&answer)))
}

/// How this node trusts one ledger, and why.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustShow {
    /// The ledger.
    pub ledger_id: String,
    /// Derived level, 0 to 1 (0 when no path reaches it).
    pub level: f64,
    /// direct, chain, web-of-trust or none.
    pub kind: String,
    /// The best path, this node first.
    pub path: Vec<String>,
    /// Each hop's level along the path.
    pub hop_levels: Vec<f64>,
    /// When the path's first edge expires (ms since the epoch).
    pub expires_ms: Option<u64>,
    /// This node's own level for it, when it set one.
    pub direct_level: Option<f64>,
    /// The reason given with it.
    pub reason: Option<String>,
    /// Verified outcomes and failures counted for it.
    pub successful_interactions: u64,
    /// Failures.
    pub failed_interactions: u64,
    /// Whether it is an anchor.
    pub anchor: bool,
}

impl From<crate::trust::store::TrustView> for TrustShow {
    fn from(v: crate::trust::store::TrustView) -> Self {
        let d = v.direct.as_ref();
        Self {
            ledger_id: v.ledger_id.to_string(),
            level: (v.level * 1e6).round() / 1e6,
            kind: v.kind.to_owned(),
            path: v.path.iter().map(ToString::to_string).collect(),
            hop_levels: v.hops.iter().map(|h| h.2).collect(),
            expires_ms: v.expires_ms,
            direct_level: d.map(|d| d.level),
            reason: d.and_then(|d| d.reason.clone()),
            successful_interactions: d.map_or(0, |d| d.factors.successful_interactions),
            failed_interactions: d.map_or(0, |d| d.factors.failed_interactions),
            anchor: v.anchor,
        }
    }
}

/// Every ledger this node trusts (directly, as an anchor, or through them), best first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustList {
    /// The anchors.
    pub anchors: Vec<String>,
    /// Each reachable ledger.
    pub trusted: Vec<TrustShow>,
}

/// Set this node's trust in a ledger.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustSet {
    /// The ledger.
    pub ledger_id: String,
    /// 0 to 1.
    pub level: f64,
    /// Why (kept with it).
    pub reason: Option<String>,
    /// No longer counts after this (ms since the epoch).
    pub expires_ms: Option<u64>,
}

/// Make a ledger an anchor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustAnchor {
    /// The ledger.
    pub ledger_id: String,
}

fn trust_error(e: crate::trust::store::TrustStoreError) -> ApiError {
    use crate::trust::store::TrustStoreError as E;
    match e {
        E::Storage(_) | E::Damaged(_) => ApiError::internal(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    }
}

fn ledger_param(text: &str) -> Result<LedgerId, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("{text:?} is not a ledger id (a UUID)")))
}

/// Whom this node trusts, and how (direct, anchors, chains, web of trust).
#[utoipa::path(get, path = "/mesh/trust", tag = "mesh", responses((status = 200, body = TrustList)))]
pub(crate) async fn trust(State(state): State<AppState>) -> Json<TrustList> {
    let node = state.control.node();
    let store = node.trust();
    let now = onoal_engine::time::now_ms();
    let mut trusted: Vec<TrustShow> = store
        .graph(now)
        .derive(now, crate::trust::DEFAULT_MAX_DEPTH)
        .into_keys()
        .map(|id| TrustShow::from(store.show(id, now)))
        .collect();
    trusted.sort_by(|a, b| b.level.total_cmp(&a.level).then_with(|| a.ledger_id.cmp(&b.ledger_id)));
    Json(TrustList { anchors: store.anchors().iter().map(ToString::to_string).collect(), trusted })
}

/// Set this node's direct trust in a ledger (an operator's decision).
#[utoipa::path(post, path = "/mesh/trust", tag = "mesh", request_body = TrustSet,
    responses((status = 200, body = TrustShow), (status = 400, body = ErrorBody)))]
pub(crate) async fn trust_set(
    State(state): State<AppState>,
    Json(req): Json<TrustSet>,
) -> Result<Json<TrustShow>, ApiError> {
    let id = ledger_param(&req.ledger_id)?;
    let node = state.control.node();
    let now = onoal_engine::time::now_ms();
    node.trust().set(id, req.level, req.reason, req.expires_ms, now).map_err(trust_error)?;
    Ok(Json(node.trust().show(id, now).into()))
}

/// How this node trusts one ledger, with the path.
#[utoipa::path(get, path = "/mesh/trust/{ledger_id}", tag = "mesh",
    responses((status = 200, body = TrustShow), (status = 400, body = ErrorBody)))]
pub(crate) async fn trust_show(
    State(state): State<AppState>,
    Path(ledger_id): Path<String>,
) -> Result<Json<TrustShow>, ApiError> {
    let id = ledger_param(&ledger_id)?;
    Ok(Json(state.control.node().trust().show(id, onoal_engine::time::now_ms()).into()))
}

/// How one ledger trusts another as far as this node knows (its decisions and the signed
/// statements it holds), with the path.
#[utoipa::path(get, path = "/mesh/trust/path/{from}/{to}", tag = "mesh",
    responses((status = 200, body = TrustShow), (status = 400, body = ErrorBody)))]
pub(crate) async fn trust_path(
    State(state): State<AppState>,
    Path((from, to)): Path<(String, String)>,
) -> Result<Json<TrustShow>, ApiError> {
    let (from, to) = (ledger_param(&from)?, ledger_param(&to)?);
    let now = onoal_engine::time::now_ms();
    Ok(Json(state.control.node().trust().path(from, to, now).into()))
}

/// Make a ledger a trust anchor (1.0, a start of chains).
#[utoipa::path(post, path = "/mesh/trust/anchors", tag = "mesh", request_body = TrustAnchor,
    responses((status = 200, body = TrustShow), (status = 400, body = ErrorBody)))]
pub(crate) async fn trust_anchor_add(
    State(state): State<AppState>,
    Json(req): Json<TrustAnchor>,
) -> Result<Json<TrustShow>, ApiError> {
    let id = ledger_param(&req.ledger_id)?;
    let node = state.control.node();
    node.trust().set_anchor(id, true).map_err(trust_error)?;
    Ok(Json(node.trust().show(id, onoal_engine::time::now_ms()).into()))
}

/// Stop treating a ledger as an anchor.
#[utoipa::path(delete, path = "/mesh/trust/anchors/{ledger_id}", tag = "mesh",
    responses((status = 200, body = TrustShow), (status = 400, body = ErrorBody)))]
pub(crate) async fn trust_anchor_remove(
    State(state): State<AppState>,
    Path(ledger_id): Path<String>,
) -> Result<Json<TrustShow>, ApiError> {
    let id = ledger_param(&ledger_id)?;
    let node = state.control.node();
    node.trust().set_anchor(id, false).map_err(trust_error)?;
    Ok(Json(node.trust().show(id, onoal_engine::time::now_ms()).into()))
}

/// One stream's visibility.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamVisibility {
    /// The stream.
    pub stream: String,
    /// private, public, or trusted:T.
    pub visibility: String,
}

/// This ledger's visibility policy: who may read which streams.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VisibilityShow {
    /// Whose.
    pub ledger_id: String,
    /// Increases with every change (0: never set, the default applies).
    pub version: u64,
    /// When it was signed (ms since the epoch; 0 when never set).
    pub issued_ms: u64,
    /// Every stream not named below: private, public, or trusted:T.
    pub default: String,
    /// Streams with their own visibility.
    pub streams: Vec<StreamVisibility>,
    /// Whether it is signed (every policy set by an operator is).
    pub signed: bool,
}

impl From<crate::trust::visibility::VisibilityPolicy> for VisibilityShow {
    fn from(p: crate::trust::visibility::VisibilityPolicy) -> Self {
        Self {
            ledger_id: p.ledger.to_string(),
            version: p.version,
            issued_ms: p.issued_ms,
            default: p.default.to_string(),
            streams: p
                .streams
                .iter()
                .map(|(s, v)| StreamVisibility { stream: s.clone(), visibility: v.to_string() })
                .collect(),
            signed: !p.signature.is_empty(),
        }
    }
}

/// Set a stream's visibility, or the default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilitySet {
    /// The stream; absent: the default of every stream not named.
    pub stream: Option<String>,
    /// private, public, or trusted:T (0 < T <= 1).
    pub visibility: String,
}

/// This ledger's visibility policy (or, with `ledger_id`, the newest held for a replica).
#[utoipa::path(get, path = "/mesh/visibility", tag = "mesh",
    params(("ledger_id" = Option<String>, Query, description = "a replicated ledger")),
    responses((status = 200, body = VisibilityShow), (status = 400, body = ErrorBody)))]
pub(crate) async fn visibility(
    State(state): State<AppState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<VisibilityShow>, ApiError> {
    let node = state.control.node();
    let id = match q.get("ledger_id") {
        Some(t) => ledger_param(t)?,
        None => node.trust().me(),
    };
    Ok(Json(node.trust().policy(&id).into()))
}

/// Set who may read a stream (or every stream not named): the next version of this ledger's
/// signed policy, in force for the next request.
#[utoipa::path(post, path = "/mesh/visibility", tag = "mesh", request_body = VisibilitySet,
    responses((status = 200, body = VisibilityShow), (status = 400, body = ErrorBody)))]
pub(crate) async fn visibility_set(
    State(state): State<AppState>,
    Json(req): Json<VisibilitySet>,
) -> Result<Json<VisibilityShow>, ApiError> {
    let v: crate::trust::visibility::Visibility =
        req.visibility.parse().map_err(|e: crate::trust::visibility::VisibilityError| {
            ApiError::bad_request(e.to_string())
        })?;
    let node = state.control.node();
    let p = node
        .trust()
        .set_visibility(req.stream.as_deref(), v, onoal_engine::time::now_ms())
        .map_err(trust_error)?;
    Ok(Json(p.into()))
}

/// What to sync.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The ledger to replicate.
    pub ledger_id: String,
    /// HOST:PORT of a pinned peer that serves it (default: its pinned address).
    pub from: Option<String>,
    /// `full`, `incremental` (default) or `checkpoint`.
    pub mode: Option<String>,
    /// Keep following it (answers at once; see GET /mesh/follows).
    #[serde(default)]
    pub follow: bool,
    /// Filtered sync: only entries of this stream.
    pub stream: Option<String>,
    /// Only entries of this type.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub entry_type: Option<String>,
    /// Only entries about this subject OID.
    pub subject: Option<String>,
    /// Only entries by this issuer OID.
    pub issuer: Option<String>,
    /// Only entries at or after this time (ms).
    pub since: Option<u64>,
    /// Only entries at or before this time (ms).
    pub until: Option<u64>,
    /// Accept checkpoints of this ledger (now and later) only with this many cosignatures of
    /// the witnesses the node trusts (`serve --trust-witness`); 0 lifts the requirement.
    pub require_witnesses: Option<usize>,
}

/// The answer to a sync request: a summary, or that following started.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SyncAnswer {
    /// What the sync did.
    Synced(SyncSummaryView),
    /// Following started.
    Following(FollowView),
}

/// Syncs a replica once (verified), or starts following it.
#[utoipa::path(post, path = "/mesh/sync", tag = "mesh", request_body = SyncRequest,
    responses((status = 200, body = SyncAnswer), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub(crate) async fn sync(
    State(state): State<AppState>,
    Body(r): Body<SyncRequest>,
) -> Result<Json<SyncAnswer>, ApiError> {
    let id = parse_ledger_id(&r.ledger_id)?;
    let mode = match r.mode.as_deref() {
        None | Some("incremental") => SyncMode::Incremental,
        Some("full") => SyncMode::Full,
        Some("checkpoint") => SyncMode::Checkpoint,
        Some(m) => {
            return Err(ApiError::bad_request(format!(
                "mode {m:?} is not one of full, incremental, checkpoint"
            )));
        }
    };
    let filter = Filter {
        stream: r.stream,
        entry_type: r.entry_type,
        subject: r.subject,
        issuer: r.issuer,
        since_ms: r.since,
        until_ms: r.until,
    };
    filter.validate().map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(k) = r.require_witnesses {
        state.control.node().require_witnesses(id, k).map_err(|e| {
            ApiError::bad_request(e).hint("start the node with --trust-witness VKEY per witness")
        })?;
    }
    if !filter.is_empty() && (r.follow || mode != SyncMode::Incremental) {
        return Err(ApiError::bad_request(
            "a filtered sync (stream, type, ...) takes neither follow nor mode",
        ));
    }
    if r.follow {
        if mode != SyncMode::Incremental {
            return Err(ApiError::bad_request("follow takes no mode"));
        }
        state.control.follow(id, r.from)?;
        let view = state
            .control
            .follows()
            .into_iter()
            .find(|f| f.ledger_id == id.to_string())
            .ok_or_else(|| ApiError::internal("the follow stopped at once"))?;
        return Ok(Json(SyncAnswer::Following(view)));
    }
    let summary = state.control.sync(id, r.from.as_deref(), mode, &filter).await?;
    Ok(Json(SyncAnswer::Synced(SyncSummaryView::from(&summary))))
}

/// Followed ledgers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FollowList {
    /// By ledger id.
    pub follows: Vec<FollowView>,
}

/// Ledgers this node follows and how their syncs went.
#[utoipa::path(get, path = "/mesh/follows", tag = "mesh", responses((status = 200, body = FollowList)))]
pub(crate) async fn follows(State(state): State<AppState>) -> Json<FollowList> {
    Json(FollowList { follows: state.control.follows() })
}

/// What unfollowing did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Unfollowed {
    /// The ledger.
    pub ledger_id: String,
    /// False: it was not followed.
    pub stopped: bool,
}

/// Stops following a ledger (its replica stays).
#[utoipa::path(delete, path = "/mesh/follows/{ledger_id}", tag = "mesh",
    params(("ledger_id" = String, Path, description = "The followed ledger")),
    responses((status = 200, body = Unfollowed), (status = 400, body = ErrorBody)))]
pub(crate) async fn unfollow(
    State(state): State<AppState>,
    Path(ledger_id): Path<String>,
) -> Result<Json<Unfollowed>, ApiError> {
    let id = parse_ledger_id(&ledger_id)?;
    Ok(Json(Unfollowed { ledger_id: id.to_string(), stopped: state.control.unfollow(id) }))
}
