//! This node's trust decisions on disk (the `trust` column family, the seed's mesh_trust
//! columns for `direct` rows) and the graph built from them.
//!
//! Keys: `d` + ledger id → a [`DirectTrust`] (postcard); `a` + ledger id → an anchor;
//! `s` + signer + subject → a checked [`TrustStatement`] of another ledger; `p` + ledger id →
//! the newest [`VisibilityPolicy`] of that ledger (this node's own among them).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use onoal_engine::{AuxTable, Ledger, LedgerId};

use super::visibility::{Refused, Scope, Visibility, VisibilityError, VisibilityPolicy};
use super::{
    DEFAULT_LEVEL, DEFAULT_MAX_DEPTH, Derived, DirectTrust, TrustError, TrustGraph, TrustStatement,
    check_level,
};

/// How long a derived trust level is reused before it is derived again (expiries and pins
/// take effect within this; every trust change here takes effect at once).
const DERIVED_TTL_MS: u64 = 1_000;
/// Most statements this node signs in one answer, and keeps per signer.
pub const MAX_STATEMENTS: usize = 1024;
/// How long a statement this node signs is valid (a relay asks again when it syncs).
const STATEMENT_LIFETIME_MS: u64 = 24 * 3600 * 1000;

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
    /// A visibility or policy is refused.
    #[error(transparent)]
    Visibility(#[from] VisibilityError),
    /// A read-only ledger cannot change its policy.
    #[error("the ledger is open read-only (a running node holds it): change it through the node")]
    ReadOnly,
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
    /// Signs this ledger's policy and statements.
    key: ed25519_dalek::SigningKey,
    state: Mutex<State>,
    /// Pinned ledgers start at [`DEFAULT_LEVEL`] in this node's view.
    peers: crate::peer::PeerStore,
    /// Derived levels per viewpoint (this node, or a ledger whose replica it serves), with when
    /// they were derived and the state generation they were derived from.
    derived: Mutex<HashMap<LedgerId, Cached>>,
}

struct Cached {
    generation: (u64, u64),
    at_ms: u64,
    levels: HashMap<LedgerId, f64>,
}

#[derive(Default)]
struct State {
    direct: BTreeMap<LedgerId, DirectTrust>,
    anchors: BTreeSet<LedgerId>,
    statements: BTreeMap<(LedgerId, LedgerId), TrustStatement>,
    policies: BTreeMap<LedgerId, VisibilityPolicy>,
    /// Bumped by every change, so derived levels are never older than a decision.
    generation: u64,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("TrustStore")
            .field("direct", &s.direct.len())
            .field("anchors", &s.anchors.len())
            .field("statements", &s.statements.len())
            .field("policies", &s.policies.len())
            .finish()
    }
}

fn row_key(prefix: u8, id: &LedgerId) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(id.as_bytes());
    k
}

impl TrustStore {
    /// Loads the table (one scan).
    ///
    /// # Errors
    /// [`TrustStoreError::Storage`], [`TrustStoreError::Damaged`].
    pub fn open(
        ledger: Arc<Ledger>,
        peers: crate::peer::PeerStore,
        key: ed25519_dalek::SigningKey,
    ) -> Result<Self, TrustStoreError> {
        if key.verifying_key() != ledger.identity().public_key {
            return Err(TrustStoreError::Storage("the key does not belong to this ledger".into()));
        }
        let me = ledger.identity().ledger_id;
        let rows = ledger
            .aux_scan(AuxTable::Trust)
            .map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        let mut state = State::default();
        for (k, v) in rows {
            let damaged = || TrustStoreError::Damaged(hex::encode(&k));
            let id = k.get(1..17).and_then(LedgerId::from_slice);
            match (k.first(), id, k.len()) {
                (Some(b'd'), Some(id), 17) => {
                    let row: DirectTrust = postcard::from_bytes(&v)
                        .map_err(|_| TrustStoreError::Damaged(id.to_string()))?;
                    state.direct.insert(id, row);
                }
                (Some(b'a'), Some(id), 17) => {
                    state.anchors.insert(id);
                }
                (Some(b'p'), Some(id), 17) => {
                    let p: VisibilityPolicy = postcard::from_bytes(&v).map_err(|_| damaged())?;
                    state.policies.insert(id, p);
                }
                (Some(b's'), Some(from), 33) => {
                    let to = k.get(17..).and_then(LedgerId::from_slice).ok_or_else(damaged)?;
                    let st: TrustStatement = postcard::from_bytes(&v).map_err(|_| damaged())?;
                    state.statements.insert((from, to), st);
                }
                _ => return Err(damaged()),
            }
        }
        Ok(Self { ledger, me, key, state: Mutex::new(state), peers, derived: Mutex::default() })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), TrustStoreError> {
        self.ledger
            .aux_put(AuxTable::Trust, key, value)
            .map_err(|e| TrustStoreError::Storage(e.to_string()))
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
        let mut row = None;
        self.update(to, now_ms, |r| {
            r.set(level, reason, expires_ms, now_ms);
            row = Some(r.clone());
        })?;
        row.ok_or(TrustStoreError::ReadOnly)
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
        let mut row = state
            .direct
            .get(&to)
            .cloned()
            .map_or_else(|| DirectTrust::new(to, now_ms), |r| r.renewed(now_ms));
        change(&mut row);
        self.put(&row_key(b'd', &to), &postcard::to_stdvec(&row).unwrap_or_default())?;
        state.direct.insert(to, row);
        state.generation += 1;
        Ok(())
    }

    /// Forgets this node's direct trust in `to`; whether there was one.
    ///
    /// # Errors
    /// [`TrustStoreError::Storage`].
    pub fn unset(&self, to: &LedgerId) -> Result<bool, TrustStoreError> {
        let mut state = self.state.lock();
        if !state.direct.contains_key(to) {
            return Ok(false);
        }
        self.ledger
            .aux_delete(AuxTable::Trust, &row_key(b'd', to))
            .map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        state.direct.remove(to);
        state.generation += 1;
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
        if state.anchors.contains(&id) == anchor {
            return Ok(false);
        }
        let done = if anchor {
            self.ledger.aux_put(AuxTable::Trust, &row_key(b'a', &id), &[])
        } else {
            self.ledger.aux_delete(AuxTable::Trust, &row_key(b'a', &id))
        };
        done.map_err(|e| TrustStoreError::Storage(e.to_string()))?;
        if anchor {
            state.anchors.insert(id);
        } else {
            state.anchors.remove(&id);
        }
        state.generation += 1;
        Ok(true)
    }

    /// This node's direct trust rows, by ledger id.
    pub fn direct(&self) -> Vec<DirectTrust> {
        self.state.lock().direct.values().cloned().collect()
    }

    /// The anchors.
    pub fn anchors(&self) -> Vec<LedgerId> {
        self.state.lock().anchors.iter().copied().collect()
    }

    /// The graph of this node's decisions and the statements it holds.
    pub fn graph(&self, now_ms: u64) -> TrustGraph {
        self.graph_from(self.me, now_ms)
    }

    /// The graph as ledger `view` sees it: for this node, its direct trust (a pinned ledger
    /// without a live row at [`DEFAULT_LEVEL`]: an operator's level that expired falls back to
    /// the pin's), its anchors and the statements it holds; for another ledger, only the
    /// statements it holds.
    fn graph_from(&self, view: LedgerId, now_ms: u64) -> TrustGraph {
        let pinned = if view == self.me { self.peers.pinned_ledgers() } else { Vec::new() };
        let state = self.state.lock();
        let mut g = TrustGraph::new(view);
        if view == self.me {
            for row in state.direct.values().filter(|r| r.live(now_ms)) {
                g.set_direct(row);
            }
            for id in &pinned {
                if *id != self.me && !state.direct.get(id).is_some_and(|r| r.live(now_ms)) {
                    g.set_edge(self.me, *id, DEFAULT_LEVEL, None);
                }
            }
            for a in &state.anchors {
                g.set_anchor(*a, true);
            }
        }
        for st in state.statements.values() {
            if st.from == view {
                g.set_edge(st.from, st.to, st.level, st.expires_ms);
            } else {
                g.add_statement(st);
            }
        }
        g
    }

    /// The trust `view` (this node, or the origin of a replica it serves) has in `reader` at
    /// `now_ms` (0 without a path; pinned ledgers start at [`DEFAULT_LEVEL`] in this node's
    /// view). Derived levels are reused for [`DERIVED_TTL_MS`] unless a decision or a pin
    /// changed them: the serving policy asks this for every request.
    pub fn level(&self, view: LedgerId, reader: &LedgerId, now_ms: u64) -> f64 {
        if *reader == view {
            return 1.0;
        }
        let generation = (self.state.lock().generation, self.peers.generation());
        {
            let cache = self.derived.lock();
            if let Some(c) = cache.get(&view)
                && c.generation == generation
                && now_ms >= c.at_ms
                && now_ms - c.at_ms < DERIVED_TTL_MS
            {
                return c.levels.get(reader).copied().unwrap_or(0.0);
            }
        }
        let levels: HashMap<LedgerId, f64> = self
            .graph_from(view, now_ms)
            .derive(now_ms, DEFAULT_MAX_DEPTH)
            .into_iter()
            .map(|(id, d)| (id, d.level))
            .collect();
        let level = levels.get(reader).copied().unwrap_or(0.0);
        let mut cache = self.derived.lock();
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(view, Cached { generation, at_ms: now_ms, levels });
        level
    }

    /// This node's ledger.
    pub fn me(&self) -> LedgerId {
        self.me
    }

    /// This node's ledger key (what its statements and policy are checked against).
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Whether `reader` (a ledger id, when the client told it) may read `scope` of `ledger`:
    /// by the newest policy held for `ledger`, with the trust `ledger` has in the reader (this
    /// node's view for its own log; for a replica, the statements of its origin this node
    /// holds). The owner itself may always read its own data back (a restore).
    ///
    /// # Errors
    /// [`Refused`], naming the rule.
    pub fn admits(
        &self,
        ledger: &LedgerId,
        reader: Option<&LedgerId>,
        scope: Scope<'_>,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if reader == Some(ledger) {
            return Ok(());
        }
        let level = reader.map_or(0.0, |r| self.level(*ledger, r, now_ms));
        let state = self.state.lock();
        match state.policies.get(ledger) {
            Some(p) => p.admits(scope, level),
            None => VisibilityPolicy::default_for(*ledger).admits(scope, level),
        }
    }

    /// The newest visibility policy held for `ledger` (its unsigned default when none is).
    pub fn policy(&self, ledger: &LedgerId) -> VisibilityPolicy {
        self.state
            .lock()
            .policies
            .get(ledger)
            .cloned()
            .unwrap_or_else(|| VisibilityPolicy::default_for(*ledger))
    }

    /// Whether a signed policy of `ledger` is held.
    pub fn has_policy(&self, ledger: &LedgerId) -> bool {
        self.state.lock().policies.contains_key(ledger)
    }

    /// This node's operator sets `stream` (or, for `None`, every stream not named) to
    /// `visibility`: the next version of its policy, signed and kept before it counts.
    ///
    /// # Errors
    /// [`TrustStoreError`].
    pub fn set_visibility(
        &self,
        stream: Option<&str>,
        visibility: Visibility,
        now_ms: u64,
    ) -> Result<VisibilityPolicy, TrustStoreError> {
        if self.ledger.is_read_only() {
            return Err(TrustStoreError::ReadOnly);
        }
        let mut state = self.state.lock();
        let current = state
            .policies
            .get(&self.me)
            .cloned()
            .unwrap_or_else(|| VisibilityPolicy::default_for(self.me));
        let next = current.with(stream, visibility, &self.key, now_ms)?;
        self.put(&row_key(b'p', &self.me), &postcard::to_stdvec(&next).unwrap_or_default())?;
        state.policies.insert(self.me, next.clone());
        state.generation += 1;
        Ok(next)
    }

    /// Takes a policy of another ledger, received from it or a relay: kept when it checks
    /// against `key` (the ledger's key) and is newer than the one held. Returns whether it was.
    ///
    /// # Errors
    /// [`TrustStoreError::Visibility`] for a policy that does not check.
    pub fn take_policy(
        &self,
        policy: VisibilityPolicy,
        key: &[u8; 32],
    ) -> Result<bool, TrustStoreError> {
        if policy.ledger == self.me || self.ledger.is_read_only() {
            return Ok(false);
        }
        policy.check(key)?;
        let mut state = self.state.lock();
        if state.policies.get(&policy.ledger).is_some_and(|p| p.version >= policy.version) {
            return Ok(false);
        }
        self.put(
            &row_key(b'p', &policy.ledger),
            &postcard::to_stdvec(&policy).unwrap_or_default(),
        )?;
        state.policies.insert(policy.ledger, policy);
        state.generation += 1;
        Ok(true)
    }

    /// Takes statements signed by the ledger whose key is `key` (from it, or relayed): each
    /// is checked, newer ones replace older ones for the same pair, and the signer's held
    /// statements that the answer no longer contains are dropped (the answer is the signer's
    /// whole current set). Returns how many were kept.
    ///
    /// # Errors
    /// [`TrustStoreError::Trust`] for the first statement that does not check (none is kept).
    pub fn take_statements(
        &self,
        signer: LedgerId,
        key: &[u8; 32],
        statements: Vec<TrustStatement>,
        now_ms: u64,
    ) -> Result<usize, TrustStoreError> {
        if signer == self.me || self.ledger.is_read_only() {
            return Ok(0);
        }
        for st in &statements {
            if st.from != signer || &st.key != key {
                return Err(TrustError::Signature.into());
            }
            st.check(now_ms)?;
        }
        let mut state = self.state.lock();
        let held: Vec<(LedgerId, LedgerId)> = state
            .statements
            .range((signer, LedgerId::from_bytes([0; 16]))..)
            .map(|(k, _)| *k)
            .take_while(|(from, _)| *from == signer)
            .collect();
        let fresh: BTreeSet<LedgerId> = statements.iter().map(|s| s.to).collect();
        for pair in held {
            if !fresh.contains(&pair.1) {
                let mut k = row_key(b's', &pair.0);
                k.extend_from_slice(pair.1.as_bytes());
                self.ledger
                    .aux_delete(AuxTable::Trust, &k)
                    .map_err(|e| TrustStoreError::Storage(e.to_string()))?;
                state.statements.remove(&pair);
            }
        }
        let mut kept = 0;
        for st in statements.into_iter().take(MAX_STATEMENTS) {
            let pair = (st.from, st.to);
            if state.statements.get(&pair).is_some_and(|h| h.issued_ms > st.issued_ms) {
                continue;
            }
            let mut k = row_key(b's', &st.from);
            k.extend_from_slice(st.to.as_bytes());
            self.put(&k, &postcard::to_stdvec(&st).unwrap_or_default())?;
            state.statements.insert(pair, st);
            kept += 1;
        }
        state.generation += 1;
        Ok(kept)
    }

    /// The statements held that `signer` signed.
    pub fn statements_of(&self, signer: &LedgerId) -> Vec<TrustStatement> {
        self.state.lock().statements.values().filter(|s| s.from == *signer).cloned().collect()
    }

    /// This node's trust, as statements it signs now: one per live direct row above 0 and per
    /// pinned ledger without a row (at [`DEFAULT_LEVEL`]), valid for a day or until the row
    /// expires, at most [`MAX_STATEMENTS`].
    pub fn own_statements(&self, now_ms: u64) -> Vec<TrustStatement> {
        let pinned = self.peers.pinned_ledgers();
        let key = &self.key;
        let state = self.state.lock();
        let day = now_ms.saturating_add(STATEMENT_LIFETIME_MS);
        let rows = state
            .direct
            .values()
            .filter(|r| r.live(now_ms) && r.level > 0.0)
            .map(|r| (r.to, r.level, r.expires_ms.map_or(day, |e| e.min(day))));
        let implicit = pinned
            .iter()
            .filter(|id| **id != self.me && !state.direct.get(id).is_some_and(|r| r.live(now_ms)))
            .map(|id| (*id, DEFAULT_LEVEL, day));
        rows.chain(implicit)
            .take(MAX_STATEMENTS)
            .filter_map(|(to, level, expires)| {
                TrustStatement::sign(key, self.me, to, level, "", now_ms, Some(expires)).ok()
            })
            .collect()
    }

    /// How ledger `from` trusts `to` as far as this node knows (`onoal trust path`): from this
    /// node, its own decisions and the statements it holds; from another ledger, the
    /// statements it holds. The best path within the default depth, with each hop.
    pub fn path(&self, from: LedgerId, to: LedgerId, now_ms: u64) -> TrustView {
        let derived = self.graph_from(from, now_ms).trust(&to, now_ms, DEFAULT_MAX_DEPTH);
        let state = self.state.lock();
        let direct = if from == self.me { state.direct.get(&to).cloned() } else { None };
        let anchor = from == self.me && state.anchors.contains(&to);
        drop(state);
        view(to, derived, direct, anchor)
    }

    /// How this node trusts `id` at `now_ms`, and why.
    pub fn show(&self, id: LedgerId, now_ms: u64) -> TrustView {
        let derived: Option<Derived> = self.graph(now_ms).trust(&id, now_ms, DEFAULT_MAX_DEPTH);
        let state = self.state.lock();
        let (direct, anchor) = (state.direct.get(&id).cloned(), state.anchors.contains(&id));
        drop(state);
        view(id, derived, direct, anchor)
    }
}

fn view(
    id: LedgerId,
    derived: Option<Derived>,
    direct: Option<DirectTrust>,
    anchor: bool,
) -> TrustView {
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
