//! `onoal route` between processes: findPath over the peers a ledger reached (their OIDs from
//! their certificates), with the seed's rules named, through the running node and offline, and
//! `[routing]` in the config file.

use onoal_tests::node::{Serve, import, init, pin};
use onoal_tests::{onoal, run, run_json};
use serde_json::Value;

fn get(url: &str) -> (u16, Value) {
    let (code, body) = match ureq::get(url).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap()),
        Err(ureq::Error::StatusCode(code)) => (code, String::new()),
        Err(e) => panic!("{e}"),
    };
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn find_path_follows_the_seeds_rules_offline_and_through_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:org:a");
    let b = init(&d("b"), "oid:onoal:org:b");
    let h = init(&d("h"), "oid:onoal:gov");
    for (dir, n) in [("b", &b), ("h", &h)] {
        import(&d(dir), 0, 10);
        pin(&d(dir), &a, 1);
        let node = Serve::start(&d(dir), 0, &[]);
        pin(&d("a"), n, node.1);
        // A reaches it (and learns its OID from its certificate).
        let out = run(onoal(&d("a")).args(["sync", &n.id]));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        node.stop();
    }
    let route = |to: &str| run_json(onoal(&d("a")).args(["route", "--to", to]));
    let r = route("oid:onoal:org:b");
    assert_eq!(
        (r["strategy"].as_str(), &r["next_hops"]),
        (Some("direct"), &serde_json::json!([b.id])),
        "{r}"
    );
    let r = route("oid:onoal:gov:ministry:x");
    assert_eq!(
        (r["strategy"].as_str(), &r["next_hops"]),
        (Some("oid_prefix"), &serde_json::json!([h.id])),
        "{r}"
    );
    assert!(r["reasons"].to_string().contains("through the hub oid:onoal:gov"), "{r}");
    let r = route("oid:onoal:org:a:dept");
    assert_eq!(r["strategy"], "dht", "nothing is closer than A itself: {r}");
    let unknown = "0b5f0000-0000-4000-8000-00000000000b";
    assert_eq!(route(unknown)["strategy"], "dht");
    let err = run(onoal(&d("a")).args(["route", "--to", "not an oid"]));
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("neither a ledger id nor an OID"));

    // Through the running node, with DHT and flooding turned off in the config file.
    let config = tmp.path().join("a.toml");
    std::fs::write(&config, "[routing]\ndht = false\nflood = false\nttl = 3\n").unwrap();
    let node = Serve::start_with(&d("a"), 0, &[], &["--config", config.to_str().unwrap()]);
    let (code, r) = get(&format!("{}/mesh/route?to=oid:onoal:gov:x", node.url()));
    assert_eq!(
        (code, r["strategy"].as_str(), r["ttl"].as_u64()),
        (200, Some("oid_prefix"), Some(3)),
        "{r}"
    );
    let (code, _) = get(&format!("{}/mesh/route?to=oid:onoal:org:a:dept", node.url()));
    assert_eq!(code, 404, "no strategy left for it");
    let out = run(onoal(&d("a")).args(["route", "--to", "oid:onoal:org:a:dept"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no route to oid:onoal:org:a:dept"), "{err}");
    let (code, _) = get(&format!("{}/mesh/route?to=nope", node.url()));
    assert_eq!(code, 400);
    node.stop();
    std::fs::write(&config, "[routing]\nttl = 0\n").unwrap();
    let out = run(onoal(&d("a")).args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("ttl must be 1 to 32"), "{err}");
}
