//! `onoal mint`, `onoal balance`, `onoal transfer start|status|list`: two-phase token
//! transfers between ledgers (the seed's use case 2; docs/design/mesh.md, "Transfers").

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use onoal_engine::time::now_ms;
use onoal_mesh::net::{StepView, TransferView};
use onoal_mesh::transfer::Balance;

use crate::cli::Cli;
use crate::client::running_node;
use crate::cmd::ledger::read_log;
use crate::cmd::node::no_node;
use crate::output::{Failure, ago, print, table};

/// Mints through the running node (its book follows), else straight into the log.
pub(crate) fn mint(cli: &Cli, asset: &str, amount: u64) -> Result<()> {
    let (seq, balance) = match running_node(cli)? {
        Some(node) => {
            let v: serde_json::Value = node.post(
                "/tokens/mint",
                &json!({"asset": asset, "amount": amount}),
                Duration::from_secs(60),
            )?;
            let seq = v["seq"].as_u64().unwrap_or_default();
            (seq, serde_json::from_value::<Balance>(v["balance"].clone())?)
        }
        None => {
            let entry = onoal_mesh::transfer::mint_entry(asset, amount).map_err(usage)?;
            let ledger = crate::cmd::ledger::open_write(cli)?;
            let r = ledger.append(entry)?;
            let book = onoal_mesh::transfer::load_book(&ledger).map_err(anyhow::Error::msg)?;
            let b = book.balances().into_iter().find(|b| b.asset == asset).unwrap_or_default();
            (r.seq, b)
        }
    };
    print(cli, json!({"seq": seq, "balance": balance}), || {
        format!("minted {amount} {asset} (entry {seq}); available {}", balance.available)
    });
    Ok(())
}

fn usage(message: String) -> anyhow::Error {
    Failure { kind: "usage".into(), message, hint: None }.into()
}

/// Balances per asset, from the token entries (through the node, or read from the log).
pub(crate) fn balance(cli: &Cli, asset: Option<&str>) -> Result<()> {
    let mut all: Vec<Balance> = match running_node(cli)? {
        Some(node) => node.get("/balance")?,
        None => {
            let (ledger, _) = read_log(cli)?;
            onoal_mesh::transfer::load_book(&ledger).map_err(anyhow::Error::msg)?.balances()
        }
    };
    if let Some(a) = asset {
        all.retain(|b| b.asset == a);
    }
    print(cli, json!(all), || {
        if all.is_empty() {
            return "no tokens on this ledger (onoal mint --asset ID --amount N)".to_owned();
        }
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|b| {
                [
                    &b.asset as &dyn ToString,
                    &b.available,
                    &b.locked,
                    &b.incoming,
                    &b.minted,
                    &b.received,
                    &b.sent,
                ]
                .iter()
                .map(|x| x.to_string())
                .collect()
            })
            .collect();
        table(&["ASSET", "AVAILABLE", "LOCKED", "INCOMING", "MINTED", "RECEIVED", "SENT"], &rows)
    });
    Ok(())
}

/// What `transfer start` asks.
pub(crate) struct Start<'a> {
    pub(crate) to: &'a str,
    pub(crate) asset: &'a str,
    pub(crate) amount: u64,
    pub(crate) id: Option<&'a str>,
    pub(crate) timeout_secs: u64,
    pub(crate) no_wait: bool,
}

/// Starts a transfer through the running node and, unless `no_wait`, follows it until this
/// ledger is done (the source confirmed or unlocked), then shows both sides.
pub(crate) fn start(cli: &Cli, s: &Start<'_>) -> Result<()> {
    let node = running_node(cli)?.ok_or_else(|| no_node(cli))?;
    let body = json!({
        "to": s.to, "asset": s.asset, "amount": s.amount, "id": s.id, "timeout_secs": s.timeout_secs,
    });
    let started: TransferView = node.post("/transfers", &body, Duration::from_secs(60))?;
    if s.no_wait {
        print(cli, json!(started), || human(&started));
        return Ok(());
    }
    // The source is done by the lock's deadline at the latest, plus a last round trip.
    let limit = Duration::from_secs(s.timeout_secs + 30);
    let begun = Instant::now();
    let path = format!("/transfers/{}", started.id);
    let mut v = started;
    while !v.done && begun.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
        v = node.get(&path)?;
    }
    let v: TransferView = node.get(&format!("{path}?peer=true")).unwrap_or(v);
    if v.outcome == "aborted" {
        let why =
            v.steps.iter().find_map(|s| s.reason.clone()).unwrap_or_else(|| "aborted".to_owned());
        if !cli.json {
            eprintln!("{}", human(&v));
        }
        return Err(Failure {
            kind: "transfer_aborted".into(),
            message: format!("transfer {} was aborted: {why}", v.id),
            hint: Some(format!("onoal transfer status {} shows both sides", v.id)),
        }
        .into());
    }
    print(cli, json!(v), || human(&v));
    Ok(())
}

/// One transfer on both sides.
pub(crate) fn status(cli: &Cli, id: &str, local: bool) -> Result<()> {
    let node = running_node(cli)?.ok_or_else(|| no_node(cli))?;
    let v: TransferView = node.get(&format!("/transfers/{id}?peer={}", !local))?;
    print(cli, json!(v), || human(&v));
    Ok(())
}

/// Every transfer of this ledger.
pub(crate) fn list(cli: &Cli) -> Result<()> {
    let node = running_node(cli)?.ok_or_else(|| no_node(cli))?;
    let all: Vec<TransferView> = node.get("/transfers")?;
    print(cli, json!(all), || {
        if all.is_empty() {
            return "no transfers (onoal transfer start --to LEDGER --asset ID --amount N)".into();
        }
        let now = now_ms();
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|v| {
                vec![
                    v.id.clone(),
                    v.role.clone(),
                    format!("{} {}", v.amount, v.asset),
                    if v.role == "source" { v.destination.clone() } else { v.source.clone() },
                    format!("{:?}", v.phase).to_lowercase(),
                    v.steps.first().map_or_else(String::new, |s| ago(s.time_ms, now)),
                ]
            })
            .collect();
        table(&["ID", "ROLE", "AMOUNT", "OTHER LEDGER", "PHASE", "STARTED"], &rows)
    });
    Ok(())
}

fn steps_table(steps: &[StepView]) -> String {
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            vec![
                s.seq.to_string(),
                s.step.clone(),
                s.leaf_hash[..16].to_owned(),
                s.refs.first().map_or_else(|| "-".to_owned(), |r| short_ref(r)),
                s.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["SEQ", "STEP", "LEAF HASH", "ANSWERS", "REASON"], &rows)
}

/// `LEDGER:SEQ:HASH` as `LEDGER…:SEQ`.
fn short_ref(r: &str) -> String {
    let mut parts = r.split(':');
    match (parts.next(), parts.next()) {
        (Some(l), Some(seq)) => format!("{}…:{seq}", &l[..l.len().min(8)]),
        _ => r.to_owned(),
    }
}

fn human(v: &TransferView) -> String {
    let mut s = format!(
        "transfer {}: {} {} from {} to {}\nthis ledger ({}): {} ({})\n{}",
        v.id,
        v.amount,
        v.asset,
        v.source,
        v.destination,
        v.role,
        format!("{:?}", v.phase).to_lowercase(),
        v.outcome,
        steps_table(&v.steps)
    );
    if let Some(e) = &v.last_error {
        s.push_str(&format!("last try: {e}\n"));
    }
    if let Some(p) = &v.peer {
        match (&p.error, p.phase) {
            (Some(e), _) => s.push_str(&format!("other ledger {}: not reached ({e})\n", p.ledger)),
            (None, None) => s.push_str(&format!("other ledger {}: no steps yet\n", p.ledger)),
            (None, Some(phase)) => s.push_str(&format!(
                "other ledger {} (verified by proof): {} ({})\n{}",
                p.ledger,
                format!("{phase:?}").to_lowercase(),
                p.outcome.as_deref().unwrap_or(""),
                steps_table(&p.steps)
            )),
        }
    }
    s
}
