//! `onoal trust` and `/mesh/trust`: levels an operator sets, anchors, expiry, and what is
//! refused, offline (the `trust` table) and through a running node; decisions survive both.

use std::time::Duration;

use onoal_tests::node::{Serve, init};
use onoal_tests::{onoal, run_fail, run_json};
use serde_json::Value;

fn get(url: &str) -> Value {
    let mut r = ureq::get(url).call().unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

fn post_status(url: &str, body: &str) -> u16 {
    match ureq::post(url).header("Content-Type", "application/json").send(body) {
        Ok(r) => r.status().as_u16(),
        Err(ureq::Error::StatusCode(code)) => code,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn an_operator_sets_trust_and_anchors_offline_and_through_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let me = init(&dir, "oid:onoal:trust:a");
    let (b, c, x) = (
        "0b5f0000-0000-4000-8000-00000000000b",
        "0c5f0000-0000-4000-8000-00000000000c",
        "0a5f0000-0000-4000-8000-0000000000aa",
    );

    // Offline: straight into the trust table.
    let t = run_json(onoal(&dir).args(["trust", "set", b, "0.9", "--reason", "audited"]));
    assert_eq!((t["level"].as_f64(), t["kind"].as_str()), (Some(0.9), Some("direct")), "{t}");
    assert_eq!(t["reason"], "audited");
    assert_eq!(t["path"], serde_json::json!([me.id, b]));
    for (args, says) in [
        (vec!["trust", "set", b, "1.5"], "from 0 to 1"),
        (vec!["trust", "set", b, "NaN"], "from 0 to 1"),
        (vec!["trust", "set", &me.id, "0.5"], "trust in itself"),
        (vec!["trust", "set", "not-a-ledger", "0.5"], "ledger"),
        (vec!["trust", "anchor", "add", &me.id], "trust in itself"),
    ] {
        let err = run_fail(onoal(&dir).args(&args));
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let a = run_json(onoal(&dir).args(["trust", "anchor", "add", x]));
    assert_eq!((a["level"].as_f64(), a["anchor"].as_bool()), (Some(1.0), Some(true)), "{a}");
    // A ledger nothing leads to: no trust, and it says so.
    let none = run_json(onoal(&dir).args(["trust", "show", c]));
    assert_eq!((none["level"].as_f64(), none["kind"].as_str()), (Some(0.0), Some("none")));

    // Through the running node: the table's decisions are there, new ones go through it.
    let node = Serve::start(&dir, 0, &[]);
    let list = get(&format!("{}/mesh/trust", node.url()));
    let levels: Vec<(String, f64)> = list["trusted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["ledger_id"].as_str().unwrap().to_owned(), t["level"].as_f64().unwrap()))
        .collect();
    assert_eq!(levels, [(x.to_owned(), 1.0), (b.to_owned(), 0.9)], "{list}");
    assert_eq!(list["anchors"], serde_json::json!([x]));
    let t = run_json(onoal(&dir).args(["trust", "set", c, "0.7", "--expires-in-s", "2"]));
    assert_eq!(t["level"].as_f64(), Some(0.7), "{t}");
    assert!(t["expires_ms"].is_u64(), "{t}");
    let shown = get(&format!("{}/mesh/trust/{c}", node.url()));
    assert_eq!(shown["level"].as_f64(), Some(0.7), "{shown}");
    // Bad requests are 400 with the reason.
    let url = format!("{}/mesh/trust", node.url());
    assert_eq!(post_status(&url, &format!(r#"{{"ledger_id":"{b}","level":2}}"#)), 400);
    assert_eq!(post_status(&url, r#"{"ledger_id":"nope","level":0.5}"#), 400);
    assert_eq!(post_status(&url, &format!(r#"{{"ledger_id":"{b}","level":0.5,"x":1}}"#)), 422);
    run_json(onoal(&dir).args(["trust", "anchor", "remove", x]));
    // The level set with an expiry stops counting when it expires.
    std::thread::sleep(Duration::from_millis(2_200));
    let expired = get(&format!("{}/mesh/trust/{c}", node.url()));
    assert_eq!((expired["level"].as_f64(), expired["kind"].as_str()), (Some(0.0), Some("none")));
    node.stop();

    // What the node decided is in the table afterwards.
    let list = run_json(onoal(&dir).args(["trust", "list"]));
    assert!(list["anchors"].as_array().unwrap().is_empty(), "{list}");
    let ids: Vec<&str> = list["trusted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ledger_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b], "{list}");
}
