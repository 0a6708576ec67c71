//! The seed's use case 1 between processes: organisation A issues an attestation about an
//! employee (an issuer-signed entry, subject = the employee's OID) on a ledger whose
//! checkpoints a witness cosigns; organisation B verifies it three ways — a routed
//! proof_verify to A, a one-shot cross-ledger query, and an offline proof file checked with
//! A's vkey and the witness quorum alone. (Use case 2 is `transfer.rs`.)

use std::time::{Duration, Instant};

use serde_json::Value;

use onoal_tests::node::{Serve, init, pin};
use onoal_tests::{onoal, run, run_json, stdout_json};

const SUBJECT: &str = "oid:onoal:org:a:emp:42";
const ISSUER: &str = "oid:onoal:org:a:hr";

#[test]
fn an_attestation_of_org_a_is_verified_by_org_b_routed_queried_and_offline_with_its_witness() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let a = init(&d("a"), "oid:onoal:org:a");
    let w = init(&d("w"), "oid:onoal:org:w");
    init(&d("b"), "oid:onoal:org:b");

    // A issues: the attestation is signed by A's HR key, about the employee's OID, in a stream
    // B may read; a private entry about the same employee stays private.
    let key_file = tmp.path().join("hr.key");
    let hr = run_json(onoal(&d("a")).args(["key", "new"]).arg(&key_file).args(["--name", ISSUER]));
    let hr_key = hr["public_key"].as_str().unwrap().to_owned();
    let issued = run_json(
        onoal(&d("a"))
            .args(["append", "--stream", "attestations", "--type", "employment.attested"])
            .args(["--subject", SUBJECT, "--issuer", ISSUER, "--payload", "employed since 2024"])
            .arg("--issuer-key")
            .arg(&key_file),
    );
    let seq = issued["seq"].as_u64().unwrap().to_string();
    run_json(onoal(&d("a")).args([
        "append",
        "--stream",
        "hr-private",
        "--type",
        "salary.set",
        "--subject",
        SUBJECT,
        "--payload",
        "5000",
    ]));
    run_json(onoal(&d("a")).args(["stream", "visibility", "attestations", "public"]));
    run_json(onoal(&d("a")).arg("checkpoint"));

    // W witnesses A; A publishes only checkpoints W cosigned.
    let wv =
        run_json(onoal(&d("w")).args(["witness", "info"]))["vkey"].as_str().unwrap().to_owned();
    let sw = Serve::start(&d("w"), 0, &[]);
    pin(&d("w"), &a, 1);
    pin(&d("a"), &w, sw.1);
    let sa = Serve::start_with(&d("a"), 0, &[], &["--witness", &w.id, "--witness-quorum", "1"]);
    let started = Instant::now();
    loop {
        let cp = run(onoal(&d("a")).args(["checkpoint", "--cosigned", "--json"]));
        let v: Value = serde_json::from_slice(&cp.stdout).unwrap_or(Value::Null);
        if v["cosigned_by"].as_array().is_some_and(|c| c.len() == 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "W never cosigned A: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    pin(&d("b"), &a, sa.1);

    // 1. Routed proof_verify: A checks its entry and signs the statement; B re-checks it.
    let out = run(onoal(&d("b")).args([
        "remote",
        "verify",
        "--json",
        "--to",
        "oid:onoal:org:a",
        "--seq",
        &seq,
        "--subject",
        SUBJECT,
        "--issuer",
        ISSUER,
        "--type",
        "employment.attested",
        "--issuer-key",
        &hr_key,
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v = stdout_json(&out);
    assert_eq!(
        (v["verdict"].as_str(), v["checked_by"].as_str()),
        (Some("match"), Some("entry")),
        "{v}"
    );
    assert_eq!(v["checks"]["issuer_signature"], true, "{v}");
    // Another employee's OID: a mismatch, exit 1.
    let out = run(onoal(&d("b")).args([
        "remote",
        "verify",
        "--json",
        "--to",
        "oid:onoal:org:a",
        "--seq",
        &seq,
        "--subject",
        "oid:onoal:org:a:emp:43",
    ]));
    assert_eq!(
        (out.status.code(), stdout_json(&out)["verdict"].as_str()),
        (Some(1), Some("mismatch"))
    );

    // 2. One-shot cross-ledger query of A's attestations about the employee, proven; A's
    //    private stream about the same subject is refused to B, not silently filtered.
    let q = run_json(onoal(&d("b")).args([
        "remote",
        "query",
        "--to",
        "oid:onoal:org:a",
        "--stream",
        "attestations",
        "--subject",
        SUBJECT,
    ]));
    assert_eq!(q["verified"], true, "{q}");
    let entries = q["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{q}");
    assert_eq!(
        (entries[0]["type"].as_str(), entries[0]["stream"].as_str()),
        (Some("employment.attested"), Some("attestations")),
        "{q}"
    );

    let out = run(onoal(&d("b")).args([
        "remote",
        "query",
        "--to",
        "oid:onoal:org:a",
        "--stream",
        "hr-private",
        "--subject",
        SUBJECT,
    ]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"), "{out:?}");

    // 3. Offline: a tlog-proof file from A, checked by B with A's vkey and W's vkey alone.
    let proof = run(onoal(&d("a")).args(["prove", "inclusion", &seq, "--bundle"]));
    assert!(proof.status.success(), "{}", String::from_utf8_lossy(&proof.stderr));
    let file = d("attestation.tlog-proof");
    std::fs::write(&file, &proof.stdout).unwrap();
    let a_vkey = run_json(onoal(&d("a")).arg("info"))["vkey"].as_str().unwrap().to_owned();
    let offline = |extra: &[&str]| {
        let out = run(onoal(&d("nowhere"))
            .arg("verify-proof")
            .arg(&file)
            .args(["--vkey", &a_vkey, "--json"])
            .args(extra));
        (out.status.code(), stdout_json(&out))
    };
    let (code, v) = offline(&["--witness-vkey", &wv, "--quorum", "1"]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["cosigned_by"].as_array().map(Vec::len), Some(1), "{v}");
    // A witness that never cosigned A: the quorum fails.
    let other =
        run_json(onoal(&d("b")).args(["witness", "info"]))["vkey"].as_str().unwrap().to_owned();
    let (code, v) = offline(&["--witness-vkey", &other, "--quorum", "1"]);
    assert_eq!(code, Some(1), "{v}");
    // A proof file that claims another index no longer verifies.
    let text = std::fs::read_to_string(&file).unwrap();
    let forged = text.replacen(&format!("\nindex {seq}\n"), "\nindex 1\n", 1);
    assert_ne!(forged, text);
    let forged_file = d("forged.tlog-proof");
    std::fs::write(&forged_file, &forged).unwrap();
    let out =
        run(onoal(&d("nowhere")).arg("verify-proof").arg(&forged_file).args(["--vkey", &a_vkey]));
    assert!(!out.status.success());
    drop((sa, sw));
}

/// Polls `f` every 100 ms for up to 30 s.
fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    onoal_tests::eventually(what, Duration::from_secs(30), f)
}

/// `asset find|verify --id ID --json` once it proves `owner`.
fn owned_by(dir: &std::path::Path, how: &str, asset: &str, owner: &str) -> Value {
    eventually(&format!("{asset} proven owned by {owner}"), || {
        let out = run(onoal(dir).args(["asset", how, "--id", asset, "--json"]));
        let v = stdout_json(&out);
        (out.status.success() && v["owner"] == owner).then_some(v)
    })
}

/// Use case 3: a maker registers a car on its ledger; an auditor that knows nothing but the
/// registry finds and proves its owner; the car moves to a buyer by a two-phase transfer and
/// the auditor follows it; a copycat's registration of the same id makes it contested.
#[test]
fn an_asset_is_registered_found_verified_and_followed_through_a_transfer() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let (_registry, url) = onoal_tests::node::registry(None);
    let args = ["--registry", url.as_str(), "--gossip-interval", "1"];
    let maker = init(&d("maker"), "oid:onoal:org:maker");
    let buyer = init(&d("buyer"), "oid:onoal:org:buyer");
    init(&d("auditor"), "oid:onoal:org:auditor");
    let sm = Serve::start_with(&d("maker"), 0, &[], &args);
    let sb = Serve::start_with(&d("buyer"), 0, &[], &args);
    let sa = Serve::start_with(&d("auditor"), 0, &[], &args);
    pin(&d("maker"), &buyer, sb.1);
    pin(&d("buyer"), &maker, sm.1);

    let reg = run_json(onoal(&d("maker")).args([
        "asset",
        "register",
        "--id",
        "car-17",
        "--meta",
        r#"{"vin":"WVW123"}"#,
    ]));
    assert_eq!(reg["owner"], "oid:onoal:org:maker");
    assert_eq!(reg["meta"]["vin"], "WVW123");
    let held = run_json(onoal(&d("maker")).args(["asset", "list"]));
    assert_eq!(held[0]["asset"], "car-17", "{held}");
    // It exists once: no second registration, no mint; an owner outside the ledger's OID is
    // refused; a meta that is not JSON is a usage error.
    let again = run(onoal(&d("maker")).args(["asset", "register", "--id", "car-17", "--json"]));
    assert!(!again.status.success());
    assert!(stdout_json(&again)["error"]["message"].as_str().unwrap().contains("exists"));
    let mint =
        run(onoal(&d("maker")).args(["mint", "--asset", "car-17", "--amount", "2", "--json"]));
    assert!(!mint.status.success(), "a registered asset is not minted");
    let foreign = run(onoal(&d("maker")).args([
        "asset",
        "register",
        "--id",
        "car-18",
        "--owner",
        "oid:onoal:org:buyer",
        "--json",
    ]));
    assert!(
        stdout_json(&foreign)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not this ledger's OID")
    );
    let bad =
        run(onoal(&d("maker"))
            .args(["asset", "register", "--id", "car-18", "--meta", "{", "--json"]));
    assert_eq!(stdout_json(&bad)["error"]["kind"], "usage");

    // The auditor pinned no one: it finds the maker's claim (registry, DHT) and proves it.
    let found = owned_by(&d("auditor"), "find", "car-17", &maker.id);
    assert_eq!(found["verified"], true);
    assert_eq!(found["owner_oid"], "oid:onoal:org:maker");
    assert_eq!(found["registration"]["meta"]["vin"], "WVW123");
    assert_eq!(found["registration"]["ledger"], maker.id.as_str());
    assert_eq!(found["hops"].as_array().unwrap().len(), 0);
    // The registry lists the claim under the asset.
    let (status, listed) = onoal_tests::get_text(&format!("{url}/v1/records?asset=car-17"));
    assert_eq!(status, 200);
    assert!(listed.contains(&maker.id), "{listed}");

    // The car moves to the buyer (amount 1; more is not available).
    let two = run(onoal(&d("maker")).args([
        "transfer", "start", "--to", &buyer.id, "--asset", "car-17", "--amount", "2", "--json",
    ]));
    assert!(!two.status.success());
    let t = run_json(onoal(&d("maker")).args([
        "transfer",
        "start",
        "--to",
        "oid:onoal:org:buyer",
        "--asset",
        "car-17",
        "--amount",
        "1",
        "--id",
        "sale-1",
    ]));
    assert_eq!(t["outcome"], "committed", "{t}");
    let v = owned_by(&d("auditor"), "verify", "car-17", &buyer.id);
    assert_eq!(v["owner_oid"], "oid:onoal:org:buyer");
    let hops = v["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 1, "{v}");
    assert_eq!(
        (hops[0]["from"].as_str(), hops[0]["to"].as_str()),
        (Some(maker.id.as_str()), Some(buyer.id.as_str()))
    );
    assert_eq!(hops[0]["transfer"], "sale-1");
    assert!(hops[0]["credit"].is_string(), "the buyer's credit is proven: {v}");
    assert_eq!(v["registration"]["ledger"], maker.id.as_str(), "still registered by the maker");
    // The maker's record no longer claims it, the buyer's does.
    eventually("the buyer announces the car", || {
        let held = run_json(onoal(&d("buyer")).args(["asset", "list"]));
        let (_, listed) = onoal_tests::get_text(&format!("{url}/v1/records?asset=car-17"));
        (held[0]["asset"] == "car-17" && listed.contains(&buyer.id) && !listed.contains(&maker.id))
            .then_some(())
    });
    assert_eq!(run_json(onoal(&d("maker")).args(["asset", "list"])), serde_json::json!([]));
    // HTTP: the same view; an asset nobody claims is a 404 with what to do.
    let (status, body) = onoal_tests::get_text(&format!("{}/assets/car-17", sa.url()));
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["owner"], buyer.id.as_str());
    let (status, body) =
        onoal_tests::get_text(&format!("{}/assets/no-such-car?wait_ms=300", sa.url()));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_asset"), "{body}");
    let none = run(onoal(&d("auditor")).args([
        "asset",
        "find",
        "--id",
        "no-such-car",
        "--wait-ms",
        "300",
        "--json",
    ]));
    assert!(!none.status.success());

    // A copycat registers the same id on its own ledger: two registrations, two proven owners.
    init(&d("copycat"), "oid:onoal:org:copycat");
    let _sc = Serve::start_with(&d("copycat"), 0, &[], &args);
    run_json(onoal(&d("copycat")).args(["asset", "register", "--id", "car-17"]));
    let contested = eventually("the auditor sees two claims", || {
        let out = run(onoal(&d("auditor")).args(["asset", "verify", "--id", "car-17", "--json"]));
        let v = stdout_json(&out);
        (!out.status.success() && v["error"]["message"].as_str()?.contains("contested"))
            .then_some(v)
    });
    assert_eq!(contested["error"]["kind"], "asset_unverified");
    let (_, body) = onoal_tests::get_text(&format!("{}/assets/car-17", sa.url()));
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (view["verified"].as_bool(), view["contested"].as_bool()),
        (Some(false), Some(true)),
        "{view}"
    );
}
