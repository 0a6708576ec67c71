//! Live follow, without I/O: connect, sync, then wait for a newer checkpoint (`WaitCheckpoint`,
//! a long poll the source answers as soon as it has one) and sync again; after a transient
//! failure, reconnect with backoff (100 ms, doubling to 2 s, reset by a successful connect).
//!
//! Call order: loop { match [`FollowSession::poll_action`] — `Connect`: connect, then
//! [`FollowSession::connected`] or [`FollowSession::failed`]; `Sync`: run a sync session,
//! then [`FollowSession::synced`] or `failed`; `Wait(request)`: send it, then
//! [`FollowSession::wait_answered`] or `failed`; `Sleep(until)`: sleep } — a failure that is
//! not transient ends the loop in the driver.

use std::time::{Duration, Instant};

use onoal_engine::{LedgerId, TreeSize};

use crate::proto::MAX_WAIT_MS;
use crate::proto::message::{Request, Response};
use crate::proto::misbehaved::PeerMisbehaved;

/// First reconnect delay.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowAction {
    /// Connect to the source (and exchange `Hello`).
    Connect,
    /// Sync the replica on the connection.
    Sync,
    /// Send this long poll on the connection.
    Wait(Request),
    /// Wait until then, then ask again.
    Sleep(Instant),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connect,
    Sync,
    Wait { have: u64 },
    Backoff { until: Instant },
}

/// The follow loop's state.
#[derive(Debug)]
pub struct FollowSession {
    ledger: LedgerId,
    wait_ms: u32,
    state: State,
    backoff: Duration,
}

impl FollowSession {
    /// Follows `ledger`; long polls last at most `wait_ms` (capped at [`MAX_WAIT_MS`]).
    pub fn new(ledger: LedgerId, wait_ms: u32) -> Self {
        Self {
            ledger,
            wait_ms: wait_ms.min(MAX_WAIT_MS),
            state: State::Connect,
            backoff: BACKOFF_START,
        }
    }

    /// What to do now.
    pub fn poll_action(&mut self, now: Instant) -> FollowAction {
        match self.state {
            State::Connect => FollowAction::Connect,
            State::Sync => FollowAction::Sync,
            State::Wait { have } => FollowAction::Wait(Request::WaitCheckpoint {
                ledger: self.ledger,
                have: TreeSize(have),
                wait_ms: self.wait_ms,
            }),
            State::Backoff { until } if now >= until => {
                self.state = State::Connect;
                FollowAction::Connect
            }
            State::Backoff { until } => FollowAction::Sleep(until),
        }
    }

    /// Connected: sync next; the backoff starts over.
    pub fn connected(&mut self) {
        self.backoff = BACKOFF_START;
        self.state = State::Sync;
    }

    /// A sync ended with the replica at a checkpoint of `checkpoint_size`: wait for a newer one.
    pub fn synced(&mut self, checkpoint_size: TreeSize) {
        self.state = State::Wait { have: checkpoint_size.0 };
    }

    /// The answer to a long poll: a newer checkpoint means sync again; none means ask again.
    ///
    /// # Errors
    /// Any other answer (a refusal is the driver's to report, as a failure).
    pub fn wait_answered(&mut self, response: &Response) -> Result<(), PeerMisbehaved> {
        match response {
            Response::Checkpoint { .. } => self.state = State::Sync,
            Response::NoCheckpoint => {}
            other => {
                return Err(PeerMisbehaved::UnexpectedResponse {
                    request: "WaitCheckpoint",
                    response: other.kind(),
                });
            }
        }
        Ok(())
    }

    /// A transient failure (transport, the source's internal error): reconnect after the
    /// backoff, which doubles up to [`BACKOFF_MAX`]. Returns the delay.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.backoff;
        self.state = State::Backoff { until: now + delay };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_syncs_waits_and_backs_off_on_a_virtual_clock() {
        let t0 = Instant::now();
        let id = LedgerId::from_bytes([1; 16]);
        let mut f = FollowSession::new(id, 60_000);
        assert_eq!(f.poll_action(t0), FollowAction::Connect);
        f.connected();
        assert_eq!(f.poll_action(t0), FollowAction::Sync);
        f.synced(TreeSize(300));
        let wait =
            Request::WaitCheckpoint { ledger: id, have: TreeSize(300), wait_ms: MAX_WAIT_MS };
        assert_eq!(f.poll_action(t0), FollowAction::Wait(wait.clone()));
        f.wait_answered(&Response::NoCheckpoint).unwrap();
        assert_eq!(f.poll_action(t0), FollowAction::Wait(wait));
        f.wait_answered(&Response::Checkpoint { note: String::new(), consistency: Vec::new() })
            .unwrap();
        assert_eq!(f.poll_action(t0), FollowAction::Sync);
        assert!(f.wait_answered(&Response::Bundle { count: 1, path: Vec::new() }).is_err());

        // Failures back off 100, 200, 400, 800, 1600, 2000, 2000 ms; a connect resets it.
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..7 {
            let d = f.failed(now);
            delays.push(d.as_millis());
            assert_eq!(f.poll_action(now), FollowAction::Sleep(now + d));
            now += d;
            assert_eq!(f.poll_action(now), FollowAction::Connect);
        }
        assert_eq!(delays, [100, 200, 400, 800, 1600, 2000, 2000]);
        f.connected();
        assert_eq!(f.failed(now), BACKOFF_START);
    }
}
