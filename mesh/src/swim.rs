//! SWIM membership (discovery method 5, gossip), sans-I/O, on `foca`: which ledgers of the
//! cluster are alive, spread by piggybacked gossip, with failure detection by direct and
//! indirect probes. Time comes in as `now`; the driver delivers packets with
//! [`Swim::handle_data`], fires [`Swim::handle_timeout`] at [`Swim::poll_timeout`], and sends
//! or acts on what [`Swim::poll_event`] returns.
//!
//! SWIM's packets are not signed. Two rules keep that harmless: a packet's sender identity must
//! carry the key its QUIC connection presented (else it is refused and counted), and a member
//! SWIM reports is only a candidate: its record is fetched from it and must be signed by the
//! ledger it names (the QUIC handshake must present that key) before anything else uses it.
//! A lying member can make a peer look down or up in SWIM's view; it cannot make a record.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Codec, Foca, NoCustomBroadcast, OwnedNotification, PostcardCodec};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

/// The ALPN of SWIM's datagrams.
pub const ALPN_SWIM: &[u8] = b"onoal-swim/1";

/// A member as SWIM knows it: its ledger, key and address, and a bump that a restarted or
/// wrongly declared-down node raises to come back at once (foca's `renew`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwimId {
    /// The member's ledger.
    pub ledger_id: LedgerId,
    /// Its key: the QUIC handshake must present it; also the member's address in SWIM's
    /// sense (one member per key).
    pub key: [u8; 32],
    /// Where its QUIC endpoint listens.
    pub addr: SocketAddr,
    /// Raised on each renewal.
    pub bump: u16,
}

impl foca::Identity for SwimId {
    type Addr = [u8; 32];

    fn renew(&self) -> Option<Self> {
        Some(Self { bump: self.bump.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> [u8; 32] {
        self.key
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Serial-number order (RFC 1982), so a bump that wrapped still wins.
        self.bump != adversary.bump && (self.bump.wrapping_sub(adversary.bump) as i16) > 0
    }
}

/// Settings.
#[derive(Clone, Copy, Debug)]
pub struct SwimConfig {
    /// Time between probes of one random member.
    pub probe_period: Duration,
    /// How long a probe waits for its answer before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// How long a suspect has to refute before it is declared down.
    pub suspect_to_down_after: Duration,
    /// Largest packet (a QUIC datagram must hold it).
    pub max_packet_size: usize,
    /// Most members held; packets from unknown senders are refused beyond it.
    pub max_members: usize,
}

impl Default for SwimConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            suspect_to_down_after: Duration::from_secs(4),
            max_packet_size: 1150,
            max_members: 4096,
        }
    }
}

impl SwimConfig {
    fn foca(&self) -> foca::Config {
        let cluster = u32::try_from(self.max_members).unwrap_or(u32::MAX);
        let mut c = foca::Config::new_lan(NonZeroU32::new(cluster).unwrap_or(NonZeroU32::MIN));
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt.min(self.probe_period);
        c.suspect_to_down_after = self.suspect_to_down_after;
        c.max_packet_size = NonZeroUsize::new(self.max_packet_size).unwrap_or(NonZeroUsize::MIN);
        // Old members are news to no one, so a joiner hears of them only when they talk to it:
        // announcing to 2 random members every 2 periods brings 2 packets full of members
        // (about 15 each) back each time.
        c.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.probe_period * 2,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        c
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwimEvent {
    /// Send `data` to `to` (one datagram).
    Transmit {
        /// The member.
        to: SwimId,
        /// The packet.
        data: Vec<u8>,
    },
    /// A member is alive (new, or back).
    Up(SwimId),
    /// A member is down (failed to answer direct and indirect probes, or left).
    Down(SwimId),
}

/// Why a packet was refused before SWIM saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwimRefused {
    /// Not a SWIM packet.
    #[error("not a SWIM packet")]
    Malformed,
    /// The packet's sender names another key than its connection presented.
    #[error("the packet's sender is not the connection's key")]
    WrongKey,
    /// Full, and the sender is not a member.
    #[error("too many members")]
    Full,
    /// SWIM refused it (from itself, too big, bad updates).
    #[error("SWIM refused the packet")]
    Refused,
}

/// Join targets remembered for asking again.
const MAX_SEEDS: usize = 8;
/// Longest wait between announces to seeds that are not members.
const MAX_REJOIN_BACKOFF: Duration = Duration::from_secs(60);

type Inner = Foca<SwimId, PostcardCodec, StdRng, NoCustomBroadcast>;

/// One node's SWIM membership.
pub struct Swim {
    foca: Inner,
    config: SwimConfig,
    runtime: AccumulatingRuntime<SwimId>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    pending: HashMap<u64, foca::Timer<SwimId>>,
    next_timer: u64,
    events: VecDeque<SwimEvent>,
    refused: u64,
    /// The nodes it asked to join through, asked again while none of them is a member (an
    /// announce or its answer may be lost; without this, a node whose announce was lost and
    /// the nodes that joined through it would stay an island).
    seeds: Vec<SwimId>,
    rejoin_at: Option<Instant>,
    rejoin_backoff: Duration,
    /// Keys of the nodes whose ledgers this node trusts: strangers outside it may fill at most
    /// half of `max_members`.
    trusted: std::collections::HashSet<[u8; 32]>,
}

impl Swim {
    /// `me` joins no one yet; `seed` seeds its random choices (the simulator passes one per
    /// node, so a run is reproducible).
    pub fn new(me: SwimId, config: SwimConfig, seed: u64) -> Self {
        let foca = Foca::new(me, config.foca(), StdRng::seed_from_u64(seed), PostcardCodec);
        Self {
            foca,
            config,
            runtime: AccumulatingRuntime::new(),
            timers: BinaryHeap::new(),
            pending: HashMap::new(),
            next_timer: 0,
            events: VecDeque::new(),
            refused: 0,
            seeds: Vec::new(),
            rejoin_at: None,
            rejoin_backoff: Duration::ZERO,
            trusted: std::collections::HashSet::new(),
        }
    }

    /// The keys of the nodes whose ledgers this node trusts (replaces the previous set): a
    /// stranger not among them is refused once untrusted members fill half of `max_members`,
    /// so made-up identities cannot crowd trusted ones out of the membership.
    pub fn set_trusted(&mut self, keys: impl IntoIterator<Item = [u8; 32]>) {
        self.trusted = keys.into_iter().collect();
    }

    /// This node as SWIM knows it.
    pub fn identity(&self) -> &SwimId {
        self.foca.identity()
    }

    /// Asks `to` to let this node in (a bootstrap node, or any known ledger).
    pub fn join(&mut self, to: SwimId, now: Instant) {
        if to.key == self.identity().key {
            return;
        }
        if !self.seeds.iter().any(|s| s.key == to.key) {
            if self.seeds.len() >= MAX_SEEDS {
                self.seeds.remove(0);
            }
            self.seeds.push(to.clone());
        }
        let _ = self.foca.announce(to, &mut self.runtime);
        self.rejoin_backoff = self.config.probe_period * 2;
        self.rejoin_at = Some(now + self.rejoin_backoff);
        self.drain(now);
    }

    /// A packet from the peer whose QUIC connection presented `from_key`.
    ///
    /// # Errors
    /// [`SwimRefused`]; each refusal is counted.
    pub fn handle_data(
        &mut self,
        from_key: &[u8; 32],
        data: &[u8],
        now: Instant,
    ) -> Result<(), SwimRefused> {
        let result = self.check(from_key, data).and_then(|()| {
            self.foca.handle_data(data, &mut self.runtime).map_err(|_| SwimRefused::Refused)
        });
        if result.is_err() {
            self.refused += 1;
        }
        self.drain(now);
        result
    }

    fn check(&self, from_key: &[u8; 32], data: &[u8]) -> Result<(), SwimRefused> {
        let header: foca::Header<SwimId> =
            PostcardCodec.decode_header(data).map_err(|_| SwimRefused::Malformed)?;
        if header.src.key != *from_key {
            return Err(SwimRefused::WrongKey);
        }
        let known = self.foca.iter_membership_state().any(|m| m.id().key == *from_key);
        if known {
            return Ok(());
        }
        if self.foca.iter_membership_state().len() >= self.config.max_members {
            return Err(SwimRefused::Full);
        }
        if !self.trusted.contains(from_key) {
            let untrusted = self
                .foca
                .iter_membership_state()
                .filter(|m| !self.trusted.contains(&m.id().key))
                .count();
            if untrusted * 2 >= self.config.max_members {
                return Err(SwimRefused::Full);
            }
        }
        Ok(())
    }

    /// Fires the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.rejoin_at.is_some_and(|t| t <= now) {
            self.rejoin_at = None;
            let in_touch = self.members().any(|m| self.seeds.iter().any(|s| s.key == m.key));
            if !in_touch {
                for seed in self.seeds.clone() {
                    let _ = self.foca.announce(seed, &mut self.runtime);
                }
                // Doubling up to a minute: a seed that is gone costs one packet a minute.
                self.rejoin_backoff = (self.rejoin_backoff * 2).min(MAX_REJOIN_BACKOFF);
                self.rejoin_at = Some(now + self.rejoin_backoff);
                self.drain(now);
            }
        }
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.pending.remove(&id) {
                let _ = self.foca.handle_timer(timer, &mut self.runtime);
                self.drain(now);
            }
        }
    }

    /// When [`Self::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        [timer, self.rejoin_at].into_iter().flatten().min()
    }

    /// The next thing to do.
    pub fn poll_event(&mut self) -> Option<SwimEvent> {
        self.events.pop_front()
    }

    /// Tells some members that this node leaves (it then answers nothing).
    pub fn leave(&mut self, now: Instant) {
        self.seeds.clear();
        self.rejoin_at = None;
        let _ = self.foca.leave_cluster(&mut self.runtime);
        self.drain(now);
    }

    /// The members SWIM holds alive (or suspect).
    pub fn members(&self) -> impl Iterator<Item = &SwimId> {
        self.foca.iter_members().map(foca::Member::id)
    }

    /// How many members SWIM holds alive (or suspect).
    pub fn len(&self) -> usize {
        self.foca.num_members()
    }

    /// Whether it holds no live member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Packets refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Moves what foca asked for into events and timers.
    fn drain(&mut self, now: Instant) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.events.push_back(SwimEvent::Transmit { to, data: data.to_vec() });
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let id = self.next_timer;
            self.next_timer += 1;
            self.pending.insert(id, timer);
            self.timers.push(Reverse((now + after, id)));
        }
        while let Some(n) = self.runtime.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => self.events.push_back(SwimEvent::Up(id)),
                OwnedNotification::MemberDown(id) => self.events.push_back(SwimEvent::Down(id)),
                OwnedNotification::Rename(_, id) => self.events.push_back(SwimEvent::Up(id)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
