//! `onoal bench route`: the seed's cross-ledger query routed by OID over 1, 3 and 5 hops on
//! loopback (a line of nodes that keep to their links, each one level of sub-organisation below
//! the last), sealed end to end and verified at the origin, next to a direct query of the same
//! filter on the destination's own log (no network) in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Durability, Filter, Ledger, Oid, Query};
use onoal_mesh::net::DiscoveryConfig;
use onoal_mesh::routing::Destination;
use onoal_mesh::trust::visibility::Visibility;
use onoal_mesh::{Node, NodeConfig};
use serde_json::{Value, json};

use crate::{BenchResult, err, percentile};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `onoal bench route --hops H --queries Q`: a line of `max(H) + 1` nodes; the origin asks the
/// node `h` hops away for one page (100 entries of one public stream) `queries` times per hop
/// count, one query at a time.
pub fn route(hops: &[usize], queries: usize) -> BenchResult<Value> {
    let longest = hops.iter().copied().max().unwrap_or(1).clamp(1, 12);
    let queries = queries.max(10);
    let tmp = tempfile::tempdir().map_err(err)?;
    let mut ledgers = Vec::new();
    let mut oid = String::from("oid:onoal:bench:line");
    for i in 0..=longest {
        if i > 0 {
            oid.push_str(&format!(":n{i}"));
        }
        let dir = tmp.path().join(format!("n{i}"));
        let ledger = Ledger::builder(&dir)
            .durability(Durability::Buffered)
            .create(Oid::parse(&oid).map_err(err)?)
            .map_err(err)?;
        let pool = vec![b'q'; 256];
        let entries: Vec<_> = (0..1_000).map(|j| crate::bench_entry(j, &pool)).collect();
        ledger.append_batch(entries).map_err(err)?;
        ledger.checkpoint_now().map_err(err)?;
        let key = SecretKey::read_file(&key_path(&dir)).map_err(err)?;
        ledgers.push((Arc::new(ledger), key));
    }
    let filter = Filter { stream: Some("orders".into()), ..Filter::default() };
    // The baseline: the same page read from the destination's own log.
    let local = {
        let log = ledgers[longest].0.log();
        let mut times = Vec::new();
        for _ in 0..queries {
            let started = Instant::now();
            let page = log.query(&Query::from_seq(filter.clone(), 0, 100)).map_err(err)?;
            if page.entries.len() != 100 {
                return Err(format!("the local query found {} entries", page.entries.len()));
            }
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        times
    };
    // The first entry's leaf hash per ledger: what the proof verifications name.
    let first_leaf: Vec<_> = ledgers
        .iter()
        .map(|(l, _)| l.log().entry(0).map(|e| e.leaf_hash).map_err(err))
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(err)?;
    let per_hop = rt.block_on(async {
        let mut nodes = Vec::new();
        for (ledger, key) in ledgers {
            nodes.push(Node::bind(ledger, key, loopback(), NodeConfig::default()).map_err(err)?);
        }
        let info: Vec<_> = nodes
            .iter()
            .map(|n| {
                let id = n.ledger().identity();
                (id.ledger_id, *id.public_key.as_bytes(), n.local_addr().map(|a| a.to_string()))
            })
            .collect();
        let mut servers = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            node.trust()
                .set_visibility(Some("orders"), Visibility::Public, onoal_engine::time::now_ms())
                .map_err(err)?;
            let mut bootstrap = Vec::new();
            for j in [i.checked_sub(1), Some(i + 1)].into_iter().flatten().filter(|j| *j <= longest)
            {
                let (id, key, addr) = &info[j];
                let addr = addr.as_ref().map_err(err)?.clone();
                node.peers().pin(*id, *key, Some(addr.clone())).map_err(err)?;
                let peer = onoal_mesh::id::PeerId::from_bytes(key).ok_or("bad key")?;
                bootstrap.push((*id, peer, addr.parse().map_err(err)?));
            }
            servers.push(node.serve_with(DiscoveryConfig {
                bootstrap,
                links_only: true,
                gossip_interval: Duration::from_millis(200),
                ..DiscoveryConfig::default()
            }));
        }
        let origin = &nodes[0];
        let mut out = Vec::new();
        for &h in hops {
            let h = h.clamp(1, longest);
            let to = Destination::Ledger(info[h].0);
            // Records spread one link per gossip round: wait for the first answer.
            let ready = Instant::now();
            loop {
                match origin.remote_query(&to, filter.clone(), 0, 100).await {
                    Ok(a) if a.path.len() == h + 1 => break,
                    Ok(a) => return Err(format!("{h} hops: the path was {:?}", a.path)),
                    Err(e) if ready.elapsed() > Duration::from_secs(60) => {
                        return Err(format!("{h} hops: no answer within 60 s: {e}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            let mut times = Vec::new();
            let started = Instant::now();
            for _ in 0..queries {
                let t = Instant::now();
                let a = origin.remote_query(&to, filter.clone(), 0, 100).await.map_err(err)?;
                if a.page.entries.len() != 100 {
                    return Err(format!("{h} hops: {} entries", a.page.entries.len()));
                }
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let secs = started.elapsed().as_secs_f64();
            times.sort_by(f64::total_cmp);
            // The routed proof verification of one entry, named by its leaf hash: a signed
            // statement with its inclusion proof, verified here.
            let expect = onoal_mesh::proto::routed::Expectation {
                leaf_hash: Some(first_leaf[h]),
                ..Default::default()
            };
            let mut verify = Vec::new();
            for _ in 0..queries {
                let t = Instant::now();
                let v = origin.remote_verify(&to, 0, expect.clone()).await.map_err(err)?;
                if v.verified.statement.verdict != onoal_mesh::proto::routed::Verdict::Match {
                    return Err(format!(
                        "{h} hops: the verification said {:?}",
                        v.verified.statement.verdict
                    ));
                }
                verify.push(t.elapsed().as_secs_f64() * 1e3);
            }
            verify.sort_by(f64::total_cmp);
            out.push((h, times, secs, verify));
        }
        for n in &nodes {
            n.close().await;
        }
        drop(servers);
        Ok::<_, String>(out)
    })?;
    let local_p50 = percentile(&local, 0.5);
    let rows: Vec<Value> = per_hop
        .iter()
        .map(|(h, times, secs, verify)| {
            let p50 = percentile(times, 0.5);
            json!({
                "hops": h,
                "queries": times.len(),
                "latency_ms_p50": p50,
                "latency_ms_p99": percentile(times, 0.99),
                "queries_per_s": times.len() as f64 / secs,
                "p50_vs_local_query": p50 / local_p50.max(1e-9),
                "proof_verify_ms_p50": percentile(verify, 0.5),
                "proof_verify_ms_p99": percentile(verify, 0.99),
            })
        })
        .collect();
    Ok(json!({
        "workload": "route",
        "page_entries": 100,
        "entry_bytes": 256,
        "local_query_ms_p50": local_p50,
        "local_query_ms_p99": percentile(&local, 0.99),
        "routed": rows,
        "note": "one query at a time; every answer opened and verified (checkpoint signature, 100 inclusion proofs) at the origin; proof_verify: one entry named by its leaf hash, the signed statement and its proof verified at the origin",
    }))
}
