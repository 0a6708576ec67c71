//! The seed's proof verification and issuer signatures between `onoal` processes: org A issues
//! an issuer-signed attestation; org B asks A, through the mesh, to verify it against subject,
//! issuer, type and issuer key, and checks A's signed statement and its proof. A private entry
//! is confirmed only to an asker who names its leaf hash (from a proof file), never shown.

use std::time::Duration;

use onoal_tests::node::{Serve, init, pin};
use onoal_tests::{onoal, post_json, run, run_json, stdout_json};
use serde_json::{Value, json};

const SUBJECT: &str = "oid:onoal:org:a:emp:42";
const ISSUER: &str = "oid:onoal:org:a:hr";

#[test]
fn an_issuer_signed_attestation_is_verified_by_its_ledger_through_the_mesh() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:org:a");
    init(&d("b"), "oid:onoal:org:b");
    let key_file = tmp.path().join("hr.key");
    let other_key = tmp.path().join("other.key");
    let key = run_json(onoal(&d("a")).args(["key", "new"]).arg(&key_file).args(["--name", ISSUER]));
    let public = key["public_key"].as_str().unwrap().to_owned();
    let other = run_json(onoal(&d("a")).args(["key", "new"]).arg(&other_key))["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(public, other);
    // An issuer key is never overwritten; a file that is no key is refused with the way out.
    let out = run(onoal(&d("a")).args(["key", "new"]).arg(&key_file));
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("never overwritten")
    );
    assert_eq!(
        run_json(onoal(&d("a")).args(["key", "show"]).arg(&key_file))["public_key"],
        json!(public)
    );
    let junk = tmp.path().join("junk.key");
    std::fs::write(&junk, "not a key\n").unwrap();
    let out = run(onoal(&d("a"))
        .args(["append", "--stream", "x", "--type", "t", "--payload", "p", "--issuer-key"])
        .arg(&junk));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("onoal key new"), "{err}");

    // Seq 0: the attestation, signed by the issuer key at append; seq 1: a private entry,
    // signed by import.
    let appended = run_json(
        onoal(&d("a"))
            .args(["append", "--stream", "attestations", "--type", "employment.attested"])
            .args(["--subject", SUBJECT, "--issuer", ISSUER, "--payload", "employed since 2024"])
            .arg("--issuer-key")
            .arg(&key_file),
    );
    assert_eq!(appended["seq"], 0);
    let lines = tmp.path().join("private.jsonl");
    std::fs::write(
        &lines,
        format!("{{\"stream\":\"hr-private\",\"type\":\"salary.set\",\"subject\":\"{SUBJECT}\",\"payload\":\"5000\"}}\n"),
    )
    .unwrap();
    let out = run(onoal(&d("a")).arg("import").arg(&lines).arg("--issuer-key").arg(&key_file));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for seq in ["0", "1"] {
        let e = run_json(onoal(&d("a")).args(["get", seq]));
        assert_eq!(e["issuer_key"], json!(public), "{e}");
        assert_eq!(e["issuer_signature"].as_str().map(str::len), Some(128), "{e}");
    }
    // The whole log audits, signatures included.
    assert!(run(onoal(&d("a")).arg("verify")).status.success());
    run_json(onoal(&d("a")).args(["stream", "visibility", "attestations", "public"]));
    let out = run(onoal(&d("a")).args(["proof", "export", "1"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let proof_file = tmp.path().join("private-proof.json");
    std::fs::write(&proof_file, &out.stdout).unwrap();

    let served = Serve::start(&d("a"), 0, &[]);
    pin(&d("b"), &a, served.1);
    let verify =
        |args: &[&str]| run(onoal(&d("b")).args(["remote", "verify", "--json"]).args(args));

    // Every field as issued: match, re-checked here from the entry A showed.
    let out = verify(&[
        "--to",
        &a.id,
        "--seq",
        "0",
        "--subject",
        SUBJECT,
        "--issuer",
        ISSUER,
        "--type",
        "employment.attested",
        "--issuer-key",
        &public,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = stdout_json(&out);
    assert_eq!(
        (v["verdict"].as_str(), v["checked_by"].as_str()),
        (Some("match"), Some("entry")),
        "{v}"
    );
    assert_eq!(
        v["checks"],
        json!({"leaf_hash": null, "subject": true, "issuer": true, "type": true, "issuer_key": true, "issuer_signature": true}),
        "{v}"
    );
    assert_eq!((v["verified"].as_bool(), v["entry"]["seq"].as_u64()), (Some(true), Some(0)), "{v}");
    assert_eq!(
        (v["key_source"].as_str(), v["tree_size"].as_u64()),
        (Some("pinned"), Some(2)),
        "{v}"
    );
    assert!(v["statement_b64"].as_str().is_some_and(|s| s.len() > 40), "{v}");

    // A field that differs, another issuer key, an entry beyond the tree: exit 1, said why.
    let out = verify(&["--to", &a.id, "--seq", "0", "--subject", "oid:onoal:org:a:emp:43"]);
    let v = stdout_json(&out);
    assert_eq!((out.status.code(), v["verdict"].as_str()), (Some(1), Some("mismatch")), "{v}");
    assert_eq!(v["checks"]["subject"], false, "{v}");
    let out = verify(&["--to", &a.id, "--seq", "0", "--issuer-key", &other]);
    let v = stdout_json(&out);
    assert_eq!(
        (v["verdict"].as_str(), v["checks"]["issuer_key"].as_bool()),
        (Some("mismatch"), Some(false)),
        "{v}"
    );
    let out = verify(&["--to", "oid:onoal:org:a", "--seq", "99", "--subject", SUBJECT]);
    let v = stdout_json(&out);
    assert_eq!((out.status.code(), v["verdict"].as_str()), (Some(1), Some("not_found")), "{v}");

    // The private entry: refused without its leaf hash; confirmed, unseen, with a proof file.
    let out = verify(&["--to", &a.id, "--seq", "1", "--subject", SUBJECT]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("leaf hash"), "{err}");
    let pf = proof_file.to_str().unwrap();
    let out = verify(&[
        "--proof",
        pf,
        "--subject",
        SUBJECT,
        "--type",
        "salary.set",
        "--issuer-key",
        &public,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = stdout_json(&out);
    assert_eq!(
        (v["verdict"].as_str(), v["checked_by"].as_str()),
        (Some("match"), Some("statement")),
        "{v}"
    );
    assert_eq!(
        (v["entry"].is_null(), v["checks"]["leaf_hash"].as_bool()),
        (true, Some(true)),
        "{v}"
    );
    let wrong = "ab".repeat(32);
    let out = verify(&["--to", &a.id, "--seq", "1", "--leaf-hash", &wrong, "--subject", SUBJECT]);
    let v = stdout_json(&out);
    assert_eq!((out.status.code(), v["verdict"].as_str()), (Some(1), Some("mismatch")), "{v}");
    assert_eq!((v["leaf_hash"].is_null(), v["checks"]["subject"].is_null()), (true, true), "{v}");
    let out = verify(&["--proof", pf, "--leaf-hash", &wrong]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("differs from the proof file"));

    // The same through B's HTTP API.
    let b = Serve::start(&d("b"), 0, &[]);
    let (status, v) = post_json(
        &format!("{}/mesh/verify", b.url()),
        &json!({"to": a.id, "seq": 0, "type": "employment.attested"}),
    );
    assert_eq!((status, v["verdict"].as_str()), (200, Some("match")), "{v}");
    let (status, v) = post_json(
        &format!("{}/mesh/verify", b.url()),
        &json!({"to": a.id, "seq": 0, "leaf_hash": "zz"}),
    );
    assert_eq!(status, 400, "{v}");
    drop((b, served));
}

/// Polls `ref list` in `dir` until a record of `seq` appears (or 30 s pass).
fn recorded(dir: &std::path::Path, seq: u64) -> Value {
    let started = std::time::Instant::now();
    loop {
        let out = run(onoal(dir).args(["ref", "list", "--json"]));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(r) = list.as_array().and_then(|l| l.iter().find(|r| r["seq"] == seq)) {
            return r.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no record of {seq}: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn serve_verify_refs_checks_each_new_entry_after_append_and_records_the_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let x = init(&d("x"), "oid:onoal:org:x");
    let y = init(&d("y"), "oid:onoal:org:y");
    onoal_tests::node::import(&d("y"), 0, 6);
    run_json(onoal(&d("y")).args(["stream", "visibility", "s0", "public"]));
    let ys = Serve::start(&d("y"), 0, &[]);
    pin(&d("x"), &y, ys.1);
    let _ = &x;
    let hash = |seq: u64| -> String {
        run_json(onoal(&d("y")).args(["get", &seq.to_string()]))["leaf_hash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let good = format!("{}:3:{}", y.id, hash(3));
    let bad = format!("{}:3:{}", y.id, hash(0));
    // Before the hook is on: entry 0 is never checked by it.
    run_json(onoal(&d("x")).args([
        "append",
        "--stream",
        "c",
        "--type",
        "t",
        "--payload",
        "0",
        "--ref",
        &good,
    ]));

    let xs = Serve::start_with(&d("x"), 0, &[], &["--verify-refs"]);
    let append = |payload: &str, refs: &[&str]| -> u64 {
        let mut c = onoal(&d("x"));
        c.args(["append", "--stream", "c", "--type", "t", "--payload", payload]);
        for r in refs {
            c.args(["--ref", r]);
        }
        run_json(&mut c)["seq"].as_u64().unwrap()
    };
    let s1 = append("1", &[&good]);
    let s2 = append("2", &[]);
    let s3 = append("3", &[&good, &bad]);
    let r1 = recorded(&d("x"), s1);
    assert_eq!(
        (r1["all_verified"].as_bool(), r1["refs"][0]["status"].as_str()),
        (Some(true), Some("verified")),
        "{r1}"
    );
    let r3 = recorded(&d("x"), s3);
    assert_eq!(r3["all_verified"], false, "{r3}");
    assert_eq!(
        r3["refs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["verified", "mismatch"],
        "{r3}"
    );
    // Through the API as well; no record for the entry without references, nor for entry 0.
    let list: Value = ureq::get(format!("{}/mesh/refs", xs.url()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let seqs: Vec<u64> =
        list.as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [s3, s1], "{list}");
    assert!(!seqs.contains(&s2) && !seqs.contains(&0));
    let out = run(onoal(&d("x")).args(["ref", "list"]));
    assert_eq!(out.status.code(), Some(1), "a failed check makes `ref list` exit 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT verified"));

    // After a restart it goes on from where it stopped.
    xs.stop();
    let xs = Serve::start_with(&d("x"), 0, &[], &["--verify-refs"]);
    let s4 = append("4", &[&good]);
    assert_eq!(recorded(&d("x"), s4)["all_verified"], true);
    drop((xs, ys));
    // The records stay readable without a node.
    let out = run(onoal(&d("x")).args(["ref", "list", "--json"]));
    let list = stdout_json(&out);
    assert_eq!((out.status.code(), list.as_array().map(Vec::len)), (Some(1), Some(3)), "{list}");
}
