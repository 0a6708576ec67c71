//! Hop-by-hop forwarding, sans-I/O: what a node does with a routed message it receives —
//! deliver it, forward it (TTL decremented, itself appended to the path, never back along the
//! path), or drop it (seen before, TTL spent, a loop, no route). Flooding is forwarding to every
//! trusted neighbour not on the path; the seen-cache bounds what one node handles to one copy
//! per message id. The quinn driver and the envelope's signature come with the rest of the
//! routing issue; this core decides.

use std::collections::{HashMap, VecDeque};

use onoal_engine::LedgerId;

use super::{Destination, RoutingConfig, RoutingTable, Strategy};

/// How long a message id is remembered (ms).
pub const SEEN_FOR_MS: u64 = 5 * 60 * 1000;
/// Most message ids remembered.
pub const SEEN_CAPACITY: usize = 65_536;

/// What a routed message carries that forwarding reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    /// Unique per message (the envelope's id).
    pub id: [u8; 16],
    /// Where it goes.
    pub to: Destination,
    /// Hops left.
    pub ttl: u8,
    /// The ledgers it passed, the origin first.
    pub path: Vec<LedgerId>,
}

/// Why a message was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Its id was handled before (a duplicate of a flood).
    Seen,
    /// No hops left.
    TtlSpent,
    /// This node is already on its path.
    Loop,
    /// No strategy gives a next hop that is not on its path.
    NoRoute,
}

/// What to do with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forward {
    /// It is for this node.
    Deliver,
    /// Send it on to these neighbours, with this TTL and path.
    Send {
        /// Next hops.
        to: Vec<LedgerId>,
        /// The message as forwarded.
        message: Routed,
        /// How the hops were chosen: `Direct` or `OidPrefix` (findPath's hop), else `Flood`.
        strategy: Strategy,
    },
    /// Drop it.
    Drop(Dropped),
}

/// One node's forwarding state: its id, OID and seen-cache.
#[derive(Debug)]
pub struct Forwarder {
    me: LedgerId,
    my_oid: String,
    seen: HashMap<[u8; 16], u64>,
    order: VecDeque<([u8; 16], u64)>,
}

impl Forwarder {
    /// The forwarder of ledger `me` (OID `my_oid`).
    pub fn new(me: LedgerId, my_oid: &str) -> Self {
        Self { me, my_oid: my_oid.to_owned(), seen: HashMap::new(), order: VecDeque::new() }
    }

    fn expire(&mut self, now_ms: u64) {
        while let Some((id, at)) = self.order.front().copied() {
            if now_ms.saturating_sub(at) < SEEN_FOR_MS && self.order.len() <= SEEN_CAPACITY {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&id) == Some(&at) {
                self.seen.remove(&id);
            }
        }
    }

    /// Whether `to` names this node.
    fn is_mine(&self, to: &Destination) -> bool {
        match to {
            Destination::Ledger(id) => *id == self.me,
            Destination::Oid(oid) => *oid == self.my_oid,
        }
    }

    /// Decides what to do with `message`, received from neighbour `from` (`None`: originated
    /// here), by `table` and `config` at `now_ms`.
    pub fn handle(
        &mut self,
        message: &Routed,
        from: Option<LedgerId>,
        table: &RoutingTable,
        config: &RoutingConfig,
        now_ms: u64,
    ) -> Forward {
        self.expire(now_ms);
        if self.seen.contains_key(&message.id) {
            return Forward::Drop(Dropped::Seen);
        }
        self.seen.insert(message.id, now_ms);
        self.order.push_back((message.id, now_ms));
        if from.is_some() && message.path.contains(&self.me) {
            return Forward::Drop(Dropped::Loop);
        }
        if self.is_mine(&message.to) {
            return Forward::Deliver;
        }
        if message.ttl == 0 {
            return Forward::Drop(Dropped::TtlSpent);
        }
        let mut path = message.path.clone();
        if from.is_some() || path.is_empty() {
            path.push(self.me);
        }
        let onward = Routed { id: message.id, to: message.to.clone(), ttl: message.ttl - 1, path };
        let fresh = |id: &LedgerId| Some(*id) != from && !onward.path.contains(id);
        let (mut chosen, mut strategy) = match table.find_path(&message.to, config) {
            Ok(p) if matches!(p.strategy, Strategy::Direct | Strategy::OidPrefix) => {
                (p.next_hops.into_iter().filter(|h| fresh(h)).collect(), p.strategy)
            }
            _ => (Vec::new(), Strategy::Flood),
        };
        // A relay cannot look the target up on the origin's behalf: without a next hop it
        // floods, when flooding is on.
        if chosen.is_empty() && config.flood {
            strategy = Strategy::Flood;
            chosen = table
                .neighbours()
                .filter(|n| n.trust >= config.min_trust && fresh(&n.ledger))
                .map(|n| n.ledger)
                .collect();
        }
        if chosen.is_empty() {
            return Forward::Drop(Dropped::NoRoute);
        }
        Forward::Send { to: chosen, message: onward, strategy }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Neighbour;
    use super::*;

    fn id(i: u32) -> LedgerId {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        LedgerId::from_bytes(b)
    }

    /// `n` nodes, each linked to `degree` others (a ring plus random chords, deterministic),
    /// every link trusted at 0.5; OIDs `oid:onoal:org:nI`.
    fn mesh(n: u32, degree: u32, seed: u64) -> Vec<(RoutingTable, Forwarder)> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut links: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let link = |a: u32, b: u32, links: &mut BTreeMap<u32, Vec<u32>>| {
            if a != b && !links.entry(a).or_default().contains(&b) {
                links.entry(a).or_default().push(b);
                links.entry(b).or_default().push(a);
            }
        };
        for i in 0..n {
            link(i, (i + 1) % n, &mut links);
            for _ in 2..degree / 2 + 1 {
                link(i, (next() % u64::from(n)) as u32, &mut links);
            }
        }
        (0..n)
            .map(|i| {
                let oid = format!("oid:onoal:org:n{i}");
                let mut t = RoutingTable::new(id(i), &oid);
                for j in &links[&i] {
                    t.set_neighbour(Neighbour {
                        ledger: id(*j),
                        oid: format!("oid:onoal:org:n{j}"),
                        trust: 0.5,
                        latency_ms: None,
                    });
                }
                (t, Forwarder::new(id(i), &oid))
            })
            .collect()
    }

    /// Floods one message from node 0 to `to`; returns (delivered, copies received per node).
    fn flood(
        nodes: &mut [(RoutingTable, Forwarder)],
        to: Destination,
        ttl: u8,
    ) -> (bool, Vec<u32>) {
        let config =
            RoutingConfig { direct: false, oid: false, dht: false, ..RoutingConfig::default() };
        let index =
            |l: &LedgerId| u32::from_be_bytes(l.as_bytes()[..4].try_into().unwrap()) as usize;
        let mut copies = vec![0u32; nodes.len()];
        let mut delivered = false;
        let first = Routed { id: [7; 16], to, ttl, path: Vec::new() };
        let mut queue = VecDeque::from([(0usize, None, first)]);
        while let Some((at, from, msg)) = queue.pop_front() {
            if from.is_some() {
                copies[at] += 1;
            }
            let (table, fwd) = &mut nodes[at];
            match fwd.handle(&msg, from, table, &config, 1_000) {
                Forward::Deliver => delivered = true,
                Forward::Send { to, message, .. } => {
                    for h in to {
                        queue.push_back((index(&h), Some(id(at as u32)), message.clone()));
                    }
                }
                Forward::Drop(_) => {}
            }
        }
        (delivered, copies)
    }

    #[test]
    fn a_flood_reaches_its_target_and_each_node_handles_it_once() {
        let mut nodes = mesh(300, 6, 42);
        let degree: Vec<usize> = nodes.iter().map(|(t, _)| t.neighbours().count()).collect();
        let (delivered, copies) = flood(&mut nodes, Destination::Ledger(id(150)), 8);
        assert!(delivered);
        // Every node receives at most one copy per neighbour, and forwards only the first.
        for (i, c) in copies.iter().enumerate() {
            assert!(*c as usize <= degree[i], "node {i}: {c} copies, {} neighbours", degree[i]);
        }
        let reached = copies.iter().filter(|c| **c > 0).count();
        let duplicates: u32 = copies.iter().map(|c| c.saturating_sub(1)).sum();
        let max = copies.iter().max().unwrap();
        eprintln!(
            "flood, 300 nodes, mean degree {:.1}, TTL 8: reached {reached}, duplicates per node mean {:.2}, max copies {max}",
            degree.iter().sum::<usize>() as f64 / 300.0,
            f64::from(duplicates) / reached as f64
        );
        // A TTL of 1 reaches only the origin's neighbours.
        let mut nodes = mesh(300, 6, 42);
        let (_, copies) = flood(&mut nodes, Destination::Ledger(id(150)), 1);
        let reached = copies.iter().filter(|c| **c > 0).count();
        assert!(reached <= degree[0], "TTL 1 reached {reached}");
    }

    #[test]
    fn forwarding_refuses_loops_duplicates_and_spent_ttls() {
        let nodes = mesh(10, 4, 3);
        let (table, _) = &nodes[1];
        let mut fwd = Forwarder::new(id(1), "oid:onoal:org:n1");
        let config = RoutingConfig::default();
        let m = Routed {
            id: [1; 16],
            to: Destination::Ledger(id(5)),
            ttl: 3,
            path: vec![id(0), id(1)],
        };
        assert_eq!(fwd.handle(&m, Some(id(0)), table, &config, 0), Forward::Drop(Dropped::Loop));
        let m = Routed { id: [2; 16], to: Destination::Ledger(id(5)), ttl: 0, path: vec![id(0)] };
        assert_eq!(
            fwd.handle(&m, Some(id(0)), table, &config, 0),
            Forward::Drop(Dropped::TtlSpent)
        );
        let m = Routed {
            id: [3; 16],
            to: Destination::Oid("oid:onoal:org:n1".into()),
            ttl: 2,
            path: vec![id(0)],
        };
        assert_eq!(fwd.handle(&m, Some(id(0)), table, &config, 0), Forward::Deliver);
        assert_eq!(fwd.handle(&m, Some(id(2)), table, &config, 1), Forward::Drop(Dropped::Seen));
        // Remembered for five minutes, then forgotten.
        assert_eq!(fwd.handle(&m, Some(id(2)), table, &config, SEEN_FOR_MS + 2), Forward::Deliver);
        // Forwarded: TTL down by one, this node appended, never back to the sender.
        let m = Routed { id: [4; 16], to: Destination::Ledger(id(9)), ttl: 3, path: vec![id(0)] };
        match fwd.handle(&m, Some(id(0)), table, &config, 2) {
            Forward::Send { to, message, .. } => {
                assert!(!to.contains(&id(0)) && !to.is_empty(), "{to:?}");
                assert_eq!((message.ttl, message.path), (2, vec![id(0), id(1)]));
            }
            other => panic!("{other:?}"),
        }
    }
}
