//! The scenario `onoal sim` runs and what it measures.
//!
//! Timeline (virtual seconds): node 0 starts at 0; the other nodes join one after another over
//! the join phase, each through one random node already up (its bootstrap node): it adds that
//! contact, looks itself up, and publishes its signed record under its ledger id and its OID
//! prefixes. Then the measured phase: random live nodes look up random live ledgers by id,
//! while `churn` x nodes crash (no goodbye) and as many new nodes join; with `partition`, the
//! network splits in two for the first 30 s of it, and lookups across the split are retried
//! every second after it heals until one succeeds.
//!
//! Membership runs beside the DHT with the real core ([`Membership`]): every node keeps in
//! touch with up to `members` ledgers it exchanged DHT messages with, heartbeating each every
//! 2 s, a heartbeat missed after its deadline (the driver's: the interval clamped to 1-3 s),
//! disconnected after 3 misses. A crash is detected by a node when it marks the crashed ledger
//! disconnected; `failure_detected_s_p99` is over every (observer, crashed node) pair.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde::Serialize;

use onoal_engine::{LedgerId, Oid};

use super::net::{Conditions, Net};
use crate::dht::{Contact, Dht, DhtConfig, DhtEvent, DhtRequest, DhtResponse, LookupId, RequestId};
use crate::id::PeerId;
use crate::membership::{Membership, MembershipConfig, Status};
use crate::proto::record::{Endpoints, PeerRecord, RecordFields};

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Nodes at the start of the measured phase.
    pub nodes: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Fraction of nodes that crash (and are replaced by joiners) during the measured phase.
    pub churn: f64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// One-way latency range.
    pub latency: (Duration, Duration),
    /// Split the network in two for 30 s at the start of the measured phase.
    pub partition: bool,
    /// Lookups in the measured phase (0: one per 10 nodes, at least 100).
    pub lookups: usize,
    /// Length of the measured phase.
    pub measure: Duration,
    /// Members each node heartbeats (0: no membership simulated).
    pub members: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 1000,
            seed: 1,
            churn: 0.0,
            loss: 0.0,
            latency: (Duration::from_millis(10), Duration::from_millis(100)),
            partition: false,
            lookups: 0,
            measure: Duration::from_secs(120),
            members: 8,
        }
    }
}

/// What the simulation measured. Times are virtual seconds.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    /// Nodes at the start of the measured phase.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Churn, loss and partition as configured.
    pub churn: f64,
    /// Loss.
    pub loss: f64,
    /// Whether the network was split.
    pub partition: bool,
    /// Lookups by ledger id in the measured phase.
    pub lookups: usize,
    /// Share of them that returned the ledger's valid record.
    pub lookup_success_rate: f64,
    /// Rounds of requests until a lookup found the record: median.
    pub lookup_rounds_p50: u32,
    /// 99th percentile.
    pub lookup_rounds_p99: u32,
    /// Requests per lookup, mean.
    pub lookup_messages_mean: f64,
    /// Lookups that finished by round r (index r), for the histogram.
    pub lookup_rounds_histogram: Vec<u64>,
    /// The slowest of 20 sampled joiners: seconds from its join until a lookup by its ledger id
    /// from a random node found its record (tried once a second; `null` if one never was).
    /// Until membership is simulated, this is what "the mesh knows a joining node" means here.
    pub join_converged_s: Option<f64>,
    /// Seconds from a crash until a node that had the crashed ledger as a connected member
    /// marked it disconnected: 99th percentile over every such (observer, crashed) pair;
    /// `null` without crashes or membership.
    pub failure_detected_s_p99: Option<f64>,
    /// The median of the same.
    pub failure_detected_s_p50: Option<f64>,
    /// Pairs where the observer still listed the crashed ledger as connected at the end.
    pub failures_undetected: u64,
    /// Heartbeats sent (answers not counted).
    pub heartbeats: u64,
    /// After the split healed, seconds until lookups from one side found each of the 10 nodes
    /// that joined the other side during the split (their records live on that side only);
    /// `null` without a partition, or if one was not found within 60 s.
    pub partition_recovered_s: Option<f64>,
    /// Requests and answers per live node per virtual second, over the whole run.
    pub messages_per_node_per_s: f64,
    /// Messages sent, lost to loss, cut by the partition.
    pub messages: u64,
    /// Lost.
    pub lost: u64,
    /// Cut.
    pub cut: u64,
    /// Records refused by storing nodes, and contacts or records dropped from answers as
    /// invalid.
    pub store_refused: u64,
    /// Requests refused by rate limits.
    pub rate_limited: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Share of lookups per time slice that succeeded: (virtual second, rate).
    pub success_over_time: Vec<(f64, f64)>,
    /// Real seconds the run took.
    pub wall_s: f64,
    /// Peak resident memory of the process (MiB).
    pub peak_rss_mb: f64,
}

enum Msg {
    Request { id: RequestId, request: Box<DhtRequest> },
    Response { id: RequestId, response: Box<DhtResponse> },
    Heartbeat,
    Ack,
}

#[derive(Clone, Copy)]
enum Tracked {
    Measured { target: LedgerId, at: Instant },
    Cross(usize),
    Probe(usize),
}

struct Node {
    dht: Dht,
    contact: Contact,
    ledger: LedgerId,
    alive: bool,
    timer: Option<Instant>,
    membership: Membership,
    /// Heartbeats in flight: to whom, when sent.
    beating: Vec<(usize, Instant)>,
    beat_timer: Option<Instant>,
}

/// The driver's heartbeat deadline: the interval, clamped to 1-3 s.
fn beat_deadline(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(3))
}

/// What the script does at a moment (ordered only to sit in the heap; the sequence number
/// before it decides ties).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Script {
    Join,
    Crash,
    Lookup,
    CrossLookup,
    Split,
    SplitJoin,
}

struct World {
    net: Net<Msg>,
    nodes: Vec<Node>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    beats: BinaryHeap<Reverse<(Instant, usize)>>,
    membership: MembershipConfig,
    ledgers: HashMap<LedgerId, usize>,
    crashed_at: HashMap<usize, Instant>,
    /// Detection latencies (s) of (observer, crashed) pairs.
    detections: Vec<f64>,
    heartbeats: u64,
    tracked: HashMap<(usize, LookupId), Tracked>,
    config: DhtConfig,
    epoch_ms: u64,
    t0: Instant,
    seed: u64,
    // Measurements.
    results: Vec<(Instant, bool, u32, u32)>,
    /// Nodes that joined during the split (so their records live on their side only), and
    /// when a lookup from the other side first found each after the heal.
    split_joiners: Vec<(usize, Option<Instant>)>,
    heal: Option<Instant>,
    /// Sampled joiners: node, when it joined, seconds until a lookup found its record.
    probes: Vec<(usize, Instant, Option<f64>)>,
}

fn addr_of(index: usize) -> SocketAddr {
    let n = u32::try_from(index + 1).unwrap_or(u32::MAX);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n)), 4433)
}

fn index_of(addr: &SocketAddr) -> Option<usize> {
    match addr.ip() {
        IpAddr::V4(v4) => usize::try_from((u32::from(v4) & 0x00ff_ffff).checked_sub(1)?).ok(),
        IpAddr::V6(_) => None,
    }
}

impl World {
    fn now(&self) -> Instant {
        self.net.now()
    }

    fn spawn(&mut self) -> usize {
        let index = self.nodes.len();
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.seed.to_be_bytes());
        seed[8..16].copy_from_slice(&(index as u64).to_be_bytes());
        let key = SigningKey::from_bytes(&onoal_engine::hash::sha256(&[&seed]).0);
        let peer = PeerId::new(key.verifying_key());
        let contact = Contact::new(peer, addr_of(index));
        let ledger_bytes = onoal_engine::hash::sha256(&[b"ledger", &seed]).0;
        let ledger = LedgerId::from_slice(&ledger_bytes[..16]).unwrap_or_else(LedgerId::random);
        let now = self.now();
        let now_ms = self.epoch_ms
            + u64::try_from(now.saturating_duration_since(self.t0).as_millis()).unwrap_or(0);
        let mut dht = Dht::new(contact, self.config.clone(), now, now_ms);
        // Bootstrap through a random live node.
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].alive).collect();
        if !live.is_empty() {
            let via = live[(self.net.rng.next_u64() % live.len() as u64) as usize];
            dht.add_bootstrap(self.nodes[via].contact, now);
        }
        dht.find_node(contact.id, now);
        let oid =
            Oid::parse(&format!("oid:onoal:sim:g{}:n{index}", index % 64)).unwrap_or_else(|_| {
                Oid::parse("oid:onoal:sim").unwrap_or_else(|_| unreachable!("a valid literal"))
            });
        let fields = RecordFields {
            endpoints: Endpoints { quic: Some(contact.addr.to_string()), ..Endpoints::default() },
            capabilities: vec!["sync".into()],
            ..RecordFields::default()
        };
        let record = PeerRecord::sign(&key, ledger, &oid, fields, 1, now_ms + 24 * 3600 * 1000);
        dht.publish(record, now);
        self.nodes.push(Node {
            dht,
            contact,
            ledger,
            alive: true,
            timer: None,
            membership: Membership::new(self.membership),
            beating: Vec::new(),
            beat_timer: None,
        });
        self.ledgers.insert(ledger, index);
        self.pump(index);
        index
    }

    /// Sends what node `i` wants to send, takes its events, schedules its timer.
    fn pump(&mut self, i: usize) {
        let now = self.now();
        while let Some(t) = self.nodes[i].dht.poll_transmit() {
            match index_of(&t.to.addr) {
                Some(to) if to < self.nodes.len() => {
                    self.net.send(i, to, Msg::Request { id: t.id, request: Box::new(t.request) });
                }
                _ => self.nodes[i].dht.handle_failure(t.id, now),
            }
        }
        while let Some(DhtEvent::LookupFinished(outcome)) = self.nodes[i].dht.poll_event() {
            match self.tracked.remove(&(i, outcome.id)) {
                Some(Tracked::Measured { target, at }) => {
                    let found = outcome.records.iter().any(|r| r.ledger_id == target);
                    self.results.push((at, found, outcome.rounds, outcome.messages));
                }
                Some(Tracked::Cross(j)) => {
                    let target = self.nodes[self.split_joiners[j].0].ledger;
                    let joiner = &mut self.split_joiners[j];
                    if joiner.1.is_none() && outcome.records.iter().any(|r| r.ledger_id == target) {
                        joiner.1 = Some(now);
                    }
                }
                Some(Tracked::Probe(s)) => {
                    let target = self.nodes[self.probes[s].0].ledger;
                    let probe = &mut self.probes[s];
                    if probe.2.is_none() && outcome.records.iter().any(|r| r.ledger_id == target) {
                        probe.2 = Some(now.saturating_duration_since(probe.1).as_secs_f64());
                    }
                }
                None => {}
            }
        }
        if let Some(next) = self.nodes[i].dht.poll_timeout()
            && self.nodes[i].timer.is_none_or(|t| next < t)
        {
            self.nodes[i].timer = Some(next);
            self.timers.push(Reverse((next, i)));
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch_ms
            + u64::try_from(self.now().saturating_duration_since(self.t0).as_millis()).unwrap_or(0)
    }

    /// Node `i` keeps in touch with node `j` (if it has room), as the driver does with every
    /// ledger it learns of.
    fn meet(&mut self, i: usize, j: usize) {
        if self.membership.max_members == 0 || i == j {
            return;
        }
        let (now, now_ms) = (self.now(), self.now_ms());
        let (ledger, contact) = (self.nodes[j].ledger, self.nodes[j].contact);
        let Some(peer) = contact.peer.peer() else { return };
        if self.nodes[i].membership.get(&ledger).is_none()
            && self.nodes[i].membership.track(ledger, peer, contact.addr, now, now_ms)
        {
            self.schedule_beat(i);
        }
    }

    /// Schedules node `i`'s next membership step: a heartbeat due, or a deadline.
    fn schedule_beat(&mut self, i: usize) {
        let deadline = beat_deadline(self.membership.interval);
        let node = &self.nodes[i];
        let next = [
            node.membership.poll_timeout(),
            node.beating.iter().map(|(_, sent)| *sent + deadline).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(next) = next
            && node.beat_timer.is_none_or(|t| next < t)
        {
            self.nodes[i].beat_timer = Some(next);
            self.beats.push(Reverse((next, i)));
        }
    }

    /// Node `i`'s membership step: misses past their deadline, then heartbeats due.
    fn beat(&mut self, i: usize) {
        let (now, now_ms) = (self.now(), self.now_ms());
        let deadline = beat_deadline(self.membership.interval);
        let expired: Vec<usize> = self.nodes[i]
            .beating
            .iter()
            .filter(|(_, sent)| *sent + deadline <= now)
            .map(|(to, _)| *to)
            .collect();
        self.nodes[i].beating.retain(|(_, sent)| *sent + deadline > now);
        for to in expired {
            let ledger = self.nodes[to].ledger;
            self.nodes[i].membership.missed(&ledger, now_ms);
        }
        for (ledger, _, _) in self.nodes[i].membership.due(now) {
            let Some(&to) = self.ledgers.get(&ledger) else { continue };
            self.heartbeats += 1;
            self.nodes[i].beating.push((to, now));
            self.net.send(i, to, Msg::Heartbeat);
        }
        while let Some(change) = self.nodes[i].membership.poll_change() {
            if change.status != Status::Disconnected {
                continue;
            }
            if let Some(&j) = self.ledgers.get(&change.ledger_id)
                && let Some(&at) = self.crashed_at.get(&j)
            {
                self.detections.push(now.saturating_duration_since(at).as_secs_f64());
            }
        }
        self.schedule_beat(i);
    }

    fn deliver(&mut self, from: usize, to: usize, msg: Msg) {
        if !self.nodes[to].alive {
            return;
        }
        let now = self.now();
        match msg {
            Msg::Request { id, request } => {
                let from_contact = self.nodes[from].contact;
                let response = self.nodes[to].dht.handle_request(from_contact, *request, now);
                self.net.send(to, from, Msg::Response { id, response: Box::new(response) });
                self.meet(to, from);
            }
            Msg::Response { id, response } => {
                self.nodes[to].dht.handle_response(id, *response, now);
                self.meet(to, from);
            }
            Msg::Heartbeat => {
                let now_ms = self.now_ms();
                let ledger = self.nodes[from].ledger;
                self.nodes[to].membership.heard(&ledger, now_ms, now_ms);
                self.net.send(to, from, Msg::Ack);
                return;
            }
            Msg::Ack => {
                let Some(k) = self.nodes[to].beating.iter().position(|(j, _)| *j == from) else {
                    return;
                };
                let (_, sent) = self.nodes[to].beating.swap_remove(k);
                let (ledger, now_ms) = (self.nodes[from].ledger, self.now_ms());
                self.nodes[to].membership.answered(
                    &ledger,
                    now.saturating_duration_since(sent),
                    now_ms,
                );
                while self.nodes[to].membership.poll_change().is_some() {}
                self.schedule_beat(to);
                return;
            }
        }
        self.pump(to);
    }

    fn random_live(&mut self) -> Option<usize> {
        let n = self.nodes.len();
        for _ in 0..64 {
            let i = (self.net.rng.next_u64() % n as u64) as usize;
            if self.nodes[i].alive {
                return Some(i);
            }
        }
        (0..n).find(|&i| self.nodes[i].alive)
    }
}

pub(super) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The `p` quantile of `sorted` (nearest rank); `None` when empty.
fn quantile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    quantile(sorted, p).unwrap_or(0)
}

/// The earliest timer of `heap` if it is due at `now`, taken off the heap.
fn pop_due(
    heap: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    now: Instant,
) -> Option<(Instant, usize)> {
    let &Reverse((t, i)) = heap.peek()?;
    if t > now {
        return None;
    }
    heap.pop();
    Some((t, i))
}

/// Runs the scenario.
pub fn run(config: &SimConfig) -> SimReport {
    let wall = Instant::now();
    let conditions = Conditions { latency: config.latency, loss: config.loss };
    let net = Net::new(config.seed, conditions);
    let t0 = net.now();
    let mut world = World {
        t0,
        net,
        nodes: Vec::with_capacity(config.nodes + (config.nodes as f64 * config.churn) as usize + 1),
        timers: BinaryHeap::new(),
        beats: BinaryHeap::new(),
        membership: MembershipConfig { max_members: config.members, ..MembershipConfig::default() },
        ledgers: HashMap::new(),
        crashed_at: HashMap::new(),
        detections: Vec::new(),
        heartbeats: 0,
        tracked: HashMap::new(),
        config: DhtConfig::default(),
        epoch_ms: 1_800_000_000_000,
        seed: config.seed,
        results: Vec::new(),
        split_joiners: Vec::new(),
        heal: None,
        probes: Vec::new(),
    };
    let n = config.nodes.max(2);
    // Join phase: 100 joins per virtual second, at least 10 s.
    let join_phase = Duration::from_secs_f64((n as f64 / 100.0).max(10.0));
    let settle = Duration::from_secs(10);
    let measure_start = t0 + join_phase + settle;
    let end = measure_start + config.measure;
    let lookups = if config.lookups == 0 { (n / 10).max(100) } else { config.lookups };
    let crashes = (n as f64 * config.churn).round() as usize;

    let mut script: BinaryHeap<Reverse<(Instant, u64, Script)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push =
        |script: &mut BinaryHeap<Reverse<(Instant, u64, Script)>>, at: Instant, what: Script| {
            seq += 1;
            script.push(Reverse((at, seq, what)));
        };
    for i in 0..n {
        push(&mut script, t0 + join_phase.mul_f64(i as f64 / n as f64), Script::Join);
    }
    let span = config.measure.mul_f64(0.9);
    for i in 0..crashes {
        let at = measure_start + span.mul_f64(i as f64 / crashes.max(1) as f64);
        push(&mut script, at, Script::Crash);
        push(&mut script, at + Duration::from_millis(500), Script::Join);
    }
    for i in 0..lookups {
        let at = measure_start + span.mul_f64((i as f64 + 0.5) / lookups as f64);
        push(&mut script, at, Script::Lookup);
    }
    if config.partition {
        let heal = measure_start + Duration::from_secs(30);
        world.heal = Some(heal);
        push(&mut script, measure_start, Script::Split);
        for j in 0..10u64 {
            push(&mut script, measure_start + Duration::from_secs(5 + 2 * j), Script::SplitJoin);
        }
        for s in 0..60 {
            push(&mut script, heal + Duration::from_secs(s), Script::CrossLookup);
        }
    }
    // Joiners sampled for convergence: 20, spread over the joins after the first half of the
    // join phase (the network is no longer tiny) and the replacements of the churn.
    let total_joins = n + crashes;
    let sample_every = ((total_joins - n / 2) / 20).max(1);
    let mut joins = 0usize;
    let mut next_check = t0;

    loop {
        let next = [
            world.net.next_arrival(),
            world.timers.peek().map(|Reverse((t, _))| *t),
            world.beats.peek().map(|Reverse((t, _))| *t),
            script.peek().map(|Reverse((t, _, _))| *t),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next.filter(|t| *t <= end) else { break };
        world.net.advance_to(next);
        let now = world.now();
        while let Some(d) = world.net.pop_due() {
            world.deliver(d.from, d.to, d.msg);
        }
        while let Some((t, i)) = pop_due(&mut world.timers, now) {
            if world.nodes[i].timer != Some(t) || !world.nodes[i].alive {
                continue;
            }
            world.nodes[i].timer = None;
            world.nodes[i].dht.handle_timeout(now);
            world.pump(i);
        }
        while let Some((t, i)) = pop_due(&mut world.beats, now) {
            if world.nodes[i].beat_timer != Some(t) || !world.nodes[i].alive {
                continue;
            }
            world.nodes[i].beat_timer = None;
            world.beat(i);
        }
        while let Some(&Reverse((t, _, what))) = script.peek() {
            if t > now {
                break;
            }
            script.pop();
            match what {
                Script::Join => {
                    let i = world.spawn();
                    joins += 1;
                    if joins > n / 2
                        && (joins - n / 2).is_multiple_of(sample_every)
                        && world.probes.len() < 20
                    {
                        world.probes.push((i, now, None));
                    }
                }
                Script::Crash => {
                    if let Some(i) = world.random_live() {
                        world.nodes[i].alive = false;
                        world.crashed_at.insert(i, now);
                    }
                }
                Script::Lookup => {
                    let (Some(from), Some(to)) = (world.random_live(), world.random_live()) else {
                        continue;
                    };
                    let target = world.nodes[to].ledger;
                    let id = world.nodes[from].dht.find_ledger(target, now);
                    world.tracked.insert((from, id), Tracked::Measured { target, at: now });
                    world.pump(from);
                }
                Script::Split => {
                    let side: Vec<bool> = (0..world.nodes.len() * 2).map(|i| i % 2 == 0).collect();
                    if let Some(heal) = world.heal {
                        world.net.split(side, heal);
                    }
                }
                Script::SplitJoin => {
                    let i = world.spawn();
                    world.split_joiners.push((i, None));
                }
                Script::CrossLookup => {
                    // Each split joiner not found yet, from a node on the other side.
                    for j in 0..world.split_joiners.len() {
                        let (target, found) = world.split_joiners[j];
                        if found.is_some() || !world.nodes[target].alive {
                            continue;
                        }
                        let from = (0..64).find_map(|_| {
                            let i = world.random_live()?;
                            (i % 2 != target % 2).then_some(i)
                        });
                        let Some(from) = from else { continue };
                        let ledger = world.nodes[target].ledger;
                        let id = world.nodes[from].dht.find_ledger(ledger, now);
                        world.tracked.insert((from, id), Tracked::Cross(j));
                        world.pump(from);
                    }
                }
            }
        }
        if now >= next_check {
            // Once a second, each sampled joiner not yet found is looked up from a random node.
            next_check = now + Duration::from_secs(1);
            for s in 0..world.probes.len() {
                let (i, joined, found) = world.probes[s];
                if found.is_some() || !world.nodes[i].alive || now < joined + Duration::from_secs(1)
                {
                    continue;
                }
                let Some(from) = world.random_live().filter(|f| *f != i) else { continue };
                let target = world.nodes[i].ledger;
                let id = world.nodes[from].dht.find_ledger(target, now);
                world.tracked.insert((from, id), Tracked::Probe(s));
                world.pump(from);
            }
        }
    }

    let virtual_s = world.now().duration_since(t0).as_secs_f64();
    let mut rounds: Vec<u32> = world.results.iter().filter(|r| r.1).map(|r| r.2).collect();
    rounds.sort_unstable();
    let found = world.results.iter().filter(|r| r.1).count();
    let done = world.results.len();
    let mut histogram = vec![0u64; rounds.last().map_or(0, |r| *r as usize + 1)];
    for r in &rounds {
        histogram[*r as usize] += 1;
    }
    let slices = 12usize;
    let slice = config.measure.as_secs_f64() / slices as f64;
    let success_over_time = (0..slices)
        .filter_map(|s| {
            let lo = measure_start + Duration::from_secs_f64(slice * s as f64);
            let hi = lo + Duration::from_secs_f64(slice);
            let in_slice: Vec<_> = world.results.iter().filter(|r| r.0 >= lo && r.0 < hi).collect();
            (!in_slice.is_empty()).then(|| {
                let ok = in_slice.iter().filter(|r| r.1).count();
                (lo.duration_since(t0).as_secs_f64(), ok as f64 / in_slice.len() as f64)
            })
        })
        .collect();
    let live_probes: Vec<Option<f64>> =
        world.probes.iter().filter(|p| world.nodes[p.0].alive).map(|p| p.2).collect();
    let join_converged_s = if live_probes.is_empty() || live_probes.iter().any(Option::is_none) {
        None
    } else {
        live_probes.iter().flatten().copied().reduce(f64::max)
    };
    let alive_joiners: Vec<Option<Instant>> =
        world.split_joiners.iter().filter(|j| world.nodes[j.0].alive).map(|j| j.1).collect();
    let partition_recovered_s = match world.heal {
        Some(heal) if !alive_joiners.is_empty() && alive_joiners.iter().all(Option::is_some) => {
            alive_joiners
                .iter()
                .flatten()
                .map(|at| at.saturating_duration_since(heal).as_secs_f64())
                .reduce(f64::max)
        }
        _ => None,
    };
    // Observers that still list a crashed ledger as connected.
    let mut failures_undetected = 0u64;
    for node in world.nodes.iter().filter(|n| n.alive) {
        for c in node.membership.connections() {
            if c.status == Status::Connected
                && world.ledgers.get(&c.ledger_id).is_some_and(|j| world.crashed_at.contains_key(j))
            {
                failures_undetected += 1;
            }
        }
    }
    let mut detections = world.detections.clone();
    detections.sort_by(f64::total_cmp);
    let detected = |p: f64| quantile(&detections, p).map(|s| (s * 1000.0).round() / 1000.0);
    let mut store_refused = 0;
    let mut rate_limited = 0;
    for node in &world.nodes {
        let stats = node.dht.stats();
        store_refused += stats.store_refused.values().sum::<u64>() + stats.invalid_in_answers;
        rate_limited += stats.rate_limited;
    }
    let live = world.nodes.iter().filter(|n| n.alive).count().max(1);
    SimReport {
        nodes: n,
        seed: config.seed,
        churn: config.churn,
        loss: config.loss,
        partition: config.partition,
        lookups: done,
        lookup_success_rate: if done == 0 { 0.0 } else { found as f64 / done as f64 },
        lookup_rounds_p50: percentile(&rounds, 0.5),
        lookup_rounds_p99: percentile(&rounds, 0.99),
        lookup_messages_mean: if done == 0 {
            0.0
        } else {
            world.results.iter().map(|r| f64::from(r.3)).sum::<f64>() / done as f64
        },
        lookup_rounds_histogram: histogram,
        join_converged_s,
        failure_detected_s_p99: detected(0.99),
        failure_detected_s_p50: detected(0.5),
        failures_undetected,
        heartbeats: world.heartbeats,
        partition_recovered_s,
        messages_per_node_per_s: world.net.sent as f64 / live as f64 / virtual_s.max(1e-9),
        messages: world.net.sent,
        lost: world.net.lost,
        cut: world.net.cut,
        store_refused,
        rate_limited,
        virtual_s,
        success_over_time,
        wall_s: wall.elapsed().as_secs_f64(),
        peak_rss_mb: peak_rss_mb(),
    }
}
