//! `serve --verify-refs`: the seed's afterAppend hook. The node follows its own log as entries
//! become durable and checks the references of each new entry that carries any (as `onoal ref
//! check` does: from a local replica, else through the mesh), and records the outcome in the
//! `messages` table under `refcheck/ || seq` (docs/design/mesh.md). `onoal ref list` and
//! `GET /mesh/refs` show the records; `onoal ref check SEQ` re-checks one and records it again.
//!
//! Where it starts: from where it stopped (`refcheck:next`), or, the first time, at the log's
//! size then, so enabling it does not check the whole history (ask for that with `ref check`).

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use onoal_engine::time::now_ms;
use onoal_engine::{AuxTable, Ledger};

use super::Node;
use super::routed::{RefCheck, RemoteError};

/// Key prefix of a record: `refcheck/ || seq (u64 BE)` (17 bytes; outbox rows are 16-byte
/// message ids, so the two never collide).
const RECORD_PREFIX: &[u8] = b"refcheck/";
/// Key of the next seq to look at (u64 BE).
const POSITION_KEY: &[u8] = b"refcheck:next";
/// Entries read per step.
const CHUNK: u64 = 1024;

/// The recorded outcome of checking one entry's references.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefCheckRecord {
    /// The entry of this ledger.
    pub seq: u64,
    /// When the references were checked, ms since the epoch.
    pub checked_ms: u64,
    /// Whether every reference verified.
    pub all_verified: bool,
    /// One row per reference, in the entry's order.
    pub refs: Vec<RefCheck>,
}

fn record_key(seq: u64) -> Vec<u8> {
    let mut k = RECORD_PREFIX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Whether a key of the `messages` table belongs to the reference checker (not the outbox).
pub(crate) fn is_ref_check_key(key: &[u8]) -> bool {
    key.starts_with(RECORD_PREFIX) || key == POSITION_KEY
}

/// The recorded outcomes, newest entry first, at most `limit`.
///
/// # Errors
/// A storage error, as text.
pub fn ref_check_records(ledger: &Ledger, limit: usize) -> Result<Vec<RefCheckRecord>, String> {
    let rows = ledger.aux_scan(AuxTable::Messages).map_err(|e| e.to_string())?;
    let mut out: Vec<RefCheckRecord> = rows
        .iter()
        .filter(|(k, _)| k.len() == RECORD_PREFIX.len() + 8 && k.starts_with(RECORD_PREFIX))
        .filter_map(|(_, v)| serde_json::from_slice(v).ok())
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.seq));
    out.truncate(limit);
    Ok(out)
}

impl Node {
    /// Checks the references of entry `seq` and records the outcome.
    ///
    /// # Errors
    /// [`RemoteError::Local`] when the entry cannot be read.
    pub async fn check_and_record_refs(&self, seq: u64) -> Result<RefCheckRecord, RemoteError> {
        let refs = self.check_refs(seq).await?;
        let record = RefCheckRecord {
            seq,
            checked_ms: now_ms(),
            all_verified: refs.iter().all(|r| r.status == "verified"),
            refs,
        };
        let (ledger, value) = (self.inner.ledger.clone(), serde_json::to_vec(&record));
        if let Ok(value) = value
            && !ledger.is_read_only()
        {
            let stored = self
                .blocking(move || ledger.aux_put(AuxTable::Messages, &record_key(seq), &value))
                .await;
            if !matches!(stored, Ok(Ok(()))) {
                tracing::warn!(seq, "could not record a reference check");
            }
        }
        Ok(record)
    }

    /// Starts the afterAppend reference checker (`serve --verify-refs`).
    pub fn spawn_ref_verifier(&self) -> JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move { node.verify_refs_forever().await })
    }

    async fn verify_refs_forever(self) {
        let log = self.inner.ledger.log().clone();
        let mut durable = self.durable_watch(&log);
        let ledger = self.inner.ledger.clone();
        let stored = ledger.aux_get(AuxTable::Messages, POSITION_KEY).ok().flatten();
        let mut next = stored
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or_else(|| log.durable_size(), u64::from_be_bytes);
        loop {
            let size = log.durable_size();
            while next < size {
                let end = (next + CHUNK).min(size);
                let reader = log.clone();
                let with_refs = self
                    .blocking(move || {
                        reader.range(next, end).map(|es| {
                            es.iter()
                                .filter(|e| !e.entry.content.refs.is_empty())
                                .map(|e| e.entry.seq)
                                .collect::<Vec<_>>()
                        })
                    })
                    .await;
                let seqs = match with_refs {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the reference checker cannot read the log");
                        break;
                    }
                    Err(_) => return,
                };
                for seq in seqs {
                    match self.check_and_record_refs(seq).await {
                        Ok(r) if !r.all_verified => tracing::warn!(
                            seq,
                            "an entry's references do not all verify: `onoal ref list` shows which"
                        ),
                        Ok(_) => tracing::debug!(seq, "references verified"),
                        Err(e) => tracing::warn!(seq, error = %e, "cannot check references"),
                    }
                }
                next = end;
                let ledger = ledger.clone();
                let _ = self
                    .blocking(move || {
                        ledger.aux_put(AuxTable::Messages, POSITION_KEY, &end.to_be_bytes())
                    })
                    .await;
            }
            if durable.changed().await.is_err() {
                return;
            }
        }
    }
}
