//! `onoal`: the command line of the Onoal ledger.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Parser, Subcommand};
use onoal_engine::{
    Durability, Ledger, Name, NewEntry, Oid, OpenError, Query, StoredEntry, VerifyError,
};
use serde_json::{Value, json};

mod demo;
mod mesh_cmd;

#[derive(Parser, Debug)]
#[command(name = "onoal", version, about = "Onoal: an embedded, sovereign, verifiable ledger")]
pub(crate) struct Cli {
    /// Data directory of the ledger.
    #[arg(long, global = true, env = "ONOAL_DATA", default_value = "./onoal-data")]
    pub(crate) data: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Durability of appends: sync (fsync per group) or buffered (no fsync).
    #[arg(long, global = true, default_value = "sync")]
    durability: Durability,
    /// Read a replica of this ledger (get, query, checkpoint, prove, verify) instead of the
    /// own log.
    #[arg(long, global = true)]
    ledger: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new ledger in --data.
    Init {
        /// The ledger's OID, e.g. oid:onoal:org:myorg.
        #[arg(long)]
        oid: String,
        /// Ledger id (UUID); random when omitted.
        #[arg(long)]
        ledger_id: Option<String>,
    },
    /// Append one entry.
    Append(AppendArgs),
    /// Append entries from JSON Lines (a file, or - for standard input).
    Import {
        /// File of JSON Lines, or - for standard input.
        file: String,
        /// Print `acked <last seq>` after each durable group.
        #[arg(long)]
        ack: bool,
        /// Entries per group.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Print the entry at SEQ.
    Get {
        /// Sequence number.
        seq: u64,
    },
    /// Find entries by stream, type, subject, issuer and time.
    Query(QueryArgs),
    /// Print a signed checkpoint (the latest, signing one for the current size if needed).
    Checkpoint {
        /// Print the stored checkpoint of this tree size instead.
        #[arg(long)]
        size: Option<u64>,
    },
    /// Build a proof.
    Prove {
        #[command(subcommand)]
        what: ProveCommand,
    },
    /// Audit the whole ledger: entries, chain, tiles, checkpoints.
    Verify,
    /// Measure a workload next to its baseline (same run); see docs/performance.md.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Run the demo: three ledgers on loopback (child processes) append, sync each other's
    /// logs over QUIC, verify the replicas, and print a summary.
    Demo {
        /// Entries each ledger appends.
        #[arg(long, default_value_t = 100_000)]
        entries: u64,
    },
    /// Run the node: serve the own log and replicas to pinned peers over QUIC, and follow the
    /// ledgers given with --peer, until SIGINT/SIGTERM.
    Serve {
        /// QUIC address to listen on.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
        /// Follow this ledger (pinned with `onoal peer add`) from HOST:PORT: LEDGER_ID@HOST:PORT.
        #[arg(long)]
        peer: Vec<String>,
    },
    /// Pin and list peers.
    Peer {
        #[command(subcommand)]
        what: PeerCommand,
    },
    /// Sync the replica of LEDGER_ID from a pinned peer, verifying everything received.
    Sync {
        /// Ledger to replicate.
        ledger_id: String,
        /// HOST:PORT of a pinned peer that serves it (default: the ledger's pinned address).
        #[arg(long)]
        from: Option<String>,
        /// full (from scratch), incremental (from what is held), checkpoint (light client).
        #[arg(long, default_value = "incremental")]
        mode: onoal_mesh::SyncMode,
        /// Keep following new checkpoints until SIGINT/SIGTERM.
        #[arg(long)]
        follow: bool,
        /// Filtered sync: only entries matching these filters, each with its inclusion proof,
        /// into a sparse replica.
        #[command(flatten)]
        filter: SyncFilterArgs,
    },
    /// List replicas and their sync state.
    Replicas,
    /// List forks found while syncing (both checkpoints as evidence), or drop a forked replica.
    Forks {
        #[command(subcommand)]
        what: Option<ForksCommand>,
    },
}

#[derive(Args, Debug, Clone)]
struct SyncFilterArgs {
    /// Only entries of this stream (filtered sync).
    #[arg(long)]
    stream: Option<String>,
    /// Only entries of this type (filtered sync).
    #[arg(long = "type")]
    entry_type: Option<String>,
    /// Only entries about this subject OID (filtered sync).
    #[arg(long)]
    subject: Option<String>,
    /// Only entries by this issuer OID (filtered sync).
    #[arg(long)]
    issuer: Option<String>,
    /// Only entries at or after this time, ms since the epoch (filtered sync).
    #[arg(long)]
    since: Option<u64>,
    /// Only entries at or before this time, ms since the epoch (filtered sync).
    #[arg(long)]
    until: Option<u64>,
}

#[derive(Subcommand, Debug)]
enum PeerCommand {
    /// Pin KEY for the ledger LEDGER_ID reachable at HOST:PORT.
    Add {
        /// LEDGER_ID@HOST:PORT
        spec: String,
        /// The peer's Ed25519 public key, hex (as `onoal serve` and `onoal init` print it).
        #[arg(long)]
        key: String,
    },
    /// List pinned peers.
    List,
}

#[derive(Subcommand, Debug)]
enum ForksCommand {
    /// Delete the replica of LEDGER_ID (and its fork evidence); the next sync starts afresh.
    Drop { ledger_id: String },
}

#[derive(Args, Debug)]
struct AppendArgs {
    /// Stream name.
    #[arg(long)]
    stream: String,
    /// Entry type.
    #[arg(long = "type")]
    entry_type: String,
    /// Subject OID.
    #[arg(long)]
    subject: Option<String>,
    /// Issuer OID.
    #[arg(long)]
    issuer: Option<String>,
    /// Payload text.
    #[arg(long, conflicts_with = "payload_file", required_unless_present = "payload_file")]
    payload: Option<String>,
    /// Read the payload from this file.
    #[arg(long)]
    payload_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct QueryArgs {
    #[arg(long)]
    stream: Option<String>,
    #[arg(long = "type")]
    entry_type: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    issuer: Option<String>,
    /// Earliest timestamp, ms since the epoch (inclusive).
    #[arg(long)]
    since: Option<u64>,
    /// Latest timestamp, ms since the epoch (inclusive).
    #[arg(long)]
    until: Option<u64>,
    /// Page size (default 100, at most 10000).
    #[arg(long)]
    limit: Option<usize>,
    /// next_cursor of the previous page.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Append throughput and latency vs raw RocksDB WriteBatch puts (durability: --durability).
    Append {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Payload bytes per entry.
        #[arg(long, default_value_t = 256)]
        payload: usize,
        /// Entries per batch.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Threads appending single entries (group commit under contention); 1 = batch mode.
        #[arg(long, default_value_t = 1)]
        writers: usize,
    },
    /// Inclusion and consistency proof generation and verification vs the hashing limit.
    Proof {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Proofs to generate.
        #[arg(long, default_value_t = 200_000)]
        proofs: u64,
        /// Reuse (or build) the ledger in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Full audit throughput vs SHA-256 of the same leaf bytes on all cores.
    Verify {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Full sync of N entries between two nodes on loopback vs raw quinn and raw RocksDB.
    Sync {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
    },
    /// Reopen time vs a raw RocksDB open of the same directory.
    Open {
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum ProveCommand {
    /// Inclusion proof of entry SEQ in the tree of --size (default: current size).
    Inclusion {
        seq: u64,
        #[arg(long)]
        size: Option<u64>,
    },
    /// Consistency proof between tree sizes OLD and NEW.
    Consistency { old: u64, new: u64 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ONOAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// The error chain on one line, without repeats.
pub(crate) fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

pub(crate) fn open_write(cli: &Cli) -> Result<Ledger> {
    Ok(Ledger::builder(&cli.data).durability(cli.durability).open()?)
}

pub(crate) fn open_read(cli: &Cli) -> Result<Ledger> {
    Ok(Ledger::builder(&cli.data).open_read_only()?)
}

pub(crate) fn print(cli: &Cli, value: Value, human: impl FnOnce() -> String) {
    if cli.json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Init { oid, ledger_id } => {
            let oid = Oid::parse(oid)?;
            let mut b = Ledger::builder(&cli.data);
            if let Some(id) = ledger_id {
                b = b.ledger_id(id.clone());
            }
            let ledger = b.create(oid)?;
            let id = ledger.identity();
            let v = json!({
                "ledger_id": id.ledger_id.to_string(),
                "oid": id.oid.as_str(),
                "public_key": hex::encode(id.public_key.as_bytes()),
                "vkey": id.verifier().to_vkey(),
            });
            print(&cli, v, || {
                format!(
                    "created ledger {} ({}) in {}\npublic key {}\nverifier key {}",
                    id.ledger_id,
                    id.oid,
                    cli.data.display(),
                    hex::encode(id.public_key.as_bytes()),
                    id.verifier().to_vkey()
                )
            });
        }
        Command::Append(a) => {
            let payload = match (&a.payload, &a.payload_file) {
                (Some(p), _) => p.as_bytes().to_vec(),
                (None, Some(f)) => std::fs::read(f)
                    .with_context(|| format!("cannot read payload file {}", f.display()))?,
                (None, None) => bail!("give --payload or --payload-file"),
            };
            let entry = new_entry(
                &a.stream,
                &a.entry_type,
                a.subject.as_deref(),
                a.issuer.as_deref(),
                payload,
            )?;
            let ledger = open_write(&cli)?;
            let r = ledger.append(entry)?;
            print(&cli, json!({"seq": r.seq, "leaf_hash": r.leaf_hash.to_hex()}), || {
                format!("appended seq {} leaf hash {}", r.seq, r.leaf_hash)
            });
        }
        Command::Import { file, ack, batch } => import(&cli, file, *ack, (*batch).max(1))?,
        Command::Get { seq } => {
            let (_ledger, ledger) = read_log(&cli)?;
            let e = ledger.entry(*seq)?;
            let v = entry_json(&e);
            print(&cli, v.clone(), || serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Command::Query(q) => {
            let (_ledger, ledger) = read_log(&cli)?;
            let page = ledger.query(&Query {
                stream: q.stream.clone(),
                entry_type: q.entry_type.clone(),
                subject: q.subject.clone(),
                issuer: q.issuer.clone(),
                since_ms: q.since,
                until_ms: q.until,
                cursor: q.cursor.clone(),
                limit: q.limit,
            })?;
            let v = json!({
                "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
                "next_cursor": page.next_cursor,
            });
            print(&cli, v, || {
                let mut s = String::new();
                for e in &page.entries {
                    s.push_str(&format!(
                        "{} {} {} {} bytes\n",
                        e.entry.seq,
                        e.entry.content.stream,
                        e.entry.content.entry_type,
                        e.entry.content.payload.len()
                    ));
                }
                match &page.next_cursor {
                    Some(c) => s.push_str(&format!("more: --cursor {c}")),
                    None => s.push_str(&format!("{} entries", page.entries.len())),
                }
                s
            });
        }
        Command::Checkpoint { size } => {
            let signed = match size {
                Some(n) => read_log(&cli)?
                    .1
                    .checkpoint_at(*n)?
                    .ok_or(onoal_engine::ReadError::NoCheckpoint(*n))?,
                None if cli.ledger.is_some() => {
                    read_log(&cli)?.1.latest_checkpoint()?.ok_or_else(|| {
                        anyhow!("the replica holds no checkpoint yet; run onoal sync")
                    })?
                }
                None => match open_write(&cli) {
                    Ok(l) => l.checkpoint_now()?,
                    Err(e) if is_in_use(&e) => open_read(&cli)?.checkpoint_now()?,
                    Err(e) => return Err(e),
                },
            };
            if cli.json {
                let v = json!({
                    "size": signed.size,
                    "root": signed.root.to_hex(),
                    "note": signed.note,
                });
                println!("{v}");
            } else {
                print!("{}", signed.note);
            }
        }
        Command::Prove { what } => {
            let (_ledger, ledger) = read_log(&cli)?;
            match what {
                ProveCommand::Inclusion { seq, size } => {
                    let size = match size {
                        Some(s) => *s,
                        None => ledger.head()?.size,
                    };
                    let e = ledger.entry(*seq)?;
                    let proof = ledger.inclusion_proof(*seq, size)?;
                    let root = ledger.root_at(size)?;
                    let v = json!({
                        "seq": seq,
                        "tree_size": size,
                        "leaf_hash": e.leaf_hash.to_hex(),
                        "root": root.to_hex(),
                        "proof": proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                    });
                    print(&cli, v.clone(), || serde_json::to_string_pretty(&v).unwrap_or_default());
                }
                ProveCommand::Consistency { old, new } => {
                    let proof = ledger.consistency_proof(*old, *new)?;
                    let v = json!({
                        "old_size": old,
                        "new_size": new,
                        "old_root": ledger.root_at(*old)?.to_hex(),
                        "new_root": ledger.root_at(*new)?.to_hex(),
                        "proof": proof.iter().map(|h| h.to_hex()).collect::<Vec<_>>(),
                    });
                    print(&cli, v.clone(), || serde_json::to_string_pretty(&v).unwrap_or_default());
                }
            }
        }
        Command::Verify => return verify(&cli),
        Command::Demo { entries } => demo::run(*entries, cli.json)?,
        Command::Serve { listen, peer } => return mesh_cmd::serve(&cli, listen, peer),
        Command::Peer { what: PeerCommand::Add { spec, key } } => {
            mesh_cmd::peer_add(&cli, spec, key)?
        }
        Command::Peer { what: PeerCommand::List } => mesh_cmd::peer_list(&cli)?,
        Command::Sync { ledger_id, from, mode, follow, filter } => {
            let filter = onoal_mesh::proto::EntryFilter {
                stream: filter.stream.clone(),
                entry_type: filter.entry_type.clone(),
                subject: filter.subject.clone(),
                issuer: filter.issuer.clone(),
                since_ms: filter.since,
                until_ms: filter.until,
            };
            return mesh_cmd::sync(&cli, ledger_id, from.as_deref(), *mode, *follow, &filter);
        }
        Command::Replicas => mesh_cmd::replicas(&cli)?,
        Command::Forks { what } => mesh_cmd::forks(
            &cli,
            what.as_ref().map(|ForksCommand::Drop { ledger_id }| ledger_id.as_str()),
        )?,
        Command::Bench { what } => {
            let report = match what {
                BenchCommand::Append { entries, payload, batch, writers } => {
                    onoal_benches::append(&onoal_benches::AppendParams {
                        entries: *entries,
                        payload: *payload,
                        batch: (*batch).max(1),
                        durability: cli.durability,
                        writers: *writers,
                    })
                }
                BenchCommand::Proof { entries, proofs, dir } => {
                    onoal_benches::proof(*entries, dir.as_deref(), (*proofs).max(100))
                }
                BenchCommand::Verify { entries, dir } => {
                    onoal_benches::verify(*entries, dir.as_deref())
                }
                BenchCommand::Sync { entries } => onoal_benches::sync((*entries).max(1)),
                BenchCommand::Open { entries, dir } => {
                    onoal_benches::open(*entries, dir.as_deref())
                }
            }
            .map_err(|e| anyhow!("benchmark failed: {e}"))?;
            if cli.json {
                println!("{report}");
            } else {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The own log, or the replica named by --ledger.
fn read_log(cli: &Cli) -> Result<(Ledger, onoal_engine::Log)> {
    let ledger = open_read(cli)?;
    let log = match &cli.ledger {
        None => ledger.log().clone(),
        Some(id) => {
            let id = mesh_cmd::parse_ledger_id(id)?;
            ledger.log_of(&id).or_else(|| ledger.sparse_replica(&id)).ok_or_else(|| {
                anyhow!("no replica of {id} here; sync it first: onoal sync {id} --from HOST:PORT")
            })?
        }
    };
    Ok((ledger, log))
}

pub(crate) fn is_in_use(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<OpenError>(), Some(OpenError::InUse { .. }))
}

pub(crate) fn new_entry(
    stream: &str,
    entry_type: &str,
    subject: Option<&str>,
    issuer: Option<&str>,
    payload: Vec<u8>,
) -> Result<NewEntry> {
    let mut e = NewEntry::new(Name::stream(stream)?, Name::entry_type(entry_type)?, payload);
    if let Some(s) = subject {
        e = e.with_subject(Oid::parse(s)?);
    }
    if let Some(s) = issuer {
        e = e.with_issuer(Oid::parse(s)?);
    }
    Ok(e)
}

pub(crate) fn entry_json(e: &StoredEntry) -> Value {
    let c = &e.entry.content;
    json!({
        "seq": e.entry.seq,
        "timestamp_ms": e.entry.timestamp_ms,
        "stream": c.stream.as_str(),
        "type": c.entry_type.as_str(),
        "subject": c.subject.as_ref().map(|o| o.as_str()),
        "issuer": c.issuer.as_ref().map(|o| o.as_str()),
        "payload_b64": B64.encode(&c.payload),
        "prev_hash": e.entry.prev_hash.to_hex(),
        "leaf_hash": e.leaf_hash.to_hex(),
        "leaf_data_b64": B64.encode(&e.leaf_data),
    })
}

fn import(cli: &Cli, file: &str, ack: bool, batch: usize) -> Result<()> {
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

fn verify(cli: &Cli) -> Result<ExitCode> {
    let (_ledger, ledger) = read_log(cli)?;
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
        Err(e) => {
            if cli.json {
                println!("{}", json!({"ok": false, "error": e.to_string()}));
            }
            eprintln!("verify FAILED: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
