//! `onoal import`: JSON Lines in, groups submitted with up to four in flight, acks printed as
//! each group becomes durable, and a checkpoint of what was appended signed before it exits.
//!
//! What it says is exactly what was appended. A line that cannot be used (unreadable, not
//! UTF-8, too long, malformed) stops the import: every valid line before it is appended,
//! nothing after it is read, and the message names the line and the seqs appended.

use std::io::{BufRead, Read as _, Write as _};

use anyhow::{Context as _, Result, anyhow, bail};
use onoal_engine::{NewEntry, PendingAppend};
use serde_json::json;

use std::time::Duration;

use onoal_mesh::control::StatusView;
use onoal_mesh::control::views::{AppendView, CheckpointView};

use crate::cli::Cli;
use crate::client::{NodeClient, running_node};
use crate::cmd::ledger::open_write;
use crate::output::one_line;

/// What the acknowledging thread saw.
#[derive(Default)]
struct Acked {
    appended: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// The first group that failed (nothing of it, or after it, is acknowledged).
    error: Option<anyhow::Error>,
}

/// The longest line accepted: a maximal payload as JSON text escapes (`\uXXXX`, six bytes a
/// byte) or base64, plus the other fields.
fn max_line(max_payload: usize) -> usize {
    max_payload.saturating_mul(6).saturating_add(64 << 10)
}

/// Reads one line of at most `max` bytes (without its newline) into `buf`. `Ok(false)` at the
/// end of the input.
fn read_line_bounded(input: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> Result<bool> {
    buf.clear();
    let mut limited = input.take(max as u64 + 1);
    let n = limited.read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > max {
        bail!(
            "the line is longer than {max} bytes (the longest an entry within this ledger's payload limit can be)"
        );
    }
    Ok(true)
}

/// The next line as text (blank lines included); `None` at the end of the input.
fn read_text_line<'b>(
    input: &mut dyn BufRead,
    buf: &'b mut Vec<u8>,
    max: usize,
) -> Result<Option<&'b str>> {
    if !read_line_bounded(input, buf, max)? {
        return Ok(None);
    }
    std::str::from_utf8(buf).map(Some).map_err(|_| anyhow!("the line is not UTF-8 text"))
}

pub(crate) fn run(
    cli: &Cli,
    file: &str,
    ack: bool,
    batch: usize,
    issuer_key: Option<&std::path::Path>,
) -> Result<()> {
    let issuer = issuer_key.map(crate::cmd::ledger::read_issuer_key).transpose()?;
    // A file shows bytes read of its size (rate, ETA) and the entries appended; stdin a spinner.
    let (mut input, bar): (Box<dyn BufRead>, _) = if file == "-" {
        let bar = if ack {
            indicatif::ProgressBar::hidden()
        } else {
            crate::output::progress(cli, None, "entries", "importing")
        };
        (Box::new(std::io::stdin().lock()), bar)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {file}"))?;
        let len = f.metadata().map(|m| m.len()).ok();
        let bar = if ack {
            indicatif::ProgressBar::hidden()
        } else {
            crate::output::progress(cli, len, "bytes", "importing")
        };
        (Box::new(std::io::BufReader::new(bar.wrap_read(f))), bar)
    };
    let by_bytes = file != "-";
    if let Some(node) = running_node(cli)? {
        let done = run_through(cli, &node, &mut *input, ack, batch, issuer.as_ref());
        bar.finish_and_clear();
        return done;
    }
    let ledger = open_write(cli)?;
    let max_payload = ledger.max_payload_bytes();
    // The reader parses and submits groups; the acker waits for each group in order and
    // prints its ack as soon as it is durable. Up to IN_FLIGHT groups are in flight, so parsing
    // overlaps hashing and fsync.
    const IN_FLIGHT: usize = 4;
    let (pending_tx, pending_rx) = crossbeam_channel::bounded::<PendingAppend>(IN_FLIGHT);
    let (acked, read_result) = std::thread::scope(|scope| {
        let acker = scope.spawn(|| {
            let mut stdout = std::io::stdout().lock();
            let mut a = Acked::default();
            for p in pending_rx {
                if a.error.is_some() {
                    // Groups after a failed one are not acknowledged (they build on it).
                    let _ = p.wait();
                    continue;
                }
                match p.wait() {
                    Ok(receipts) => {
                        if let (Some(f), Some(l)) = (receipts.first(), receipts.last()) {
                            a.first_seq.get_or_insert(f.seq);
                            a.last_seq = Some(l.seq);
                            a.appended += receipts.len() as u64;
                            if by_bytes {
                                bar.set_message(format!("importing: {} entries", a.appended));
                            } else {
                                bar.set_position(a.appended);
                            }
                            if ack {
                                let _ = writeln!(stdout, "{}", ack_line(cli.json, l.seq));
                                let _ = stdout.flush();
                            }
                        }
                    }
                    Err(e) => a.error = Some(e.into()),
                }
            }
            a
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
            let mut buf = Vec::new();
            let max = max_line(max_payload);
            for lineno in 1.. {
                let parsed = match read_text_line(&mut *input, &mut buf, max) {
                    Ok(None) => break,
                    Ok(Some(text)) if text.trim().is_empty() => continue,
                    Ok(Some(text)) => onoal_engine::import::parse_line(text, max_payload)
                        .map(|e| match &issuer {
                            Some(k) if e.signature.is_none() => e.sign(k.signing_key()),
                            _ => e,
                        })
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(e),
                };
                match parsed {
                    Ok(e) => pending.push(e),
                    Err(e) => {
                        // Every valid line before the bad one is appended; nothing after it is
                        // read.
                        submit(&mut pending)?;
                        return Err(anyhow!("line {lineno}: {}", one_line(&e)));
                    }
                }
                if pending.len() >= batch {
                    submit(&mut pending)?;
                }
            }
            submit(&mut pending)
        })();
        drop(pending_tx);
        let acked = acker.join().unwrap_or_else(|_| Acked {
            error: Some(anyhow!("the acknowledging thread panicked")),
            ..Acked::default()
        });
        (acked, read_result)
    });
    bar.finish_and_clear();
    let appended_text = match (acked.first_seq, acked.last_seq) {
        (Some(f), Some(l)) => format!("{} entries were appended (seqs {f} to {l})", acked.appended),
        _ => "no entries were appended".to_owned(),
    };
    // Sign what was appended before exiting, so it does not wait for the next writer.
    let checkpoint = ledger.checkpoint_now();
    if let Some(e) = acked.error {
        bail!("{}; {appended_text}, nothing after them", one_line(&e));
    }
    if let Err(e) = read_result {
        bail!("{}; {appended_text}, nothing after that line", one_line(&e));
    }
    let checkpoint = checkpoint
        .with_context(|| format!("{appended_text}, but signing a checkpoint of them failed"))?;
    let tree_size = ledger.head()?.size;
    print_imported(cli, ack, &acked, tree_size, checkpoint.size)
}

/// One acknowledgement: `acked SEQ`, or with `--json` the JSON Lines record
/// `{"type":"ack","seq":SEQ}` (the summary that ends the stream has `"type":"summary"`).
fn ack_line(json: bool, seq: u64) -> String {
    if json { json!({"type": "ack", "seq": seq}).to_string() } else { format!("acked {seq}") }
}

fn print_imported(
    cli: &Cli,
    ack: bool,
    acked: &Acked,
    tree_size: u64,
    checkpoint_size: u64,
) -> Result<()> {
    let v = json!({
        "type": "summary",
        "appended": acked.appended,
        "first_seq": acked.first_seq,
        "last_seq": acked.last_seq,
        "tree_size": tree_size,
        "checkpoint_size": checkpoint_size,
    });
    let mut stdout = std::io::stdout().lock();
    if cli.json || ack {
        writeln!(stdout, "{v}")?;
    } else {
        writeln!(
            stdout,
            "appended {} entries; tree size {tree_size}, signed checkpoint {checkpoint_size}",
            acked.appended
        )?;
    }
    Ok(())
}

/// `import` while a node runs: every line is checked here (so errors name the line as without
/// a node), groups go to the node as JSON Lines, each acknowledged once durable.
fn run_through(
    cli: &Cli,
    node: &NodeClient,
    input: &mut dyn BufRead,
    ack: bool,
    batch: usize,
    issuer: Option<&onoal_engine::identity::SecretKey>,
) -> Result<()> {
    let status: StatusView = node.get("/status")?;
    let max_payload = status.max_payload_bytes;
    let mut acked = Acked::default();
    let mut stdout = std::io::stdout().lock();
    let mut group: Vec<u8> = Vec::new();
    let mut lines = 0usize;
    let mut submit = |group: &mut Vec<u8>, lines: &mut usize, acked: &mut Acked| -> Result<()> {
        if *lines == 0 {
            return Ok(());
        }
        let a: AppendView = node.post_ndjson("/ledger/entries", group)?;
        group.clear();
        *lines = 0;
        if let (Some(f), Some(l)) = (a.receipts.first(), a.receipts.last()) {
            acked.first_seq.get_or_insert(f.seq);
            acked.last_seq = Some(l.seq);
            acked.appended += a.receipts.len() as u64;
            if ack {
                writeln!(stdout, "{}", ack_line(cli.json, l.seq))?;
                stdout.flush()?;
            }
        }
        Ok(())
    };
    let mut buf = Vec::new();
    let max = max_line(max_payload);
    let mut failure: Option<anyhow::Error> = None;
    for lineno in 1.. {
        let checked = match read_text_line(input, &mut buf, max) {
            Ok(None) => break,
            Ok(Some(text)) if text.trim().is_empty() => continue,
            Ok(Some(text)) => signed_line(text, max_payload, issuer),
            Err(e) => Err(e),
        };
        match checked {
            Ok(text) => {
                group.extend_from_slice(text.as_bytes());
                group.push(b'\n');
                lines += 1;
            }
            Err(e) => {
                failure = Some(anyhow!("line {lineno}: {}", one_line(&e)));
                break;
            }
        }
        if lines >= batch
            && let Err(e) = submit(&mut group, &mut lines, &mut acked)
        {
            failure = Some(e);
            lines = 0;
            break;
        }
    }
    // What was read before a bad line is appended, as without a node.
    if let Err(e) = submit(&mut group, &mut lines, &mut acked) {
        failure.get_or_insert(e);
    }
    let appended_text = match (acked.first_seq, acked.last_seq) {
        (Some(f), Some(l)) => format!("{} entries were appended (seqs {f} to {l})", acked.appended),
        _ => "no entries were appended".to_owned(),
    };
    let checkpoint: Result<CheckpointView> =
        node.post("/ledger/checkpoint", &json!({}), Duration::from_secs(60));
    if let Some(e) = failure {
        bail!("{}; {appended_text}, nothing after that", one_line(&e));
    }
    let checkpoint = checkpoint
        .with_context(|| format!("{appended_text}, but signing a checkpoint of them failed"))?;
    print_imported(cli, ack, &acked, checkpoint.size, checkpoint.size)
}

/// Checks one import line and, with an issuer key and no signature on the line, returns it
/// signed (as JSON with `issuer_key` and `issuer_signature`); else the line as it was.
fn signed_line<'t>(
    text: &'t str,
    max_payload: usize,
    issuer: Option<&onoal_engine::identity::SecretKey>,
) -> Result<std::borrow::Cow<'t, str>> {
    let entry = onoal_engine::import::parse_line(text, max_payload)?;
    match issuer {
        Some(key) if entry.signature.is_none() => {
            let mut input: onoal_engine::import::EntryInput = serde_json::from_str(text)?;
            crate::cmd::ledger::sign_input(&mut input, entry, key);
            Ok(std::borrow::Cow::Owned(serde_json::to_string(&input)?))
        }
        _ => Ok(std::borrow::Cow::Borrowed(text)),
    }
}
