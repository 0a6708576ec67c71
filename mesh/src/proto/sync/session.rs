//! The receiver's side of one sync, without I/O (in the manner of quinn-proto's `Connection`).
//!
//! A [`SyncSession`] owns no socket, task, clock or storage. Call order:
//!
//! 1. [`SyncSession::new`] with what the replica holds and the [`SessionMode`].
//! 2. Loop: send every [`SyncSession::poll_transmit`] (one request per stream); handle every
//!    [`SyncSession::poll_event`]; feed what comes back with [`SyncSession::handle_response`]
//!    (checkpoints, pages, refusals), [`SyncSession::handle_bundle`] (a bundle the driver
//!    received and verified, or the violation it found) or [`SyncSession::handle_failure`];
//!    report the driver's work with [`SyncSession::checkpoint_accepted`] (after
//!    [`Event::AcceptCheckpoint`]), [`SyncSession::fork_checked`] (after
//!    [`Event::CheckFork`]), [`SyncSession::committed`] (after [`Event::Commit`]) and
//!    [`SyncSession::page_committed`] (after [`Event::CommitPage`]); call
//!    [`SyncSession::handle_timeout`] at [`SyncSession::poll_timeout`].
//! 3. Stop at [`Event::Done`], [`Event::NothingToSync`] or [`Event::Failed`].
//!
//! First the source's newest checkpoint: the driver checks it against the replica. When its
//! consistency proof fails, the session asks the source for its checkpoint of the size held:
//! a validly signed one with another root proves a fork; otherwise the source sent a bad
//! proof. Then, by mode: bundles are requested from the tile of the first entry not held up to
//! the checkpoint's size, at most `window` requested or waiting for commit at a time, and
//! handed out for commit in order, as many consecutive ones as have arrived (so they share one
//! fsync); a filtered sync asks for pages instead ([`super::filtered`]); a light sync stops.
//! Every request has a deadline.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use onoal_engine::replica::{BUNDLE_ENTRIES, range_len};
use onoal_engine::{Filter, Hash, LedgerId, LogIndex, TreeSize};

use super::error::SessionError;
use crate::proto::message::{ProvenEntryWire, Request, Response};
use crate::proto::misbehaved::PeerMisbehaved;

/// Identifies one request (and its stream) within a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What the caller wants from the sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionMode {
    /// Checkpoint and every entry (full or incremental sync).
    Entries,
    /// The newest checkpoint only (light client).
    CheckpointOnly,
    /// Checkpoint, then the entries matching the filter with their inclusion proofs.
    Filtered(Filter),
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
    /// The checkpoint was not proven consistent; this is the source's checkpoint of the size
    /// held. Check it against the held one (a fork?) and report with
    /// [`SyncSession::fork_checked`].
    CheckFork {
        /// Signed note.
        note: String,
    },
    /// The checkpoint was not proven consistent; this is the source's tree's root at the size
    /// held and a proof from there to the refused checkpoint. Check it (a fork?) and report
    /// with [`SyncSession::fork_proof_checked`].
    CheckForkProof {
        /// The source's root at the size held.
        old_root: Hash,
        /// Consistency proof from it to the refused checkpoint's root.
        proof: Vec<Hash>,
    },
    /// The source has no checkpoint of the ledger yet.
    NothingToSync,
    /// Commit these bundles (consecutive, in order) in one write, then report
    /// [`SyncSession::committed`].
    Commit(Vec<B>),
    /// Commit this filtered page (entries already checked against the filter, the cursor and
    /// the tree; their proofs are the replica's to check), then report
    /// [`SyncSession::page_committed`].
    CommitPage {
        /// The page's entries.
        entries: Vec<ProvenEntryWire>,
    },
    /// Everything up to the target checkpoint is held.
    Done,
    /// The session ended; nothing more will be asked.
    Failed(SessionError),
}

/// The driver's verdict on [`Event::AcceptCheckpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptVerdict {
    /// The replica now targets a checkpoint of this size (the held one when the source was not
    /// newer).
    Accepted(TreeSize),
    /// The consistency proof did not verify: a bad proof, or a fork? The session asks.
    Inconsistent(PeerMisbehaved),
    /// Refused for another reason (a bad signature, a fork proven outright, a local error).
    Refused(SessionError),
}

/// What a request in flight was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    Checkpoint,
    ForkProbe,
    ForkProof,
    /// A bundle: first seq and width.
    Bundle(u64, u64),
    Page,
}

#[derive(Debug)]
pub(super) enum State {
    /// Waiting for the answer to the checkpoint request.
    AwaitCheckpoint,
    /// Waiting for the driver's verdict on the checkpoint.
    AwaitAccept,
    /// Waiting for the source's checkpoint of the held size (fork or bad proof?).
    AwaitForkProbe(PeerMisbehaved),
    /// Waiting for the driver's comparison of that checkpoint with the held one.
    AwaitForkVerdict(PeerMisbehaved),
    /// Waiting for the source's root at the size held and its consistency proof.
    AwaitForkProof(PeerMisbehaved),
    /// Waiting for the driver's check of that proof.
    AwaitForkProofVerdict(PeerMisbehaved),
    /// Fetching bundles of the tree of `target`.
    Bundles { target: u64 },
    /// Fetching filtered pages of the tree of `size` from `cursor` (a page in flight or being
    /// committed when `waiting`).
    Pages { size: u64, cursor: u64, next: Option<u64>, waiting: bool },
    /// Finished (Done, NothingToSync or Failed was emitted).
    Finished,
}

/// The sans-I/O receiver session. `B` is the driver's verified bundle type.
#[derive(Debug)]
pub struct SyncSession<B> {
    pub(super) ledger: LedgerId,
    pub(super) mode: SessionMode,
    /// Bundles requested or waiting for commit at most, now: shrinks to what is in flight
    /// when a bundle is deferred, and grows by one a commit up to `max_window`.
    window: usize,
    max_window: usize,
    request_timeout: Duration,
    pub(super) state: State,
    held: u64,
    have: u64,
    next_id: u64,
    /// Bundles still to request: (first seq, width).
    to_request: VecDeque<(u64, u64)>,
    /// Width of the bundles requested from now on (256, narrowed when entries are large).
    width: u64,
    /// Most bytes one bundle's answer may hold (the driver enforces it; the session narrows).
    bundle_bytes: u64,
    /// In flight: what for, which kind, sent when.
    in_flight: BTreeMap<RequestId, (Purpose, &'static str, Instant)>,
    /// Arrived bundles waiting for their predecessors, by start (with their entry count).
    arrived: BTreeMap<u64, (B, u64)>,
    /// Start of the next bundle to hand out for commit.
    next_commit: Option<u64>,
    /// Bundles handed out for commit and not yet reported.
    committing: usize,
    transmits: VecDeque<(RequestId, Request)>,
    pub(super) events: VecDeque<Event<B>>,
}

/// Which bundles a receiver requests: from the tile holding its first missing entry to the
/// end of the target tree, in order. Pure, so resumption is testable without a network.
pub fn bundle_starts(held: u64, target_size: u64) -> impl Iterator<Item = u64> {
    let from = held - held % BUNDLE_ENTRIES;
    (from..target_size).step_by(BUNDLE_ENTRIES as usize)
}

impl<B> SyncSession<B> {
    /// A session for `ledger`, whose replica holds `held` entries and a newest checkpoint of
    /// size `have` (0: none), requesting at most `window` bundles at a time, each request with
    /// `request_timeout` to be answered. Sends the checkpoint request first.
    pub fn new(
        ledger: LedgerId,
        held: TreeSize,
        have: TreeSize,
        mode: SessionMode,
        window: std::num::NonZeroUsize,
        request_timeout: Duration,
        now: Instant,
    ) -> Self {
        let mut s = Self {
            ledger,
            mode,
            window: window.get(),
            max_window: window.get(),
            request_timeout,
            state: State::AwaitCheckpoint,
            held: held.0,
            have: have.0,
            next_id: 0,
            to_request: VecDeque::new(),
            width: BUNDLE_ENTRIES,
            bundle_bytes: u64::MAX,
            in_flight: BTreeMap::new(),
            arrived: BTreeMap::new(),
            next_commit: None,
            committing: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.send(Request::Checkpoint { ledger, have }, Purpose::Checkpoint, now);
        s
    }

    pub(super) fn send(&mut self, request: Request, purpose: Purpose, now: Instant) {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.in_flight.insert(id, (purpose, request.kind(), now));
        self.transmits.push_back((id, request));
    }

    pub(super) fn fail(&mut self, error: SessionError) {
        if !matches!(self.state, State::Finished) {
            self.state = State::Finished;
            self.in_flight.clear();
            self.transmits.clear();
            self.arrived.clear();
            self.events.push_back(Event::Failed(error));
        }
    }

    pub(super) fn finish(&mut self, event: Event<B>) {
        self.state = State::Finished;
        self.events.push_back(event);
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
        self.in_flight.values().map(|(_, _, sent)| *sent + self.request_timeout).min()
    }

    /// Fails the session if a request is overdue.
    pub fn handle_timeout(&mut self, now: Instant) {
        let overdue = self
            .in_flight
            .iter()
            .find(|(_, (_, _, sent))| now >= *sent + self.request_timeout)
            .map(|(&id, &(_, kind, _))| (id, kind));
        if let Some((request, kind)) = overdue {
            self.fail(SessionError::TimedOut { request, kind, after: self.request_timeout });
        }
    }

    /// True once Done, NothingToSync or Failed was emitted.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// The first seq and width of bundle request `id`, while it is in flight.
    pub fn bundle_of(&self, id: RequestId) -> Option<(u64, u64)> {
        match self.in_flight.get(&id) {
            Some((Purpose::Bundle(first, width), _, _)) => Some((*first, *width)),
            _ => None,
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// An answer to a checkpoint, fork-probe or page request, or a refusal of any request.
    pub fn handle_response(&mut self, now: Instant, id: RequestId, response: Response) {
        let Some((purpose, kind, _)) = self.in_flight.remove(&id) else {
            return; // Late answer after a failure, or unknown: ignore.
        };
        let state = std::mem::replace(&mut self.state, State::Finished);
        if let Response::Error { code, message } = response {
            self.state = state;
            // A refused probe proves nothing: the proof that failed is the violation.
            return match (&self.state, purpose) {
                (State::AwaitForkProbe(why), Purpose::ForkProbe)
                | (State::AwaitForkProof(why), Purpose::ForkProof) => {
                    let why = why.clone();
                    self.fail(SessionError::Misbehaved(why))
                }
                _ => self.fail(SessionError::Refused(code, message)),
            };
        }
        match (purpose, state, response) {
            (
                Purpose::Checkpoint,
                State::AwaitCheckpoint,
                Response::Checkpoint { note, consistency },
            ) => {
                self.state = State::AwaitAccept;
                self.events.push_back(Event::AcceptCheckpoint { note, consistency });
            }
            (Purpose::Checkpoint, State::AwaitCheckpoint, Response::NoCheckpoint) => {
                self.finish(Event::NothingToSync);
            }
            (Purpose::ForkProbe, State::AwaitForkProbe(why), Response::Checkpoint { note, .. }) => {
                self.state = State::AwaitForkVerdict(why);
                self.events.push_back(Event::CheckFork { note });
            }
            (Purpose::ForkProbe, State::AwaitForkProbe(why), Response::NoCheckpoint) => {
                // No checkpoint of the held size: ask for the source's root there instead.
                self.probe_proof(now, why);
            }
            (
                Purpose::ForkProof,
                State::AwaitForkProof(why),
                Response::Consistency { old_root, proof },
            ) => {
                self.state = State::AwaitForkProofVerdict(why);
                self.events.push_back(Event::CheckForkProof { old_root, proof });
            }
            (Purpose::Page, state @ State::Pages { .. }, response) => {
                self.state = state;
                self.handle_page(now, response);
            }
            // Any other answer to a probe proves nothing: the proof that failed is the violation.
            (
                Purpose::ForkProbe | Purpose::ForkProof,
                State::AwaitForkProbe(why) | State::AwaitForkProof(why),
                _,
            ) => {
                self.state = State::AwaitForkProof(why.clone());
                self.fail(SessionError::Misbehaved(why));
            }
            (_, state, other) => {
                self.state = state;
                self.fail(SessionError::Misbehaved(PeerMisbehaved::UnexpectedResponse {
                    request: kind,
                    response: other.kind(),
                }));
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

    /// The driver's verdict on [`Event::AcceptCheckpoint`].
    pub fn checkpoint_accepted(&mut self, now: Instant, verdict: AcceptVerdict) {
        if !matches!(self.state, State::AwaitAccept) {
            return;
        }
        let target = match verdict {
            AcceptVerdict::Accepted(t) => t.0,
            AcceptVerdict::Inconsistent(why) => {
                // A bad proof, or a fork? Ask for the source's checkpoint of the size held.
                self.state = State::AwaitForkProbe(why);
                let probe =
                    Request::CheckpointAt { ledger: self.ledger, size: TreeSize(self.have) };
                return self.send(probe, Purpose::ForkProbe, now);
            }
            AcceptVerdict::Refused(e) => return self.fail(e),
        };
        match self.mode.clone() {
            SessionMode::CheckpointOnly => self.finish(Event::Done),
            SessionMode::Filtered(_) => {
                self.state = State::Pages { size: target, cursor: 0, next: None, waiting: false };
                self.request_page(now);
            }
            SessionMode::Entries if self.held >= target => self.finish(Event::Done),
            SessionMode::Entries => {
                self.to_request =
                    bundle_starts(self.held, target).map(|f| (f, BUNDLE_ENTRIES)).collect();
                self.state = State::Bundles { target };
                self.narrow(self.width);
                self.next_commit = self.to_request.front().map(|&(first, _)| first);
                self.fill_window(now);
            }
        }
    }

    /// The driver's verdict on [`Event::CheckFork`]: `Ok(())` when the source's checkpoint of
    /// the held size agrees with the held one (the session then asks for the source's root at
    /// that size with a proof), or the error to end with (a fork, with its evidence stored; a
    /// bad signature).
    pub fn fork_checked(&mut self, now: Instant, verdict: Result<(), SessionError>) {
        let State::AwaitForkVerdict(why) = &self.state else { return };
        let why = why.clone();
        match verdict {
            Ok(()) => self.probe_proof(now, why),
            Err(e) => self.fail(e),
        }
    }

    /// Asks for the source's root at the held size and a consistency proof from it to the
    /// refused checkpoint: if that proof verifies against the refused checkpoint's signed root
    /// but the root is not the held one, the two checkpoints are a fork.
    fn probe_proof(&mut self, now: Instant, why: PeerMisbehaved) {
        let PeerMisbehaved::InconsistentCheckpoint { new_size, .. } = &why else {
            self.state = State::AwaitForkProof(why.clone());
            return self.fail(SessionError::Misbehaved(why));
        };
        let request = Request::Consistency {
            ledger: self.ledger,
            old: TreeSize(self.have),
            new: TreeSize(*new_size),
        };
        self.state = State::AwaitForkProof(why);
        self.send(request, Purpose::ForkProof, now);
    }

    /// The driver's verdict on [`Event::CheckForkProof`]: `Ok(())` when it proves nothing (the
    /// consistency proof was simply bad: the violation), or the fork to end with.
    pub fn fork_proof_checked(&mut self, _now: Instant, verdict: Result<(), SessionError>) {
        let State::AwaitForkProofVerdict(why) = &self.state else { return };
        let why = why.clone();
        match verdict {
            Ok(()) => self.fail(SessionError::Misbehaved(why)),
            Err(e) => self.fail(e),
        }
    }

    fn fill_window(&mut self, now: Instant) {
        let State::Bundles { target } = self.state else { return };
        while self.in_flight.len() + self.arrived.len() + self.committing < self.window {
            let Some((first, width)) = self.to_request.pop_front() else { break };
            if width < BUNDLE_ENTRIES {
                let request = Request::Range {
                    ledger: self.ledger,
                    size: TreeSize(target),
                    first: LogIndex(first),
                    width: width as u32,
                };
                self.send(request, Purpose::Bundle(first, width), now);
                continue;
            }
            let request = Request::Bundle {
                ledger: self.ledger,
                size: TreeSize(target),
                first: LogIndex(first),
            };
            self.send(request, Purpose::Bundle(first, width), now);
        }
    }

    /// A bundle arrived and was verified by the driver (`Ok`), or the driver found a violation
    /// in it (`Err`).
    pub fn handle_bundle(&mut self, now: Instant, id: RequestId, bundle: Result<B, SessionError>) {
        let Some((Purpose::Bundle(first, width), _, _)) = self.in_flight.remove(&id) else {
            return;
        };
        let State::Bundles { target } = self.state else { return };
        let b = match bundle {
            Ok(b) => b,
            Err(SessionError::Deferred) => {
                // No memory for it now: ask again once commits free some, with fewer bundles
                // in flight than there were.
                self.to_request.push_front((first, width));
                self.to_request.make_contiguous().sort_by_key(|&(f, _)| f);
                let occupied = self.in_flight.len() + self.arrived.len() + self.committing;
                // The bundle next in line is asked again at once: every later one waits for it,
                // so no commit could free budget while it is missing, and with nothing in
                // flight no timer would end the wait (a driver defers a bundle that was not
                // next when it asked for budget, and may be by the time this arrives).
                let next_in_line = self.next_commit == Some(first);
                self.window = (occupied + usize::from(next_in_line)).max(1);
                return self.fill_window(now);
            }
            Err(SessionError::TooLarge { entries, bytes }) if width > 1 => {
                // Large entries: ask again for these entries, and everything after them, in
                // bundles narrow enough to stay under the byte cap.
                let per_entry = bytes / entries.max(1);
                let fits = (self.bundle_bytes / per_entry.max(1)).max(1);
                let narrower = (width / 2).min(1 << fits.ilog2()).max(1);
                self.to_request.push_front((first, width));
                self.to_request.make_contiguous().sort_by_key(|&(f, _)| f);
                self.narrow(narrower);
                return self.fill_window(now);
            }
            Err(e) => return self.fail(e),
        };
        let len = range_len(first, width, target).unwrap_or(0);
        self.arrived.insert(first, (b, len));
        let mut ready = Vec::new();
        while let Some(next) = self.next_commit {
            let Some((b, len)) = self.arrived.remove(&next) else { break };
            ready.push(b);
            self.next_commit = Some(next + len);
        }
        if !ready.is_empty() {
            self.committing += ready.len();
            self.events.push_back(Event::Commit(ready));
        }
        self.fill_window(now);
    }

    /// Splits every bundle still to request that is wider than `width`, and requests `width`
    /// from now on.
    fn narrow(&mut self, width: u64) {
        self.width = self.width.min(width);
        let w = self.width;
        let held = self.held;
        let end = match self.state {
            State::Bundles { target } => target,
            _ => u64::MAX,
        };
        self.to_request = std::mem::take(&mut self.to_request)
            .into_iter()
            .flat_map(|(first, old)| {
                let parts = if old > w { old / w } else { 1 };
                let width = old.min(w);
                (0..parts).map(move |i| (first + i * width, width))
            })
            .filter(|&(first, width)| first < end && first + width > held)
            .collect();
    }

    /// Sets the most bytes one bundle's answer may hold; the driver stops reading a bundle
    /// past it and reports [`SessionError::TooLarge`], and the session asks narrower bundles.
    pub fn set_bundle_bytes(&mut self, bytes: u64) {
        self.bundle_bytes = bytes.max(1);
    }

    /// The first seq of the next bundle to commit: the one the driver must always let finish
    /// (the others may wait for memory).
    pub fn next_commit(&self) -> Option<u64> {
        self.next_commit
    }

    /// The driver committed the bundles of one [`Event::Commit`] (`Ok(entries held now)`), or
    /// could not.
    pub fn committed(
        &mut self,
        now: Instant,
        bundles: usize,
        result: Result<TreeSize, SessionError>,
    ) {
        self.committing = self.committing.saturating_sub(bundles);
        match result {
            Err(e) => self.fail(e),
            Ok(held) => {
                self.held = held.0;
                self.window = (self.window + 1).min(self.max_window);
                let State::Bundles { target } = self.state else { return };
                if self.held >= target {
                    self.finish(Event::Done);
                } else {
                    self.fill_window(now);
                }
            }
        }
    }
}
