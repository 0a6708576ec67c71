//! Inclusion proofs from anyone: never a panic. Input: index, size (8 bytes each, BE), leaf,
//! root, then proof hashes (32 bytes each). An accepted proof must lead to the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_engine::Hash;
use onoal_engine::merkle::{root_from_inclusion, verify_inclusion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 80 {
        return;
    }
    let index = u64::from_be_bytes(data[..8].try_into().unwrap());
    let size = u64::from_be_bytes(data[8..16].try_into().unwrap());
    let leaf = Hash::from_slice(&data[16..48]).unwrap();
    let root = Hash::from_slice(&data[48..80]).unwrap();
    let proof: Vec<Hash> =
        data[80..].chunks_exact(32).map(|c| Hash::from_slice(c).unwrap()).collect();
    if verify_inclusion(index, size, &leaf, &proof, &root).is_ok() {
        assert_eq!(root_from_inclusion(index, size, &leaf, &proof).unwrap(), root);
    }
});
