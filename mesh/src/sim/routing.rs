//! `onoal sim --routing`: routed queries over a mesh of thousands of ledgers whose OIDs form a
//! realistic hierarchy (domains with a hub, organisations, departments), each node running the
//! real routing core (`RoutingTable::find_path`) and forwarding core (`Forwarder`: seen-cache,
//! TTL, loops, flooding when it has no next hop). Messages move hop by hop through a seeded
//! network with loss; the report counts what arrived, in how many hops, with how many messages,
//! how many copies flooding delivers per node, and how routing fares while the domains are
//! split in two and after the split heals.
//!
//! The links: a department links to its organisation and to two sibling departments; an
//! organisation to its domain's hub and to two organisations of its domain; every hub to every
//! other hub. Trust 0.5 everywhere (pinned peers).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde::Serialize;

use onoal_engine::LedgerId;

use crate::routing::forward::{Forward, Forwarder, Routed};
use crate::routing::{Destination, Neighbour, RoutingConfig, RoutingTable};

/// Settings of a routing run.
#[derive(Clone, Debug)]
pub struct RoutingSimConfig {
    /// Nodes (at least the hubs: one per domain).
    pub nodes: usize,
    /// Seed of the topology, the queries and the loss.
    pub seed: u64,
    /// Probability that one hop's message is lost.
    pub loss: f64,
    /// Routed queries to run in each phase.
    pub queries: usize,
    /// Also split the domains in two (no hub links across) and route during the split.
    pub partition: bool,
}

/// What a routing run measured.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RoutingSimReport {
    /// Nodes.
    pub nodes: usize,
    /// Domains (each with one hub).
    pub domains: usize,
    /// Organisations.
    pub organisations: usize,
    /// Links (undirected).
    pub links: usize,
    /// Routed queries from a random node to a random node's OID.
    pub queries: usize,
    /// Share that reached the destination.
    pub route_success_rate: f64,
    /// Hops of the delivered ones, median.
    pub route_hops_p50: u32,
    /// Hops of the delivered ones, 99th percentile.
    pub route_hops_p99: u32,
    /// Messages sent per query (every hop of every copy), mean.
    pub messages_per_query: f64,
    /// Floods (routing by flooding only, TTL 8) from random nodes.
    pub floods: usize,
    /// Share of nodes a flood reached, mean.
    pub flood_reach: f64,
    /// Copies beyond the first that one node received in one flood: the most.
    pub flood_duplicates_per_node_max: u32,
    /// The same, mean over the nodes a flood reached.
    pub flood_duplicates_per_node_mean: f64,
    /// With `partition`: success of queries across the split while it lasts (the rest of
    /// the mesh keeps routing: success within each side).
    pub partitioned_success_rate_across: Option<f64>,
    /// With `partition`: success within one side during the split.
    pub partitioned_success_rate_within: Option<f64>,
    /// With `partition`: success once the split healed.
    pub healed_success_rate: Option<f64>,
    /// Wall-clock seconds of the run (the machine's, not the simulation's).
    pub wall_s: f64,
}

const DOMAINS: [&str; 5] = ["org", "gov", "edu", "com", "net"];

struct Mesh {
    oids: Vec<String>,
    links: Vec<Vec<usize>>,
    domain_of: Vec<usize>,
    rng: u64,
}

fn id(i: usize) -> LedgerId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    LedgerId::from_bytes(b)
}

fn index(l: &LedgerId) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&l.as_bytes()[..8]);
    u64::from_be_bytes(b) as usize
}

impl Mesh {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn link(&mut self, a: usize, b: usize) {
        if a != b && !self.links[a].contains(&b) {
            self.links[a].push(b);
            self.links[b].push(a);
        }
    }

    /// Hubs first, then about one organisation per 20 nodes, the rest departments.
    fn build(nodes: usize, seed: u64) -> Self {
        let domains = DOMAINS.len().min(nodes.max(1));
        let organisations = ((nodes.saturating_sub(domains)) / 20).max(1).min(nodes - domains);
        let mut m = Self {
            oids: Vec::with_capacity(nodes),
            links: vec![Vec::new(); nodes],
            domain_of: Vec::with_capacity(nodes),
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        };
        for (d, name) in DOMAINS.iter().enumerate().take(domains) {
            m.oids.push(format!("oid:onoal:{name}"));
            m.domain_of.push(d);
        }
        for h in 0..domains {
            for g in h + 1..domains {
                m.link(h, g);
            }
        }
        let mut orgs_of: Vec<Vec<usize>> = vec![Vec::new(); domains];
        for o in 0..organisations {
            let i = m.oids.len();
            let d = o % domains;
            m.oids.push(format!("oid:onoal:{}:o{o}", DOMAINS[d]));
            m.domain_of.push(d);
            m.link(i, d);
            orgs_of[d].push(i);
        }
        for orgs in orgs_of {
            for &o in &orgs {
                for _ in 0..2 {
                    let other = orgs[m.below(orgs.len())];
                    m.link(o, other);
                }
            }
        }
        let first_org = domains;
        let mut depts_of: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        while m.oids.len() < nodes {
            let i = m.oids.len();
            let o = first_org + m.below(organisations);
            let n = depts_of.get(&o).map_or(0, Vec::len);
            let parent = m.oids[o].clone();
            m.oids.push(format!("{parent}:d{n}"));
            let d = m.domain_of[o];
            m.domain_of.push(d);
            m.link(i, o);
            depts_of.entry(o).or_default().push(i);
        }
        for depts in depts_of.into_values() {
            for &dep in &depts {
                for _ in 0..2 {
                    let other = depts[m.below(depts.len())];
                    m.link(dep, other);
                }
            }
        }
        m
    }

    fn tables(&self, cut: &dyn Fn(usize, usize) -> bool) -> Vec<(RoutingTable, Forwarder)> {
        (0..self.oids.len())
            .map(|i| {
                let mut t = RoutingTable::new(id(i), &self.oids[i]);
                for &j in &self.links[i] {
                    if !cut(i, j) {
                        t.set_neighbour(Neighbour {
                            ledger: id(j),
                            oid: self.oids[j].clone(),
                            trust: 0.5,
                            latency_ms: None,
                        });
                    }
                }
                (t, Forwarder::new(id(i), &self.oids[i]))
            })
            .collect()
    }
}

/// One routed message from `from` to `to`'s OID, hop by hop through the forwarding cores:
/// (delivered, hops of the first delivery, messages sent, copies received per node).
fn route(
    nodes: &mut [(RoutingTable, Forwarder)],
    mesh: &mut Mesh,
    message: u64,
    from: usize,
    to: Destination,
    config: &RoutingConfig,
    loss: f64,
) -> (Option<u32>, u64, BTreeMap<usize, u32>) {
    let mut mid = [0u8; 16];
    mid[..8].copy_from_slice(&message.to_be_bytes());
    let first = Routed { id: mid, to, ttl: config.ttl, path: Vec::new() };
    let mut queue = VecDeque::from([(from, None, first, 0u32)]);
    let (mut delivered, mut sent) = (None, 0u64);
    let mut copies: BTreeMap<usize, u32> = BTreeMap::new();
    while let Some((at, came_from, msg, hops)) = queue.pop_front() {
        if came_from.is_some() {
            *copies.entry(at).or_default() += 1;
        }
        let (table, fwd) = &mut nodes[at];
        match fwd.handle(&msg, came_from, table, config, 1_000) {
            Forward::Deliver => {
                delivered.get_or_insert(hops);
            }
            Forward::Send { to, message, .. } => {
                for h in to {
                    sent += 1;
                    let lost = loss > 0.0 && (mesh.next() % 1_000_000) as f64 / 1e6 < loss;
                    if !lost {
                        queue.push_back((index(&h), Some(id(at)), message.clone(), hops + 1));
                    }
                }
            }
            Forward::Drop(_) => {}
        }
    }
    (delivered, sent, copies)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the routing simulation.
pub fn run(config: &RoutingSimConfig) -> RoutingSimReport {
    let wall = Instant::now();
    let n = config.nodes.max(DOMAINS.len() + 2);
    let mut mesh = Mesh::build(n, config.seed);
    let domains = DOMAINS.len();
    let organisations = mesh.oids.iter().filter(|o| o.split(':').count() == 4).count();
    let links = mesh.links.iter().map(Vec::len).sum::<usize>() / 2;
    let routed = RoutingConfig { ttl: 12, ..RoutingConfig::default() };
    let mut message = 0u64;

    let phase = |mesh: &mut Mesh,
                 nodes: &mut Vec<(RoutingTable, Forwarder)>,
                 pairs: &[(usize, usize)],
                 message: &mut u64| {
        let mut hops = Vec::new();
        let mut sent = 0u64;
        for &(from, to) in pairs {
            *message += 1;
            let dest = Destination::Oid(mesh.oids[to].clone());
            let (d, s, _) = route(nodes, mesh, *message, from, dest, &routed, config.loss);
            sent += s;
            hops.extend(d);
        }
        (hops, sent)
    };
    let pairs: Vec<(usize, usize)> = (0..config.queries)
        .map(|_| {
            loop {
                let (a, b) = (mesh.below(n), mesh.below(n));
                if a != b {
                    break (a, b);
                }
            }
        })
        .collect();
    let mut nodes = mesh.tables(&|_, _| false);
    let (mut hops, sent) = phase(&mut mesh, &mut nodes, &pairs, &mut message);
    let delivered = hops.len();
    hops.sort_unstable();

    // Floods: flooding only.
    let flood_config =
        RoutingConfig { direct: false, oid: false, dht: false, ttl: 8, ..RoutingConfig::default() };
    let floods = 5.min(n);
    let (mut reach, mut dup_max, mut dup_sum, mut dup_nodes) = (0.0, 0u32, 0u64, 0u64);
    for _ in 0..floods {
        message += 1;
        let from = mesh.below(n);
        let nowhere = Destination::Oid("oid:onoal:nowhere".into());
        let (_, _, copies) =
            route(&mut nodes, &mut mesh, message, from, nowhere, &flood_config, 0.0);
        reach += copies.len() as f64 / (n - 1) as f64;
        for c in copies.values() {
            dup_max = dup_max.max(c - 1);
            dup_sum += u64::from(c - 1);
            dup_nodes += 1;
        }
    }

    // A split: domains 0 and 1 on one side, the others on the other.
    let (mut across, mut within, mut healed) = (None, None, None);
    if config.partition {
        let side = |i: usize, mesh: &Mesh| mesh.domain_of[i] < 2;
        let sides: Vec<bool> = (0..n).map(|i| side(i, &mesh)).collect();
        let mut split = mesh.tables(&|a, b| sides[a] != sides[b]);
        type Pairs = Vec<(usize, usize)>;
        let (cross, same): (Pairs, Pairs) = pairs.iter().partition(|(a, b)| sides[*a] != sides[*b]);
        let rate = |h: &Vec<u32>, of: usize| if of == 0 { 1.0 } else { h.len() as f64 / of as f64 };
        let (h, _) = phase(&mut mesh, &mut split, &cross, &mut message);
        across = Some(rate(&h, cross.len()));
        let (h, _) = phase(&mut mesh, &mut split, &same, &mut message);
        within = Some(rate(&h, same.len()));
        // Healed: the links are back; the forwarders keep their seen-caches (fresh ids).
        let mut whole = mesh.tables(&|_, _| false);
        let (h, _) = phase(&mut mesh, &mut whole, &pairs, &mut message);
        healed = Some(rate(&h, pairs.len()));
    }

    RoutingSimReport {
        nodes: n,
        domains,
        organisations,
        links,
        queries: pairs.len(),
        route_success_rate: if pairs.is_empty() {
            1.0
        } else {
            delivered as f64 / pairs.len() as f64
        },
        route_hops_p50: percentile(&hops, 0.5),
        route_hops_p99: percentile(&hops, 0.99),
        messages_per_query: if pairs.is_empty() { 0.0 } else { sent as f64 / pairs.len() as f64 },
        floods,
        flood_reach: if floods == 0 { 0.0 } else { reach / floods as f64 },
        flood_duplicates_per_node_max: dup_max,
        flood_duplicates_per_node_mean: if dup_nodes == 0 {
            0.0
        } else {
            dup_sum as f64 / dup_nodes as f64
        },
        partitioned_success_rate_across: across,
        partitioned_success_rate_within: within,
        healed_success_rate: healed,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_queries_arrive_by_oid_and_floods_stay_bounded() {
        let config =
            RoutingSimConfig { nodes: 2_000, seed: 7, loss: 0.0, queries: 300, partition: true };
        let r = run(&config);
        assert_eq!(r.route_success_rate, 1.0, "{r:?}");
        // Department -> organisation -> hub -> hub -> organisation -> department, at most.
        assert!(r.route_hops_p99 <= 6, "{r:?}");
        // Greedy OID routing sends one copy per hop when every step has a closer neighbour.
        assert!(r.messages_per_query <= f64::from(r.route_hops_p99), "{r:?}");
        assert!(r.flood_reach > 0.9, "{r:?}");
        // A node receives at most one copy per neighbour.
        let max_degree = Mesh::build(2_000, 7).links.iter().map(Vec::len).max().unwrap();
        assert!(r.flood_duplicates_per_node_max < max_degree as u32, "{r:?}");
        assert!(r.partitioned_success_rate_across.unwrap() < 0.5, "{r:?}");
        assert_eq!(r.partitioned_success_rate_within, Some(1.0), "{r:?}");
        assert_eq!(r.healed_success_rate, Some(1.0), "{r:?}");
        // Same seed, same report.
        let again = run(&config);
        assert_eq!(
            (again.route_hops_p50, again.messages_per_query),
            (r.route_hops_p50, r.messages_per_query)
        );
    }

    #[test]
    fn loss_lowers_success() {
        let r = run(&RoutingSimConfig {
            nodes: 1_000,
            seed: 3,
            loss: 0.3,
            queries: 200,
            partition: false,
        });
        assert!(r.route_success_rate < 0.9 && r.route_success_rate > 0.0, "{r:?}");
    }
}
