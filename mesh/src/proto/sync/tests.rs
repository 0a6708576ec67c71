//! Session tests with synthetic answers (the simulator in `proto/tests` drives real ledgers).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use onoal_engine::{Filter, LedgerId, LogIndex, TreeSize};

use super::*;
use crate::proto::message::{ErrorCode, ProvenEntryWire, Request, Response};
use crate::proto::misbehaved::PeerMisbehaved;

type S = SyncSession<u64>;

const TIMEOUT: Duration = Duration::from_secs(10);

fn id() -> LedgerId {
    LedgerId::from_bytes([1; 16])
}

fn session(held: u64, have: u64, mode: SessionMode, window: usize, now: Instant) -> S {
    S::new(
        id(),
        TreeSize(held),
        TreeSize(have),
        mode,
        NonZeroUsize::new(window).unwrap(),
        TIMEOUT,
        now,
    )
}

fn drain_transmits(s: &mut S) -> Vec<(RequestId, Request)> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn drain_events(s: &mut S) -> Vec<Event<u64>> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn checkpoint() -> Response {
    Response::Checkpoint { note: "n".into(), consistency: Vec::new() }
}

/// Answers the session's checkpoint request and accepts a checkpoint of `target`.
fn accept(s: &mut S, now: Instant, target: u64) {
    drain_transmits(s);
    s.handle_response(now, RequestId(0), checkpoint());
    drain_events(s);
    s.checkpoint_accepted(now, AcceptVerdict::Accepted(TreeSize(target)));
}

fn bundle_first(r: &Request) -> u64 {
    match r {
        Request::Bundle { first, .. } => first.0,
        other => panic!("expected a bundle request, got {other:?}"),
    }
}

#[test]
fn resumption_starts_at_the_tile_of_the_first_missing_entry() {
    assert_eq!(bundle_starts(0, 600).collect::<Vec<_>>(), [0, 256, 512]);
    assert_eq!(bundle_starts(300, 600).collect::<Vec<_>>(), [256, 512]);
    assert_eq!(bundle_starts(512, 600).collect::<Vec<_>>(), [512]);
    assert_eq!(bundle_starts(600, 600).collect::<Vec<_>>(), [512]);
    assert_eq!(bundle_starts(768, 768).count(), 0);
}

#[test]
fn bundles_commit_in_order_within_the_window_and_resume_from_the_held_tile() {
    let now = Instant::now();
    // Held 300 of a tree that will be 2,000: resume at tile 1 (entry 256).
    let mut s = session(300, 300, SessionMode::Entries, 3, now);
    let t = drain_transmits(&mut s);
    assert!(matches!(t[..], [(RequestId(0), Request::Checkpoint { have: TreeSize(300), .. })]));
    s.handle_response(now, RequestId(0), checkpoint());
    assert!(matches!(drain_events(&mut s)[..], [Event::AcceptCheckpoint { .. }]));
    s.checkpoint_accepted(now, AcceptVerdict::Accepted(TreeSize(2000)));
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
    s.committed(now, 1, Ok(TreeSize(512)));
    s.committed(now, 2, Ok(TreeSize(1024)));
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
    s.committed(now, 3, Ok(TreeSize(1792)));
    let t = drain_transmits(&mut s);
    assert_eq!(t.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [1792]);
    s.handle_bundle(now, t[0].0, Ok(1792));
    assert_eq!(drain_events(&mut s), [Event::Commit(vec![1792])]);
    s.committed(now, 1, Ok(TreeSize(2000)));
    assert_eq!(drain_events(&mut s), [Event::Done]);
    assert!(s.is_finished());
}

#[test]
fn a_bad_bundle_ends_the_session_and_later_answers_are_ignored() {
    let now = Instant::now();
    let mut s = session(0, 0, SessionMode::Entries, 4, now);
    accept(&mut s, now, 1024);
    let t = drain_transmits(&mut s);
    let bad = SessionError::Misbehaved(PeerMisbehaved::CursorStalled);
    s.handle_bundle(now, t[1].0, Err(bad.clone()));
    assert_eq!(drain_events(&mut s), [Event::Failed(bad)]);
    s.handle_bundle(now, t[0].0, Ok(0));
    assert!(drain_events(&mut s).is_empty());
    assert!(drain_transmits(&mut s).is_empty());
}

#[test]
fn refusals_wrong_responses_and_timeouts_end_the_session() {
    let now = Instant::now();
    let mut s = session(0, 0, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(0), Response::Bundle { count: 1, path: Vec::new() });
    assert!(matches!(
        drain_events(&mut s)[..],
        [Event::Failed(SessionError::Misbehaved(PeerMisbehaved::UnexpectedResponse {
            request: "Checkpoint",
            response: "Bundle"
        }))]
    ));

    let mut s = session(0, 0, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    s.handle_response(
        now,
        RequestId(0),
        Response::Error { code: ErrorCode::NotPinned, message: "m".into() },
    );
    assert!(matches!(
        drain_events(&mut s)[..],
        [Event::Failed(SessionError::Refused(ErrorCode::NotPinned, _))]
    ));

    let mut s = session(0, 0, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    let at = s.poll_timeout().unwrap();
    assert_eq!(at, now + TIMEOUT);
    s.handle_timeout(at - Duration::from_millis(1));
    assert!(drain_events(&mut s).is_empty());
    s.handle_timeout(at);
    let ev = drain_events(&mut s);
    assert_eq!(
        ev,
        [Event::Failed(SessionError::TimedOut {
            request: RequestId(0),
            kind: "Checkpoint",
            after: TIMEOUT
        })]
    );
    let Event::Failed(e) = &ev[0] else { unreachable!() };
    assert_eq!(e.to_string(), "the Checkpoint request got no answer within 10 s");
}

#[test]
fn light_mode_and_up_to_date_replicas_finish_after_the_checkpoint() {
    let now = Instant::now();
    let mut s = session(0, 0, SessionMode::CheckpointOnly, 4, now);
    accept(&mut s, now, 5000);
    assert_eq!(drain_events(&mut s), [Event::Done]);
    assert!(drain_transmits(&mut s).is_empty());

    let mut s = session(700, 700, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(0), Response::NoCheckpoint);
    assert_eq!(drain_events(&mut s), [Event::NothingToSync]);
    let mut s = session(700, 700, SessionMode::Entries, 4, now);
    accept(&mut s, now, 700);
    assert_eq!(drain_events(&mut s), [Event::Done]);
}

#[test]
fn an_inconsistent_checkpoint_is_probed_for_a_fork_within_a_deadline() {
    let now = Instant::now();
    let why =
        PeerMisbehaved::InconsistentCheckpoint { old_size: 300, new_size: 400, reason: "r".into() };
    // The source has a checkpoint of the held size: the driver compares it.
    let mut s = session(300, 300, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(0), checkpoint());
    drain_events(&mut s);
    s.checkpoint_accepted(now, AcceptVerdict::Inconsistent(why.clone()));
    let t = drain_transmits(&mut s);
    assert!(matches!(t[..], [(RequestId(1), Request::CheckpointAt { size: TreeSize(300), .. })]));
    assert_eq!(s.poll_timeout(), Some(now + TIMEOUT), "the probe has a deadline");
    s.handle_response(
        now,
        RequestId(1),
        Response::Checkpoint { note: "old".into(), consistency: Vec::new() },
    );
    assert_eq!(drain_events(&mut s), [Event::CheckFork { note: "old".into() }]);
    let fork = SessionError::Misbehaved(PeerMisbehaved::Fork("two roots".into()));
    s.fork_checked(now, Err(fork.clone()));
    assert_eq!(drain_events(&mut s), [Event::Failed(fork)]);

    // The same checkpoint at the held size: the session asks for the source's root there and a
    // proof to the refused checkpoint; when that proves nothing, the bad proof is the violation.
    let mut s = session(300, 300, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(0), checkpoint());
    drain_events(&mut s);
    s.checkpoint_accepted(now, AcceptVerdict::Inconsistent(why.clone()));
    drain_transmits(&mut s);
    let same = Response::Checkpoint { note: "same".into(), consistency: Vec::new() };
    s.handle_response(now, RequestId(1), same);
    drain_events(&mut s);
    s.fork_checked(now, Ok(()));
    let t = drain_transmits(&mut s);
    assert!(
        matches!(
            t[..],
            [(RequestId(2), Request::Consistency { old: TreeSize(300), new: TreeSize(400), .. })]
        ),
        "{t:?}"
    );
    let root = onoal_engine::Hash([9; 32]);
    s.handle_response(
        now,
        RequestId(2),
        Response::Consistency { old_root: root, proof: vec![root] },
    );
    assert_eq!(drain_events(&mut s), [Event::CheckForkProof { old_root: root, proof: vec![root] }]);
    s.fork_proof_checked(now, Ok(()));
    assert_eq!(drain_events(&mut s), [Event::Failed(SessionError::Misbehaved(why.clone()))]);

    // No checkpoint of the held size: straight to the proof probe; a refusal of it proves
    // nothing either, and the bad proof is the violation.
    let mut s = session(300, 300, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(0), checkpoint());
    drain_events(&mut s);
    s.checkpoint_accepted(now, AcceptVerdict::Inconsistent(why.clone()));
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(1), Response::NoCheckpoint);
    assert!(matches!(drain_transmits(&mut s)[..], [(RequestId(2), Request::Consistency { .. })]));
    let refusal = Response::Error { code: ErrorCode::BadRequest, message: "old server".into() };
    s.handle_response(now, RequestId(2), refusal);
    assert_eq!(drain_events(&mut s), [Event::Failed(SessionError::Misbehaved(why.clone()))]);

    // A proven fork ends the session with it.
    let mut s = session(300, 300, SessionMode::Entries, 4, now);
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(0), checkpoint());
    drain_events(&mut s);
    s.checkpoint_accepted(now, AcceptVerdict::Inconsistent(why));
    drain_transmits(&mut s);
    s.handle_response(now, RequestId(1), Response::NoCheckpoint);
    s.handle_response(
        now,
        RequestId(2),
        Response::Consistency { old_root: root, proof: Vec::new() },
    );
    drain_events(&mut s);
    let fork = SessionError::Local("fork".into());
    s.fork_proof_checked(now, Err(fork.clone()));
    assert_eq!(drain_events(&mut s), [Event::Failed(fork)]);
}

#[test]
fn bundles_past_the_byte_cap_are_asked_again_narrower_and_commit_in_order() {
    let now = Instant::now();
    let mut s = session(0, 0, SessionMode::Entries, 4, now);
    s.set_bundle_bytes(1000);
    accept(&mut s, now, 600);
    let t = drain_transmits(&mut s);
    assert_eq!(t.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [0, 256, 512]);
    // 3 entries made 1,200 bytes: 400 a piece, so 2 fit in 1,000 bytes.
    s.handle_bundle(now, t[0].0, Err(SessionError::TooLarge { entries: 3, bytes: 1200 }));
    assert!(drain_events(&mut s).is_empty(), "not a failure");
    let t2 = drain_transmits(&mut s);
    let ranges: Vec<(u64, u32)> = t2
        .iter()
        .map(|(_, r)| match r {
            Request::Range { first, width, .. } => (first.0, *width),
            other => panic!("expected a range, got {other:?}"),
        })
        .collect();
    assert_eq!(ranges, [(0, 2), (2, 2)]);
    // The wide bundles still in flight commit in order after the narrow ones.
    s.handle_bundle(now, t[2].0, Ok(512));
    s.handle_bundle(now, t[1].0, Ok(256));
    s.handle_bundle(now, t2[1].0, Ok(2));
    assert!(drain_events(&mut s).is_empty(), "bundle 0 is not in yet");
    s.handle_bundle(now, t2[0].0, Ok(0));
    assert_eq!(drain_events(&mut s), [Event::Commit(vec![0, 2])]);
    assert_eq!(s.next_commit(), Some(4));
}

#[test]
fn a_deferred_bundle_is_asked_again_once_a_commit_frees_the_budget() {
    let now = Instant::now();
    let mut s = session(0, 0, SessionMode::Entries, 4, now);
    accept(&mut s, now, 1280);
    let t = drain_transmits(&mut s);
    assert_eq!(t.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [0, 256, 512, 768]);
    // The driver had no memory for bundle 512: not a failure, and nothing more is asked while
    // the other three hold the budget.
    s.handle_bundle(now, t[2].0, Err(SessionError::Deferred));
    assert!(drain_events(&mut s).is_empty(), "not a failure");
    assert!(drain_transmits(&mut s).is_empty(), "the window shrank to what is in flight");
    s.handle_bundle(now, t[0].0, Ok(0));
    assert_eq!(drain_events(&mut s), [Event::Commit(vec![0])]);
    assert!(drain_transmits(&mut s).is_empty(), "bundle 0 still holds its bytes");
    // Its commit frees them and the window grows back by one: the deferred bundle is asked
    // again before any later one.
    s.committed(now, 1, Ok(TreeSize(256)));
    let again = drain_transmits(&mut s);
    assert_eq!(again.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [512, 1024]);
    s.handle_bundle(now, t[1].0, Ok(256));
    s.handle_bundle(now, again[0].0, Ok(512));
    s.handle_bundle(now, t[3].0, Ok(768));
    assert_eq!(
        drain_events(&mut s),
        [Event::Commit(vec![256]), Event::Commit(vec![512]), Event::Commit(vec![768])]
    );
}

#[test]
fn a_deferred_bundle_that_is_next_in_line_is_asked_again_at_once() {
    let now = Instant::now();
    let mut s = session(0, 0, SessionMode::Entries, 4, now);
    accept(&mut s, now, 1024);
    let t = drain_transmits(&mut s);
    assert_eq!(t.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [0, 256, 512, 768]);
    // The later three arrive; bundle 0 was deferred by the driver (it waited for budget while
    // a bundle of an earlier window was still next). Nothing is in flight or committing, and
    // everything waits for bundle 0: it must be asked again now, or the sync waits forever
    // with no timer armed.
    s.handle_bundle(now, t[1].0, Ok(256));
    s.handle_bundle(now, t[2].0, Ok(512));
    s.handle_bundle(now, t[3].0, Ok(768));
    s.handle_bundle(now, t[0].0, Err(SessionError::Deferred));
    assert!(drain_events(&mut s).is_empty(), "not a failure");
    let again = drain_transmits(&mut s);
    assert_eq!(again.iter().map(|(_, r)| bundle_first(r)).collect::<Vec<_>>(), [0]);
    assert!(s.poll_timeout().is_some(), "its request has a deadline");
    s.handle_bundle(now, again[0].0, Ok(0));
    assert_eq!(drain_events(&mut s), [Event::Commit(vec![0, 256, 512, 768])]);
}

#[test]
fn filtered_sessions_page_until_the_cursor_runs_out() {
    use onoal_engine::{Entry, Hash, Name, NewEntry};
    let entry = |seq: u64| ProvenEntryWire {
        leaf_data: Entry {
            seq,
            timestamp_ms: 1,
            content: NewEntry::new(
                Name::stream("a").unwrap(),
                Name::entry_type("t").unwrap(),
                b"x".to_vec(),
            ),
            prev_hash: Hash::ZERO,
        }
        .leaf_data(),
        proof: Vec::new(),
    };
    let now = Instant::now();
    let filter = Filter { stream: Some("a".into()), ..Filter::default() };
    let mut s = session(0, 0, SessionMode::Filtered(filter), 4, now);
    accept(&mut s, now, 100);
    let t = drain_transmits(&mut s);
    assert!(matches!(
        t[..],
        [(RequestId(1), Request::Entries { cursor: LogIndex(0), size: TreeSize(100), .. })]
    ));
    s.handle_response(
        now,
        RequestId(1),
        Response::Entries { entries: vec![entry(3), entry(7)], next_cursor: Some(LogIndex(8)) },
    );
    assert!(
        matches!(&drain_events(&mut s)[..], [Event::CommitPage { entries }] if entries.len() == 2)
    );
    assert!(drain_transmits(&mut s).is_empty(), "one page at a time");
    s.page_committed(now, Ok(()));
    let t = drain_transmits(&mut s);
    assert!(matches!(t[..], [(RequestId(2), Request::Entries { cursor: LogIndex(8), .. })]));
    s.handle_response(
        now,
        RequestId(2),
        Response::Entries { entries: vec![entry(9)], next_cursor: None },
    );
    drain_events(&mut s);
    s.page_committed(now, Ok(()));
    assert_eq!(drain_events(&mut s), [Event::Done]);

    // An entry before the cursor is a violation; nothing is handed out for commit.
    let filter = Filter { stream: Some("a".into()), ..Filter::default() };
    let mut s = session(0, 0, SessionMode::Filtered(filter), 4, now);
    accept(&mut s, now, 100);
    drain_transmits(&mut s);
    s.handle_response(
        now,
        RequestId(1),
        Response::Entries { entries: vec![entry(200)], next_cursor: None },
    );
    assert_eq!(
        drain_events(&mut s),
        [Event::Failed(SessionError::Misbehaved(PeerMisbehaved::EntryOutsideFilter))]
    );
}
