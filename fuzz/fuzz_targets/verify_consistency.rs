//! Consistency proofs from anyone: never a panic. Input: old, new (8 bytes each, BE), old root,
//! new root, then proof hashes. An accepted proof has 0 < old <= new.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_engine::Hash;
use onoal_engine::merkle::verify_consistency;

fuzz_target!(|data: &[u8]| {
    if data.len() < 80 {
        return;
    }
    let old = u64::from_be_bytes(data[..8].try_into().unwrap());
    let new = u64::from_be_bytes(data[8..16].try_into().unwrap());
    let r1 = Hash::from_slice(&data[16..48]).unwrap();
    let r2 = Hash::from_slice(&data[48..80]).unwrap();
    let proof: Vec<Hash> =
        data[80..].chunks_exact(32).map(|c| Hash::from_slice(c).unwrap()).collect();
    if verify_consistency(old, new, &r1, &r2, &proof).is_ok() {
        assert!(old > 0 && old <= new, "accepted sizes {old} -> {new}");
    }
});
