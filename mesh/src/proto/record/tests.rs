use ed25519_dalek::SigningKey;

use super::*;

const NOW: u64 = 1_800_000_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn record(key_n: u8, ledger: LedgerId, sequence: u64) -> PeerRecord {
    let fields = RecordFields {
        endpoints: Endpoints { quic: Some("127.0.0.1:4433".into()), ..Endpoints::default() },
        capabilities: vec!["sync".into()],
        metadata: Metadata { name: Some("a".into()), ..Metadata::default() },
        assets: Vec::new(),
    };
    let oid = Oid::parse("oid:onoal:org:a").unwrap();
    PeerRecord::sign(&key(key_n), ledger, &oid, fields, sequence, NOW + 60_000)
}

#[test]
fn a_record_is_checked_field_by_field() {
    let ledger = LedgerId::random();
    let good = record(1, ledger, 1);
    assert_eq!(good.check(NOW).unwrap().as_str(), "oid:onoal:org:a");

    let mut endpoint = good.clone();
    endpoint.endpoints.quic = Some("10.0.0.1:1".into());
    assert_eq!(endpoint.check(NOW), Err(RecordError::BadSignature));
    let mut other_key = good.clone();
    other_key.public_key = key(2).verifying_key().to_bytes();
    assert_eq!(other_key.check(NOW), Err(RecordError::BadSignature));
    let mut zero_key = good.clone();
    zero_key.public_key = [0; 32];
    assert_eq!(zero_key.check(NOW), Err(RecordError::BadSignature));
    assert!(matches!(good.check(NOW + 60_000), Err(RecordError::Expired { .. })));
    let mut oid = good.clone();
    oid.oid = "not an oid".into();
    assert!(matches!(oid.check(NOW), Err(RecordError::BadOid(_))));
    let mut big = good.clone();
    big.metadata.description = Some("x".repeat(MAX_FIELD + 1));
    assert!(matches!(big.check(NOW), Err(RecordError::TooLarge(_))));
    let mut many = good;
    many.capabilities = vec!["c".into(); MAX_CAPABILITIES + 1];
    assert!(matches!(many.check(NOW), Err(RecordError::TooLarge(_))));
}

#[test]
fn prefixes_run_from_the_oid_to_its_root() {
    let oid = Oid::parse("oid:onoal:org:a").unwrap();
    assert_eq!(oid_prefixes(&oid), ["oid:onoal:org:a", "oid:onoal:org", "oid:onoal"]);
}

#[test]
fn newer_sequences_replace_older_ones_of_the_same_key() {
    let ledger = LedgerId::random();
    let mut book = RecordBook::new(10);
    assert_eq!(book.offer(record(1, ledger, 5), Source::Dht, NOW), Offered::New);
    assert_eq!(book.offer(record(1, ledger, 4), Source::Dht, NOW), Offered::Unchanged);
    assert_eq!(book.offer(record(1, ledger, 5), Source::Dht, NOW), Offered::Unchanged);
    assert_eq!(book.offer(record(1, ledger, 6), Source::Gossip, NOW), Offered::Updated);
    assert_eq!(book.get(&ledger).unwrap().record.sequence, 6);
    // A better source for the same key upgrades the source, even with an older sequence.
    assert_eq!(book.offer(record(1, ledger, 1), Source::Registry, NOW), Offered::Updated);
    let known = book.get(&ledger).unwrap();
    assert_eq!((known.source, known.record.sequence), (Source::Registry, 6));
}

#[test]
fn a_discovered_key_never_takes_over_a_higher_sources_ledger() {
    let ledger = LedgerId::random();
    let mut book = RecordBook::new(10);
    book.offer(record(1, ledger, 1), Source::Manual, NOW);
    for source in [Source::Bootstrap, Source::Registry, Source::Dns, Source::Gossip, Source::Dht] {
        let offered = book.offer(record(2, ledger, 99), source, NOW);
        assert!(
            matches!(offered, Offered::KeyConflict { source: Source::Manual, .. }),
            "{offered:?}"
        );
    }
    assert_eq!(book.get(&ledger).unwrap().record.public_key, key(1).verifying_key().to_bytes());

    let other = LedgerId::random();
    book.offer(record(3, other, 1), Source::Dht, NOW);
    assert_eq!(book.offer(record(4, other, 1), Source::Dns, NOW), Offered::Updated);
    assert_eq!(book.get(&other).unwrap().source, Source::Dns);
}

#[test]
fn invalid_records_are_never_stored_and_the_book_is_bounded() {
    let mut book = RecordBook::new(2);
    let mut forged = record(1, LedgerId::random(), 1);
    forged.sequence = 2;
    assert!(matches!(book.offer(forged, Source::Dht, NOW), Offered::Invalid(_)));
    assert!(book.is_empty());
    book.offer(record(1, LedgerId::random(), 1), Source::Dht, NOW);
    book.offer(record(2, LedgerId::random(), 1), Source::Dht, NOW);
    assert_eq!(book.offer(record(3, LedgerId::random(), 1), Source::Dht, NOW), Offered::Unchanged);
    assert_eq!(book.len(), 2);
    assert_eq!(book.offer(record(4, LedgerId::random(), 1), Source::Manual, NOW), Offered::New);
    let prefix = Oid::parse("oid:onoal:org").unwrap();
    assert_eq!(book.by_oid_prefix(&prefix).count(), 3);
    let unrelated = Oid::parse("oid:onoal:gov").unwrap();
    assert_eq!(book.by_oid_prefix(&unrelated).count(), 0);
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_make_a_usable_record(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        if let Ok(record) = postcard::from_bytes::<PeerRecord>(&bytes) {
            // Whatever decodes, a record no one signed never checks.
            proptest::prop_assert!(record.check(NOW).is_err());
        }
    }

    #[test]
    fn records_round_trip(seq in 0u64..u64::MAX, name in "[a-z ]{0,40}") {
        let mut fields = RecordFields::default();
        fields.metadata.name = Some(name);
        let oid = Oid::parse("oid:onoal:org:a").unwrap();
        let r = PeerRecord::sign(&key(1), LedgerId::random(), &oid, fields, seq, NOW + 1);
        let back: PeerRecord = postcard::from_bytes(&r.encode()).unwrap();
        proptest::prop_assert!(back.check(NOW).is_ok());
        proptest::prop_assert_eq!(back, r);
    }
}
