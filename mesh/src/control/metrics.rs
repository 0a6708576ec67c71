//! The node's Prometheus metrics (`GET /metrics`, text format 1.0.0 / OpenMetrics). Counters
//! are fed where things happen (the own log's durable watch, appends through the API, syncs,
//! violations); gauges that describe state (peers, connections, replicas) are read when
//! scraped.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use onoal_engine::Durable;

/// A per-peer label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PeerLabel {
    pub(crate) peer: String,
}

/// Every metric of a node, registered once.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) appended: Counter,
    pub(crate) groups: Counter,
    pub(crate) group_entries: Histogram,
    pub(crate) append_latency: Histogram,
    pub(crate) checkpoints: Counter,
    pub(crate) tree_size: Gauge,
    pub(crate) sync_entries: Family<PeerLabel, Counter>,
    pub(crate) sync_bytes: Family<PeerLabel, Counter>,
    pub(crate) sync_errors: Family<PeerLabel, Counter>,
    pub(crate) misbehaviour: Family<PeerLabel, Gauge>,
    pub(crate) peers_pinned: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) connections_pinned: Gauge,
    pub(crate) replicas: Gauge,
    pub(crate) follows: Gauge,
    /// Last durable size and checkpoint seen by the watch (to count deltas).
    last_size: AtomicU64,
    last_checkpoint: AtomicU64,
}

impl Metrics {
    pub(crate) fn new(initial: Durable) -> Self {
        let mut registry = Registry::with_prefix("onoal");
        let appended = Counter::default();
        let groups = Counter::default();
        // 1 .. 32768 entries per durable group.
        let group_entries = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        // 50 µs .. ~1.6 s.
        let append_latency = Histogram::new(exponential_buckets(50e-6, 2.0, 16));
        let checkpoints = Counter::default();
        let tree_size = Gauge::default();
        let sync_entries = Family::<PeerLabel, Counter>::default();
        let sync_bytes = Family::<PeerLabel, Counter>::default();
        let sync_errors = Family::<PeerLabel, Counter>::default();
        let misbehaviour = Family::<PeerLabel, Gauge>::default();
        let (peers_pinned, connections, connections_pinned, replicas, follows) = (
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
            Gauge::default(),
        );
        registry.register(
            "appended_entries",
            "Entries made durable in the own log",
            appended.clone(),
        );
        registry.register("append_groups", "Durable write groups of the own log", groups.clone());
        registry.register(
            "append_group_entries",
            "Entries per durable write group",
            group_entries.clone(),
        );
        registry.register(
            "append_latency_seconds",
            "Time from receiving an append through the API to its receipt (durable)",
            append_latency.clone(),
        );
        registry.register("checkpoints", "Checkpoints signed by this ledger", checkpoints.clone());
        registry.register("tree_size", "Entries in the own log (durable)", tree_size.clone());
        registry.register(
            "sync_entries",
            "Entries received and verified, by source ledger",
            sync_entries.clone(),
        );
        registry.register(
            "sync_bytes",
            "Leaf bytes received, by source ledger",
            sync_bytes.clone(),
        );
        registry.register(
            "sync_errors",
            "Syncs that failed, by source ledger",
            sync_errors.clone(),
        );
        registry.register(
            "peer_misbehaviour",
            "Violations recorded against each pinned peer",
            misbehaviour.clone(),
        );
        registry.register("peers_pinned", "Pinned peers", peers_pinned.clone());
        registry.register(
            "connections",
            "Peers connected to this node's server",
            connections.clone(),
        );
        registry.register(
            "connections_pinned",
            "Connected peers whose key is pinned",
            connections_pinned.clone(),
        );
        registry.register("replicas", "Replicas held (full and sparse)", replicas.clone());
        registry.register("follows", "Ledgers this node follows", follows.clone());
        tree_size.set(i64::try_from(initial.size).unwrap_or(i64::MAX));
        Self {
            registry,
            appended,
            groups,
            group_entries,
            append_latency,
            checkpoints,
            tree_size,
            sync_entries,
            sync_bytes,
            sync_errors,
            misbehaviour,
            peers_pinned,
            connections,
            connections_pinned,
            replicas,
            follows,
            last_size: AtomicU64::new(initial.size),
            last_checkpoint: AtomicU64::new(initial.checkpoint_size.unwrap_or(0)),
        }
    }

    /// One durable change of the own log (called on its writer's thread: atomics only).
    pub(crate) fn on_durable(&self, d: Durable) {
        let before = self.last_size.fetch_max(d.size, Ordering::AcqRel);
        if d.size > before {
            let n = d.size - before;
            self.appended.inc_by(n);
            self.groups.inc();
            self.group_entries.observe(n as f64);
            self.tree_size.set(i64::try_from(d.size).unwrap_or(i64::MAX));
        }
        if let Some(c) = d.checkpoint_size {
            let before = self.last_checkpoint.fetch_max(c, Ordering::AcqRel);
            if c > before {
                self.checkpoints.inc();
            }
        }
    }

    /// The text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Converts a count into a gauge value.
pub(crate) fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
