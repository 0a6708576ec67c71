//! Trust, sans-I/O (the seed's Trust Management): direct trust with its factors, signed trust
//! statements, anchors, and the trust this node derives for any ledger — chain trust (the
//! product along a path) and web of trust (the best product over all paths up to a maximum
//! depth). Time comes in as `now_ms`; nothing here does I/O.
//!
//! The graph's edges are this node's own direct trust (from itself) and the checked statements
//! it holds (from their signers). Anchors are trusted at 1.0 by this node and start chains.
//! [`TrustGraph::derive`] runs Dijkstra on −ln t over (ledger, hops) states, so the best product
//! within `max_depth` hops is exact even when the best path overall is longer; an edge at 0
//! blocks, an expired edge is absent, and cycles change nothing (a product of levels ≤ 1 never
//! grows along a path).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

/// A level this node gives a ledger it knows nothing about (the seed's schema default).
pub const DEFAULT_LEVEL: f64 = 0.5;
/// What outcomes alone can raise a ledger to; more takes an operator or an anchor.
pub const EARNED_CEILING: f64 = 0.9;
/// Hops a derived trust may span by default.
pub const DEFAULT_MAX_DEPTH: u8 = 6;

/// How bad a peer's misbehaviour was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// Slow or silent (a deadline passed): −0.02.
    Mild,
    /// Malformed or unexpected input: −0.1.
    Moderate,
    /// Data that does not verify (a bad bundle, an entry outside the filter, a certificate
    /// that is not its key's): −0.3.
    Severe,
    /// Proven lying (a forged signature, a fork): trust drops to 0 and outcomes cannot raise
    /// it again; only an operator can.
    Proven,
}

impl Penalty {
    /// What the penalty takes off.
    pub fn amount(self) -> f64 {
        match self {
            Self::Mild => 0.02,
            Self::Moderate => 0.1,
            Self::Severe => 0.3,
            Self::Proven => 1.0,
        }
    }
}

/// The seed's direct-trust factors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    /// Its identity was checked (its key presented in a handshake, or pinned).
    pub verified_identity: bool,
    /// Outcomes that verified (answers, bundles).
    pub successful_interactions: u64,
    /// Outcomes that did not.
    pub failed_interactions: u64,
    /// Last outcome (ms since the epoch).
    pub last_interaction_ms: Option<u64>,
}

/// This node's direct trust in one ledger (the seed's mesh_trust row of type `direct`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectTrust {
    /// The ledger.
    pub to: LedgerId,
    /// 0.0 to 1.0.
    pub level: f64,
    /// Its factors.
    pub factors: Factors,
    /// Set by an operator (`onoal trust set`): outcomes then move it only down.
    pub set_by_operator: bool,
    /// Proven lying: outcomes cannot raise it.
    pub blocked: bool,
    /// Why it is what it is (the operator's reason, or the last penalty).
    pub reason: Option<String>,
    /// No longer counts after this (ms since the epoch).
    pub expires_ms: Option<u64>,
    /// Created.
    pub created_ms: u64,
    /// Last changed.
    pub updated_ms: u64,
}

impl DirectTrust {
    /// A ledger first met at `now_ms`, at the default level.
    pub fn new(to: LedgerId, now_ms: u64) -> Self {
        Self {
            to,
            level: DEFAULT_LEVEL,
            factors: Factors::default(),
            set_by_operator: false,
            blocked: false,
            reason: None,
            expires_ms: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }

    /// A verified outcome: up by 2 % of the distance to 1, never past
    /// [`EARNED_CEILING`] by outcomes alone (an operator's higher level stays).
    pub fn succeeded(&mut self, now_ms: u64) {
        self.factors.successful_interactions += 1;
        self.factors.last_interaction_ms = Some(now_ms);
        self.updated_ms = now_ms;
        if self.blocked || self.level >= EARNED_CEILING {
            return;
        }
        self.level = (self.level + (1.0 - self.level) * 0.02).min(EARNED_CEILING);
    }

    /// A misbehaviour.
    pub fn penalize(&mut self, penalty: Penalty, reason: &str, now_ms: u64) {
        self.factors.failed_interactions += 1;
        self.factors.last_interaction_ms = Some(now_ms);
        self.updated_ms = now_ms;
        self.reason = Some(reason.to_owned());
        if penalty == Penalty::Proven {
            self.level = 0.0;
            self.blocked = true;
            self.expires_ms = None;
        } else {
            self.level = (self.level - penalty.amount()).max(0.0);
        }
    }

    /// An operator's decision: the level, its reason and expiry; unblocks.
    pub fn set(&mut self, level: f64, reason: Option<String>, expires_ms: Option<u64>, now: u64) {
        self.level = level;
        self.reason = reason;
        self.expires_ms = expires_ms;
        self.set_by_operator = true;
        self.blocked = false;
        self.updated_ms = now;
    }

    /// Whether it counts at `now_ms` (a block never expires).
    pub fn live(&self, now_ms: u64) -> bool {
        self.blocked || self.expires_ms.is_none_or(|e| now_ms < e)
    }

    /// After its expiry a row starts again from the default level (its counts stay).
    pub fn renewed(mut self, now_ms: u64) -> Self {
        if !self.live(now_ms) {
            self.level = DEFAULT_LEVEL;
            self.expires_ms = None;
            self.set_by_operator = false;
            self.reason = None;
        }
        self
    }
}

/// Why a trust level or statement is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Not a number from 0 to 1.
    #[error("trust level {0} is out of range: give a number from 0 to 1")]
    Level(String),
    /// The statement's signature does not verify with the key it names.
    #[error("the trust statement's signature does not verify")]
    Signature,
    /// The statement names a key that is not a usable Ed25519 key.
    #[error("the trust statement's key is not a usable Ed25519 key")]
    Key,
    /// The statement is about its own signer.
    #[error("a trust statement about its own signer says nothing")]
    SelfTrust,
    /// Past its expiry.
    #[error("the trust statement expired")]
    Expired,
    /// The reason is longer than 256 bytes.
    #[error("the trust statement's reason is longer than 256 bytes")]
    Reason,
}

/// Checks a level from a user or a peer.
///
/// # Errors
/// [`TrustError::Level`].
pub fn check_level(level: f64) -> Result<f64, TrustError> {
    if level.is_finite() && (0.0..=1.0).contains(&level) {
        Ok(level)
    } else {
        Err(TrustError::Level(level.to_string()))
    }
}

/// A signed statement: ledger `from` (holding `key`) trusts `to` at `level` until `expires_ms`
/// (the seed's trust_request / trust_response carry these).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrustStatement {
    /// The signer's ledger.
    pub from: LedgerId,
    /// The signer's key.
    pub key: [u8; 32],
    /// The trusted ledger.
    pub to: LedgerId,
    /// 0.0 to 1.0.
    pub level: f64,
    /// Signed at (ms since the epoch); a newer statement replaces an older one.
    pub issued_ms: u64,
    /// Not valid after this.
    pub expires_ms: Option<u64>,
    /// Why.
    pub reason: String,
    /// Ed25519 over the context and the fields above.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

const STATEMENT_CONTEXT: &[u8] = b"onoal trust statement v1\n";

#[derive(Serialize)]
struct Signed<'a> {
    from: LedgerId,
    key: &'a [u8; 32],
    to: LedgerId,
    level: f64,
    issued_ms: u64,
    expires_ms: Option<u64>,
    reason: &'a str,
}

impl TrustStatement {
    /// `from` (holding `key`) states its trust in `to`.
    ///
    /// # Errors
    /// [`TrustError::Level`], [`TrustError::Reason`], [`TrustError::SelfTrust`].
    pub fn sign(
        key: &SigningKey,
        from: LedgerId,
        to: LedgerId,
        level: f64,
        reason: &str,
        issued_ms: u64,
        expires_ms: Option<u64>,
    ) -> Result<Self, TrustError> {
        let mut s = Self {
            from,
            key: key.verifying_key().to_bytes(),
            to,
            level: check_level(level)?,
            issued_ms,
            expires_ms,
            reason: reason.to_owned(),
            signature: Vec::new(),
        };
        s.limits()?;
        s.signature = key.sign(&s.signed_bytes()).to_bytes().to_vec();
        Ok(s)
    }

    fn limits(&self) -> Result<(), TrustError> {
        check_level(self.level)?;
        if self.reason.len() > 256 {
            return Err(TrustError::Reason);
        }
        if self.from == self.to {
            return Err(TrustError::SelfTrust);
        }
        Ok(())
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let signed = Signed {
            from: self.from,
            key: &self.key,
            to: self.to,
            level: self.level,
            issued_ms: self.issued_ms,
            expires_ms: self.expires_ms,
            reason: &self.reason,
        };
        let mut out = STATEMENT_CONTEXT.to_vec();
        out.extend_from_slice(&postcard::to_stdvec(&signed).unwrap_or_default());
        out
    }

    /// Checks limits, expiry and the signature (the costly check last). Whether `key` is
    /// `from`'s key is the caller's question (a pin or a checked record answers it).
    ///
    /// # Errors
    /// [`TrustError`].
    pub fn check(&self, now_ms: u64) -> Result<(), TrustError> {
        self.limits()?;
        if self.expires_ms.is_some_and(|e| e <= now_ms) {
            return Err(TrustError::Expired);
        }
        let key = VerifyingKey::from_bytes(&self.key).map_err(|_| TrustError::Key)?;
        let sig = Signature::from_slice(&self.signature).map_err(|_| TrustError::Signature)?;
        key.verify_strict(&self.signed_bytes(), &sig).map_err(|_| TrustError::Signature)
    }
}

/// One edge of the graph: `from` trusts `to` at `level`.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// Level.
    pub level: f64,
    /// Expiry.
    pub expires_ms: Option<u64>,
    /// Where it comes from: this node's direct trust, an anchor, or a statement.
    pub kind: EdgeKind,
}

/// Where an edge comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// This node's direct trust.
    Direct,
    /// This node's anchor (1.0).
    Anchor,
    /// A checked statement of another ledger.
    Statement,
}

/// How this node trusts a ledger, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Derived {
    /// The ledger.
    pub to: LedgerId,
    /// 0.0 to 1.0.
    pub level: f64,
    /// `direct`, `chain` or `web-of-trust` (the seed's trust_type): direct when the best
    /// path is this node's own edge, chain when it is the only path, web of trust when it is
    /// the best of several.
    pub kind: &'static str,
    /// The ledgers along the best path, this node first.
    pub path: Vec<LedgerId>,
    /// Each hop's level, along the path.
    pub hops: Vec<(LedgerId, LedgerId, f64, EdgeKind)>,
    /// When the first edge of the path expires.
    pub expires_ms: Option<u64>,
}

/// An edge in [`TrustGraph::derive`]: to (dense index), level, kind, expiry.
type DenseEdge = (u32, f64, EdgeKind, Option<u64>);
/// How a (ledger, hops) state was reached: from (index, hops), the edge's level, kind, expiry.
type Step = (u32, u8, f64, EdgeKind, Option<u64>);

/// The trust graph of one node.
#[derive(Clone, Debug)]
pub struct TrustGraph {
    me: LedgerId,
    edges: BTreeMap<LedgerId, BTreeMap<LedgerId, Edge>>,
    anchors: BTreeSet<LedgerId>,
    /// Most statements held (each from a distinct (from, to) pair).
    capacity: usize,
}

impl TrustGraph {
    /// The graph of ledger `me`, empty.
    pub fn new(me: LedgerId) -> Self {
        Self { me, edges: BTreeMap::new(), anchors: BTreeSet::new(), capacity: 1_000_000 }
    }

    /// This node's ledger.
    pub fn me(&self) -> LedgerId {
        self.me
    }

    /// This node trusts `to` directly (its current [`DirectTrust`]).
    pub fn set_direct(&mut self, direct: &DirectTrust) {
        let edge =
            Edge { level: direct.level, expires_ms: direct.expires_ms, kind: EdgeKind::Direct };
        self.edges.entry(self.me).or_default().insert(direct.to, edge);
    }

    /// Forgets this node's direct trust in `to`.
    pub fn remove_direct(&mut self, to: &LedgerId) {
        if let Some(out) = self.edges.get_mut(&self.me) {
            out.remove(to);
        }
    }

    /// Makes `ledger` an anchor (trusted at 1.0, a start of chains), or stops.
    pub fn set_anchor(&mut self, ledger: LedgerId, anchor: bool) {
        if anchor {
            self.anchors.insert(ledger);
        } else {
            self.anchors.remove(&ledger);
        }
    }

    /// The anchors.
    pub fn anchors(&self) -> impl Iterator<Item = &LedgerId> {
        self.anchors.iter()
    }

    /// Takes a statement that was checked (signature, and its key is its signer's); a newer
    /// statement for the same pair replaces an older one. Statements by this node are its
    /// direct trust, not statements. Returns whether it was taken.
    pub fn add_statement(&mut self, s: &TrustStatement) -> bool {
        if s.from == self.me || s.from == s.to {
            return false;
        }
        let count: usize = self.edges.values().map(BTreeMap::len).sum();
        let out = self.edges.entry(s.from).or_default();
        if !out.contains_key(&s.to) && count >= self.capacity {
            return false;
        }
        out.insert(
            s.to,
            Edge { level: s.level, expires_ms: s.expires_ms, kind: EdgeKind::Statement },
        );
        true
    }

    /// Sets the edge `from → to` directly (tests and the simulator; statements go through
    /// [`Self::add_statement`]).
    pub fn set_edge(&mut self, from: LedgerId, to: LedgerId, level: f64, expires_ms: Option<u64>) {
        let kind = if from == self.me { EdgeKind::Direct } else { EdgeKind::Statement };
        self.edges.entry(from).or_default().insert(to, Edge { level, expires_ms, kind });
    }

    /// Edges held.
    pub fn len(&self) -> usize {
        self.edges.values().map(BTreeMap::len).sum()
    }

    /// Whether no edge is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live edges out of `from` at `now_ms`, anchors included for this node.
    fn out_edges(
        &self,
        from: LedgerId,
        now_ms: u64,
    ) -> Vec<(LedgerId, f64, EdgeKind, Option<u64>)> {
        let mut out: Vec<(LedgerId, f64, EdgeKind, Option<u64>)> = self
            .edges
            .get(&from)
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.level > 0.0 && e.expires_ms.is_none_or(|x| now_ms < x))
            .map(|(to, e)| (*to, e.level, e.kind, e.expires_ms))
            .collect();
        if from == self.me {
            for a in &self.anchors {
                match out.iter_mut().find(|(to, ..)| to == a) {
                    Some(edge) => *edge = (*a, 1.0, EdgeKind::Anchor, None),
                    None => out.push((*a, 1.0, EdgeKind::Anchor, None)),
                }
            }
        }
        out
    }

    /// The trust this node derives for every ledger it can reach within `max_depth` hops at
    /// `now_ms`: the best product over all paths (Dijkstra on −ln t over (ledger, hops)).
    pub fn derive(&self, now_ms: u64, max_depth: u8) -> HashMap<LedgerId, Derived> {
        // Ledgers as dense indexes (this node is 0) and the live edges as adjacency lists.
        let mut index: HashMap<LedgerId, u32> = HashMap::with_capacity(self.edges.len() + 1);
        let mut ids: Vec<LedgerId> = vec![self.me];
        index.insert(self.me, 0);
        let mut intern = |id: LedgerId, ids: &mut Vec<LedgerId>| -> u32 {
            *index.entry(id).or_insert_with(|| {
                ids.push(id);
                (ids.len() - 1) as u32
            })
        };
        let mut adjacency: Vec<Vec<DenseEdge>> = Vec::new();
        for from in self.edges.keys().chain(std::iter::once(&self.me)) {
            let f = intern(*from, &mut ids) as usize;
            let out: Vec<DenseEdge> = self
                .out_edges(*from, now_ms)
                .into_iter()
                .filter(|(to, ..)| *to != self.me)
                .map(|(to, t, kind, e)| (intern(to, &mut ids), t, kind, e))
                .collect();
            if adjacency.len() <= f {
                adjacency.resize_with(f + 1, Vec::new);
            }
            adjacency[f] = out;
        }
        adjacency.resize_with(ids.len(), Vec::new);
        let n = ids.len();
        let layers = usize::from(max_depth) + 1;
        let slot = |v: u32, h: u8| v as usize * layers + usize::from(h);
        // Per (ledger, hops): the best level reached and how.
        let mut best: Vec<f64> = vec![-1.0; n * layers];
        let mut how: Vec<Option<Step>> = vec![None; n * layers];
        // Per ledger: the fewest hops it was settled at (a later pop has no more trust).
        let mut settled_hops: Vec<u8> = vec![u8::MAX; n];
        let mut first: Vec<Option<(f64, u8)>> = vec![None; n];
        let mut paths_into: Vec<u32> = vec![0; n];

        #[derive(PartialEq)]
        struct State {
            level: f64,
            hops: u8,
            at: u32,
        }
        impl Eq for State {}
        impl PartialOrd for State {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for State {
            // Highest level first; then fewer hops; then by index (deterministic).
            fn cmp(&self, other: &Self) -> Ordering {
                self.level
                    .total_cmp(&other.level)
                    .then_with(|| other.hops.cmp(&self.hops))
                    .then_with(|| other.at.cmp(&self.at))
            }
        }
        let mut heap = BinaryHeap::new();
        best[slot(0, 0)] = 1.0;
        heap.push(State { level: 1.0, hops: 0, at: 0 });
        while let Some(State { level, hops, at }) = heap.pop() {
            if best[slot(at, hops)] > level {
                continue;
            }
            // Dominated: settled before with no more hops (and, popped earlier, no less trust).
            if settled_hops[at as usize] <= hops {
                continue;
            }
            settled_hops[at as usize] = hops;
            if first[at as usize].is_none() {
                first[at as usize] = Some((level, hops));
            }
            if hops == max_depth {
                continue;
            }
            for &(to, t, kind, expires) in &adjacency[at as usize] {
                paths_into[to as usize] += 1;
                // Already settled with no more hops, at a level no lower: nothing to gain.
                if settled_hops[to as usize] <= hops + 1 {
                    continue;
                }
                let next = level * t;
                let s = slot(to, hops + 1);
                if best[s] < next {
                    best[s] = next;
                    how[s] = Some((at, hops, t, kind, expires));
                    heap.push(State { level: next, hops: hops + 1, at: to });
                }
            }
        }
        let mut out = HashMap::new();
        for v in 1..n {
            let Some((level, hops)) = first[v] else { continue };
            let mut path = vec![ids[v]];
            let mut edges = Vec::new();
            let mut expires_ms = None;
            let mut cur = (v as u32, hops);
            while let Some((prev, prev_hops, t, kind, expires)) = how[slot(cur.0, cur.1)] {
                edges.push((ids[prev as usize], ids[cur.0 as usize], t, kind));
                path.push(ids[prev as usize]);
                if prev == 0 {
                    expires_ms = expires;
                }
                cur = (prev, prev_hops);
            }
            path.reverse();
            edges.reverse();
            let kind = if hops == 1 && edges.first().is_some_and(|e| e.3 != EdgeKind::Statement) {
                "direct"
            } else if paths_into[v] > 1 {
                "web-of-trust"
            } else {
                "chain"
            };
            let to = ids[v];
            out.insert(to, Derived { to, level, kind, path, hops: edges, expires_ms });
        }
        out
    }

    /// The trust this node derives for `to` (0 when unreachable), and how.
    pub fn trust(&self, to: &LedgerId, now_ms: u64, max_depth: u8) -> Option<Derived> {
        if *to == self.me {
            return None;
        }
        self.derive(now_ms, max_depth).remove(to)
    }
}

pub mod store;
pub mod visibility;

#[cfg(test)]
mod tests;
