//! The protocol without I/O: frames, messages, the ledger certificate, the handshake checks, the
//! receiver's sessions and the server's decisions. Nothing here owns a socket, a task or a
//! clock: time comes in as `now`, bytes and messages come in through `handle_*`, and what to
//! send or do comes out of `poll_*` ([`crate::net`] moves the bytes; the simulator in
//! `proto/tests` moves them in memory).
//!
//! Wire format (docs/protocol.md): every message is a frame `len (u32 BE) || body`, with `len`
//! checked against a cap *before* anything is allocated ([`frame`]). Bodies are postcard
//! ([`message`]). Each request opens its own bidirectional QUIC stream: one request frame,
//! then the response frame; a bundle response is followed by one raw frame per entry.
//!
//! The state machines and their call order:
//!
//! - [`sync::SyncSession`] (receiver): `new` → loop { send `poll_transmit`, handle
//!   `poll_event` (accept the checkpoint, check a fork, commit bundles or a page), feed
//!   `handle_response` / `handle_bundle` / `handle_failure`, report `checkpoint_accepted` /
//!   `fork_checked` / `committed` / `page_committed`, call `handle_timeout` at `poll_timeout` }
//!   until `Done`, `NothingToSync` or `Failed`.
//! - [`sync::BundleReader`] (receiver, per bundle stream): `handle_frame` for each frame until
//!   it yields the leaves and path (verification is the engine's, on a blocking thread).
//! - [`sync::FollowSession`] (receiver, live follow): `poll_action(now)` says connect, sync,
//!   wait for a newer checkpoint or sleep; report with `connected`, `synced`,
//!   `wait_answered`, `failed`.
//! - [`serve::ServeCore`] (server): `handle_request` authorises a request and answers it or
//!   returns a [`serve::Plan`]; [`serve::execute`] runs a plan over the engine's reads
//!   (blocking), and [`serve::wait_satisfied`] says when a long poll can be answered.
//! - [`handshake`]: the checks on a peer's `Hello` and certificates, and which identity to
//!   replicate a ledger under.

pub mod cert;
pub mod envelope;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod misbehaved;
pub mod record;
pub mod routed;
pub mod serve;
pub mod sync;

#[cfg(test)]
mod tests;

pub use cert::{CertificateError, LedgerCertificate};
pub use frame::{FrameDecoder, encode_frame, frame_len};
pub use message::{ErrorCode, ProvenEntryWire, Request, Response};
pub use misbehaved::PeerMisbehaved;
pub use onoal_engine::Filter;

/// ALPN of the sync protocol, version 1.
pub const ALPN_SYNC: &[u8] = b"onoal-sync/1";

/// Largest frame a peer may send, unless configured otherwise. Entries travel one per frame,
/// so this also bounds an entry's leaf data (payload limit 1 MiB by default).
pub const DEFAULT_MAX_FRAME: u32 = 4 << 20;

/// Largest request frame a server reads (requests carry ids, sizes and filters only).
pub const MAX_REQUEST_FRAME: u32 = 16 << 10;

/// Longest wait a follower may ask for in [`Request::WaitCheckpoint`].
pub const MAX_WAIT_MS: u32 = 30_000;

/// Most entries one page of a filtered sync holds.
pub const MAX_PAGE_ENTRIES: u32 = 1000;

/// Most leaf bytes in one page of a filtered sync (the first entry is always sent).
pub const MAX_PAGE_BYTES: usize = 2 << 20;
