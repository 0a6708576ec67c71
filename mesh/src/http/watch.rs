//! `GET /ledger/watch` (WebSocket): the live feed. One JSON text message per event:
//! `entry` for every durable entry of the watched log (own, or `?ledger=ID`), in seq order
//! with no gap, `checkpoint` when one is signed (or accepted, for a replica), and the node's
//! `replica` and `peer` events. `?from=SEQ` starts the entries there (default: the current
//! size, so only new ones); `?stream=S` keeps one stream's entries.
//!
//! Entries are read from the log, not buffered: each subscriber keeps its own position and
//! reads what became durable since, so a slow client slows only itself and never misses an
//! entry. Peer and replica events come from a bounded broadcast; a subscriber that falls
//! behind it gets a `lagged` event with the count missed.

// utoipa's path macro names parameter types with a path prefix of its own.
#![allow(unused_qualifications)]

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use onoal_engine::Log;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::ledger::log_of;
use crate::control::Event;

/// Entries read from the log per step.
const READ_CHUNK: u64 = 1024;

/// Which feed.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WatchParams {
    /// Watch the replica of this ledger instead of the own log.
    ledger: Option<String>,
    /// Only entries of this stream.
    stream: Option<String>,
    /// First seq to send (default: only entries appended from now on).
    from: Option<u64>,
}

/// The live feed (WebSocket; JSON text messages).
#[utoipa::path(get, path = "/ledger/watch", tag = "ledger", params(WatchParams),
    responses((status = 101, description = "WebSocket of Event messages", body = Event),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn watch(
    State(state): State<AppState>,
    Query(p): Query<WatchParams>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let log = log_of(&state, p.ledger.as_deref())?;
    let from = p.from.unwrap_or_else(|| log.durable_size());
    Ok(ws.on_upgrade(move |socket| feed(state, log, p.stream, from, socket)))
}

async fn send(socket: &mut WebSocket, event: &Event) -> bool {
    match serde_json::to_string(event) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => true,
    }
}

async fn feed(state: AppState, log: Log, stream: Option<String>, from: u64, mut socket: WebSocket) {
    let mut durable = state.control.node().durable_watch(&log);
    let mut events = state.control.subscribe();
    let ledger_id = log.identity().ledger_id.to_string();
    let mut next = from;
    let mut checkpoint = durable.borrow().checkpoint_size;
    loop {
        // Marked seen before reading, so a change during the reads wakes the wait below.
        let seen = *durable.borrow_and_update();
        // Entries first: everything durable past `next`, in chunks.
        let size = seen.size.max(log.durable_size());
        while next < size {
            let end = size.min(next + READ_CHUNK);
            let reader = log.clone();
            let Ok(Ok(entries)) =
                tokio::task::spawn_blocking(move || reader.range(next, end)).await
            else {
                return;
            };
            for e in &entries {
                let c = &e.entry.content;
                if stream.as_deref().is_some_and(|s| s != c.stream.as_str()) {
                    continue;
                }
                let event = Event::Entry {
                    ledger_id: ledger_id.clone(),
                    seq: e.entry.seq,
                    leaf_hash: e.leaf_hash.to_hex(),
                    stream: c.stream.as_str().to_owned(),
                    entry_type: c.entry_type.as_str().to_owned(),
                    timestamp_ms: e.entry.timestamp_ms,
                };
                if !send(&mut socket, &event).await {
                    return;
                }
            }
            next = end;
        }
        let now = seen.checkpoint_size;
        if now > checkpoint {
            checkpoint = now;
            if let Some(size) = now
                && !send(&mut socket, &Event::Checkpoint { ledger_id: ledger_id.clone(), size })
                    .await
            {
                return;
            }
        }
        tokio::select! {
            changed = durable.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            event = events.recv() => {
                let event = match event {
                    Ok(e) => e,
                    Err(RecvError::Lagged(missed)) => Event::Lagged { missed },
                    Err(RecvError::Closed) => return,
                };
                if !send(&mut socket, &event).await {
                    return;
                }
            }
            message = socket.recv() => {
                match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}
