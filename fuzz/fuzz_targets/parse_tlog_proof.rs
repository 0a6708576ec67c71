//! C2SP tlog-proof files from anyone: never a panic; an accepted file is canonical (it
//! re-serialises to the same text), and verifying it with a key never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_engine::tlog_proof::TlogProof;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(proof) = TlogProof::parse(text) else { return };
    assert_eq!(proof.to_text(), text, "accepted a non-canonical proof");
    let _ = proof.verify(onoal_fuzz::note_verifier(), None);
    let _ = proof.verify(onoal_fuzz::note_verifier(), Some(b"leaf"));
});
