//! `onoal trust`: this ledger's trust decisions, through the running node (its API) or, when
//! none runs, in the `trust` table directly.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use onoal_engine::time::now_ms;
use onoal_mesh::http::{TrustList, TrustShow, VisibilityShow};
use onoal_mesh::trust::store::TrustStore;
use onoal_mesh::trust::visibility::Visibility;
use serde_json::json;

use crate::cli::{AnchorCommand, Cli, StreamCommand, TrustCommand};
use crate::client::running_node;
use crate::cmd::ledger::open_write_with;
use crate::cmd::mesh::resolve_ledger_id;
use crate::output::print;

pub(crate) fn run(cli: &Cli, what: &TrustCommand) -> Result<()> {
    if let TrustCommand::Path { from, to } = what {
        let (from, to) = (resolve_ledger_id(cli, from)?, resolve_ledger_id(cli, to)?);
        if let Some(node) = running_node(cli)? {
            let shown: TrustShow = node.get(&format!("/mesh/trust/path/{from}/{to}"))?;
            return show_one(cli, &shown);
        }
        return show_one(cli, &offline_store(cli)?.path(from, to, now_ms()).into());
    }
    if let TrustCommand::Set { level, .. } = what {
        onoal_mesh::trust::check_level(*level)?;
    }
    let id = match what {
        TrustCommand::Set { ledger_id, .. }
        | TrustCommand::Show { ledger_id }
        | TrustCommand::Anchor { what: AnchorCommand::Add { ledger_id } }
        | TrustCommand::Anchor { what: AnchorCommand::Remove { ledger_id } } => {
            Some(resolve_ledger_id(cli, ledger_id)?)
        }
        TrustCommand::List | TrustCommand::Path { .. } => None,
    };
    let id_text = id.map(|i| i.to_string()).unwrap_or_default();
    let expires =
        |secs: &Option<u64>| secs.map(|s| now_ms().saturating_add(s.saturating_mul(1000)));
    if let Some(node) = running_node(cli)? {
        let limit = Duration::from_secs(10);
        match what {
            TrustCommand::List => {
                let list: TrustList = node.get("/mesh/trust")?;
                return show_list(cli, &list);
            }
            TrustCommand::Set { level, reason, expires_in_s, .. } => {
                let body = json!({ "ledger_id": id.map(|i| i.to_string()), "level": level,
                    "reason": reason, "expires_ms": expires(expires_in_s) });
                let shown: TrustShow = node.post("/mesh/trust", &body, limit)?;
                return show_one(cli, &shown);
            }
            TrustCommand::Show { .. } => {
                let shown: TrustShow = node.get(&format!("/mesh/trust/{id_text}"))?;
                return show_one(cli, &shown);
            }
            TrustCommand::Anchor { what: AnchorCommand::Add { .. } } => {
                let body = json!({ "ledger_id": id.map(|i| i.to_string()) });
                let shown: TrustShow = node.post("/mesh/trust/anchors", &body, limit)?;
                return show_one(cli, &shown);
            }
            TrustCommand::Anchor { what: AnchorCommand::Remove { .. } } => {
                let path = format!("/mesh/trust/anchors/{id_text}");
                let shown: TrustShow = node.delete(&path)?;
                return show_one(cli, &shown);
            }
            TrustCommand::Path { .. } => {}
        }
    }
    let store = offline_store(cli)?;
    let now = now_ms();
    match what {
        TrustCommand::List => {
            let mut trusted: Vec<TrustShow> = store
                .graph(now)
                .derive(now, onoal_mesh::trust::DEFAULT_MAX_DEPTH)
                .into_keys()
                .map(|i| store.show(i, now).into())
                .collect();
            trusted.sort_by(|a, b| {
                b.level.total_cmp(&a.level).then_with(|| a.ledger_id.cmp(&b.ledger_id))
            });
            let anchors = store.anchors().iter().map(ToString::to_string).collect();
            show_list(cli, &TrustList { anchors, trusted })
        }
        other => {
            let id = id.ok_or_else(|| anyhow!("give a ledger id"))?;
            match other {
                TrustCommand::Set { level, reason, expires_in_s, .. } => {
                    store.set(id, *level, reason.clone(), expires(expires_in_s), now)?;
                }
                TrustCommand::Anchor { what: AnchorCommand::Add { .. } } => {
                    store.set_anchor(id, true)?;
                }
                TrustCommand::Anchor { what: AnchorCommand::Remove { .. } } => {
                    store.set_anchor(id, false)?;
                }
                _ => {}
            }
            show_one(cli, &store.show(id, now).into())
        }
    }
}

/// `onoal stream visibility`: through the running node, or in the `trust` table.
pub(crate) fn stream(cli: &Cli, what: &StreamCommand) -> Result<()> {
    let StreamCommand::Visibility { stream, visibility, default } = what;
    let change: Option<(Option<&str>, Visibility)> = match (stream, visibility, default) {
        (None, None, None) => None,
        (None, None, Some(v)) => Some((None, v.parse()?)),
        (Some(s), Some(v), None) => {
            onoal_mesh::trust::visibility::check_stream(s)?;
            Some((Some(s.as_str()), v.parse()?))
        }
        (Some(_), None, _) => {
            anyhow::bail!(
                "give the visibility too: onoal stream visibility STREAM private|public|trusted:T"
            )
        }
        _ => anyhow::bail!("give STREAM VISIBILITY, or --default VISIBILITY"),
    };
    if let Some(node) = running_node(cli)? {
        let shown: VisibilityShow = match change {
            None => node.get("/mesh/visibility")?,
            Some((s, v)) => {
                let body = json!({ "stream": s, "visibility": v.to_string() });
                node.post("/mesh/visibility", &body, Duration::from_secs(10))?
            }
        };
        return show_policy(cli, &shown);
    }
    let store = offline_store(cli)?;
    let policy = match change {
        None => store.policy(&store.me()),
        Some((s, v)) => store.set_visibility(s, v, now_ms())?,
    };
    show_policy(cli, &policy.into())
}

/// The trust table of the ledger in `--data`, when no node runs.
fn offline_store(cli: &Cli) -> Result<TrustStore> {
    let ledger = Arc::new(open_write_with(cli, cli.durability())?);
    let peers = onoal_mesh::peer::PeerStore::open(ledger.clone())?;
    let key =
        onoal_engine::identity::SecretKey::read_file(&onoal_engine::identity::key_path(&cli.data))?;
    Ok(TrustStore::open(ledger, peers, key.signing_key().clone())?)
}

fn show_policy(cli: &Cli, p: &VisibilityShow) -> Result<()> {
    print(cli, json!(p), || {
        let mut out = format!(
            "{:<24}  {}\n{:<24}  {}",
            "STREAM", "VISIBILITY", "(every other stream)", p.default
        );
        for s in &p.streams {
            out.push_str(&format!("\n{:<24}  {}", s.stream, s.visibility));
        }
        out.push_str(&format!("\npolicy version {} of ledger {}", p.version, p.ledger_id));
        out
    });
    Ok(())
}

fn show_one(cli: &Cli, t: &TrustShow) -> Result<()> {
    print(cli, json!(t), || {
        let path = if t.path.is_empty() { "no path".to_owned() } else { t.path.join(" > ") };
        let mut out = format!("{}  {:.3}  {}\n  path: {path}", t.ledger_id, t.level, t.kind);
        if let Some(l) = t.direct_level {
            out.push_str(&format!("\n  own level: {l:.3}"));
            if let Some(r) = &t.reason {
                out.push_str(&format!(" ({r})"));
            }
        }
        if t.anchor {
            out.push_str("\n  anchor");
        }
        if let Some(e) = t.expires_ms {
            out.push_str(&format!("\n  expires at {e} ms"));
        }
        out
    });
    Ok(())
}

fn show_list(cli: &Cli, list: &TrustList) -> Result<()> {
    print(cli, json!(list), || {
        if list.trusted.is_empty() {
            return "no ledger trusted yet: `onoal trust set LEDGER_ID LEVEL` or `onoal trust anchor add LEDGER_ID`".to_owned();
        }
        let mut out = format!("{:<36}  {:>5}  {:<12}  {}", "LEDGER", "LEVEL", "KIND", "HOPS");
        for t in &list.trusted {
            out.push_str(&format!(
                "\n{:<36}  {:>5.3}  {:<12}  {}",
                t.ledger_id,
                t.level,
                t.kind,
                t.path.len().saturating_sub(1)
            ));
        }
        out
    });
    Ok(())
}
