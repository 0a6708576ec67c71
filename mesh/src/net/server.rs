//! The serving side: for each accepted connection, each stream carries one request. The request
//! is read under a deadline and a small cap, decided by [`ServeCore`], and answered from the
//! engine's reads on a blocking thread. A long poll waits on the log's durable-change watch,
//! not on a timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quinn::{RecvStream, SendStream};
use tracing::Instrument as _;

use onoal_engine::time::now_ms;

use super::Inner;
use super::router::ProtocolHandler;
use super::stream::read_frame;
use crate::id::PeerId;
use crate::proto::serve::{self, Answer, Decision, WaitCheck};
use crate::proto::sync::SessionError;
use crate::proto::{self, ALPN_SYNC, ErrorCode, PeerMisbehaved, Request, Response, encode_frame};
use crate::tls;

/// How long a client has to send its request once it opened a stream.
const REQUEST_READ_DEADLINE: Duration = Duration::from_secs(10);

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
            let span = tracing::info_span!("serve", peer = %client.fmt_short());
            async move {
                loop {
                    let (send, recv) = match conn.accept_bi().await {
                        Ok(s) => s,
                        Err(e) => return tracing::debug!(error = %e, "connection ended"),
                    };
                    let inner = self.inner.clone();
                    tokio::spawn(
                        async move {
                            if let Err(e) = serve_stream(&inner, client, send, recv).await {
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

fn report(inner: &Arc<Inner>, client: PeerId, violation: &PeerMisbehaved) {
    let peers = inner.peers.clone();
    let v = violation.clone();
    tokio::task::spawn_blocking(move || peers.report(&client, &v, now_ms()));
}

async fn serve_stream(
    inner: &Arc<Inner>,
    client: PeerId,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), String> {
    // Requests are small: cap them far below the response cap, so 256 open streams cannot
    // make the server hold more than a few MiB; and read them under a deadline.
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
    let pinned = inner.peers.is_pinned(&client);
    let (decision, learned) = inner.core.handle_request(&client, pinned, request, now_ms());
    if let Some((certificate, _)) = learned {
        let peers = inner.peers.clone();
        let capability = String::from_utf8_lossy(ALPN_SYNC).into_owned();
        tokio::task::spawn_blocking(move || peers.learn(&certificate, None, &capability, now_ms()));
    }
    let answer = match decision {
        Decision::Respond(r) => r.into(),
        Decision::Execute(plan) => execute(inner, plan).await,
        Decision::Wait { plan, have, wait } => {
            wait_for_checkpoint(inner, plan.ledger(), have, wait).await;
            execute(inner, plan).await
        }
    };
    write_answer(&mut send, answer).await
}

async fn execute(inner: &Arc<Inner>, plan: serve::Plan) -> Answer {
    let inner2 = inner.clone();
    tokio::task::spawn_blocking(move || serve::execute(&inner2.ledger, &inner2.peers, plan))
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

async fn write_answer(send: &mut SendStream, answer: Answer) -> Result<(), String> {
    let body = postcard::to_stdvec(&answer.response).map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(4 + body.len());
    encode_frame(&body, &mut head);
    send.write_all(&head).await.map_err(|e| e.to_string())?;
    if !answer.frames.is_empty() {
        send.write_all(&answer.frames).await.map_err(|e| e.to_string())?;
    }
    let _ = send.finish();
    Ok(())
}
