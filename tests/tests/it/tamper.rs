//! `verify` finds changes made to the stored bytes behind the ledger's back, and names them.

use std::path::Path;

use onoal_engine::checkpoint::{Checkpoint, NoteSigner};
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Ledger, VerifyError};

use crate::open_errors::rocksdb_open;
use crate::util::{create, fill};

fn entry_key(seq: u64) -> Vec<u8> {
    let mut k = 0u32.to_be_bytes().to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn tile_key(level: u8, index: u64) -> Vec<u8> {
    let mut k = 0u32.to_be_bytes().to_vec();
    k.push(level);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// A ledger of 600 entries (three level-0 tiles) with one checkpoint, closed.
fn ledger_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let l = create(dir.path());
    fill(&l, 600, 200);
    l.checkpoint_now().unwrap();
    l.verify(&|_| {}).unwrap();
    dir
}

/// Runs the audit through the library and through `onoal verify` (a separate process), which
/// must exit 1 and name the same evidence on stderr.
fn verify(dir: &Path) -> Result<(), VerifyError> {
    let result = Ledger::builder(dir).open_read_only().unwrap().verify(&|_| {}).map(|_| ());
    let out = onoal_tests::run(onoal_tests::onoal(dir).arg("verify"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    match &result {
        Ok(()) => assert!(out.status.success(), "library says sound, CLI says: {stderr}"),
        Err(e) => {
            assert_eq!(out.status.code(), Some(1), "onoal verify must exit 1: {stderr}");
            assert!(stderr.contains(&e.to_string()), "CLI evidence {stderr:?} lacks {e}");
        }
    }
    result
}

#[test]
fn changed_payload_byte_is_named_by_seq() {
    let dir = ledger_dir();
    {
        let db = rocksdb_open(dir.path());
        let cf = db.cf_handle("entries").unwrap();
        let mut v = db.get_cf(cf, entry_key(300)).unwrap().unwrap();
        let at = v.windows(11).position(|w| w == b"payload 300").unwrap();
        v[at] = b'q';
        db.put_cf(cf, entry_key(300), v).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::LeafHashMismatch { seq: 300, .. }) => {}
        other => panic!("expected leaf mismatch at 300, got {other:?}"),
    }
}

#[test]
fn missing_entry_is_named() {
    let dir = ledger_dir();
    {
        let db = rocksdb_open(dir.path());
        db.delete_cf(db.cf_handle("entries").unwrap(), entry_key(42)).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::EntryMissing { seq: 42 }) => {}
        other => panic!("expected entry 42 missing, got {other:?}"),
    }
}

#[test]
fn swapped_entries_are_found() {
    let dir = ledger_dir();
    {
        let db = rocksdb_open(dir.path());
        let cf = db.cf_handle("entries").unwrap();
        let a = db.get_cf(cf, entry_key(10)).unwrap().unwrap();
        let b = db.get_cf(cf, entry_key(11)).unwrap().unwrap();
        db.put_cf(cf, entry_key(10), b).unwrap();
        db.put_cf(cf, entry_key(11), a).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::SeqMismatch { seq: 10, found: 11 }) => {}
        other => panic!("expected seq mismatch at 10, got {other:?}"),
    }
}

#[test]
fn changed_tile_hashes_are_named_by_tile() {
    // A bottom-row hash of a level-0 tile: named by the entry it stands for.
    let dir = ledger_dir();
    {
        let db = rocksdb_open(dir.path());
        let cf = db.cf_handle("tiles").unwrap();
        let mut v = db.get_cf(cf, tile_key(0, 1)).unwrap().unwrap();
        v[5 * 32] ^= 0xff;
        db.put_cf(cf, tile_key(0, 1), v).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::LeafHashMismatch { seq: 261, .. }) => {}
        other => panic!("expected leaf mismatch at 261, got {other:?}"),
    }
    // An interior hash of a level-0 tile.
    let dir = ledger_dir();
    {
        let db = rocksdb_open(dir.path());
        let cf = db.cf_handle("tiles").unwrap();
        let mut v = db.get_cf(cf, tile_key(0, 0)).unwrap().unwrap();
        v[256 * 32 + 3 * 32] ^= 1; // row 1, position 3
        db.put_cf(cf, tile_key(0, 0), v).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::TileMismatch { level: 0, index: 0, row: 1, position: 3, .. }) => {}
        other => panic!("expected tile 0/0 row 1 pos 3, got {other:?}"),
    }
    // The level-1 tile (roots of the level-0 tiles).
    let dir = ledger_dir();
    {
        let db = rocksdb_open(dir.path());
        let cf = db.cf_handle("tiles").unwrap();
        let mut v = db.get_cf(cf, tile_key(1, 0)).unwrap().unwrap();
        v[32] ^= 1;
        db.put_cf(cf, tile_key(1, 0), v).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::TileMismatch { level: 1, index: 0, row: 0, position: 1, .. }) => {}
        other => panic!("expected tile 1/0 position 1, got {other:?}"),
    }
}

#[test]
fn forged_checkpoints_are_found() {
    // A byte of the stored note changed: the signature no longer verifies.
    let dir = ledger_dir();
    {
        let db = rocksdb_open(dir.path());
        let cf = db.cf_handle("checkpoints").unwrap();
        let mut v = db.get_cf(cf, entry_key(600)).unwrap().unwrap();
        v[2] ^= 1;
        db.put_cf(cf, entry_key(600), v).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::CheckpointBadSignature { size: 600, .. }) => {}
        other => panic!("expected bad signature at 600, got {other:?}"),
    }
    // A validly signed checkpoint whose root is not the tree's.
    let dir = ledger_dir();
    {
        let key = SecretKey::read_file(&key_path(dir.path())).unwrap();
        let signer = NoteSigner::new("oid:onoal:test:ledger", key.signing_key().clone()).unwrap();
        let note = signer.sign(&Checkpoint {
            origin: "oid:onoal:test:ledger".into(),
            size: 100,
            root: onoal_engine::hash::leaf_hash(b"not the root"),
            extensions: vec![],
        });
        let db = rocksdb_open(dir.path());
        db.put_cf(db.cf_handle("checkpoints").unwrap(), entry_key(100), note).unwrap();
    }
    match verify(dir.path()) {
        Err(VerifyError::CheckpointRootMismatch { size: 100, .. }) => {}
        other => panic!("expected root mismatch at 100, got {other:?}"),
    }
}
