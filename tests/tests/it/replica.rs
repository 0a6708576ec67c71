//! Replicas in the engine: verified bundles in, same reads and audit out; every bad input is
//! refused with nothing written.

use onoal_engine::Ledger;
use onoal_engine::replica::{
    Accepted, BUNDLE_ENTRIES, BundleError, ReplicaError, SyncStatus, bundle_path_from_inclusion,
    verify_bundle,
};

use crate::util::{create, fill};

/// What a sync source sends for bundle `first` of `source`'s tree of `size`.
fn bundle(source: &Ledger, first: u64, size: u64) -> (Vec<Vec<u8>>, Vec<onoal_engine::Hash>) {
    let leaves = source.log().leaf_data_range(first, (first + BUNDLE_ENTRIES).min(size)).unwrap();
    let proof = source.inclusion_proof(first, size).unwrap();
    (leaves, bundle_path_from_inclusion(first, size, &proof).unwrap())
}

fn sync_all(source: &Ledger, target: &Ledger) -> u64 {
    let mut w = target.replica_writer(source.identity()).unwrap();
    let cp = source.checkpoint_now().unwrap();
    let held = w.checkpoint().map_or(0, |c| c.size);
    let proof = if held == 0 || held >= cp.size {
        Vec::new()
    } else {
        source.consistency_proof(held, cp.size).unwrap()
    };
    w.accept_checkpoint(&cp.note, &proof).unwrap();
    let mut first = w.held() - w.held() % BUNDLE_ENTRIES;
    while first < cp.size {
        let (leaves, path) = bundle(source, first, cp.size);
        let b = verify_bundle(&cp, first, leaves, &path).unwrap();
        w.commit(b).unwrap();
        first += BUNDLE_ENTRIES;
    }
    w.held()
}

#[test]
fn full_then_incremental_sync_gives_an_identical_verifiable_replica() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (create(a.path()), create(b.path()));
    fill(&src, 1000, 300);
    assert_eq!(sync_all(&src, &dst), 1000);
    // Incremental from a size that is not a bundle boundary (1000 = 3*256 + 232).
    fill(&src, 517, 100);
    assert_eq!(sync_all(&src, &dst), 1517);
    let replica = dst.replica(&src.identity().ledger_id).unwrap();
    assert_eq!(replica.head().unwrap(), src.head().unwrap());
    assert_eq!(replica.entry(1234).unwrap(), src.entry(1234).unwrap());
    let q = onoal_engine::Query {
        filter: onoal_engine::Filter { stream: Some("b".into()), ..Default::default() },
        ..Default::default()
    };
    assert_eq!(replica.query(&q).unwrap(), src.query(&q).unwrap());
    assert_eq!(replica.inclusion_proof(77, 1517).unwrap(), src.inclusion_proof(77, 1517).unwrap());
    let report = replica.verify(&|_| {}).unwrap();
    assert_eq!(report.entries, 1517);
    assert_eq!(
        dst.sync_record(&src.identity().ledger_id).unwrap().unwrap().status,
        SyncStatus::Complete
    );
    // The own log is untouched.
    assert_eq!(dst.head().unwrap().size, 0);
    // Replicas survive reopening (a Log handle keeps the database open: drop it too).
    drop((dst, replica));
    let dst = Ledger::builder(b.path()).open().unwrap();
    assert_eq!(dst.replica(&src.identity().ledger_id).unwrap().head().unwrap().size, 1517);
}

#[test]
fn bad_bundles_are_refused_and_nothing_is_written() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (create(a.path()), create(b.path()));
    fill(&src, 600, 600);
    let cp = src.checkpoint_now().unwrap();
    let mut w = dst.replica_writer(src.identity()).unwrap();
    assert_eq!(w.accept_checkpoint(&cp.note, &[]).unwrap(), Accepted::New);
    let (leaves, path) = bundle(&src, 0, cp.size);

    // One changed payload byte.
    let mut bad = leaves.clone();
    let at = bad[17].windows(10).position(|w| w == b"payload 17").unwrap();
    bad[17][at + 9] = b'8';
    // The next entry's link no longer matches.
    assert!(matches!(
        verify_bundle(&cp, 0, bad, &path),
        Err(BundleError::ChainBroken { seq: 18, .. })
    ));
    // In the last entry of a bundle only the root can tell.
    let mut bad = leaves.clone();
    let at = bad[255].windows(11).position(|w| w == b"payload 255").unwrap();
    bad[255][at + 10] = b'6';
    assert!(matches!(verify_bundle(&cp, 0, bad, &path), Err(BundleError::RootMismatch { .. })));
    // Swapped pair.
    let mut bad = leaves.clone();
    bad.swap(3, 4);
    assert!(matches!(
        verify_bundle(&cp, 0, bad, &path),
        Err(BundleError::SeqMismatch { seq: 3, .. })
    ));
    // Missing entry.
    let mut bad = leaves.clone();
    bad.pop();
    assert!(matches!(verify_bundle(&cp, 0, bad, &path), Err(BundleError::WrongShape { .. })));
    // Wrong path.
    let mut bad_path = path.clone();
    bad_path[0].0[0] ^= 1;
    assert!(matches!(
        verify_bundle(&cp, 0, leaves.clone(), &bad_path),
        Err(BundleError::RootMismatch { .. })
    ));
    // Bundles out of order.
    let (l2, p2) = bundle(&src, 256, cp.size);
    let b2 = verify_bundle(&cp, 256, l2, &p2).unwrap();
    assert!(matches!(w.commit(b2), Err(ReplicaError::Gap { first: 256, held: 0 })));
    assert_eq!(w.held(), 0);
    assert_eq!(dst.replica(&src.identity().ledger_id).unwrap().head().unwrap().size, 0);
    // The good bundle still commits.
    w.commit(verify_bundle(&cp, 0, leaves, &path).unwrap()).unwrap();
    assert_eq!(w.held(), 256);
}

#[test]
fn forged_and_inconsistent_checkpoints_and_forks_are_refused() {
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (create(a.path()), create(b.path()));
    fill(&src, 300, 300);
    let cp = src.checkpoint_now().unwrap();
    let mut w = dst.replica_writer(src.identity()).unwrap();
    // A checkpoint of another ledger (another key) under src's identity: bad signature.
    let other = create(c.path());
    fill(&other, 300, 300);
    let forged = other.checkpoint_now().unwrap();
    assert!(matches!(
        w.accept_checkpoint(&forged.note, &[]),
        Err(ReplicaError::BadSignature { .. })
    ));
    // One changed byte of a real note.
    let mut tampered = cp.note.clone().into_bytes();
    let at = tampered.iter().position(|&b| b == b'\n').unwrap() + 1;
    tampered[at] = if tampered[at] == b'4' { b'5' } else { b'4' };
    assert!(w.accept_checkpoint(std::str::from_utf8(&tampered).unwrap(), &[]).is_err());
    assert!(w.checkpoint().is_none());
    w.accept_checkpoint(&cp.note, &[]).unwrap();
    // Kept as a light replica (an accepted checkpoint is written with the next write).
    w.set_status(SyncStatus::CheckpointOnly, None).unwrap();

    // A fork: a copy of src's directory (same key, same id) that appends other entries.
    drop(w);
    let fork_dir = tempfile::tempdir().unwrap();
    drop(src);
    for entry in std::fs::read_dir(a.path()).unwrap() {
        copy_tree(&entry.unwrap().path(), fork_dir.path());
    }
    let src = Ledger::builder(a.path()).open().unwrap();
    let forked = Ledger::builder(fork_dir.path()).open().unwrap();
    fill(&src, 100, 100);
    fill(&forked, 100, 50);
    let good = src.checkpoint_now().unwrap();
    let evil = forked.checkpoint_now().unwrap();
    assert_eq!(good.size, evil.size);
    assert_ne!(good.root, evil.root);
    let mut w = dst.replica_writer(src.identity()).unwrap();
    // The evil checkpoint with the honest consistency proof: inconsistent, nothing stored.
    let proof = src.consistency_proof(300, 400).unwrap();
    assert!(matches!(
        w.accept_checkpoint(&evil.note, &proof),
        Err(ReplicaError::Inconsistent { old_size: 300, new_size: 400, .. })
    ));
    assert_eq!(w.accept_checkpoint(&good.note, &proof).unwrap(), Accepted::New);
    // Now the other checkpoint of the same size is proof of a fork.
    assert!(matches!(w.accept_checkpoint(&evil.note, &[]), Err(ReplicaError::Fork { .. })));
    let record = dst.sync_record(&src.identity().ledger_id).unwrap().unwrap();
    assert_eq!(record.status, SyncStatus::Forked);
    let fork = record.fork.unwrap();
    assert_eq!((fork.held, fork.received), (good.note.clone(), evil.note.clone()));
    assert!(matches!(w.accept_checkpoint(&good.note, &[]), Err(ReplicaError::Forked(_))));
    drop(w);
    assert!(dst.drop_replica(&src.identity().ledger_id).unwrap());
    assert!(dst.replica(&src.identity().ledger_id).is_none());
}

fn copy_tree(from: &std::path::Path, to_dir: &std::path::Path) {
    let target = to_dir.join(from.file_name().unwrap());
    if from.is_dir() {
        std::fs::create_dir_all(&target).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            copy_tree(&e.unwrap().path(), &target);
        }
    } else {
        std::fs::copy(from, &target).unwrap();
    }
}

#[test]
fn replica_tiles_match_the_source_across_tile_levels() {
    // 70,000 entries fill a level-1 tile (65,536 leaves); sync in three steps that end inside
    // tiles, so whole-tile commits, partial tails and overlaps all occur.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (src, dst) = (create(a.path()), create(b.path()));
    for (n, expect) in [(300, 300), (65_500, 65_800), (4_200, 70_000)] {
        fill(&src, n, 1000);
        assert_eq!(sync_all(&src, &dst), expect);
        let replica = dst.replica(&src.identity().ledger_id).unwrap();
        assert_eq!(replica.head().unwrap().root, src.head().unwrap().root);
        assert_eq!(replica.verify(&|_| {}).unwrap().entries, expect);
        for seq in [0, expect / 2, expect - 1] {
            assert_eq!(
                replica.inclusion_proof(seq, expect).unwrap(),
                src.inclusion_proof(seq, expect).unwrap()
            );
        }
    }
}
