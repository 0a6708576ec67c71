//! `onoal serve`, `peer`, `sync`, `forks`, `replicas`: the node daemon and its operations.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Filter, Ledger, LedgerId};
use onoal_mesh::peer::PeerStore;
use onoal_mesh::{Node, NodeConfig, SyncMode, SyncSummary};
use serde_json::{Value, json};

use crate::cli::Cli;
use crate::cmd::ledger::{is_in_use, open_read, open_write};
use crate::output::{one_line, print, print_value};

/// `LEDGER_ID@HOST:PORT`.
pub(crate) fn parse_peer_spec(spec: &str) -> Result<(LedgerId, String)> {
    let (id, addr) =
        spec.split_once('@').ok_or_else(|| anyhow!("{spec:?} is not LEDGER_ID@HOST:PORT"))?;
    let id = parse_ledger_id(id)?;
    if !addr.contains(':') {
        bail!("{addr:?} is not HOST:PORT");
    }
    Ok((id, addr.to_owned()))
}

pub(crate) fn parse_ledger_id(s: &str) -> Result<LedgerId> {
    s.parse::<LedgerId>().map_err(|_| anyhow!("{s:?} is not a ledger id (UUID)"))
}

fn open_for_mesh(cli: &Cli, what: &str) -> Result<Ledger> {
    open_write(cli).map_err(|e| {
        if is_in_use(&e) {
            anyhow!(
                "{}: the ledger is open in another process (a running `onoal serve`?); stop it to {what}, or let the node follow ledgers with `onoal serve --peer LEDGER_ID@HOST:PORT`",
                one_line(&e)
            )
        } else {
            e
        }
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn summary_json(s: &SyncSummary) -> Value {
    json!({
        "ledger_id": s.ledger_id.to_string(),
        "from_size": s.from_size,
        "to_size": s.to_size,
        "checkpoint_size": s.checkpoint_size,
        "entries": s.entries,
        "bytes": s.bytes,
        "seconds": s.seconds,
        "verified": s.verified,
    })
}

pub(crate) fn peer_add(cli: &Cli, spec: &str, key: &str) -> Result<()> {
    let (id, addr) = parse_peer_spec(spec)?;
    let key_bytes: [u8; 32] = hex::decode(key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("--key must be the peer's 32-byte Ed25519 public key in hex (64 characters), as `onoal serve` prints it"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| anyhow!("--key is not a valid Ed25519 public key"))?;
    let ledger = open_for_mesh(cli, "pin a peer")?;
    if id == ledger.identity().ledger_id {
        bail!("{id} is this ledger; pin other ledgers");
    }
    let record = PeerStore::open(Arc::new(ledger))?.pin(id, key_bytes, Some(addr))?;
    let v = json!({
        "ledger_id": id.to_string(),
        "public_key": key,
        "addresses": record.addresses,
    });
    print(cli, v, || format!("pinned {id} with key {key}"));
    Ok(())
}

pub(crate) fn peer_list(cli: &Cli) -> Result<()> {
    let ledger = open_read(cli)?;
    let peers = PeerStore::open(Arc::new(ledger))?.list()?;
    let list: Vec<Value> = peers
        .iter()
        .map(|p| {
            json!({
                "ledger_id": p.ledger_id.to_string(),
                "public_key": hex::encode(p.public_key),
                "oid": p.oid,
                "addresses": p.addresses,
                "capabilities": p.capabilities,
                "last_seen_ms": p.last_seen_ms,
                "certificate_expires_ms": p.certificate.as_ref().map(|c| c.expires_ms),
                "misbehaviour_count": p.misbehaviour_count,
                "misbehaviour": p.misbehaviour.iter().map(|m| json!({"at_ms": m.at_ms, "kind": m.kind, "detail": m.detail})).collect::<Vec<_>>(),
            })
        })
        .collect();
    print_value(cli, &json!({ "peers": list }));
    Ok(())
}

pub(crate) fn replicas(cli: &Cli) -> Result<()> {
    let ledger = open_read(cli)?;
    let mut list = Vec::new();
    for log in ledger.replicas().into_iter().chain(ledger.sparse_replicas()) {
        let id = log.identity().ledger_id;
        let head = log.head()?;
        let (kind, size, record) = if log.is_sparse() {
            ("sparse", log.range(0, u64::MAX)?.len() as u64, ledger.sparse_sync_record(&id)?)
        } else {
            ("full", head.size, ledger.sync_record(&id)?)
        };
        list.push(json!({
            "ledger_id": id.to_string(),
            "kind": kind,
            "oid": log.identity().oid.as_str(),
            "size": size,
            "root": head.root.to_hex(),
            "checkpoint_size": record.as_ref().map(|r| r.checkpoint_size),
            "status": record.as_ref().map(|r| r.status.as_str()),
            "last_error": record.as_ref().and_then(|r| r.last_error.clone()),
        }));
    }
    print_value(cli, &json!({ "replicas": list }));
    Ok(())
}

pub(crate) fn forks(cli: &Cli, drop: Option<&str>) -> Result<()> {
    if let Some(id) = drop {
        let id = parse_ledger_id(id)?;
        let ledger = open_for_mesh(cli, "drop a replica")?;
        let dropped = ledger.drop_replica(&id)?;
        print(cli, json!({"ledger_id": id.to_string(), "dropped": dropped}), || {
            if dropped {
                format!("dropped the replica of {id}; the next sync starts afresh")
            } else {
                format!("no replica of {id} here")
            }
        });
        return Ok(());
    }
    let ledger = open_read(cli)?;
    let mut list = Vec::new();
    for log in ledger.replicas().into_iter().chain(ledger.sparse_replicas()) {
        let id = log.identity().ledger_id;
        let record = if log.is_sparse() {
            ledger.sparse_sync_record(&id)?
        } else {
            ledger.sync_record(&id)?
        };
        if let Some(r) = record
            && let Some(f) = r.fork
        {
            list.push(json!({
                "ledger_id": id.to_string(),
                "reason": f.reason,
                "detected_ms": f.detected_ms,
                "held_checkpoint": f.held,
                "received_checkpoint": f.received,
                "proof": f.proof.map(|p| json!({
                    "old_size": p.old_size,
                    "old_root": p.old_root.to_hex(),
                    "new_size": p.new_size,
                    "consistency": p.consistency.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                })),
            }));
        }
    }
    print_value(cli, &json!({ "forks": list }));
    Ok(())
}

fn load_node(cli: &Cli, ledger: Ledger, listen: &str, config: NodeConfig) -> Result<Node> {
    let key = SecretKey::read_file(&key_path(&cli.data))?;
    let addr: std::net::SocketAddr =
        listen.parse().map_err(|_| anyhow!("--listen {listen:?} is not IP:PORT"))?;
    Ok(Node::bind(Arc::new(ledger), key, addr, config)?)
}

/// `--timeout SECS` as a deadline: positive and finite.
fn timeout(secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        bail!("--timeout {secs} is not a number of seconds between 0 and 86400");
    }
    Ok(Duration::from_secs_f64(secs))
}

pub(crate) fn sync(
    cli: &Cli,
    ledger_id: &str,
    from: Option<&str>,
    mode: SyncMode,
    follow: bool,
    timeout_secs: f64,
    filter: &Filter,
) -> Result<ExitCode> {
    let id = parse_ledger_id(ledger_id)?;
    let config = NodeConfig::default().request_timeout(timeout(timeout_secs)?);
    if !filter.is_empty() && (follow || mode != SyncMode::Incremental) {
        bail!("a filtered sync (--stream, --type, ...) takes neither --follow nor --mode");
    }
    let ledger = open_for_mesh(cli, "sync")?;
    let rt = runtime()?;
    rt.block_on(async {
        let node = load_node(cli, ledger, "127.0.0.1:0", config)?;
        let bar = if std::io::stderr().is_terminal() && !cli.json {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        if follow {
            let json = cli.json;
            let on_sync = move |s: &SyncSummary| {
                let v = summary_json(s);
                let mut out = std::io::stdout().lock();
                let _ = if json {
                    writeln!(out, "{v}")
                } else {
                    writeln!(out, "synced {} to {} entries (+{})", s.ledger_id, s.to_size, s.entries)
                };
                let _ = out.flush();
            };
            tokio::select! {
                r = node.follow(id, from, &on_sync) => r?,
                _ = shutdown_signal() => {}
            }
            node.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        let show = |p: onoal_mesh::SyncProgress| {
            bar.set_length(p.target);
            bar.set_position(p.held);
        };
        let summary = if filter.is_empty() {
            node.sync(id, from, mode, &show).await
        } else {
            node.sync_filtered(id, from, filter, &show).await
        };
        bar.finish_and_clear();
        node.close().await;
        let s = summary?;
        print(cli, summary_json(&s), || {
            format!(
                "synced {}: {} -> {} entries ({} new, {} bytes) in {:.2} s, verified against checkpoint {}",
                s.ledger_id, s.from_size, s.to_size, s.entries, s.bytes, s.seconds, s.checkpoint_size
            )
        });
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn restore(cli: &Cli, from: &str, accept_loss: bool, timeout_secs: f64) -> Result<()> {
    let (peer, address) = parse_peer_spec(from)?;
    let config = NodeConfig::default().request_timeout(timeout(timeout_secs)?);
    let ledger = Arc::new(Ledger::builder(&cli.data).open_for_restore()?);
    let rt = runtime()?;
    let summary = rt.block_on(async {
        let key = SecretKey::read_file(&key_path(&cli.data))?;
        let node = Node::bind(ledger.clone(), key, "127.0.0.1:0".parse()?, config)?;
        let bar = if std::io::stderr().is_terminal() && !cli.json {
            indicatif::ProgressBar::new(0)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let show = |p: onoal_mesh::SyncProgress| {
            bar.set_length(p.target);
            bar.set_position(p.held);
        };
        let r = node.restore(peer, &address, &show).await;
        bar.finish_and_clear();
        node.close().await;
        r.map_err(anyhow::Error::from)
    })?;
    let report = ledger.finish_restore(accept_loss)?;
    let v = json!({
        "restored": summary.entries,
        "from_size": summary.from_size,
        "to_size": report.held,
        "signed": report.signed,
        "acknowledged": report.acknowledged,
        "lost": report.lost,
        "checkpoint_size": summary.checkpoint_size,
        "verified": summary.verified,
    });
    print(cli, v, || {
        format!(
            "restored {} entries from {from}: the ledger holds {} again (signed {}, acknowledged {}{}), every entry verified against checkpoints signed by this ledger's key",
            summary.entries,
            report.held,
            report.signed,
            report.acknowledged,
            if report.lost > 0 {
                format!("; {} acknowledged entries could not be given back", report.lost)
            } else {
                String::new()
            }
        )
    });
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) fn serve(
    cli: &Cli,
    listen: &str,
    peers: &[String],
    allow_insecure_key: bool,
) -> Result<ExitCode> {
    let follows: Vec<(LedgerId, String)> =
        peers.iter().map(|p| parse_peer_spec(p)).collect::<Result<_>>()?;
    if let Some(mode) = crate::cmd::ledger::key_file_exposed(cli)? {
        let path = key_path(&cli.data);
        if !allow_insecure_key {
            bail!(
                "key file {} is readable by other users (mode {mode:o}); a node signs with it and proves its identity with it: run `chmod 600 {}`, or pass --allow-insecure-key",
                path.display(),
                path.display()
            );
        }
    }
    let ledger = open_for_mesh(cli, "serve")?;
    let rt = runtime()?;
    rt.block_on(async {
        let node = load_node(cli, ledger, listen, NodeConfig::default())?;
        for (id, addr) in &follows {
            let record = node.peers().get(id)?.ok_or_else(|| {
                anyhow!("--peer {id}@{addr}: pin its key first: onoal peer add {id}@{addr} --key HEX")
            })?;
            node.peers().pin(*id, record.public_key, Some(addr.clone()))?;
        }
        let addr = node.local_addr()?;
        let id = node.ledger().identity().clone();
        let v = json!({
            "ledger_id": id.ledger_id.to_string(),
            "oid": id.oid.as_str(),
            "public_key": hex::encode(id.public_key.as_bytes()),
            "addr": addr.to_string(),
        });
        print(cli, v, || {
            format!(
                "serving ledger {} ({})\npublic key {}\nQUIC on {addr}",
                id.ledger_id,
                id.oid,
                hex::encode(id.public_key.as_bytes())
            )
        });
        let _ = std::io::stdout().flush();
        let server = node.serve();
        let mut tasks = Vec::new();
        for (peer_id, addr) in follows {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let on_sync = |s: &SyncSummary| {
                    tracing::info!(ledger = %s.ledger_id, size = s.to_size, new = s.entries, "synced");
                };
                if let Err(e) = node.follow(peer_id, Some(&addr), &on_sync).await {
                    eprintln!("error: following {peer_id} stopped: {e}");
                }
            }));
        }
        shutdown_signal().await;
        for t in &tasks {
            t.abort();
        }
        node.close().await;
        server.abort();
        Ok(ExitCode::SUCCESS)
    })
}
