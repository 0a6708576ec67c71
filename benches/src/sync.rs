//! `onoal bench sync`: two nodes on loopback, a full verified and durable sync of N entries,
//! next to two baselines measured in the same run: raw quinn bulk transfer of the same leaf
//! bytes on one stream, and raw RocksDB durable append of the same entries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Durability, Ledger, Oid};
use onoal_mesh::{Node, NodeConfig, SyncMode};
use serde_json::{Value, json};

use crate::{BenchResult, err, ledger_of};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Raw quinn: one stream carrying `bytes` bytes, loopback, same TLS (raw public keys).
async fn quinn_bulk(bytes: u64) -> BenchResult<f64> {
    let a = SecretKey::from_seed(&[1; 32]);
    let b = SecretKey::from_seed(&[2; 32]);
    let server = onoal_mesh::tls::server_config(&a, &[b"bulk"]).map_err(err)?;
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(8 << 20));
    t.receive_window(quinn::VarInt::from_u32(64 << 20));
    t.send_window(64 << 20);
    let t = Arc::new(t);
    server.transport_config(t.clone());
    let ep_server = quinn::Endpoint::server(server, loopback()).map_err(err)?;
    let addr = ep_server.local_addr().map_err(err)?;
    let (client, _) = onoal_mesh::tls::client_config(&b, a.public(), &[b"bulk"]).map_err(err)?;
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(err)?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(t);
    let ep_client = quinn::Endpoint::client(loopback()).map_err(err)?;
    let sender = tokio::spawn(async move {
        let conn = ep_server.accept().await.ok_or("no connection")?.await.map_err(err)?;
        let mut send = conn.open_uni().await.map_err(err)?;
        let chunk = vec![7u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            send.write_all(&chunk[..n]).await.map_err(err)?;
            left -= n as u64;
        }
        send.finish().map_err(err)?;
        send.stopped().await.map_err(err)?;
        Ok::<_, String>(())
    });
    let conn = ep_client.connect_with(client, addr, "onoal").map_err(err)?.await.map_err(err)?;
    let started = Instant::now();
    let mut recv = conn.accept_uni().await.map_err(err)?;
    let mut got = 0u64;
    while let Some(chunk) = recv.read_chunk(1 << 20, true).await.map_err(err)? {
        got += chunk.bytes.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    sender.await.map_err(err)??;
    if got != bytes {
        return Err(format!("bulk transfer moved {got} of {bytes} bytes"));
    }
    Ok(bytes as f64 / secs)
}

/// New entries appended while a follower is attached, for the live-follow latency.
const INCREMENT: u64 = 10_000;

/// `onoal bench sync --entries N`.
pub fn sync(entries: u64) -> BenchResult<Value> {
    let tmp = tempfile::tempdir().map_err(err)?;
    let (src_dir, dst_dir) = (tmp.path().join("source"), tmp.path().join("receiver"));
    let (source, _) = ledger_of(&src_dir, entries)?;
    let cp = source.checkpoint_now().map_err(err)?;
    let leaf_bytes: u64 = {
        let mut total = 0u64;
        let mut first = 0;
        while first < entries {
            let end = (first + 65_536).min(entries);
            total += source
                .log()
                .leaf_data_range(first, end)
                .map_err(err)?
                .iter()
                .map(|l| l.len() as u64)
                .sum::<u64>();
            first = end;
        }
        total
    };
    let receiver = Ledger::builder(&dst_dir)
        .durability(Durability::Sync)
        .create(Oid::parse("oid:onoal:bench:receiver").map_err(err)?)
        .map_err(err)?;
    let src_key = SecretKey::read_file(&key_path(&src_dir)).map_err(err)?;
    let dst_key = SecretKey::read_file(&key_path(&dst_dir)).map_err(err)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(err)?;
    let (sync_secs, summary, bulk, follow_ms) = rt.block_on(async {
        let (source, receiver) = (Arc::new(source), Arc::new(receiver));
        let a =
            Node::bind(source.clone(), src_key, loopback(), NodeConfig::default()).map_err(err)?;
        let b = Node::bind(receiver.clone(), dst_key, loopback(), NodeConfig::default())
            .map_err(err)?;
        let a_addr = a.local_addr().map_err(err)?.to_string();
        a.peers()
            .pin(receiver.identity().ledger_id, *receiver.identity().public_key.as_bytes(), None)
            .map_err(err)?;
        b.peers()
            .pin(
                source.identity().ledger_id,
                *source.identity().public_key.as_bytes(),
                Some(a_addr),
            )
            .map_err(err)?;
        let server = a.serve();
        let started = Instant::now();
        let summary = b
            .sync(source.identity().ledger_id, None, SyncMode::Full, &|_| {})
            .await
            .map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();

        // Live follow: B follows A; A appends 10,000 entries and signs a checkpoint; time
        // from the signed checkpoint to B holding all of them, verified and durable.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let follower = {
            let b = b.clone();
            let id = source.identity().ledger_id;
            tokio::spawn(async move {
                let on_sync = move |s: &onoal_mesh::SyncSummary| {
                    let _ = tx.send(s.to_size);
                };
                b.follow(id, None, &on_sync).await
            })
        };
        // The first report is the (empty) catch-up.
        if rx.recv().await.is_none() {
            return Err(format!("the follower stopped: {:?}", follower.await));
        }
        let pool: Vec<u8> = vec![b'i'; 256];
        let more =
            (0..INCREMENT).map(|i| crate::bench_entry(entries + i, &pool)).collect::<Vec<_>>();
        let appended = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || -> Result<_, String> {
                source.append_batch(more).map_err(err)?;
                let cp = source.checkpoint_now().map_err(err)?;
                Ok((Instant::now(), cp.size))
            })
            .await
            .map_err(err)??
        };
        let (signed_at, target) = appended;
        loop {
            let Some(size) = rx.recv().await else {
                return Err(format!("the follower stopped: {:?}", follower.await));
            };
            if size >= target {
                break;
            }
        }
        let follow_ms = signed_at.elapsed().as_secs_f64() * 1e3;
        follower.abort();
        a.close().await;
        b.close().await;
        server.abort();
        let bulk = quinn_bulk(leaf_bytes).await?;
        Ok::<_, String>((secs, summary, bulk, follow_ms))
    })?;
    if summary.to_size != cp.size || summary.entries != entries {
        return Err(format!("sync ended at {} of {} entries", summary.to_size, cp.size));
    }
    let raw_dir = tmp.path().join("raw");
    let rocks = crate::raw_rocksdb_append(&raw_dir, entries, 256, 1000, Durability::Sync)?;
    let figure = entries as f64 / sync_secs;
    let bulk_entries_per_s = bulk / (leaf_bytes as f64 / entries as f64);
    let slower = bulk_entries_per_s.min(rocks);
    Ok(json!({
        "workload": "sync",
        "entries": entries,
        "payload_bytes": 256,
        "leaf_bytes": leaf_bytes,
        "seconds": sync_secs,
        "entries_per_s": figure,
        "mb_per_s": leaf_bytes as f64 / sync_secs / 1e6,
        "verified": summary.verified,
        "durability": "sync",
        "baseline_quinn_bulk_mb_per_s": bulk / 1e6,
        "baseline_quinn_bulk_entries_per_s": bulk_entries_per_s,
        "baseline_rocksdb_durable_entries_per_s": rocks,
        "ratio": figure / slower,
        "follow_increment_entries": INCREMENT,
        "follow_increment_ms_after_checkpoint": follow_ms,
    }))
}

/// One follower's full sync of the source's log: its node, ledger and how long it took.
struct Follower {
    node: Node,
    secs: f64,
    entries: u64,
}

/// `onoal bench sync --followers F` (F > 1): one source, F followers on loopback, each a node
/// with its own fsynced ledger, all syncing the source's N entries at once (verified and
/// durable). Aggregate entries/s and the slowest follower, next to one follower alone in the
/// same run.
pub fn sync_fan_out(entries: u64, followers: usize) -> BenchResult<Value> {
    let tmp = tempfile::tempdir().map_err(err)?;
    let src_dir = tmp.path().join("source");
    let (source, _) = ledger_of(&src_dir, entries)?;
    source.checkpoint_now().map_err(err)?;
    let src_key = SecretKey::read_file(&key_path(&src_dir)).map_err(err)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(err)?;
    let (alone, all, wall) = rt.block_on(async {
        let source = Arc::new(source);
        let a =
            Node::bind(source.clone(), src_key, loopback(), NodeConfig::default()).map_err(err)?;
        let a_addr = a.local_addr().map_err(err)?.to_string();
        let server = a.serve();
        // F + 1 receivers: the first syncs alone (the baseline), then F at once.
        let mut receivers = Vec::new();
        for i in 0..=followers {
            let dir = tmp.path().join(format!("follower-{i}"));
            let ledger = Arc::new(
                Ledger::builder(&dir)
                    .durability(Durability::Sync)
                    .create(Oid::parse(&format!("oid:onoal:bench:f{i}")).map_err(err)?)
                    .map_err(err)?,
            );
            let key = SecretKey::read_file(&key_path(&dir)).map_err(err)?;
            a.peers()
                .pin(ledger.identity().ledger_id, *ledger.identity().public_key.as_bytes(), None)
                .map_err(err)?;
            let node = Node::bind(ledger, key, loopback(), NodeConfig::default()).map_err(err)?;
            node.peers()
                .pin(
                    source.identity().ledger_id,
                    *source.identity().public_key.as_bytes(),
                    Some(a_addr.clone()),
                )
                .map_err(err)?;
            receivers.push(node);
        }
        let id = source.identity().ledger_id;
        let run = |node: Node| async move {
            let started = Instant::now();
            let s =
                node.sync(id, None, SyncMode::Full, &|_| {}).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(Follower {
                node,
                secs: started.elapsed().as_secs_f64(),
                entries: s.entries,
            })
        };
        let mut receivers = receivers.into_iter();
        let first = receivers.next().ok_or("no follower")?;
        let alone = run(first).await?;
        let started = Instant::now();
        let tasks: Vec<_> = receivers.map(|node| tokio::spawn(run(node))).collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.map_err(err)??);
        }
        let wall = started.elapsed().as_secs_f64();
        for f in all.iter().chain(std::iter::once(&alone)) {
            f.node.close().await;
        }
        a.close().await;
        server.abort();
        Ok::<_, String>((alone, all, wall))
    })?;
    if let Some(f) = all.iter().chain(std::iter::once(&alone)).find(|f| f.entries != entries) {
        return Err(format!("a follower synced {} of {entries} entries", f.entries));
    }
    let slowest = all.iter().map(|f| f.secs).fold(0.0, f64::max);
    let aggregate = (entries * followers as u64) as f64 / wall;
    let one = entries as f64 / alone.secs;
    Ok(json!({
        "workload": "sync fan-out",
        "entries": entries,
        "followers": followers,
        "payload_bytes": 256,
        "durability": "sync",
        "aggregate_entries_per_s": aggregate,
        "slowest_follower_s": slowest,
        "slowest_follower_entries_per_s": entries as f64 / slowest,
        "baseline": "one follower syncing the same log alone, same run",
        "baseline_entries_per_s": one,
        "ratio": aggregate / one,
        "ratio_slowest": (entries as f64 / slowest) / one,
    }))
}

/// A node of the relay chain: its ledger, key and directory.
fn chain_node(dir: &std::path::Path, oid: &str) -> BenchResult<(Arc<Ledger>, SecretKey)> {
    let ledger = Ledger::builder(dir)
        .durability(Durability::Sync)
        .create(Oid::parse(oid).map_err(err)?)
        .map_err(err)?;
    let key = SecretKey::read_file(&key_path(dir)).map_err(err)?;
    Ok((Arc::new(ledger), key))
}

/// `onoal bench sync --relay`: a chain of three nodes on loopback. The source A serves its N
/// entries to the relay B (a full, verified, fsynced sync: the direct hop); then C, which
/// knows A's key but reaches only B, syncs A's log from B (the relayed hop: B serves its
/// replica within A's policy, C verifies every checkpoint against A's key). Entries/s of the
/// relayed hop and end to end (both hops), next to the direct hop in the same run.
pub fn sync_relay(entries: u64) -> BenchResult<Value> {
    let tmp = tempfile::tempdir().map_err(err)?;
    let src_dir = tmp.path().join("source");
    let (source, _) = ledger_of(&src_dir, entries)?;
    let cp = source.checkpoint_now().map_err(err)?;
    let src_key = SecretKey::read_file(&key_path(&src_dir)).map_err(err)?;
    let (relay, relay_key) = chain_node(&tmp.path().join("relay"), "oid:onoal:bench:relay")?;
    let (last, last_key) = chain_node(&tmp.path().join("last"), "oid:onoal:bench:last")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(err)?;
    let (direct, relayed, summary) = rt.block_on(async {
        let source = Arc::new(source);
        let key_of = |l: &Ledger| (l.identity().ledger_id, *l.identity().public_key.as_bytes());
        let (a_id, a_pk) = key_of(&source);
        let (b_id, b_pk) = key_of(&relay);
        let (c_id, c_pk) = key_of(&last);
        let a =
            Node::bind(source.clone(), src_key, loopback(), NodeConfig::default()).map_err(err)?;
        let b = Node::bind(relay, relay_key, loopback(), NodeConfig::default()).map_err(err)?;
        let c = Node::bind(last, last_key, loopback(), NodeConfig::default()).map_err(err)?;
        let (a_addr, b_addr) =
            (a.local_addr().map_err(err)?.to_string(), b.local_addr().map_err(err)?.to_string());
        // A lets B and C read its log (pins: trust 0.5, which the default visibility admits);
        // B learns A's trust in C when it syncs. C knows A's key but not its address.
        a.peers().pin(b_id, b_pk, None).map_err(err)?;
        a.peers().pin(c_id, c_pk, None).map_err(err)?;
        b.peers().pin(a_id, a_pk, Some(a_addr)).map_err(err)?;
        b.peers().pin(c_id, c_pk, None).map_err(err)?;
        c.peers().pin(a_id, a_pk, None).map_err(err)?;
        c.peers().pin(b_id, b_pk, Some(b_addr.clone())).map_err(err)?;
        let (serve_a, serve_b) = (a.serve(), b.serve());
        let started = Instant::now();
        let first = b.sync(a_id, None, SyncMode::Full, &|_| {}).await.map_err(|e| e.to_string())?;
        let direct = started.elapsed().as_secs_f64();
        if first.entries != entries {
            return Err(format!("the relay synced {} of {entries} entries", first.entries));
        }
        let started = Instant::now();
        let summary = c
            .sync(a_id, Some(&b_addr), SyncMode::Full, &|_| {})
            .await
            .map_err(|e| format!("the relayed hop failed: {e}"))?;
        let relayed = started.elapsed().as_secs_f64();
        for n in [&a, &b, &c] {
            n.close().await;
        }
        serve_a.abort();
        serve_b.abort();
        Ok::<_, String>((direct, relayed, summary))
    })?;
    if summary.to_size != cp.size || summary.entries != entries || !summary.verified {
        return Err(format!(
            "the relayed sync ended at {} of {} entries (verified: {})",
            summary.to_size, cp.size, summary.verified
        ));
    }
    let direct_rate = entries as f64 / direct;
    let relayed_rate = entries as f64 / relayed;
    Ok(json!({
        "workload": "sync relay chain",
        "entries": entries,
        "hops": 2,
        "payload_bytes": 256,
        "durability": "sync",
        "verified": summary.verified,
        "entries_per_s": relayed_rate,
        "end_to_end_seconds": direct + relayed,
        "end_to_end_entries_per_s": entries as f64 / (direct + relayed),
        "baseline": "the direct hop (source to relay), same run",
        "baseline_entries_per_s": direct_rate,
        "ratio": relayed_rate / direct_rate,
    }))
}
