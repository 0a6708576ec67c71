//! Failed group writes (injected at the write boundary, as an I/O or fsync error would be):
//! callers get an error, nothing unacknowledged becomes durable, nothing acknowledged is lost,
//! and the ledger goes on appending with an unbroken chain.

use std::collections::HashMap;

use onoal_engine::{AppendError, Hash, Ledger};

use crate::util::{create, entry};

#[test]
fn a_failed_write_is_reported_and_the_ledger_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    let a = l.append_batch((0..300).map(|i| entry("s", "t", format!("a{i}"))).collect()).unwrap();
    l.dangerous_fail_group_writes(&[0]);
    let err =
        l.append_batch((0..50).map(|i| entry("s", "t", format!("b{i}"))).collect()).unwrap_err();
    assert!(matches!(&err, AppendError::Storage(m) if m.contains("injected")), "{err}");
    let c = l.append_batch((0..10).map(|i| entry("s", "t", format!("c{i}"))).collect()).unwrap();
    assert_eq!(c[0].seq, 300, "the failed batch's seqs are reused: it never became durable");
    assert_eq!(l.entry(300).unwrap().entry.prev_hash, a[299].leaf_hash);
    assert_eq!(l.head().unwrap().size, 310);
    l.verify(&|_| {}).unwrap();
    drop(l);
    let l = Ledger::builder(dir.path()).open().unwrap();
    assert_eq!(l.head().unwrap().size, 310);
    assert_eq!(l.entry(309).unwrap().leaf_hash, c[9].leaf_hash);
    l.verify(&|_| {}).unwrap();
}

#[test]
fn failures_among_pipelined_groups_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    let mut acked: HashMap<u64, Hash> = HashMap::new();
    let mut failed_batches = 0;
    for round in 0..20u64 {
        // Fail one or two of the next writes while several batches are in flight.
        l.dangerous_fail_group_writes(&[round % 3, round % 3 + 2]);
        let pending: Vec<_> = (0..6)
            .map(|b| {
                let batch = (0..40).map(|i| entry("p", "t", format!("{round}-{b}-{i}"))).collect();
                l.submit_batch(batch).unwrap()
            })
            .collect();
        for p in pending {
            match p.wait() {
                Ok(receipts) => {
                    for r in receipts {
                        assert!(
                            acked.insert(r.seq, r.leaf_hash).is_none(),
                            "seq {} acked twice",
                            r.seq
                        );
                    }
                }
                Err(AppendError::Storage(_)) => failed_batches += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }
    l.dangerous_fail_group_writes(&[]);
    assert!(failed_batches > 0, "no write failed: the test proved nothing");
    let size = l.head().unwrap().size;
    assert_eq!(size, acked.len() as u64, "exactly the acknowledged entries are durable");
    for (seq, h) in &acked {
        assert_eq!(l.entry(*seq).unwrap().leaf_hash, *h, "entry {seq} changed");
    }
    l.verify(&|_| {}).unwrap();
}
