//! The seed's cross-ledger query between `onoal` processes: routed by OID hop by hop over
//! nodes that keep to their links (`serve --links-only`), sealed end to end, verified against the
//! destination's key; paged; refused by the destination's visibility policy; rerouted when a
//! relay dies.

use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onoal_tests::node::{Node, Serve, import, init, pin};
use onoal_tests::{onoal, post_json, run, run_json};
use serde_json::{Value, json};

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Serves `dir` keeping to its links, with the given neighbours as bootstrap nodes.
fn serve_linked(dir: &Path, port: u16, links: &[(&Node, u16)]) -> Serve {
    let mut extra: Vec<String> =
        vec!["--links-only".into(), "--gossip-interval".into(), "1".into()];
    for (n, p) in links {
        extra.extend([
            "--bootstrap".into(),
            format!("{}@127.0.0.1:{p}", n.id),
            "--bootstrap-key".into(),
            n.key.clone(),
        ]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    Serve::start_with(dir, port, &[], &extra)
}

/// Runs `remote query` in `dir` until it succeeds (records spread one link per gossip round)
/// or `limit` passes.
fn query_until_answered(dir: &Path, args: &[&str], limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let out = run(onoal(dir).args(["remote", "query", "--json"]).args(args));
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert!(
            started.elapsed() < limit,
            "no answer within {limit:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_query_is_routed_by_oid_over_five_hops_verified_paged_refused_and_rerouted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    // A line of sub-organisations, each one level below the last, and a bypass of L2 between
    // L1 and L3 (never on the OID path while L2 is up: it is no closer to L5 than L1).
    let oids = [
        "oid:onoal:org:line",
        "oid:onoal:org:line:a",
        "oid:onoal:org:line:a:b",
        "oid:onoal:org:line:a:b:c",
        "oid:onoal:org:line:a:b:c:d",
        "oid:onoal:org:line:a:b:c:d:e",
    ];
    let names = ["l0", "l1", "l2", "l3", "l4", "l5", "by"];
    let mut nodes: Vec<Node> =
        oids.iter().enumerate().map(|(i, oid)| init(&d(names[i]), oid)).collect();
    nodes.push(init(&d("by"), "oid:onoal:org:line:a:bypass"));
    let ports: Vec<u16> = (0..nodes.len()).map(|_| free_udp_port()).collect();
    // Links: the line, and L1 - BY - L3.
    let mut links: Vec<Vec<usize>> = (0..6usize)
        .map(|i| [i.checked_sub(1), (i < 5).then_some(i + 1)].into_iter().flatten().collect())
        .collect();
    links[1].push(6);
    links[3].push(6);
    links.push(vec![1, 3]);
    for (i, ls) in links.iter().enumerate() {
        for &j in ls {
            pin(&d(names[i]), &nodes[j], ports[j]);
        }
    }
    // L5 holds 30 entries (streams s0, s1, s2 in turn); s0 is public, the rest stay trusted:0.4.
    import(&d("l5"), 0, 30);
    run_json(onoal(&d("l5")).args(["stream", "visibility", "s0", "public"]));

    let mut serves: Vec<Option<Serve>> = links
        .iter()
        .enumerate()
        .map(|(i, ls)| {
            let l: Vec<(&Node, u16)> = ls.iter().map(|&j| (&nodes[j], ports[j])).collect();
            Some(serve_linked(&d(names[i]), ports[i], &l))
        })
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();

    let v = query_until_answered(
        &d("l0"),
        &["--to", oids[5], "--stream", "s0"],
        Duration::from_secs(60),
    );
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["ledger_id"], ids[5], "{v}");
    assert_eq!(v["tree_size"], 30, "{v}");
    let seqs: Vec<u64> =
        v["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..30).step_by(3).collect::<Vec<u64>>(), "{v}");
    assert!(v["entries"].as_array().unwrap().iter().all(|e| e["stream"] == "s0"), "{v}");
    assert_eq!(v["path"], json!(ids[..6]), "the OID path, hop by hop: {v}");
    assert_eq!(v["hops"], 5, "{v}");
    assert!(v["checkpoint"].as_str().unwrap().starts_with(&format!("{}\n30\n", oids[5])), "{v}");
    assert_eq!(v["next_cursor"], Value::Null, "{v}");
    let routed = |i: usize| -> Value {
        let url = format!("{}/mesh/discovery", serves[i].as_ref().unwrap().url());
        let mut r = ureq::get(&url).call().unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["routed"].clone()
    };
    assert!(routed(0)["originated"].as_u64().unwrap() >= 1, "{}", routed(0));
    assert!(routed(3)["relayed"].as_u64().unwrap() >= 1, "{}", routed(3));
    assert!(routed(5)["answered"].as_u64().unwrap() >= 1, "{}", routed(5));

    // Pages.
    let p1 = query_until_answered(
        &d("l0"),
        &["--to", &ids[5], "--stream", "s0", "--limit", "4"],
        Duration::from_secs(10),
    );
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_owned();
    let p2 = query_until_answered(
        &d("l0"),
        &["--to", &ids[5], "--stream", "s0", "--limit", "4", "--cursor", &cursor],
        Duration::from_secs(10),
    );
    let page_seqs = |p: &Value| -> Vec<u64> {
        p["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    };
    assert_eq!((page_seqs(&p1), page_seqs(&p2)), (vec![0, 3, 6, 9], vec![12, 15, 18, 21]));

    // Refusals: a stream L5 does not show L0, the whole log, an unknown OID, bad arguments.
    for (args, want) in [(vec!["--stream", "s1"], "refused"), (vec![], "refused")] {
        let out = run(onoal(&d("l0")).args(["remote", "query", "--to", oids[5]]).args(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(err.contains("s0"), "the refusal names what may be read: {err}");
    }
    let out = run(onoal(&d("l0")).args(["remote", "query", "--to", "oid:onoal:org:nowhere"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not known here"), "{err}");
    let out = run(onoal(&d("l0")).args(["remote", "query", "--to", oids[5], "--limit", "0"]));
    assert!(!out.status.success());

    // The same over HTTP.
    let url = format!("{}/mesh/query", serves[0].as_ref().unwrap().url());
    let (code, h) = post_json(&url, &json!({"to": oids[5], "stream": "s0", "limit": 2}));
    assert_eq!(
        (code, h["verified"].as_bool(), h["entries"].as_array().map(Vec::len)),
        (200, Some(true), Some(2)),
        "{h}"
    );
    let (code, h) = post_json(&url, &json!({"to": oids[5], "stream": "s1"}));
    assert_eq!((code, h["kind"].as_str()), (403, Some("refused")), "{h}");
    let (code, _) = post_json(&url, &json!({"to": oids[5], "limit": 0}));
    assert_eq!(code, 400);
    let (code, h) = post_json(&url, &json!({"to": "oid:onoal:org:nowhere"}));
    assert_eq!((code, h["kind"].as_str()), (404, Some("unknown_ledger")), "{h}");

    // L2 dies: L1 gets no answer from it and tries its other neighbour, the bypass.
    serves[2].take().unwrap().kill();
    let v = query_until_answered(
        &d("l0"),
        &["--to", oids[5], "--stream", "s0"],
        Duration::from_secs(30),
    );
    let path: Vec<&str> =
        v["path"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(path, [&ids[0], &ids[1], &ids[6], &ids[3], &ids[4], &ids[5]], "{v}");
    assert_eq!(v["entries"].as_array().unwrap().len(), 10, "{v}");
    drop(serves);
}

/// What the evil relay does with the destination's answer.
const HONEST: u8 = 0;
const ALTER: u8 = 1;
const REPLAY: u8 = 2;
const FORGE: u8 = 3;
const DROP: u8 = 4;

/// A relay that speaks the protocol and cheats on request: it answers `Hello` (so its OID can
/// be learned), passes routed requests on to the destination as a relay must, and then
/// returns the answer unchanged, altered, replayed from its first answer, replaced by forged
/// bytes, or not at all.
struct EvilRelay {
    key: onoal_engine::identity::SecretKey,
    certificate: onoal_mesh::proto::LedgerCertificate,
    dest_key: ed25519_dalek::VerifyingKey,
    dest_addr: std::net::SocketAddr,
    mode: std::sync::atomic::AtomicU8,
    first: std::sync::Mutex<Option<Vec<u8>>>,
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    onoal_mesh::proto::encode_frame(body, &mut out);
    out
}

async fn read_body(recv: &mut quinn::RecvStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    recv.read_exact(&mut body).await.ok()?;
    Some(body)
}

impl EvilRelay {
    /// Passes `message` on to the destination and returns its reply frame body.
    async fn relay(&self, client: &quinn::Endpoint, message: &[u8]) -> Option<Vec<u8>> {
        use onoal_mesh::proto::envelope::{ALPN_MESH, MeshMessage};
        let m = MeshMessage::decode(message).ok()?;
        let me = onoal_mesh::PeerId::new(self.key.public());
        let onward = m.forwarded_by(&me)?;
        let (config, _) =
            onoal_mesh::tls::client_config(&self.key, self.dest_key, &[ALPN_MESH]).ok()?;
        let config = quinn::crypto::rustls::QuicClientConfig::try_from(config).ok()?;
        let conn = client
            .connect_with(quinn::ClientConfig::new(Arc::new(config)), self.dest_addr, "onoal")
            .ok()?
            .await
            .ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        send.write_all(&frame(&onward.encode())).await.ok()?;
        let _ = send.finish();
        read_body(&mut recv).await
    }

    async fn answer(
        &self,
        client: &quinn::Endpoint,
        alpn: &[u8],
        body: Vec<u8>,
    ) -> Option<Vec<u8>> {
        use onoal_mesh::proto::envelope::MeshReply;
        use onoal_mesh::proto::{Request, Response};
        if alpn == onoal_mesh::proto::ALPN_SYNC {
            let response = match postcard::from_bytes::<Request>(&body).ok()? {
                Request::Hello { .. } => Response::Hello { certificate: self.certificate.clone() },
                _ => Response::NoCheckpoint,
            };
            return Some(postcard::to_stdvec(&response).unwrap());
        }
        let mode = self.mode.load(std::sync::atomic::Ordering::SeqCst);
        if mode == DROP {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return None;
        }
        let reply = self.relay(client, &body).await?;
        let Ok(MeshReply::Sealed { bytes }) = postcard::from_bytes::<MeshReply>(&reply) else {
            return Some(reply);
        };
        let first = self.first.lock().unwrap().get_or_insert_with(|| bytes.clone()).clone();
        let bytes = match mode {
            ALTER => {
                let mut b = bytes;
                let i = b.len() / 2;
                b[i] ^= 0x20;
                b
            }
            REPLAY => first,
            FORGE => (0..bytes.len()).map(|i| (i * 131 % 251) as u8).collect(),
            _ => bytes,
        };
        Some(postcard::to_stdvec(&MeshReply::Sealed { bytes }).unwrap())
    }

    /// Serves on a free port until the runtime is dropped.
    fn start(self) -> (tokio::runtime::Runtime, u16, Arc<Self>) {
        use onoal_mesh::proto::envelope::ALPN_MESH;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server =
            onoal_mesh::tls::server_config(&self.key, &[onoal_mesh::proto::ALPN_SYNC, ALPN_MESH])
                .unwrap();
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server).unwrap();
        let relay = Arc::new(self);
        let _guard = rt.enter();
        let endpoint = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(server)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = endpoint.local_addr().unwrap().port();
        let r = relay.clone();
        rt.spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let (relay, client) = (r.clone(), client.clone());
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let alpn = conn
                        .handshake_data()
                        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                        .and_then(|h| h.protocol)
                        .unwrap_or_default();
                    while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let (relay, client, alpn) = (relay.clone(), client.clone(), alpn.clone());
                        tokio::spawn(async move {
                            let Some(body) = read_body(&mut recv).await else { return };
                            if let Some(out) = relay.answer(&client, &alpn, body).await {
                                let _ = send.write_all(&frame(&out)).await;
                                let _ = send.finish();
                                let _ = send.stopped().await;
                            }
                        });
                    }
                });
            }
        });
        (rt, port, relay)
    }
}

#[test]
fn a_tree_of_two_domains_routes_across_the_hubs_by_oid_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    // Two domains, each a hub, an organisation and its departments; only the hubs link the
    // domains. Every hop on the way is strictly closer in OID space, and no sibling is.
    let tree = [
        ("sales", "oid:onoal:org:acme:sales"),
        ("hr", "oid:onoal:org:acme:hr"),
        ("acme", "oid:onoal:org:acme"),
        ("orghub", "oid:onoal:org"),
        ("govhub", "oid:onoal:gov"),
        ("city", "oid:onoal:gov:city"),
        ("tax", "oid:onoal:gov:city:tax"),
        ("permits", "oid:onoal:gov:city:permits"),
    ];
    let at = |name: &str| tree.iter().position(|(n, _)| *n == name).unwrap();
    let edges = [
        ("sales", "acme"),
        ("hr", "acme"),
        ("acme", "orghub"),
        ("orghub", "govhub"),
        ("govhub", "city"),
        ("city", "tax"),
        ("city", "permits"),
    ];
    let nodes: Vec<Node> = tree.iter().map(|(n, oid)| init(&d(n), oid)).collect();
    let ports: Vec<u16> = tree.iter().map(|_| free_udp_port()).collect();
    let mut links: Vec<Vec<usize>> = vec![Vec::new(); tree.len()];
    for (a, b) in edges {
        links[at(a)].push(at(b));
        links[at(b)].push(at(a));
    }
    for (i, ls) in links.iter().enumerate() {
        for &j in ls {
            pin(&d(tree[i].0), &nodes[j], ports[j]);
        }
    }
    for leaf in ["permits", "hr"] {
        import(&d(leaf), 0, 6);
        run_json(onoal(&d(leaf)).args(["stream", "visibility", "s0", "public"]));
    }
    let _serves: Vec<Serve> = links
        .iter()
        .enumerate()
        .map(|(i, ls)| {
            let l: Vec<(&Node, u16)> = ls.iter().map(|&j| (&nodes[j], ports[j])).collect();
            serve_linked(&d(tree[i].0), ports[i], &l)
        })
        .collect();
    let id = |name: &str| nodes[at(name)].id.clone();
    for (from, to, via) in [
        ("sales", "permits", ["sales", "acme", "orghub", "govhub", "city", "permits"]),
        ("tax", "hr", ["tax", "city", "govhub", "orghub", "acme", "hr"]),
    ] {
        let v = query_until_answered(
            &d(from),
            &["--to", tree[at(to)].1, "--stream", "s0"],
            Duration::from_secs(90),
        );
        assert_eq!(
            (v["verified"].as_bool(), v["tree_size"].as_u64()),
            (Some(true), Some(6)),
            "{v}"
        );
        assert_eq!(v["entries"].as_array().map(Vec::len), Some(2), "{v}");
        let want: Vec<String> = via.iter().map(|n| id(n)).collect();
        assert_eq!(v["path"], json!(want), "{from} to {to} through both hubs: {v}");
        assert_eq!(
            (v["hops"].as_u64(), v["strategy"].as_str()),
            (Some(5), Some("oid_prefix")),
            "{v}"
        );
    }
    // findPath at the first hop now: the route the answer came back through, via the parent.
    let route = run_json(onoal(&d("sales")).args(["route", "--to", tree[at("permits")].1]));
    assert_eq!(route["strategy"], "oid_prefix", "{route}");
    assert_eq!(route["next_hops"], json!([id("acme")]), "{route}");
}

#[test]
fn a_relay_that_alters_replays_forges_or_drops_answers_is_caught_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:org:mal");
    let dest = init(&d("d"), "oid:onoal:org:mal:a:b");
    import(&d("d"), 0, 30);
    run_json(onoal(&d("d")).args(["stream", "visibility", "s0", "public"]));
    let d_node = Serve::start(&d("d"), 0, &[]);
    // A learns D's OID from its certificate, then its pin points at a dead port: the direct
    // path fails and the query goes through A's other neighbour, the relay.
    pin(&d("a"), &dest, d_node.1);
    run(onoal(&d("a")).args(["sync", &dest.id, "--mode", "checkpoint"]));
    pin(&d("a"), &dest, free_udp_port());

    let key = onoal_engine::identity::SecretKey::from_seed(&[0x6e; 32]);
    let identity = onoal_engine::Identity {
        ledger_id: onoal_engine::LedgerId::from_bytes([0x6e; 16]),
        oid: onoal_engine::Oid::parse("oid:onoal:org:mal:a").unwrap(),
        public_key: key.public(),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let certificate = onoal_mesh::proto::LedgerCertificate::issue(
        &identity,
        key.signing_key(),
        now.as_millis() as u64,
        3_600_000,
    );
    let relay = EvilRelay {
        key,
        certificate,
        dest_key: ed25519_dalek::VerifyingKey::from_bytes(
            &hex::decode(&dest.key).unwrap().try_into().unwrap(),
        )
        .unwrap(),
        dest_addr: format!("127.0.0.1:{}", d_node.1).parse().unwrap(),
        mode: std::sync::atomic::AtomicU8::new(HONEST),
        first: std::sync::Mutex::new(None),
    };
    let relay_id = identity.ledger_id.to_string();
    let relay_key = hex::encode(identity.public_key.as_bytes());
    let (_rt, port, relay) = relay.start();
    let e = Node { id: relay_id.clone(), key: relay_key };
    pin(&d("a"), &e, port);
    // A learns the relay's OID from its Hello (the sync itself finds nothing to sync).
    run(onoal(&d("a")).args(["sync", &relay_id]));

    let query = || {
        run(onoal(&d("a")).args(["remote", "query", "--to", &dest.id, "--stream", "s0", "--json"]))
    };
    let honest = query();
    assert!(honest.status.success(), "{}", String::from_utf8_lossy(&honest.stderr));
    let v: Value = serde_json::from_slice(&honest.stdout).unwrap();
    assert_eq!(v["path"], json!([a.id, relay_id, dest.id]), "{v}");
    assert_eq!(v["entries"].as_array().unwrap().len(), 10, "{v}");

    for (mode, want) in [
        (ALTER, "does not verify"),
        (REPLAY, "does not verify"),
        (FORGE, "does not verify"),
        (DROP, "no answer"),
    ] {
        relay.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
        let out = query();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mode {mode}: a cheating relay's answer was accepted");
        // Nothing of the answer is printed: only the error object --json asks for.
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(
            printed["error"]["message"].is_string() && printed.get("entries").is_none(),
            "mode {mode}: printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(err.contains(want), "mode {mode}: {err}");
        if mode != DROP {
            assert!(err.contains(&relay_id), "mode {mode}: the hop is named: {err}");
        }
    }
    drop(d_node);
}

#[test]
fn references_across_three_ledgers_are_checked_by_proof_from_a_replica_or_the_mesh() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let x = init(&d("x"), "oid:onoal:org:x");
    let y = init(&d("y"), "oid:onoal:org:y");
    let z = init(&d("z"), "oid:onoal:org:z");
    import(&d("y"), 0, 10);
    import(&d("z"), 0, 10);
    // Y shows s0 to anyone; Z knows X (trust 0.5), so X may keep a full replica of Z.
    run_json(onoal(&d("y")).args(["stream", "visibility", "s0", "public"]));
    pin(&d("z"), &x, 1);
    let (ys, zs) = (Serve::start(&d("y"), 0, &[]), Serve::start(&d("z"), 0, &[]));
    pin(&d("x"), &y, ys.1);
    pin(&d("x"), &z, zs.1);
    let out = run(onoal(&d("x")).args(["sync", &z.id]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(onoal(&d("x")).args(["sync", &y.id, "--mode", "checkpoint"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let hash = |dir: &str, seq: u64| -> String {
        run_json(onoal(&d(dir)).args(["get", &seq.to_string()]))["leaf_hash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let refs = [
        format!("{}:3:{}", y.id, hash("y", 3)), // s0 of Y, through the mesh: verified
        format!("{}:5:{}", z.id, hash("z", 5)), // Z's replica: verified
        format!("{}:5:{}", z.id, hash("z", 6)), // Z's replica, another hash: mismatch
        format!("{}:4:{}", y.id, hash("y", 4)), // s1 of Y, not shown to X: refused
        format!("{}:50:{}", y.id, hash("y", 3)), // beyond Y's checkpoint: missing
    ];
    let mut append = onoal(&d("x"));
    append.args(["append", "--stream", "claims", "--type", "t", "--payload", "p"]);
    for r in &refs {
        append.args(["--ref", r]);
    }
    let seq = run_json(&mut append)["seq"].as_u64().unwrap();
    let got = run_json(onoal(&d("x")).args(["get", &seq.to_string()]));
    assert_eq!(got["refs"], json!(refs), "{got}");

    let out = run(onoal(&d("x")).args(["ref", "check", &seq.to_string(), "--json"]));
    assert_eq!(out.status.code(), Some(1), "not all references verified");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(String, String)> = v["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["status"].as_str().unwrap().into(), r["via"].as_str().unwrap().into()))
        .collect();
    let want = [
        ("verified", "mesh"),
        ("verified", "replica"),
        ("mismatch", "replica"),
        ("refused", "mesh"),
        ("missing", "mesh"),
    ];
    assert_eq!(
        rows,
        want.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<Vec<_>>(),
        "{v}"
    );
    assert_eq!(v["all_verified"], false, "{v}");

    // Only verified references: exit 0. A reference that does not parse is refused at append.
    let seq = run_json(onoal(&d("x")).args([
        "append",
        "--stream",
        "claims",
        "--type",
        "t",
        "--payload",
        "q",
        "--ref",
        &refs[0],
    ]))["seq"]
        .as_u64()
        .unwrap();
    let out = run(onoal(&d("x")).args(["ref", "check", &seq.to_string()]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(onoal(&d("x")).args([
        "append",
        "--stream",
        "claims",
        "--type",
        "t",
        "--payload",
        "q",
        "--ref",
        "nope:1:ab",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("LEDGER_ID:SEQ:LEAF_HASH"), "{err}");
    drop((ys, zs));
}

#[test]
fn an_exported_proof_verifies_offline_with_only_the_vkey_and_any_change_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = run_json(onoal(&d("a")).args(["init", "--oid", "oid:onoal:org:issuer"]));
    let other = run_json(onoal(&d("b")).args(["init", "--oid", "oid:onoal:org:issuer"]));
    let vkey = a["vkey"].as_str().unwrap().to_owned();
    import(&d("a"), 0, 10);
    let out = run(onoal(&d("a")).args(["proof", "export", "4"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let proof: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (proof["seq"].as_u64(), proof["tree_size"].as_u64()),
        (Some(4), Some(10)),
        "{proof}"
    );
    let file = tmp.path().join("proof.json");
    std::fs::write(&file, serde_json::to_vec(&proof).unwrap()).unwrap();

    // A machine with nothing but the vkey: a data directory that does not exist.
    let fresh = d("fresh");
    let verify = |file: &Path, vkey: &str| {
        run(onoal(&fresh).args(["proof", "verify"]).arg(file).args(["--vkey", vkey, "--json"]))
    };
    let out = verify(&file, &vkey);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["valid"].as_bool(), v["oid"].as_str()),
        (Some(true), Some("oid:onoal:org:issuer")),
        "{v}"
    );
    assert!(!fresh.exists(), "verifying needs no data directory");

    // Another ledger's key (the same OID), and every field changed: refused with the reason.
    let out = verify(&file, other["vkey"].as_str().unwrap());
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["reason"].as_str().unwrap().contains("does not verify with this vkey"), "{v}");
    let payload = proof["entry"]["payload"].as_str().unwrap().to_owned();
    let mut flipped_leaf = proof["entry"]["leaf_data_b64"].as_str().unwrap().as_bytes().to_vec();
    let last = flipped_leaf.len() - 3;
    flipped_leaf[last] = if flipped_leaf[last] == b'A' { b'B' } else { b'A' };
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/entry/payload", json!(format!("x{payload}")), "do not match its leaf data"),
        ("/entry/time", json!("2000-01-01T00:00:00.000Z"), "do not match its leaf data"),
        ("/entry/leaf_data_b64", json!(String::from_utf8(flipped_leaf).unwrap()), ""),
        ("/inclusion_proof/0", json!("00".repeat(32)), "inclusion proof"),
        ("/tree_size", json!(11), "tree_size says 11"),
        ("/seq", json!(5), "not 5"),
    ];
    for (pointer, value, want) in cases {
        let mut changed = proof.clone();
        *changed.pointer_mut(pointer).unwrap() = value;
        std::fs::write(&file, serde_json::to_vec(&changed).unwrap()).unwrap();
        let out = verify(&file, &vkey);
        assert_eq!(out.status.code(), Some(1), "{pointer}: a changed file verified");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["valid"], false, "{pointer}: {v}");
        assert!(v["reason"].as_str().unwrap().contains(want), "{pointer}: {v}");
    }
    let out = run(onoal(&d("a")).args(["proof", "export", "10"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not in the newest signed checkpoint"), "{err}");
}
