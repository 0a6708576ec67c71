//! Separate `onoal` processes for the tests: ledgers made with `init` and `import`, pins,
//! and running `onoal serve` nodes.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{onoal, run, run_json};

/// A ledger's id and public key (hex), as `init` printed them.
pub struct Node {
    /// Ledger id.
    pub id: String,
    /// Public key, hex.
    pub key: String,
}

/// `onoal init --oid OID` in `dir`.
pub fn init(dir: &Path, oid: &str) -> Node {
    let v = run_json(onoal(dir).args(["init", "--oid", oid]));
    Node {
        id: v["ledger_id"].as_str().unwrap().into(),
        key: v["public_key"].as_str().unwrap().into(),
    }
}

/// Imports `n` entries numbered from `first` (payloads of about 210 bytes, streams s0..s2) with
/// `onoal import`, then signs a checkpoint of the new size.
pub fn import(dir: &Path, first: u64, n: u64) {
    let file = dir.with_extension(format!("in{first}.jsonl"));
    let mut f = std::fs::File::create(&file).unwrap();
    for i in first..first + n {
        writeln!(
            f,
            "{{\"stream\":\"s{}\",\"type\":\"t\",\"payload\":\"entry {i} {}\"}}",
            i % 3,
            "x".repeat(200)
        )
        .unwrap();
    }
    drop(f);
    let out = run(onoal(dir).arg("import").arg(&file));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Sign a checkpoint of the new size now (a node serves its newest checkpoint).
    run_json(onoal(dir).arg("checkpoint"));
}

/// Pins `peer` at `127.0.0.1:port` in `dir`.
pub fn pin(dir: &Path, peer: &Node, port: u16) {
    run_json(onoal(dir).args([
        "peer",
        "add",
        &format!("{}@127.0.0.1:{port}", peer.id),
        "--key",
        &peer.key,
    ]));
}

/// A running `onoal serve`; killed on drop. `port` is where it listens (QUIC), `http` its API,
/// then what it printed when it started.
pub struct Serve(Child, pub u16, pub std::net::SocketAddr, pub Value);

impl Serve {
    /// Starts `onoal serve` on `port` (0: any free port, read back from its output).
    pub fn start(dir: &Path, port: u16, follow: &[String]) -> Self {
        Self::start_with(dir, port, follow, &[])
    }

    /// As [`Self::start`], with more `serve` arguments.
    pub fn start_with(dir: &Path, port: u16, follow: &[String], extra: &[&str]) -> Self {
        Self::start_env(dir, port, follow, extra, &[])
    }

    /// As [`Self::start_with`], with environment variables for the process.
    pub fn start_env(
        dir: &Path,
        port: u16,
        follow: &[String],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = onoal(dir);
        cmd.envs(env.iter().copied());
        cmd.args(["serve", "--json", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.args(["--http", "127.0.0.1:0"]);
        cmd.args(extra);
        for f in follow {
            cmd.args(["--follow", f]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("serve printed {line:?}"));
        let addr: std::net::SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
        if port != 0 {
            assert_eq!(addr.port(), port);
        }
        let http: std::net::SocketAddr = v["http_addr"].as_str().unwrap().parse().unwrap();
        Self(child, addr.port(), http, v)
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.2)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    pub fn stop(mut self) {
        terminate(&mut self.0);
    }

    /// SIGKILL: the node gets no chance to say goodbye.
    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits up to `within` for the process to exit by itself; true when it did.
    pub fn exited_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.0.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// Sends SIGTERM to `child` and asserts that it exits successfully within 10 s.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "serve exited with {status} after SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `replicas` row of ledger `id` in `dir`, if any.
pub fn replica(dir: &Path, id: &str) -> Option<Value> {
    let v = run_json(onoal(dir).arg("replicas"));
    v["replicas"].as_array().unwrap().iter().find(|r| r["ledger_id"] == id).cloned()
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `onoal registry serve` on a free loopback port (with the API key in `key_file`, if any);
/// the process and its URL.
pub fn registry(key_file: Option<&Path>) -> (Proc, String) {
    let mut cmd = Command::new(crate::onoal_bin());
    cmd.args(["registry", "serve", "--json", "--listen", "127.0.0.1:0"]);
    if let Some(k) = key_file {
        cmd.arg("--api-key-file").arg(k);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("registry printed {line:?}"));
    (Proc(child), v["registry"].as_str().unwrap().to_owned())
}
