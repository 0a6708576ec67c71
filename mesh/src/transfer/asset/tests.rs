use onoal_engine::{Entry, Hash, LedgerId};

use super::*;
use crate::transfer::tests::Side;
use crate::transfer::{Book, Key, NewStep, Refusal};

/// Registers `asset` on `side`.
fn register(side: &mut Side, asset: &str) {
    let e = side.book.register(asset, "oid:onoal:org:a", None).unwrap();
    side.append(e, 5);
}

/// What `side` answers to an asset request: its entries about `asset`.
fn history(side: &Side, asset: &str) -> AssetHistory {
    let seqs = side.book.asset_history(asset);
    let entries: Vec<(Entry, Hash)> =
        seqs.iter().map(|s| side.entries[*s as usize].clone()).collect();
    AssetHistory::from_entries(side.id, asset, &entries).unwrap()
}

/// A whole transfer of `asset` from `a` to `b` (both exchanges); with `credit: false` the
/// destination never sees the commit.
fn hand_over(a: &mut Side, b: &mut Side, id: &str, asset: &str, credit: bool) -> Key {
    let lock = a.book.lock(id, asset, 1, b.id, 1_000).unwrap();
    assert!(lock.body.registered, "a registered asset's lock says so");
    a.take(&lock, 5);
    let key = (a.id, id.to_owned());
    let s = b.book.next_step(&key, a.id, &a.steps(&key)).unwrap().unwrap();
    b.take(&s, 5);
    let s = a.book.next_step(&key, b.id, &b.steps(&key)).unwrap().unwrap();
    a.take(&s, 5);
    if credit {
        let s = b.book.next_step(&key, a.id, &a.steps(&key)).unwrap().unwrap();
        b.take(&s, 5);
    }
    key
}

/// Runs a tracer from `start`, answering with the sides' histories.
fn trace(start: LedgerId, sides: &[&Side], asset: &str) -> Walk {
    let mut t = Tracer::new(start);
    for _ in 0..100 {
        match t.step() {
            Walk::Need(l) => match sides.iter().find(|s| s.id == l) {
                Some(s) => t.give(l, history(s, asset)),
                None => t.unreachable(l, "down".into()),
            },
            done => return done,
        }
    }
    panic!("the tracer never finished");
}

#[test]
fn a_registered_asset_exists_once_and_is_not_minted() {
    let mut a = Side::new();
    register(&mut a, "car-1");
    let b = a.book.balances();
    assert_eq!((b[0].asset.as_str(), b[0].available, b[0].minted), ("car-1", 1, 1));
    assert!(
        matches!(a.book.register("car-1", "oid:onoal:org:a", None), Err(Refusal::Invalid(m)) if m.contains("exists"))
    );
    assert!(a.book.may_mint("car-1").is_err());
    assert_eq!(a.book.held_assets(), vec!["car-1".to_owned()]);
    // A fungible asset is not registered after the fact, nor announced.
    a.append(crate::transfer::mint_entry("eur", 5).unwrap(), 5);
    assert!(a.book.register("eur", "oid:onoal:org:a", None).is_err());
    assert_eq!(a.book.held_assets(), vec!["car-1".to_owned()]);
    // Bad ids, owners and meta.
    assert!(a.book.register("a b", "oid:onoal:org:a", None).is_err());
    assert!(a.book.register("car-2", "not an oid", None).is_err());
    let big = serde_json::Value::String("x".repeat(crate::transfer::MAX_META_BYTES));
    assert!(a.book.register("car-2", "oid:onoal:org:a", Some(big)).is_err());
    // A second registration entry (written around the book) is not taken.
    let mut again = a.book.clone();
    let (e, h) = a.entries[0].clone();
    assert!(again.apply(&Entry { seq: 9, ..e }, h).is_err());
}

#[test]
fn the_owner_is_found_from_any_claimant_and_proven_back_to_the_registration() {
    let (mut a, mut b, mut c) = (Side::new(), Side::new(), Side::new());
    register(&mut a, "car-1");
    hand_over(&mut a, &mut b, "t1", "car-1", true);
    hand_over(&mut b, &mut c, "t2", "car-1", true);
    assert!(a.book.held_assets().is_empty() && b.book.held_assets().is_empty());
    assert_eq!(c.book.held_assets(), vec!["car-1".to_owned()]);
    assert!(history(&c, "car-1").holds(c.id) && !history(&a, "car-1").holds(a.id));
    for start in [a.id, b.id, c.id] {
        let Walk::Done(t) = trace(start, &[&a, &b, &c], "car-1") else { panic!("no trace") };
        assert_eq!(t.owner, c.id);
        assert_eq!(t.registration.ledger, a.id);
        let hops: Vec<(&str, &str)> =
            t.hops.iter().map(|h| (h.from.as_str(), h.to.as_str())).collect();
        let (ai, bi, ci) = (a.id.to_string(), b.id.to_string(), c.id.to_string());
        assert_eq!(hops, vec![(ai.as_str(), bi.as_str()), (bi.as_str(), ci.as_str())]);
        assert!(t.hops.iter().all(|h| h.credit.is_some()));
    }
    // Back to A: the walk follows it home.
    hand_over(&mut c, &mut a, "t3", "car-1", true);
    let Walk::Done(t) = trace(b.id, &[&a, &b, &c], "car-1") else { panic!("no trace") };
    assert_eq!((t.owner, t.hops.len()), (a.id, 3));
}

#[test]
fn a_committed_but_uncredited_hand_over_names_the_destination() {
    let (mut a, mut b) = (Side::new(), Side::new());
    register(&mut a, "car-1");
    hand_over(&mut a, &mut b, "t1", "car-1", false);
    let Walk::Done(t) = trace(a.id, &[&a, &b], "car-1") else { panic!("no trace") };
    assert_eq!(t.owner, b.id);
    assert_eq!(t.hops.len(), 1);
    assert!(t.hops[0].credit.is_none());
}

#[test]
fn an_unreachable_ledger_or_a_forged_history_fails_the_trace() {
    let (mut a, mut b) = (Side::new(), Side::new());
    register(&mut a, "car-1");
    hand_over(&mut a, &mut b, "t1", "car-1", true);
    // A is down: B's claim cannot be proven back to the registration.
    let w = trace(b.id, &[&b], "car-1");
    assert!(matches!(&w, Walk::Failed(m) if m.contains("cannot be had")), "{w:?}");
    // B answers without its credit, as if the asset never reached it: A's commit to B with no
    // credit still names B (the commit decided).
    let mut t = Tracer::new(a.id);
    t.give(a.id, history(&a, "car-1"));
    t.give(b.id, AssetHistory::default());
    assert!(matches!(t.step(), Walk::Done(tr) if tr.owner == b.id));
    // A claimant with no history at all.
    let mut t = Tracer::new(b.id);
    t.give(b.id, AssetHistory::default());
    assert!(matches!(t.step(), Walk::Failed(m) if m.contains("no history")));
    // A third ledger claims to have received it from A by a credit that references a commit A
    // does not show.
    let mut c = Side::new();
    let mut forged = history(&b, "car-1");
    for r in &mut forged.steps {
        r.ledger = c.id;
        r.body.to = c.id;
    }
    c.book = Book::new(c.id);
    let mut t = Tracer::new(c.id);
    t.give(c.id, forged);
    t.give(a.id, history(&a, "car-1"));
    let w = t.step();
    assert!(
        matches!(&w, Walk::Failed(m) if m.contains("does not show") || m.contains("not the one")),
        "{w:?}"
    );
}

#[test]
fn an_asset_handed_over_twice_is_caught() {
    let (mut a, mut b, mut c) = (Side::new(), Side::new(), Side::new());
    register(&mut a, "car-1");
    hand_over(&mut a, &mut b, "t1", "car-1", true);
    // A dishonest A writes a second lock and commit around its book (the honest book refuses:
    // nothing available).
    assert!(a.book.lock("t2", "car-1", 1, c.id, 1_000).is_err());
    let mut body = a.book.get(&(a.id, "t1".into())).unwrap().body().clone();
    body.transfer = "t2".into();
    body.to = c.id;
    let lock = NewStep { step: Step::Lock, body: body.clone(), refs: Vec::new() };
    let forged_a = {
        let mut a2 = Side { id: a.id, entries: a.entries.clone(), book: a.book.clone() };
        a2.take(&lock, 5);
        let key = (a.id, "t2".to_owned());
        let s = c.book.next_step(&key, a.id, &a2.steps(&key)).unwrap().unwrap();
        c.take(&s, 5);
        let s = a2.book.next_step(&key, c.id, &c.steps(&key)).unwrap().unwrap();
        a2.take(&s, 5);
        let s = c.book.next_step(&key, a.id, &a2.steps(&key)).unwrap().unwrap();
        c.take(&s, 5);
        a2
    };
    // B's claim holds (the first hand-over); C's is refused: A handed the asset over twice.
    let Walk::Done(t) = trace(b.id, &[&forged_a, &b, &c], "car-1") else { panic!() };
    assert_eq!(t.owner, b.id);
    let w = trace(c.id, &[&forged_a, &b, &c], "car-1");
    assert!(matches!(&w, Walk::Failed(m) if m.contains("twice")), "{w:?}");
}

#[test]
fn a_history_with_other_entries_is_refused() {
    let mut a = Side::new();
    register(&mut a, "car-1");
    a.append(crate::transfer::mint_entry("eur", 5).unwrap(), 5);
    let entries = a.entries.clone();
    assert!(AssetHistory::from_entries(a.id, "car-1", &entries).is_err(), "a mint in it");
    assert!(AssetHistory::from_entries(a.id, "car-2", &entries[..1]).is_err(), "another asset");
    assert!(AssetHistory::from_entries(a.id, "car-1", &entries[..1]).is_ok());
}
