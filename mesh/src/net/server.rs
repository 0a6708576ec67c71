//! The serving side: for each accepted connection, each stream carries one request. Every
//! buffer a client can make the server hold is bounded, and every wait has a deadline:
//!
//! - The client's key is known once the handshake completes, so the caps are chosen before any
//!   request is read: an unpinned client gets one stream at a time, a 16 KiB receive window,
//!   2 s to say `Hello`, a share of a small pool of heavy answers, and the connection is closed
//!   after its second refusal. What any client may read (public streams for a stranger) is
//!   the serving core's decision, by the ledger's visibility policy.
//! - Connections are capped in total, per pinned key, and for unpinned keys together.
//! - Requests are read under a deadline and a 16 KiB cap (the server's stream receive windows
//!   are small, so half-sent requests cannot pin memory).
//! - Bundles stream out of storage a chunk at a time as the client reads them; a client that
//!   stops reading hits the send deadline. At most a few bundles or pages are served at once
//!   per key, and a bounded number in all, so one peer gets a fair share of reads and CPU.
//! - A long poll waits on the log's durable-change watch, not on a timer; waiters are capped
//!   per key (more are refused as busy, which a client retries after a back-off).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use quinn::{RecvStream, SendStream};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use onoal_engine::time::now_ms;

use super::router::ProtocolHandler;
use super::stream::read_frame;
use super::{Inner, Node};
use crate::id::PeerId;
use crate::proto::serve::{self, Answer, Decision, Plan, WaitCheck};
use crate::proto::sync::SessionError;
use crate::proto::{self, ALPN_SYNC, ErrorCode, PeerMisbehaved, Request, Response, encode_frame};
use crate::tls;

/// How long a pinned client has to send its request once it opened a stream.
const REQUEST_READ_DEADLINE: Duration = Duration::from_secs(10);
/// How long an unpinned client has to say `Hello` (and to read the answer).
const UNPINNED_DEADLINE: Duration = Duration::from_secs(2);
/// How long writing one chunk of an answer may take (a client that stops reading).
const SEND_DEADLINE: Duration = Duration::from_secs(30);
/// Bytes of a bundle read from storage and written at a time.
const CHUNK_BYTES: usize = 256 << 10;
/// Most connections at once.
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// Most connections of one pinned key at once.
pub(crate) const MAX_CONNECTIONS_PER_KEY: usize = 8;
/// How many refusals an unpinned client gets on one connection before it is closed.
const UNPINNED_REFUSALS: usize = 2;
/// Bundles and pages served at once to all unpinned clients together.
const HEAVY_UNPINNED: usize = 4;

/// Most connections of unpinned keys at once (they may only say `Hello`).
pub(crate) const MAX_UNPINNED: usize = 64;
/// Bundles and pages served at once per key (over all its connections): what one peer may
/// hold of the server's reads and send buffers, and its fair share of the CPU.
const HEAVY_PER_KEY: usize = 8;
/// Bundles and pages served at once in all.
const HEAVY_TOTAL: usize = 64;
/// Long polls waiting at once per key (one per ledger followed from this server); more are
/// refused as busy.
const WAITERS_PER_KEY: usize = 256;

/// Who is connected and what they hold, for the caps.
pub(crate) struct Limits {
    total: AtomicUsize,
    unpinned: AtomicUsize,
    /// Connections of each pinned key, and the key's share of heavy answers.
    per_key: Mutex<HashMap<PeerId, (usize, Arc<Semaphore>)>>,
    heavy: Arc<Semaphore>,
    /// The heavy answers of all unpinned clients together.
    heavy_unpinned: Arc<Semaphore>,
    waiters: Mutex<HashMap<PeerId, usize>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total: AtomicUsize::new(0),
            unpinned: AtomicUsize::new(0),
            per_key: Mutex::default(),
            heavy: Arc::new(Semaphore::new(HEAVY_TOTAL)),
            heavy_unpinned: Arc::new(Semaphore::new(HEAVY_UNPINNED)),
            waiters: Mutex::default(),
        }
    }
}

impl Limits {
    /// Connections open now: (all, pinned keys').
    pub(crate) fn connections(&self) -> (usize, usize) {
        let total = self.total.load(Ordering::Relaxed);
        (total, total.saturating_sub(self.unpinned.load(Ordering::Relaxed)))
    }
}

/// A connection counted against the caps (released on drop).
struct Admitted<'a> {
    limits: &'a Limits,
    key: PeerId,
    pinned: bool,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
        if self.pinned {
            let mut m = self.limits.per_key.lock();
            if let Some((n, _)) = m.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.key);
                }
            }
        } else {
            self.limits.unpinned.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Limits {
    fn admit(&self, key: PeerId, pinned: bool) -> Option<Admitted<'_>> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let admitted = if pinned {
            let mut m = self.per_key.lock();
            let (n, _) =
                m.entry(key).or_insert_with(|| (0, Arc::new(Semaphore::new(HEAVY_PER_KEY))));
            (*n < MAX_CONNECTIONS_PER_KEY).then(|| *n += 1).is_some()
        } else if self.unpinned.fetch_add(1, Ordering::AcqRel) >= MAX_UNPINNED {
            self.unpinned.fetch_sub(1, Ordering::AcqRel);
            false
        } else {
            true
        };
        if !admitted {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Admitted { limits: self, key, pinned })
    }

    /// Waits for a heavy answer's turn: one of `key`'s (of all unpinned clients', for an
    /// unpinned key), then one of all.
    async fn heavy(
        &self,
        key: &PeerId,
    ) -> Option<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit)> {
        let own = self
            .per_key
            .lock()
            .get(key)
            .map_or_else(|| self.heavy_unpinned.clone(), |(_, s)| s.clone());
        let own = own.acquire_owned().await.ok()?;
        let all = self.heavy.clone().acquire_owned().await.ok()?;
        Some((own, all))
    }

    /// Counts a long poll of `key`; false when it has too many waiting.
    fn start_wait(&self, key: PeerId) -> bool {
        let mut m = self.waiters.lock();
        let n = m.entry(key).or_insert(0);
        (*n < WAITERS_PER_KEY).then(|| *n += 1).is_some()
    }

    fn end_wait(&self, key: PeerId) {
        let mut m = self.waiters.lock();
        if let Some(n) = m.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&key);
            }
        }
    }
}

/// Serves the sync protocol.
pub(crate) struct SyncHandler {
    inner: Arc<Inner>,
}

impl SyncHandler {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

impl ProtocolHandler for SyncHandler {
    fn handle(
        self: Arc<Self>,
        conn: quinn::Connection,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let Some(client) = tls::peer_key(&conn).map(PeerId::new) else {
                return conn.close(quinn::VarInt::from_u32(1), b"no usable key");
            };
            let inner = self.inner.clone();
            let pinned = inner.peers.is_pinned(&client);
            let span = tracing::info_span!("serve", peer = %client.fmt_short(), pinned);
            let Some(_admitted) = inner.limits.admit(client, pinned) else {
                tracing::debug!(parent: &span, "refused: too many connections");
                return conn.close(quinn::VarInt::from_u32(3), b"too many connections");
            };
            if !pinned {
                return serve_unpinned(&inner, client, conn).instrument(span).await;
            }
            async {
                loop {
                    let (send, recv) = match conn.accept_bi().await {
                        Ok(s) => s,
                        Err(e) => return tracing::debug!(error = %e, "connection ended"),
                    };
                    let inner = inner.clone();
                    tokio::spawn(
                        async move {
                            let reader = inner.peers.ledger_of(&client);
                            if let Err(e) =
                                serve_stream(&inner, client, true, reader, send, recv).await
                            {
                                tracing::debug!(error = %e, "stream ended");
                            }
                        }
                        .in_current_span(),
                    );
                }
            }
            .instrument(span)
            .await;
        })
    }
}

/// An unpinned client reads what the policy gives strangers (and the ledger its `Hello`
/// proves, if trust reaches it): one stream at a time, a tiny window, a short deadline for its
/// `Hello` and for every request after, and the connection closed at its second refusal.
async fn serve_unpinned(inner: &Arc<Inner>, client: PeerId, conn: quinn::Connection) {
    conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(1));
    conn.set_receive_window(quinn::VarInt::from_u32(16 << 10));
    // The ledger the client proved it is (a valid certificate in its Hello).
    let mut claimed: Option<onoal_engine::LedgerId> = None;
    let mut refusals = 0;
    let mut deadline = UNPINNED_DEADLINE;
    let ended = loop {
        let next = tokio::time::timeout(deadline, conn.accept_bi()).await;
        let (send, mut recv) = match next {
            Err(_) => break "idle".to_owned(),
            Ok(Err(e)) => break e.to_string(),
            Ok(Ok(s)) => s,
        };
        deadline = REQUEST_READ_DEADLINE;
        let frame = match tokio::time::timeout(
            UNPINNED_DEADLINE,
            read_frame(&mut recv, proto::MAX_REQUEST_FRAME),
        )
        .await
        {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => break e.to_string(),
            Err(_) => break "the client sent no request in time".to_owned(),
        };
        let Ok(request) = postcard::from_bytes::<Request>(&frame) else {
            break "an undecodable request".to_owned();
        };
        if let Some(c) = proto::handshake::client_certificate(&request, &client, now_ms()) {
            claimed = Some(c.0.ledger_id);
        }
        match answer_request(inner, client, false, claimed, send, request).await {
            Ok(None) => {}
            Ok(Some(_refused)) => {
                refusals += 1;
                if refusals >= UNPINNED_REFUSALS {
                    break "refused".to_owned();
                }
            }
            Err(e) => break e,
        }
    };
    tracing::debug!(reason = %ended, "unpinned client done");
    if refusals > 0 {
        // So the operator can pin it, if it should be served more.
        let id = claimed.map(|c| c.to_string());
        let id = id.as_deref().unwrap_or("LEDGER_ID");
        tracing::info!(
            key = %client.to_hex(),
            ledger = claimed.map(|c| c.to_string()).as_deref().unwrap_or("unknown"),
            "refused a client whose key is not pinned; to serve it: onoal peer add {id}@HOST:PORT --key {}",
            client.to_hex()
        );
    }
    // The last answer may still be in flight: give the client a moment to read it and close.
    let _ = tokio::time::timeout(UNPINNED_DEADLINE, conn.closed()).await;
    conn.close(quinn::VarInt::from_u32(0), b"pin this key to read more");
}

fn report(inner: &Arc<Inner>, client: PeerId, violation: &PeerMisbehaved) {
    let peers = inner.peers.clone();
    let v = violation.clone();
    tokio::task::spawn_blocking(move || peers.report(&client, &v, now_ms()));
}

async fn serve_stream(
    inner: &Arc<Inner>,
    client: PeerId,
    pinned: bool,
    reader: Option<onoal_engine::LedgerId>,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), String> {
    // Requests are small: cap them far below the response cap, and read them under a deadline.
    let frame = match tokio::time::timeout(
        REQUEST_READ_DEADLINE,
        read_frame(&mut recv, proto::MAX_REQUEST_FRAME),
    )
    .await
    {
        Err(_) => return Err("the client sent no request in time".into()),
        Ok(Ok(f)) => f,
        Ok(Err(SessionError::Misbehaved(v))) => {
            report(inner, client, &v);
            return Err(v.to_string());
        }
        Ok(Err(e)) => return Err(e.to_string()),
    };
    let request: Request = match postcard::from_bytes(&frame) {
        Ok(r) => r,
        Err(e) => {
            let v = PeerMisbehaved::UndecodableRequest(e.to_string());
            report(inner, client, &v);
            let refusal = Response::Error { code: ErrorCode::BadRequest, message: v.to_string() };
            write_answer(&mut send, refusal.into()).await?;
            return Err(v.to_string());
        }
    };
    answer_request(inner, client, pinned, reader, send, request).await.map(drop)
}

/// Decides and sends the answer to one request; the refusal's code, if it was refused.
async fn answer_request(
    inner: &Arc<Inner>,
    client: PeerId,
    pinned: bool,
    reader: Option<onoal_engine::LedgerId>,
    mut send: SendStream,
    request: Request,
) -> Result<Option<ErrorCode>, String> {
    let now = now_ms();
    let access: serve::Access<'_> =
        &|ledger, scope| inner.trust.admits(ledger, reader.as_ref(), scope, now);
    let (decision, learned) = inner.core.handle_request(&client, pinned, access, request, now);
    if let Some((certificate, _)) = learned {
        let peers = inner.peers.clone();
        let capability = String::from_utf8_lossy(ALPN_SYNC).into_owned();
        tokio::task::spawn_blocking(move || peers.learn(&certificate, None, &capability, now_ms()));
    }
    let written = match decision {
        Decision::Respond(r) => {
            let refused = match &r {
                Response::Error { code, message } => {
                    tracing::debug!(code = ?code, message = %message, "refused a request");
                    Some(*code)
                }
                _ => None,
            };
            return write_answer(&mut send, r.into()).await.map(|()| refused);
        }
        Decision::Execute(plan) => {
            // Bundles and pages are the heavy answers: a few at a time per key, and in all.
            let _permits = match plan {
                Plan::Bundle { .. } | Plan::Entries { .. } => Some(
                    inner
                        .limits
                        .heavy(&client)
                        .await
                        .ok_or("the connection's key is no longer admitted")?,
                ),
                _ => None,
            };
            let answer = execute(inner, plan).await;
            write_answer(&mut send, answer).await
        }
        Decision::Evidence(bytes) => {
            let node = Node { inner: inner.clone() };
            let (status, body) = match node.take_evidence(bytes).await {
                Ok(m) => (200, m),
                Err(m) => (400, m),
            };
            let r = Response::Witness { status, body, vkey: String::new() };
            write_answer(&mut send, r.into()).await
        }
        Decision::Witness(request) => {
            let node = Node { inner: inner.clone() };
            let answer = node.witness_add_checkpoint(request).await;
            let vkey = node.witness_verifier().map(|v| v.to_vkey()).unwrap_or_default();
            let r = Response::Witness { status: answer.status, body: answer.body, vkey };
            write_answer(&mut send, r.into()).await
        }
        Decision::Wait { plan, have, wait } => {
            if !inner.limits.start_wait(client) {
                let busy = Response::Error {
                    code: ErrorCode::Busy,
                    message: format!(
                        "at most {WAITERS_PER_KEY} long polls per peer at once; try again later"
                    ),
                };
                return write_answer(&mut send, busy.into()).await.map(|()| Some(ErrorCode::Busy));
            }
            wait_for_checkpoint(inner, plan.ledger(), have, wait).await;
            inner.limits.end_wait(client);
            let answer = execute(inner, plan).await;
            write_answer(&mut send, answer).await
        }
    };
    written.map(|()| None)
}

async fn execute(inner: &Arc<Inner>, plan: Plan) -> Answer {
    let inner2 = inner.clone();
    let published = Node { inner: inner.clone() }.published_cap(&plan.ledger());
    tokio::task::spawn_blocking(move || {
        serve::execute_capped(&inner2.ledger, &inner2.peers, &inner2.trust, plan, published)
    })
    .await
    .unwrap_or_else(|e| {
        Response::Error { code: ErrorCode::Internal, message: format!("the read failed: {e}") }
            .into()
    })
}

/// Returns once `ledger` can serve a checkpoint larger than `have`, or after `wait`.
async fn wait_for_checkpoint(
    inner: &Arc<Inner>,
    ledger: onoal_engine::LedgerId,
    have: u64,
    wait: Duration,
) {
    let Some(log) = inner.ledger.log_of(&ledger) else { return };
    // A log whose witnesses must cosign first: wait for a newer published size.
    if let Some(mut published) = (Node { inner: inner.clone() }).published_watch()
        && ledger == inner.ledger.identity().ledger_id
    {
        let _ =
            tokio::time::timeout(wait, published.wait_for(|p| p.is_some_and(|p| p > have))).await;
        return;
    }
    let mut rx = inner.watch(&log);
    let deadline = tokio::time::Instant::now() + wait;
    let mut check = WaitCheck::Read;
    loop {
        let ready = match check {
            WaitCheck::Ready => true,
            WaitCheck::NotYet => false,
            WaitCheck::Read => {
                let log = log.clone();
                tokio::task::spawn_blocking(move || serve::newer_checkpoint(&log, have))
                    .await
                    .unwrap_or(true)
            }
        };
        if ready {
            return;
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                check = serve::wait_check(*rx.borrow_and_update(), have);
            }
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

async fn write_with_deadline(send: &mut SendStream, bytes: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(SEND_DEADLINE, send.write_all(bytes)).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            let _ = send.reset(quinn::VarInt::from_u32(4));
            Err(format!("the client read nothing for {} s", SEND_DEADLINE.as_secs()))
        }
    }
}

async fn write_answer(send: &mut SendStream, answer: Answer) -> Result<(), String> {
    let body = postcard::to_stdvec(answer.response()).map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(4 + body.len());
    encode_frame(&body, &mut head);
    write_with_deadline(send, &head).await?;
    if let Answer::Bundle { mut entries, .. } = answer {
        // One chunk read from storage at a time, as the client takes them.
        loop {
            let (back, chunk) = tokio::task::spawn_blocking(move || {
                let chunk = entries.next_chunk(CHUNK_BYTES);
                (entries, chunk)
            })
            .await
            .map_err(|e| e.to_string())?;
            entries = back;
            match chunk {
                Ok(Some(bytes)) => write_with_deadline(send, &bytes).await?,
                Ok(None) => break,
                Err(e) => {
                    let _ = send.reset(quinn::VarInt::from_u32(5));
                    return Err(e);
                }
            }
        }
    }
    let _ = send.finish();
    Ok(())
}
