//! `onoal verify`: the full audit, with progress on a terminal; exit 1 with the evidence when
//! anything is off.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Result;
use onoal_engine::{OpenError, VerifyError};
use serde_json::json;

use crate::cli::Cli;
use crate::cmd::ledger::read_log;
use crate::output::print;

/// Prints an audit failure: one JSON object (with `--json`) and the evidence on stderr.
fn failed(cli: &Cli, e: &dyn std::fmt::Display) -> ExitCode {
    if cli.json {
        println!("{}", json!({"ok": false, "error": e.to_string()}));
    }
    eprintln!("verify FAILED: {e}");
    ExitCode::from(1)
}

pub(crate) fn run(cli: &Cli) -> Result<ExitCode> {
    let (_ledger, ledger) = match read_log(cli) {
        Ok(l) => l,
        // Lost or damaged data found while opening is what an audit reports.
        Err(e) => match e.downcast_ref::<OpenError>() {
            Some(
                o @ (OpenError::EntriesLost { .. }
                | OpenError::Diverged { .. }
                | OpenError::StorageDamaged { .. }
                | OpenError::HighWater(_)),
            ) => return Ok(failed(cli, o)),
            _ => return Err(e),
        },
    };
    let total = ledger.head()?.size;
    let bar = if std::io::stderr().is_terminal() && !cli.json {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let result = ledger.verify(&|p| bar.set_position(p.entries_done));
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            let secs = started.elapsed().as_secs_f64();
            let v = json!({
                "ok": true,
                "entries": r.entries,
                "tiles": r.tiles,
                "checkpoints": r.checkpoints,
                "root": r.root.to_hex(),
                "seconds": secs,
            });
            print(cli, v, || {
                format!(
                    "ledger is sound: {} entries, {} tiles, {} checkpoints verified in {:.2} s; root {}",
                    r.entries, r.tiles, r.checkpoints, secs, r.root
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Read(e)) => Err(e.into()),
        Err(e) => Ok(failed(cli, &e)),
    }
}
