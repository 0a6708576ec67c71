//! `onoal asset register|find|verify|list`: registered assets (the seed's use case 3;
//! docs/design/mesh.md, "Asset registry").

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use onoal_mesh::net::{AssetView, HeldAsset, RegistrationView};

use crate::cli::Cli;
use crate::client::running_node;
use crate::cmd::node::no_node;
use crate::output::{Failure, print, table};

/// Registers an asset through the running node.
pub(crate) fn register(cli: &Cli, id: &str, owner: Option<&str>, meta: Option<&str>) -> Result<()> {
    let meta: Option<serde_json::Value> = match meta {
        Some(m) => Some(serde_json::from_str(m).map_err(|e| Failure {
            kind: "usage".into(),
            message: format!("--meta is not JSON: {e}"),
            hint: Some(r#"for example --meta '{"vin":"WVW123"}'"#.into()),
        })?),
        None => None,
    };
    let node = running_node(cli)?.ok_or_else(|| no_node(cli))?;
    let body = json!({"id": id, "owner": owner, "meta": meta});
    let r: RegistrationView = node.post("/assets", &body, Duration::from_secs(60))?;
    print(cli, json!(r), || {
        format!(
            "registered {} owned by {} (entry {}, {})\nannounced in the DHT and the registry within a second; `onoal asset find --id {}` finds it",
            r.asset, r.owner, r.seq, r.reference, r.asset
        )
    });
    Ok(())
}

/// Finds (and with `proof`, shows the proof of) an asset's owner; fails unless one owner is
/// proven.
pub(crate) fn find(cli: &Cli, id: &str, wait_ms: u64, proof: bool) -> Result<()> {
    let node = running_node(cli)?.ok_or_else(|| no_node(cli))?;
    let v: AssetView = node.get(&format!("/assets/{id}?wait_ms={wait_ms}"))?;
    if !v.verified {
        if !cli.json {
            eprintln!("{}", claims_table(&v));
        }
        let message = if v.contested {
            format!("asset {id} is contested: two claims prove different owners")
        } else {
            let why = v.claims.iter().find_map(|c| c.reason.clone()).unwrap_or_default();
            format!("no claim of asset {id} holds: {why}")
        };
        return Err(Failure {
            kind: "asset_unverified".into(),
            message,
            hint: Some(format!("onoal asset verify --id {id} --json shows every claim")),
        }
        .into());
    }
    print(cli, json!(v), || if proof { proof_text(&v) } else { owner_line(&v) });
    Ok(())
}

fn owner_line(v: &AssetView) -> String {
    format!(
        "{} is owned by {} ({}), proven: registered {}, {} hand-over(s)",
        v.asset,
        v.owner_oid.as_deref().unwrap_or("?"),
        v.owner.as_deref().unwrap_or("?"),
        v.registration.as_ref().map_or("?", |r| r.reference.as_str()),
        v.hops.len()
    )
}

fn proof_text(v: &AssetView) -> String {
    let mut s = owner_line(v);
    if let Some(r) = &v.registration {
        s.push_str(&format!(
            "\nregistration (proven in {}'s signed checkpoint): entry {} owner {}{}\n",
            r.ledger,
            r.seq,
            r.owner,
            r.meta.as_ref().map_or_else(String::new, |m| format!(" meta {m}"))
        ));
    }
    if !v.hops.is_empty() {
        let rows: Vec<Vec<String>> = v
            .hops
            .iter()
            .map(|h| {
                vec![
                    h.transfer.clone(),
                    h.from.clone(),
                    h.to.clone(),
                    h.commit.split(':').nth(1).unwrap_or("?").to_owned(),
                    h.credit
                        .as_deref()
                        .and_then(|c| c.split(':').nth(1))
                        .unwrap_or("not yet")
                        .to_owned(),
                ]
            })
            .collect();
        s.push_str(&table(&["TRANSFER", "FROM", "TO", "COMMIT SEQ", "CREDIT SEQ"], &rows));
    }
    s.push_str(&claims_table(v));
    s
}

fn claims_table(v: &AssetView) -> String {
    let rows: Vec<Vec<String>> = v
        .claims
        .iter()
        .map(|c| {
            vec![
                c.oid.clone(),
                c.source.clone(),
                c.outcome.clone(),
                c.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["CLAIMED BY", "FOUND IN", "OUTCOME", "WHY"], &rows)
}

/// The registered assets this ledger holds.
pub(crate) fn list(cli: &Cli) -> Result<()> {
    let node = running_node(cli)?.ok_or_else(|| no_node(cli))?;
    let all: Vec<HeldAsset> = node.get("/assets")?;
    print(cli, json!(all), || {
        if all.is_empty() {
            return "no registered assets held (onoal asset register --id ID)".into();
        }
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|a| {
                vec![
                    a.asset.clone(),
                    a.registration.as_ref().map_or_else(
                        || "received".to_owned(),
                        |r| format!("registered here, entry {}", r.seq),
                    ),
                ]
            })
            .collect();
        table(&["ASSET", "HOW"], &rows)
    });
    Ok(())
}
