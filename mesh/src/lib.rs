//! # onoal-mesh
//!
//! Ledgers on the network. A [`Node`] puts one ledger on a QUIC endpoint (TLS 1.3 with RFC 7250
//! raw Ed25519 keys: the ledger's key *is* its transport identity), serves its own log and the
//! replicas it holds to the peers its operator pinned, and syncs other ledgers' logs into local
//! replicas — verifying every checkpoint against the origin's pinned key and every entry against
//! a checkpoint before anything is written.
//!
//! A running node is driven and observed through its control plane: [`control::Control`]
//! (follows, metrics, the event feed, the JSON views), served by [`http`] (axum, OpenAPI, the
//! C2SP tlog-tiles read API, a WebSocket feed, the dashboard) and [`grpc`] (tonic, streaming
//! append and watch).
//!
//! It is not the ledger (that is `onoal-engine`: storage, proofs, the audit) and not the
//! command line (`onoal`). Discovery is here: signed mesh messages ([`proto::envelope`]), peer
//! records ([`proto::record`]), a Kademlia DHT ([`dht`]), heartbeat membership ([`membership`]),
//! driven over the same endpoint by [`Node::serve_with`], and the simulator behind `onoal sim`
//! ([`sim`]). Routing, trust and witnesses are being built on the same layering.
//!
//! Layers: [`proto`] is the protocol without I/O — frames, messages, certificates, the
//! receiver's sessions ([`proto::sync`]) and the server's decisions ([`proto::serve`]); each is a
//! state machine that takes events and time and returns what to do, and `proto`'s own tests
//! run them in a simulated network. [`net`] is the thin quinn driver around them. [`peer`]
//! keeps pinned peers in the ledger's database; [`tls`] configures rustls with raw keys.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use onoal_engine::identity::{SecretKey, key_path};
//! use onoal_engine::{Ledger, LedgerId};
//! use onoal_mesh::{Node, NodeConfig, SyncMode};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let ledger = Arc::new(Ledger::builder("./b").open()?);
//! let key = SecretKey::read_file(&key_path(std::path::Path::new("./b")))?;
//! let node = Node::bind(ledger, key, "127.0.0.1:0".parse()?, NodeConfig::default())?;
//! // Pin the source ledger's key and address, then sync its log, verified, into a replica.
//! let source: LedgerId = "0b5e3c1a-2f4d-4c6e-9a8b-1c2d3e4f5a6b".parse()?;
//! let key_hex = "…the source's public key…";
//! let key: [u8; 32] = hex::decode(key_hex)?.try_into().map_err(|_| "32 bytes")?;
//! node.peers().pin(source, key, Some("127.0.0.1:7400".into()))?;
//! let summary = node.sync(source, None, SyncMode::Incremental, &|_| {}).await?;
//! println!("held {} entries, verified against checkpoint {}", summary.to_size, summary.checkpoint_size);
//! node.close().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod control;
pub mod dht;
pub mod grpc;
pub mod http;
pub mod id;
pub mod membership;
pub mod net;
pub mod outbox;
pub mod peer;
pub mod proto;
pub mod registry;
pub mod routing;
pub mod sim;
pub mod swim;
pub mod ticket;
pub mod tls;
pub mod transfer;
pub mod trust;
pub mod witness;

pub use id::{LedgerId, PeerId};
pub use net::{Node, NodeConfig, SyncError, SyncMode, SyncProgress, SyncSummary};
pub use proto::PeerMisbehaved;
