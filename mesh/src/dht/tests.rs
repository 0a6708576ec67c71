use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use super::*;
use crate::id::PeerId;
use crate::proto::record::{Endpoints, RecordFields};

const NOW_MS: u64 = 1_800_000_000_000;

fn signing(n: u32) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    SigningKey::from_bytes(&seed)
}

fn contact(n: u32, ip: u32) -> Contact {
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), 4433);
    Contact::new(PeerId::new(signing(n).verifying_key()), addr)
}

fn record(n: u32, oid: &str) -> PeerRecord {
    let ledger = LedgerId::from_slice(&[n as u8; 16]).unwrap();
    let fields = RecordFields {
        endpoints: Endpoints { quic: Some("127.0.0.1:1".into()), ..Endpoints::default() },
        ..RecordFields::default()
    };
    PeerRecord::sign(&signing(n), ledger, &Oid::parse(oid).unwrap(), fields, 1, NOW_MS + 3_600_000)
}

#[test]
fn keys_and_buckets() {
    let a = Key([0u8; 32]);
    let mut b = Key([0u8; 32]);
    b.0[0] = 0b0010_0000;
    assert_eq!(a.bucket_of(&b), Some(2));
    assert_eq!(a.bucket_of(&a), None);
    for bucket in [0, 7, 8, 100, 255] {
        let k = b.in_bucket(bucket, [0xa5; 32]);
        assert_eq!(b.bucket_of(&k), Some(bucket));
    }
    let ledger: LedgerId = "550e8400-e29b-41d4-a716-446655440000".parse().unwrap();
    let expected = onoal_engine::hash::sha256(&[b"550e8400-e29b-41d4-a716-446655440000"]);
    assert_eq!(Key::of_ledger(&ledger).0, expected.0);
    assert_eq!(Key::of_oid("oid:onoal").0, onoal_engine::hash::sha256(&[b"oid:onoal"]).0);
}

#[test]
fn the_table_finds_the_closest_nodes_as_a_full_sort_would() {
    let now = Instant::now();
    let local = contact(0, 1);
    let mut table = RoutingTable::new(local.id, 20, 2, 2);
    let contacts: Vec<Contact> = (1..3000).map(|n| contact(n, 0x0a00_0000 + n)).collect();
    for c in &contacts {
        table.insert(*c, now);
    }
    assert!(table.len() > 100 && table.len() < 400, "{} nodes held", table.len());
    let held: Vec<Contact> = table.contacts().collect();
    for t in 0..50u32 {
        let target = Key::of_oid(&format!("oid:onoal:t{t}"));
        let mut expected = held.clone();
        expected.sort_by_key(|c| c.id.distance(&target));
        expected.truncate(20);
        assert_eq!(table.closest(&target, 20), expected);
    }
    let mut own = held.clone();
    own.sort_by_key(|c| c.id.distance(&local.id));
    own.truncate(5);
    assert_eq!(table.closest(&local.id, 5), own);
}

#[test]
fn a_bucket_takes_at_most_two_nodes_of_one_address() {
    let now = Instant::now();
    let local = contact(0, 1);
    let mut table = RoutingTable::new(local.id, 20, 2, 2);
    // Far nodes (bucket 0, half of all keys) from one IP address.
    let same_ip: Vec<Contact> = (1..200)
        .map(|n| contact(n, 0x0a00_0002))
        .filter(|c| local.id.bucket_of(&c.id) == Some(0))
        .take(5)
        .collect();
    let outcomes: Vec<Inserted> = same_ip.iter().map(|c| table.insert(*c, now)).collect();
    assert_eq!(outcomes[..2], [Inserted::Added, Inserted::Added]);
    assert!(outcomes[2..].iter().all(|o| *o == Inserted::IpLimit), "{outcomes:?}");
    assert_eq!(table.insert(local, now), Inserted::Local);
}

#[test]
fn untrusted_nodes_cannot_keep_trusted_ones_out_of_more_than_half_a_bucket() {
    let now = Instant::now();
    let local = contact(0, 1);
    let k = 8;
    let mut table = RoutingTable::new(local.id, k, 100, 2);
    let far: Vec<Contact> = (1..400)
        .map(|n| contact(n, 0x0a00_0000 + n))
        .filter(|c| local.id.bucket_of(&c.id) == Some(0))
        .take(3 * k)
        .collect();
    let (attackers, honest) = far.split_at(2 * k);
    table.set_trusted(honest.iter().map(|c| c.peer));
    // The attacker's made-up keys fill the bucket first.
    for (i, c) in attackers.iter().enumerate() {
        let at = now + Duration::from_millis(i as u64);
        let expect = if i < k { Inserted::Added } else { Inserted::Full { oldest: None } };
        assert_eq!(table.insert(*c, at), expect);
    }
    assert_eq!(table.untrusted(), k);
    // Trusted nodes displace the least recently seen attackers, down to half of the bucket.
    let later = now + Duration::from_secs(1);
    let outcomes: Vec<Inserted> = honest.iter().map(|c| table.insert(*c, later)).collect();
    assert!(outcomes[..k / 2].iter().all(|o| *o == Inserted::Added), "{outcomes:?}");
    assert!(outcomes[k / 2..].iter().all(|o| matches!(o, Inserted::Full { .. })), "{outcomes:?}");
    assert_eq!(table.untrusted(), k / 2);
    assert!(!table.contains(&attackers[0].peer) && table.contains(&attackers[k - 1].peer));
    // Without trusted nodes, untrusted ones still fill free slots (a new mesh trusts no one).
    let mut open = RoutingTable::new(local.id, k, 100, 2);
    for c in attackers.iter().take(k) {
        assert_eq!(open.insert(*c, now), Inserted::Added);
    }
}

#[test]
fn a_full_bucket_keeps_replacements_and_swaps_in_one_when_a_node_stops_answering() {
    let now = Instant::now();
    let local = contact(0, 1);
    let mut table = RoutingTable::new(local.id, 2, 2, 2);
    let far: Vec<Contact> = (1..100)
        .map(|n| contact(n, 0x0a00_0000 + n))
        .filter(|c| local.id.bucket_of(&c.id) == Some(0))
        .take(3)
        .collect();
    assert_eq!(table.insert(far[0], now), Inserted::Added);
    assert_eq!(table.insert(far[1], now), Inserted::Added);
    assert_eq!(table.insert(far[2], now), Inserted::Full { oldest: None }, "fresh: no ping");
    let later = now + Duration::from_secs(61);
    assert_eq!(table.insert(far[2], later), Inserted::Full { oldest: Some(far[0]) });
    assert!(!table.contains(&far[2].peer));
    table.failed(&far[0].peer, now);
    assert!(!table.contains(&far[0].peer) && table.contains(&far[2].peer));
    // Without a replacement, a node stays until it misses twice.
    table.failed(&far[1].peer, now);
    assert!(table.contains(&far[1].peer));
    table.failed(&far[1].peer, now);
    assert!(!table.contains(&far[1].peer));
}

#[test]
fn the_store_keeps_only_checked_records_under_keys_they_own() {
    let now = Instant::now();
    let mut store = ProviderStore::new(2, 100, Duration::from_secs(60));
    let r = record(1, "oid:onoal:org:a");
    let own = Key::of_ledger(&r.ledger_id);
    assert_eq!(
        store.add(Key::of_oid("oid:onoal:org:b"), r.clone(), now, NOW_MS),
        Err(StoreRefusal::NotOwned)
    );
    assert_eq!(
        store.add(Key::of_ledger(&record(2, "oid:onoal").ledger_id), r.clone(), now, NOW_MS),
        Err(StoreRefusal::NotOwned)
    );
    let mut forged = r.clone();
    forged.endpoints.quic = Some("6.6.6.6:1".into());
    assert_eq!(store.add(own, forged, now, NOW_MS), Err(StoreRefusal::Invalid));
    assert!(store.is_empty());
    for prefix in ["oid:onoal:org:a", "oid:onoal:org", "oid:onoal"] {
        store.add(Key::of_oid(prefix), r.clone(), now, NOW_MS).unwrap();
    }
    store.add(own, r.clone(), now, NOW_MS).unwrap();
    assert_eq!(store.add(own, r.clone(), now, NOW_MS), Ok(()), "a republish refreshes");
    let mut older = r.clone();
    older.sequence = 0;
    assert_eq!(store.add(own, older, now, NOW_MS), Err(StoreRefusal::Stale));
    assert_eq!(store.get(&own, now), vec![r.clone()]);
    // Per key: two records under `oid:onoal`, then full.
    store.add(Key::of_oid("oid:onoal"), record(2, "oid:onoal:x"), now, NOW_MS).unwrap();
    let third = store.add(Key::of_oid("oid:onoal"), record(3, "oid:onoal:y"), now, NOW_MS);
    assert_eq!(third, Err(StoreRefusal::Full));
    assert!(store.get(&own, now + Duration::from_secs(61)).is_empty(), "kept for the TTL only");
}

/// Two DHT nodes wired by hand: one answers the other.
fn answer(server: &mut Dht, client: &mut Dht, now: Instant) -> usize {
    let mut n = 0;
    while let Some(t) = client.poll_transmit() {
        let response = server.handle_request(*client.local(), t.request, now);
        client.handle_response(t.id, response, now);
        n += 1;
    }
    n
}

#[test]
fn a_lookup_drops_what_a_malicious_answer_adds_and_still_finishes() {
    let now = Instant::now();
    let a = contact(1, 0x0a00_0001);
    let mut node = Dht::new(a, DhtConfig::default(), now, NOW_MS);
    let liar = contact(2, 0x0a00_0002);
    node.add_contact(liar, now);
    let wanted = record(5, "oid:onoal:org:five");
    let lookup = node.find_ledger(wanted.ledger_id, now);
    let t = node.poll_transmit().expect("asks the only node it knows");
    assert_eq!(t.to, liar);
    let mut forged = wanted.clone();
    forged.endpoints.quic = Some("6.6.6.6:1".into());
    let foreign = record(6, "oid:onoal:org:six");
    let too_many: Vec<WireContact> =
        (10..40).map(|n| contact(n, 0x0b00_0000 + n).to_wire()).collect();
    let response = DhtResponse::Records { records: vec![forged, foreign], closer: too_many };
    node.handle_response(t.id, response, now);
    assert!(node.stats().invalid_in_answers >= 12, "{:?}", node.stats());
    // The listed contacts are asked (and time out); the lookup ends without a record.
    let mut later = now;
    while node.lookups_running() > 0 {
        while node.poll_transmit().is_some() {}
        later += Duration::from_secs(3);
        node.handle_timeout(later);
    }
    let Some(DhtEvent::LookupFinished(outcome)) = node.poll_event() else { panic!("no outcome") };
    assert_eq!(outcome.id, lookup);
    assert!(outcome.records.is_empty(), "forged and foreign records are dropped");
}

#[test]
fn a_flood_of_requests_from_one_peer_is_refused_past_the_burst() {
    let now = Instant::now();
    let mut node = Dht::new(contact(1, 1), DhtConfig::default(), now, NOW_MS);
    let flooder = contact(2, 2);
    let refused = (0..1000)
        .filter(|i| {
            let target = Key::of_oid(&format!("oid:onoal:f{i}"));
            node.handle_request(flooder, DhtRequest::FindNode { target }, now)
                == DhtResponse::Refused(StoreRefusal::Busy)
        })
        .count();
    assert_eq!(refused, 800, "burst of 200, no refill within one instant");
    assert_eq!(node.stats().rate_limited, 800);
    let later = now + Duration::from_secs(1);
    let ok = node.handle_request(flooder, DhtRequest::Ping, later);
    assert_eq!(ok, DhtResponse::Pong, "the bucket refills with time");
}

#[test]
fn publish_then_find_between_two_nodes() {
    let now = Instant::now();
    let (ca, cb) = (contact(1, 1), contact(2, 2));
    let mut a = Dht::new(ca, DhtConfig::default(), now, NOW_MS);
    let mut b = Dht::new(cb, DhtConfig::default(), now, NOW_MS);
    a.add_contact(cb, now);
    b.add_contact(ca, now);
    let r = record(1, "oid:onoal:org:a");
    let publishes = a.publish(r.clone(), now);
    assert_eq!(publishes.len(), 4, "ledger id and three OID prefixes");
    while answer(&mut b, &mut a, now) > 0 {}
    assert_eq!(b.store().len(), 4);
    b.find_oid(&Oid::parse("oid:onoal:org").unwrap(), now);
    while answer(&mut a, &mut b, now) > 0 {}
    let found = std::iter::from_fn(|| b.poll_event())
        .map(|DhtEvent::LookupFinished(o)| o.records)
        .next()
        .unwrap();
    assert_eq!(found, vec![r]);
}

proptest::proptest! {
    #[test]
    fn dht_decoders_never_panic_and_bound_their_input(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
        let _ = DhtRequest::decode(&bytes);
        let _ = DhtResponse::decode(&bytes);
        let mut node = Dht::new(contact(1, 1), DhtConfig::default(), Instant::now(), NOW_MS);
        if let Some(request) = DhtRequest::decode(&bytes) {
            // Whatever a peer asks, the answer is bounded and nothing unsigned is stored.
            let answer = node.handle_request(contact(2, 2), request, Instant::now());
            proptest::prop_assert!(answer.encode().len() <= MAX_DHT_MESSAGE);
            proptest::prop_assert!(node.store().is_empty());
        }
    }
}

#[test]
fn an_oversize_message_does_not_decode() {
    let big = DhtRequest::FindNode { target: Key([1; 32]) }.encode();
    let mut padded = big.clone();
    padded.resize(MAX_DHT_MESSAGE + 1, 0);
    assert!(DhtRequest::decode(&big).is_some());
    assert!(DhtRequest::decode(&padded).is_none());
}

#[test]
fn a_record_is_kept_under_the_assets_it_announces_and_no_others() {
    let now = Instant::now();
    let mut store = ProviderStore::new(4, 100, Duration::from_secs(60));
    let ledger = LedgerId::from_slice(&[9u8; 16]).unwrap();
    let fields = RecordFields { assets: vec!["car-1".into()], ..RecordFields::default() };
    let oid = Oid::parse("oid:onoal:org:a").unwrap();
    let r = PeerRecord::sign(&signing(9), ledger, &oid, fields, 1, NOW_MS + 3_600_000);
    assert_eq!(Key::of_asset("car-1").0, onoal_engine::hash::sha256(&[b"asset:car-1"]).0);
    store.add(Key::of_asset("car-1"), r.clone(), now, NOW_MS).unwrap();
    assert_eq!(
        store.add(Key::of_asset("car-2"), r.clone(), now, NOW_MS),
        Err(StoreRefusal::NotOwned),
        "a record claims only the assets it names"
    );
    // Adding an asset after signing breaks the signature.
    let mut forged = r.clone();
    forged.assets.push("car-2".into());
    assert_eq!(store.add(Key::of_asset("car-2"), forged, now, NOW_MS), Err(StoreRefusal::Invalid));
    // Too many assets, or a bad id, make the record invalid.
    let many = RecordFields {
        assets: (0..=crate::proto::record::MAX_ASSETS).map(|i| format!("a{i}")).collect(),
        ..RecordFields::default()
    };
    let big = PeerRecord::sign(&signing(9), ledger, &oid, many, 2, NOW_MS + 3_600_000);
    assert!(big.check(NOW_MS).is_err());
}
