//! Routing by OID, sans-I/O (the seed's Mesh Routing): the OID distance, the routing rules
//! (same domain: direct; a sub-organisation: through its parent; another domain: through a
//! hub), the routing table with the seed's mesh_routing columns, and `findPath` in the seed's
//! order — a direct peer, then an OID-prefix path, then a DHT lookup, then flooding. Time comes
//! in as `now_ms`, outcomes as calls; nothing here does I/O.
//!
//! A *neighbour* is a ledger this node can reach itself (pinned, or a connected member) with its
//! OID and this node's trust in it. A *route* is what this node learned about reaching a target
//! through a neighbour (from an answer that came back that way), scored by its outcomes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

pub mod forward;
pub mod seal;
#[cfg(test)]
mod tests;

/// The seed's OID distance: the parts of both OIDs (split at `:`) that are not their common
/// prefix. `oid:onoal:org:a` / `oid:onoal:org:b` → 2; `oid:onoal:org:a` / `oid:onoal:gov:b` → 4.
pub fn oid_distance(a: &str, b: &str) -> u32 {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split(':').collect(), b.split(':').collect());
    let common = pa.iter().zip(&pb).take_while(|(x, y)| x == y).count();
    u32::try_from(pa.len() + pb.len() - 2 * common).unwrap_or(u32::MAX)
}

/// The domain of an OID: its first three parts (`oid:onoal:org`).
pub fn oid_domain(oid: &str) -> &str {
    match oid.match_indices(':').nth(2) {
        Some((i, _)) => &oid[..i],
        None => oid,
    }
}

/// Whether `parent` is `child` or an ancestor of it in the OID hierarchy.
pub fn oid_is_within(child: &str, parent: &str) -> bool {
    child == parent || child.strip_prefix(parent).is_some_and(|rest| rest.starts_with(':'))
}

/// A ledger this node reaches itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Its ledger.
    pub ledger: LedgerId,
    /// Its OID.
    pub oid: String,
    /// This node's trust in it.
    pub trust: f64,
    /// Smoothed round trip, when measured.
    pub latency_ms: Option<u32>,
}

/// What this node learned about reaching `target` through `next_hop` (the seed's
/// mesh_routing row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// The target's OID (the prefix this row routes).
    pub oid_prefix: String,
    /// The target.
    pub target: LedgerId,
    /// The neighbour to send to.
    pub next_hop: LedgerId,
    /// Hops it took.
    pub distance: u32,
    /// This node's trust in the next hop when last used.
    pub trust_level: f64,
    /// Smoothed share of answers that came back verified (0 to 1).
    pub success_rate: f64,
    /// Smoothed round trip of the answers.
    pub avg_latency_ms: Option<u32>,
    /// Last used (ms since the epoch).
    pub last_used_ms: Option<u64>,
    /// Created.
    pub created_ms: u64,
    /// Last changed.
    pub updated_ms: u64,
}

/// Which strategies `findPath` may use, and its limits (`[routing]` in the config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// A neighbour that is the target.
    pub direct: bool,
    /// A neighbour closer in OID space, or a learned route.
    pub oid: bool,
    /// Look the target's record up in the DHT and connect to it.
    pub dht: bool,
    /// Send to every neighbour with a TTL.
    pub flood: bool,
    /// The largest OID distance an OID-prefix next hop may be from the target.
    pub max_distance: u32,
    /// Hops a flooded or forwarded message may take.
    pub ttl: u8,
    /// The least trust a next hop needs (flooding too).
    pub min_trust: f64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            direct: true,
            oid: true,
            dht: true,
            flood: true,
            max_distance: 16,
            ttl: 5,
            min_trust: 0.25,
        }
    }
}

/// Where a message should go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A ledger by id.
    Ledger(LedgerId),
    /// The ledger that owns an OID.
    Oid(String),
}

/// How `findPath` routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The target is a neighbour.
    Direct,
    /// Through the neighbour closest to the target in OID space (or a learned route).
    OidPrefix,
    /// Look the target up in the DHT, then connect to it.
    Dht,
    /// To every trusted neighbour, with a TTL.
    Flood,
}

/// What `findPath` decided, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Path {
    /// The strategy.
    pub strategy: Strategy,
    /// The target, when known.
    pub target: Option<LedgerId>,
    /// The target's OID, when known.
    pub target_oid: Option<String>,
    /// The neighbours to send to (one, except when flooding).
    pub next_hops: Vec<LedgerId>,
    /// OID distance from the (first) next hop to the target.
    pub distance: Option<u32>,
    /// Hops the message may take.
    pub ttl: u8,
    /// Why, in order: what was tried and what decided.
    pub reasons: Vec<String>,
}

/// Why no path exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoPath {
    /// Every enabled strategy was tried.
    #[error("no route to {to}: {}", reasons.join("; "))]
    Unreachable {
        /// The destination as given.
        to: String,
        /// What was tried.
        reasons: Vec<String>,
    },
}

/// The routing table of one node.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    me: LedgerId,
    my_oid: String,
    neighbours: BTreeMap<LedgerId, Neighbour>,
    /// Ledgers known from discovery (signed records): their OIDs.
    known: BTreeMap<LedgerId, String>,
    routes: BTreeMap<(LedgerId, LedgerId), RouteEntry>,
}

/// Weight of a new outcome in the smoothed success rate and latency.
const SMOOTHING: f64 = 0.2;

impl RoutingTable {
    /// The table of ledger `me` (OID `my_oid`), empty.
    pub fn new(me: LedgerId, my_oid: &str) -> Self {
        Self {
            me,
            my_oid: my_oid.to_owned(),
            neighbours: BTreeMap::new(),
            known: BTreeMap::new(),
            routes: BTreeMap::new(),
        }
    }

    /// A ledger this node reaches itself (replaces what was known of it).
    pub fn set_neighbour(&mut self, n: Neighbour) {
        if n.ledger != self.me {
            self.known.insert(n.ledger, n.oid.clone());
            self.neighbours.insert(n.ledger, n);
        }
    }

    /// No longer reachable directly.
    pub fn remove_neighbour(&mut self, ledger: &LedgerId) {
        self.neighbours.remove(ledger);
    }

    /// A ledger known from a checked record.
    pub fn set_known(&mut self, ledger: LedgerId, oid: &str) {
        if ledger != self.me {
            self.known.insert(ledger, oid.to_owned());
        }
    }

    /// The neighbours.
    pub fn neighbours(&self) -> impl Iterator<Item = &Neighbour> {
        self.neighbours.values()
    }

    /// The learned routes.
    pub fn routes(&self) -> impl Iterator<Item = &RouteEntry> {
        self.routes.values()
    }

    /// Restores a stored route.
    pub fn put_route(&mut self, r: RouteEntry) {
        self.routes.insert((r.target, r.next_hop), r);
    }

    /// An answer from `target` came back verified through `next_hop` after `hops` hops: the
    /// route is learned or its score rises. Returns the row to store.
    pub fn succeeded(
        &mut self,
        target: LedgerId,
        next_hop: LedgerId,
        hops: u32,
        latency_ms: u32,
        now_ms: u64,
    ) -> Option<RouteEntry> {
        self.outcome(target, next_hop, hops, Some(latency_ms), now_ms)
    }

    /// A message to `target` through `next_hop` was not answered (or not verified): its score
    /// falls. Returns the row to store.
    pub fn failed(
        &mut self,
        target: LedgerId,
        next_hop: LedgerId,
        now_ms: u64,
    ) -> Option<RouteEntry> {
        let r = self.routes.get_mut(&(target, next_hop))?;
        r.success_rate *= 1.0 - SMOOTHING;
        r.last_used_ms = Some(now_ms);
        r.updated_ms = now_ms;
        Some(r.clone())
    }

    fn outcome(
        &mut self,
        target: LedgerId,
        next_hop: LedgerId,
        hops: u32,
        latency_ms: Option<u32>,
        now_ms: u64,
    ) -> Option<RouteEntry> {
        let trust = self.neighbours.get(&next_hop)?.trust;
        let oid = self.known.get(&target).cloned().unwrap_or_default();
        let r = self.routes.entry((target, next_hop)).or_insert_with(|| RouteEntry {
            oid_prefix: oid,
            target,
            next_hop,
            distance: hops,
            trust_level: trust,
            success_rate: 0.0,
            avg_latency_ms: None,
            last_used_ms: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        });
        r.success_rate = r.success_rate * (1.0 - SMOOTHING) + SMOOTHING;
        r.distance = hops;
        r.trust_level = trust;
        if let Some(l) = latency_ms {
            let smoothed = r.avg_latency_ms.map_or(f64::from(l), |a| {
                f64::from(a) * (1.0 - SMOOTHING) + f64::from(l) * SMOOTHING
            });
            r.avg_latency_ms = Some(smoothed.round() as u32);
        }
        r.last_used_ms = Some(now_ms);
        r.updated_ms = now_ms;
        Some(r.clone())
    }

    /// The seed's `findPath`: a direct peer, then an OID-prefix path (a learned route, or the
    /// neighbour closest to the target in OID space: a sub-organisation's parent, a peer of the
    /// same domain, or a hub towards another domain), then a DHT lookup, then flooding. Next
    /// hops below `config.min_trust` are never chosen; among equals the more trusted, then the
    /// faster one wins.
    ///
    /// # Errors
    /// [`NoPath`] with what was tried.
    pub fn find_path(&self, to: &Destination, config: &RoutingConfig) -> Result<Path, NoPath> {
        let mut reasons = Vec::new();
        let (target, target_oid) = match to {
            Destination::Ledger(id) => (Some(*id), self.known.get(id).cloned()),
            Destination::Oid(oid) => {
                let owner = self.known.iter().find(|(_, o)| *o == oid).map(|(id, _)| *id);
                (owner, Some(oid.clone()))
            }
        };
        let path = |strategy, next_hops: Vec<LedgerId>, distance, reasons| Path {
            strategy,
            target,
            target_oid: target_oid.clone(),
            next_hops,
            distance,
            ttl: config.ttl,
            reasons,
        };
        let trusted = |n: &&Neighbour| n.trust >= config.min_trust;
        if target == Some(self.me) {
            reasons.push("the destination is this ledger".to_owned());
            return Err(NoPath::Unreachable { to: to.to_string(), reasons });
        }

        // The best learned route through another ledger, if it ever succeeded.
        let learned = target.and_then(|t| {
            self.routes
                .range((t, LedgerId::from_bytes([0; 16]))..)
                .take_while(|((target, _), _)| *target == t)
                .map(|(_, r)| r)
                .filter(|r| r.next_hop != t && r.success_rate > 0.0)
                .filter(|r| self.neighbours.get(&r.next_hop).is_some_and(|n| trusted(&n)))
                .max_by(|a, b| {
                    a.success_rate.total_cmp(&b.success_rate).then(b.distance.cmp(&a.distance))
                })
        });
        let direct_score =
            target.and_then(|t| self.routes.get(&(t, t))).map_or(0.0, |r| r.success_rate);

        // 1. A direct peer, unless answers came back through another ledger and never from it.
        if config.direct {
            match target.and_then(|t| self.neighbours.get(&t)) {
                Some(n)
                    if trusted(&n) && learned.is_some_and(|r| r.success_rate > direct_score) =>
                {
                    reasons.push(format!(
                        "{} is a neighbour, but answers came back through another ledger more often (direct {direct_score:.2})",
                        n.oid
                    ));
                }
                Some(n) if trusted(&n) => {
                    reasons.push(format!("{} is a neighbour (trust {:.2})", n.oid, n.trust));
                    return Ok(path(Strategy::Direct, vec![n.ledger], Some(0), reasons));
                }
                Some(n) => reasons.push(format!(
                    "{} is a neighbour but trusted {:.2}, below {:.2}",
                    n.oid, n.trust, config.min_trust
                )),
                None => reasons.push("not a neighbour".to_owned()),
            }
        }

        // 2. An OID-prefix path: a learned route, else the closest neighbour in OID space.
        if config.oid {
            if let Some(r) = learned {
                reasons.push(format!(
                    "a learned route through {} ({} hops, success {:.2})",
                    r.next_hop, r.distance, r.success_rate
                ));
                return Ok(path(Strategy::OidPrefix, vec![r.next_hop], Some(r.distance), reasons));
            }
            match &target_oid {
                None => reasons.push("the target's OID is unknown".to_owned()),
                Some(oid) => {
                    let mine = oid_distance(&self.my_oid, oid);
                    let best = self
                        .neighbours
                        .values()
                        .filter(trusted)
                        .map(|n| (oid_distance(&n.oid, oid), n))
                        .filter(|(d, _)| *d < mine && *d <= config.max_distance)
                        .min_by(|(da, a), (db, b)| {
                            da.cmp(db)
                                .then(b.trust.total_cmp(&a.trust))
                                .then(
                                    a.latency_ms
                                        .unwrap_or(u32::MAX)
                                        .cmp(&b.latency_ms.unwrap_or(u32::MAX)),
                                )
                                .then(a.ledger.cmp(&b.ledger))
                        });
                    match best {
                        Some((d, n)) => {
                            let rule = if oid_domain(oid) != oid_domain(&self.my_oid) {
                                format!(
                                    "{oid} is in another domain: through the hub {} (OID distance {d}, this ledger's {mine})",
                                    n.oid
                                )
                            } else if oid_is_within(oid, &n.oid) {
                                format!("{oid} is a sub-organisation of {}: through its parent", n.oid)
                            } else {
                                format!("{} is in the same domain ({})", n.oid, oid_domain(oid))
                            };
                            reasons.push(rule);
                            return Ok(path(Strategy::OidPrefix, vec![n.ledger], Some(d), reasons));
                        }
                        None => reasons.push(format!(
                            "no trusted neighbour is closer to {oid} than this ledger (OID distance {mine})"
                        )),
                    }
                }
            }
        }

        // 3. A DHT lookup of the target's record, then a direct connection.
        if config.dht {
            match (target, to) {
                (Some(t), _) => {
                    reasons.push(format!("look {t} up in the DHT and connect to it"));
                    return Ok(path(Strategy::Dht, Vec::new(), None, reasons));
                }
                (None, Destination::Oid(oid)) => {
                    reasons.push(format!("look {oid} up in the DHT (by OID prefix) and connect"));
                    return Ok(path(Strategy::Dht, Vec::new(), None, reasons));
                }
                _ => reasons.push("nothing to look up".to_owned()),
            }
        }

        // 4. Flooding: every trusted neighbour, with the TTL.
        if config.flood {
            let hops: Vec<LedgerId> =
                self.neighbours.values().filter(trusted).map(|n| n.ledger).collect();
            if hops.is_empty() {
                reasons.push("no trusted neighbour to flood to".to_owned());
            } else {
                reasons.push(format!("flood to {} neighbours, TTL {}", hops.len(), config.ttl));
                return Ok(path(Strategy::Flood, hops, None, reasons));
            }
        }
        Err(NoPath::Unreachable { to: to.to_string(), reasons })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ledger(id) => write!(f, "{id}"),
            Self::Oid(oid) => f.write_str(oid),
        }
    }
}
