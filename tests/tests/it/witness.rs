//! Witnesses between processes (C2SP tlog-witness, cosignature/v1): a log with `--witness` and
//! a quorum publishes only cosigned checkpoints; followers that require cosignatures refuse
//! the others; a log that shows two histories is refused by its witness, which keeps both notes
//! as proven evidence; a witness killed between persisting and answering never cosigns two
//! inconsistent checkpoints; the C2SP HTTP interface answers with the spec's status codes.

use std::path::Path;
use std::time::Duration;

use onoal_tests::node::{Node, Serve, import, init, pin};
use onoal_tests::{copy_tree, get_text, onoal, post_text, run, run_json};

/// Polls `f` every 100 ms for up to 30 s.
fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    onoal_tests::eventually(what, Duration::from_secs(30), f)
}

fn witness_vkey(dir: &Path) -> String {
    run_json(onoal(dir).args(["witness", "info"]))["vkey"].as_str().unwrap().to_owned()
}

fn witness_info(dir: &Path) -> serde_json::Value {
    run_json(onoal(dir).args(["witness", "info"]))
}

fn origin_hash(origin: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(origin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

#[test]
fn a_log_publishes_cosigned_checkpoints_and_followers_and_proofs_require_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let log = init(&d("log"), "oid:onoal:org:log");
    let w1 = init(&d("w1"), "oid:onoal:org:w1");
    let w2 = init(&d("w2"), "oid:onoal:org:w2");
    let f = init(&d("f"), "oid:onoal:org:f");
    let (v1, v2) = (witness_vkey(&d("w1")), witness_vkey(&d("w2")));
    assert!(v1.starts_with("oid:onoal:org:w1/witness+"), "{v1}");
    assert_ne!(v1, v2);
    // The witness key is not the ledger's key.
    let ledger_vkey = run_json(onoal(&d("w1")).arg("info"))["vkey"].as_str().unwrap().to_owned();
    assert_ne!(v1.split('+').nth(2), ledger_vkey.split('+').nth(2));
    import(&d("log"), 0, 300);

    let sw1 = Serve::start(&d("w1"), 0, &[]);
    let sw2 = Serve::start(&d("w2"), 0, &[]);
    for w in ["w1", "w2"] {
        pin(&d(w), &log, 1); // the witness knows the log's key (its address is not needed)
    }
    pin(&d("log"), &w1, sw1.1);
    pin(&d("log"), &w2, sw2.1);
    let sl = Serve::start_with(
        &d("log"),
        0,
        &[],
        &["--witness", &w1.id, "--witness", &w2.id, "--witness-quorum", "2"],
    );
    // Both witnesses cosign; the log keeps their lines with the checkpoint.
    let cp = eventually("a checkpoint cosigned by both witnesses", || {
        let out = run(onoal(&d("log")).args(["checkpoint", "--cosigned", "--json"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["cosigned_by"].as_array()?.len() == 2).then_some(v)
    });
    assert_eq!(cp["tree_size"], 300);
    let note = cp["note"].as_str().unwrap();
    assert_eq!(note.matches("\n\u{2014} ").count(), 3, "the log's line and two witnesses': {note}");
    let info = witness_info(&d("log"));
    assert_eq!(info["own"]["quorum"], 2);
    assert_eq!(info["own"]["published_size"], 300, "{info}");
    let witnessed = witness_info(&d("w1"));
    assert_eq!(witnessed["witnessed"][0]["origin"], "oid:onoal:org:log", "{witnessed}");
    assert_eq!(witnessed["witnessed"][0]["tree_size"], 300);

    // C2SP monitoring: the witness serves the cosigned checkpoint by origin hash, to anyone.
    let (status, text) =
        get_text(&format!("{}/witness/{}/checkpoint", sw1.url(), origin_hash("oid:onoal:org:log")));
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("oid:onoal:org:log\n300\n") && text.contains("/witness "), "{text}");
    assert_eq!(get_text(&format!("{}/witness/{}/checkpoint", sw1.url(), "ab".repeat(32))).0, 404);

    // New entries: the published checkpoint follows once both witnesses cosigned it.
    let appended = run_json(onoal(&d("log")).args([
        "append",
        "--stream",
        "s",
        "--type",
        "t",
        "--payload",
        "x",
    ]));
    assert_eq!(appended["seq"], 300, "{appended}");
    run_json(onoal(&d("log")).arg("checkpoint"));
    eventually("size 301 published", || {
        (witness_info(&d("log"))["own"]["published_size"] == 301).then_some(())
    });

    // A follower that requires both witnesses syncs, and holds the cosigned note.
    pin(&d("f"), &log, sl.1);
    pin(&d("log"), &f, 1); // the log serves pinned readers
    let sf = Serve::start_with(
        &d("f"),
        0,
        &[],
        &["--trust-witness", &v1, "--trust-witness", &v2, "--require-witnesses", "2"],
    );
    let synced = run_json(onoal(&d("f")).args(["sync", &log.id]));
    assert_eq!(synced["to_size"], 301, "{synced}");
    let held = run_json(onoal(&d("f")).args(["checkpoint", "--ledger", &log.id]));
    assert_eq!(held["cosigned_by"].as_array().unwrap().len(), 2, "{held}");

    // An offline proof with the quorum: verified with the two witness vkeys; a third witness
    // that never cosigned makes a quorum of 3 fail.
    let proof = run(onoal(&d("log")).args(["prove", "inclusion", "7", "--bundle"]));
    assert!(proof.status.success());
    let file = d("e7.tlog-proof");
    std::fs::write(&file, &proof.stdout).unwrap();
    let verify = |extra: &[&str]| {
        let out = run(onoal(&d("nowhere"))
            .arg("verify-proof")
            .arg(&file)
            .args(["--vkey", run_json(onoal(&d("log")).arg("info"))["vkey"].as_str().unwrap()])
            .args(["--json"])
            .args(extra));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), v)
    };
    let (code, v) = verify(&["--witness-vkey", &v1, "--witness-vkey", &v2]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["cosigned_by"].as_array().unwrap().len(), 2);
    init(&d("w3"), "oid:onoal:org:w3");
    let v3 = witness_vkey(&d("w3"));
    let (code, v) = verify(&["--witness-vkey", &v1, "--witness-vkey", &v2, "--witness-vkey", &v3]);
    assert_eq!(code, Some(1), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("2 of the 3"), "{v}");
    let (code, _) = verify(&[
        "--witness-vkey",
        &v1,
        "--witness-vkey",
        &v2,
        "--witness-vkey",
        &v3,
        "--quorum",
        "2",
    ]);
    assert_eq!(code, Some(0));

    // A ledger without witnesses: the follower refuses its checkpoints when it requires one.
    let plain = init(&d("plain"), "oid:onoal:org:plain");
    import(&d("plain"), 0, 10);
    pin(&d("plain"), &f, 1);
    let sp = Serve::start(&d("plain"), 0, &[]);
    pin(&d("f"), &plain, sp.1);
    let out = run(onoal(&d("f")).args(["sync", &plain.id, "--require-witnesses", "1", "--json"]));
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "uncosigned", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("0 of the 1"), "{err}");
    // Lifting the requirement for that ledger lets it sync.
    let ok = run_json(onoal(&d("f")).args(["sync", &plain.id, "--require-witnesses", "0"]));
    assert_eq!(ok["to_size"], 10);
    drop((sl, sw1, sw2, sf, sp));
}

#[test]
fn a_log_showing_two_histories_is_refused_by_its_witness_with_proven_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let log = init(&d("a"), "oid:onoal:org:two-faced");
    // The same ledger, key and all, in a second directory: one key, two histories.
    copy_tree(&d("a"), &d("b"));
    import(&d("a"), 0, 100);
    import(&d("b"), 1000, 120);
    let w = init(&d("w"), "oid:onoal:org:w");
    let vw = witness_vkey(&d("w"));
    // A bystander that knows the log's key and is known to the witness: it learns of the
    // split from the witness, and checks the evidence itself.
    let by = init(&d("by"), "oid:onoal:org:bystander");
    pin(&d("by"), &log, 1);
    let sby = Serve::start(&d("by"), 0, &[]);
    pin(&d("w"), &by, sby.1);
    let sw = Serve::start(&d("w"), 0, &[]);
    pin(&d("w"), &log, 1);
    for side in ["a", "b"] {
        pin(&d(side), &w, sw.1);
    }
    let sa = Serve::start_with(&d("a"), 0, &[], &["--witness", &w.id, "--witness-quorum", "1"]);
    eventually("a cosigned", || {
        (witness_info(&d("a"))["own"]["published_size"] == 100).then_some(())
    });
    let sb = Serve::start_with(&d("b"), 0, &[], &["--witness", &w.id, "--witness-quorum", "1"]);
    let evidence = eventually("the witness's evidence", || {
        let info = witness_info(&d("w"));
        info["evidence"].as_array().filter(|e| !e.is_empty()).map(|e| e[0].clone())
    });
    assert_eq!(evidence["origin"], "oid:onoal:org:two-faced");
    assert_eq!(
        evidence["proven"], true,
        "b sent its own root at 100: the split is proven: {evidence}"
    );
    assert!(evidence["held"].as_str().unwrap().starts_with("oid:onoal:org:two-faced\n100\n"));
    assert!(evidence["received"].as_str().unwrap().starts_with("oid:onoal:org:two-faced\n120\n"));
    let told = eventually("the bystander's copy of the evidence", || {
        let info = witness_info(&d("by"));
        info["evidence"].as_array().filter(|e| !e.is_empty()).map(|e| e[0].clone())
    });
    assert_eq!(told["proven"], true);
    assert_eq!(told["received"], evidence["received"]);
    // The witness still holds a's history; b publishes nothing and says why.
    let w_state = witness_info(&d("w"));
    assert_eq!(w_state["witnessed"][0]["tree_size"], 100);
    let b_info = eventually("b's witness error", || {
        let i = witness_info(&d("b"));
        i["own"]["witnesses"][0]["last_error"].as_str().map(str::to_owned).map(|e| (i, e))
    });
    assert!(b_info.1.contains("refused (422)"), "{}", b_info.1);
    assert_eq!(b_info.0["own"]["published_size"], serde_json::Value::Null);

    // Followers that require the witness: one syncs a's history; the other, pointed at b,
    // gets nothing b's witness did not cosign.
    let fa = init(&d("fa"), "oid:onoal:org:fa");
    let fb = init(&d("fb"), "oid:onoal:org:fb");
    pin(&d("a"), &fa, 1);
    pin(&d("b"), &fb, 1);
    pin(&d("fa"), &log, sa.1);
    pin(&d("fb"), &log, sb.1);
    let trust = ["--trust-witness", vw.as_str(), "--require-witnesses", "1"];
    let sfa = Serve::start_with(&d("fa"), 0, &[], &trust);
    let sfb = Serve::start_with(&d("fb"), 0, &[], &trust);
    assert_eq!(run_json(onoal(&d("fa")).args(["sync", &log.id]))["to_size"], 100);
    let out = run(onoal(&d("fb")).args(["sync", &log.id, "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let held = v["to_size"].as_u64().unwrap_or(0);
    assert_eq!(held, 0, "b's uncosigned history never reached its follower: {v}");

    // The bystander, which learned of the split from the witness, refuses to sync the ledger
    // at all; a follower holding a replica is marked forked when the evidence reaches it.
    pin(&d("a"), &by, 1);
    pin(&d("by"), &log, sa.1);
    let out = run(onoal(&d("by")).args(["sync", &log.id, "--json"]));
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(err["error"]["kind"], "fork", "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("two histories"), "{err}");
    // fa holds a's replica; the witness tells it (pinned with an address) on the next split:
    // b retries only a new checkpoint, so replay the evidence to fa through the witness.
    pin(&d("w"), &fa, sfa.1);
    import(&d("b"), 1120, 3); // a new checkpoint of b's history: refused again, evidence sent
    eventually("fa's replica marked forked", || {
        let forks = run_json(onoal(&d("fa")).arg("forks"));
        forks["forks"].as_array().filter(|f| !f.is_empty()).map(|_| ())
    });
    // Once the matter is settled, the bystander's operator drops the evidence (both pieces, the
    // second sent with b's new checkpoint): the ledger is synced again.
    eventually("the second piece of evidence at the bystander", || {
        (witness_info(&d("by"))["evidence"].as_array()?.len() >= 2).then_some(())
    });
    let dropped =
        run_json(onoal(&d("by")).args(["witness", "drop-evidence", "oid:onoal:org:two-faced"]));
    assert!(dropped["dropped"].as_u64().unwrap() >= 2, "{dropped}");
    assert_eq!(witness_info(&d("by"))["evidence"], serde_json::json!([]));
    let out = run(onoal(&d("by")).args([
        "witness",
        "drop-evidence",
        "oid:onoal:org:two-faced",
        "--json",
    ]));
    assert!(!out.status.success(), "nothing left to drop");
    let synced = run_json(onoal(&d("by")).args(["sync", &log.id]));
    assert!(synced["to_size"].as_u64().unwrap() >= 100, "{synced}");
    drop((sa, sb, sw, sfa, sfb, sby));
}

#[test]
fn a_witness_killed_between_persisting_and_answering_never_cosigns_a_second_history() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let log = init(&d("a"), "oid:onoal:org:l");
    copy_tree(&d("a"), &d("b"));
    import(&d("a"), 0, 50);
    import(&d("b"), 500, 60);
    let w = init(&d("w"), "oid:onoal:org:w");
    pin(&d("w"), &log, 1);
    // The witness aborts right after it persisted its first cosigned state.
    let mut sw =
        Serve::start_env(&d("w"), 0, &[], &[], &[("ONOAL_TEST_WITNESS_CRASH", "after-persist")]);
    let port = sw.1;
    for side in ["a", "b"] {
        pin(&d(side), &w, port);
    }
    let sa = Serve::start_with(&d("a"), 0, &[], &["--witness", &w.id]);
    assert!(sw.exited_within(Duration::from_secs(30)), "the witness did not crash");
    drop(sw);
    assert!(
        witness_info(&d("a"))["own"]["witnesses"][0]["cosigned_size"] == 0,
        "a never got the answer"
    );
    // Restarted on the same port, it remembers what it persisted: a's size 50.
    let sw = Serve::start(&d("w"), port, &[]);
    let info = witness_info(&d("w"));
    assert_eq!(info["witnessed"][0]["tree_size"], 50, "{info}");
    // b, the other history, is refused; a is cosigned (again) once it asks.
    let sb = Serve::start_with(&d("b"), 0, &[], &["--witness", &w.id]);
    eventually("b refused", || {
        let e = witness_info(&d("b"))["own"]["witnesses"][0]["last_error"].as_str()?.to_owned();
        e.contains("422").then_some(())
    });
    eventually("a cosigned after the restart", || {
        (witness_info(&d("a"))["own"]["witnesses"][0]["cosigned_size"] == 50).then_some(())
    });
    let info = witness_info(&d("w"));
    assert_eq!(info["witnessed"][0]["tree_size"], 50);
    assert_eq!(info["evidence"].as_array().unwrap().len(), 1, "{info}");
    drop((sa, sb, sw));
}

#[test]
fn the_c2sp_http_interface_answers_with_the_specs_status_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let log: Node = init(&d("log"), "oid:onoal:org:log");
    import(&d("log"), 0, 20);
    let note20 = run_json(onoal(&d("log")).arg("checkpoint"))["note"].as_str().unwrap().to_owned();
    let w = init(&d("w"), "oid:onoal:org:w");
    // A token on the API: the C2SP routes stay open, as the spec has them.
    let token = d("token");
    let sw = Serve::start_with(&d("w"), 0, &[], &["--http-token-file", token.to_str().unwrap()]);
    let url = format!("{}/witness/add-checkpoint", sw.url());
    // Unknown log: 404.
    let (status, _, body) = post_text(&url, &format!("old 0\n\n{note20}"));
    assert_eq!(status, 404, "{body}");
    // Pinned, the log's OID is learned at the first handshake: the witness syncs it once.
    pin(&d("log"), &w, 1);
    let sl = Serve::start(&d("log"), 0, &[]);
    pin(&d("w"), &log, sl.1);
    run_json(onoal(&d("w")).args(["sync", &log.id, "--mode", "checkpoint"]));
    let (status, _, body) = post_text(&url, &format!("old 0\n\n{note20}"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("\u{2014} oid:onoal:org:w/witness ") && body.ends_with('\n'),
        "{body}"
    );
    // A stale old size: 409 with the witness's size as text/x.tlog.size.
    let (status, content_type, body) = post_text(&url, &format!("old 0\n\n{note20}"));
    assert_eq!((status, content_type.as_str(), body.as_str()), (409, "text/x.tlog.size", "20\n"));
    // Old above the checkpoint: 400; malformed: 400; a changed note: 403.
    assert_eq!(post_text(&url, &format!("old 21\n\n{note20}")).0, 400);
    assert_eq!(post_text(&url, "old 20\n").0, 400);
    assert_eq!(
        post_text(&url, &format!("old 20\n\n{}", note20.replacen("\n20\n", "\n21\n", 1))).0,
        403
    );
    // The same size again: cosigned again; a bad proof to a larger size: 422.
    assert_eq!(post_text(&url, &format!("old 20\n\n{note20}")).0, 200);
    import(&d("log"), 20, 5);
    let note25 = run_json(onoal(&d("log")).args(["checkpoint", "--size", "25"]))["note"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad = format!("old 20\n{}\n\n{note25}", "A".repeat(43) + "=");
    assert_eq!(post_text(&url, &bad).0, 422);
    let proof = run_json(onoal(&d("log")).args(["prove", "consistency", "20", "25"]));
    let lines: String = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            use base64::Engine as _;
            let bytes = hex::decode(h.as_str().unwrap()).unwrap();
            format!("{}\n", base64::engine::general_purpose::STANDARD.encode(bytes))
        })
        .collect();
    let (status, _, body) = post_text(&url, &format!("old 20\n{lines}\n{note25}"));
    assert_eq!(status, 200, "{body}");
    drop(sw);
}

#[test]
fn the_witness_benchmark_reports_its_figures_with_their_baselines() {
    let tmp = tempfile::tempdir().unwrap();
    let v = run_json(onoal(&tmp.path().join("unused")).args([
        "bench",
        "witness",
        "--checkpoints",
        "30",
        "--witnesses",
        "2",
    ]));
    for field in [
        "cosign_per_s_one_core",
        "baseline_signature_floor_per_s",
        "ratio_to_floor",
        "cosign_durable_per_s",
        "baseline_fsynced_write_per_s",
        "checkpoint_to_quorum_p50_ms",
        "checkpoint_to_quorum_p99_ms",
    ] {
        assert!(v[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {v}");
    }
    assert_eq!((v["checkpoints"].as_u64(), v["witnesses"].as_u64()), (Some(30), Some(2)));
}
