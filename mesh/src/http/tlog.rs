//! The C2SP tlog-tiles read API of the own log and every full replica, at
//! `/tlog/{ledger}/checkpoint`, `/tlog/{ledger}/tile/{L}/{N}[.p/{W}]` and
//! `/tlog/{ledger}/tile/entries/{N}[.p/{W}]`, so that standard transparency-log clients and
//! witnesses can fetch and verify our logs without our code.
//!
//! `checkpoint` is the newest signed note whose whole tree is durable here. A hash tile is the
//! row of 32-byte hashes of tree level `8 L`; a full tile (256 hashes) never changes and is
//! cached for a year; a partial tile `.p/W` is served while at least `W` hashes of it exist
//! (a narrower tile is a prefix of a wider one). An entry bundle is each entry's leaf data (the
//! bytes its RFC 9162 leaf hash is over) behind a big-endian u16 length; an entry longer than
//! 65535 bytes cannot be written so, and its bundle answers 422 naming `/ledger/entries`
//! (docs/protocol.md).

use axum::extract::State;

use super::error::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use onoal_engine::Log;
use onoal_engine::tile::TILE_WIDTH;

use super::error::{ApiError, ErrorBody};
use super::ledger::log_of;
use super::{AppState, blocking};

/// A parsed tile path (after `tile/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TilePath {
    /// Hash tile: level, index, width (256 = full).
    Hash { level: u8, index: u64, width: usize },
    /// Entry bundle: index, width.
    Entries { index: u64, width: usize },
}

/// Parses `<N>` as C2SP writes it: 3-digit elements, all but the last prefixed with `x`.
fn parse_index(parts: &[&str]) -> Option<u64> {
    let (last, rest) = parts.split_last()?;
    let mut n: u64 = 0;
    for (i, p) in rest.iter().map(|p| p.strip_prefix('x')).chain([Some(*last)]).enumerate() {
        let p = p?;
        if p.len() != 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A leading x000 element would be a second spelling of the same index.
        if i == 0 && !rest.is_empty() && p == "000" {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(p.parse::<u64>().ok()?)?;
    }
    Some(n)
}

/// Parses `L/N[.p/W]` or `entries/N[.p/W]`.
pub(crate) fn parse_tile_path(path: &str) -> Option<TilePath> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let first = *parts.first()?;
    // `.p/W` rides on the last index element.
    let mut width = TILE_WIDTH;
    if parts.len() >= 3 && parts[parts.len() - 2].ends_with(".p") {
        let w = parts.pop()?;
        if w.is_empty() || w.starts_with('0') || !w.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        width = w.parse().ok().filter(|w| (1..TILE_WIDTH).contains(w))?;
        let n = parts.len() - 1;
        parts[n] = parts[n].strip_suffix(".p")?;
    }
    let index = parse_index(&parts[1..])?;
    if first == "entries" {
        return Some(TilePath::Entries { index, width });
    }
    if first.is_empty() || (first.len() > 1 && first.starts_with('0')) {
        return None;
    }
    let level: u8 = first.parse().ok().filter(|l| *l <= 63)?;
    Some(TilePath::Hash { level, index, width })
}

fn cache_control(width: usize) -> &'static str {
    if width == TILE_WIDTH { "public, max-age=31536000, immutable" } else { "no-cache" }
}

fn bytes_response(bytes: Vec<u8>, width: usize) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache_control(width)),
        ],
        bytes,
    )
        .into_response()
}

fn tile_not_found(path: &str) -> ApiError {
    ApiError::not_found(format!("tile {path} does not exist (yet)"))
        .hint("read the checkpoint for the tree size; the right edge is served as .p/W")
}

/// The newest checkpoint whose tree is durable here (a C2SP signed note).
#[utoipa::path(get, path = "/tlog/{ledger}/checkpoint", tag = "tlog",
    params(("ledger" = String, Path, description = "The own ledger id or a replica's")),
    responses((status = 200, description = "C2SP signed note", content_type = "text/plain"),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    Path(ledger): Path<String>,
) -> Result<Response, ApiError> {
    let log = full_log(&state, &ledger)?;
    // A log whose witnesses must cosign first serves only checkpoints carrying the quorum.
    let cap = state.control.node().published_cap(&log.identity().ledger_id).unwrap_or(u64::MAX);
    let note = blocking(move || Ok(log.latest_checkpoint_at_most(log.durable_size().min(cap))?))
        .await?
        .ok_or_else(|| ApiError::not_found("no checkpoint is stored yet"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        note.note,
    )
        .into_response())
}

fn full_log(state: &AppState, ledger: &str) -> Result<Log, ApiError> {
    let log = log_of(state, Some(ledger))?;
    if log.is_sparse() {
        return Err(ApiError::not_found(format!(
            "the replica of {ledger} is sparse (a filtered sync): it holds no tree to serve as tiles"
        )));
    }
    Ok(log)
}

/// A hash tile or an entry bundle (C2SP tlog-tiles).
#[utoipa::path(get, path = "/tlog/{ledger}/tile/{path}", tag = "tlog",
    params(("ledger" = String, Path, description = "The own ledger id or a replica's"),
           ("path" = String, Path, description = "L/N[.p/W] or entries/N[.p/W], N in C2SP's x-prefixed 3-digit elements")),
    responses((status = 200, description = "The tile's bytes", content_type = "application/octet-stream"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, description = "An entry of the bundle is longer than 65535 bytes", body = ErrorBody)))]
pub(crate) async fn tile(
    State(state): State<AppState>,
    Path((ledger, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let parsed = parse_tile_path(&path).ok_or_else(|| {
        ApiError::bad_request(format!("{path:?} is not a tile path"))
            .hint("tile/L/N[.p/W] or tile/entries/N[.p/W], N as C2SP writes it (x001/x234/067)")
    })?;
    let log = full_log(&state, &ledger)?;
    match parsed {
        TilePath::Hash { level, index, width } => {
            let row = blocking(move || Ok(log.hash_tile(level, index)?)).await?;
            match row {
                Some(mut row) if row.len() >= width * 32 => {
                    row.truncate(width * 32);
                    Ok(bytes_response(row, width))
                }
                _ => Err(tile_not_found(&path)),
            }
        }
        TilePath::Entries { index, width } => {
            let first =
                index.checked_mul(TILE_WIDTH as u64).ok_or_else(|| tile_not_found(&path))?;
            let end = first + width as u64;
            if end > log.durable_size() {
                return Err(tile_not_found(&path));
            }
            let leaves = blocking(move || Ok(log.leaf_data_range(first, end)?)).await?;
            let mut out = Vec::with_capacity(leaves.iter().map(|l| l.len() + 2).sum());
            for (i, leaf) in leaves.iter().enumerate() {
                let len = u16::try_from(leaf.len()).map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "entry_too_large",
                        format!(
                            "entry {} is {} bytes, more than a C2SP entry bundle's 16-bit length prefix can say",
                            first + i as u64,
                            leaf.len()
                        ),
                    )
                    .hint("read it from /ledger/entries/{seq} (leaf_data_b64)")
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(leaf);
            }
            Ok(bytes_response(out, width))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_parse_as_c2sp_writes_them() {
        assert_eq!(
            parse_tile_path("0/000"),
            Some(TilePath::Hash { level: 0, index: 0, width: 256 })
        );
        assert_eq!(
            parse_tile_path("0/000.p/15"),
            Some(TilePath::Hash { level: 0, index: 0, width: 15 })
        );
        assert_eq!(
            parse_tile_path("2/x001/x234/067"),
            Some(TilePath::Hash { level: 2, index: 1_234_067, width: 256 })
        );
        assert_eq!(
            parse_tile_path("entries/x001/067.p/3"),
            Some(TilePath::Entries { index: 1067, width: 3 })
        );
        for bad in [
            "",
            "0",
            "0/0",
            "0/00",
            "0/0000",
            "00/000",
            "64/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/015",
            "0/x000/001",
            "0/001/002",
            "0/x1/002",
            "entries/000.p/",
            "a/000",
            "0/000.p",
            "0/-01",
            "entries/x999/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad:?}");
        }
    }
}
