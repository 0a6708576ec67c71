//! # onoal-engine
//!
//! The embedded ledger of Onoal: one append-only, hash-chained log per data directory, stored
//! in RocksDB, hashed into an RFC 9162 Merkle tree kept as C2SP tiles, and checkpointed with
//! Ed25519-signed C2SP notes. It serves inclusion and consistency proofs, queries by stream,
//! type, subject, issuer and time, and a full audit.
//!
//! It is not a network service: the mesh (QUIC sync, discovery, trust) lives in `onoal-mesh`,
//! and the command line in `onoal`.
//!
//! ```no_run
//! use onoal_engine::{Ledger, Name, NewEntry, Oid};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ledger = Ledger::builder("./my-ledger").create(Oid::parse("oid:onoal:org:example")?)?;
//! let receipt = ledger.append(NewEntry::new(
//!     Name::stream("orders")?,
//!     Name::entry_type("order.created")?,
//!     b"{\"id\":1}".to_vec(),
//! ))?;
//! let checkpoint = ledger.checkpoint_now()?;
//! let proof = ledger.inclusion_proof(receipt.seq, checkpoint.size)?;
//! onoal_engine::merkle::verify_inclusion(
//!     receipt.seq,
//!     checkpoint.size,
//!     &receipt.leaf_hash,
//!     &proof,
//!     &checkpoint.root,
//! )?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// Layers, bottom to top (no module imports one above it):
// hash < record, merkle, checkpoint, chain < tile, identity, ids < tree < error < store
//      < log < replica < ledger < audit
#[cfg(feature = "storage")]
pub mod audit;
pub mod chain;
pub mod checkpoint;
pub mod cosignature;
#[cfg(feature = "storage")]
pub mod error;
pub mod hash;
pub mod identity;
pub mod ids;
pub mod import;
#[cfg(feature = "storage")]
pub mod ledger;
#[cfg(feature = "storage")]
pub mod log;
pub mod merkle;
pub mod record;
#[cfg(feature = "storage")]
pub mod replica;
pub(crate) mod store;
pub mod tile;
pub mod time;
pub mod tlog_proof;
pub mod tree;

#[cfg(feature = "storage")]
pub use audit::{VerifyProgress, VerifyReport};
pub use checkpoint::SignedCheckpoint;
#[cfg(feature = "storage")]
pub use error::{AppendError, OpenError, ReadError, VerifyError};
pub use hash::Hash;
pub use identity::Identity;
pub use ids::{LedgerId, LogIndex, TreeSize};
#[cfg(feature = "storage")]
pub use ledger::{AuxTable, Durability, KeyValue, Ledger, LedgerBuilder, PendingAppend, Receipt};
#[cfg(feature = "storage")]
pub use log::{Durable, Filter, Head, Log, Query, QueryPage, Shape, StoredEntry};
pub use record::{Entry, EntryRef, IssuerSignature, Name, NewEntry, Oid};
/// Whether the ledger's database in this directory writes its flush and compaction output
/// with `O_DIRECT` (probed; benchmarks give their raw RocksDB baselines the same setting).
#[cfg(feature = "storage")]
pub use store::direct_io_works;
pub use store::keys::IndexKind;

/// Internals for the fuzz targets (built with `--cfg fuzzing`); not API.
#[cfg(fuzzing)]
pub mod fuzzing {
    pub use crate::store::keys::HeadRecord;
    pub use crate::store::postings::decode_postings;
}
