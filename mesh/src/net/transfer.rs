//! The transfer driver (docs/design/mesh.md, "Transfers"): moves the steps of
//! [`crate::transfer`] between two nodes as routed `reference_check` messages.
//!
//! One exchange: this node sends its steps of a transfer, each with its inclusion proof in a
//! checkpoint of its own; the other node verifies them with this ledger's key (from the
//! asker's certificate), takes its next step if the rules give one, and answers with its own
//! steps, proven the same way; this node verifies those with the other ledger's key and takes
//! its next step. Both sides run a loop over their open transfers (the source until confirmed
//! or unlocked, the destination until credited or released), with backoff, so a restart or a
//! lost message only delays a transfer. The source unlocks at the lock's deadline, or at once
//! when the destination refuses or answers steps that do not hold.
//!
//! The book lock is held across the append of a step, always on a blocking thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::time::now_ms;
use onoal_engine::{Entry, Filter, Identity, Ledger, LedgerId};

use super::routed::{RemoteError, Target};
use super::{Inner, Node};
use crate::proto::envelope::MessageType;
use crate::proto::message::{ErrorCode, ProvenEntryWire};
use crate::proto::routed::{AnswerError, RoutedAnswer, RoutedRequest, verify_query};
use crate::routing::Destination;
use crate::transfer::{
    Balance, Book, Key, NewStep, Phase, Recorded, Refusal, STREAM, Step, load_book,
};

/// Longest wait between two tries of an open transfer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First wait after a try that moved nothing.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How often the loop looks at open transfers when nothing wakes it.
const TICK: Duration = Duration::from_millis(250);

/// The transfer side of a node.
pub(crate) struct TransferDesk {
    pub(super) book: Mutex<Book>,
    pub(super) wake: tokio::sync::Notify,
    retry: Mutex<HashMap<Key, Retry>>,
    in_flight: Mutex<HashSet<Key>>,
}

#[derive(Default)]
struct Retry {
    last_error: Option<String>,
    next: Option<Instant>,
    tries: u32,
}

impl TransferDesk {
    fn note(&self, key: &Key, outcome: &Result<bool, String>) {
        let mut retry = self.retry.lock();
        let r = retry.entry(key.clone()).or_default();
        match outcome {
            Ok(true) => {
                r.tries = 0;
                r.next = None;
            }
            Ok(false) | Err(_) => {
                let wait = FIRST_BACKOFF.saturating_mul(1 << r.tries.min(8)).min(MAX_BACKOFF);
                r.tries = r.tries.saturating_add(1);
                r.next = Some(Instant::now() + wait);
            }
        }
        if let Err(e) = outcome {
            r.last_error = Some(e.clone());
        }
    }

    fn due(&self, key: &Key, now: Instant) -> bool {
        self.retry.lock().get(key).and_then(|r| r.next).is_none_or(|t| now >= t)
    }

    fn last_error(&self, key: &Key) -> Option<String> {
        self.retry.lock().get(key).and_then(|r| r.last_error.clone())
    }
}

/// Why a transfer request of the API failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Transfers are not started on this node.
    #[error("this node does not run transfers (it starts them with `onoal serve`)")]
    Disabled,
    /// The request cannot be done (bad id, not enough balance).
    #[error("{0}")]
    Invalid(String),
    /// No such transfer here.
    #[error("no transfer {0} on this ledger: `onoal transfer list` shows them")]
    NotFound(String),
    /// The destination could not be resolved.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Storage failed.
    #[error("{0}")]
    Local(String),
}

/// One step as shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepView {
    /// `lock`, `reserve`, `commit`, `credit`, `confirm`, `unlock` or `release`.
    pub step: String,
    /// The ledger it is on.
    pub ledger: String,
    /// Its seq there.
    pub seq: u64,
    /// Its leaf hash, hex.
    pub leaf_hash: String,
    /// When it was written, ms since the epoch.
    pub time_ms: u64,
    /// The other ledger's step it answers, `LEDGER_ID:SEQ:LEAF_HASH`.
    pub refs: Vec<String>,
    /// Why (unlock, release).
    pub reason: Option<String>,
}

impl StepView {
    fn of(r: &Recorded) -> Self {
        Self {
            step: r.step.as_str().to_owned(),
            ledger: r.ledger.to_string(),
            seq: r.seq,
            leaf_hash: r.leaf_hash.to_hex(),
            time_ms: r.time_ms,
            refs: r.refs.iter().map(ToString::to_string).collect(),
            reason: r.body.reason.clone(),
        }
    }
}

/// The other ledger's side of a transfer, as it answered (verified).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerSide {
    /// The other ledger.
    pub ledger: String,
    /// Its phase; `None` when it has no step of the transfer (or did not answer).
    pub phase: Option<Phase>,
    /// `committed`, `aborted` or `pending` (`None` as `phase`).
    pub outcome: Option<String>,
    /// Its steps, each verified by an inclusion proof in a checkpoint signed by its key.
    pub steps: Vec<StepView>,
    /// Why it could not be asked.
    pub error: Option<String>,
}

/// A transfer as this ledger sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferView {
    /// The transfer's id (the source's to choose).
    pub id: String,
    /// The source ledger.
    pub source: String,
    /// The destination ledger.
    pub destination: String,
    /// The asset.
    pub asset: String,
    /// The amount.
    pub amount: u64,
    /// `source` or `destination`: this ledger's part.
    pub role: String,
    /// This ledger's phase.
    pub phase: Phase,
    /// `committed`, `aborted` or `pending`.
    pub outcome: String,
    /// Whether this ledger has nothing more to do.
    pub done: bool,
    /// When the source unlocks if no reservation came, ms since the epoch.
    pub deadline_ms: Option<u64>,
    /// This ledger's steps, in seq order.
    pub steps: Vec<StepView>,
    /// The last failure of this node's tries (cleared on progress).
    pub last_error: Option<String>,
    /// The other ledger's side, when asked for (`?peer=true`, `transfer status`).
    pub peer: Option<PeerSide>,
}

fn view(desk: &TransferDesk, key: &Key, t: &crate::transfer::Transfer) -> TransferView {
    let body = t.body();
    let mut steps: Vec<&Recorded> = t.steps.values().collect();
    steps.sort_by_key(|r| r.seq);
    let phase = t.phase();
    TransferView {
        id: key.1.clone(),
        source: body.from.to_string(),
        destination: body.to.to_string(),
        asset: body.asset.clone(),
        amount: body.amount,
        role: if t.is_source() { "source" } else { "destination" }.to_owned(),
        phase,
        outcome: phase.outcome().to_owned(),
        done: phase.is_final(),
        deadline_ms: t.get(Step::Lock).and_then(|l| l.body.deadline_ms),
        steps: steps.into_iter().map(StepView::of).collect(),
        last_error: if phase.is_final() { None } else { desk.last_error(key) },
        peer: None,
    }
}

/// Appends a step (durable when this returns) and takes it into the book.
fn take(ledger: &Ledger, book: &mut Book, step: &NewStep) -> Result<(), String> {
    let entry = step.to_entry()?;
    let receipt = ledger.append(entry).map_err(|e| format!("cannot write the step: {e}"))?;
    let stored = ledger.entry(receipt.seq).map_err(|e| e.to_string())?;
    book.apply(&stored.entry, stored.leaf_hash)?;
    tracing::info!(
        transfer = %step.body.transfer,
        step = step.step.as_str(),
        seq = receipt.seq,
        "transfer step written"
    );
    // Tests kill the node right after a step is durable (before anything else happens).
    if std::env::var("ONOAL_TEST_TRANSFER_CRASH")
        .is_ok_and(|v| v == format!("after-{}", step.step.as_str()))
    {
        eprintln!("ONOAL_TEST_TRANSFER_CRASH: aborting after the {}", step.step.as_str());
        std::process::abort();
    }
    Ok(())
}

/// This ledger's steps of `key`, each with its inclusion proof in a checkpoint that holds them
/// all (signed now when the newest one does not), and that checkpoint's note.
fn proven(
    ledger: &Ledger,
    book: &Book,
    key: &Key,
    forge: bool,
) -> Result<(String, Vec<ProvenEntryWire>), String> {
    let seqs: Vec<u64> =
        book.get(key).map(|t| t.steps.values().map(|r| r.seq).collect()).unwrap_or_default();
    let (note, mut out) = proven_seqs(ledger, seqs)?;
    if forge && let Some(last) = out.last_mut() {
        forge_amount(last);
    }
    Ok((note, out))
}

/// The entries at `seqs`, each with its inclusion proof in a checkpoint that holds them all
/// (signed now when the newest one does not), in seq order, and that checkpoint's note.
pub(super) fn proven_seqs(
    ledger: &Ledger,
    mut seqs: Vec<u64>,
) -> Result<(String, Vec<ProvenEntryWire>), String> {
    seqs.sort_unstable();
    let need = seqs.last().map_or(1, |s| s + 1);
    let cp = match ledger.latest_checkpoint().map_err(|e| e.to_string())? {
        Some(c) if c.checkpoint.size >= need => c,
        _ => ledger.checkpoint_now().map_err(|e| e.to_string())?,
    };
    let mut out = Vec::with_capacity(seqs.len());
    for s in seqs {
        let e = ledger.entry(s).map_err(|e| e.to_string())?;
        let proof = ledger.inclusion_proof(s, cp.checkpoint.size).map_err(|e| e.to_string())?;
        out.push(ProvenEntryWire { leaf_data: e.leaf_data, proof });
    }
    Ok((cp.note, out))
}

/// Tests only (`ONOAL_TEST_TRANSFER_FORGE`): the step says one more than was written; its
/// proof no longer holds.
fn forge_amount(w: &mut ProvenEntryWire) {
    let Ok(mut e) = Entry::decode(&w.leaf_data) else { return };
    let Ok(mut body) = serde_json::from_slice::<crate::transfer::StepBody>(&e.content.payload)
    else {
        return;
    };
    body.amount += 1;
    e.content.payload = serde_json::to_vec(&body).unwrap_or_default();
    w.leaf_data = e.leaf_data();
}

/// Tests only: `ONOAL_TEST_TRANSFER_FORGE=steps` makes this node send forged steps, in its
/// answers and in its own requests alike.
fn forging() -> bool {
    std::env::var("ONOAL_TEST_TRANSFER_FORGE").is_ok_and(|v| v == "steps")
}

/// Checks another ledger's steps: its note with `verifier`, every inclusion proof, and that
/// each entry is a transfer step.
fn verified_steps(
    verifier: &NoteVerifier,
    ledger: LedgerId,
    answer: RoutedAnswer,
) -> Result<(Vec<Recorded>, Vec<[u8; 32]>), AnswerError> {
    let filter = Filter { stream: Some(STREAM.to_owned()), ..Filter::default() };
    let page = verify_query(verifier, &filter, 0, answer)?;
    let steps = page
        .entries
        .iter()
        .map(|e| {
            Recorded::from_entry(ledger, &e.entry, e.leaf_hash)
                .ok()
                .flatten()
                .ok_or(AnswerError::Malformed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((steps, page.path))
}

/// The destination side of an exchange: checks the asker's steps, takes this ledger's next
/// step, answers with this ledger's steps of the transfer.
pub(super) fn answer(
    inner: &Inner,
    asker: Option<&Identity>,
    key: Key,
    note: &str,
    steps: Vec<ProvenEntryWire>,
    path: Vec<[u8; 32]>,
) -> RoutedAnswer {
    let refused = |code, message: String| RoutedAnswer::Refused { code, message };
    let Some(desk) = inner.transfers.get() else {
        return refused(ErrorCode::BadRequest, TransferError::Disabled.to_string());
    };
    let Some(asker) = asker else {
        return refused(
            ErrorCode::NotPinned,
            "a transfer step needs the asker's valid ledger certificate".into(),
        );
    };
    let peer = asker.ledger_id;
    let theirs = if steps.is_empty() {
        Vec::new()
    } else {
        let sent = RoutedAnswer::Query {
            note: note.to_owned(),
            entries: steps,
            next_cursor: None,
            path: Vec::new(),
        };
        match verified_steps(&asker.verifier(), peer, sent) {
            Ok((s, _)) => s,
            Err(e) => {
                return refused(
                    ErrorCode::BadRequest,
                    format!("your steps of transfer {} do not verify: {e}", key.1),
                );
            }
        }
    };
    let ledger = &inner.ledger;
    let me = ledger.identity().ledger_id;
    let mut book = desk.book.lock();
    // A transfer's steps are shown to its two ledgers only.
    let party = if key.0 == me {
        book.get(&key).is_some_and(|t| t.body().to == peer)
    } else {
        key.0 == peer
    };
    if !party {
        return refused(
            ErrorCode::NotVisible,
            format!("transfer {} of {} is not between this ledger and yours", key.1, key.0),
        );
    }
    // A new transfer writes a reservation into this log: only for ledgers this one pinned, so
    // a stranger cannot fill the log with them.
    let pinned = inner.peers.pinned_keys().iter().any(|(_, k)| k == asker.public_key.as_bytes());
    if key.0 != me && book.get(&key).is_none() && !pinned {
        return refused(
            ErrorCode::NotPinned,
            format!(
                "this ledger takes transfers only from ledgers it pinned; its operator can run `onoal peer add {peer}@HOST:PORT --key {}`",
                hex::encode(asker.public_key.as_bytes())
            ),
        );
    }
    if !theirs.is_empty() {
        match book.next_step(&key, peer, &theirs) {
            Ok(Some(s)) => {
                if let Err(e) = take(ledger, &mut book, &s) {
                    return refused(ErrorCode::Internal, e);
                }
                desk.wake.notify_one();
            }
            Ok(None) => {}
            Err(r) => {
                tracing::warn!(transfer = %key.1, from = %peer, why = %r, "refused transfer steps");
                return refused(ErrorCode::BadRequest, r.to_string());
            }
        }
    }
    match proven(ledger, &book, &key, forging()) {
        Ok((note, entries)) => RoutedAnswer::Query { note, entries, next_cursor: None, path },
        Err(e) => refused(ErrorCode::Internal, e),
    }
}

impl Node {
    /// Starts taking part in transfers: reads the book from the log and runs the loop that
    /// drives open transfers. Once per node.
    ///
    /// # Errors
    /// The log cannot be read, or it runs already.
    pub async fn start_transfers(&self) -> Result<(), String> {
        let ledger = self.inner.ledger.clone();
        let book = self.blocking(move || load_book(&ledger)).await.map_err(|e| e.to_string())??;
        let desk = TransferDesk {
            book: Mutex::new(book),
            wake: tokio::sync::Notify::new(),
            retry: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
        };
        self.inner.transfers.set(Arc::new(desk)).map_err(|_| "transfers run already".to_owned())?;
        let node = self.clone();
        tokio::spawn(async move { node.drive_transfers().await });
        Ok(())
    }

    pub(super) fn desk(&self) -> Result<Arc<TransferDesk>, TransferError> {
        self.inner.transfers.get().cloned().ok_or(TransferError::Disabled)
    }

    async fn drive_transfers(self) {
        let Ok(desk) = self.desk() else { return };
        // The book's version at the last look, and the registered assets announced.
        // The record signed at start names none.
        let (mut seen, mut announced) = (u64::MAX, Vec::<String>::new());
        loop {
            let d = desk.clone();
            let Ok((open, version, held)) = self
                .blocking(move || {
                    let book = d.book.lock();
                    let held = (book.version() != seen).then(|| book.held_assets());
                    (book.open(), book.version(), held)
                })
                .await
            else {
                continue;
            };
            seen = version;
            if let Some(held) = held
                && announced != held
            {
                // The record names the registered assets this ledger holds now (use case 3).
                self.announce_assets(held.clone());
                announced = held;
            }
            let now = Instant::now();
            for key in open {
                if !desk.due(&key, now) || !desk.in_flight.lock().insert(key.clone()) {
                    continue;
                }
                let (node, desk) = (self.clone(), desk.clone());
                tokio::spawn(async move {
                    let outcome = node.transfer_exchange(&key).await;
                    if let Err(e) = &outcome {
                        tracing::debug!(transfer = %key.1, error = %e, "transfer exchange");
                    }
                    desk.note(&key, &outcome);
                    desk.in_flight.lock().remove(&key);
                    if matches!(outcome, Ok(true)) {
                        desk.wake.notify_one();
                    }
                });
            }
            tokio::select! {
                () = desk.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Runs `f` on the book on a blocking thread.
    async fn with_book<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Ledger, &mut Book) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let desk = self.desk().map_err(|e| e.to_string())?;
        let ledger = self.inner.ledger.clone();
        self.blocking(move || f(&ledger, &mut desk.book.lock())).await.map_err(|e| e.to_string())?
    }

    /// One exchange with the other ledger of transfer `key`; whether this ledger took a step.
    async fn transfer_exchange(&self, key: &Key) -> Result<bool, String> {
        let last = self.desk().ok().and_then(|d| d.last_error(key));
        let k = key.clone();
        let (peer, source, note, steps, expired) = self
            .with_book(move |ledger, book| {
                let mut expired = false;
                if book.expired(&k, now_ms()) {
                    let why = match last {
                        Some(e) => format!("no reservation by the deadline (last try: {e})"),
                        None => "no reservation by the deadline".to_owned(),
                    };
                    if let Some(u) = book.unlock(&k, &why) {
                        take(ledger, book, &u)?;
                        expired = true;
                    }
                }
                let t = book.get(&k).ok_or("no such transfer")?;
                let source = t.is_source();
                let peer = if source { t.body().to } else { t.body().from };
                let (note, steps) = proven(ledger, book, &k, forging())?;
                Ok((peer, source, note, steps, expired))
            })
            .await?;
        if expired {
            // Tell the destination once; its own loop asks again if this is lost.
            let _ = self.transfer_ask(key, peer, note, steps).await;
            return Ok(true);
        }
        match self.transfer_ask(key, peer, note, steps).await {
            Ok(theirs) => {
                let k = key.clone();
                self.with_book(move |ledger, book| match book.next_step(&k, peer, &theirs) {
                    Ok(Some(s)) => take(ledger, book, &s).map(|()| true),
                    Ok(None) => Ok(false),
                    Err(r @ Refusal::Peer(_)) => {
                        // Verified, and wrong: the other ledger's own doing.
                        let why = format!("{peer}'s steps do not hold: {r}");
                        if source && let Some(u) = book.unlock(&k, &why) {
                            take(ledger, book, &u)?;
                        }
                        Err(why)
                    }
                    Err(r) => Err(r.to_string()),
                })
                .await
            }
            Err(RemoteError::Refused { message, .. }) => {
                let why = format!("{peer} refused: {message}");
                let k = key.clone();
                let w = why.clone();
                self.with_book(move |ledger, book| {
                    if source && let Some(u) = book.unlock(&k, &w) {
                        take(ledger, book, &u)?;
                    }
                    Ok(())
                })
                .await?;
                Err(why)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends this ledger's steps of `key` to `peer` and returns its steps, verified.
    async fn transfer_ask(
        &self,
        key: &Key,
        peer: LedgerId,
        note: String,
        steps: Vec<ProvenEntryWire>,
    ) -> Result<Vec<Recorded>, RemoteError> {
        let request = RoutedRequest::Transfer {
            source: key.0,
            transfer: key.1.clone(),
            note: if steps.is_empty() { String::new() } else { note },
            steps,
        };
        let check = |verifier: &NoteVerifier, target: &Target, answer| {
            verified_steps(verifier, target.ledger, answer)
        };
        let to = Destination::Ledger(peer);
        let a = self.remote_call_checked(&to, request, MessageType::ReferenceCheck, check).await?;
        Ok(a.value)
    }

    /// Starts a transfer of `amount` of `asset` to the ledger `to` names: writes the lock and
    /// wakes the loop that runs it. `id` defaults to a fresh UUID; the source unlocks after
    /// `timeout` without a reservation.
    ///
    /// # Errors
    /// [`TransferError`].
    pub async fn transfer_start(
        &self,
        to: &Destination,
        asset: &str,
        amount: u64,
        id: Option<String>,
        timeout: Duration,
    ) -> Result<TransferView, TransferError> {
        let desk = self.desk()?;
        // A ledger id is enough to write the lock (the exchanges resolve it, and a destination
        // that is down until the deadline ends in an unlock); an OID must be resolved first.
        let to_ledger = match to {
            Destination::Ledger(id) => *id,
            Destination::Oid(_) => self.resolve_target(to).await?.ledger,
        };
        let id = id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let me = self.inner.ledger.identity().ledger_id;
        let key = (me, id.clone());
        let asset = asset.to_owned();
        let deadline = now_ms().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(0));
        let (d, k) = (desk.clone(), key.clone());
        let ledger = self.inner.ledger.clone();
        let shown = self
            .blocking(move || {
                let mut book = d.book.lock();
                let lock = book
                    .lock(&id, &asset, amount, to_ledger, deadline)
                    .map_err(|e| TransferError::Invalid(e.to_string()))?;
                take(&ledger, &mut book, &lock).map_err(TransferError::Local)?;
                let t = book.get(&k).ok_or_else(|| TransferError::NotFound(id.clone()))?;
                Ok::<_, TransferError>(view(&d, &k, t))
            })
            .await
            .map_err(|e| TransferError::Local(e.to_string()))??;
        desk.wake.notify_one();
        Ok(shown)
    }

    /// Transfer `id` as this ledger sees it (the one this ledger started, when several ledgers
    /// used the id); with `ask_peer`, the other ledger's side too, verified.
    ///
    /// # Errors
    /// [`TransferError`].
    pub async fn transfer_status(
        &self,
        id: &str,
        ask_peer: bool,
    ) -> Result<TransferView, TransferError> {
        let desk = self.desk()?;
        let me = self.inner.ledger.identity().ledger_id;
        let (d, wanted) = (desk.clone(), id.to_owned());
        // The book lock may be held across a step's append: never wait for it on the runtime.
        let found = self
            .blocking(move || {
                let book = d.book.lock();
                let mut hits = book.find(&wanted);
                hits.sort_by_key(|(k, _)| k.0 != me);
                hits.first().map(|(k, t)| ((*k).clone(), view(&d, k, t)))
            })
            .await
            .map_err(|e| TransferError::Local(e.to_string()))?;
        let Some((key, mut shown)) = found else {
            return Err(TransferError::NotFound(id.to_owned()));
        };
        if ask_peer {
            let peer: LedgerId = if shown.role == "source" {
                shown.destination.parse().unwrap_or(key.0)
            } else {
                key.0
            };
            let side = match self.transfer_ask(&key, peer, String::new(), Vec::new()).await {
                Ok(steps) => {
                    let mut sorted = steps.clone();
                    sorted.sort_by_key(|r| r.seq);
                    let phase = (!steps.is_empty()).then(|| {
                        crate::transfer::Transfer {
                            steps: steps.into_iter().map(|r| (r.step, r)).collect(),
                        }
                        .phase()
                    });
                    PeerSide {
                        ledger: peer.to_string(),
                        phase,
                        outcome: phase.map(|p| p.outcome().to_owned()),
                        steps: sorted.iter().map(StepView::of).collect(),
                        error: None,
                    }
                }
                Err(e) => PeerSide {
                    ledger: peer.to_string(),
                    phase: None,
                    outcome: None,
                    steps: Vec::new(),
                    error: Some(e.to_string()),
                },
            };
            shown.peer = Some(side);
        }
        Ok(shown)
    }

    /// Every transfer of this ledger, newest first.
    ///
    /// # Errors
    /// [`TransferError::Disabled`].
    pub async fn transfer_list(&self) -> Result<Vec<TransferView>, TransferError> {
        let desk = self.desk()?;
        self.blocking(move || {
            let book = desk.book.lock();
            let mut all: Vec<TransferView> = book.all().map(|(k, t)| view(&desk, k, t)).collect();
            all.sort_by_key(|v| std::cmp::Reverse(v.steps.first().map_or(0, |s| s.time_ms)));
            all
        })
        .await
        .map_err(|e| TransferError::Local(e.to_string()))
    }

    /// Balances per asset, from the token entries.
    ///
    /// # Errors
    /// [`TransferError::Disabled`].
    pub async fn balances(&self) -> Result<Vec<Balance>, TransferError> {
        let desk = self.desk()?;
        self.blocking(move || desk.book.lock().balances())
            .await
            .map_err(|e| TransferError::Local(e.to_string()))
    }

    /// Mints `amount` of `asset` on this ledger; the entry's seq.
    ///
    /// # Errors
    /// [`TransferError`].
    pub async fn mint(&self, asset: &str, amount: u64) -> Result<u64, TransferError> {
        let entry = crate::transfer::mint_entry(asset, amount).map_err(TransferError::Invalid)?;
        let desk = self.desk()?;
        let ledger = self.inner.ledger.clone();
        let asset = asset.to_owned();
        self.blocking(move || {
            let mut book = desk.book.lock();
            book.may_mint(&asset).map_err(|e| TransferError::Invalid(e.to_string()))?;
            let r = ledger.append(entry).map_err(|e| TransferError::Local(e.to_string()))?;
            let stored = ledger.entry(r.seq).map_err(|e| TransferError::Local(e.to_string()))?;
            book.apply(&stored.entry, stored.leaf_hash).map_err(TransferError::Local)?;
            Ok(r.seq)
        })
        .await
        .map_err(|e| TransferError::Local(e.to_string()))?
    }
}
