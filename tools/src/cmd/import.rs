//! `onoal import`: JSON Lines in, groups submitted with up to four in flight, acks printed as
//! each group becomes durable.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{Context as _, Result, anyhow, bail};
use onoal_engine::NewEntry;
use serde_json::json;

use crate::cli::Cli;
use crate::cmd::ledger::open_write;
use crate::output::one_line;

pub(crate) fn run(cli: &Cli, file: &str, ack: bool, batch: usize) -> Result<()> {
    let input: Box<dyn std::io::BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?,
        ))
    };
    let ledger = open_write(cli)?;
    let max_payload = ledger.max_payload_bytes();
    let bar = if std::io::stderr().is_terminal() && !ack {
        indicatif::ProgressBar::new_spinner().with_message("importing")
    } else {
        indicatif::ProgressBar::hidden()
    };
    // The reader parses and submits groups; the acker waits for each group in order and
    // prints its ack as soon as it is durable. Up to IN_FLIGHT groups are in flight, so parsing
    // overlaps hashing and fsync.
    const IN_FLIGHT: usize = 4;
    let (pending_tx, pending_rx) =
        crossbeam_channel::bounded::<onoal_engine::PendingAppend>(IN_FLIGHT);
    let (summary, read_result) = std::thread::scope(|scope| {
        let acker = scope.spawn(|| -> Result<(u64, Option<u64>, Option<u64>)> {
            let mut stdout = std::io::stdout().lock();
            let (mut appended, mut first_seq, mut last_seq) = (0u64, None::<u64>, None::<u64>);
            for p in pending_rx {
                let receipts = p.wait()?;
                if let (Some(f), Some(l)) = (receipts.first(), receipts.last()) {
                    first_seq.get_or_insert(f.seq);
                    last_seq = Some(l.seq);
                    appended += receipts.len() as u64;
                    bar.set_position(appended);
                    if ack {
                        writeln!(stdout, "acked {}", l.seq)?;
                        stdout.flush()?;
                    }
                }
            }
            Ok((appended, first_seq, last_seq))
        });
        let read_result = (|| -> Result<()> {
            let mut pending = Vec::with_capacity(batch);
            let submit = |pending: &mut Vec<NewEntry>| -> Result<()> {
                if !pending.is_empty() {
                    let p = ledger.submit_batch(std::mem::take(pending))?;
                    pending_tx.send(p).map_err(|_| anyhow!("the acknowledging thread stopped"))?;
                }
                Ok(())
            };
            for (i, line) in input.lines().enumerate() {
                let lineno = i + 1;
                let line = line.with_context(|| format!("cannot read line {lineno}"))?;
                if line.trim().is_empty() {
                    continue;
                }
                match onoal_engine::import::parse_line(&line, max_payload) {
                    Ok(e) => pending.push(e),
                    Err(e) => {
                        // Everything before the bad line is kept; nothing after it is read.
                        submit(&mut pending)?;
                        return Err(anyhow!("line {lineno}: {e}"));
                    }
                }
                if pending.len() >= batch {
                    submit(&mut pending)?;
                }
            }
            submit(&mut pending)
        })();
        drop(pending_tx);
        let summary =
            acker.join().unwrap_or_else(|_| Err(anyhow!("the acknowledging thread panicked")));
        (summary, read_result)
    });
    let (appended, first_seq, last_seq) = summary?;
    if let Err(e) = read_result {
        bar.finish_and_clear();
        bail!(
            "{}; entries before it were appended (last seq {}), nothing after it",
            one_line(&e),
            last_seq.map_or("none".to_string(), |s| s.to_string())
        );
    }
    let mut stdout = std::io::stdout().lock();
    bar.finish_and_clear();
    let tree_size = ledger.head()?.size;
    let v = json!({
        "appended": appended,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "tree_size": tree_size,
    });
    if cli.json || ack {
        writeln!(stdout, "{v}")?;
    } else {
        writeln!(stdout, "appended {appended} entries; tree size {tree_size}")?;
    }
    Ok(())
}
