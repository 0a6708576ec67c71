//! No request without a deadline: peers that never answer, nothing listening, a socket that
//! swallows datagrams, one that answers garbage. `onoal sync` ends within its `--timeout` with a
//! one-line error (naming the request that timed out), records a silent peer, and exits
//! non-zero. And a follower waiting for a checkpoint costs its source no CPU.

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onoal_engine::identity::{SecretKey, key_path};
use onoal_mesh::proto::{self, LedgerCertificate, Request, Response};
use onoal_tests::{onoal, run, run_json};

use crate::sync::{Node, Serve, import, init, pin};

/// The deadline these tests give `onoal sync` (the default is 10 s).
const TIMEOUT: &str = "2";

/// Runs `onoal sync` of `node` with the test deadline; returns its output and how long it took.
fn sync_with_deadline(dir: &Path, node: &Node) -> (Output, Duration) {
    let started = Instant::now();
    let out = run(onoal(dir).args(["sync", &node.id, "--timeout", TIMEOUT]));
    (out, started.elapsed())
}

/// Asserts a failure within the deadline (plus slack for process start, far below the 10 s
/// default), with one line on stderr containing `expect`.
fn assert_failed_in_time(out: &Output, took: Duration, expect: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sync succeeded against a peer that cannot answer");
    assert!(
        took < Duration::from_secs(9),
        "took {took:?}: the --timeout of {TIMEOUT} s was not kept"
    );
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(err.contains(expect), "stderr: {err}");
}

/// A QUIC endpoint with `key` that answers `Hello` and then never answers anything else (its
/// streams stay open). Runs until the runtime is dropped.
fn start_silent(key: SecretKey, certificate: LedgerCertificate) -> (tokio::runtime::Runtime, u16) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = onoal_mesh::tls::server_config(&key, &[proto::ALPN_SYNC]).unwrap();
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server).unwrap();
    let _guard = rt.enter();
    let endpoint = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(server)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let port = endpoint.local_addr().unwrap().port();
    rt.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let certificate = certificate.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let mut held = Vec::new();
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let mut header = [0u8; 4];
                    if recv.read_exact(&mut header).await.is_err() {
                        continue;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
                    if recv.read_exact(&mut body).await.is_err() {
                        continue;
                    }
                    if let Ok(Request::Hello { .. }) = postcard::from_bytes::<Request>(&body) {
                        let r = postcard::to_stdvec(&Response::Hello {
                            certificate: certificate.clone(),
                        })
                        .unwrap();
                        let mut out = Vec::new();
                        proto::encode_frame(&r, &mut out);
                        let _ = send.write_all(&out).await;
                        let _ = send.finish();
                    } else {
                        // Accepted, read, and never answered.
                        held.push((send, recv));
                    }
                }
            });
        }
    });
    (rt, port)
}

#[test]
fn a_peer_that_never_answers_costs_the_deadline_and_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = init(&a_dir, "oid:onoal:test:a");
    init(&b_dir, "oid:onoal:test:b");
    let key = SecretKey::read_file(&key_path(&a_dir)).unwrap();
    let identity =
        onoal_engine::Ledger::builder(&a_dir).open_read_only().unwrap().identity().clone();
    let cert = LedgerCertificate::issue(&identity, key.signing_key(), now_ms(), 3_600_000);
    let (rt, port) = start_silent(key, cert);
    pin(&b_dir, &a, port);

    let (out, took) = sync_with_deadline(&b_dir, &a);
    drop(rt);
    assert_failed_in_time(&out, took, "did not answer the Checkpoint request within 2 s");
    // Recorded against the silent peer.
    let peers = run_json(onoal(&b_dir).args(["peer", "list"]));
    let p = peers["peers"].as_array().unwrap().iter().find(|p| p["ledger_id"] == a.id).unwrap();
    assert_eq!(p["misbehaviour"][0]["kind"], "timeout", "{p}");
    // The replica's sync state says what happened.
    let r = crate::sync::replica(&b_dir, &a.id).unwrap();
    assert_eq!(r["status"], "failed");
    assert!(r["last_error"].as_str().unwrap().contains("Checkpoint request"), "{r}");
}

#[test]
fn nothing_listening_a_datagram_sink_and_a_garbage_answerer_each_end_within_the_deadline() {
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = init(&a_dir, "oid:onoal:test:a");
    init(&b_dir, "oid:onoal:test:b");

    // Nothing listens: a port that was free a moment ago.
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    pin(&b_dir, &a, port);
    let (out, took) = sync_with_deadline(&b_dir, &a);
    assert_failed_in_time(&out, took, "no QUIC handshake within 2 s");

    // A socket that takes every datagram and never answers.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    pin(&b_dir, &a, sink.local_addr().unwrap().port());
    let (out, took) = sync_with_deadline(&b_dir, &a);
    assert_failed_in_time(&out, took, "no QUIC handshake within 2 s");
    drop(sink);

    // A socket that answers every datagram with garbage.
    let garbage = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = garbage.local_addr().unwrap().port();
    garbage.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answerer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = garbage.recv_from(&mut buf) {
                    let junk: Vec<u8> = buf[..n].iter().map(|b| b ^ 0x5a).collect();
                    let _ = garbage.send_to(&junk, from);
                    answered += 1;
                }
            }
            answered
        })
    };
    pin(&b_dir, &a, port);
    let (out, took) = sync_with_deadline(&b_dir, &a);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(answerer.join().unwrap() > 0, "the garbage answerer saw no datagram");
    assert_failed_in_time(&out, took, "no QUIC handshake within 2 s");
}

/// Ten followers long-polling a source that appends nothing: the source's CPU time over 10 s
/// (read from /proc) is reported, and must be far from the ~200 storage reads and signature
/// checks per second per follower that polling cost.
#[test]
fn idle_followers_cost_their_source_no_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let a = init(&a_dir, "oid:onoal:test:a");
    import(&a_dir, 0, 300);
    let followers: Vec<(std::path::PathBuf, Node)> = (0..10)
        .map(|i| {
            let dir = tmp.path().join(format!("f{i}"));
            let n = init(&dir, &format!("oid:onoal:test:f{i}"));
            pin(&a_dir, &n, 1);
            (dir, n)
        })
        .collect();
    let serve = Serve::start(&a_dir, 0, &[]);
    let spec = format!("{}@127.0.0.1:{}", a.id, serve.1);
    let nodes: Vec<Serve> = followers
        .iter()
        .map(|(dir, _)| {
            pin(dir, &a, serve.1);
            Serve::start(dir, 0, std::slice::from_ref(&spec))
        })
        .collect();
    // Every follower holds the 300 entries (then it long-polls).
    let deadline = Instant::now() + Duration::from_secs(60);
    for (dir, _) in &followers {
        while crate::sync::replica(dir, &a.id).and_then(|r| r["tree_size"].as_u64()) != Some(300) {
            assert!(Instant::now() < deadline, "a follower did not sync");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_ticks(serve.pid());
    std::thread::sleep(Duration::from_secs(10));
    let used = cpu_ticks(serve.pid()) - before;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let cpu_ms = used as f64 * 1000.0 / ticks_per_s;
    eprintln!(
        "idle_followers: the source used {cpu_ms:.0} ms of CPU in 10 s with 10 followers waiting"
    );
    assert!(cpu_ms < 1000.0, "{cpu_ms} ms of CPU in 10 s idle");
    drop(nodes);
    serve.stop();
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
