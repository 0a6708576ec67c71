//! Membership, sans-I/O: which known ledgers a node keeps in touch with, when each is due a
//! heartbeat, and when one counts as gone. A member answers heartbeats (or sends any message)
//! and is `connected`; `misses` unanswered heartbeats in a row make it `disconnected`, as does
//! its signed goodbye (`left`). Time comes in as `now`; the driver sends what
//! [`Membership::due`] returns and reports answers, misses and goodbyes.
//!
//! Detection time is at most `interval * misses` plus one heartbeat's deadline.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

use crate::id::PeerId;

/// Settings.
#[derive(Clone, Copy, Debug)]
pub struct MembershipConfig {
    /// Time between heartbeats to one member.
    pub interval: Duration,
    /// Unanswered heartbeats in a row before a member is disconnected.
    pub misses: u32,
    /// Most members kept in touch with (the seed's maxPeers); further known ledgers stay known.
    pub max_members: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(2), misses: 3, max_members: 64 }
    }
}

/// A member's state (the seed's mesh_connections status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Answering.
    Connected,
    /// Not answering (or never answered).
    Disconnected,
    /// Said goodbye.
    Left,
}

impl Status {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Left => "left",
        }
    }
}

/// What is known of one member (the seed's mesh_connections columns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberConnection {
    /// The member's ledger.
    pub ledger_id: LedgerId,
    /// Its key.
    pub public_key: [u8; 32],
    /// Where it is heartbeated.
    pub addr: SocketAddr,
    /// `direct` (heartbeated over its own connection).
    pub kind: String,
    /// State.
    pub status: Status,
    /// Round-trip time of heartbeats, smoothed (ms).
    pub latency_ms: Option<u32>,
    /// Last message from it (ms since the epoch).
    pub last_message_ms: Option<u64>,
    /// Messages from it.
    pub message_count: u64,
    /// Heartbeats it did not answer.
    pub error_count: u64,
    /// When it became a member (ms since the epoch).
    pub created_ms: u64,
    /// When its status last changed (ms since the epoch).
    pub updated_ms: u64,
}

/// A change of a member's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The member.
    pub ledger_id: LedgerId,
    /// Its new status.
    pub status: Status,
}

struct Member {
    connection: MemberConnection,
    missed: u32,
    next_due: Instant,
    in_flight: bool,
    /// When it signed its goodbye (its own clock): messages it signed before do not bring it
    /// back.
    left_at_ms: Option<u64>,
}

/// The members of one node.
pub struct Membership {
    config: MembershipConfig,
    members: BTreeMap<LedgerId, Member>,
    changes: VecDeque<Change>,
}

impl Membership {
    /// No members yet.
    pub fn new(config: MembershipConfig) -> Self {
        Self { config, members: BTreeMap::new(), changes: VecDeque::new() }
    }

    /// Keeps in touch with `ledger` (key `peer`, at `addr`) from now on, if there is room; a
    /// known member's address is updated. Returns whether it is a member.
    pub fn track(
        &mut self,
        ledger: LedgerId,
        peer: PeerId,
        addr: SocketAddr,
        now: Instant,
        now_ms: u64,
    ) -> bool {
        if let Some(m) = self.members.get_mut(&ledger) {
            m.connection.addr = addr;
            m.connection.public_key = *peer.as_bytes();
            return true;
        }
        if self.members.len() >= self.config.max_members {
            return false;
        }
        let connection = MemberConnection {
            ledger_id: ledger,
            public_key: *peer.as_bytes(),
            addr,
            kind: "direct".into(),
            status: Status::Disconnected,
            latency_ms: None,
            last_message_ms: None,
            message_count: 0,
            error_count: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        self.members.insert(
            ledger,
            Member { connection, missed: 0, next_due: now, in_flight: false, left_at_ms: None },
        );
        true
    }

    /// Stops keeping in touch with `ledger`.
    pub fn forget(&mut self, ledger: &LedgerId) -> Option<MemberConnection> {
        self.members.remove(ledger).map(|m| m.connection)
    }

    /// Members due a heartbeat now (each then counts as in flight until answered or missed).
    pub fn due(&mut self, now: Instant) -> Vec<(LedgerId, PeerId, SocketAddr)> {
        let mut out = Vec::new();
        for (id, m) in &mut self.members {
            if m.in_flight || m.next_due > now || m.connection.status == Status::Left {
                continue;
            }
            let Some(peer) = PeerId::from_bytes(&m.connection.public_key) else { continue };
            m.in_flight = true;
            m.next_due = now + self.config.interval;
            out.push((*id, peer, m.connection.addr));
        }
        out
    }

    /// When the next heartbeat is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.members
            .values()
            .filter(|m| !m.in_flight && m.connection.status != Status::Left)
            .map(|m| m.next_due)
            .min()
    }

    fn set(&mut self, ledger: &LedgerId, status: Status, now_ms: u64) {
        if let Some(m) = self.members.get_mut(ledger)
            && m.connection.status != status
        {
            m.connection.status = status;
            m.connection.updated_ms = now_ms;
            self.changes.push_back(Change { ledger_id: *ledger, status });
        }
    }

    /// `ledger` answered a heartbeat after `rtt`.
    pub fn answered(&mut self, ledger: &LedgerId, rtt: Duration, now_ms: u64) {
        let Some(m) = self.members.get_mut(ledger) else { return };
        m.in_flight = false;
        m.missed = 0;
        let sample = u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX);
        m.connection.latency_ms = Some(match m.connection.latency_ms {
            // Smoothed like TCP's SRTT: 7/8 old, 1/8 new.
            Some(old) => ((u64::from(old) * 7 + u64::from(sample)) / 8) as u32,
            None => sample,
        });
        m.connection.last_message_ms = Some(now_ms);
        m.connection.message_count += 1;
        // The answer to a heartbeat sent before its goodbye arrived does not bring a member
        // back (it raced the goodbye); a new message from it does (`heard`).
        if m.connection.status != Status::Left {
            self.set(ledger, Status::Connected, now_ms);
        }
    }

    /// `ledger` did not answer a heartbeat in time.
    pub fn missed(&mut self, ledger: &LedgerId, now_ms: u64) {
        let misses = self.config.misses;
        let Some(m) = self.members.get_mut(ledger) else { return };
        m.in_flight = false;
        m.missed += 1;
        m.connection.error_count += 1;
        if m.missed >= misses {
            self.set(ledger, Status::Disconnected, now_ms);
        }
    }

    /// A message from `ledger` (any type): it is alive.
    ///
    /// `sent_ms` is the message's signed timestamp: a message signed before the member's
    /// goodbye (delivered after it on another stream) does not bring it back.
    pub fn heard(&mut self, ledger: &LedgerId, sent_ms: u64, now_ms: u64) {
        let Some(m) = self.members.get_mut(ledger) else { return };
        m.connection.last_message_ms = Some(now_ms);
        m.connection.message_count += 1;
        if m.left_at_ms.is_some_and(|left| sent_ms <= left) {
            return;
        }
        m.left_at_ms = None;
        m.missed = 0;
        if m.connection.status != Status::Connected {
            self.set(ledger, Status::Connected, now_ms);
        }
    }

    /// `ledger` said goodbye in a message signed at `sent_ms`: no more heartbeats until it
    /// is heard from in a message signed later.
    pub fn left(&mut self, ledger: &LedgerId, sent_ms: u64, now_ms: u64) {
        let Some(m) = self.members.get_mut(ledger) else { return };
        m.left_at_ms = Some(m.left_at_ms.map_or(sent_ms, |t| t.max(sent_ms)));
        self.set(ledger, Status::Left, now_ms);
    }

    /// The next status change.
    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// Every member.
    pub fn connections(&self) -> Vec<MemberConnection> {
        self.members.values().map(|m| m.connection.clone()).collect()
    }

    /// One member.
    pub fn get(&self, ledger: &LedgerId) -> Option<&MemberConnection> {
        self.members.get(ledger).map(|m| &m.connection)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::new(SigningKey::from_bytes(&[n; 32]).verifying_key())
    }

    #[test]
    fn a_member_is_connected_when_it_answers_and_disconnected_after_the_misses() {
        let config =
            MembershipConfig { interval: Duration::from_secs(1), misses: 3, max_members: 2 };
        let mut m = Membership::new(config);
        let t0 = Instant::now();
        let (a, b, c) = (LedgerId::random(), LedgerId::random(), LedgerId::random());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(m.track(a, peer(1), addr, t0, 0));
        assert!(m.track(b, peer(2), addr, t0, 0));
        assert!(!m.track(c, peer(3), addr, t0, 0), "max_members");
        let due = m.due(t0);
        assert_eq!(due.len(), 2);
        assert!(m.due(t0).is_empty(), "in flight");
        m.answered(&a, Duration::from_millis(40), 10);
        assert_eq!(m.poll_change(), Some(Change { ledger_id: a, status: Status::Connected }));
        assert_eq!(m.get(&a).unwrap().latency_ms, Some(40));
        m.answered(&b, Duration::from_millis(40), 10);
        assert_eq!(m.poll_change(), Some(Change { ledger_id: b, status: Status::Connected }));
        // Then b stops answering: three misses, one per interval.
        let mut t = t0;
        for i in 0..3 {
            m.missed(&b, 100 + i);
            t += Duration::from_secs(1);
            assert!(m.due(t).iter().any(|(id, ..)| *id == b));
        }
        assert_eq!(m.poll_change(), Some(Change { ledger_id: b, status: Status::Disconnected }));
        assert_eq!(m.get(&b).unwrap().error_count, 3);
        assert_eq!(m.poll_change(), None, "one change per change");
        // Any message brings it back; a goodbye takes a member out of the heartbeat rounds.
        m.heard(&b, 200, 200);
        assert_eq!(m.poll_change(), Some(Change { ledger_id: b, status: Status::Connected }));
        m.answered(&a, Duration::from_millis(80), 300);
        assert_eq!(m.get(&a).unwrap().latency_ms, Some(45), "smoothed");
        m.left(&a, 400, 400);
        assert_eq!(m.poll_change(), Some(Change { ledger_id: a, status: Status::Left }));
        assert!(m.due(t + Duration::from_secs(10)).iter().all(|(id, ..)| *id != a));
        // The answer to a heartbeat that was in flight when the goodbye came keeps it left (a
        // race seen between processes: the goodbye, then the leaving node's last answer).
        m.answered(&a, Duration::from_millis(40), 410);
        assert_eq!(m.poll_change(), None);
        assert_eq!(m.get(&a).unwrap().status, Status::Left);
        // A message it signed before the goodbye, delivered after it, keeps it left too.
        m.heard(&a, 399, 450);
        assert_eq!(m.poll_change(), None);
        assert_eq!(m.get(&a).unwrap().status, Status::Left);
        // One signed after the goodbye brings it back.
        m.heard(&a, 500, 500);
        assert_eq!(m.poll_change(), Some(Change { ledger_id: a, status: Status::Connected }));
    }
}
