//! The seed's use case 1 between processes: organisation A issues an attestation about an
//! employee (an issuer-signed entry, subject = the employee's OID) on a ledger whose
//! checkpoints a witness cosigns; organisation B verifies it three ways — a routed
//! proof_verify to A, a one-shot cross-ledger query, and an offline proof file checked with
//! A's vkey and the witness quorum alone. (Use case 2 is `transfer.rs`.)

use std::time::{Duration, Instant};

use serde_json::Value;

use onoal_tests::node::{Serve, init, pin};
use onoal_tests::{onoal, run, run_json, stdout_json};

const SUBJECT: &str = "oid:onoal:org:a:emp:42";
const ISSUER: &str = "oid:onoal:org:a:hr";

#[test]
fn an_attestation_of_org_a_is_verified_by_org_b_routed_queried_and_offline_with_its_witness() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:org:a");
    let w = init(&d("w"), "oid:onoal:org:w");
    init(&d("b"), "oid:onoal:org:b");

    // A issues: the attestation is signed by A's HR key, about the employee's OID, in a stream
    // B may read; a private entry about the same employee stays private.
    let key_file = tmp.path().join("hr.key");
    let hr = run_json(onoal(&d("a")).args(["key", "new"]).arg(&key_file).args(["--name", ISSUER]));
    let hr_key = hr["public_key"].as_str().unwrap().to_owned();
    let issued = run_json(
        onoal(&d("a"))
            .args(["append", "--stream", "attestations", "--type", "employment.attested"])
            .args(["--subject", SUBJECT, "--issuer", ISSUER, "--payload", "employed since 2024"])
            .arg("--issuer-key")
            .arg(&key_file),
    );
    let seq = issued["seq"].as_u64().unwrap().to_string();
    run_json(onoal(&d("a")).args([
        "append",
        "--stream",
        "hr-private",
        "--type",
        "salary.set",
        "--subject",
        SUBJECT,
        "--payload",
        "5000",
    ]));
    run_json(onoal(&d("a")).args(["stream", "visibility", "attestations", "public"]));
    run_json(onoal(&d("a")).arg("checkpoint"));

    // W witnesses A; A publishes only checkpoints W cosigned.
    let wv =
        run_json(onoal(&d("w")).args(["witness", "info"]))["vkey"].as_str().unwrap().to_owned();
    let sw = Serve::start(&d("w"), 0, &[]);
    pin(&d("w"), &a, 1);
    pin(&d("a"), &w, sw.1);
    let sa = Serve::start_with(&d("a"), 0, &[], &["--witness", &w.id, "--witness-quorum", "1"]);
    let started = Instant::now();
    loop {
        let cp = run(onoal(&d("a")).args(["checkpoint", "--cosigned", "--json"]));
        let v: Value = serde_json::from_slice(&cp.stdout).unwrap_or(Value::Null);
        if v["cosigned_by"].as_array().is_some_and(|c| c.len() == 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "W never cosigned A: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    pin(&d("b"), &a, sa.1);

    // 1. Routed proof_verify: A checks its entry and signs the statement; B re-checks it.
    let out = run(onoal(&d("b")).args([
        "remote",
        "verify",
        "--json",
        "--to",
        "oid:onoal:org:a",
        "--seq",
        &seq,
        "--subject",
        SUBJECT,
        "--issuer",
        ISSUER,
        "--type",
        "employment.attested",
        "--issuer-key",
        &hr_key,
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = stdout_json(&out);
    assert_eq!(
        (v["verdict"].as_str(), v["checked_by"].as_str()),
        (Some("match"), Some("entry")),
        "{v}"
    );
    assert_eq!(v["checks"]["issuer_signature"], true, "{v}");
    // Another employee's OID: a mismatch, exit 1.
    let out = run(onoal(&d("b")).args([
        "remote",
        "verify",
        "--json",
        "--to",
        "oid:onoal:org:a",
        "--seq",
        &seq,
        "--subject",
        "oid:onoal:org:a:emp:43",
    ]));
    assert_eq!(
        (out.status.code(), stdout_json(&out)["verdict"].as_str()),
        (Some(1), Some("mismatch"))
    );

    // 2. One-shot cross-ledger query of A's attestations about the employee, proven; A's
    //    private stream about the same subject is refused to B, not silently filtered.
    let q = run_json(onoal(&d("b")).args([
        "remote",
        "query",
        "--to",
        "oid:onoal:org:a",
        "--stream",
        "attestations",
        "--subject",
        SUBJECT,
    ]));
    assert_eq!(q["verified"], true, "{q}");
    let entries = q["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{q}");
    assert_eq!(
        (entries[0]["type"].as_str(), entries[0]["stream"].as_str()),
        (Some("employment.attested"), Some("attestations")),
        "{q}"
    );

    let out = run(onoal(&d("b")).args([
        "remote",
        "query",
        "--to",
        "oid:onoal:org:a",
        "--stream",
        "hr-private",
        "--subject",
        SUBJECT,
    ]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"), "{out:?}");

    // 3. Offline: a tlog-proof file from A, checked by B with A's vkey and W's vkey alone.
    let proof = run(onoal(&d("a")).args(["prove", "inclusion", &seq, "--bundle"]));
    assert!(proof.status.success(), "{}", String::from_utf8_lossy(&proof.stderr));
    let file = d("attestation.tlog-proof");
    std::fs::write(&file, &proof.stdout).unwrap();
    let a_vkey = run_json(onoal(&d("a")).arg("info"))["vkey"].as_str().unwrap().to_owned();
    let offline = |extra: &[&str]| {
        let out = run(onoal(&d("nowhere"))
            .arg("verify-proof")
            .arg(&file)
            .args(["--vkey", &a_vkey, "--json"])
            .args(extra));
        (out.status.code(), stdout_json(&out))
    };
    let (code, v) = offline(&["--witness-vkey", &wv, "--quorum", "1"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["cosigned_by"].as_array().map(Vec::len), Some(1), "{v}");
    // A witness that never cosigned A: the quorum fails.
    let other =
        run_json(onoal(&d("b")).args(["witness", "info"]))["vkey"].as_str().unwrap().to_owned();
    let (code, v) = offline(&["--witness-vkey", &other, "--quorum", "1"]);
    assert_eq!(code, Some(1), "{v}");
    // A proof file that claims another index no longer verifies.
    let text = std::fs::read_to_string(&file).unwrap();
    let forged = text.replacen(&format!("\nindex {seq}\n"), "\nindex 1\n", 1);
    assert_ne!(forged, text);
    let forged_file = d("forged.tlog-proof");
    std::fs::write(&forged_file, &forged).unwrap();
    let out =
        run(onoal(&d("nowhere")).arg("verify-proof").arg(&forged_file).args(["--vkey", &a_vkey]));
    assert!(!out.status.success());
    drop((sa, sw));
}
