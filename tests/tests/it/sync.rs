//! Sync over QUIC on loopback between separate `onoal` processes: full, incremental and
//! checkpoint modes, resumption after a kill, wrong pinned keys, a restarting source.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use onoal_tests::node::terminate;
use onoal_tests::{onoal, run, run_fail, run_json};
use serde_json::Value;

pub(crate) use onoal_tests::node::{Node, Serve, import, init, pin, replica};

#[test]
fn full_incremental_and_checkpoint_sync_between_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    import(&a_dir, 0, 3000);
    pin(&a_dir, &b, 1);
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve.1);

    // Light client: checkpoint only.
    let s = run_json(onoal(&b_dir).args(["sync", &a.id, "--mode", "checkpoint"]));
    assert_eq!((s["checkpoint_size"].as_u64(), s["to_size"].as_u64()), (Some(3000), Some(0)));
    assert_eq!(replica(&b_dir, &a.id).unwrap()["status"], "checkpoint_only");

    // Incremental from nothing = everything.
    let s = run_json(onoal(&b_dir).args(["sync", &a.id]));
    assert_eq!((s["from_size"].as_u64(), s["to_size"].as_u64()), (Some(0), Some(3000)));
    assert_eq!(s["entries"], 3000);
    assert_eq!(s["verified"], true);
    // Verified syncs raise the source's trust a little (from the default 0.5).
    let t = run_json(onoal(&b_dir).args(["trust", "show", &a.id]));
    assert!(t["successful_interactions"].as_u64().unwrap() >= 2, "{t}");
    assert!(t["direct_level"].as_f64().unwrap() > 0.5, "{t}");
    assert_eq!(t["failed_interactions"], 0, "{t}");

    // The source restarts with more entries; incremental fetches only the new ones (and the
    // partial tile they extend).
    serve.stop();
    import(&a_dir, 3000, 1000);
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve.1);
    let s = run_json(onoal(&b_dir).args(["sync", &a.id]));
    assert_eq!(
        (s["from_size"].as_u64(), s["to_size"].as_u64(), s["entries"].as_u64()),
        (Some(3000), Some(4000), Some(1000))
    );

    // Replica reads answer as the source does.
    let own = run_json(onoal(&a_dir).args(["get", "3999"]));
    let rep = run_json(onoal(&b_dir).args(["get", "3999", "--ledger", &a.id]));
    assert_eq!(own, rep);
    let own = run_json(onoal(&a_dir).args(["query", "--stream", "s1", "--limit", "5"]));
    let rep = run_json(
        onoal(&b_dir).args(["query", "--stream", "s1", "--limit", "5", "--ledger", &a.id]),
    );
    assert_eq!(own, rep);
    let own = run_json(onoal(&a_dir).args(["prove", "inclusion", "77", "--size", "4000"]));
    let rep = run_json(onoal(&b_dir).args([
        "prove",
        "inclusion",
        "77",
        "--size",
        "4000",
        "--ledger",
        &a.id,
    ]));
    assert_eq!(own, rep);
    let v = run_json(onoal(&b_dir).args(["verify", "--ledger", &a.id]));
    assert_eq!((v["ok"].as_bool(), v["entries"].as_u64()), (Some(true), Some(4000)));
    // The own log of B is untouched.
    assert_eq!(run_json(onoal(&b_dir).arg("verify"))["entries"], 0);

    // Full: from scratch.
    let s = run_json(onoal(&b_dir).args(["sync", &a.id, "--mode", "full"]));
    assert_eq!((s["from_size"].as_u64(), s["entries"].as_u64()), (Some(0), Some(4000)));
    serve.stop();
}

#[test]
fn a_killed_sync_resumes_without_refetching_committed_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    const N: u64 = 150_000;
    import(&a_dir, 0, N);
    pin(&a_dir, &b, 1);
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve.1);
    let mut held_at_kill = 0;
    // Kill the receiver once it has committed something but not everything.
    for _attempt in 0..5 {
        let mut child =
            onoal(&b_dir).args(["sync", &a.id, "--json"]).stdout(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let size = replica(&b_dir, &a.id).and_then(|r| r["tree_size"].as_u64()).unwrap_or(0);
            if size > 0 || Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.kill();
        child.wait().unwrap();
        held_at_kill = replica(&b_dir, &a.id).and_then(|r| r["tree_size"].as_u64()).unwrap_or(0);
        if held_at_kill > 0 && held_at_kill < N {
            break;
        }
        // Finished before the kill: start over.
        run_json(onoal(&b_dir).args(["replicas", "drop", &a.id, "--yes"]));
    }
    assert!(held_at_kill > 0 && held_at_kill < N, "could not kill mid-sync (held {held_at_kill})");
    // The replica as the kill left it verifies.
    assert_eq!(run_json(onoal(&b_dir).args(["verify", "--ledger", &a.id]))["ok"], true);
    let s = run_json(onoal(&b_dir).args(["sync", &a.id]));
    assert_eq!(s["from_size"].as_u64(), Some(held_at_kill));
    assert_eq!(s["to_size"].as_u64(), Some(N));
    // Only entries not yet held were committed; at most the partial tile was fetched again.
    assert_eq!(s["entries"].as_u64(), Some(N - held_at_kill));
    assert!(s["bytes"].as_u64().unwrap() < (N - held_at_kill + 256) * 300);
    let v = run_json(onoal(&b_dir).args(["verify", "--ledger", &a.id]));
    assert_eq!(v["entries"].as_u64(), Some(N));
    eprintln!("killed mid-sync at {held_at_kill} of {N}; resumed and verified");
}

#[test]
fn a_wrong_pinned_key_refuses_the_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let a = init(&a_dir, "oid:onoal:test:a");
    let b = init(&b_dir, "oid:onoal:test:b");
    let c = init(&c_dir, "oid:onoal:test:c");
    import(&a_dir, 0, 10);
    pin(&a_dir, &b, 1);
    let serve = Serve::start(&a_dir, 0, &[]);
    let port = serve.1;
    // B pins A's id with C's key.
    run_json(onoal(&b_dir).args([
        "peer",
        "add",
        &format!("{}@127.0.0.1:{port}", a.id),
        "--key",
        &c.key,
    ]));
    let err = run_fail(onoal(&b_dir).args(["sync", &a.id]));
    assert!(err.contains("refused the connection") && err.contains(&a.key), "{err}");
    assert!(replica(&b_dir, &a.id).is_none());
    // A peer that is not pinned by the source is refused data.
    pin(&c_dir, &a, port);
    let err = run_fail(onoal(&c_dir).args(["sync", &a.id]));
    assert!(err.contains("does not know your key") && err.contains("trusted:0.4"), "{err}");
    assert!(err.contains(&format!("onoal peer add {}@", c.id)), "the client names itself: {err}");
}

#[test]
fn a_follower_reconnects_after_the_source_restarts_and_catches_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    import(&a_dir, 0, 500);
    pin(&a_dir, &b, 1);
    let serve_a = Serve::start(&a_dir, 0, &[]);
    // The follower holds B's directory, so A must come back on the same port.
    let a_port = serve_a.1;
    pin(&b_dir, &a, a_port);
    let mut follower = onoal(&b_dir)
        .args(["sync", &a.id, "--follow", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["to_size"], 500);
    serve_a.stop();
    import(&a_dir, 500, 700);
    let serve_a = Serve::start(&a_dir, a_port, &[]);
    // The follower reconnects by itself and reports the catch-up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut caught_up = false;
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["to_size"] == 1200 {
            caught_up = true;
            break;
        }
    }
    terminate(&mut follower);
    assert!(caught_up, "the follower did not catch up to 1200 after the source restarted");
    serve_a.stop();
    assert_eq!(replica(&b_dir, &a.id).unwrap()["tree_size"], 1200);
}

#[test]
fn the_demo_tells_the_mesh_story_of_five_ledgers_in_two_domains() {
    let v = run_json(onoal(Path::new("/nonexistent-unused")).args(["demo", "--entries", "3000"]));
    assert_eq!(v["domains"], serde_json::json!(["oid:onoal:acme", "oid:onoal:city"]));
    assert!(v["discovered_within_ms"].as_u64().is_some(), "{v}");
    assert_eq!(v["entries_synced"], 18_000);
    // Use case 1 (the first story): routed, queried, offline with the witness quorum; the
    // private stream refused; a changed proof refused.
    for field in [
        "attestation_verified_routed",
        "attestation_queried",
        "private_stream_refused",
        "cross_ledger_proof_verified",
        "tampered_proof_refused",
        "wrong_key_refused",
        "transfer_committed",
        "asset_followed",
        "split_view_caught",
    ] {
        assert_eq!(v[field], true, "{field}: {v}");
    }
    assert_eq!(v["attestation_seq"], 3000, "{v}");
    // The restarted node fetched only what it missed: 1000 entries, from where it stopped
    // (alpha's 3000, the attestation and the private entry, 20 live appends).
    assert_eq!(
        (v["resumed_from"].as_u64(), v["resumed_entries"].as_u64()),
        (Some(3022), Some(1000)),
        "{v}"
    );
    assert!(v["dashboard"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{v}");
    let ledgers = v["ledgers"].as_array().unwrap();
    assert_eq!(ledgers.len(), 3);
    // alpha appended two attestation entries, 20 live and 1000 more while beta was down, then
    // minted and wrote three transfer steps (lock, commit, confirm), registered a deed and
    // wrote three steps of its transfer; gamma (the eur) and beta (the deed) wrote two steps
    // each (reserve, credit).
    let size = |name: &Value| match name.as_str() {
        Some("alpha") => 4030,
        _ => 3002,
    };
    for l in ledgers {
        assert_eq!(l["entries"], size(&l["ledger"]), "{l}");
        for r in l["replicas"].as_array().unwrap() {
            let want = size(&r["of"]);
            assert_eq!(
                (r["entries"].as_u64(), r["verified"].as_bool()),
                (Some(want), Some(true)),
                "{r}"
            );
        }
    }
    // For people: a tutorial, each command shown, and nothing else leaks into it.
    let out = run(onoal(Path::new("/nonexistent-unused")).args(["demo", "--entries", "300"]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "$ onoal --data alpha init --oid oid:onoal:acme:alpha",
        "$ onoal --data epsilon init --oid oid:onoal:city:epsilon",
        "--bootstrap ALPHA_ID@127.0.0.1:",
        "every node knows the other four",
        "--witness GAMMA_ID --witness-quorum 1",
        "— oid:onoal:city:gamma/witness ",
        "$ onoal --data delta remote verify --to oid:onoal:acme:alpha --seq 300",
        "  match: ",
        "refused: stream `hr-private`",
        "valid: index 300 ",
        "cosigned by oid:onoal:city:gamma/witness",
        "NOT valid",
        "presented key",
        "resumed at entry 322",
        "gamma wrote reserve, credit",
        "owned by oid:onoal:acme:beta (beta) now",
        "caught: it cosigned \"oid:onoal:city:mallory 100\"",
        "mallory's replica: forked",
        "The dashboard shows all of it",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(!text.contains('\u{1b}') && !text.contains("WARN"), "no bars or logs leak:\n{text}");
}

#[test]
fn mesh_user_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let err = run_fail(onoal(&dir).args(["peer", "add", "not-a-spec", "--key", "00"]));
    assert!(err.contains("LEDGER_ID[@HOST:PORT]") && err.contains("ticket"), "{err}");
    let id = "6d0829cf-2068-4bfe-8a8f-1e8c598c66e2";
    let err =
        run_fail(onoal(&dir).args(["peer", "add", &format!("{id}@127.0.0.1:1"), "--key", "abcd"]));
    assert!(err.contains("64 hex digits"), "{err}");
    let err = run_fail(onoal(&dir).args(["sync", id]));
    assert!(err.contains("not pinned") && err.contains("onoal peer add"), "{err}");
    let err = run_fail(onoal(&dir).args(["get", "0", "--ledger", id]));
    assert!(err.contains("no replica"), "{err}");
    let err = run_fail(onoal(&dir).args(["sync", id, "--mode", "sideways"]));
    assert!(err.contains("full, incremental, checkpoint"), "{err}");
    // While the node runs, the sync goes through it and says the same.
    let serve = Serve::start(&dir, 0, &[]);
    let err = run_fail(onoal(&dir).args(["sync", id]));
    assert!(err.contains("not pinned") && err.contains("onoal peer add"), "{err}");
    serve.stop();
}

#[test]
fn filtered_sync_keeps_matching_entries_with_proofs_in_a_sparse_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    import(&a_dir, 0, 3000); // streams s0, s1, s2 in turn
    pin(&a_dir, &b, 1);
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve.1);
    let s = run_json(onoal(&b_dir).args(["sync", &a.id, "--stream", "s1"]));
    assert_eq!((s["entries"].as_u64(), s["checkpoint_size"].as_u64()), (Some(1000), Some(3000)));
    let r = replica(&b_dir, &a.id).unwrap();
    assert_eq!((r["kind"].as_str(), r["tree_size"].as_u64()), (Some("sparse"), Some(1000)));

    // Reads on the sparse replica answer as the source does for what it holds.
    let q = ["query", "--stream", "s1", "--limit", "10000"];
    let own = run_json(onoal(&a_dir).args(q));
    let rep = run_json(onoal(&b_dir).args(q).args(["--ledger", &a.id]));
    assert_eq!(own, rep);
    assert_eq!(
        run_json(onoal(&a_dir).args(["get", "4"])),
        run_json(onoal(&b_dir).args(["get", "4", "--ledger", &a.id]))
    );
    let err = run_fail(onoal(&b_dir).args(["get", "3", "--ledger", &a.id]));
    assert!(err.contains("not held by this sparse replica"), "{err}");
    let own = run_json(onoal(&a_dir).args(["prove", "inclusion", "7", "--size", "3000"]));
    let rep = run_json(onoal(&b_dir).args([
        "prove",
        "inclusion",
        "7",
        "--size",
        "3000",
        "--ledger",
        &a.id,
    ]));
    assert_eq!(own, rep);
    let v = run_json(onoal(&b_dir).args(["verify", "--ledger", &a.id]));
    assert_eq!((v["ok"].as_bool(), v["entries"].as_u64()), (Some(true), Some(1000)));

    // The source grows; a second filtered sync (another stream) adds its entries; the first
    // ones keep their proofs in the older checkpoint and everything still verifies.
    serve.stop();
    import(&a_dir, 3000, 300);
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve.1);
    let s = run_json(onoal(&b_dir).args(["sync", &a.id, "--stream", "s2"]));
    assert_eq!((s["entries"].as_u64(), s["checkpoint_size"].as_u64()), (Some(1100), Some(3300)));
    let v = run_json(onoal(&b_dir).args(["verify", "--ledger", &a.id]));
    assert_eq!((v["ok"].as_bool(), v["entries"].as_u64()), (Some(true), Some(2100)));
    let err = run_fail(onoal(&b_dir).args(["sync", &a.id, "--stream", "s1", "--follow"]));
    assert!(err.contains("neither --follow"), "{err}");
    serve.stop();
}

#[test]
fn a_log_travels_through_a_relay_and_is_verified_against_the_origin_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir, c_dir) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let a = init(&a_dir, "oid:onoal:test:a");
    let b = init(&b_dir, "oid:onoal:test:b");
    let c = init(&c_dir, "oid:onoal:test:c");
    import(&a_dir, 0, 2000);
    pin(&a_dir, &b, 1);
    pin(&b_dir, &c, 1);
    // A lets C read its log (a pin: trust 0.5, which A's default visibility admits); B serves
    // A's replica only within A's policy, and learns A's trust in C from A when it syncs.
    pin(&a_dir, &c, 1);
    // C knows A's key (to check A's checkpoints) but reaches only the relay B.
    pin(&c_dir, &a, 1);
    let serve_a = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve_a.1);
    run_json(onoal(&b_dir).args(["sync", &a.id]));
    serve_a.stop();
    let relay = Serve::start(&b_dir, 0, &[]);
    let b_port = relay.1;
    pin(&c_dir, &b, b_port);
    let s = run_json(onoal(&c_dir).args(["sync", &a.id, "--from", &format!("127.0.0.1:{b_port}")]));
    assert_eq!((s["to_size"].as_u64(), s["verified"].as_bool()), (Some(2000), Some(true)));
    let v = run_json(onoal(&c_dir).args(["verify", "--ledger", &a.id]));
    let origin = run_json(onoal(&a_dir).arg("verify"));
    assert_eq!(v["root"], origin["root"]);
    // The verified read through B is a learned route to A (C never reached A itself).
    let r = run_json(onoal(&c_dir).args(["route", "--to", &a.id]));
    assert_eq!(
        (r["strategy"].as_str(), &r["next_hops"]),
        (Some("oid_prefix"), &serde_json::json!([b.id])),
        "{r}"
    );
    assert!(r["reasons"].to_string().contains("learned route"), "{r}");
    relay.stop();
}
