//! A full disk: appends fail with a clear error, nothing acknowledged is lost, and the ledger
//! works again once space is freed. Uses a small tmpfs (needs root; skipped otherwise).

use std::path::{Path, PathBuf};
use std::process::Command;

use onoal_engine::{AppendError, Durability, Ledger};

use crate::util::{entry, oid};

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_fails_appends_clearly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::tmpfs(tmp.path(), "24m") else {
        eprintln!("skipping: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data = tmp.path().join("ledger");
    let mut acked = Vec::new();
    let error = {
        let l = Ledger::builder(&data)
            .durability(Durability::Sync)
            .create(oid("oid:onoal:disk:full"))
            .unwrap();
        let payload = vec![0xabu8; 60_000];
        let mut error = None;
        for i in 0..10_000u32 {
            let batch = (0..4).map(|_| entry("fill", "t", payload.clone())).collect();
            match l.append_batch(batch) {
                Ok(r) => acked.extend(r),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
            assert!(i < 9_999, "the disk never filled up");
        }
        // Once failed, the ledger keeps refusing rather than acknowledging anything.
        assert!(l.append(entry("fill", "t", "small")).is_err());
        error.unwrap()
    };
    match &error {
        AppendError::Storage(msg) => {
            assert!(msg.contains("No space") || msg.contains("space"), "unclear error: {msg}");
            assert!(error.to_string().contains("free disk space"), "{error}");
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(!acked.is_empty(), "nothing was appended before the disk filled");

    // Free space, reopen: every acknowledged entry is there, the ledger verifies and appends.
    mount.resize("96m");
    let l = Ledger::builder(&data).open().unwrap();
    let size = l.head().unwrap().size;
    assert!(size >= acked.len() as u64, "lost acknowledged entries: {size} < {}", acked.len());
    for r in acked.iter().step_by(7) {
        assert_eq!(l.entry(r.seq).unwrap().leaf_hash, r.leaf_hash, "entry {} changed", r.seq);
    }
    l.verify(&|_| {}).unwrap();
    let next = l.append(entry("after", "t", "space freed")).unwrap();
    assert_eq!(next.seq, size);
    drop(l);
    drop(mount);
}
