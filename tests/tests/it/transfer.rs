//! Two-phase token transfers between `onoal serve` processes (the seed's use case 2): a
//! transfer commits on both ledgers and moves the balance; one to an unreachable ledger is
//! unlocked at its deadline; a node SIGABRTed right after each step restarts and both ledgers
//! end committed; forged steps are refused in both directions.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use onoal_tests::node::{Node, Serve, init, pin};
use onoal_tests::{onoal, run, run_json, stdout_json};

/// Polls `f` every 100 ms for up to 60 s.
fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    onoal_tests::eventually(what, Duration::from_secs(60), f)
}

fn balance(dir: &Path, asset: &str) -> Value {
    let all = run_json(onoal(dir).args(["balance", "--asset", asset]));
    all.as_array().and_then(|a| a.first().cloned()).unwrap_or(Value::Null)
}

/// `transfer status ID` (both sides) once this ledger and the other are both done.
fn settled(dir: &Path, id: &str) -> Value {
    eventually(&format!("transfer {id} settled on both ledgers"), || {
        let out = run(onoal(dir).args(["transfer", "status", id, "--json"]));
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let peer_done = v["peer"]["phase"]
            .as_str()
            .is_some_and(|p| ["credited", "released", "confirmed", "unlocked"].contains(&p));
        (v["done"] == true && peer_done).then_some(v)
    })
}

struct Pair {
    _tmp: tempfile::TempDir,
    a_dir: std::path::PathBuf,
    b_dir: std::path::PathBuf,
    a: Node,
    b: Node,
}

/// Two ledgers that pinned each other at the ports they serve on.
fn pair() -> (Pair, Serve, Serve) {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = init(&a_dir, "oid:onoal:org:alice");
    let b = init(&b_dir, "oid:onoal:org:bob");
    let sa = Serve::start(&a_dir, 0, &[]);
    let sb = Serve::start(&b_dir, 0, &[]);
    pin(&a_dir, &b, sb.1);
    pin(&b_dir, &a, sa.1);
    (Pair { _tmp: tmp, a_dir, b_dir, a, b }, sa, sb)
}

#[test]
fn a_transfer_commits_on_both_ledgers_and_moves_the_balance() {
    let (p, _sa, sb) = pair();
    let minted = run_json(onoal(&p.a_dir).args(["mint", "--asset", "eur", "--amount", "100"]));
    assert_eq!(minted["balance"]["available"], 100);
    // More than is available: refused before anything is written.
    let out = run(onoal(&p.a_dir).args([
        "transfer", "start", "--to", &p.b.id, "--asset", "eur", "--amount", "101", "--json",
    ]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("100 available"), "{out:?}");

    let v = run_json(onoal(&p.a_dir).args([
        "transfer", "start", "--to", &p.b.id, "--asset", "eur", "--amount", "30", "--id", "t1",
    ]));
    assert_eq!(v["id"], "t1");
    assert_eq!(v["phase"], "confirmed");
    assert_eq!(v["outcome"], "committed");
    let steps: Vec<&str> =
        v["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["lock", "commit", "confirm"]);
    let peer = &v["peer"];
    assert_eq!(peer["phase"], "credited", "{v}");
    let peer_steps: Vec<&str> =
        peer["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(peer_steps, ["reserve", "credit"]);
    // Each step references the other ledger's previous one.
    let lock = &v["steps"][0];
    let reserve = &peer["steps"][0];
    assert_eq!(
        reserve["refs"][0],
        format!("{}:{}:{}", p.a.id, lock["seq"], lock["leaf_hash"].as_str().unwrap())
    );
    assert_eq!(
        v["steps"][1]["refs"][0],
        format!("{}:{}:{}", p.b.id, reserve["seq"], reserve["leaf_hash"].as_str().unwrap())
    );

    let (ba, bb) = (balance(&p.a_dir, "eur"), balance(&p.b_dir, "eur"));
    assert_eq!((ba["available"].as_u64(), ba["sent"].as_u64()), (Some(70), Some(30)), "{ba}");
    assert_eq!((bb["available"].as_u64(), bb["received"].as_u64()), (Some(30), Some(30)), "{bb}");
    // The destination sees the same transfer, with the source's side verified.
    let on_b = run_json(onoal(&p.b_dir).args(["transfer", "status", "t1"]));
    assert_eq!(
        (on_b["role"].as_str(), on_b["phase"].as_str()),
        (Some("destination"), Some("credited"))
    );
    assert_eq!(on_b["peer"]["phase"], "confirmed");

    // Back again, by OID this time, from the received tokens.
    let back = run_json(onoal(&p.b_dir).args([
        "transfer",
        "start",
        "--to",
        "oid:onoal:org:alice",
        "--asset",
        "eur",
        "--amount",
        "12",
    ]));
    assert_eq!(back["outcome"], "committed", "{back}");
    assert_eq!(balance(&p.a_dir, "eur")["available"], 82);
    assert_eq!(balance(&p.b_dir, "eur")["available"], 18);
    let listed = run_json(onoal(&p.a_dir).args(["transfer", "list"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    // A ledger B never pinned cannot make B write a reservation: refused, and unlocked at once.
    let c_dir = p.a_dir.with_file_name("c");
    init(&c_dir, "oid:onoal:org:carol");
    let _sc = Serve::start(&c_dir, 0, &[]);
    pin(&c_dir, &p.b, sb.1);
    run_json(onoal(&c_dir).args(["mint", "--asset", "eur", "--amount", "5"]));
    let err = aborted(&c_dir, &p.b.id, "5", &[]);
    assert!(
        err["error"]["message"].as_str().unwrap().contains("only from ledgers it pinned"),
        "{err}"
    );
    assert_eq!(balance(&c_dir, "eur")["available"], 5);
    assert_eq!(balance(&p.b_dir, "eur")["incoming"], 0);
    // The token stream is not writable through the generic append.
    let out = run(onoal(&p.a_dir).args([
        "append",
        "--stream",
        "tokens",
        "--type",
        "mint",
        "--payload",
        "{\"asset\":\"eur\",\"amount\":5}",
    ]));
    assert!(!out.status.success(), "a mint through append must be refused");
    assert_eq!(balance(&p.a_dir, "eur")["available"], 82);
}

#[test]
fn a_transfer_to_an_unreachable_ledger_is_unlocked_at_its_deadline() {
    let (p, _sa, sb) = pair();
    run_json(onoal(&p.a_dir).args(["mint", "--asset", "eur", "--amount", "10"]));
    // B is gone before A ever reached it: the lock is written, and unlocked at the deadline.
    sb.kill();
    let err = aborted(&p.a_dir, &p.b.id, "10", &["--id", "lost", "--timeout", "2"]);
    assert!(err["error"]["message"].as_str().unwrap().contains("deadline"), "{err}");
    let v = run_json(onoal(&p.a_dir).args(["transfer", "status", "lost", "--local"]));
    assert_eq!(v["phase"], "unlocked");
    assert_eq!(balance(&p.a_dir, "eur")["available"], 10);
    assert_eq!(balance(&p.a_dir, "eur")["locked"], 0);
}

/// Which node takes each step, and so is aborted right after it.
const STEPS: [(&str, bool); 5] =
    [("lock", true), ("reserve", false), ("commit", true), ("credit", false), ("confirm", true)];

#[test]
fn a_node_killed_after_any_step_restarts_and_both_ledgers_end_committed() {
    let (p, sa, sb) = pair();
    let (mut sa, mut sb) = (Some(sa), Some(sb));
    run_json(onoal(&p.a_dir).args(["mint", "--asset", "eur", "--amount", "1000"]));
    let mut sent = 0u64;
    for (i, (step, on_a)) in STEPS.into_iter().enumerate() {
        let crash = format!("after-{step}");
        let env = [("ONOAL_TEST_TRANSFER_CRASH", crash.as_str())];
        // Restart the node that takes the step with the crash armed.
        let (dir, slot) = if on_a { (&p.a_dir, &mut sa) } else { (&p.b_dir, &mut sb) };
        let old = slot.take().unwrap();
        let port = old.1;
        old.stop();
        *slot = Some(Serve::start_env(dir, port, &[], &[], &env));
        let id = format!("t-{step}");
        let amount = (i as u64 + 1) * 10;
        // The lock is taken inside this call, so with after-lock the call itself loses its node.
        let _ = run(onoal(&p.a_dir).args([
            "transfer",
            "start",
            "--to",
            &p.b.id,
            "--asset",
            "eur",
            "--amount",
            &amount.to_string(),
            "--id",
            &id,
            "--no-wait",
        ]));
        let mut crashed = slot.take().unwrap();
        assert!(
            crashed.exited_within(Duration::from_secs(30)),
            "the node did not abort after the {step}"
        );
        crashed.kill();
        *slot = Some(Serve::start(dir, port, &[]));
        let v = settled(&p.a_dir, &id);
        assert_eq!(
            (v["phase"].as_str(), v["peer"]["phase"].as_str()),
            (Some("confirmed"), Some("credited")),
            "after the {step}: {v}"
        );
        sent += amount;
    }
    // Nothing was spent twice or lost: what A sent, B received.
    let (ba, bb) = (balance(&p.a_dir, "eur"), balance(&p.b_dir, "eur"));
    assert_eq!((ba["sent"].as_u64(), ba["locked"].as_u64()), (Some(sent), Some(0)), "{ba}");
    assert_eq!((bb["received"].as_u64(), bb["incoming"].as_u64()), (Some(sent), Some(0)), "{bb}");
    assert_eq!(ba["available"].as_u64().unwrap() + bb["available"].as_u64().unwrap(), 1000);
}

/// `transfer start` of `amount` eur from `dir` to `to`, `--json`, with `extra` flags; the
/// failure it ends in (`{"error": …}`), which must be `transfer_aborted`.
fn aborted(dir: &Path, to: &str, amount: &str, extra: &[&str]) -> Value {
    let out = run(onoal(dir)
        .args(["transfer", "start", "--to", to, "--asset", "eur", "--amount", amount, "--json"])
        .args(extra));
    let err = stdout_json(&out);
    assert_eq!(err["error"]["kind"], "transfer_aborted", "{err}");
    err
}

/// Restarts a node on its port with `env`.
fn restart_with(dir: &Path, node: Serve, env: &[(&str, &str)]) -> Serve {
    let port = node.1;
    node.stop();
    Serve::start_env(dir, port, &[], &[], env)
}

const FORGE: [(&str, &str); 1] = [("ONOAL_TEST_TRANSFER_FORGE", "steps")];

#[test]
fn forged_steps_are_refused_in_both_directions() {
    let (p, sa, sb) = pair();
    run_json(onoal(&p.a_dir).args(["mint", "--asset", "eur", "--amount", "51"]));
    let first = run_json(
        onoal(&p.a_dir)
            .args(["transfer", "start", "--to", &p.b.id, "--asset", "eur", "--amount", "1"]),
    );
    assert_eq!(first["outcome"], "committed");
    // B sends reservations it did not write (their proofs do not hold), in its answers and
    // its own requests: A never commits, and unlocks at the deadline.
    let sb = restart_with(&p.b_dir, sb, &FORGE);
    let err = aborted(&p.a_dir, &p.b.id, "20", &["--id", "f1", "--timeout", "3"]);
    assert!(err["error"]["message"].as_str().unwrap().contains("does not verify"), "{err}");
    // B released its reservation when it learned of the unlock.
    let v = settled(&p.b_dir, "f1");
    assert_eq!(v["phase"], "released", "{v}");
    let _sb = restart_with(&p.b_dir, sb, &[]);

    // A sends a lock it did not write: B refuses it, and A unlocks at once.
    let _sa = restart_with(&p.a_dir, sa, &FORGE);
    let err = aborted(&p.a_dir, &p.b.id, "20", &["--id", "f2", "--timeout", "20"]);
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused") && message.contains("do not verify"), "{err}");
    let on_b = run(onoal(&p.b_dir).args(["transfer", "status", "f2", "--local", "--json"]));
    assert!(!on_b.status.success(), "B wrote nothing for a forged lock");
    assert_eq!(balance(&p.a_dir, "eur")["available"], 50);
    assert_eq!(balance(&p.b_dir, "eur")["available"], 1);
}
