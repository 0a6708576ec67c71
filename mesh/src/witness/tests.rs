use std::convert::Infallible;

use ed25519_dalek::SigningKey;

use onoal_engine::checkpoint::{Checkpoint, NoteSigner};
use onoal_engine::cosignature::CosignatureVerifier;
use onoal_engine::hash::{leaf_hash, node_hash};
use onoal_engine::merkle::{self, NodeId};

use super::*;

const ORIGIN: &str = "oid:onoal:org:log";

/// A log history: leaves tagged by `history`, so two histories share no leaf.
struct History {
    leaves: Vec<Hash>,
}

impl History {
    fn new(history: u8, n: u64) -> Self {
        Self { leaves: (0..n).map(|i| leaf_hash(&[history, i as u8, (i >> 8) as u8])).collect() }
    }

    fn node(&self, id: NodeId) -> Hash {
        if id.level == 0 {
            return self.leaves[id.index as usize];
        }
        let l = self.node(NodeId::new(id.level - 1, id.index * 2));
        let r = self.node(NodeId::new(id.level - 1, id.index * 2 + 1));
        node_hash(&l, &r)
    }

    fn root(&self, size: u64) -> Hash {
        let mut f = |id| Ok::<_, Infallible>(self.node(id));
        merkle::root(size, &mut f).unwrap()
    }

    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        let mut f = |id| Ok::<_, Infallible>(self.node(id));
        merkle::consistency_proof(old, new, &mut f).unwrap().unwrap()
    }
}

fn log_signer() -> NoteSigner {
    NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[1; 32])).unwrap()
}

fn witness() -> Cosigner {
    Cosigner::new("oid:onoal:org:w/witness", SigningKey::from_bytes(&[2; 32])).unwrap()
}

fn note(h: &History, size: u64) -> String {
    log_signer().sign(&Checkpoint {
        origin: ORIGIN.into(),
        size,
        root: h.root(size),
        extensions: vec![],
    })
}

fn request(h: &History, old: u64, size: u64) -> AddCheckpoint {
    let proof = if old == 0 || old == size { vec![] } else { h.proof(old, size) };
    AddCheckpoint { old, proof, old_root: None, note: note(h, size) }
}

fn cosigned(v: Verdict) -> (WitnessedLog, String) {
    match v {
        Verdict::Cosign { state, line } => (state, line),
        other => panic!("not cosigned: {other:?}"),
    }
}

fn status(v: &Verdict) -> u16 {
    match v {
        Verdict::Cosign { .. } => 200,
        Verdict::Conflict { .. } => 409,
        Verdict::Refused { status, .. } => *status,
    }
}

#[test]
fn cosigns_a_growing_log_and_the_line_verifies() {
    let (h, key, w) = (History::new(0, 300), log_signer().verifier().clone(), witness());
    let (s1, line) = cosigned(decide(&request(&h, 0, 10), Some(&key), None, &w, 5_000));
    assert_eq!((s1.size, s1.root), (10, h.root(10)));
    let v = CosignatureVerifier::from_vkey(&w.verifier().to_vkey()).unwrap();
    let (body, _) = split_note(&s1.note).unwrap();
    assert_eq!(v.verify_line(body, &line), Ok(Some(5)));
    // The stored note opens with the log's key and carries the line.
    assert!(key.open(s1.note.as_bytes()).is_ok());
    assert_eq!(v.verify_note(&s1.note), Ok(Some(5)));
    let (s2, _) = cosigned(decide(&request(&h, 10, 300), Some(&key), Some(&s1), &w, 6_000));
    assert_eq!(s2.size, 300);
    // The same checkpoint again is cosigned again (old = size, roots equal).
    let (s3, _) = cosigned(decide(&request(&h, 300, 300), Some(&key), Some(&s2), &w, 7_000));
    assert_eq!(s3.root, s2.root);
}

#[test]
fn the_specs_refusals_in_order() {
    let (h, key, w) = (History::new(0, 20), log_signer().verifier().clone(), witness());
    let (held, _) = cosigned(decide(&request(&h, 0, 10), Some(&key), None, &w, 1));
    // Unknown log: 404.
    assert_eq!(status(&decide(&request(&h, 10, 12), None, Some(&held), &w, 2)), 404);
    // Signed by another key: 403.
    let other = NoteSigner::new(ORIGIN, SigningKey::from_bytes(&[9; 32])).unwrap();
    let mut forged = request(&h, 10, 12);
    forged.note = other.sign(&Checkpoint {
        origin: ORIGIN.into(),
        size: 12,
        root: h.root(12),
        extensions: vec![],
    });
    assert_eq!(status(&decide(&forged, Some(&key), Some(&held), &w, 2)), 403);
    // A changed note (the signature no longer covers it): 403.
    let mut changed = request(&h, 10, 12);
    changed.note = changed.note.replacen("\n12\n", "\n13\n", 1);
    assert_eq!(status(&decide(&changed, Some(&key), Some(&held), &w, 2)), 403);
    // Old above the size: 400.
    let mut above = request(&h, 10, 12);
    above.old = 13;
    assert_eq!(status(&decide(&above, Some(&key), Some(&held), &w, 2)), 400);
    // A stale or unknown old size: 409 with the witness's size.
    assert_eq!(
        decide(&request(&h, 0, 12), Some(&key), Some(&held), &w, 2),
        Verdict::Conflict { size: 10 }
    );
    assert_eq!(decide(&request(&h, 5, 12), Some(&key), None, &w, 2), Verdict::Conflict { size: 0 });
    // A bad proof: 422, never cosigned.
    let mut bad = request(&h, 10, 12);
    bad.proof[0] = Hash([0; 32]);
    assert_eq!(status(&decide(&bad, Some(&key), Some(&held), &w, 2)), 422);
    // Old 0 with a proof: 422.
    let mut extra = request(&h, 0, 12);
    extra.proof = h.proof(10, 12);
    assert_eq!(status(&decide(&extra, Some(&key), None, &w, 2)), 422);
    // Size 0 with another root than the empty tree's: 422.
    let zero = AddCheckpoint {
        old: 0,
        proof: vec![],
        old_root: None,
        note: log_signer().sign(&Checkpoint {
            origin: ORIGIN.into(),
            size: 0,
            root: Hash([5; 32]),
            extensions: vec![],
        }),
    };
    assert_eq!(status(&decide(&zero, Some(&key), None, &w, 2)), 422);
}

#[test]
fn a_split_view_is_refused_with_evidence_anyone_can_check() {
    let key = log_signer().verifier().clone();
    let w = witness();
    let (a, b) = (History::new(1, 40), History::new(2, 40));
    let (held, _) = cosigned(decide(&request(&a, 0, 16), Some(&key), None, &w, 1));

    // Same size, other root: proven by the two notes alone.
    let Verdict::Refused { status: 422, evidence: Some(e), .. } =
        decide(&request(&b, 16, 16), Some(&key), Some(&held), &w, 2)
    else {
        panic!("not refused with evidence")
    };
    assert!(e.proven);
    assert!(e.check(&key).unwrap().contains("different roots"), "{e:?}");

    // A larger size of the other history, the log's proof from its own tree: refused; with
    // the log's root at 16 (the mesh request) the evidence is proven.
    let mut req =
        AddCheckpoint { old: 16, proof: b.proof(16, 40), old_root: None, note: note(&b, 40) };
    let Verdict::Refused { status: 422, evidence: Some(unproven), .. } =
        decide(&req, Some(&key), Some(&held), &w, 3)
    else {
        panic!("not refused")
    };
    assert!(!unproven.proven);
    assert!(unproven.check(&key).is_err());
    req.old_root = Some(b.root(16));
    let Verdict::Refused { status: 422, evidence: Some(proven), .. } =
        decide(&req, Some(&key), Some(&held), &w, 3)
    else {
        panic!("not refused")
    };
    assert!(proven.proven);
    assert!(proven.check(&key).is_ok(), "{proven:?}");
    // Evidence cannot be made up from two consistent checkpoints of an honest log.
    let honest = SplitEvidence {
        held: note(&a, 16),
        received: note(&a, 40),
        proof: Some(SplitProof {
            old_size: 16,
            old_root: Hash([3; 32]),
            new_size: 40,
            consistency: a.proof(16, 40),
        }),
        ..proven.clone()
    };
    assert!(honest.check(&key).is_err());
    let same = SplitEvidence { received: note(&a, 16), proof: None, ..proven };
    assert!(same.check(&key).is_err());
}

#[test]
fn request_bodies_parse_as_c2sp_writes_them() {
    let h = History::new(0, 20);
    let req = request(&h, 10, 20);
    let text = req.to_text();
    assert!(text.starts_with("old 10\n"));
    assert_eq!(AddCheckpoint::parse(text.as_bytes()).unwrap(), req);
    let zero = request(&h, 0, 20);
    assert_eq!(AddCheckpoint::parse(zero.to_text().as_bytes()).unwrap(), zero);
    let n = note(&h, 20);
    for bad in [
        String::new(),
        format!("old 010\n\n{n}"),
        format!("old -1\n\n{n}"),
        format!("old 1\nnot-a-hash\n\n{n}"),
        format!("new 1\n\n{n}"),
        format!("old 1\n{n}"),
        format!("old 1\n{}\n{n}", format!("{}\n", Hash([0; 32]).to_base64()).repeat(64)),
    ] {
        assert!(AddCheckpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert!(AddCheckpoint::parse(&[0xff, 0xfe]).is_err());
}

/// At scale, sans I/O: 60 logs (every third shows two histories under one key), 12 witnesses
/// with persisted state, logs submitting in a random order, and answers lost after the state
/// was persisted (a witness crashed before answering; the log never learns the size). No
/// witness ever holds (or cosigns) a checkpoint of the second history after one of the first,
/// and every two-faced log that asked a witness for both histories is caught with proven
/// evidence.
#[test]
fn many_logs_and_witnesses_in_random_order_never_cosign_two_histories() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    const LOGS: usize = 60;
    const WITNESSES: usize = 12;
    let witnesses: Vec<Cosigner> = (0..WITNESSES)
        .map(|i| {
            Cosigner::new(&format!("w{i}"), SigningKey::from_bytes(&[100 + i as u8; 32])).unwrap()
        })
        .collect();
    struct Log {
        origin: String,
        signer: NoteSigner,
        histories: Vec<History>,
        /// Per witness: the size the log believes it holds.
        known: Vec<u64>,
        /// Per witness: which history it last sent.
        sent: Vec<Option<usize>>,
    }
    let mut logs: Vec<Log> = (0..LOGS)
        .map(|i| {
            let origin = format!("oid:onoal:sim:l{i}");
            let signer =
                NoteSigner::new(&origin, SigningKey::from_bytes(&[(i % 250) as u8 + 1; 32]))
                    .unwrap();
            let two_faced = i % 3 == 0;
            let histories = (0..if two_faced { 2 } else { 1 })
                .map(|h| History::new((i * 2 + h) as u8, 64))
                .collect();
            Log {
                origin,
                signer,
                histories,
                known: vec![0; WITNESSES],
                sent: vec![None; WITNESSES],
            }
        })
        .collect();
    // Persisted witness state per (witness, log): (size, root, history) — the history tag only
    // for the assertions.
    let mut held: Vec<Vec<Option<(WitnessedLog, usize)>>> = vec![vec![None; LOGS]; WITNESSES];
    let mut caught = vec![vec![false; LOGS]; WITNESSES];
    let mut size = vec![1u64; LOGS];
    for _ in 0..20_000 {
        let (l, w) = (next(LOGS as u64) as usize, next(WITNESSES as u64) as usize);
        let log = &mut logs[l];
        size[l] = (size[l] + next(3)).min(64);
        let h = next(log.histories.len() as u64) as usize;
        let hist = &log.histories[h];
        let s = size[l].max(log.known[w]);
        let old = log.known[w];
        let note = log.signer.sign(&Checkpoint {
            origin: log.origin.clone(),
            size: s,
            root: hist.root(s),
            extensions: vec![],
        });
        let request = AddCheckpoint {
            old,
            proof: if old == 0 || old == s { vec![] } else { hist.proof(old, s) },
            old_root: (old > 0).then(|| hist.root(old)),
            note,
        };
        let key = log.signer.verifier().clone();
        let state = held[w][l].as_ref().map(|(s, _)| s.clone());
        match decide(&request, Some(&key), state.as_ref(), &witnesses[w], 1_000) {
            Verdict::Cosign { state: new, line } => {
                if let Some((old_state, old_h)) = &held[w][l] {
                    assert_eq!(
                        *old_h, h,
                        "witness {w} cosigned history {h} of log {l} after history {old_h} (sizes {} -> {})",
                        old_state.size, new.size
                    );
                    assert!(new.size >= old_state.size, "a witness went back in size");
                }
                held[w][l] = Some((new.clone(), h));
                // One answer in ten is lost after the state was persisted (a crash).
                if next(10) != 0 {
                    log.known[w] = new.size;
                    let v = witnesses[w].verifier();
                    let (body, _) = split_note(&request.note).unwrap();
                    assert!(matches!(v.verify_line(body, &line), Ok(Some(_))));
                }
                log.sent[w] = Some(h);
            }
            Verdict::Conflict { size } => log.known[w] = size,
            Verdict::Refused { status, evidence, .. } => {
                assert_eq!(status, 422, "an honest request refused");
                let e = evidence.expect("a refusal after a cosignature carries evidence");
                assert!(e.proven, "the log sent its own root: proven");
                assert!(e.check(&key).is_ok());
                assert_ne!(held[w][l].as_ref().map(|(_, hh)| *hh), Some(h));
                caught[w][l] = true;
            }
        }
    }
    // Every two-faced log was caught by some witness; no honest log ever was.
    for (l, log) in logs.iter().enumerate() {
        let any = (0..WITNESSES).any(|w| caught[w][l]);
        assert_eq!(any, log.histories.len() == 2, "log {l}");
    }
}
