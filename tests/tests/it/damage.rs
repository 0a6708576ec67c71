//! Storage damage: acknowledged entries are never dropped silently. The WAL of a closed ledger
//! holds nothing (a clean close flushes it), so damaging it loses nothing; damage to the WAL of
//! a crash image is refused with what was lost and what to do; a damaged index is reported by
//! the audit; and `onoal restore` rebuilds lost entries from a peer's verified replica.

use std::path::Path;

use onoal_engine::{Hash, Ledger, OpenError, VerifyError};
use onoal_tests::{onoal, run, run_fail, run_json};

use crate::sync::{Serve, import, init, pin};
use crate::util::{create, entry};

const N: u64 = 20_000;

/// Appends `N` entries in groups of 100 and signs a checkpoint of them; returns their leaf
/// hashes (the receipts).
fn fill(ledger: &Ledger) -> Vec<Hash> {
    let mut acked = Vec::new();
    for g in 0..N / 100 {
        let batch = (0..100)
            .map(|i| entry(["a", "b"][(i % 2) as usize], "t", format!("g{g} e{i}")))
            .collect();
        acked.extend(ledger.append_batch(batch).unwrap().into_iter().map(|r| r.leaf_hash));
    }
    assert_eq!(ledger.checkpoint_now().unwrap().size, N);
    acked
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// One byte at this fraction of the file flipped.
    Flip(f64),
    /// The file cut to this fraction of its length.
    Truncate(f64),
    /// The file deleted.
    Delete,
}

fn apply(file: &Path, d: Damage) {
    let len = std::fs::metadata(file).unwrap().len();
    match d {
        Damage::Flip(at) => {
            let mut bytes = std::fs::read(file).unwrap();
            if bytes.is_empty() {
                return;
            }
            let i = ((len as f64 * at) as usize).min(bytes.len() - 1);
            bytes[i] ^= 0x40;
            std::fs::write(file, bytes).unwrap();
        }
        Damage::Truncate(to) => {
            let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            f.set_len((len as f64 * to) as u64).unwrap();
        }
        Damage::Delete => std::fs::remove_file(file).unwrap(),
    }
}

const DAMAGES: [Damage; 10] = [
    Damage::Flip(0.01),
    Damage::Flip(0.1),
    Damage::Flip(0.25),
    Damage::Flip(0.5),
    Damage::Flip(0.75),
    Damage::Flip(0.99),
    Damage::Truncate(0.9),
    Damage::Truncate(0.5),
    Damage::Truncate(0.0),
    Damage::Delete,
];

/// Either the open is refused, saying what was acknowledged and what to do, or the ledger holds
/// every acknowledged entry and passes its audit. Returns true when refused.
fn refused_or_whole(dir: &Path, acked: &[Hash], what: &str) -> bool {
    match Ledger::builder(dir).open() {
        Err(e) => {
            let text = e.to_string();
            assert!(
                matches!(e, OpenError::EntriesLost { .. } | OpenError::StorageDamaged { .. }),
                "{what}: {e:?}"
            );
            assert!(
                text.contains(&N.to_string()) && text.contains("onoal restore"),
                "{what}: {text}"
            );
            // The audit reports it too, and nothing can be appended.
            let out = run(onoal(dir).arg("verify"));
            assert_eq!(out.status.code(), Some(1), "{what}");
            assert!(String::from_utf8_lossy(&out.stderr).contains("verify FAILED"), "{what}");
            run_fail(onoal(dir).args(["append", "--stream", "s", "--type", "t", "--payload", "x"]));
            true
        }
        Ok(l) => {
            assert_eq!(l.head().unwrap().size, N, "{what}: opened with entries missing");
            for seq in (0..N).step_by(997).chain([N - 1]) {
                assert_eq!(
                    l.entry(seq).unwrap().leaf_hash,
                    acked[seq as usize],
                    "{what}: entry {seq}"
                );
            }
            l.verify(&|_| {}).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(l.append(entry("s", "t", "after")).unwrap().seq, N, "{what}");
            false
        }
    }
}

#[test]
fn wal_damage_of_a_closed_ledger_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let ledger = create(&live);
    let acked = fill(&ledger);
    drop(ledger);
    // A clean close moved everything into table files: the WAL holds no entry.
    let wal_bytes: u64 = onoal_tests::wal_files(&live.join("db"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(wal_bytes < 1024, "the WAL of a closed ledger still holds {wal_bytes} bytes");
    for (n, d) in DAMAGES.iter().enumerate() {
        let dir = tmp.path().join(format!("closed{n}"));
        onoal_tests::copy_tree(&live, &dir);
        for wal in onoal_tests::wal_files(&dir.join("db")) {
            apply(&wal, *d);
        }
        let refused = refused_or_whole(&dir, &acked, &format!("{d:?} of a closed ledger's WAL"));
        assert!(!refused, "{d:?}: a closed ledger's WAL held nothing, yet the open was refused");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn wal_damage_of_a_crash_image_is_refused_never_repaired_silently() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    let ledger = create(&live);
    let acked = fill(&ledger);
    // A crash image: the files as they are while the ledger is open (every group and the signed
    // checkpoint fsynced to the WAL, nothing flushed to tables).
    let image = tmp.path().join("image");
    onoal_tests::copy_tree(&live, &image);
    drop(ledger);
    let wal = onoal_tests::wal_files(&image.join("db")).pop().expect("a WAL");
    assert!(std::fs::metadata(&wal).unwrap().len() > 1 << 20, "the entries are in the WAL");
    // Undamaged, the image opens whole.
    let control = tmp.path().join("control");
    onoal_tests::copy_tree(&image, &control);
    assert!(!refused_or_whole(&control, &acked, "the undamaged image"));

    let mut refusals = Vec::new();
    for (n, d) in DAMAGES.iter().enumerate() {
        let dir = tmp.path().join(format!("crash{n}"));
        onoal_tests::copy_tree(&image, &dir);
        let wal = onoal_tests::wal_files(&dir.join("db")).pop().expect("a WAL");
        apply(&wal, *d);
        if refused_or_whole(&dir, &acked, &format!("{d:?} of a crash image's WAL")) {
            refusals.push(format!("{d:?}"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Cutting or deleting signed entries is always refused (the high-water mark), and so is a
    // flipped byte inside a record (its checksum).
    for d in ["Truncate(0.9)", "Truncate(0.5)", "Truncate(0.0)", "Delete", "Flip(0.5)"] {
        assert!(refusals.iter().any(|r| r == d), "{d} was not refused; refused: {refusals:?}");
    }
}

/// Removes the first posting list of stream "a" from the raw database.
fn remove_a_posting_list(data: &Path) {
    let db = crate::open_errors::rocksdb_open(data);
    let cf = db.cf_handle("index").unwrap();
    let mut prefix = 0u32.to_be_bytes().to_vec();
    prefix.extend_from_slice(&[b's', 1, b'a']);
    let key = db
        .iterator_cf(cf, rocksdb::IteratorMode::From(&prefix, rocksdb::Direction::Forward))
        .next()
        .unwrap()
        .unwrap()
        .0;
    assert!(key.starts_with(&prefix));
    db.delete_cf(cf, &key).unwrap();
}

#[test]
fn verify_audits_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    // A missing posting list: queries of stream "a" would skip entries.
    let dir = tmp.path().join("missing");
    let l = create(&dir);
    fill(&l);
    drop(l);
    remove_a_posting_list(&dir);
    let l = Ledger::builder(&dir).open().unwrap();
    match l.verify(&|_| {}) {
        Err(VerifyError::IndexMismatch { seq: 0, kind: "stream", value, listed: false }) => {
            assert_eq!(value, "a")
        }
        other => panic!("expected the missing posting to be named, got {other:?}"),
    }
    drop(l);
    let out = run(onoal(&dir).arg("verify"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("index damaged") && err.contains("entry 0 has stream \"a\""), "{err}");

    // An extra posting: an entry listed under a stream it does not have.
    let dir = tmp.path().join("extra");
    let l = create(&dir);
    fill(&l);
    drop(l);
    {
        let db = crate::open_errors::rocksdb_open(&dir);
        let cf = db.cf_handle("index").unwrap();
        let mut key = 0u32.to_be_bytes().to_vec();
        key.extend_from_slice(&[b's', 1, b'a']);
        key.extend_from_slice(&0u64.to_be_bytes());
        let mut list = db.get_cf(cf, &key).unwrap().expect("the list of stream a at 0");
        list.extend_from_slice(&[1]); // the entry after the last one listed: stream b
        db.put_cf(cf, &key, list).unwrap();
    }
    let l = Ledger::builder(&dir).open().unwrap();
    assert!(
        matches!(
            l.verify(&|_| {}),
            Err(VerifyError::IndexMismatch { kind: "stream", listed: true, .. })
        ),
        "an extra posting was not found"
    );
}

#[test]
fn restore_rebuilds_lost_entries_from_a_peer_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let a = init(&a_dir, "oid:onoal:test:a");
    let b = init(&b_dir, "oid:onoal:test:b");
    let c = init(&c_dir, "oid:onoal:test:c");
    for (dir, n) in [(&a_dir, &b), (&a_dir, &c), (&b_dir, &a), (&c_dir, &a)] {
        pin(dir, n, 1);
    }
    import(&a_dir, 0, 12_000);
    // An old copy of A's storage (12,000 entries): what a restored old backup would hold.
    let old_db = tmp.path().join("a-old-db");
    onoal_tests::copy_tree(&a_dir.join("db"), &old_db);
    // C replicates A at 12,000; then A grows to 20,000 and B replicates all of it.
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&c_dir, &a, serve.1);
    assert_eq!(run_json(onoal(&c_dir).args(["sync", &a.id]))["to_size"], 12_000);
    serve.stop();
    import(&a_dir, 12_000, 8_000);
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve.1);
    assert_eq!(run_json(onoal(&b_dir).args(["sync", &a.id]))["to_size"], 20_000);
    serve.stop();
    let want_last = run_json(onoal(&a_dir).args(["get", "19999"]));

    // A's storage is replaced by the old copy: 8,000 acknowledged and signed entries are gone.
    std::fs::remove_dir_all(a_dir.join("db")).unwrap();
    onoal_tests::copy_tree(&old_db, &a_dir.join("db"));
    let err = run_fail(onoal(&a_dir).args(["get", "0"]));
    assert!(
        err.contains("holds 12000 entries") && err.contains("signed a checkpoint of 20000"),
        "{err}"
    );
    assert!(err.contains("onoal restore --from"), "{err}");
    let err =
        run_fail(onoal(&a_dir).args(["append", "--stream", "s", "--type", "t", "--payload", "x"]));
    assert!(err.contains("were lost"), "{err}");

    // C holds too little to give everything back: the restore says so, and A stays refused.
    let c_serve = Serve::start(&c_dir, 0, &[]);
    let err = run_fail(onoal(&a_dir).args([
        "restore",
        "--from",
        &format!("{}@127.0.0.1:{}", c.id, c_serve.1),
    ]));
    assert!(
        err.contains("gave back 12000 entries") && err.contains("signed a checkpoint of 20000"),
        "{err}"
    );
    c_serve.stop();
    run_fail(onoal(&a_dir).args(["get", "0"]));

    // B holds everything: every entry is checked against checkpoints A signed, and A is whole.
    let b_serve = Serve::start(&b_dir, 0, &[]);
    let r = run_json(onoal(&a_dir).args([
        "restore",
        "--from",
        &format!("{}@127.0.0.1:{}", b.id, b_serve.1),
    ]));
    b_serve.stop();
    eprintln!("restore: {r}");
    assert_eq!(
        (r["restored"].as_u64(), r["to_size"].as_u64(), r["lost"].as_u64()),
        (Some(8_000), Some(20_000), Some(0)),
        "{r}"
    );
    let v = run_json(onoal(&a_dir).arg("verify"));
    assert_eq!((v["ok"].as_bool(), v["entries"].as_u64()), (Some(true), Some(20_000)));
    assert_eq!(run_json(onoal(&a_dir).args(["get", "19999"])), want_last);
    let next =
        run_json(onoal(&a_dir).args(["append", "--stream", "s", "--type", "t", "--payload", "x"]));
    assert_eq!(next["seq"], 20_000);
}
