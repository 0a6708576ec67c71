use rand::{RngExt, SeedableRng};

use onoal_engine::hash::leaf_hash;

use super::*;

/// A ledger in memory: its entries and its book (the asset tests use it too).
pub(crate) struct Side {
    pub(crate) id: LedgerId,
    pub(crate) entries: Vec<(Entry, Hash)>,
    pub(crate) book: Book,
}

impl Side {
    pub(crate) fn new() -> Self {
        let id = LedgerId::random();
        Self { id, entries: Vec::new(), book: Book::new(id) }
    }

    pub(crate) fn append(&mut self, e: NewEntry, now: u64) -> Hash {
        let prev = self.entries.last().map_or(Hash::ZERO, |(_, h)| *h);
        let entry = Entry {
            seq: self.entries.len() as u64,
            timestamp_ms: now,
            content: e,
            prev_hash: prev,
        };
        let h = leaf_hash(&entry.leaf_data());
        self.book.apply(&entry, h).unwrap();
        self.entries.push((entry, h));
        h
    }

    pub(crate) fn take(&mut self, s: &NewStep, now: u64) {
        self.append(s.to_entry().unwrap(), now);
    }

    fn mint(&mut self, asset: &str, n: u64) {
        self.append(mint_entry(asset, n).unwrap(), 1);
    }

    /// Its steps of a transfer, as the other side receives them.
    pub(crate) fn steps(&self, key: &Key) -> Vec<Recorded> {
        self.book.get(key).map(|t| t.steps.values().cloned().collect()).unwrap_or_default()
    }

    /// A rebuilt book from the entries (a restart).
    fn restart(&mut self) {
        let mut b = Book::new(self.id);
        for (e, h) in &self.entries {
            b.apply(e, *h).unwrap();
        }
        self.book = b;
    }

    fn balance(&self, asset: &str) -> Balance {
        self.book.balances().into_iter().find(|b| b.asset == asset).unwrap_or_default()
    }
}

/// One exchange: `from` sends its steps, `to` acts and answers, `from` acts on the answer.
fn exchange(from: &mut Side, to: &mut Side, key: &Key, now: u64) {
    let sent = from.steps(key);
    if let Some(s) = to.book.next_step(key, from.id, &sent).unwrap() {
        to.take(&s, now);
    }
    let answer = to.steps(key);
    if let Some(s) = from.book.next_step(key, to.id, &answer).unwrap() {
        from.take(&s, now);
    }
}

fn start(a: &mut Side, b: &Side, id: &str, n: u64) -> Key {
    let lock = a.book.lock(id, "eur", n, b.id, 1_000).unwrap();
    a.take(&lock, 10);
    (a.id, id.to_owned())
}

#[test]
fn a_transfer_completes_in_two_exchanges_and_moves_the_balance() {
    let (mut a, mut b) = (Side::new(), Side::new());
    a.mint("eur", 100);
    let key = start(&mut a, &b, "t1", 30);
    assert_eq!(a.balance("eur").available, 70);
    assert_eq!(a.balance("eur").locked, 30);
    exchange(&mut a, &mut b, &key, 20);
    assert_eq!(a.book.get(&key).unwrap().phase(), Phase::Committed);
    assert_eq!(b.book.get(&key).unwrap().phase(), Phase::Reserved);
    assert_eq!(b.balance("eur").incoming, 30);
    exchange(&mut a, &mut b, &key, 30);
    assert_eq!(a.book.get(&key).unwrap().phase(), Phase::Confirmed);
    assert_eq!(b.book.get(&key).unwrap().phase(), Phase::Credited);
    assert_eq!(
        a.balance("eur"),
        Balance { asset: "eur".into(), available: 70, minted: 100, sent: 30, ..Balance::default() }
    );
    assert_eq!(
        b.balance("eur"),
        Balance { asset: "eur".into(), available: 30, received: 30, ..Balance::default() }
    );
    // Every step after the lock references the other side's previous step.
    let reserve = b.book.get(&key).unwrap().get(Step::Reserve).unwrap();
    assert_eq!(reserve.refs, vec![a.book.get(&key).unwrap().get(Step::Lock).unwrap().as_ref()]);
    let confirm = a.book.get(&key).unwrap().get(Step::Confirm).unwrap();
    assert_eq!(confirm.refs, vec![b.book.get(&key).unwrap().get(Step::Credit).unwrap().as_ref()]);
    // Nothing more to do; exchanging again changes nothing.
    exchange(&mut a, &mut b, &key, 40);
    assert_eq!(
        (a.entries.len(), b.entries.len()),
        (4, 2),
        "mint, lock, commit, confirm; reserve, credit"
    );
    assert!(a.book.open().is_empty() && b.book.open().is_empty());
}

#[test]
fn a_lock_needs_the_balance_and_a_fresh_id() {
    let (mut a, b) = (Side::new(), Side::new());
    a.mint("eur", 10);
    assert!(
        matches!(a.book.lock("t", "eur", 11, b.id, 0), Err(Refusal::Invalid(m)) if m.contains("10 available"))
    );
    start(&mut a, &b, "t", 6);
    // The locked amount is not available to a second transfer: no double spend.
    assert!(
        matches!(a.book.lock("u", "eur", 5, b.id, 0), Err(Refusal::Invalid(m)) if m.contains("4 available"))
    );
    assert!(a.book.lock("t", "eur", 1, b.id, 0).is_err(), "an id is used once");
    assert!(a.book.lock("x y", "eur", 1, b.id, 0).is_err());
    assert!(a.book.lock("v", "eur", 0, b.id, 0).is_err());
    assert!(a.book.lock("v", "eur", 1, a.id, 0).is_err(), "not to itself");
}

#[test]
fn an_unlock_releases_the_reservation_and_restores_the_balance() {
    let (mut a, mut b) = (Side::new(), Side::new());
    a.mint("eur", 10);
    let key = start(&mut a, &b, "t", 10);
    // B reserves, but the answer is lost: A still locked.
    let s = b.book.next_step(&key, a.id, &a.steps(&key)).unwrap().unwrap();
    b.take(&s, 20);
    assert!(a.book.expired(&key, 1_000) && !a.book.expired(&key, 999));
    let u = a.book.unlock(&key, "timeout").unwrap();
    a.take(&u, 1_000);
    assert_eq!(a.balance("eur").available, 10);
    exchange(&mut a, &mut b, &key, 1_001);
    assert_eq!(b.book.get(&key).unwrap().phase(), Phase::Released);
    assert_eq!(b.balance("eur").incoming, 0);
    // A late copy of the lock alone changes nothing on B.
    let lock_only = vec![a.book.get(&key).unwrap().get(Step::Lock).unwrap().clone()];
    assert_eq!(b.book.next_step(&key, a.id, &lock_only).unwrap(), None);
    // An unlocked transfer cannot be committed, and a committed one cannot be unlocked.
    assert!(a.book.unlock(&key, "again").is_none());
}

#[test]
fn an_unlock_seen_before_any_reservation_is_released_so_a_late_lock_is_refused() {
    let (mut a, mut b) = (Side::new(), Side::new());
    a.mint("eur", 10);
    let key = start(&mut a, &b, "t", 10);
    let u = a.book.unlock(&key, "timeout").unwrap();
    a.take(&u, 2_000);
    exchange(&mut a, &mut b, &key, 2_001);
    assert_eq!(b.book.get(&key).unwrap().phase(), Phase::Released);
    assert_eq!(b.balance("eur"), Balance { asset: "eur".into(), ..Balance::default() });
}

#[test]
fn forged_or_foreign_steps_are_refused() {
    let (mut a, mut b) = (Side::new(), Side::new());
    a.mint("eur", 10);
    let key = start(&mut a, &b, "t", 10);
    let mine = a.steps(&key);
    // A reservation that names another amount.
    let s = b.book.next_step(&key, a.id, &mine).unwrap().unwrap();
    b.take(&s, 1);
    let mut theirs = b.steps(&key);
    theirs[0].body.amount = 9;
    assert!(matches!(a.book.next_step(&key, b.id, &theirs), Err(Refusal::Peer(_))));
    // A reservation that references another entry than the lock.
    let mut theirs = b.steps(&key);
    theirs[0].refs[0].seq += 1;
    assert!(
        matches!(a.book.next_step(&key, b.id, &theirs), Err(Refusal::Peer(m)) if m.contains("reference"))
    );
    // A step on a third ledger, or taken by the wrong side.
    let mut theirs = b.steps(&key);
    theirs[0].ledger = LedgerId::random();
    assert!(a.book.next_step(&key, b.id, &theirs).is_err());
    let mut theirs = b.steps(&key);
    theirs[0].step = Step::Commit;
    assert!(a.book.next_step(&key, b.id, &theirs).is_err());
    // A credit before any commit.
    let mut theirs = b.steps(&key);
    let mut credit = theirs[0].clone();
    credit.step = Step::Credit;
    credit.seq = 7;
    theirs.push(credit);
    assert!(
        matches!(a.book.next_step(&key, b.id, &theirs), Err(Refusal::Peer(m)) if m.contains("credit before"))
    );
    // On B: a commit that does not reference its reservation; a lock for another ledger.
    exchange(&mut a, &mut b, &key, 3);
    let mut from_a = a.steps(&key);
    let commit = from_a.iter_mut().find(|r| r.step == Step::Commit).unwrap();
    commit.refs[0].leaf_hash = Hash::ZERO;
    assert!(matches!(b.book.next_step(&key, a.id, &from_a), Err(Refusal::Peer(_))));
    let c = Side::new();
    let stranger = c.book.next_step(&key, a.id, &a.steps(&key));
    assert!(matches!(stranger, Err(Refusal::Peer(m)) if m.contains("other ledgers")));
    // A source that both commits and unlocks.
    let mut both = a.steps(&key);
    let mut unlock = both[0].clone();
    unlock.step = Step::Unlock;
    unlock.seq = 99;
    both.push(unlock);
    assert!(b.book.next_step(&key, a.id, &both).is_err());
}

/// Two ledgers run many concurrent transfers over a channel that loses messages, each side
/// "crashes" (rebuilds its book from its entries) at random, and the source gives up at its
/// deadline. At the end both sides agree on every transfer, and tokens are conserved.
#[test]
fn random_loss_crashes_and_timeouts_never_leave_a_half_transfer() {
    for seed in 0..40u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (mut a, mut b) = (Side::new(), Side::new());
        a.mint("eur", 1_000);
        let mut keys = Vec::new();
        let mut now = 0u64;
        for round in 0..400u64 {
            now += 10;
            if round < 200 && rng.random_bool(0.3) {
                let id = format!("t{round}");
                let n = rng.random_range(1..=120);
                if let Ok(lock) = a.book.lock(&id, "eur", n, b.id, now + 300) {
                    a.take(&lock, now);
                    keys.push((a.id, id));
                }
            }
            if rng.random_bool(0.02) {
                a.restart();
            }
            if rng.random_bool(0.02) {
                b.restart();
            }
            for key in a.book.open() {
                if a.book.expired(&key, now) && rng.random_bool(0.5) {
                    let u = a.book.unlock(&key, "timeout").unwrap();
                    a.take(&u, now);
                }
                // Either half of the exchange may be lost.
                let sent = a.steps(&key);
                if rng.random_bool(0.7) {
                    if let Some(s) = b.book.next_step(&key, a.id, &sent).unwrap() {
                        b.take(&s, now);
                    }
                    if rng.random_bool(0.7) {
                        let answer = b.steps(&key);
                        if let Some(s) = a.book.next_step(&key, b.id, &answer).unwrap() {
                            a.take(&s, now);
                        }
                    }
                }
            }
            // The destination asks about its open reservations itself.
            for key in b.book.open() {
                if rng.random_bool(0.3) {
                    let answer = a.steps(&key);
                    if let Some(s) = b.book.next_step(&key, a.id, &answer).unwrap() {
                        b.take(&s, now);
                    }
                }
            }
            // No double spend at any moment.
            let ab = a.balance("eur");
            assert_eq!(ab.available + ab.locked + ab.sent, 1_000, "seed {seed}");
            // The per-asset balance (indexed) agrees with the full one.
            for side in [&a, &b] {
                for full in side.book.balances() {
                    assert_eq!(side.book.balance_of(&full.asset), full, "seed {seed}");
                }
            }
        }
        // Settle without loss.
        for _ in 0..3 {
            now += 1_000;
            for key in a.book.open() {
                if a.book.expired(&key, now)
                    && let Some(u) = a.book.unlock(&key, "timeout")
                {
                    a.take(&u, now);
                }
                exchange(&mut a, &mut b, &key, now);
            }
            for key in b.book.open() {
                let answer = a.steps(&key);
                if let Some(s) = b.book.next_step(&key, a.id, &answer).unwrap() {
                    b.take(&s, now);
                }
            }
        }
        assert!(a.book.open().is_empty() && b.book.open().is_empty(), "seed {seed}");
        let mut committed = 0;
        for key in &keys {
            let pa = a.book.get(key).unwrap().phase();
            let pb = b.book.get(key).map(Transfer::phase);
            match pb {
                Some(pb) => assert_eq!(pa.outcome(), pb.outcome(), "seed {seed} {key:?}"),
                None => assert_eq!(pa, Phase::Unlocked, "seed {seed} {key:?}"),
            }
            if pa == Phase::Confirmed {
                committed += a.book.get(key).unwrap().body().amount;
            }
        }
        let (ab, bb) = (a.balance("eur"), b.balance("eur"));
        assert_eq!((ab.sent, bb.received), (committed, committed), "seed {seed}");
        assert_eq!(ab.available + bb.available, 1_000, "seed {seed}");
        assert!(committed > 0, "seed {seed}: the run moved something");
    }
}
