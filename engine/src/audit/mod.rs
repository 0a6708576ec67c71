//! Full audit: every leaf re-hashed, every chain link, every tile, every stored checkpoint.
//!
//! Level-0 tiles are checked in parallel (rayon), each against its 256 entries; chain links
//! inside a tile are checked by the worker and links across tiles afterwards. Upper tile levels
//! are checked against the roots of the tiles below; then the head and every checkpoint.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

mod index;
mod sparse;

use crate::chain::check_links;
use crate::error::VerifyError;
use crate::hash::{Hash, leaf_hash};
use crate::ledger::Ledger;
use crate::log::view::View;
use crate::log::{Log, Shape};
use crate::record::Entry;
use crate::store::scan;
use crate::tile::{TILE_WIDTH, Tile, TileError, TileId};

/// Progress of a running audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Entries checked so far.
    pub entries_done: u64,
    /// Entries to check.
    pub entries_total: u64,
}

/// What a sound audit covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries re-hashed and chain links checked.
    pub entries: u64,
    /// Tiles recomputed.
    pub tiles: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Root of the audited tree.
    pub root: Hash,
}

struct TileOutcome {
    first_prev: Hash,
    last_leaf: Hash,
    root_or_none: Option<Hash>,
    /// Sum of the keyed hashes of the tile's index pairings ([`index`]).
    index_sum: u64,
}

impl Ledger {
    /// Audits the own log. See [`Log::verify`].
    ///
    /// # Errors
    /// The first inconsistency found, with its evidence.
    pub fn verify(
        &self,
        progress: &(dyn Fn(VerifyProgress) + Sync),
    ) -> Result<VerifyReport, VerifyError> {
        self.log().verify(progress)
    }
}

impl Log {
    /// Audits the whole log as of now; reports progress through `progress` (called from
    /// worker threads, roughly every 256 entries).
    ///
    /// # Errors
    /// The first inconsistency found, with its evidence.
    pub fn verify(
        &self,
        progress: &(dyn Fn(VerifyProgress) + Sync),
    ) -> Result<VerifyReport, VerifyError> {
        if self.shape() == Shape::Sparse {
            return sparse::verify(self);
        }
        let view = self.view()?;
        let size = view.head.size;
        let tiles0 = size.div_ceil(TILE_WIDTH as u64);
        let done = AtomicU64::new(0);
        let digest = index::IndexDigest::new();
        let outcomes: Vec<TileOutcome> = (0..tiles0)
            .into_par_iter()
            .map(|index| {
                let out = check_leaf_tile(&view, &digest, index, size)?;
                let n = done.fetch_add(
                    (size - index * TILE_WIDTH as u64).min(TILE_WIDTH as u64),
                    Ordering::Relaxed,
                );
                progress(VerifyProgress { entries_done: n, entries_total: size });
                Ok(out)
            })
            .collect::<Result<_, VerifyError>>()?;
        progress(VerifyProgress { entries_done: size, entries_total: size });
        let mut tiles = tiles0;
        // Links across tiles: the first entry of tile i points at the last leaf of tile i-1.
        let mut prev_last = Hash::ZERO;
        for (i, out) in outcomes.iter().enumerate() {
            if out.first_prev != prev_last {
                return Err(VerifyError::ChainBroken {
                    seq: i as u64 * TILE_WIDTH as u64,
                    expected: prev_last,
                    found: out.first_prev,
                });
            }
            prev_last = out.last_leaf;
        }
        if prev_last != view.head.last_leaf_hash {
            return Err(VerifyError::HeadMismatch(format!(
                "last leaf hash is {}, the head says {}",
                prev_last, view.head.last_leaf_hash
            )));
        }
        // Upper levels: each tile's bottom row is the roots of full tiles one level down.
        let mut below: Vec<Hash> = outcomes.iter().filter_map(|o| o.root_or_none).collect();
        let mut level: u8 = 1;
        while !below.is_empty() {
            let mut roots = Vec::new();
            for (index, chunk) in below.chunks(TILE_WIDTH).enumerate() {
                let tile = check_tile(&view, TileId { level, index: index as u64 }, chunk)?;
                roots.extend(tile.root());
                tiles += 1;
            }
            below = roots;
            level += 1;
        }
        // The index lists exactly the entries that have each value.
        let sums: Vec<u64> = outcomes.iter().map(|o| o.index_sum).collect();
        index::check_full(&view, &digest, &sums)?;
        let root = view.root(size)?;
        let checkpoints = check_checkpoints(self, &view)?;
        Ok(VerifyReport { entries: size, tiles, checkpoints, root })
    }
}

fn check_leaf_tile(
    view: &View<'_>,
    digest: &index::IndexDigest,
    index: u64,
    size: u64,
) -> Result<TileOutcome, VerifyError> {
    let start = index * TILE_WIDTH as u64;
    let end = (start + TILE_WIDTH as u64).min(size);
    let mut hashes = Vec::with_capacity((end - start) as usize);
    let mut prevs = Vec::with_capacity((end - start) as usize);
    let mut expected_seq = start;
    let mut index_sum = 0u64;
    scan::entries(view.store, Some(&view.snapshot), view.log.number, start, end, |seq, v| {
        if seq != expected_seq {
            return Err(VerifyError::EntryMissing { seq: expected_seq });
        }
        let entry = Entry::decode(v)
            .map_err(|e| VerifyError::EntryUndecodable { seq, reason: e.to_string() })?;
        if entry.seq != seq {
            return Err(VerifyError::SeqMismatch { seq, found: entry.seq });
        }
        entry.content.check_issuer_signature().map_err(|_| VerifyError::IssuerSignature { seq })?;
        index_sum = index_sum.wrapping_add(digest.entry(seq, &entry.content));
        prevs.push(entry.prev_hash);
        hashes.push(leaf_hash(v));
        expected_seq += 1;
        Ok(true)
    })?;
    if expected_seq != end {
        return Err(VerifyError::EntryMissing { seq: expected_seq });
    }
    // Leaves against the stored tile first: a changed entry is named by its own seq.
    let tile = check_tile(view, TileId { level: 0, index }, &hashes).map_err(|e| match e {
        VerifyError::TileMismatch { row: 0, position, stored, computed, .. } => {
            VerifyError::LeafHashMismatch {
                seq: start + position as u64,
                in_tile: stored,
                computed,
            }
        }
        other => other,
    })?;
    // Links inside the tile; the first entry's link is checked across tiles by the caller.
    if let Some(&first_prev) = prevs.first() {
        check_links(start, first_prev, prevs.iter().copied().zip(hashes.iter().copied())).map_err(
            |c| VerifyError::ChainBroken { seq: c.seq, expected: c.expected, found: c.found },
        )?;
    }
    // Every tile below the size holds at least one entry, and none was missing.
    let first_prev = *prevs.first().expect("a tile below the size holds an entry");
    let last_leaf = *hashes.last().expect("a tile below the size holds an entry");
    Ok(TileOutcome { first_prev, last_leaf, root_or_none: tile.root(), index_sum })
}

/// Recomputes a tile from its bottom row `expected` and compares it with the stored tile.
fn check_tile(view: &View<'_>, id: TileId, expected: &[Hash]) -> Result<Tile, VerifyError> {
    let damaged =
        |detail: String| VerifyError::TileDamaged { level: id.level, index: id.index, detail };
    let stored = view.tile_bytes(id)?.ok_or_else(|| damaged("missing".into()))?;
    let mut tile = Tile::new();
    for h in expected {
        tile.push(*h);
    }
    let recomputed = tile.encode();
    if stored.len() != recomputed.len() {
        return Err(damaged(format!(
            "{} bytes stored, {} expected for {} hashes",
            stored.len(),
            recomputed.len(),
            expected.len()
        )));
    }
    if stored != recomputed {
        let decoded = Tile::decode_verified(&stored);
        // Report the bottom row first (it names an entry), then the interior.
        if let Some(pos) = (0..expected.len())
            .find(|&p| stored[p * 32..p * 32 + 32] != recomputed[p * 32..p * 32 + 32])
        {
            return Err(VerifyError::TileMismatch {
                level: id.level,
                index: id.index,
                row: 0,
                position: pos,
                stored: Hash::from_slice(&stored[pos * 32..pos * 32 + 32])
                    .expect("the stored tile has the recomputed tile's length"),
                computed: expected[pos],
            });
        }
        if let Err(TileError::InteriorMismatch { row, pos, stored, computed }) = decoded {
            return Err(VerifyError::TileMismatch {
                level: id.level,
                index: id.index,
                row,
                position: pos,
                stored,
                computed,
            });
        }
        return Err(damaged("differs from its recomputation".into()));
    }
    Ok(tile)
}

fn check_checkpoints(log: &Log, view: &View<'_>) -> Result<u64, VerifyError> {
    let verifier = log.identity().verifier();
    let mut count = 0;
    scan::checkpoints(view.store, Some(&view.snapshot), view.log.number, |size, v| {
        let cp = verifier
            .open(v)
            .map_err(|e| VerifyError::CheckpointBadSignature { size, reason: e.to_string() })?;
        if cp.size != size {
            return Err(VerifyError::CheckpointBadSignature {
                size,
                reason: format!("stored under size {size} but says size {}", cp.size),
            });
        }
        if size > view.head.size && log.is_replica() {
            // A replica may hold a newer checkpoint than its entries (a light sync, or a sync
            // in progress); it was checked for consistency when accepted.
            count += 1;
            return Ok(true);
        }
        if size > view.head.size {
            return Err(VerifyError::CheckpointBadSignature {
                size,
                reason: format!("beyond the log's size {}", view.head.size),
            });
        }
        let expected = view.root(size)?;
        if cp.root != expected {
            return Err(VerifyError::CheckpointRootMismatch { size, expected, found: cp.root });
        }
        count += 1;
        Ok(true)
    })?;
    Ok(count)
}
