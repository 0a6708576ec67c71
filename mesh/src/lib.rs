//! # onoal-mesh
//!
//! Ledgers on the network: identity on the wire (TLS 1.3 with RFC 7250 raw Ed25519 public
//! keys over QUIC), and verified, resumable sync of other ledgers' logs into local replicas.
//!
//! - [`proto`]: frames, messages, the ledger certificate, the bundle plan (no I/O).
//! - [`net`]: the quinn driver ([`net::Node`]): serves the own log and replicas to pinned
//!   peers, syncs and follows replicas.
//! - [`peer`]: pinned peers in the ledger's `peers` table.
//! - [`tls`]: rustls configuration with raw public keys.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod net;
pub mod peer;
pub mod proto;
pub mod tls;

pub use net::{Node, NodeConfig, SyncError, SyncMode, SyncProgress, SyncSummary};
pub use proto::PeerMisbehaved;
