//! Each way opening a data directory can fail has its own clear error.

use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Ledger, OpenError};

use crate::util::{create, oid};

#[test]
fn missing_directory_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ledger::builder(dir.path().join("nothing")).open().unwrap_err();
    assert!(matches!(err, OpenError::NotALedger { .. }), "{err}");
    assert!(err.to_string().contains("onoal init"), "{err}");
    let err = Ledger::builder(dir.path()).open_read_only().unwrap_err();
    assert!(matches!(err, OpenError::NotALedger { .. }), "{err}");
}

#[test]
fn directory_with_other_files_is_not_a_ledger_and_cannot_be_created_in() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let err = Ledger::builder(dir.path()).open().unwrap_err();
    assert!(matches!(err, OpenError::NotALedger { .. }), "{err}");
    let err = Ledger::builder(dir.path()).create(oid("oid:onoal:x")).unwrap_err();
    assert!(matches!(err, OpenError::AlreadyExists { .. }), "{err}");
    // Nothing was touched.
    assert_eq!(std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(), "hello");
}

#[test]
fn creating_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(create(dir.path()));
    let err = Ledger::builder(dir.path()).create(oid("oid:onoal:x")).unwrap_err();
    assert!(matches!(err, OpenError::AlreadyExists { .. }), "{err}");
}

#[test]
fn bad_ledger_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ledger::builder(dir.path().join("l"))
        .ledger_id("not-a-uuid")
        .create(oid("oid:onoal:x"))
        .unwrap_err();
    assert!(matches!(err, OpenError::BadLedgerId(_)), "{err}");
    let id = "6f9619ff-8b86-4d11-b42d-00c04fc964ff";
    let l = Ledger::builder(dir.path().join("m")).ledger_id(id).create(oid("oid:onoal:x")).unwrap();
    assert_eq!(l.identity().ledger_id.to_string(), id);
}

#[test]
fn other_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(create(dir.path()));
    {
        let db = rocksdb_open(dir.path());
        let cf = db.cf_handle("meta").unwrap();
        db.put_cf(cf, b"schema_version", 99u32.to_be_bytes()).unwrap();
    }
    let err = Ledger::builder(dir.path()).open().unwrap_err();
    assert!(matches!(err, OpenError::SchemaVersion { found: 99, supported: 1, .. }), "{err}");
}

#[test]
fn missing_unreadable_and_foreign_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pk = create(dir.path()).identity().public_key;
    let key = key_path(dir.path());
    let saved = std::fs::read(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file must be private");
    }

    std::fs::remove_file(&key).unwrap();
    let err = Ledger::builder(dir.path()).open().unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    // Reading needs no key.
    assert_eq!(Ledger::builder(dir.path()).open_read_only().unwrap().identity().public_key, pk);

    // A directory where the file should be cannot be read (works as root too).
    std::fs::create_dir(&key).unwrap();
    let err = Ledger::builder(dir.path()).open().unwrap_err();
    assert!(err.to_string().contains("cannot read key file"), "{err}");
    std::fs::remove_dir(&key).unwrap();

    std::fs::write(&key, "garbage\n").unwrap();
    let err = Ledger::builder(dir.path()).open().unwrap_err();
    assert!(err.to_string().contains("not an Onoal key file"), "{err}");

    SecretKey::from_seed(&[5; 32]).write_file(&key, "oid:onoal:test:ledger").unwrap();
    let err = Ledger::builder(dir.path()).open().unwrap_err();
    assert!(matches!(err, OpenError::KeyMismatch { .. }), "{err}");

    std::fs::write(&key, saved).unwrap();
    Ledger::builder(dir.path()).open().unwrap();
}

#[test]
fn second_writer_is_refused_while_readers_work() {
    let dir = tempfile::tempdir().unwrap();
    let writer = create(dir.path());
    crate::util::fill(&writer, 10, 10);
    let err = Ledger::builder(dir.path()).open().unwrap_err();
    assert!(matches!(err, OpenError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    let reader = Ledger::builder(dir.path()).open_read_only().unwrap();
    assert_eq!(reader.head().unwrap().size, 10);
    assert!(reader.append(crate::util::entry("a", "t", "x")).is_err());
}

pub(crate) fn rocksdb_open(dir: &std::path::Path) -> rocksdb::DB {
    let mut opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, dir.join("db")).unwrap();
    opts.create_if_missing(false);
    rocksdb::DB::open_cf(&opts, dir.join("db"), cfs).unwrap()
}
