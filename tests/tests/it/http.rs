//! The node's HTTP API against a real `onoal serve` process: every route (success and each
//! error class), the CLI through the node, token and TLS rules, oversize bodies, concurrent
//! clients, the WebSocket feed across a burst, and the C2SP tile API checked by an
//! independent tile-log checker that first proves itself on ../shared/testvectors.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use onoal_engine::checkpoint::{NoteVerifier, SignedCheckpoint};
use onoal_engine::hash::{Hash, leaf_hash, node_hash};
use onoal_tests::node::{Serve, import, init, pin};
use onoal_tests::{onoal, run, run_fail, run_json};
use serde_json::{Value, json};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut r = r.unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().with_config().limit(1 << 30).read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get(url: &str) -> (u16, Value) {
    answer(agent().get(url).call())
}

fn post(url: &str, body: &Value) -> (u16, Value) {
    answer(agent().post(url).send_json(body))
}

fn bytes(url: &str) -> (u16, Vec<u8>, HashMap<String, String>) {
    let mut r = agent().get(url).call().unwrap();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let status = r.status().as_u16();
    (status, r.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap(), headers)
}

/// Asserts an error answer: the status, a JSON `{error, kind, hint}` body, the kind.
fn assert_error(answer: &(u16, Value), status: u16, kind: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["kind"], kind, "{}", answer.1);
    assert!(answer.1["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", answer.1);
}

fn entries(n: usize, tag: &str) -> Value {
    json!({"entries": (0..n).map(|i| json!({"stream": "s", "type": "t", "payload": format!("{tag} {i}")})).collect::<Vec<_>>()})
}

#[test]
fn every_ledger_route_answers_and_each_error_class_is_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let a = init(&dir, "oid:onoal:test:a");
    let serve = Serve::start(&dir, 0, &[]);
    let url = serve.url();

    let (s, h) = get(&format!("{url}/health"));
    assert_eq!((s, h["live"].as_bool(), h["ready"].as_bool()), (200, Some(true), Some(true)));

    // Append: JSON and JSON Lines; receipts come in order.
    let (s, r) = post(&format!("{url}/ledger/entries"), &entries(3, "json"));
    assert_eq!(s, 200, "{r}");
    let seqs: Vec<u64> =
        r["receipts"].as_array().unwrap().iter().map(|x| x["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2]);
    assert_eq!(r["tree_size"], 3);
    let lines = "{\"stream\":\"n\",\"type\":\"t\",\"payload_b64\":\"AAE=\"}\n{\"stream\":\"n\",\"type\":\"u\",\"payload\":\"x\",\"subject\":\"oid:onoal:x\"}\n";
    let (s, r) = answer(
        agent()
            .post(format!("{url}/ledger/entries"))
            .header("Content-Type", "application/x-ndjson")
            .send(lines),
    );
    assert_eq!((s, r["tree_size"].as_u64()), (200, Some(5)), "{r}");

    // Reads: the same JSON as the CLI's --json.
    let (s, e) = get(&format!("{url}/ledger/entries/3"));
    assert_eq!(s, 200);
    let cli = run_json(onoal(&dir).args(["get", "3"]));
    assert_eq!(e, cli);
    assert_eq!(
        (&e["payload"], &e["payload_b64"]),
        (&serde_json::json!("\u{0}\u{1}"), &Value::Null)
    );
    let (s, q) = get(&format!("{url}/ledger/entries?stream=n&limit=1"));
    assert_eq!((s, q["entries"].as_array().unwrap().len()), (200, 1));
    let cursor = q["next_cursor"].as_str().unwrap().to_owned();
    let (_, q2) = get(&format!("{url}/ledger/entries?stream=n&cursor={cursor}"));
    assert_eq!(q2["entries"][0]["subject"], "oid:onoal:x");
    assert!(q2["next_cursor"].is_null());

    // Checkpoints and proofs; the proof checks out against the signed root.
    let (s, cp) = post(&format!("{url}/ledger/checkpoint"), &json!({}));
    assert_eq!((s, cp["tree_size"].as_u64()), (200, Some(5)), "{cp}");
    assert_eq!(get(&format!("{url}/ledger/checkpoint")).1["tree_size"], 5);
    assert_eq!(get(&format!("{url}/ledger/checkpoints/5")).1["root"], cp["root"]);
    assert!(
        get(&format!("{url}/ledger/checkpoints")).1["sizes"]
            .as_array()
            .unwrap()
            .contains(&json!(5))
    );
    let (s, p) = get(&format!("{url}/ledger/proof/inclusion?seq=3&size=5"));
    assert_eq!((s, &p["root"]), (200, &cp["root"]));
    let proof: Vec<Hash> = p["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_hex(h.as_str().unwrap()).unwrap())
        .collect();
    let leaf = Hash::from_hex(p["leaf_hash"].as_str().unwrap()).unwrap();
    let root = Hash::from_hex(cp["root"].as_str().unwrap()).unwrap();
    onoal_engine::merkle::verify_inclusion(3, 5, &leaf, &proof, &root).unwrap();
    let (s, c) = get(&format!("{url}/ledger/proof/consistency?old=2&new=5"));
    assert_eq!((s, &c["new_root"]), (200, &cp["root"]));

    // Verify job: runs, then reports sound.
    let (s, job) = post(&format!("{url}/ledger/verify"), &json!({}));
    assert_eq!(s, 202, "{job}");
    let id = job["job"].as_u64().unwrap();
    let mut state = String::new();
    for _ in 0..200 {
        let (_, j) = get(&format!("{url}/ledger/verify/{id}"));
        state = j["state"].as_str().unwrap().to_owned();
        if state != "running" {
            assert_eq!(j["entries"], 5, "{j}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(state, "sound");

    assert_eq!(get(&format!("{url}/ledger/replicas")).1, json!({"replicas": []}));
    assert_eq!(get(&format!("{url}/ledger/forks")).1, json!({"forks": []}));
    let (s, st) = get(&format!("{url}/status"));
    assert_eq!(
        (s, st["ledger_id"].as_str(), st["tree_size"].as_u64()),
        (200, Some(a.id.as_str()), Some(5))
    );
    let (s, m) = get(&format!("{url}/metrics"));
    let m = m.as_str().unwrap().to_owned();
    assert_eq!(s, 200);
    assert!(m.contains("onoal_appended_entries_total 5"), "{m}");
    assert!(m.contains("onoal_append_latency_seconds_count 2"), "{m}");

    // Every route is in the OpenAPI document.
    let (_, doc) = get(&format!("{url}/openapi.json"));
    for path in [
        "/ledger/entries",
        "/ledger/entries/{seq}",
        "/mesh/peers",
        "/mesh/sync",
        "/mesh/connect",
        "/mesh/disconnect",
        "/mesh/topology",
        "/mesh/query",
        "/mesh/trust",
        "/mesh/trust/{ledger_id}",
        "/mesh/trust/anchors",
        "/mesh/messages",
        "/ledger/watch",
        "/tlog/{ledger}/checkpoint",
        "/tlog/{ledger}/tile/{path}",
        "/health",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from /openapi.json");
    }

    // Error classes.
    assert_error(&get(&format!("{url}/ledger/entries/99")), 404, "not_found");
    assert_error(&get(&format!("{url}/ledger/checkpoints/4")), 404, "not_found");
    assert_error(&get(&format!("{url}/ledger/entries?limit=0")), 400, "bad_request");
    assert_error(&get(&format!("{url}/ledger/entries?subject=customer42")), 400, "bad_request");
    assert_error(&get(&format!("{url}/ledger/entries?stream=ORDERS")), 400, "bad_request");
    assert_error(&get(&format!("{url}/ledger/entries?cursor=zz")), 400, "bad_request");
    assert_error(&get(&format!("{url}/ledger/proof/consistency?old=4&new=2")), 400, "bad_request");
    assert_error(&get(&format!("{url}/ledger/entries/1?ledger=not-a-uuid")), 400, "bad_request");
    assert_error(
        &get(&format!("{url}/ledger/entries/1?ledger=00000000-0000-4000-8000-000000000000")),
        404,
        "not_found",
    );
    assert_error(
        &post(&format!("{url}/ledger/entries"), &json!({"entries": []})),
        400,
        "bad_request",
    );
    assert_error(&post(&format!("{url}/ledger/entries"), &json!({"entry": 1})), 400, "bad_request");
    let bad = post(
        &format!("{url}/ledger/entries"),
        &json!({"entries": [{"stream": "s", "type": "t", "payload": "ok"}, {"stream": "BAD STREAM", "type": "t", "payload": "x"}]}),
    );
    assert_error(&bad, 400, "bad_request");
    assert!(bad.1["error"].as_str().unwrap().starts_with("entry 1:"), "{}", bad.1);
    assert_eq!(get(&format!("{url}/status")).1["tree_size"], 5, "a refused batch appends nothing");
    assert_error(&get(&format!("{url}/no/such/route")), 404, "not_found");
    assert_error(&post(&format!("{url}/mesh/query"), &json!({})), 400, "bad_request");
    assert_error(&get(&format!("{url}/mesh/trust/not-a-ledger")), 400, "bad_request");
    assert_error(&get(&format!("{url}/ledger/verify/999")), 404, "not_found");
    serve.stop();
}

#[test]
fn oversize_bodies_and_batches_are_refused_before_anything_is_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let serve = Serve::start(&dir, 0, &[]);
    let url = serve.url();
    // 65 MiB: over the 64 MiB body cap.
    let big = vec![b'x'; 65 << 20];
    let sent = agent()
        .post(format!("{url}/ledger/entries"))
        .header("Content-Type", "application/x-ndjson")
        .send(&big[..]);
    // The node refuses from the Content-Length, before reading the body: the client either
    // reads the 413, or (when the node closed first) finds its upload cut off. Either way
    // nothing is appended (checked below).
    match sent {
        Err(ureq::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) => {}
        other => assert_error(&answer(other), 413, "too_large"),
    }
    // More entries than one request may carry.
    let many: String =
        (0..100_001).map(|_| "{\"stream\":\"s\",\"type\":\"t\",\"payload\":\"\"}\n").collect();
    let r = answer(
        agent()
            .post(format!("{url}/ledger/entries"))
            .header("Content-Type", "application/x-ndjson")
            .send(many.as_bytes()),
    );
    assert_error(&r, 413, "too_large");
    // A payload over the ledger's limit.
    let payload = "x".repeat(2 << 20);
    let r = post(
        &format!("{url}/ledger/entries"),
        &json!({"entries": [{"stream": "s", "type": "t", "payload": payload}]}),
    );
    assert_error(&r, 400, "bad_request");
    assert_eq!(get(&format!("{url}/status")).1["tree_size"], 0);
    serve.stop();
}

#[test]
fn concurrent_clients_each_get_their_own_receipts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let serve = Serve::start(&dir, 0, &[]);
    let url = serve.url();
    let seqs: Vec<Vec<(u64, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let url = url.clone();
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for round in 0..10 {
                        let (st, r) = post(
                            &format!("{url}/ledger/entries"),
                            &entries(10, &format!("t{t} r{round}")),
                        );
                        assert_eq!(st, 200, "{r}");
                        for x in r["receipts"].as_array().unwrap() {
                            mine.push((
                                x["seq"].as_u64().unwrap(),
                                x["leaf_hash"].as_str().unwrap().to_owned(),
                            ));
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<u64> = seqs.iter().flatten().map(|(s, _)| *s).collect();
    all.sort_unstable();
    assert_eq!(all, (0..800).collect::<Vec<_>>(), "every seq exactly once");
    // Each receipt names the entry its client sent.
    for (t, mine) in seqs.iter().enumerate() {
        for (seq, hash) in mine.iter().step_by(37) {
            let (_, e) = get(&format!("{url}/ledger/entries/{seq}"));
            assert_eq!(e["leaf_hash"].as_str().unwrap(), hash);
            let payload = e["payload"].as_str().unwrap().to_owned();
            assert!(payload.starts_with(&format!("t{t} ")), "{payload}");
        }
    }
    serve.stop();
}

#[test]
fn the_cli_drives_a_running_node() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    import(&a_dir, 0, 300);
    let serve_a = Serve::start(&a_dir, 0, &[]);
    let serve_b = Serve::start(&b_dir, 0, &[]);
    let node_file: Value =
        serde_json::from_slice(&std::fs::read(b_dir.join("node.json")).unwrap()).unwrap();
    assert_eq!(node_file["ledger_id"], b.id);
    assert_eq!(node_file["pid"], serve_b.pid());

    // Writing commands while the node serves: append, import, checkpoint.
    let r = run_json(onoal(&a_dir).args([
        "append",
        "--stream",
        "live",
        "--type",
        "t",
        "--payload",
        "hi",
    ]));
    assert_eq!((r["seq"].as_u64(), r["checkpoint_size"].as_u64()), (Some(300), Some(301)));
    let file = tmp.path().join("more.jsonl");
    std::fs::write(&file, "{\"stream\":\"live\",\"type\":\"t\",\"payload\":\"1\"}\n{\"stream\":\"live\",\"type\":\"t\",\"payload\":\"2\"}\n").unwrap();
    let out = run(onoal(&a_dir).args(["import", "--ack"]).arg(&file));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("acked 302\n"), "{text}");
    // A bad line: what came before it is appended, the line is named.
    std::fs::write(
        &file,
        "{\"stream\":\"live\",\"type\":\"t\",\"payload\":\"3\"}\n{\"stream\":\"live\"}\n",
    )
    .unwrap();
    let err = run_fail(onoal(&a_dir).arg("import").arg(&file));
    assert!(err.contains("line 2") && err.contains("seqs 303 to 303"), "{err}");
    assert_eq!(run_json(onoal(&a_dir).args(["checkpoint"]))["tree_size"], 304);

    // Peers and sync through B's node: pin A, sync, follow, see it in status; remove.
    pin(&b_dir, &a, serve_a.1);
    pin(&a_dir, &b, serve_b.1);
    let peers = get(&format!("{}/mesh/peers", serve_b.url())).1;
    assert_eq!(peers["peers"][0]["ledger_id"], a.id, "the running node has the pin at once");
    let s = run_json(onoal(&b_dir).args(["sync", &a.id]));
    assert_eq!((s["to_size"].as_u64(), s["verified"].as_bool()), (Some(304), Some(true)), "{s}");
    let f = run_json(onoal(&b_dir).args(["sync", &a.id, "--follow"]));
    assert_eq!(f["ledger_id"], a.id);
    run_json(onoal(&a_dir).args([
        "append",
        "--stream",
        "live",
        "--type",
        "t",
        "--payload",
        "after",
    ]));
    let mut held = 0;
    for _ in 0..200 {
        let st = run_json(onoal(&b_dir).args(["status"]));
        held = st["follows"][0]["last"]["to_size"].as_u64().unwrap_or(0);
        if held == 305 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(held, 305, "the node follows A after the CLI asked it to");
    let topo = get(&format!("{}/mesh/topology", serve_b.url())).1;
    let kinds: Vec<&str> =
        topo["edges"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"pinned") && kinds.contains(&"follows") && kinds.contains(&"replica"),
        "{topo}"
    );
    let r = run_json(onoal(&b_dir).args(["peer", "remove", &a.id]));
    assert_eq!(r["removed"], true);
    assert!(run_json(onoal(&b_dir).args(["status"]))["follows"].as_array().unwrap().is_empty());
    let zeros = "00".repeat(32);
    let err = run_fail(onoal(&b_dir).args([
        "peer",
        "add",
        &format!("{}@127.0.0.1:1", a.id),
        "--key",
        &zeros,
    ]));
    assert!(err.contains("not a usable Ed25519 public key"), "{err}");
    let err = run_fail(onoal(&b_dir).args(["peer", "remove", &a.id]));
    assert!(err.contains("not pinned"), "{err}");
    // forks drop through the node deletes the replica.
    let err = run_fail(onoal(&b_dir).args(["forks", "drop", &a.id]));
    assert!(err.contains("has not forked") && err.contains("/ledger/replicas/"), "{err}");
    let err = run_fail(onoal(&b_dir).args(["replicas", "drop", &a.id]));
    assert!(err.contains("--yes"), "{err}");
    let d = run_json(onoal(&b_dir).args(["replicas", "drop", &a.id, "--yes"]));
    assert_eq!(d["dropped"], true);

    // node.json goes with the node; a stale one is ignored with a note.
    let stale = std::fs::read(b_dir.join("node.json")).unwrap();
    serve_b.stop();
    assert!(!b_dir.join("node.json").exists(), "serve removes node.json on exit");
    let mut v: Value = serde_json::from_slice(&stale).unwrap();
    v["pid"] = json!(4_000_000);
    std::fs::write(b_dir.join("node.json"), v.to_string()).unwrap();
    let out = run(onoal(&b_dir).args([
        "append",
        "--stream",
        "s",
        "--type",
        "t",
        "--payload",
        "local",
        "--json",
    ]));
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serve_a.stop();
}

#[test]
fn a_node_off_loopback_needs_a_token_and_tls_and_checks_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let err =
        run_fail(onoal(&dir).args(["serve", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"]));
    assert!(err.contains("without a bearer token"), "{err}");
    let token_file = tmp.path().join("token");
    let err = run_fail(
        onoal(&dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"])
            .arg("--http-token-file")
            .arg(&token_file),
    );
    assert!(err.contains("without TLS"), "{err}");

    // On loopback a token alone is enough; the file is created 0600.
    let token_arg = token_file.to_str().unwrap();
    let serve = Serve::start_with(&dir, 0, &[], &["--http-token-file", token_arg]);
    let url = serve.url();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_owned();
    assert_eq!(get(&format!("{url}/health")).0, 200, "health stays open");
    assert_error(&get(&format!("{url}/status")), 401, "unauthorized");
    assert_error(
        &answer(
            agent().get(format!("{url}/status")).header("Authorization", "Bearer wrong").call(),
        ),
        401,
        "unauthorized",
    );
    let (s, _) = answer(
        agent()
            .get(format!("{url}/status"))
            .header("Authorization", format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(s, 200);
    // The CLI finds the token through node.json.
    let r =
        run_json(onoal(&dir).args(["append", "--stream", "s", "--type", "t", "--payload", "x"]));
    assert_eq!(r["seq"], 0);
    serve.stop();

    // TLS with a self-signed certificate (openssl makes it; skipped without openssl).
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED the TLS half: openssl is not installed");
        return;
    }
    let (cert_arg, key_arg) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let serve = Serve::start_with(
        &dir,
        0,
        &[],
        &["--http-token-file", token_arg, "--http-tls-cert", cert_arg, "--http-tls-key", key_arg],
    );
    let line = &serve.3;
    assert!(line["dashboard"].as_str().unwrap().starts_with("https://"), "{line}");
    // Plain HTTP to the TLS port gets nowhere; the CLI speaks TLS with the node's certificate.
    let plain =
        agent().get(format!("http://{}/health", line["http_addr"].as_str().unwrap())).call();
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let r =
        run_json(onoal(&dir).args(["append", "--stream", "s", "--type", "t", "--payload", "y"]));
    assert_eq!(r["seq"], 1);
    serve.stop();
}

#[test]
fn the_feed_sends_every_entry_in_order_across_a_burst() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let serve = Serve::start(&dir, 0, &[]);
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{}/ledger/watch?from=0", serve.2)).unwrap();
    // 10,000 entries in 20 concurrent-ish requests while the feed runs.
    let url = serve.url();
    let writer = std::thread::spawn(move || {
        for round in 0..20 {
            let (s, r) =
                post(&format!("{url}/ledger/entries"), &entries(500, &format!("burst {round}")));
            assert_eq!(s, 200, "{r}");
        }
    });
    let mut next = 0u64;
    while next < 10_000 {
        let msg = socket.read().unwrap();
        let tungstenite::Message::Text(text) = msg else { continue };
        let e: Value = serde_json::from_str(text.as_str()).unwrap();
        match e["type"].as_str().unwrap() {
            "entry" => {
                assert_eq!(e["seq"].as_u64(), Some(next), "no gap, no repeat: {e}");
                next += 1;
            }
            "checkpoint" => assert!(e["tree_size"].as_u64().is_some(), "{e}"),
            other => panic!("unexpected event {other}: {e}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(next, 10_000);
    serve.stop();
}

/// C2SP `<N>`: 3-digit elements, all but the last prefixed with x.
fn tile_index(n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    let mut rest = n / 1000;
    while rest > 0 {
        parts.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

fn tile_path(level: &str, index: u64, width: u64) -> String {
    if width == 256 {
        format!("tile/{level}/{}", tile_index(index))
    } else {
        format!("tile/{level}/{}.p/{width}", tile_index(index))
    }
}

/// RFC 9162 MTH over leaf hashes.
fn mth(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => onoal_engine::hash::empty_root(),
        1 => hashes[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&hashes[..k]), &mth(&hashes[k..]))
        }
    }
}

/// An independent C2SP tile-log check: the checkpoint verifies with `vkey`; every entry
/// bundle's entries hash to the level-0 tiles; level-1 tiles are the roots of full level-0
/// tiles; all leaves hash to the checkpoint's root. Returns the tree size.
fn check_tile_log(fetch: &dyn Fn(&str) -> Option<Vec<u8>>, vkey: &str) -> u64 {
    let verifier = NoteVerifier::from_vkey(vkey).unwrap();
    let note = fetch("checkpoint").expect("checkpoint");
    let cp = SignedCheckpoint::open(&verifier, &note).unwrap().checkpoint;
    let size = cp.size;
    let mut leaves = Vec::new();
    for n in 0..size.div_ceil(256) {
        let width = (size - n * 256).min(256);
        let bundle = fetch(&tile_path("entries", n, width)).unwrap_or_else(|| panic!("bundle {n}"));
        let mut rest = &bundle[..];
        let mut mine = Vec::new();
        while !rest.is_empty() {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            mine.push(leaf_hash(&rest[2..2 + len]));
            rest = &rest[2 + len..];
        }
        assert_eq!(mine.len() as u64, width, "bundle {n} holds {width} entries");
        let tile = fetch(&tile_path("0", n, width)).unwrap_or_else(|| panic!("tile 0/{n}"));
        let hashes: Vec<Hash> = tile.chunks(32).map(|c| Hash::from_slice(c).unwrap()).collect();
        assert_eq!(hashes, mine, "tile 0/{n} is the bundle's leaf hashes");
        leaves.extend(mine);
    }
    let full = size / 256;
    if full > 0 {
        let tile = fetch(&tile_path("1", 0, full.min(256))).expect("level-1 tile");
        for (i, h) in tile.chunks(32).enumerate() {
            let chunk = &leaves[i * 256..(i + 1) * 256];
            assert_eq!(Hash::from_slice(h).unwrap(), mth(chunk), "level-1 hash {i}");
        }
    }
    assert_eq!(mth(&leaves), cp.root, "the leaves hash to the signed root");
    size
}

#[test]
fn the_tile_checker_accepts_tesseras_log_and_our_paths_name_its_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testvectors/tessera-log");
    if !root.exists() {
        eprintln!("SKIPPED: {} is not here", root.display());
        return;
    }
    let vkey = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
    let fetch = |p: &str| std::fs::read(root.join(p)).ok();
    assert_eq!(check_tile_log(&fetch, vkey), 15);
    // And it refuses a damaged one.
    let damaged = |p: &str| {
        let mut b = std::fs::read(root.join(p)).ok()?;
        if p.starts_with("tile/0/") {
            b[5] ^= 1;
        }
        Some(b)
    };
    assert!(std::panic::catch_unwind(|| check_tile_log(&damaged, vkey)).is_err());
}

#[test]
fn the_tile_api_serves_a_log_standard_clients_can_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    import(&a_dir, 0, 600);
    let vkey = run_json(onoal(&a_dir).args(["checkpoint"]));
    assert_eq!(vkey["tree_size"], 600);
    let serve_a = Serve::start(&a_dir, 0, &[]);
    let a_vkey = {
        let st = get(&format!("{}/status", serve_a.url())).1;
        st["vkey"].as_str().unwrap().to_owned()
    };
    let base = format!("{}/tlog/{}", serve_a.url(), a.id);
    let fetch = |p: &str| {
        let (s, body, _) = bytes(&format!("{base}/{p}"));
        (s == 200).then_some(body)
    };
    assert_eq!(check_tile_log(&fetch, &a_vkey), 600);
    // Cache headers: full tiles are immutable, partial ones are not.
    assert!(bytes(&format!("{base}/tile/0/000")).2["cache-control"].contains("immutable"));
    assert_eq!(bytes(&format!("{base}/tile/0/002.p/88")).2["cache-control"], "no-cache");
    // A narrower partial tile is a prefix; a wider or missing one is 404; a bad path is 400.
    let (_, p10, _) = bytes(&format!("{base}/tile/0/002.p/10"));
    let (_, p88, _) = bytes(&format!("{base}/tile/0/002.p/88"));
    assert_eq!(&p88[..320], &p10[..]);
    assert_eq!(bytes(&format!("{base}/tile/0/002.p/89")).0, 404);
    assert_eq!(bytes(&format!("{base}/tile/0/002")).0, 404);
    assert_eq!(bytes(&format!("{base}/tile/0/x000/002")).0, 400);
    assert_eq!(bytes(&format!("{base}/tile/entries/003.p/1")).0, 404);

    // A replica serves the same log through the same API.
    let serve_b = Serve::start(&b_dir, 0, &[]);
    pin(&b_dir, &a, serve_a.1);
    pin(&a_dir, &b, serve_b.1);
    run_json(onoal(&b_dir).args(["sync", &a.id]));
    let base_b = format!("{}/tlog/{}", serve_b.url(), a.id);
    let fetch_b = |p: &str| {
        let (s, body, _) = bytes(&format!("{base_b}/{p}"));
        (s == 200).then_some(body)
    };
    assert_eq!(check_tile_log(&fetch_b, &a_vkey), 600);
    assert_eq!(fetch_b("tile/0/001"), fetch("tile/0/001"));
    serve_b.stop();
    serve_a.stop();
}

#[test]
fn serve_settings_come_from_a_toml_file_under_the_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    init(&dir, "oid:onoal:test:a");
    let config = tmp.path().join("onoal.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:7555\"\nhttp = \"127.0.0.1:7556\"\nfollow = [\"00000000-0000-4000-8000-000000000001@127.0.0.1:1\"]\ndurability = \"buffered\"\n").unwrap();
    let out = run(onoal(&dir)
        .args(["serve", "--print-config", "--http", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:7555\""), "the file's value: {text}");
    assert!(text.contains("http = \"127.0.0.1:0\""), "the flag overrides the file: {text}");
    assert!(text.contains("durability = \"buffered\""), "{text}");
    assert!(text.contains("00000000-0000-4000-8000-000000000001@127.0.0.1:1"), "{text}");
    std::fs::write(&config, "listen = \"127.0.0.1:7555\"\nhttp_port = 1\n").unwrap();
    let err = run_fail(onoal(&dir).args(["serve"]).arg("--config").arg(&config));
    assert!(err.contains("http_port"), "an unknown key is named: {err}");
    // Completions and the man page.
    let bash = String::from_utf8(run(onoal(&dir).args(["completions", "bash"])).stdout).unwrap();
    assert!(bash.contains("onoal") && bash.contains("serve"), "{bash}");
    let man = String::from_utf8(run(onoal(&dir).args(["man"])).stdout).unwrap();
    assert!(man.contains(".TH") && man.contains("onoal"), "{man}");
}

#[test]
fn mesh_routes_pin_sync_and_refuse_with_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, b) = (init(&a_dir, "oid:onoal:test:a"), init(&b_dir, "oid:onoal:test:b"));
    import(&a_dir, 0, 50);
    let serve_a = Serve::start(&a_dir, 0, &[]);
    let serve_b = Serve::start(&b_dir, 0, &[]);
    let (ua, ub) = (serve_a.url(), serve_b.url());

    // Refusals first: bad keys, ourselves, a malformed address, unknown fields.
    let connect = |url: &str, body: Value| post(&format!("{url}/mesh/connect"), &body);
    assert_error(
        &connect(&ub, json!({"ledger_id": a.id, "public_key": "abcd"})),
        400,
        "bad_request",
    );
    assert_error(
        &connect(&ub, json!({"ledger_id": a.id, "public_key": "00".repeat(32)})),
        400,
        "bad_request",
    );
    assert_error(
        &connect(&ub, json!({"ledger_id": b.id, "public_key": b.key})),
        400,
        "bad_request",
    );
    assert_error(
        &connect(&ub, json!({"ledger_id": a.id, "public_key": a.key, "address": "nowhere"})),
        400,
        "bad_request",
    );
    assert_error(
        &connect(&ub, json!({"ledger_id": a.id, "public_key": a.key, "colour": 1})),
        400,
        "bad_request",
    );
    assert_error(
        &answer(
            agent()
                .post(format!("{ub}/mesh/connect"))
                .header("Content-Type", "application/json")
                .send("{"),
        ),
        400,
        "bad_request",
    );
    assert_error(
        &answer(agent().delete(format!("{ub}/mesh/peers")).call()),
        405,
        "method_not_allowed",
    );
    assert_error(&get(&format!("{ub}/ledger/entries/abc")), 400, "bad_request");
    // Sync of a ledger that is not pinned; of a pinned one whose address is dead.
    assert_error(&post(&format!("{ub}/mesh/sync"), &json!({"ledger_id": a.id})), 404, "not_pinned");
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (s, _) =
        connect(&ub, json!({"ledger_id": a.id, "public_key": a.key, "address": dead.to_string()}));
    assert_eq!(s, 200);
    let r = post(&format!("{ub}/mesh/sync"), &json!({"ledger_id": a.id, "from": dead.to_string()}));
    assert!(r.0 == 502 || r.0 == 504, "{r:?}");
    assert!(["peer_unreachable", "timeout"].contains(&r.1["kind"].as_str().unwrap()), "{}", r.1);
    assert_error(
        &post(&format!("{ub}/mesh/sync"), &json!({"ledger_id": a.id, "mode": "sideways"})),
        400,
        "bad_request",
    );
    assert_error(
        &post(
            &format!("{ub}/mesh/sync"),
            &json!({"ledger_id": a.id, "stream": "s0", "follow": true}),
        ),
        400,
        "bad_request",
    );

    // Pin both ways with the live address; sync once, then a filtered sync into... the same
    // replica is full, so the filtered one goes to a third ledger below.
    let (s, p) = connect(
        &ub,
        json!({"ledger_id": a.id, "public_key": a.key, "address": format!("127.0.0.1:{}", serve_a.1)}),
    );
    assert_eq!(
        (s, p["addresses"][0].as_str()),
        (200, Some(format!("127.0.0.1:{}", serve_a.1).as_str())),
        "{p}"
    );
    assert_eq!(
        connect(&ua, json!({"ledger_id": b.id, "public_key": b.key})).0,
        200,
        "a peer that only reads from us needs no address"
    );
    let (s, sum) = post(&format!("{ub}/mesh/sync"), &json!({"ledger_id": a.id}));
    assert_eq!(
        (s, sum["to_size"].as_u64(), sum["verified"].as_bool()),
        (200, Some(50), Some(true)),
        "{sum}"
    );
    let peers = get(&format!("{ub}/mesh/peers")).1;
    assert_eq!(
        peers["peers"][0]["oid"], "oid:onoal:test:a",
        "the certificate was learned: {peers}"
    );
    let m = get(&format!("{ub}/metrics")).1.as_str().unwrap().to_owned();
    assert!(m.contains(&format!("onoal_sync_entries_total{{peer=\"{}\"}} 50", a.id)), "{m}");
    // Two failed: the sync before the pin and the one to the dead address.
    assert!(m.contains(&format!("onoal_sync_errors_total{{peer=\"{}\"}} 2", a.id)), "{m}");
    // Replica reads and tiles through B.
    assert_eq!(get(&format!("{ub}/ledger/entries/49?ledger={}", a.id)).0, 200);
    assert_eq!(bytes(&format!("{ub}/tlog/{}/checkpoint", a.id)).0, 200);
    assert_eq!(bytes(&format!("{ub}/tlog/00000000-0000-4000-8000-000000000000/checkpoint")).0, 404);

    // Follow, see it, stop it; disconnect; unknown ones say false.
    let (s, f) = post(&format!("{ub}/mesh/sync"), &json!({"ledger_id": a.id, "follow": true}));
    assert_eq!((s, f["ledger_id"].as_str()), (200, Some(a.id.as_str())), "{f}");
    assert_error(
        &post(&format!("{ub}/mesh/sync"), &json!({"ledger_id": a.id, "follow": true})),
        409,
        "already_following",
    );
    assert_eq!(get(&format!("{ub}/mesh/follows")).1["follows"].as_array().unwrap().len(), 1);
    let d = answer(agent().delete(format!("{ub}/mesh/follows/{}", a.id)).call());
    assert_eq!((d.0, d.1["stopped"].as_bool()), (200, Some(true)));
    let d = answer(agent().delete(format!("{ub}/mesh/follows/{}", a.id)).call());
    assert_eq!(d.1["stopped"], false);
    let (s, d) = post(&format!("{ub}/mesh/disconnect"), &json!({"ledger_id": a.id}));
    assert_eq!((s, d["removed"].as_bool()), (200, Some(true)));
    assert_eq!(
        post(&format!("{ub}/mesh/disconnect"), &json!({"ledger_id": a.id})).1["removed"],
        false
    );
    assert_error(
        &post(&format!("{ub}/mesh/disconnect"), &json!({"ledger_id": "x"})),
        400,
        "bad_request",
    );
    // The replica stays after the peer goes.
    assert_eq!(get(&format!("{ub}/ledger/replicas")).1["replicas"][0]["tree_size"], 50);
    serve_b.stop();
    serve_a.stop();
}
