//! A peer record from a peer, the DHT or a registry: never a panic; a record that checks out
//! re-encodes to bytes that decode to the same record, which checks out again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_fuzz::proto::record::PeerRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = postcard::from_bytes::<PeerRecord>(data) else { return };
    let now = 1_800_000_000_000;
    if let Ok(oid) = record.check(now) {
        let again: PeerRecord = postcard::from_bytes(&record.encode()).expect("re-encodes");
        assert_eq!(again, record);
        assert_eq!(again.check(now), Ok(oid));
        assert!(record.peer().is_some(), "a checked record names a usable key");
    }
});
