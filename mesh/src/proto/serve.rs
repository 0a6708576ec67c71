//! The server's decisions, without network I/O. [`ServeCore::handle_request`] authorises a
//! request by the visibility policy of the ledger it reads (`Hello` and the server's own
//! certificate are for anyone; everything else asks the [`Access`] what the client may read:
//! every stream for a full sync, one stream for a filtered sync of it, at least one stream for
//! checkpoints and proofs of sizes) and either answers at once or returns a [`Plan`]: which
//! engine reads answer it. [`execute`] runs a plan over the ledger's reads (blocking: RocksDB)
//! and builds the response, with a bundle's entry frames; [`wait_check`] says when a long poll
//! can be answered. What a node serves, its own log or a replica, is decided here and nowhere
//! else.

use std::time::Duration;

use onoal_engine::replica::{BUNDLE_ENTRIES, range_len, range_path_from_inclusion};
use onoal_engine::{Durable, Filter, Identity, Ledger, LedgerId, Log, Query};

use super::cert::LedgerCertificate;
use super::frame::encode_frame;
use super::message::{ErrorCode, ProvenEntryWire, Request, Response};
use super::{MAX_PAGE_BYTES, MAX_PAGE_ENTRIES, MAX_WAIT_MS, handshake};
use crate::id::PeerId;
use crate::peer::PeerStore;
use crate::trust::store::TrustStore;
use crate::trust::visibility::{Refused, Scope};

/// What the client may read: `Ok` when the policy of `ledger` admits it for `scope`.
pub type Access<'a> = &'a dyn Fn(&LedgerId, Scope<'_>) -> Result<(), Refused>;

/// How to answer a request.
#[derive(Debug)]
pub enum Decision {
    /// Answer with this at once.
    Respond(Response),
    /// Answer with what [`execute`] makes of this plan.
    Execute(Plan),
    /// A long poll: when [`wait_check`] says ready (the driver subscribes to the log's durable
    /// changes), or after `wait`, answer with what [`execute`] makes of the plan.
    Wait {
        /// The answer's plan.
        plan: Plan,
        /// Size of the client's newest checkpoint.
        have: u64,
        /// Longest wait.
        wait: Duration,
    },
    /// A witness request: the driver's witness decides ([`crate::witness::decide`]).
    Witness(crate::witness::AddCheckpoint),
    /// Split-view evidence from a peer: the driver checks and keeps it.
    Evidence(Vec<u8>),
}

/// Engine reads that answer a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The certificate of a replicated ledger, as the peer table holds it.
    Certificate {
        /// Whose.
        ledger: LedgerId,
    },
    /// The newest servable checkpoint, with a consistency proof from `have`.
    Checkpoint {
        /// Whose.
        ledger: LedgerId,
        /// The client's newest checkpoint size.
        have: u64,
    },
    /// The stored checkpoint of exactly `size`.
    CheckpointAt {
        /// Whose.
        ledger: LedgerId,
        /// Tree size.
        size: u64,
    },
    /// A bundle: its path and `count` entry frames.
    Bundle {
        /// Whose.
        ledger: LedgerId,
        /// Tree size.
        size: u64,
        /// First seq.
        first: u64,
        /// Width (256: a whole tile).
        width: u64,
        /// Entries.
        count: u64,
    },
    /// The tree's root at `old` and a consistency proof to `new`.
    Consistency {
        /// Whose.
        ledger: LedgerId,
        /// Old size.
        old: u64,
        /// New size.
        new: u64,
    },
    /// The newest visibility policy of a ledger and the statements it signed.
    Trust {
        /// Whose.
        ledger: LedgerId,
    },
    /// A page of a filtered sync.
    Entries {
        /// Whose.
        ledger: LedgerId,
        /// Tree size the proofs are for.
        size: u64,
        /// Which entries.
        filter: Filter,
        /// First seq to consider.
        cursor: u64,
        /// Most entries.
        limit: u32,
    },
}

impl Plan {
    /// The ledger the plan reads.
    pub fn ledger(&self) -> LedgerId {
        match self {
            Self::Certificate { ledger }
            | Self::Checkpoint { ledger, .. }
            | Self::CheckpointAt { ledger, .. }
            | Self::Bundle { ledger, .. }
            | Self::Consistency { ledger, .. }
            | Self::Trust { ledger }
            | Self::Entries { ledger, .. } => *ledger,
        }
    }
}

/// What a server sends for one request.
#[derive(Debug)]
pub enum Answer {
    /// One response frame.
    Response(Response),
    /// A bundle: its header frame, then its entries' frames, read from storage a chunk at a
    /// time as the stream accepts them (a bundle is never built whole in memory).
    Bundle {
        /// `Response::Bundle { count, path }`.
        header: Response,
        /// The entries still to send.
        entries: BundleEntries,
    },
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Self::Response(response)
    }
}

impl Answer {
    /// The response frame (the header, for a bundle).
    pub fn response(&self) -> &Response {
        match self {
            Self::Response(r) | Self::Bundle { header: r, .. } => r,
        }
    }
}

/// The entries of a bundle being sent.
#[derive(Debug)]
pub struct BundleEntries {
    log: Log,
    next: u64,
    end: u64,
}

impl BundleEntries {
    /// Entries still to send.
    pub fn remaining(&self) -> u64 {
        self.end - self.next
    }

    /// The next entries' frames, about `max_bytes` of them (at least one entry); `None` when
    /// all were sent. Blocking (a storage read).
    ///
    /// # Errors
    /// An entry is missing (the log is damaged).
    pub fn next_chunk(&mut self, max_bytes: usize) -> Result<Option<Vec<u8>>, String> {
        if self.next >= self.end {
            return Ok(None);
        }
        let mut out = Vec::new();
        let n = self
            .log
            .visit_leaf_data_while(self.next, self.end, |leaf| {
                encode_frame(leaf, &mut out);
                out.len() < max_bytes
            })
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("entry {} is not held here", self.next));
        }
        self.next += n;
        Ok(Some(out))
    }
}

fn bundle_plan(ledger: LedgerId, size: u64, first: u64, width: u64) -> Decision {
    match range_len(first, width, size) {
        None => Decision::Respond(refuse(
            ErrorCode::BadRequest,
            format!("{first} is not the start of a bundle of width {width} below {size}"),
        )),
        Some(count) => Decision::Execute(Plan::Bundle { ledger, size, first, width, count }),
    }
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error { code, message: message.into() }
}

/// The server's policy and identity.
#[derive(Clone, Debug)]
pub struct ServeCore {
    certificate: LedgerCertificate,
}

impl ServeCore {
    /// A server presenting `certificate` (its own).
    pub fn new(certificate: LedgerCertificate) -> Self {
        Self { certificate }
    }

    /// The server's own certificate.
    pub fn certificate(&self) -> &LedgerCertificate {
        &self.certificate
    }

    /// Decides how to answer `request` from `client`; `pinned` says whether the operator pinned
    /// the client's key, `access` what the client may read. Also returns the client's
    /// certificate to record when a pinned client sent a valid one in `Hello`.
    pub fn handle_request(
        &self,
        client: &PeerId,
        pinned: bool,
        access: Access<'_>,
        request: Request,
        now_ms: u64,
    ) -> (Decision, Option<(LedgerCertificate, Identity)>) {
        if let Request::Hello { .. } = &request {
            let learned =
                handshake::client_certificate(&request, client, now_ms).filter(|_| pinned);
            let hello = Response::Hello { certificate: self.certificate.clone() };
            return (Decision::Respond(hello), learned);
        }
        if let Some((ledger, scope)) = self.scope_of(&request)
            && let Err(refused) = access(&ledger, scope)
        {
            let hint = if pinned {
                String::new()
            } else {
                format!(
                    "; this node does not know your key (pinned peers start at trust 0.5): its operator can run onoal peer add YOUR_LEDGER_ID@HOST:PORT --key {client}"
                )
            };
            let message = format!("{refused}{hint}");
            return (Decision::Respond(refuse(ErrorCode::NotVisible, message)), None);
        }
        let decision = match request {
            Request::Hello { .. } => {
                Decision::Respond(Response::Hello { certificate: self.certificate.clone() })
            }
            Request::Certificate { ledger } if ledger == self.certificate.ledger_id => {
                Decision::Respond(Response::Certificate { certificate: self.certificate.clone() })
            }
            Request::Certificate { ledger } => Decision::Execute(Plan::Certificate { ledger }),
            Request::Checkpoint { ledger, have } => {
                Decision::Execute(Plan::Checkpoint { ledger, have: have.0 })
            }
            Request::WaitCheckpoint { ledger, have, wait_ms } => Decision::Wait {
                plan: Plan::Checkpoint { ledger, have: have.0 },
                have: have.0,
                wait: Duration::from_millis(u64::from(wait_ms.min(MAX_WAIT_MS))),
            },
            Request::CheckpointAt { ledger, size } => {
                Decision::Execute(Plan::CheckpointAt { ledger, size: size.0 })
            }
            Request::Bundle { ledger, size, first } => {
                bundle_plan(ledger, size.0, first.0, BUNDLE_ENTRIES)
            }
            Request::Range { ledger, size, first, width } => {
                bundle_plan(ledger, size.0, first.0, u64::from(width))
            }
            Request::Consistency { old, new, .. } if old.0 == 0 || old.0 > new.0 => {
                Decision::Respond(refuse(
                    ErrorCode::BadRequest,
                    format!(
                        "no consistency proof from {old} to {new}: sizes must satisfy 0 < old <= new"
                    ),
                ))
            }
            Request::Consistency { ledger, old, new } => {
                Decision::Execute(Plan::Consistency { ledger, old: old.0, new: new.0 })
            }
            Request::Trust { ledger } => Decision::Execute(Plan::Trust { ledger }),
            Request::Evidence { evidence } => Decision::Evidence(evidence),
            Request::AddCheckpoint { old, old_root, proof, note } => {
                Decision::Witness(crate::witness::AddCheckpoint {
                    old: old.0,
                    proof,
                    old_root,
                    note,
                })
            }
            Request::Entries { ledger, size, filter, cursor, limit } => {
                Decision::Execute(Plan::Entries {
                    ledger,
                    size: size.0,
                    filter,
                    cursor: cursor.0,
                    limit: limit.clamp(1, MAX_PAGE_ENTRIES),
                })
            }
        };
        (decision, None)
    }

    /// The ledger a request reads and how much of it; `None` for what anyone may have (the
    /// server's own certificate).
    fn scope_of<'r>(&self, request: &'r Request) -> Option<(LedgerId, Scope<'r>)> {
        match request {
            // A witness checks the note's signature itself; anyone may ask (C2SP).
            Request::Hello { .. } | Request::AddCheckpoint { .. } | Request::Evidence { .. } => {
                None
            }
            Request::Certificate { ledger } if *ledger == self.certificate.ledger_id => None,
            Request::Certificate { ledger }
            | Request::Checkpoint { ledger, .. }
            | Request::WaitCheckpoint { ledger, .. }
            | Request::CheckpointAt { ledger, .. }
            | Request::Consistency { ledger, .. }
            | Request::Trust { ledger } => Some((*ledger, Scope::Any)),
            Request::Bundle { ledger, .. } | Request::Range { ledger, .. } => {
                Some((*ledger, Scope::Log))
            }
            Request::Entries { ledger, filter, .. } => match &filter.stream {
                Some(s) => Some((*ledger, Scope::Stream(s))),
                None => Some((*ledger, Scope::Log)),
            },
        }
    }
}

/// Whether a long poll for a checkpoint larger than `have` can be answered after `durable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitCheck {
    /// A newer checkpoint is servable.
    Ready,
    /// Not yet.
    NotYet,
    /// The writer did not say which checkpoint is servable: read it.
    Read,
}

/// See [`WaitCheck`].
pub fn wait_check(durable: Durable, have: u64) -> WaitCheck {
    match durable.checkpoint_size {
        Some(c) if c > have && c <= durable.size => WaitCheck::Ready,
        Some(c) if c <= durable.size => WaitCheck::NotYet,
        _ => WaitCheck::Read,
    }
}

/// True when `log` can serve a checkpoint larger than `have` (a storage read).
pub fn newer_checkpoint(log: &Log, have: u64) -> bool {
    log.latest_checkpoint_at_most(log.durable_size()).ok().flatten().is_some_and(|c| c.size > have)
}

/// Runs `plan` over the ledger's reads (blocking). Never fails: errors become refusals.
pub fn execute(ledger: &Ledger, peers: &PeerStore, trust: &TrustStore, plan: Plan) -> Answer {
    execute_capped(ledger, peers, trust, plan, None)
}

/// [`execute`], serving checkpoints of at most `published` leaves (a log whose witnesses must
/// cosign first: only checkpoints carrying the quorum are served).
pub fn execute_capped(
    ledger: &Ledger,
    peers: &PeerStore,
    trust: &TrustStore,
    plan: Plan,
    published: Option<u64>,
) -> Answer {
    let internal = |e: String| Answer::from(refuse(ErrorCode::Internal, e));
    let with_log = |id: LedgerId, f: &dyn Fn(&Log) -> Answer| match ledger.log_of(&id) {
        Some(log) => f(&log),
        None => refuse(ErrorCode::UnknownLedger, format!("no ledger {id} here")).into(),
    };
    match plan {
        Plan::Certificate { ledger: id } => match peers.get(&id) {
            Ok(Some(r)) => match r.certificate {
                Some(certificate) => Response::Certificate { certificate }.into(),
                None => {
                    refuse(ErrorCode::UnknownLedger, format!("no certificate of {id} here")).into()
                }
            },
            _ => refuse(ErrorCode::UnknownLedger, format!("no ledger {id} here")).into(),
        },
        Plan::Trust { ledger: id } => trust_response(trust, id).into(),
        Plan::Checkpoint { ledger: id, have } => with_log(id, &|log| {
            checkpoint_response(log, have, published).map_or_else(internal, Answer::from)
        }),
        Plan::CheckpointAt { ledger: id, size } => {
            with_log(id, &|log| match log.checkpoint_at(size) {
                Ok(Some(cp)) => {
                    Response::Checkpoint { note: cp.note, consistency: Vec::new() }.into()
                }
                Ok(None) => Response::NoCheckpoint.into(),
                Err(e) => internal(e.to_string()),
            })
        }
        Plan::Consistency { ledger: id, old, new } => with_log(id, &|log| {
            let answer = log.root_at(old).and_then(|old_root| {
                log.consistency_proof(old, new)
                    .map(|proof| Response::Consistency { old_root, proof })
            });
            answer
                .map_or_else(|e| refuse(ErrorCode::BadRequest, e.to_string()).into(), Answer::from)
        }),
        Plan::Entries { ledger: id, size, filter, cursor, limit } => with_log(id, &|log| {
            if size > log.durable_size() || log.is_sparse() {
                return refuse(
                    ErrorCode::BadRequest,
                    format!("no provable tree of size {size} here"),
                )
                .into();
            }
            entries_page(log, size, filter.clone(), cursor, limit)
                .map_or_else(internal, Answer::from)
        }),
        Plan::Bundle { ledger: id, size, first, width, count } => with_log(id, &|log| {
            bundle(log, size, first, width, count)
                .unwrap_or_else(|e| refuse(ErrorCode::BadRequest, e).into())
        }),
    }
}

/// The policy of `id` and its statements: this node's own, signed now, or those held.
fn trust_response(trust: &TrustStore, id: LedgerId) -> Response {
    let now = onoal_engine::time::now_ms();
    let (policy, statements) = if id == trust.me() {
        (trust.has_policy(&id).then(|| trust.policy(&id)), trust.own_statements(now))
    } else {
        (trust.has_policy(&id).then(|| trust.policy(&id)), trust.statements_of(&id))
    };
    Response::Trust {
        policy: policy.map(|p| postcard::to_stdvec(&p).unwrap_or_default()).unwrap_or_default(),
        statements: postcard::to_stdvec(&statements).unwrap_or_default(),
    }
}

/// The bundle's header (its path) and its entries to stream.
fn bundle(log: &Log, size: u64, first: u64, width: u64, count: u64) -> Result<Answer, String> {
    let proof = log.inclusion_proof(first, size).map_err(|e| e.to_string())?;
    let path = range_path_from_inclusion(first, width, size, &proof).map_err(|e| e.to_string())?;
    let held = log.durable_size().saturating_sub(first).min(count);
    if held != count {
        return Err(format!("only {held} of the bundle's {count} entries are held here"));
    }
    let count = u32::try_from(count).expect("a bundle holds at most 256 entries");
    Ok(Answer::Bundle {
        header: Response::Bundle { count, path },
        entries: BundleEntries { log: log.clone(), next: first, end: first + u64::from(count) },
    })
}

fn entries_page(
    log: &Log,
    size: u64,
    filter: Filter,
    cursor: u64,
    limit: u32,
) -> Result<Response, String> {
    // The byte cap applies while the page is read from storage, not after.
    let query = Query {
        max_bytes: Some(MAX_PAGE_BYTES),
        ..Query::from_seq(filter, cursor, limit as usize)
    };
    let page = log.query(&query).map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    let mut next_cursor = page.next_cursor.and_then(|c| c.parse::<u64>().ok());
    for e in page.entries {
        let seq = e.entry.seq;
        if seq >= size {
            next_cursor = None;
            break;
        }
        let proof = log.inclusion_proof(seq, size).map_err(|e| e.to_string())?;
        entries.push(ProvenEntryWire { leaf_data: e.leaf_data, proof });
    }
    Ok(Response::Entries { entries, next_cursor: next_cursor.map(onoal_engine::LogIndex) })
}

fn checkpoint_response(log: &Log, have: u64, published: Option<u64>) -> Result<Response, String> {
    // The durable size, not the head: proofs are served up to it, and a checkpoint written with
    // the group being acknowledged right now may not be provable for a moment.
    let served = log.durable_size().min(published.unwrap_or(u64::MAX));
    let Some(cp) = log.latest_checkpoint_at_most(served).map_err(|e| e.to_string())? else {
        return Ok(Response::NoCheckpoint);
    };
    let consistency = if have == 0 || have >= cp.size {
        Vec::new()
    } else {
        log.consistency_proof(have, cp.size).map_err(|e| e.to_string())?
    };
    Ok(Response::Checkpoint { note: cp.note, consistency })
}
