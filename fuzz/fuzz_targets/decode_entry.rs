//! Leaf data from disk or a peer: never a panic, and only canonical bytes are accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_engine::Entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(entry.leaf_data(), data, "decode accepted non-canonical bytes");
    }
});
