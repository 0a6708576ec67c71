//! Crash images with a torn write-ahead log: the newest WAL file of a crash-consistent copy is
//! cut at every point of a grid (a crash in the middle of writing a group, or after the Nth
//! group). Reopened, the ledger holds a whole number of groups — never part of one — whose
//! entries are exactly those acknowledged, and the audit passes.

use onoal_engine::{Hash, Ledger};

use crate::util::entry;

const GROUPS: u64 = 12;
const PER_GROUP: u64 = 97;

#[test]
fn a_torn_wal_recovers_to_whole_groups_only() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    // No checkpoint is signed during the test: the cut WAL holds only unsigned groups (a signed
    // one is a high-water mark the ledger refuses to go below; see damage.rs).
    let ledger = Ledger::builder(&live)
        .checkpoint_interval(std::time::Duration::from_secs(3600))
        .create(crate::util::oid("oid:onoal:test:ledger"))
        .unwrap();
    let mut acked: Vec<Hash> = Vec::new();
    for g in 0..GROUPS {
        let batch =
            (0..PER_GROUP).map(|i| entry("s", "t", format!("group {g} entry {i}"))).collect();
        acked.extend(ledger.append_batch(batch).unwrap().into_iter().map(|r| r.leaf_hash));
    }
    // A crash image: the files as they are while the ledger is open (every group fsynced to
    // the WAL, nothing flushed to tables yet).
    let image = tmp.path().join("image");
    onoal_tests::copy_tree(&live, &image);
    drop(ledger);
    let wal_len =
        std::fs::metadata(onoal_tests::wal_files(&image.join("db")).pop().expect("a WAL file"))
            .unwrap()
            .len();
    assert!(wal_len > 0, "the groups are in the WAL");

    let mut last_size = 0;
    let mut seen = std::collections::BTreeSet::new();
    let cuts: Vec<u64> = (0..=64).map(|k| wal_len * k / 64).collect();
    for (n, cut) in cuts.iter().enumerate() {
        let dir = tmp.path().join(format!("cut{n}"));
        onoal_tests::copy_tree(&image, &dir);
        let wal = onoal_tests::wal_files(&dir.join("db")).pop().expect("a WAL file");
        let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
        f.set_len(*cut).unwrap();
        drop(f);
        let l = Ledger::builder(&dir).open().unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let size = l.head().unwrap().size;
        assert_eq!(
            size % PER_GROUP,
            0,
            "cut at {cut} of {wal_len}: {size} entries is part of a group"
        );
        assert!(size >= last_size, "a longer WAL recovered fewer groups");
        last_size = size;
        seen.insert(size);
        for seq in 0..size {
            assert_eq!(
                l.entry(seq).unwrap().leaf_hash,
                acked[seq as usize],
                "cut at {cut}: entry {seq}"
            );
        }
        l.verify(&|_| {}).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        // And it goes on appending from the right seq.
        let r = l.append(entry("s", "t", "after")).unwrap();
        assert_eq!(r.seq, size);
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert_eq!(last_size, GROUPS * PER_GROUP, "the whole WAL recovers every group");
    // The cuts landed inside many different groups (the image really was WAL-only).
    assert!(seen.contains(&0) && seen.len() as u64 > GROUPS / 2, "recovered sizes {seen:?}");
}
