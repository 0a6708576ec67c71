use std::path::Path;

use onoal_engine::{Ledger, Name, NewEntry, Oid};

pub(crate) fn oid(s: &str) -> Oid {
    Oid::parse(s).unwrap()
}

pub(crate) fn entry(stream: &str, ty: &str, payload: impl Into<Vec<u8>>) -> NewEntry {
    NewEntry::new(Name::stream(stream).unwrap(), Name::entry_type(ty).unwrap(), payload)
}

pub(crate) fn create(dir: &Path) -> Ledger {
    Ledger::builder(dir).create(oid("oid:onoal:test:ledger")).unwrap()
}

/// Appends `n` entries in batches of `batch`, streams cycling through a, b, c.
pub(crate) fn fill(ledger: &Ledger, n: u64, batch: u64) {
    let mut done = 0;
    while done < n {
        let k = batch.min(n - done);
        let v = (done..done + k)
            .map(|i| entry(["a", "b", "c"][(i % 3) as usize], "t", format!("payload {i}")))
            .collect();
        ledger.append_batch(v).unwrap();
        done += k;
    }
}
