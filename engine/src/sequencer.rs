//! The group-commit pipeline behind `append`.
//!
//! Two threads. The *sequencer* drains the command channel into a group (up to 8,192 entries or
//! 32 MiB), assigns seqs and one timestamp, seals each prepared entry (the last SHA-256 blocks:
//! seq, time, chain link), pushes the leaves into the right-edge tiles, signs a checkpoint when
//! due, and builds ONE RocksDB WriteBatch. The *writer* writes that batch (fsync in `sync`
//! mode) and only then answers the group's callers. While the writer waits for the disk, the
//! sequencer prepares the next group.
//!
//! A failed write fails that group and every group prepared on top of it (same epoch); the
//! sequencer then reloads the right edge from disk, so the in-memory state never runs ahead of
//! what is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::checkpoint::{Checkpoint, NoteSigner};
use crate::error::{AppendError, ReadError};
use crate::hash::Hash;
use crate::ledger::{Durability, LogState, Receipt, Shared, SignedCheckpoint, View};
use crate::merkle::{self, NodeId};
use crate::record::PreparedEntry;
use crate::store::{
    self, CF_CHECKPOINTS, CF_ENTRIES, CF_INDEX, CF_META, CF_TILES, HeadRecord, OWN_LOG,
};
use crate::tile::{self, TILE_HEIGHT, TILE_WIDTH, Tile, TileId};

/// Where the sequencer answers one `append_batch` call.
pub(crate) type AppendReply = Sender<Result<Vec<Receipt>, AppendError>>;
/// Where the writer answers one `checkpoint_now` call.
type CheckpointReply = Sender<Result<SignedCheckpoint, ReadError>>;

pub(crate) enum Command {
    Append { entries: Vec<PreparedEntry>, reply: AppendReply },
    Checkpoint { reply: CheckpointReply },
}

/// One prepared group, handed from the sequencer to the writer.
struct Group {
    epoch: u64,
    /// Tree size once this group is durable.
    head_size: u64,
    batch: WriteBatch,
    appends: Vec<(AppendReply, Vec<Receipt>)>,
    checkpoints: Vec<(CheckpointReply, SignedCheckpoint)>,
}

/// Most entries one group commits.
const MAX_GROUP_ENTRIES: usize = 8192;
/// Most payload bytes one group commits.
const MAX_GROUP_BYTES: usize = 32 << 20;
/// Prepared groups waiting for the writer. Zero (a rendezvous): the sequencer prepares one
/// group while the writer writes the previous one, then waits; commands arriving meanwhile
/// form the next group, so groups grow with the load instead of splitting it.
const GROUPS_WAITING: usize = 0;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Starts the sequencer and writer threads.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    state: SequencerState,
    signer: NoteSigner,
    durability: Durability,
    interval: Duration,
) -> std::io::Result<(Sender<Command>, Vec<JoinHandle<()>>)> {
    let (tx, rx) = crossbeam_channel::bounded::<Command>(4096);
    let (group_tx, group_rx) = crossbeam_channel::bounded::<Group>(GROUPS_WAITING);
    let failed_epoch = Arc::new(AtomicU64::new(u64::MAX));
    let writer = {
        let shared = shared.clone();
        let failed_epoch = failed_epoch.clone();
        std::thread::Builder::new()
            .name("onoal-writer".into())
            .spawn(move || run_writer(&shared, durability, &group_rx, &failed_epoch))?
    };
    let sequencer =
        std::thread::Builder::new().name("onoal-sequencer".into()).spawn(move || {
            Sequencer {
                shared,
                state,
                signer,
                interval,
                epoch: 0,
                failed_epoch,
                group_tx,
                leaf_buf: Vec::new(),
            }
            .run(&rx);
        })?;
    Ok((tx, vec![sequencer, writer]))
}

fn run_writer(
    shared: &Shared,
    durability: Durability,
    rx: &Receiver<Group>,
    failed_epoch: &AtomicU64,
) {
    let mut wo = WriteOptions::default();
    wo.set_sync(durability == Durability::Sync);
    for group in rx {
        let result = if failed_epoch.load(Ordering::Acquire) == group.epoch {
            Err("an earlier group this one builds on failed to write".to_owned())
        } else {
            write_group(shared, group.batch, &wo)
        };
        match result {
            Ok(()) => {
                shared.own.durable_size.store(group.head_size, Ordering::Release);
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

fn write_group(shared: &Shared, batch: WriteBatch, wo: &WriteOptions) -> Result<(), String> {
    #[cfg(feature = "__internal-fault-injection")]
    {
        let mut f = shared.injected_failures.lock();
        let n = f.0;
        f.0 += 1;
        if f.1.contains(&n) {
            return Err(format!("IO error: injected failure of group write {n}"));
        }
    }
    shared.db.write_opt(batch, wo).map_err(|e| e.into_string())
}

/// The right edge of the tree: one partial tile per tile level, plus the head.
pub(crate) struct SequencerState {
    pub(crate) head: HeadRecord,
    /// `edge[T]` is the tile at tile level T that the next node of tree level 8T goes into.
    pub(crate) edge: Vec<Tile>,
    /// The newest checkpoint handed to the writer.
    pub(crate) last_checkpoint: Option<SignedCheckpoint>,
}

impl SequencerState {
    pub(crate) fn load(shared: &Shared, log: &LogState) -> Result<Self, String> {
        let number = log.number;
        let view = View::new(shared, log).map_err(|e| e.to_string())?;
        let head = view.head;
        let mut edge = Vec::new();
        let mut level: u8 = 0;
        loop {
            let count = head.size >> (u32::from(level) * u32::from(TILE_HEIGHT));
            let width = (count % TILE_WIDTH as u64) as usize;
            let index = count / TILE_WIDTH as u64;
            let tile = if width == 0 {
                Tile::new()
            } else {
                let id = TileId { level, index };
                let bytes = view
                    .tile_bytes(id)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("right-edge tile {level}/{index} is missing"))?;
                let t = Tile::decode_verified(&bytes)
                    .map_err(|e| format!("tile {level}/{index}: {e}"))?;
                if t.width() != width {
                    return Err(format!(
                        "right-edge tile {level}/{index} has width {}, the head needs {width}",
                        t.width()
                    ));
                }
                t
            };
            edge.push(tile);
            if count < TILE_WIDTH as u64 {
                break;
            }
            level += 1;
        }
        let cf = shared.cf(CF_CHECKPOINTS);
        let upper = store::checkpoint_key(number, u64::MAX);
        let last_checkpoint = match shared
            .db
            .iterator_cf(cf, IteratorMode::From(&upper, Direction::Reverse))
            .next()
        {
            Some(Ok((k, v))) if store::entry_key_seq(number, &k).is_some() => {
                let checkpoint = log
                    .identity
                    .verifier()
                    .open(&v)
                    .map_err(|e| format!("latest stored checkpoint: {e}"))?;
                let note = String::from_utf8(v.to_vec())
                    .map_err(|_| "latest stored checkpoint is not UTF-8".to_string())?;
                Some(SignedCheckpoint { checkpoint, note })
            }
            Some(Err(e)) => return Err(e.into_string()),
            _ => None,
        };
        Ok(Self { head, edge, last_checkpoint })
    }

    /// Hash of a node that is complete and on the right edge.
    fn edge_node(&self, node: NodeId) -> Option<Hash> {
        let (tid, row, pos) = tile::locate(node);
        let tile = self.edge.get(usize::from(tid.level))?;
        let count = self.head.size >> (u32::from(tid.level) * u32::from(TILE_HEIGHT));
        let edge_index = count / TILE_WIDTH as u64;
        if tid.index != edge_index {
            return None;
        }
        tile.node(row, pos)
    }

    pub(crate) fn root(&self) -> Result<Hash, String> {
        let parts: Option<Vec<Hash>> =
            merkle::root_nodes(self.head.size).map(|n| self.edge_node(n)).collect();
        parts.map(|p| merkle::fold_root(&p)).ok_or_else(|| "right edge lacks a root node".into())
    }
}

struct Sequencer {
    shared: Arc<Shared>,
    state: SequencerState,
    signer: NoteSigner,
    interval: Duration,
    /// Bumped after a failed write; groups of a failed epoch are failed by the writer.
    epoch: u64,
    failed_epoch: Arc<AtomicU64>,
    group_tx: Sender<Group>,
    leaf_buf: Vec<u8>,
}

impl Sequencer {
    fn run(mut self, rx: &Receiver<Command>) {
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
                batch: WriteBatch::default(),
                appends: Vec::with_capacity(appends.len()),
                checkpoints: Vec::new(),
            };
            self.sequence(appends, &mut group);
            if want_checkpoint {
                match self.checkpoint_into(&mut group.batch) {
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
            if group.batch.is_empty() && group.appends.is_empty() && group.checkpoints.is_empty() {
                continue;
            }
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
        match SequencerState::load(&self.shared, &self.shared.own) {
            Ok(s) => self.state = s,
            Err(detail) => tracing::error!(%detail, "reloading the right edge failed"),
        }
    }

    /// Assigns seqs, seals entries, updates tiles and indexes into the group's batch.
    fn sequence(&mut self, appends: Vec<(Vec<PreparedEntry>, AppendReply)>, group: &mut Group) {
        if appends.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let (cf_entries, cf_index, cf_tiles) =
            (shared.cf(CF_ENTRIES), shared.cf(CF_INDEX), shared.cf(CF_TILES));
        let batch = &mut group.batch;
        let state = &mut self.state;
        let leaf = &mut self.leaf_buf;
        let mut dirty_levels = vec![false; state.edge.len() + 1];
        let ts = now_ms().max(state.head.last_timestamp_ms);
        let mut postings = store::Postings::default();
        for (entries, reply) in appends {
            let mut receipts = Vec::with_capacity(entries.len());
            for prepared in &entries {
                let seq = state.head.size;
                let h = prepared.seal(seq, ts, &state.head.last_leaf_hash, leaf);
                batch.put_cf(cf_entries, store::entry_key(OWN_LOG, seq), &leaf[..]);
                postings.add_entry(seq, &prepared.content);
                push_leaf(&mut state.edge, &mut dirty_levels, seq, h, batch, cf_tiles, OWN_LOG);
                state.head.size = seq + 1;
                state.head.last_leaf_hash = h;
                state.head.last_timestamp_ms = ts;
                receipts.push(Receipt { seq, leaf_hash: h });
            }
            group.appends.push((reply, receipts));
        }
        put_dirty_tiles(&state.edge, &dirty_levels, state.head.size, batch, cf_tiles, OWN_LOG);
        for (key, value) in postings.finish(OWN_LOG) {
            batch.put_cf(cf_index, key, value);
        }
        batch.put_cf(shared.cf(CF_META), store::head_key(OWN_LOG), state.head.encode());
    }

    /// A checkpoint of the current size (signed now unless the last one has this size), put
    /// into `batch` when new.
    fn checkpoint_into(&mut self, batch: &mut WriteBatch) -> Result<SignedCheckpoint, ReadError> {
        let size = self.state.head.size;
        if let Some(cp) = self.state.last_checkpoint.as_ref().filter(|cp| cp.size == size) {
            return Ok(cp.clone());
        }
        let root = self.state.root().map_err(ReadError::Corrupt)?;
        let checkpoint = Checkpoint {
            origin: self.shared.own.identity.oid.as_str().to_owned(),
            size,
            root,
            extensions: Vec::new(),
        };
        let note = self.signer.sign(&checkpoint);
        batch.put_cf(
            self.shared.cf(CF_CHECKPOINTS),
            store::checkpoint_key(OWN_LOG, size),
            note.as_bytes(),
        );
        let signed = SignedCheckpoint { checkpoint, note };
        self.state.last_checkpoint = Some(signed.clone());
        Ok(signed)
    }
}

/// Pushes leaf `seq` (hash `h`) into the right-edge tiles; a tile that fills up is put into
/// `batch` (written once, when full) and its root goes one tile level up.
pub(crate) fn push_leaf(
    edge: &mut Vec<Tile>,
    dirty_levels: &mut Vec<bool>,
    seq: u64,
    h: Hash,
    batch: &mut WriteBatch,
    cf_tiles: &rocksdb::ColumnFamily,
    log: u32,
) {
    push_node(edge, dirty_levels, 0, seq, h, batch, cf_tiles, log);
}

/// Pushes `node` into the tile at tile level `level`, where `node` is the root of the tile
/// one level down that ends with leaf `seq` (for level 0: the leaf itself). As [`push_leaf`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_node(
    edge: &mut Vec<Tile>,
    dirty_levels: &mut Vec<bool>,
    level: usize,
    seq: u64,
    node: Hash,
    batch: &mut WriteBatch,
    cf_tiles: &rocksdb::ColumnFamily,
    log: u32,
) {
    let mut level = level;
    let mut node = node;
    loop {
        if edge.len() <= level {
            edge.push(Tile::new());
        }
        if dirty_levels.len() <= level {
            dirty_levels.push(false);
        }
        let tile = &mut edge[level];
        let Some(root) = tile.push(node) else {
            dirty_levels[level] = true;
            break;
        };
        let count = (seq + 1) >> (level as u32 * u32::from(TILE_HEIGHT));
        let id = TileId { level: level as u8, index: count / TILE_WIDTH as u64 - 1 };
        batch.put_cf(cf_tiles, store::tile_key(log, id), tile.encode());
        *tile = Tile::new();
        dirty_levels[level] = false;
        node = root;
        level += 1;
    }
}

/// Puts the partial right-edge tiles changed since the last write into `batch`.
pub(crate) fn put_dirty_tiles(
    edge: &[Tile],
    dirty_levels: &[bool],
    size: u64,
    batch: &mut WriteBatch,
    cf_tiles: &rocksdb::ColumnFamily,
    log: u32,
) {
    for (level, dirty) in dirty_levels.iter().enumerate() {
        if *dirty {
            let count = size >> (level as u32 * u32::from(TILE_HEIGHT));
            let id = TileId { level: level as u8, index: count / TILE_WIDTH as u64 };
            batch.put_cf(cf_tiles, store::tile_key(log, id), edge[level].encode());
        }
    }
}
