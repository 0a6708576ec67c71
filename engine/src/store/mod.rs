//! Storage: the only module that names RocksDB.
//!
//! [`keys`] encodes every key (docs/format.md draws them), [`postings`] the index posting
//! lists; both are pure and build without the `storage` feature (the fuzz targets decode
//! them). With `storage`, [`Store`] is one RocksDB database: typed column families ([`Cf`]),
//! point reads, zero-copy range visits, snapshots, and atomic batches written with or without
//! fsync. Group writes pass through [`Store::write`], which is also where the
//! `__internal-fault-injection` test hook fails chosen writes. [`scan`] holds the typed range
//! scans (entries, checkpoints, postings, the log directory) that the read side, the writers
//! and the audit share.
//!
//! `Store` is a concrete type, not a trait: the project tests RocksDB's real recovery on real
//! files rather than a model of it (docs/design/engine.md), and a second implementation does
//! not exist.

// Without `storage` only the decoders the fuzz targets reach are used.
#[cfg_attr(not(feature = "storage"), allow(dead_code))]
pub(crate) mod keys;
#[cfg_attr(not(feature = "storage"), allow(dead_code))]
pub(crate) mod postings;
#[cfg(feature = "storage")]
pub(crate) mod scan;

#[cfg(feature = "storage")]
pub use imp::direct_io_works;
#[cfg(feature = "storage")]
pub(crate) use imp::{Batch, Pinned, Snapshot, Store, StoreError};

#[cfg(feature = "storage")]
mod imp {
    use std::path::Path;

    use rocksdb::{
        BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
        Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions,
    };

    use super::keys::Cf;

    /// What RocksDB said when it refused.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct StoreError(pub(crate) String);

    impl StoreError {
        /// True when another process holds the database's lock.
        pub(crate) fn is_lock(&self) -> bool {
            let s = &self.0;
            s.contains("lock file") || s.contains("LOCK") || s.contains("lock hold")
        }

        /// True when RocksDB found damaged data (a checksum mismatch, a bad record, a missing
        /// WAL the MANIFEST tracks).
        pub(crate) fn is_corruption(&self) -> bool {
            self.0.contains("Corruption")
        }

        /// True when a file the MANIFEST names is missing (a read-only open racing a writer's
        /// compaction).
        pub(crate) fn is_missing_file(&self) -> bool {
            self.0.contains("No such file or directory")
        }
    }

    impl std::fmt::Display for StoreError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl From<rocksdb::Error> for StoreError {
        fn from(e: rocksdb::Error) -> Self {
            Self(e.into_string())
        }
    }

    /// A key and its value.
    pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

    /// A value pinned in RocksDB's block cache (no copy).
    pub(crate) type Pinned<'a> = rocksdb::DBPinnableSlice<'a>;

    /// A consistent view of the whole database.
    pub(crate) struct Snapshot<'a>(rocksdb::Snapshot<'a>);

    /// Writes applied together or not at all.
    #[derive(Default)]
    pub(crate) struct Batch(WriteBatch);

    impl Batch {
        /// An empty batch with room for `bytes` bytes of keys and values.
        pub(crate) fn with_capacity_bytes(bytes: usize) -> Self {
            Self(WriteBatch::with_capacity_bytes(bytes))
        }

        /// True when nothing was put.
        pub(crate) fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// A batch with its column families' handles at hand.
    pub(crate) struct BatchWriter<'a> {
        batch: &'a mut Batch,
        cfs: [&'a ColumnFamily; Cf::ALL.len()],
    }

    impl BatchWriter<'_> {
        /// Puts `value` at `key`.
        pub(crate) fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
            let handle = self.cfs[cf.index()];
            self.batch.0.put_cf(handle, key, value);
        }
    }

    /// Memtable bytes of all column families together; past it the largest is flushed.
    const WRITE_BUFFER_BYTES: usize = 64 << 20;

    /// One RocksDB database: a data directory's `db/`.
    pub(crate) struct Store {
        db: DB,
        /// Writes (counted from 0 at open) that fail as if the device returned an error.
        #[cfg(feature = "__internal-fault-injection")]
        injected_failures: parking_lot::Mutex<(u64, Vec<u64>)>,
    }

    /// Whether files next to `path` (the database directory, or its parent before it exists)
    /// can be written with `O_DIRECT`: not on every file system (tmpfs before Linux 6.6, some
    /// network file systems). Probed with one aligned 4 KiB write of a scratch file.
    pub fn direct_io_works(path: &Path) -> bool {
        #[cfg(target_os = "linux")]
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let dir = if path.is_dir() { path } else { path.parent().unwrap_or(path) };
            let probe = dir.join(".onoal-direct-io-probe");
            let buf = vec![0u8; 8192];
            let at = buf.as_ptr().align_offset(4096);
            let Some(block) = buf.get(at..at + 4096) else { return false };
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(&probe)
                .and_then(|mut f| f.write_all(block));
            let _ = std::fs::remove_file(&probe);
            written.is_ok()
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = path;
            false
        }
    }

    #[cfg(test)]
    #[test]
    fn the_direct_io_probe_leaves_nothing_behind_and_fails_where_it_cannot_write() {
        let tmp = tempfile::tempdir().unwrap();
        let _ = direct_io_works(tmp.path());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        assert!(!direct_io_works(&tmp.path().join("no").join("such")));
    }

    impl Store {
        /// Opens the database at `path` (creating it when missing, unless read-only) with a
        /// block cache of `cache_bytes`. Read-only opens take no lock.
        pub(crate) fn open(
            path: &Path,
            cache_bytes: usize,
            read_only: bool,
        ) -> Result<Self, StoreError> {
            let cache = Cache::new_lru_cache(cache_bytes);
            let cf_opts = |cf: Cf| {
                let mut o = Options::default();
                let mut table = BlockBasedOptions::default();
                table.set_block_cache(&cache);
                table.set_bloom_filter(10.0, false);
                table.set_cache_index_and_filter_blocks(true);
                o.set_block_based_table_factory(&table);
                // Hashes do not compress; entries and indexes do.
                o.set_compression_type(if cf == Cf::Tiles {
                    DBCompressionType::None
                } else {
                    DBCompressionType::Lz4
                });
                o.set_write_buffer_size(64 << 20);
                o
            };
            let mut opts = Options::default();
            opts.create_if_missing(!read_only);
            opts.create_missing_column_families(!read_only);
            // A damaged record in the WAL is an error, not the end of the log: only an
            // incomplete record at the very end (a torn write of a crash) is dropped. Together
            // with the ledger's high-water marks this keeps acknowledged entries from being
            // dropped silently (docs/design/engine.md, "Damage to acknowledged data").
            opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
            opts.set_track_and_verify_wals_in_manifest(true);
            // One budget for the memtables of all column families (each may grow to 64 MiB,
            // and a second one fills while the first flushes): the process's memory stays
            // bounded however the writes spread over the families.
            opts.set_db_write_buffer_size(WRITE_BUFFER_BYTES);
            opts.set_max_background_jobs(2);
            // Flush and compaction output around the page cache, where the file system allows
            // it: the WAL's fsyncs then do not wait for megabytes of dirty SST pages (ext4
            // commits them together), and no fresh page-cache pages are taken per flush (on a
            // VM whose balloon returns free pages to the host, touching them again is what
            // cost most). Appends: sync 214-244k/s -> 312-394k/s (docs/performance.md).
            if !read_only && direct_io_works(path) {
                opts.set_use_direct_io_for_flush_and_compaction(true);
            }
            opts.set_keep_log_file_num(4);
            // A read-only open of a database written by an older version opens the families it
            // has; reads of a family it lacks see it empty (see `Store::has`).
            let existing = if read_only { DB::list_cf(&opts, path).ok() } else { None };
            let cfs: Vec<ColumnFamilyDescriptor> = Cf::ALL
                .into_iter()
                .filter(|cf| existing.as_ref().is_none_or(|e| e.iter().any(|n| n == cf.name())))
                .map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_opts(cf)))
                .collect();
            let db = if read_only {
                DB::open_cf_descriptors_read_only(&opts, path, cfs, false)?
            } else {
                DB::open_cf_descriptors(&opts, path, cfs)?
            };
            Ok(Self {
                db,
                #[cfg(feature = "__internal-fault-injection")]
                injected_failures: parking_lot::Mutex::new((0, Vec::new())),
            })
        }

        /// Whether the database has `cf` (only a read-only open of an older database lacks one).
        pub(crate) fn has(&self, cf: Cf) -> bool {
            self.db.cf_handle(cf.name()).is_some()
        }

        fn cf(&self, cf: Cf) -> &ColumnFamily {
            self.db
                .cf_handle(cf.name())
                .expect("every column family is opened or created by Store::open")
        }

        /// The value at `key`, as of now.
        pub(crate) fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.db.get_cf(self.cf(cf), key)?)
        }

        /// The value at `key`, pinned in the block cache.
        pub(crate) fn get_pinned(
            &self,
            cf: Cf,
            key: &[u8],
        ) -> Result<Option<Pinned<'_>>, StoreError> {
            Ok(self.db.get_pinned_cf(self.cf(cf), key)?)
        }

        /// A consistent view of everything written so far.
        pub(crate) fn snapshot(&self) -> Snapshot<'_> {
            Snapshot(self.db.snapshot())
        }

        /// The value at `key` in `snapshot`.
        pub(crate) fn get_at(
            &self,
            snapshot: &Snapshot<'_>,
            cf: Cf,
            key: &[u8],
        ) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(snapshot.0.get_cf(self.cf(cf), key)?)
        }

        fn read_opts(at: Option<&Snapshot<'_>>, until: Option<&[u8]>) -> ReadOptions {
            let mut ro = ReadOptions::default();
            if let Some(s) = at {
                ro.set_snapshot(&s.0);
            }
            if let Some(u) = until {
                ro.set_iterate_upper_bound(u.to_vec());
            }
            ro
        }

        /// Calls `f` with every key and value in `[from, until)` (to the end of the column
        /// family when `until` is `None`), in key order, straight from RocksDB's buffers, as of
        /// `at` (a snapshot) or now. `f` returns `Ok(false)` to stop.
        ///
        /// # Errors
        /// Storage errors, or `f`'s.
        pub(crate) fn visit<E: From<StoreError>>(
            &self,
            at: Option<&Snapshot<'_>>,
            cf: Cf,
            from: &[u8],
            until: Option<&[u8]>,
            mut f: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
        ) -> Result<(), E> {
            let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), Self::read_opts(at, until));
            it.seek(from);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !f(k, v)? {
                    return Ok(());
                }
                it.next();
            }
            it.status().map_err(|e| E::from(e.into()))
        }

        /// The last key and value at or before `key` that start with `prefix`.
        ///
        /// # Errors
        /// Storage errors.
        pub(crate) fn last_at_or_before(
            &self,
            at: Option<&Snapshot<'_>>,
            cf: Cf,
            key: &[u8],
            prefix: &[u8],
        ) -> Result<Option<KeyValue>, StoreError> {
            let mut it = self.db.iterator_cf_opt(
                self.cf(cf),
                Self::read_opts(at, None),
                IteratorMode::From(key, Direction::Reverse),
            );
            match it.next() {
                Some(Ok((k, v))) if k.starts_with(prefix) => Ok(Some((k.into_vec(), v.into_vec()))),
                Some(Err(e)) => Err(e.into()),
                _ => Ok(None),
            }
        }

        /// A writer into `batch` with every column family's handle looked up once (for loops
        /// that put one key per entry).
        pub(crate) fn batch_writer<'a>(&'a self, batch: &'a mut Batch) -> BatchWriter<'a> {
            BatchWriter { batch, cfs: Cf::ALL.map(|cf| self.cf(cf)) }
        }

        /// Puts `value` at `key` into `batch`.
        pub(crate) fn put(&self, batch: &mut Batch, cf: Cf, key: &[u8], value: &[u8]) {
            batch.0.put_cf(self.cf(cf), key, value);
        }

        /// Deletes `key` in `batch`.
        pub(crate) fn delete(&self, batch: &mut Batch, cf: Cf, key: &[u8]) {
            batch.0.delete_cf(self.cf(cf), key);
        }

        /// Deletes every key in `[from, to)` in `batch`.
        pub(crate) fn delete_range(&self, batch: &mut Batch, cf: Cf, from: &[u8], to: &[u8]) {
            batch.0.delete_range_cf(self.cf(cf), from, to);
        }

        /// Writes `batch` atomically: one checksummed WAL record, fsynced before returning when
        /// `sync`. Nothing of a failed write is visible.
        ///
        /// # Errors
        /// RocksDB's error (disk full, I/O), or an injected failure (test hook).
        pub(crate) fn write(&self, batch: Batch, sync: bool) -> Result<(), StoreError> {
            #[cfg(feature = "__internal-fault-injection")]
            {
                let mut f = self.injected_failures.lock();
                let n = f.0;
                f.0 += 1;
                if f.1.contains(&n) {
                    return Err(StoreError(format!("IO error: injected failure of write {n}")));
                }
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(sync);
            Ok(self.db.write_opt(batch.0, &wo)?)
        }

        /// Writes every memtable to table files and waits: afterwards the WAL holds nothing the
        /// tables do not, so damage to it loses nothing. Called when a writable ledger closes.
        ///
        /// # Errors
        /// RocksDB's error (disk full, I/O).
        pub(crate) fn flush_all(&self) -> Result<(), StoreError> {
            let cfs: Vec<&ColumnFamily> = Cf::ALL.iter().map(|&cf| self.cf(cf)).collect();
            let mut opts = rocksdb::FlushOptions::default();
            opts.set_wait(true);
            Ok(self.db.flush_cfs_opt(&cfs, &opts)?)
        }

        /// Test hook: the writes numbered in `writes` (0 = the next write) fail with an
        /// injected I/O error instead of reaching RocksDB.
        #[cfg(feature = "__internal-fault-injection")]
        pub(crate) fn dangerous_fail_writes(&self, writes: &[u64]) {
            let mut f = self.injected_failures.lock();
            let base = f.0;
            f.1 = writes.iter().map(|w| base + w).collect();
        }
    }
}
