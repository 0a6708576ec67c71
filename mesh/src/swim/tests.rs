use std::collections::{BTreeMap, BTreeSet};

use foca::Identity as _;

use super::*;

fn id(i: u8) -> SwimId {
    SwimId {
        ledger_id: LedgerId::from_bytes([i; 16]),
        key: [i; 32],
        addr: SocketAddr::from(([127, 0, 0, 1], 4000 + u16::from(i))),
        bump: 0,
    }
}

/// Arrival time, sender key, receiver key, bytes.
type Packet = (Instant, [u8; 32], [u8; 32], Vec<u8>);

/// A few nodes wired together in virtual time: packets arrive 10 ms after they are sent,
/// except to or from a node that is `cut`.
struct Cluster {
    nodes: BTreeMap<[u8; 32], Swim>,
    inflight: Vec<Packet>,
    cut: BTreeSet<[u8; 32]>,
    up: BTreeMap<[u8; 32], BTreeSet<[u8; 32]>>,
    now: Instant,
}

impl Cluster {
    fn new(n: u8) -> Self {
        let config = SwimConfig::default();
        let nodes = (1..=n).map(|i| (id(i).key, Swim::new(id(i), config, u64::from(i)))).collect();
        Self {
            nodes,
            inflight: Vec::new(),
            cut: BTreeSet::new(),
            up: BTreeMap::new(),
            now: Instant::now(),
        }
    }

    fn collect(&mut self) {
        for (key, swim) in &mut self.nodes {
            while let Some(e) = swim.poll_event() {
                match e {
                    SwimEvent::Transmit { to, data } => self.inflight.push((
                        self.now + Duration::from_millis(10),
                        *key,
                        to.key,
                        data,
                    )),
                    SwimEvent::Up(m) => {
                        self.up.entry(*key).or_default().insert(m.key);
                    }
                    SwimEvent::Down(m) => {
                        self.up.entry(*key).or_default().remove(&m.key);
                    }
                }
            }
        }
    }

    /// Runs `secs` virtual seconds in 10 ms steps.
    fn run(&mut self, secs: u64) {
        let end = self.now + Duration::from_secs(secs);
        while self.now < end {
            self.now += Duration::from_millis(10);
            self.collect();
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.inflight).into_iter().partition(|p| p.0 <= now);
            self.inflight = later;
            for (_, from, to, data) in due {
                if self.cut.contains(&from) || self.cut.contains(&to) {
                    continue;
                }
                if let Some(swim) = self.nodes.get_mut(&to) {
                    let _ = swim.handle_data(&from, &data, now);
                }
            }
            for (key, swim) in &mut self.nodes {
                if !self.cut.contains(key) {
                    swim.handle_timeout(now);
                }
            }
        }
        self.collect();
    }

    fn sees(&self, who: u8) -> BTreeSet<u8> {
        self.up.get(&id(who).key).map(|s| s.iter().map(|k| k[0]).collect()).unwrap_or_default()
    }
}

#[test]
fn nodes_that_know_one_node_learn_of_each_other_and_notice_a_failure() {
    let mut c = Cluster::new(5);
    let now = c.now;
    for i in 2..=5 {
        // Only the first node's key and address are known (its bump is a guess).
        c.nodes.get_mut(&id(i).key).unwrap().join(id(1), now);
    }
    c.run(10);
    for i in 1..=5u8 {
        let expected: BTreeSet<u8> = (1..=5).filter(|j| *j != i).collect();
        assert_eq!(c.sees(i), expected, "node {i}");
        assert_eq!(c.nodes[&id(i).key].len(), 4);
    }
    // Node 5 stops answering: every other node declares it down (probe, indirect probes,
    // then the suspicion time).
    c.cut.insert(id(5).key);
    c.run(15);
    for i in 1..=4u8 {
        assert_eq!(c.sees(i), [1, 2, 3, 4].into_iter().filter(|j| *j != i).collect(), "node {i}");
    }
}

#[test]
fn a_joiner_whose_announce_was_lost_asks_again_until_it_is_in() {
    let mut c = Cluster::new(2);
    let now = c.now;
    c.nodes.get_mut(&id(2).key).unwrap().join(id(1), now);
    // The announce is lost.
    c.inflight.clear();
    c.collect();
    c.inflight.clear();
    c.run(1);
    assert!(c.sees(1).is_empty() && c.sees(2).is_empty());
    // Within two probe periods it announces again, and is in.
    c.run(3);
    assert_eq!(c.sees(1), [2].into());
    assert_eq!(c.sees(2), [1].into());
}

#[test]
fn a_node_that_leaves_is_down_at_once_for_the_members_it_told() {
    let mut c = Cluster::new(3);
    let now = c.now;
    for i in 2..=3 {
        c.nodes.get_mut(&id(i).key).unwrap().join(id(1), now);
    }
    c.run(5);
    assert_eq!(c.sees(1), [2, 3].into());
    let now = c.now;
    c.nodes.get_mut(&id(3).key).unwrap().leave(now);
    // Well before a failure could be detected (probe + suspicion: 5 s).
    c.run(1);
    c.cut.insert(id(3).key);
    assert_eq!(c.sees(1), [2].into());
    assert_eq!(c.sees(2), [1].into());
}

#[test]
fn a_packet_naming_another_key_than_its_connection_is_refused_and_counted() {
    let mut a = Swim::new(id(1), SwimConfig::default(), 1);
    let mut b = Swim::new(id(2), SwimConfig::default(), 2);
    let now = Instant::now();
    b.join(id(1), now);
    let Some(SwimEvent::Transmit { data, .. }) = b.poll_event() else { panic!("no announce") };
    // Delivered over a connection that presented key 9: b's announce is not from key 9.
    assert_eq!(a.handle_data(&[9; 32], &data, now), Err(SwimRefused::WrongKey));
    assert_eq!(a.refused(), 1);
    assert!(a.is_empty(), "a refused packet adds no member");
    assert!(a.poll_event().is_none(), "and is not answered");
    // Garbage is refused too.
    assert_eq!(a.handle_data(&[2; 32], &[0xff; 40], now), Err(SwimRefused::Malformed));
    assert_eq!(a.refused(), 2);
    // From the right connection it is taken: b is up and a answers.
    assert_eq!(a.handle_data(&[2; 32], &data, now), Ok(()));
    assert_eq!(a.len(), 1);
    let mut events = Vec::new();
    while let Some(e) = a.poll_event() {
        events.push(e);
    }
    assert!(events.contains(&SwimEvent::Up(id(2))), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, SwimEvent::Transmit { to, .. } if *to == id(2))));
}

/// The announce node `from` sends to join through node 1.
fn announce_to_1(from: u8, now: Instant) -> Vec<u8> {
    let mut s = Swim::new(id(from), SwimConfig::default(), u64::from(from));
    s.join(id(1), now);
    match s.poll_event() {
        Some(SwimEvent::Transmit { data, .. }) => data,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_full_node_refuses_packets_from_strangers_but_not_from_members() {
    let config = SwimConfig { max_members: 1, ..SwimConfig::default() };
    let mut a = Swim::new(id(1), config, 1);
    let now = Instant::now();
    let announce = |from: u8| announce_to_1(from, now);
    assert_eq!(a.handle_data(&[2; 32], &announce(2), now), Ok(()));
    assert_eq!(a.handle_data(&[3; 32], &announce(3), now), Err(SwimRefused::Full));
    assert_eq!(a.len(), 1);
    assert_eq!(a.handle_data(&[2; 32], &announce(2), now), Ok(()), "a member still talks");
}

#[test]
fn strangers_fill_at_most_half_the_membership_and_trusted_nodes_still_get_in() {
    let config = SwimConfig { max_members: 4, ..SwimConfig::default() };
    let mut a = Swim::new(id(1), config, 1);
    a.set_trusted([[9; 32], [10; 32]]);
    let now = Instant::now();
    let announce = |from: u8| announce_to_1(from, now);
    assert_eq!(a.handle_data(&[2; 32], &announce(2), now), Ok(()));
    assert_eq!(a.handle_data(&[3; 32], &announce(3), now), Ok(()));
    // Two untrusted members are half of four: the third stranger is refused...
    assert_eq!(a.handle_data(&[4; 32], &announce(4), now), Err(SwimRefused::Full));
    // ...but trusted nodes still get in, up to the cap.
    assert_eq!(a.handle_data(&[9; 32], &announce(9), now), Ok(()));
    assert_eq!(a.handle_data(&[10; 32], &announce(10), now), Ok(()));
    assert_eq!(a.len(), 4);
}

#[test]
fn a_renewed_identity_wins_even_across_the_wrap() {
    let old = id(1);
    let new = old.renew().unwrap();
    assert_eq!(new.bump, 1);
    assert_eq!(new.addr(), old.addr(), "the same member");
    assert!(new.win_addr_conflict(&old) && !old.win_addr_conflict(&new));
    let last = SwimId { bump: u16::MAX, ..id(1) };
    let wrapped = last.renew().unwrap();
    assert_eq!(wrapped.bump, 0);
    assert!(wrapped.win_addr_conflict(&last) && !last.win_addr_conflict(&wrapped));
    assert!(!old.win_addr_conflict(&old.clone()));
}
