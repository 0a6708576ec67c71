//! `onoal`: the command line of the Onoal ledger. Parses, installs the log subscriber,
//! dispatches; each command lives in `cmd/`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser as _;

/// Returns a usage error ([`output::Failure::usage`]): a flag this command does not take, or a
/// value out of its range.
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err($crate::output::Failure::usage(format!($($arg)*)).into())
    };
}

mod cli;
mod client;
mod cmd;
mod demo;
mod output;

use cli::{
    Cli, Command, ForksCommand, PeerCommand, ProofCommand, RefCommand, RemoteCommand,
    ReplicasCommand,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A usage error with --json: the JSON object on stdout too; clap prints the rest
            // (help and version are not errors).
            if e.use_stderr() && std::env::args().any(|a| a == "--json") {
                let text = e.to_string();
                let message = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
                let hint = "run the command with --help for its arguments";
                let v = serde_json::json!({"error": {"kind": "usage", "message": message, "hint": hint}});
                println!("{v}");
            }
            e.exit()
        }
    };
    install_subscriber(&cli);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", output::one_line(&e));
            if cli.json {
                println!("{}", output::error_json(&e));
            }
            ExitCode::from(1)
        }
    }
}

/// Log output on stderr: warnings by default, `-v`/`-vv`/`-vvv` more, `-q` errors only;
/// `RUST_LOG` (or the older `ONOAL_LOG`) overrides both.
fn install_subscriber(cli: &Cli) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = ["RUST_LOG", "ONOAL_LOG"]
        .into_iter()
        .find_map(|var| tracing_subscriber::EnvFilter::try_from_env(var).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// Refuses a global flag the command would ignore (`append --ledger X` must not append to the
/// own log and exit 0).
fn check_globals(cli: &Cli) -> Result<()> {
    let name = cli::command_name(&cli.command);
    let reads_a_log = matches!(
        cli.command,
        Command::Get { .. }
            | Command::Query(_)
            | Command::Export { .. }
            | Command::Checkpoint { .. }
            | Command::Checkpoints
            | Command::Prove { .. }
            | Command::Proof { what: ProofCommand::Export { .. } }
            | Command::Verify { .. }
            | Command::Watch { .. }
    );
    if cli.ledger.is_some() && !reads_a_log {
        return Err(output::Failure::usage(format!(
            "--ledger does not apply to `{name}`: it names a replica for get, query, checkpoint, checkpoints, prove, verify and watch; `{name}` works on this ledger itself"
        ))
        .into());
    }
    let writes = matches!(
        cli.command,
        Command::Append(_)
            | Command::Import { .. }
            | Command::Serve(_)
            | Command::Sync { .. }
            | Command::Restore { .. }
            | Command::Bench { .. }
            | Command::Peer { what: PeerCommand::Add { .. } | PeerCommand::Remove { .. } }
            | Command::Trust { .. }
            | Command::Stream { .. }
            | Command::Forks { what: Some(_) }
            | Command::Replicas { what: Some(_) }
    ) || matches!(cli.command, Command::Checkpoint { size: None, cosigned: false } if cli.ledger.is_none());
    if cli.durability.is_some() && !writes {
        return Err(output::Failure::usage(format!(
            "--durability does not apply to `{name}`: it only reads; give it to commands that write (append, import, serve, sync, ...)"
        ))
        .into());
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<ExitCode> {
    check_globals(cli)?;
    match &cli.command {
        Command::Init { oid, ledger_id } => cmd::ledger::init(cli, oid, ledger_id.as_deref())?,
        Command::Append(a) => cmd::ledger::append(cli, a)?,
        Command::Import { file, ack, batch, issuer_key } => {
            cmd::import::run(cli, file, *ack, (*batch).max(1), issuer_key.as_deref())?;
        }
        Command::Key { what } => cmd::ledger::key(cli, what)?,
        Command::Get { seq } => cmd::ledger::get(cli, *seq)?,
        Command::Query(q) => cmd::ledger::query(cli, q)?,
        Command::Export { filter } => cmd::ledger::export(cli, filter)?,
        Command::Info => cmd::ledger::info(cli)?,
        Command::Checkpoint { size, cosigned } => cmd::ledger::checkpoint(cli, *size, *cosigned)?,
        Command::Prove { what } => cmd::ledger::prove(cli, what)?,
        Command::Verify { require_checkpoint } => {
            return cmd::verify::run(cli, *require_checkpoint);
        }
        Command::Checkpoints => cmd::ledger::checkpoints(cli)?,
        Command::Bench { what } => cmd::bench::run(cli, what)?,
        Command::Sim(args) => cmd::sim::run(cli, args)?,
        Command::Registry { what } => return cmd::registry::run(cli, what),
        Command::Topology { dot, svg } => cmd::mesh::topology(cli, *dot, svg.as_deref())?,
        Command::Route { to } => cmd::mesh::route(cli, to)?,
        Command::Ref { what: RefCommand::Check { seq } } => return cmd::mesh::ref_check(cli, *seq),
        Command::Ref { what: RefCommand::List { limit } } => {
            return cmd::mesh::ref_list(cli, *limit);
        }
        Command::Proof { what: ProofCommand::Export { seq } } => {
            cmd::ledger::proof_export(cli, *seq)?
        }
        Command::VerifyProof { file, vkey, leaf_data, witness_vkey, quorum } => {
            return cmd::ledger::verify_tlog_proof(
                cli,
                file,
                vkey,
                leaf_data.as_deref(),
                witness_vkey,
                *quorum,
            );
        }
        Command::Proof { what: ProofCommand::Verify { file, vkey } } => {
            return cmd::ledger::proof_verify(cli, file, vkey);
        }
        Command::Remote { what: RemoteCommand::Query { to, filter, limit, cursor } } => {
            cmd::mesh::remote_query(cli, to, filter, *limit, cursor.as_deref())?;
        }
        Command::Remote {
            what:
                RemoteCommand::Verify {
                    to,
                    seq,
                    proof,
                    leaf_hash,
                    subject,
                    issuer,
                    entry_type,
                    issuer_key,
                },
        } => {
            let mut body = onoal_mesh::http::RemoteVerifyBody {
                to: to.clone().unwrap_or_default(),
                seq: seq.unwrap_or_default(),
                leaf_hash: leaf_hash.clone(),
                subject: subject.clone(),
                issuer: issuer.clone(),
                entry_type: entry_type.clone(),
                issuer_key: issuer_key.clone(),
            };
            if let Some(file) = proof {
                cmd::mesh::fill_from_proof(&mut body, file, to.is_some(), seq.is_some())?;
            }
            return cmd::mesh::remote_verify(cli, &body);
        }
        Command::Messages { status, limit } => cmd::mesh::messages(cli, status.as_deref(), *limit)?,
        Command::Discover { id, oid, timeout_ms } => {
            cmd::mesh::discover(cli, id.as_deref(), oid.as_deref(), *timeout_ms)?;
        }
        Command::Demo { entries, keep } => demo::run(*entries, cli.json, *keep)?,
        Command::Serve(args) => return cmd::serve::run(cli, args),
        Command::Status => cmd::node::status(cli)?,
        Command::Watch { stream, from } => cmd::node::watch(cli, stream.as_deref(), *from)?,
        Command::Completions { shell } => cmd::node::completions(*shell),
        Command::Man => cmd::node::man()?,
        Command::Restore { from, accept_loss, timeout } => {
            cmd::mesh::restore(cli, from, *accept_loss, *timeout)?;
        }
        Command::Peer { what: PeerCommand::Add { spec, key, replace_key } } => {
            cmd::mesh::peer_add(cli, spec, key.as_deref(), *replace_key)?;
        }
        Command::Peer { what: PeerCommand::List } => cmd::mesh::peer_list(cli)?,
        Command::Trust { what } => cmd::trust::run(cli, what)?,
        Command::Stream { what } => cmd::trust::stream(cli, what)?,
        Command::Peer { what: PeerCommand::Connect { ledger_id, timeout_ms } } => {
            cmd::mesh::peer_connect(cli, ledger_id, *timeout_ms)?;
        }
        Command::Peer { what: PeerCommand::Disconnect { ledger_id } } => {
            cmd::mesh::peer_disconnect(cli, ledger_id)?;
        }
        Command::Peer { what: PeerCommand::Remove { ledger_id } } => {
            cmd::mesh::peer_remove(cli, ledger_id)?;
        }
        Command::Sync { ledger_id, from, mode, follow, timeout, filter, require_witnesses } => {
            let filter = filter.into();
            let how = cmd::mesh::SyncHow {
                mode: (*mode).into(),
                follow: *follow,
                timeout_secs: *timeout,
                filter: &filter,
                require_witnesses: *require_witnesses,
            };
            return cmd::mesh::sync(cli, ledger_id, from.as_deref(), how);
        }
        Command::Replicas { what: None } => cmd::mesh::replicas(cli)?,
        Command::Replicas { what: Some(ReplicasCommand::Drop { ledger_id, yes }) } => {
            cmd::mesh::drop_replica(cli, ledger_id, *yes, false)?;
        }
        Command::Witness { what: cli::WitnessCommand::Info } => cmd::witness::info(cli)?,
        Command::Witness { what: cli::WitnessCommand::DropEvidence { origin } } => {
            cmd::witness::drop_evidence(cli, origin)?;
        }
        Command::Mint { asset, amount } => cmd::transfer::mint(cli, asset, *amount)?,
        Command::Balance { asset } => cmd::transfer::balance(cli, asset.as_deref())?,
        Command::Transfer { what } => match what {
            cli::TransferCommand::Start { to, asset, amount, id, timeout, no_wait } => {
                let s = cmd::transfer::Start {
                    to,
                    asset,
                    amount: *amount,
                    id: id.as_deref(),
                    timeout_secs: *timeout,
                    no_wait: *no_wait,
                };
                cmd::transfer::start(cli, &s)?;
            }
            cli::TransferCommand::Status { id, local } => cmd::transfer::status(cli, id, *local)?,
            cli::TransferCommand::List => cmd::transfer::list(cli)?,
        },
        Command::Asset { what } => match what {
            cli::AssetCommand::Register { id, owner, meta } => {
                cmd::asset::register(cli, id, owner.as_deref(), meta.as_deref())?;
            }
            cli::AssetCommand::Find { id, wait_ms } => cmd::asset::find(cli, id, *wait_ms, false)?,
            cli::AssetCommand::Verify { id, wait_ms } => cmd::asset::find(cli, id, *wait_ms, true)?,
            cli::AssetCommand::List => cmd::asset::list(cli)?,
        },
        Command::Forks { what } => cmd::mesh::forks(
            cli,
            what.as_ref().map(|ForksCommand::Drop { ledger_id }| ledger_id.as_str()),
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
