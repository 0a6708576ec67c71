//! A SWIM datagram from a peer: never a panic; a packet refused before SWIM saw it (malformed
//! header, a sender other than the connection's key, full) changes no member list.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use onoal_engine::LedgerId;
use onoal_fuzz::swim::{Swim, SwimConfig, SwimId, SwimRefused};

fuzz_target!(|data: &[u8]| {
    let Some((key, bytes)) = data.split_first_chunk::<32>() else { return };
    let me = SwimId {
        ledger_id: LedgerId::from_bytes([7; 16]),
        key: [7; 32],
        addr: SocketAddr::from(([127, 0, 0, 1], 7400)),
        bump: 0,
    };
    let mut swim = Swim::new(me, SwimConfig::default(), 1);
    let now = Instant::now();
    // Refused before SWIM saw it: nothing changes. (SWIM itself may refuse a packet after it
    // took the sender's liveness from the header, e.g. for trailing bytes; the sender's key
    // was checked first.)
    if let Err(SwimRefused::WrongKey | SwimRefused::Malformed | SwimRefused::Full) =
        swim.handle_data(key, bytes, now)
    {
        assert!(swim.is_empty(), "a packet refused before SWIM saw it added a member");
    }
    swim.handle_timeout(now);
    while swim.poll_event().is_some() {}
});
