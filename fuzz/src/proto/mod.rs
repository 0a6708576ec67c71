//! `mesh/src/proto`'s pure formats (see the crate's doc).

#[path = "../../../mesh/src/proto/envelope.rs"]
pub mod envelope;
#[path = "../../../mesh/src/proto/record.rs"]
pub mod record;
