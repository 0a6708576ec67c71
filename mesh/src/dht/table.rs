//! The routing table: k-buckets by shared prefix length, least recently seen first, at most
//! `per_ip` nodes of one IP address per bucket (so one host cannot fill a bucket with made-up
//! keys), and a replacement cache per bucket that refills it when a node stops answering.
//!
//! Trust: the driver names the nodes whose ledgers this node trusts ([`RoutingTable::set_trusted`]).
//! Untrusted nodes may take free slots, but a trusted node that finds its bucket full takes the
//! place of the least recently seen untrusted one while untrusted nodes hold more than half of
//! it: however many keys an attacker makes, it cannot keep trusted nodes out of more than half
//! of any bucket.

use std::net::IpAddr;
use std::time::Instant;

use super::key::{Contact, Key, NodeKey};

/// How long a node counts as fresh after it was last heard from (no ping before that).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone, Debug)]
struct Entry {
    contact: Contact,
    last_seen: Instant,
    failures: u8,
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// In insertion order; `last_seen` says who is oldest.
    entries: Vec<Entry>,
    /// Newest last.
    replacements: Vec<Contact>,
}

impl Bucket {
    fn ip_count(&self, ip: IpAddr) -> usize {
        self.entries.iter().filter(|e| e.contact.addr.ip() == ip).count()
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new node in its bucket.
    Added,
    /// A known node, now the most recently seen.
    Refreshed,
    /// The bucket is full: kept as a replacement. If the least recently seen node was not
    /// heard from for a minute, it is `oldest`: ping it, and if it does not answer, the
    /// replacement takes its place.
    Full {
        /// The least recently seen node of the bucket, when it is stale.
        oldest: Option<Contact>,
    },
    /// Too many nodes of this IP address in the bucket already.
    IpLimit,
    /// The local node.
    Local,
}

/// The k-buckets of one node.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: Key,
    k: usize,
    per_ip: usize,
    max_failures: u8,
    buckets: Vec<Bucket>,
    trusted: std::collections::HashSet<NodeKey>,
}

impl RoutingTable {
    /// An empty table of the node `local`.
    pub fn new(local: Key, k: usize, per_ip: usize, max_failures: u8) -> Self {
        Self {
            local,
            k,
            per_ip,
            max_failures,
            buckets: Vec::new(),
            trusted: std::collections::HashSet::new(),
        }
    }

    /// The nodes whose ledgers this node trusts (replaces the previous set).
    pub fn set_trusted(&mut self, keys: impl IntoIterator<Item = NodeKey>) {
        self.trusted = keys.into_iter().collect();
    }

    /// Untrusted nodes in the table, of all.
    pub fn untrusted(&self) -> usize {
        self.contacts().filter(|c| !self.trusted.contains(&c.peer)).count()
    }

    fn bucket_mut(&mut self, index: usize) -> &mut Bucket {
        if self.buckets.len() <= index {
            self.buckets.resize_with(index + 1, Bucket::default);
        }
        &mut self.buckets[index]
    }

    /// Records that `contact` answered or asked at `now`.
    pub fn insert(&mut self, contact: Contact, now: Instant) -> Inserted {
        let Some(index) = self.local.bucket_of(&contact.id) else { return Inserted::Local };
        let (k, per_ip) = (self.k, self.per_ip);
        self.bucket_mut(index);
        let (trusted, bucket) = (&self.trusted, &mut self.buckets[index]);
        if let Some(pos) = bucket.entries.iter().position(|e| e.contact.peer == contact.peer) {
            let moved = bucket.entries[pos].contact.addr.ip() != contact.addr.ip();
            if moved && bucket.ip_count(contact.addr.ip()) >= per_ip {
                return Inserted::IpLimit;
            }
            let entry = &mut bucket.entries[pos];
            entry.contact = contact;
            entry.last_seen = now;
            entry.failures = 0;
            return Inserted::Refreshed;
        }
        if bucket.ip_count(contact.addr.ip()) >= per_ip {
            return Inserted::IpLimit;
        }
        if bucket.entries.len() < k {
            bucket.entries.push(Entry { contact, last_seen: now, failures: 0 });
            return Inserted::Added;
        }
        if trusted.contains(&contact.peer) {
            let untrusted = bucket.entries.iter().filter(|e| !trusted.contains(&e.contact.peer));
            if untrusted.count() * 2 > k {
                let evict = bucket
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !trusted.contains(&e.contact.peer))
                    .min_by_key(|(_, e)| e.last_seen)
                    .map(|(i, _)| i);
                if let Some(i) = evict {
                    bucket.entries.remove(i);
                    bucket.entries.push(Entry { contact, last_seen: now, failures: 0 });
                    return Inserted::Added;
                }
            }
        }
        if let Some(pos) = bucket.replacements.iter().position(|c| c.peer == contact.peer) {
            bucket.replacements.remove(pos);
        } else if bucket.replacements.len() >= k {
            bucket.replacements.remove(0);
        }
        bucket.replacements.push(contact);
        let oldest =
            bucket.entries.iter().min_by_key(|e| e.last_seen).map(|e| (e.contact, e.last_seen));
        let stale = oldest.filter(|(_, seen)| now.saturating_duration_since(*seen) >= STALE_AFTER);
        Inserted::Full { oldest: stale.map(|(c, _)| c) }
    }

    /// Records that `peer` did not answer. It leaves the table after `max_failures` misses in a
    /// row, or at once when a replacement is waiting; the newest replacement takes its place.
    pub fn failed(&mut self, peer: &NodeKey, now: Instant) {
        let id = Key::of_node(peer);
        let Some(index) = self.local.bucket_of(&id) else { return };
        let (max_failures, per_ip) = (self.max_failures, self.per_ip);
        let Some(bucket) = self.buckets.get_mut(index) else { return };
        bucket.replacements.retain(|c| c.peer != *peer);
        let Some(pos) = bucket.entries.iter().position(|e| e.contact.peer == *peer) else {
            return;
        };
        bucket.entries[pos].failures = bucket.entries[pos].failures.saturating_add(1);
        if bucket.entries[pos].failures < max_failures && bucket.replacements.is_empty() {
            return;
        }
        bucket.entries.remove(pos);
        while let Some(next) = bucket.replacements.pop() {
            if bucket.ip_count(next.addr.ip()) < per_ip {
                bucket.entries.push(Entry { contact: next, last_seen: now, failures: 0 });
                break;
            }
        }
    }

    /// Removes `peer` (it left, or misbehaved).
    pub fn remove(&mut self, peer: &NodeKey) {
        let id = Key::of_node(peer);
        if let Some(bucket) = self.local.bucket_of(&id).and_then(|i| self.buckets.get_mut(i)) {
            bucket.entries.retain(|e| e.contact.peer != *peer);
            bucket.replacements.retain(|c| c.peer != *peer);
        }
    }

    /// The `n` known nodes closest to `target`, closest first. Reads only the buckets that can
    /// hold them: the target's own bucket (its nodes share one more bit with the target than
    /// any other), then every farther bucket (they share exactly as many bits with the target
    /// as the local node does), then the nearer buckets from the farthest down, until `n` are
    /// gathered.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        if n == 0 {
            return Vec::new();
        }
        let len = self.buckets.len();
        let own = self.local.bucket_of(target).unwrap_or(usize::MAX);
        // Groups, each strictly farther from the target than the one before.
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        if own < len {
            groups.push(own..own + 1);
            groups.push(own + 1..len);
        }
        groups.extend((0..own.min(len)).rev().map(|i| i..i + 1));
        let mut all: Vec<(super::key::Distance, Contact)> = Vec::new();
        for group in groups {
            for bucket in &self.buckets[group] {
                all.extend(
                    bucket.entries.iter().map(|e| (e.contact.id.distance(target), e.contact)),
                );
            }
            if all.len() >= n {
                break;
            }
        }
        if all.len() > n {
            all.select_nth_unstable_by_key(n - 1, |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, c)| c).collect()
    }

    /// Whether `peer` is in the table.
    pub fn contains(&self, peer: &NodeKey) -> bool {
        let id = Key::of_node(peer);
        self.local
            .bucket_of(&id)
            .and_then(|i| self.buckets.get(i))
            .is_some_and(|b| b.entries.iter().any(|e| e.contact.peer == *peer))
    }

    /// Nodes in the table.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// No nodes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every node, bucket by bucket.
    pub fn contacts(&self) -> impl Iterator<Item = Contact> + '_ {
        self.buckets.iter().flat_map(|b| b.entries.iter().map(|e| e.contact))
    }

    /// Index of the farthest bucket that holds anything (refreshes cover up to it).
    pub fn highest_bucket(&self) -> usize {
        self.buckets.iter().rposition(|b| !b.entries.is_empty()).unwrap_or(0)
    }
}
