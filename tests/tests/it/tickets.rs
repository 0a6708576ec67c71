//! One string to connect: `onoal serve` and `onoal info` print a ticket
//! (`onoal://LEDGER_ID@HOST:PORT#KEY`) that `peer add` and `sync` take; `peer add` also takes
//! the vkey `init` prints, and a peer without an address.

use onoal_tests::node::{Serve, import, init, pin};
use onoal_tests::{onoal, run, run_json};

#[test]
fn a_ticket_from_serve_pins_and_syncs_and_keys_come_as_hex_or_vkey() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:org:a");
    let c = init(&d("c"), "oid:onoal:org:c");
    import(&d("a"), 0, 5);
    let served = Serve::start(&d("a"), 0, &[]);
    let ticket = served.3["ticket"].as_str().unwrap().to_owned();
    assert_eq!(ticket, format!("onoal://{}@127.0.0.1:{}#{}", a.id, served.1, a.key));
    let info = run_json(onoal(&d("a")).arg("info"));
    assert_eq!(info["ticket"], ticket.as_str(), "info shows the running node's ticket: {info}");
    pin(&d("a"), &c, 1); // A serves C its whole log.

    // B pins A from the ticket alone; C syncs A from the ticket alone.
    run_json(onoal(&d("b")).args(["init", "--oid", "oid:onoal:org:b"]));
    run_json(onoal(&d("b")).args(["peer", "add", &ticket]));
    let peers = run_json(onoal(&d("b")).args(["peer", "list"]));
    let pinned = &peers["peers"][0];
    assert_eq!(
        (pinned["ledger_id"].as_str(), pinned["public_key"].as_str()),
        (Some(a.id.as_str()), Some(a.key.as_str())),
        "{peers}"
    );
    assert_eq!(pinned["addresses"][0], format!("127.0.0.1:{}", served.1), "{peers}");
    let out = run(onoal(&d("c")).args(["sync", &ticket, "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replicas = run_json(onoal(&d("c")).args(["replicas"]));
    assert!(replicas.to_string().contains(&a.id), "{replicas}");
    let human = String::from_utf8(run(onoal(&d("c")).args(["replicas"])).stdout).unwrap();
    assert!(human.starts_with("LEDGER") && human.contains(&format!("{}  oid:onoal:org:a", a.id)));
    assert!(human.trim_end().ends_with("1 replicas"), "{human}");
    assert!(run(onoal(&d("c")).args(["verify", "--ledger", &a.id])).status.success());

    // The vkey `init` printed, and no address: a peer that only reads from B.
    let e = run_json(onoal(&d("e")).args(["init", "--oid", "oid:onoal:org:e"]));
    run_json(onoal(&d("b")).args([
        "peer",
        "add",
        e["ledger_id"].as_str().unwrap(),
        "--key",
        e["vkey"].as_str().unwrap(),
    ]));
    let peers = run_json(onoal(&d("b")).args(["peer", "list"]));
    let row = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ledger_id"] == e["ledger_id"])
        .unwrap()
        .clone();
    assert_eq!(
        (row["public_key"].clone(), row["addresses"].as_array().map(Vec::len)),
        (e["public_key"].clone(), Some(0)),
        "{row}"
    );

    // What is refused, and why.
    let bad = |args: &[&str], want: &str| {
        let out = run(onoal(&d("b")).args(["peer", "add"]).args(args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
    };
    bad(&[&a.id], "paste its ticket");
    bad(&[&format!("onoal://{}#{}", a.id, "00".repeat(32))], "not a usable Ed25519 key");
    bad(&[&ticket, "--key", &c.key], "differs from the ticket's key");
    bad(&[&format!("onoal://{}@nohost#{}", a.id, a.key)], "HOST:PORT");

    // Known ledgers are named by a unique id prefix or by OID wherever an id is taken.
    for name in [&a.id[..8], "oid:onoal:org:a"] {
        let out = run(onoal(&d("c")).args(["verify", "--ledger", name]));
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let ids = ["abcd1111-0000-4000-8000-000000000001", "abcd2222-0000-4000-8000-000000000002"];
    for (id, key) in ids.iter().zip([a.key.as_str(), e["public_key"].as_str().unwrap()]) {
        run_json(onoal(&d("b")).args(["peer", "add", id, "--key", key]));
    }
    let trust = |name: &str| run(onoal(&d("b")).args(["trust", "set", name, "0.7"]));
    let out = trust("abcd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("names 2 ledgers") && err.contains(ids[1]),
        "{err}"
    );
    assert!(trust("abcd2").status.success());
    let shown = run_json(onoal(&d("b")).args(["trust", "show", ids[1]]));
    assert_eq!(shown["direct_level"], 0.7, "{shown}");
    let out = trust("oid:onoal:org:nobody");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ledger known here"));
    drop(served);
}

/// Re-pinning another key for a known ledger is refused (naming both keys) unless
/// `--replace-key`, with the data directory alone and through a running node; the old keys stay
/// in the peer's history.
#[test]
fn another_key_for_a_pinned_ledger_is_refused_unless_replace_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    init(&d("b"), "oid:onoal:org:b");
    let a = init(&d("a"), "oid:onoal:org:a");
    let impostor = init(&d("x"), "oid:onoal:org:x");
    let third = init(&d("y"), "oid:onoal:org:y");
    pin(&d("b"), &a, 7401);
    let add = |key: &str, extra: &[&str]| {
        run(onoal(&d("b"))
            .args(["peer", "add", &format!("{}@127.0.0.1:7402", a.id), "--key", key])
            .args(extra))
    };
    let keys = |expect: &str| {
        let peers = run_json(onoal(&d("b")).args(["peer", "list"]));
        let row = &peers["peers"][0];
        assert_eq!(row["public_key"], expect, "{peers}");
        row["replaced_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["public_key"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let out = add(&impostor.key, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let v: serde_json::Value =
        serde_json::from_slice(&add(&impostor.key, &["--json"]).stdout).unwrap();
    assert_eq!(v["error"]["kind"], "key_changed", "{v}");
    for want in [a.key.as_str(), impostor.key.as_str(), "--replace-key"] {
        assert!(err.contains(want), "{want} missing: {err}");
    }
    assert!(keys(&a.key).is_empty(), "the refused key changed nothing");
    // The same key again is no change of key.
    assert!(add(&a.key, &[]).status.success());

    let out = add(&impostor.key, &["--replace-key", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replaced_key"], a.key.as_str(), "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING"), "ssh-style warning");
    assert_eq!(keys(&impostor.key), vec![a.key.clone()]);

    // Through the running node (HTTP 409 key_changed, then the replacement).
    let served = Serve::start(&d("b"), 0, &[]);
    let out = add(&third.key, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&impostor.key) && err.contains(&third.key),
        "{err}"
    );
    let out = add(&third.key, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "key_changed", "the node's kind reaches the CLI: {v}");
    assert!(v["error"]["hint"].as_str().unwrap().contains("replace_key"), "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().contains("(pass"), "hint apart: {v}");
    assert!(add(&third.key, &["--replace-key"]).status.success());
    assert_eq!(keys(&third.key), vec![a.key.clone(), impostor.key.clone()]);
    // For people: a table, one row per peer, with the count of replaced keys.
    let human = String::from_utf8(run(onoal(&d("b")).args(["peer", "list"])).stdout).unwrap();
    let lines: Vec<&str> = human.lines().collect();
    assert!(lines[0].starts_with("LEDGER") && lines[0].contains("OLD KEYS"), "{human}");
    assert!(lines[1].starts_with(&a.id) && lines[1].trim_end().ends_with(" 2"), "{human}");
    assert!(lines[1].contains("127.0.0.1:7402  "), "the given address replaced 7401: {human}");
    assert!(!human.contains("7401") && !human.contains("(+"), "{human}");
    drop(served);
}
