//! Checkpoint notes and verifier keys from anyone: never a panic; an accepted note is one the
//! key signed, and its body re-serialises to the signed text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_engine::checkpoint::NoteVerifier;

fuzz_target!(|data: &[u8]| {
    if let Ok(cp) = onoal_fuzz::note_verifier().open(data) {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.starts_with(&cp.body()), "accepted body differs from the signed text");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(v) = NoteVerifier::from_vkey(s) {
            assert_eq!(NoteVerifier::from_vkey(&v.to_vkey()).unwrap(), v);
        }
    }
});
