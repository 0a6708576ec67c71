//! The filtered phase of a [`SyncSession`]: after the checkpoint, pages of the entries that
//! match the filter, each entry with its inclusion proof. One page at a time: the session checks
//! that every entry matches the filter, lies at or after the cursor and below the checkpoint's
//! size, in increasing seq order, and that the next cursor advances; the driver then commits the
//! page (checking each proof against the accepted checkpoint) into a sparse replica.
//!
//! A filtered sync proves that what arrived is in the log; it cannot prove that nothing
//! matching was withheld (that needs the whole tree: a full sync).

use std::time::Instant;

use onoal_engine::{Entry, Filter, LogIndex, TreeSize};

use super::error::SessionError;
use super::session::{Event, Purpose, SessionMode, State, SyncSession};
use crate::proto::MAX_PAGE_ENTRIES;
use crate::proto::message::{ProvenEntryWire, Request, Response};
use crate::proto::misbehaved::PeerMisbehaved;

/// Checks a page against the filter, the cursor and the tree: every entry decodes, matches,
/// lies in `[cursor, size)`, in increasing seq order, and `next` (if any) lies beyond the last
/// entry and the cursor. Returns the last seq of the page.
///
/// # Errors
/// [`PeerMisbehaved::EntryOutsideFilter`] or [`PeerMisbehaved::CursorStalled`].
pub fn check_page(
    filter: &Filter,
    cursor: u64,
    size: u64,
    entries: &[ProvenEntryWire],
    next: Option<u64>,
) -> Result<Option<u64>, PeerMisbehaved> {
    let mut last: Option<u64> = None;
    for e in entries {
        let ok = Entry::decode(&e.leaf_data).ok().filter(|d| {
            filter.matches(d) && d.seq >= cursor && d.seq < size && last.is_none_or(|l| d.seq > l)
        });
        let Some(d) = ok else { return Err(PeerMisbehaved::EntryOutsideFilter) };
        last = Some(d.seq);
    }
    match next {
        Some(n) if !(last.is_none_or(|l| n > l) && n > cursor) => {
            Err(PeerMisbehaved::CursorStalled)
        }
        _ => Ok(last),
    }
}

impl<B> SyncSession<B> {
    pub(super) fn request_page(&mut self, now: Instant) {
        let SessionMode::Filtered(filter) = &self.mode else { return };
        let State::Pages { size, cursor, waiting, .. } = &mut self.state else { return };
        *waiting = true;
        let request = Request::Entries {
            ledger: self.ledger,
            size: TreeSize(*size),
            filter: filter.clone(),
            cursor: LogIndex(*cursor),
            limit: MAX_PAGE_ENTRIES,
        };
        self.send(request, Purpose::Page, now);
    }

    /// An answer to a page request (state `Pages`).
    pub(super) fn handle_page(&mut self, _now: Instant, response: Response) {
        let Response::Entries { entries, next_cursor } = response else {
            return self.fail(SessionError::Misbehaved(PeerMisbehaved::UnexpectedResponse {
                request: "Entries",
                response: response.kind(),
            }));
        };
        let SessionMode::Filtered(filter) = &self.mode else { return };
        let State::Pages { size, cursor, .. } = self.state else { return };
        let next = next_cursor.map(|c| c.0);
        if let Err(v) = check_page(filter, cursor, size, &entries, next) {
            return self.fail(SessionError::Misbehaved(v));
        }
        if let State::Pages { next: n, .. } = &mut self.state {
            *n = next;
        }
        self.events.push_back(Event::CommitPage { entries });
    }

    /// The driver committed the page of the last [`Event::CommitPage`], or could not.
    pub fn page_committed(&mut self, now: Instant, result: Result<(), SessionError>) {
        if let Err(e) = result {
            return self.fail(e);
        }
        let State::Pages { cursor, next, waiting, .. } = &mut self.state else { return };
        *waiting = false;
        match next.take() {
            None => self.finish(Event::Done),
            Some(n) => {
                *cursor = n;
                self.request_page(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_must_match_advance_and_stay_in_the_tree() {
        use onoal_engine::{Hash, Name, NewEntry};
        let entry = |seq: u64, stream: &str| ProvenEntryWire {
            leaf_data: Entry {
                seq,
                timestamp_ms: 10,
                content: NewEntry::new(
                    Name::stream(stream).unwrap(),
                    Name::entry_type("t").unwrap(),
                    b"x".to_vec(),
                ),
                prev_hash: Hash::ZERO,
            }
            .leaf_data(),
            proof: Vec::new(),
        };
        let f = Filter { stream: Some("a".into()), ..Filter::default() };
        assert_eq!(check_page(&f, 0, 100, &[entry(3, "a"), entry(9, "a")], Some(10)), Ok(Some(9)));
        assert_eq!(check_page(&f, 0, 100, &[], None), Ok(None));
        for (page, next) in [
            (vec![entry(3, "b")], None),
            (vec![entry(9, "a"), entry(3, "a")], None),
            (vec![entry(100, "a")], None),
        ] {
            assert_eq!(
                check_page(&f, 0, 100, &page, next),
                Err(PeerMisbehaved::EntryOutsideFilter)
            );
        }
        assert_eq!(
            check_page(&f, 5, 100, &[entry(3, "a")], None),
            Err(PeerMisbehaved::EntryOutsideFilter)
        );
        assert_eq!(
            check_page(&f, 0, 100, &[entry(9, "a")], Some(9)),
            Err(PeerMisbehaved::CursorStalled)
        );
        assert_eq!(check_page(&f, 5, 100, &[], Some(5)), Err(PeerMisbehaved::CursorStalled));
    }
}
