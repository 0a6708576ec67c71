//! Crash safety with real processes: `onoal import --ack` is killed with SIGKILL at random
//! moments, again and again on the same data directory. After each kill every acknowledged
//! entry must be there with the leaf hash it had, the chain and tree must verify, and the next
//! import must continue at the right seq.
//!
//! `ONOAL_CRASH_ITERATIONS` sets the number of kills per durability mode (default 100).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;
use std::time::Duration;

use onoal_engine::{Hash, Ledger};
use onoal_tests::{onoal, run_json};

fn iterations() -> u64 {
    std::env::var("ONOAL_CRASH_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

struct Outcome {
    kills: u64,
    acked: u64,
    lost: u64,
}

fn kill_loop(durability: &str) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("l");
    run_json(onoal(&data).args(["init", "--oid", "oid:onoal:crash:test"]));
    let mut rng = onoal_tests::Rng::new(0xC0FFEE ^ durability.len() as u64);
    let mut known: Vec<Hash> = Vec::new(); // leaf hashes of entries seen after earlier kills
    let mut out = Outcome { kills: 0, acked: 0, lost: 0 };
    for iteration in 0..iterations() {
        let mut child = onoal(&data)
            .args(["--durability", durability, "import", "-", "--ack", "--batch"])
            .arg((1 + rng.below(200)).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let writer = std::thread::spawn(move || {
            let mut i = 0u64;
            loop {
                let line = format!(
                    "{{\"stream\":\"crash\",\"type\":\"t\",\"payload\":\"iteration {iteration} entry {i} {}\"}}\n",
                    "x".repeat(100)
                );
                if stdin.write_all(line.as_bytes()).is_err() {
                    break;
                }
                i += 1;
            }
        });
        let reader = std::thread::spawn(move || {
            let mut max_acked: Option<u64> = None;
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if let Some(seq) = line.strip_prefix("acked ") {
                    max_acked = Some(seq.parse().unwrap());
                }
            }
            max_acked
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(120)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        writer.join().unwrap();
        let max_acked = reader.join().unwrap();
        out.kills += 1;

        let ledger = Ledger::builder(&data).open_read_only().unwrap();
        let size = ledger.head().unwrap().size;
        if let Some(a) = max_acked {
            out.acked = out.acked.max(a + 1);
            if size <= a {
                out.lost += a + 1 - size;
            }
            assert!(size > a, "kill {iteration}: acked seq {a} but the log has {size} entries");
        }
        let entries = ledger.range(known.len() as u64, size).unwrap();
        for (seq, h) in known.iter().enumerate().step_by(97) {
            assert_eq!(ledger.entry(seq as u64).unwrap().leaf_hash, *h, "entry {seq} changed");
        }
        known.extend(entries.iter().map(|e| e.leaf_hash));
        ledger.verify(&|_| {}).unwrap_or_else(|e| panic!("kill {iteration}: verify failed: {e}"));
    }
    // Appending continues at the right seq.
    let l = Ledger::builder(&data).open().unwrap();
    let r = l.append(crate::util::entry("crash", "t", "after the kills")).unwrap();
    assert_eq!(r.seq, known.len() as u64);
    assert_eq!(l.entry(r.seq).unwrap().entry.prev_hash, *known.last().unwrap_or(&Hash::ZERO));
    out
}

#[test]
fn sigkill_during_import_loses_nothing_acknowledged_sync() {
    let o = kill_loop("sync");
    eprintln!("crash sync: {} kills, {} entries acknowledged, {} lost", o.kills, o.acked, o.lost);
    assert_eq!(o.lost, 0);
    assert!(o.acked > 0, "no entry was ever acknowledged: the test proved nothing");
}

#[test]
fn sigkill_during_import_loses_nothing_acknowledged_buffered() {
    let o = kill_loop("buffered");
    eprintln!(
        "crash buffered: {} kills, {} entries acknowledged, {} lost",
        o.kills, o.acked, o.lost
    );
    assert_eq!(o.lost, 0);
    assert!(o.acked > 0, "no entry was ever acknowledged: the test proved nothing");
}
