//! This node's trust decisions on disk (the `trust` column family, the seed's mesh_trust
//! columns for `direct` rows) and the graph built from them.
//!
//! Keys: `d` + ledger id → a [`DirectTrust`] (postcard); `a` + ledger id → an anchor.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use onoal_engine::{AuxTable, Ledger, LedgerId};

use super::{DEFAULT_MAX_DEPTH, Derived, DirectTrust, TrustError, TrustGraph, check_level};

/// Why a trust decision could not be made or kept.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// A level, or a statement, is refused.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A ledger's own trust in itself says nothing.
    #[error("{0} is this ledger: trust in itself says nothing")]
    Itself(LedgerId),
    /// The `trust` table could not be read or written.
    #[error("the trust table: {0}")]
    Storage(String),
    /// A stored row does not decode.
    #[error("the trust table holds a damaged row for {0}")]
    Damaged(String),
}

/// How this node trusts one ledger, and why (`onoal trust show`).
#[derive(Clone, Debug, Serialize)]
pub struct TrustView {
    /// The ledger.
    pub ledger_id: LedgerId,
    /// The derived level (0 when no path reaches it).
    pub level: f64,
    /// `direct`, `chain`, `web-of-trust`, or `none`.
    pub kind: &'static str,
    /// The best path, this node first (empty without one).
    pub path: Vec<LedgerId>,
    /// Each hop: from, to, level.
    pub hops: Vec<(LedgerId, LedgerId, f64)>,
    /// When the path's first edge expires.
    pub expires_ms: Option<u64>,
    /// This node's direct trust row, if any.
    pub direct: Option<DirectTrust>,
    /// Whether it is an anchor.
    pub anchor: bool,
}

/// This node's trust table.
pub struct TrustStore {
    ledger: Arc<Ledger>,
    me: LedgerId,
    state: Mutex<(BTreeMap<LedgerId, DirectTrust>, BTreeSet<LedgerId>)>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("TrustStore")
            .field("direct", &s.0.len())
            .field("anchors", &s.1.len())
            .finish()
    }
}

fn key(prefix: u8, id: &LedgerId) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(id.as_bytes());
    k
}

impl TrustStore {
    /// Loads the table (one scan).
    ///
    /// # Errors
    /// [`TrustStoreError::Storage`], [`TrustStoreError::Damaged`].
    pub fn open(ledger: Arc<Ledger>) -> Result<Self, TrustStoreError> {
        let me = ledger.identity().ledger_id;
        let rows = ledger
            .aux_scan(AuxTable::Trust)
            .map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        let (mut direct, mut anchors) = (BTreeMap::new(), BTreeSet::new());
        for (k, v) in rows {
            let id = k.get(1..).and_then(LedgerId::from_slice);
            match (k.first(), id) {
                (Some(b'd'), Some(id)) => {
                    let row: DirectTrust = postcard::from_bytes(&v)
                        .map_err(|_| TrustStoreError::Damaged(id.to_string()))?;
                    direct.insert(id, row);
                }
                (Some(b'a'), Some(id)) => {
                    anchors.insert(id);
                }
                _ => return Err(TrustStoreError::Damaged(hex::encode(&k))),
            }
        }
        Ok(Self { ledger, me, state: Mutex::new((direct, anchors)) })
    }

    /// An operator's decision (`onoal trust set`): `to` at `level`, with a reason and an
    /// expiry; kept on disk before it counts.
    ///
    /// # Errors
    /// [`TrustStoreError`].
    pub fn set(
        &self,
        to: LedgerId,
        level: f64,
        reason: Option<String>,
        expires_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<DirectTrust, TrustStoreError> {
        check_level(level)?;
        if to == self.me {
            return Err(TrustStoreError::Itself(to));
        }
        let mut state = self.state.lock();
        let mut row = state.0.get(&to).cloned().unwrap_or_else(|| DirectTrust::new(to, now_ms));
        row.set(level, reason, expires_ms, now_ms);
        self.ledger
            .aux_put(
                AuxTable::Trust,
                &key(b'd', &to),
                &postcard::to_stdvec(&row).unwrap_or_default(),
            )
            .map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        state.0.insert(to, row.clone());
        Ok(row)
    }

    /// A verified outcome with `to` (a bundle, an answer): its level rises a little.
    ///
    /// # Errors
    /// [`TrustStoreError::Storage`].
    pub fn succeeded(&self, to: LedgerId, now_ms: u64) -> Result<(), TrustStoreError> {
        self.update(to, now_ms, |row| row.succeeded(now_ms))
    }

    /// A misbehaviour of `to`: its level falls by the penalty (to 0 for a proven lie).
    ///
    /// # Errors
    /// [`TrustStoreError::Storage`].
    pub fn penalize(
        &self,
        to: LedgerId,
        penalty: super::Penalty,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), TrustStoreError> {
        self.update(to, now_ms, |row| row.penalize(penalty, reason, now_ms))
    }

    fn update(
        &self,
        to: LedgerId,
        now_ms: u64,
        change: impl FnOnce(&mut DirectTrust),
    ) -> Result<(), TrustStoreError> {
        if to == self.me || self.ledger.is_read_only() {
            return Ok(());
        }
        let mut state = self.state.lock();
        let mut row = state.0.get(&to).cloned().unwrap_or_else(|| DirectTrust::new(to, now_ms));
        change(&mut row);
        self.ledger
            .aux_put(
                AuxTable::Trust,
                &key(b'd', &to),
                &postcard::to_stdvec(&row).unwrap_or_default(),
            )
            .map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        state.0.insert(to, row);
        Ok(())
    }

    /// Forgets this node's direct trust in `to`; whether there was one.
    ///
    /// # Errors
    /// [`TrustStoreError::Storage`].
    pub fn unset(&self, to: &LedgerId) -> Result<bool, TrustStoreError> {
        let mut state = self.state.lock();
        if !state.0.contains_key(to) {
            return Ok(false);
        }
        self.ledger
            .aux_delete(AuxTable::Trust, &key(b'd', to))
            .map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        state.0.remove(to);
        Ok(true)
    }

    /// Makes `id` an anchor (trusted at 1.0, a start of chains) or not; whether it changed.
    ///
    /// # Errors
    /// [`TrustStoreError`].
    pub fn set_anchor(&self, id: LedgerId, anchor: bool) -> Result<bool, TrustStoreError> {
        if id == self.me {
            return Err(TrustStoreError::Itself(id));
        }
        let mut state = self.state.lock();
        if state.1.contains(&id) == anchor {
            return Ok(false);
        }
        let done = if anchor {
            self.ledger.aux_put(AuxTable::Trust, &key(b'a', &id), &[])
        } else {
            self.ledger.aux_delete(AuxTable::Trust, &key(b'a', &id))
        };
        done.map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        if anchor {
            state.1.insert(id);
        } else {
            state.1.remove(&id);
        }
        Ok(true)
    }

    /// This node's direct trust rows, by ledger id.
    pub fn direct(&self) -> Vec<DirectTrust> {
        self.state.lock().0.values().cloned().collect()
    }

    /// The anchors.
    pub fn anchors(&self) -> Vec<LedgerId> {
        self.state.lock().1.iter().copied().collect()
    }

    /// The graph of this node's decisions.
    pub fn graph(&self) -> TrustGraph {
        let state = self.state.lock();
        let mut g = TrustGraph::new(self.me);
        for row in state.0.values() {
            g.set_direct(row);
        }
        for a in &state.1 {
            g.set_anchor(*a, true);
        }
        g
    }

    /// How this node trusts `id` at `now_ms`, and why.
    pub fn show(&self, id: LedgerId, now_ms: u64) -> TrustView {
        let derived: Option<Derived> = self.graph().trust(&id, now_ms, DEFAULT_MAX_DEPTH);
        let state = self.state.lock();
        let (direct, anchor) = (state.0.get(&id).cloned(), state.1.contains(&id));
        match derived {
            Some(d) => TrustView {
                ledger_id: id,
                level: d.level,
                kind: d.kind,
                path: d.path,
                hops: d.hops.into_iter().map(|(f, t, l, _)| (f, t, l)).collect(),
                expires_ms: d.expires_ms,
                direct,
                anchor,
            },
            None => TrustView {
                ledger_id: id,
                level: 0.0,
                kind: "none",
                path: Vec::new(),
                hops: Vec::new(),
                expires_ms: None,
                direct,
                anchor,
            },
        }
    }
}
