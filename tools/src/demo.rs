//! `onoal demo`: the main job on an embedded default. A ledger in a temporary directory
//! imports entries, signs checkpoints, proves inclusion and consistency, verifies the proofs
//! against the signed checkpoints with only the public verifier key, and audits itself.

use std::time::Instant;

use anyhow::{Result, ensure};
use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::merkle::{verify_consistency, verify_inclusion};
use onoal_engine::{Ledger, Name, NewEntry, Oid};
use serde_json::json;

pub(crate) fn run(entries: u64, json_out: bool) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("onoal-demo-").tempdir()?;
    let say = |s: String| {
        if !json_out {
            println!("{s}");
        }
    };
    let ledger = Ledger::builder(dir.path()).create(Oid::parse("oid:onoal:demo:alpha")?)?;
    let vkey = ledger.identity().verifier().to_vkey();
    say(format!("created ledger {} in {}", ledger.identity().oid, dir.path().display()));
    say(format!("  verifier key {vkey}"));

    let streams = ["orders", "payments", "audit"];
    let started = Instant::now();
    let half = entries / 2;
    let mut appended = 0u64;
    let mut first_checkpoint = None;
    let mut in_flight = std::collections::VecDeque::new();
    while appended < entries {
        let n = 1000.min(entries - appended);
        let batch: Vec<NewEntry> = (appended..appended + n)
            .map(|i| {
                let stream = streams[(i % 3) as usize];
                let payload = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(220));
                // Names are fixed valid literals.
                NewEntry::new(
                    Name::stream(stream).unwrap_or_else(|_| unreachable!()),
                    Name::entry_type("demo.event").unwrap_or_else(|_| unreachable!()),
                    payload.into_bytes(),
                )
            })
            .collect();
        in_flight.push_back(ledger.submit_batch(batch)?);
        while in_flight.len() > 4 {
            in_flight.pop_front().map(|p| p.wait()).transpose()?;
        }
        appended += n;
        if first_checkpoint.is_none() && appended >= half {
            for p in in_flight.drain(..) {
                p.wait()?;
            }
            first_checkpoint = Some(ledger.checkpoint_now()?);
        }
    }
    for p in in_flight.drain(..) {
        p.wait()?;
    }
    let import_s = started.elapsed().as_secs_f64();
    say(format!(
        "appended {entries} entries of ~256 B in {import_s:.2} s ({:.0} entries/s, fsync per group)",
        entries as f64 / import_s
    ));
    let cp = ledger.checkpoint_now()?;
    say(format!("signed checkpoint:\n{}", indent(&cp.note)));

    // A verifier holds only the public key: it checks the signed notes, then the proofs.
    let verifier = NoteVerifier::from_vkey(&vkey)?;
    let latest = verifier.open(cp.note.as_bytes())?;
    let proofs = 5.min(entries);
    for k in 0..proofs {
        let seq = k * (entries / proofs.max(1));
        let e = ledger.entry(seq)?;
        let proof = ledger.inclusion_proof(seq, latest.size)?;
        verify_inclusion(seq, latest.size, &e.leaf_hash, &proof, &latest.root)?;
        say(format!(
            "inclusion of entry {seq} in tree {}: {} hashes, verified",
            latest.size,
            proof.len()
        ));
    }
    if let Some(old) = &first_checkpoint {
        let old_cp = verifier.open(old.note.as_bytes())?;
        if old_cp.size > 0 {
            let proof = ledger.consistency_proof(old_cp.size, latest.size)?;
            verify_consistency(old_cp.size, latest.size, &old_cp.root, &latest.root, &proof)?;
            say(format!(
                "consistency of tree {} with tree {}: {} hashes, verified",
                old_cp.size,
                latest.size,
                proof.len()
            ));
        }
    }
    let page = ledger.query(&onoal_engine::Query {
        stream: Some("payments".into()),
        limit: Some(3),
        ..Default::default()
    })?;
    say(format!(
        "query stream=payments limit 3: seqs {:?}",
        page.entries.iter().map(|e| e.entry.seq).collect::<Vec<_>>()
    ));
    let t = Instant::now();
    let report = ledger.verify(&|_| {})?;
    let verify_s = t.elapsed().as_secs_f64();
    ensure!(report.root == latest.root, "audit root differs from the checkpoint");
    say(format!(
        "audit: {} entries, {} tiles, {} checkpoints sound in {verify_s:.2} s",
        report.entries, report.tiles, report.checkpoints
    ));
    if json_out {
        println!(
            "{}",
            json!({
                "entries": entries,
                "append_seconds": import_s,
                "checkpoint_size": latest.size,
                "root": latest.root.to_hex(),
                "inclusion_proofs_verified": proofs,
                "audit_seconds": verify_s,
                "vkey": vkey,
            })
        );
    } else {
        println!("demo done: everything verified.");
    }
    Ok(())
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
