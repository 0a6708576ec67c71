//! A contradicting checkpoint is always a fork, never a violation charged to the messenger: a
//! follower at 309,000 and one at 300,000 meet a copy of the origin rewritten at 306,010, and
//! honest relays.

use std::path::Path;

use onoal_tests::{onoal, run, run_fail, run_json};
use serde_json::Value;

use crate::sync::{Node, Serve, import, init, pin};

fn peer_record(dir: &Path, id: &str) -> Value {
    let peers = run_json(onoal(dir).args(["peer", "list"]));
    peers["peers"].as_array().unwrap().iter().find(|p| p["ledger_id"] == id).cloned().unwrap()
}

fn kinds(record: &Value) -> Vec<String> {
    record["misbehaviour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn fork_of(dir: &Path, id: &str) -> Value {
    // For people: the two notes side by side, the differing lines marked.
    let human = String::from_utf8(run(onoal(dir).arg("forks")).stdout).unwrap();
    assert!(human.contains(&format!("FORK of {id}")), "{human}");
    assert!(human.contains("held (verified before)") && human.contains('≠'), "{human}");
    let forks = run_json(onoal(dir).arg("forks"));
    forks["forks"].as_array().unwrap().iter().find(|f| f["ledger_id"] == id).cloned().unwrap()
}

/// Syncs `ledger` into `dir` from the node serving at `port` (pinned as `via`).
fn sync_from(dir: &Path, ledger: &Node, via: &Node, port: u16) -> std::process::Output {
    pin(dir, via, port);
    run(onoal(dir).args(["sync", &ledger.id, "--from", &format!("127.0.0.1:{port}")]))
}

#[test]
fn a_rewritten_origin_is_a_fork_for_followers_ahead_and_behind_and_relays_are_not_blamed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:test:a");
    let nodes: Vec<(String, Node)> = ["f1", "f2", "rw", "rh"]
        .iter()
        .map(|n| (n.to_string(), init(&d(n), &format!("oid:onoal:test:{n}"))))
        .collect();
    let node = |n: &str| &nodes.iter().find(|(m, _)| m == n).unwrap().1;
    // Everyone pins everyone (ports are given when syncing).
    for (x, xn) in nodes.iter() {
        pin(&d("a"), xn, 1);
        pin(&d(x), &a, 1);
        for (y, yn) in nodes.iter() {
            if x != y {
                pin(&d(x), yn, 1);
            }
        }
    }

    // The origin at 300,000; F1 follows it there.
    import(&d("a"), 0, 300_000);
    let serve = Serve::start(&d("a"), 0, &[]);
    assert!(sync_from(&d("f1"), &a, &a, serve.1).status.success());
    serve.stop();
    // At 306,010 a copy of the origin's directory is taken; the origin goes on to 309,000 and
    // the copy is rewritten with other entries to 307,010, under the same key.
    import(&d("a"), 300_000, 6_010);
    onoal_tests::copy_tree(&d("a"), &d("a2"));
    import(&d("a"), 306_010, 2_990);
    import(&d("a2"), 900_000, 1_000);
    // F2 and the honest relay RH hold 309,000; the relay RW holds the rewritten 307,010.
    let serve = Serve::start(&d("a"), 0, &[]);
    for n in ["f2", "rh"] {
        let out = sync_from(&d(n), &a, &a, serve.1);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    serve.stop();
    let serve = Serve::start(&d("a2"), 0, &[]);
    let out = sync_from(&d("rw"), &a, &a, serve.1);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serve.stop();
    let size = |n: &str| crate::sync::replica(&d(n), &a.id).unwrap()["tree_size"].as_u64().unwrap();
    assert_eq!(
        (size("f1"), size("f2"), size("rw"), size("rh")),
        (300_000, 309_000, 307_010, 309_000)
    );

    // F2, ahead at 309,000, meets the rewritten branch through RW: the older checkpoint
    // contradicts F2's tree. A fork, with both notes and a proof; RW is not blamed.
    let rw = Serve::start(&d("rw"), 0, &[]);
    let out = sync_from(&d("f2"), &a, node("rw"), rw.1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fork of ledger"), "{err}");
    let f = fork_of(&d("f2"), &a.id);
    assert!(f["held_checkpoint"].as_str().unwrap().contains("\n309000\n"), "{f}");
    assert!(f["received_checkpoint"].as_str().unwrap().contains("\n307010\n"), "{f}");
    assert_eq!(f["proof"]["old_size"], 307_010, "{f}");
    assert!(kinds(&peer_record(&d("f2"), &node("rw").id)).is_empty(), "the relay was blamed");
    assert!(
        kinds(&peer_record(&d("f2"), &a.id)).contains(&"fork".to_owned()),
        "the origin was not"
    );
    // Syncing this ledger stops until the operator decides.
    let err = run_fail(onoal(&d("f2")).args(["sync", &a.id]));
    assert!(err.contains("forked"), "{err}");
    // And the audit of the replica is not greener than the truth: its entries are sound, the
    // ledger it copies is not.
    let out = run(onoal(&d("f2")).args(["verify", "--ledger", &a.id, "--json"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("forked") && err.contains("\n309000\n"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");

    // F1, behind at 300,000, cannot tell: the rewritten 307,010 is consistent with what it holds.
    let out = sync_from(&d("f1"), &a, node("rw"), rw.1);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rw.stop();
    assert_eq!(size("f1"), 307_010);
    // Then it meets the honest history through RH: RH's proof does not start at F1's root, RH
    // holds no checkpoint of 307,010, and RH's own root there (proven against the origin's
    // signed 309,000) differs from F1's: a fork, and RH is not blamed.
    let rh = Serve::start(&d("rh"), 0, &[]);
    let out = sync_from(&d("f1"), &a, node("rh"), rh.1);
    rh.stop();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("fork of ledger"), "{err}");
    let f = fork_of(&d("f1"), &a.id);
    assert!(f["held_checkpoint"].as_str().unwrap().contains("\n307010\n"), "{f}");
    assert!(f["received_checkpoint"].as_str().unwrap().contains("\n309000\n"), "{f}");
    assert_eq!(
        (f["proof"]["old_size"].as_u64(), f["proof"]["new_size"].as_u64()),
        (Some(307_010), Some(309_000))
    );
    assert!(
        kinds(&peer_record(&d("f1"), &node("rh").id)).is_empty(),
        "the honest relay was blamed"
    );
    assert!(kinds(&peer_record(&d("f1"), &a.id)).contains(&"fork".to_owned()));
}
