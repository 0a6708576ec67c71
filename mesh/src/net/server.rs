//! The serving side of a node: answers requests for the own log and the replicas it holds,
//! to pinned peers only (private by default; `Hello` for anyone).

use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use quinn::{RecvStream, SendStream};

use onoal_engine::replica;

use super::{FrameError, Inner, now_ms, read_frame, write_frame};
use crate::peer::{self, PeerRecord};
use crate::proto::{self, ErrorCode, MAX_WAIT_MS, PeerMisbehaved, Request, Response};

pub(super) async fn serve_connection(
    inner: std::sync::Arc<Inner>,
    incoming: quinn::Incoming,
) -> Result<(), String> {
    let conn = incoming.await.map_err(|e| e.to_string())?;
    let key = crate::tls::peer_key(&conn).ok_or("the client presented no usable key")?;
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => return Err(e.to_string()),
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(&inner, key, send, recv).await {
                tracing::debug!(error = %e, "stream ended");
            }
        });
    }
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error { code, message: message.into() }
}

async fn serve_stream(
    inner: &Inner,
    client: VerifyingKey,
    mut send: SendStream,
    mut recv: RecvStream,
) -> Result<(), String> {
    // Requests are small: cap them far below the response cap, so 256 open streams cannot
    // make the server hold more than a few MiB.
    let frame = match read_frame(&mut recv, proto::MAX_REQUEST_FRAME).await {
        Ok(f) => f,
        Err(FrameError::Io(e)) => return Err(e),
        Err(FrameError::Peer(v)) => {
            peer::report(&inner.ledger, client.as_bytes(), &v, now_ms());
            return Err(v.to_string());
        }
    };
    let request: Request = match postcard::from_bytes(&frame) {
        Ok(r) => r,
        Err(e) => {
            let v = PeerMisbehaved::ProtocolViolation(format!("undecodable request: {e}"));
            peer::report(&inner.ledger, client.as_bytes(), &v, now_ms());
            let r = refuse(ErrorCode::BadRequest, v.to_string());
            let body = postcard::to_stdvec(&r).map_err(|e| e.to_string())?;
            write_frame(&mut send, &body).await?;
            let _ = send.finish();
            return Err(v.to_string());
        }
    };
    let (response, frames) = answer(inner, &client, request).await;
    let body = postcard::to_stdvec(&response).map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(4 + body.len());
    proto::encode_frame(&body, &mut head);
    send.write_all(&head).await.map_err(|e| e.to_string())?;
    if !frames.is_empty() {
        send.write_all(&frames).await.map_err(|e| e.to_string())?;
    }
    let _ = send.finish();
    Ok(())
}

/// The response (and, for a bundle, the entries' frames, already encoded).
async fn answer(inner: &Inner, client: &VerifyingKey, request: Request) -> (Response, Vec<u8>) {
    let ledger = &inner.ledger;
    if let Request::Hello { certificate } = &request {
        if let Ok(identity) = certificate.verify(now_ms())
            && identity.public_key == *client
            && let Ok(Some(mut record)) = peer::get(ledger, &identity.ledger_id)
            && record.public_key == *client.as_bytes()
            && !ledger.is_read_only()
        {
            record.oid = Some(certificate.oid.clone());
            record.certificate = Some(certificate.clone());
            record.last_seen_ms = now_ms();
            let _ = peer::put(ledger, &record);
        }
        return (Response::Hello { certificate: inner.certificate.clone() }, Vec::new());
    }
    // Data is private by default: only pinned peers may read it.
    match peer::by_key(ledger, client.as_bytes()) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return (
                refuse(
                    ErrorCode::NotPinned,
                    format!(
                        "this node serves pinned peers only; its operator must run: onoal peer add {}@HOST:PORT --key {}",
                        "YOUR_LEDGER_ID",
                        hex::encode(client.as_bytes())
                    ),
                ),
                Vec::new(),
            );
        }
        Err(e) => return (refuse(ErrorCode::Internal, e), Vec::new()),
    }
    let log_of = |id: &[u8; 16]| ledger.log_of(&uuid::Uuid::from_bytes(*id));
    let unknown = |id: &[u8; 16]| {
        refuse(ErrorCode::UnknownLedger, format!("no ledger {} here", uuid::Uuid::from_bytes(*id)))
    };
    let internal = |e: String| refuse(ErrorCode::Internal, e);
    match request {
        // Answered (and its certificate recorded) above; a repeat gets the same answer.
        Request::Hello { .. } => {
            (Response::Hello { certificate: inner.certificate.clone() }, Vec::new())
        }
        Request::Certificate { ledger: id } => {
            let uid = uuid::Uuid::from_bytes(id);
            if uid == ledger.identity().ledger_id {
                return (
                    Response::Certificate { certificate: inner.certificate.clone() },
                    Vec::new(),
                );
            }
            match peer::get(ledger, &uid) {
                Ok(Some(PeerRecord { certificate: Some(c), .. })) => {
                    (Response::Certificate { certificate: c }, Vec::new())
                }
                _ => (unknown(&id), Vec::new()),
            }
        }
        Request::Checkpoint { ledger: id, have } => {
            let Some(log) = log_of(&id) else { return (unknown(&id), Vec::new()) };
            (checkpoint_response(&log, have).unwrap_or_else(internal), Vec::new())
        }
        Request::WaitCheckpoint { ledger: id, have, wait_ms } => {
            let Some(log) = log_of(&id) else { return (unknown(&id), Vec::new()) };
            let deadline =
                Instant::now() + Duration::from_millis(u64::from(wait_ms.min(MAX_WAIT_MS)));
            loop {
                let newer = log
                    .latest_checkpoint_at_most(log.durable_size())
                    .ok()
                    .flatten()
                    .is_some_and(|c| c.size > have);
                if newer || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (checkpoint_response(&log, have).unwrap_or_else(internal), Vec::new())
        }
        Request::CheckpointAt { ledger: id, size } => {
            let Some(log) = log_of(&id) else { return (unknown(&id), Vec::new()) };
            match log.checkpoint_at(size) {
                Ok(Some(cp)) => {
                    (Response::Checkpoint { note: cp.note, consistency: Vec::new() }, Vec::new())
                }
                Ok(None) => (Response::NoCheckpoint, Vec::new()),
                Err(e) => (internal(e.to_string()), Vec::new()),
            }
        }
        Request::Entries { ledger: id, size, filter, cursor, limit } => {
            let Some(log) = log_of(&id) else { return (unknown(&id), Vec::new()) };
            if size > log.durable_size() || log.is_sparse() {
                return (
                    refuse(ErrorCode::BadRequest, format!("no provable tree of size {size} here")),
                    Vec::new(),
                );
            }
            (entries_page(&log, size, &filter, cursor, limit).unwrap_or_else(internal), Vec::new())
        }
        Request::Bundle { ledger: id, size, first } => {
            let Some(log) = log_of(&id) else { return (unknown(&id), Vec::new()) };
            let Some(count) = replica::bundle_len(first, size) else {
                return (
                    refuse(
                        ErrorCode::BadRequest,
                        format!("{first} is not a bundle start below {size}"),
                    ),
                    Vec::new(),
                );
            };
            // The entry frames are written straight from RocksDB's buffers into one buffer.
            let read = || -> Result<(Vec<u8>, Vec<onoal_engine::Hash>), String> {
                let proof = log.inclusion_proof(first, size).map_err(|e| e.to_string())?;
                let path = replica::bundle_path_from_inclusion(first, size, &proof)
                    .map_err(|e| e.to_string())?;
                let mut frames = Vec::with_capacity(count as usize * 320);
                let n = log
                    .visit_leaf_data(first, first + count, |leaf| {
                        proto::encode_frame(leaf, &mut frames)
                    })
                    .map_err(|e| e.to_string())?;
                if n != count {
                    return Err(format!("only {n} of the bundle's {count} entries are held here"));
                }
                Ok((frames, path))
            };
            match read() {
                Ok((frames, path)) => (Response::Bundle { count: count as u32, path }, frames),
                Err(e) => (refuse(ErrorCode::BadRequest, e), Vec::new()),
            }
        }
    }
}

/// Most leaf bytes in one page of a filtered sync.
const MAX_PAGE_BYTES: usize = 2 << 20;

fn entries_page(
    log: &onoal_engine::Log,
    size: u64,
    filter: &proto::EntryFilter,
    cursor: u64,
    limit: u32,
) -> Result<Response, String> {
    let limit = (limit as usize).clamp(1, 1000);
    let page = log.query(&filter.to_query(cursor, limit)).map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    let mut bytes = 0;
    let mut next_cursor = page.next_cursor.and_then(|c| c.parse::<u64>().ok());
    for e in page.entries {
        let seq = e.entry.seq;
        if seq >= size {
            next_cursor = None;
            break;
        }
        if !entries.is_empty() && bytes + e.leaf_data.len() > MAX_PAGE_BYTES {
            next_cursor = Some(seq);
            break;
        }
        bytes += e.leaf_data.len();
        let proof = log.inclusion_proof(seq, size).map_err(|e| e.to_string())?;
        entries.push(proto::ProvenEntryWire { leaf_data: e.leaf_data, proof });
    }
    Ok(Response::Entries { entries, next_cursor })
}

fn checkpoint_response(log: &onoal_engine::Log, have: u64) -> Result<Response, String> {
    // The durable size, not the head: proofs are served up to it, and a checkpoint written with
    // the group being acknowledged right now may not be provable for a moment.
    let served = log.durable_size();
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
