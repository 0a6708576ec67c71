//! `onoal bench asset`: how fast a registered asset's owner is found and proven (use case 3).
//!
//! Three ledgers on three nodes that pinned each other. `a` registers an asset and it moves
//! `hops` times between `a` and `b` by two-phase transfers; `c`, which holds no history of it,
//! then traces it `traces` times (`Node::asset_trace`: the claims are asked of its pinned
//! ledgers, each history is proven against a signed checkpoint, and the tracer walks them).
//! The same-run baseline is one proven routed round trip from `c` (a reference check of one
//! entry of `a`): a trace asks each ledger on the path once, in parallel when they are pinned,
//! so its floor is about one round trip plus the checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Durability, Ledger, Oid};
use onoal_mesh::routing::Destination;
use onoal_mesh::{Node, NodeConfig};
use serde_json::{Value, json};

use crate::{BenchResult, err, percentile};

/// `onoal bench asset --hops H --traces N`.
pub fn asset(hops: usize, traces: usize, durability: Durability) -> BenchResult<Value> {
    let hops = hops.clamp(0, 32);
    let traces = traces.clamp(5, 10_000);
    let tmp = tempfile::tempdir().map_err(err)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(err)?;
    let (mut trace_ms, mut trip_ms, register_per_sec) =
        rt.block_on(run(&tmp, hops, traces, durability))?;
    trace_ms.sort_by(f64::total_cmp);
    trip_ms.sort_by(f64::total_cmp);
    let (t50, r50) = (percentile(&trace_ms, 0.5), percentile(&trip_ms, 0.5));
    Ok(json!({
        "workload": "asset",
        "durability": format!("{durability:?}").to_lowercase(),
        "hops": hops,
        "traces": traces,
        "trace_p50_ms": t50,
        "trace_p99_ms": percentile(&trace_ms, 0.99),
        "traces_per_sec_one_at_a_time": 1e3 * traces as f64 / trace_ms.iter().sum::<f64>(),
        "registrations_per_sec": register_per_sec,
        "baseline": "one proven routed round trip (a reference check of one entry), same nodes",
        "baseline_round_trip_p50_ms": r50,
        "ratio_trace_to_round_trip": t50 / r50,
    }))
}

fn ledger(dir: &std::path::Path, oid: &str, durability: Durability) -> BenchResult<Ledger> {
    Ledger::builder(dir).durability(durability).create(Oid::parse(oid).map_err(err)?).map_err(err)
}

async fn run(
    tmp: &tempfile::TempDir,
    hops: usize,
    traces: usize,
    durability: Durability,
) -> BenchResult<(Vec<f64>, Vec<f64>, f64)> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let dir = tmp.path().join(name);
        let l = Arc::new(ledger(&dir, &format!("oid:onoal:bench:{name}"), durability)?);
        let k = SecretKey::read_file(&key_path(&dir)).map_err(err)?;
        nodes.push(Node::bind(l, k, loopback, NodeConfig::default()).map_err(err)?);
    }
    for x in &nodes {
        for y in nodes.iter().filter(|y| y.ledger().identity() != x.ledger().identity()) {
            let id = y.ledger().identity();
            let addr = y.local_addr().map_err(err)?.to_string();
            x.peers().pin(id.ledger_id, *id.public_key.as_bytes(), Some(addr)).map_err(err)?;
        }
    }
    let servers: Vec<_> = nodes.iter().map(Node::serve).collect();
    for n in &nodes {
        n.start_transfers().await?;
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    // Registrations, one at a time (each one append, acknowledged in the durability given).
    let started = Instant::now();
    let registrations = 200;
    for i in 0..registrations {
        a.asset_register(&format!("r{i}"), None, None).await.map_err(err)?;
    }
    let register_per_sec = f64::from(registrations) / started.elapsed().as_secs_f64();

    a.asset_register("bench-asset", None, None).await.map_err(err)?;
    for h in 0..hops {
        let (from, to) = if h.is_multiple_of(2) { (a, b) } else { (b, a) };
        let dest = Destination::Ledger(to.ledger().identity().ledger_id);
        let id = format!("h{h}");
        from.transfer_start(&dest, "bench-asset", 1, Some(id.clone()), Duration::from_secs(30))
            .await
            .map_err(err)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !from.transfer_status(&id, false).await.map_err(err)?.done {
            if Instant::now() > deadline {
                return Err(format!("hand-over {h} not done within 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let owner = if hops.is_multiple_of(2) { a } else { b };
    let want = owner.ledger().identity().ledger_id.to_string();
    let to_a = Destination::Ledger(a.ledger().identity().ledger_id);
    // Warm up: connections, OIDs learnt; the baseline's entry is in a signed checkpoint.
    a.ledger().checkpoint_now().map_err(err)?;
    c.remote_entry(&to_a, 0).await.map_err(err)?;
    let mut trace_ms = Vec::with_capacity(traces);
    for _ in 0..traces {
        let t = Instant::now();
        let v = c.asset_trace("bench-asset", Duration::from_millis(200)).await.map_err(err)?;
        trace_ms.push(t.elapsed().as_secs_f64() * 1e3);
        if v.owner.as_deref() != Some(want.as_str()) || v.hops.len() != hops {
            return Err(format!("the trace did not prove the owner: {v:?}"));
        }
    }
    let mut trip_ms = Vec::with_capacity(traces);
    for _ in 0..traces {
        let t = Instant::now();
        c.remote_entry(&to_a, 0).await.map_err(err)?;
        trip_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for n in &nodes {
        n.close().await;
    }
    for s in servers {
        s.abort();
    }
    Ok((trace_ms, trip_ms, register_per_sec))
}
