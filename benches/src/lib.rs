//! The workloads behind `onoal bench`, each measured next to its baseline in the same run.
//!
//! Every workload returns one JSON object: the parameters, the figure, the baseline (the limit
//! of the layer underneath, measured on the same machine in the same process) and
//! `ratio = figure / baseline`. Real parts only: RocksDB on disk in a temporary directory (or a
//! directory the caller names), never an in-memory store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use onoal_engine::hash::{Hash, leaf_hash, node_hash};
use onoal_engine::merkle::{inclusion_proof_len, verify_consistency, verify_inclusion};
use onoal_engine::{Durability, Ledger, Name, NewEntry, Oid};
use rayon::prelude::*;
use serde_json::{Value, json};

/// Any error of a workload, as text for the CLI.
pub type BenchResult<T> = Result<T, String>;

mod api;
mod asset;
mod route;
mod sync;
mod transfer;
mod witness;
pub use api::{grpc, http};
pub use asset::asset;
pub use route::route;
pub use sync::{sync, sync_fan_out, sync_relay};
pub use transfer::transfer;
pub use witness::witness;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A small deterministic generator (xorshift64*), so runs are repeatable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator; seed 0 is replaced by a constant.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(0x9e37_79b9_7f4a_7c15))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Peak resident set size of this process in MiB (VmHWM), if readable.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak RSS counter (Linux `clear_refs` 5); ignored where unsupported.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The value at quantile `p` (0 to 1) of `sorted` (nearest rank; 0 when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Latency percentiles in microseconds.
fn percentiles_us(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

pub(crate) fn bench_entry(i: u64, payload: &[u8]) -> NewEntry {
    let stream = ["orders", "payments", "audit", "events"][(i % 4) as usize];
    // Fixed valid names.
    NewEntry::new(
        Name::stream(stream).unwrap_or_else(|_| unreachable!()),
        Name::entry_type("bench.event").unwrap_or_else(|_| unreachable!()),
        payload.to_vec(),
    )
}

pub(crate) fn payloads(n: usize, size: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let mut p = vec![0u8; size];
            rng.fill(&mut p);
            p
        })
        .collect()
}

/// Parameters of `onoal bench append`.
#[derive(Clone, Debug)]
pub struct AppendParams {
    /// Entries to append.
    pub entries: u64,
    /// Payload bytes per entry.
    pub payload: usize,
    /// Entries per batch (batch mode) and per baseline WriteBatch.
    pub batch: usize,
    /// Durability of both the ledger and the baseline.
    pub durability: Durability,
    /// 0 or 1: one thread appending batches; W > 1: W threads appending single entries.
    pub writers: usize,
}

/// The raw baselines' database at `dir`: the ledger's entries options (LZ4, 64 MiB memtable,
/// flush and compaction output with direct I/O where the file system allows it).
fn raw_db(dir: &Path) -> BenchResult<rocksdb::DB> {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_write_buffer_size(64 << 20);
    if onoal_engine::direct_io_works(dir) {
        opts.set_use_direct_io_for_flush_and_compaction(true);
    }
    rocksdb::DB::open(&opts, dir).map_err(err)
}

/// Raw RocksDB WriteBatch puts of the same payload bytes under sequential u64 keys: the
/// storage limit. Returns entries per second.
pub fn raw_rocksdb_append(
    dir: &Path,
    entries: u64,
    payload: usize,
    batch: usize,
    durability: Durability,
) -> BenchResult<f64> {
    let db = raw_db(dir)?;
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(durability == Durability::Sync);
    let pool = payloads(1024, payload, 7);
    let started = Instant::now();
    let mut seq = 0u64;
    while seq < entries {
        let n = (batch as u64).min(entries - seq);
        let mut wb = rocksdb::WriteBatch::default();
        for i in seq..seq + n {
            wb.put(i.to_be_bytes(), &pool[(i % 1024) as usize]);
        }
        db.write_opt(wb, &wo).map_err(err)?;
        seq += n;
    }
    Ok(entries as f64 / started.elapsed().as_secs_f64())
}

/// Raw RocksDB with `writers` threads each putting single entries (sequential u64 keys from
/// one counter) in `durability`: RocksDB's own group commit, the storage limit of many writers.
/// Returns entries per second.
pub fn raw_rocksdb_writers(
    dir: &Path,
    entries: u64,
    payload: usize,
    writers: usize,
    durability: Durability,
) -> BenchResult<f64> {
    let db = raw_db(dir)?;
    let pool = payloads(1024, payload, 7);
    let next = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                s.spawn(|| {
                    let mut wo = rocksdb::WriteOptions::default();
                    wo.set_sync(durability == Durability::Sync);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= entries {
                            return Ok::<(), String>(());
                        }
                        db.put_opt(i.to_be_bytes(), &pool[(i % 1024) as usize], &wo)
                            .map_err(err)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "a writer panicked".to_owned())?)
    })?;
    Ok(entries as f64 / started.elapsed().as_secs_f64())
}

/// `onoal bench append`.
pub fn append(p: &AppendParams) -> BenchResult<Value> {
    let tmp = tempfile::tempdir().map_err(err)?;
    let raw = tmp.path().join("raw");
    let baseline = if p.writers <= 1 {
        raw_rocksdb_append(&raw, p.entries, p.payload, p.batch, p.durability)?
    } else {
        raw_rocksdb_writers(&raw, p.entries, p.payload, p.writers, p.durability)?
    };
    reset_peak_rss();
    let ledger = Ledger::builder(tmp.path().join("ledger"))
        .durability(p.durability)
        .create(Oid::parse("oid:onoal:bench:append").map_err(err)?)
        .map_err(err)?;
    let pool = payloads(1024, p.payload, 11);
    let mut latencies = Vec::new();
    let started = Instant::now();
    if p.writers <= 1 {
        // One caller, batches of `batch`, four groups in flight (as `onoal import`).
        let mut in_flight = std::collections::VecDeque::new();
        let mut seq = 0u64;
        while seq < p.entries {
            let n = (p.batch as u64).min(p.entries - seq);
            let batch: Vec<NewEntry> =
                (seq..seq + n).map(|i| bench_entry(i, &pool[(i % 1024) as usize])).collect();
            in_flight.push_back((Instant::now(), ledger.submit_batch(batch).map_err(err)?));
            while in_flight.len() > 4 {
                if let Some((t, pending)) = in_flight.pop_front() {
                    pending.wait().map_err(err)?;
                    latencies.push(t.elapsed());
                }
            }
            seq += n;
        }
        for (t, pending) in in_flight {
            pending.wait().map_err(err)?;
            latencies.push(t.elapsed());
        }
    } else {
        let next = AtomicU64::new(0);
        let all: Vec<Vec<Duration>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..p.writers)
                .map(|_| {
                    s.spawn(|| {
                        let mut lat = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= p.entries {
                                break;
                            }
                            let t = Instant::now();
                            if ledger.append(bench_entry(i, &pool[(i % 1024) as usize])).is_err() {
                                break;
                            }
                            lat.push(t.elapsed());
                        }
                        lat
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        latencies = all.into_iter().flatten().collect();
        if latencies.len() as u64 != p.entries {
            return Err(format!("only {} of {} appends succeeded", latencies.len(), p.entries));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    drop(ledger);
    let rss = peak_rss_mb();
    let figure = p.entries as f64 / secs;
    let (p50, p99) = percentiles_us(&mut latencies);
    Ok(json!({
        "workload": "append",
        "entries": p.entries,
        "payload_bytes": p.payload,
        // Many writers append single entries: their batch is 1 whatever --batch says.
        "batch": if p.writers <= 1 { p.batch } else { 1 },
        "writers": p.writers.max(1),
        "durability": format!("{:?}", p.durability).to_lowercase(),
        "entries_per_s": figure,
        "mb_per_s": figure * p.payload as f64 / 1e6,
        "p50_us": p50,
        "p99_us": p99,
        "latency_of": if p.writers <= 1 { "one batch, submit to durable" } else { "one append, call to durable" },
        "peak_rss_mb": rss,
        "baseline": if p.writers <= 1 {
            "raw RocksDB WriteBatch puts, same payloads, batch and durability"
        } else {
            "raw RocksDB single puts from as many threads, same payloads and durability"
        },
        "baseline_entries_per_s": baseline,
        "ratio": figure / baseline,
    }))
}

/// Opens the ledger at `dir` if it holds at least `entries` entries, or builds it (buffered
/// appends of 256-byte payloads, batches of 1000). Returns the ledger and whether it was built.
pub fn ledger_of(dir: &Path, entries: u64) -> BenchResult<(Ledger, bool)> {
    if dir.join("db").is_dir() {
        let l = Ledger::builder(dir).cache_bytes(256 << 20).open().map_err(err)?;
        let size = l.head().map_err(err)?.size;
        if size >= entries {
            return Ok((l, false));
        }
        return Err(format!(
            "{} holds {size} entries, fewer than {entries}; pass another --dir",
            dir.display()
        ));
    }
    let l = Ledger::builder(dir)
        .durability(Durability::Buffered)
        .cache_bytes(256 << 20)
        .create(Oid::parse("oid:onoal:bench:ledger").map_err(err)?)
        .map_err(err)?;
    let pool = payloads(1024, 256, 3);
    let mut in_flight = std::collections::VecDeque::new();
    let mut seq = 0;
    while seq < entries {
        let n = 1000.min(entries - seq);
        let batch = (seq..seq + n).map(|i| bench_entry(i, &pool[(i % 1024) as usize])).collect();
        in_flight.push_back(l.submit_batch(batch).map_err(err)?);
        while in_flight.len() > 4 {
            if let Some(p) = in_flight.pop_front() {
                p.wait().map_err(err)?;
            }
        }
        seq += n;
    }
    for p in in_flight {
        p.wait().map_err(err)?;
    }
    Ok((l, true))
}

fn work_dir(dir: Option<&Path>) -> BenchResult<(Option<tempfile::TempDir>, PathBuf)> {
    match dir {
        Some(d) => Ok((None, d.to_owned())),
        None => {
            let t = tempfile::tempdir().map_err(err)?;
            let p = t.path().join("ledger");
            Ok((Some(t), p))
        }
    }
}

/// Node hashes per second on one core: the hashing limit of proofs.
fn node_hashes_per_s() -> f64 {
    let mut h = leaf_hash(b"seed");
    let n = 400_000;
    let started = Instant::now();
    for _ in 0..n {
        h = node_hash(&h, &h);
    }
    std::hint::black_box(h);
    n as f64 / started.elapsed().as_secs_f64()
}

/// `onoal bench proof`.
pub fn proof(entries: u64, dir: Option<&Path>, proofs: u64) -> BenchResult<Value> {
    let (_tmp, path) = work_dir(dir)?;
    let (ledger, _) = ledger_of(&path, entries)?;
    let cp = ledger.checkpoint_now().map_err(err)?;
    // The signature is checked once; proofs are then checked against the checkpoint's root.
    ledger.identity().verifier().open(cp.note.as_bytes()).map_err(err)?;
    let (size, root) = (cp.size, cp.root);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);

    // Warm the cache with one pass, then measure generation on all cores.
    let gen_inclusion = |count: u64, seed: u64| -> BenchResult<(f64, Vec<Duration>)> {
        let started = Instant::now();
        let lat: Vec<Vec<Duration>> = (0..threads as u64)
            .into_par_iter()
            .map(|t| {
                let mut rng = Rng::new(seed + t);
                let mut lat = Vec::with_capacity((count / threads as u64) as usize);
                for _ in 0..count / threads as u64 {
                    let seq = rng.below(size);
                    let t0 = Instant::now();
                    let p = ledger.inclusion_proof(seq, size).map_err(err)?;
                    lat.push(t0.elapsed());
                    std::hint::black_box(p);
                }
                Ok(lat)
            })
            .collect::<BenchResult<_>>()?;
        let mut lat: Vec<Duration> = lat.into_iter().flatten().collect();
        let ops = lat.len() as f64 / started.elapsed().as_secs_f64();
        lat.shrink_to_fit();
        Ok((ops, lat))
    };
    gen_inclusion(proofs.min(20_000), 1)?;
    let (gen_ops, mut gen_lat) = gen_inclusion(proofs, 2)?;
    let (gen_p50, gen_p99) = percentiles_us(&mut gen_lat);

    // Verification on one core.
    let mut rng = Rng::new(5);
    let samples: Vec<(u64, Hash, Vec<Hash>)> = (0..10_000.min(proofs))
        .map(|_| {
            let seq = rng.below(size);
            let leaf = ledger.entry(seq).map_err(err)?.leaf_hash;
            Ok((seq, leaf, ledger.inclusion_proof(seq, size).map_err(err)?))
        })
        .collect::<BenchResult<_>>()?;
    let mut ver_lat = Vec::with_capacity(samples.len());
    let started = Instant::now();
    for (seq, leaf, p) in &samples {
        let t0 = Instant::now();
        verify_inclusion(*seq, size, leaf, p, &root).map_err(err)?;
        ver_lat.push(t0.elapsed());
    }
    let ver_ops = samples.len() as f64 / started.elapsed().as_secs_f64();
    let (ver_p50, ver_p99) = percentiles_us(&mut ver_lat);

    // Consistency proofs between random sizes.
    let mut rng = Rng::new(9);
    let pairs: Vec<(u64, u64)> = (0..2_000)
        .map(|_| {
            let a = 1 + rng.below(size);
            let b = 1 + rng.below(size);
            (a.min(b), a.max(b))
        })
        .collect();
    let started = Instant::now();
    let cons: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = pairs
        .par_iter()
        .map(|&(a, b)| {
            let p = ledger.consistency_proof(a, b).map_err(err)?;
            Ok((a, b, ledger.root_at(a).map_err(err)?, ledger.root_at(b).map_err(err)?, p))
        })
        .collect::<BenchResult<_>>()?;
    let cons_gen_ops = cons.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for (a, b, ra, rb, p) in &cons {
        verify_consistency(*a, *b, ra, rb, p).map_err(err)?;
    }
    let cons_ver_ops = cons.len() as f64 / started.elapsed().as_secs_f64();

    // Baseline: the node hashes one inclusion proof needs, timed alone on one core.
    let avg_len = samples.iter().map(|(s, _, _)| inclusion_proof_len(*s, size)).sum::<usize>()
        as f64
        / samples.len().max(1) as f64;
    let baseline = node_hashes_per_s() / avg_len.max(1.0);
    Ok(json!({
        "workload": "proof",
        "entries": size,
        "threads": threads,
        "inclusion_generation_ops_per_s": gen_ops,
        "inclusion_generation_p50_us": gen_p50,
        "inclusion_generation_p99_us": gen_p99,
        "inclusion_verification_ops_per_s": ver_ops,
        "inclusion_verification_p50_us": ver_p50,
        "inclusion_verification_p99_us": ver_p99,
        "consistency_generation_ops_per_s": cons_gen_ops,
        "consistency_verification_ops_per_s": cons_ver_ops,
        "mean_proof_hashes": avg_len,
        "baseline": "SHA-256 node hashes of one inclusion proof, one core",
        "baseline_ops_per_s": baseline,
        "ratio": ver_ops / baseline,
        "ratio_generation": gen_ops / baseline,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// A raw RocksDB scan of the ledger's entries: the own log's `entries` column family of the
/// database at `db`, opened read-only, split into one key range per core, every value touched.
/// Returns entries per second and how many entries it read.
pub fn raw_rocksdb_scan(db: &Path, threads: usize) -> BenchResult<(f64, u64)> {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, db).map_err(err)?;
    let db = rocksdb::DB::open_cf_for_read_only(&opts, db, cfs, false).map_err(err)?;
    let cf = db.cf_handle("entries").ok_or("the database has no entries column family")?;
    // The own log is log 0: keys are `0u32 BE || seq u64 BE`.
    let last = {
        let mut it = db.raw_iterator_cf(&cf);
        it.seek_for_prev([0u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        match it.key() {
            Some(k) if k.len() == 12 && k[..4] == [0; 4] => {
                u64::from_be_bytes(k[4..].try_into().map_err(err)?) + 1
            }
            _ => 0,
        }
    };
    let key = |seq: u64| {
        let mut k = vec![0u8; 12];
        k[4..].copy_from_slice(&seq.to_be_bytes());
        k
    };
    let per = last.div_ceil(threads.max(1) as u64).max(1);
    let started = Instant::now();
    let (count, bytes) = (0..threads.max(1) as u64)
        .into_par_iter()
        .map(|t| {
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_iterate_upper_bound(key(((t + 1) * per).min(last)));
            let mut it = db.raw_iterator_cf_opt(&cf, ro);
            it.seek(key(t * per));
            let (mut count, mut bytes) = (0u64, 0u64);
            while let Some(v) = it.value() {
                count += 1;
                bytes = bytes.wrapping_add(v.len() as u64 + u64::from(v[0]));
                it.next();
            }
            it.status().map_err(err)?;
            Ok((count, bytes))
        })
        .collect::<BenchResult<Vec<_>>>()?
        .into_iter()
        .fold((0, 0u64), |(c, b), (c2, b2)| (c + c2, b.wrapping_add(b2)));
    std::hint::black_box(bytes);
    Ok((count as f64 / started.elapsed().as_secs_f64(), count))
}

/// `onoal bench verify`.
pub fn verify(entries: u64, dir: Option<&Path>) -> BenchResult<Value> {
    let (_tmp, path) = work_dir(dir)?;
    let (ledger, _) = ledger_of(&path, entries)?;
    // The raw scan opens the same database read-only while the ledger is closed, before and
    // after the audit (the better of the two counts, so a cold first read does not flatter
    // the ratio).
    drop(ledger);
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let (scan_before, scanned) = raw_rocksdb_scan(&path.join("db"), threads)?;
    let ledger = Ledger::builder(&path).cache_bytes(256 << 20).open().map_err(err)?;
    let started = Instant::now();
    let report = ledger.verify(&|_| {}).map_err(err)?;
    let secs = started.elapsed().as_secs_f64();
    let figure = report.entries as f64 / secs;
    drop(ledger);
    let (scan_after, _) = raw_rocksdb_scan(&path.join("db"), threads)?;
    let scan = scan_before.max(scan_after);
    if scanned != report.entries {
        return Err(format!("the raw scan read {scanned} entries, the audit {}", report.entries));
    }
    let ledger = Ledger::builder(&path).open().map_err(err)?;
    // Baseline: SHA-256 of the same leaf bytes on all cores (a sample of real leaves, hashed
    // as many times as the log has entries).
    let sample: Vec<Vec<u8>> = ledger
        .range(0, report.entries.min(65_536))
        .map_err(err)?
        .into_iter()
        .map(|e| e.leaf_data)
        .collect();
    let started = Instant::now();
    let n = report.entries as usize;
    let acc = (0..n)
        .into_par_iter()
        .map(|i| leaf_hash(&sample[i % sample.len().max(1)]).0[0] as u64)
        .sum::<u64>();
    std::hint::black_box(acc);
    let baseline = n as f64 / started.elapsed().as_secs_f64();
    Ok(json!({
        "workload": "verify",
        "entries": report.entries,
        "tiles": report.tiles,
        "checkpoints": report.checkpoints,
        "seconds": secs,
        "entries_per_s": figure,
        "baseline": "raw RocksDB scan of the same entries (read-only, one key range per core)",
        "baseline_entries_per_s": scan,
        "ratio": figure / scan,
        "sha256_leaf_bytes_entries_per_s": baseline,
        "ratio_sha256": figure / baseline,
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// `onoal bench open`.
pub fn open(entries: u64, dir: Option<&Path>) -> BenchResult<Value> {
    let (_tmp, path) = work_dir(dir)?;
    drop(ledger_of(&path, entries)?);
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = Ledger::builder(&path).open().map_err(err)?;
        let size = l.head().map_err(err)?.size;
        ours.push(t.elapsed());
        std::hint::black_box(size);
        drop(l);
        let t = Instant::now();
        let opts = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&opts, path.join("db")).map_err(err)?;
        let db = rocksdb::DB::open_cf(&opts, path.join("db"), &cfs).map_err(err)?;
        raw.push(t.elapsed());
        drop(db);
    }
    ours.sort_unstable();
    raw.sort_unstable();
    let (ours_ms, raw_ms) = (ours[2].as_secs_f64() * 1e3, raw[2].as_secs_f64() * 1e3);
    let disk = disk_use(&path.join("db"), entries)?;
    Ok(json!({
        "workload": "open",
        "entries": entries,
        "disk_bytes_per_entry": disk["bytes_per_entry"],
        "disk": disk,
        "open_ms": ours_ms,
        "ops_per_s": 1e3 / ours_ms,
        "baseline": "raw RocksDB open of the same directory and column families",
        "baseline_open_ms": raw_ms,
        "baseline_ops_per_s": 1e3 / raw_ms,
        "ratio": raw_ms / ours_ms,
    }))
}

/// Bytes the database at `db` takes on disk, in total and per entry of a log of `entries`:
/// every file of the directory, and the SST bytes of each column family (RocksDB's
/// `total-sst-files-size`), after a flush and a full compaction (what a long-lived ledger
/// settles to; the WAL is then empty).
pub fn disk_use(db: &Path, entries: u64) -> BenchResult<Value> {
    let opts = rocksdb::Options::default();
    let cfs = rocksdb::DB::list_cf(&opts, db).map_err(err)?;
    // The files are rewritten as the ledger writes them (engine/src/store: LZ4 but for the
    // tiles, bloom filters of 10 bits per key), so a ledger measured with `--dir` keeps its
    // format and the figure is the ledger's own.
    let descriptors = cfs.iter().map(|name| {
        let mut o = rocksdb::Options::default();
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        o.set_block_based_table_factory(&table);
        o.set_compression_type(if name == "tiles" {
            rocksdb::DBCompressionType::None
        } else {
            rocksdb::DBCompressionType::Lz4
        });
        rocksdb::ColumnFamilyDescriptor::new(name, o)
    });
    let raw = rocksdb::DB::open_cf_descriptors(&opts, db, descriptors).map_err(err)?;
    let mut families = serde_json::Map::new();
    for name in &cfs {
        let Some(cf) = raw.cf_handle(name) else { continue };
        raw.flush_cf(&cf).map_err(err)?;
        raw.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
        let bytes = raw
            .property_int_value_cf(&cf, "rocksdb.total-sst-files-size")
            .map_err(err)?
            .unwrap_or(0);
        if bytes > 0 {
            families.insert(name.clone(), json!(bytes as f64 / entries.max(1) as f64));
        }
    }
    drop(raw);
    let mut total = 0u64;
    for f in std::fs::read_dir(db).map_err(err)? {
        total += f.map_err(err)?.metadata().map_err(err)?.len();
    }
    Ok(json!({
        "bytes": total,
        "bytes_per_entry": total as f64 / entries.max(1) as f64,
        "sst_bytes_per_entry_by_family": families,
    }))
}

/// Web of trust from one ledger to all others over a random graph of `nodes` ledgers and
/// `edges` trust edges (levels 0.3 to 1.0), depth 6, one core: the median of 5 runs, next to a
/// breadth-first walk of the same edges (the floor for anything that looks at each edge).
pub fn trust(nodes: usize, edges: usize, seed: u64) -> BenchResult<Value> {
    use onoal_engine::LedgerId;
    use onoal_mesh::trust::TrustGraph;
    if nodes < 2 {
        return Err("give at least 2 nodes".into());
    }
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let ids: Vec<LedgerId> = (0..nodes)
        .map(|i| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            LedgerId::from_bytes(b)
        })
        .collect();
    let mut graph = TrustGraph::new(ids[0]);
    let mut adjacency: Vec<Vec<usize>> = vec![Vec::new(); nodes];
    for _ in 0..edges {
        let (f, t) = ((next() % nodes as u64) as usize, (next() % nodes as u64) as usize);
        if f == t {
            continue;
        }
        let level = 0.3 + 0.7 * (next() % 1_000) as f64 / 1_000.0;
        graph.set_edge(ids[f], ids[t], level, None);
        adjacency[f].push(t);
    }
    let mut ours = Vec::new();
    let mut reached = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let derived = graph.derive(0, 6);
        ours.push(t.elapsed());
        reached = derived.len();
    }
    let mut walk = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut seen = vec![false; nodes];
        let mut queue = std::collections::VecDeque::from([0usize]);
        seen[0] = true;
        while let Some(at) = queue.pop_front() {
            for &to in &adjacency[at] {
                if !seen[to] {
                    seen[to] = true;
                    queue.push_back(to);
                }
            }
        }
        walk.push(t.elapsed());
        std::hint::black_box(&seen);
    }
    ours.sort();
    walk.sort();
    let (ms, walk_ms) = (ours[2].as_secs_f64() * 1e3, walk[2].as_secs_f64() * 1e3);
    let (check_ns, refusal_ns, lookup_ns) = policy_check()?;
    Ok(json!({
        "bench": "trust",
        "nodes": nodes,
        "edges": graph.len(),
        "reached": reached,
        "web_of_trust_ms": (ms * 100.0).round() / 100.0,
        "baseline_bfs_ms": (walk_ms * 1000.0).round() / 1000.0,
        "ratio_to_bfs": (ms / walk_ms.max(1e-9) * 10.0).round() / 10.0,
        "target_ms": 100,
        "policy_check_ns": (check_ns * 10.0).round() / 10.0,
        "policy_refusal_ns": (refusal_ns * 10.0).round() / 10.0,
        "baseline_map_lookup_ns": (lookup_ns * 10.0).round() / 10.0,
        "policy_check_target_ns": 1000,
    }))
}

/// The serving policy's decision per request, as the server makes it (`TrustStore::admits`
/// on a ledger with 200 pinned peers and a policy naming 50 streams): ns per admitted check and
/// per refusal (with its explanation), against one `HashMap` lookup of the reader; medians of
/// 5 runs.
fn policy_check() -> BenchResult<(f64, f64, f64)> {
    policy_check_runs().map_err(|e| format!("policy check bench: {e}"))
}

fn policy_check_runs() -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    use onoal_engine::identity::{SecretKey, key_path};
    use onoal_mesh::peer::PeerStore;
    use onoal_mesh::trust::store::TrustStore;
    use onoal_mesh::trust::visibility::{Scope, Visibility};
    let dir = tempfile::tempdir()?;
    let ledger = std::sync::Arc::new(
        Ledger::builder(dir.path()).create(Oid::parse("oid:onoal:bench:policy")?)?,
    );
    let key = SecretKey::read_file(&key_path(dir.path()))?;
    let peers = PeerStore::open(ledger.clone())?;
    let trust = TrustStore::open(ledger.clone(), peers.clone(), key.signing_key().clone())?;
    let readers: Vec<onoal_engine::LedgerId> = (0..200u64)
        .map(|i| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(i + 1).to_le_bytes());
            onoal_engine::LedgerId::from_bytes(b)
        })
        .collect();
    for (i, r) in readers.iter().enumerate() {
        let seed = [u8::try_from(i % 250).unwrap_or(0).wrapping_add(1); 32];
        peers.pin(*r, SecretKey::from_seed(&seed).public().to_bytes(), None)?;
    }
    let now = onoal_engine::time::now_ms();
    for i in 0..50 {
        let v = if i % 2 == 0 { Visibility::Public } else { Visibility::Trusted(0.7) };
        trust.set_visibility(Some(&format!("s{i}")), v, now)?;
    }
    let me = ledger.identity().ledger_id;
    let map: std::collections::HashMap<onoal_engine::LedgerId, f64> =
        readers.iter().map(|r| (*r, 0.5)).collect();
    const CALLS: usize = 200_000;
    let (mut checks, mut refusals, mut lookups) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        // Admitted: a public stream, and a stream at the default (trusted:0.4; readers at 0.5).
        let t = Instant::now();
        let mut admitted = 0usize;
        for i in 0..CALLS {
            let reader = &readers[i % readers.len()];
            let stream = if i % 2 == 0 { "s8" } else { "orders" };
            admitted +=
                usize::from(trust.admits(&me, Some(reader), Scope::Stream(stream), now).is_ok());
        }
        checks.push(t.elapsed().as_secs_f64() * 1e9 / CALLS as f64);
        if admitted != CALLS {
            return Err(format!("{admitted} of {CALLS} checks admitted").into());
        }
        // Refused (trusted:0.7): the decision and the explanation sent to the client.
        let t = Instant::now();
        for i in 0..CALLS / 10 {
            let reader = &readers[i % readers.len()];
            std::hint::black_box(
                trust.admits(&me, Some(reader), Scope::Stream("s7"), now).is_err(),
            );
        }
        refusals.push(t.elapsed().as_secs_f64() * 1e9 / (CALLS / 10) as f64);
        let t = Instant::now();
        let mut sum = 0.0;
        for i in 0..CALLS {
            sum += map.get(&readers[i % readers.len()]).copied().unwrap_or(0.0);
        }
        lookups.push(t.elapsed().as_secs_f64() * 1e9 / CALLS as f64);
        std::hint::black_box(sum);
    }
    checks.sort_by(f64::total_cmp);
    refusals.sort_by(f64::total_cmp);
    lookups.sort_by(f64::total_cmp);
    Ok((checks[2], refusals[2], lookups[2]))
}
