//! The registry: a directory service where ledgers register their signed peer records and
//! others look them up by ledger id or OID prefix (the seed's registry-based discovery).
//!
//! [`Registry`] is the sans-I/O core: records in, lookups out, time as an argument. It checks
//! every record (signature, expiry, limits) before it keeps it, so a registry cannot forge a
//! peer, and a client checks every record it gets back again, so a forging registry is caught
//! (`RecordBook::offer`). [`server`] serves the core over HTTP (`onoal registry serve`);
//! [`client`] is what a node uses (`onoal serve --registry URL`).
//!
//! A record stays while its ledger refreshes it: one not re-registered within
//! [`RegistryConfig::expire_after`] (three of the seed's refreshIntervals by default), or past
//! its own expiry, is gone. The registry keeps records in memory only: after a restart every
//! live ledger is back within one refresh interval (docs/design/mesh.md).

use std::collections::BTreeMap;
use std::time::Duration;

use onoal_engine::{LedgerId, Oid};

use crate::proto::record::{PeerRecord, RecordError, oid_is_under};

pub mod client;
pub mod server;

/// How often a node re-registers its record by default (the seed's refreshInterval).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Most records one lookup returns.
pub const MAX_LOOKUP: usize = 256;

/// Settings of a registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// A record not refreshed for this long is dropped.
    pub expire_after: Duration,
    /// Most ledgers held; registrations of new ledgers beyond it are refused until some expire.
    pub capacity: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { expire_after: DEFAULT_REFRESH_INTERVAL * 3, capacity: 100_000 }
    }
}

/// A record the registry holds, and when its ledger last registered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The record, as signed by its ledger.
    pub record: PeerRecord,
    /// Last registration (ms since the epoch).
    pub refreshed_ms: u64,
}

/// What a registration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// A ledger the registry did not hold.
    New,
    /// A newer record of a held ledger.
    Updated,
    /// The same record again: its refresh time moved.
    Refreshed,
}

impl Registered {
    /// Name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Updated => "updated",
            Self::Refreshed => "refreshed",
        }
    }
}

/// Why a registration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The record does not check (signature, expiry, OID, limits).
    #[error("the record was refused: {0}")]
    Invalid(#[from] RecordError),
    /// The registry holds a newer record of this ledger.
    #[error("the registry holds sequence {held} of this ledger, newer than {offered}")]
    Stale {
        /// Held sequence.
        held: u64,
        /// Offered sequence.
        offered: u64,
    },
    /// Another key holds this ledger id, and its record is live.
    #[error(
        "ledger {ledger} is registered with another key; it can be taken over only once that record expires"
    )]
    KeyConflict {
        /// The ledger.
        ledger: LedgerId,
    },
    /// The registry is full.
    #[error("the registry holds its maximum of {0} ledgers")]
    Full(usize),
}

/// A record is live while it is within its own expiry and was refreshed within `expire_after`.
fn is_live(entry: &Entry, expire_after: Duration, now_ms: u64) -> bool {
    let expire_after = u64::try_from(expire_after.as_millis()).unwrap_or(u64::MAX);
    entry.record.expires_ms > now_ms && entry.refreshed_ms.saturating_add(expire_after) > now_ms
}

/// The registry's state: records by ledger id.
#[derive(Debug)]
pub struct Registry {
    entries: BTreeMap<LedgerId, Entry>,
    config: RegistryConfig,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: RegistryConfig) -> Self {
        Self { entries: BTreeMap::new(), config }
    }

    fn live(&self, entry: &Entry, now_ms: u64) -> bool {
        is_live(entry, self.config.expire_after, now_ms)
    }

    /// Registers `record` at `now_ms`. Cheap refusals come first (a key conflict, a stale
    /// sequence, no room), the signature check last.
    ///
    /// # Errors
    /// [`RegistryError`]: nothing was stored.
    pub fn register(
        &mut self,
        record: PeerRecord,
        now_ms: u64,
    ) -> Result<Registered, RegistryError> {
        let held = self
            .entries
            .get(&record.ledger_id)
            .filter(|e| self.live(e, now_ms))
            .map(|e| (e.record.public_key, e.record.sequence));
        if let Some((key, sequence)) = held {
            if key != record.public_key {
                return Err(RegistryError::KeyConflict { ledger: record.ledger_id });
            }
            if record.sequence < sequence {
                return Err(RegistryError::Stale { held: sequence, offered: record.sequence });
            }
        } else if self.entries.len() >= self.config.capacity {
            self.expire(now_ms);
            if self.entries.len() >= self.config.capacity {
                return Err(RegistryError::Full(self.config.capacity));
            }
        }
        record.check(now_ms)?;
        let outcome = match held {
            None => Registered::New,
            Some((_, sequence)) if record.sequence > sequence => Registered::Updated,
            Some(_) => Registered::Refreshed,
        };
        let ledger = record.ledger_id;
        match self.entries.get_mut(&ledger) {
            Some(e) if outcome == Registered::Refreshed => e.refreshed_ms = now_ms,
            _ => {
                self.entries.insert(ledger, Entry { record, refreshed_ms: now_ms });
            }
        }
        Ok(outcome)
    }

    /// The live record of `ledger`.
    pub fn get(&self, ledger: &LedgerId, now_ms: u64) -> Option<&Entry> {
        self.entries.get(ledger).filter(|e| self.live(e, now_ms))
    }

    /// Live records whose OID lies under `prefix` (component-wise; the prefix itself
    /// included), at most `limit`, ordered by OID.
    pub fn by_oid_prefix(&self, prefix: &Oid, now_ms: u64, limit: usize) -> Vec<&Entry> {
        let mut found: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| self.live(e, now_ms))
            .filter(|e| oid_is_under(&e.record.oid, prefix))
            .collect();
        found.sort_by(|a, b| a.record.oid.cmp(&b.record.oid));
        found.truncate(limit);
        found
    }

    /// Live records that announce the registered asset `asset`, at most `limit`, newest
    /// first.
    pub fn by_asset(&self, asset: &str, now_ms: u64, limit: usize) -> Vec<&Entry> {
        let mut found: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| self.live(e, now_ms))
            .filter(|e| e.record.assets.iter().any(|a| a == asset))
            .collect();
        found.sort_by_key(|e| std::cmp::Reverse(e.record.sequence));
        found.truncate(limit);
        found
    }

    /// The `limit` most recently refreshed live records (a joining node's first peers).
    pub fn recent(&self, now_ms: u64, limit: usize) -> Vec<&Entry> {
        let mut all: Vec<&Entry> = self.entries.values().filter(|e| self.live(e, now_ms)).collect();
        all.sort_by(|a, b| {
            b.refreshed_ms.cmp(&a.refreshed_ms).then(a.record.ledger_id.cmp(&b.record.ledger_id))
        });
        all.truncate(limit);
        all
    }

    /// Drops records not refreshed in time or past their expiry; returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        let expire_after = self.config.expire_after;
        self.entries.retain(|_, e| is_live(e, expire_after, now_ms));
        before - self.entries.len()
    }

    /// Ledgers held (live or not yet expired by [`Self::expire`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;
