//! The `onoal` binary, driven as a user would, in child processes.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::hash::{Hash, leaf_hash};
use onoal_engine::merkle::{verify_consistency, verify_inclusion};
use onoal_tests::{onoal, run, run_fail, run_json};

fn hash(v: &serde_json::Value) -> Hash {
    Hash::from_hex(v.as_str().unwrap()).unwrap()
}

fn init(dir: &std::path::Path) -> serde_json::Value {
    run_json(onoal(dir).args(["init", "--oid", "oid:onoal:cli:test"]))
}

#[test]
fn init_append_get_prove_checkpoint_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    let id = init(&data);
    assert_eq!(id["oid"], "oid:onoal:cli:test");
    assert_eq!(id["public_key"].as_str().unwrap().len(), 64);
    let vkey = id["vkey"].as_str().unwrap();
    assert!(vkey.starts_with("oid:onoal:cli:test+"), "{vkey}");
    let verifier = NoteVerifier::from_vkey(vkey).unwrap();

    for i in 0..5 {
        let r = run_json(onoal(&data).args([
            "append",
            "--stream",
            "orders",
            "--type",
            "order.created",
            "--subject",
            "oid:onoal:customer:1",
            "--payload",
            &format!("order {i}"),
        ]));
        assert_eq!(r["seq"], i);
    }
    let payload_file = tmp.path().join("p.bin");
    std::fs::write(&payload_file, [0u8, 1, 2, 255]).unwrap();
    let r = run_json(
        onoal(&data)
            .args(["append", "--stream", "blobs", "--type", "raw", "--payload-file"])
            .arg(&payload_file),
    );
    assert_eq!(r["seq"], 5);

    let e = run_json(onoal(&data).args(["get", "5"]));
    assert_eq!(B64.decode(e["payload_b64"].as_str().unwrap()).unwrap(), vec![0u8, 1, 2, 255]);
    let leaf_data = B64.decode(e["leaf_data_b64"].as_str().unwrap()).unwrap();
    assert_eq!(
        leaf_hash(&leaf_data),
        hash(&e["leaf_hash"]),
        "leaf_hash = SHA-256(0x00 || leaf_data)"
    );
    assert_eq!(e["prev_hash"], run_json(onoal(&data).args(["get", "4"]))["leaf_hash"]);
    assert_eq!(e["stream"], "blobs");
    assert_eq!(e["subject"], serde_json::Value::Null);

    // The checkpoint command prints the note exactly as stored.
    let out = run(onoal(&data).arg("checkpoint"));
    assert!(out.status.success());
    let note = String::from_utf8(out.stdout).unwrap();
    let cp = verifier.open(note.as_bytes()).unwrap();
    assert_eq!(cp.size, 6);
    let again = run(onoal(&data).args(["checkpoint", "--size", "6"]));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), note);

    let p = run_json(onoal(&data).args(["prove", "inclusion", "2"]));
    assert_eq!(p["tree_size"], 6);
    let proof: Vec<Hash> = p["proof"].as_array().unwrap().iter().map(hash).collect();
    verify_inclusion(2, 6, &hash(&p["leaf_hash"]), &proof, &cp.root).unwrap();

    let c = run_json(onoal(&data).args(["prove", "consistency", "3", "6"]));
    let proof: Vec<Hash> = c["proof"].as_array().unwrap().iter().map(hash).collect();
    assert_eq!(hash(&c["new_root"]), cp.root);
    verify_consistency(3, 6, &hash(&c["old_root"]), &cp.root, &proof).unwrap();

    let q =
        run_json(onoal(&data).args(["query", "--subject", "oid:onoal:customer:1", "--limit", "2"]));
    assert_eq!(q["entries"].as_array().unwrap().len(), 2);
    let next = q["next_cursor"].as_str().unwrap().to_owned();
    let q2 = run_json(onoal(&data).args([
        "query",
        "--subject",
        "oid:onoal:customer:1",
        "--limit",
        "10",
        "--cursor",
        &next,
    ]));
    assert_eq!(q2["entries"].as_array().unwrap().len(), 3);
    assert_eq!(q2["next_cursor"], serde_json::Value::Null);

    let v = run_json(onoal(&data).arg("verify"));
    assert_eq!(v["ok"], true);
    assert_eq!(v["entries"], 6);
}

#[test]
fn user_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    let err = run_fail(onoal(&data).args(["get", "0"]));
    assert!(err.contains("not an Onoal ledger"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked") && !err.contains("Backtrace"), "{err}");

    let err = run_fail(onoal(&data).args(["init", "--oid", "myorg"]));
    assert!(err.contains("invalid OID"), "{err}");
    init(&data);
    let err = run_fail(onoal(&data).args(["init", "--oid", "oid:onoal:again"]));
    assert!(err.contains("already exists"), "{err}");
    let err = run_fail(onoal(&data).args([
        "append",
        "--stream",
        "Bad Stream",
        "--type",
        "t",
        "--payload",
        "x",
    ]));
    assert!(err.contains("invalid stream"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let err = run_fail(onoal(&data).args(["get", "7"]));
    assert!(err.contains("beyond the log"), "{err}");
    let err = run_fail(onoal(&data).args(["prove", "consistency", "0", "0"]));
    assert!(err.contains("0 < old <= new"), "{err}");
    let err = run_fail(onoal(&data).args(["checkpoint", "--size", "5"]));
    assert!(err.contains("no checkpoint of size 5"), "{err}");
}

#[test]
fn import_stops_at_a_malformed_line_and_keeps_what_came_before() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    init(&data);
    let file = tmp.path().join("in.jsonl");
    let mut lines = String::new();
    for i in 0..5 {
        lines.push_str(&format!("{{\"stream\":\"s\",\"type\":\"t\",\"payload\":\"{i}\"}}\n"));
    }
    lines.push_str(
        "{\"stream\":\"s\",\"type\":\"t\",\"payload_b64\":\"AAE=\",\"subject\":\"oid:onoal:x\"}\n",
    );
    lines.push_str("{\"stream\":\"s\",\"type\":\"t\"\n"); // line 7: malformed
    lines.push_str("{\"stream\":\"s\",\"type\":\"t\",\"payload\":\"after\"}\n");
    std::fs::write(&file, lines).unwrap();
    let err = run_fail(onoal(&data).arg("import").arg(&file));
    assert!(err.contains("line 7"), "{err}");
    let head = run_json(onoal(&data).args(["query", "--limit", "100"]));
    let entries = head["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "everything before line 7 is kept, nothing after it");
    assert_eq!(entries[5]["payload"], "\u{0}\u{1}", "bytes that are UTF-8 come back as text");

    // A clean import reports what it did.
    let good = tmp.path().join("good.jsonl");
    std::fs::write(&good, "{\"stream\":\"s\",\"type\":\"t\",\"payload\":\"x\"}\n".repeat(2500))
        .unwrap();
    let r = run_json(onoal(&data).arg("import").arg(&good));
    assert_eq!(r["appended"], 2500);
    assert_eq!(r["first_seq"], 6);
    assert_eq!(r["last_seq"], 2505);
    assert_eq!(r["tree_size"], 2506);

    // JSON Lines with --ack --json: each record has a type; a JSON value is a payload too; the
    // time filters take RFC 3339 and durations.
    let more = tmp.path().join("more.jsonl");
    std::fs::write(
        &more,
        "{\"stream\":\"j\",\"type\":\"t\",\"payload\":{\"id\": 1}}\n{\"stream\":\"j\",\"type\":\"t\",\"payload\":[2]}\n",
    )
    .unwrap();
    let out = run(onoal(&data).args(["import", "--ack", "--batch", "1", "--json"]).arg(&more));
    let records: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = records.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ack", "ack", "summary"], "{records:?}");
    assert_eq!((records[0]["seq"].as_u64(), records[1]["seq"].as_u64()), (Some(2506), Some(2507)));
    let since = |t: &str| {
        run_json(onoal(&data).args(["query", "--stream", "j", "--since", t]))["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["payload"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(since("1h"), ["{\"id\":1}", "[2]"]);
    assert_eq!(since("2000-01-01T00:00:00Z"), ["{\"id\":1}", "[2]"]);
    assert!(since("2999-01-01T00:00:00+01:00").is_empty());
    let err = run_fail(onoal(&data).args(["query", "--since", "yesterday"]));
    assert!(err.contains("RFC 3339") && err.contains("1h"), "{err}");
}

#[test]
fn readers_work_while_another_process_writes_and_writers_are_told_it_is_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    init(&data);
    let mut child = onoal(&data)
        .args(["import", "-", "--ack", "--batch", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, "{{\"stream\":\"s\",\"type\":\"t\",\"payload\":\"held\"}}").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "acked 0");

    // The importer holds the ledger open: reads work, writes are refused clearly.
    let e = run_json(onoal(&data).args(["get", "0"]));
    assert_eq!(e["payload"], "held");
    assert!(e["time"].as_str().unwrap().ends_with('Z'), "RFC 3339 next to timestamp_ms: {e}");
    run_json(onoal(&data).arg("verify"));
    let err =
        run_fail(onoal(&data).args(["append", "--stream", "s", "--type", "t", "--payload", "x"]));
    assert!(err.contains("in use by another process"), "{err}");

    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest.contains("\"appended\":1"), "{rest}");
}

#[test]
fn verify_exits_1_with_evidence_when_tampered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    init(&data);
    let file = tmp.path().join("in.jsonl");
    std::fs::write(&file, "{\"stream\":\"s\",\"type\":\"t\",\"payload\":\"abcdef\"}\n".repeat(50))
        .unwrap();
    run_json(onoal(&data).arg("import").arg(&file));
    {
        let db = crate::open_errors::rocksdb_open(&data);
        let cf = db.cf_handle("entries").unwrap();
        let mut k = 0u32.to_be_bytes().to_vec();
        k.extend_from_slice(&17u64.to_be_bytes());
        let mut v = db.get_cf(cf, &k).unwrap().unwrap();
        let at = v.windows(6).position(|w| w == b"abcdef").unwrap();
        v[at + 2] = b'X';
        db.put_cf(cf, &k, v).unwrap();
    }
    let out = run(onoal(&data).arg("verify"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry 17"), "{err}");
}

#[test]
fn flags_a_command_would_ignore_and_filters_that_can_never_match_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    init(&data);
    run_json(onoal(&data).args(["append", "--stream", "orders", "--type", "t", "--payload", "x"]));
    let err = run_fail(onoal(&data).args([
        "append",
        "--ledger",
        "00000000-0000-4000-8000-000000000001",
        "--stream",
        "orders",
        "--type",
        "t",
        "--payload",
        "y",
    ]));
    assert!(err.contains("--ledger does not apply to `append`"), "{err}");
    let err = run_fail(onoal(&data).args(["get", "0", "--durability", "buffered"]));
    assert!(err.contains("--durability does not apply to `get`"), "{err}");
    let err = run_fail(onoal(&data).args(["get", "1"]));
    assert!(err.contains("beyond the log"), "nothing was appended: {err}");

    for (args, says) in [
        (&["query", "--subject", "customer42"][..], "invalid OID"),
        (&["query", "--stream", "ORDERS"][..], "invalid stream"),
        (&["query", "--type", "Not A Type"][..], "invalid entry type"),
        (&["query", "--since", "5", "--until", "3"][..], "time window is empty"),
        (&["query", "--limit", "0"][..], "1..=10000"),
        (&["query", "--limit", "20000"][..], "1..=10000"),
    ] {
        let err = run_fail(onoal(&data).args(args));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // With --json the error is also one JSON object on stdout, with a stable kind.
    for (args, kind, says) in [
        (&["get", "0", "--durability", "buffered"][..], "usage", "--durability does not apply"),
        (&["query", "--limit", "0"][..], "usage", "1..=10000"),
        (&["query", "--subject", "customer42"][..], "invalid_input", "invalid OID"),
        (&["get", "9"][..], "out_of_range", "beyond the log"),
        (&["checkpoint", "--size", "5"][..], "no_checkpoint", "no checkpoint of size 5"),
    ] {
        let out = run(onoal(&data).args(args).arg("--json"));
        // (a value clap refuses exits 2, as usage errors do)
        assert!(matches!(out.status.code(), Some(1 | 2)), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON object ({e})"));
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(says), "{args:?}: {v}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(says), "stderr keeps the line");
    }
    let out = run(onoal(&tmp.path().join("none")).args(["get", "0", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "not_a_ledger", "{v}");
    assert_eq!(
        run_json(onoal(&data).args(["query", "--stream", "orders"]))["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn checkpoints_are_listed_and_verify_says_what_no_checkpoint_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    init(&data);
    run_json(onoal(&data).args(["append", "--stream", "s", "--type", "t", "--payload", "x"]));
    let list = run_json(onoal(&data).arg("checkpoints"));
    let sizes: Vec<u64> = list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tree_size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes.last(), Some(&1), "{list}");
    let err = run_fail(onoal(&data).args(["checkpoint", "--size", "99"]));
    assert!(err.contains("onoal checkpoints"), "{err}");

    // Entries appended without a checkpoint (the engine signs on its interval, an hour here).
    {
        let ledger = onoal_engine::Ledger::builder(&data)
            .checkpoint_interval(std::time::Duration::from_secs(3600))
            .open()
            .unwrap();
        for i in 0..3 {
            let e = onoal_engine::NewEntry::new(
                onoal_engine::Name::stream("s").unwrap(),
                onoal_engine::Name::entry_type("t").unwrap(),
                format!("unsigned {i}").into_bytes(),
            );
            ledger.append(e).unwrap();
        }
    }
    let out = run(onoal(&data).arg("verify"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("entries 1 to 3 are in no signed checkpoint"), "{text}");
    let out = run(onoal(&data).args(["verify", "--require-checkpoint"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("entries 1 to 3"), "{out:?}");
    run_json(onoal(&data).arg("checkpoint"));
    let v = run_json(onoal(&data).args(["verify", "--require-checkpoint"]));
    assert_eq!((v["ok"].as_bool(), v["signed_size"].as_u64()), (Some(true), Some(4)), "{v}");
}
