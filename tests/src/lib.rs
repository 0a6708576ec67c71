//! Helpers for Onoal's integration tests: locating the `onoal` binary and running it.

pub mod node;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Path of the `onoal` binary built in the same target directory as this test.
///
/// # Panics
/// When the binary is missing: build it with `cargo build --release -p onoal` (the README's
/// test command builds it through the `onoal` package's own tests).
pub fn onoal_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ONOAL_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/onoal
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let bin = dir.join(format!("onoal{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build --release -p onoal` or set ONOAL_BIN",
        bin.display()
    );
    bin
}

/// A command running `onoal --data <dir>`.
pub fn onoal(data: &Path) -> Command {
    let mut c = Command::new(onoal_bin());
    c.arg("--data").arg(data).env_remove("ONOAL_DATA");
    c
}

/// How long one command may run before the test calls it hung (`ONOAL_TEST_COMMAND_TIMEOUT_S`,
/// default 300 s): a hang fails the test with the command's threads' stacks instead of running
/// into CI's time limit.
fn command_deadline() -> std::time::Duration {
    let secs = std::env::var("ONOAL_TEST_COMMAND_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

/// The stacks of every thread of process `pid` (gdb, when installed), for a hang's report.
fn stacks(pid: u32) -> String {
    Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt 30"])
        .stdin(std::process::Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(no stacks: gdb did not run: {e})"))
}

/// Runs and returns the output; panics, with the stacks of its threads, if it runs past the
/// deadline.
pub fn run(cmd: &mut Command) -> Output {
    use std::io::Read as _;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn onoal");
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = std::time::Instant::now() + command_deadline();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for onoal") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let report = stacks(child.id());
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung: still running after {:?}\n{report}", command_deadline());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs, asserts success and parses stdout as one JSON object.
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let out = run(cmd.arg("--json"));
    assert!(
        out.status.success(),
        "onoal failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().expect("one JSON object on stdout");
    assert!(lines.next().is_none(), "more than one line on stdout: {text}");
    serde_json::from_str(first).expect("stdout is JSON")
}

/// Parses a finished command's stdout as JSON (success or failure: with `--json` a failure
/// prints `{"error": …}` there); panics with both streams when it is not JSON.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs, asserts failure, and returns stderr.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copies the directory tree `from` to `to` (a closed ledger's data directory, say).
///
/// # Panics
/// On any I/O error.
pub fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// The write-ahead log files of the RocksDB directory `db`, oldest first.
///
/// # Panics
/// On any I/O error.
pub fn wal_files(db: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

/// A small deterministic generator (xorshift64*) for repeatable random test schedules.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// POSTs `body` as text to `url` (60 s at most): status, content type, body.
pub fn post_text(url: &str, body: &str) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut r = agent.post(url).content_type("text/plain").send(body).unwrap();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), content_type, text)
}

/// GETs `url` (60 s at most): status and body text.
pub fn get_text(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut r = agent.get(url).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), text)
}

/// POSTs `body` as JSON to `url` (60 s at most) and returns the status and the JSON answer
/// (`null` when the body is not JSON); error statuses are returned, not raised.
pub fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut r = agent.post(url).send_json(body).unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Polls `f` every 100 ms until it gives a value, at most `limit`; panics naming `what` after.
pub fn eventually<T>(
    what: &str,
    limit: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
