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

pub mod checkpoint;
#[cfg(feature = "storage")]
pub mod error;
pub mod hash;
pub mod identity;
pub mod import;
#[cfg(feature = "storage")]
pub mod ledger;
pub mod merkle;
pub mod record;
#[cfg(feature = "storage")]
pub mod replica;
#[cfg(feature = "storage")]
mod sequencer;
pub mod store;
pub mod tile;
#[cfg(feature = "storage")]
pub mod verify;

#[cfg(feature = "storage")]
pub use error::{AppendError, OpenError, ReadError, VerifyError};
pub use hash::Hash;
#[cfg(feature = "storage")]
pub use ledger::{
    Durability, Head, Identity, Ledger, LedgerBuilder, Log, MeshTable, PendingAppend, Query,
    QueryPage, Receipt, SignedCheckpoint, StoredEntry,
};
pub use record::{Entry, EntryRef, Name, NewEntry, Oid};
#[cfg(feature = "storage")]
pub use verify::{VerifyProgress, VerifyReport};
