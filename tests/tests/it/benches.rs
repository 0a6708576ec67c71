//! `onoal bench` workloads added for the performance issues, run small: each reports its
//! figure with its same-run baseline, and the chart is drawn from real results.

use onoal_tests::{onoal, run, run_fail, run_json};

#[test]
fn the_relay_chain_benchmark_syncs_through_a_relay_and_verifies_against_the_origin_key() {
    let tmp = tempfile::tempdir().unwrap();
    let v = run_json(onoal(&tmp.path().join("unused")).args([
        "bench",
        "sync",
        "--relay",
        "--entries",
        "3000",
    ]));
    assert_eq!(
        (
            v["workload"].as_str(),
            v["entries"].as_u64(),
            v["hops"].as_u64(),
            v["verified"].as_bool()
        ),
        (Some("sync relay chain"), Some(3000), Some(2), Some(true)),
        "{v}"
    );
    for field in ["entries_per_s", "baseline_entries_per_s", "end_to_end_entries_per_s", "ratio"] {
        assert!(v[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {v}");
    }
    // Both hops together take longer than the relayed hop alone.
    assert!(v["end_to_end_entries_per_s"].as_f64() < v["entries_per_s"].as_f64(), "{v}");
}

#[test]
fn the_audit_benchmark_is_measured_against_a_raw_scan_of_the_same_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let v = run_json(onoal(&tmp.path().join("unused")).args([
        "bench",
        "verify",
        "--entries",
        "5000",
        "--dir",
        dir.to_str().unwrap(),
    ]));
    assert_eq!(v["entries"].as_u64(), Some(5000), "{v}");
    assert!(v["baseline"].as_str().is_some_and(|b| b.contains("raw RocksDB scan")), "{v}");
    for field in ["entries_per_s", "baseline_entries_per_s", "sha256_leaf_bytes_entries_per_s"] {
        assert!(v[field].as_f64().is_some_and(|x| x > 0.0), "{field}: {v}");
    }
    // The ledger the benchmark built is a sound ledger of that size.
    let audit = run_json(onoal(&dir).arg("verify"));
    assert_eq!(audit["entries"].as_u64(), Some(5000), "{audit}");
}

#[test]
fn the_append_chart_is_drawn_from_real_results_of_both_sweeps() {
    let tmp = tempfile::tempdir().unwrap();
    let unused = tmp.path().join("unused");
    let mut lines = String::new();
    for args in [
        ["--batch", "10", "--writers", "1"],
        ["--batch", "100", "--writers", "1"],
        ["--batch", "1", "--writers", "2"],
        ["--batch", "1", "--writers", "4"],
    ] {
        let v = run_json(onoal(&unused).args(["bench", "append", "--entries", "2000"]).args(args));
        assert!(v["baseline_entries_per_s"].as_f64().is_some_and(|x| x > 0.0), "{v}");
        if args[3] != "1" {
            assert!(v["baseline"].as_str().unwrap().contains("single puts from as many threads"));
        }
        lines.push_str(&format!("{v}\n"));
    }
    let results = tmp.path().join("results.jsonl");
    std::fs::write(&results, &lines).unwrap();
    let out = run(onoal(&unused).args(["bench", "plot", "--title", "test machine"]).arg(&results));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = String::from_utf8(out.stdout).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("test machine"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
    assert_eq!(svg.matches("<circle").count(), 8, "{svg}");
    assert!(svg.contains("writers 4:") && svg.contains("batch 100:"), "{svg}");
    // Results without appends: a clear error, not an empty chart.
    std::fs::write(&results, "{\"workload\":\"verify\"}\n").unwrap();
    let err = run_fail(onoal(&unused).args(["bench", "plot"]).arg(&results));
    assert!(err.contains("no append results"), "{err}");
}

#[test]
fn the_reopen_benchmark_reports_bytes_on_disk_per_entry_by_column_family() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let v = run_json(onoal(&tmp.path().join("unused")).args([
        "bench",
        "open",
        "--entries",
        "3000",
        "--dir",
        dir.to_str().unwrap(),
    ]));
    let by_family = &v["disk"]["sst_bytes_per_entry_by_family"];
    // Each entry holds its 256-byte payload in its leaf, and 32 + 32 bytes of tile (the leaf
    // hash and the interior rows); the total counts every file of the directory.
    let entries = by_family["entries"].as_f64().unwrap_or(0.0);
    let tiles = by_family["tiles"].as_f64().unwrap_or(0.0);
    assert!(entries > 256.0 && entries < 400.0, "{v}");
    assert!((60.0..70.0).contains(&tiles), "{v}");
    assert!(v["disk_bytes_per_entry"].as_f64().unwrap_or(0.0) >= entries + tiles, "{v}");
    // The compacted directory is still a sound ledger of that size.
    let audit = run_json(onoal(&dir).arg("verify"));
    assert_eq!(audit["entries"].as_u64(), Some(3000), "{audit}");
}
