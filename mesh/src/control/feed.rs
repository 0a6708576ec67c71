//! A log's entries and checkpoints as a feed that never skips: [`LogFeed`] keeps its own
//! position and reads what became durable since, woken by the log's durable watch. The HTTP
//! WebSocket and the gRPC `Watch` stream both drive one.

use std::collections::VecDeque;

use tokio::sync::watch;

use onoal_engine::{Durable, Log, ReadError};

use super::{Control, Event};

/// Entries read from the log per step.
const READ_CHUNK: u64 = 1024;

/// One subscriber's position in a log.
#[derive(Debug)]
pub struct LogFeed {
    log: Log,
    durable: watch::Receiver<Durable>,
    stream: Option<String>,
    next: u64,
    checkpoint: Option<u64>,
    ready: VecDeque<Event>,
    ledger_id: String,
}

impl LogFeed {
    /// A feed of `log` from seq `from` (default: its durable size, so only new entries), of the
    /// entries of `stream` only when given.
    pub fn new(control: &Control, log: Log, from: Option<u64>, stream: Option<String>) -> Self {
        let durable = control.node().durable_watch(&log);
        let checkpoint = durable.borrow().checkpoint_size;
        Self {
            next: from.unwrap_or_else(|| log.durable_size()),
            ledger_id: log.identity().ledger_id.to_string(),
            log,
            durable,
            stream,
            checkpoint,
            ready: VecDeque::new(),
        }
    }

    /// The next event: an entry (in seq order, none skipped) or a newer checkpoint. Waits until
    /// there is one; `None` once the node is gone. Cancel-safe: the position only moves when
    /// events are taken.
    ///
    /// # Errors
    /// A storage error reading the log.
    pub async fn next(&mut self) -> Option<Result<Event, ReadError>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            // Marked seen before reading, so a change during the read wakes the wait below.
            let seen = *self.durable.borrow_and_update();
            let size = seen.size.max(self.log.durable_size());
            if self.next < size {
                let (start, end) = (self.next, size.min(self.next + READ_CHUNK));
                let reader = self.log.clone();
                let entries =
                    match tokio::task::spawn_blocking(move || reader.range(start, end)).await {
                        Ok(Ok(e)) => e,
                        Ok(Err(e)) => return Some(Err(e)),
                        Err(e) => {
                            return Some(Err(ReadError::Storage(format!("read task failed: {e}"))));
                        }
                    };
                for e in &entries {
                    let c = &e.entry.content;
                    if self.stream.as_deref().is_some_and(|s| s != c.stream.as_str()) {
                        continue;
                    }
                    self.ready.push_back(Event::Entry {
                        ledger_id: self.ledger_id.clone(),
                        seq: e.entry.seq,
                        leaf_hash: e.leaf_hash.to_hex(),
                        stream: c.stream.as_str().to_owned(),
                        entry_type: c.entry_type.as_str().to_owned(),
                        timestamp_ms: e.entry.timestamp_ms,
                    });
                }
                self.next = end;
                continue;
            }
            if seen.checkpoint_size > self.checkpoint {
                self.checkpoint = seen.checkpoint_size;
                if let Some(size) = seen.checkpoint_size {
                    return Some(Ok(Event::Checkpoint { ledger_id: self.ledger_id.clone(), size }));
                }
            }
            if self.durable.changed().await.is_err() {
                return None;
            }
        }
    }
}
