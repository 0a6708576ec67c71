//! `onoal bench`: the workloads of `onoal-benches`, each next to its same-run baseline.

use anyhow::{Result, anyhow};

use crate::cli::{BenchCommand, Cli};

pub(crate) fn run(cli: &Cli, what: &BenchCommand) -> Result<()> {
    let running = crate::output::progress(cli, None, "", &format!("running {}", name(what)));
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
        BenchCommand::Witness { checkpoints, witnesses } => {
            onoal_benches::witness(*checkpoints, *witnesses)
        }
        BenchCommand::Transfer { transfers, concurrency } => {
            onoal_benches::transfer(*transfers, *concurrency, cli.durability())
        }
        BenchCommand::Asset { hops, traces } => {
            onoal_benches::asset(*hops, *traces, cli.durability())
        }
    }
    .map_err(|e| anyhow!("benchmark failed: {e}"));
    running.finish_and_clear();
    let report = report?;
    if cli.json {
        println!("{report}");
    } else {
        println!("{}", crate::output::flat_table(&report));
    }
    Ok(())
}

/// The workload's name, for the progress line.
fn name(what: &BenchCommand) -> &'static str {
    match what {
        BenchCommand::Append { .. } => "the append benchmark",
        BenchCommand::Proof { .. } => "the proof benchmark",
        BenchCommand::Verify { .. } => "the audit benchmark",
        BenchCommand::Sync { .. } => "the sync benchmark (two nodes on loopback)",
        BenchCommand::Http(_) => "the HTTP benchmark",
        BenchCommand::Grpc(_) => "the gRPC benchmark",
        BenchCommand::Open { .. } => "the reopen benchmark",
        BenchCommand::Trust { .. } => "the trust benchmark",
        BenchCommand::Route { .. } => "the routing benchmark (a line of nodes)",
        BenchCommand::Witness { .. } => "the witness benchmark",
        BenchCommand::Transfer { .. } => "the transfer benchmark (two nodes on loopback)",
        BenchCommand::Asset { .. } => "the asset registry benchmark (three nodes on loopback)",
    }
}
