//! Resource attacks on running nodes. Each test starts real `onoal` processes, measures an
//! honest peer's full sync of the attacked node, starts the attack from this process over real
//! QUIC, and measures again while it lasts. Each asserts two bounds, both measured in the same
//! run: the attacked process's peak RSS stays under [`RSS_BOUND_MIB`], and the honest sync keeps
//! at least half its unattacked speed (best of two syncs each). Each also asserts that the
//! attack met the limit meant for it (refused connections, busy answers, capped pages, a
//! narrowed bundle), so a test cannot pass without the attack having happened.
//!
//! The tests run one at a time (they measure speed). Each prints its figures on one line:
//! `cargo test --release -p onoal-tests --test attacks -- --nocapture`. To measure an older
//! binary for comparison, set `ONOAL_BIN=/path/to/onoal` and `ONOAL_ATTACK_MEASURE_ONLY=1`: the
//! figures are printed and nothing is asserted (the attackers then stop after a few GiB, so an
//! unbounded binary cannot take the machine down).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::{Filter, Ledger, LedgerId, LogIndex, Name, NewEntry, Oid, TreeSize};
use onoal_mesh::proto::{self, ErrorCode, LedgerCertificate, Request, Response};
use onoal_tests::node::{Node, Serve, init, pin};
use onoal_tests::{onoal, run_json};
use quinn::{Connection, Endpoint};

/// The peak RSS an attacked process must stay under.
const RSS_BOUND_MIB: u64 = 256;
/// Small entries of the attacked ledger (about 200 bytes of payload each).
const SMALL: u64 = 120_000;
/// Large entries of the attacked ledger (1,000,000 bytes each, in stream `big`), spread evenly.
const BIG: u64 = 24;
const BIG_BYTES: usize = 1_000_000;

fn measure_only() -> bool {
    std::env::var_os("ONOAL_ATTACK_MEASURE_ONLY").is_some()
}

/// One test at a time: they measure speed.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Processes and measurements

/// Peak resident set of process `pid` so far (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024
}

/// CPU time process `pid` used so far (user + system).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest.split(' ').skip(11).take(2).map(|x| x.parse().unwrap()).collect();
    Duration::from_millis((f[0] + f[1]) * 10) // USER_HZ is 100 on Linux
}

/// Runs `cmd` to its end (killing it after `limit`), sampling its peak RSS every few
/// milliseconds; returns whether it succeeded, its stderr, and the largest VmHWM seen (growth
/// in the last few ms before exit can be missed, nothing else).
fn run_sampled(cmd: &mut Command, limit: Duration) -> (bool, String, u64) {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = reader.join().unwrap();
            err.push_str(&format!("(killed after {limit:?})"));
            return (false, err, peak);
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib / 1024);
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    (status.success(), reader.join().unwrap(), peak)
}

/// An honest peer's full sync of `source` (a fresh copy, replacing the held one), timed.
fn honest_sync(dir: &Path, source: &Node, size: u64) -> Duration {
    let started = Instant::now();
    let v = run_json(onoal(dir).args(["sync", &source.id, "--mode", "full"]));
    let took = started.elapsed();
    assert_eq!(v["to_size"], size, "{v}");
    took
}

fn best_of_two(f: impl Fn() -> Duration) -> Duration {
    f().min(f())
}

/// What one attack did to the attacked process, and whether the bounds held.
struct Figures {
    attack: &'static str,
    entries: u64,
    rss_before: u64,
    rss_under_attack: u64,
    honest_before: Duration,
    honest_under_attack: Duration,
    /// What the attack met (refusals, caps), for the report.
    seen: String,
}

impl Figures {
    fn rate(&self, took: Duration) -> f64 {
        self.entries as f64 / took.as_secs_f64()
    }

    /// Prints the figures and asserts the bounds (unless measuring only).
    fn check(&self) {
        let (before, under) = (self.rate(self.honest_before), self.rate(self.honest_under_attack));
        println!(
            "attack {}: peak RSS {} MiB before, {} MiB under attack (bound {RSS_BOUND_MIB}); \
             honest sync {before:.0} entries/s before, {under:.0} under attack ({:.0} %); {}",
            self.attack,
            self.rss_before,
            self.rss_under_attack,
            100.0 * under / before,
            self.seen,
        );
        if measure_only() {
            return;
        }
        assert!(
            self.rss_under_attack < RSS_BOUND_MIB,
            "{}: the attacked process grew to {} MiB",
            self.attack,
            self.rss_under_attack
        );
        assert!(
            under >= before / 2.0,
            "{}: the honest sync slowed from {before:.0} to {under:.0} entries/s",
            self.attack
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The attacked ledger

fn entry(stream: &str, payload: Vec<u8>) -> NewEntry {
    NewEntry::new(Name::stream(stream).unwrap(), Name::entry_type("t").unwrap(), payload)
}

/// A closed ledger of [`SMALL`] small and [`BIG`] large entries with a checkpoint of all of
/// them, built once per test process and copied by each test.
struct Template {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    node: Node,
    size: u64,
}

fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("attacked");
        let ledger =
            Ledger::builder(&dir).create(Oid::parse("oid:onoal:test:attacked").unwrap()).unwrap();
        let every = SMALL / BIG;
        let mut batch = Vec::new();
        for i in 0..SMALL {
            let payload = format!("entry {i} {}", "x".repeat(190)).into_bytes();
            batch.push(entry(["s0", "s1", "s2"][(i % 3) as usize], payload));
            if i % every == every / 2 {
                let mut big = vec![b'b'; BIG_BYTES];
                big[..8].copy_from_slice(&i.to_be_bytes());
                batch.push(entry("big", big));
            }
            if batch.len() >= 1000 {
                ledger.append_batch(std::mem::take(&mut batch)).unwrap();
            }
        }
        ledger.append_batch(batch).unwrap();
        let cp = ledger.checkpoint_now().unwrap();
        let id = ledger.identity();
        let node = Node {
            id: id.ledger_id.to_string(),
            key: onoal_engine::hash::Hash(*id.public_key.as_bytes()).to_hex(),
        };
        assert_eq!(cp.size, SMALL + BIG);
        drop(ledger);
        Template { _tmp: tmp, dir, node, size: SMALL + BIG }
    })
}

/// The attacked node serving a copy of the template; an honest peer (C) and a pinned
/// attacker (X) both pinned by it.
struct Setup {
    _tmp: tempfile::TempDir,
    source: Node,
    size: u64,
    honest_dir: PathBuf,
    attacker_key: Arc<SecretKey>,
    serve: Serve,
}

impl Setup {
    fn start() -> Self {
        let t = template();
        let tmp = tempfile::tempdir().unwrap();
        let a_dir = tmp.path().join("a");
        onoal_tests::copy_tree(&t.dir, &a_dir);
        let (honest_dir, attacker_dir) = (tmp.path().join("c"), tmp.path().join("x"));
        let honest = init(&honest_dir, "oid:onoal:test:honest");
        let attacker = init(&attacker_dir, "oid:onoal:test:attacker");
        pin(&a_dir, &honest, 1);
        pin(&a_dir, &attacker, 1);
        let serve = Serve::start(&a_dir, 0, &[]);
        pin(&honest_dir, &t.node, serve.1);
        let attacker_key = Arc::new(SecretKey::read_file(&key_path(&attacker_dir)).unwrap());
        let source = Node { id: t.node.id.clone(), key: t.node.key.clone() };
        Self { _tmp: tmp, source, size: t.size, honest_dir, attacker_key, serve }
    }

    fn honest(&self) -> Duration {
        honest_sync(&self.honest_dir, &self.source, self.size)
    }

    fn ledger(&self) -> LedgerId {
        self.source.id.parse().unwrap()
    }

    fn server_key(&self) -> VerifyingKey {
        let bytes: [u8; 32] = hex::decode(&self.source.key).unwrap().try_into().unwrap();
        VerifyingKey::from_bytes(&bytes).unwrap()
    }

    /// Runs the attack `start` launches (in its own runtime) around two honest syncs, after
    /// two unattacked ones; `seen` then describes what the attack met.
    fn measure(
        &self,
        attack: &'static str,
        start: impl FnOnce(&Self, &tokio::runtime::Runtime),
        ramp: Duration,
        seen: impl FnOnce() -> String,
    ) -> Figures {
        let honest_before = best_of_two(|| self.honest());
        let rss_before = peak_rss_mib(self.serve.pid());
        let rt = runtime();
        start(self, &rt);
        std::thread::sleep(ramp);
        let honest_under_attack = best_of_two(|| self.honest());
        let rss_under_attack = peak_rss_mib(self.serve.pid());
        drop(rt);
        Figures {
            attack,
            entries: self.size,
            rss_before,
            rss_under_attack,
            honest_before,
            honest_under_attack,
            seen: seen(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Speaking the protocol

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn client_endpoint() -> Endpoint {
    Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

async fn connect(
    endpoint: &Endpoint,
    key: &SecretKey,
    server: VerifyingKey,
    port: u16,
) -> Result<Connection, String> {
    let (client, _) = onoal_mesh::tls::client_config(key, server, &[proto::ALPN_SYNC])
        .map_err(|e| e.to_string())?;
    let client =
        quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(|e| e.to_string())?;
    let config = quinn::ClientConfig::new(Arc::new(client));
    let connecting = endpoint
        .connect_with(config, format!("127.0.0.1:{port}").parse().unwrap(), "onoal")
        .map_err(|e| e.to_string())?;
    connecting.await.map_err(|e| e.to_string())
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode_frame(body, &mut out);
    out
}

/// Opens a stream and sends `request` on it (the stream stays open for the answer).
async fn send(
    conn: &Connection,
    request: &Request,
) -> Option<(quinn::SendStream, quinn::RecvStream)> {
    let (mut send, recv) = conn.open_bi().await.ok()?;
    send.write_all(&frame(&postcard::to_stdvec(request).unwrap())).await.ok()?;
    let _ = send.finish();
    Some((send, recv))
}

/// Reads one whole response frame.
async fn read_response(recv: &mut quinn::RecvStream) -> Option<Response> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    recv.read_exact(&mut body).await.ok()?;
    postcard::from_bytes(&body).ok()
}

fn reason(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => String::from_utf8_lossy(&c.reason).into(),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Counts {
    connected: AtomicU64,
    refused: AtomicU64,
    other: AtomicU64,
}

impl Counts {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Attacks on a serving node

/// Slowloris from unpinned keys: 300 connections, each under its own fresh key, each opening as
/// many streams as it may and sending half a request on each, holding them, and coming back a
/// second after the server closes it. The server must decide on the key before reading more
/// than a `Hello`: a few unpinned connections at a time, one small stream each, closed soon.
#[test]
fn slowloris_half_requests_from_unpinned_keys() {
    let _serial = serial();
    let s = Setup::start();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let figures = s.measure(
        "slowloris from 300 unpinned keys",
        |s, rt| {
            let _guard = rt.enter();
            let endpoint = client_endpoint();
            let (server, port) = (s.server_key(), s.serve.1);
            for _ in 0..300 {
                let (endpoint, counts) = (endpoint.clone(), c.clone());
                rt.spawn(async move {
                    let key = SecretKey::generate().unwrap();
                    loop {
                        if let Ok(conn) = connect(&endpoint, &key, server, port).await {
                            counts.connected.fetch_add(1, Ordering::Relaxed);
                            for _ in 0..256 {
                                let conn = conn.clone();
                                tokio::spawn(async move {
                                    let Ok((mut send, recv)) = conn.open_bi().await else {
                                        return;
                                    };
                                    // A header announcing 16,000 bytes, and 100 of them.
                                    let _ = send.write_all(&16_000u32.to_be_bytes()).await;
                                    let _ = send.write_all(&[7u8; 100]).await;
                                    conn.closed().await;
                                    drop((send, recv));
                                });
                            }
                            let why = reason(&conn.closed().await);
                            let n = if why.contains("too many connections") {
                                &counts.refused
                            } else {
                                &counts.other
                            };
                            n.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                });
            }
        },
        Duration::from_secs(3),
        || {
            format!(
                "{} connections made, {} refused as too many, {} closed otherwise",
                Counts::get(&counts.connected),
                Counts::get(&counts.refused),
                Counts::get(&counts.other)
            )
        },
    );
    figures.check();
    if !measure_only() {
        assert!(
            Counts::get(&counts.refused) > 0,
            "the unpinned cap never refused: {}",
            figures.seen
        );
        assert!(
            Counts::get(&counts.other) > 0,
            "no unpinned connection was closed: {}",
            figures.seen
        );
    }
}

/// A pinned peer that asks for every bundle on as many connections and streams as it may, and
/// reads none of them. The server may hold a few answers per key, each a chunk at a time.
#[test]
fn pinned_peer_that_never_reads_its_bundles() {
    let _serial = serial();
    let s = Setup::start();
    let counts = Arc::new(Counts::default());
    let c = counts.clone();
    let figures = s.measure(
        "unread bundles from a pinned key",
        |s, rt| {
            let _guard = rt.enter();
            let endpoint = client_endpoint();
            let (server, port, ledger, size) = (s.server_key(), s.serve.1, s.ledger(), s.size);
            for conn_no in 0..16u64 {
                let (endpoint, counts, key) = (endpoint.clone(), c.clone(), s.attacker_key.clone());
                rt.spawn(async move {
                    let Ok(conn) = connect(&endpoint, &key, server, port).await else { return };
                    counts.connected.fetch_add(1, Ordering::Relaxed);
                    let mut held = Vec::new();
                    for i in 0..256u64 {
                        let first = ((conn_no * 256 + i) * 256) % size / 256 * 256;
                        let request = Request::Bundle {
                            ledger,
                            size: TreeSize(size),
                            first: LogIndex(first),
                        };
                        tokio::select! {
                            sent = send(&conn, &request) => match sent {
                                Some(streams) => held.push(streams),
                                None => break,
                            },
                            e = conn.closed() => {
                                if reason(&e).contains("too many connections") {
                                    counts.refused.fetch_add(1, Ordering::Relaxed);
                                }
                                return;
                            }
                        }
                    }
                    let e = conn.closed().await;
                    if reason(&e).contains("too many connections") {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(held);
                });
            }
        },
        Duration::from_secs(2),
        || {
            format!(
                "{} connections made, {} refused as too many for one key",
                Counts::get(&counts.connected),
                Counts::get(&counts.refused)
            )
        },
    );
    figures.check();
    if !measure_only() {
        assert_eq!(Counts::get(&counts.refused), 8, "{}", figures.seen);
    }
}

/// A pinned peer holding as many long polls as it may (512 on 8 connections), each asked
/// again 100 ms after it is answered. Waiting costs nothing (no polling): the server's CPU
/// while they wait is printed; polls beyond the per-key cap are refused as busy.
#[test]
fn pinned_peer_holding_hundreds_of_long_polls() {
    let _serial = serial();
    let s = Setup::start();
    let busy = Arc::new(AtomicU64::new(0));
    let b = busy.clone();
    let cpu = Arc::new(Mutex::new(Duration::ZERO));
    let cpu2 = cpu.clone();
    let pid = s.serve.pid();
    let figures = s.measure(
        "512 long polls from a pinned key",
        |s, rt| {
            let _guard = rt.enter();
            let endpoint = client_endpoint();
            let (server, port, ledger, size) = (s.server_key(), s.serve.1, s.ledger(), s.size);
            for _ in 0..8 {
                let (endpoint, busy, key) = (endpoint.clone(), b.clone(), s.attacker_key.clone());
                rt.spawn(async move {
                    let Ok(conn) = connect(&endpoint, &key, server, port).await else { return };
                    for _ in 0..64 {
                        let (conn, busy) = (conn.clone(), busy.clone());
                        tokio::spawn(async move {
                            let request = Request::WaitCheckpoint {
                                ledger,
                                have: TreeSize(size),
                                wait_ms: 30_000,
                            };
                            loop {
                                let Some((_send, mut recv)) = send(&conn, &request).await else {
                                    return;
                                };
                                if let Some(Response::Error { code: ErrorCode::Busy, .. }) =
                                    read_response(&mut recv).await
                                {
                                    busy.fetch_add(1, Ordering::Relaxed);
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        });
                    }
                    conn.closed().await;
                });
            }
            // The server's CPU while the polls wait (no honest sync running).
            std::thread::sleep(Duration::from_secs(1));
            let before = cpu_time(pid);
            std::thread::sleep(Duration::from_secs(3));
            *cpu2.lock().unwrap() = cpu_time(pid) - before;
        },
        Duration::ZERO,
        || {
            format!(
                "{} polls refused as busy; the server used {} ms of CPU in 3 s while they waited",
                busy.load(Ordering::Relaxed),
                cpu.lock().unwrap().as_millis()
            )
        },
    );
    figures.check();
    if !measure_only() {
        assert!(busy.load(Ordering::Relaxed) > 0, "no poll was refused: {}", figures.seen);
    }
}

/// A pinned peer asking, 64 at a time, for pages of the ledger's 1 MB entries and reading only
/// each answer's length. Pages stop at their byte cap while they are read from storage.
#[test]
fn pinned_peer_asking_for_pages_of_large_entries() {
    let _serial = serial();
    let s = Setup::start();
    let largest = Arc::new(AtomicU64::new(0));
    let l = largest.clone();
    let figures = s.measure(
        "pages of 1 MB entries from a pinned key",
        |s, rt| {
            let _guard = rt.enter();
            let endpoint = client_endpoint();
            let (server, port, ledger, size) = (s.server_key(), s.serve.1, s.ledger(), s.size);
            for _ in 0..4 {
                let (endpoint, largest, key) =
                    (endpoint.clone(), l.clone(), s.attacker_key.clone());
                rt.spawn(async move {
                    let Ok(conn) = connect(&endpoint, &key, server, port).await else { return };
                    let mut held = Vec::new();
                    for _ in 0..16 {
                        let request = Request::Entries {
                            ledger,
                            size: TreeSize(size),
                            filter: Filter { stream: Some("big".into()), ..Filter::default() },
                            cursor: LogIndex(0),
                            limit: 1000,
                        };
                        let Some((send_half, mut recv)) = send(&conn, &request).await else {
                            break;
                        };
                        let largest = largest.clone();
                        held.push(tokio::spawn(async move {
                            let mut header = [0u8; 4];
                            if recv.read_exact(&mut header).await.is_ok() {
                                let len = u64::from(u32::from_be_bytes(header));
                                largest.fetch_max(len, Ordering::Relaxed);
                            }
                            // Read nothing more; hold the stream.
                            std::future::pending::<()>().await;
                            drop((send_half, recv));
                        }));
                    }
                    conn.closed().await;
                });
            }
        },
        Duration::from_secs(2),
        || format!("largest page announced: {} bytes", largest.load(Ordering::Relaxed)),
    );
    figures.check();
    if !measure_only() {
        let page = largest.load(Ordering::Relaxed);
        assert!(page > 0, "no page was answered: {}", figures.seen);
        // The page cap (2 MiB) plus the one entry that crosses it, and proofs.
        assert!(
            page <= (proto::MAX_PAGE_BYTES + BIG_BYTES + (64 << 10)) as u64,
            "{}",
            figures.seen
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Attacks on a receiving node: a relay answering bundles with fat frames

/// A relay impersonating ledger `node` (it holds the key, as a relay that kept a copy of a
/// compromised key would, or one serving a ledger it made): it answers `Hello` and checkpoints
/// honestly, and every bundle with its honest header followed by frames of 4 MiB of junk, as
/// many as the bundle has entries (256 frames: 1 GiB a bundle). With `per_connection`, it
/// closes each connection after that many bytes (the receiver then reconnects: a sustained
/// attack); with `rate`, it sends at most that many bytes a second in all. It stops sending
/// after `total` bytes.
struct FatRelay {
    ledger: Arc<Ledger>,
    key: SecretKey,
    per_connection: Option<u64>,
    rate: Option<u64>,
    total: u64,
    sent: AtomicU64,
    bundles: AtomicU64,
    narrow: AtomicU64,
    started: OnceLock<Instant>,
}

const FAT_FRAME: usize = 4 << 20;

impl FatRelay {
    fn start(self: &Arc<Self>, rt: &tokio::runtime::Runtime) -> u16 {
        let server = onoal_mesh::tls::server_config(&self.key, &[proto::ALPN_SYNC]).unwrap();
        let server = quinn::crypto::rustls::QuicServerConfig::try_from(server).unwrap();
        let _guard = rt.enter();
        let endpoint = Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(server)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let port = endpoint.local_addr().unwrap().port();
        let relay = self.clone();
        rt.spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let relay = relay.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    let on_conn = Arc::new(AtomicU64::new(0));
                    while let Ok((send, recv)) = conn.accept_bi().await {
                        let (relay, conn, on_conn) = (relay.clone(), conn.clone(), on_conn.clone());
                        tokio::spawn(async move {
                            relay.answer(&conn, &on_conn, send, recv).await;
                        });
                    }
                });
            }
        });
        port
    }

    async fn answer(
        &self,
        conn: &Connection,
        on_conn: &AtomicU64,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let mut header = [0u8; 4];
        if recv.read_exact(&mut header).await.is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        if recv.read_exact(&mut body).await.is_err() {
            return;
        }
        let Ok(request) = postcard::from_bytes::<Request>(&body) else { return };
        let encode = |r: &Response| frame(&postcard::to_stdvec(r).unwrap());
        let ledger = self.ledger.clone();
        let id = ledger.identity().clone();
        let cert = LedgerCertificate::issue(&id, self.key.signing_key(), now_ms(), 3_600_000);
        let (first, width) = match request {
            Request::Hello { .. } => {
                let _ = send.write_all(&encode(&Response::Hello { certificate: cert })).await;
                let _ = send.finish();
                return;
            }
            Request::Checkpoint { have: TreeSize(have), .. }
            | Request::WaitCheckpoint { have: TreeSize(have), .. } => {
                let cp = ledger.latest_checkpoint().unwrap().unwrap();
                let consistency = if have == 0 || have >= cp.size {
                    Vec::new()
                } else {
                    ledger.consistency_proof(have, cp.size).unwrap()
                };
                let r = Response::Checkpoint { note: cp.note, consistency };
                let _ = send.write_all(&encode(&r)).await;
                let _ = send.finish();
                return;
            }
            Request::Bundle { first: LogIndex(first), .. } => (first, 256),
            Request::Range { first: LogIndex(first), width, .. } => {
                self.narrow.fetch_add(1, Ordering::Relaxed);
                (first, u64::from(width))
            }
            _ => {
                let _ = send.write_all(&encode(&Response::NoCheckpoint)).await;
                let _ = send.finish();
                return;
            }
        };
        self.bundles.fetch_add(1, Ordering::Relaxed);
        let size = ledger.latest_checkpoint().unwrap().unwrap().size;
        let Some(count) = onoal_engine::replica::range_len(first, width, size) else { return };
        let proof = ledger.inclusion_proof(first, size).unwrap();
        let path =
            onoal_engine::replica::range_path_from_inclusion(first, width, size, &proof).unwrap();
        let head = encode(&Response::Bundle { count: count as u32, path });
        if send.write_all(&head).await.is_err() {
            return;
        }
        let junk = vec![0x5au8; FAT_FRAME];
        for _ in 0..count {
            if self.sent.load(Ordering::Relaxed) >= self.total {
                std::future::pending::<()>().await;
            }
            let mut out = Vec::with_capacity(FAT_FRAME + 4);
            proto::encode_frame(&junk, &mut out);
            if send.write_all(&out).await.is_err() {
                return;
            }
            let all = self.sent.fetch_add(out.len() as u64, Ordering::Relaxed) + out.len() as u64;
            let mine = on_conn.fetch_add(out.len() as u64, Ordering::Relaxed) + out.len() as u64;
            if self.per_connection.is_some_and(|cap| mine >= cap) {
                conn.close(quinn::VarInt::from_u32(9), b"relay hung up");
                return;
            }
            if let Some(rate) = self.rate {
                let due = Duration::from_secs_f64(all as f64 / rate as f64);
                tokio::time::sleep_until(tokio::time::Instant::from_std(self.epoch() + due)).await;
            }
        }
        let _ = send.finish();
    }

    /// When the relay's rate clock started (its first send).
    fn epoch(&self) -> Instant {
        *self.started.get_or_init(Instant::now)
    }
}

fn now_ms() -> u64 {
    onoal_engine::time::now_ms()
}

/// A ledger E for the relay to impersonate: 2,000 small entries and a checkpoint.
fn relayed_ledger(dir: &Path) -> (Arc<Ledger>, SecretKey, Node) {
    let ledger =
        Ledger::builder(dir).create(Oid::parse("oid:onoal:test:relayed").unwrap()).unwrap();
    for b in 0..2 {
        let batch =
            (0..1000).map(|i| entry("s0", format!("relayed {b} {i}").into_bytes())).collect();
        ledger.append_batch(batch).unwrap();
    }
    ledger.checkpoint_now().unwrap();
    let id = ledger.identity();
    let node = Node {
        id: id.ledger_id.to_string(),
        key: onoal_engine::hash::Hash(*id.public_key.as_bytes()).to_hex(),
    };
    let key = SecretKey::read_file(&key_path(dir)).unwrap();
    (Arc::new(ledger), key, node)
}

/// `onoal sync` against a relay that answers every bundle with 256 frames of 4 MiB: the
/// receiver reads at most its byte budget, asks narrower bundles, and fails with the relay's
/// violation recorded; its peak RSS stays bounded.
#[test]
fn fat_bundles_from_a_relay_do_not_grow_the_receiver() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, key, e) = relayed_ledger(&tmp.path().join("e"));
    let b_dir = tmp.path().join("b");
    init(&b_dir, "oid:onoal:test:receiver");
    let relay = Arc::new(FatRelay {
        ledger,
        key,
        per_connection: None,
        rate: None,
        total: if measure_only() { 3 << 30 } else { u64::MAX },
        sent: AtomicU64::new(0),
        bundles: AtomicU64::new(0),
        narrow: AtomicU64::new(0),
        started: OnceLock::new(),
    });
    let rt = runtime();
    let port = relay.start(&rt);
    pin(&b_dir, &e, port);
    let started = Instant::now();
    let (ok, stderr, peak) =
        run_sampled(onoal(&b_dir).args(["sync", &e.id]), Duration::from_secs(60));
    let took = started.elapsed();
    drop(rt);
    println!(
        "attack fat bundles (one sync): receiver peak RSS {peak} MiB (bound {RSS_BOUND_MIB}); \
         relay sent {} MiB in {} bundle answers ({} narrowed) before the receiver gave up after \
         {took:.1?}: {}",
        relay.sent.load(Ordering::Relaxed) >> 20,
        relay.bundles.load(Ordering::Relaxed),
        relay.narrow.load(Ordering::Relaxed),
        stderr.trim()
    );
    if measure_only() {
        return;
    }
    assert!(!ok, "the sync of junk succeeded");
    assert!(peak < RSS_BOUND_MIB, "the receiver grew to {peak} MiB");
    assert!(relay.narrow.load(Ordering::Relaxed) > 0, "the receiver never asked narrower bundles");
    assert!(stderr.contains("bad bundle"), "{stderr}");
    let peers = run_json(onoal(&b_dir).args(["peer", "list"]));
    let p = peers["peers"].as_array().unwrap().iter().find(|p| p["ledger_id"] == e.id).unwrap();
    assert!(!p["misbehaviour"].as_array().unwrap().is_empty(), "{p}");
}

/// A serving node that follows a ledger from a relay which answers bundles with fat frames and
/// hangs up after 48 MiB on each connection (so the follower reconnects and the attack goes
/// on): the node's RSS stays bounded and an honest peer's sync of its own ledger keeps at least
/// half its speed. The relay sends at most 64 MiB/s: this is a test of memory bounds, not of
/// bandwidth.
#[test]
fn fat_bundles_while_serving_an_honest_peer() {
    let _serial = serial();
    let t = template();
    let tmp = tempfile::tempdir().unwrap();
    let (ledger, key, e) = relayed_ledger(&tmp.path().join("e"));
    let b_dir = tmp.path().join("b");
    onoal_tests::copy_tree(&t.dir, &b_dir);
    let c_dir = tmp.path().join("c");
    let c = init(&c_dir, "oid:onoal:test:honest");
    pin(&b_dir, &c, 1);
    // Unattacked: B serves C.
    let serve = Serve::start(&b_dir, 0, &[]);
    pin(&c_dir, &t.node, serve.1);
    let honest_before = best_of_two(|| honest_sync(&c_dir, &t.node, t.size));
    let rss_before = peak_rss_mib(serve.pid());
    serve.stop();
    // Attacked: B follows E from the relay, on the same port for C.
    let relay = Arc::new(FatRelay {
        ledger,
        key,
        per_connection: Some(48 << 20),
        rate: Some(64 << 20),
        total: if measure_only() { 3 << 30 } else { u64::MAX },
        sent: AtomicU64::new(0),
        bundles: AtomicU64::new(0),
        narrow: AtomicU64::new(0),
        started: OnceLock::new(),
    });
    let rt = runtime();
    let relay_port = relay.start(&rt);
    pin(&b_dir, &e, relay_port);
    let follow = format!("{}@127.0.0.1:{relay_port}", e.id);
    let serve = Serve::start(&b_dir, 0, &[follow]);
    pin(&c_dir, &t.node, serve.1);
    std::thread::sleep(Duration::from_secs(1));
    let sent_before = relay.sent.load(Ordering::Relaxed);
    let honest_under_attack = best_of_two(|| honest_sync(&c_dir, &t.node, t.size));
    let sent_during = relay.sent.load(Ordering::Relaxed) - sent_before;
    let rss_under_attack = peak_rss_mib(serve.pid());
    drop(serve);
    drop(rt);
    let figures = Figures {
        attack: "fat bundles while serving",
        entries: t.size,
        rss_before,
        rss_under_attack,
        honest_before,
        honest_under_attack,
        seen: format!(
            "the relay sent {} MiB of junk during the honest syncs, {} MiB in all",
            sent_during >> 20,
            relay.sent.load(Ordering::Relaxed) >> 20
        ),
    };
    figures.check();
    if !measure_only() {
        assert!(sent_during > 0, "the attack did not run during the honest syncs");
    }
}

/// An honest sync of large entries (300 of 1 MB): neither the receiver nor the server holds
/// more than its byte budgets.
#[test]
fn large_entries_sync_in_bounded_memory() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let ledger =
        Ledger::builder(&a_dir).create(Oid::parse("oid:onoal:test:large").unwrap()).unwrap();
    for b in 0..30u64 {
        let batch = (0..10u64)
            .map(|i| {
                let mut p = vec![b'L'; BIG_BYTES];
                p[..8].copy_from_slice(&(b * 10 + i).to_be_bytes());
                entry("big", p)
            })
            .collect();
        ledger.append_batch(batch).unwrap();
    }
    ledger.checkpoint_now().unwrap();
    let id = ledger.identity();
    let a = Node {
        id: id.ledger_id.to_string(),
        key: onoal_engine::hash::Hash(*id.public_key.as_bytes()).to_hex(),
    };
    drop(ledger);
    let b_dir = tmp.path().join("b");
    let b = init(&b_dir, "oid:onoal:test:receiver");
    pin(&a_dir, &b, 1);
    let serve = Serve::start(&a_dir, 0, &[]);
    pin(&b_dir, &a, serve.1);
    let started = Instant::now();
    let (ok, stderr, receiver) =
        run_sampled(onoal(&b_dir).args(["sync", &a.id]), Duration::from_secs(120));
    let took = started.elapsed();
    let server = peak_rss_mib(serve.pid());
    println!(
        "large entries: 300 MB synced in {took:.1?}; peak RSS receiver {receiver} MiB, server \
         {server} MiB (bound {RSS_BOUND_MIB})"
    );
    assert!(ok, "{stderr}");
    if measure_only() {
        return;
    }
    assert!(receiver < RSS_BOUND_MIB, "the receiver grew to {receiver} MiB");
    assert!(server < RSS_BOUND_MIB, "the server grew to {server} MiB");
    let r = onoal_tests::node::replica(&b_dir, &a.id).unwrap();
    assert_eq!(r["tree_size"], 300);
}
