//! `onoal witness info`: the node as a witness (C2SP tlog-witness).

use anyhow::Result;
use serde_json::json;

use onoal_engine::time::now_ms;
use onoal_mesh::net::WitnessInfo;

use crate::cli::Cli;
use crate::client::running_node;
use crate::cmd::ledger::read_log;
use crate::output::{ago, print, table};

/// Through the running node: everything; without one: the key's name and vkey (the key is
/// created when missing, as `serve` would).
pub(crate) fn info(cli: &Cli) -> Result<()> {
    let info: WitnessInfo = match running_node(cli)? {
        Some(node) => node.get("/witness")?,
        None => {
            let (ledger, _) = read_log(cli)?;
            let oid = ledger.identity().oid.as_str().to_owned();
            drop(ledger);
            let cosigner = crate::cmd::serve::witness_cosigner(&cli.data, &oid)?;
            let v = cosigner.verifier();
            WitnessInfo {
                name: v.name().to_owned(),
                vkey: v.to_vkey(),
                witnessed: Vec::new(),
                evidence: Vec::new(),
                own: None,
            }
        }
    };
    print(cli, json!(info), || human(&info));
    Ok(())
}

/// Through the running node, else straight in the data directory.
pub(crate) fn drop_evidence(cli: &Cli, origin: &str) -> Result<()> {
    let dropped = match running_node(cli)? {
        Some(node) => {
            let path = format!("/witness/evidence?origin={}", urlencoding(origin));
            let v: serde_json::Value = node.delete(&path)?;
            v["dropped"].as_u64().unwrap_or_default()
        }
        None => {
            let ledger = crate::cmd::ledger::open_write(cli)?;
            let n = onoal_mesh::net::drop_evidence(&ledger, origin).map_err(anyhow::Error::msg)?;
            if n == 0 {
                return Err(crate::output::Failure {
                    kind: "not_found".into(),
                    message: format!("no split-view evidence about {origin}"),
                    hint: Some("onoal witness info lists what is held".into()),
                }
                .into());
            }
            n as u64
        }
    };
    print(cli, json!({"origin": origin, "dropped": dropped}), || {
        format!("dropped {dropped} piece(s) of split-view evidence about {origin}")
    });
    Ok(())
}

/// An OID in a query string (its `:` are fine; nothing else needs escaping in an OID).
fn urlencoding(oid: &str) -> String {
    oid.replace('%', "%25").replace('&', "%26").replace('+', "%2B").replace(' ', "%20")
}

fn human(info: &WitnessInfo) -> String {
    let now = now_ms();
    let mut s = format!("witness {}\nvkey    {}\n", info.name, info.vkey);
    if info.witnessed.is_empty() {
        s.push_str("\nwitnessed no log yet\n");
    } else {
        let rows: Vec<Vec<String>> = info
            .witnessed
            .iter()
            .map(|w| {
                vec![
                    w.origin.clone(),
                    w.tree_size.to_string(),
                    w.root[..16].to_owned(),
                    ago(w.cosigned_ms, now),
                ]
            })
            .collect();
        s.push_str(&format!("\n{}", table(&["LOG", "COSIGNED SIZE", "ROOT", "WHEN"], &rows)));
    }
    for e in &info.evidence {
        s.push_str(&format!(
            "\nSPLIT VIEW of {} ({}), {}: {}\n",
            e.origin,
            if e.proven { "proven" } else { "not proven: the log's proof failed" },
            ago(e.detected_ms, now),
            e.reason
        ));
    }
    if let Some(own) = &info.own {
        s.push_str(&format!(
            "\nthis ledger's witnesses (quorum {}, published size {}):\n",
            own.quorum,
            own.published_size.map_or("none yet".to_owned(), |p| p.to_string())
        ));
        let rows: Vec<Vec<String>> = own
            .witnesses
            .iter()
            .map(|w| {
                vec![
                    w.ledger_id.clone(),
                    w.cosigned_size.to_string(),
                    w.latency_ms.map_or("-".into(), |l| format!("{l:.1} ms")),
                    w.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        s.push_str(&table(&["WITNESS", "COSIGNED SIZE", "LATENCY", "LAST ERROR"], &rows));
    }
    s
}
