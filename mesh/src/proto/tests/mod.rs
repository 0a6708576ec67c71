//! The sync cores in the simulator ([`crate::sim::net`]).

mod sync_sim;
