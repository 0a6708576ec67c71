//! Kademlia, sans-I/O: a node's routing table, its iterative lookups over disjoint paths, and
//! the provider records it holds for others. Time and randomness come in (`now`, a seed); the
//! driver (`net`, or the simulator in [`crate::sim`]) carries [`Transmit`]s and feeds back
//! answers, failures and deadlines.
//!
//! - Node id = SHA-256(Ed25519 key); k = 20, alpha = 3; `disjoint_paths` lookups in parallel
//!   that never query the same node (S/Kademlia), so one path of malicious nodes cannot hide a
//!   key.
//! - Records are [`PeerRecord`]s, self-signed by the ledger they name, published under
//!   SHA-256 of the ledger id and of every OID prefix ([`Key::of_ledger`], [`Key::of_oid`]), kept
//!   until they expire and republished by their owner.
//! - A bucket holds at most 2 nodes of one IP address; a peer asking faster than the rate limit
//!   is refused; every answer is bounded (k contacts, `per_key` records).
//!
//! Call order: `new` → `add_contact` (bootstrap nodes) → `find_node(self)` → loop { send each
//! `poll_transmit`, answer incoming requests with `handle_request`, feed `handle_response` /
//! `handle_failure`, call `handle_timeout` at `poll_timeout`, take `poll_event`s }.

mod key;
mod store;
mod table;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use onoal_engine::{LedgerId, Oid};

pub use key::{Contact, Distance, Key, NodeKey, WireContact};
pub use store::{ProviderStore, StoreRefusal, owns};
pub use table::{Inserted, RoutingTable};

use crate::proto::record::{PeerRecord, oid_prefixes};

/// ALPN of the DHT protocol, version 1.
pub const ALPN_DHT: &[u8] = b"onoal-dht/1";

/// How soon a publish that reached no node is tried again.
const PUBLISH_RETRY: Duration = Duration::from_secs(10);

/// How often a node whose table ran empty starts again from its bootstrap nodes.
const REBOOTSTRAP: Duration = Duration::from_secs(10);

/// Largest DHT message a node reads.
pub const MAX_DHT_MESSAGE: usize = 64 << 10;

/// Settings of a DHT node.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Bucket size and replication factor.
    pub k: usize,
    /// Requests in flight per lookup path.
    pub alpha: usize,
    /// Disjoint lookup paths.
    pub disjoint_paths: usize,
    /// Nodes of one IP address per bucket.
    pub per_ip: usize,
    /// Misses in a row before a node leaves the table (sooner if a replacement waits).
    pub max_failures: u8,
    /// Deadline of one request.
    pub request_timeout: Duration,
    /// How long a stored record is kept (or until it expires, if sooner).
    pub record_ttl: Duration,
    /// How often a node republishes its own records, at most.
    pub republish_interval: Duration,
    /// First republish after a publish; the gap doubles up to `republish_interval`. A record
    /// published into a young network lands on nodes that later joiners outnumber; early
    /// republishes move it to the k closest of the grown network.
    pub republish_first: Duration,
    /// How often a node refreshes its table (a lookup of itself and of a random bucket).
    pub refresh_interval: Duration,
    /// Records per key.
    pub per_key: usize,
    /// Records in all.
    pub capacity: usize,
    /// Requests per second one peer may make, sustained.
    pub rate_per_s: f64,
    /// Requests one peer may make in a burst.
    pub burst: f64,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            disjoint_paths: 2,
            per_ip: 2,
            max_failures: 2,
            request_timeout: Duration::from_secs(2),
            record_ttl: Duration::from_secs(3600),
            republish_interval: Duration::from_secs(1200),
            republish_first: Duration::from_secs(300),
            refresh_interval: Duration::from_secs(600),
            per_key: 20,
            capacity: 1 << 16,
            rate_per_s: 50.0,
            burst: 200.0,
        }
    }
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DhtRequest {
    /// Are you there?
    Ping,
    /// The k nodes you know closest to `target`.
    FindNode {
        /// Target.
        target: Key,
    },
    /// The records under `key`, and the k nodes you know closest to it.
    GetRecords {
        /// Key.
        key: Key,
    },
    /// Keep `record` under `key`.
    AddRecord {
        /// Key (the record's ledger id or an OID prefix of it).
        key: Key,
        /// The record.
        record: Box<PeerRecord>,
    },
}

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DhtResponse {
    /// To `Ping`.
    Pong,
    /// To `FindNode`.
    Nodes {
        /// Closest known nodes.
        closer: Vec<WireContact>,
    },
    /// To `GetRecords`.
    Records {
        /// Records held under the key.
        records: Vec<PeerRecord>,
        /// Closest known nodes.
        closer: Vec<WireContact>,
    },
    /// To `AddRecord`: kept.
    Stored,
    /// Not done.
    Refused(StoreRefusal),
}

/// A DHT message's bytes (postcard).
fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_stdvec(message).unwrap_or_default()
}

/// A DHT message from bytes: `None` when over [`MAX_DHT_MESSAGE`] or malformed.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    (bytes.len() <= MAX_DHT_MESSAGE).then(|| postcard::from_bytes(bytes).ok()).flatten()
}

impl DhtRequest {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a request (`None` if oversize or malformed).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        decode(bytes)
    }
}

impl DhtResponse {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes an answer (`None` if oversize or malformed).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        decode(bytes)
    }
}

/// A request this node sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A lookup this node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// A request to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// Report its answer with this id.
    pub id: RequestId,
    /// To whom.
    pub to: Contact,
    /// What.
    pub request: DhtRequest,
}

/// What a lookup looks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupKind {
    /// The k closest nodes.
    FindNode,
    /// Records under the key; with `ledger`, stop at the first valid record of that ledger.
    FindRecords {
        /// The ledger wanted, if one.
        ledger: Option<LedgerId>,
    },
    /// Find the k closest nodes, then store the record with them.
    Publish(Box<PeerRecord>),
}

/// A finished lookup.
#[derive(Clone, Debug)]
pub struct LookupOutcome {
    /// Which.
    pub id: LookupId,
    /// Its target.
    pub target: Key,
    /// What it looked for.
    pub kind: LookupKind,
    /// The closest nodes that answered, closest first.
    pub closest: Vec<Contact>,
    /// Valid records found (each checked and owned by the key).
    pub records: Vec<PeerRecord>,
    /// Sequential rounds of requests until it ended (or found what it looked for).
    pub rounds: u32,
    /// Requests sent for it.
    pub messages: u32,
    /// Stores acknowledged (publish).
    pub stored: u32,
    /// When it started.
    pub started: Instant,
    /// When it ended.
    pub finished: Instant,
}

/// Something for the application.
#[derive(Clone, Debug)]
pub enum DhtEvent {
    /// A lookup ended.
    LookupFinished(LookupOutcome),
}

/// Counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DhtStats {
    /// Requests answered.
    pub served: u64,
    /// Requests refused for the rate limit.
    pub rate_limited: u64,
    /// Records stored for others.
    pub stored: u64,
    /// Store requests refused, by reason.
    pub store_refused: BTreeMap<&'static str, u64>,
    /// Contacts or records in answers that were invalid (dropped).
    pub invalid_in_answers: u64,
    /// Requests that failed or timed out.
    pub failures: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CandState {
    New,
    InFlight,
    Answered,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    contact: Contact,
    state: CandState,
    round: u32,
}

#[derive(Default)]
struct Path {
    candidates: BTreeMap<Distance, Candidate>,
}

enum Phase {
    Searching,
    Storing { waiting: u32 },
}

struct Lookup {
    target: Key,
    kind: LookupKind,
    paths: Vec<Path>,
    claimed: HashSet<NodeKey>,
    records: Vec<PeerRecord>,
    seen_records: HashSet<(LedgerId, u64, [u8; 32])>,
    rounds: u32,
    messages: u32,
    stored: u32,
    /// Store requests answered at all (stored or refused).
    store_answers: u32,
    started: Instant,
    phase: Phase,
}

#[derive(Clone, Copy)]
enum Purpose {
    Lookup { lookup: LookupId, path: usize, distance: Distance },
    Store { lookup: LookupId },
    Ping,
    HandOver,
}

struct Outstanding {
    to: Contact,
    purpose: Purpose,
}

struct Tokens {
    level: f64,
    at: Instant,
}

/// One node of the DHT.
pub struct Dht {
    local: Contact,
    config: DhtConfig,
    table: RoutingTable,
    store: ProviderStore,
    epoch: (Instant, u64),
    lookups: HashMap<LookupId, Lookup>,
    outstanding: HashMap<RequestId, Outstanding>,
    /// Deadlines in the order requests were sent (all have the same timeout, so this is also
    /// deadline order); entries of answered requests are skipped.
    deadlines: VecDeque<(Instant, RequestId)>,
    pinging: HashSet<NodeKey>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DhtEvent>,
    published: Vec<PeerRecord>,
    /// Nodes to start again from when the table runs empty.
    bootstrap: Vec<Contact>,
    next_rebootstrap: Instant,
    tokens: HashMap<NodeKey, Tokens>,
    next_request: u64,
    next_lookup: u64,
    next_refresh: Instant,
    next_republish: Instant,
    republish_gap: Duration,
    next_expire: Instant,
    rng: u64,
    stats: DhtStats,
}

impl Dht {
    /// A node with contact `local`, at `now` (wall clock `now_ms`).
    pub fn new(local: Contact, config: DhtConfig, now: Instant, now_ms: u64) -> Self {
        let seed = u64::from_be_bytes(local.id.0[..8].try_into().unwrap_or_default());
        Self {
            table: RoutingTable::new(local.id, config.k, config.per_ip, config.max_failures),
            store: ProviderStore::new(config.per_key, config.capacity, config.record_ttl),
            next_refresh: now + config.refresh_interval,
            next_republish: now + config.republish_interval,
            republish_gap: config.republish_first,
            next_expire: now + Duration::from_secs(60),
            local,
            config,
            epoch: (now, now_ms),
            lookups: HashMap::new(),
            outstanding: HashMap::new(),
            deadlines: VecDeque::new(),
            pinging: HashSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            published: Vec::new(),
            bootstrap: Vec::new(),
            next_rebootstrap: now + REBOOTSTRAP,
            tokens: HashMap::new(),
            next_request: 0,
            next_lookup: 0,
            rng: seed | 1,
            stats: DhtStats::default(),
        }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        self.epoch.1
            + u64::try_from(now.saturating_duration_since(self.epoch.0).as_millis()).unwrap_or(0)
    }

    fn random_key(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            chunk.copy_from_slice(&self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d).to_be_bytes());
        }
        out
    }

    /// This node.
    pub fn local(&self) -> &Contact {
        &self.local
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Records held for others.
    pub fn store(&self) -> &ProviderStore {
        &self.store
    }

    /// Counters.
    pub fn stats(&self) -> &DhtStats {
        &self.stats
    }

    /// Lookups running.
    pub fn lookups_running(&self) -> usize {
        self.lookups.len()
    }

    /// The nodes whose ledgers this node trusts: they may displace untrusted nodes from a full
    /// bucket while untrusted ones hold more than half of it (see the routing table).
    pub fn set_trusted(&mut self, keys: impl IntoIterator<Item = NodeKey>) {
        self.table.set_trusted(keys);
    }

    /// Adds a node the application knows (a bootstrap node, a peer met elsewhere).
    pub fn add_contact(&mut self, contact: Contact, now: Instant) -> Inserted {
        let inserted = self.table.insert(contact, now);
        self.after_insert(contact, &inserted, now);
        inserted
    }

    /// Adds a bootstrap node: a contact that is also where the node starts again whenever its
    /// table runs empty (every 10 s until it is not), so a node whose first contacts were
    /// unreachable (a partition, a restart) joins once they are back.
    pub fn add_bootstrap(&mut self, contact: Contact, now: Instant) -> Inserted {
        if !self.bootstrap.contains(&contact) {
            self.bootstrap.push(contact);
        }
        self.add_contact(contact, now)
    }

    /// Forgets a node (it said goodbye, or misbehaved).
    pub fn remove_contact(&mut self, peer: &NodeKey) {
        self.table.remove(peer);
    }

    fn after_insert(&mut self, contact: Contact, inserted: &Inserted, now: Instant) {
        match inserted {
            Inserted::Full { oldest: Some(oldest) } if self.pinging.insert(oldest.peer) => {
                self.send(*oldest, DhtRequest::Ping, Purpose::Ping, now);
            }
            Inserted::Added => self.hand_over(contact, now),
            _ => {}
        }
    }

    /// A node met for the first time gets the records it should hold: those under keys it is
    /// closer to than this node, when no other known node is closer still (that one hands them
    /// over instead). So a record published into a small network moves to the nodes that later
    /// joiners make its k closest, without waiting for a republish (Kademlia, section 2.5).
    fn hand_over(&mut self, newcomer: Contact, now: Instant) {
        let me = self.local.id;
        // Keys the newcomer is closer to than this node (few: most keys held are near this
        // node, and most newcomers are not), in a deterministic order (the store is a hash map
        // and the simulator replays runs exactly).
        let mut keys: Vec<Key> = self
            .store
            .keys()
            .filter(|key| newcomer.id.distance(key) < me.distance(key))
            .copied()
            .collect();
        keys.sort_unstable();
        let mut sends = Vec::new();
        for key in keys {
            let someone_closer = self
                .table
                .closest(&key, 2)
                .into_iter()
                .find(|c| c.peer != newcomer.peer)
                .is_some_and(|c| c.id.distance(&key) < me.distance(&key));
            if someone_closer {
                continue;
            }
            for record in self.store.get(&key, now) {
                sends.push(DhtRequest::AddRecord { key, record: Box::new(record) });
            }
        }
        for request in sends {
            self.send(newcomer, request, Purpose::HandOver, now);
        }
    }

    fn send(&mut self, to: Contact, request: DhtRequest, purpose: Purpose, now: Instant) {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let deadline = now + self.config.request_timeout;
        self.outstanding.insert(id, Outstanding { to, purpose });
        self.deadlines.push_back((deadline, id));
        self.transmits.push_back(Transmit { id, to, request });
    }

    /// Starts a lookup of the k nodes closest to `target`.
    pub fn find_node(&mut self, target: Key, now: Instant) -> LookupId {
        self.start(target, LookupKind::FindNode, now)
    }

    /// Starts a lookup of the record of `ledger`.
    pub fn find_ledger(&mut self, ledger: LedgerId, now: Instant) -> LookupId {
        self.start(Key::of_ledger(&ledger), LookupKind::FindRecords { ledger: Some(ledger) }, now)
    }

    /// Starts a lookup of the records under an OID prefix.
    pub fn find_oid(&mut self, prefix: &Oid, now: Instant) -> LookupId {
        self.start(Key::of_oid(prefix.as_str()), LookupKind::FindRecords { ledger: None }, now)
    }

    /// Starts a lookup of the records of ledgers that claim the registered asset `asset`.
    pub fn find_asset(&mut self, asset: &str, now: Instant) -> LookupId {
        self.start(Key::of_asset(asset), LookupKind::FindRecords { ledger: None }, now)
    }

    /// Publishes this node's own record under its ledger id, every prefix of its OID and every
    /// asset it announces, and
    /// republishes it every `republish_interval` (a newer record replaces it). One lookup per
    /// key.
    pub fn publish(&mut self, record: PeerRecord, now: Instant) -> Vec<LookupId> {
        let mut keys = vec![Key::of_ledger(&record.ledger_id)];
        if let Ok(oid) = Oid::parse(&record.oid) {
            keys.extend(oid_prefixes(&oid).iter().map(|p| Key::of_oid(p)));
        }
        keys.extend(record.assets.iter().map(|a| Key::of_asset(a)));
        if !self.published.contains(&record) {
            // A new record: republish soon, then less and less often.
            self.republish_gap = self.config.republish_first;
            self.next_republish = now + self.republish_gap;
        }
        self.published.retain(|r| r.ledger_id != record.ledger_id);
        self.published.push(record.clone());
        let now_ms = self.now_ms(now);
        keys.into_iter()
            .map(|key| {
                let _ = self.store.add(key, record.clone(), now, now_ms);
                self.start(key, LookupKind::Publish(Box::new(record.clone())), now)
            })
            .collect()
    }

    fn start(&mut self, target: Key, kind: LookupKind, now: Instant) -> LookupId {
        self.next_lookup += 1;
        let id = LookupId(self.next_lookup);
        // Disjoint paths where an adversary could hide what is looked for (records); finding
        // nodes and publishing take one path.
        let paths = match kind {
            LookupKind::FindRecords { .. } => self.config.disjoint_paths.max(1),
            _ => 1,
        };
        let mut lookup = Lookup {
            target,
            kind,
            paths: (0..paths).map(|_| Path::default()).collect(),
            claimed: HashSet::new(),
            records: Vec::new(),
            seen_records: HashSet::new(),
            rounds: 0,
            messages: 0,
            stored: 0,
            store_answers: 0,
            started: now,
            phase: Phase::Searching,
        };
        // Local records count as found at round 0.
        if let LookupKind::FindRecords { .. } = lookup.kind {
            for record in self.store.get(&target, now) {
                lookup.seen_records.insert((record.ledger_id, record.sequence, record.public_key));
                lookup.records.push(record);
            }
        }
        for (i, contact) in self.table.closest(&target, self.config.k).into_iter().enumerate() {
            lookup.claimed.insert(contact.peer);
            let distance = contact.id.distance(&target);
            lookup.paths[i % paths]
                .candidates
                .insert(distance, Candidate { contact, state: CandState::New, round: 1 });
        }
        self.lookups.insert(id, lookup);
        self.step(id, now);
        id
    }

    /// Whether the lookup has what it wants already (a ledger's record).
    fn satisfied(lookup: &Lookup) -> bool {
        match &lookup.kind {
            LookupKind::FindRecords { ledger: Some(l) } => {
                lookup.records.iter().any(|r| r.ledger_id == *l)
            }
            _ => false,
        }
    }

    /// Sends what each path may send; finishes or moves to storing when every path is done.
    fn step(&mut self, id: LookupId, now: Instant) {
        let Some(lookup) = self.lookups.get_mut(&id) else { return };
        if let Phase::Storing { waiting } = lookup.phase {
            if waiting == 0 {
                self.finish(id, now);
            }
            return;
        }
        if Self::satisfied(lookup) {
            self.finish(id, now);
            return;
        }
        let (k, alpha) = (self.config.k, self.config.alpha);
        let mut sends = Vec::new();
        let mut all_done = true;
        for (p, path) in lookup.paths.iter_mut().enumerate() {
            let mut in_flight =
                path.candidates.values().filter(|c| c.state == CandState::InFlight).count();
            let mut considered = 0;
            let mut pending = false;
            for (distance, cand) in path.candidates.iter_mut() {
                if considered >= k {
                    break;
                }
                match cand.state {
                    CandState::Failed => continue,
                    CandState::Answered => {}
                    CandState::InFlight => pending = true,
                    CandState::New => {
                        pending = true;
                        if in_flight < alpha {
                            cand.state = CandState::InFlight;
                            in_flight += 1;
                            sends.push((p, *distance, cand.contact));
                        }
                    }
                }
                considered += 1;
            }
            all_done &= !pending;
        }
        let request = match &lookup.kind {
            LookupKind::FindRecords { .. } => DhtRequest::GetRecords { key: lookup.target },
            _ => DhtRequest::FindNode { target: lookup.target },
        };
        lookup.messages += u32::try_from(sends.len()).unwrap_or(u32::MAX);
        for (path, distance, contact) in sends {
            self.send(
                contact,
                request.clone(),
                Purpose::Lookup { lookup: id, path, distance },
                now,
            );
        }
        if all_done {
            self.searched(id, now);
        }
    }

    /// Every path is done: publish stores, the others finish.
    fn searched(&mut self, id: LookupId, now: Instant) {
        let Some(lookup) = self.lookups.get(&id) else { return };
        let LookupKind::Publish(record) = &lookup.kind else { return self.finish(id, now) };
        let record = (**record).clone();
        let target = lookup.target;
        let closest = Self::closest_answered(lookup, self.config.k);
        let waiting = u32::try_from(closest.len()).unwrap_or(u32::MAX);
        if let Some(lookup) = self.lookups.get_mut(&id) {
            lookup.phase = Phase::Storing { waiting };
            lookup.messages += waiting;
        }
        for contact in closest {
            let request = DhtRequest::AddRecord { key: target, record: Box::new(record.clone()) };
            self.send(contact, request, Purpose::Store { lookup: id }, now);
        }
        if waiting == 0 {
            self.finish(id, now);
        }
    }

    fn closest_answered(lookup: &Lookup, k: usize) -> Vec<Contact> {
        let mut answered: Vec<(Distance, Contact)> = lookup
            .paths
            .iter()
            .flat_map(|p| p.candidates.iter())
            .filter(|(_, c)| c.state == CandState::Answered)
            .map(|(d, c)| (*d, c.contact))
            .collect();
        answered.sort_unstable_by_key(|(d, _)| *d);
        answered.into_iter().take(k).map(|(_, c)| c).collect()
    }

    fn finish(&mut self, id: LookupId, now: Instant) {
        let Some(lookup) = self.lookups.remove(&id) else { return };
        if matches!(lookup.kind, LookupKind::Publish(_)) && lookup.store_answers == 0 {
            // No node took the record or even answered (lost messages, a partition, a first
            // contact that did not answer): publish again soon rather than at the next
            // republish.
            self.next_republish = self.next_republish.min(now + PUBLISH_RETRY);
        }
        let closest = Self::closest_answered(&lookup, self.config.k);
        self.events.push_back(DhtEvent::LookupFinished(LookupOutcome {
            id,
            target: lookup.target,
            kind: lookup.kind,
            closest,
            records: lookup.records,
            rounds: lookup.rounds,
            messages: lookup.messages,
            stored: lookup.stored,
            started: lookup.started,
            finished: now,
        }));
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    fn rate_ok(&mut self, peer: NodeKey, now: Instant) -> bool {
        let (rate, burst) = (self.config.rate_per_s, self.config.burst);
        if self.tokens.len() > 4096 && !self.tokens.contains_key(&peer) {
            // Forget peers whose buckets have refilled; they lose nothing.
            self.tokens.retain(|_, t| {
                t.level + now.saturating_duration_since(t.at).as_secs_f64() * rate < burst
            });
        }
        let t = self.tokens.entry(peer).or_insert(Tokens { level: burst, at: now });
        t.level = (t.level + now.saturating_duration_since(t.at).as_secs_f64() * rate).min(burst);
        t.at = now;
        if t.level < 1.0 {
            return false;
        }
        t.level -= 1.0;
        true
    }

    /// Answers a request `from` a node (whose key the transport authenticated).
    pub fn handle_request(
        &mut self,
        from: Contact,
        request: DhtRequest,
        now: Instant,
    ) -> DhtResponse {
        if !self.rate_ok(from.peer, now) {
            self.stats.rate_limited += 1;
            return DhtResponse::Refused(StoreRefusal::Busy);
        }
        self.stats.served += 1;
        let inserted = self.table.insert(from, now);
        self.after_insert(from, &inserted, now);
        let k = self.config.k;
        let closer = |table: &RoutingTable, target: &Key| -> Vec<WireContact> {
            table
                .closest(target, k + 1)
                .into_iter()
                .filter(|c| c.peer != from.peer)
                .take(k)
                .map(|c| c.to_wire())
                .collect()
        };
        match request {
            DhtRequest::Ping => DhtResponse::Pong,
            DhtRequest::FindNode { target } => {
                DhtResponse::Nodes { closer: closer(&self.table, &target) }
            }
            DhtRequest::GetRecords { key } => DhtResponse::Records {
                records: self.store.get(&key, now),
                closer: closer(&self.table, &key),
            },
            DhtRequest::AddRecord { key, record } => {
                let now_ms = self.now_ms(now);
                match self.store.add(key, *record, now, now_ms) {
                    Ok(()) => {
                        self.stats.stored += 1;
                        DhtResponse::Stored
                    }
                    Err(reason) => {
                        *self.stats.store_refused.entry(reason.as_str()).or_default() += 1;
                        DhtResponse::Refused(reason)
                    }
                }
            }
        }
    }

    /// The answer to request `id`.
    pub fn handle_response(&mut self, id: RequestId, response: DhtResponse, now: Instant) {
        let Some(out) = self.outstanding.remove(&id) else { return };
        self.trim_deadlines();
        if let DhtResponse::Refused(StoreRefusal::Busy) = response {
            return self.failed(out, now);
        }
        let inserted = self.table.insert(out.to, now);
        self.after_insert(out.to, &inserted, now);
        match out.purpose {
            Purpose::Ping => {
                self.pinging.remove(&out.to.peer);
            }
            Purpose::HandOver => {}
            Purpose::Store { lookup } => {
                if let Some(l) = self.lookups.get_mut(&lookup) {
                    l.store_answers += 1;
                    if response == DhtResponse::Stored {
                        l.stored += 1;
                    }
                    if let Phase::Storing { waiting } = &mut l.phase {
                        *waiting = waiting.saturating_sub(1);
                    }
                }
                self.step(lookup, now);
            }
            Purpose::Lookup { lookup, path, distance } => {
                let (closer, records) = match response {
                    DhtResponse::Nodes { closer } => (closer, Vec::new()),
                    DhtResponse::Records { records, closer } => (closer, records),
                    _ => (Vec::new(), Vec::new()),
                };
                self.absorb(lookup, path, distance, closer, records, now);
                self.step(lookup, now);
            }
        }
    }

    fn absorb(
        &mut self,
        id: LookupId,
        path: usize,
        distance: Distance,
        closer: Vec<WireContact>,
        records: Vec<PeerRecord>,
        now: Instant,
    ) {
        let now_ms = self.now_ms(now);
        let (k, local) = (self.config.k, self.local.peer);
        let mut invalid = 0u64;
        let Some(lookup) = self.lookups.get_mut(&id) else { return };
        let Some(p) = lookup.paths.get_mut(path) else { return };
        let Some(cand) = p.candidates.get_mut(&distance) else { return };
        cand.state = CandState::Answered;
        let round = cand.round;
        lookup.rounds = lookup.rounds.max(round);
        if closer.len() > k {
            invalid += (closer.len() - k) as u64;
        }
        for wire in closer.iter().take(k) {
            let contact = wire.contact();
            if contact.peer == local || !lookup.claimed.insert(contact.peer) {
                continue;
            }
            let d = contact.id.distance(&lookup.target);
            p.candidates.insert(d, Candidate { contact, state: CandState::New, round: round + 1 });
        }
        // Keep the candidate list bounded: the far end never gets queried anyway.
        while p.candidates.len() > 4 * k {
            let last = p.candidates.keys().next_back().copied();
            match last.and_then(|d| p.candidates.get(&d).map(|c| (d, c.state))) {
                Some((d, CandState::New | CandState::Failed)) => {
                    p.candidates.remove(&d);
                }
                _ => break,
            }
        }
        if records.len() > self.config.per_key {
            invalid += (records.len() - self.config.per_key) as u64;
        }
        for record in records.into_iter().take(self.config.per_key) {
            let tag = (record.ledger_id, record.sequence, record.public_key);
            if lookup.seen_records.contains(&tag) {
                continue;
            }
            if !owns(&record, &lookup.target) || record.check(now_ms).is_err() {
                invalid += 1;
                continue;
            }
            lookup.seen_records.insert(tag);
            lookup.records.push(record);
        }
        self.stats.invalid_in_answers += invalid;
    }

    /// Request `id` failed (no connection, a reset stream, an undecodable answer).
    pub fn handle_failure(&mut self, id: RequestId, now: Instant) {
        if let Some(out) = self.outstanding.remove(&id) {
            self.trim_deadlines();
            self.failed(out, now);
        }
    }

    fn failed(&mut self, out: Outstanding, now: Instant) {
        self.stats.failures += 1;
        self.table.failed(&out.to.peer, now);
        match out.purpose {
            Purpose::Ping => {
                self.pinging.remove(&out.to.peer);
            }
            Purpose::HandOver => {}
            Purpose::Store { lookup } => {
                if let Some(Lookup { phase: Phase::Storing { waiting }, .. }) =
                    self.lookups.get_mut(&lookup)
                {
                    *waiting = waiting.saturating_sub(1);
                }
                self.step(lookup, now);
            }
            Purpose::Lookup { lookup, path, distance } => {
                if let Some(c) = self
                    .lookups
                    .get_mut(&lookup)
                    .and_then(|l| l.paths.get_mut(path))
                    .and_then(|p| p.candidates.get_mut(&distance))
                {
                    c.state = CandState::Failed;
                }
                self.step(lookup, now);
            }
        }
    }

    fn trim_deadlines(&mut self) {
        while self.deadlines.front().is_some_and(|(_, id)| !self.outstanding.contains_key(id)) {
            self.deadlines.pop_front();
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let request = self
            .deadlines
            .iter()
            .find(|(_, id)| self.outstanding.contains_key(id))
            .map(|(d, _)| *d);
        let rebootstrap = (!self.bootstrap.is_empty()).then_some(self.next_rebootstrap);
        [self.next_refresh, self.next_republish, self.next_expire]
            .into_iter()
            .chain(rebootstrap)
            .chain(request)
            .min()
    }

    /// Expires requests past their deadline and runs the periodic work (refresh, republish,
    /// expiry) that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if !self.outstanding.contains_key(&id) {
                self.deadlines.pop_front();
                continue;
            }
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            self.handle_failure(id, now);
        }
        if now >= self.next_rebootstrap {
            self.next_rebootstrap = now + REBOOTSTRAP;
            if self.table.is_empty() && !self.bootstrap.is_empty() {
                for contact in self.bootstrap.clone() {
                    self.table.insert(contact, now);
                }
                self.find_node(self.local.id, now);
                for record in self.published.clone() {
                    self.publish(record, now);
                }
            }
        }
        if now >= self.next_expire {
            self.store.expire(now);
            self.next_expire = now + Duration::from_secs(60);
        }
        if now >= self.next_refresh {
            self.next_refresh = now + self.config.refresh_interval;
            self.refresh(now);
        }
        if now >= self.next_republish {
            self.republish_gap = (self.republish_gap * 2).min(self.config.republish_interval);
            self.next_republish = now + self.republish_gap;
            for record in self.published.clone() {
                self.publish(record, now);
            }
        }
    }

    /// A lookup of this node's own id (its neighbourhood) and of a random key in a random
    /// bucket.
    pub fn refresh(&mut self, now: Instant) {
        self.find_node(self.local.id, now);
        let highest = self.table.highest_bucket();
        let random = self.random_key();
        let bucket = usize::from(random[0]) % (highest + 1);
        let random = self.random_key();
        let target = self.local.id.in_bucket(bucket, random);
        self.find_node(target, now);
    }
}
