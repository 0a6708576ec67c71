//! `init`, `append`, `get`, `query`, `checkpoint`, `prove`: the ledger's own commands (reads
//! also on a replica with `--ledger`).

use anyhow::{Context as _, Result, anyhow, bail};
use onoal_engine::{Ledger, Log, Name, NewEntry, Oid, OpenError, Query, ReadError};
use serde_json::json;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use onoal_engine::import::EntryInput;
use onoal_mesh::control::StatusView;
use onoal_mesh::control::views::{
    AppendView, CheckpointView, ConsistencyProofView, EntryView, InclusionProofView, QueryPageView,
};

use crate::cli::{AppendArgs, Cli, KeyCommand, ProveCommand, QueryArgs};
use crate::client::{NodeClient, running_node};
use crate::output::{print, print_value};

pub(crate) fn open_write(cli: &Cli) -> Result<Ledger> {
    open_write_with(cli, cli.durability())
}

pub(crate) fn open_write_with(cli: &Cli, durability: onoal_engine::Durability) -> Result<Ledger> {
    let ledger = Ledger::builder(&cli.data).durability(durability).open()?;
    if let Some(mode) = key_file_exposed(cli)? {
        let path = onoal_engine::identity::key_path(&cli.data);
        eprintln!(
            "warning: key file {} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(ledger)
}

/// The key file's mode when users other than its owner can read it (as ssh warns).
pub(crate) fn key_file_exposed(cli: &Cli) -> Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let path = onoal_engine::identity::key_path(&cli.data);
        let mode = std::fs::metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        Ok((mode & 0o077 != 0).then_some(mode & 0o777))
    }
    #[cfg(not(unix))]
    {
        let _ = cli;
        Ok(None)
    }
}

pub(crate) fn open_read(cli: &Cli) -> Result<Ledger> {
    Ok(Ledger::builder(&cli.data).open_read_only()?)
}

pub(crate) fn is_in_use(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<OpenError>(), Some(OpenError::InUse { .. }))
}

/// The own log, or the replica named by --ledger (read-only).
pub(crate) fn read_log(cli: &Cli) -> Result<(Ledger, Log)> {
    let ledger = open_read(cli)?;
    let log = match &cli.ledger {
        None => ledger.log().clone(),
        Some(id) => {
            let id = crate::cmd::mesh::resolve_in(&ledger, id)?;
            ledger.log_of(&id).or_else(|| ledger.sparse_replica(&id)).ok_or_else(|| {
                anyhow!("no replica of {id} here; sync it first: onoal sync {id} --from HOST:PORT")
            })?
        }
    };
    Ok((ledger, log))
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

pub(crate) fn init(cli: &Cli, oid: &str, ledger_id: Option<&str>) -> Result<()> {
    let oid = Oid::parse(oid)?;
    let mut b = Ledger::builder(&cli.data);
    if let Some(id) = ledger_id {
        b = b.ledger_id(id);
    }
    let ledger = b.create(oid)?;
    let id = ledger.identity();
    let v = json!({
        "ledger_id": id.ledger_id.to_string(),
        "oid": id.oid.as_str(),
        "public_key": hex::encode(id.public_key.as_bytes()),
        "vkey": id.verifier().to_vkey(),
    });
    print(cli, v, || {
        format!(
            "created ledger {} ({}) in {}\npublic key {}\nverifier key {}",
            id.ledger_id,
            id.oid,
            cli.data.display(),
            hex::encode(id.public_key.as_bytes()),
            id.verifier().to_vkey()
        )
    });
    Ok(())
}

/// Reads a payload file of at most `max` bytes (a device or pipe included).
fn read_payload_file(path: &std::path::Path, max: usize) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path)
        .with_context(|| format!("cannot read payload file {}", path.display()))?;
    let mut out = Vec::new();
    f.take(max as u64 + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("cannot read payload file {}", path.display()))?;
    if out.len() > max {
        bail!(
            "payload file {} is larger than this ledger's payload limit of {max} bytes; split it",
            path.display()
        );
    }
    Ok(out)
}

pub(crate) fn append(cli: &Cli, a: &AppendArgs) -> Result<()> {
    if let Some(node) = running_node(cli)? {
        return append_through(cli, &node, a);
    }
    let ledger = open_write(cli)?;
    let payload = match (&a.payload, &a.payload_file) {
        (Some(p), _) => p.as_bytes().to_vec(),
        (None, Some(f)) => read_payload_file(f, ledger.max_payload_bytes())?,
        (None, None) => bail!("give --payload or --payload-file"),
    };
    let mut entry =
        new_entry(&a.stream, &a.entry_type, a.subject.as_deref(), a.issuer.as_deref(), payload)?;
    entry.refs =
        a.refs.iter().map(|r| onoal_engine::import::parse_ref(r)).collect::<Result<_, _>>()?;
    if let Some(path) = &a.issuer_key {
        entry = entry.sign(read_issuer_key(path)?.signing_key());
    }
    entry.validate(ledger.max_payload_bytes())?;
    let r = ledger.append(entry)?;
    // Sign what was appended before exiting, so it does not wait for the next writer.
    let cp = ledger.checkpoint_now().with_context(|| {
        format!("appended seq {}, but signing a checkpoint of it failed", r.seq)
    })?;
    print_appended(cli, r.seq, &r.leaf_hash.to_hex(), cp.size);
    Ok(())
}

fn print_appended(cli: &Cli, seq: u64, leaf_hash: &str, checkpoint_size: u64) {
    let v = json!({"seq": seq, "leaf_hash": leaf_hash, "checkpoint_size": checkpoint_size});
    print(cli, v, || {
        format!("appended seq {seq} leaf hash {leaf_hash}; signed checkpoint {checkpoint_size}")
    });
}

/// `append` while a node runs: the same entry through its API, then a checkpoint of it.
fn append_through(cli: &Cli, node: &NodeClient, a: &AppendArgs) -> Result<()> {
    let status: StatusView = node.get("/status")?;
    let mut input = EntryInput {
        stream: a.stream.clone(),
        entry_type: a.entry_type.clone(),
        subject: a.subject.clone(),
        issuer: a.issuer.clone(),
        refs: a.refs.clone(),
        ..EntryInput::default()
    };
    match (&a.payload, &a.payload_file) {
        (Some(p), _) => input.payload = Some(p.clone()),
        (None, Some(f)) => {
            input.payload_b64 = Some(B64.encode(read_payload_file(f, status.max_payload_bytes)?));
        }
        (None, None) => bail!("give --payload or --payload-file"),
    }
    // Checked here too, so a bad field reads as it does without a node.
    let entry = input.clone().into_entry(status.max_payload_bytes)?;
    if let Some(path) = &a.issuer_key {
        sign_input(&mut input, entry, &read_issuer_key(path)?);
    }
    let appended: AppendView =
        node.post("/ledger/entries", &json!({ "entries": [input] }), Duration::from_secs(60))?;
    let r = appended.receipts.first().ok_or_else(|| anyhow!("the node acknowledged no entry"))?;
    let cp: CheckpointView =
        node.post("/ledger/checkpoint", &json!({}), Duration::from_secs(60)).with_context(
            || format!("appended seq {}, but signing a checkpoint of it failed", r.seq),
        )?;
    print_appended(cli, r.seq, &r.leaf_hash, cp.size);
    Ok(())
}

/// Reads an issuer key file (the format of the ledger's own key file).
pub(crate) fn read_issuer_key(path: &std::path::Path) -> Result<onoal_engine::identity::SecretKey> {
    onoal_engine::identity::SecretKey::read_file(path).with_context(|| {
        format!("cannot use {} as an issuer key; `onoal key new FILE` makes one", path.display())
    })
}

/// Signs `entry` (built from `input`) with `key` and puts the signature into `input`, so a node
/// receives the signature and never the key.
pub(crate) fn sign_input(
    input: &mut EntryInput,
    entry: NewEntry,
    key: &onoal_engine::identity::SecretKey,
) {
    let sig = entry.sign(key.signing_key()).signature.expect("sign sets the signature");
    input.issuer_key = Some(hex::encode(sig.public_key));
    input.issuer_signature = Some(hex::encode(sig.signature));
}

/// `onoal key new` and `onoal key show`.
pub(crate) fn key(cli: &Cli, what: &KeyCommand) -> Result<()> {
    let (path, key) = match what {
        KeyCommand::New { file, name } => {
            if file.exists() {
                bail!(
                    "{} exists; an issuer key is never overwritten (entries signed with it would lose their signer); choose another file",
                    file.display()
                );
            }
            if name.is_empty() || name.contains(['+', ' ', '\n']) {
                usage_bail!(
                    "--name must be non-empty without '+', spaces or newlines, e.g. oid:acme:hr"
                );
            }
            let key = onoal_engine::identity::SecretKey::generate()?;
            key.write_file(file, name)
                .with_context(|| format!("cannot write {}", file.display()))?;
            (file, key)
        }
        KeyCommand::Show { file } => (file, read_issuer_key(file)?),
    };
    let public_key = hex::encode(key.public().as_bytes());
    print(cli, json!({"file": path.display().to_string(), "public_key": public_key}), || {
        format!("issuer key {}\npublic key {public_key}", path.display())
    });
    Ok(())
}

pub(crate) fn get(cli: &Cli, seq: u64) -> Result<()> {
    let (_ledger, log) = read_log(cli)?;
    let e = log.entry(seq)?;
    print_value(cli, &json!(EntryView::from(&e)));
    Ok(())
}

pub(crate) fn query(cli: &Cli, q: &QueryArgs) -> Result<()> {
    let filter: onoal_engine::Filter = (&q.filter).into();
    filter.validate()?;
    let (_ledger, log) = read_log(cli)?;
    let page =
        log.query(&Query { filter, cursor: q.cursor.clone(), limit: q.limit, max_bytes: None })?;
    let v = json!(QueryPageView::from(&page));
    print(cli, v, || {
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
    Ok(())
}

/// `onoal export`: JSON Lines of the import format, every page of the filter in seq order.
pub(crate) fn export(cli: &Cli, f: &crate::cli::FilterArgs) -> Result<()> {
    use std::io::Write as _;
    let filter: onoal_engine::Filter = f.into();
    filter.validate()?;
    let (_ledger, log) = read_log(cli)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut cursor, mut exported) = (None, 0u64);
    loop {
        let query = Query {
            filter: filter.clone(),
            cursor: cursor.take(),
            limit: Some(10_000),
            max_bytes: None,
        };
        let page = log.query(&query)?;
        for e in &page.entries {
            serde_json::to_writer(&mut out, &EntryInput::from_entry(&e.entry.content))?;
            out.write_all(b"\n")?;
            exported += 1;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    out.flush().context("cannot write the export")?;
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("exported {exported} entries");
    }
    Ok(())
}

/// `onoal info`.
pub(crate) fn info(cli: &Cli) -> Result<()> {
    let ledger = open_read(cli)?;
    let id = ledger.identity();
    let head = ledger.head()?;
    let latest = ledger.log().latest_checkpoint()?;
    let replicas = ledger.replicas().len();
    // With a node running, the ticket carries its address; else only the id and key.
    let address =
        crate::client::NodeFile::read_running(&cli.data).ok().flatten().map(|n| n.quic_addr);
    let ticket = onoal_mesh::ticket::Ticket {
        ledger_id: id.ledger_id,
        address,
        public_key: *id.public_key.as_bytes(),
    }
    .to_string();
    let v = json!({
        "ticket": ticket,
        "ledger_id": id.ledger_id.to_string(),
        "oid": id.oid.as_str(),
        "public_key": hex::encode(id.public_key.as_bytes()),
        "vkey": id.verifier().to_vkey(),
        "tree_size": head.size,
        "root": head.root.to_hex(),
        "checkpoint_size": latest.as_ref().map(|c| c.checkpoint.size),
        "replicas": replicas,
        "data": cli.data.display().to_string(),
    });
    print(cli, v, || {
        format!(
            "ledger      {}\noid         {}\npublic key  {}\nvkey        {}\nticket      {ticket}\ntree size   {}\ncheckpoint  {}\nreplicas    {replicas}\ndata        {}",
            id.ledger_id,
            id.oid,
            hex::encode(id.public_key.as_bytes()),
            id.verifier().to_vkey(),
            head.size,
            latest.map_or_else(
                || "none signed yet (`onoal checkpoint` signs one)".to_owned(),
                |c| c.checkpoint.size.to_string()
            ),
            cli.data.display()
        )
    });
    Ok(())
}

/// How far back `checkpoint --cosigned` and `prove --bundle` look for a cosigned checkpoint.
const COSIGNED_LOOKBACK: usize = 4096;

pub(crate) fn checkpoint(cli: &Cli, size: Option<u64>, cosigned: bool) -> Result<()> {
    if cosigned {
        let (_ledger, log) = read_log(cli)?;
        let cp = log.latest_cosigned_checkpoint(u64::MAX, COSIGNED_LOOKBACK)?.ok_or_else(|| {
            anyhow!(
                "no stored checkpoint carries witness cosignatures: name witnesses when starting the node (onoal serve --witness LEDGER_ID), or sync from a ledger that has them"
            )
        })?;
        print_checkpoint(cli, &CheckpointView::from(&cp));
        return Ok(());
    }
    let signed = match size {
        Some(n) => read_log(cli)?.1.checkpoint_at(n)?.ok_or(ReadError::NoCheckpoint(n))?,
        None if cli.ledger.is_some() => read_log(cli)?
            .1
            .latest_checkpoint()?
            .ok_or_else(|| anyhow!("the replica holds no checkpoint yet; run onoal sync"))?,
        None => {
            print_checkpoint(cli, &sign_checkpoint(cli)?);
            return Ok(());
        }
    };
    print_checkpoint(cli, &CheckpointView::from(&signed));
    Ok(())
}

/// Signs a checkpoint of this ledger's current size (through the running node when there is
/// one).
fn sign_checkpoint(cli: &Cli) -> Result<CheckpointView> {
    Ok(match running_node(cli)? {
        Some(node) => node.post("/ledger/checkpoint", &json!({}), Duration::from_secs(60))?,
        None => CheckpointView::from(&match open_write(cli) {
            Ok(l) => l.checkpoint_now()?,
            Err(e) if is_in_use(&e) => open_read(cli)?.checkpoint_now()?,
            Err(e) => return Err(e),
        }),
    })
}

/// A C2SP tlog-proof of entry `seq` in a signed checkpoint: of `size` when given, else the
/// newest that holds the entry (this ledger signs one when none does).
fn tlog_bundle(cli: &Cli, seq: u64, size: Option<u64>) -> Result<String> {
    let (_ledger, mut log) = read_log(cli)?;
    // The newest checkpoint holding the entry that witnesses cosigned, else the newest.
    let newest_holding = |log: &Log| -> Result<Option<onoal_engine::SignedCheckpoint>, ReadError> {
        let durable = log.durable_size();
        if let Some(cp) =
            log.latest_cosigned_checkpoint(durable, COSIGNED_LOOKBACK)?.filter(|cp| cp.size > seq)
        {
            return Ok(Some(cp));
        }
        Ok(log.latest_checkpoint_at_most(durable)?.filter(|cp| cp.size > seq))
    };
    if seq >= log.durable_size() {
        bail!("entry {seq} is not in this log (tree size {})", log.durable_size());
    }
    let cp = match size {
        Some(n) => log.checkpoint_at(n)?.ok_or_else(|| {
            anyhow!("no signed checkpoint of size {n}: list the signed sizes with `onoal checkpoints`, or leave out --size")
        })?,
        None => match newest_holding(&log)? {
            Some(cp) => cp,
            None if cli.ledger.is_some() => bail!(
                "the replica holds no signed checkpoint that includes entry {seq}; sync a newer one (onoal sync)"
            ),
            None => {
                sign_checkpoint(cli)?;
                log = read_log(cli)?.1;
                newest_holding(&log)?
                    .ok_or_else(|| anyhow!("signed a checkpoint, but it does not hold entry {seq}"))?
            }
        },
    };
    if seq >= cp.size {
        bail!("entry {seq} is not in the signed checkpoint of size {}", cp.size);
    }
    let proof = onoal_engine::tlog_proof::TlogProof {
        extra: Some(log.entry(seq)?.leaf_data),
        index: seq,
        hashes: log.inclusion_proof(seq, cp.size)?,
        checkpoint: cp.note.clone(),
    };
    Ok(proof.to_text())
}

/// `onoal verify-proof`: checks a C2SP tlog-proof with the vkey alone.
pub(crate) fn verify_tlog_proof(
    cli: &Cli,
    path: &std::path::Path,
    vkey: &str,
    leaf_data: Option<&std::path::Path>,
    witness_vkeys: &[String],
    quorum: Option<usize>,
) -> Result<std::process::ExitCode> {
    use onoal_engine::checkpoint::NoteVerifier;
    use onoal_engine::tlog_proof::TlogProof;
    /// Larger than any proof (64 hashes, a checkpoint with cosignatures, a leaf of 16 MiB).
    const MAX_FILE: u64 = 32 << 20;
    let text = if path == std::path::Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin(), MAX_FILE),
            &mut s,
        )?;
        s
    } else {
        let len = std::fs::metadata(path)
            .with_context(|| format!("cannot read the proof file {}", path.display()))?
            .len();
        if len > MAX_FILE {
            bail!("{} is {len} bytes: no tlog-proof is that large", path.display());
        }
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the proof file {} as text", path.display()))?
    };
    let verifier = NoteVerifier::from_vkey(vkey)
        .map_err(|e| anyhow!("--vkey: {e} (the ledger's vkey, as `onoal info` prints it)"))?;
    let witnesses = witness_vkeys
        .iter()
        .map(|v| {
            onoal_engine::cosignature::CosignatureVerifier::from_vkey(v).map_err(|e| {
                anyhow!("--witness-vkey {v:?}: {e} (a witness's vkey, as `onoal witness info` prints it)")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let quorum = quorum.unwrap_or(witnesses.len());
    if quorum > witnesses.len() {
        usage_bail!(
            "--quorum {quorum} needs at least {quorum} --witness-vkey keys; {} given",
            witnesses.len()
        );
    }
    let policy = onoal_engine::cosignature::Cosigners { witnesses, quorum };
    let given = leaf_data
        .map(|p| {
            std::fs::read(p).with_context(|| format!("cannot read the leaf data {}", p.display()))
        })
        .transpose()?;
    let mut verdict = json!({"valid": false, "origin": verifier.name()});
    let outcome = TlogProof::parse(&text).map_err(|e| e.to_string()).and_then(|proof| {
        verdict["index"] = json!(proof.index);
        let (cp, data) = proof.verify(&verifier, given.as_deref()).map_err(|e| e.to_string())?;
        verdict["tree_size"] = json!(cp.size);
        verdict["root"] = json!(cp.root.to_hex());
        if !policy.witnesses.is_empty() {
            let (met, by) = policy.check(&proof.checkpoint).map_err(|e| e.to_string())?;
            verdict["cosigned_by"] = json!(by);
            if !met {
                return Err(format!(
                    "the checkpoint carries {} of the {} witness cosignatures required (by: {})",
                    by.len(),
                    policy.quorum,
                    if by.is_empty() { "none".to_owned() } else { by.join(", ") }
                ));
            }
        }
        verdict["leaf_hash"] = json!(onoal_engine::hash::leaf_hash(data).to_hex());
        if given.is_some() && proof.extra.as_deref().is_some_and(|e| e != data) {
            verdict["note"] = json!("the leaf data given differs from the file's extra line; the leaf data given is what verified");
        }
        // An Onoal entry is shown, and checked as one; other logs' leaves are only proven.
        if let Ok(entry) = onoal_engine::Entry::decode(data) {
            if entry.seq != proof.index {
                return Err(format!(
                    "the leaf data is entry {} of its ledger, but the proof is for index {}",
                    entry.seq, proof.index
                ));
            }
            entry.content.check_issuer_signature().map_err(|_| {
                "the entry's issuer signature does not verify over its content".to_owned()
            })?;
            let stored = onoal_engine::StoredEntry {
                entry,
                leaf_data: data.to_vec(),
                leaf_hash: onoal_engine::hash::leaf_hash(data),
            };
            verdict["entry"] = json!(EntryView::from(&stored));
        }
        Ok(())
    });
    let valid = outcome.is_ok();
    verdict["valid"] = json!(valid);
    if let Err(why) = &outcome {
        verdict["reason"] = json!(why);
    }
    print(cli, verdict.clone(), || match &outcome {
        Ok(()) => format!(
            "valid: index {} is in {}'s signed checkpoint of tree size {}{}{}",
            verdict["index"],
            verifier.name(),
            verdict["tree_size"],
            verdict["cosigned_by"]
                .as_array()
                .map(|by| format!(
                    ", cosigned by {}",
                    by.iter().filter_map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                ))
                .unwrap_or_default(),
            verdict["entry"]["stream"]
                .as_str()
                .map(|s| {
                    let t = verdict["entry"]["type"].as_str().unwrap_or("?");
                    format!(" (entry of stream {s}, type {t})")
                })
                .unwrap_or_default()
        ),
        Err(why) => format!("NOT valid: {why}"),
    });
    Ok(if valid { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::from(1) })
}

fn print_checkpoint(cli: &Cli, cp: &CheckpointView) {
    if cli.json {
        println!("{}", json!(cp));
    } else {
        print!("{}", cp.note);
    }
}

pub(crate) fn prove(cli: &Cli, what: &ProveCommand) -> Result<()> {
    let (_ledger, log) = read_log(cli)?;
    let v = match what {
        ProveCommand::Inclusion { seq, size, bundle: true } => {
            drop(log);
            // The file is the C2SP text whatever --json says: it is made to be saved.
            print!("{}", tlog_bundle(cli, *seq, *size)?);
            return Ok(());
        }
        ProveCommand::Inclusion { seq, size, bundle: false } => {
            json!(InclusionProofView::build(&log, *seq, *size)?)
        }
        ProveCommand::Consistency { old, new } => {
            json!(ConsistencyProofView::build(&log, *old, *new)?)
        }
    };
    print_value(cli, &v);
    Ok(())
}

pub(crate) fn proof_export(cli: &Cli, seq: u64) -> Result<()> {
    let (_ledger, log) = read_log(cli)?;
    let file = onoal_mesh::control::views::ProofFile::build(&log, seq).map_err(|e| anyhow!(e))?;
    // The file is JSON whatever --json says: it is made to be saved and handed on.
    println!("{}", serde_json::to_string_pretty(&file)?);
    Ok(())
}

pub(crate) fn proof_verify(
    cli: &Cli,
    path: &std::path::Path,
    vkey: &str,
) -> Result<std::process::ExitCode> {
    let text = if path == std::path::Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the proof file {}", path.display()))?
    };
    let file: onoal_mesh::control::views::ProofFile = serde_json::from_str(&text).map_err(|e| {
        anyhow!("{} is not a proof file of `onoal proof export`: {e}", path.display())
    })?;
    let verdict = file.verify(vkey);
    print(cli, json!(verdict), || match &verdict.reason {
        None => format!(
            "valid: entry {} is in {}'s signed checkpoint of size {}",
            verdict.seq, verdict.oid, verdict.tree_size
        ),
        Some(why) => format!("NOT valid: {why}"),
    });
    Ok(if verdict.valid {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

pub(crate) fn checkpoints(cli: &Cli) -> Result<()> {
    let (_ledger, log) = read_log(cli)?;
    let mut list = Vec::new();
    for size in log.checkpoint_sizes()? {
        if let Some(cp) = log.checkpoint_at(size)? {
            list.push(json!({"tree_size": cp.size, "root": cp.root.to_hex()}));
        }
    }
    print(cli, json!({ "checkpoints": list }), || {
        let mut s = format!("{:>12}  root\n", "tree_size");
        for c in &list {
            s.push_str(&format!(
                "{:>12}  {}\n",
                c["tree_size"].as_u64().unwrap_or(0),
                c["root"].as_str().unwrap_or("")
            ));
        }
        s.push_str(&format!("{} checkpoints", list.len()));
        s
    });
    Ok(())
}
