//! `onoal verify`: the full audit, with progress on a terminal; exit 1 with the evidence when
//! anything is off.

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

pub(crate) fn run(cli: &Cli, require_checkpoint: bool) -> Result<ExitCode> {
    let (db, ledger) = match read_log(cli) {
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
    // A replica whose origin signed two histories is not sound, however sound its entries.
    if ledger.is_replica() {
        let id = ledger.identity().ledger_id;
        let record =
            if ledger.is_sparse() { db.sparse_sync_record(&id)? } else { db.sync_record(&id)? };
        if let Some(fork) = record.and_then(|r| r.fork) {
            let e = format!(
                "the replica of {id} forked: {}; its key signed two histories (held checkpoint:\n{}received checkpoint:\n{}); `onoal forks --json` has the evidence",
                fork.reason, fork.held, fork.received
            );
            return Ok(failed(cli, &e));
        }
    }
    let total = ledger.head()?.size;
    let bar = crate::output::progress(cli, Some(total), "entries", "verifying");
    let started = std::time::Instant::now();
    let result = ledger.verify(&|p| bar.set_position(p.entries_done));
    // Entries beyond the newest signed checkpoint are sound here but checkable by no one else.
    // (Read only after a sound audit: a damaged note is the audit's to report.)
    let signed = match &result {
        Ok(_) => ledger.latest_checkpoint()?.map_or(0, |c| c.size),
        Err(_) => 0,
    };
    bar.finish_and_clear();
    match result {
        Ok(r) if signed < r.entries && require_checkpoint => {
            Ok(failed(cli, &unsigned(signed, r.entries)))
        }
        Ok(r) => {
            let secs = started.elapsed().as_secs_f64();
            let v = json!({
                "ok": true,
                "entries": r.entries,
                "tiles": r.tiles,
                "checkpoints": r.checkpoints,
                "root": r.root.to_hex(),
                "seconds": secs,
                "signed_size": signed,
            });
            print(cli, v, || {
                let mut s = format!(
                    "ledger is sound: {} entries, {} tiles, {} checkpoints verified in {:.2} s; root {}",
                    r.entries, r.tiles, r.checkpoints, secs, r.root
                );
                if signed < r.entries {
                    s.push_str(&format!(
                        "\nnote: {} (--require-checkpoint makes this an error)",
                        unsigned(signed, r.entries)
                    ));
                }
                s
            });
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Read(e)) => Err(e.into()),
        Err(e) => Ok(failed(cli, &e)),
    }
}

fn unsigned(signed: u64, entries: u64) -> String {
    if signed == 0 {
        format!(
            "none of the {entries} entries is in a signed checkpoint yet, so others cannot check them; sign one with `onoal checkpoint`"
        )
    } else {
        format!(
            "entries {signed} to {} are in no signed checkpoint yet (the newest covers {signed}); sign one with `onoal checkpoint`",
            entries - 1
        )
    }
}
