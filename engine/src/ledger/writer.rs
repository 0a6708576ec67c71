//! The writer thread of the group-commit pipeline: writes each group the sequencer prepared
//! (one batch, fsynced in `sync` mode), then answers the group's callers and tells the log's
//! subscribers what became durable. A failed write fails its group and every group prepared on
//! top of it (same epoch); nothing of them is acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;

use super::sequencer::Group;
use super::{Durability, HighWaterFile};
use crate::error::{AppendError, ReadError};
use crate::log::Durable;
use crate::log::state::LogState;
use crate::store::Store;

pub(crate) fn run(
    store: &Store,
    log: &LogState,
    durability: Durability,
    rx: &Receiver<Group>,
    failed_epoch: &AtomicU64,
    highwater: &HighWaterFile,
) {
    for group in rx {
        // A signed checkpoint is fsynced in every mode: it may be handed out once durable, and
        // the ledger must never come back below it.
        let sync = durability == Durability::Sync || group.new_checkpoint.is_some();
        let result = if failed_epoch.load(Ordering::Acquire) == group.epoch {
            Err("an earlier group this one builds on failed to write".to_owned())
        } else {
            store.write(group.batch, sync).map_err(|e| e.0)
        };
        match result {
            Ok(()) => {
                // Recorded outside RocksDB before the checkpoint is handed out. The group is
                // durable either way; only the checkpoint's callers hear of a failure here.
                let hw_error =
                    group.new_checkpoint.as_ref().and_then(|cp| highwater.signed(cp).err());
                if let Some(e) = &hw_error {
                    tracing::error!(error = %e, "recording a signed checkpoint in the high-water file failed");
                }
                log.publish(Durable {
                    size: group.head_size,
                    checkpoint_size: group.checkpoint_size,
                });
                for (reply, receipts) in group.appends {
                    let _ = reply.send(Ok(receipts));
                }
                for (reply, cp) in group.checkpoints {
                    let _ = reply.send(match &hw_error {
                        None => Ok(cp),
                        Some(e) => Err(ReadError::Storage(format!(
                            "the checkpoint is stored, but recording it in the high-water file failed: {e}"
                        ))),
                    });
                }
            }
            Err(msg) => {
                tracing::error!(error = %msg, "group commit failed; nothing of it was acknowledged");
                failed_epoch.store(group.epoch, Ordering::Release);
                for (reply, _) in group.appends {
                    let _ = reply.send(Err(AppendError::Storage(msg.clone())));
                }
                for (reply, _) in group.checkpoints {
                    let _ = reply.send(Err(ReadError::Storage(msg.clone())));
                }
            }
        }
    }
}
