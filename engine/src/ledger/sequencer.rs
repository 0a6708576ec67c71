//! The group-commit pipeline behind `append`: the sequencer thread.
//!
//! The *sequencer* drains the command channel into a group (up to 8,192 entries or 32 MiB),
//! assigns seqs and one timestamp, seals each prepared entry (the last SHA-256 blocks: seq,
//! time, chain link), pushes the leaves into the right edge of the tree, signs a checkpoint
//! when due, and builds ONE batch. The *writer* ([`super::writer`]) writes that batch (fsync
//! in `sync` mode) and only then answers the group's callers. While the writer waits for the
//! disk, the sequencer prepares the next group.
//!
//! A failed write fails that group and every group prepared on top of it (same epoch); the
//! sequencer then reloads its [`WriterHead`] from disk, so the in-memory state never runs ahead
//! of what is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{AppendReply, CheckpointReply, Receipt};
use crate::checkpoint::{Checkpoint, NoteSigner, SignedCheckpoint};
use crate::error::ReadError;
use crate::log::state::{LogState, WriterHead};
use crate::record::PreparedEntry;
use crate::store::keys::{self, Cf, OWN_LOG};
use crate::store::postings::Postings;
use crate::store::{Batch, Store};
use crate::time::now_ms;

pub(crate) enum Command {
    Append { entries: Vec<PreparedEntry>, reply: AppendReply },
    Checkpoint { reply: CheckpointReply },
}

/// One prepared group, handed from the sequencer to the writer.
pub(crate) struct Group {
    pub(crate) epoch: u64,
    /// Tree size once this group is durable.
    pub(crate) head_size: u64,
    /// Size of the newest checkpoint once this group is durable.
    pub(crate) checkpoint_size: Option<u64>,
    /// A checkpoint signed in this group (it must be durable before it is handed out).
    pub(crate) new_checkpoint: Option<SignedCheckpoint>,
    pub(crate) batch: Batch,
    pub(crate) appends: Vec<(AppendReply, Vec<Receipt>)>,
    pub(crate) checkpoints: Vec<(CheckpointReply, SignedCheckpoint)>,
}

/// Room for a group's batch, so it is allocated once and never regrows (a growing batch
/// copied itself at every doubling: 3 % of an append's CPU, and fresh pages each time): per
/// entry its leaf, key and RocksDB's record header; the tiles the group writes (one level-0
/// tile per 256 entries, the partial one at the right edge, and one upper tile: more only
/// when a group completes tiles of several levels, then the batch grows once); the posting
/// lists, the head and a checkpoint.
fn batch_bytes(appends: &[(Vec<PreparedEntry>, AppendReply)]) -> usize {
    const RECORD: usize = 12 + 16;
    let (mut entries, mut leaves) = (0usize, 0usize);
    for (batch, _) in appends {
        entries += batch.len();
        leaves += batch.iter().map(|e| e.leaf_len_max() + RECORD).sum::<usize>();
    }
    if entries == 0 {
        return 4096;
    }
    let tiles = entries / crate::tile::TILE_WIDTH + 2;
    leaves
        + tiles * (crate::tile::encoded_len(crate::tile::TILE_WIDTH) + RECORD)
        + entries * 8
        + 8192
}

/// Most entries one group commits.
const MAX_GROUP_ENTRIES: usize = 8192;
/// Most payload bytes one group commits.
const MAX_GROUP_BYTES: usize = 32 << 20;

pub(crate) struct Sequencer {
    pub(crate) store: Arc<Store>,
    pub(crate) log: Arc<LogState>,
    pub(crate) state: WriterHead,
    pub(crate) signer: NoteSigner,
    pub(crate) interval: Duration,
    /// Bumped after a failed write; groups of a failed epoch are failed by the writer.
    pub(crate) epoch: u64,
    pub(crate) failed_epoch: Arc<AtomicU64>,
    pub(crate) group_tx: Sender<Group>,
    pub(crate) leaf_buf: Vec<u8>,
}

impl Sequencer {
    pub(crate) fn run(mut self, rx: &Receiver<Command>) {
        let mut last_checkpoint_at = Instant::now();
        loop {
            let unsigned =
                self.state.last_checkpoint.as_ref().map(|c| c.size) != Some(self.state.head.size);
            let wait = if unsigned {
                self.interval.saturating_sub(last_checkpoint_at.elapsed())
            } else {
                Duration::from_secs(3600)
            };
            let first = match rx.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.recover_if_failed();
            let mut appends = Vec::new();
            let mut checkpoint_replies = Vec::new();
            let (mut n, mut bytes) = (0usize, 0usize);
            let mut next = first;
            while let Some(c) = next.take() {
                match c {
                    Command::Append { entries, reply } => {
                        n += entries.len();
                        bytes += entries.iter().map(PreparedEntry::payload_len).sum::<usize>();
                        appends.push((entries, reply));
                    }
                    Command::Checkpoint { reply } => checkpoint_replies.push(reply),
                }
                if n < MAX_GROUP_ENTRIES && bytes < MAX_GROUP_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            let due = last_checkpoint_at.elapsed() >= self.interval;
            let want_checkpoint =
                !checkpoint_replies.is_empty() || (due && (unsigned || !appends.is_empty()));
            let mut group = Group {
                epoch: self.epoch,
                head_size: 0,
                checkpoint_size: None,
                new_checkpoint: None,
                batch: Batch::with_capacity_bytes(batch_bytes(&appends)),
                appends: Vec::with_capacity(appends.len()),
                checkpoints: Vec::new(),
            };
            self.sequence(appends, &mut group);
            if want_checkpoint {
                match self.checkpoint_into(&mut group) {
                    Ok(cp) => {
                        last_checkpoint_at = Instant::now();
                        group.checkpoints =
                            checkpoint_replies.into_iter().map(|r| (r, cp.clone())).collect();
                    }
                    Err(e) => {
                        for r in checkpoint_replies {
                            let _ = r.send(Err(e.clone()));
                        }
                    }
                }
            }
            group.head_size = self.state.head.size;
            group.checkpoint_size = self.state.last_checkpoint.as_ref().map(|c| c.size);
            if group.batch.is_empty() && group.appends.is_empty() && group.checkpoints.is_empty() {
                continue;
            }
            let _span = tracing::trace_span!("group", size = group.head_size).entered();
            if self.group_tx.send(group).is_err() {
                break;
            }
        }
    }

    /// After a failed write: start a new epoch from what is on disk.
    fn recover_if_failed(&mut self) {
        if self.failed_epoch.load(Ordering::Acquire) != self.epoch {
            return;
        }
        self.epoch += 1;
        match WriterHead::load(&self.store, &self.log) {
            Ok(s) => self.state = s,
            Err(detail) => tracing::error!(%detail, "reloading the right edge failed"),
        }
    }

    /// Assigns seqs, seals entries, updates tiles and indexes into the group's batch.
    fn sequence(&mut self, appends: Vec<(Vec<PreparedEntry>, AppendReply)>, group: &mut Group) {
        if appends.is_empty() {
            return;
        }
        let mut batch = self.store.batch_writer(&mut group.batch);
        let state = &mut self.state;
        let leaf = &mut self.leaf_buf;
        let ts = now_ms().max(state.head.last_timestamp_ms);
        let mut postings = Postings::default();
        for (entries, reply) in appends {
            let mut receipts = Vec::with_capacity(entries.len());
            for prepared in &entries {
                let seq = state.head.size;
                let h = prepared.seal(seq, ts, &state.head.last_leaf_hash, leaf);
                batch.put(Cf::Entries, &keys::entry_key(OWN_LOG, seq), &leaf[..]);
                postings.add_entry(seq, &prepared.content);
                state.edge.push_leaf(h);
                state.head.size = seq + 1;
                state.head.last_leaf_hash = h;
                state.head.last_timestamp_ms = ts;
                receipts.push(Receipt { seq, leaf_hash: h });
            }
            group.appends.push((reply, receipts));
        }
        for (id, tile) in state.edge.take_writes() {
            batch.put(Cf::Tiles, &keys::tile_key(OWN_LOG, id), &tile);
        }
        for (key, value) in postings.finish(OWN_LOG) {
            batch.put(Cf::Index, &key, &value);
        }
        batch.put(Cf::Meta, &keys::head_key(OWN_LOG), &state.head.encode());
    }

    /// A checkpoint of the current size (signed now unless the last one has this size), put
    /// into the group's batch when new.
    fn checkpoint_into(&mut self, group: &mut Group) -> Result<SignedCheckpoint, ReadError> {
        let size = self.state.head.size;
        if let Some(cp) = self.state.last_checkpoint.as_ref().filter(|cp| cp.size == size) {
            return Ok(cp.clone());
        }
        let root = self.state.edge.root().map_err(|e| ReadError::Corrupt(e.to_owned()))?;
        let checkpoint = Checkpoint {
            origin: self.log.identity.oid.as_str().to_owned(),
            size,
            root,
            extensions: Vec::new(),
        };
        let note = self.signer.sign(&checkpoint);
        self.store.put(
            &mut group.batch,
            Cf::Checkpoints,
            &keys::checkpoint_key(OWN_LOG, size),
            note.as_bytes(),
        );
        let signed = SignedCheckpoint { checkpoint, note };
        self.state.last_checkpoint = Some(signed.clone());
        group.new_checkpoint = Some(signed.clone());
        Ok(signed)
    }
}
