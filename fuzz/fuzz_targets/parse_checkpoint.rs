//! Checkpoint notes and verifier keys from anyone: never a panic; an accepted note is one the
//! key signed, and its body re-serialises to the signed text.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use onoal_engine::checkpoint::{NoteSigner, NoteVerifier};
use onoal_engine::identity::SecretKey;

fn verifier() -> &'static NoteVerifier {
    static V: OnceLock<NoteVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = SecretKey::from_seed(&[42; 32]);
        NoteSigner::new("oid:onoal:fuzz", key.signing_key().clone()).unwrap().verifier().clone()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cp) = verifier().open(data) {
        let text = std::str::from_utf8(data).unwrap();
        assert!(text.starts_with(&cp.body()), "accepted body differs from the signed text");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(v) = NoteVerifier::from_vkey(s) {
            assert_eq!(NoteVerifier::from_vkey(&v.to_vkey()).unwrap(), v);
        }
    }
});
