use ed25519_dalek::SigningKey;

use super::*;
use crate::proto::record::{Endpoints, RecordFields};

const NOW: u64 = 1_800_000_000_000;
const MINUTE: u64 = 60_000;

fn record(key: u8, ledger: LedgerId, oid: &str, sequence: u64) -> PeerRecord {
    let fields = RecordFields {
        endpoints: Endpoints { quic: Some("127.0.0.1:4433".into()), ..Endpoints::default() },
        ..RecordFields::default()
    };
    let oid = Oid::parse(oid).unwrap();
    PeerRecord::sign(
        &SigningKey::from_bytes(&[key; 32]),
        ledger,
        &oid,
        fields,
        sequence,
        NOW + 60 * MINUTE,
    )
}

fn registry() -> Registry {
    Registry::new(RegistryConfig { expire_after: Duration::from_secs(180), capacity: 3 })
}

#[test]
fn a_record_is_registered_refreshed_and_replaced_by_a_newer_one() {
    let mut r = registry();
    let ledger = LedgerId::random();
    assert_eq!(r.register(record(1, ledger, "oid:onoal:org:a", 5), NOW), Ok(Registered::New));
    assert_eq!(
        r.register(record(1, ledger, "oid:onoal:org:a", 5), NOW + 1),
        Ok(Registered::Refreshed)
    );
    assert_eq!(r.get(&ledger, NOW + 1).unwrap().refreshed_ms, NOW + 1);
    assert_eq!(
        r.register(record(1, ledger, "oid:onoal:org:a", 4), NOW + 2),
        Err(RegistryError::Stale { held: 5, offered: 4 })
    );
    assert_eq!(
        r.register(record(1, ledger, "oid:onoal:org:b", 6), NOW + 3),
        Ok(Registered::Updated)
    );
    assert_eq!(r.get(&ledger, NOW + 3).unwrap().record.oid, "oid:onoal:org:b");
    assert_eq!(r.len(), 1);
}

#[test]
fn a_registry_keeps_no_record_that_does_not_check() {
    let mut r = registry();
    let ledger = LedgerId::random();
    let mut forged = record(1, ledger, "oid:onoal:org:a", 1);
    forged.endpoints.quic = Some("10.9.9.9:1".into());
    assert_eq!(r.register(forged, NOW), Err(RegistryError::Invalid(RecordError::BadSignature)));
    let expired = record(1, ledger, "oid:onoal:org:a", 1);
    assert!(matches!(
        r.register(expired, NOW + 61 * MINUTE),
        Err(RegistryError::Invalid(RecordError::Expired { .. }))
    ));
    assert!(r.is_empty());
    assert!(r.get(&ledger, NOW).is_none());
}

#[test]
fn another_key_cannot_take_a_live_ledger_id_but_may_once_it_expired() {
    let mut r = registry();
    let ledger = LedgerId::random();
    r.register(record(1, ledger, "oid:onoal:org:a", 1), NOW).unwrap();
    assert_eq!(
        r.register(record(2, ledger, "oid:onoal:org:a", 99), NOW + MINUTE),
        Err(RegistryError::KeyConflict { ledger })
    );
    let held = r.get(&ledger, NOW + MINUTE).unwrap().record.public_key;
    assert_eq!(held, SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes());
    // Not refreshed for three minutes: gone, and the id is free again.
    assert!(r.get(&ledger, NOW + 3 * MINUTE).is_none());
    assert_eq!(
        r.register(record(2, ledger, "oid:onoal:org:a", 1), NOW + 3 * MINUTE),
        Ok(Registered::New)
    );
}

#[test]
fn unrefreshed_records_expire_and_free_their_room() {
    let mut r = registry();
    let (a, b, c, d) =
        (LedgerId::random(), LedgerId::random(), LedgerId::random(), LedgerId::random());
    r.register(record(1, a, "oid:onoal:org:a", 1), NOW).unwrap();
    r.register(record(2, b, "oid:onoal:org:b", 1), NOW + MINUTE).unwrap();
    r.register(record(3, c, "oid:onoal:gov:c", 1), NOW + MINUTE).unwrap();
    assert_eq!(
        r.register(record(4, d, "oid:onoal:org:d", 1), NOW + MINUTE),
        Err(RegistryError::Full(3))
    );
    // `a` was last refreshed at NOW: at NOW + 3 min it is gone, and `d` fits.
    assert_eq!(
        r.register(record(4, d, "oid:onoal:org:d", 1), NOW + 3 * MINUTE),
        Ok(Registered::New)
    );
    assert!(r.get(&a, NOW + 3 * MINUTE).is_none());
    assert_eq!(r.len(), 3);
    assert_eq!(r.expire(NOW + 4 * MINUTE + 1), 2);
    assert_eq!(r.len(), 1);
}

#[test]
fn lookups_by_oid_prefix_match_whole_components() {
    let mut r = Registry::new(RegistryConfig::default());
    for (n, oid) in [
        (1, "oid:onoal:org:a"),
        (2, "oid:onoal:org:ab"),
        (3, "oid:onoal:org:a:x"),
        (4, "oid:onoal:gov:b"),
    ] {
        r.register(record(n, LedgerId::random(), oid, 1), NOW + u64::from(n)).unwrap();
    }
    let under = |p: &str, limit| {
        r.by_oid_prefix(&Oid::parse(p).unwrap(), NOW + 10, limit)
            .into_iter()
            .map(|e| e.record.oid.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(under("oid:onoal:org:a", 10), ["oid:onoal:org:a", "oid:onoal:org:a:x"]);
    assert_eq!(
        under("oid:onoal:org", 10),
        ["oid:onoal:org:a", "oid:onoal:org:a:x", "oid:onoal:org:ab"]
    );
    assert_eq!(under("oid:onoal", 2).len(), 2);
    assert!(under("oid:onoal:edu", 10).is_empty());
    let recent: Vec<_> = r.recent(NOW + 10, 2).into_iter().map(|e| e.record.oid.clone()).collect();
    assert_eq!(recent, ["oid:onoal:gov:b", "oid:onoal:org:a:x"]);
}
