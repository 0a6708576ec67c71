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

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};

use super::error::extract::Query;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use onoal_engine::Log;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::ledger::log_of;
use crate::control::Event;
use crate::control::feed::LogFeed;

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
    let mut entries = LogFeed::new(&state.control, log, Some(from), stream);
    let mut events = state.control.subscribe();
    loop {
        let event = tokio::select! {
            e = entries.next() => match e {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the feed cannot read the log");
                    return;
                }
                None => return,
            },
            e = events.recv() => match e {
                Ok(e) => e,
                Err(RecvError::Lagged(missed)) => Event::Lagged { missed },
                Err(RecvError::Closed) => return,
            },
            message = socket.recv() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            },
        };
        if !send(&mut socket, &event).await {
            return;
        }
    }
}
