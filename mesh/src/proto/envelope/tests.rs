use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;

const NOW: u64 = 1_800_000_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn peer(n: u8) -> PeerId {
    PeerId::new(key(n).verifying_key())
}

fn message(origin: u8, kind: MessageType, at: u64) -> MeshMessage {
    MeshMessage::new(
        &key(origin),
        (LedgerId::random(), "oid:onoal:org:a"),
        Destination::default(),
        kind,
        b"payload".to_vec(),
        8,
        at,
    )
}

#[test]
fn the_signature_covers_what_the_origin_decides_and_not_the_hops() {
    let m = message(1, MessageType::PeerAnnounce, NOW);
    assert!(m.signature_valid());
    let relayed = m.forwarded_by(&peer(2)).unwrap();
    assert_eq!(relayed.ttl, 7);
    assert_eq!(relayed.path, vec![*peer(2).as_bytes()]);
    assert!(relayed.signature_valid(), "path and ttl are not signed");

    let mut tampered = vec![m.clone(); 6];
    tampered[0].payload.push(0);
    tampered[1].kind = MessageType::Heartbeat;
    tampered[2].timestamp_ms += 1;
    tampered[3].to.oid = Some("oid:onoal:org:b".into());
    tampered[4].from.oid = "oid:onoal:org:evil".into();
    tampered[5].from.public_key = *peer(3).as_bytes();
    for (i, t) in tampered.iter().enumerate() {
        assert!(!t.signature_valid(), "tampering {i} went unnoticed");
    }
}

#[test]
fn a_message_stops_when_its_ttl_is_spent() {
    let mut m = message(1, MessageType::Heartbeat, NOW);
    m.ttl = 1;
    assert!(m.forwarded_by(&peer(2)).is_none());
}

#[test]
fn the_inbox_drops_each_kind_of_bad_message_and_counts_it_per_peer() {
    let me = peer(9);
    let mut inbox = Inbox::new(me, InboxConfig::default());
    let good = message(1, MessageType::PeerAnnounce, NOW);
    assert!(inbox.accept(peer(2), &good.encode(), NOW).is_ok());
    assert_eq!(inbox.accept(peer(2), &good.encode(), NOW), Err(Rejected::Replay));

    let mut bad_sig = message(1, MessageType::Heartbeat, NOW);
    bad_sig.payload = b"other".to_vec();
    let stale = message(1, MessageType::Heartbeat, NOW - 10 * 60_000);
    let future = message(1, MessageType::Heartbeat, NOW + 60_000);
    let mut looped = message(1, MessageType::Heartbeat, NOW);
    looped.path = vec![*peer(3).as_bytes(), *peer(3).as_bytes()];
    let mut through_me = message(1, MessageType::Heartbeat, NOW);
    through_me.path = vec![*me.as_bytes()];
    let mut from_me = message(9, MessageType::Heartbeat, NOW);
    from_me.path.clear();
    let mut hops = message(1, MessageType::Heartbeat, NOW);
    hops.ttl = MAX_HOPS;
    hops.path = vec![*peer(4).as_bytes()];
    let mut zero_ttl = message(1, MessageType::Heartbeat, NOW);
    zero_ttl.ttl = 0;
    let mut oversize = message(1, MessageType::Heartbeat, NOW);
    oversize.payload = vec![0; MAX_MESSAGE_BYTES];

    let cases: Vec<(Vec<u8>, Rejected)> = vec![
        (bad_sig.encode(), Rejected::BadSignature),
        (stale.encode(), Rejected::Stale),
        (future.encode(), Rejected::Future),
        (looped.encode(), Rejected::Loop),
        (through_me.encode(), Rejected::Loop),
        (from_me.encode(), Rejected::Loop),
        (hops.encode(), Rejected::Hops),
        (zero_ttl.encode(), Rejected::Hops),
        (oversize.encode(), Rejected::Oversize),
        (vec![0xff; 40], Rejected::Malformed),
    ];
    for (bytes, reason) in &cases {
        assert_eq!(inbox.accept(peer(5), bytes, NOW).err(), Some(*reason));
    }
    let counts = inbox.counts(&peer(5));
    assert_eq!(counts.accepted, 0);
    assert_eq!(counts.by_reason.values().sum::<u64>(), cases.len() as u64);
    assert_eq!(counts.by_reason["loop"], 3);
    assert_eq!(inbox.counts(&peer(2)).accepted, 1);
    assert_eq!(inbox.counts(&peer(2)).by_reason["replay"], 1);
}

#[test]
fn a_forged_copy_does_not_shadow_the_real_message() {
    let mut inbox = Inbox::new(peer(9), InboxConfig::default());
    let real = message(1, MessageType::PeerAnnounce, NOW);
    let mut forged = real.clone();
    forged.payload = b"forged".to_vec();
    assert_eq!(inbox.accept(peer(2), &forged.encode(), NOW), Err(Rejected::BadSignature));
    assert!(inbox.accept(peer(3), &real.encode(), NOW).is_ok());
}

#[test]
fn a_full_seen_cache_shrinks_the_window_instead_of_forgetting_replays() {
    let config = InboxConfig { seen_capacity: 4, ..InboxConfig::default() };
    let mut inbox = Inbox::new(peer(9), config);
    let flood: Vec<MeshMessage> =
        (0..10).map(|i| message(1, MessageType::Heartbeat, NOW - 1000 + i)).collect();
    for m in &flood {
        assert!(inbox.accept(peer(2), &m.encode(), NOW).is_ok());
        assert!(inbox.seen_len() <= 4);
    }
    for m in &flood {
        let replay = inbox.accept(peer(2), &m.encode(), NOW);
        assert!(matches!(replay, Err(Rejected::Replay | Rejected::Stale)), "{replay:?}");
    }
    // A message newer than everything evicted still gets in.
    assert!(inbox.accept(peer(2), &message(1, MessageType::Heartbeat, NOW).encode(), NOW).is_ok());
}

#[test]
fn old_ids_leave_the_cache_once_outside_the_window() {
    let mut inbox = Inbox::new(peer(9), InboxConfig::default());
    for i in 0..100 {
        let m = message(1, MessageType::Heartbeat, NOW + i);
        inbox.accept(peer(2), &m.encode(), NOW + i).unwrap();
    }
    let later = NOW + 10 * 60_000;
    inbox.accept(peer(2), &message(1, MessageType::Heartbeat, later).encode(), later).unwrap();
    assert_eq!(inbox.seen_len(), 1);
}

#[test]
fn every_type_has_the_seeds_name_and_seven_are_supported_now() {
    let names: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names.len(), 14);
    assert!(names.contains(&"reference_response") && names.contains(&"topology_update"));
    let supported: Vec<&str> =
        MessageType::ALL.iter().filter(|t| t.supported()).map(|t| t.as_str()).collect();
    assert_eq!(
        supported,
        [
            "peer_announce",
            "peer_discover",
            "query_request",
            "proof_verify",
            "reference_check",
            "heartbeat",
            "topology_update"
        ]
    );
}

fn arb_message() -> impl Strategy<Value = MeshMessage> {
    (
        any::<[u8; 16]>(),
        0..14usize,
        any::<u64>(),
        "[a-z:]{0,40}",
        proptest::option::of("[a-z:]{0,20}"),
        proptest::collection::vec(any::<[u8; 32]>(), 0..4),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec(any::<u8>(), 0..70),
    )
        .prop_map(|(id, kind, ts, oid, to_oid, path, ttl, payload, signature)| MeshMessage {
            id,
            kind: MessageType::ALL[kind],
            timestamp_ms: ts,
            from: Origin { ledger_id: LedgerId::random(), oid, public_key: [7; 32] },
            to: Destination { ledger_id: None, oid: to_oid },
            path,
            ttl,
            payload,
            signature,
        })
}

proptest! {
    #[test]
    fn messages_round_trip(m in arb_message()) {
        prop_assert_eq!(MeshMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn the_inbox_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut inbox = Inbox::new(peer(9), InboxConfig::default());
        let _ = inbox.accept(peer(2), &bytes, NOW);
        prop_assert_eq!(inbox.counts(&peer(2)).by_reason.values().sum::<u64>()
            + inbox.counts(&peer(2)).accepted, 1);
    }
}

#[test]
fn only_the_origin_or_the_last_relay_may_deliver() {
    let mut inbox = Inbox::new(peer(9), InboxConfig::default());
    let m = message(1, MessageType::Heartbeat, NOW);
    assert_eq!(inbox.accept_delivered(peer(2), &m.encode(), NOW), Err(Rejected::Sender));
    let relayed = m.forwarded_by(&peer(2)).unwrap();
    assert!(inbox.accept_delivered(peer(2), &relayed.encode(), NOW).is_ok());
    let direct = message(3, MessageType::Heartbeat, NOW);
    assert!(inbox.accept_delivered(peer(3), &direct.encode(), NOW).is_ok());
    assert_eq!(inbox.counts(&peer(2)).by_reason["sender"], 1);
}
