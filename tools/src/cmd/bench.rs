//! `onoal bench`: the workloads of `onoal-benches`, each next to its same-run baseline.

use anyhow::{Result, anyhow};

use crate::cli::{BenchCommand, Cli};

pub(crate) fn run(cli: &Cli, what: &BenchCommand) -> Result<()> {
    let report = match what {
        BenchCommand::Append { entries, payload, batch, writers } => {
            onoal_benches::append(&onoal_benches::AppendParams {
                entries: *entries,
                payload: *payload,
                batch: (*batch).max(1),
                durability: cli.durability(),
                writers: *writers,
            })
        }
        BenchCommand::Proof { entries, proofs, dir } => {
            onoal_benches::proof(*entries, dir.as_deref(), (*proofs).max(100))
        }
        BenchCommand::Verify { entries, dir } => onoal_benches::verify(*entries, dir.as_deref()),
        BenchCommand::Sync { entries } => onoal_benches::sync((*entries).max(1)),
        BenchCommand::Http(a) | BenchCommand::Grpc(a) => {
            let run = if matches!(what, BenchCommand::Http(_)) {
                onoal_benches::http
            } else {
                onoal_benches::grpc
            };
            run(a.entries.max(1), a.payload, a.batch.clamp(1, 100_000), cli.durability())
        }
        BenchCommand::Open { entries, dir } => onoal_benches::open(*entries, dir.as_deref()),
        BenchCommand::Trust { nodes, edges, seed } => onoal_benches::trust(*nodes, *edges, *seed),
        BenchCommand::Route { hops, queries } => onoal_benches::route(hops, *queries),
    }
    .map_err(|e| anyhow!("benchmark failed: {e}"))?;
    if cli.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
