use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// A ledger id for a name in the golden scripts (the name's bytes, zero-padded).
fn ledger(name: &str) -> LedgerId {
    let mut bytes = [0u8; 16];
    for (b, c) in bytes.iter_mut().zip(name.bytes()) {
        *b = c;
    }
    LedgerId::from_bytes(bytes)
}

/// Runs one golden script (raft-rs / datadriven style): commands, `----`, the output they
/// must print, a blank line. Commands: `me N`, `edge F T LEVEL [expires=MS]`, `anchor N`,
/// `unanchor N`, `now MS`, `depth D`, `reset`, `trust N`, `trust-all`.
fn run_script(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut names: BTreeMap<LedgerId, String> = BTreeMap::new();
    fn named(names: &mut BTreeMap<LedgerId, String>, n: &str) -> LedgerId {
        let id = ledger(n);
        names.entry(id).or_insert_with(|| n.to_owned());
        id
    }
    let mut graph = TrustGraph::new(ledger("A"));
    let (mut now, mut depth) = (0u64, DEFAULT_MAX_DEPTH);
    let mut output: Vec<String> = Vec::new();
    let mut expecting = false;
    let mut expected: Vec<String> = Vec::new();
    let mut line_no = 0;
    let check = |output: &mut Vec<String>, expected: &mut Vec<String>, line: usize| {
        assert_eq!(output, expected, "{}: the case ending at line {line}", path.display());
        output.clear();
        expected.clear();
    };
    for line in text.lines().chain(std::iter::once("")) {
        line_no += 1;
        if expecting {
            if line.is_empty() {
                check(&mut output, &mut expected, line_no);
                expecting = false;
            } else {
                expected.push(line.to_owned());
            }
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "----" {
            expecting = true;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["me", n] => graph = TrustGraph::new(named(&mut names, n)),
            ["reset"] => {
                graph = TrustGraph::new(ledger("A"));
                now = 0;
                depth = DEFAULT_MAX_DEPTH;
            }
            ["edge", f, t, level, rest @ ..] => {
                let expires = rest.iter().find_map(|w| w.strip_prefix("expires="));
                let expires = expires.map(|e| e.parse().unwrap());
                graph.set_edge(
                    named(&mut names, f),
                    named(&mut names, t),
                    level.parse().unwrap(),
                    expires,
                );
            }
            ["anchor", n] => graph.set_anchor(named(&mut names, n), true),
            ["unanchor", n] => graph.set_anchor(named(&mut names, n), false),
            ["now", ms] => now = ms.parse().unwrap(),
            ["depth", d] => depth = d.parse().unwrap(),
            ["trust", n] => {
                let id = named(&mut names, n);
                output.push(match graph.trust(&id, now, depth) {
                    Some(d) => describe(&d, &names),
                    None => format!("{n} unreachable"),
                });
            }
            ["trust-all"] => {
                let mut all: Vec<String> =
                    graph.derive(now, depth).values().map(|d| describe(d, &names)).collect();
                all.sort();
                output.extend(all);
            }
            other => panic!("{}:{line_no}: unknown command {other:?}", path.display()),
        }
    }
    assert!(output.is_empty(), "{}: output without an expectation: {output:?}", path.display());
}

fn describe(d: &Derived, names: &BTreeMap<LedgerId, String>) -> String {
    let name = |id: &LedgerId| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let path: Vec<String> = d.path.iter().map(name).collect();
    format!("{} {:.3} {} {}", name(&d.to), d.level, d.kind, path.join(">"))
}

#[test]
fn golden_scripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/trust");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "txt") {
            run_script(&path);
            ran += 1;
        }
    }
    assert!(ran >= 3, "found {ran} scripts in {}", dir.display());
}

#[test]
fn the_seed_examples_exactly() {
    let (a, b, c, d) = (ledger("A"), ledger("B"), ledger("C"), ledger("D"));
    let mut g = TrustGraph::new(a);
    g.set_edge(a, b, 0.9, None);
    g.set_edge(b, c, 0.8, None);
    g.set_edge(c, d, 0.7, None);
    let derived = g.trust(&d, 0, DEFAULT_MAX_DEPTH).unwrap();
    assert!((derived.level - 0.504).abs() < 1e-12);
    assert_eq!(derived.hops.iter().map(|h| h.2).collect::<Vec<_>>(), [0.9, 0.8, 0.7]);
}

#[test]
fn a_statement_is_signed_checked_and_refused_when_forged_expired_or_out_of_range() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let (a, b) = (ledger("A"), ledger("B"));
    let s = TrustStatement::sign(&key, a, b, 0.8, "audited", 1_000, Some(5_000)).unwrap();
    assert_eq!(s.check(2_000), Ok(()));
    assert_eq!(s.check(5_000), Err(TrustError::Expired));
    let mut forged = s.clone();
    forged.level = 0.95;
    assert_eq!(forged.check(2_000), Err(TrustError::Signature));
    let mut other_key = s.clone();
    other_key.key = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
    assert_eq!(other_key.check(2_000), Err(TrustError::Signature));
    assert!(matches!(
        TrustStatement::sign(&key, a, b, 1.5, "", 0, None),
        Err(TrustError::Level(_))
    ));
    assert!(matches!(
        TrustStatement::sign(&key, a, b, f64::NAN, "", 0, None),
        Err(TrustError::Level(_))
    ));
    assert_eq!(TrustStatement::sign(&key, a, a, 0.5, "", 0, None), Err(TrustError::SelfTrust));
    let long = "x".repeat(257);
    assert_eq!(TrustStatement::sign(&key, a, b, 0.5, &long, 0, None), Err(TrustError::Reason));
    // A checked statement is an edge; its own signer's statements about this node's ledger
    // are not this node's direct trust.
    let mut g = TrustGraph::new(ledger("M"));
    g.set_edge(ledger("M"), a, 1.0, None);
    assert!(g.add_statement(&s));
    assert!((g.trust(&b, 2_000, 6).unwrap().level - 0.8).abs() < 1e-12);
    let mine = TrustStatement::sign(&key, ledger("M"), b, 0.1, "", 0, None).unwrap();
    assert!(!g.add_statement(&mine));
}

#[test]
fn direct_trust_rises_slowly_falls_by_penalty_and_only_an_operator_lifts_a_proven_liar() {
    let mut t = DirectTrust::new(ledger("B"), 0);
    assert_eq!(t.level, DEFAULT_LEVEL);
    for i in 0..1_000 {
        t.succeeded(i);
    }
    assert!((t.level - EARNED_CEILING).abs() < 1e-9, "{}", t.level);
    assert_eq!(t.factors.successful_interactions, 1_000);
    t.penalize(Penalty::Severe, "bad bundle", 2_000);
    assert!((t.level - 0.6).abs() < 1e-9);
    t.penalize(Penalty::Mild, "slow", 2_001);
    assert!((t.level - 0.58).abs() < 1e-9);
    t.penalize(Penalty::Proven, "fork", 2_002);
    assert_eq!((t.level, t.blocked), (0.0, true));
    t.succeeded(2_003);
    assert_eq!(t.level, 0.0, "outcomes do not lift a proven liar");
    t.set(0.7, Some("re-audited".into()), Some(9_000), 3_000);
    assert_eq!((t.level, t.blocked, t.set_by_operator), (0.7, false, true));
    assert!(t.live(8_999) && !t.live(9_000));
    assert_eq!(t.factors.failed_interactions, 3);
}

/// A random graph over `n` ledgers.
fn graph_strategy() -> impl Strategy<Value = (u8, Vec<(u8, u8, f64)>)> {
    (2u8..12)
        .prop_flat_map(|n| (Just(n), proptest::collection::vec((0..n, 0..n, 0.0f64..=1.0), 0..40)))
}

fn build(n: u8, edges: &[(u8, u8, f64)]) -> (TrustGraph, Vec<LedgerId>) {
    let ids: Vec<LedgerId> = (0..n).map(|i| ledger(&format!("n{i}"))).collect();
    let mut g = TrustGraph::new(ids[0]);
    for &(f, t, level) in edges {
        if f != t {
            g.set_edge(ids[usize::from(f)], ids[usize::from(t)], level, None);
        }
    }
    (g, ids)
}

/// The best product over all simple paths within `depth` hops, by brute force.
fn brute(g: &TrustGraph, from: LedgerId, to: LedgerId, depth: u8) -> f64 {
    fn walk(g: &TrustGraph, at: LedgerId, to: LedgerId, left: u8, seen: &mut Vec<LedgerId>) -> f64 {
        if at == to {
            return 1.0;
        }
        if left == 0 {
            return 0.0;
        }
        let mut best: f64 = 0.0;
        for (next, t, ..) in g.out_edges(at, 0) {
            if seen.contains(&next) {
                continue;
            }
            seen.push(next);
            best = best.max(t * walk(g, next, to, left - 1, seen));
            seen.pop();
        }
        best
    }
    walk(g, from, to, depth, &mut vec![from])
}

proptest! {
    #[test]
    fn derived_trust_is_the_best_product_within_the_depth((n, edges) in graph_strategy(), depth in 1u8..5) {
        let (g, ids) = build(n, &edges);
        let derived = g.derive(0, depth);
        for &to in &ids[1..] {
            let want = brute(&g, ids[0], to, depth);
            let got = derived.get(&to).map_or(0.0, |d| d.level);
            prop_assert!((want - got).abs() < 1e-9, "to {to}: brute {want}, derived {got}");
            if let Some(d) = derived.get(&to) {
                // The path is real: its hops multiply to the level, within the depth.
                let product: f64 = d.hops.iter().map(|h| h.2).product();
                prop_assert!((product - d.level).abs() < 1e-9);
                prop_assert!(d.hops.len() <= usize::from(depth));
                prop_assert_eq!(d.path.first(), Some(&ids[0]));
                prop_assert_eq!(d.path.last(), Some(&to));
            }
        }
    }

    #[test]
    fn trust_never_grows_along_a_chain(levels in proptest::collection::vec(0.0f64..=1.0, 1..10)) {
        let ids: Vec<LedgerId> = (0..=levels.len()).map(|i| ledger(&format!("c{i}"))).collect();
        let mut g = TrustGraph::new(ids[0]);
        for (i, l) in levels.iter().enumerate() {
            g.set_edge(ids[i], ids[i + 1], *l, None);
        }
        let d = g.derive(0, 16);
        let mut last = 1.0;
        for id in &ids[1..] {
            let level = d.get(id).map_or(0.0, |x| x.level);
            prop_assert!(level <= last + 1e-12);
            last = level;
        }
    }

    #[test]
    fn back_edges_change_nothing((n, edges) in graph_strategy()) {
        let (g, ids) = build(n, &edges);
        let before = g.derive(0, 6);
        let mut with_cycles = g.clone();
        // Every ledger trusts this node fully: edges into the start cannot raise anything.
        for id in &ids[1..] {
            with_cycles.set_edge(*id, ids[0], 1.0, None);
        }
        let after = with_cycles.derive(0, 6);
        for id in &ids[1..] {
            let (b, a) = (before.get(id).map_or(0.0, |d| d.level), after.get(id).map_or(0.0, |d| d.level));
            prop_assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn an_expired_edge_is_as_if_absent((n, edges) in graph_strategy(), pick in 0usize..40) {
        let (g, ids) = build(n, &edges);
        let kept: Vec<(u8, u8, f64)> = edges.iter().enumerate().filter(|(i, _)| *i != pick).map(|(_, e)| *e).collect();
        let Some(&(f, t, level)) = edges.get(pick) else { return Ok(()) };
        if f == t { return Ok(()); }
        // Rebuild with the picked edge expiring at 10 (edges set later replace earlier ones,
        // so set it first only when it is not overwritten by a later duplicate).
        if kept.iter().any(|(kf, kt, _)| (*kf, *kt) == (f, t)) { return Ok(()); }
        let (mut expiring, _) = build(n, &kept);
        expiring.set_edge(ids[usize::from(f)], ids[usize::from(t)], level, Some(10));
        let (absent, _) = build(n, &kept);
        let (at_9, with) = (expiring.derive(9, 6), g.derive(0, 6));
        let (at_10, without) = (expiring.derive(10, 6), absent.derive(0, 6));
        for id in &ids[1..] {
            let lvl = |m: &HashMap<LedgerId, Derived>| m.get(id).map_or(0.0, |d| d.level);
            prop_assert!((lvl(&at_9) - lvl(&with)).abs() < 1e-12);
            prop_assert!((lvl(&at_10) - lvl(&without)).abs() < 1e-12);
        }
    }
}

#[test]
fn every_misbehaviour_costs_trust_and_proven_lies_cost_everything() {
    use crate::proto::misbehaved::PeerMisbehaved;
    assert_eq!(PeerMisbehaved::Fork("two roots".into()).penalty(), Penalty::Proven);
    assert_eq!(PeerMisbehaved::BadSignature("forged".into()).penalty(), Penalty::Proven);
    assert_eq!(PeerMisbehaved::EntryOutsideFilter.penalty(), Penalty::Severe);
    assert_eq!(PeerMisbehaved::UndecodableResponse("junk".into()).penalty(), Penalty::Moderate);
    assert_eq!(PeerMisbehaved::CursorStalled.penalty(), Penalty::Mild);
    let mut t = DirectTrust::new(ledger("B"), 0);
    t.penalize(PeerMisbehaved::Fork("two roots".into()).penalty(), "fork", 1);
    assert_eq!((t.level, t.blocked), (0.0, true));
}

/// The trust table with policies and statements, on a real ledger.
mod store_tests {
    use std::sync::Arc;

    use onoal_engine::identity::{SecretKey, key_path};
    use onoal_engine::{Ledger, Oid};

    use crate::peer::PeerStore;
    use crate::trust::store::TrustStore;
    use crate::trust::visibility::{Scope, Visibility};
    use crate::trust::{DEFAULT_LEVEL, Penalty, TrustStatement};
    use ed25519_dalek::SigningKey;
    use onoal_engine::LedgerId;

    fn open(dir: &std::path::Path) -> (TrustStore, PeerStore, LedgerId) {
        let oid = Oid::parse("oid:onoal:test:store").unwrap();
        let ledger = Arc::new(match Ledger::builder(dir).open() {
            Ok(l) => l,
            Err(_) => Ledger::builder(dir).create(oid).unwrap(),
        });
        let peers = PeerStore::open(ledger.clone()).unwrap();
        let me = ledger.identity().ledger_id;
        let key = SecretKey::read_file(&key_path(dir)).unwrap().signing_key().clone();
        (TrustStore::open(ledger, peers.clone(), key).unwrap(), peers, me)
    }

    fn id(b: u8) -> LedgerId {
        LedgerId::from_bytes([b; 16])
    }

    #[test]
    fn pins_start_at_the_default_and_an_expired_level_falls_back_to_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let (trust, peers, me) = open(dir.path());
        assert_eq!(trust.level(me, &id(1), 1_000), 0.0);
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes();
        peers.pin(id(1), key, None).unwrap();
        // The pin takes effect at once (not after the cache's lifetime).
        assert_eq!(trust.level(me, &id(1), 1_001), DEFAULT_LEVEL);
        trust.set(id(1), 0.9, None, Some(5_000), 1_002).unwrap();
        assert_eq!(trust.level(me, &id(1), 1_003), 0.9);
        assert_eq!(trust.level(me, &id(1), 5_000), DEFAULT_LEVEL);
        // A proven lie blocks it, pin or not.
        trust.penalize(id(1), Penalty::Proven, "fork", 6_000).unwrap();
        assert_eq!(trust.level(me, &id(1), 6_001), 0.0);
        let default = trust.admits(&me, Some(&id(1)), Scope::Any, 6_002);
        assert!(default.unwrap_err().message.contains("trusted:0.4"));
    }

    #[test]
    fn policies_are_signed_versioned_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (trust, _, me) = open(dir.path());
        let p = trust.set_visibility(Some("orders"), Visibility::Private, 10).unwrap();
        assert_eq!(p.version, 1);
        assert!(trust.admits(&me, Some(&id(2)), Scope::Stream("orders"), 11).is_err());
        // The owner reads its own data back (a restore), private or not.
        assert!(trust.admits(&me, Some(&me), Scope::Log, 11).is_ok());
        drop(trust);
        let (trust, _, _) = open(dir.path());
        assert_eq!(trust.policy(&me).version, 1);
        assert_eq!(trust.policy(&me).of("orders"), Visibility::Private);
    }

    #[test]
    fn a_relay_takes_only_the_origins_signed_and_newer_policy_and_statements() {
        let dir = tempfile::tempdir().unwrap();
        let (relay, _, _) = open(dir.path());
        let origin_dir = tempfile::tempdir().unwrap();
        let (origin, origin_peers, l) = open(origin_dir.path());
        let reader = id(7);
        origin_peers
            .pin(reader, SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes(), None)
            .unwrap();
        let origin_key = origin.public_key();
        // Before the relay holds anything of L's, it admits no one to L's default.
        assert!(relay.admits(&l, Some(&reader), Scope::Log, 10).is_err());
        let statements = origin.own_statements(10);
        assert_eq!(statements.len(), 1);
        // A forged statement (its level raised after signing) is refused, and none is kept.
        let mut forged = statements.clone();
        forged[0].level = 1.0;
        assert!(relay.take_statements(l, &origin_key, forged, 11).is_err());
        assert!(relay.statements_of(&l).is_empty());
        // A statement that L did not sign is refused as L's.
        let other =
            TrustStatement::sign(&SigningKey::from_bytes(&[8; 32]), l, reader, 1.0, "", 10, None)
                .unwrap();
        assert!(relay.take_statements(l, &origin_key, vec![other], 11).is_err());
        assert_eq!(relay.take_statements(l, &origin_key, statements, 11).unwrap(), 1);
        assert!(relay.admits(&l, Some(&reader), Scope::Log, 12).is_ok());
        // L's policy: a forged one is refused, an older one ignored, a newer one in force.
        let v1 = origin.set_visibility(Some("s1"), Visibility::Private, 20).unwrap();
        let v2 = origin.set_visibility(Some("s2"), Visibility::Trusted(0.9), 21).unwrap();
        let mut forged = v2.clone();
        forged.streams.clear();
        assert!(relay.take_policy(forged, &origin_key).is_err());
        assert!(relay.take_policy(v2, &origin_key).unwrap());
        assert!(!relay.take_policy(v1, &origin_key).unwrap());
        let refused = relay.admits(&l, Some(&reader), Scope::Log, 22).unwrap_err();
        assert!(refused.message.contains("`s1` is private"), "{}", refused.message);
        assert!(relay.admits(&l, Some(&reader), Scope::Stream("s0"), 22).is_ok());
        assert!(relay.admits(&l, Some(&reader), Scope::Stream("s2"), 22).is_err());
        // A later answer without the statement withdraws it.
        assert_eq!(relay.take_statements(l, &origin_key, Vec::new(), 23).unwrap(), 0);
        assert!(relay.admits(&l, Some(&reader), Scope::Stream("s0"), 24).is_err());
    }
}
