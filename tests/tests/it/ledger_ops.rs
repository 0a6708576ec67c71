//! Model-based: random sequences of ledger operations (batches, checkpoints, injected write
//! failures, reopen, reads) on a real RocksDB directory, checked against a plain `Vec` of the
//! entries acknowledged so far.

use onoal_engine::{AppendError, Filter, Hash, Ledger, Query};
use proptest::prelude::*;

use crate::util::{create, entry};

#[derive(Clone, Debug)]
enum Op {
    Append { n: u16, stream: u8 },
    AppendFailing { n: u16 },
    Checkpoint,
    Reopen,
    Read { at: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u16..400, 0u8..3).prop_map(|(n, stream)| Op::Append { n, stream }),
        1 => (1u16..50).prop_map(|n| Op::AppendFailing { n }),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        2 => any::<u16>().prop_map(|at| Op::Read { at }),
    ]
}

struct Model {
    leaves: Vec<(Hash, u8)>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn ledger_ops_agree_with_the_model(ops in proptest::collection::vec(op(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Some(create(dir.path()));
        let mut model = Model { leaves: Vec::new() };
        let mut counter = 0u64;
        for op in ops {
            let l = ledger.as_ref().unwrap();
            match op {
                Op::Append { n, stream } => {
                    let batch = (0..n).map(|_| { counter += 1; entry(&format!("s{stream}"), "t", format!("e{counter}")) }).collect();
                    let receipts = l.append_batch(batch).unwrap();
                    prop_assert_eq!(receipts[0].seq, model.leaves.len() as u64);
                    model.leaves.extend(receipts.iter().map(|r| (r.leaf_hash, stream)));
                }
                Op::AppendFailing { n } => {
                    l.dangerous_fail_group_writes(&[0]);
                    let batch = (0..n).map(|_| { counter += 1; entry("s0", "t", format!("e{counter}")) }).collect();
                    let err = l.append_batch(batch).unwrap_err();
                    prop_assert!(matches!(err, AppendError::Storage(_)));
                }
                Op::Checkpoint => {
                    let cp = l.checkpoint_now().unwrap();
                    prop_assert_eq!(cp.size, model.leaves.len() as u64);
                }
                Op::Reopen => {
                    drop(ledger.take());
                    ledger = Some(Ledger::builder(dir.path()).open().unwrap());
                }
                Op::Read { at } => {
                    let size = model.leaves.len() as u64;
                    prop_assert_eq!(l.head().unwrap().size, size);
                    if size > 0 {
                        let seq = u64::from(at) % size;
                        prop_assert_eq!(l.entry(seq).unwrap().leaf_hash, model.leaves[seq as usize].0);
                        let proof = l.inclusion_proof(seq, size).unwrap();
                        onoal_engine::merkle::verify_inclusion(seq, size, &model.leaves[seq as usize].0, &proof, &l.root_at(size).unwrap()).unwrap();
                        let stream = model.leaves[seq as usize].1;
                        let q = Query { filter: Filter { stream: Some(format!("s{stream}")), ..Default::default() }, limit: Some(10_000), ..Default::default() };
                        let expected = model.leaves.iter().filter(|x| x.1 == stream).count().min(10_000);
                        prop_assert_eq!(l.query(&q).unwrap().entries.len(), expected);
                    }
                }
            }
        }
        let l = ledger.as_ref().unwrap();
        prop_assert_eq!(l.verify(&|_| {}).unwrap().entries, model.leaves.len() as u64);
    }
}
