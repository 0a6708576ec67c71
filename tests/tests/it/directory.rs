//! Directory discovery between real processes: `onoal registry serve` and nodes that find each
//! other only through it (`serve --registry`), then a newcomer that finds them only through a
//! real DNS server on loopback (Debian's dnsmasq, started here; `.ci/run` installs it) with SRV
//! and TXT records (`serve --dns`). Forged registrations, a missing API key and a DNS name whose
//! TXT names the wrong ledger are refused.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use onoal_engine::LedgerId;
use onoal_mesh::proto::record::PeerRecord;
use onoal_tests::node::{Proc, Serve, init, registry};
use onoal_tests::{onoal, run, run_fail, run_json};
use serde_json::{Value, json};

fn call(method: &str, url: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = match (method, body) {
        ("POST", Some(b)) => {
            let mut r = agent.post(url);
            if let Some(k) = key {
                r = r.header("Authorization", format!("Bearer {k}"));
            }
            r.send_json(&b).unwrap()
        }
        _ => {
            let mut r = agent.get(url);
            if let Some(k) = key {
                r = r.header("Authorization", format!("Bearer {k}"));
            }
            r.call().unwrap()
        }
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(url: &str) -> Value {
    call("GET", url, None, None).1
}

/// Each discovered ledger's source and membership status, as a node lists them.
fn discovered(serve: &Serve) -> BTreeMap<String, (String, String)> {
    let v = get(&format!("{}/mesh/peers", serve.url()));
    v["discovered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ledger_id"].as_str().unwrap().to_owned(),
                (
                    r["source"].as_str().unwrap().to_owned(),
                    r["status"].as_str().unwrap_or("none").to_owned(),
                ),
            )
        })
        .collect()
}

fn within(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
    describe: impl Fn() -> String,
) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}\n{}", describe());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn dnsmasq() -> Option<std::path::PathBuf> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

#[test]
fn ledgers_find_each_other_through_a_registry_and_a_newcomer_through_dns() {
    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("registry.key");
    std::fs::write(&key_file, "registry-secret-7f3a\n").unwrap();
    let (_registry, url) = registry(Some(&key_file));

    // Three nodes that know nothing but the registry.
    let quick = ["--gossip-interval", "1", "--heartbeat-interval-ms", "300"];
    let dirs: Vec<_> = (0..3).map(|i| tmp.path().join(format!("r{i}"))).collect();
    let nodes: Vec<_> =
        dirs.iter().enumerate().map(|(i, d)| init(d, &format!("oid:onoal:reg:n{i}"))).collect();
    let key_arg = key_file.to_str().unwrap();
    let mut args = vec!["--registry", url.as_str(), "--registry-api-key-file", key_arg];
    args.extend(quick);
    let serves: Vec<Serve> = dirs.iter().map(|d| Serve::start_with(d, 0, &[], &args)).collect();
    let describe = |serves: &[&Serve]| -> String {
        serves.iter().map(|s| format!("{:?}", discovered(s))).collect::<Vec<_>>().join("\n")
    };
    let all_three: Vec<&Serve> = serves.iter().collect();
    within(
        Duration::from_secs(15),
        "three registered nodes know and heartbeat each other",
        || {
            // The last to start found the other two in the registry; the first ones learned of
            // later registrants from their announces (until their next refresh of the list).
            let last = discovered(&serves[2]);
            last.len() == 2
                && last.values().all(|(source, _)| source == "registry")
                && serves.iter().all(|s| {
                    let d = discovered(s);
                    d.len() == 2 && d.values().all(|(_, status)| status == "connected")
                })
        },
        || describe(&all_three),
    );

    // The registry: the API key is required; it lists the three; a lookup by id and by OID.
    let (status, body) = call("GET", &format!("{url}/v1/records"), None, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = call("GET", &format!("{url}/v1/records"), Some("wrong"), None);
    assert_eq!(status, 401, "{body}");
    let key = Some("registry-secret-7f3a");
    let (status, list) = call("GET", &format!("{url}/v1/records"), key, None);
    assert_eq!(status, 200);
    assert_eq!(list["records"].as_array().unwrap().len(), 3, "{list}");
    let (status, one) = call("GET", &format!("{url}/v1/records/{}", nodes[1].id), key, None);
    assert_eq!(status, 200);
    assert_eq!(one["public_key"], nodes[1].key.as_str());
    assert_eq!(one["quic"], format!("127.0.0.1:{}", serves[1].1).as_str());
    let (status, _) = call("GET", &format!("{url}/v1/records/{}", LedgerId::random()), key, None);
    assert_eq!(status, 404);
    let (_, under) = call("GET", &format!("{url}/v1/records?oid_prefix=oid:onoal:reg"), key, None);
    assert_eq!(under["records"].as_array().unwrap().len(), 3, "{under}");
    let (status, bad) = call("GET", &format!("{url}/v1/records?oid_prefix=nope"), key, None);
    assert_eq!(status, 400, "{bad}");

    // A registry cannot be used to forge a peer: a record with a changed address, or one
    // signed by another key for this ledger id, is refused and the real one stays.
    let bytes = B64.decode(one["record"].as_str().unwrap()).unwrap();
    let mut forged: PeerRecord = postcard::from_bytes(&bytes).unwrap();
    forged.endpoints.quic = Some("10.66.66.66:4433".into());
    forged.sequence += 1;
    let body = json!({ "record": B64.encode(postcard::to_stdvec(&forged).unwrap()) });
    let (status, answer) = call("POST", &format!("{url}/v1/records"), key, Some(body));
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("signature"), "{answer}");
    let (status, answer) =
        call("POST", &format!("{url}/v1/records"), key, Some(json!({ "record": "not base64!" })));
    assert_eq!(status, 400, "{answer}");
    let (_, still) = call("GET", &format!("{url}/v1/records/{}", nodes[1].id), key, None);
    assert_eq!(still["quic"], one["quic"]);

    // A node with the wrong API key is refused by the registry, so it learns nothing there.
    let wrong_key = tmp.path().join("wrong.key");
    std::fs::write(&wrong_key, "not-the-key").unwrap();
    let dw = tmp.path().join("w");
    init(&dw, "oid:onoal:reg:w");
    let sw = Serve::start_with(
        &dw,
        0,
        &[],
        &["--registry", url.as_str(), "--registry-api-key-file", wrong_key.to_str().unwrap()],
    );

    // A newcomer finds them through DNS: SRV _onoal._udp.mesh.test -> n0, TXT with its ledger
    // id and key; a second target whose TXT names another ledger than the one answering there
    // is refused.
    let Some(dnsmasq) = dnsmasq() else {
        assert!(
            std::env::var_os("ONOAL_REQUIRE_DNSMASQ").is_none(),
            "dnsmasq is required here (ONOAL_REQUIRE_DNSMASQ): apt-get install dnsmasq-base"
        );
        eprintln!("SKIPPED the DNS half: no dnsmasq (apt-get install dnsmasq-base)");
        return;
    };
    let port = free_udp_port();
    let txt = |id: &str, key: &str| format!("onoal-id={id},onoal-key={key}");
    let _dns = Proc(
        Command::new(dnsmasq)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--pid-file=",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--srv-host=_onoal._udp.mesh.test,n0.mesh.test,{},10,5", serves[0].1))
            .arg(format!("--srv-host=_onoal._udp.mesh.test,liar.mesh.test,{},20,5", serves[2].1))
            .arg("--host-record=n0.mesh.test,127.0.0.1")
            .arg("--host-record=liar.mesh.test,127.0.0.1")
            .arg(format!("--txt-record=n0.mesh.test,{}", txt(&nodes[0].id, &nodes[0].key)))
            .arg(format!(
                "--txt-record=liar.mesh.test,{}",
                txt(&LedgerId::random().to_string(), &nodes[2].key)
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dd = tmp.path().join("d");
    let newcomer = init(&dd, "oid:onoal:dns:d");
    let dns_server = format!("127.0.0.1:{port}");
    let mut args = vec!["--dns", "_onoal._udp.mesh.test", "--dns-server", dns_server.as_str()];
    args.extend(quick);
    let sd = Serve::start_with(&dd, 0, &[], &args);
    within(
        Duration::from_secs(15),
        "the newcomer knows the three through DNS and heartbeats them",
        || {
            let d = discovered(&sd);
            nodes.iter().all(|n| {
                d.get(&n.id)
                    .is_some_and(|(source, status)| source == "dns" && status == "connected")
            })
        },
        || describe(&[&sd]),
    );
    // And they learn of it (its announce to n0, then gossip).
    within(
        Duration::from_secs(15),
        "the three know the newcomer",
        || serves.iter().all(|s| discovered(s).contains_key(&newcomer.id)),
        || describe(&all_three),
    );
    let status = get(&format!("{}/mesh/discovery", sd.url()));
    assert!(
        status["records_refused"].as_u64().unwrap() >= 1,
        "the lying DNS target was not refused: {status}"
    );
    assert_eq!(status["known_by_source"]["dns"].as_u64(), Some(3), "{status}");

    // `peer disconnect`: no more heartbeats, and gossip (every second here) does not bring it
    // back; `peer connect` does, answering once the first heartbeat was answered.
    let member = nodes[1].id.as_str();
    let out = run_json(onoal(&dd).args(["peer", "disconnect", member]));
    assert_eq!(out["removed"], true, "{out}");
    std::thread::sleep(Duration::from_secs(3));
    let rows = get(&format!("{}/mesh/connections", sd.url()));
    assert!(
        rows["connections"].as_array().unwrap().iter().all(|r| r["to_ledger_id"] != member),
        "{rows}"
    );
    assert_eq!(discovered(&sd)[member].1, "none", "still known, not a member");
    let row = run_json(onoal(&dd).args(["peer", "connect", member]));
    assert_eq!(row["status"], "connected", "{row}");
    assert_eq!(row["to_ledger_id"], member);
    let unknown = LedgerId::random().to_string();
    let err =
        run_fail(onoal(&dd).args(["peer", "connect", unknown.as_str(), "--timeout-ms", "500"]));
    assert!(err.contains("not known"), "{err}");

    // The node with the wrong key got nothing from the registry and stayed up.
    let w = discovered(&sw);
    assert!(w.values().all(|(source, _)| source != "registry"), "{w:?}");
    assert!(get(&format!("{}/health", sw.url()))["live"].as_bool().unwrap());
}

/// A registry that lies: every listing and lookup answers with a record whose address was
/// changed after signing, and one signed by a key that is not the ledger's own for an id the
/// node pinned. Serves plain HTTP/1.1 from a thread, one request per connection.
fn lying_registry(listing: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = vec![0u8; 64 << 10];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let body = if request.starts_with("POST") {
                r#"{"status":"new","ledger_id":"x","refresh_within_ms":180000}"#.to_owned()
            } else if request.starts_with("GET /v1/records/") {
                let list: Value = serde_json::from_str(&listing).unwrap();
                list["records"][0].to_string()
            } else {
                listing.clone()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_lying_registry_cannot_plant_a_peer() {
    use ed25519_dalek::SigningKey;
    use onoal_engine::Oid;
    use onoal_mesh::proto::record::{Endpoints, RecordFields};

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    init(&dir, "oid:onoal:lied:to");
    let sign = |key: &SigningKey, ledger: LedgerId, quic: &str| {
        let fields = RecordFields {
            endpoints: Endpoints { quic: Some(quic.into()), ..Endpoints::default() },
            ..RecordFields::default()
        };
        let expires = onoal_engine::time::now_ms() + 3_600_000;
        let oid = Oid::parse("oid:onoal:lied:x").unwrap();
        PeerRecord::sign(key, ledger, &oid, fields, 1, expires)
    };
    // Moved after signing: the signature no longer covers the address.
    let honest = SigningKey::from_bytes(&[5; 32]);
    let moved_ledger = LedgerId::random();
    let mut moved = sign(&honest, moved_ledger, "127.0.0.1:9");
    moved.endpoints.quic = Some("127.0.0.1:10".into());
    // A pinned ledger's id with another key: validly signed by that other key.
    let pinned_ledger = LedgerId::random();
    let pinned_key = SigningKey::from_bytes(&[6; 32]);
    let impostor = sign(&SigningKey::from_bytes(&[7; 32]), pinned_ledger, "127.0.0.1:11");
    run(onoal(&dir).args([
        "peer",
        "add",
        &format!("{pinned_ledger}@127.0.0.1:12"),
        "--key",
        &hex::encode(pinned_key.verifying_key().to_bytes()),
    ]));
    let entry = |r: &PeerRecord| {
        json!({
            "ledger_id": r.ledger_id.to_string(), "oid": r.oid, "public_key": hex::encode(r.public_key),
            "quic": r.endpoints.quic, "sequence": r.sequence, "expires_ms": r.expires_ms,
            "refreshed_ms": 0, "record": B64.encode(r.encode()),
        })
    };
    let listing = json!({ "records": [entry(&moved), entry(&impostor)] }).to_string();
    let url = lying_registry(listing);
    let serve = Serve::start_with(&dir, 0, &[], &["--registry", url.as_str()]);
    within(
        Duration::from_secs(10),
        "both planted records refused",
        || get(&format!("{}/mesh/discovery", serve.url()))["records_refused"].as_u64() >= Some(2),
        || get(&format!("{}/mesh/discovery", serve.url())).to_string(),
    );
    let found = discovered(&serve);
    assert!(!found.contains_key(&moved_ledger.to_string()), "{found:?}");
    assert!(!found.contains_key(&pinned_ledger.to_string()), "{found:?}");
    // Asked directly, the lookup goes to the registry again, and is refused again.
    let moved_id = moved_ledger.to_string();
    let err = run_fail(onoal(&dir).args(["discover", "--id", &moved_id, "--timeout-ms", "500"]));
    assert!(err.contains("no ledger found"), "{err}");
    // The pinned key stands.
    let peers = run_json(onoal(&dir).args(["peer", "list"]));
    let pinned = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ledger_id"] == pinned_ledger.to_string().as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        pinned["public_key"],
        hex::encode(pinned_key.verifying_key().to_bytes()).as_str(),
        "{peers}"
    );
}
