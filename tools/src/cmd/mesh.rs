//! `onoal serve`, `peer`, `sync`, `forks`, `replicas`: the node daemon and its operations.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Filter, Ledger, LedgerId};
use onoal_mesh::control::views::{self, PeerView, ProofFile, SyncSummaryView};
use onoal_mesh::http::{DiscoverResult, MessageList, PeerList, Topology, message_list};
use onoal_mesh::peer::PeerStore;
use onoal_mesh::{Node, NodeConfig, SyncMode, SyncSummary};
use serde_json::{Value, json};

use crate::cli::Cli;
use crate::client::running_node;
use crate::cmd::ledger::{is_in_use, open_read, open_write_with};
use crate::output::{one_line, print};

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

/// A ledger this data directory knows, named by its id, a unique prefix of it (4 or more
/// characters), or its OID: the ledger itself, its replicas and its pinned peers.
pub(crate) fn resolve_ledger_id(cli: &Cli, text: &str) -> Result<LedgerId> {
    if let Ok(id) = text.parse::<LedgerId>() {
        return Ok(id);
    }
    let ledger = open_read(cli)?;
    resolve_in(&ledger, text)
}

/// As [`resolve_ledger_id`], with the ledger open.
pub(crate) fn resolve_in(ledger: &Ledger, text: &str) -> Result<LedgerId> {
    if let Ok(id) = text.parse::<LedgerId>() {
        return Ok(id);
    }
    let own = ledger.identity();
    let mut known: Vec<(LedgerId, Option<String>)> =
        vec![(own.ledger_id, Some(own.oid.as_str().to_owned()))];
    for log in ledger.replicas() {
        let id = log.identity();
        known.push((id.ledger_id, Some(id.oid.as_str().to_owned())));
    }
    known.extend(onoal_mesh::peer::pinned_names(ledger));
    known.sort_by_key(|(id, _)| *id);
    known.dedup_by(|a, b| {
        let same = a.0 == b.0;
        if same && b.1.is_none() {
            b.1 = a.1.take();
        }
        same
    });
    let text = text.trim();
    let hits: Vec<&(LedgerId, Option<String>)> = if text.starts_with("oid:") {
        known.iter().filter(|(_, oid)| oid.as_deref() == Some(text)).collect()
    } else {
        let prefix = text.to_ascii_lowercase();
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            bail!(
                "{text:?} is not a ledger id (UUID), a prefix of one (4 or more hex digits) or an OID"
            );
        }
        known.iter().filter(|(id, _)| id.to_string().starts_with(&prefix)).collect()
    };
    match hits.as_slice() {
        [(id, _)] => Ok(*id),
        [] => bail!(
            "no ledger known here is named {text:?} (this ledger, its replicas and pinned peers: `onoal peer list`, `onoal replicas`)"
        ),
        many => bail!(
            "{text:?} names {} ledgers here ({}); give more of the id",
            many.len(),
            many.iter()
                .map(|(id, oid)| format!("{id} {}", oid.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(crate) fn open_for_mesh(
    cli: &Cli,
    what: &str,
    durability: onoal_engine::Durability,
) -> Result<Ledger> {
    open_write_with(cli, durability).map_err(|e| {
        if is_in_use(&e) {
            anyhow!(
                "{}: the ledger is open in another process (a running `onoal serve` without its HTTP API?); stop it to {what}, or let the node follow ledgers with `onoal serve --follow LEDGER_ID@HOST:PORT`",
                one_line(&e)
            )
        } else {
            e
        }
    })
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) fn summary_json(s: &SyncSummary) -> Value {
    json!(SyncSummaryView::from(s))
}

/// A ticket, or `LEDGER_ID[@HOST:PORT]` with `key` (hex or vkey): the ledger, its address and
/// its key.
pub(crate) fn parse_peer_with_key(
    spec: &str,
    key: Option<&str>,
) -> Result<(LedgerId, Option<String>, [u8; 32])> {
    use onoal_mesh::ticket::{Ticket, is_ticket, parse_public_key};
    let given = || key.map(|k| parse_public_key(k).map_err(|e| anyhow!("--key: {e}"))).transpose();
    if is_ticket(spec) {
        let t: Ticket = spec.parse()?;
        if let Some(k) = given()?
            && k != t.public_key
        {
            usage_bail!(
                "--key {} differs from the ticket's key {}; give one of them",
                hex::encode(k),
                hex::encode(t.public_key)
            );
        }
        return Ok((t.ledger_id, t.address, t.public_key));
    }
    let (id, addr) = match spec.split_once('@') {
        Some(_) => parse_peer_spec(spec).map(|(id, a)| (id, Some(a)))?,
        None => (
            spec.parse::<LedgerId>().map_err(|_| {
                anyhow!("{spec:?} is not a ticket (onoal://…) or LEDGER_ID[@HOST:PORT]")
            })?,
            None,
        ),
    };
    let key = given()?.ok_or_else(|| {
        anyhow!("give the peer's key with --key KEY, or paste its ticket (onoal://…, as `onoal serve` prints it) instead of {spec}")
    })?;
    Ok((id, addr, key))
}

pub(crate) fn peer_add(cli: &Cli, spec: &str, key: Option<&str>, replace_key: bool) -> Result<()> {
    let (id, addr, key_bytes) = parse_peer_with_key(spec, key)?;
    let key = &hex::encode(key_bytes);
    let started_ms = onoal_engine::time::now_ms();
    let peer: PeerView = if let Some(node) = running_node(cli)? {
        let body = json!({"ledger_id": id.to_string(), "public_key": key, "address": addr,
            "replace_key": replace_key});
        node.post("/mesh/connect", &body, Duration::from_secs(60))?
    } else {
        let ledger = open_for_mesh(cli, "pin a peer", cli.durability())?;
        if id == ledger.identity().ledger_id {
            bail!("{id} is this ledger; pin other ledgers");
        }
        let peers = PeerStore::open(Arc::new(ledger))?;
        let record = if replace_key {
            peers.replace_key(id, key_bytes, addr, started_ms)?
        } else {
            peers.pin(id, key_bytes, addr)?
        };
        PeerView::from(&record)
    };
    // The key this command replaced (a replacement older than the command was not ours).
    let replaced = peer
        .replaced_keys
        .last()
        .filter(|k| k.replaced_at_ms >= started_ms && replace_key)
        .map(|k| k.public_key.clone());
    if let Some(old) = &replaced {
        eprintln!(
            "WARNING: the key pinned for {id} changed from {old} to {key}; the old key is kept in \
             its history (onoal peer list)"
        );
    }
    let v = json!({
        "ledger_id": id.to_string(),
        "public_key": key,
        "addresses": peer.addresses,
        "replaced_key": replaced,
    });
    print(cli, v, || format!("pinned {id} with key {key}"));
    Ok(())
}

/// Pins a ticket's key before a sync (through the running node, or in the data directory).
fn peer_add_quietly(cli: &Cli, t: &onoal_mesh::ticket::Ticket) -> Result<()> {
    let key = hex::encode(t.public_key);
    if let Some(node) = running_node(cli)? {
        let body =
            json!({"ledger_id": t.ledger_id.to_string(), "public_key": key, "address": t.address});
        let _: PeerView = node.post("/mesh/connect", &body, Duration::from_secs(60))?;
    } else {
        let ledger = open_for_mesh(cli, "pin a peer", cli.durability())?;
        PeerStore::open(Arc::new(ledger))?.pin(t.ledger_id, t.public_key, t.address.clone())?;
    }
    Ok(())
}

pub(crate) fn peer_remove(cli: &Cli, ledger_id: &str) -> Result<()> {
    let id = resolve_ledger_id(cli, ledger_id)?;
    let removed = if let Some(node) = running_node(cli)? {
        let body = json!({"ledger_id": id.to_string()});
        let d: onoal_mesh::http::Disconnected =
            node.post("/mesh/disconnect", &body, Duration::from_secs(60))?;
        d.removed
    } else {
        let ledger = open_for_mesh(cli, "remove a peer", cli.durability())?;
        PeerStore::open(Arc::new(ledger))?.remove(&id)?
    };
    if !removed {
        return Err(crate::output::Failure {
            kind: "not_pinned".into(),
            message: format!("{id} is not pinned"),
            hint: Some("onoal peer list shows the pinned peers".into()),
        }
        .into());
    }
    print(cli, json!({"ledger_id": id.to_string(), "removed": removed}), || {
        format!("removed {id}: it is no longer served or synced from (its replica stays)")
    });
    Ok(())
}

fn membership_node(cli: &Cli, what: &str) -> Result<crate::client::NodeClient> {
    running_node(cli)?.ok_or_else(|| {
        anyhow!(
            "{what} works on the running node's members: start it with `onoal serve --data {}`",
            cli.data.display()
        )
    })
}

pub(crate) fn peer_connect(cli: &Cli, ledger_id: &str, timeout_ms: u64) -> Result<()> {
    let id = resolve_ledger_id(cli, ledger_id)?;
    if !(100..=30_000).contains(&timeout_ms) {
        usage_bail!("--timeout-ms {timeout_ms} is out of range: give 100 to 30000");
    }
    let node = membership_node(cli, "peer connect")?;
    let body = json!({"ledger_id": id.to_string(), "timeout_ms": timeout_ms});
    let row: onoal_mesh::http::ConnectionView =
        node.post("/mesh/connections", &body, Duration::from_millis(timeout_ms + 10_000))?;
    print(cli, json!(row), || {
        let latency = row.latency_ms.map_or_else(|| "-".to_owned(), |l| format!("{l} ms"));
        format!("{id} at {}: {} (latency {latency})", row.addr, row.status)
    });
    Ok(())
}

pub(crate) fn peer_disconnect(cli: &Cli, ledger_id: &str) -> Result<()> {
    let id = resolve_ledger_id(cli, ledger_id)?;
    let node = membership_node(cli, "peer disconnect")?;
    let d: onoal_mesh::http::Disconnected = node.delete(&format!("/mesh/connections/{id}"))?;
    print(cli, json!(d), || {
        if d.removed {
            format!(
                "{id}: no longer heartbeated (its record stays known; `peer connect` undoes it)"
            )
        } else {
            format!("{id} was not a member; it will not become one until `peer connect`")
        }
    });
    Ok(())
}

pub(crate) fn peer_list(cli: &Cli) -> Result<()> {
    // A running node also knows what discovery found; without one, the pinned peers.
    let list: PeerList = if let Some(node) = running_node(cli)? {
        node.get("/mesh/peers")?
    } else {
        let ledger = open_read(cli)?;
        let peers = PeerStore::open(Arc::new(ledger))?.list()?;
        PeerList { peers: peers.iter().map(PeerView::from).collect(), discovered: Vec::new() }
    };
    print(cli, json!(list), || peer_table(&list.peers, list.discovered.len()));
    Ok(())
}

/// `peer list` for people: one row per pinned peer.
fn peer_table(peers: &[PeerView], discovered: usize) -> String {
    use crate::output::{ago, table};
    let now = onoal_engine::time::now_ms();
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let address = match p.addresses.as_slice() {
                [] => "-".to_owned(),
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} (+{})", rest.len()),
            };
            vec![
                p.ledger_id.clone(),
                p.oid.clone().unwrap_or_else(|| "-".into()),
                address,
                ago(p.last_seen_ms, now),
                p.trust.map_or_else(|| "-".into(), |t| format!("{t:.2}")),
                p.misbehaviour_count.to_string(),
                format!("{}…", &p.public_key[..16.min(p.public_key.len())]),
                if p.replaced_keys.is_empty() {
                    "-".into()
                } else {
                    p.replaced_keys.len().to_string()
                },
            ]
        })
        .collect();
    let mut out = table(
        &["LEDGER", "OID", "ADDRESS", "LAST SEEN", "TRUST", "VIOLATIONS", "KEY", "OLD KEYS"],
        &rows,
    );
    out.push_str(&format!("\n{} pinned", peers.len()));
    if discovered > 0 {
        out.push_str(&format!("; {discovered} discovered, not pinned (--json lists them)"));
    }
    out
}

/// `onoal discover`: through the running node's API (the DHT lives in the node).
pub(crate) fn discover(
    cli: &Cli,
    id: Option<&str>,
    oid: Option<&str>,
    timeout_ms: u64,
) -> Result<()> {
    if !(100..=30_000).contains(&timeout_ms) {
        usage_bail!("--timeout-ms {timeout_ms} is out of range: give 100 to 30000");
    }
    let query = match (id, oid) {
        (Some(id), None) => format!("id={}", parse_ledger_id(id)?),
        (None, Some(oid)) => {
            let oid = onoal_engine::Oid::parse(oid)
                .map_err(|e| anyhow!("{e}; an OID prefix looks like oid:onoal:org"))?;
            format!("oid={oid}")
        }
        _ => bail!("give --id LEDGER_ID or --oid PREFIX"),
    };
    let node = running_node(cli)?.ok_or_else(|| {
        anyhow!(
            "discover asks the running node's DHT: start it with `onoal serve --data {}` (with --bootstrap to join a mesh)",
            cli.data.display()
        )
    })?;
    let found: DiscoverResult =
        node.get(&format!("/mesh/discover?{query}&timeout_ms={timeout_ms}"))?;
    print(cli, json!(found), || {
        if found.records.is_empty() {
            return "nothing found".to_owned();
        }
        let mut out = format!("{:<36}  {:<32}  {:<21}  {}", "LEDGER", "OID", "QUIC", "SOURCE");
        for r in &found.records {
            out.push_str(&format!(
                "\n{:<36}  {:<32}  {:<21}  {}",
                r.ledger_id,
                r.oid,
                r.quic.as_deref().unwrap_or("-"),
                r.source
            ));
        }
        out
    });
    if found.records.is_empty() {
        bail!("no ledger found for {query} (the DHT was asked for {timeout_ms} ms)");
    }
    Ok(())
}

pub(crate) fn replicas(cli: &Cli) -> Result<()> {
    let ledger = open_read(cli)?;
    let list = views::replicas(&ledger)?;
    print(cli, json!({ "replicas": list }), || {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|r| {
                vec![
                    r.ledger_id.clone(),
                    r.oid.clone(),
                    r.kind.clone(),
                    crate::output::count(r.size),
                    r.checkpoint_size.map_or_else(|| "-".into(), crate::output::count),
                    r.status.clone().unwrap_or_else(|| "-".into()),
                    r.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let headers = ["LEDGER", "OID", "KIND", "ENTRIES", "CHECKPOINT", "STATUS", "LAST ERROR"];
        format!("{}\n{} replicas", crate::output::table(&headers, &rows), list.len())
    });
    Ok(())
}

pub(crate) fn forks(cli: &Cli, drop: Option<&str>) -> Result<()> {
    if let Some(id) = drop {
        return drop_replica(cli, id, true, true);
    }
    let ledger = open_read(cli)?;
    let forks = views::forks(&ledger)?;
    print(cli, json!({ "forks": forks }), || {
        if forks.is_empty() {
            return "no forks: no replica's source was caught signing two histories".into();
        }
        let mut out = String::new();
        for f in &forks {
            out.push_str(&format!(
                "FORK of {} (found {}): {}\n",
                f.ledger_id,
                onoal_engine::time::rfc3339(f.detected_ms),
                f.reason
            ));
            out.push_str(&side_by_side(
                ("held (verified before)", &f.held_checkpoint),
                ("received (conflicting)", &f.received_checkpoint),
            ));
            out.push_str(&format!(
                "drop it with `onoal forks drop {}` once the evidence is kept (--json has it all)\n\n",
                f.ledger_id
            ));
        }
        out.trim_end().to_owned()
    });
    Ok(())
}

/// Two notes in two columns, with a marker on the lines that differ.
fn side_by_side(left: (&str, &str), right: (&str, &str)) -> String {
    let l: Vec<&str> = left.1.lines().collect();
    let r: Vec<&str> = right.1.lines().collect();
    let width = l.iter().chain([&left.0]).map(|s| s.chars().count()).max().unwrap_or(0);
    let mut out = format!("    {:width$}   {}\n", left.0, right.0);
    for i in 0..l.len().max(r.len()) {
        let (a, b) = (l.get(i).copied().unwrap_or(""), r.get(i).copied().unwrap_or(""));
        let mark = if a == b { ' ' } else { '≠' };
        let pad = width - a.chars().count();
        out.push_str(&format!("  {mark} {a}{}   {b}\n", " ".repeat(pad)));
    }
    out
}

/// `replicas drop` (any replica, confirmed) and `forks drop` (a forked one only).
pub(crate) fn drop_replica(cli: &Cli, id: &str, yes: bool, only_forked: bool) -> Result<()> {
    let id = resolve_ledger_id(cli, id)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "dropping the replica of {id} deletes its entries and sync state (the next sync starts afresh); pass --yes to do it"
            );
        }
        eprint!("delete the replica of {id}? type yes: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            bail!("not dropped");
        }
    }
    let dropped = if let Some(node) = running_node(cli)? {
        let route = if only_forked { "forks" } else { "replicas" };
        node.delete::<onoal_mesh::http::Dropped>(&format!("/ledger/{route}/{id}"))?.dropped
    } else {
        let ledger = open_for_mesh(cli, "drop a replica", cli.durability())?;
        if only_forked && !views::forks(&ledger)?.iter().any(|f| f.ledger_id == id.to_string()) {
            bail!(
                "the replica of {id} has not forked; to delete a healthy replica run `onoal replicas drop {id}`"
            );
        }
        ledger.drop_replica(&id)?
    };
    print(cli, json!({"ledger_id": id.to_string(), "dropped": dropped}), || {
        if dropped {
            format!("dropped the replica of {id}; the next sync starts afresh")
        } else {
            format!("no replica of {id} here")
        }
    });
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
        usage_bail!("--timeout {secs} is not a number of seconds between 0 and 86400");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How `onoal sync` syncs.
#[derive(Clone, Copy)]
pub(crate) struct SyncHow<'a> {
    pub(crate) mode: SyncMode,
    pub(crate) follow: bool,
    pub(crate) timeout_secs: f64,
    pub(crate) filter: &'a Filter,
    pub(crate) require_witnesses: Option<usize>,
}

pub(crate) fn sync(
    cli: &Cli,
    ledger_id: &str,
    from: Option<&str>,
    how: SyncHow<'_>,
) -> Result<ExitCode> {
    let SyncHow { mode, follow, timeout_secs, filter, require_witnesses } = how;
    // A ticket pins its key (as `peer add` would) and gives the address.
    let (id, from) = if onoal_mesh::ticket::is_ticket(ledger_id) {
        let t: onoal_mesh::ticket::Ticket = ledger_id.parse()?;
        peer_add_quietly(cli, &t)?;
        let from = from.map(str::to_owned).or(t.address);
        (t.ledger_id, from)
    } else {
        (resolve_ledger_id(cli, ledger_id)?, from.map(str::to_owned))
    };
    let from = from.as_deref();
    let config = NodeConfig::default().request_timeout(timeout(timeout_secs)?);
    if !filter.is_empty() && (follow || mode != SyncMode::Incremental) {
        bail!("a filtered sync (--stream, --type, ...) takes neither --follow nor --mode");
    }
    filter.validate()?;
    if let Some(node) = running_node(cli)? {
        return sync_through(cli, &node, id, from, how);
    }
    if require_witnesses.is_some() {
        usage_bail!(
            "--require-witnesses needs the running node (onoal serve --trust-witness VKEY ...): the witnesses it trusts are its settings"
        );
    }
    let ledger = open_for_mesh(cli, "sync", cli.durability())?;
    let rt = runtime()?;
    rt.block_on(async {
        let node = load_node(cli, ledger, "127.0.0.1:0", config)?;
        let bar = crate::output::progress(cli, Some(0), "entries", "syncing");
        if follow {
            let json = cli.json;
            let on_sync = move |s: &SyncSummary| {
                // JSON Lines: each record says what it is.
                let mut v = summary_json(s);
                v["type"] = json!("synced");
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
        let bar = crate::output::progress(cli, Some(0), "entries", "syncing");
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

pub(crate) async fn shutdown_signal() {
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

/// `sync` while a node runs: the node syncs (or starts following, and keeps following after
/// this command exits).
fn sync_through(
    cli: &Cli,
    node: &crate::client::NodeClient,
    id: LedgerId,
    from: Option<&str>,
    how: SyncHow<'_>,
) -> Result<ExitCode> {
    let SyncHow { mode, follow, filter, require_witnesses, .. } = how;
    let mode = match mode {
        SyncMode::Full => "full",
        SyncMode::Incremental => "incremental",
        SyncMode::Checkpoint => "checkpoint",
    };
    let body = json!({
        "ledger_id": id.to_string(),
        "from": from,
        "mode": if follow { None } else { Some(mode) },
        "follow": follow,
        "stream": filter.stream,
        "type": filter.entry_type,
        "subject": filter.subject,
        "issuer": filter.issuer,
        "since": filter.since_ms,
        "until": filter.until_ms,
        "require_witnesses": require_witnesses,
    });
    // A long sync is bounded by the node's own request deadlines; this is the outer bound.
    let answer: onoal_mesh::http::SyncAnswer =
        node.post("/mesh/sync", &body, Duration::from_secs(6 * 3600))?;
    match answer {
        onoal_mesh::http::SyncAnswer::Synced(s) => {
            print(cli, json!(s), || {
                format!(
                    "synced {}: {} -> {} entries ({} new, {} bytes) in {:.2} s, verified against checkpoint {}",
                    s.ledger_id,
                    s.from_size,
                    s.to_size,
                    s.entries,
                    s.bytes,
                    s.seconds,
                    s.checkpoint_size
                )
            });
        }
        onoal_mesh::http::SyncAnswer::Following(f) => {
            print(cli, json!(f), || {
                format!(
                    "the running node now follows {} (onoal status shows its syncs; stop with onoal peer remove or DELETE /mesh/follows/{})",
                    f.ledger_id, f.ledger_id
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `onoal topology`: the running node's `GET /mesh/topology`, as JSON, a table, DOT or SVG.
/// `onoal messages`: the running node's outbox, or the `messages` table when none runs.
pub(crate) fn messages(cli: &Cli, status: Option<&str>, limit: usize) -> Result<()> {
    let list: MessageList = match running_node(cli)? {
        Some(node) => {
            let mut path = format!("/mesh/messages?limit={limit}");
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            node.get(&path)?
        }
        None => {
            let ledger = open_read(cli)?;
            let rows: Vec<onoal_mesh::outbox::OutboxRow> = ledger
                .aux_scan(onoal_engine::AuxTable::Messages)?
                .iter()
                .filter_map(|(_, v)| onoal_mesh::outbox::OutboxRow::decode(v))
                .collect();
            message_list(&rows, status, Some(limit)).map_err(|e| anyhow!("{e}"))?
        }
    };
    print(cli, json!(list), || {
        let counts: Vec<String> = list.by_status.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let mut out = if counts.is_empty() { "no messages".to_owned() } else { counts.join(", ") };
        for m in &list.messages {
            out.push_str(&format!(
                "\n{:<13}  {:<9}  {:<21}  retries {}{}",
                m.message_type,
                m.status,
                m.to_addr,
                m.retry_count,
                m.last_error.as_deref().map(|e| format!("  ({e})")).unwrap_or_default()
            ));
        }
        out
    });
    Ok(())
}

/// `onoal route --to X`: the running node's `findPath`, or, offline, over the pinned peers.
pub(crate) fn route(cli: &Cli, to: &str) -> Result<()> {
    let dest = onoal_mesh::http::parse_destination(to).map_err(|e| anyhow!(e))?;
    let view: onoal_mesh::http::RouteView = match running_node(cli)? {
        Some(node) => node.get(&format!("/mesh/route?to={to}"))?,
        None => {
            let ledger = Arc::new(open_read(cli)?);
            let peers = PeerStore::open(ledger.clone())?;
            let key = SecretKey::read_file(&key_path(&cli.data))?;
            let trust = onoal_mesh::trust::store::TrustStore::open(
                ledger.clone(),
                peers.clone(),
                key.signing_key().clone(),
            )?;
            let table = onoal_mesh::net::routing::build_table(&ledger, &peers, &trust, &[], &[])
                .map_err(|e| anyhow!(e))?;
            let config = onoal_mesh::routing::RoutingConfig::default();
            onoal_mesh::http::RouteView::new(to.to_owned(), table.find_path(&dest, &config)?)
        }
    };
    print(cli, json!(view), || {
        let hops = if view.next_hops.is_empty() {
            "(no next hop yet)".to_owned()
        } else {
            view.next_hops.join(", ")
        };
        let mut out = format!("{}: {} -> {hops}", view.to, view.strategy);
        for r in &view.reasons {
            out.push_str(&format!("\n  {r}"));
        }
        out
    });
    Ok(())
}

pub(crate) fn ref_check(cli: &Cli, seq: u64) -> Result<ExitCode> {
    let list: onoal_mesh::http::RefCheckList = match running_node(cli)? {
        Some(node) => node.get(&format!("/mesh/refs/{seq}"))?,
        None => {
            let ledger = open_for_mesh(cli, "check references", cli.durability())?;
            let rt = runtime()?;
            rt.block_on(async {
                let node = load_node(cli, ledger, "127.0.0.1:0", NodeConfig::default())?;
                let record = node.check_and_record_refs(seq).await;
                node.close().await;
                let r = record.map_err(|e| anyhow!(e))?;
                Ok::<_, anyhow::Error>(onoal_mesh::http::RefCheckList {
                    seq,
                    refs: r.refs,
                    all_verified: r.all_verified,
                })
            })?
        }
    };
    print(cli, json!(list), || {
        if list.refs.is_empty() {
            return format!("entry {seq} has no references");
        }
        let mut out = String::new();
        for r in &list.refs {
            out.push_str(&format!(
                "{:<11} {} seq {} via {}{}\n",
                r.status,
                r.ledger_id,
                r.seq,
                r.via,
                r.detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
            ));
        }
        out.trim_end().to_owned()
    });
    Ok(if list.all_verified { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `onoal ref list`: the recorded reference checks, newest entry first.
pub(crate) fn ref_list(cli: &Cli, limit: usize) -> Result<ExitCode> {
    let records: Vec<onoal_mesh::net::ref_verifier::RefCheckRecord> = match running_node(cli)? {
        Some(node) => node.get(&format!("/mesh/refs?limit={limit}"))?,
        None => {
            let ledger = open_read(cli)?;
            onoal_mesh::net::ref_verifier::ref_check_records(&ledger, limit)
                .map_err(|e| anyhow!(e))?
        }
    };
    print(cli, json!(records), || {
        if records.is_empty() {
            return "no reference checks recorded: `onoal serve --verify-refs` records them for new entries, `onoal ref check SEQ` for one".to_owned();
        }
        let mut out = format!("{:>8}  {:<13}  {:>4}  failed\n", "seq", "outcome", "refs");
        for r in &records {
            let failed: Vec<String> = r
                .refs
                .iter()
                .filter(|x| x.status != "verified")
                .map(|x| format!("{} {}:{}", x.status, x.ledger_id, x.seq))
                .collect();
            out.push_str(&format!(
                "{:>8}  {:<13}  {:>4}  {}\n",
                r.seq,
                if r.all_verified { "all verified" } else { "NOT verified" },
                r.refs.len(),
                failed.join(", ")
            ));
        }
        out.trim_end().to_owned()
    });
    Ok(if records.iter().all(|r| r.all_verified) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub(crate) fn remote_query(
    cli: &Cli,
    to: &str,
    filter: &crate::cli::FilterArgs,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<()> {
    let body = onoal_mesh::http::RemoteQueryBody {
        to: to.to_owned(),
        stream: filter.stream.clone(),
        entry_type: filter.entry_type.clone(),
        subject: filter.subject.clone(),
        issuer: filter.issuer.clone(),
        since: filter.since,
        until: filter.until,
        cursor: cursor.map(str::to_owned),
        limit,
    };
    let (dest, f, from, limit) = body.parse().map_err(|e| anyhow!(e))?;
    let view: onoal_mesh::http::RemoteQueryView = match running_node(cli)? {
        Some(node) => node.post("/mesh/query", &body, Duration::from_secs(60))?,
        None => {
            let ledger = open_for_mesh(cli, "ask across the mesh", cli.durability())?;
            let rt = runtime()?;
            rt.block_on(async {
                let node = load_node(cli, ledger, "127.0.0.1:0", NodeConfig::default())?;
                let answer = node.remote_query(&dest, f, from, limit).await;
                node.close().await;
                let answer = answer.map_err(|e| anyhow!(e))?;
                Ok::<_, anyhow::Error>(onoal_mesh::http::RemoteQueryView::from(&answer))
            })?
        }
    };
    print(cli, json!(view), || {
        let mut out = format!(
            "{} entries from {} ({}), verified in its checkpoint of size {} ({} hops: {})",
            view.entries.len(),
            view.oid,
            view.ledger_id,
            view.tree_size,
            view.hops,
            view.path.join(" -> ")
        );
        for e in &view.entries {
            out.push_str(&format!(
                "\n  {:>8}  {}  {}  {}",
                e.seq, e.stream, e.entry_type, e.leaf_hash
            ));
        }
        if let Some(c) = &view.next_cursor {
            out.push_str(&format!("\nmore: --cursor {c}"));
        }
        out
    });
    Ok(())
}

/// Takes the ledger, seq and leaf hash of a proof file into `body` (what the command line gave
/// wins; a leaf hash that differs from the file's is an error).
pub(crate) fn fill_from_proof(
    body: &mut onoal_mesh::http::RemoteVerifyBody,
    file: &std::path::Path,
    to_given: bool,
    seq_given: bool,
) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read proof file {}", file.display()))?;
    let proof: ProofFile = serde_json::from_str(&text).with_context(|| {
        format!("{} is not a proof file of `onoal proof export`", file.display())
    })?;
    if !to_given {
        body.to = proof.ledger_id.clone();
    }
    if !seq_given {
        body.seq = proof.seq;
    }
    match &body.leaf_hash {
        Some(h) if !h.eq_ignore_ascii_case(&proof.entry.leaf_hash) => usage_bail!(
            "--leaf-hash {h} differs from the proof file's {}; give one of them",
            proof.entry.leaf_hash
        ),
        _ if body.seq == proof.seq => body.leaf_hash = Some(proof.entry.leaf_hash.clone()),
        _ => {}
    }
    Ok(())
}

/// `onoal remote verify`: exit 0 on `match`, 1 otherwise.
pub(crate) fn remote_verify(
    cli: &Cli,
    body: &onoal_mesh::http::RemoteVerifyBody,
) -> Result<ExitCode> {
    let (dest, expect) = body.parse().map_err(|e| anyhow!(e))?;
    let view: onoal_mesh::http::RemoteVerifyView = match running_node(cli)? {
        Some(node) => node.post("/mesh/verify", body, Duration::from_secs(60))?,
        None => {
            let ledger = open_for_mesh(cli, "ask across the mesh", cli.durability())?;
            let rt = runtime()?;
            rt.block_on(async {
                let node = load_node(cli, ledger, "127.0.0.1:0", NodeConfig::default())?;
                let answer = node.remote_verify(&dest, body.seq, expect).await;
                node.close().await;
                let answer = answer.map_err(|e| anyhow!(e))?;
                Ok::<_, anyhow::Error>(onoal_mesh::http::RemoteVerifyView::from(&answer))
            })?
        }
    };
    let verdict = serde_json::to_value(view.verdict)?.as_str().unwrap_or_default().to_owned();
    print(cli, json!(view), || {
        let mut out = format!(
            "{verdict}: entry {} of {} ({}), stated and signed by it over its checkpoint of size {}; checked by {} ({} hops: {})",
            view.seq,
            view.oid,
            view.ledger_id,
            view.tree_size,
            view.checked_by,
            view.hops,
            view.path.join(" -> ")
        );
        let c = serde_json::to_value(view.checks).unwrap_or_default();
        if let Some(map) = c.as_object() {
            for (field, ok) in map.iter().filter(|(_, v)| !v.is_null()) {
                let mark = if ok.as_bool() == Some(true) { "ok" } else { "DIFFERS" };
                out.push_str(&format!("\n  {field:<17} {mark}"));
            }
        }
        out
    });
    Ok(if view.verdict == onoal_mesh::proto::routed::Verdict::Match {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) fn topology(cli: &Cli, dot: bool, svg: Option<&std::path::Path>) -> Result<()> {
    let node = running_node(cli)?.ok_or_else(|| {
        anyhow!(
            "topology is the running node's view: start it with `onoal serve --data {}`",
            cli.data.display()
        )
    })?;
    let t: Topology = node.get("/mesh/topology")?;
    let label = |n: &onoal_mesh::http::TopologyNode| {
        let short = n.ledger_id.get(..8).unwrap_or(&n.ledger_id);
        format!("{} {short}", n.oid.as_deref().unwrap_or(""))
    };
    if let Some(path) = svg {
        std::fs::write(path, topology_svg(&t, &label))
            .with_context(|| format!("cannot write the SVG to {}", path.display()))?;
    }
    if dot {
        let mut out =
            String::from("digraph mesh {\n  node [shape=ellipse, fontname=\"sans-serif\"];\n");
        for n in &t.nodes {
            let color = match (n.role.as_str(), n.status.as_deref()) {
                ("self", _) => "black",
                (_, Some("connected")) => "darkgreen",
                (_, Some("disconnected" | "left")) => "red",
                ("discovered", _) => "gray",
                _ => "blue",
            };
            let latency = n.latency_ms.map(|l| format!("\\n{l} ms")).unwrap_or_default();
            out.push_str(&format!(
                "  \"{}\" [label=\"{}{latency}\", color={color}];\n",
                n.ledger_id,
                label(n).trim()
            ));
        }
        for e in &t.edges {
            let style = if e.kind.starts_with("discovered") { "dashed" } else { "solid" };
            out.push_str(&format!(
                "  \"{}\" -> \"{}\" [label=\"{}\", style={style}];\n",
                e.from, e.to, e.kind
            ));
        }
        out.push_str("}\n");
        print!("{out}");
        return Ok(());
    }
    print(cli, json!(t), || {
        let mut out = format!(
            "{:<36}  {:<10}  {:<28}  {:<12}  {}",
            "LEDGER", "ROLE", "OID", "STATUS", "LATENCY"
        );
        for n in &t.nodes {
            out.push_str(&format!(
                "\n{:<36}  {:<10}  {:<28}  {:<12}  {}",
                n.ledger_id,
                n.role,
                n.oid.as_deref().unwrap_or("-"),
                n.status.as_deref().unwrap_or("-"),
                n.latency_ms.map_or("-".to_owned(), |l| format!("{l} ms"))
            ));
        }
        out.push_str(&format!("\n{} links", t.edges.len()));
        out
    });
    Ok(())
}

fn topology_svg(t: &Topology, label: &dyn Fn(&onoal_mesh::http::TopologyNode) -> String) -> String {
    let (w, h, r) = (640.0_f64, 480.0_f64, 180.0_f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let others: Vec<&onoal_mesh::http::TopologyNode> =
        t.nodes.iter().filter(|n| n.role != "self").collect();
    let mut pos = std::collections::HashMap::new();
    for n in &t.nodes {
        if n.role == "self" {
            pos.insert(n.ledger_id.clone(), (cx, cy));
        }
    }
    for (i, n) in others.iter().enumerate() {
        let a = 2.0 * std::f64::consts::PI * i as f64 / others.len().max(1) as f64
            - std::f64::consts::FRAC_PI_2;
        pos.insert(n.ledger_id.clone(), (cx + r * a.cos(), cy + r * a.sin()));
    }
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    for e in &t.edges {
        if let (Some(a), Some(b)) = (pos.get(&e.from), pos.get(&e.to)) {
            let dash =
                if e.kind.starts_with("discovered") { r#" stroke-dasharray="4 3""# } else { "" };
            out.push_str(&format!(
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#9aa3b2" stroke-width="2"{dash}/>"##,
                a.0, a.1, b.0, b.1
            ));
        }
    }
    for n in &t.nodes {
        let Some((x, y)) = pos.get(&n.ledger_id) else { continue };
        let fill = match (n.role.as_str(), n.status.as_deref()) {
            ("self", _) => "#1d2330",
            (_, Some("connected")) => "#1b7f3b",
            (_, Some("disconnected" | "left")) => "#b3261e",
            _ => "#3b6fd4",
        };
        let latency = n.latency_ms.map(|l| format!(" {l} ms")).unwrap_or_default();
        out.push_str(&format!(
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="10" fill="{fill}"/><text x="{:.1}" y="{:.1}">{}{latency}</text>"#,
            x + 13.0,
            y - 12.0,
            label(n).trim().replace('&', "&amp;").replace('<', "&lt;")
        ));
    }
    out.push_str("</svg>");
    out
}
