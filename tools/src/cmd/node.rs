//! `status` and `watch` (a running node), `completions` and `man`.

use std::io::Write as _;

use anyhow::{Result, anyhow, bail};
use clap::CommandFactory as _;
use onoal_mesh::control::{Event, StatusView};
use serde_json::json;

use crate::cli::Cli;
use crate::client::{NodeFile, running_node};
use crate::output::print;

pub(crate) fn no_node(cli: &Cli) -> anyhow::Error {
    crate::output::Failure {
        kind: "not_running".into(),
        message: format!("no node is running on {} (no node.json there)", cli.data.display()),
        hint: Some(format!("start one with onoal --data {} serve", cli.data.display())),
    }
    .into()
}

pub(crate) fn status(cli: &Cli) -> Result<()> {
    let node = running_node(cli)?.ok_or_else(|| no_node(cli))?;
    let s: StatusView = node.get("/status")?;
    print(cli, json!(s), || {
        let mut out = format!(
            "ledger {} ({})\nentries {}  checkpoint {}  root {}\nQUIC {}  up {:.0} s\npeers {}  connections {}  replicas {}",
            s.ledger_id,
            s.oid,
            s.tree_size,
            s.checkpoint_size.map_or("none".to_owned(), |c| c.to_string()),
            s.root,
            s.quic_addr,
            s.uptime_seconds,
            s.peers,
            s.connections,
            s.replicas
        );
        for f in &s.follows {
            out.push_str(&format!(
                "\nfollows {}: {} syncs, held {}{}",
                f.ledger_id,
                f.syncs,
                f.last.as_ref().map_or(0, |l| l.to_size),
                f.stopped.as_ref().map(|e| format!(", STOPPED: {e}")).unwrap_or_default()
            ));
        }
        out
    });
    Ok(())
}

/// One line of `watch` output.
fn human(e: &Event) -> String {
    match e {
        Event::Entry { seq, stream, entry_type, leaf_hash, .. } => {
            format!("entry {seq} {stream} {entry_type} {leaf_hash}")
        }
        Event::Checkpoint { size, .. } => format!("checkpoint {size}"),
        Event::Replica { ledger_id, from_size, to_size, checkpoint_size } => {
            format!("replica {ledger_id} {from_size} -> {to_size} (checkpoint {checkpoint_size})")
        }
        Event::Peer { ledger_id, state, detail } => match detail {
            Some(d) => format!("peer {ledger_id} {state}: {d}"),
            None => format!("peer {ledger_id} {state}"),
        },
        Event::Lagged { missed } => format!("lagged: {missed} peer/replica events missed"),
    }
}

pub(crate) fn watch(cli: &Cli, stream: Option<&str>, from: Option<u64>) -> Result<()> {
    let file = NodeFile::read_running(&cli.data)?.ok_or_else(|| no_node(cli))?;
    let addr = file
        .http_addr
        .clone()
        .ok_or_else(|| anyhow!("the running node serves no HTTP API (--no-http)"))?;
    if file.tls_cert.is_some() {
        bail!(
            "onoal watch speaks plain WebSocket to a loopback API; this node's API is TLS: use its dashboard or a WebSocket client with its certificate"
        );
    }
    let mut query = Vec::new();
    if let Some(l) = &cli.ledger {
        query.push(format!("ledger={l}"));
    }
    if let Some(s) = stream {
        query.push(format!("stream={s}"));
    }
    if let Some(f) = from {
        query.push(format!("from={f}"));
    }
    if let Some(t) = &file.token_file {
        let token = std::fs::read_to_string(t)?;
        query.push(format!("access_token={}", token.trim()));
    }
    let url = format!("ws://{addr}/ledger/watch?{}", query.join("&"));
    let (mut socket, _) = tungstenite::connect(&url)
        .map_err(|e| anyhow!("cannot open the node's feed at ws://{addr}/ledger/watch: {e}"))?;
    let mut out = std::io::stdout().lock();
    loop {
        let message = socket.read().map_err(|e| anyhow!("the node's feed ended: {e}"))?;
        let text = match message {
            tungstenite::Message::Text(t) => t,
            tungstenite::Message::Close(_) => return Ok(()),
            _ => continue,
        };
        if cli.json {
            writeln!(out, "{}", text.as_str())?;
        } else {
            let e: Event = serde_json::from_str(text.as_str())
                .map_err(|e| anyhow!("the node sent an event this CLI does not know: {e}"))?;
            writeln!(out, "{}", human(&e))?;
        }
        // A closed pipe (| head) ends the command quietly.
        if out.flush().is_err() {
            return Ok(());
        }
    }
}

pub(crate) fn completions(shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut Cli::command(), "onoal", &mut std::io::stdout());
}

pub(crate) fn man() -> Result<()> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(())
}
