//! `onoal bench transfer`: completed two-phase transfers per second between two nodes on
//! loopback, and their latency.
//!
//! Two ledgers (durability as given; every step is an append acknowledged in that mode) on two
//! nodes that pinned each other. A transfer is done when the source confirmed it (the
//! destination credited before). Measured one at a time (latency p50/p99) and with
//! `concurrency` in flight (throughput). The same-run baseline is the floor of the critical
//! path: five appends in sequence (lock, reserve, commit, credit, confirm), each one entry
//! acknowledged in the same durability on the same disk.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Durability, Ledger, Oid};
use onoal_mesh::routing::Destination;
use onoal_mesh::{Node, NodeConfig};
use serde_json::{Value, json};

use crate::{BenchResult, err, percentile};

/// `onoal bench transfer --transfers N --concurrency C`.
pub fn transfer(
    transfers: usize,
    concurrency: usize,
    durability: Durability,
) -> BenchResult<Value> {
    let n = transfers.clamp(10, 100_000);
    let concurrency = concurrency.clamp(1, 256);
    let tmp = tempfile::tempdir().map_err(err)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(err)?;
    let floor = append_floor(&tmp.path().join("floor"), durability, 500)?;
    let (sequential, concurrent) = rt.block_on(run(&tmp, n, concurrency, durability))?;
    let (seq_rate, mut lat) = sequential;
    lat.sort_by(f64::total_cmp);
    let floor_transfers = floor / 5.0;
    Ok(json!({
        "workload": "transfer",
        "durability": format!("{durability:?}").to_lowercase(),
        "transfers": n,
        "one_at_a_time_per_sec": seq_rate,
        "latency_p50_ms": percentile(&lat, 0.5),
        "latency_p99_ms": percentile(&lat, 0.99),
        "concurrency": concurrency,
        "concurrent_per_sec": concurrent,
        "baseline": "five single-entry appends in sequence (the steps' critical path), same disk and durability",
        "baseline_appends_per_sec": floor,
        "baseline_transfers_per_sec": floor_transfers,
        "ratio_one_at_a_time": seq_rate / floor_transfers,
        "ratio_concurrent": concurrent / floor_transfers,
    }))
}

fn ledger(dir: &std::path::Path, oid: &str, durability: Durability) -> BenchResult<Ledger> {
    Ledger::builder(dir).durability(durability).create(Oid::parse(oid).map_err(err)?).map_err(err)
}

/// Single-entry appends per second, one after the other.
fn append_floor(dir: &std::path::Path, durability: Durability, n: u64) -> BenchResult<f64> {
    let l = ledger(dir, "oid:onoal:bench:floor", durability)?;
    let pool = vec![b'f'; 200];
    let started = Instant::now();
    for i in 0..n {
        l.append(crate::bench_entry(i, &pool)).map_err(err)?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

type Sequential = (f64, Vec<f64>);

async fn run(
    tmp: &tempfile::TempDir,
    n: usize,
    concurrency: usize,
    durability: Durability,
) -> BenchResult<(Sequential, f64)> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let dir = tmp.path().join(name);
        let l = Arc::new(ledger(&dir, &format!("oid:onoal:bench:{name}"), durability)?);
        let k = SecretKey::read_file(&key_path(&dir)).map_err(err)?;
        let node = Node::bind(l, k, loopback, NodeConfig::default()).map_err(err)?;
        nodes.push(node);
    }
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    for (x, y) in [(&a, &b), (&b, &a)] {
        let id = y.ledger().identity();
        let addr = y.local_addr().map_err(err)?.to_string();
        x.peers().pin(id.ledger_id, *id.public_key.as_bytes(), Some(addr)).map_err(err)?;
    }
    let servers = [a.serve(), b.serve()];
    a.start_transfers().await?;
    b.start_transfers().await?;
    let total = 2 * n as u64 + 1;
    a.mint("bench", total).await.map_err(err)?;
    let to = Destination::Ledger(b.ledger().identity().ledger_id);

    // Warm up (the first exchange connects and learns the destination's OID).
    one(&a, &to, "warm-up".into()).await?;
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        one(&a, &to, format!("s{i}")).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let seq_rate = n as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut next = 0usize;
    let mut running = tokio::task::JoinSet::new();
    while next < n || !running.is_empty() {
        while next < n && running.len() < concurrency {
            let (a, to) = (a.clone(), to.clone());
            let id = format!("c{next}");
            running.spawn(async move { one(&a, &to, id).await });
            next += 1;
        }
        if let Some(r) = running.join_next().await {
            r.map_err(err)??;
        }
    }
    let concurrent = n as f64 / started.elapsed().as_secs_f64();
    a.close().await;
    b.close().await;
    for s in servers {
        s.abort();
    }
    Ok(((seq_rate, lat), concurrent))
}

/// One transfer of 1 token, until the source confirmed it.
async fn one(a: &Node, to: &Destination, id: String) -> BenchResult<()> {
    a.transfer_start(to, "bench", 1, Some(id.clone()), Duration::from_secs(30))
        .await
        .map_err(err)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = a.transfer_status(&id, false).await.map_err(err)?;
        if v.done {
            return if v.outcome == "committed" {
                Ok(())
            } else {
                Err(format!("transfer {id} ended {}: {:?}", v.outcome, v.steps.last()))
            };
        }
        if Instant::now() > deadline {
            return Err(format!("transfer {id} not done within 30 s: {:?}", v.last_error));
        }
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
}
