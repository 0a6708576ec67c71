//! Appends from many threads, reopen, durability modes, input limits.

use std::collections::HashSet;
use std::sync::Arc;

use onoal_engine::{AppendError, Durability, Hash, Ledger, NewEntry};

use crate::util::{create, entry, fill, oid};

#[test]
fn concurrent_appends_get_distinct_seqs_and_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(create(dir.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let l = ledger.clone();
            std::thread::spawn(move || {
                (0..300)
                    .map(|i| l.append(entry("s", "t", format!("{t}-{i}"))).unwrap().seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs = HashSet::new();
    for t in threads {
        for s in t.join().unwrap() {
            assert!(seqs.insert(s), "seq {s} handed out twice");
        }
    }
    assert_eq!(seqs.len(), 2400);
    assert_eq!(seqs.iter().max(), Some(&2399));
    let all = ledger.range(0, 2400).unwrap();
    let mut prev = Hash::ZERO;
    for e in &all {
        assert_eq!(e.entry.prev_hash, prev, "link at {}", e.entry.seq);
        prev = e.leaf_hash;
    }
    let report = ledger.verify(&|_| {}).unwrap();
    assert_eq!(report.entries, 2400);
    assert_eq!(report.root, ledger.head().unwrap().root);
}

#[test]
fn reopen_continues_at_the_right_seq_with_the_same_root() {
    let dir = tempfile::tempdir().unwrap();
    let (root, size) = {
        let l = create(dir.path());
        fill(&l, 777, 100);
        let h = l.head().unwrap();
        (h.root, h.size)
    };
    let l = Ledger::builder(dir.path()).open().unwrap();
    let h = l.head().unwrap();
    assert_eq!((h.root, h.size), (root, size));
    let r = l.append(entry("a", "t", "after reopen")).unwrap();
    assert_eq!(r.seq, 777);
    assert_eq!(l.entry(777).unwrap().entry.prev_hash, l.entry(776).unwrap().leaf_hash);
    l.verify(&|_| {}).unwrap();
}

#[test]
fn buffered_durability_appends_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = Ledger::builder(dir.path())
            .durability(Durability::Buffered)
            .create(oid("oid:onoal:buffered"))
            .unwrap();
        fill(&l, 1000, 250);
    }
    let l = Ledger::builder(dir.path()).open_read_only().unwrap();
    assert_eq!(l.head().unwrap().size, 1000);
    l.verify(&|_| {}).unwrap();
}

#[test]
fn invalid_entries_reject_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::builder(dir.path()).max_payload_bytes(10).create(oid("oid:onoal:x")).unwrap();
    let batch = vec![entry("a", "t", "ok"), entry("a", "t", "this payload is too long")];
    match l.append_batch(batch) {
        Err(AppendError::Invalid { index: 1, .. }) => {}
        other => panic!("expected entry 1 invalid, got {other:?}"),
    }
    assert_eq!(l.head().unwrap().size, 0, "nothing of the batch is appended");
    let mut signed = entry("a", "t", "signed")
        .sign(onoal_engine::identity::SecretKey::from_seed(&[1; 32]).signing_key());
    signed.payload = b"changed".to_vec();
    assert!(matches!(l.append(signed), Err(AppendError::Invalid { index: 0, .. })));
    let good: NewEntry = entry("a", "t", "signed")
        .sign(onoal_engine::identity::SecretKey::from_seed(&[1; 32]).signing_key());
    let r = l.append(good.clone()).unwrap();
    assert_eq!(l.entry(r.seq).unwrap().entry.content, good);
}

#[test]
fn timestamps_never_decrease() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    for _ in 0..20 {
        l.append(entry("a", "t", "x")).unwrap();
    }
    let all = l.range(0, 20).unwrap();
    assert!(all.windows(2).all(|w| w[0].entry.timestamp_ms <= w[1].entry.timestamp_ms));
}
