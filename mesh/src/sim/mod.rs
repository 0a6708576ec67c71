//! The mesh simulator behind `onoal sim`: thousands of nodes running the real sans-I/O cores
//! (today the DHT with its peer records) in memory, with a virtual clock, seeded latency, loss,
//! churn and a partition that heals. Same seed, same report (apart from `wall_s` and
//! `peak_rss_mb`, which measure the machine).

pub mod net;

mod scenario;
pub mod swim;

pub use scenario::{SimConfig, SimReport, run};
