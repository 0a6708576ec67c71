//! The receiver's side of one sync, without I/O (in the manner of quinn-proto's `Connection`).
//!
//! A [`SyncSession`] owns no socket, task, clock or storage. Call order:
//!
//! 1. [`SyncSession::new`] with what the replica holds.
//! 2. Loop: send every [`SyncSession::poll_transmit`] (one request per stream); handle every
//!    [`SyncSession::poll_event`]; feed what comes back with [`SyncSession::handle_response`]
//!    (checkpoints, refusals) or [`SyncSession::handle_bundle`] (a bundle the driver received
//!    and verified, or the violation it found); after committing bundles of an
//!    [`Event::Commit`], report [`SyncSession::committed`]; after an
//!    [`Event::AcceptCheckpoint`], report [`SyncSession::checkpoint_accepted`]; call
//!    [`SyncSession::handle_timeout`] at [`SyncSession::poll_timeout`].
//! 3. Stop at [`Event::Done`] or [`Event::Failed`].
//!
//! Bundles are requested from the tile of the first entry not held up to the checkpoint's size,
//! at most `window` requested or waiting for commit at a time, and handed out for commit in
//! order, as many consecutive ones as have arrived (so they share one fsync).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use onoal_engine::Hash;

use super::{ErrorCode, PeerMisbehaved, Request, Response, bundle_starts};

/// Identifies one request (and its stream) within a session.
pub type RequestId = u64;

/// What the caller wants from the sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionMode {
    /// Checkpoint and entries.
    Entries,
    /// The newest checkpoint only (light client).
    CheckpointOnly,
}

/// Something the driver must do or know.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<B> {
    /// Check this checkpoint against the replica (signature, consistency) and report with
    /// [`SyncSession::checkpoint_accepted`].
    AcceptCheckpoint {
        /// Signed note.
        note: String,
        /// Consistency proof from the held size.
        consistency: Vec<Hash>,
    },
    /// The source has no checkpoint of the ledger yet.
    NothingToSync,
    /// Commit these bundles (consecutive, in order) in one write, then report
    /// [`SyncSession::committed`].
    Commit(Vec<B>),
    /// Everything up to the target checkpoint is held.
    Done,
    /// The session ended; nothing more will be asked.
    Failed(SessionError),
}

/// Why a session ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The peer violated the protocol.
    Misbehaved(PeerMisbehaved),
    /// The peer refused a request.
    Refused(ErrorCode, String),
    /// The connection failed.
    Transport(String),
    /// A request got no answer in time.
    TimedOut {
        /// The request.
        request: RequestId,
    },
    /// The driver reported a local failure.
    Local(String),
}

#[derive(Debug)]
enum State {
    /// Waiting for the answer to the checkpoint request.
    AwaitCheckpoint,
    /// Waiting for the driver's verdict on the checkpoint.
    AwaitAccept,
    /// Fetching bundles of the tree of `target`.
    Bundles { target: u64 },
    /// Finished (Done or Failed was emitted).
    Finished,
}

/// The sans-I/O receiver session. `B` is the driver's verified bundle type.
#[derive(Debug)]
pub struct SyncSession<B> {
    ledger: [u8; 16],
    mode: SessionMode,
    window: usize,
    request_timeout: Duration,
    state: State,
    held: u64,
    next_id: RequestId,
    /// Bundle starts still to request.
    to_request: VecDeque<u64>,
    /// In flight: request id -> (bundle start or None for the checkpoint, sent at).
    in_flight: BTreeMap<RequestId, (Option<u64>, Instant)>,
    /// Arrived bundles waiting for their predecessors, by start.
    arrived: BTreeMap<u64, B>,
    /// Start of the next bundle to hand out for commit.
    next_commit: Option<u64>,
    /// Bundles handed out for commit and not yet reported.
    committing: usize,
    transmits: VecDeque<(RequestId, Request)>,
    events: VecDeque<Event<B>>,
}

impl<B> SyncSession<B> {
    /// A session for `ledger`, whose replica holds `held` entries and a newest checkpoint of
    /// size `have` (0: none). Sends the checkpoint request first.
    pub fn new(
        ledger: [u8; 16],
        held: u64,
        have: u64,
        mode: SessionMode,
        window: usize,
        now: Instant,
    ) -> Self {
        let mut s = Self {
            ledger,
            mode,
            window: window.max(1),
            request_timeout: Duration::from_secs(30),
            state: State::AwaitCheckpoint,
            held,
            next_id: 0,
            to_request: VecDeque::new(),
            in_flight: BTreeMap::new(),
            arrived: BTreeMap::new(),
            next_commit: None,
            committing: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.send(Request::Checkpoint { ledger, have }, None, now);
        s
    }

    fn send(&mut self, request: Request, bundle: Option<u64>, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight.insert(id, (bundle, now));
        self.transmits.push_back((id, request));
    }

    fn fail(&mut self, error: SessionError) {
        if !matches!(self.state, State::Finished) {
            self.state = State::Finished;
            self.in_flight.clear();
            self.transmits.clear();
            self.arrived.clear();
            self.events.push_back(Event::Failed(error));
        }
    }

    /// The next request to send on a new stream.
    pub fn poll_transmit(&mut self) -> Option<(RequestId, Request)> {
        self.transmits.pop_front()
    }

    /// The next thing for the driver to do.
    pub fn poll_event(&mut self) -> Option<Event<B>> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.values().map(|(_, sent)| *sent + self.request_timeout).min()
    }

    /// Fails the session if a request is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        let overdue =
            self.in_flight.iter().find(|(_, (_, sent))| now >= *sent + self.request_timeout);
        if let Some((&request, _)) = overdue {
            self.fail(SessionError::TimedOut { request });
        }
    }

    /// True once Done or Failed was emitted.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// The answer to a checkpoint request (or a refusal of any request).
    pub fn handle_response(&mut self, _now: Instant, id: RequestId, response: Response) {
        let Some((bundle, _)) = self.in_flight.remove(&id) else {
            return; // Late answer after a failure, or unknown: ignore.
        };
        match (response, bundle, &self.state) {
            (Response::Error { code, message }, _, _) => {
                self.fail(SessionError::Refused(code, message));
            }
            (Response::Checkpoint { note, consistency }, None, State::AwaitCheckpoint) => {
                self.state = State::AwaitAccept;
                self.events.push_back(Event::AcceptCheckpoint { note, consistency });
            }
            (Response::NoCheckpoint, None, State::AwaitCheckpoint) => {
                self.state = State::Finished;
                self.events.push_back(Event::NothingToSync);
            }
            (other, _, _) => {
                self.fail(SessionError::Misbehaved(PeerMisbehaved::ProtocolViolation(format!(
                    "unexpected response {}",
                    response_name(&other)
                ))))
            }
        }
    }

    /// Request `id` failed before an answer could be read (transport, oversize or undecodable
    /// frame, refusal): the session ends with `error`.
    pub fn handle_failure(&mut self, _now: Instant, id: RequestId, error: SessionError) {
        if self.in_flight.remove(&id).is_some() {
            self.fail(error);
        }
    }

    /// The driver's verdict on [`Event::AcceptCheckpoint`]: `Ok(size)` of the checkpoint the
    /// replica now targets (the held one when the source was not newer), or the reason.
    pub fn checkpoint_accepted(&mut self, now: Instant, verdict: Result<u64, SessionError>) {
        if !matches!(self.state, State::AwaitAccept) {
            return;
        }
        let target = match verdict {
            Ok(t) => t,
            Err(e) => return self.fail(e),
        };
        if self.mode == SessionMode::CheckpointOnly || self.held >= target {
            self.state = State::Finished;
            self.events.push_back(Event::Done);
            return;
        }
        self.to_request = bundle_starts(self.held, target).collect();
        self.next_commit = self.to_request.front().copied();
        self.state = State::Bundles { target };
        self.fill_window(now);
    }

    fn fill_window(&mut self, now: Instant) {
        let State::Bundles { target } = self.state else { return };
        while self.in_flight.len() + self.arrived.len() + self.committing < self.window {
            let Some(first) = self.to_request.pop_front() else { break };
            self.send(
                Request::Bundle { ledger: self.ledger, size: target, first },
                Some(first),
                now,
            );
        }
    }

    /// A bundle arrived and was verified by the driver (`Ok`), or the driver found a violation
    /// in it (`Err`).
    pub fn handle_bundle(&mut self, now: Instant, id: RequestId, bundle: Result<B, SessionError>) {
        let Some((Some(first), _)) = self.in_flight.remove(&id) else {
            return;
        };
        let b = match bundle {
            Ok(b) => b,
            Err(e) => return self.fail(e),
        };
        self.arrived.insert(first, b);
        let mut ready = Vec::new();
        while let Some(next) = self.next_commit {
            let Some(b) = self.arrived.remove(&next) else { break };
            ready.push(b);
            self.next_commit = Some(next + onoal_engine::replica::BUNDLE_ENTRIES);
        }
        if !ready.is_empty() {
            self.committing += ready.len();
            self.events.push_back(Event::Commit(ready));
        }
        self.fill_window(now);
    }

    /// The driver committed the bundles of one [`Event::Commit`] (`Ok(entries held now)`), or
    /// could not.
    pub fn committed(&mut self, now: Instant, bundles: usize, result: Result<u64, SessionError>) {
        self.committing = self.committing.saturating_sub(bundles);
        match result {
            Err(e) => self.fail(e),
            Ok(held) => {
                self.held = held;
                let State::Bundles { target } = self.state else { return };
                if held >= target {
                    self.state = State::Finished;
                    self.events.push_back(Event::Done);
                } else {
                    self.fill_window(now);
                }
            }
        }
    }
}

fn response_name(r: &Response) -> &'static str {
    match r {
        Response::Hello { .. } => "Hello",
        Response::Certificate { .. } => "Certificate",
        Response::Checkpoint { .. } => "Checkpoint",
        Response::NoCheckpoint => "NoCheckpoint",
        Response::Bundle { .. } => "Bundle",
        Response::Entries { .. } => "Entries",
        Response::Error { .. } => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type S = SyncSession<u64>;

    fn drain_transmits(s: &mut S) -> Vec<(RequestId, Request)> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn drain_events(s: &mut S) -> Vec<Event<u64>> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    fn checkpoint() -> Response {
        Response::Checkpoint { note: "n".into(), consistency: Vec::new() }
    }

    fn bundle_first(r: &Request) -> u64 {
        match r {
            Request::Bundle { first, .. } => *first,
            other => panic!("expected a bundle request, got {other:?}"),
        }
    }

    #[test]
    fn bundles_commit_in_order_within_the_window_and_resume_from_the_held_tile() {
        let now = Instant::now();
        // Held 300 of a tree that will be 2,000: resume at tile 1 (entry 256).
        let mut s = S::new([1; 16], 300, 300, SessionMode::Entries, 3, now);
        let t = drain_transmits(&mut s);
        assert!(matches!(t[..], [(0, Request::Checkpoint { have: 300, .. })]));
        s.handle_response(now, 0, checkpoint());
        assert!(matches!(drain_events(&mut s)[..], [Event::AcceptCheckpoint { .. }]));
        s.checkpoint_accepted(now, Ok(2000));
        let t = drain_transmits(&mut s);
        assert_eq!(t.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [256, 512, 768]);
        // The third arrives first: nothing to commit yet, and the window stays full.
        s.handle_bundle(now, t[2].0, Ok(768));
        assert!(drain_events(&mut s).is_empty());
        assert!(drain_transmits(&mut s).is_empty());
        s.handle_bundle(now, t[0].0, Ok(256));
        assert_eq!(drain_events(&mut s), [Event::Commit(vec![256])]);
        s.handle_bundle(now, t[1].0, Ok(512));
        assert_eq!(drain_events(&mut s), [Event::Commit(vec![512, 768])]);
        // Nothing new until commits are reported (the window counts them).
        assert!(drain_transmits(&mut s).is_empty());
        s.committed(now, 1, Ok(512));
        s.committed(now, 2, Ok(1024));
        let t = drain_transmits(&mut s);
        assert_eq!(t.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [1024, 1280, 1536]);
        for (id, r) in &t {
            s.handle_bundle(now, *id, Ok(bundle_first(r)));
        }
        let t2 = drain_transmits(&mut s);
        assert!(t2.is_empty(), "window full of uncommitted bundles");
        let ev = drain_events(&mut s);
        assert_eq!(
            ev,
            [Event::Commit(vec![1024]), Event::Commit(vec![1280]), Event::Commit(vec![1536])]
        );
        s.committed(now, 3, Ok(1792));
        let t = drain_transmits(&mut s);
        assert_eq!(t.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [1792]);
        s.handle_bundle(now, t[0].0, Ok(1792));
        assert_eq!(drain_events(&mut s), [Event::Commit(vec![1792])]);
        s.committed(now, 1, Ok(2000));
        assert_eq!(drain_events(&mut s), [Event::Done]);
        assert!(s.is_finished());
    }

    #[test]
    fn a_bad_bundle_ends_the_session_and_later_answers_are_ignored() {
        let now = Instant::now();
        let mut s = S::new([1; 16], 0, 0, SessionMode::Entries, 4, now);
        drain_transmits(&mut s);
        s.handle_response(now, 0, checkpoint());
        drain_events(&mut s);
        s.checkpoint_accepted(now, Ok(1024));
        let t = drain_transmits(&mut s);
        let bad = SessionError::Misbehaved(PeerMisbehaved::BadBundle("x".into()));
        s.handle_bundle(now, t[1].0, Err(bad.clone()));
        assert_eq!(drain_events(&mut s), [Event::Failed(bad)]);
        s.handle_bundle(now, t[0].0, Ok(0));
        assert!(drain_events(&mut s).is_empty());
        assert!(drain_transmits(&mut s).is_empty());
    }

    #[test]
    fn refusals_wrong_responses_and_timeouts_end_the_session() {
        let now = Instant::now();
        let mut s = S::new([1; 16], 0, 0, SessionMode::Entries, 4, now);
        drain_transmits(&mut s);
        s.handle_response(now, 0, Response::Bundle { count: 1, path: Vec::new() });
        assert!(matches!(
            drain_events(&mut s)[..],
            [Event::Failed(SessionError::Misbehaved(PeerMisbehaved::ProtocolViolation(_)))]
        ));

        let mut s = S::new([1; 16], 0, 0, SessionMode::Entries, 4, now);
        drain_transmits(&mut s);
        s.handle_response(
            now,
            0,
            Response::Error { code: ErrorCode::NotPinned, message: "m".into() },
        );
        assert!(matches!(
            drain_events(&mut s)[..],
            [Event::Failed(SessionError::Refused(ErrorCode::NotPinned, _))]
        ));

        let mut s = S::new([1; 16], 0, 0, SessionMode::Entries, 4, now);
        drain_transmits(&mut s);
        let at = s.poll_timeout().unwrap();
        s.handle_timeout(at - Duration::from_millis(1));
        assert!(drain_events(&mut s).is_empty());
        s.handle_timeout(at);
        assert_eq!(drain_events(&mut s), [Event::Failed(SessionError::TimedOut { request: 0 })]);
    }

    #[test]
    fn light_mode_and_up_to_date_replicas_finish_after_the_checkpoint() {
        let now = Instant::now();
        let mut s = S::new([1; 16], 0, 0, SessionMode::CheckpointOnly, 4, now);
        drain_transmits(&mut s);
        s.handle_response(now, 0, checkpoint());
        drain_events(&mut s);
        s.checkpoint_accepted(now, Ok(5000));
        assert_eq!(drain_events(&mut s), [Event::Done]);
        assert!(drain_transmits(&mut s).is_empty());

        let mut s = S::new([1; 16], 700, 700, SessionMode::Entries, 4, now);
        drain_transmits(&mut s);
        s.handle_response(now, 0, Response::NoCheckpoint);
        assert_eq!(drain_events(&mut s), [Event::NothingToSync]);
        let mut s = S::new([1; 16], 700, 700, SessionMode::Entries, 4, now);
        drain_transmits(&mut s);
        s.handle_response(now, 0, checkpoint());
        drain_events(&mut s);
        s.checkpoint_accepted(now, Ok(700));
        assert_eq!(drain_events(&mut s), [Event::Done]);
    }
}
