//! `BucketMap`: the buckets, the manifest, and the clean/unclean protocol.

use parking_lot::Mutex;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytemuck::Pod;
use talus_datapool::{Datapool as _, FileBackedOptions};

use crate::bucket::{Bucket, BucketGuard, BucketStats, Layout, OpenTable, Table, Writer, is_bucket_file};
use crate::config::BucketMapConfig;
use crate::error::{Error, Result, io_error};
use crate::key::{Key, KeyHasher, Xxh3Hasher};
use crate::live::{LIVE_NAME, LiveState};
use crate::manifest::{BucketRecord, MANIFEST_NAME, Manifest, fsync_dir};

/// Maps at least this large are opened by one thread per core (each bucket's checksum is
/// verified and its entries counted at open).
const PARALLEL_OPEN_MIN_BYTES: u64 = 64 << 20;

/// A persistent hash map from fixed-size keys to fixed-size values, sharded into buckets
/// that are memory-mapped datapool files and grow one at a time.
///
/// Readers take no lock: [`get`](Self::get) and [`for_each_value`](Self::for_each_value)
/// read a bucket between two loads of its sequence number and try again if a writer changed
/// it meanwhile, so they do not wait for each other, and wait for a writer (on its lock)
/// only when 64 tries in a row met a change. A writer locks one bucket
/// (growth included), never the map. The map on disk is marked unclean before the first change after open or flush,
/// and clean by [`flush`](Self::flush) / [`close`](Self::close) (and, best effort, by drop):
/// after a crash, [`open`](Self::open) reports [`Error::NotClean`] instead of serving a
/// possibly torn index.
///
/// ```
/// use talus_bucketmap::{BucketMap, BucketMapConfig};
///
/// let dir = tempfile::tempdir()?;
/// let map: BucketMap<u64, [u8; 8]> = BucketMap::create(BucketMapConfig::new(dir.path()))?;
/// map.insert(7, *b"seven...")?;
/// assert_eq!(map.get(&7), Some(*b"seven..."));
/// map.close()?;
///
/// let map: BucketMap<u64, [u8; 8]> = BucketMap::open(BucketMapConfig::new(dir.path()))?;
/// assert_eq!(map.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BucketMap<K: Key, V: Pod, H: KeyHasher = Xxh3Hasher> {
    dirs: Vec<PathBuf>,
    layout: Layout,
    seed: u64,
    bucket_bits: u32,
    max_search: usize,
    hasher: H,
    buckets: Vec<Bucket>,
    /// The buckets' sequence numbers, counts and current tables, in a mapped file.
    live: Arc<LiveState>,
    /// The map was resumed after its process was killed (see `resume_after_kill`).
    resumed: bool,
    /// The map was closed cleanly in this boot and its tables were not read again.
    trusted: bool,
    /// The manifest as last written; its lock serialises manifest writes. Lock order: a
    /// bucket's lock (or all of them, in order) before this one.
    manifest: Mutex<Manifest>,
    /// The manifest on disk says "not clean".
    marked_unclean: AtomicBool,
    closed: bool,
    /// Dropping the map flushes nothing (see [`abandon`](Self::abandon)).
    abandoned: AtomicBool,
    _types: PhantomData<fn() -> (K, V)>,
}

/// A random seed from the standard library's per-process random hashing keys.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

impl<K: Key, V: Pod> BucketMap<K, V, Xxh3Hasher> {
    /// Creates an empty map in `config.dirs` (creating the directories).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if a manifest is there, [`Error::InvalidConfig`],
    /// [`Error::Pool`] / [`Error::Io`] from the file system.
    pub fn create(config: BucketMapConfig) -> Result<Self> {
        Self::create_with_hasher(config, Xxh3Hasher)
    }

    /// Opens an existing map.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::NotClean`] (unless `discard_if_unclean`),
    /// [`Error::CorruptManifest`], [`Error::ConfigMismatch`], and [`Error::Pool`] for a
    /// damaged, truncated or missing bucket file.
    pub fn open(config: BucketMapConfig) -> Result<Self> {
        Self::open_with_hasher(config, Xxh3Hasher)
    }
}

impl<K: Key, V: Pod, H: KeyHasher> BucketMap<K, V, H> {
    fn layout() -> Layout {
        Layout::new(size_of::<K>(), size_of::<V>())
    }

    /// [`create`](BucketMap::create) with another hasher (it must be the same at every open).
    ///
    /// # Errors
    ///
    /// As [`create`](BucketMap::create).
    pub fn create_with_hasher(config: BucketMapConfig, hasher: H) -> Result<Self> {
        config.validate()?;
        for dir in &config.dirs {
            std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        }
        let manifest_path = config.dirs[0].join(MANIFEST_NAME);
        if manifest_path.exists() {
            return Err(Error::AlreadyExists { path: manifest_path });
        }
        let layout = Self::layout();
        let n_dirs = config.dirs.len();
        let tables = (0..1usize << config.bucket_bits)
            .map(|idx| {
                let dir_idx = (idx % n_dirs) as u32;
                let dir = &config.dirs[dir_idx as usize];
                Bucket::create_table(dir, dir_idx, idx, 1 << config.initial_cells_log2, &layout)
            })
            .collect::<Result<Vec<_>>>()?;
        let records: Vec<BucketRecord> = tables.iter().map(|(_, _, record)| *record).collect();
        let live = Arc::new(LiveState::start(&config.dirs[0], current_boot_id(), &records)?);
        let buckets =
            tables.into_iter().map(|(table, writer, _)| Bucket::with_table(table, Arc::clone(&live), writer)).collect();
        let seed = random_seed();
        let manifest = Manifest {
            clean: false,
            seed,
            bucket_bits: config.bucket_bits,
            max_search: config.max_search as u32,
            key_len: layout.key_len as u32,
            value_len: layout.value_len as u32,
            n_dirs: n_dirs as u32,
            buckets: records,
        };
        let map = BucketMap {
            dirs: config.dirs,
            layout,
            seed,
            bucket_bits: config.bucket_bits,
            max_search: config.max_search,
            hasher,
            buckets,
            live,
            resumed: false,
            trusted: false,
            manifest: Mutex::new(manifest),
            marked_unclean: AtomicBool::new(false),
            closed: false,
            abandoned: AtomicBool::new(false),
            _types: PhantomData,
        };
        // Each bucket file is complete and synced as it is created (datapool's create), and
        // nothing is written yet: recording the map as clean needs no flush of the buckets,
        // only the directories and the manifest.
        for dir in &map.dirs {
            fsync_dir(dir)?;
        }
        {
            let mut manifest = map.manifest.lock();
            manifest.clean = true;
            manifest.write(&map.dirs[0])?;
        }
        Ok(map)
    }

    /// [`open`](BucketMap::open) with another hasher (the one the map was created with).
    ///
    /// # Errors
    ///
    /// As [`open`](BucketMap::open).
    pub fn open_with_hasher(config: BucketMapConfig, hasher: H) -> Result<Self> {
        config.validate()?;
        let manifest_path = config.dirs[0].join(MANIFEST_NAME);
        let mut manifest = Manifest::read(&config.dirs[0])?;
        let boot_id = current_boot_id();
        let mut resumed_live = None;
        if !manifest.clean {
            let attempt = match config.resume_after_kill {
                true => Self::try_resume(&config, boot_id, &manifest)?,
                false => Err("resuming is off".to_owned()),
            };
            let why_not = match attempt {
                Ok((live, records, tables)) => {
                    manifest.buckets = records;
                    resumed_live = Some((live, tables));
                    None
                }
                Err(why_not) => Some(why_not),
            };
            if let Some(why_not) = why_not {
                if !config.discard_if_unclean {
                    tracing::info!(path = %manifest_path.display(), why_not, "a bucket map that was not closed cleanly cannot be resumed");
                    return Err(Error::NotClean { path: manifest_path });
                }
                tracing::warn!(path = %manifest_path.display(), why_not, "discarding a bucket map that was not closed cleanly");
                discard(&config.dirs)?;
                return Self::create_with_hasher(config, hasher);
            }
        }
        let resume = resumed_live.is_some();
        let layout = Self::layout();
        let mismatch = |reason: String| Err(Error::ConfigMismatch { path: manifest_path.clone(), reason });
        if (manifest.key_len as usize, manifest.value_len as usize) != (layout.key_len, layout.value_len) {
            return mismatch(format!(
                "the map holds {}-byte keys and {}-byte values, not {} and {}",
                manifest.key_len, manifest.value_len, layout.key_len, layout.value_len
            ));
        }
        if manifest.n_dirs as usize != config.dirs.len() {
            return mismatch(format!("the map spans {} directories, not {}", manifest.n_dirs, config.dirs.len()));
        }
        let table_path = |idx: usize| {
            let record = &manifest.buckets[idx];
            Bucket::table_path(&config.dirs[record.dir_idx as usize], idx, record)
        };
        let mut trusted = false;
        let (live, tables) = match resumed_live {
            Some((live, tables)) => (live, tables),
            None => {
                let live = LiveState::open_or_create(&config.dirs[0], manifest.buckets.len())?;
                // A map closed cleanly in this boot, its files untouched since: the page
                // cache holds what its flush wrote, as after a kill (`resume_after_kill`).
                trusted = config.resume_after_kill && {
                    let paths: Vec<PathBuf> = (0..manifest.buckets.len()).map(table_path).collect();
                    live.unchanged_since_flush(boot_id, &manifest.buckets, &paths)
                };
                let how = match trusted {
                    true => OpenTable::Trusted,
                    false => OpenTable::Check { verify: config.verify_on_open },
                };
                // Only here: asking how many cores there are reads the cgroup files, a
                // dozen system calls that an open which reads no table does not need.
                let n_bytes: u64 = manifest.buckets.iter().map(|record| record.n_cells * layout.cell_len as u64).sum();
                let n_threads = match n_bytes >= PARALLEL_OPEN_MIN_BYTES && !trusted {
                    true => std::thread::available_parallelism().map_or(1, |n| n.get()).min(manifest.buckets.len()),
                    false => 1,
                };
                let open_bucket = |idx: usize| {
                    let record = &manifest.buckets[idx];
                    let dir = &config.dirs[record.dir_idx as usize];
                    Bucket::open_table(dir, idx, record, &layout, how)
                };
                let tables = Self::open_tables(&manifest, n_threads, open_bucket)?;
                live.record_start(boot_id, &manifest.buckets);
                (live, tables)
            }
        };
        let live = Arc::new(live);
        let buckets =
            tables.into_iter().map(|(table, writer)| Bucket::with_table(table, Arc::clone(&live), writer)).collect();
        if resume {
            tracing::info!(path = %manifest_path.display(), "resumed a bucket map whose process was killed");
        } else if trusted {
            tracing::debug!(path = %manifest_path.display(), "reopened a bucket map unchanged since its close in this boot, reading no table");
        }
        Ok(BucketMap {
            dirs: config.dirs,
            layout,
            seed: manifest.seed,
            bucket_bits: manifest.bucket_bits,
            // The search bound is part of the data's shape: keep the one it was built with.
            max_search: manifest.max_search as usize,
            hasher,
            buckets,
            live,
            resumed: resume,
            trusted,
            manifest: Mutex::new(manifest),
            // A resumed map's manifest still says "not clean" on disk.
            marked_unclean: AtomicBool::new(resume),
            closed: false,
            abandoned: AtomicBool::new(false),
            _types: PhantomData,
        })
    }

    /// Takes up the map a killed process left, if its live state can be trusted and every
    /// table it names opens: its live state, each bucket's record and each bucket's table.
    /// Then removes what a growth the process was in the middle of left behind (the new
    /// table it was filling, or the old one it had not deleted yet). `Ok(Err(why))` when
    /// the map cannot be resumed.
    #[allow(clippy::type_complexity, reason = "a private helper's three results")]
    fn try_resume(
        config: &BucketMapConfig,
        boot_id: Option<u128>,
        manifest: &Manifest,
    ) -> Result<std::result::Result<(LiveState, Vec<BucketRecord>, Vec<(Table, Writer)>), String>> {
        let layout = Self::layout();
        if (manifest.key_len as usize, manifest.value_len as usize, manifest.n_dirs as usize)
            != (layout.key_len, layout.value_len, config.dirs.len())
        {
            return Ok(Err("the map has another shape than the one asked for".to_owned()));
        }
        let (live, live_records) = match LiveState::resume(&config.dirs[0], boot_id, manifest.buckets.len())? {
            Ok(found) => found,
            Err(why_not) => return Ok(Err(why_not)),
        };
        let records: Vec<BucketRecord> = manifest
            .buckets
            .iter()
            .zip(live_records)
            .map(|(record, live)| BucketRecord { dir_idx: record.dir_idx, ..live })
            .collect();
        let mut tables = Vec::with_capacity(records.len());
        for (idx, record) in records.iter().enumerate() {
            // Nothing is read to open a resumed table (no checksum, no count).
            let dir = &config.dirs[record.dir_idx as usize];
            match Bucket::open_table(dir, idx, record, &layout, OpenTable::Resume) {
                Ok(table) => tables.push(table),
                // Held elsewhere: for the caller to wait for, not a reason to start over.
                Err(error @ Error::Pool(talus_datapool::Error::Locked { .. })) => return Err(error),
                Err(error) => return Ok(Err(format!("bucket {idx}'s table does not open: {error}"))),
            }
        }
        if let Err(error) = remove_stale_tables(&config.dirs, &records) {
            return Ok(Err(format!("a stale table cannot be removed: {error}")));
        }
        Ok(Ok((live, records, tables)))
    }

    /// Opens every bucket's table as the manifest describes it, on `n_threads` threads.
    fn open_tables(
        manifest: &Manifest,
        n_threads: usize,
        open_bucket: impl Fn(usize) -> Result<(Table, Writer)> + Sync,
    ) -> Result<Vec<(Table, Writer)>> {
        let tables = if n_threads <= 1 {
            (0..manifest.buckets.len()).map(open_bucket).collect::<Result<Vec<_>>>()?
        } else {
            // Checking a large map's checksums and counts is CPU work: one thread per core,
            // each taking every `n_threads`-th bucket.
            let mut opened: Vec<(usize, Result<(Table, Writer)>)> = std::thread::scope(|scope| {
                let open_bucket = &open_bucket;
                let n_buckets = manifest.buckets.len();
                let workers: Vec<_> = (0..n_threads)
                    .map(|first| {
                        scope.spawn(move || {
                            (first..n_buckets).step_by(n_threads).map(|idx| (idx, open_bucket(idx))).collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| worker.join().expect("a bucket-opening thread panicked"))
                    .collect()
            });
            opened.sort_by_key(|&(idx, _)| idx);
            opened.into_iter().map(|(_, bucket)| bucket).collect::<Result<Vec<_>>>()?
        };
        Ok(tables)
    }

    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash(bytemuck::bytes_of(key), self.seed)
    }

    fn bucket_idx(&self, hash: u64) -> usize {
        if self.bucket_bits == 0 { 0 } else { (hash >> (64 - self.bucket_bits)) as usize }
    }

    fn bucket_of(&self, hash: u64) -> &Bucket {
        &self.buckets[self.bucket_idx(hash)]
    }

    /// The bucket `key` lives in, in `0..n_buckets()`: fixed for the map's life (its seed
    /// and bucket count never change).
    pub fn bucket_index(&self, key: &K) -> usize {
        self.bucket_idx(self.hash(key))
    }

    /// Whether this open resumed a map whose process was killed, as it left it (see
    /// [`BucketMapConfig::resume_after_kill`]).
    pub fn was_resumed(&self) -> bool {
        self.resumed
    }

    /// Whether this open found the map closed cleanly in this boot with every table file
    /// unchanged since, and so read none of them again (no checksum, no count; see
    /// [`BucketMapConfig::resume_after_kill`]).
    pub fn was_trusted(&self) -> bool {
        self.trusted
    }

    /// The number of buckets.
    pub fn n_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Locks `key`'s bucket for writing, after making sure the manifest says "not clean".
    fn write_bucket(&self, hash: u64) -> Result<BucketGuard<'_>> {
        let bucket = self.bucket_of(hash);
        // Start the probe window's cache miss before the lock: the prefetch is not held back
        // by the lock's atomic read-modify-write, so the miss overlaps with waiting for it.
        bucket.table().prefetch(hash);
        let guard = bucket.lock();
        if !self.marked_unclean.load(Ordering::Acquire) {
            let mut manifest = self.manifest.lock();
            if !self.marked_unclean.load(Ordering::Acquire) {
                // The live state changes with every change from here on.
                self.live.mark_dirty();
                // Only the flag matters in an unclean manifest (open refuses, resumes from
                // the live state, or discards it), so the last records are written again as
                // they are.
                manifest.clean = false;
                manifest.write(&self.dirs[0])?;
                self.marked_unclean.store(true, Ordering::Release);
            }
        }
        Ok(guard)
    }

    /// Hints that `key` is about to be looked up or inserted: starts loading the start of
    /// its probe window into the CPU cache and returns at once. Calling it for each key of a
    /// batch before working through the batch lets the cache misses overlap instead of
    /// coming one after another. Changes nothing.
    pub fn prefetch(&self, key: &K) {
        let hash = self.hash(key);
        self.bucket_of(hash).table().prefetch(hash);
    }

    /// The value of the first entry for `key`. Takes no lock (see the crate's docs).
    pub fn get(&self, key: &K) -> Option<V> {
        let hash = self.hash(key);
        let key = bytemuck::bytes_of(key);
        self.bucket_of(hash).read(|table| table.find(hash, key, self.max_search).map(|cell| table.value::<V>(cell)))
    }

    /// Whether `key` has an entry.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`'s value (its first entry's, if it has several); returns the previous one.
    ///
    /// # Errors
    ///
    /// I/O while growing the bucket or marking the map unclean; [`Error::TooManyDuplicates`]
    /// when more than `max_search` entries share this key's hash.
    pub fn insert(&self, key: K, value: V) -> Result<Option<V>> {
        let hash = self.hash(&key);
        let mut bucket = self.write_bucket(hash)?;
        let key_bytes = bytemuck::bytes_of(&key);
        let existing = bucket.table().matches(hash, key_bytes, self.max_search).next();
        if let Some(cell) = existing {
            let previous = bucket.table().value(cell);
            bucket.set_value(cell, bytemuck::bytes_of(&value));
            return Ok(Some(previous));
        }
        bucket.insert_new(hash, key_bytes, bytemuck::bytes_of(&value), self.max_search, &self.dirs)?;
        Ok(None)
    }

    /// Inserts `value` for `key` unless `key` has an entry: then changes nothing and returns
    /// that entry's value (its first, if it has several). One probe where a lookup followed
    /// by an insert takes two.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_if_absent(&self, key: K, value: V) -> Result<Option<V>> {
        let hash = self.hash(&key);
        let mut bucket = self.write_bucket(hash)?;
        let key_bytes = bytemuck::bytes_of(&key);
        if let Some(cell) = bucket.table().matches(hash, key_bytes, self.max_search).next() {
            return Ok(Some(bucket.table().value(cell)));
        }
        bucket.insert_new(hash, key_bytes, bytemuck::bytes_of(&value), self.max_search, &self.dirs)?;
        Ok(None)
    }

    /// Removes `key`'s first entry; returns its value.
    ///
    /// # Errors
    ///
    /// I/O while marking the map unclean.
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        self.remove_matching(key, |_| true, true).map(|mut removed| removed.pop())
    }

    /// Reads `key`'s value and replaces it with what `f` returns: `Some` sets it, `None`
    /// removes the entry. Atomic with respect to other writers of the bucket.
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn update(&self, key: K, f: impl FnOnce(Option<V>) -> Option<V>) -> Result<()> {
        let hash = self.hash(&key);
        let mut bucket = self.write_bucket(hash)?;
        let key_bytes = bytemuck::bytes_of(&key);
        let cell = bucket.table().matches(hash, key_bytes, self.max_search).next();
        let current = cell.map(|cell| bucket.table().value(cell));
        match (cell, f(current)) {
            (Some(cell), Some(new)) => bucket.set_value(cell, bytemuck::bytes_of(&new)),
            (Some(cell), None) => {
                bucket.remove_cell(cell);
            }
            (None, Some(new)) => {
                bucket.insert_new(hash, key_bytes, bytemuck::bytes_of(&new), self.max_search, &self.dirs)?;
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// Adds an entry for `key` even if it has some already (a multimap insert).
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    pub fn insert_duplicate(&self, key: K, value: V) -> Result<()> {
        let hash = self.hash(&key);
        let mut bucket = self.write_bucket(hash)?;
        bucket.insert_new(hash, bytemuck::bytes_of(&key), bytemuck::bytes_of(&value), self.max_search, &self.dirs)?;
        Ok(())
    }

    /// Calls `visit` with every value of `key`, in probe order. Takes no lock for a key with
    /// at most four entries; `visit` runs after the lookup, so it may use the map.
    pub fn for_each_value(&self, key: &K, mut visit: impl FnMut(V)) {
        const INLINE: usize = 4;
        let hash = self.hash(key);
        let key_bytes = bytemuck::bytes_of(key);
        let bucket = self.bucket_of(hash);
        let (n_found, found) = bucket.read(|table| {
            let mut found = [V::zeroed(); INLINE];
            let mut n_found = 0;
            for cell in table.matches(hash, key_bytes, self.max_search) {
                if n_found == INLINE {
                    return (None, found);
                }
                found[n_found] = table.value(cell);
                n_found += 1;
            }
            (Some(n_found), found)
        });
        if let Some(n_found) = n_found {
            found[..n_found].iter().for_each(|&value| visit(value));
            return;
        }
        let values: Vec<V> = {
            let bucket = bucket.lock();
            let table = bucket.table();
            table.matches(hash, key_bytes, self.max_search).map(|cell| table.value(cell)).collect()
        };
        values.into_iter().for_each(visit);
    }

    /// Every value of `key`.
    pub fn values(&self, key: &K) -> Vec<V> {
        let mut values = Vec::new();
        self.for_each_value(key, |value| values.push(value));
        values
    }

    /// Replaces the first value of `key` for which `predicate` holds with `new`; returns
    /// whether one did.
    ///
    /// # Errors
    ///
    /// I/O while marking the map unclean.
    pub fn replace_if(&self, key: &K, mut predicate: impl FnMut(&V) -> bool, new: V) -> Result<bool> {
        let hash = self.hash(key);
        let mut bucket = self.write_bucket(hash)?;
        let table = bucket.table();
        let found =
            table.matches(hash, bytemuck::bytes_of(key), self.max_search).find(|&cell| predicate(&table.value(cell)));
        if let Some(cell) = found {
            bucket.set_value(cell, bytemuck::bytes_of(&new));
        }
        Ok(found.is_some())
    }

    /// Removes every value of `key` for which `predicate` holds; returns them.
    ///
    /// # Errors
    ///
    /// I/O while marking the map unclean.
    pub fn remove_if(&self, key: &K, predicate: impl FnMut(&V) -> bool) -> Result<Vec<V>> {
        self.remove_matching(key, predicate, false)
    }

    fn remove_matching(&self, key: &K, mut predicate: impl FnMut(&V) -> bool, first_only: bool) -> Result<Vec<V>> {
        let hash = self.hash(key);
        let mut bucket = self.write_bucket(hash)?;
        let mut removed = Vec::new();
        let mut skip = 0; // matches already judged to stay, in probe order
        // Removing shifts later cells back, so look again after each removal.
        loop {
            let table = bucket.table();
            let found = table
                .matches(hash, bytemuck::bytes_of(key), self.max_search)
                .skip(skip)
                .map(|cell| (cell, table.value::<V>(cell)))
                .enumerate()
                .find(|(_, (_, value))| predicate(value));
            let Some((n_kept, (cell, value))) = found else { break };
            skip += n_kept;
            bucket.remove_cell(cell);
            removed.push(value);
            if first_only {
                break;
            }
        }
        Ok(removed)
    }

    /// The number of entries (a sum over the buckets' counts, which each bucket's writer
    /// keeps without an atomic read-modify-write).
    pub fn len(&self) -> u64 {
        self.buckets.iter().map(Bucket::n_entries).sum()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, bucket by bucket (each bucket read under its writer's lock, one at a
    /// time, so each bucket's entries are from one moment).
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.buckets.iter().flat_map(move |bucket| {
            let bucket = bucket.lock();
            let table = bucket.table();
            table.occupied().map(|cell| (table.key(cell), table.value(cell))).collect::<Vec<_>>()
        })
    }

    /// Per bucket: capacity, entries, resizes, longest probe.
    pub fn stats(&self) -> Vec<BucketStats> {
        self.buckets.iter().map(|bucket| bucket.lock().stats()).collect()
    }

    /// The bucket files, in bucket order.
    pub fn bucket_paths(&self) -> Vec<PathBuf> {
        self.buckets.iter().map(|bucket| bucket.lock().path().to_path_buf()).collect()
    }

    /// Makes the map durable and clean on disk: every bucket file flushed, the directories
    /// synced, then the manifest rewritten as clean. Writers wait meanwhile.
    ///
    /// # Errors
    ///
    /// I/O from the bucket files or the manifest.
    pub fn flush(&self) -> Result<()> {
        let mut locked: Vec<_> = self.buckets.iter().map(Bucket::lock).collect();
        let mut manifest = self.manifest.lock();
        for bucket in &mut locked {
            bucket.flush()?;
        }
        // What the next open compares to know the tables are still as flushed. The live
        // state is read back only in this boot, from the page cache: it is never synced.
        self.live.mark_dirty();
        for (idx, bucket) in locked.iter().enumerate() {
            self.live.record_flushed_file(idx, bucket.path());
        }
        for dir in &self.dirs {
            fsync_dir(dir)?;
        }
        manifest.buckets = locked.iter().map(|bucket| bucket.record()).collect();
        manifest.clean = true;
        manifest.write(&self.dirs[0])?;
        self.marked_unclean.store(false, Ordering::Release);
        Ok(())
    }

    /// Writes a copy of the map into `dir` (created if missing; it must hold no map) that
    /// opens as a clean map, with the same seed and placement, through
    /// [`open`](Self::open) with `dir` as its only directory. Returns the entries copied.
    ///
    /// Readers and writers go on meanwhile: each bucket is copied under its writer's lock, one
    /// at a time, so a writer waits at most for one bucket's memory copy (a few milliseconds for a bucket
    /// of a million cells); the file is written and synced after the lock is released. Each
    /// bucket's copy is consistent; different buckets are copied at different moments.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if `dir` holds a map's manifest; I/O errors (a partial copy
    /// may be left in `dir`, without a manifest).
    pub fn snapshot_to(&self, dir: impl AsRef<Path>) -> Result<u64> {
        self.snapshot_to_with(dir, |_| {})
    }

    /// As [`snapshot_to`](Self::snapshot_to), calling `before_copy(idx)` just before bucket
    /// `idx` is locked and copied (again if the bucket grew before the copy and is tried
    /// anew): the copy kept of each bucket is at least as new as the last call for it. A
    /// caller that knows what its writes had reached at that call knows what each bucket's
    /// copy holds.
    ///
    /// # Errors
    ///
    /// As [`snapshot_to`](Self::snapshot_to).
    pub fn snapshot_to_with(&self, dir: impl AsRef<Path>, mut before_copy: impl FnMut(usize)) -> Result<u64> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let manifest_path = dir.join(MANIFEST_NAME);
        if manifest_path.exists() {
            return Err(Error::AlreadyExists { path: manifest_path });
        }
        let mut records = Vec::with_capacity(self.buckets.len());
        for (idx, bucket) in self.buckets.iter().enumerate() {
            // The target is made (a file created and synced) before the lock is taken; a
            // bucket that grows meanwhile gets a new one.
            let mut expected = bucket.lock().record();
            let (record, image) = loop {
                let path = dir.join(bucket.lock().file_name());
                let data_len = expected.n_cells as usize * self.layout.cell_len;
                // Buffered, not O_DIRECT: a snapshot is usually read back soon (a recovery
                // after a killed process finds it in the page cache).
                let mut image =
                    FileBackedOptions::new().direct_io(false).create(&path, data_len, self.layout.user_version())?;
                before_copy(idx);
                let locked = bucket.lock();
                let record = locked.record();
                if record.n_cells == expected.n_cells && record.generation == expected.generation {
                    locked.table().copy_to(image.as_mut_slice());
                    break (record, image);
                }
                drop(locked);
                drop(image);
                std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
                expected = record;
            };
            image.close()?;
            records.push(crate::manifest::BucketRecord { dir_idx: 0, ..record });
        }
        fsync_dir(dir)?;
        let manifest = Manifest {
            clean: true,
            seed: self.seed,
            bucket_bits: self.bucket_bits,
            max_search: self.max_search as u32,
            key_len: self.layout.key_len as u32,
            value_len: self.layout.value_len as u32,
            n_dirs: 1,
            buckets: records,
        };
        manifest.write(dir)?;
        Ok(manifest.buckets.iter().map(|record| record.n_entries).sum())
    }

    /// For crash tests: dropping the map will leave it as a killed process would, unflushed
    /// (and not clean on disk if it changed since the last flush).
    #[doc(hidden)]
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
    }

    /// Flushes and closes the map, reporting any error.
    ///
    /// # Errors
    ///
    /// As [`flush`](Self::flush).
    pub fn close(mut self) -> Result<()> {
        let result = self.flush();
        self.closed = true;
        result
    }
}

impl<K: Key, V: Pod, H: KeyHasher> Drop for BucketMap<K, V, H> {
    fn drop(&mut self) {
        if !self.closed
            && !self.abandoned.load(Ordering::Acquire)
            && self.marked_unclean.load(Ordering::Acquire)
            && let Err(error) = self.flush()
        {
            tracing::error!(%error, "bucket map not flushed on drop; it will open as not clean");
        }
    }
}

/// The boot id, or `None` where the system does not tell it (a map then never resumes).
fn current_boot_id() -> Option<u128> {
    talus_datapool::boot_id().inspect_err(|error| tracing::debug!(%error, "no boot id")).ok()
}

/// Deletes every bucket file in `dirs` that is not the table `buckets` names for its bucket.
fn remove_stale_tables(dirs: &[PathBuf], buckets: &[BucketRecord]) -> Result<()> {
    let current: std::collections::HashSet<String> =
        buckets.iter().enumerate().map(|(idx, record)| crate::bucket::file_name(idx, record.generation)).collect();
    for dir in dirs {
        let mut removed = false;
        let entries = std::fs::read_dir(dir).map_err(io_error("list", dir))?;
        for entry in entries {
            let entry = entry.map_err(io_error("list", dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_bucket_file(&name) && !current.contains(&name) {
                tracing::debug!(file = name, "removing a table a killed process left behind");
                std::fs::remove_file(entry.path()).map_err(io_error("remove", &entry.path()))?;
                removed = true;
            }
        }
        if removed {
            fsync_dir(dir)?;
        }
    }
    Ok(())
}

/// Deletes a map's manifest and bucket files from its directories.
fn discard(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        let entries = std::fs::read_dir(dir).map_err(io_error("list", dir))?;
        for entry in entries {
            let entry = entry.map_err(io_error("list", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if is_bucket_file(&name)
                || name == MANIFEST_NAME
                || name == format!("{MANIFEST_NAME}.tmp")
                || name.starts_with(LIVE_NAME)
            {
                std::fs::remove_file(entry.path()).map_err(io_error("remove", &entry.path()))?;
            }
        }
        fsync_dir(dir)?;
    }
    Ok(())
}
