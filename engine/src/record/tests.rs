use super::codec::push_varint;
use super::*;
use crate::hash::leaf_hash;

fn issuer_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

fn sample() -> Entry {
    Entry {
        seq: 300,
        timestamp_ms: 1_700_000_000_000,
        content: NewEntry::new(
            Name::stream("orders/eu").unwrap(),
            Name::entry_type("order.created").unwrap(),
            b"hello".to_vec(),
        )
        .with_subject(Oid::parse("oid:onoal:customer:42").unwrap()),
        prev_hash: Hash([7; 32]),
    }
}

#[test]
fn names_and_oids_are_validated() {
    assert!(Name::stream("a").is_ok());
    assert!(Name::stream(&"a".repeat(128)).is_ok());
    assert!(Name::stream(&"a".repeat(129)).is_err());
    assert!(Name::stream("").is_err());
    assert!(Name::stream("Upper").is_err());
    assert!(Name::entry_type("white space").is_err());
    assert!(Oid::parse("oid:onoal:org:myorg").is_ok());
    for bad in ["oid:", "oid:a::b", "onoal:org", "oid:A", "oid:a.b", "oid:a:"] {
        assert!(Oid::parse(bad).is_err(), "{bad}");
    }
    assert!(Oid::parse(&format!("oid:{}", "a".repeat(252))).is_err());
}

#[test]
fn oid_distance() {
    let a = Oid::parse("oid:onoal:org:a").unwrap();
    let b = Oid::parse("oid:onoal:org:b:x").unwrap();
    assert_eq!(a.distance(&b), 3);
    assert_eq!(a.distance(&a), 0);
}

#[test]
fn encoding_is_pinned_byte_by_byte() {
    let e = sample();
    let bytes = e.leaf_data();
    // version, "orders/eu", "order.created", Some(subject), None, payload, no refs, no
    // signature, then seq=300 (ac 02), timestamp (6 bytes), prev_hash.
    assert_eq!(bytes[0], 0x01);
    assert_eq!(bytes[1], 9);
    assert_eq!(&bytes[2..11], b"orders/eu");
    assert_eq!(bytes[11], 13);
    assert_eq!(&bytes[12..25], b"order.created");
    assert_eq!(bytes[25], 1);
    assert_eq!(bytes[26], 21);
    assert_eq!(&bytes[27..48], b"oid:onoal:customer:42");
    assert_eq!(&bytes[48..56], &[0, 5, b'h', b'e', b'l', b'l', b'o', 0]);
    assert_eq!(bytes[56], 0, "no signature");
    assert_eq!(&bytes[57..59], &[0xac, 0x02]);
    assert_eq!(&bytes[59..65], &[0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31]);
    assert_eq!(&bytes[65..], &[7u8; 32]);
    assert_eq!(Entry::decode(&bytes).unwrap(), e);
    assert_eq!(e.leaf_hash(), leaf_hash(&bytes));
}

#[test]
fn sealing_a_prepared_entry_equals_encoding_the_entry() {
    let e = sample();
    let prepared = e.content.clone().sign(&issuer_key_from_seed(&[2; 32])).prepare();
    let mut buf = Vec::new();
    for (seq, ts) in [(0u64, 0u64), (127, 128), (300, 1_700_000_000_000), (u64::MAX, u64::MAX)] {
        let h = prepared.seal(seq, ts, &e.prev_hash, &mut buf);
        let full = Entry {
            seq,
            timestamp_ms: ts,
            content: prepared.content.clone(),
            prev_hash: e.prev_hash,
        };
        assert_eq!(buf, full.leaf_data());
        assert_eq!(h, leaf_hash(&buf));
        assert_eq!(Entry::decode(&buf).unwrap(), full);
    }
}

#[test]
fn varint_matches_postcard() {
    for v in [0u64, 1, 127, 128, 300, 16383, 16384, u32::MAX as u64, u64::MAX] {
        let mut ours = Vec::new();
        push_varint(&mut ours, v);
        assert_eq!(ours, postcard::to_allocvec(&v).unwrap(), "{v}");
    }
}

#[test]
fn decode_rejects_bad_bytes() {
    let bytes = sample().leaf_data();
    assert_eq!(Entry::decode(&[]), Err(DecodeError::Empty));
    let mut v2 = bytes.clone();
    v2[0] = 2;
    assert_eq!(Entry::decode(&v2), Err(DecodeError::UnknownVersion(2)));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(Entry::decode(&trailing), Err(DecodeError::TrailingBytes(1)));
    // Overlong varint for seq: ac 82 00 decodes to 300 but is not canonical.
    let mut overlong = bytes[..57].to_vec();
    overlong.extend_from_slice(&[0xac, 0x82, 0x00]);
    overlong.extend_from_slice(&bytes[59..]);
    assert_eq!(Entry::decode(&overlong), Err(DecodeError::NotCanonical));
    for cut in 0..bytes.len() {
        assert!(Entry::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
}

#[test]
fn issuer_signature_verifies_and_detects_changes() {
    let key = issuer_key_from_seed(&[9; 32]);
    let signed = sample().content.sign(&key);
    assert!(signed.validate(1 << 20).is_ok());
    let mut changed = signed.clone();
    changed.payload.push(1);
    assert_eq!(changed.validate(1 << 20), Err(InvalidInput::BadIssuerSignature));
    assert!(matches!(signed.validate(2), Err(InvalidInput::PayloadTooLarge { len: 5, max: 2 })));
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn name() -> impl Strategy<Value = Name> {
        "[a-z0-9._/-]{1,128}".prop_map(|s| Name::stream(&s).unwrap())
    }

    fn oid() -> impl Strategy<Value = Oid> {
        proptest::collection::vec("[a-z0-9_-]{1,12}", 1..6)
            .prop_map(|c| Oid::parse(&format!("oid:{}", c.join(":"))).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn entry_round_trips_and_prepared_seal_agrees(
            stream in name(), ty in name(), subject in proptest::option::of(oid()),
            issuer in proptest::option::of(oid()),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
            refs in proptest::collection::vec((any::<[u8; 16]>(), any::<u64>(), any::<[u8; 32]>()), 0..3),
            seq in any::<u64>(), ts in any::<u64>(), prev in any::<[u8; 32]>(), signed in any::<bool>(),
        ) {
            let mut content = NewEntry::new(stream, ty, payload);
            content.subject = subject;
            content.issuer = issuer;
            content.refs = refs.into_iter().map(|(ledger_id, seq, leaf_hash)| EntryRef { ledger_id: LedgerId::from_bytes(ledger_id), seq, leaf_hash: Hash(leaf_hash) }).collect();
            if signed {
                content = content.sign(&issuer_key_from_seed(&[4; 32]));
            }
            let e = Entry { seq, timestamp_ms: ts, content, prev_hash: Hash(prev) };
            let bytes = e.leaf_data();
            prop_assert_eq!(Entry::decode(&bytes).unwrap(), e.clone());
            let mut sealed = Vec::new();
            let h = e.content.clone().prepare().seal(seq, ts, &Hash(prev), &mut sealed);
            prop_assert_eq!(&sealed, &bytes);
            prop_assert_eq!(h, leaf_hash(&bytes));
        }

        /// Arbitrary bytes never panic the decoder, and whatever it accepts is canonical.
        #[test]
        fn decode_accepts_only_canonical_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut v = vec![LEAF_VERSION_1];
            v.extend_from_slice(&bytes);
            for input in [&bytes[..], &v[..]] {
                if let Ok(e) = Entry::decode(input) {
                    prop_assert_eq!(e.leaf_data(), input.to_vec());
                }
            }
        }
    }
}
