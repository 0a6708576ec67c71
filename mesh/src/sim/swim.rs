//! SWIM in the simulator (`onoal sim --swim`): every node runs the real SWIM core
//! ([`Swim`], on foca) over the simulated network, with its virtual clock, latency and loss.
//!
//! Timeline (virtual seconds): nodes join one after another over the join phase (100 per
//! second, at least 5 s), each announcing itself to two random nodes already up; 10 s to
//! settle; then the measured phase, in which `churn` x nodes crash (no goodbye) and as many
//! new nodes join, spread over its first 70 % (the last joiner has the rest to converge).
//!
//! SWIM keeps a full member list, so every node holds every other: memory grows with n², and
//! the simulator takes at most 2,000 SWIM nodes (the DHT scenario covers 10,000 and more; a
//! real node holds at most `max_members`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;

use onoal_engine::LedgerId;

use super::net::{Conditions, Net};
use crate::swim::{Swim, SwimConfig, SwimEvent, SwimId};

/// Most nodes a SWIM simulation takes.
pub const MAX_SWIM_NODES: usize = 2000;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SwimSimConfig {
    /// Nodes at the start of the measured phase.
    pub nodes: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Fraction of nodes that crash (and are replaced) during the measured phase.
    pub churn: f64,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// One-way latency range.
    pub latency: (Duration, Duration),
    /// Length of the measured phase.
    pub measure: Duration,
    /// SWIM's settings.
    pub swim: SwimConfig,
}

impl Default for SwimSimConfig {
    fn default() -> Self {
        Self {
            nodes: 200,
            seed: 1,
            churn: 0.0,
            loss: 0.0,
            latency: (Duration::from_millis(10), Duration::from_millis(100)),
            measure: Duration::from_secs(60),
            swim: SwimConfig::default(),
        }
    }
}

/// What the SWIM simulation measured. Times are virtual seconds.
#[derive(Clone, Debug, Serialize)]
pub struct SwimSimReport {
    /// Always `swim`.
    pub scenario: &'static str,
    /// Nodes at the start of the measured phase.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Churn.
    pub churn: f64,
    /// Loss.
    pub loss: f64,
    /// Seconds from a join until every live node that was up before it held the joiner as a
    /// live member (what the mesh knows of a joiner; later joiners fill their own lists from
    /// the members that talk to them, see `members_complete_share`): median over the joiners
    /// that got there.
    pub join_converged_s_p50: Option<f64>,
    /// 99th percentile.
    pub join_converged_s_p99: Option<f64>,
    /// Joiners not held by every live node older than them at the end.
    pub joins_unconverged: u64,
    /// Seconds from a crash until a node that held the crashed one marked it down: median
    /// over every (observer, crashed) pair.
    pub failure_detected_s_p50: Option<f64>,
    /// 99th percentile.
    pub failure_detected_s_p99: Option<f64>,
    /// Pairs where the observer still held the crashed node at the end.
    pub failures_undetected: u64,
    /// Times a node marked a live node down (loss, slow answers).
    pub false_downs: u64,
    /// Live members per live node at the end, mean (n - 1 when complete).
    pub members_mean: f64,
    /// Share of live nodes that hold every other live node at the end. A joiner hears of
    /// the others as they probe it and from the member lists its periodic announces bring
    /// back, so the latest joiners are the ones still filling in.
    pub members_complete_share: f64,
    /// Packets per live node per virtual second, over the whole run.
    pub messages_per_node_per_s: f64,
    /// Packets sent.
    pub messages: u64,
    /// Lost to loss.
    pub lost: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Peak resident memory of the process (MiB).
    pub peak_rss_mb: f64,
}

enum Script {
    Join,
    Crash,
}

struct World {
    t0: Instant,
    net: Net<Vec<u8>>,
    nodes: Vec<Option<Swim>>,
    ids: Vec<SwimId>,
    index: HashMap<[u8; 32], usize>,
    /// Per node, the members it holds live.
    holds: Vec<BTreeSet<usize>>,
    /// Per node, how many live nodes that joined before it hold it.
    held_by: Vec<usize>,
    live: usize,
    joined_at: Vec<Instant>,
    converged: Vec<Option<f64>>,
    crashed_at: HashMap<usize, Instant>,
    /// (observer, crashed) pairs still waiting for the observer's verdict.
    watching: BTreeSet<(usize, usize)>,
    detections: Vec<f64>,
    false_downs: u64,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per node, the time of its entry in `timers` (other entries for it are stale).
    scheduled: Vec<Option<Instant>>,
    config: SwimSimConfig,
}

impl World {
    fn now(&self) -> Instant {
        self.net.now()
    }

    fn add_node(&mut self) -> usize {
        let i = self.ids.len();
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        key[8..16].copy_from_slice(&self.config.seed.to_le_bytes());
        let mut uuid = [0u8; 16];
        uuid[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
        let octets = (i as u32 + 1).to_be_bytes();
        let id = SwimId {
            ledger_id: LedgerId::from_bytes(uuid),
            key,
            addr: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, octets[1], octets[2], octets[3])),
                7400,
            ),
            bump: 0,
        };
        let seed = self.config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64);
        self.nodes.push(Some(Swim::new(id.clone(), self.config.swim, seed)));
        self.index.insert(key, i);
        self.ids.push(id);
        self.holds.push(BTreeSet::new());
        self.held_by.push(0);
        self.joined_at.push(self.now());
        self.converged.push(None);
        self.scheduled.push(None);
        self.live += 1;
        i
    }

    /// Moves node `i`'s packets into the network and applies its membership changes.
    fn drain(&mut self, i: usize) {
        let now = self.now();
        while let Some(event) = self.nodes[i].as_mut().and_then(Swim::poll_event) {
            match event {
                SwimEvent::Transmit { to, data } => {
                    if let Some(&j) = self.index.get(&to.key) {
                        self.net.send(i, j, data);
                    }
                }
                SwimEvent::Up(m) => {
                    let Some(&j) = self.index.get(&m.key) else { continue };
                    if self.holds[i].insert(j) && self.nodes[j].is_some() && i < j {
                        self.held_by[j] += 1;
                        self.check_converged(j);
                    }
                }
                SwimEvent::Down(m) => {
                    let Some(&j) = self.index.get(&m.key) else { continue };
                    if !self.holds[i].remove(&j) {
                        continue;
                    }
                    match self.crashed_at.get(&j) {
                        Some(at) => {
                            if self.watching.remove(&(i, j)) {
                                self.detections.push(now.duration_since(*at).as_secs_f64());
                            }
                        }
                        None => {
                            if i < j {
                                self.held_by[j] -= 1;
                            }
                            self.false_downs += 1;
                        }
                    }
                }
            }
        }
        let next = self.nodes[i].as_ref().and_then(Swim::poll_timeout);
        if let Some(t) = next
            && self.scheduled[i].is_none_or(|s| t < s)
        {
            self.scheduled[i] = Some(t);
            self.timers.push(Reverse((t, i)));
        }
    }

    /// Whether every live node that joined before `j` holds it; records the time once.
    fn check_converged(&mut self, j: usize) {
        if self.converged[j].is_some() {
            return;
        }
        let crashed_before = self.crashed_at.keys().filter(|&&c| c < j).count();
        if self.held_by[j] >= j - crashed_before {
            let s = self.now().duration_since(self.joined_at[j]).as_secs_f64();
            self.converged[j] = Some(s);
        }
    }

    fn join(&mut self) {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&k| self.nodes[k].is_some()).collect();
        let i = self.add_node();
        if live.is_empty() {
            self.converged[i] = Some(0.0);
            return;
        }
        // Through two random live nodes (one may crash before it answers), as an operator
        // would list more than one bootstrap node.
        for _ in 0..2 {
            let via = live[(self.net.rng.next_u64() % live.len() as u64) as usize];
            let (to, now) = (self.ids[via].clone(), self.now());
            if let Some(s) = self.nodes[i].as_mut() {
                s.join(to, now);
            }
        }
        self.drain(i);
    }

    fn crash(&mut self) {
        let live: Vec<usize> = (0..self.nodes.len()).filter(|&k| self.nodes[k].is_some()).collect();
        if live.len() < 2 {
            return;
        }
        let c = live[(self.net.rng.next_u64() % live.len() as u64) as usize];
        self.nodes[c] = None;
        self.live -= 1;
        self.crashed_at.insert(c, self.now());
        for &m in &std::mem::take(&mut self.holds[c]) {
            if self.nodes[m].is_some() && c < m {
                self.held_by[m] -= 1;
            }
        }
        // One fewer older node to hold each later joiner.
        for j in c + 1..self.nodes.len() {
            if self.nodes[j].is_some() {
                self.check_converged(j);
            }
        }
        for o in 0..self.nodes.len() {
            if self.nodes[o].is_some() && self.holds[o].contains(&c) {
                self.watching.insert((o, c));
            }
        }
    }
}

/// Nearest-rank quantile of `values` (sorted here).
fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some((values[rank - 1] * 1000.0).round() / 1000.0)
}

/// Runs the SWIM scenario.
pub fn run(config: &SwimSimConfig) -> SwimSimReport {
    let wall = Instant::now();
    let net = Net::new(config.seed, Conditions { latency: config.latency, loss: config.loss });
    let t0 = net.now();
    let n = config.nodes.clamp(2, MAX_SWIM_NODES);
    let mut w = World {
        t0,
        net,
        nodes: Vec::new(),
        ids: Vec::new(),
        index: HashMap::new(),
        holds: Vec::new(),
        held_by: Vec::new(),
        live: 0,
        joined_at: Vec::new(),
        converged: Vec::new(),
        crashed_at: HashMap::new(),
        watching: BTreeSet::new(),
        detections: Vec::new(),
        false_downs: 0,
        timers: BinaryHeap::new(),
        scheduled: Vec::new(),
        config: config.clone(),
    };
    let join_phase = Duration::from_secs_f64((n as f64 / 100.0).max(5.0));
    let measure_start = t0 + join_phase + Duration::from_secs(10);
    let end = measure_start + config.measure;
    let crashes = (n as f64 * config.churn).round() as usize;
    let mut script: BinaryHeap<Reverse<(Instant, u64, u8)>> = BinaryHeap::new();
    let mut seq = 0;
    let mut push = |at: Instant, what: Script| {
        seq += 1;
        script.push(Reverse((at, seq, what as u8)));
    };
    for i in 0..n {
        push(t0 + join_phase.mul_f64(i as f64 / n as f64), Script::Join);
    }
    let span = config.measure.mul_f64(0.7);
    for i in 0..crashes {
        let at = measure_start + span.mul_f64(i as f64 / crashes.max(1) as f64);
        push(at, Script::Crash);
        push(at + Duration::from_millis(500), Script::Join);
    }

    loop {
        let next_script = script.peek().map(|Reverse((t, ..))| *t);
        let next_timer = w.timers.peek().map(|Reverse((t, _))| *t);
        let next = [next_script, next_timer, w.net.next_arrival()].into_iter().flatten().min();
        let Some(next) = next.filter(|t| *t <= end) else { break };
        w.net.advance_to(next);
        let now = w.now();
        while let Some(d) = w.net.pop_due() {
            let from_key = w.ids[d.from].key;
            if let Some(s) = w.nodes[d.to].as_mut() {
                let _ = s.handle_data(&from_key, &d.msg, now);
                w.drain(d.to);
            }
        }
        while let Some(Reverse((t, i))) = w.timers.peek().copied() {
            if t > now {
                break;
            }
            w.timers.pop();
            if w.scheduled[i] != Some(t) {
                continue;
            }
            w.scheduled[i] = None;
            let due = w.nodes[i].as_ref().and_then(Swim::poll_timeout).is_some_and(|t| t <= now);
            if due && let Some(s) = w.nodes[i].as_mut() {
                s.handle_timeout(now);
            }
            w.drain(i);
        }
        while let Some(Reverse((t, _, what))) = script.peek().copied() {
            if t > now {
                break;
            }
            script.pop();
            if what == Script::Join as u8 {
                w.join();
            } else {
                w.crash();
            }
        }
    }

    let now = w.now().max(end);
    let live: Vec<usize> = (0..w.nodes.len()).filter(|&k| w.nodes[k].is_some()).collect();
    let mut joins: Vec<f64> = live.iter().filter_map(|&k| w.converged[k]).collect();
    let joins_unconverged = live.iter().filter(|&&k| w.converged[k].is_none()).count() as u64;
    let failures_undetected =
        w.watching.iter().filter(|(o, _)| w.nodes[*o].is_some()).count() as u64;
    let live_held = |k: usize| w.holds[k].iter().filter(|&&m| w.nodes[m].is_some()).count();
    let members_mean =
        live.iter().map(|&k| live_held(k) as f64).sum::<f64>() / live.len().max(1) as f64;
    let complete = live.iter().filter(|&&k| live_held(k) + 1 == live.len()).count();
    let virtual_s = now.duration_since(w.t0).as_secs_f64();
    SwimSimReport {
        scenario: "swim",
        nodes: n,
        seed: config.seed,
        churn: config.churn,
        loss: config.loss,
        join_converged_s_p50: quantile(&mut joins, 0.5),
        join_converged_s_p99: quantile(&mut joins, 0.99),
        joins_unconverged,
        failure_detected_s_p50: quantile(&mut w.detections, 0.5),
        failure_detected_s_p99: quantile(&mut w.detections, 0.99),
        failures_undetected,
        false_downs: w.false_downs,
        members_mean: (members_mean * 100.0).round() / 100.0,
        members_complete_share: (complete as f64 / live.len().max(1) as f64 * 1000.0).round()
            / 1000.0,
        messages_per_node_per_s: ((w.net.sent as f64 / n as f64 / virtual_s.max(1.0)) * 100.0)
            .round()
            / 100.0,
        messages: w.net.sent,
        lost: w.net.lost,
        virtual_s,
        wall_s: wall.elapsed().as_secs_f64(),
        peak_rss_mb: super::scenario::peak_rss_mb(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundred_nodes_converge_and_detect_every_crash_under_loss() {
        let config = SwimSimConfig { nodes: 200, churn: 0.05, loss: 0.01, ..Default::default() };
        let r = run(&config);
        assert_eq!(r.joins_unconverged, 0, "{r:?}");
        assert_eq!(r.failures_undetected, 0, "{r:?}");
        assert!(r.failure_detected_s_p50.is_some(), "{r:?}");
        // The nodes that joined before the churn hold every live node; the latest joiners
        // are still filling in their lists (10 replacements).
        assert!(r.members_complete_share >= 0.95, "{r:?}");
        assert!(r.members_mean >= 0.98 * 199.0, "{r:?}");
        // Same seed, same report.
        let again = run(&config);
        assert_eq!(
            (again.messages, again.false_downs, again.join_converged_s_p99),
            (r.messages, r.false_downs, r.join_converged_s_p99)
        );
    }
}
