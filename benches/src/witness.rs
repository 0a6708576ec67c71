//! `onoal bench witness`: how fast a witness cosigns, and how long a checkpoint takes to reach
//! its quorum.
//!
//! 1. The witness's decision ([`onoal_mesh::witness::decide`]: the log's signature, the
//!    consistency proof, the cosignature) over a log's successive checkpoints, on one core,
//!    next to its floor measured in the same run: one Ed25519 verification and one signature.
//! 2. The same through a node, each new state fsynced before the answer (what a witness must
//!    do), next to one fsynced write of the same size.
//! 3. A log with `witnesses` witnesses on loopback and a quorum of all of them: from
//!    `checkpoint_now` to the checkpoint being published (every witness cosigned it and the
//!    lines are stored), p50/p99.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onoal_engine::cosignature::{Cosigner, split_note};
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::time::now_ms;
use onoal_engine::{AuxTable, Durability, Ledger, Oid};
use onoal_mesh::witness::{AddCheckpoint, Verdict, decide};
use onoal_mesh::{Node, NodeConfig};
use serde_json::{Value, json};

use crate::{BenchResult, err, percentile};

fn cosigner(name: &str, seed: u8) -> BenchResult<Cosigner> {
    Cosigner::new(name, SecretKey::from_seed(&[seed; 32]).signing_key().clone()).map_err(err)
}

fn ledger(dir: &std::path::Path, oid: &str) -> BenchResult<Ledger> {
    Ledger::builder(dir)
        .durability(Durability::Buffered)
        .create(Oid::parse(oid).map_err(err)?)
        .map_err(err)
}

/// `onoal bench witness --checkpoints N --witnesses W`.
pub fn witness(checkpoints: usize, witnesses: usize) -> BenchResult<Value> {
    let n = checkpoints.clamp(10, 100_000);
    let witnesses = witnesses.clamp(1, 16);
    let tmp = tempfile::tempdir().map_err(err)?;
    // A log with n checkpoints, 16 entries apart, and the add-checkpoint requests of each.
    let log = ledger(&tmp.path().join("log"), "oid:onoal:bench:log")?;
    let pool = vec![b'w'; 64];
    let mut requests = Vec::with_capacity(n);
    let mut prev = 0;
    for i in 0..n as u64 {
        let batch = (0..16).map(|j| crate::bench_entry(i * 16 + j, &pool)).collect();
        log.append_batch(batch).map_err(err)?;
        let cp = log.checkpoint_now().map_err(err)?;
        let proof = if prev == 0 {
            Vec::new()
        } else {
            log.consistency_proof(prev, cp.size).map_err(err)?
        };
        requests.push(AddCheckpoint { old: prev, proof, old_root: None, note: cp.note.clone() });
        prev = cp.size;
    }
    let log_key = log.identity().verifier();

    // 1. The decision alone, one core, and its floor.
    let w = cosigner("oid:onoal:bench:w/witness", 7)?;
    let started = Instant::now();
    let mut held = None;
    for r in &requests {
        match decide(r, Some(&log_key), held.as_ref(), &w, now_ms()) {
            Verdict::Cosign { state, .. } => held = Some(state),
            other => return Err(format!("the witness refused an honest checkpoint: {other:?}")),
        }
    }
    let decide_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    for r in &requests {
        log_key.open(r.note.as_bytes()).map_err(err)?;
        let (body, _) = split_note(&r.note).map_err(err)?;
        std::hint::black_box(w.cosign(body, 1));
    }
    let floor_s = started.elapsed().as_secs_f64();

    // 2. Through a node: decided, persisted (fsynced), answered.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(err)?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let wdir = tmp.path().join("w");
    let wledger = Arc::new(ledger(&wdir, "oid:onoal:bench:w")?);
    let wkey = SecretKey::read_file(&key_path(&wdir)).map_err(err)?;
    let node = {
        let _in = rt.enter();
        Node::bind(wledger.clone(), wkey, loopback, NodeConfig::default()).map_err(err)?
    };
    node.enable_witness(cosigner("oid:onoal:bench:w/witness", 8)?, vec![log_key.clone()])?;
    let started = Instant::now();
    for r in &requests {
        let a = node.witness_add_checkpoint_blocking(r);
        if a.status != 200 {
            return Err(format!("the node's witness answered {}: {}", a.status, a.body));
        }
    }
    let node_s = started.elapsed().as_secs_f64();
    let state_bytes = 300usize;
    let started = Instant::now();
    for i in 0..n {
        let key = [b'z', (i % 251) as u8];
        wledger.aux_put(AuxTable::Witness, &key, &vec![0u8; state_bytes]).map_err(err)?;
    }
    let fsync_s = started.elapsed().as_secs_f64();
    drop(node);

    // 3. Checkpoint to quorum on loopback.
    let samples = 50.min(n);
    let latency = rt.block_on(quorum_latency(&tmp, log, witnesses, samples))?;
    let per_s = |secs: f64| n as f64 / secs;
    Ok(json!({
        "workload": "witness",
        "checkpoints": n,
        "cosign_per_s_one_core": per_s(decide_s),
        "baseline_signature_floor_per_s": per_s(floor_s),
        "ratio_to_floor": floor_s / decide_s,
        "cosign_durable_per_s": per_s(node_s),
        "baseline_fsynced_write_per_s": per_s(fsync_s),
        "ratio_durable_to_fsync": fsync_s / node_s,
        "witnesses": witnesses,
        "quorum": witnesses,
        "checkpoint_to_quorum_p50_ms": latency.0,
        "checkpoint_to_quorum_p99_ms": latency.1,
        "samples": samples,
    }))
}

/// p50 and p99 (ms) from `checkpoint_now` to the checkpoint being published with a quorum of
/// all `witnesses` on loopback.
async fn quorum_latency(
    tmp: &tempfile::TempDir,
    log: Ledger,
    witnesses: usize,
    samples: usize,
) -> BenchResult<(f64, f64)> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let log = Arc::new(log);
    let key = SecretKey::read_file(&key_path(log.path())).map_err(err)?;
    let log_node = Node::bind(log.clone(), key, loopback, NodeConfig::default()).map_err(err)?;
    let id = log.identity().clone();
    let mut nodes = Vec::new();
    let mut ids = Vec::new();
    for i in 0..witnesses {
        let dir = tmp.path().join(format!("q{i}"));
        let l = Arc::new(ledger(&dir, &format!("oid:onoal:bench:q{i}"))?);
        let k = SecretKey::read_file(&key_path(&dir)).map_err(err)?;
        let node = Node::bind(l.clone(), k, loopback, NodeConfig::default()).map_err(err)?;
        let name = format!("oid:onoal:bench:q{i}/witness");
        node.enable_witness(cosigner(&name, 20 + i as u8)?, vec![id.verifier()])?;
        node.peers().pin(id.ledger_id, *id.public_key.as_bytes(), None).map_err(err)?;
        let addr = node.local_addr().map_err(err)?.to_string();
        let wid = l.identity();
        log_node.peers().pin(wid.ledger_id, *wid.public_key.as_bytes(), Some(addr)).map_err(err)?;
        ids.push(wid.ledger_id);
        nodes.push((node.serve(), node));
    }
    let server = log_node.serve();
    log_node.start_witnessing(ids, witnesses)?;
    let mut published = log_node.published_watch().ok_or("no published watch")?;

    // The first round learns each witness's size (C2SP's 409); time the rounds after it.
    wait_published(&mut published, log.log().durable_size()).await?;
    let pool = vec![b'w'; 64];
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples as u64 {
        let l = log.clone();
        let batch = (0..16).map(|j| crate::bench_entry(i * 16 + j, &pool)).collect();
        tokio::task::spawn_blocking(move || l.append_batch(batch))
            .await
            .map_err(err)?
            .map_err(err)?;
        let l = log.clone();
        let started = Instant::now();
        let cp = tokio::task::spawn_blocking(move || l.checkpoint_now())
            .await
            .map_err(err)?
            .map_err(err)?;
        wait_published(&mut published, cp.size).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    log_node.close().await;
    server.abort();
    for (server, node) in nodes {
        node.close().await;
        server.abort();
    }
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
}

async fn wait_published(
    published: &mut tokio::sync::watch::Receiver<Option<u64>>,
    size: u64,
) -> BenchResult<()> {
    let fut = published.wait_for(move |p| p.is_some_and(|p| p >= size));
    match tokio::time::timeout(Duration::from_secs(30), fut).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(format!("size {size} was not published within 30 s")),
    }
}
