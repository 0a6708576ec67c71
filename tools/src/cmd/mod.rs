//! One module per group of commands.

pub(crate) mod asset;
pub(crate) mod bench;
pub(crate) mod import;
pub(crate) mod ledger;
pub(crate) mod mesh;
pub(crate) mod node;
pub(crate) mod plot;
pub(crate) mod registry;
pub(crate) mod serve;
pub(crate) mod sim;
pub(crate) mod transfer;
pub(crate) mod trust;
pub(crate) mod verify;
pub(crate) mod witness;
