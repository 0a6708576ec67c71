//! C2SP tlog-proofs between processes: `onoal prove inclusion SEQ --bundle` writes one for a
//! signed size (the newest that holds the entry; a running node signs one when none does), `onoal verify-proof` checks it in a
//! fresh directory with only the vkey, and every change to the file is refused with the reason.

use onoal_tests::node::{Serve, import, init};
use onoal_tests::{onoal, run, run_json};

fn bundle(dir: &std::path::Path, args: &[&str]) -> String {
    let out = run(onoal(dir).args(["prove", "inclusion"]).args(args).arg("--bundle"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_tlog_proof_verifies_with_the_vkey_alone_and_every_change_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    init(&d("a"), "oid:onoal:org:a");
    let info = run_json(onoal(&d("a")).arg("info"));
    let vkey = info["vkey"].as_str().unwrap().to_owned();
    import(&d("a"), 0, 7); // import signs a checkpoint of size 7
    import(&d("a"), 7, 2);
    let sizes = |v: serde_json::Value| -> Vec<u64> {
        v["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["tree_size"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(sizes(run_json(onoal(&d("a")).arg("checkpoints"))), vec![7, 9]);
    // The newest signed size that holds the entry.
    let text = bundle(&d("a"), &["4"]);
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    assert!(text.contains("\nindex 4\n") && text.contains("\n\noid:onoal:org:a\n9\n"), "{text}");

    let fresh = d("nowhere"); // verify-proof needs no data directory
    let check = |text: &str, extra: &[&str]| {
        let file = tmp.path().join("x.tlog-proof");
        std::fs::write(&file, text).unwrap();
        let out = run(onoal(&fresh)
            .arg("verify-proof")
            .arg(&file)
            .args(["--vkey", &vkey, "--json"])
            .args(extra));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(
            |_| serde_json::json!({"stderr": String::from_utf8_lossy(&out.stderr)}),
        );
        (out.status.code(), v)
    };
    let (code, v) = check(&text, &[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        (v["valid"].as_bool(), v["index"].as_u64(), v["tree_size"].as_u64()),
        (Some(true), Some(4), Some(9))
    );
    assert_eq!(v["entry"]["seq"], 4, "the leaf data is shown as the entry: {v}");
    assert!(v["entry"]["payload"].as_str().unwrap().starts_with("entry 4 "), "{v}");
    assert!(!fresh.exists(), "verify-proof created no data directory");

    // The leaf data out of band: the right bytes verify, others do not.
    let leaf =
        run_json(onoal(&d("a")).args(["get", "4"]))["leaf_data_b64"].as_str().unwrap().to_owned();
    let leaf_file = tmp.path().join("leaf.bin");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(&leaf).unwrap();
    std::fs::write(&leaf_file, &bytes).unwrap();
    let no_extra: String =
        text.lines().filter(|l| !l.starts_with("extra ")).map(|l| format!("{l}\n")).collect();
    assert_eq!(check(&no_extra, &[]).0, Some(1), "without leaf data nothing is proven");
    assert!(check(&no_extra, &[]).1["reason"].as_str().unwrap().contains("--leaf-data"));
    assert_eq!(check(&no_extra, &["--leaf-data", leaf_file.to_str().unwrap()]).0, Some(0));
    std::fs::write(&leaf_file, &bytes[..bytes.len() - 1]).unwrap();
    let (code, v) = check(&no_extra, &["--leaf-data", leaf_file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v}");

    // Every change is refused, with the reason.
    let other_leaf = bundle(&d("a"), &["5"]).lines().nth(1).unwrap().to_owned();
    let lies = [
        (text.replacen("index 4", "index 5", 1), "inclusion proof"),
        (text.replacen(text.lines().nth(1).unwrap(), &other_leaf, 1), "inclusion proof"),
        (text.replacen("\n9\n", "\n8\n", 1), "checkpoint does not verify"),
        (text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1), "first line"),
        (
            text.replacen(text.lines().nth(3).unwrap(), &format!("{}=", "A".repeat(43)), 1),
            "inclusion proof",
        ),
    ];
    for (lie, why) in lies {
        let (code, v) = check(&lie, &[]);
        assert_eq!(code, Some(1), "{why}: {v}");
        assert!(v["reason"].as_str().unwrap_or_default().contains(why), "{why}: {v}");
    }
    // Another ledger's vkey.
    let b = init(&d("b"), "oid:onoal:org:b");
    let bvkey = run_json(onoal(&d("b")).arg("info"))["vkey"].as_str().unwrap().to_owned();
    let file = tmp.path().join("y.tlog-proof");
    std::fs::write(&file, &text).unwrap();
    let out = run(onoal(&fresh).arg("verify-proof").arg(&file).args(["--vkey", &bvkey]));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stdout).contains("NOT valid"));
    drop(b);

    // An explicit size must be a signed one; with a node running, its newest checkpoint is used.
    let out = run(onoal(&d("a")).args(["prove", "inclusion", "1", "--size", "8", "--bundle"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("onoal checkpoints"));
    assert!(bundle(&d("a"), &["1", "--size", "7"]).contains("\n\noid:onoal:org:a\n7\n"));
    let served = Serve::start(&d("a"), 0, &[]);
    import(&d("a"), 9, 3);
    let text = bundle(&d("a"), &["10"]);
    assert!(text.contains("\noid:onoal:org:a\n12\n"), "signed through the node: {text}");
    assert_eq!(check(&text, &[]).0, Some(0));
    drop(served);
}
