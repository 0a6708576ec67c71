//! Queries: one [`Filter`] (used by `query`, by filtered syncs on the wire, and by the CLI),
//! pages with an opaque cursor, and the planner that walks the most selective index.
//!
//! No time index: timestamps never decrease with seq, so `since`/`until` become a seq range by
//! binary search. A query walks the most selective index given (subject > issuer > stream >
//! type) and checks the other filters on each entry.

use serde::{Deserialize, Serialize};

use super::view::{StoredEntry, View};
use crate::error::ReadError;
use crate::record::Entry;
use crate::store::keys::IndexKind;
use crate::store::scan;

/// Default page size of a query.
pub const DEFAULT_QUERY_LIMIT: usize = 100;
/// Largest page size of a query.
pub const MAX_QUERY_LIMIT: usize = 10_000;
/// Default byte bound of a page: a page stops (with a cursor) once its entries' leaf data
/// reach it, so a page of large entries cannot take unbounded memory.
pub const DEFAULT_QUERY_BYTES: usize = 64 << 20;

/// Which entries: all given fields must match. On the wire (a filtered sync) it is postcard of
/// these six fields in this order (docs/protocol.md).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Stream name.
    pub stream: Option<String>,
    /// Entry type.
    pub entry_type: Option<String>,
    /// Subject OID.
    pub subject: Option<String>,
    /// Issuer OID.
    pub issuer: Option<String>,
    /// Earliest timestamp (inclusive, ms).
    pub since_ms: Option<u64>,
    /// Latest timestamp (inclusive, ms).
    pub until_ms: Option<u64>,
}

impl Filter {
    /// True when no field is set (everything matches).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks that every field could match something: names and OIDs are valid (a stream
    /// `ORDERS` or a subject `customer42` can never match, which would read as "no entries")
    /// and the time window is not empty.
    ///
    /// # Errors
    /// The first field that cannot match, with what a valid one looks like.
    pub fn validate(&self) -> Result<(), crate::record::InvalidInput> {
        use crate::record::{InvalidInput, Name, Oid};
        if let Some(s) = &self.stream {
            Name::stream(s)?;
        }
        if let Some(t) = &self.entry_type {
            Name::entry_type(t)?;
        }
        for o in [&self.subject, &self.issuer].into_iter().flatten() {
            Oid::parse(o)?;
        }
        if let (Some(since_ms), Some(until_ms)) = (self.since_ms, self.until_ms)
            && since_ms > until_ms
        {
            return Err(InvalidInput::TimeWindow { since_ms, until_ms });
        }
        Ok(())
    }

    /// True when `entry` matches every field, the time window included.
    pub fn matches(&self, entry: &Entry) -> bool {
        let c = &entry.content;
        self.stream.as_deref().is_none_or(|s| c.stream.as_str() == s)
            && self.entry_type.as_deref().is_none_or(|t| c.entry_type.as_str() == t)
            && self
                .subject
                .as_deref()
                .is_none_or(|s| c.subject.as_ref().is_some_and(|o| o.as_str() == s))
            && self
                .issuer
                .as_deref()
                .is_none_or(|s| c.issuer.as_ref().is_some_and(|o| o.as_str() == s))
            && self.since_ms.is_none_or(|t| entry.timestamp_ms >= t)
            && self.until_ms.is_none_or(|t| entry.timestamp_ms <= t)
    }

    /// The most selective index this filter can walk: subject > issuer > stream > type.
    fn index(&self) -> Option<(IndexKind, &str)> {
        [
            (IndexKind::Subject, &self.subject),
            (IndexKind::Issuer, &self.issuer),
            (IndexKind::Stream, &self.stream),
            (IndexKind::EntryType, &self.entry_type),
        ]
        .into_iter()
        .find_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    }
}

/// A query: which entries, from where, how many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Which entries.
    pub filter: Filter,
    /// Resume after a previous page (its `next_cursor`).
    pub cursor: Option<String>,
    /// Page size; defaults to 100, at most 10,000.
    pub limit: Option<usize>,
    /// Most leaf-data bytes in a page (the first matching entry is always returned); defaults
    /// to 64 MiB. A page that stops early has a `next_cursor`.
    pub max_bytes: Option<usize>,
}

impl Query {
    /// The first `limit` entries matching `filter`, from seq `from` on.
    pub fn from_seq(filter: Filter, from: u64, limit: usize) -> Self {
        Self { filter, cursor: Some(from.to_string()), limit: Some(limit), max_bytes: None }
    }

    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_QUERY_LIMIT).clamp(1, MAX_QUERY_LIMIT)
    }

    fn start(&self) -> Result<u64, ReadError> {
        match &self.cursor {
            None => Ok(0),
            Some(c) => c.parse::<u64>().map_err(|_| ReadError::BadCursor(c.clone())),
        }
    }
}

/// One page of query results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPage {
    /// Matching entries in seq order.
    pub entries: Vec<StoredEntry>,
    /// Pass as `cursor` to get the next page; `None` when there are no more matches.
    pub next_cursor: Option<String>,
}

/// Collects matches into a page until it is full.
struct Page<'q> {
    filter: &'q Filter,
    limit: usize,
    max_bytes: usize,
    bytes: usize,
    entries: Vec<StoredEntry>,
    next_cursor: Option<String>,
}

impl<'q> Page<'q> {
    fn new(q: &'q Query) -> Self {
        Self {
            filter: &q.filter,
            limit: q.limit(),
            max_bytes: q.max_bytes.unwrap_or(DEFAULT_QUERY_BYTES),
            bytes: 0,
            entries: Vec::new(),
            next_cursor: None,
        }
    }

    /// Offers `e`; returns false once the page is full (the cursor then points at `e`).
    fn offer(&mut self, e: StoredEntry) -> bool {
        if !self.filter.matches(&e.entry) {
            return true;
        }
        let full = self.entries.len() == self.limit
            || (!self.entries.is_empty() && self.bytes + e.leaf_data.len() > self.max_bytes);
        if full {
            self.next_cursor = Some(e.entry.seq.to_string());
            return false;
        }
        self.bytes += e.leaf_data.len();
        self.entries.push(e);
        true
    }

    fn finish(self) -> QueryPage {
        QueryPage { entries: self.entries, next_cursor: self.next_cursor }
    }
}

impl View<'_> {
    /// A page of a full log.
    pub(crate) fn query(&self, q: &Query) -> Result<QueryPage, ReadError> {
        let size = self.head.size;
        let mut lo = q.start()?;
        let mut hi = size;
        if let Some(since) = q.filter.since_ms {
            lo = lo.max(self.first_seq_at_or_after(since, 0, size)?);
        }
        if let Some(until) = q.filter.until_ms {
            hi = match until.checked_add(1) {
                Some(t) => self.first_seq_at_or_after(t, 0, size)?,
                None => size,
            };
        }
        let mut page = Page::new(q);
        if lo >= hi {
            return Ok(page.finish());
        }
        match q.filter.index() {
            None => {
                for seq in lo..hi {
                    if !page.offer(self.entry(seq)?) {
                        break;
                    }
                }
            }
            Some((kind, value)) => {
                let (store, number) = (self.store, self.log.number);
                scan::postings(store, &self.snapshot, number, (kind, value), lo..hi, |seq| {
                    Ok(page.offer(self.entry(seq)?))
                })?;
            }
        }
        Ok(page.finish())
    }

    /// A page of a sparse replica: a scan of the entries it holds (sparse replicas are small).
    pub(crate) fn sparse_query(&self, q: &Query) -> Result<QueryPage, ReadError> {
        let mut page = Page::new(q);
        for e in self.scan(q.start()?, u64::MAX)? {
            if !page.offer(e) {
                break;
            }
        }
        Ok(page.finish())
    }
}
