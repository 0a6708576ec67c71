//! The simulator ([`util`]) and the protocol cores run in it ([`sync_sim`]).

mod sync_sim;
mod util;
