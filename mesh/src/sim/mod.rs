//! The mesh simulator behind `onoal sim`: thousands of nodes running the real sans-I/O cores
//! (the DHT with its peer records, SWIM, routing and forwarding) in memory, with a virtual clock, seeded latency, loss,
//! churn and a partition that heals. Same seed, same report (apart from `wall_s` and
//! `peak_rss_mb`, which measure the machine).

pub mod net;

pub mod routing;
mod scenario;
pub mod swim;

pub use scenario::{SimConfig, SimReport, run};
