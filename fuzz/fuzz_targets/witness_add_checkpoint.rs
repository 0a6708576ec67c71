//! C2SP add-checkpoint requests and cosignature lines from anyone: parsing never panics; an
//! accepted request re-parses from its own text to itself; the witness's decision never panics
//! and never cosigns a note the log's key did not sign; cosignature verification of arbitrary
//! notes never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_fuzz::witness::{AddCheckpoint, Verdict, WitnessedLog, decide};

fuzz_target!(|data: &[u8]| {
    let v = onoal_fuzz::cosigner().verifier();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = v.verify_note(text);
        let _ = onoal_engine::cosignature::add_signatures(text, &[text.to_owned()]);
    }
    let Ok(request) = AddCheckpoint::parse(data) else { return };
    assert_eq!(AddCheckpoint::parse(request.to_text().as_bytes()).as_ref(), Ok(&request));
    let log = onoal_fuzz::note_verifier();
    let held = WitnessedLog {
        origin: log.name().to_owned(),
        size: request.old,
        root: onoal_engine::Hash([7; 32]),
        note: String::new(),
        cosigned_ms: 0,
    };
    for state in [None, Some(&held)] {
        if let Verdict::Cosign { .. } = decide(&request, Some(log), state, onoal_fuzz::cosigner(), 0) {
            assert!(log.open(request.note.as_bytes()).is_ok(), "cosigned an unsigned note");
        }
        let _ = decide(&request, None, state, onoal_fuzz::cosigner(), 0);
    }
});
