//! `onoal demo`: the main job on an embedded default. Three ledgers on loopback, each its own
//! `onoal serve` child process, append entries, pin each other's keys, follow each other's
//! logs over QUIC (every bundle verified against a signed checkpoint before it is written),
//! and audit the replicas; then one replica answers an inclusion proof that is checked with
//! only the origin ledger's public verifier key.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use onoal_engine::Ledger;
use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::merkle::verify_inclusion;
use serde_json::{Value, json};

struct Member {
    name: &'static str,
    dir: PathBuf,
    id: String,
    key: String,
    vkey: String,
    port: u16,
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

/// Starts every member's node: QUIC on its port, HTTP on a free port, following the others.
fn start_nodes(members: &[Member], say: &dyn Fn(String)) -> Result<Nodes> {
    let mut nodes = Nodes(Vec::new());
    for m in members {
        let mut cmd = onoal(&m.dir)?;
        cmd.args(["serve", "--json", "--listen", &format!("127.0.0.1:{}", m.port)]);
        cmd.args(["--http", "127.0.0.1:0"]);
        for o in members.iter().filter(|o| o.id != m.id) {
            cmd.args(["--follow", &format!("{}@127.0.0.1:{}", o.id, o.port)]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().context("no stdout")?).read_line(&mut line)?;
        nodes.0.push(child);
        let v: Value = serde_json::from_str(&line)
            .map_err(|_| anyhow!("{} did not start: {line:?}", m.name))?;
        say(format!(
            "  {:<5} serving on QUIC {}, dashboard {}",
            m.name,
            v["addr"].as_str().unwrap_or("?"),
            v["dashboard"].as_str().unwrap_or("none")
        ));
    }
    Ok(nodes)
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

pub(crate) fn run(entries: u64, json_out: bool, keep: bool) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("onoal-demo-").tempdir()?;
    let say = |s: String| {
        if !json_out {
            println!("{s}");
        }
    };
    let started = Instant::now();
    let mut members = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let dir = tmp.path().join(name);
        let v = json_of(onoal(&dir)?.args(["init", "--oid", &format!("oid:onoal:demo:{name}")]))?;
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
    }
    say(format!("three ledgers in {}", tmp.path().display()));

    // Each appends its own entries (through `onoal import`, fsync per group) and signs.
    let append_started = Instant::now();
    for m in &members {
        let mut child = onoal(&m.dir)?
            .args(["import", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        {
            let mut stdin = std::io::BufWriter::new(child.stdin.take().context("no stdin")?);
            for i in 0..entries {
                let stream = ["orders", "payments", "audit"][(i % 3) as usize];
                writeln!(
                    stdin,
                    "{{\"stream\":\"{stream}\",\"type\":\"demo.event\",\"payload\":\"{} event {i} {}\"}}",
                    m.name,
                    "x".repeat(200)
                )?;
            }
        }
        ensure!(child.wait()?.success(), "import into {} failed", m.name);
        json_of(onoal(&m.dir)?.arg("checkpoint"))?;
        say(format!("  {:<5} {} appended {entries} entries, key {}..", m.name, m.id, &m.key[..16]));
    }
    let append_s = append_started.elapsed().as_secs_f64();

    // Ports are picked just before the nodes start (each node must know the others' ports up
    // front), so the window in which another process could take one is short.
    for m in &mut members {
        m.port = free_port()?;
    }
    // Everyone pins everyone else, then runs its node and follows the other two.
    for m in &members {
        for o in members.iter().filter(|o| o.id != m.id) {
            json_of(onoal(&m.dir)?.args([
                "peer",
                "add",
                &format!("{}@127.0.0.1:{}", o.id, o.port),
                "--key",
                &o.key,
            ]))?;
        }
    }
    let sync_started = Instant::now();
    let mut nodes = start_nodes(&members, &say)?;
    // Wait until every node holds both other logs in full.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut done = true;
        for m in &members {
            let v = json_of(onoal(&m.dir)?.arg("replicas"))?;
            let full = v["replicas"]
                .as_array()
                .map(|r| r.iter().filter(|x| x["size"].as_u64() == Some(entries)).count())
                .unwrap_or(0);
            done &= full == members.len() - 1;
        }
        if done {
            break;
        }
        ensure!(Instant::now() < deadline, "replicas did not complete within 10 minutes");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sync_s = sync_started.elapsed().as_secs_f64();
    let moved = entries * (members.len() * (members.len() - 1)) as u64;
    say(format!(
        "synced: every node holds the other two logs ({moved} entries moved and verified) in {sync_s:.2} s"
    ));
    for c in &mut nodes.0 {
        terminate(c);
    }
    nodes.0.clear();

    // Audit every replica; its root must equal the origin's own root.
    let mut report = Vec::new();
    for m in &members {
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
        say(format!("  {:<5} own log and both replicas audited: sound", m.name));
        report.push(json!({"ledger": m.name, "ledger_id": m.id, "entries": own["entries"], "replicas": replicas}));
    }

    // gamma proves an entry of alpha's log; checked with alpha's verifier key alone.
    let (alpha, gamma) = (&members[0], &members[2]);
    let seq = entries / 2;
    let proof_ok = {
        let ledger = Ledger::builder(&gamma.dir).open_read_only()?;
        let id: onoal_engine::LedgerId = alpha.id.parse()?;
        let replica =
            ledger.replica(&id).ok_or_else(|| anyhow!("gamma holds no replica of alpha"))?;
        let cp = replica.latest_checkpoint()?.ok_or_else(|| anyhow!("no checkpoint of alpha"))?;
        let verified = NoteVerifier::from_vkey(&alpha.vkey)?.open(cp.note.as_bytes())?;
        let entry = replica.entry(seq)?;
        let proof = replica.inclusion_proof(seq, verified.size)?;
        verify_inclusion(seq, verified.size, &entry.leaf_hash, &proof, &verified.root)?;
        true
    };
    say(format!(
        "gamma proved alpha's entry {seq} in alpha's signed checkpoint; verified with alpha's public key only"
    ));
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
                "cross_ledger_proof_verified": proof_ok,
                "seconds": total_s,
            })
        );
    } else {
        println!("demo done in {total_s:.1} s");
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
