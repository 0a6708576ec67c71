//! A deterministic simulated network for the sans-I/O cores: N nodes in memory, a virtual
//! clock, a seeded RNG, per-message latency, loss, and partitions that heal. Nothing here
//! sleeps or touches a socket; a test advances time by delivering the next message or reaching
//! the next deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi]`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_nanos() as u64;
        lo + Duration::from_nanos(if span == 0 { 0 } else { self.next_u64() % (span + 1) })
    }
}

/// A message in flight.
#[derive(Debug)]
pub struct Delivery<M> {
    pub from: usize,
    pub to: usize,
    pub msg: M,
}

struct Queued<M> {
    at: Instant,
    seq: u64,
    delivery: Delivery<M>,
}

impl<M> PartialEq for Queued<M> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<M> Eq for Queued<M> {}
impl<M> PartialOrd for Queued<M> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Queued<M> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Network conditions.
#[derive(Clone, Debug)]
pub struct Conditions {
    /// Shortest and longest one-way delay.
    pub latency: (Duration, Duration),
    /// Probability that a message is lost.
    pub loss: f64,
}

/// The simulated network: a queue of deliveries ordered by virtual time.
pub struct Net<M> {
    now: Instant,
    pub rng: Rng,
    conditions: Conditions,
    /// Cut links (either direction) and when each heals.
    partitions: Vec<(usize, usize, Instant)>,
    /// A split of the whole network: each node's side, until it heals.
    split: Option<(Vec<bool>, Instant)>,
    queue: BinaryHeap<Reverse<Queued<M>>>,
    seq: u64,
    pub sent: u64,
    pub lost: u64,
    pub cut: u64,
}

impl<M> Net<M> {
    pub fn new(seed: u64, conditions: Conditions) -> Self {
        Self {
            now: Instant::now(),
            rng: Rng::new(seed),
            conditions,
            partitions: Vec::new(),
            split: None,
            queue: BinaryHeap::new(),
            seq: 0,
            sent: 0,
            lost: 0,
            cut: 0,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Cuts the link between `a` and `b` from now until `heal`.
    pub fn partition(&mut self, a: usize, b: usize, heal: Instant) {
        self.partitions.push((a, b, heal));
    }

    /// Splits the network in two (`side[i]` for node i; nodes past its end are on side
    /// `false`) from now until `heal`.
    pub fn split(&mut self, side: Vec<bool>, heal: Instant) {
        self.split = Some((side, heal));
    }

    /// Whether `a` and `b` are on different sides of a split now.
    pub fn split_apart(&self, a: usize, b: usize) -> bool {
        self.split.as_ref().is_some_and(|(side, heal)| {
            let side_of = |i: usize| side.get(i).copied().unwrap_or(false);
            self.now < *heal && side_of(a) != side_of(b)
        })
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        self.split_apart(a, b)
            || self
                .partitions
                .iter()
                .any(|&(x, y, heal)| self.now < heal && ((x, y) == (a, b) || (x, y) == (b, a)))
    }

    /// Sends `msg`: lost with the loss probability or on a cut link, otherwise delivered after
    /// the latency.
    pub fn send(&mut self, from: usize, to: usize, msg: M) {
        self.sent += 1;
        if self.partitioned(from, to) {
            self.cut += 1;
            return;
        }
        if self.rng.unit() < self.conditions.loss {
            self.lost += 1;
            return;
        }
        let (lo, hi) = self.conditions.latency;
        let at = self.now + self.rng.between(lo, hi);
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            delivery: Delivery { from, to, msg },
        }));
    }

    /// When the next message arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.at)
    }

    /// Moves the clock forward to `t` (never back).
    pub fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// The next message due now or earlier.
    pub fn pop_due(&mut self) -> Option<Delivery<M>> {
        if self.next_arrival()? > self.now {
            return None;
        }
        self.queue.pop().map(|Reverse(q)| q.delivery)
    }
}

#[cfg(test)]
#[test]
fn the_network_loses_cuts_and_orders_by_time() {
    let mut net: Net<u32> = Net::new(
        7,
        Conditions { latency: (Duration::from_millis(10), Duration::from_millis(20)), loss: 0.5 },
    );
    let t0 = net.now();
    for i in 0..1000 {
        net.send(0, 1, i);
    }
    assert!(net.lost > 400 && net.lost < 600, "lost {}", net.lost);
    net.partition(0, 2, t0 + Duration::from_secs(1));
    net.send(2, 0, 1);
    assert_eq!(net.cut, 1);
    let mut last = t0;
    let mut got = 0;
    while let Some(at) = net.next_arrival() {
        assert!(at >= last && at >= t0 + Duration::from_millis(10));
        net.advance_to(at);
        last = at;
        while net.pop_due().is_some() {
            got += 1;
        }
    }
    assert_eq!(got + net.lost, 1000);
    net.advance_to(t0 + Duration::from_secs(1));
    net.send(2, 0, 1);
    assert_eq!(net.cut, 1, "the partition healed");
    net.split(vec![true, false], t0 + Duration::from_secs(2));
    net.send(0, 3, 1);
    net.send(1, 3, 1);
    assert_eq!(net.cut, 2, "node 3 is past the side list: side false, apart from node 0 only");
}
