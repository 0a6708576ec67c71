//! The outbox, sans-I/O: mesh messages this node originates and wants delivered, with the
//! seed's mesh_messages columns (status pending / sent / delivered / failed, retry count,
//! created / sent / delivered / expiry times), and when each is tried again. Time comes in as
//! `now_ms`; the driver sends what [`Outbox::due`] returns, reports each outcome with
//! [`Outbox::answered`], and writes what [`Outbox::poll_write`] returns to the `messages`
//! column family.
//!
//! A message is tried again with doubling backoff until it is delivered, refused, out of
//! attempts or past its expiry (at most the receivers' replay window, after which a retry
//! would be refused as stale). Heartbeats are not kept here: a missed heartbeat is the
//! membership's signal, not something to retry.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use onoal_engine::LedgerId;

/// Where a message stands (the seed's mesh_messages status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Waiting for its next attempt.
    Pending,
    /// An attempt is in flight.
    Sent,
    /// The receiver took it.
    Delivered,
    /// Refused, out of attempts, expired, or interrupted by a restart.
    Failed,
}

impl Delivery {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == text)
    }

    fn finished(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed)
    }
}

/// One originated message (the seed's mesh_messages columns, plus where it goes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// The envelope's id.
    pub message_id: [u8; 16],
    /// The envelope's type (`peer_announce`, ...).
    pub message_type: String,
    /// This ledger.
    pub from_ledger_id: LedgerId,
    /// The receiving ledger, when known.
    pub to_ledger_id: Option<LedgerId>,
    /// The key the receiver's QUIC handshake must present.
    pub to_key: [u8; 32],
    /// Where it is sent.
    pub to_addr: SocketAddr,
    /// The signed envelope, as sent (payload and signature inside).
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
    /// Hops it may take.
    pub ttl: u8,
    /// Where it stands.
    pub status: Delivery,
    /// Attempts after the first.
    pub retry_count: u32,
    /// Created (ms since the epoch).
    pub created_ms: u64,
    /// Last attempt.
    pub sent_ms: Option<u64>,
    /// Delivered.
    pub delivered_ms: Option<u64>,
    /// No attempt after this.
    pub expires_ms: u64,
    /// When it is tried next (pending only).
    pub next_attempt_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl OutboxRow {
    /// The row as stored in the `messages` table (postcard).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// A stored row; `None` when the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// A new message for [`Outbox::enqueue`].
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The envelope's id.
    pub message_id: [u8; 16],
    /// Its type.
    pub message_type: String,
    /// This ledger.
    pub from_ledger_id: LedgerId,
    /// The receiving ledger, when known.
    pub to_ledger_id: Option<LedgerId>,
    /// The receiver's key.
    pub to_key: [u8; 32],
    /// Its address.
    pub to_addr: SocketAddr,
    /// The signed envelope.
    pub message: Vec<u8>,
    /// Hops.
    pub ttl: u8,
}

/// How messages are tried again.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// How long a message may be tried (kept below the receivers' 5-minute replay window).
    pub lifetime: Duration,
    /// How long delivered and failed rows are kept for `onoal messages`.
    pub keep_finished: Duration,
    /// Most rows kept; beyond it the oldest finished rows go, and new messages are refused
    /// while every row is unfinished.
    pub capacity: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            lifetime: Duration::from_secs(4 * 60),
            keep_finished: Duration::from_secs(3600),
            capacity: 10_000,
        }
    }
}

/// What became of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it (or had it already: a retry whose first attempt arrived).
    Delivered,
    /// No answer in time, or the connection failed: worth trying again.
    NoAnswer(String),
    /// The receiver refused it: the same bytes would be refused again.
    Refused(String),
}

/// A change to persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Store this row under its message id.
    Put(Box<OutboxRow>),
    /// Remove the row of this message id.
    Delete([u8; 16]),
}

/// One attempt to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The message.
    pub message_id: [u8; 16],
    /// The receiver's key.
    pub to_key: [u8; 32],
    /// Its address.
    pub to_addr: SocketAddr,
    /// The bytes.
    pub message: Vec<u8>,
}

/// Refused: every row is unfinished and the outbox is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the outbox holds {0} undelivered messages: wait for them to be delivered or expire")]
pub struct OutboxFull(pub usize);

/// The outbox of one node.
pub struct Outbox {
    policy: RetryPolicy,
    rows: BTreeMap<[u8; 16], OutboxRow>,
    writes: VecDeque<Write>,
}

impl Outbox {
    /// Empty.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, rows: BTreeMap::new(), writes: VecDeque::new() }
    }

    /// Takes the rows found on disk at start. Unfinished ones fail: whoever waited for them
    /// was in the process that stopped, and a goodbye or announce from before a restart would
    /// now say something false.
    pub fn restore(&mut self, rows: impl IntoIterator<Item = OutboxRow>, now_ms: u64) {
        for mut row in rows {
            if !row.status.finished() {
                row.status = Delivery::Failed;
                row.last_error = Some("interrupted by a restart".into());
                self.writes.push_back(Write::Put(Box::new(row.clone())));
            }
            self.rows.insert(row.message_id, row);
        }
        self.expire(now_ms);
    }

    /// Keeps `out` for delivery, to be tried at once.
    ///
    /// # Errors
    /// [`OutboxFull`].
    pub fn enqueue(&mut self, out: Outgoing, now_ms: u64) -> Result<(), OutboxFull> {
        if self.rows.len() >= self.policy.capacity && !self.evict_finished() {
            return Err(OutboxFull(self.rows.len()));
        }
        let row = OutboxRow {
            message_id: out.message_id,
            message_type: out.message_type,
            from_ledger_id: out.from_ledger_id,
            to_ledger_id: out.to_ledger_id,
            to_key: out.to_key,
            to_addr: out.to_addr,
            message: out.message,
            ttl: out.ttl,
            status: Delivery::Pending,
            retry_count: 0,
            created_ms: now_ms,
            sent_ms: None,
            delivered_ms: None,
            expires_ms: now_ms.saturating_add(ms(self.policy.lifetime)),
            next_attempt_ms: now_ms,
            last_error: None,
        };
        self.put(row);
        Ok(())
    }

    /// Removes the oldest finished row; whether there was one.
    fn evict_finished(&mut self) -> bool {
        let oldest = self
            .rows
            .values()
            .filter(|r| r.status.finished())
            .min_by_key(|r| (r.created_ms, r.message_id))
            .map(|r| r.message_id);
        match oldest {
            Some(id) => {
                self.rows.remove(&id);
                self.writes.push_back(Write::Delete(id));
                true
            }
            None => false,
        }
    }

    /// Starts the first attempt at `message_id` now, if it is pending (the driver sends a new
    /// message at once and waits for its answer; retries come from [`Self::due`]).
    pub fn start(&mut self, message_id: &[u8; 16], now_ms: u64) -> Option<Attempt> {
        let row = self.rows.get_mut(message_id).filter(|r| r.status == Delivery::Pending)?;
        row.status = Delivery::Sent;
        row.sent_ms = Some(now_ms);
        let attempt = Attempt {
            message_id: *message_id,
            to_key: row.to_key,
            to_addr: row.to_addr,
            message: row.message.clone(),
        };
        let row = row.clone();
        self.writes.push_back(Write::Put(Box::new(row)));
        Some(attempt)
    }

    /// The attempts due at `now_ms` (each is then `sent` until [`Self::answered`]).
    pub fn due(&mut self, now_ms: u64) -> Vec<Attempt> {
        self.expire(now_ms);
        let ids: Vec<[u8; 16]> = self
            .rows
            .values()
            .filter(|r| r.status == Delivery::Pending && r.next_attempt_ms <= now_ms)
            .map(|r| r.message_id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(row) = self.rows.get_mut(&id) else { continue };
            row.status = Delivery::Sent;
            row.sent_ms = Some(now_ms);
            out.push(Attempt {
                message_id: id,
                to_key: row.to_key,
                to_addr: row.to_addr,
                message: row.message.clone(),
            });
            let row = row.clone();
            self.writes.push_back(Write::Put(Box::new(row)));
        }
        out
    }

    /// What became of the attempt at `message_id`.
    pub fn answered(&mut self, message_id: &[u8; 16], outcome: Outcome, now_ms: u64) {
        let policy = self.policy;
        let Some(row) = self.rows.get_mut(message_id) else { return };
        if row.status != Delivery::Sent {
            return;
        }
        match outcome {
            Outcome::Delivered => {
                row.status = Delivery::Delivered;
                row.delivered_ms = Some(now_ms);
            }
            Outcome::Refused(why) => {
                row.status = Delivery::Failed;
                row.last_error = Some(why);
            }
            Outcome::NoAnswer(why) => {
                let backoff = policy
                    .first_backoff
                    .saturating_mul(2u32.saturating_pow(row.retry_count))
                    .min(policy.max_backoff);
                let next = now_ms.saturating_add(ms(backoff));
                if row.retry_count + 1 >= policy.max_attempts {
                    row.status = Delivery::Failed;
                    row.last_error = Some(format!("{why} ({} attempts)", row.retry_count + 1));
                } else if next >= row.expires_ms {
                    row.status = Delivery::Failed;
                    row.last_error = Some(format!("{why}; expired before the next attempt"));
                } else {
                    row.status = Delivery::Pending;
                    row.retry_count += 1;
                    row.next_attempt_ms = next;
                    row.last_error = Some(why);
                }
            }
        }
        let row = row.clone();
        self.writes.push_back(Write::Put(Box::new(row)));
    }

    /// Fails pending messages past their expiry and forgets finished rows older than
    /// `keep_finished`.
    pub fn expire(&mut self, now_ms: u64) {
        let keep = ms(self.policy.keep_finished);
        let mut gone = Vec::new();
        for row in self.rows.values_mut() {
            if row.status == Delivery::Pending && row.expires_ms <= now_ms {
                row.status = Delivery::Failed;
                row.last_error = Some("expired".into());
                self.writes.push_back(Write::Put(Box::new(row.clone())));
            }
            let finished_at = row.delivered_ms.or(row.sent_ms).unwrap_or(row.created_ms);
            if row.status.finished() && finished_at.saturating_add(keep) <= now_ms {
                gone.push(row.message_id);
            }
        }
        for id in gone {
            self.rows.remove(&id);
            self.writes.push_back(Write::Delete(id));
        }
    }

    /// When [`Self::due`] next has something (ms since the epoch).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.rows
            .values()
            .filter(|r| r.status == Delivery::Pending)
            .map(|r| r.next_attempt_ms.min(r.expires_ms))
            .min()
    }

    /// The next change to persist.
    pub fn poll_write(&mut self) -> Option<Write> {
        self.writes.pop_front()
    }

    /// One row.
    pub fn get(&self, message_id: &[u8; 16]) -> Option<&OutboxRow> {
        self.rows.get(message_id)
    }

    /// Every row, newest first.
    pub fn rows(&self) -> Vec<&OutboxRow> {
        let mut rows: Vec<&OutboxRow> = self.rows.values().collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.created_ms, r.message_id)));
        rows
    }

    fn put(&mut self, row: OutboxRow) {
        self.writes.push_back(Write::Put(Box::new(row.clone())));
        self.rows.insert(row.message_id, row);
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
