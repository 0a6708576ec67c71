//! The witness driver, both sides.
//!
//! As a witness, a node answers `add-checkpoint` (over the mesh, `Request::AddCheckpoint`, and
//! over HTTP) with [`crate::witness::decide`]: one decision at a time, the new state fsynced
//! before the answer leaves, refused split views kept as evidence (table `witness`).
//!
//! As a log, a node with `--witness` sends each new checkpoint of its own log to its witnesses,
//! adds the cosignature lines it gets back to the stored note, and with a quorum serves
//! (publishes) only checkpoints that carry it.
//!
//! As a follower, a node with a witness policy accepts a checkpoint of a ledger only when it
//! carries the required cosignatures of witnesses it trusts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use quinn::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use onoal_engine::checkpoint::NoteVerifier;
use onoal_engine::cosignature::{CosignatureVerifier, Cosigner, Cosigners, split_note};
use onoal_engine::time::now_ms;
use onoal_engine::{AuxTable, Hash, LedgerId, SignedCheckpoint, TreeSize};

use super::{Node, stream};
use crate::proto::{Request, Response};
use crate::witness::{AddCheckpoint, SplitEvidence, Verdict, WitnessedLog, decide, origin_hash};

/// Key prefix of a witnessed log's state (then the origin's hash).
const STATE_PREFIX: u8 = b'l';
/// Key prefix of split-view evidence (then the origin's hash and the time found).
const EVIDENCE_PREFIX: u8 = b'e';
/// How often a log retries its witnesses when a round failed or nothing changed.
const ROUND_EVERY: Duration = Duration::from_secs(1);
/// Environment variable of the crash test: `after-persist` aborts the witness process after it
/// persisted a cosigned state and before it answers.
pub const CRASH_ENV: &str = "ONOAL_TEST_WITNESS_CRASH";

/// A witness's answer, as C2SP's HTTP has it: status and body, and the witness's vkey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessAnswer {
    /// 200, 400, 403, 404, 409 or 422.
    pub status: u16,
    /// 200: cosignature lines; 409: the witness's size and a newline; otherwise the reason.
    pub body: String,
}

/// The witness side of a node.
pub(crate) struct WitnessService {
    cosigner: Cosigner,
    /// Logs witnessed that are not pinned ledgers (C2SP logs named by a vkey).
    extra_logs: Vec<NoteVerifier>,
    /// One decision at a time: check the held size and persist the new one atomically.
    decide: Mutex<()>,
    crash_after_persist: bool,
}

/// The log side: which witnesses, what quorum, what happened.
pub(crate) struct LogWitnessing {
    pub(crate) witnesses: Vec<LedgerId>,
    pub(crate) quorum: usize,
    /// The newest size carrying the quorum (served to followers); `None` until one does.
    pub(crate) published: watch::Sender<Option<u64>>,
    status: Mutex<HashMap<LedgerId, WitnessStatus>>,
}

/// What a log knows of one of its witnesses.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WitnessStatus {
    /// The witness's ledger id.
    pub ledger_id: String,
    /// Its cosigning key (C2SP vkey), once it answered.
    pub vkey: Option<String>,
    /// The newest size it cosigned for this log.
    pub cosigned_size: u64,
    /// When (ms since the epoch).
    pub cosigned_ms: u64,
    /// Round-trip of the last cosignature (ms).
    pub latency_ms: Option<f64>,
    /// The last failure, if the last round failed.
    pub last_error: Option<String>,
}

/// A node's view of witnessing, for the API and the CLI.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WitnessInfo {
    /// The witness key's name.
    pub name: String,
    /// Its C2SP verifier key (`<name>+<id>+<base64(0x04 || key)>`).
    pub vkey: String,
    /// Logs this node witnesses: origin, size, when.
    pub witnessed: Vec<WitnessedView>,
    /// Split views this node caught: both notes, why they conflict, whether it is proven.
    #[schema(value_type = Vec<Object>)]
    pub evidence: Vec<SplitEvidence>,
    /// This ledger's witnesses and quorum, when it has some.
    pub own: Option<OwnWitnesses>,
}

/// A witnessed log.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WitnessedView {
    /// Origin line.
    pub origin: String,
    /// Cosigned size.
    pub tree_size: u64,
    /// Its root (hex).
    pub root: String,
    /// When (ms since the epoch).
    pub cosigned_ms: u64,
}

/// This ledger's witnesses.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OwnWitnesses {
    /// Cosignatures needed before a checkpoint is served.
    pub quorum: usize,
    /// The newest checkpoint size served (carrying the quorum).
    pub published_size: Option<u64>,
    /// Each witness.
    pub witnesses: Vec<WitnessStatus>,
}

fn state_key(origin: &str) -> Vec<u8> {
    let mut k = vec![STATE_PREFIX];
    k.extend_from_slice(&origin_hash(origin).0);
    k
}

impl WitnessService {
    pub(crate) fn new(cosigner: Cosigner, extra_logs: Vec<NoteVerifier>) -> Self {
        let crash_after_persist =
            std::env::var(CRASH_ENV).is_ok_and(|v| v.trim() == "after-persist");
        Self { cosigner, extra_logs, decide: Mutex::new(()), crash_after_persist }
    }
}

impl Node {
    /// Makes this node a witness, cosigning with `cosigner` (a key of its own, not the
    /// ledger's) the checkpoints of its pinned ledgers and of the logs of `extra_logs`. Call
    /// once, before serving.
    ///
    /// # Errors
    /// When called twice.
    pub fn enable_witness(
        &self,
        cosigner: Cosigner,
        extra_logs: Vec<NoteVerifier>,
    ) -> Result<(), String> {
        self.inner
            .witness
            .set(Arc::new(WitnessService::new(cosigner, extra_logs)))
            .map_err(|_| "the witness is already enabled".to_owned())
    }

    /// The witness key's verifier, when this node witnesses.
    pub fn witness_verifier(&self) -> Option<CosignatureVerifier> {
        self.inner.witness.get().map(|w| w.cosigner.verifier().clone())
    }

    /// Answers a C2SP `add-checkpoint` request (blocking: reads and an fsynced write).
    pub fn witness_add_checkpoint_blocking(&self, request: &AddCheckpoint) -> WitnessAnswer {
        let Some(service) = self.inner.witness.get() else {
            return WitnessAnswer {
                status: 404,
                body: "this node does not witness (start it with onoal serve)\n".into(),
            };
        };
        let ledger = &self.inner.ledger;
        let origin = crate::witness::origin_of(&request.note).unwrap_or_default().to_owned();
        let log_key =
            service.extra_logs.iter().find(|v| v.name() == origin).cloned().or_else(|| {
                self.inner
                    .peers
                    .list()
                    .ok()?
                    .into_iter()
                    .find(|p| p.oid.as_deref() == Some(origin.as_str()))
                    .and_then(|p| {
                        let key = ed25519_dalek::VerifyingKey::from_bytes(&p.public_key).ok()?;
                        NoteVerifier::new(&origin, key).ok()
                    })
            });
        let _one_at_a_time = service.decide.lock();
        let held = ledger
            .aux_get(AuxTable::Witness, &state_key(&origin))
            .ok()
            .flatten()
            .and_then(|b| postcard::from_bytes::<WitnessedLog>(&b).ok());
        match decide(request, log_key.as_ref(), held.as_ref(), &service.cosigner, now_ms()) {
            Verdict::Cosign { state, line } => {
                let bytes = postcard::to_stdvec(&state).unwrap_or_default();
                if let Err(e) = ledger.aux_put(AuxTable::Witness, &state_key(&origin), &bytes) {
                    return WitnessAnswer {
                        status: 500,
                        body: format!("the witness could not persist its state: {e}\n"),
                    };
                }
                if service.crash_after_persist {
                    tracing::error!("{CRASH_ENV}=after-persist: aborting before the answer");
                    std::process::abort();
                }
                WitnessAnswer { status: 200, body: line }
            }
            Verdict::Conflict { size } => WitnessAnswer { status: 409, body: format!("{size}\n") },
            Verdict::Refused { status, reason, evidence } => {
                if let Some(e) = evidence {
                    self.keep_evidence(&e);
                    // A replica of the log held here stops syncing too.
                    let pinned = self.inner.peers.list().ok().and_then(|l| {
                        l.into_iter().find(|p| p.oid.as_deref() == Some(e.origin.as_str()))
                    });
                    if let Some(p) = pinned.filter(|_| e.proven) {
                        self.stop_replica_of(p.ledger_id, &e);
                    }
                }
                WitnessAnswer { status, body: format!("{reason}\n") }
            }
        }
    }

    /// Checks split-view evidence a peer sent with the log's pinned key (a pinned ledger whose
    /// OID is the origin, or whose OID is not known yet: the evidence then shows that key
    /// signed both notes), keeps it, and passes it on when it is new here. Only proven
    /// evidence is taken: nobody can be framed with two notes that do not conflict.
    ///
    /// # Errors
    /// Why it was not taken.
    pub async fn take_evidence(&self, bytes: Vec<u8>) -> Result<String, String> {
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let e: SplitEvidence =
                postcard::from_bytes(&bytes).map_err(|e| format!("undecodable evidence: {e}"))?;
            let peers = node.inner.peers.list().map_err(|e| e.to_string())?;
            let (reason, ledger_id) = peers
                .iter()
                .filter(|p| p.oid.as_deref().is_none_or(|o| o == e.origin))
                .filter_map(|p| {
                    let key = ed25519_dalek::VerifyingKey::from_bytes(&p.public_key).ok()?;
                    let v = NoteVerifier::new(&e.origin, key).ok()?;
                    e.check(&v).ok().map(|r| (r, p.ledger_id))
                })
                .next()
                .ok_or_else(|| {
                    format!(
                        "the evidence about {} proves nothing with any key pinned here",
                        e.origin
                    )
                })?;
            let e = SplitEvidence { proven: true, reason: reason.clone(), ..e };
            node.keep_evidence(&e);
            node.stop_replica_of(ledger_id, &e);
            Ok(reason)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Removes the split-view evidence held here about `origin` (see [`drop_evidence`]).
    ///
    /// # Errors
    /// A storage error, as text.
    pub async fn drop_evidence(&self, origin: &str) -> Result<usize, String> {
        let (ledger, origin) = (self.inner.ledger.clone(), origin.to_owned());
        tokio::task::spawn_blocking(move || drop_evidence(&ledger, &origin))
            .await
            .map_err(|e| e.to_string())?
    }

    /// The reason of proven split-view evidence held here against `ledger_id` (checked again
    /// with its pinned key), if any: such a ledger is not synced (blocking: a table scan).
    ///
    /// Any evidence whose notes the ledger's pinned key signed counts, whatever origin they
    /// name (the OID may not be known yet): that key signed two conflicting notes.
    pub fn proven_split_view(&self, ledger_id: LedgerId) -> Option<String> {
        let record = self.inner.peers.get(&ledger_id).ok()??;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&record.public_key).ok()?;
        let rows = self.inner.ledger.aux_scan(AuxTable::Witness).ok()?;
        rows.iter()
            .filter(|(k, _)| k.first() == Some(&EVIDENCE_PREFIX))
            .filter_map(|(_, v)| postcard::from_bytes::<SplitEvidence>(v).ok())
            .filter(|e| e.proven)
            .find_map(|e| e.check(&NoteVerifier::new(&e.origin, key).ok()?).ok())
    }

    /// A replica of a ledger proven to show two histories stops syncing: it is marked forked
    /// with the evidence (best effort: a sync holding the replica's writer right now keeps it).
    fn stop_replica_of(&self, ledger_id: LedgerId, e: &SplitEvidence) {
        let ledger = &self.inner.ledger;
        let Some(replica) = ledger.replica(&ledger_id) else { return };
        let proof = e.proof.as_ref().map(|p| onoal_engine::replica::ForkProof {
            old_size: p.old_size,
            old_root: p.old_root,
            new_size: p.new_size,
            consistency: p.consistency.clone(),
        });
        let reason = format!("a witness proved a split view: {}", e.reason);
        let done = ledger
            .replica_writer(replica.identity())
            .and_then(|mut w| w.record_split_view(&e.held, &e.received, reason, proof));
        match done {
            Ok(()) => {
                tracing::warn!(ledger = %ledger_id, "replica marked forked: a proven split view")
            }
            Err(err) => {
                tracing::warn!(ledger = %ledger_id, error = %err, "could not mark the replica forked")
            }
        }
    }

    /// Sends proven evidence to every pinned peer with an address (best effort, in the
    /// background, each within the request timeout).
    fn spread_evidence(&self, e: &SplitEvidence) {
        let Ok(bytes) = postcard::to_stdvec(e) else { return };
        let Ok(peers) = self.inner.peers.list() else { return };
        for p in peers.into_iter().filter(|p| !p.addresses.is_empty()) {
            let (node, bytes) = (self.clone(), bytes.clone());
            tokio::spawn(async move {
                let Ok((addr, key)) = node.source(p.ledger_id, None).await else { return };
                let Ok(conn) = node.connect(addr, key).await else { return };
                let c = &node.inner.config;
                let request = Request::Evidence { evidence: bytes };
                let answer = stream::request(&conn, &request, c.max_frame, c.request_timeout).await;
                tracing::debug!(peer = %p.ledger_id.fmt_short(), ?answer, "split-view evidence sent");
                conn.close(quinn::VarInt::from_u32(0), b"done");
            });
        }
    }

    /// Stores split-view evidence (best effort: the refusal stands either way), once per
    /// conflicting note: a log that retries the same checkpoint adds nothing. New proven
    /// evidence is passed on to the pinned peers.
    pub(crate) fn keep_evidence(&self, e: &SplitEvidence) {
        let mut key = vec![EVIDENCE_PREFIX];
        key.extend_from_slice(&origin_hash(&e.origin).0);
        key.extend_from_slice(&onoal_engine::hash::sha256(&[e.received.as_bytes()]).0[..8]);
        if let Ok(Some(old)) = self.inner.ledger.aux_get(AuxTable::Witness, &key)
            && postcard::from_bytes::<SplitEvidence>(&old).is_ok_and(|o| o.proven || !e.proven)
        {
            return;
        }
        let bytes = postcard::to_stdvec(e).unwrap_or_default();
        if let Err(err) = self.inner.ledger.aux_put(AuxTable::Witness, &key, &bytes) {
            tracing::error!(error = %err, "cannot store split-view evidence");
            return;
        }
        if e.proven {
            tracing::warn!(origin = %e.origin, reason = %e.reason, "split view of a log: proven evidence kept and passed on");
        } else {
            tracing::warn!(origin = %e.origin, reason = %e.reason, "a checkpoint the log could not prove consistent with the cosigned one: kept, not proven");
        }
        if e.proven
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let _in = handle.enter();
            self.spread_evidence(e);
        }
    }

    /// Async [`Self::witness_add_checkpoint_blocking`].
    pub async fn witness_add_checkpoint(&self, request: AddCheckpoint) -> WitnessAnswer {
        let node = self.clone();
        tokio::task::spawn_blocking(move || node.witness_add_checkpoint_blocking(&request))
            .await
            .unwrap_or_else(|e| WitnessAnswer {
                status: 500,
                body: format!("the witness task failed: {e}\n"),
            })
    }

    /// The cosigned checkpoint this witness holds for the log whose origin hashes to
    /// `origin_hash` (C2SP's monitoring endpoint).
    pub fn witnessed_checkpoint(&self, origin_hash: &Hash) -> Option<String> {
        let mut key = vec![STATE_PREFIX];
        key.extend_from_slice(&origin_hash.0);
        let bytes = self.inner.ledger.aux_get(AuxTable::Witness, &key).ok().flatten()?;
        postcard::from_bytes::<WitnessedLog>(&bytes).ok().map(|s| s.note)
    }

    /// Everything about witnessing here (blocking: a table scan).
    pub fn witness_info(&self) -> Option<WitnessInfo> {
        let verifier = self.witness_verifier()?;
        let rows = self.inner.ledger.aux_scan(AuxTable::Witness).unwrap_or_default();
        let mut witnessed = Vec::new();
        let mut evidence = Vec::new();
        for (k, v) in rows {
            match k.first() {
                Some(&STATE_PREFIX) => {
                    if let Ok(s) = postcard::from_bytes::<WitnessedLog>(&v) {
                        witnessed.push(WitnessedView {
                            origin: s.origin,
                            tree_size: s.size,
                            root: s.root.to_hex(),
                            cosigned_ms: s.cosigned_ms,
                        });
                    }
                }
                Some(&EVIDENCE_PREFIX) => {
                    if let Ok(e) = postcard::from_bytes::<SplitEvidence>(&v) {
                        evidence.push(e);
                    }
                }
                _ => {}
            }
        }
        let own = self.inner.log_witnessing.get().map(|w| OwnWitnesses {
            quorum: w.quorum,
            published_size: *w.published.borrow(),
            witnesses: {
                let status = w.status.lock();
                w.witnesses
                    .iter()
                    .map(|id| {
                        status.get(id).cloned().unwrap_or_else(|| WitnessStatus {
                            ledger_id: id.to_string(),
                            ..WitnessStatus::default()
                        })
                    })
                    .collect()
            },
        });
        Some(WitnessInfo {
            name: verifier.name().to_owned(),
            vkey: verifier.to_vkey(),
            witnessed,
            evidence,
            own,
        })
    }

    /// The size up to which the own log's checkpoints are served: `None` without a witness
    /// quorum (every checkpoint), `Some(n)` with one (0: none carries it yet).
    pub(crate) fn published_cap(&self, ledger: &LedgerId) -> Option<u64> {
        if *ledger != self.inner.ledger.identity().ledger_id {
            return None;
        }
        let w = self.inner.log_witnessing.get().filter(|w| w.quorum > 0)?;
        Some(w.published.borrow().unwrap_or(0))
    }

    /// A receiver of the published size, when a quorum gates the own log's checkpoints.
    pub fn published_watch(&self) -> Option<watch::Receiver<Option<u64>>> {
        self.inner.log_witnessing.get().filter(|w| w.quorum > 0).map(|w| w.published.subscribe())
    }

    /// Sends every new checkpoint of the own log to `witnesses` (pinned ledgers) and keeps
    /// their cosignatures with it; with `quorum > 0` only checkpoints carrying that many are
    /// served. Runs until the node closes. Call once.
    ///
    /// # Errors
    /// Called twice, or a quorum larger than the witnesses.
    pub fn start_witnessing(&self, witnesses: Vec<LedgerId>, quorum: usize) -> Result<(), String> {
        if quorum > witnesses.len() {
            return Err(format!(
                "a quorum of {quorum} needs at least {quorum} witnesses; {} are named",
                witnesses.len()
            ));
        }
        let w = LogWitnessing {
            witnesses,
            quorum,
            published: watch::Sender::new(None),
            status: Mutex::new(HashMap::new()),
        };
        self.inner.log_witnessing.set(Arc::new(w)).map_err(|_| "already witnessed".to_owned())?;
        let node = self.clone();
        tokio::spawn(async move { node.drive_witnessing().await });
        Ok(())
    }

    async fn drive_witnessing(self) {
        let Some(w) = self.inner.log_witnessing.get().cloned() else { return };
        let log = self.inner.ledger.log().clone();
        let mut durable = self.inner.watch(&log);
        let mut clients: HashMap<LedgerId, WitnessClient> =
            w.witnesses.iter().map(|id| (*id, WitnessClient::default())).collect();
        let mut done_size = None::<u64>;
        loop {
            let latest = {
                let log = log.clone();
                tokio::task::spawn_blocking(move || {
                    log.latest_checkpoint_at_most(log.durable_size()).ok().flatten()
                })
                .await
                .ok()
                .flatten()
            };
            if let Some(cp) = latest.filter(|cp| Some(cp.size) != done_size)
                && self.witness_round(&w, &mut clients, &cp).await
            {
                done_size = Some(cp.size);
            }
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(ROUND_EVERY) => {}
            }
            if self.inner.endpoint.local_addr().is_err() {
                return;
            }
        }
    }

    /// Asks every witness to cosign `cp` at once; stores the lines; publishes on a quorum.
    /// True when no witness needs asking again for this checkpoint.
    async fn witness_round(
        &self,
        w: &Arc<LogWitnessing>,
        clients: &mut HashMap<LedgerId, WitnessClient>,
        cp: &SignedCheckpoint,
    ) -> bool {
        let tasks = clients.iter_mut().map(|(id, client)| {
            let node = self.clone();
            let id = *id;
            async move {
                let started = Instant::now();
                let r = node.cosign_with(id, client, cp).await;
                (id, r, started.elapsed())
            }
        });
        let results = futures_util::future::join_all(tasks).await;
        let mut lines = Vec::new();
        let mut all = true;
        {
            let mut status = w.status.lock();
            for (id, r, took) in results {
                let s = status.entry(id).or_insert_with(|| WitnessStatus {
                    ledger_id: id.to_string(),
                    ..Default::default()
                });
                match r {
                    Ok((line, vkey)) => {
                        lines.push(line);
                        s.vkey = Some(vkey);
                        s.cosigned_size = cp.size;
                        s.cosigned_ms = now_ms();
                        s.latency_ms = Some(took.as_secs_f64() * 1000.0);
                        s.last_error = None;
                    }
                    Err(Failed { reason, retry }) => {
                        // A refusal of this very checkpoint (400, 403, 422) stands; asking
                        // again changes nothing until the next checkpoint.
                        all &= !retry;
                        tracing::warn!(witness = %id.fmt_short(), error = %reason, size = cp.size, "witness did not cosign");
                        s.last_error = Some(reason);
                    }
                }
            }
        }
        if lines.is_empty() {
            return all;
        }
        let log = self.inner.ledger.log().clone();
        let (size, count) = (cp.size, lines.len());
        let stored = tokio::task::spawn_blocking(move || log.add_cosignatures(size, &lines)).await;
        match stored {
            Ok(Ok(Some(_))) => {
                if w.quorum > 0 && count >= w.quorum {
                    w.published.send_if_modified(|p| {
                        let newer = p.is_none_or(|p| p < size);
                        if newer {
                            *p = Some(size);
                        }
                        newer
                    });
                }
            }
            Ok(Ok(None)) => tracing::warn!(size, "the cosigned checkpoint is no longer stored"),
            Ok(Err(e)) => tracing::error!(error = %e, "cannot store cosignatures"),
            Err(e) => tracing::error!(error = %e, "cannot store cosignatures"),
        }
        all
    }

    /// One witness's cosignature on `cp`: (line, the witness's vkey).
    async fn cosign_with(
        &self,
        witness: LedgerId,
        client: &mut WitnessClient,
        cp: &SignedCheckpoint,
    ) -> Result<(String, String), Failed> {
        let conn = match &client.conn {
            Some(c) if c.close_reason().is_none() => c.clone(),
            _ => {
                let (addr, key) = self.source(witness, None).await.map_err(Failed::retry)?;
                let c = self.connect(addr, key).await.map_err(Failed::retry)?;
                client.conn = Some(c.clone());
                c
            }
        };
        // At most: the size we believe, then the size the witness says it holds.
        for _ in 0..2 {
            let request =
                self.add_checkpoint_request(client.known_size, cp).await.map_err(Failed::retry)?;
            let c = &self.inner.config;
            let response = stream::request(&conn, &request, c.max_frame, c.request_timeout)
                .await
                .map_err(|e| {
                client.conn = None;
                Failed::retry(e)
            })?;
            let Response::Witness { status, body, vkey } = response else {
                return Err(Failed::retry(format!("the witness answered {}", response.kind())));
            };
            match status {
                200 => {
                    let verifier = CosignatureVerifier::from_vkey(&vkey)
                        .map_err(|e| Failed::retry(format!("the witness's key: {e}")))?;
                    let (note_body, _) = split_note(&cp.note).map_err(Failed::retry)?;
                    let line = body
                        .lines()
                        .find(|l| matches!(verifier.verify_line(note_body, l), Ok(Some(_))))
                        .ok_or_else(|| {
                            Failed::retry("the witness's answer holds no valid cosignature")
                        })?;
                    client.known_size = cp.size;
                    return Ok((format!("{line}\n"), vkey));
                }
                409 => {
                    let size: u64 = body
                        .trim()
                        .parse()
                        .map_err(|_| Failed::retry(format!("a 409 with a bad size {body:?}")))?;
                    if size > cp.size {
                        return Err(Failed::retry(format!(
                            "the witness cosigned size {size} of this log, more than its newest checkpoint {}: was the ledger restored from an older copy?",
                            cp.size
                        )));
                    }
                    if size == client.known_size {
                        return Err(Failed::retry(format!(
                            "the witness keeps answering 409 at size {size}"
                        )));
                    }
                    client.known_size = size;
                }
                s => {
                    let reason = format!("refused ({s}): {}", body.trim());
                    return Err(Failed { reason, retry: !matches!(s, 400 | 403 | 422) });
                }
            }
        }
        Err(Failed::retry("the witness's size changed during the request; the next round retries"))
    }

    async fn add_checkpoint_request(
        &self,
        old: u64,
        cp: &SignedCheckpoint,
    ) -> Result<Request, String> {
        let log = self.inner.ledger.log().clone();
        let (size, note) = (cp.size, cp.note.clone());
        tokio::task::spawn_blocking(move || {
            let (old_root, proof) = if old == 0 || old > size {
                (None, Vec::new())
            } else {
                let root = log.root_at(old).map_err(|e| e.to_string())?;
                let proof = if old == size {
                    Vec::new()
                } else {
                    log.consistency_proof(old, size).map_err(|e| e.to_string())?
                };
                (Some(root), proof)
            };
            Ok(Request::AddCheckpoint { old: TreeSize(old), old_root, proof, note })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Trusted witnesses and the default quorum for every ledger this node syncs.
    pub fn set_witness_policy(&self, policy: Cosigners) {
        self.inner.witness_policy.write().default = Some(Arc::new(policy));
    }

    /// Requires `quorum` cosignatures of the trusted witnesses on every checkpoint of `ledger`
    /// this node accepts from now on (0: none).
    ///
    /// # Errors
    /// A quorum larger than the trusted witnesses.
    pub fn require_witnesses(&self, ledger: LedgerId, quorum: usize) -> Result<(), String> {
        let mut p = self.inner.witness_policy.write();
        let trusted = p.default.as_ref().map_or(0, |d| d.witnesses.len());
        if quorum > trusted {
            return Err(format!(
                "{quorum} cosignatures required, but this node trusts {trusted} witnesses; start it with --trust-witness VKEY (one per witness)"
            ));
        }
        p.per_ledger.insert(ledger, quorum);
        Ok(())
    }

    /// The policy a checkpoint of `ledger` must meet, if any.
    pub(crate) fn witness_policy_for(&self, ledger: &LedgerId) -> Option<Arc<Cosigners>> {
        let p = self.inner.witness_policy.read();
        let default = p.default.clone()?;
        match p.per_ledger.get(ledger) {
            Some(0) => None,
            Some(&q) => {
                Some(Arc::new(Cosigners { witnesses: default.witnesses.clone(), quorum: q }))
            }
            None => (default.quorum > 0).then_some(default),
        }
    }
}

/// Why a witness did not cosign, and whether asking again may help.
struct Failed {
    reason: String,
    retry: bool,
}

impl Failed {
    fn retry(reason: impl ToString) -> Self {
        Self { reason: reason.to_string(), retry: true }
    }
}

/// A log's connection to one witness and the size it believes the witness holds.
#[derive(Default)]
struct WitnessClient {
    conn: Option<Connection>,
    known_size: u64,
}

/// The follower's witness policy: trusted witnesses, default quorum, per-ledger quorums.
#[derive(Default)]
pub(crate) struct WitnessPolicy {
    pub(crate) default: Option<Arc<Cosigners>>,
    pub(crate) per_ledger: HashMap<LedgerId, usize>,
}

/// Type of the policy lock in `Inner`.
pub(crate) type PolicyLock = RwLock<WitnessPolicy>;

/// Removes the split-view evidence a ledger holds about the log `origin`, once its operator
/// has settled the matter: the ledger is synced again. A replica marked forked stays so until
/// `onoal forks drop`; evidence that arrives anew is kept anew. The rows removed.
///
/// # Errors
/// A storage error, as text.
pub fn drop_evidence(ledger: &onoal_engine::Ledger, origin: &str) -> Result<usize, String> {
    let mut prefix = vec![EVIDENCE_PREFIX];
    prefix.extend_from_slice(&origin_hash(origin).0);
    let rows = ledger.aux_scan(AuxTable::Witness).map_err(|e| e.to_string())?;
    let mut dropped = 0;
    for (k, _) in rows.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        ledger.aux_delete(AuxTable::Witness, k).map_err(|e| e.to_string())?;
        dropped += 1;
    }
    Ok(dropped)
}
