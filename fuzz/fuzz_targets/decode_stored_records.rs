//! Stored records (head record, index posting lists, tiles): never a panic; whatever parses
//! re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_engine::fuzzing::{HeadRecord, decode_postings};
use onoal_engine::tile::Tile;

fuzz_target!(|data: &[u8]| {
    if let Some(head) = HeadRecord::decode(data) {
        assert_eq!(&head.encode()[..], data);
    }
    if data.len() >= 8 {
        let first = u64::from_be_bytes(data[..8].try_into().unwrap());
        if let Ok(seqs) = decode_postings(first, &data[8..]) {
            assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "posting list went backwards");
        }
    }
    if let Ok(tile) = Tile::decode_verified(data) {
        assert_eq!(tile.encode(), data);
    }
});
