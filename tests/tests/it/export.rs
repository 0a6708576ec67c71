//! `onoal export` and `onoal import` round trip: text and binary payloads, subjects, issuers,
//! references and issuer signatures come back as they went out; `onoal info` at a glance.

use onoal_tests::{onoal, run, run_json};
use serde_json::Value;

#[test]
fn export_then_import_elsewhere_keeps_every_content_field_and_the_issuer_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = run_json(onoal(&d("a")).args(["init", "--oid", "oid:onoal:org:a"]));
    run_json(onoal(&d("b")).args(["init", "--oid", "oid:onoal:org:b"]));
    let key = tmp.path().join("issuer.key");
    run_json(onoal(&d("a")).args(["key", "new"]).arg(&key));
    let binary = tmp.path().join("binary");
    std::fs::write(&binary, [0xff, 0x00, 0x10, 0x80]).unwrap();
    let reference = format!("{}:0:{}", a["ledger_id"].as_str().unwrap(), "ab".repeat(32));
    let appends: Vec<Vec<String>> = vec![
        vec![
            "--stream".into(),
            "orders".into(),
            "--type".into(),
            "created".into(),
            "--payload".into(),
            "{\"id\": 1, \"note\": \"ünïcode\\n\"}".into(),
        ],
        vec![
            "--stream".into(),
            "blobs".into(),
            "--type".into(),
            "raw".into(),
            "--payload-file".into(),
            binary.display().to_string(),
        ],
        vec![
            "--stream".into(),
            "orders".into(),
            "--type".into(),
            "signed".into(),
            "--payload".into(),
            "x".into(),
            "--subject".into(),
            "oid:onoal:org:a:cust:1".into(),
            "--issuer".into(),
            "oid:onoal:org:a".into(),
            "--ref".into(),
            reference.clone(),
            "--issuer-key".into(),
            key.display().to_string(),
        ],
    ];
    for args in &appends {
        run_json(onoal(&d("a")).arg("append").args(args));
    }
    let out = run(onoal(&d("a")).arg("export"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = exported.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{exported}");
    assert_eq!(lines[0]["payload"], "{\"id\": 1, \"note\": \"ünïcode\\n\"}", "text stays text");
    assert_eq!(lines[1]["payload_b64"], "/wAQgA==", "bytes that are not UTF-8 go as base64");
    assert_eq!(lines[2]["refs"][0], reference.as_str());
    assert_eq!(lines[2]["issuer_signature"].as_str().map(str::len), Some(128));

    let file = tmp.path().join("entries.jsonl");
    std::fs::write(&file, &exported).unwrap();
    let out = run(onoal(&d("b")).arg("import").arg(&file));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // B's export is A's, byte for byte; B's entries keep A's issuer signature (B re-checked it).
    let again = run(onoal(&d("b")).arg("export"));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), exported);
    let signed = run_json(onoal(&d("b")).args(["get", "2"]));
    assert_eq!(signed["issuer_signature"], lines[2]["issuer_signature"], "{signed}");
    assert!(run(onoal(&d("b")).arg("verify")).status.success());

    // A filter exports a part; a signature changed on the way is refused by import.
    let part = run(onoal(&d("a")).args(["export", "--stream", "orders", "--type", "signed"]));
    assert_eq!(String::from_utf8(part.stdout).unwrap().lines().count(), 1);
    let mut forged = lines[2].clone();
    forged["payload"] = Value::from("y");
    std::fs::write(&file, format!("{forged}\n")).unwrap();
    let out = run(onoal(&d("b")).arg("import").arg(&file));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("issuer signature does not verify"), "{err}");

    let info = run_json(onoal(&d("b")).arg("info"));
    assert_eq!(
        (info["oid"].as_str(), info["tree_size"].as_u64()),
        (Some("oid:onoal:org:b"), Some(3)),
        "{info}"
    );
    assert!(info["vkey"].as_str().unwrap().starts_with("oid:onoal:org:b+"), "{info}");
}
