//! The routing driver: builds the routing core's table from what the node knows (pinned peers
//! and connected members as neighbours, with this node's trust in each; discovered records as
//! known OIDs; the learned routes in the `routing` column family) and feeds it outcomes.

use onoal_engine::time::now_ms;
use onoal_engine::{AuxTable, Ledger, LedgerId};

use super::Node;
use crate::peer::PeerStore;
use crate::routing::{
    Destination, Neighbour, NoPath, Path, RouteEntry, RoutingConfig, RoutingTable,
};
use crate::trust::store::TrustStore;

/// The learned routes held in the `routing` column family (key: target ‖ next hop).
///
/// # Errors
/// A storage error, or a row that does not decode.
pub fn stored_routes(ledger: &Ledger) -> Result<Vec<RouteEntry>, String> {
    ledger
        .aux_scan(AuxTable::Routing)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(k, v)| {
            postcard::from_bytes(&v)
                .map_err(|_| format!("the routing table holds a damaged row {}", hex::encode(k)))
        })
        .collect()
}

fn store_route(ledger: &Ledger, r: &RouteEntry) -> Result<(), String> {
    let mut key = r.target.as_bytes().to_vec();
    key.extend_from_slice(r.next_hop.as_bytes());
    let value = postcard::to_stdvec(r).map_err(|e| e.to_string())?;
    ledger.aux_put(AuxTable::Routing, &key, &value).map_err(|e| e.to_string())
}

/// The table from the stored state: pinned peers this node reached (with an OID, from their
/// certificate or a known record) and `members` (ledger, latency) as neighbours, `known` records' OIDs, and
/// the stored routes.
///
/// # Errors
/// A storage error.
pub fn build_table(
    ledger: &Ledger,
    peers: &PeerStore,
    trust: &TrustStore,
    known: &[(LedgerId, String)],
    members: &[(LedgerId, Option<u32>)],
) -> Result<RoutingTable, String> {
    let me = ledger.identity();
    let now = now_ms();
    let mut t = RoutingTable::new(me.ledger_id, me.oid.as_str());
    for (id, oid) in known {
        t.set_known(*id, oid);
    }
    let oid_of = |id: &LedgerId, own: Option<&String>| {
        own.cloned().or_else(|| known.iter().find(|(k, _)| k == id).map(|(_, o)| o.clone()))
    };
    let latency_of = |id: &LedgerId| members.iter().find(|(m, _)| m == id).and_then(|(_, l)| *l);
    let pinned = peers.list().map_err(|e| e.to_string())?;
    // A pinned peer with no address that this node never reached (a key pinned to check its
    // checkpoints) is not a neighbour.
    for p in pinned.iter().filter(|p| p.last_seen_ms > 0 || !p.addresses.is_empty()) {
        if let Some(oid) = oid_of(&p.ledger_id, p.oid.as_ref()) {
            let level = trust.level(me.ledger_id, &p.ledger_id, now);
            let latency_ms = latency_of(&p.ledger_id);
            t.set_neighbour(Neighbour { ledger: p.ledger_id, oid, trust: level, latency_ms });
        }
    }
    for (id, latency_ms) in members {
        if pinned.iter().any(|p| p.ledger_id == *id) {
            continue;
        }
        if let Some(oid) = oid_of(id, None) {
            let level = trust.level(me.ledger_id, id, now);
            t.set_neighbour(Neighbour { ledger: *id, oid, trust: level, latency_ms: *latency_ms });
        }
    }
    for r in stored_routes(ledger)? {
        t.put_route(r);
    }
    Ok(t)
}

impl Node {
    /// The routing table as this node knows it now (storage reads: call off the async
    /// workers).
    ///
    /// # Errors
    /// A storage error.
    pub fn routing_table(&self) -> Result<RoutingTable, String> {
        let status = self.discovery_status();
        let known: Vec<(LedgerId, String)> =
            status.known.iter().map(|k| (k.record.ledger_id, k.record.oid.clone())).collect();
        let members: Vec<(LedgerId, Option<u32>)> = self
            .connections()
            .into_iter()
            .filter(|m| m.status.as_str() == "connected")
            // A node that keeps to its links routes over them only.
            .filter(|m| !self.discovery_config_links_only() || self.is_link(&m.public_key))
            .map(|m| (m.ledger_id, m.latency_ms))
            .collect();
        build_table(&self.inner.ledger, &self.inner.peers, &self.inner.trust, &known, &members)
    }

    /// The routing settings (`[routing]` in the config file).
    pub fn routing_config(&self) -> RoutingConfig {
        self.inner.routing.lock().clone()
    }

    /// Replaces the routing settings.
    pub fn set_routing_config(&self, config: RoutingConfig) {
        *self.inner.routing.lock() = config;
    }

    /// Where a message to `to` would go, and why (`onoal route`). Storage reads: call off the
    /// async workers.
    ///
    /// # Errors
    /// [`NoPath`] (a storage error is reported as one).
    pub fn route(&self, to: &Destination) -> Result<Path, NoPath> {
        let table = self.routing_table().map_err(|e| NoPath::Unreachable {
            to: to.to_string(),
            reasons: vec![format!("the routing table cannot be read: {e}")],
        })?;
        table.find_path(to, &self.routing_config())
    }

    /// Data of `target` came back through `via` (a relay, or `target` itself) verified, or
    /// not: the route's score moves and is stored (best effort, off the async workers).
    pub(crate) fn route_outcome(&self, target: LedgerId, via: LedgerId, ok: bool, latency_ms: u32) {
        let hops = if target == via { 1 } else { 2 };
        self.route_outcome_hops(target, via, ok, hops, latency_ms);
    }

    /// As [`Self::route_outcome`], with the number of hops the answer travelled.
    pub(crate) fn route_outcome_hops(
        &self,
        target: LedgerId,
        via: LedgerId,
        ok: bool,
        hops: u32,
        latency_ms: u32,
    ) {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(mut table) = node.routing_table() else { return };
            let now = now_ms();
            let row = if ok {
                table.succeeded(target, via, hops, latency_ms, now)
            } else {
                table.failed(target, via, now)
            };
            if let Some(r) = row
                && let Err(e) = store_route(&node.inner.ledger, &r)
            {
                tracing::warn!(error = %e, "cannot store a route");
            }
        });
    }
}
