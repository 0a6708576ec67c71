//! Quinn streams <-> frames. Every request made here has a deadline: a peer that accepts a
//! stream and never answers costs the deadline, not forever.

use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};

use crate::proto::sync::{BundleReader, ReceivedBundle, RequestId, SessionError};
use crate::proto::{PeerMisbehaved, Request, Response, encode_frame, frame_len};

/// Reads one frame, checking its length against `max` before allocating.
pub(crate) async fn read_frame(recv: &mut RecvStream, max: u32) -> Result<Vec<u8>, SessionError> {
    let mut header = [0u8; 4];
    recv.read_exact(&mut header).await.map_err(|e| SessionError::Transport(e.to_string()))?;
    let len = frame_len(header, max).map_err(SessionError::Misbehaved)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| SessionError::Transport(e.to_string()))?;
    Ok(body)
}

/// Writes one frame.
pub(crate) async fn write_frame(send: &mut SendStream, body: &[u8]) -> Result<(), SessionError> {
    let mut out = Vec::with_capacity(body.len() + 4);
    encode_frame(body, &mut out);
    send.write_all(&out).await.map_err(|e| SessionError::Transport(e.to_string()))
}

/// Opens a stream and sends `request` on it (finishing the client's side).
async fn open(conn: &Connection, request: &Request) -> Result<RecvStream, SessionError> {
    let (mut send, recv) =
        conn.open_bi().await.map_err(|e| SessionError::Transport(e.to_string()))?;
    let body = postcard::to_stdvec(request).map_err(|e| SessionError::Local(e.to_string()))?;
    write_frame(&mut send, &body).await?;
    let _ = send.finish();
    Ok(recv)
}

fn decode_response(frame: &[u8]) -> Result<Response, SessionError> {
    postcard::from_bytes(frame)
        .map_err(|e| SessionError::Misbehaved(PeerMisbehaved::UndecodableResponse(e.to_string())))
}

/// One request on its own stream, answered by one response frame (a refusal included), with no
/// deadline of its own: sessions keep the deadlines of what they send.
pub(crate) async fn request_undeadlined(
    conn: &Connection,
    request: &Request,
    max: u32,
) -> Result<Response, SessionError> {
    let mut recv = open(conn, request).await?;
    decode_response(&read_frame(&mut recv, max).await?)
}

/// One request on its own stream, answered within `deadline`.
pub(crate) async fn request(
    conn: &Connection,
    request: &Request,
    max: u32,
    deadline: Duration,
) -> Result<Response, SessionError> {
    match tokio::time::timeout(deadline, request_undeadlined(conn, request, max)).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::TimedOut {
            request: RequestId(0),
            kind: request.kind(),
            after: deadline,
        }),
    }
}

/// Largest bundle header (a count and at most 64 path hashes).
const MAX_BUNDLE_HEADER: u32 = 16 << 10;

/// A bundle request: the header, then every leaf frame, each reserved in the sync's byte
/// budget before it is read, and read through a [`BundleReader`] (which stops past its cap).
pub(crate) async fn fetch_bundle(
    conn: &Connection,
    request: &Request,
    mut reader: BundleReader,
    max: u32,
    budget: &mut super::sync_pump::Budget,
) -> Result<ReceivedBundle, SessionError> {
    let mut recv = open(conn, request).await?;
    if reader.handle_frame(read_frame(&mut recv, MAX_BUNDLE_HEADER).await?)?.is_some() {
        return Err(SessionError::Local("a bundle ended at its header".into()));
    }
    loop {
        let mut header = [0u8; 4];
        recv.read_exact(&mut header).await.map_err(|e| SessionError::Transport(e.to_string()))?;
        let len = frame_len(header, max).map_err(SessionError::Misbehaved)?;
        budget.reserve(len).await?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body).await.map_err(|e| SessionError::Transport(e.to_string()))?;
        if let Some(bundle) = reader.handle_frame(body)? {
            return Ok(bundle);
        }
    }
}
