//! A mesh message from a peer, through the inbox (size, decoding, sender, hops, signature,
//! timestamp window, seen-cache): never a panic; an accepted message re-encodes to bytes that
//! decode to the same message and still verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onoal_fuzz::id::PeerId;
use onoal_fuzz::proto::envelope::{Inbox, InboxConfig, MeshMessage};

fuzz_target!(|data: &[u8]| {
    let Some((key, bytes)) = data.split_first_chunk::<32>() else { return };
    let Some(peer) = PeerId::from_bytes(key) else { return };
    let local = PeerId::from_bytes(&[0x3b; 32]).unwrap_or(peer);
    let mut inbox = Inbox::new(local, InboxConfig::default());
    // Inside any window a stored timestamp could fall in.
    let now = 1_800_000_000_000;
    if let Ok(m) = inbox.accept_delivered(peer, bytes, now) {
        assert!(m.signature_valid(), "accepted a message whose signature does not verify");
        let again = MeshMessage::decode(&m.encode()).expect("an accepted message re-encodes");
        assert_eq!(again, m);
        assert!(inbox.accept_delivered(peer, bytes, now).is_err(), "a replay was accepted");
    }
});
