//! The writer thread of the group-commit pipeline: writes each group the sequencer prepared
//! (one batch, fsynced in `sync` mode), then answers the group's callers and tells the log's
//! subscribers what became durable. A failed write fails its group and every group prepared on
//! top of it (same epoch); nothing of them is acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;

use super::Durability;
use super::sequencer::Group;
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
) {
    for group in rx {
        let result = if failed_epoch.load(Ordering::Acquire) == group.epoch {
            Err("an earlier group this one builds on failed to write".to_owned())
        } else {
            store.write(group.batch, durability == Durability::Sync).map_err(|e| e.0)
        };
        match result {
            Ok(()) => {
                log.publish(Durable {
                    size: group.head_size,
                    checkpoint_size: group.checkpoint_size,
                });
                for (reply, receipts) in group.appends {
                    let _ = reply.send(Ok(receipts));
                }
                for (reply, cp) in group.checkpoints {
                    let _ = reply.send(Ok(cp));
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
