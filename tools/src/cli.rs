//! The command line's shape (clap). One [`FilterArgs`] serves `query` and `sync`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "onoal", version, about = "Onoal: an embedded, sovereign, verifiable ledger")]
pub(crate) struct Cli {
    /// Data directory of the ledger.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "ONOAL_DATA",
        default_value = "./onoal-data"
    )]
    pub(crate) data: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) json: bool,
    /// Durability of appends: sync (fsync per group, the default) or buffered (no fsync).
    #[arg(long, global = true, help_heading = "Global options", value_enum)]
    pub(crate) durability: Option<DurabilityArg>,
    /// Read a replica of this ledger (get, query, checkpoint, prove, verify) instead of the
    /// own log.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) ledger: Option<String>,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, help_heading = "Global options", action = ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Errors only on stderr.
    #[arg(short, long, global = true, help_heading = "Global options", conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

impl Cli {
    /// `--durability`, sync unless given.
    pub(crate) fn durability(&self) -> onoal_engine::Durability {
        self.durability.unwrap_or(DurabilityArg::Sync).into()
    }
}

/// `--durability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DurabilityArg {
    /// fsync the WAL once per group before acknowledging.
    Sync,
    /// Write the WAL without fsync (survives a process crash, not an OS crash).
    Buffered,
}

impl From<DurabilityArg> for onoal_engine::Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Sync => Self::Sync,
            DurabilityArg::Buffered => Self::Buffered,
        }
    }
}

/// `sync --mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum SyncModeArg {
    /// From scratch into a fresh replica.
    Full,
    /// From what the replica holds.
    Incremental,
    /// The newest checkpoint and its consistency proof only (light client).
    Checkpoint,
}

impl From<SyncModeArg> for onoal_mesh::SyncMode {
    fn from(m: SyncModeArg) -> Self {
        match m {
            SyncModeArg::Full => Self::Full,
            SyncModeArg::Incremental => Self::Incremental,
            SyncModeArg::Checkpoint => Self::Checkpoint,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a new ledger in --data.
    #[command(after_help = "Example:\n  onoal init --oid oid:onoal:org:myorg")]
    Init {
        /// The ledger's OID, e.g. oid:onoal:org:myorg.
        #[arg(long)]
        oid: String,
        /// Ledger id (UUID); random when omitted.
        #[arg(long)]
        ledger_id: Option<String>,
    },
    /// Append one entry.
    #[command(
        after_help = "Example:\n  onoal append --stream orders --type order.created --subject oid:onoal:customer:42 --payload '{\"id\":1}'"
    )]
    Append(AppendArgs),
    /// Append entries from JSON Lines (a file, or - for standard input).
    #[command(
        after_help = "Example:\n  onoal import entries.jsonl   |   producer | onoal import - --ack --json"
    )]
    Import {
        /// File of JSON Lines, or - for standard input.
        file: String,
        /// Print `acked <last seq>` after each durable group.
        #[arg(long)]
        ack: bool,
        /// Entries per group.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Sign every line that carries no issuer signature with this issuer key file
        /// (`onoal key new FILE` makes one).
        #[arg(long)]
        issuer_key: Option<PathBuf>,
    },
    /// Print the entry at SEQ.
    #[command(after_help = "Example:\n  onoal get 7 --json")]
    Get {
        /// Sequence number.
        seq: u64,
    },
    /// Find entries by stream, type, subject, issuer and time.
    #[command(after_help = "Example:\n  onoal query --stream orders --since 1h --limit 100 --json")]
    Query(QueryArgs),
    /// Print the matching entries (all by default) as JSON Lines in the import format, in seq
    /// order: `onoal export > entries.jsonl`, then `onoal import entries.jsonl` elsewhere gives
    /// entries with the same content (payload, subject, issuer, refs, issuer signature); the
    /// importing ledger assigns seq, time and the hash chain.
    #[command(after_help = "Example:\n  onoal export --stream orders > orders.jsonl")]
    Export {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// This ledger at a glance: id, OID, public key, vkey, size, newest checkpoint, replicas.
    #[command(after_help = "Example:\n  onoal info --json")]
    Info,
    /// Print a signed checkpoint (the latest, signing one for the current size if needed).
    #[command(
        after_help = "Example:\n  onoal checkpoint   |   onoal checkpoint --size 1000   |   onoal checkpoint --cosigned"
    )]
    Checkpoint {
        /// Print the stored checkpoint of this tree size instead.
        #[arg(long, conflicts_with = "cosigned")]
        size: Option<u64>,
        /// Print the newest checkpoint that carries witness cosignatures (`serve --witness`),
        /// with their signature lines.
        #[arg(long)]
        cosigned: bool,
    },
    /// List the stored checkpoints (size and root), oldest first.
    #[command(after_help = "Example:\n  onoal checkpoints --json")]
    Checkpoints,
    /// Build a proof.
    #[command(after_help = "Example:\n  onoal prove inclusion 7 --bundle > entry-7.tlog-proof")]
    Prove {
        #[command(subcommand)]
        what: ProveCommand,
    },
    /// Self-contained proofs others can check with only the ledger's vkey.
    #[command(
        after_help = "Example:\n  onoal proof export 7 > proof.json && onoal proof verify proof.json --vkey \"$VKEY\""
    )]
    Proof {
        #[command(subcommand)]
        what: ProofCommand,
    },
    /// Check a C2SP tlog-proof (`onoal prove inclusion SEQ --bundle`) offline with only the
    /// ledger's vkey: exit 0 when it verifies, 1 with the reason. Needs no data directory.
    ///
    /// Example: `onoal verify-proof entry-7.tlog-proof --vkey "$(cat ledger.vkey)"`
    #[command(after_help = "Example:\n  onoal verify-proof entry-7.tlog-proof --vkey \"$VKEY\"")]
    VerifyProof {
        /// The .tlog-proof file (`-` for stdin).
        file: PathBuf,
        /// The ledger's C2SP verifier key (`NAME+KEYID+KEY`, as `onoal init` and `onoal info`
        /// print it), obtained from the ledger, never from the file.
        #[arg(long)]
        vkey: String,
        /// The logged leaf data, when the proof carries none (its `extra` line) or to check
        /// that these exact bytes are what was logged.
        #[arg(long)]
        leaf_data: Option<PathBuf>,
        /// A witness whose cosignature on the proof's checkpoint counts (its C2SP vkey, as
        /// `onoal witness info` prints it; repeatable).
        #[arg(long, value_name = "VKEY")]
        witness_vkey: Vec<String>,
        /// Valid cosignatures of --witness-vkey witnesses required [default: all given].
        #[arg(long, value_name = "K")]
        quorum: Option<usize>,
    },
    /// Audit the whole ledger: entries, chain, tiles, checkpoints (a replica: also that no
    /// fork was found while syncing it).
    #[command(
        after_help = "Example:\n  onoal verify --require-checkpoint   |   onoal verify --ledger oid:onoal:org:b"
    )]
    Verify {
        /// Fail when the ledger holds no signed checkpoint (nothing others could check yet).
        #[arg(long)]
        require_checkpoint: bool,
    },
    /// Find a ledger by id, or the ledgers under an OID prefix: what the running node knows,
    /// then its DHT. Found is not trusted: pin a ledger with `peer add` to sync from it.
    #[command(after_help = "Example:\n  onoal discover --oid oid:onoal:org --json")]
    Discover {
        /// A ledger id.
        #[arg(long, required_unless_present = "oid", conflicts_with = "oid")]
        id: Option<String>,
        /// An OID prefix, e.g. oid:onoal:org.
        #[arg(long)]
        oid: Option<String>,
        /// How long the DHT lookup may take (ms).
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// The mesh messages this ledger originated and wanted delivered (announces, goodbyes),
    /// newest first, with status pending / sent / delivered / failed, retries and the last
    /// error: from the running node, or from the `messages` table when none runs.
    #[command(after_help = "Example:\n  onoal messages --json")]
    Messages {
        /// Only this status: pending, sent, delivered or failed.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// The running node's view of the mesh: itself, pinned and discovered ledgers, replicas,
    /// with each member's state and latency (JSON with --json, Graphviz with --dot, or an SVG).
    #[command(after_help = "Example:\n  onoal topology --json")]
    Topology {
        /// Print Graphviz DOT.
        #[arg(long, conflicts_with = "svg")]
        dot: bool,
        /// Write an SVG drawing to this file.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Where a message to a ledger or an OID would go, and why: a direct peer, an OID-prefix
    /// path (a sub-organisation's parent, a peer of the same domain, a hub), a DHT lookup, or
    /// flooding (the running node's view, or the pinned peers when none runs).
    #[command(after_help = "Example:\n  onoal route --to oid:onoal:gov:b --json")]
    Route {
        /// A ledger id or an OID (oid:onoal:org:b).
        #[arg(long)]
        to: String,
    },
    /// Ask other ledgers across the mesh (routed by OID, sealed end to end, every answer
    /// verified against the ledger's key before it is printed).
    #[command(
        after_help = "Example:\n  onoal remote query --to oid:onoal:gov:b --stream s0 --json"
    )]
    Remote {
        #[command(subcommand)]
        what: RemoteCommand,
    },
    /// Cross-ledger references of this ledger's entries (`append --ref`).
    #[command(after_help = "Example:\n  onoal ref check 12 --json")]
    Ref {
        #[command(subcommand)]
        what: RefCommand,
    },
    /// Issuer keys: Ed25519 keys that sign entries (`append --issuer-key`), separate from the
    /// ledger's own key.
    #[command(after_help = "Example:\n  onoal key new hr.key --name oid:onoal:org:myorg:hr")]
    Key {
        #[command(subcommand)]
        what: KeyCommand,
    },
    /// Simulate a mesh in memory: the real DHT and peer-record cores of N nodes, virtual
    /// time, seeded latency, loss, churn and a partition; prints what lookups achieved.
    #[command(after_help = "Example:\n  onoal sim --nodes 10000 --churn 0.1 --loss 0.01 --json")]
    Sim(SimArgs),
    /// A registry where ledgers register their signed records and look each other up
    /// (`onoal serve --registry URL`).
    #[command(after_help = "Example:\n  onoal registry serve --listen 127.0.0.1:7490")]
    Registry {
        #[command(subcommand)]
        what: RegistryCommand,
    },
    /// Measure a workload next to its baseline (same run); see docs/performance.md.
    #[command(after_help = "Example:\n  onoal bench append --entries 1000000")]
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Run the demo, the mesh story: five ledgers in two domains on loopback (child processes)
    /// find each other from one bootstrap node, witness each other, verify an attestation
    /// (use case 1), sync over QUIC, transfer tokens (use case 2) and a registered asset (use
    /// case 3), catch a ledger showing two histories, and audit every replica.
    #[command(after_help = "Example:\n  onoal demo   |   onoal demo --keep")]
    Demo {
        /// Entries each ledger appends.
        #[arg(long, default_value_t = 100_000)]
        entries: u64,
        /// Keep the nodes running afterwards (until Ctrl-C) and the ledgers on disk, with the
        /// commands and dashboards to explore them.
        #[arg(long)]
        keep: bool,
    },
    /// Run the node: serve the own log and replicas to pinned peers over QUIC, serve the HTTP
    /// API and dashboard, and follow the ledgers given with --follow, until SIGINT/SIGTERM.
    /// Every flag can also live in a TOML file (--config); flags override it.
    #[command(
        after_help = "Example:\n  onoal serve --listen 0.0.0.0:7400 --follow LEDGER_ID@host:7400"
    )]
    Serve(Box<ServeArgs>),
    /// Show the running node: uptime, size, peers, replicas, follows (needs `onoal serve`).
    #[command(after_help = "Example:\n  onoal status --json")]
    Status,
    /// Print the running node's live feed: one line per entry, checkpoint, replica sync and
    /// peer change (tail -f style; JSON Lines with --json).
    #[command(after_help = "Example:\n  onoal watch --stream orders --json")]
    Watch {
        /// Only entries of this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Start at this seq (default: entries appended from now on).
        #[arg(long)]
        from: Option<u64>,
    },
    /// Print a shell completion script: onoal completions bash > /etc/bash_completion.d/onoal
    #[command(after_help = "Example:\n  onoal completions bash > /etc/bash_completion.d/onoal")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): onoal man > onoal.1
    #[command(after_help = "Example:\n  onoal man > onoal.1")]
    Man,
    /// Pin and list peers.
    #[command(
        after_help = "Example:\n  onoal peer add onoal://LEDGER_ID@host:7400#KEY   |   onoal peer list"
    )]
    Peer {
        #[command(subcommand)]
        what: PeerCommand,
    },
    /// Whom this ledger trusts: set a level, make anchors, and see the level derived for any
    /// ledger with the path it comes from (direct, chain, web of trust).
    #[command(
        after_help = "Example:\n  onoal trust set oid:onoal:org:b 0.8   |   onoal trust show oid:onoal:org:b"
    )]
    Trust {
        #[command(subcommand)]
        what: TrustCommand,
    },
    /// Who may read this ledger's streams (served to peers, and by relays holding a replica).
    #[command(after_help = "Example:\n  onoal stream visibility orders trusted:0.7")]
    Stream {
        #[command(subcommand)]
        what: StreamCommand,
    },
    /// Sync the replica of LEDGER_ID from a pinned peer, verifying everything received.
    #[command(
        after_help = "Example:\n  onoal sync onoal://LEDGER_ID@host:7400#KEY   |   onoal sync oid:onoal:org:b --follow"
    )]
    Sync {
        /// Ledger to replicate.
        ledger_id: String,
        /// HOST:PORT of a pinned peer that serves it (default: the ledger's pinned address).
        #[arg(long)]
        from: Option<String>,
        /// full (from scratch), incremental (from what is held), checkpoint (light client).
        #[arg(long, value_enum, default_value_t = SyncModeArg::Incremental)]
        mode: SyncModeArg,
        /// Keep following new checkpoints until SIGINT/SIGTERM.
        #[arg(long)]
        follow: bool,
        /// Seconds any request (connecting included) may go unanswered before the sync fails.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Filtered sync: only entries matching these filters, each with its inclusion proof,
        /// into a sparse replica.
        #[command(flatten)]
        filter: FilterArgs,
        /// Accept checkpoints of this ledger (now and in later syncs) only with K cosignatures
        /// of the witnesses the node trusts (`serve --trust-witness VKEY`); 0 lifts it.
        #[arg(long, value_name = "K")]
        require_witnesses: Option<usize>,
    },
    /// Rebuild this ledger's lost entries from a peer's verified replica (when opening or
    /// `onoal verify` reports entries lost): everything is checked against checkpoints signed
    /// by this ledger's own key before it is written.
    #[command(after_help = "Example:\n  onoal restore --from LEDGER_ID@host:7400")]
    Restore {
        /// The pinned peer that holds a replica of this ledger: LEDGER_ID@HOST:PORT.
        #[arg(long)]
        from: String,
        /// Finish even when entries acknowledged but never signed cannot be given back (their
        /// seqs will be reused).
        #[arg(long)]
        accept_loss: bool,
        /// Seconds any request may go unanswered before the restore fails.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
    },
    /// List replicas and their sync state, or drop one.
    #[command(
        after_help = "Example:\n  onoal replicas   |   onoal replicas drop oid:onoal:org:b --yes"
    )]
    Replicas {
        #[command(subcommand)]
        what: Option<ReplicasCommand>,
    },
    /// List forks found while syncing (both checkpoints as evidence), or drop a forked replica.
    #[command(after_help = "Example:\n  onoal forks   |   onoal forks drop LEDGER_ID")]
    Forks {
        #[command(subcommand)]
        what: Option<ForksCommand>,
    },
    /// This node as a witness (C2SP tlog-witness): its cosigning key, the logs it witnessed,
    /// the split views it caught, and this ledger's own witnesses.
    #[command(after_help = "Example:\n  onoal witness info --json")]
    Witness {
        #[command(subcommand)]
        what: WitnessCommand,
    },
    /// Mint tokens of an asset on this ledger (an entry of the stream `tokens`).
    #[command(after_help = "Example:\n  onoal mint --asset eur --amount 1000")]
    Mint {
        /// The asset's id (letters, digits, `-_.:`).
        #[arg(long)]
        asset: String,
        /// How many.
        #[arg(long)]
        amount: u64,
    },
    /// Balances per asset, derived from this ledger's token entries: available, locked by
    /// outgoing transfers, incoming (reserved), minted, received, sent.
    #[command(after_help = "Example:\n  onoal balance --json")]
    Balance {
        /// Only this asset.
        #[arg(long)]
        asset: Option<String>,
    },
    /// Two-phase token transfers to other ledgers (lock, reserve, commit, credit, confirm;
    /// each step an entry whose reference to the other ledger's step is checked by proof).
    #[command(
        after_help = "Example:\n  onoal transfer start --to oid:onoal:org:bob --asset eur --amount 10   |   onoal transfer status ID --json   |   onoal transfer list"
    )]
    Transfer {
        #[command(subcommand)]
        what: TransferCommand,
    },
    /// Registered assets (use case 3): an asset that exists once, registered on its owner's
    /// ledger, announced in the DHT and the registry, moved by `transfer start --amount 1`;
    /// its owner is found and proven from the histories of the ledgers it passed through.
    #[command(
        after_help = "Example:\n  onoal asset register --id car-17 --meta '{\"vin\":\"WVW123\"}'   |   onoal asset find --id car-17   |   onoal asset verify --id car-17 --json"
    )]
    Asset {
        #[command(subcommand)]
        what: AssetCommand,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum AssetCommand {
    /// Register an asset on this ledger through the running node (a `register` entry of the
    /// stream `tokens`); the node announces it within a quarter second.
    Register {
        /// The asset's id (1 to 128 letters, digits or `-_.:`).
        #[arg(long)]
        id: String,
        /// Its owner: this ledger's OID or an OID under it [default: this ledger's OID].
        #[arg(long)]
        owner: Option<String>,
        /// What it is, as JSON (at most 4 KiB).
        #[arg(long)]
        meta: Option<String>,
    },
    /// Find the ledger that owns an asset: the claims in the DHT and the registry, each
    /// walked to the owner by proof; fails when no claim holds.
    Find {
        /// The asset's id.
        #[arg(long)]
        id: String,
        /// How long the DHT and registry lookups may take, ms.
        #[arg(long, default_value_t = 3000)]
        wait_ms: u64,
    },
    /// Like `find`, and show the proof: the registration entry and every hand-over (each
    /// commit and credit checked by inclusion proof in its ledger's signed checkpoint).
    Verify {
        /// The asset's id.
        #[arg(long)]
        id: String,
        /// How long the DHT and registry lookups may take, ms.
        #[arg(long, default_value_t = 3000)]
        wait_ms: u64,
    },
    /// The registered assets this ledger holds.
    List,
}

#[derive(Subcommand, Debug)]
pub(crate) enum TransferCommand {
    /// Start a transfer through the running node and follow it until this ledger is done;
    /// fails (`transfer_aborted`) when it ends unlocked.
    Start {
        /// The destination: an OID or a ledger id.
        #[arg(long)]
        to: String,
        /// The asset.
        #[arg(long)]
        asset: String,
        /// The amount.
        #[arg(long)]
        amount: u64,
        /// The transfer's id [default: a fresh UUID].
        #[arg(long)]
        id: Option<String>,
        /// Seconds to wait for the destination's reservation before unlocking.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Return once the lock is written (follow it with `transfer status`).
        #[arg(long)]
        no_wait: bool,
    },
    /// One transfer: this ledger's steps and phase, and the other ledger's, verified by proof.
    Status {
        /// The transfer's id.
        id: String,
        /// Do not ask the other ledger.
        #[arg(long)]
        local: bool,
    },
    /// Every transfer of this ledger.
    List,
}

#[derive(Subcommand, Debug)]
pub(crate) enum WitnessCommand {
    /// Print the witness's name and vkey (give the vkey to those who should trust its
    /// cosignatures: `serve --trust-witness`, `verify-proof --witness-vkey`), and with a
    /// running node what it witnessed and caught.
    Info,
    /// Drop the split-view evidence held about a log (once its operator settled the matter):
    /// its ledger is synced again. A forked replica stays forked until `onoal forks drop`.
    DropEvidence {
        /// The log's origin (its OID), as `witness info` shows it.
        origin: String,
    },
}

/// Which entries (all given must match): `query`, and a filtered `sync`.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Only entries of this stream.
    #[arg(long)]
    pub(crate) stream: Option<String>,
    /// Only entries of this type.
    #[arg(long = "type")]
    pub(crate) entry_type: Option<String>,
    /// Only entries about this subject OID.
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// Only entries by this issuer OID.
    #[arg(long)]
    pub(crate) issuer: Option<String>,
    /// Only entries at or after this time (inclusive): ms since the epoch, RFC 3339
    /// (2026-12-03T10:00:00Z), or a duration back from now (90s, 15m, 1h, 7d, 2w).
    #[arg(long, value_parser = time_arg)]
    pub(crate) since: Option<u64>,
    /// Only entries at or before this time (inclusive), written as for --since.
    #[arg(long, value_parser = time_arg)]
    pub(crate) until: Option<u64>,
}

/// A time on the command line: ms since the epoch, RFC 3339, or a duration back from now.
fn time_arg(text: &str) -> Result<u64, String> {
    onoal_engine::time::parse_time(text, onoal_engine::time::now_ms()).map_err(|e| e.to_string())
}

impl From<&FilterArgs> for onoal_engine::Filter {
    fn from(f: &FilterArgs) -> Self {
        Self {
            stream: f.stream.clone(),
            entry_type: f.entry_type.clone(),
            subject: f.subject.clone(),
            issuer: f.issuer.clone(),
            since_ms: f.since,
            until_ms: f.until,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum ProofCommand {
    /// Write a proof that entry SEQ is in this ledger (or the replica --ledger names): the
    /// entry, its leaf data, its inclusion proof and the newest signed checkpoint, as JSON on
    /// stdout (`> proof.json`).
    Export {
        /// The entry.
        seq: u64,
    },
    /// Check a proof file offline with nothing but the ledger's vkey (as `onoal init` printed
    /// it); exits 0 when it verifies, 1 with the reason when it does not. Needs no data
    /// directory.
    Verify {
        /// The file `onoal proof export` wrote (`-` for stdin).
        file: PathBuf,
        /// The ledger's C2SP verifier key (`NAME+KEYID+KEY`), obtained from the ledger, not
        /// from the file.
        #[arg(long)]
        vkey: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeyCommand {
    /// Write a fresh issuer key to FILE (mode 0600; refuses to overwrite) and print its public
    /// key.
    New {
        /// Where to write it.
        file: PathBuf,
        /// A name recorded in the file, e.g. the issuer's OID.
        #[arg(long, default_value = "issuer")]
        name: String,
    },
    /// Print the public key of an issuer key file.
    Show {
        /// The key file.
        file: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RefCommand {
    /// Verify the references of entry SEQ of this ledger: each against a checkpoint signed by
    /// the referenced ledger's key (from a local replica, or through the mesh); exits 1 unless
    /// all verified.
    Check {
        /// The entry.
        seq: u64,
    },
    /// The recorded reference checks (`serve --verify-refs` records one per new entry with
    /// references; `ref check` records one too), newest entry first; exits 1 when any did not
    /// all verify.
    List {
        /// Most records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum RemoteCommand {
    /// The seed's cross-ledger query: entries of the ledger TO matching the filters, each with
    /// an inclusion proof in its signed checkpoint; one-shot, nothing is stored (`onoal sync
    /// --stream` keeps a replica). Through the running node, or a temporary one over the
    /// pinned peers.
    Query {
        /// The ledger to ask: its id or its OID (oid:onoal:org:b).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Page size, 1 to 500 (default 100).
        #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..=500))]
        limit: Option<u32>,
        /// next_cursor of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// The seed's proof verification: ask the ledger TO to check its entry SEQ against the
    /// fields given; its answer is a statement signed by its ledger key carrying the inclusion
    /// proof, verified here. Exits 0 on `match`, 1 on `mismatch` or `not_found`.
    Verify {
        /// The ledger to ask: its id or its OID (default: the ledger of `--proof`).
        #[arg(long, required_unless_present = "proof")]
        to: Option<String>,
        /// The entry's seq (default: the entry of `--proof`).
        #[arg(long, required_unless_present = "proof")]
        seq: Option<u64>,
        /// Take the ledger, seq and leaf hash from a proof file (`onoal proof export`).
        #[arg(long)]
        proof: Option<PathBuf>,
        /// The entry's leaf hash (hex); lets a ledger confirm an entry this one may not read.
        #[arg(long)]
        leaf_hash: Option<String>,
        /// The subject OID it must have.
        #[arg(long)]
        subject: Option<String>,
        /// The issuer OID it must have.
        #[arg(long)]
        issuer: Option<String>,
        /// The entry type it must have.
        #[arg(long = "type")]
        entry_type: Option<String>,
        /// The issuer public key (hex, `onoal key show`) that must have signed it.
        #[arg(long)]
        issuer_key: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TrustCommand {
    /// Trust LEDGER_ID at LEVEL (0 to 1), e.g. `onoal trust set ID 0.8 --reason audited`.
    Set {
        /// The ledger: its id, a unique id prefix (4+ hex digits) or its OID.
        ledger_id: String,
        /// Trust from 0 (none) to 1 (full).
        level: f64,
        /// Why (kept with the level).
        #[arg(long)]
        reason: Option<String>,
        /// The level no longer counts after this many seconds.
        #[arg(long)]
        expires_in_s: Option<u64>,
    },
    /// The level derived for LEDGER_ID, the path it comes from, and this ledger's own row.
    Show {
        /// The ledger: its id, a unique id prefix (4+ hex digits) or its OID.
        ledger_id: String,
    },
    /// Every ledger trusted (directly, as an anchor, or through them), best first.
    List,
    /// How FROM trusts TO as far as this ledger knows (its own decisions, and the signed
    /// statements it holds): the best path and each hop.
    Path {
        /// The ledger whose trust is followed (id, prefix or OID).
        from: String,
        /// The ledger trusted (id, prefix or OID).
        to: String,
    },
    /// Trust anchors: trusted at 1.0, and the start of chains.
    Anchor {
        #[command(subcommand)]
        what: AnchorCommand,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum StreamCommand {
    /// Show the policy, or set STREAM (or, with --default, every stream not named) to
    /// private (no one), public (anyone) or trusted:T (peers this ledger trusts at least T):
    /// `onoal stream visibility orders trusted:0.7`.
    Visibility {
        /// The stream.
        stream: Option<String>,
        /// private, public or trusted:T.
        visibility: Option<String>,
        /// Set the default for every stream not named to this.
        #[arg(long, value_name = "VISIBILITY", conflicts_with_all = ["stream", "visibility"])]
        default: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum AnchorCommand {
    /// Make LEDGER_ID an anchor.
    Add {
        /// The ledger: its id, a unique id prefix (4+ hex digits) or its OID.
        ledger_id: String,
    },
    /// Stop treating LEDGER_ID as an anchor.
    Remove {
        /// The ledger: its id, a unique id prefix (4+ hex digits) or its OID.
        ledger_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum PeerCommand {
    /// Pin a peer's key: `peer add TICKET` (the `onoal://…` line `onoal serve` and `onoal info`
    /// print), or `peer add LEDGER_ID[@HOST:PORT] --key KEY` (no address for a peer that only
    /// reads from this ledger).
    Add {
        /// A ticket, or LEDGER_ID[@HOST:PORT].
        spec: String,
        /// The peer's Ed25519 public key: hex, or the vkey `onoal init` prints (a ticket
        /// carries it).
        #[arg(long)]
        key: Option<String>,
        /// Replace the key pinned for this ledger (refused otherwise, as ssh refuses a changed
        /// host key); the old key stays in the peer's history (`peer list`).
        #[arg(long)]
        replace_key: bool,
    },
    /// List pinned peers.
    List,
    /// Unpin a peer: it is no longer served or synced from (its replica stays).
    Remove {
        /// The peer's ledger id.
        ledger_id: String,
    },
    /// Keep in touch with a discovered ledger (heartbeats; the running node finds it first if
    /// needed). Connecting is not pinning: it is served nothing until `peer add`.
    Connect {
        /// The ledger id.
        ledger_id: String,
        /// How long finding it and its first heartbeat may take (ms).
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Stop heartbeating a ledger; gossip does not bring it back until `peer connect`.
    Disconnect {
        /// The ledger id.
        ledger_id: String,
    },
}

/// `onoal serve`. Every field is optional here so that a config file can supply it; the
/// defaults are applied after merging (see `cmd::serve_config`).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct ServeArgs {
    /// A TOML file with any of these settings (keys as the flags without dashes, with `_`).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective settings (file and flags merged) as TOML and exit.
    #[arg(long)]
    pub(crate) print_config: bool,
    /// QUIC address to listen on [default: 127.0.0.1:7400].
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// HTTP API and dashboard address [default: 127.0.0.1:7480]; 127.0.0.1:0 picks a free port.
    #[arg(long)]
    pub(crate) http: Option<String>,
    /// Also serve gRPC (streaming append, get, query, prove, watch) here; off by default.
    /// Loopback only; uses the HTTP token when one is set.
    #[arg(long)]
    pub(crate) grpc: Option<String>,
    /// Serve no HTTP API (writing commands cannot reach the node then).
    #[arg(long)]
    pub(crate) no_http: bool,
    /// Bearer token file for the API (created, mode 0600, when missing). Required off loopback.
    #[arg(long)]
    pub(crate) http_token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the API. Required off loopback.
    #[arg(long, requires = "http_tls_key")]
    pub(crate) http_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the API.
    #[arg(long, requires = "http_tls_cert")]
    pub(crate) http_tls_key: Option<PathBuf>,
    /// Serve even though the key file is readable by other users.
    #[arg(long)]
    pub(crate) allow_insecure_key: bool,
    /// Follow this ledger (pinned with `onoal peer add`) from HOST:PORT: LEDGER_ID@HOST:PORT.
    /// (`--peer` is the old name, still accepted.)
    #[arg(long, alias = "peer")]
    pub(crate) follow: Vec<String>,
    /// Join the mesh through this node: LEDGER_ID@HOST:PORT (repeatable; give each one's key
    /// with --bootstrap-key, in the same order).
    #[arg(long)]
    pub(crate) bootstrap: Vec<String>,
    /// The Ed25519 key (hex) of each --bootstrap node, in order: its QUIC handshake must
    /// present it.
    #[arg(long)]
    pub(crate) bootstrap_key: Vec<String>,
    /// The QUIC address others should dial, when it is not --listen (0.0.0.0, NAT).
    #[arg(long)]
    pub(crate) advertise: Option<String>,
    /// Seconds between record exchanges with a few known peers [default: 5].
    #[arg(long)]
    pub(crate) gossip_interval: Option<u64>,
    /// Milliseconds between heartbeats to each member [default: 2000].
    #[arg(long)]
    pub(crate) heartbeat_interval_ms: Option<u64>,
    /// Unanswered heartbeats in a row before a member counts as disconnected [default: 3].
    #[arg(long)]
    pub(crate) heartbeat_misses: Option<u32>,
    /// Milliseconds between SWIM probes of one random member; a member that answers neither
    /// a probe nor the indirect probes is suspect, and down after 4 probe periods
    /// [default: 1000].
    #[arg(long)]
    pub(crate) swim_probe_ms: Option<u64>,
    /// Register with this registry and find ledgers through it: http://HOST:PORT (or https).
    #[arg(long)]
    pub(crate) registry: Option<String>,
    /// File holding the registry's API key.
    #[arg(long, requires = "registry")]
    pub(crate) registry_api_key_file: Option<PathBuf>,
    /// Find ledgers through DNS: the SRV name, e.g. _onoal._udp.example.org (each SRV target
    /// has a TXT record "onoal-id=LEDGER_ID onoal-key=HEX").
    #[arg(long)]
    pub(crate) dns: Option<String>,
    /// The DNS server to ask, HOST:PORT [default: the system's].
    #[arg(long, requires = "dns")]
    pub(crate) dns_server: Option<String>,
    /// Seconds between refreshes of the registry and DNS (the seed's refreshInterval)
    /// [default: 60].
    #[arg(long)]
    pub(crate) refresh_interval: Option<u64>,
    /// Connect only to links (pinned peers and --bootstrap nodes), as a firewall would:
    /// records still spread through the links, and routed queries travel hop by hop over them.
    #[arg(long)]
    pub(crate) links_only: bool,
    /// Check the references of every new entry once it is durable (the seed's afterAppend hook)
    /// and record the outcome (`onoal ref list`, `GET /mesh/refs`).
    #[arg(long)]
    pub(crate) verify_refs: bool,
    /// Send each new checkpoint of this ledger to this witness (a pinned LEDGER_ID; repeatable)
    /// and keep the cosignatures it returns with the checkpoint.
    #[arg(long)]
    pub(crate) witness: Vec<String>,
    /// Serve (publish) only checkpoints cosigned by at least K of the --witness ledgers
    /// [default: 0, every checkpoint is served].
    #[arg(long, value_name = "K")]
    pub(crate) witness_quorum: Option<usize>,
    /// Also witness this non-Onoal log, named by its C2SP verifier key (repeatable); pinned
    /// ledgers are witnessed anyway.
    #[arg(long, value_name = "VKEY")]
    pub(crate) witness_log: Vec<String>,
    /// Trust this witness's cosignatures (its C2SP vkey, from `onoal witness info`; repeatable).
    #[arg(long, value_name = "VKEY")]
    pub(crate) trust_witness: Vec<String>,
    /// Accept a checkpoint of any ledger only with K cosignatures of --trust-witness witnesses
    /// [default: 0]; `onoal sync --require-witnesses K` sets it per ledger.
    #[arg(long, value_name = "K")]
    pub(crate) require_witnesses: Option<usize>,
}

/// `onoal registry ...`
#[derive(Subcommand, Debug)]
pub(crate) enum RegistryCommand {
    /// Serve a registry over HTTP until interrupted.
    Serve {
        /// Where to listen, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:7490")]
        listen: String,
        /// File holding the API key every client must send (Authorization: Bearer KEY).
        #[arg(long)]
        api_key_file: Option<PathBuf>,
        /// TLS certificate chain (PEM). Required with an API key off loopback.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Seconds after which a record that was not registered again is dropped
        /// [default: 180, three refresh intervals].
        #[arg(long, default_value_t = 180)]
        expire_after: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ForksCommand {
    /// Delete the forked replica of LEDGER_ID (and its fork evidence); the next sync starts
    /// afresh. A replica that has not forked is refused: use `onoal replicas drop`.
    Drop {
        /// The ledger: its id, a unique id prefix (4+ hex digits) or its OID.
        ledger_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ReplicasCommand {
    /// Delete the replica of LEDGER_ID (its entries and sync state); the next sync starts
    /// afresh. Asks for confirmation on a terminal; elsewhere needs --yes.
    Drop {
        /// The ledger: its id, a unique id prefix (4+ hex digits) or its OID.
        ledger_id: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub(crate) struct AppendArgs {
    /// Stream name.
    #[arg(long)]
    pub(crate) stream: String,
    /// Entry type.
    #[arg(long = "type")]
    pub(crate) entry_type: String,
    /// Subject OID.
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// Issuer OID.
    #[arg(long)]
    pub(crate) issuer: Option<String>,
    /// Payload text.
    #[arg(long, conflicts_with = "payload_file", required_unless_present = "payload_file")]
    pub(crate) payload: Option<String>,
    /// Read the payload from this file.
    #[arg(long)]
    pub(crate) payload_file: Option<PathBuf>,
    /// A reference to an entry of another ledger, LEDGER_ID:SEQ:LEAF_HASH (repeatable);
    /// `onoal ref check SEQ` verifies them.
    #[arg(long = "ref")]
    pub(crate) refs: Vec<String>,
    /// Sign the entry with this issuer key file (`onoal key new FILE` makes one); the key never
    /// leaves this process, the node checks the signature on append.
    #[arg(long)]
    pub(crate) issuer_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Page size, 1 to 10000 (default 100).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub(crate) limit: Option<usize>,
    /// next_cursor of the previous page.
    #[arg(long)]
    pub(crate) cursor: Option<String>,
}

/// `bench http` and `bench grpc`.
#[derive(Args, Debug)]
pub(crate) struct ApiBenchArgs {
    /// Entries in the ledger the workload runs on.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) entries: u64,
    /// Payload bytes per entry.
    #[arg(long, default_value_t = 256)]
    pub(crate) payload: usize,
    /// Entries per request (and per direct group).
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch: usize,
}

#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Append throughput and latency vs raw RocksDB WriteBatch puts (durability: --durability).
    Append {
        /// Entries in the ledger the workload runs on.
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
        /// Entries in the ledger the workload runs on.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Proofs to generate.
        #[arg(long, default_value_t = 200_000)]
        proofs: u64,
        /// Reuse (or build) the ledger in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Full audit throughput vs a raw RocksDB scan of the same entries (and SHA-256 of the same
    /// leaf bytes) on all cores.
    Verify {
        /// Entries in the ledger the workload runs on.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Reuse (or build) the ledger in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Full sync of N entries between two nodes on loopback vs raw quinn and raw RocksDB;
    /// with --followers F, one source and F followers at once vs one follower alone; with
    /// --relay, a chain of three (source, relay, last) vs the direct hop.
    Sync {
        /// Entries in the ledger the workload runs on.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Followers syncing the source at once (fan-out); 1 = the two-node sync.
        #[arg(long, default_value_t = 1, conflicts_with = "relay")]
        followers: usize,
        /// Sync through a relay: the last node reaches the source's log only through a
        /// relay that replicated it.
        #[arg(long)]
        relay: bool,
    },
    /// Batched appends through the node's HTTP API vs direct engine appends (same run).
    Http(ApiBenchArgs),
    /// Batched appends over one gRPC stream vs direct engine appends (same run).
    Grpc(ApiBenchArgs),
    /// Web of trust from one ledger to all others over a random trust graph (depth 6, one
    /// core) vs a breadth-first walk of the same edges.
    Trust {
        /// Ledgers in the trust graph.
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Trust statements (edges) between them, drawn at random.
        #[arg(long, default_value_t = 100_000)]
        edges: usize,
        /// Seed of the random graph (the same seed, the same graph).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The cross-ledger query routed by OID over 1, 3 and 5 hops on loopback (latency p50/p99,
    /// queries/s; sealed, verified) vs the same query on the destination's own log.
    Route {
        /// Hop counts to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 3, 5])]
        hops: Vec<usize>,
        /// Queries per hop count.
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    /// Witnesses: cosignatures per second of one witness (its decision on one core vs the
    /// signature floor; durable through a node vs one fsynced write) and the checkpoint-to-
    /// quorum latency with W witnesses on loopback.
    Witness {
        /// Checkpoints of the log the witness cosigns.
        #[arg(long, default_value_t = 2000)]
        checkpoints: usize,
        /// Witnesses (quorum: all of them) for the latency.
        #[arg(long, default_value_t = 3)]
        witnesses: usize,
    },
    /// Two-phase transfers between two nodes on loopback: completed transfers per second one
    /// at a time (p50/p99 latency) and with --concurrency in flight, vs the floor of five
    /// appends in sequence (the steps' critical path) in the same durability.
    Transfer {
        /// Transfers per phase.
        #[arg(long, default_value_t = 500)]
        transfers: usize,
        /// Transfers in flight in the concurrent phase.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Registered assets on three nodes on loopback: registrations per second, and how long a
    /// third ledger takes to find and prove the owner of an asset moved --hops times, vs one
    /// proven routed round trip.
    Asset {
        /// Hand-overs of the traced asset.
        #[arg(long, default_value_t = 4)]
        hops: usize,
        /// Traces measured.
        #[arg(long, default_value_t = 200)]
        traces: usize,
    },
    /// Print benchmark results (JSON lines, as `--json` and benches/run-all.sh print them) as
    /// one markdown table: workload, parameters, figures, baselines, ratios.
    Table {
        /// The results file; `-` or none reads stdin.
        file: Option<PathBuf>,
    },
    /// Draw append throughput vs batch size and vs writers, the ledger next to its raw RocksDB
    /// baseline, as an SVG chart (on stdout) from benchmark results (JSON lines, as
    /// benches/run-all.sh writes them).
    Plot {
        /// The results file; `-` or none reads stdin.
        file: Option<PathBuf>,
        /// The chart's title (say which machine measured it).
        #[arg(long, default_value = "Onoal append throughput, 256-byte entries")]
        title: String,
    },
    /// Reopen time vs a raw RocksDB open of the same directory; then the bytes on disk per
    /// entry (each column family's after a flush and a full compaction of the directory).
    Open {
        /// Entries in the ledger the workload runs on.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u64,
        /// Reuse (or build) the ledger in this directory instead of a temporary one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ProveCommand {
    /// Inclusion proof of entry SEQ in the tree of --size (default: current size).
    ///
    /// With --bundle: a C2SP tlog-proof (`c2sp.org/tlog-proof@v1`: the entry's leaf data, its
    /// index, the inclusion proof and the signed checkpoint) that `onoal verify-proof` — or any
    /// tlog-proof verifier — checks with only the ledger's vkey:
    /// `onoal prove inclusion 7 --bundle > entry-7.tlog-proof`.
    Inclusion {
        /// The entry.
        seq: u64,
        /// Tree size (with --bundle: a signed size, see `onoal checkpoints`).
        #[arg(long)]
        size: Option<u64>,
        /// Write a C2SP tlog-proof for a signed size (the newest that holds the entry; this
        /// ledger signs one when none does yet).
        #[arg(long)]
        bundle: bool,
    },
    /// Consistency proof between tree sizes OLD and NEW.
    Consistency {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
    },
}

/// `onoal sim`.
#[derive(Args, Debug)]
pub(crate) struct SimArgs {
    /// Nodes (2..=100000).
    #[arg(long, default_value_t = 1000)]
    pub(crate) nodes: usize,
    /// Seed: the same seed gives the same report (apart from wall_s and peak_rss_mb).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Fraction of nodes that crash, and are replaced by new ones, while lookups run (0..=0.9).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) churn: f64,
    /// Probability that a message is lost (0..=0.5).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) loss: f64,
    /// One-way latency range in milliseconds, `A..B`.
    #[arg(long, default_value = "10..100")]
    pub(crate) latency_ms: String,
    /// Split the network in two for the first 30 virtual seconds of the lookups.
    #[arg(long)]
    pub(crate) partition: bool,
    /// Lookups to run (default: one per 10 nodes, at least 100).
    #[arg(long, default_value_t = 0)]
    pub(crate) lookups: usize,
    /// Virtual seconds of the measured phase.
    #[arg(long, default_value_t = 120)]
    pub(crate) measure_s: u64,
    /// Members each node heartbeats (every 2 s, 3 misses); 0 leaves membership out.
    #[arg(long, default_value_t = 8)]
    pub(crate) members: usize,
    /// Simulate SWIM membership (foca) instead of the DHT: join convergence, failure
    /// detection, false downs; at most 2000 nodes (SWIM holds every member).
    #[arg(long, conflicts_with_all = ["partition", "lookups", "svg"])]
    pub(crate) swim: bool,
    /// Simulate routed queries by OID instead: a hierarchy of domains (hubs), organisations
    /// and departments running the real routing and forwarding cores; success, hops, messages
    /// per query, flooding duplicates, and (with --partition) routing across a split and after.
    #[arg(long, conflicts_with_all = ["swim", "lookups", "svg", "churn", "members"])]
    pub(crate) routing: bool,
    /// Routed queries with --routing.
    #[arg(long, default_value_t = 1000, requires = "routing")]
    pub(crate) queries: usize,
    /// Also draw the lookup-round histogram and success over time as an SVG file.
    #[arg(long)]
    pub(crate) svg: Option<PathBuf>,
}

/// The command's name as typed (for messages).
pub(crate) fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Init { .. } => "init",
        Command::Append(_) => "append",
        Command::Import { .. } => "import",
        Command::Get { .. } => "get",
        Command::Query(_) => "query",
        Command::Export { .. } => "export",
        Command::Info => "info",
        Command::Checkpoint { .. } => "checkpoint",
        Command::Checkpoints => "checkpoints",
        Command::Witness { .. } => "witness",
        Command::Prove { .. } => "prove",
        Command::Proof { .. } => "proof",
        Command::Verify { .. } => "verify",
        Command::VerifyProof { .. } => "verify-proof",
        Command::Bench { .. } => "bench",
        Command::Sim(_) => "sim",
        Command::Registry { .. } => "registry",
        Command::Discover { .. } => "discover",
        Command::Topology { .. } => "topology",
        Command::Route { .. } => "route",
        Command::Remote { .. } => "remote",
        Command::Ref { .. } => "ref",
        Command::Key { .. } => "key",
        Command::Messages { .. } => "messages",
        Command::Demo { .. } => "demo",
        Command::Serve(_) => "serve",
        Command::Status => "status",
        Command::Watch { .. } => "watch",
        Command::Completions { .. } => "completions",
        Command::Man => "man",
        Command::Peer { .. } => "peer",
        Command::Trust { .. } => "trust",
        Command::Stream { .. } => "stream",
        Command::Sync { .. } => "sync",
        Command::Restore { .. } => "restore",
        Command::Replicas { .. } => "replicas",
        Command::Forks { .. } => "forks",
        Command::Mint { .. } => "mint",
        Command::Balance { .. } => "balance",
        Command::Transfer { .. } => "transfer",
        Command::Asset { .. } => "asset",
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Cli;

    /// Words of a shell command line (quotes removed), up to a redirection or pipe.
    fn words(line: &str) -> Vec<String> {
        let (mut out, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    started = true;
                }
                (None, ' ') => {
                    if started || !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    started = false;
                }
                (None, c) => word.push(c),
            }
        }
        if started || !word.is_empty() {
            out.push(word);
        }
        let end =
            out.iter().position(|w| matches!(w.as_str(), ">" | "|" | "&&")).unwrap_or(out.len());
        out.truncate(end);
        out
    }

    #[test]
    fn every_command_has_an_example_and_every_example_parses() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            let help = sub.get_after_help().map(ToString::to_string).unwrap_or_default();
            let example = help
                .strip_prefix("Example:\n  ")
                .unwrap_or_else(|| panic!("`onoal {}` has no example", sub.get_name()));
            for line in example.split("   |   ").flat_map(|l| l.split(" && ")) {
                let line = line.trim_start_matches("producer | ");
                let args = words(line);
                assert_eq!(args[0], "onoal", "{line}");
                if let Err(e) = Cli::try_parse_from(&args) {
                    panic!("the example `{line}` does not parse: {e}");
                }
            }
        }
    }

    #[test]
    fn every_argument_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none()
                    && arg.get_long_help().is_none()
                    && id != "help"
                    && id != "version"
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "onoal", &mut missing);
        assert!(missing.is_empty(), "arguments without a description: {missing:#?}");
    }

    #[test]
    fn globals_are_apart_from_a_command_s_own_flags() {
        let mut cli = Cli::command();
        cli.build();
        let help = cli.find_subcommand_mut("get").unwrap().render_help().to_string();
        let (own, globals) = help.split_once("Global options:").expect("a globals section");
        assert!(own.contains("<SEQ>") && !own.contains("--durability"), "{help}");
        assert!(globals.contains("--data") && globals.contains("--json"), "{help}");
    }
}
