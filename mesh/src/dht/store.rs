//! Provider records a node holds for others: each under a key the record's ledger owns (its
//! ledger id or a prefix of its OID), checked before it is kept, bounded per key and in all,
//! and dropped when it expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use onoal_engine::Oid;

use super::key::Key;
use crate::proto::record::{PeerRecord, oid_prefixes};

/// Why a record was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreRefusal {
    /// The record does not verify, or expired.
    Invalid,
    /// The key is neither the record's ledger id nor a prefix of its OID.
    NotOwned,
    /// The key holds as many records as it may, or the store is full.
    Full,
    /// Not newer than the record held for that ledger.
    Stale,
    /// The sender asked too often.
    Busy,
}

impl StoreRefusal {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotOwned => "not_owned",
            Self::Full => "full",
            Self::Stale => "stale",
            Self::Busy => "busy",
        }
    }
}

struct Held {
    record: PeerRecord,
    until: Instant,
}

/// The records held for others.
pub struct ProviderStore {
    by_key: HashMap<Key, Vec<Held>>,
    total: usize,
    per_key: usize,
    capacity: usize,
    ttl: Duration,
}

/// Whether `key` is one the record may be published under: its ledger id, a prefix of its
/// OID, or a registered asset it announces.
pub fn owns(record: &PeerRecord, key: &Key) -> bool {
    if Key::of_ledger(&record.ledger_id) == *key
        || record.assets.iter().any(|a| Key::of_asset(a) == *key)
    {
        return true;
    }
    Oid::parse(&record.oid)
        .is_ok_and(|oid| oid_prefixes(&oid).iter().any(|p| Key::of_oid(p) == *key))
}

impl ProviderStore {
    /// An empty store: at most `per_key` records per key, `capacity` in all, each kept `ttl`
    /// (or until the record itself expires, if sooner).
    pub fn new(per_key: usize, capacity: usize, ttl: Duration) -> Self {
        Self { by_key: HashMap::new(), total: 0, per_key, capacity, ttl }
    }

    /// Stores `record` under `key`. Cheap checks first: ownership, room, sequence; the
    /// signature last.
    ///
    /// # Errors
    /// [`StoreRefusal`].
    pub fn add(
        &mut self,
        key: Key,
        record: PeerRecord,
        now: Instant,
        now_ms: u64,
    ) -> Result<(), StoreRefusal> {
        if !owns(&record, &key) {
            return Err(StoreRefusal::NotOwned);
        }
        let held = self.by_key.get(&key);
        let existing =
            held.and_then(|h| h.iter().position(|x| x.record.ledger_id == record.ledger_id));
        match (existing, held) {
            (Some(i), Some(h)) => {
                let old = &h[i].record;
                if *old == record {
                    // A republish of the record held (verified when it was stored): keep it longer.
                    let until = self.keep_until(&record, now, now_ms);
                    if let Some(list) = self.by_key.get_mut(&key) {
                        list[i].until = until;
                    }
                    return Ok(());
                }
                if old.public_key == record.public_key && old.sequence >= record.sequence {
                    return Err(StoreRefusal::Stale);
                }
            }
            (None, h) => {
                let live = h.map_or(0, |h| h.iter().filter(|x| x.until > now).count());
                if live >= self.per_key || self.total >= self.capacity {
                    self.expire(now);
                    let live = self.by_key.get(&key).map_or(0, Vec::len);
                    if live >= self.per_key || self.total >= self.capacity {
                        return Err(StoreRefusal::Full);
                    }
                }
            }
            (Some(_), None) => {}
        }
        if record.check(now_ms).is_err() {
            return Err(StoreRefusal::Invalid);
        }
        let until = self.keep_until(&record, now, now_ms);
        let list = self.by_key.entry(key).or_default();
        match existing {
            // A different key for the same ledger under one DHT key: the newer sequence wins,
            // and the reader's record book decides between keys (a DHT node cannot).
            Some(i) => list[i] = Held { record, until },
            None => {
                list.push(Held { record, until });
                self.total += 1;
            }
        }
        Ok(())
    }

    /// How long a record is kept: the TTL, or to the record's own expiry if sooner.
    fn keep_until(&self, record: &PeerRecord, now: Instant, now_ms: u64) -> Instant {
        now + self.ttl.min(Duration::from_millis(record.expires_ms.saturating_sub(now_ms)))
    }

    /// The live records under `key` (at most `per_key`).
    pub fn get(&self, key: &Key, now: Instant) -> Vec<PeerRecord> {
        self.by_key
            .get(key)
            .map(|h| h.iter().filter(|x| x.until > now).map(|x| x.record.clone()).collect())
            .unwrap_or_default()
    }

    /// Every key that holds records.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.by_key.keys()
    }

    /// Drops expired records.
    pub fn expire(&mut self, now: Instant) {
        let mut total = 0;
        self.by_key.retain(|_, list| {
            list.retain(|x| x.until > now);
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}
