//! `onoal sim`: the DHT, peer-record and membership cores of 1,000 simulated nodes under churn
//! and loss meet the discovery targets and detect crashes; the same seed gives the same report; a healed partition is
//! crossed again; bad arguments get clear errors.

use onoal_tests::{onoal, run_fail, run_json};
use serde_json::Value;

fn sim(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    run_json(onoal(dir.path()).arg("sim").args(args))
}

/// The report without what measures the machine.
fn replayable(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    o.remove("wall_s");
    o.remove("peak_rss_mb");
    v
}

#[test]
fn a_thousand_nodes_under_churn_and_loss_find_ledgers() {
    let r = sim(&["--nodes", "1000", "--churn", "0.1", "--loss", "0.01", "--seed", "3"]);
    assert_eq!(r["nodes"], 1000);
    assert_eq!(r["lookups"], 100);
    assert!(r["lookup_success_rate"].as_f64().unwrap() >= 0.99, "{r}");
    // ceil(log2 1000) = 10.
    assert!(r["lookup_rounds_p99"].as_u64().unwrap() <= 10, "{r}");
    assert!(r["lookup_messages_mean"].as_f64().unwrap() > 1.0, "{r}");
    let joined = r["join_converged_s"].as_f64().expect("every sampled joiner was found");
    assert!(joined > 0.0 && joined <= 60.0, "{r}");
    assert!(r["lost"].as_u64().unwrap() > 0, "1 % loss lost nothing: {r}");
    let histogram: u64 =
        r["lookup_rounds_histogram"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum();
    let found = (r["lookup_success_rate"].as_f64().unwrap() * 100.0).round() as u64;
    assert_eq!(histogram, found, "the histogram counts every successful lookup");
    // Membership (8 members each, heartbeats every 2 s, 3 misses, 1-2 s deadline): every crash
    // is noticed by every node that had the crashed ledger as a connected member, within
    // 3 x 2 s plus a deadline and a heartbeat's wait.
    assert!(r["heartbeats"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["failures_undetected"], 0, "{r}");
    let p50 = r["failure_detected_s_p50"].as_f64().expect("crashes were detected");
    let p99 = r["failure_detected_s_p99"].as_f64().unwrap();
    assert!(4.0 <= p50 && p50 <= p99 && p99 <= 10.0, "{r}");
}

#[test]
fn without_membership_no_failure_is_detected_and_nothing_is_heartbeated() {
    let r = sim(&["--nodes", "200", "--churn", "0.1", "--members", "0", "--measure-s", "30"]);
    assert_eq!(r["heartbeats"], 0, "{r}");
    assert!(r["failure_detected_s_p99"].is_null(), "{r}");
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let args =
        ["--nodes", "300", "--churn", "0.1", "--loss", "0.02", "--seed", "7", "--measure-s", "30"];
    let a = replayable(sim(&args));
    let b = replayable(sim(&args));
    assert_eq!(a, b);
    let mut other = args;
    other[7] = "8";
    let c = replayable(sim(&other));
    assert_ne!(a["messages"], c["messages"], "another seed, another run");
}

#[test]
fn lookups_cross_a_healed_partition_again() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("sim.svg");
    let r = run_json(
        onoal(dir.path()).args(["sim", "--nodes", "300", "--partition", "--svg"]).arg(&svg),
    );
    assert!(r["cut"].as_u64().unwrap() > 0, "the split cut nothing: {r}");
    let healed = r["partition_recovered_s"]
        .as_f64()
        .expect("the nodes that joined during the split were found from the other side");
    assert!(healed <= 60.0, "{r}");
    let drawing = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawing.starts_with("<svg") && drawing.contains("<rect") && drawing.contains("<polyline")
    );
}

#[test]
fn bad_arguments_are_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["--nodes", "1"], "2 to 100000"),
        (vec!["--churn", "2"], "0 to 0.9"),
        (vec!["--loss", "0.9"], "0 to 0.5"),
        (vec!["--latency-ms", "50..10"], "A <= B"),
        (vec!["--latency-ms", "fast"], "A..B"),
        (vec!["--partition", "--measure-s", "30"], "at least 60"),
        (vec!["--members", "65"], "0 to 64"),
        (vec!["--swim", "--nodes", "3000"], "2 to 2000 SWIM nodes"),
        (vec!["--swim", "--partition"], "cannot be used with"),
    ] {
        let err = run_fail(onoal(dir.path()).arg("sim").args(&args));
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn swim_membership_converges_and_detects_crashes_under_churn_and_loss() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["sim", "--swim", "--nodes", "300", "--churn", "0.1", "--loss", "0.01"];
    let r = run_json(onoal(dir.path()).args(args));
    assert_eq!(r["scenario"], "swim", "{r}");
    assert_eq!(r["nodes"], 300, "{r}");
    // Every joiner is held by every live node; every crash is seen by every node that held
    // the crashed one, well within the run.
    assert_eq!(r["joins_unconverged"], 0, "{r}");
    assert_eq!(r["failures_undetected"], 0, "{r}");
    let p99 = r["failure_detected_s_p99"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 30.0, "{r}");
    assert!(r["join_converged_s_p99"].as_f64().unwrap() < 30.0, "{r}");
    assert!(r["members_complete_share"].as_f64().unwrap() >= 0.9, "{r}");
    // Same seed, same report.
    let again = run_json(onoal(dir.path()).args(args));
    for field in ["messages", "false_downs", "join_converged_s_p99", "failure_detected_s_p50"] {
        assert_eq!(r[field], again[field], "{field}");
    }
}

#[test]
fn routed_queries_by_oid_over_a_hierarchy_arrive_and_floods_stay_bounded() {
    let r =
        sim(&["--routing", "--nodes", "3000", "--queries", "300", "--partition", "--seed", "5"]);
    assert_eq!(r["nodes"], 3000, "{r}");
    assert_eq!(r["route_success_rate"], 1.0, "{r}");
    // Department -> organisation -> hub -> hub -> organisation -> department.
    let p99 = r["route_hops_p99"].as_u64().unwrap();
    assert!((1..=6).contains(&p99), "{r}");
    assert!(r["flood_duplicates_per_node_max"].as_u64().is_some(), "{r}");
    assert!(r["flood_reach"].as_f64().unwrap() > 0.9, "{r}");
    assert!(r["partitioned_success_rate_across"].as_f64().unwrap() < 0.5, "{r}");
    assert_eq!(r["healed_success_rate"], 1.0, "{r}");
    let again =
        sim(&["--routing", "--nodes", "3000", "--queries", "300", "--partition", "--seed", "5"]);
    assert_eq!(replayable(r), replayable(again), "same seed, same report");
    let err = run_fail(onoal(tempfile::tempdir().unwrap().path()).args([
        "sim",
        "--routing",
        "--queries",
        "0",
    ]));
    assert!(err.contains("--queries 0 is out of range"), "{err}");
}
