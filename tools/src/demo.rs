//! `onoal demo`: the main job on an embedded default, told as a tutorial (each `onoal` command
//! it runs is printed): the mesh story. Five ledgers in two domains (acme: alpha, beta; city:
//! gamma, delta, epsilon), each its own `onoal serve` child process on loopback, find each
//! other from one bootstrap node (alpha) and witness each other's checkpoints. Then: city's
//! delta verifies an attestation acme's alpha issued about an employee three ways and is
//! refused alpha's private stream (use case 1); alpha, beta and gamma follow each other's logs
//! over QUIC (every bundle verified against a signed, cosigned checkpoint), live and across a
//! restart; a wrong key is refused; a two-phase transfer moves tokens (use case 2); a
//! registered asset is found through the DHT, proven and followed through a transfer (use
//! case 3); a ledger that shows two histories is caught by its witness and refused by the
//! ledger following it; every log and replica is audited.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

struct Member {
    name: &'static str,
    oid: String,
    dir: PathBuf,
    id: String,
    key: String,
    vkey: String,
    port: u16,
}

impl Member {
    /// How the demo prints its ledger id in commands: `ALPHA_ID`.
    fn name_id(&self) -> String {
        format!("{}_ID", self.name.to_uppercase())
    }

    /// `ID@127.0.0.1:PORT`, as pins, --follow and --bootstrap take it.
    fn spec(&self) -> String {
        format!("{}@127.0.0.1:{}", self.id, self.port)
    }

    fn shown_spec(&self) -> String {
        format!("{}@127.0.0.1:{}", self.name_id(), self.port)
    }
}

/// The five ledgers, in two domains: `(name, OID)`.
const LEDGERS: [(&str, &str); 5] = [
    ("alpha", "oid:onoal:acme:alpha"),
    ("beta", "oid:onoal:acme:beta"),
    ("gamma", "oid:onoal:city:gamma"),
    ("delta", "oid:onoal:city:delta"),
    ("epsilon", "oid:onoal:city:epsilon"),
];
/// Who follows whom: alpha, beta and gamma each follow the other two.
const FOLLOWERS: usize = 3;
/// Who witnesses whom (index of the ledger, index of its witness): acme's ledgers are
/// witnessed by city's gamma, gamma by acme's alpha; each serves only cosigned checkpoints.
const WITNESSED_BY: [(usize, usize); 3] = [(0, 2), (1, 2), (2, 0)];

/// Kills the node processes if the demo stops early.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn onoal(dir: &Path) -> Result<Command> {
    let mut c = Command::new(std::env::current_exe().context("cannot find the onoal binary")?);
    c.arg("--data").arg(dir).env_remove("ONOAL_DATA");
    Ok(c)
}

fn json_of(cmd: &mut Command) -> Result<Value> {
    let out = cmd.arg("--json").output().context("cannot run onoal")?;
    if !out.status.success() {
        bail!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("onoal printed no JSON")
}

/// Runs `cmd --json` expecting a failure: its message (the JSON error, else stderr).
fn refusal_of(cmd: &mut Command) -> Result<String> {
    let out = cmd.arg("--json").output().context("cannot run onoal")?;
    ensure!(!out.status.success(), "{cmd:?} was not refused");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok(v["error"]["message"]
        .as_str()
        .map_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned(), str::to_owned))
}

/// `onoal serve` for member `i`: QUIC on its port, HTTP on a free port, alpha as the bootstrap
/// node of the others, the follows and witnesses above. (The arguments, and as printed.)
fn serve_args(members: &[Member], i: usize) -> (Vec<String>, Vec<String>) {
    let m = &members[i];
    let mut args: Vec<String> = vec![
        "--listen".into(),
        format!("127.0.0.1:{}", m.port),
        "--http".into(),
        "127.0.0.1:0".into(),
        "--gossip-interval".into(),
        "1".into(),
    ];
    let mut shown = args.clone();
    let boot = &members[0];
    if i != 0 {
        args.extend([
            "--bootstrap".into(),
            boot.spec(),
            "--bootstrap-key".into(),
            boot.key.clone(),
        ]);
        shown.extend([
            "--bootstrap".into(),
            boot.shown_spec(),
            "--bootstrap-key".into(),
            format!("{}_KEY", boot.name.to_uppercase()),
        ]);
    }
    if i < FOLLOWERS {
        for o in members[..FOLLOWERS].iter().filter(|o| o.id != m.id) {
            args.extend(["--follow".into(), o.spec()]);
            shown.extend(["--follow".into(), o.shown_spec()]);
        }
    }
    for (_, w) in WITNESSED_BY.iter().filter(|(l, _)| *l == i) {
        args.extend(["--witness".into(), members[*w].id.clone()]);
        shown.extend(["--witness".into(), members[*w].name_id()]);
        args.extend(["--witness-quorum".into(), "1".into()]);
        shown.extend(["--witness-quorum".into(), "1".into()]);
    }
    (args, shown)
}

/// Starts `onoal --data DIR serve ARGS --json`: the child and its first line (address,
/// dashboard).
fn start_serve(
    name: &str,
    dir: &Path,
    args: &[String],
    shown: &[String],
    say: &dyn Fn(String),
) -> Result<(Child, Value)> {
    let mut cmd = onoal(dir)?;
    cmd.args(["serve", "--json"]).args(args);
    say(format!("$ onoal --data {name} serve {} &", shown.join(" ")));
    // Its log lines go nowhere: the demo tells the story; stdout gives the first line only.
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().context("no stdout")?).read_line(&mut line)?;
    let v: Value = match serde_json::from_str::<Value>(&line) {
        Ok(v) if v["addr"].is_string() => v,
        _ => {
            let _ = child.kill();
            bail!("{name}'s node did not start: {line:?}");
        }
    };
    Ok((child, v))
}

/// Starts member `i`'s node; its dashboard URL.
fn start_node(members: &[Member], i: usize, say: &dyn Fn(String)) -> Result<(Child, String)> {
    let m = &members[i];
    let (args, shown) = serve_args(members, i);
    let (child, v) = start_serve(m.name, &m.dir, &args, &shown, say)?;
    let dashboard = v["dashboard"].as_str().unwrap_or("none").to_owned();
    say(format!(
        "  {} ({}) serves on QUIC {}, dashboard {dashboard}",
        m.name,
        m.oid,
        v["addr"].as_str().unwrap_or("?")
    ));
    Ok((child, dashboard))
}

/// Starts every member's node, alpha (the bootstrap node) first; the dashboards.
fn start_nodes(members: &[Member], say: &dyn Fn(String)) -> Result<(Nodes, Vec<String>)> {
    let mut nodes = Nodes(Vec::new());
    let mut dashboards = Vec::new();
    for i in 0..members.len() {
        let (child, dashboard) = start_node(members, i, say)?;
        nodes.0.push(child);
        dashboards.push(dashboard);
    }
    Ok((nodes, dashboards))
}

/// How many entries of `origin` the replica in `m` holds.
fn held(m: &Member, origin: &str) -> Result<u64> {
    let v = json_of(onoal(&m.dir)?.arg("replicas"))?;
    Ok(v["replicas"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["ledger_id"] == origin))
        .and_then(|x| x["tree_size"].as_u64())
        .unwrap_or(0))
}

/// The ledgers `m`'s node knows, pinned or discovered: ledger id → how it learnt of it.
fn known(m: &Member) -> Result<std::collections::BTreeMap<String, String>> {
    let v = json_of(onoal(&m.dir)?.args(["peer", "list"]))?;
    let mut out = std::collections::BTreeMap::new();
    for r in v["discovered"].as_array().into_iter().flatten() {
        if let Some(id) = r["ledger_id"].as_str() {
            out.insert(id.to_owned(), r["source"].as_str().unwrap_or("?").to_owned());
        }
    }
    for p in v["peers"].as_array().into_iter().flatten() {
        if let Some(id) = p["ledger_id"].as_str() {
            out.entry(id.to_owned()).or_insert_with(|| "pinned".to_owned());
        }
    }
    Ok(out)
}

/// The size of `m`'s newest checkpoint served with its witness quorum (0 when none yet).
fn published(m: &Member) -> Result<u64> {
    let v = json_of(onoal(&m.dir)?.args(["witness", "info"]))?;
    Ok(v["own"]["published_size"].as_u64().unwrap_or(0))
}

fn tree_size(m: &Member) -> Result<u64> {
    Ok(json_of(onoal(&m.dir)?.arg("info"))?["tree_size"].as_u64().unwrap_or(0))
}

fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn terminate(child: &mut Child) {
    terminate_all(std::slice::from_mut(child));
}

/// Stops nodes as an operator would (SIGTERM: each says goodbye to its members and closes its
/// connections), all at once so none waits for goodbyes to nodes already gone; killed after
/// 10 s.
fn terminate_all(children: &mut [Child]) {
    for child in children.iter() {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for child in children {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies a closed ledger directory, key and all (`cp -r`).
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()))?;
        } else {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Appends made while the nodes run (one `onoal append` each, through alpha's node).
const LIVE_APPENDS: u64 = 20;
/// Entries alpha appends while beta's node is down.
const WHILE_DOWN: u64 = 1_000;
/// The attestation of use case 1: about this employee, by this issuer (under alpha's OID).
const EMPLOYEE: &str = "oid:onoal:acme:alpha:emp:42";
const ISSUER: &str = "oid:onoal:acme:alpha:hr";

/// Waits until `check` holds (polling every 50 ms), at most `limit`.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !check()? {
        ensure!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Feeds `n` entries into `onoal import -` of the ledger in `dir` (through its node when one
/// runs).
fn import(
    dir: &Path,
    name: &str,
    first: u64,
    n: u64,
    stream_of: impl Fn(u64) -> &'static str,
) -> Result<()> {
    let mut child =
        onoal(dir)?.args(["import", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().context("no stdin")?);
        for i in first..first + n {
            writeln!(
                stdin,
                "{{\"stream\":\"{}\",\"type\":\"demo.event\",\"payload\":\"{name} event {i} {}\"}}",
                stream_of(i),
                "x".repeat(200)
            )?;
        }
    }
    ensure!(child.wait()?.success(), "import into {name} failed");
    Ok(())
}

/// `onoal peer add` in `dir`: pins `who` (printed as `shown`) at `port`.
fn pin(dir: &Path, who: &Member, port: u16) -> Result<()> {
    json_of(onoal(dir)?.args([
        "peer",
        "add",
        &format!("{}@127.0.0.1:{port}", who.id),
        "--key",
        &who.key,
    ]))?;
    Ok(())
}

/// Creates the five ledgers (`onoal init`), each in its own directory under `root`.
fn init_members(root: &Path, say: &dyn Fn(String)) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    for (name, oid) in LEDGERS {
        let dir = root.join(name);
        say(format!("$ onoal --data {name} init --oid {oid}"));
        let v = json_of(onoal(&dir)?.args(["init", "--oid", oid]))?;
        let field = |k: &str| {
            v[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("init printed no {k}"))
        };
        members.push(Member {
            name,
            oid: oid.to_owned(),
            id: field("ledger_id")?,
            key: field("public_key")?,
            vkey: field("vkey")?,
            port: 0,
            dir,
        });
        say(format!("  {name} is {} ({}_ID below)", field("ledger_id")?, name.to_uppercase()));
    }
    Ok(members)
}

/// Waits until every node knows the other four; prints how delta learnt of each. The time it
/// took, from the first node's start.
fn discovery(members: &[Member], since: Instant, say: &dyn Fn(String)) -> Result<u128> {
    let all: BTreeSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
    let mut views = Vec::new();
    wait_for(Duration::from_secs(30), "discovery from the bootstrap node", || {
        views = members.iter().map(known).collect::<Result<Vec<_>>>()?;
        Ok(members
            .iter()
            .zip(&views)
            .all(|(m, v)| all.iter().filter(|id| **id != m.id).all(|id| v.contains_key(*id))))
    })?;
    let took = since.elapsed().as_millis();
    say("$ onoal --data delta peer list --json   (what delta's node knows)".into());
    for o in members.iter().filter(|o| o.name != "delta") {
        let source = views[3].get(&o.id).map_or("?", String::as_str);
        say(format!("  {:<8} {:<24} learnt through {source}", o.name, o.oid));
    }
    say(format!(
        "  every node knows the other four {took} ms after the bootstrap node started; delta and epsilon pinned no one"
    ));
    Ok(took)
}

/// What use case 1 showed.
struct Attested {
    seq: u64,
    routed: bool,
    queried: bool,
    private_refused: bool,
    offline: bool,
    forged_refused: bool,
}

/// Use case 1: acme's HR attests on alpha that an employee works there; city's delta, which
/// pinned no one, verifies it three ways and is refused alpha's private stream.
fn attestation(root: &Path, members: &[Member], say: &dyn Fn(String)) -> Result<Attested> {
    let (alpha, gamma, delta) = (&members[0], &members[2], &members[3]);
    say(format!(
        "\n4. Use case 1: acme's HR attests on alpha that {EMPLOYEE} works there; city's delta checks it three ways."
    ));
    let key_file = root.join("hr.key");
    say(format!("$ onoal --data alpha key new hr.key --name {ISSUER}"));
    let hr =
        json_of(onoal(&alpha.dir)?.args(["key", "new"]).arg(&key_file).args(["--name", ISSUER]))?;
    let hr_key = hr["public_key"].as_str().context("key new printed no key")?.to_owned();
    say(format!(
        "$ onoal --data alpha append --stream attestations --type employment.attested --subject {EMPLOYEE} --issuer {ISSUER} --issuer-key hr.key --payload 'employed since 2024'"
    ));
    let issued = json_of(
        onoal(&alpha.dir)?
            .args(["append", "--stream", "attestations", "--type", "employment.attested"])
            .args(["--subject", EMPLOYEE, "--issuer", ISSUER, "--payload", "employed since 2024"])
            .arg("--issuer-key")
            .arg(&key_file),
    )?;
    let seq = issued["seq"].as_u64().context("append printed no seq")?;
    say(format!(
        "$ onoal --data alpha append --stream hr-private --type salary.set --subject {EMPLOYEE} --payload 5000"
    ));
    json_of(onoal(&alpha.dir)?.args([
        "append",
        "--stream",
        "hr-private",
        "--type",
        "salary.set",
        "--subject",
        EMPLOYEE,
        "--payload",
        "5000",
    ]))?;
    say("$ onoal --data alpha stream visibility attestations public   (the others keep the default: readable only by ledgers alpha trusts)".into());
    json_of(onoal(&alpha.dir)?.args(["stream", "visibility", "attestations", "public"]))?;
    wait_for(Duration::from_secs(30), "alpha's cosigned checkpoint of the attestation", || {
        Ok(published(alpha)? > seq)
    })?;
    say(format!("  entry {seq}, in a checkpoint alpha serves once its witness gamma cosigned it"));

    say(format!(
        "$ onoal --data delta remote verify --to {} --seq {seq} --subject {EMPLOYEE} --issuer {ISSUER} --type employment.attested --issuer-key HR_KEY",
        alpha.oid
    ));
    let v = json_of(onoal(&delta.dir)?.args([
        "remote",
        "verify",
        "--to",
        &alpha.oid,
        "--seq",
        &seq.to_string(),
        "--subject",
        EMPLOYEE,
        "--issuer",
        ISSUER,
        "--type",
        "employment.attested",
        "--issuer-key",
        &hr_key,
    ]))?;
    let routed = v["verdict"] == "match" && v["checks"]["issuer_signature"] == true;
    ensure!(routed, "the routed verification did not match: {v}");
    say(format!(
        "  {}: alpha checked its entry and signed the statement; delta re-checked it and the HR signature (alpha's key from its signed record, found through discovery)",
        v["verdict"].as_str().unwrap_or("?")
    ));
    say(format!(
        "$ onoal --data delta remote query --to {} --stream attestations --subject {EMPLOYEE}",
        alpha.oid
    ));
    let q = json_of(onoal(&delta.dir)?.args([
        "remote",
        "query",
        "--to",
        &alpha.oid,
        "--stream",
        "attestations",
        "--subject",
        EMPLOYEE,
    ]))?;
    let entries = q["entries"].as_array().map_or(0, Vec::len);
    let queried = q["verified"] == true && entries == 1;
    ensure!(queried, "the cross-ledger query did not prove the attestation: {q}");
    say(format!("  {entries} entry, proven in alpha's signed checkpoint"));
    say(format!(
        "$ onoal --data delta remote query --to {} --stream hr-private --subject {EMPLOYEE}",
        alpha.oid
    ));
    let refused = refusal_of(onoal(&delta.dir)?.args([
        "remote",
        "query",
        "--to",
        &alpha.oid,
        "--stream",
        "hr-private",
        "--subject",
        EMPLOYEE,
    ]))?;
    let private_refused = refused.contains("refused");
    ensure!(private_refused, "the private stream was not refused: {refused}");
    say(format!("  {refused}"));

    // Offline: a proof file, checked with alpha's vkey and its witness's vkey alone.
    let file = root.join("attestation.tlog-proof");
    say(format!("$ onoal --data alpha prove inclusion {seq} --bundle > attestation.tlog-proof"));
    let out =
        onoal(&alpha.dir)?.args(["prove", "inclusion", &seq.to_string(), "--bundle"]).output()?;
    ensure!(out.status.success(), "prove failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&file, &out.stdout)?;
    let witness_vkey = json_of(onoal(&gamma.dir)?.args(["witness", "info"]))?["vkey"]
        .as_str()
        .context("witness info printed no vkey")?
        .to_owned();
    let nowhere = root.join("no-data-directory");
    let check = |path: &Path| -> Result<(bool, String)> {
        let out = onoal(&nowhere)?
            .arg("verify-proof")
            .arg(path)
            .args(["--vkey", &alpha.vkey, "--witness-vkey", &witness_vkey, "--quorum", "1"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success(), text))
    };
    say(format!(
        "$ onoal verify-proof attestation.tlog-proof --vkey '{}' --witness-vkey '{witness_vkey}' --quorum 1",
        alpha.vkey
    ));
    let (offline, said) = check(&file)?;
    ensure!(offline, "the proof did not verify: {said}");
    say(format!("  {said}"));
    let text = std::fs::read_to_string(&file)?;
    let forged = root.join("forged.tlog-proof");
    std::fs::write(&forged, text.replacen(&format!("\nindex {seq}\n"), "\nindex 1\n", 1))?;
    say(format!(
        "$ sed 's/^index {seq}$/index 1/' attestation.tlog-proof > forged.tlog-proof && onoal verify-proof forged.tlog-proof …"
    ));
    let (forged_ok, said) = check(&forged)?;
    ensure!(!forged_ok, "a changed proof verified: {said}");
    say(format!("  {said}"));
    Ok(Attested { seq, routed, queried, private_refused, offline, forged_refused: !forged_ok })
}

/// A ledger that shows two histories: mallory, twice (one key, two directories, two
/// processes). Its witness epsilon cosigns the first and refuses the second with both notes as
/// evidence; delta, which follows mallory, is told and refuses it. True when caught.
fn split_view(
    root: &Path,
    members: &[Member],
    nodes: &mut Nodes,
    say: &dyn Fn(String),
) -> Result<bool> {
    let (delta, epsilon) = (&members[3], &members[4]);
    say("\n11. mallory shows two histories under one key: its witness epsilon catches it, and delta, which replicates mallory, refuses it.".into());
    let dir = root.join("mallory");
    let twin = root.join("mallory-twin");
    let oid = "oid:onoal:city:mallory";
    say(format!("$ onoal --data mallory init --oid {oid}"));
    let v = json_of(onoal(&dir)?.args(["init", "--oid", oid]))?;
    let field =
        |k: &str| v[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("init printed no {k}"));
    let mallory = Member {
        name: "mallory",
        oid: oid.to_owned(),
        dir: dir.clone(),
        id: field("ledger_id")?,
        key: field("public_key")?,
        vkey: field("vkey")?,
        port: free_port()?,
    };
    say(format!(
        "$ onoal --data mallory peer add {} --key …   (its witness)",
        epsilon.shown_spec()
    ));
    pin(&dir, epsilon, epsilon.port)?;
    say(format!("$ onoal --data mallory peer add {} --key …   (a reader)", delta.shown_spec()));
    pin(&dir, delta, delta.port)?;
    say("$ cp -r mallory mallory-twin   (the same ledger, key and all)".into());
    copy_dir(&dir, &twin)?;
    say("$ onoal --data mallory import - < history.jsonl         (100 entries)".into());
    import(&dir, "mallory", 0, 100, |_| "orders")?;
    say("$ onoal --data mallory-twin import - < other-history.jsonl   (120 other entries)".into());
    import(&twin, "mallory-twin", 1_000, 120, |_| "orders")?;
    say("$ onoal --data epsilon peer add MALLORY_ID@… --key …   (epsilon witnesses mallory)".into());
    pin(&epsilon.dir, &mallory, mallory.port)?;
    say("$ onoal --data epsilon peer add DELTA_ID@… --key …     (and tells delta what it catches)"
        .into());
    pin(&epsilon.dir, delta, delta.port)?;
    say("$ onoal --data delta peer add MALLORY_ID@… --key …     (delta replicates mallory)".into());
    pin(&delta.dir, &mallory, mallory.port)?;
    let witness = |name: &str| -> Vec<String> {
        vec![
            "--listen".into(),
            format!("127.0.0.1:{}", if name == "mallory" { mallory.port } else { 0 }),
            "--no-http".into(),
            "--witness".into(),
            epsilon.id.clone(),
            "--witness-quorum".into(),
            "1".into(),
        ]
    };
    let shown = |args: &[String]| -> Vec<String> {
        args.iter().map(|a| if *a == epsilon.id { epsilon.name_id() } else { a.clone() }).collect()
    };
    let args = witness("mallory");
    nodes.0.push(start_serve("mallory", &dir, &args, &shown(&args), say)?.0);
    let witnessed = |size: u64| -> Result<bool> {
        let v = json_of(onoal(&epsilon.dir)?.args(["witness", "info"]))?;
        Ok(v["witnessed"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w["origin"] == oid && w["tree_size"].as_u64() == Some(size)))
    };
    wait_for(Duration::from_secs(30), "epsilon's cosignature of mallory", || witnessed(100))?;
    say("$ onoal --data delta sync MALLORY_ID".into());
    let synced = json_of(onoal(&delta.dir)?.args(["sync", &mallory.id]))?;
    say(format!(
        "  delta holds mallory's {} entries, in a checkpoint epsilon cosigned",
        synced["to_size"]
    ));
    let args = witness("twin");
    nodes.0.push(start_serve("mallory-twin", &twin, &args, &shown(&args), say)?.0);
    let mut evidence = Value::Null;
    wait_for(Duration::from_secs(30), "epsilon's evidence", || {
        let v = json_of(onoal(&epsilon.dir)?.args(["witness", "info"]))?;
        evidence = v["evidence"].as_array().and_then(|e| e.first()).cloned().unwrap_or_default();
        Ok(!evidence.is_null())
    })?;
    say("$ onoal --data epsilon witness info".into());
    let first_line =
        |k: &str| evidence[k].as_str().unwrap_or("").lines().take(2).collect::<Vec<_>>().join(" ");
    say(format!(
        "  caught: it cosigned \"{}\", then was sent \"{}\" that does not extend it; refused, both notes kept as evidence{}",
        first_line("held"),
        first_line("received"),
        if evidence["proven"] == true {
            " (proven: mallory's own root at 100 differs)"
        } else {
            ""
        }
    ));
    wait_for(Duration::from_secs(30), "delta's copy of the evidence", || {
        let v = json_of(onoal(&delta.dir)?.args(["witness", "info"]))?;
        Ok(v["evidence"].as_array().is_some_and(|e| !e.is_empty()))
    })?;
    // Delta holds a replica of mallory: the evidence marks it forked.
    let mut fork = Value::Null;
    wait_for(Duration::from_secs(30), "delta's replica of mallory marked forked", || {
        let v = json_of(onoal(&delta.dir)?.arg("forks"))?;
        fork = v["forks"].as_array().and_then(|f| f.first()).cloned().unwrap_or_default();
        Ok(!fork.is_null())
    })?;
    say("$ onoal --data delta forks".into());
    say(format!("  mallory's replica: forked ({})", fork["reason"].as_str().unwrap_or("?")));
    say("$ onoal --data delta sync MALLORY_ID".into());
    let refused = refusal_of(onoal(&delta.dir)?.args(["sync", &mallory.id]))?;
    let caught = refused.contains("forked") || refused.contains("two histories");
    ensure!(caught, "delta did not refuse the two-faced ledger: {refused}");
    say(format!("  refused: {refused}"));
    let mut faces: Vec<Child> = nodes.0.drain(members.len()..).collect();
    terminate_all(&mut faces);
    Ok(caught)
}

#[allow(clippy::too_many_lines)] // one story, told in order
pub(crate) fn run(entries: u64, json_out: bool, keep: bool) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("onoal-demo-").tempdir()?;
    let root = tmp.path();
    let say = |s: String| {
        if !json_out {
            println!("{s}");
        }
    };
    let started = Instant::now();
    say(format!(
        "Five ledgers in two domains (acme: alpha, beta; city: gamma, delta, epsilon), each its own process, in {}\n(every `--data NAME` below is a directory there). Each command the demo runs is printed after a `$`.\n",
        root.display()
    ));
    let mut members = init_members(root, &say)?;
    let (alpha, beta, gamma) = (0, 1, 2);

    // Each appends its own entries (`onoal import`, fsync per group) and signs a checkpoint.
    say(format!(
        "\n1. alpha, beta and gamma each append {entries} entries of their own (orders, payments, audit)."
    ));
    let append_started = Instant::now();
    for m in &members[..FOLLOWERS] {
        say(format!("$ onoal --data {} import - < {}-events.jsonl", m.name, m.name));
        import(&m.dir, m.name, 0, entries, |i| ["orders", "payments", "audit"][(i % 3) as usize])?;
    }
    let append_s = append_started.elapsed().as_secs_f64();
    say(format!(
        "  {} entries appended and fsynced in {append_s:.2} s",
        entries * FOLLOWERS as u64
    ));

    // Ports are picked just before the nodes start (each node must know the others' ports up
    // front), so the window in which another process could take one is short.
    for m in &mut members {
        m.port = free_port()?;
    }
    say("\n2. alpha, beta and gamma pin each other's keys. Every node starts with alpha as its one bootstrap node;\n   alpha, beta and gamma follow each other; gamma witnesses acme's ledgers and alpha witnesses gamma.".into());
    for (i, m) in members[..FOLLOWERS].iter().enumerate() {
        for o in members[..FOLLOWERS].iter().filter(|o| o.id != m.id) {
            if i == 0 {
                say(format!(
                    "$ onoal --data {} peer add {} --key {}",
                    m.name,
                    o.shown_spec(),
                    o.key
                ));
            }
            pin(&m.dir, o, o.port)?;
        }
    }
    say("  (beta and gamma pin the others the same way; delta and epsilon pin no one)".into());
    let nodes_started = Instant::now();
    let (mut nodes, dashboards) = start_nodes(&members, &say)?;

    say("\n3. They find each other from the bootstrap node (records exchanged, the DHT filled), and witness each other.".into());
    let discovery_ms = discovery(&members, nodes_started, &say)?;
    wait_for(Duration::from_secs(60), "the witnesses' first cosignatures", || {
        for (l, _) in WITNESSED_BY {
            if published(&members[l])? < entries {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    say("$ onoal --data alpha checkpoint --cosigned".into());
    let cp = json_of(onoal(&members[alpha].dir)?.args(["checkpoint", "--cosigned"]))?;
    for line in cp["note"].as_str().unwrap_or("").lines().filter(|l| l.starts_with('—')) {
        say(format!("  {line}"));
    }
    say(format!(
        "  alpha's checkpoint of {entries} entries carries gamma's cosignature; beta's carries gamma's, gamma's alpha's: each serves only cosigned checkpoints"
    ));

    let attested = attestation(root, &members, &say)?;

    // The first sync: every bundle verified against a signed, cosigned checkpoint.
    say("\n5. alpha, beta and gamma follow each other's logs over QUIC.".into());
    let full = |m: usize, want: u64| -> Result<bool> {
        for o in members[..FOLLOWERS].iter().filter(|o| o.id != members[m].id) {
            if held(&members[m], &o.id)? < want {
                return Ok(false);
            }
        }
        Ok(true)
    };
    wait_for(Duration::from_secs(600), "the first sync", || {
        Ok(full(alpha, entries)? && full(beta, entries)? && full(gamma, entries)?)
    })?;
    let sync_s = nodes_started.elapsed().as_secs_f64();
    let moved = entries * (FOLLOWERS * (FOLLOWERS - 1)) as u64;
    say(format!(
        "  every one holds the other two logs: {moved} entries moved, each bundle verified against a signed checkpoint, {sync_s:.2} s after the nodes started"
    ));

    // Appends while the nodes run: the followers catch up live.
    let (a, b, g) = (&members[alpha], &members[beta], &members[gamma]);
    say(format!(
        "\n6. alpha appends {LIVE_APPENDS} entries while the nodes run; beta and gamma follow live."
    ));
    say("$ onoal --data alpha append --stream orders --type demo.live --payload \"live 0\"   (through alpha's node)".into());
    let live_started = Instant::now();
    for i in 0..LIVE_APPENDS {
        json_of(onoal(&a.dir)?.args([
            "append",
            "--stream",
            "orders",
            "--type",
            "demo.live",
            "--payload",
            &format!("live {i}"),
        ]))?;
    }
    let want = tree_size(a)?;
    let mut last_shown = (0, 0);
    wait_for(Duration::from_secs(60), "the live catch-up", || {
        let now = (held(b, &a.id)?, held(g, &a.id)?);
        if now != last_shown {
            say(format!("  beta holds {} of alpha's {want} entries, gamma {}", now.0, now.1));
            last_shown = now;
        }
        Ok(now.0 >= want && now.1 >= want)
    })?;
    let live_ms = live_started.elapsed().as_millis();
    say(format!(
        "  both caught up {live_ms} ms after the first live append (each checkpoint cosigned by gamma first)"
    ));

    // A node restarts and resumes where it stopped.
    say(format!(
        "\n7. beta's node stops; alpha appends {WHILE_DOWN} more; beta's node starts again and resumes."
    ));
    say("$ kill -TERM <beta's node>".into());
    terminate(&mut nodes.0[beta]);
    let before = held(b, &a.id)?;
    say(format!("$ onoal --data alpha import - < more.jsonl   ({WHILE_DOWN} entries)"));
    import(&a.dir, a.name, entries, WHILE_DOWN, |_| "orders")?;
    say(format!("$ onoal --data beta replicas   (beta holds {before} of alpha's entries)"));
    let restart_started = Instant::now();
    nodes.0[beta] = start_node(&members, beta, &say)?.0;
    let after_want = want + WHILE_DOWN;
    wait_for(Duration::from_secs(120), "beta's resume", || Ok(held(b, &a.id)? >= after_want))?;
    let resumed = held(b, &a.id)? - before;
    say(format!(
        "  beta resumed at entry {before} and fetched only the {resumed} new entries in {} ms",
        restart_started.elapsed().as_millis()
    ));
    wait_for(Duration::from_secs(120), "gamma's catch-up", || Ok(held(g, &a.id)? >= after_want))?;

    // A wrong key is refused.
    say("\n8. A ledger that pinned the wrong key for alpha is refused: the handshake proves the key.".into());
    let eve_dir = root.join("eve");
    json_of(onoal(&eve_dir)?.args(["init", "--oid", "oid:onoal:city:eve"]))?;
    say(format!(
        "$ onoal --data eve peer add {} --key {}   (beta's key, not alpha's)",
        a.shown_spec(),
        b.key
    ));
    json_of(onoal(&eve_dir)?.args(["peer", "add", &a.spec(), "--key", &b.key]))?;
    say("$ onoal --data eve sync ALPHA_ID".into());
    let out = onoal(&eve_dir)?.args(["sync", &a.id, "--timeout", "10"]).output()?;
    let refusal = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let wrong_key_refused = !out.status.success() && refusal.contains("presented key");
    ensure!(wrong_key_refused, "a sync with the wrong key was not refused: {refusal}");
    say(format!("  {refusal}"));

    // Use case 2: a two-phase transfer across the domains, every step an entry checked by
    // proof on the other side.
    say("\n9. Use case 2: alpha (acme) mints 100 eur and transfers 30 to gamma (city): lock, reserve, commit, credit, confirm, each step checked by proof.".into());
    say("$ onoal --data alpha mint --asset eur --amount 100".into());
    json_of(onoal(&a.dir)?.args(["mint", "--asset", "eur", "--amount", "100"]))?;
    say(format!("$ onoal --data alpha transfer start --to {} --asset eur --amount 30", g.oid));
    let t = json_of(
        onoal(&a.dir)?
            .args(["transfer", "start", "--to", &g.oid, "--asset", "eur", "--amount", "30"]),
    )?;
    let transfer_committed = t["outcome"] == "committed" && t["peer"]["phase"] == "credited";
    ensure!(transfer_committed, "the transfer did not commit on both ledgers: {t}");
    let steps = |v: &Value| -> String {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s["step"].as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    say(format!(
        "  alpha wrote {}; gamma wrote {} (verified by alpha in gamma's signed checkpoint)",
        steps(&t["steps"]),
        steps(&t["peer"]["steps"])
    ));
    say("$ onoal --data gamma balance".into());
    let bal = json_of(onoal(&g.dir)?.args(["balance", "--asset", "eur"]))?;
    say(format!(
        "  gamma: {} eur available, received {}; alpha: 70 available",
        bal[0]["available"], bal[0]["received"]
    ));

    // Use case 3: a registered asset, found and proven by a ledger that pinned no one.
    let d = &members[3];
    say("\n10. Use case 3: alpha registers a land deed; delta, which pinned no one, finds its owner in the mesh and proves it;\n    the deed moves to beta and delta follows.".into());
    say(r#"$ onoal --data alpha asset register --id deed-7 --meta '{"parcel":"A-12"}'"#.into());
    let reg = json_of(onoal(&a.dir)?.args([
        "asset",
        "register",
        "--id",
        "deed-7",
        "--meta",
        r#"{"parcel":"A-12"}"#,
    ]))?;
    say(format!(
        "  registered by alpha as entry {}, owner {}",
        reg["seq"],
        reg["owner"].as_str().unwrap_or("?")
    ));
    let owner_seen_by_delta = |how: &str, want: &Member| -> Result<Value> {
        let mut last = Value::Null;
        let waited = wait_for(Duration::from_secs(30), "delta's proof of the deed's owner", || {
            let out = onoal(&d.dir)?.args(["asset", how, "--id", "deed-7", "--json"]).output()?;
            last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            Ok(out.status.success() && last["owner"] == want.id.as_str())
        });
        waited.with_context(|| format!("delta's last answer: {last}"))?;
        Ok(last)
    };
    say("$ onoal --data delta asset find --id deed-7".into());
    let found = owner_seen_by_delta("find", a)?;
    let how_found = match found["claims"][0]["source"].as_str() {
        Some("pinned") => "by asking the ledgers it pinned".to_owned(),
        Some(s) => format!(
            "alpha's signed record naming the deed (a DHT lookup by the asset's key; record source: {s})"
        ),
        None => "?".to_owned(),
    };
    say(format!(
        "  owned by {} (alpha), proven from alpha's signed checkpoint; the claim: {how_found}",
        found["owner_oid"].as_str().unwrap_or("?"),
    ));
    say(format!("$ onoal --data alpha transfer start --to {} --asset deed-7 --amount 1", b.oid));
    let t = json_of(
        onoal(&a.dir)?
            .args(["transfer", "start", "--to", &b.oid, "--asset", "deed-7", "--amount", "1"]),
    )?;
    ensure!(t["outcome"] == "committed", "the deed's transfer did not commit: {t}");
    say("$ onoal --data delta asset verify --id deed-7".into());
    let moved_to = owner_seen_by_delta("verify", b)?;
    let asset_followed = moved_to["hops"].as_array().is_some_and(|h| h.len() == 1);
    ensure!(asset_followed, "delta did not prove the hand-over: {moved_to}");
    say(format!(
        "  owned by {} (beta) now: alpha's registration, alpha's commit and beta's credit each checked by proof",
        moved_to["owner_oid"].as_str().unwrap_or("?")
    ));

    let split_view_caught = split_view(root, &members, &mut nodes, &say)?;

    // The token entries reach the replicas like any other entries.
    let sizes: Vec<u64> = members[..FOLLOWERS].iter().map(tree_size).collect::<Result<_>>()?;
    wait_for(Duration::from_secs(60), "the replicas of the token entries", || {
        for (m, size) in members[..FOLLOWERS].iter().zip(&sizes) {
            for o in members[..FOLLOWERS].iter().filter(|o| o.id != m.id) {
                if held(o, &m.id)? < *size {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })?;
    say(format!(
        "\n12. The dashboard shows all of it (mesh, witnesses, tokens and assets): {}\n    (`onoal demo --keep` keeps the nodes and their dashboards up)",
        dashboards[alpha]
    ));

    terminate_all(&mut nodes.0);
    nodes.0.clear();

    // Audit every log and replica; a replica's root must equal its origin's own root.
    say("\n13. alpha, beta and gamma audit their own log and both replicas (entries, chain, tiles, checkpoints).".into());
    let mut report = Vec::new();
    for m in &members[..FOLLOWERS] {
        say(format!(
            "$ onoal --data {} verify && onoal --data {} verify --ledger …",
            m.name, m.name
        ));
        let own = json_of(onoal(&m.dir)?.arg("verify"))?;
        let mut replicas = Vec::new();
        for o in members[..FOLLOWERS].iter().filter(|o| o.id != m.id) {
            let origin = json_of(onoal(&o.dir)?.arg("verify"))?;
            let v = json_of(onoal(&m.dir)?.args(["verify", "--ledger", &o.id]))?;
            ensure!(
                v["ok"] == true && v["root"] == origin["root"],
                "{}'s replica of {} differs",
                m.name,
                o.name
            );
            replicas.push(
                json!({"of": o.name, "entries": v["entries"], "root": v["root"], "verified": true}),
            );
        }
        say(format!(
            "  {}: own log and both replicas sound, roots equal to their origins'",
            m.name
        ));
        report.push(json!({"ledger": m.name, "ledger_id": m.id, "oid": m.oid, "entries": own["entries"], "replicas": replicas}));
    }
    let total_s = started.elapsed().as_secs_f64();
    if json_out {
        println!(
            "{}",
            json!({
                "ledgers": report,
                "domains": ["oid:onoal:acme", "oid:onoal:city"],
                "entries_per_ledger": entries,
                "discovered_within_ms": discovery_ms,
                "append_seconds": append_s,
                "sync_seconds": sync_s,
                "entries_synced": moved,
                "synced_entries_per_s": moved as f64 / sync_s,
                "attestation_seq": attested.seq,
                "attestation_verified_routed": attested.routed,
                "attestation_queried": attested.queried,
                "private_stream_refused": attested.private_refused,
                "cross_ledger_proof_verified": attested.offline,
                "tampered_proof_refused": attested.forged_refused,
                "live_appends": LIVE_APPENDS,
                "live_catch_up_ms": live_ms,
                "resumed_from": before,
                "resumed_entries": resumed,
                "wrong_key_refused": wrong_key_refused,
                "transfer_committed": transfer_committed,
                "asset_followed": asset_followed,
                "asset_claim_source": found["claims"][0]["source"],
                "split_view_caught": split_view_caught,
                "dashboard": dashboards[alpha],
                "seconds": total_s,
            })
        );
    } else {
        println!("\ndemo done in {total_s:.1} s");
    }
    if keep {
        keep_up(tmp, &members)?;
    }
    Ok(())
}

/// `--keep`: the nodes run again (and keep following and witnessing each other) until Ctrl-C;
/// the ledgers stay on disk with the commands to explore them.
fn keep_up(tmp: tempfile::TempDir, members: &[Member]) -> Result<()> {
    let dir = tmp.keep();
    eprintln!("\nthe nodes run again until Ctrl-C; the ledgers stay in {}", dir.display());
    let say = |s: String| eprintln!("{s}");
    let (mut nodes, _) = start_nodes(members, &say)?;
    let m = &members[0];
    let data = m.dir.display();
    eprintln!(
        "\nexplore (any ledger; alpha shown):\n  onoal --data {data} status\n  onoal --data {data} watch\n  onoal --data {data} append --stream orders --type demo.event --payload hello\n  onoal --data {data} replicas\n  onoal --data {data} peer list\n  onoal --data {data} witness info\n  onoal --data {data} query --stream orders --limit 3\n  curl -s http://HTTP_ADDR/openapi.json   (HTTP_ADDR: a dashboard's address above)"
    );
    // Ctrl-C reaches the whole process group: the nodes stop cleanly with this process.
    loop {
        for c in &mut nodes.0 {
            if let Ok(Some(status)) = c.try_wait() {
                bail!("a node stopped ({status}); the ledgers stay in {}", dir.display());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
