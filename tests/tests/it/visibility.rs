//! Stream visibility between `onoal` processes: what a node serves is decided by its signed
//! policy and its trust in the reader (direct, or a chain from an anchor through signed
//! statements), refusals name the rule, expiry closes again, and a relay holding a replica
//! serves it only within its origin's policy.

use std::path::Path;
use std::time::Duration;

use onoal_tests::node::{Node, Serve, import, init, pin};
use onoal_tests::{onoal, run, run_json};
use serde_json::Value;

/// `onoal sync LEDGER [--stream S] --from 127.0.0.1:PORT` in `dir`: Ok(summary) or Err(stderr).
fn sync(dir: &Path, ledger: &Node, port: u16, stream: Option<&str>) -> Result<Value, String> {
    let from = format!("127.0.0.1:{port}");
    let mut cmd = onoal(dir);
    cmd.args(["sync", &ledger.id, "--from", &from, "--json"]);
    if let Some(s) = stream {
        cmd.args(["--stream", s]);
    }
    let out = run(&mut cmd);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn refused(r: Result<Value, String>, says: &[&str]) -> String {
    let err = r.expect_err("the sync was not refused");
    for s in says {
        assert!(err.contains(s), "{s:?} not in: {err}");
    }
    err
}

fn visibility(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["stream", "visibility"];
    all.extend_from_slice(args);
    run_json(onoal(dir).args(&all))
}

#[test]
fn private_and_trusted_streams_are_served_by_trust_and_the_refusal_names_the_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:vis:a");
    let b = init(&d("b"), "oid:onoal:vis:b");
    let c = init(&d("c"), "oid:onoal:vis:c");
    import(&d("a"), 0, 300);
    import(&d("b"), 0, 10);
    // A pins B (its reader, at trust 0.5); A does not know C.
    pin(&d("a"), &b, 1);
    // s0 is for anyone, s1 for no one, s2 for those A trusts at 0.7; the rest (none here) at
    // the default.
    visibility(&d("a"), &["s0", "public"]);
    visibility(&d("a"), &["s1", "private"]);
    let p = visibility(&d("a"), &["s2", "trusted:0.7"]);
    assert_eq!((p["version"].as_u64(), p["default"].as_str()), (Some(3), Some("trusted:0.4")));
    let err = run(onoal(&d("a")).args(["stream", "visibility", "s2", "trusted:2"]));
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("0 < T <= 1"));

    let node = Serve::start(&d("a"), 0, &[]);
    let port = node.1;
    pin(&d("b"), &a, port);
    pin(&d("c"), &a, port);

    // B, pinned: not the whole log (s1 is private), s0 yes, s2 not at 0.5.
    refused(sync(&d("b"), &a, port, None), &["`s1` is private", "every stream except s1, s2"]);
    let s0 = sync(&d("b"), &a, port, Some("s0")).unwrap();
    assert_eq!(s0["entries"].as_u64(), Some(100), "{s0}");
    refused(sync(&d("b"), &a, port, Some("s1")), &["stream `s1`", "is private"]);
    refused(sync(&d("b"), &a, port, Some("s2")), &["is trusted:0.7", "your trust is 0.500"]);

    // C, unknown to A: public s0 only, and it is told how to be admitted.
    let s0 = sync(&d("c"), &a, port, Some("s0")).unwrap();
    assert_eq!(s0["entries"].as_u64(), Some(100), "{s0}");
    refused(
        sync(&d("c"), &a, port, Some("s2")),
        &["your trust is 0.000", &format!("onoal peer add {}@", c.id)],
    );

    // A raises B to 0.8 for 3 s (through the running node): s2 opens, then closes again.
    let t = run_json(onoal(&d("a")).args(["trust", "set", &b.id, "0.8", "--expires-in-s", "3"]));
    assert_eq!(t["level"].as_f64(), Some(0.8), "{t}");
    let s2 = sync(&d("b"), &a, port, Some("s2")).unwrap();
    assert_eq!(s2["entries"].as_u64(), Some(100), "{s2}");
    std::thread::sleep(Duration::from_millis(3_300));
    refused(sync(&d("b"), &a, port, Some("s2")), &["is trusted:0.7", "your trust is 0.500"]);

    // A chain from an anchor: B states it trusts C at 0.8 (a signed statement A receives
    // when it syncs B's log); A makes B an anchor; then A trusts C at 1.0 x 0.8.
    run_json(onoal(&d("b")).args(["trust", "set", &c.id, "0.8"]));
    let b_node = Serve::start(&d("b"), 0, &[]);
    run_json(onoal(&d("a")).args([
        "peer",
        "add",
        &format!("{}@127.0.0.1:{}", b.id, b_node.1),
        "--key",
        &b.key,
    ]));
    let out = run(onoal(&d("a")).args(["sync", &b.id, "--json"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    b_node.stop();
    run_json(onoal(&d("a")).args(["trust", "anchor", "add", &b.id]));
    let shown = run_json(onoal(&d("a")).args(["trust", "show", &c.id]));
    assert_eq!((shown["level"].as_f64(), shown["kind"].as_str()), (Some(0.8), Some("chain")));
    assert_eq!(shown["path"], serde_json::json!([a.id, b.id, c.id]), "{shown}");
    // B's own view of C, from the statement A holds.
    let path = run_json(onoal(&d("a")).args(["trust", "path", &b.id, &c.id]));
    assert_eq!((path["level"].as_f64(), path["kind"].as_str()), (Some(0.8), Some("direct")));
    assert_eq!(path["path"], serde_json::json!([b.id, c.id]), "{path}");
    let s2 = sync(&d("c"), &a, port, Some("s2")).unwrap();
    assert_eq!(s2["entries"].as_u64(), Some(100), "{s2}");
    // Still never s1, whatever the trust.
    refused(sync(&d("c"), &a, port, Some("s1")), &["is private"]);

    // The policy is on the API too, and a change through it is in force at once.
    let url = format!("{}/mesh/visibility", node.url());
    let mut r = ureq::post(&url)
        .header("Content-Type", "application/json")
        .send(r#"{"stream":"s1","visibility":"public"}"#)
        .unwrap();
    let p: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!((p["version"].as_u64(), p["signed"].as_bool()), (Some(4), Some(true)), "{p}");
    let s1 = sync(&d("c"), &a, port, Some("s1")).unwrap();
    assert_eq!(s1["entries"].as_u64(), Some(100), "{s1}");
    let bad = ureq::post(&url)
        .header("Content-Type", "application/json")
        .send(r#"{"stream":"S 1","visibility":"public"}"#);
    assert!(matches!(bad, Err(ureq::Error::StatusCode(400))), "{bad:?}");
    node.stop();
}

#[test]
fn a_relay_serves_a_replica_only_within_its_origins_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:vis:origin");
    let b = init(&d("b"), "oid:onoal:vis:relay");
    let c = init(&d("c"), "oid:onoal:vis:reader");
    import(&d("a"), 0, 300);
    pin(&d("a"), &b, 1);
    // B pins C: the relay itself would serve C, but the data is A's.
    pin(&d("b"), &c, 1);
    pin(&d("c"), &a, 1);

    let origin = Serve::start(&d("a"), 0, &[]);
    pin(&d("b"), &a, origin.1);
    assert_eq!(sync(&d("b"), &a, origin.1, None).unwrap()["to_size"].as_u64(), Some(300));
    let relay = Serve::start(&d("b"), 0, &[]);
    pin(&d("c"), &b, relay.1);
    // A never said it trusts C: B refuses C A's log.
    refused(sync(&d("c"), &a, relay.1, None), &["trusted:0.4", "your trust is 0.000"]);

    // A pins C; B learns it the next time it syncs from A (A's signed statements).
    pin(&d("a"), &c, 1);
    sync(&d("b"), &a, origin.1, None).unwrap();
    let s = sync(&d("c"), &a, relay.1, None).unwrap();
    assert_eq!((s["to_size"].as_u64(), s["verified"].as_bool()), (Some(300), Some(true)));

    // A makes s1 private, appends, and lets a fourth ledger D read (a pin). B's next sync of
    // the whole log is refused, but B takes A's new policy and statements from the refusal's
    // trust exchange.
    origin.stop();
    visibility(&d("a"), &["s1", "private"]);
    import(&d("a"), 300, 30);
    let dd = init(&d("d"), "oid:onoal:vis:reader2");
    pin(&d("a"), &dd, 1);
    let origin = Serve::start(&d("a"), 0, &[]);
    pin(&d("b"), &a, origin.1);
    refused(sync(&d("b"), &a, origin.1, None), &["`s1` is private"]);
    // D reaches only B, which does not know D's key: B serves D what A's policy gives D (A
    // trusts D at 0.5): never the whole log, never s1, but s0.
    pin(&d("d"), &a, 1);
    pin(&d("d"), &b, relay.1);
    refused(sync(&d("d"), &a, relay.1, None), &["`s1` is private", "every stream except s1 "]);
    let s0 = sync(&d("d"), &a, relay.1, Some("s0")).unwrap();
    assert_eq!(s0["entries"].as_u64(), Some(100), "{s0}");
    refused(sync(&d("d"), &a, relay.1, Some("s1")), &["is private"]);
    // The relay names its own policy, which is not A's.
    let shown = run_json(onoal(&d("b")).args(["stream", "visibility"]));
    assert_eq!(
        (shown["ledger_id"].as_str(), shown["version"].as_u64()),
        (Some(b.id.as_str()), Some(0))
    );
    relay.stop();
    origin.stop();
}

#[test]
fn the_config_file_sets_visibility_once_and_refuses_what_it_cannot_parse() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:vis:config");
    let config = tmp.path().join("onoal.toml");
    std::fs::write(
        &config,
        "[visibility]\ndefault = \"public\"\n[visibility.streams]\ns1 = \"private\"\ns2 = \"trusted:0.8\"\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    let get = |node: &Serve| -> Value {
        let url = format!("{}/mesh/visibility", node.url());
        serde_json::from_str(&ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap())
            .unwrap()
    };
    let node = Serve::start_with(&dir, 0, &[], &["--config", path]);
    let p = get(&node);
    assert_eq!(p["default"], "public", "{p}");
    let streams: Vec<(String, String)> = p["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stream"].as_str().unwrap().into(), s["visibility"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        streams,
        [("s1".to_owned(), "private".to_owned()), ("s2".to_owned(), "trusted:0.8".to_owned())]
    );
    let version = p["version"].as_u64().unwrap();
    node.stop();
    // The same file again changes nothing: no new version.
    let node = Serve::start_with(&dir, 0, &[], &["--config", path]);
    assert_eq!(get(&node)["version"].as_u64(), Some(version));
    node.stop();
    std::fs::write(&config, "[visibility.streams]\ns1 = \"secret\"\n").unwrap();
    let out = run(onoal(&dir).args([
        "serve",
        "--http",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
        "--config",
        path,
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("[visibility] s1") && err.contains("secret"),
        "{err}"
    );
}
