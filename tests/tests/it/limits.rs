//! What the CLI reads is bounded in bytes, with an error that says what to do: payload files,
//! import lines, key files, query pages of large entries. And a key file others can read is
//! warned about, and refused by `onoal serve` unless the operator insists.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use onoal_engine::identity::key_path;
use onoal_engine::{Ledger, Oid};
use onoal_tests::{onoal, run, run_fail, run_json};

use crate::sync::init;
use crate::util::entry;

fn size(dir: &std::path::Path) -> u64 {
    run_json(onoal(dir).arg("verify"))["entries"].as_u64().unwrap()
}

#[test]
fn an_endless_payload_file_is_refused_without_reading_it_all() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let started = Instant::now();
    let err = run_fail(onoal(&dir).args([
        "append",
        "--stream",
        "s",
        "--type",
        "t",
        "--payload-file",
        "/dev/zero",
    ]));
    assert!(started.elapsed() < Duration::from_secs(20), "read for {:?}", started.elapsed());
    assert!(err.contains("larger than this ledger's payload limit"), "{err}");
    assert_eq!(size(&dir), 0);
}

#[test]
fn an_import_line_longer_than_any_entry_stops_the_import_and_keeps_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let file = tmp.path().join("in.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, r#"{{"stream":"s","type":"t","payload":"first"}}"#).unwrap();
    // One line of 16 MiB with no end: past the longest line a 1 MiB payload can make.
    f.write_all(br#"{"stream":"s","type":"t","payload":""#).unwrap();
    f.write_all(&vec![b'x'; 16 << 20]).unwrap();
    drop(f);
    let out = run(onoal(&dir).arg("import").arg(&file));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 2") && err.contains("longer than"), "{err}");
    assert_eq!(size(&dir), 1, "the line before it is kept");
}

#[test]
fn a_huge_key_file_is_refused_without_reading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    // A sparse file of 1 GiB in place of the key.
    let key = key_path(&dir);
    let f = std::fs::OpenOptions::new().write(true).open(&key).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let started = Instant::now();
    let err =
        run_fail(onoal(&dir).args(["append", "--stream", "s", "--type", "t", "--payload", "p"]));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(err.contains("not an Onoal key file"), "{err}");
}

#[test]
fn a_query_of_large_entries_stops_at_its_byte_budget_with_a_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let ledger = Ledger::builder(&dir).create(Oid::parse("oid:onoal:test:big").unwrap()).unwrap();
    for b in 0..10u64 {
        let batch = (0..10u64)
            .map(|i| {
                let mut p = vec![b'q'; 1_000_000];
                p[..8].copy_from_slice(&(b * 10 + i).to_be_bytes());
                entry("big", "t", p)
            })
            .collect();
        ledger.append_batch(batch).unwrap();
    }
    drop(ledger);
    // 100 entries of 1 MB asked for at once: a page of at most 64 MiB, and where to go on.
    let page = run_json(onoal(&dir).args(["query", "--stream", "big", "--limit", "10000"]));
    let n = page["entries"].as_array().unwrap().len();
    assert!((1..100).contains(&n), "{n} entries in one page");
    assert!(n * 1_000_000 <= 64 << 20, "{n} entries of 1 MB in one page of at most 64 MiB");
    let cursor = page["next_cursor"].as_str().expect("a cursor to continue");
    assert_eq!(cursor, n.to_string());
    // Following the cursors reaches every entry exactly once.
    let mut seen = n;
    let mut cursor = cursor.to_owned();
    loop {
        let page = run_json(
            onoal(&dir).args(["query", "--stream", "big", "--limit", "10000", "--cursor", &cursor]),
        );
        seen += page["entries"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, 100);
}

#[test]
fn a_key_file_others_can_read_is_warned_about_and_refused_by_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let key = key_path(&dir);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(onoal(&dir).args(["append", "--stream", "s", "--type", "t", "--payload", "p"]));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by other users") && err.contains("chmod 600"), "{err}");
    let err = run_fail(onoal(&dir).args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(err.contains("--allow-insecure-key"), "{err}");
    // The operator insists: it serves.
    let mut cmd = onoal(&dir);
    cmd.args(["serve", "--json", "--listen", "127.0.0.1:0", "--allow-insecure-key"]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(v["addr"].as_str().is_some(), "{line}");
    // Mode 0600 again: no warning.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(onoal(&dir).args(["append", "--stream", "s", "--type", "t", "--payload", "p"]));
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("readable"));
}
