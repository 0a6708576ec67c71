//! The receiver's side of sync: one [`SyncSession`] per sync (checkpoint, then bundles, pages
//! or nothing), a [`BundleReader`] per bundle stream, a [`FollowSession`] around repeated syncs,
//! and [`replica`]: what a receiver does with the events on its replica.

pub mod bundle;
pub mod error;
pub mod filtered;
pub mod follow;
pub mod replica;
pub mod session;

#[cfg(test)]
mod tests;

pub use bundle::{BundleReader, ReceivedBundle};
pub use error::SessionError;
pub use filtered::check_page;
pub use follow::{FollowAction, FollowSession};
pub use session::{AcceptVerdict, Event, RequestId, SessionMode, SyncSession, bundle_starts};
