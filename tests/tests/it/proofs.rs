//! Proofs from the stored tiles agree with an independent reference tree, across tile
//! boundaries, and checkpoints are signed, stored and verifiable with the public key alone.

use std::time::Duration;

use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::hash::{Hash, empty_root, node_hash};
use onoal_engine::merkle::{verify_consistency, verify_inclusion};
use onoal_engine::{Ledger, ReadError};

use crate::util::{create, fill, oid};

/// RFC 6962 MTH straight from the definition.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

#[test]
fn roots_and_proofs_match_the_reference_across_tile_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    // Uneven batches so that tiles fill across group boundaries.
    let mut n = 0u64;
    for batch in [1u64, 2, 253, 1, 300, 7, 1000, 513] {
        fill_more(&l, &mut n, batch);
    }
    let size = l.head().unwrap().size;
    assert_eq!(size, 2077);
    let leaves: Vec<Hash> = l.range(0, size).unwrap().iter().map(|e| e.leaf_hash).collect();
    let sizes = [1u64, 2, 3, 255, 256, 257, 511, 512, 513, 1024, 1500, 2047, 2048, 2049, 2077];
    for &s in &sizes {
        let root = l.root_at(s).unwrap();
        assert_eq!(root, reference_root(&leaves[..s as usize]), "root at {s}");
        for seq in [0, s / 3, s / 2, s - 1] {
            let proof = l.inclusion_proof(seq, s).unwrap();
            verify_inclusion(seq, s, &leaves[seq as usize], &proof, &root)
                .unwrap_or_else(|e| panic!("inclusion {seq} in {s}: {e}"));
        }
        for &old in sizes.iter().filter(|&&o| o <= s) {
            let proof = l.consistency_proof(old, s).unwrap();
            verify_consistency(old, s, &l.root_at(old).unwrap(), &root, &proof)
                .unwrap_or_else(|e| panic!("consistency {old}->{s}: {e}"));
        }
    }
}

fn fill_more(l: &Ledger, n: &mut u64, k: u64) {
    let v = (*n..*n + k).map(|i| crate::util::entry("s", "t", i.to_be_bytes().to_vec())).collect();
    l.append_batch(v).unwrap();
    *n += k;
}

#[test]
fn proof_requests_outside_the_log_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    fill(&l, 10, 10);
    assert!(matches!(l.inclusion_proof(3, 11), Err(ReadError::OutOfRange { .. })));
    assert!(matches!(l.inclusion_proof(10, 10), Err(ReadError::Proof(_))));
    assert!(matches!(l.consistency_proof(0, 5), Err(ReadError::Proof(_))));
    assert!(matches!(l.consistency_proof(6, 5), Err(ReadError::Proof(_))));
    assert!(matches!(l.entry(10), Err(ReadError::OutOfRange { .. })));
}

#[test]
fn checkpoints_are_signed_on_demand_and_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::builder(dir.path())
        .checkpoint_interval(Duration::from_millis(50))
        .create(oid("oid:onoal:test:cp"))
        .unwrap();
    let verifier = NoteVerifier::from_vkey(&l.identity().verifier().to_vkey()).unwrap();
    fill(&l, 300, 100);
    let cp = l.checkpoint_now().unwrap();
    assert_eq!(cp.size, 300);
    let opened = verifier.open(cp.note.as_bytes()).unwrap();
    assert_eq!(opened.root, l.root_at(300).unwrap());
    assert_eq!(opened.origin, "oid:onoal:test:cp");
    // Asking again for the same size returns the stored note unchanged.
    assert_eq!(l.checkpoint_now().unwrap().note, cp.note);
    assert_eq!(l.checkpoint_at(300).unwrap().unwrap().note, cp.note);
    assert!(l.checkpoint_at(299).unwrap().is_none());

    // Without asking, the sequencer signs the new size within the interval.
    fill(&l, 5, 5);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while l.latest_checkpoint().unwrap().map(|c| c.size) != Some(305) {
        assert!(std::time::Instant::now() < deadline, "no checkpoint of size 305 was signed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sizes = l.checkpoint_sizes().unwrap();
    assert!(sizes.contains(&300) && sizes.contains(&305), "{sizes:?}");
    assert_eq!(l.verify(&|_| {}).unwrap().checkpoints, sizes.len() as u64);
}

#[test]
fn read_only_checkpoint_needs_one_of_the_current_size() {
    let dir = tempfile::tempdir().unwrap();
    {
        let l = Ledger::builder(dir.path())
            .checkpoint_interval(Duration::from_secs(3600))
            .create(oid("oid:onoal:ro"))
            .unwrap();
        fill(&l, 3, 3);
        l.checkpoint_now().unwrap();
        fill(&l, 2, 2);
    }
    let ro = Ledger::builder(dir.path()).open_read_only().unwrap();
    assert!(matches!(ro.checkpoint_now(), Err(ReadError::ReadOnly)));
    assert_eq!(ro.latest_checkpoint().unwrap().unwrap().size, 3);
}
