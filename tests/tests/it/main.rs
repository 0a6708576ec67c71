//! Onoal integration tests: real RocksDB on disk, the real `onoal` binary in child processes.

mod append;
mod cli;
mod crash;
mod damage;
mod dashboard;
mod directory;
mod discovery;
mod disk_full;
mod faults;
mod forks;
mod grpc;
mod http;
mod ledger_ops;
mod limits;
mod malicious;
mod open_errors;
mod proofs;
mod queries;
mod replica;
mod silent;
mod sim;
mod sync;
mod tamper;
mod torn_wal;
mod trust;
mod util;
