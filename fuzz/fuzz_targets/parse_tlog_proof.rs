//! C2SP tlog-proof files from anyone: never a panic; an accepted file is canonical (it
//! re-serialises to the same text), and verifying it with a key never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use onoal_engine::checkpoint::{NoteSigner, NoteVerifier};
use onoal_engine::identity::SecretKey;
use onoal_engine::tlog_proof::TlogProof;

fn verifier() -> &'static NoteVerifier {
    static V: OnceLock<NoteVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = SecretKey::from_seed(&[42; 32]);
        NoteSigner::new("oid:onoal:fuzz", key.signing_key().clone()).unwrap().verifier().clone()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(proof) = TlogProof::parse(text) else { return };
    assert_eq!(proof.to_text(), text, "accepted a non-canonical proof");
    let _ = proof.verify(verifier(), None);
    let _ = proof.verify(verifier(), Some(b"leaf"));
});
