//! `onoal demo`: the main job on an embedded default, told as a tutorial (each `onoal` command
//! it runs is printed). Three ledgers on loopback, each its own `onoal serve` child process,
//! append entries, pin each other's keys and follow each other's logs over QUIC (every bundle
//! verified against a signed checkpoint before it is written); followers catch up with live
//! appends; a restarted node resumes where it stopped; a wrong key is refused; a replica's
//! tlog-proof verifies with the origin's vkey alone and a changed one does not; a two-phase
//! transfer moves tokens (use case 2); a registered asset is found, proven and followed through
//! a transfer by a third ledger (use case 3); every log and replica is audited.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

struct Member {
    name: &'static str,
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
}

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

/// Starts one member's node: QUIC on its port, HTTP on a free port, following the others.
fn start_node(m: &Member, members: &[Member], say: &dyn Fn(String)) -> Result<Child> {
    let mut cmd = onoal(&m.dir)?;
    cmd.args(["serve", "--json", "--listen", &format!("127.0.0.1:{}", m.port)]);
    cmd.args(["--http", "127.0.0.1:0"]);
    let mut shown = vec!["serve".to_owned(), "--listen".into(), format!("127.0.0.1:{}", m.port)];
    shown.extend(["--http".into(), "127.0.0.1:0".into()]);
    for o in members.iter().filter(|o| o.id != m.id) {
        shown.extend(["--follow".into(), format!("{}@127.0.0.1:{}", o.name_id(), o.port)]);
        cmd.args(["--follow", &format!("{}@127.0.0.1:{}", o.id, o.port)]);
    }
    say(format!("$ onoal --data {} {} &", m.name, shown.join(" ")));
    // Its log lines go nowhere: the demo tells the story; stdout gives the first line only.
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().context("no stdout")?).read_line(&mut line)?;
    let v: Value = match serde_json::from_str::<Value>(&line) {
        Ok(v) if v["addr"].is_string() => v,
        _ => {
            let _ = child.kill();
            bail!("{}'s node did not start: {line:?}", m.name);
        }
    };
    say(format!(
        "  {} serves on QUIC {}, dashboard {}",
        m.name,
        v["addr"].as_str().unwrap_or("?"),
        v["dashboard"].as_str().unwrap_or("none")
    ));
    Ok(child)
}

/// Starts every member's node.
fn start_nodes(members: &[Member], say: &dyn Fn(String)) -> Result<Nodes> {
    let mut nodes = Nodes(Vec::new());
    for m in members {
        nodes.0.push(start_node(m, members, say)?);
    }
    Ok(nodes)
}

/// How many entries of `origin` the replica in `m` holds.
fn held(m: &Member, origin: &Member) -> Result<u64> {
    let v = json_of(onoal(&m.dir)?.arg("replicas"))?;
    Ok(v["replicas"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["ledger_id"] == origin.id.as_str()))
        .and_then(|x| x["tree_size"].as_u64())
        .unwrap_or(0))
}

fn free_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Appends made while the nodes run (one `onoal append` each, through alpha's node).
const LIVE_APPENDS: u64 = 20;
/// Entries alpha appends while gamma's node is down.
const WHILE_DOWN: u64 = 1_000;

/// Waits until `check` holds (polling every 50 ms), at most `limit`.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !check()? {
        ensure!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Feeds `lines` entries into `onoal import -` of `m` (through its node when one runs).
fn import(m: &Member, first: u64, n: u64, stream_of: impl Fn(u64) -> &'static str) -> Result<()> {
    let mut child =
        onoal(&m.dir)?.args(["import", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().context("no stdin")?);
        for i in first..first + n {
            writeln!(
                stdin,
                "{{\"stream\":\"{}\",\"type\":\"demo.event\",\"payload\":\"{} event {i} {}\"}}",
                stream_of(i),
                m.name,
                "x".repeat(200)
            )?;
        }
    }
    ensure!(child.wait()?.success(), "import into {} failed", m.name);
    Ok(())
}

#[allow(clippy::too_many_lines)] // one story, told in order
pub(crate) fn run(entries: u64, json_out: bool, keep: bool) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("onoal-demo-").tempdir()?;
    let say = |s: String| {
        if !json_out {
            println!("{s}");
        }
    };
    let started = Instant::now();
    say(format!(
        "Three ledgers, each its own process, in {} (every `--data NAME` below is a directory there).\nEach command the demo runs is printed after a `$`.\n",
        tmp.path().display()
    ));
    let mut members = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let dir = tmp.path().join(name);
        let oid = format!("oid:onoal:demo:{name}");
        say(format!("$ onoal --data {name} init --oid {oid}"));
        let v = json_of(onoal(&dir)?.args(["init", "--oid", &oid]))?;
        let field = |k: &str| {
            v[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("init printed no {k}"))
        };
        members.push(Member {
            name,
            id: field("ledger_id")?,
            key: field("public_key")?,
            vkey: field("vkey")?,
            port: 0,
            dir,
        });
        say(format!(
            "  {name} is {} ({}_ID below), its vkey {}",
            field("ledger_id")?,
            name.to_uppercase(),
            field("vkey")?
        ));
    }

    // Each appends its own entries (`onoal import`, fsync per group) and signs a checkpoint.
    say(format!(
        "\n1. Each ledger appends {entries} entries of its own (orders, payments, audit)."
    ));
    let append_started = Instant::now();
    for m in &members {
        say(format!("$ onoal --data {} import - < {}-events.jsonl", m.name, m.name));
        import(m, 0, entries, |i| ["orders", "payments", "audit"][(i % 3) as usize])?;
    }
    let append_s = append_started.elapsed().as_secs_f64();
    say(format!("  {} entries appended and fsynced in {append_s:.2} s", entries * 3));

    // Ports are picked just before the nodes start (each node must know the others' ports up
    // front), so the window in which another process could take one is short.
    for m in &mut members {
        m.port = free_port()?;
    }
    say("\n2. Each pins the other two ledgers' keys, then runs its node and follows them over QUIC.".into());
    for (i, m) in members.iter().enumerate() {
        for o in members.iter().filter(|o| o.id != m.id) {
            if i == 0 {
                say(format!(
                    "$ onoal --data {} peer add {}@127.0.0.1:{} --key {}",
                    m.name,
                    o.name_id(),
                    o.port,
                    o.key
                ));
            }
            json_of(onoal(&m.dir)?.args([
                "peer",
                "add",
                &format!("{}@127.0.0.1:{}", o.id, o.port),
                "--key",
                &o.key,
            ]))?;
        }
    }
    say("  (beta and gamma pin the others the same way)".into());
    let sync_started = Instant::now();
    let mut nodes = start_nodes(&members, &say)?;
    let full = |m: &Member, want: u64| -> Result<bool> {
        for o in members.iter().filter(|o| o.id != m.id) {
            if held(m, o)? < want {
                return Ok(false);
            }
        }
        Ok(true)
    };
    wait_for(Duration::from_secs(600), "the first sync", || {
        Ok(full(&members[0], entries)?
            && full(&members[1], entries)?
            && full(&members[2], entries)?)
    })?;
    let sync_s = sync_started.elapsed().as_secs_f64();
    let moved = entries * (members.len() * (members.len() - 1)) as u64;
    say(format!(
        "  every node holds the other two logs: {moved} entries moved, each bundle verified against a signed checkpoint, in {sync_s:.2} s"
    ));

    // Appends while the nodes run: the followers catch up live.
    let (alpha, beta, gamma) = (&members[0], &members[1], &members[2]);
    say(format!(
        "\n3. alpha appends {LIVE_APPENDS} entries while the nodes run; beta and gamma follow live."
    ));
    say("$ onoal --data alpha append --stream orders --type demo.live --payload \"live 0\"   (through alpha's node)".into());
    let live_started = Instant::now();
    for i in 0..LIVE_APPENDS {
        json_of(onoal(&alpha.dir)?.args([
            "append",
            "--stream",
            "orders",
            "--type",
            "demo.live",
            "--payload",
            &format!("live {i}"),
        ]))?;
    }
    let want = entries + LIVE_APPENDS;
    let mut last_shown = (0, 0);
    wait_for(Duration::from_secs(60), "the live catch-up", || {
        let now = (held(beta, alpha)?, held(gamma, alpha)?);
        if now != last_shown {
            say(format!("  beta holds {} of alpha's {want} entries, gamma {}", now.0, now.1));
            last_shown = now;
        }
        Ok(now.0 >= want && now.1 >= want)
    })?;
    let live_ms = live_started.elapsed().as_millis();
    say(format!("  both caught up {live_ms} ms after the first live append"));

    // A node restarts and resumes where it stopped.
    say(format!(
        "\n4. gamma's node stops; alpha appends {WHILE_DOWN} more; gamma's node starts again and resumes."
    ));
    say("$ kill -TERM <gamma's node>".into());
    terminate(&mut nodes.0[2]);
    let before = held(gamma, alpha)?;
    say(format!("$ onoal --data alpha import - < more.jsonl   ({WHILE_DOWN} entries)"));
    import(alpha, want, WHILE_DOWN, |_| "orders")?;
    say(format!("$ onoal --data gamma replicas   (gamma holds {before} of alpha's entries)"));
    let restart_started = Instant::now();
    nodes.0[2] = start_node(gamma, &members, &say)?;
    let after_want = want + WHILE_DOWN;
    wait_for(Duration::from_secs(120), "gamma's resume", || Ok(held(gamma, alpha)? >= after_want))?;
    let resumed = held(gamma, alpha)? - before;
    say(format!(
        "  gamma resumed at entry {before} and fetched only the {resumed} new entries in {} ms",
        restart_started.elapsed().as_millis()
    ));
    wait_for(Duration::from_secs(120), "beta's catch-up", || Ok(held(beta, alpha)? >= after_want))?;

    // A wrong key is refused.
    say("\n5. A ledger that pinned the wrong key for alpha is refused: the handshake proves the key.".into());
    let mallory_dir = tmp.path().join("mallory");
    json_of(onoal(&mallory_dir)?.args(["init", "--oid", "oid:onoal:demo:mallory"]))?;
    say(format!(
        "$ onoal --data mallory peer add ALPHA_ID@127.0.0.1:{} --key {}   (beta's key, not alpha's)",
        alpha.port, beta.key
    ));
    json_of(onoal(&mallory_dir)?.args([
        "peer",
        "add",
        &format!("{}@127.0.0.1:{}", alpha.id, alpha.port),
        "--key",
        &beta.key,
    ]))?;
    say("$ onoal --data mallory sync ALPHA_ID".into());
    let out = onoal(&mallory_dir)?.args(["sync", &alpha.id, "--timeout", "10"]).output()?;
    let refusal = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let wrong_key_refused = !out.status.success() && refusal.contains("presented key");
    ensure!(wrong_key_refused, "a sync with the wrong key was not refused: {refusal}");
    say(format!("  {refusal}"));

    // A proof anyone can check with the vkey alone; a changed one is caught.
    let seq = entries / 2;
    let file = tmp.path().join(format!("alpha-{seq}.tlog-proof"));
    say(format!(
        "\n6. gamma proves alpha's entry {seq} from its replica; anyone checks it with alpha's vkey alone."
    ));
    say(format!(
        "$ onoal --data gamma --ledger ALPHA_ID prove inclusion {seq} --bundle > alpha-{seq}.tlog-proof"
    ));
    let out = onoal(&gamma.dir)?
        .args(["--ledger", &alpha.id, "prove", "inclusion", &seq.to_string(), "--bundle"])
        .output()?;
    ensure!(out.status.success(), "prove failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&file, &out.stdout)?;
    let nowhere = tmp.path().join("no-data-directory");
    let check = |path: &Path| -> Result<(bool, String)> {
        let out = onoal(&nowhere)?
            .arg("verify-proof")
            .arg(path)
            .args(["--vkey", &alpha.vkey])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok((out.status.success(), text))
    };
    say(format!("$ onoal verify-proof alpha-{seq}.tlog-proof --vkey '{}'", alpha.vkey));
    let (proof_ok, said) = check(&file)?;
    ensure!(proof_ok, "the proof did not verify: {said}");
    say(format!("  {said}"));
    let text = std::fs::read_to_string(&file)?;
    let forged = tmp.path().join("forged.tlog-proof");
    std::fs::write(
        &forged,
        text.replacen(&format!("index {seq}\n"), &format!("index {}\n", seq + 1), 1),
    )?;
    say(format!(
        "$ sed 's/^index {seq}$/index {}/' alpha-{seq}.tlog-proof > forged.tlog-proof",
        seq + 1
    ));
    say(format!("$ onoal verify-proof forged.tlog-proof --vkey '{}'", alpha.vkey));
    let (forged_ok, said) = check(&forged)?;
    ensure!(!forged_ok, "a changed proof verified: {said}");
    say(format!("  {said}"));

    // Use case 2: a two-phase transfer, every step an entry checked by proof on the other side.
    say("\n7. alpha mints 100 eur and transfers 30 to beta: lock, reserve, commit, credit, confirm, each step checked by proof.".into());
    say("$ onoal --data alpha mint --asset eur --amount 100".into());
    json_of(onoal(&alpha.dir)?.args(["mint", "--asset", "eur", "--amount", "100"]))?;
    say("$ onoal --data alpha transfer start --to oid:onoal:demo:beta --asset eur --amount 30"
        .into());
    let t = json_of(onoal(&alpha.dir)?.args([
        "transfer",
        "start",
        "--to",
        "oid:onoal:demo:beta",
        "--asset",
        "eur",
        "--amount",
        "30",
    ]))?;
    let transfer_committed = t["outcome"] == "committed" && t["peer"]["phase"] == "credited";
    ensure!(transfer_committed, "the transfer did not commit on both ledgers: {t}");
    let steps = |v: &Value| -> String {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s["step"].as_str()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    say(format!(
        "  alpha wrote {}; beta wrote {} (verified by alpha in beta's signed checkpoint)",
        steps(&t["steps"]),
        steps(&t["peer"]["steps"])
    ));
    say("$ onoal --data beta balance".into());
    let b = json_of(onoal(&beta.dir)?.args(["balance", "--asset", "eur"]))?;
    say(format!(
        "  beta: {} eur available, received {}; alpha: 70 available",
        b[0]["available"], b[0]["received"]
    ));

    // Use case 3: a registered asset, found and proven by a ledger that is not part of it.
    say("\n8. alpha registers a land deed; gamma finds its owner and proves it; the deed moves to beta and gamma follows.".into());
    say(r#"$ onoal --data alpha asset register --id deed-7 --meta '{"parcel":"A-12"}'"#.into());
    let reg = json_of(onoal(&alpha.dir)?.args([
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
    let owner_seen_by_gamma = |how: &str, want: &Member| -> Result<Value> {
        let mut last = Value::Null;
        let waited = wait_for(Duration::from_secs(30), "gamma's proof of the deed's owner", || {
            let out =
                onoal(&gamma.dir)?.args(["asset", how, "--id", "deed-7", "--json"]).output()?;
            last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            Ok(out.status.success() && last["owner"] == want.id.as_str())
        });
        waited.with_context(|| format!("gamma's last answer: {last}"))?;
        Ok(last)
    };
    say("$ onoal --data gamma asset find --id deed-7".into());
    let found = owner_seen_by_gamma("find", alpha)?;
    let how_found = match found["claims"][0]["source"].as_str() {
        Some("pinned") => "by asking the ledgers gamma pinned".to_owned(),
        Some(s) => format!("in its {s} records"),
        None => "?".to_owned(),
    };
    say(format!(
        "  owned by {} (alpha), proven from alpha's signed checkpoint; the claim found {how_found}",
        found["owner_oid"].as_str().unwrap_or("?"),
    ));
    say("$ onoal --data alpha transfer start --to oid:onoal:demo:beta --asset deed-7 --amount 1"
        .into());
    let t = json_of(onoal(&alpha.dir)?.args([
        "transfer",
        "start",
        "--to",
        "oid:onoal:demo:beta",
        "--asset",
        "deed-7",
        "--amount",
        "1",
    ]))?;
    ensure!(t["outcome"] == "committed", "the deed's transfer did not commit: {t}");
    say("$ onoal --data gamma asset verify --id deed-7".into());
    let moved_to = owner_seen_by_gamma("verify", beta)?;
    let asset_followed = moved_to["hops"].as_array().is_some_and(|h| h.len() == 1);
    ensure!(asset_followed, "gamma did not prove the hand-over: {moved_to}");
    say(format!(
        "  owned by {} (beta) now: alpha's registration, alpha's commit and beta's credit each checked by proof",
        moved_to["owner_oid"].as_str().unwrap_or("?")
    ));

    // The token entries reach the replicas like any other entries.
    let sizes: Vec<u64> = members
        .iter()
        .map(|m| Ok(json_of(onoal(&m.dir)?.arg("info"))?["tree_size"].as_u64().unwrap_or(0)))
        .collect::<Result<_>>()?;
    wait_for(Duration::from_secs(60), "the replicas of the token entries", || {
        for (m, size) in members.iter().zip(&sizes) {
            for o in members.iter().filter(|o| o.id != m.id) {
                if held(o, m)? < *size {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    })?;

    for c in &mut nodes.0 {
        terminate(c);
    }
    nodes.0.clear();

    // Audit every log and replica; a replica's root must equal its origin's own root.
    say("\n9. Every ledger audits its own log and both replicas (entries, chain, tiles, checkpoints).".into());
    let mut report = Vec::new();
    for m in &members {
        say(format!(
            "$ onoal --data {} verify && onoal --data {} verify --ledger …",
            m.name, m.name
        ));
        let own = json_of(onoal(&m.dir)?.arg("verify"))?;
        let mut replicas = Vec::new();
        for o in members.iter().filter(|o| o.id != m.id) {
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
        report.push(json!({"ledger": m.name, "ledger_id": m.id, "entries": own["entries"], "replicas": replicas}));
    }
    let total_s = started.elapsed().as_secs_f64();
    if json_out {
        println!(
            "{}",
            json!({
                "ledgers": report,
                "entries_per_ledger": entries,
                "append_seconds": append_s,
                "sync_seconds": sync_s,
                "entries_synced": moved,
                "synced_entries_per_s": moved as f64 / sync_s,
                "live_appends": LIVE_APPENDS,
                "live_catch_up_ms": live_ms,
                "resumed_from": before,
                "resumed_entries": resumed,
                "wrong_key_refused": wrong_key_refused,
                "tampered_proof_refused": !forged_ok,
                "cross_ledger_proof_verified": proof_ok,
                "transfer_committed": transfer_committed,
                "asset_followed": asset_followed,
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

/// `--keep`: the nodes run again (and keep following each other) until Ctrl-C; the ledgers
/// stay on disk with the commands to explore them.
fn keep_up(tmp: tempfile::TempDir, members: &[Member]) -> Result<()> {
    let dir = tmp.keep();
    eprintln!("\nthe nodes run again until Ctrl-C; the ledgers stay in {}", dir.display());
    let say = |s: String| eprintln!("{s}");
    let mut nodes = start_nodes(members, &say)?;
    let m = &members[0];
    let data = m.dir.display();
    eprintln!(
        "\nexplore (any ledger; alpha shown):\n  onoal --data {data} status\n  onoal --data {data} watch\n  onoal --data {data} append --stream orders --type demo.event --payload hello\n  onoal --data {data} replicas\n  onoal --data {data} query --stream orders --limit 3\n  curl -s http://HTTP_ADDR/openapi.json   (HTTP_ADDR: the dashboard's address above)"
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
