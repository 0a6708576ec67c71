//! A malicious source: a test peer in this process speaking the sync protocol over real QUIC,
//! serving a real ledger's data with one violation each. The receiver is a separate
//! `onoal sync` process: every violation is refused, nothing of it is written, and the reason
//! is recorded against the peer.

use std::path::Path;
use std::sync::Arc;

use onoal_engine::identity::{SecretKey, key_path};
use onoal_engine::replica::bundle_path_from_inclusion;
use onoal_engine::{Ledger, LogIndex, Query, TreeSize};
use onoal_mesh::proto::{self, LedgerCertificate, Request, Response};
use onoal_tests::{onoal, run_fail, run_json};

use crate::sync::{Node, init, pin, replica};
use crate::util::fill;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evil {
    /// One character of the checkpoint's signature changed.
    ForgedSignature,
    /// A validly signed checkpoint of another tree under the same key, with a proof that does
    /// not verify (and no checkpoint of the held size to prove a fork).
    BadConsistencyProof,
    /// A validly signed checkpoint that contradicts the held one: a fork.
    Fork,
    /// One changed byte in an entry of a bundle.
    BundleByte,
    /// A response frame announcing 100 MB.
    OversizeFrame,
    /// A response that does not decode.
    Garbage,
    /// A checkpoint signed by the right key for a root that is not the tree's; bundles then
    /// cannot match it.
    WrongRoot,
    /// A filtered sync answered with an entry the filter does not match.
    FilterLeak,
    /// A filtered sync answered with a proof that does not verify.
    FilterBadProof,
    /// Honest data, then a trust statement of the ledger whose level was raised after it was
    /// signed.
    ForgedStatement,
}

struct EvilSource {
    /// The honest ledger whose data is served (and whose key the evil node holds).
    honest: Arc<Ledger>,
    /// For Fork / BadConsistencyProof: a ledger with the same key and another history.
    other: Option<Arc<Ledger>>,
    key: SecretKey,
    mode: Evil,
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode_frame(body, &mut out);
    out
}

fn respond(src: &EvilSource, request: Request) -> Vec<u8> {
    let id = src.honest.identity().clone();
    let cert = LedgerCertificate::issue(&id, src.key.signing_key(), now_ms(), 3_600_000);
    let encode = |r: &Response| frame(&postcard::to_stdvec(r).unwrap());
    match request {
        Request::Hello { .. } => encode(&Response::Hello { certificate: cert }),
        Request::Certificate { .. } => encode(&Response::Certificate { certificate: cert }),
        Request::Checkpoint { have: TreeSize(have), .. }
        | Request::WaitCheckpoint { have: TreeSize(have), .. } => {
            let serving = match src.mode {
                Evil::Fork | Evil::BadConsistencyProof => src.other.as_ref().unwrap(),
                _ => &src.honest,
            };
            let cp = serving.latest_checkpoint().unwrap().unwrap();
            let consistency = if have == 0 || have >= cp.size {
                Vec::new()
            } else {
                serving.consistency_proof(have, cp.size).unwrap()
            };
            let mut note = cp.note.clone();
            match src.mode {
                Evil::ForgedSignature => {
                    // Change one base64 character of the signature line.
                    let sig_line = note.trim_end().rfind('\n').unwrap() + 1;
                    let pos = sig_line + note[sig_line..].find(' ').unwrap() + 10;
                    let c = note.as_bytes()[pos];
                    note.replace_range(pos..=pos, if c == b'A' { "B" } else { "A" });
                }
                Evil::OversizeFrame => return (100_000_000u32).to_be_bytes().to_vec(),
                Evil::Garbage => return frame(&[0xff, 0x13, 0x37, 0x00, 0x42, 0xee, 0xee]),
                Evil::WrongRoot => {
                    let mut c = cp.checkpoint.clone();
                    c.root.0[0] ^= 1;
                    let signer = onoal_engine::checkpoint::NoteSigner::new(
                        id.oid.as_str(),
                        src.key.signing_key().clone(),
                    )
                    .unwrap();
                    note = signer.sign(&c);
                }
                _ => {}
            }
            encode(&Response::Checkpoint { note, consistency })
        }
        Request::CheckpointAt { size: TreeSize(size), .. } => {
            let serving =
                if src.mode == Evil::Fork { src.other.as_ref().unwrap() } else { &src.honest };
            match serving.checkpoint_at(size).unwrap() {
                Some(cp) => {
                    encode(&Response::Checkpoint { note: cp.note, consistency: Vec::new() })
                }
                None => encode(&Response::NoCheckpoint),
            }
        }
        Request::Bundle { size: TreeSize(size), first: LogIndex(first), .. } => {
            let count = onoal_engine::replica::bundle_len(first, size).unwrap();
            let proof = src.honest.inclusion_proof(first, size).unwrap();
            let path = bundle_path_from_inclusion(first, size, &proof).unwrap();
            let mut leaves = src.honest.log().leaf_data_range(first, first + count).unwrap();
            if src.mode == Evil::BundleByte && first == 0 {
                let l = &mut leaves[100];
                let at = l.windows(7).position(|w| w == b"payload").unwrap();
                l[at] ^= 0x20;
            }
            let mut out = encode(&Response::Bundle { count: count as u32, path });
            for l in &leaves {
                out.extend_from_slice(&frame(l));
            }
            out
        }
        Request::Entries { size: TreeSize(size), filter, cursor: LogIndex(cursor), .. } => {
            let page = src.honest.query(&Query::from_seq(filter, cursor, 1000)).unwrap();
            let mut entries: Vec<proto::ProvenEntryWire> = page
                .entries
                .iter()
                .filter(|e| e.entry.seq < size)
                .map(|e| proto::ProvenEntryWire {
                    leaf_data: e.leaf_data.clone(),
                    proof: src.honest.inclusion_proof(e.entry.seq, size).unwrap(),
                })
                .collect();
            match src.mode {
                Evil::FilterLeak => {
                    let other = src.honest.entry(0).unwrap();
                    entries.insert(
                        0,
                        proto::ProvenEntryWire {
                            leaf_data: other.leaf_data,
                            proof: src.honest.inclusion_proof(0, size).unwrap(),
                        },
                    );
                }
                Evil::FilterBadProof => entries[0].proof[0].0[5] ^= 1,
                _ => {}
            }
            encode(&Response::Entries { entries, next_cursor: None })
        }
        Request::Trust { ledger } if src.mode == Evil::ForgedStatement => {
            let mut st = onoal_mesh::trust::TrustStatement::sign(
                src.key.signing_key(),
                ledger,
                forged_subject(),
                0.3,
                "",
                now_ms(),
                Some(now_ms() + 3_600_000),
            )
            .unwrap();
            st.level = 0.99;
            let statements = postcard::to_stdvec(&vec![st]).unwrap();
            encode(&Response::Trust { policy: Vec::new(), statements })
        }
        _ => encode(&Response::NoCheckpoint),
    }
}

/// Whom the forged statement is about.
fn forged_subject() -> onoal_engine::LedgerId {
    onoal_engine::LedgerId::from_bytes([0x5a; 16])
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Runs the evil source on a free port until the returned runtime is dropped.
fn start(src: EvilSource) -> (tokio::runtime::Runtime, u16) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let server = onoal_mesh::tls::server_config(&src.key, &[proto::ALPN_SYNC]).unwrap();
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(server).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(server));
    let src = Arc::new(src);
    let _guard = rt.enter();
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let port = endpoint.local_addr().unwrap().port();
    rt.spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let src = src.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let src = src.clone();
                    tokio::spawn(async move {
                        let mut header = [0u8; 4];
                        if recv.read_exact(&mut header).await.is_err() {
                            return;
                        }
                        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
                        if recv.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        let request: Request = postcard::from_bytes(&body).unwrap();
                        let out = respond(&src, request);
                        let _ = send.write_all(&out).await;
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    });
                }
            });
        }
    });
    (rt, port)
}

/// Honest history: 300 entries (checkpoint 300), then 100 more (checkpoint 400).
/// Other history (same key): the first 200 entries, then 200 others (checkpoints 300, 400).
struct Histories {
    _tmp: tempfile::TempDir,
    honest_dir: std::path::PathBuf,
    honest: Arc<Ledger>,
    other: Arc<Ledger>,
}

fn histories() -> Histories {
    let tmp = tempfile::tempdir().unwrap();
    let (honest_dir, other_dir) = (tmp.path().join("honest"), tmp.path().join("other"));
    let honest = crate::util::create(&honest_dir);
    fill(&honest, 200, 200);
    drop(honest);
    onoal_tests::copy_tree(&honest_dir, &other_dir);
    let honest = Ledger::builder(&honest_dir).open().unwrap();
    fill(&honest, 100, 100);
    honest.checkpoint_now().unwrap();
    let other = Ledger::builder(&other_dir).open().unwrap();
    for i in 0..2 {
        let v =
            (0..100).map(|j| crate::util::entry("evil", "t", format!("other {i} {j}"))).collect();
        other.append_batch(v).unwrap();
        other.checkpoint_now().unwrap();
    }
    Histories { _tmp: tmp, honest_dir, honest: Arc::new(honest), other: Arc::new(other) }
}

fn case(mode: Evil, expect: &str, kind: &str) {
    let h = histories();
    let (_tmp, b_dir, a, key) = receiver(&h);

    // Cases that contradict a held checkpoint first sync honestly to 300.
    if matches!(mode, Evil::Fork | Evil::BadConsistencyProof) {
        hold_honest_300(&h, &b_dir);
    }
    let held_before = replica(&b_dir, &a.id).and_then(|r| r["tree_size"].as_u64()).unwrap_or(0);
    let cp_before = replica(&b_dir, &a.id).and_then(|r| r["checkpoint_size"].as_u64());

    let (rt, port) =
        start(EvilSource { honest: h.honest.clone(), other: Some(h.other.clone()), key, mode });
    pin(&b_dir, &a, port);
    let filtered = matches!(mode, Evil::FilterLeak | Evil::FilterBadProof);
    let mut cmd = onoal(&b_dir);
    cmd.args(["sync", &a.id]);
    if filtered {
        cmd.args(["--stream", "b"]);
    }
    let err = run_fail(&mut cmd);
    drop(rt);
    assert!(err.contains(expect), "{mode:?}: stderr was {err}");

    // Nothing of the violation was written.
    let after = replica(&b_dir, &a.id);
    assert_eq!(
        after.as_ref().and_then(|r| r["tree_size"].as_u64()).unwrap_or(0),
        held_before,
        "{mode:?}"
    );
    if mode != Evil::Fork {
        let cp_after = after.as_ref().and_then(|r| r["checkpoint_size"].as_u64()).unwrap_or(0);
        assert_eq!(cp_after, cp_before.unwrap_or(0), "{mode:?}");
    }
    if held_before > 0 && mode == Evil::Fork {
        // The held entries are intact, but the ledger they copy signed two histories.
        let err = run_fail(onoal(&b_dir).args(["verify", "--ledger", &a.id]));
        assert!(err.contains("forked"), "{err}");
    } else if held_before > 0 {
        assert_eq!(run_json(onoal(&b_dir).args(["verify", "--ledger", &a.id]))["ok"], true);
    }
    // The reason is recorded against the peer.
    let peers = run_json(onoal(&b_dir).args(["peer", "list"]));
    let p = peers["peers"].as_array().unwrap().iter().find(|p| p["ledger_id"] == a.id).unwrap();
    let kinds: Vec<&str> =
        p["misbehaviour"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&kind), "{mode:?}: recorded {kinds:?}");
    // And it costs the peer trust: a proven lie (a forged signature, a fork) everything, any
    // other violation its penalty from wherever verified syncs had put it.
    let t = run_json(onoal(&b_dir).args(["trust", "show", &a.id]));
    let level = t["direct_level"].as_f64().unwrap_or_else(|| panic!("{mode:?}: no row: {t}"));
    if matches!(mode, Evil::ForgedSignature | Evil::Fork) {
        assert_eq!(level, 0.0, "{mode:?}: {t}");
    } else {
        assert!(level > 0.0 && level < 0.5, "{mode:?}: {t}");
    }
    assert!(t["failed_interactions"].as_u64().unwrap() >= 1, "{mode:?}: {t}");
    if mode == Evil::Fork {
        let forks = run_json(onoal(&b_dir).arg("forks"));
        let f = &forks["forks"][0];
        assert_eq!(f["ledger_id"], a.id);
        assert_eq!(
            f["held_checkpoint"].as_str().unwrap(),
            h.honest.checkpoint_at(300).unwrap().unwrap().note
        );
        assert_eq!(
            f["received_checkpoint"].as_str().unwrap(),
            h.other.checkpoint_at(300).unwrap().unwrap().note
        );
        // Syncing this ledger stops until the operator acts.
        let err = run_fail(onoal(&b_dir).args(["sync", &a.id]));
        assert!(err.contains("forked"), "{err}");
    }
}

/// A fresh receiver B (its directory lives as long as the returned temporary directory), the
/// honest ledger A as B pins it, and A's key (the evil source holds it).
fn receiver(h: &Histories) -> (tempfile::TempDir, std::path::PathBuf, Node, SecretKey) {
    let tmp = tempfile::tempdir().unwrap();
    let b_dir = tmp.path().join("b");
    init(&b_dir, "oid:onoal:test:b");
    let a = Node {
        id: h.honest.identity().ledger_id.to_string(),
        key: onoal_engine::hash::Hash(*h.honest.identity().public_key.as_bytes()).to_hex(),
    };
    let key = SecretKey::read_file(&key_path(&h.honest_dir)).unwrap();
    (tmp, b_dir, a, key)
}

/// Puts the honest 300-entry state into `b_dir`'s replica through the engine (B is not
/// running): verified bundles against the honest checkpoint of 300.
fn hold_honest_300(h: &Histories, b_dir: &Path) {
    let cp300 = h.honest.checkpoint_at(300).unwrap().unwrap();
    let b_ledger = Ledger::builder(b_dir).open().unwrap();
    let mut w = b_ledger.replica_writer(h.honest.identity()).unwrap();
    w.accept_checkpoint(&cp300.note, &[]).unwrap();
    for first in [0u64, 256] {
        let count = onoal_engine::replica::bundle_len(first, 300).unwrap();
        let proof = h.honest.inclusion_proof(first, 300).unwrap();
        let path = bundle_path_from_inclusion(first, 300, &proof).unwrap();
        let leaves = h.honest.log().leaf_data_range(first, first + count).unwrap();
        w.commit(onoal_engine::replica::verify_bundle(&cp300, first, leaves, &path).unwrap())
            .unwrap();
    }
}

#[test]
fn a_full_sync_replaces_the_replica_only_once_the_new_data_verified() {
    let h = histories();
    let tmp = tempfile::tempdir().unwrap();
    let b_dir = tmp.path().join("b");
    init(&b_dir, "oid:onoal:test:b");
    hold_honest_300(&h, &b_dir);
    let a = Node {
        id: h.honest.identity().ledger_id.to_string(),
        key: onoal_engine::hash::Hash(*h.honest.identity().public_key.as_bytes()).to_hex(),
    };
    let key = SecretKey::read_file(&key_path(&h.honest_dir)).unwrap();
    let (rt, port) =
        start(EvilSource { honest: h.honest.clone(), other: None, key, mode: Evil::BundleByte });
    pin(&b_dir, &a, port);
    let err = run_fail(onoal(&b_dir).args(["sync", &a.id, "--mode", "full"]));
    drop(rt);
    assert!(err.contains("bad bundle"), "{err}");
    // The replica is as it was, and still verifies.
    let r = replica(&b_dir, &a.id).unwrap();
    assert_eq!(
        (r["tree_size"].as_u64(), r["checkpoint_size"].as_u64()),
        (Some(300), Some(300)),
        "{r}"
    );
    assert_eq!(run_json(onoal(&b_dir).args(["verify", "--ledger", &a.id]))["ok"], true);
}

#[test]
fn forged_checkpoint_signature_is_refused() {
    case(Evil::ForgedSignature, "bad signature", "bad_signature");
}

#[test]
fn consistency_proof_that_does_not_verify_is_refused() {
    case(Evil::BadConsistencyProof, "inconsistent checkpoint", "inconsistent_checkpoint");
}

#[test]
fn fork_is_kept_as_evidence_and_stops_syncing() {
    case(Evil::Fork, "fork", "fork");
}

#[test]
fn changed_byte_in_a_bundle_is_refused() {
    case(Evil::BundleByte, "bad bundle", "bad_bundle");
}

#[test]
fn oversize_frame_is_refused_before_allocating() {
    case(Evil::OversizeFrame, "frame of 100000000 bytes", "oversize_frame");
}

#[test]
fn garbage_frame_is_refused() {
    case(Evil::Garbage, "undecodable response", "protocol_violation");
}

#[test]
fn validly_signed_wrong_root_is_caught_by_the_bundles() {
    case(Evil::WrongRoot, "bad bundle", "bad_bundle");
}

#[test]
fn filtered_sync_refuses_entries_outside_the_filter() {
    case(Evil::FilterLeak, "outside the filter", "protocol_violation");
}

#[test]
fn filtered_sync_refuses_a_bad_inclusion_proof() {
    case(Evil::FilterBadProof, "bad bundle", "bad_bundle");
}

#[test]
fn a_forged_trust_statement_is_refused_recorded_and_not_kept() {
    let h = histories();
    let (_tmp, b_dir, a, key) = receiver(&h);
    let mode = Evil::ForgedStatement;
    let (rt, port) = start(EvilSource { honest: h.honest.clone(), other: None, key, mode });
    pin(&b_dir, &a, port);
    // The data is honest and verified; the trust exchange after it is not.
    let s = run_json(onoal(&b_dir).args(["sync", &a.id]));
    let size = h.honest.latest_checkpoint().unwrap().unwrap().size;
    assert_eq!((s["to_size"].as_u64(), s["verified"].as_bool()), (Some(size), Some(true)));
    drop(rt);
    let peers = run_json(onoal(&b_dir).args(["peer", "list"]));
    let p = peers["peers"].as_array().unwrap().iter().find(|p| p["ledger_id"] == a.id).unwrap();
    let kinds: Vec<&str> =
        p["misbehaviour"].as_array().unwrap().iter().map(|m| m["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["bad_trust_data"], "{p}");
    // Not kept: A's view of the subject is unknown here, and A paid the severe penalty.
    let subject = forged_subject().to_string();
    let path = run_json(onoal(&b_dir).args(["trust", "path", &a.id, &subject]));
    assert_eq!((path["level"].as_f64(), path["kind"].as_str()), (Some(0.0), Some("none")));
    let t = run_json(onoal(&b_dir).args(["trust", "show", &a.id]));
    let level = t["direct_level"].as_f64().unwrap();
    assert!(level < 0.3, "a verified sync (+0.01) and a severe penalty (-0.3): {t}");
}

#[test]
fn a_client_sending_an_oversize_request_is_cut_off_and_recorded() {
    use crate::sync::Serve;
    let tmp = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = init(&a_dir, "oid:onoal:test:a");
    let b = init(&b_dir, "oid:onoal:test:b");
    crate::sync::import(&a_dir, 0, 300);
    pin(&a_dir, &b, 1);
    let serve = Serve::start(&a_dir, 0, &[]);
    let port = serve.1;
    pin(&b_dir, &a, port);
    // B's key, speaking QUIC directly: a request frame announcing 1 MB (under the 4 MiB response cap, far over the request cap).
    let key = SecretKey::read_file(&key_path(&b_dir)).unwrap();
    let a_key =
        ed25519_dalek::VerifyingKey::from_bytes(&hex::decode(&a.key).unwrap().try_into().unwrap())
            .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answered = rt.block_on(async {
        let (client, _) = onoal_mesh::tls::client_config(&key, a_key, &[proto::ALPN_SYNC]).unwrap();
        let client = quinn::crypto::rustls::QuicClientConfig::try_from(client).unwrap();
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = ep
            .connect_with(
                quinn::ClientConfig::new(Arc::new(client)),
                format!("127.0.0.1:{port}").parse().unwrap(),
                "onoal",
            )
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&1_000_000u32.to_be_bytes()).await.unwrap();
        let _ = send.write_all(&[0u8; 1024]).await;
        let _ = send.finish();
        let mut buf = Vec::new();
        let got =
            tokio::time::timeout(std::time::Duration::from_secs(5), recv.read_to_end(1 << 20))
                .await;
        if let Ok(Ok(b)) = got {
            buf = b;
        }
        conn.close(0u32.into(), b"");
        !buf.is_empty()
    });
    assert!(!answered, "the server answered an oversize request");
    // Recorded against B in A's peer table (read while A runs; the server records it after it
    // cut the stream, so a loaded machine may take a moment).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let p = loop {
        let peers = run_json(onoal(&a_dir).args(["peer", "list"]));
        let p = peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["ledger_id"] == b.id)
            .unwrap()
            .clone();
        if !p["misbehaviour"][0]["kind"].is_null() || std::time::Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(p["misbehaviour"][0]["kind"], "oversize_frame", "{p}");
    // The node still serves B's honest sync.
    let s = run_json(onoal(&b_dir).args(["sync", &a.id]));
    assert_eq!(s["to_size"], 300);
    serve.stop();
}
