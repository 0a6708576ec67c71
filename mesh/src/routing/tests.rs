use proptest::prelude::{prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as _;

use super::*;

fn id(b: u8) -> LedgerId {
    LedgerId::from_bytes([b; 16])
}

fn neighbour(b: u8, oid: &str, trust: f64) -> Neighbour {
    Neighbour { ledger: id(b), oid: oid.to_owned(), trust, latency_ms: None }
}

#[test]
fn the_seeds_distance_examples() {
    assert_eq!(oid_distance("oid:onoal:org:a", "oid:onoal:org:b"), 2);
    assert_eq!(oid_distance("oid:onoal:org:a", "oid:onoal:gov:b"), 4);
    assert_eq!(oid_distance("oid:onoal:org:a", "oid:onoal:org:a"), 0);
    assert_eq!(oid_distance("oid:onoal:org:a", "oid:onoal:org:a:dept:finance"), 2);
    assert_eq!(oid_domain("oid:onoal:org:a:dept"), "oid:onoal:org");
    assert!(oid_is_within("oid:onoal:org:a:dept", "oid:onoal:org:a"));
    assert!(!oid_is_within("oid:onoal:org:ab", "oid:onoal:org:a"));
}

/// A at oid:onoal:org:a with neighbours B (org:b), the hub H (gov) and P (org:c, the parent of
/// org:c:dept:finance).
fn table() -> RoutingTable {
    let mut t = RoutingTable::new(id(1), "oid:onoal:org:a");
    t.set_neighbour(neighbour(2, "oid:onoal:org:b", 0.8));
    t.set_neighbour(neighbour(3, "oid:onoal:gov", 0.9));
    t.set_neighbour(neighbour(4, "oid:onoal:org:c", 0.6));
    t
}

#[test]
fn the_seeds_routing_rules() {
    let t = table();
    let config = RoutingConfig::default();
    // Same domain, a neighbour: direct.
    let p = t.find_path(&Destination::Oid("oid:onoal:org:b".into()), &config).unwrap();
    assert_eq!((p.strategy, p.next_hops.clone()), (Strategy::Direct, vec![id(2)]));
    // A sub-organisation: through its parent.
    let p = t.find_path(&Destination::Oid("oid:onoal:org:c:dept:finance".into()), &config).unwrap();
    assert_eq!((p.strategy, p.next_hops.clone()), (Strategy::OidPrefix, vec![id(4)]));
    assert!(p.reasons.last().unwrap().contains("through its parent"), "{:?}", p.reasons);
    // Another domain: through the hub.
    let p = t.find_path(&Destination::Oid("oid:onoal:gov:b".into()), &config).unwrap();
    assert_eq!((p.strategy, p.next_hops.clone()), (Strategy::OidPrefix, vec![id(3)]));
    assert!(p.reasons.last().unwrap().contains("hub"), "{:?}", p.reasons);
    // Nothing closer than A itself (its own domain's unknown ledger org:a:x is closest to A):
    // a DHT lookup, and with the DHT off, flooding to the trusted neighbours.
    let p = t.find_path(&Destination::Oid("oid:onoal:org:a:x".into()), &config).unwrap();
    assert_eq!(p.strategy, Strategy::Dht);
    let no_dht = RoutingConfig { dht: false, ..RoutingConfig::default() };
    let p = t.find_path(&Destination::Oid("oid:onoal:org:a:x".into()), &no_dht).unwrap();
    assert_eq!((p.strategy, p.next_hops.len(), p.ttl), (Strategy::Flood, 3, 5));
    // Everything off: no path, and it says what was tried.
    let none = RoutingConfig { direct: false, oid: false, dht: false, flood: false, ..no_dht };
    let e = t.find_path(&Destination::Ledger(id(2)), &none).unwrap_err();
    assert!(e.to_string().starts_with("no route to"), "{e}");
}

#[test]
fn trust_decides_among_next_hops_and_keeps_untrusted_ones_out() {
    let mut t = table();
    // Two hubs towards gov, one barely trusted: the trusted one wins, an untrusted one is
    // never chosen, not even as a direct peer.
    t.set_neighbour(neighbour(5, "oid:onoal:gov", 0.3));
    t.set_neighbour(neighbour(6, "oid:onoal:gov:b", 0.1));
    let config = RoutingConfig::default();
    let p = t.find_path(&Destination::Oid("oid:onoal:gov:b".into()), &config).unwrap();
    assert_eq!(p.next_hops, vec![id(3)], "{:?}", p.reasons);
    assert!(p.reasons[0].contains("below"), "{:?}", p.reasons);
    let flood = RoutingConfig { direct: false, oid: false, dht: false, ..config };
    let p = t.find_path(&Destination::Ledger(id(9)), &flood).unwrap();
    assert!(!p.next_hops.contains(&id(6)), "flooding skips untrusted neighbours");
}

#[test]
fn a_learned_route_is_preferred_while_it_succeeds() {
    let mut t = table();
    t.set_known(id(7), "oid:onoal:edu:x");
    let config = RoutingConfig::default();
    let p = t.find_path(&Destination::Ledger(id(7)), &config).unwrap();
    assert_eq!(p.next_hops, vec![id(3)], "the hub first: {:?}", p.reasons);
    // Answers from 7 came back through B: learned, and preferred.
    let r = t.succeeded(id(7), id(2), 2, 40, 1_000).unwrap();
    assert_eq!(
        (r.distance, r.avg_latency_ms, r.oid_prefix.as_str()),
        (2, Some(40), "oid:onoal:edu:x")
    );
    let p = t.find_path(&Destination::Ledger(id(7)), &config).unwrap();
    assert_eq!(p.next_hops, vec![id(2)], "{:?}", p.reasons);
    // Its score falls with every failure but stays above 0, so it stays until a better one.
    for i in 0..3 {
        t.failed(id(7), id(2), 2_000 + i);
    }
    let r = t.routes().next().unwrap();
    assert!(r.success_rate > 0.0 && r.success_rate < 0.2, "{r:?}");
    // A route through a neighbour that is gone is not used.
    t.remove_neighbour(&id(2));
    let p = t.find_path(&Destination::Ledger(id(7)), &config).unwrap();
    assert_eq!(p.next_hops, vec![id(3)]);
    // Routing to oneself is refused.
    assert!(t.find_path(&Destination::Ledger(id(1)), &config).is_err());
}

#[test]
fn a_neighbour_that_only_ever_answered_through_a_relay_is_reached_through_it() {
    let mut t = table();
    let config = RoutingConfig::default();
    assert_eq!(
        t.find_path(&Destination::Ledger(id(2)), &config).unwrap().strategy,
        Strategy::Direct
    );
    // B's data came back verified through H; B itself never answered.
    t.succeeded(id(2), id(3), 2, 30, 1_000).unwrap();
    let p = t.find_path(&Destination::Ledger(id(2)), &config).unwrap();
    assert_eq!(
        (p.strategy, p.next_hops.clone()),
        (Strategy::OidPrefix, vec![id(3)]),
        "{:?}",
        p.reasons
    );
    // Once B answers directly as often, direct wins again.
    t.succeeded(id(2), id(2), 1, 5, 1_001).unwrap();
    let p = t.find_path(&Destination::Ledger(id(2)), &config).unwrap();
    assert_eq!(
        (p.strategy, p.next_hops.clone()),
        (Strategy::Direct, vec![id(2)]),
        "{:?}",
        p.reasons
    );
}

fn oid_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "c", "org", "gov"], 0..4).prop_map(|parts| {
        let mut oid = "oid:onoal".to_owned();
        for p in parts {
            oid.push(':');
            oid.push_str(&p);
        }
        oid
    })
}

proptest! {
    /// The distance is a metric on the OID tree (the path length between two nodes).
    #[test]
    fn oid_distance_is_a_metric(a in oid_strategy(), b in oid_strategy(), c in oid_strategy()) {
        prop_assert_eq!(oid_distance(&a, &b), oid_distance(&b, &a));
        prop_assert_eq!(oid_distance(&a, &a), 0);
        prop_assert!(oid_distance(&a, &c) <= oid_distance(&a, &b) + oid_distance(&b, &c));
    }

    /// An OID-prefix next hop is always strictly closer to the target than this ledger, so
    /// greedy forwarding cannot loop.
    #[test]
    fn oid_next_hops_get_strictly_closer(
        me in oid_strategy(),
        others in proptest::collection::vec(oid_strategy(), 1..8),
        target in oid_strategy(),
    ) {
        let mut t = RoutingTable::new(id(200), &me);
        for (i, oid) in others.iter().enumerate() {
            t.set_neighbour(neighbour(i as u8 + 1, oid, 0.5));
        }
        let config = RoutingConfig { direct: false, dht: false, flood: false, ..RoutingConfig::default() };
        if let Ok(p) = t.find_path(&Destination::Oid(target.clone()), &config) {
            let hop = &others[usize::from(p.next_hops[0].as_bytes()[0]) - 1];
            prop_assert!(oid_distance(hop, &target) < oid_distance(&me, &target));
        }
    }
}
