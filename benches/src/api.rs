//! `onoal bench http` and `onoal bench grpc`: batched appends through the node's HTTP API (a
//! real axum server on loopback, JSON bodies, receipts after durability) or its gRPC service
//! (one client stream of groups, pipelined), next to direct engine appends of the same entries
//! in the same run. Both sides keep `CLIENTS` groups in flight (HTTP: that many client
//! threads; gRPC: the server pipelines up to 8; the engine: that many pending groups), and run
//! twice, alternately; the better run of each counts. Request bodies are encoded before the
//! clock starts: the figure is the node's cost (decode, validate, append, answer), not the
//! client's encoder.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Durability, Ledger, NewEntry, Oid};
use onoal_mesh::control::Control;
use onoal_mesh::grpc::pb::ledger_client::LedgerClient;
use onoal_mesh::grpc::{GrpcConfig, GrpcServer, pb};
use onoal_mesh::http::{HttpConfig, HttpServer};
use onoal_mesh::{Node, NodeConfig};
use serde_json::{Value, json};

use crate::{BenchResult, bench_entry, err, payloads};

const CLIENTS: usize = 4;

/// The part of an append's answer the client needs: how many receipts (the client's decoding
/// stays out of the figure as far as it can).
#[derive(serde::Deserialize)]
struct Acked {
    receipts: Vec<serde::de::IgnoredAny>,
}

fn direct(ledger: &Ledger, pool: &[Vec<u8>], entries: u64, batch: usize) -> BenchResult<f64> {
    let started = Instant::now();
    let mut in_flight = VecDeque::new();
    let mut seq = 0;
    while seq < entries {
        let n = (batch as u64).min(entries - seq);
        let group: Vec<NewEntry> =
            (seq..seq + n).map(|i| bench_entry(i, &pool[(i % 1024) as usize])).collect();
        in_flight.push_back(ledger.submit_batch(group).map_err(err)?);
        while in_flight.len() > CLIENTS {
            if let Some(p) = in_flight.pop_front() {
                p.wait().map_err(err)?;
            }
        }
        seq += n;
    }
    for p in in_flight {
        p.wait().map_err(err)?;
    }
    Ok(entries as f64 / started.elapsed().as_secs_f64())
}

fn bodies(pool: &[Vec<u8>], entries: u64, batch: usize) -> Vec<Vec<u8>> {
    let streams = ["orders", "payments", "audit", "events"];
    let mut out = Vec::new();
    let mut seq = 0;
    while seq < entries {
        let n = (batch as u64).min(entries - seq);
        let list: Vec<Value> = (seq..seq + n)
            .map(|i| {
                json!({
                    "stream": streams[(i % 4) as usize],
                    "type": "bench.event",
                    "payload_b64": B64.encode(&pool[(i % 1024) as usize]),
                })
            })
            .collect();
        out.push(json!({ "entries": list }).to_string().into_bytes());
        seq += n;
    }
    out
}

fn through_http(addr: SocketAddr, bodies: &[Vec<u8>], entries: u64) -> BenchResult<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(120)))
        .build()
        .into();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let acked: Vec<BenchResult<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                s.spawn(|| {
                    let mut acked = 0u64;
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { return Ok(acked) };
                        let mut r = agent
                            .post(format!("http://{addr}/ledger/entries"))
                            .header("Content-Type", "application/json")
                            .send(&body[..])
                            .map_err(err)?;
                        let a: Acked = r.body_mut().read_json().map_err(err)?;
                        acked += a.receipts.len() as u64;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let total: u64 = acked.into_iter().collect::<BenchResult<Vec<_>>>()?.into_iter().sum();
    if total != entries {
        return Err(format!("the API acknowledged {total} of {entries} entries"));
    }
    Ok(entries as f64 / secs)
}

/// Which API a run goes through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Http,
    Grpc,
}

fn grpc_requests(pool: &[Vec<u8>], entries: u64, batch: usize) -> Vec<pb::AppendRequest> {
    let streams = ["orders", "payments", "audit", "events"];
    let mut out = Vec::new();
    let mut seq = 0;
    while seq < entries {
        let n = (batch as u64).min(entries - seq);
        out.push(pb::AppendRequest {
            entries: (seq..seq + n)
                .map(|i| pb::NewEntry {
                    stream: streams[(i % 4) as usize].into(),
                    r#type: "bench.event".into(),
                    subject: None,
                    issuer: None,
                    payload: pool[(i % 1024) as usize].clone(),
                    ..pb::NewEntry::default()
                })
                .collect(),
        });
        seq += n;
    }
    out
}

async fn through_grpc(
    addr: SocketAddr,
    requests: Vec<pb::AppendRequest>,
    entries: u64,
) -> BenchResult<f64> {
    let mut client = LedgerClient::connect(format!("http://{addr}"))
        .await
        .map_err(err)?
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let started = Instant::now();
    let mut replies = client.append(tokio_stream::iter(requests)).await.map_err(err)?.into_inner();
    let mut acked = 0u64;
    while let Some(r) = replies.message().await.map_err(err)? {
        acked += r.receipts.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    if acked != entries {
        return Err(format!("the gRPC service acknowledged {acked} of {entries} entries"));
    }
    Ok(entries as f64 / secs)
}

fn run(
    api: Api,
    entries: u64,
    payload: usize,
    batch: usize,
    durability: Durability,
) -> BenchResult<Value> {
    let tmp = tempfile::tempdir().map_err(err)?;
    let pool = payloads(1024, payload, 13);
    let bodies = if api == Api::Http { bodies(&pool, entries, batch) } else { Vec::new() };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err)?;
    let (mut best_direct, mut best_api) = (0f64, 0f64);
    let mut runs = Vec::new();
    for round in 0..2 {
        let dir = tmp.path().join(format!("direct{round}"));
        let ledger = Ledger::builder(&dir)
            .durability(durability)
            .create(Oid::parse("oid:onoal:bench:direct").map_err(err)?)
            .map_err(err)?;
        let d = direct(&ledger, &pool, entries, batch)?;
        drop(ledger);
        let dir = tmp.path().join(format!("api{round}"));
        let ledger = Ledger::builder(&dir)
            .durability(durability)
            .create(Oid::parse("oid:onoal:bench:api").map_err(err)?)
            .map_err(err)?;
        let key = SecretKey::read_file(&key_path(&dir)).map_err(err)?;
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let figure = rt.block_on(async {
            let node =
                Node::bind(Arc::new(ledger), key, loopback, NodeConfig::default()).map_err(err)?;
            let control = Control::new(node.clone());
            let figure = match api {
                Api::Http => {
                    let server = HttpServer::start(control, HttpConfig::new(loopback)).await?;
                    let addr = server.local_addr();
                    let bodies = &bodies;
                    let f = tokio::task::block_in_place(|| through_http(addr, bodies, entries));
                    server.stop();
                    f
                }
                Api::Grpc => {
                    let server =
                        GrpcServer::start(control, GrpcConfig { addr: loopback, token: None })
                            .await?;
                    // Requests are built before the clock starts.
                    let requests = grpc_requests(&pool, entries, batch);
                    let f = through_grpc(server.local_addr(), requests, entries).await;
                    server.stop();
                    f
                }
            };
            node.close().await;
            figure
        })?;
        runs.push(json!({"round": round, "direct_entries_per_s": d, "api_entries_per_s": figure}));
        best_direct = best_direct.max(d);
        best_api = best_api.max(figure);
    }
    Ok(json!({
        "workload": if api == Api::Http { "http append" } else { "grpc append" },
        "entries": entries,
        "payload_bytes": payload,
        "batch": batch,
        "durability": format!("{durability:?}").to_lowercase(),
        "entries_per_s": best_api,
        "baseline": "direct engine appends of the same entries, same batch, groups in flight",
        "baseline_entries_per_s": best_direct,
        "ratio": best_api / best_direct,
        "runs": runs,
    }))
}

/// `onoal bench http --entries N`.
pub fn http(
    entries: u64,
    payload: usize,
    batch: usize,
    durability: Durability,
) -> BenchResult<Value> {
    run(Api::Http, entries, payload, batch, durability)
}

/// `onoal bench grpc --entries N`.
pub fn grpc(
    entries: u64,
    payload: usize,
    batch: usize,
    durability: Durability,
) -> BenchResult<Value> {
    run(Api::Grpc, entries, payload, batch, durability)
}
