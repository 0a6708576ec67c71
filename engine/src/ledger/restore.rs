//! Rebuilding the own log from a peer's replica after acknowledged entries were lost: the
//! restore writer and the checks that end a restore.

use crate::hash::Hash;
use crate::replica::{self, ReplicaError, ReplicaWriter};

use super::{Ledger, Mode};

/// What a finished restore holds, next to what the ledger had acknowledged and signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// Entries the own log holds now.
    pub held: u64,
    /// Size of the newest checkpoint the ledger had signed.
    pub signed: u64,
    /// Entries it had acknowledged at its last clean close.
    pub acknowledged: u64,
    /// Acknowledged entries that no peer could give back (only with `accept_loss`).
    pub lost: u64,
}

/// Why a restore cannot finish yet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The ledger was not opened for restore.
    #[error("the ledger is not open for restore")]
    NotRestoring,
    /// Fewer entries than the ledger signed.
    #[error(
        "the peer gave back {held} entries, but this ledger signed a checkpoint of {signed} (and acknowledged {acknowledged}); restore from a peer whose replica holds at least {signed} entries (restoring again continues where this stopped)"
    )]
    Short {
        /// Entries held now.
        held: u64,
        /// Signed size.
        signed: u64,
        /// Acknowledged size.
        acknowledged: u64,
    },
    /// Entries were acknowledged but never signed, and no peer had them.
    #[error(
        "the ledger holds {held} entries again, but it had acknowledged {acknowledged}; entries from {held} on were never signed and no peer gave them back. Restore from a peer that has them, or pass --accept-loss to go on without them (their receipts then name entries the ledger will reuse)"
    )]
    Unsigned {
        /// Entries held now.
        held: u64,
        /// Acknowledged size.
        acknowledged: u64,
    },
    /// The restored tree is not the one the ledger signed.
    #[error(
        "the restored tree has root {found} at size {size}, but this ledger signed {expected}; its key signed two histories"
    )]
    Diverged {
        /// Signed size.
        size: u64,
        /// Signed root.
        expected: Hash,
        /// Restored root.
        found: Hash,
    },
    /// Storage failed.
    #[error("storage error finishing the restore: {0}")]
    Storage(String),
}

impl Ledger {
    /// The writer that rebuilds the own log from a peer's verified replica (a ledger opened
    /// with [`LedgerBuilder::open_for_restore`]): it takes checkpoints signed by this ledger's
    /// key and bundles verified against them, exactly as a replica's writer does.
    ///
    /// # Errors
    /// Not opened for restore; damaged storage.
    pub fn restore_writer(&self) -> Result<ReplicaWriter, ReplicaError> {
        if self.mode != Mode::Restore {
            return Err(ReplicaError::ReadOnly);
        }
        replica::open_own_writer(&self.store, &self.logs)
    }

    /// Ends a restore: the own log must hold at least everything this ledger signed (with the
    /// same root at the signed size) and, unless `accept_loss`, everything it had acknowledged
    /// at its last clean close; then the high-water marks are updated so it opens again.
    ///
    /// # Errors
    /// [`RestoreError`] naming what is still missing.
    pub fn finish_restore(&self, accept_loss: bool) -> Result<RestoreReport, RestoreError> {
        if self.mode != Mode::Restore {
            return Err(RestoreError::NotRestoring);
        }
        let hw = self.highwater.as_ref().map(|h| h.state.lock().clone()).unwrap_or_default();
        let held = self.own.durable_size();
        if let Some(cp) = &hw.signed {
            if held < cp.size {
                return Err(RestoreError::Short { held, signed: cp.size, acknowledged: hw.head });
            }
            let root =
                self.own.root_at(cp.size).map_err(|e| RestoreError::Storage(e.to_string()))?;
            if root != cp.root {
                return Err(RestoreError::Diverged {
                    size: cp.size,
                    expected: cp.root,
                    found: root,
                });
            }
        }
        if held < hw.head && !accept_loss {
            return Err(RestoreError::Unsigned { held, acknowledged: hw.head });
        }
        let report = RestoreReport {
            held,
            signed: hw.signed_size(),
            acknowledged: hw.head,
            lost: hw.head.saturating_sub(held),
        };
        self.store.flush_all().map_err(|e| RestoreError::Storage(e.0))?;
        if let Some(file) = &self.highwater {
            let mut state = file.state.lock();
            let mut next = state.clone();
            next.head = held;
            if let Some(cp) =
                self.own.latest_checkpoint().map_err(|e| RestoreError::Storage(e.to_string()))?
                && cp.size > next.signed_size()
            {
                next.signed = Some(cp);
            }
            next.write(&file.dir).map_err(|e| RestoreError::Storage(e.to_string()))?;
            *state = next;
        }
        Ok(report)
    }
}
