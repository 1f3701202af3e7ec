//! `Db`: the engine. The write path appends a record to the in-memory tail of the log and
//! points the index at it; the read path follows the index to the record, in memory or in
//! a segment file; a group commit makes writes durable; open rebuilds the index after a
//! crash. ARCHITECTURE.md walks through all of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use talus_bucketmap::{BucketMap, BucketMapConfig};
use talus_datapool::{Memory, MemoryOptions};
use talus_ringbuf::{Allocation, EvictAction, Ring, RingBuffer, RingConfig};

use crate::batch::{BatchOp, WriteBatch};
use crate::checkpoint::list_checkpoints;
use crate::error::{Error, Result, corruption, io_error};
use crate::live::LiveState;
use crate::manifest::{MANIFEST_PATH, Manifest, now_unix_ns, random_u64};
use crate::options::{CompactionOptions, Layout, Options, SyncMode};
use crate::record::{self, FLAG_BATCH, FLAG_BATCH_END, MAX_KEY_LEN, Record, RecordKind};
use crate::recovery::{Discarded, KeyHash, Rebuild, discard_index_dir, insert_new, truncate_at};
use crate::segment::{LOG_DIR, SEGMENT_HEADER_LEN, Segments, parse_segment_name, segment_path};
use crate::stats::{Counters, RecoveryStats, SegmentStats, Stats};
use crate::storage::{Storage, StorageLock};
use crate::usage::{BatchUsage, UsageTable, entry_size};
use crate::writer::LogWriter;

mod maintenance;
mod verify;
pub use maintenance::{BackupReport, CheckpointReport, CompactionReport};
pub use verify::{MAX_PROBLEMS_LISTED, Problem, VerifyReport};

/// How many distinct keys may share one 64-bit hash. With a random per-database seed this
/// is never reached by chance; the limit turns a deliberate flood into a typed error
/// ([`Error::HashCollisionLimit`]) before anything is written.
pub const MAX_KEYS_PER_HASH: usize = 32;
/// The index's probe window; twice the per-hash limit so growth always makes room.
const INDEX_MAX_SEARCH: usize = 2 * MAX_KEYS_PER_HASH;
/// 16 index buckets (files): each grows on its own; few files keep creating an index cheap.
const INDEX_BUCKET_BITS: u32 = 4;
/// Lock stripes: writers of a key hold its stripe exclusively, readers shared.
const N_STRIPES: usize = 1024;
const LOCK_PATH: &str = "LOCK";
/// What [`Db::path`] says for a database opened on a custom [`Storage`].
pub(crate) const STORAGE_PATH: &str = "<storage>";
/// How long open keeps trying a lock held elsewhere before it reports `Locked`.
const LOCK_RETRY_FOR: Duration = Duration::from_millis(200);
/// How long a commit leader waits for writers that are appending, or that waited for the
/// last commit and have not come back yet, to join its fsync (only when there are such
/// writers): a fraction of an fsync, for a bigger group.
const GATHER_MAX: Duration = Duration::from_micros(25);
/// How many keys ahead a batch prefetches index probe windows.
const PREFETCH_AHEAD: usize = 16;
/// The background log writer runs at least this often, and every 1/[`LOG_WRITER_STEPS`] of
/// the log's memory.
const LOG_WRITER_TICK: Duration = Duration::from_millis(50);
const LOG_WRITER_STEPS: u64 = 16;

/// An open database. `Send + Sync`: share it between threads by reference or in an `Arc`.
/// Dropping it closes it (see [`close`](Self::close) to see errors).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = talus_engine::Db::open(dir.path())?;
/// db.put(b"hello", b"world")?;
/// assert_eq!(db.get(b"hello")?.as_deref(), Some(&b"world"[..]));
/// db.delete(b"hello")?;
/// assert_eq!(db.get(b"hello")?, None);
/// db.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Db {
    inner: Arc<Inner>,
    /// Background threads (periodic sync, maintenance), joined on close.
    threads: Vec<JoinHandle<()>>,
}

// The contract: a `Db` is shared between threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Db>();
};

#[repr(align(64))]
#[derive(Default)]
struct Stripe(RwLock<()>);

struct Inner {
    path: PathBuf,
    storage: Arc<dyn Storage>,
    layout: Layout,
    memory_budget: u64,
    sync_mode: SyncMode,
    hash_seed: u64,
    hash_mask: u64,
    ring: RingBuffer<Memory>,
    index: BucketMap<u64, u64>,
    segments: Segments,
    /// The state a reopen after a kill takes up (on storage in a local directory).
    live: Option<Arc<LiveState>>,
    /// Held while appending to the ring; holds the next sequence number.
    append: Mutex<u64>,
    /// Everything below it is published in the ring (all allocation happens under `append`).
    published_until: AtomicU64,
    writer: Mutex<LogWriter>,
    synced_until: AtomicU64,
    commit: Mutex<bool>,
    commit_done: Condvar,
    /// Durable writers between their start and their return, and those of them waiting
    /// for a commit: a leader gives the difference a moment to join its fsync.
    writers_in_flight: AtomicU64,
    writers_waiting: AtomicU64,
    /// The durable writes counted when the last commit took its snapshot of the log, and
    /// how many writers that commit saw (those it covered and those that came while it
    /// synced): the next leader waits a moment for as many new writes, so that writers
    /// that take turns share fsyncs instead of leading one each.
    commit_covered: AtomicU64,
    expected_group: AtomicU64,
    poisoned: AtomicBool,
    stripes: Box<[Stripe]>,
    /// Always `clean: false` while open; on disk it may still say clean (see
    /// `manifest_unclean_on_disk`).
    manifest: Mutex<Manifest>,
    /// The MANIFEST on disk says not clean. A clean open leaves it clean until the first
    /// append (`mark_unclean_on_disk`): until then the files are as the close left them,
    /// and a reopen after a kill takes the clean path.
    manifest_unclean_on_disk: AtomicBool,
    /// Live-byte accounting per segment.
    usage: UsageTable,
    compaction: CompactionOptions,
    checkpoint_every_bytes: u64,
    checkpoint_interval: Option<Duration>,
    /// One compaction, checkpoint or backup at a time.
    maintenance: Mutex<Maintenance>,
    /// Retired segments whose files could not be removed yet (an iterator was open).
    pending_removals: Mutex<Vec<u64>>,
    /// Where index checkpoints go.
    checkpoint_dir: PathBuf,
    /// Old index directories still to remove.
    discarded: Discarded,
    /// Iterators hold it shared (they may read records through addresses compaction has
    /// since moved); a retired segment's file is removed only while it is held exclusively.
    removal_barrier: RwLock<()>,
    /// Set when the database is closing: long maintenance work stops early.
    stopping: AtomicBool,
    counters: AtomicCounters,
    recovery: RecoveryStats,
    shutdown: Mutex<bool>,
    shutdown_signal: Condvar,
    /// With a background log writer: the log bytes it is woken for (0: none runs), where
    /// it was last woken (moved under `append`), and its wake-up.
    flush_step: u64,
    flush_requested_until: AtomicU64,
    flush_signal: Condvar,
    closed: AtomicBool,
    _lock: Box<dyn StorageLock>,
}

#[derive(Default)]
struct AtomicCounters {
    n_puts: AtomicU64,
    n_deletes: AtomicU64,
    n_batches: AtomicU64,
    n_gets: ShardedCounter,
    n_disk_reads: ShardedCounter,
    n_evicted: AtomicU64,
    n_syncs: AtomicU64,
    n_durable_writes: AtomicU64,
    n_log_bytes_appended: AtomicU64,
    n_compaction_passes: AtomicU64,
    n_segments_compacted: AtomicU64,
    n_compaction_bytes_copied: AtomicU64,
    n_checkpoints: AtomicU64,
}

/// A counter bumped on the read path by many threads: one cache line per shard, so
/// readers on different cores do not bounce one line between them.
#[derive(Default)]
struct ShardedCounter {
    shards: [PaddedU64; 8],
}

#[repr(align(64))]
#[derive(Default)]
struct PaddedU64(AtomicU64);

impl ShardedCounter {
    fn bump(&self) {
        thread_local! {
            static SHARD: usize = {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) as usize % 8
            };
        }
        let shard = SHARD.with(|shard| *shard);
        self.shards[shard].0.fetch_add(1, Ordering::Relaxed);
    }

    fn load(&self) -> u64 {
        self.shards.iter().map(|shard| shard.0.load(Ordering::Relaxed)).sum()
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Maintenance state (under `Inner::maintenance`).
struct Maintenance {
    /// Where the newest checkpoint ends (the open's log end if there is none).
    last_checkpoint_covers_until: u64,
    last_checkpoint_at: Instant,
    /// A checkpoint should be written at the next chance (the open used up the last one).
    checkpoint_due: bool,
    /// Segments whose compaction failed (damage): not tried again until reopened.
    failed_segments: Vec<u64>,
    /// The log's end at the last tick, and when it last moved (for the checkpoint when
    /// writes pause).
    last_published: u64,
    last_growth_at: Instant,
}

/// A record's address and its size in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    address: u64,
    size: u64,
}

/// A key stripe held for writing; while it is, the live state says a write is under way.
struct StripeWriteGuard<'a> {
    inner: &'a Inner,
    idx: usize,
    _guard: parking_lot::RwLockWriteGuard<'a, ()>,
}

impl Drop for StripeWriteGuard<'_> {
    fn drop(&mut self) {
        // Before the lock is released (fields drop after this): only the holder writes it.
        // A write that panicked may have left the index and the log apart: the stripe then
        // stays busy, and writes stop until a reopen rebuilds the index.
        if std::thread::panicking() {
            self.inner.index_failed();
        } else if let Some(live) = &self.inner.live {
            live.stripe_busy(self.idx, false);
        }
    }
}

/// Where a record was found.
enum Located<'g> {
    Memory(&'g [u8]),
    Disk(Vec<u8>),
}

impl Located<'_> {
    fn payload(&self) -> &[u8] {
        match self {
            Located::Memory(payload) => payload,
            Located::Disk(payload) => payload,
        }
    }
}

impl Db {
    /// Opens (creating if needed) the database in `path` with default [`Options`].
    ///
    /// # Errors
    ///
    /// As [`Options::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Options::default().open(path)
    }

    pub(crate) fn open_with(
        storage: Arc<dyn Storage>,
        path: PathBuf,
        index_dir: PathBuf,
        checkpoint_dir: PathBuf,
        options: Options,
    ) -> Result<Db> {
        let started = Instant::now();
        let _span = tracing::info_span!("open", path = %path.display()).entered();
        // Checked before the lock file or the log directory is made: a directory that holds
        // no database stays as it was.
        if !options.create_if_missing
            && matches!(storage.read(MANIFEST_PATH), Err(error) if error.kind() == std::io::ErrorKind::NotFound)
        {
            return Err(Error::NotFound { path });
        }
        let lock =
            retry_while_locked(|| storage.lock(LOCK_PATH), |error| error.kind() == std::io::ErrorKind::WouldBlock)
                .map_err(|error| match error.kind() {
                    std::io::ErrorKind::WouldBlock => Error::Locked { path: path.clone() },
                    _ => Error::Io { op: "lock the database", file: LOCK_PATH.to_owned(), source: error },
                })?;
        storage.create_dir(LOG_DIR).map_err(io_error("create the log directory", LOG_DIR))?;
        let segment_names = storage.list(LOG_DIR).map_err(io_error("list the log directory", LOG_DIR))?;
        let mut manifest_read = None;
        let mut manifest = match storage.read(MANIFEST_PATH) {
            Ok(bytes) => {
                let manifest = Manifest::decode(&bytes).map_err(|reason| match reason.starts_with("bad magic") {
                    true => Error::NotADatabase { reason: format!("{MANIFEST_PATH}: {reason}") },
                    false => corruption(MANIFEST_PATH, 0, reason),
                })?;
                manifest_read = Some(bytes);
                manifest
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if !options.create_if_missing {
                    return Err(Error::NotFound { path: path.clone() });
                }
                if segment_names.iter().any(|name| parse_segment_name(name).is_some()) {
                    return Err(Error::NotADatabase { reason: "log segments without a MANIFEST".to_owned() });
                }
                Layout::new(options.memory_budget, options.segment_size)?;
                tracing::info!("creating a new database");
                Manifest {
                    db_id: random_u64(),
                    hash_seed: random_u64(),
                    segment_size: options.segment_size,
                    log_begin: 0,
                    log_end: 0,
                    next_seq: 1,
                    clean: false,
                    cut_at_log_end: false,
                    hash_bits: options.hash_bits,
                    created_unix_ns: now_unix_ns(),
                    holes: Vec::new(),
                    usage: Vec::new(),
                }
            }
            Err(error) => {
                return Err(Error::Io { op: "read the MANIFEST", file: MANIFEST_PATH.to_owned(), source: error });
            }
        };
        let layout = Layout::new(options.memory_budget, manifest.segment_size)?;
        let segments = Segments::new(
            Arc::clone(&storage),
            manifest.segment_size,
            manifest.db_id,
            &manifest.holes,
            options.max_open_segments,
        );
        open_segments(&storage, &segments, &segment_names, &manifest)?;

        let index_config = BucketMapConfig::new(&index_dir)
            .bucket_bits(INDEX_BUCKET_BITS)
            .initial_cells_log2(12)
            .max_search(INDEX_MAX_SEARCH)
            .verify_on_open(options.verify_index_on_open);
        let hash_mask = if manifest.hash_bits >= 64 { u64::MAX } else { (1u64 << manifest.hash_bits) - 1 };
        let hasher = KeyHash { seed: manifest.hash_seed, mask: hash_mask };
        let mut recovery = RecoveryStats::default();
        // The live state is marked not valid as it is opened: a kill from here until this
        // open has finished leaves nothing to take up.
        let boot_id = talus_datapool::boot_id().inspect_err(|error| tracing::debug!(%error, "no boot id")).ok();
        let (live, live_snapshot) =
            match storage.local_dir().map(|dir| LiveState::open(dir, N_STRIPES, manifest.segment_size)) {
                Some(Ok((live, snapshot))) => (Some(Arc::new(live)), snapshot),
                // Only an optimisation: without it a kill means a rebuild, as after an OS crash.
                Some(Err(error)) => {
                    tracing::warn!(%error, "no live state: a kill of this process will mean a rebuild");
                    (None, None)
                }
                None => (None, None),
            };
        let wants_resume = !manifest.clean && !manifest.cut_at_log_end && !options.repair && options.resume_after_kill;
        let resumed = match (wants_resume, live_snapshot) {
            (true, Some(snapshot)) => {
                let in_range = |resumable: &crate::live::Resumable| {
                    // The MANIFEST's log end and next sequence number are lower bounds.
                    resumable.log_end >= manifest.log_end.max(manifest.log_begin)
                        && resumable.next_seq >= manifest.next_seq
                        && resumable.next_seq < u64::MAX
                };
                match snapshot.resumable(boot_id, manifest.db_id, manifest.segment_size, N_STRIPES).and_then(
                    |resumable| match in_range(&resumable) {
                        true => Ok(resumable),
                        false => Err("the live state is behind the MANIFEST".to_owned()),
                    },
                ) {
                    Ok(resumable) => {
                        let index = check_resumed_log_end(&segments, resumable.log_end).and_then(|()| {
                            let config = index_config.clone().resume_after_kill(true);
                            retry_while_locked(|| BucketMap::open(config.clone()), is_locked).map_err(|error| {
                                match is_locked(&error) {
                                    true => Error::Locked { path: index_dir.clone() },
                                    false => Error::from(error),
                                }
                            })
                        });
                        match index {
                            Ok(index) => Some((index, resumable)),
                            Err(error @ Error::Locked { .. }) => return Err(error),
                            Err(error) => {
                                tracing::info!(%error, "the killed process's index cannot be taken up; rebuilding it");
                                None
                            }
                        }
                    }
                    Err(why_not) => {
                        tracing::info!(why_not, "the killed process's state cannot be taken up; rebuilding the index");
                        None
                    }
                }
            }
            (true, None) if live.is_some() => {
                tracing::info!("no valid live state to take up; rebuilding the index");
                None
            }
            _ => None,
        };
        // `repair` trusts nothing but the log: the index is rebuilt even after a clean close.
        let clean_index = match manifest.clean && !options.repair {
            // With `resume_after_kill`, an index closed in this boot and untouched since is
            // opened without reading its files again (the bucket map checks that).
            true => match retry_while_locked(
                || BucketMap::open(index_config.clone().resume_after_kill(options.resume_after_kill)),
                is_locked,
            ) {
                Ok(index) => Some(index),
                Err(error) if is_locked(&error) => return Err(Error::Locked { path: index_dir.clone() }),
                Err(error) => {
                    tracing::warn!(%error, "the index of a cleanly closed database did not open; rebuilding it");
                    None
                }
            },
            false => None,
        };
        let checkpoints = list_checkpoints(&checkpoint_dir)?;
        // Index directories moved aside (by this open, or by an earlier one that did not get
        // to remove them): removed by the maintenance thread, or at close.
        let discarded = Discarded::new(&index_dir);
        // Checkpoints this open used up (its index became the index) or found unusable.
        let mut used_up: Vec<PathBuf> = Vec::new();
        let resumed_synced_until = resumed.as_ref().map(|(_, resumable)| resumable.synced_until);
        let (index, usage, log_end, next_seq) = match (clean_index, resumed) {
            (Some(index), _) => {
                check_clean_log_end(&segments, manifest.log_end)?;
                recovery.clean = true;
                let usage = UsageTable::new(manifest.segment_size, &manifest.usage);
                (index, usage, manifest.log_end, manifest.next_seq)
            }
            (None, Some((index, resumable))) => {
                recovery.resumed = true;
                let usage = UsageTable::new(manifest.segment_size, &resumable.usage);
                let in_log: std::collections::BTreeSet<u64> = segments.first_addresses().into_iter().collect();
                usage.retain(|first| in_log.contains(&first));
                tracing::info!(log_end = resumable.log_end, "took up the database as the killed process left it");
                (index, usage, resumable.log_end, resumable.next_seq.max(manifest.next_seq))
            }
            (None, None) => {
                let _span = tracing::info_span!("rebuild the index").entered();
                discard_index_dir(&index_dir, &discarded)?;
                if manifest.cut_at_log_end {
                    // A failed sync poisoned the last run: bytes after the durable end may
                    // be in the page cache only, so they are cut, not replayed.
                    tracing::warn!(log_end = manifest.log_end, "cutting the log at its last durable end");
                    truncate_at(&segments, manifest.log_end, &segments.first_addresses())?;
                }
                let mut progress = |done: u64, total: u64| {
                    if let Some(callback) = &options.recovery_progress {
                        (callback.0)(done, total);
                    }
                };
                // After a clean close every byte up to `log_end` was acknowledged: none of it
                // may be cut as a torn tail.
                let complete_until = if manifest.clean { manifest.log_end } else { 0 };
                let rebuild = Rebuild {
                    segments: &segments,
                    hasher: &hasher,
                    index_config: &index_config,
                    index_dir: &index_dir,
                    db_id: manifest.db_id,
                    log_begin: manifest.log_begin,
                    repair: options.repair,
                    complete_until,
                    discarded: &discarded,
                };
                // The newest checkpoint that loads whole; `repair` trusts only the log.
                let mut from_checkpoint = None;
                for (covers_until, dir) in checkpoints.iter().filter(|_| !options.repair) {
                    let covers_until = *covers_until;
                    match rebuild.replay_after_checkpoint(dir, covers_until, &mut progress)? {
                        Some(rebuilt) => {
                            recovery.checkpoint_covers_until = Some(covers_until);
                            from_checkpoint = Some(rebuilt);
                            used_up.push(dir.clone());
                            break;
                        }
                        None => {
                            recovery.n_checkpoints_rejected += 1;
                            used_up.push(dir.clone());
                        }
                    }
                }
                let rebuilt = match from_checkpoint {
                    Some(rebuilt) => rebuilt,
                    None => rebuild.replay_whole_log(&mut progress)?,
                };
                let outcome = rebuilt.outcome;
                tracing::info!(
                    n_records = outcome.n_records,
                    n_bytes = outcome.n_bytes,
                    n_torn_bytes = outcome.n_torn_bytes,
                    checkpoint = recovery.checkpoint_covers_until,
                    "rebuilt the index from the log"
                );
                recovery.n_records_replayed = outcome.n_records;
                recovery.n_bytes_scanned = outcome.n_bytes;
                recovery.n_torn_bytes = outcome.n_torn_bytes;
                recovery.repair = outcome.repair;
                let next_seq = manifest.next_seq.max(rebuilt.next_seq).max(outcome.max_seq + 1);
                (rebuilt.index, rebuilt.usage, outcome.log_end, next_seq)
            }
        };
        // Checkpoints that cover more log than there is (a repair cut it) can never be used,
        // nor can the ones used up or found damaged.
        for (covers_until, dir) in &checkpoints {
            if *covers_until > log_end || options.repair || used_up.contains(dir) {
                tracing::info!(dir = %dir.display(), "removing a checkpoint that was used up or cannot be used");
                remove_checkpoint(dir)?;
            }
        }
        let last_checkpoint = checkpoints
            .iter()
            .filter(|(_, dir)| !used_up.contains(dir))
            .map(|(covers_until, _)| *covers_until)
            .find(|&covers_until| covers_until <= log_end && !options.repair);
        // After a rebuild from a checkpoint, that checkpoint is gone: a new one is due.
        let checkpoint_due = recovery.checkpoint_covers_until.is_some();
        // From here until a clean close, the index and the log may disagree on disk.
        manifest.clean = false;
        manifest.cut_at_log_end = false;
        if !recovery.resumed {
            // (An unclean MANIFEST's log end and next sequence number are only lower bounds.)
            manifest.log_end = log_end;
            manifest.next_seq = next_seq;
        }
        manifest.usage.clear();
        manifest.holes = segments.holes_from(manifest.log_begin);
        let encoded = manifest.encode();
        // A killed process's MANIFEST already says all this: taking it up writes nothing
        // (and waits for no fsync). A clean one stays as it is until the first append.
        if !(recovery.clean || recovery.resumed && manifest_read.as_deref() == Some(&encoded[..])) {
            storage.write_atomic(MANIFEST_PATH, &encoded).map_err(io_error("write the MANIFEST", MANIFEST_PATH))?;
        }

        let mut log_writer = LogWriter::new(log_end, options.effective_log_preallocation());
        // A killed process's last segment may hold bytes it wrote and never synced (it
        // synced each earlier segment before it first wrote a later one). Taken up, they
        // are synced by the next commit, as that process would have; after a rebuild,
        // they are counted as durable from here on, so they are made so now.
        let synced_until = match resumed_synced_until {
            Some(synced_until) if log_writer.take_up_unsynced(&segments, synced_until) => synced_until,
            _ => {
                if !recovery.clean && log_end > 0 && storage.local_dir().is_some() {
                    let first = segments.first_address_of(log_end - 1);
                    if let Some(file) = segments.file(first)? {
                        file.sync_data().map_err(io_error("sync the log", &segment_path(first)))?;
                    }
                }
                log_end
            }
        };
        if recovery.resumed {
            log_writer.adopt_preallocation(&segments, log_end)?;
        }
        let memory = MemoryOptions::new().prefault(false).create(layout.ring_capacity as usize)?;
        let flush_step = match (options.background_log_writer, options.sync_mode) {
            (true, SyncMode::Never | SyncMode::Periodic(_)) => (layout.ring_capacity / LOG_WRITER_STEPS).max(1),
            (false, _) | (true, SyncMode::Always) => 0,
        };
        let ring_config = RingConfig::new()
            .page_size(layout.page_size as usize)
            .mutable_fraction(0.0)
            .reuse_freed(false)
            .start_address(log_end);
        let ring = RingBuffer::new(memory, ring_config)?;
        // Last before writes can come: a kill from here on may be taken up.
        if let Some(live) = &live {
            live.start(boot_id, manifest.db_id, (log_end, synced_until), next_seq, &usage.snapshot());
            usage.attach(Arc::clone(live));
        }
        recovery.duration = started.elapsed();
        let inner = Arc::new(Inner {
            path,
            storage,
            layout,
            memory_budget: options.memory_budget,
            sync_mode: options.sync_mode,
            hash_seed: manifest.hash_seed,
            hash_mask,
            ring,
            index,
            segments,
            live,
            append: Mutex::new(next_seq),
            published_until: AtomicU64::new(log_end),
            writer: Mutex::new(log_writer),
            synced_until: AtomicU64::new(synced_until),
            commit: Mutex::new(false),
            commit_done: Condvar::new(),
            writers_in_flight: AtomicU64::new(0),
            writers_waiting: AtomicU64::new(0),
            commit_covered: AtomicU64::new(0),
            expected_group: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            stripes: (0..N_STRIPES).map(|_| Stripe::default()).collect(),
            manifest: Mutex::new(manifest),
            manifest_unclean_on_disk: AtomicBool::new(!recovery.clean),
            usage,
            compaction: options.compaction,
            checkpoint_every_bytes: options.checkpoint_every_bytes,
            checkpoint_interval: options.checkpoint_interval,
            maintenance: Mutex::new(Maintenance {
                last_checkpoint_covers_until: last_checkpoint.unwrap_or(log_end),
                checkpoint_due,
                last_checkpoint_at: Instant::now(),
                failed_segments: Vec::new(),
                last_published: log_end,
                last_growth_at: Instant::now(),
            }),
            pending_removals: Mutex::new(Vec::new()),
            removal_barrier: RwLock::new(()),
            checkpoint_dir,
            discarded,
            stopping: AtomicBool::new(false),
            counters: AtomicCounters::default(),
            recovery,
            shutdown: Mutex::new(false),
            shutdown_signal: Condvar::new(),
            flush_step,
            flush_requested_until: AtomicU64::new(log_end),
            flush_signal: Condvar::new(),
            closed: AtomicBool::new(false),
            _lock: lock,
        });
        let mut threads = Vec::new();
        if let SyncMode::Periodic(interval) = options.sync_mode {
            threads.push(spawn_sync_thread(Arc::clone(&inner), interval).inspect_err(|_| inner.invalidate_live())?);
        }
        if flush_step > 0 {
            threads.push(spawn_log_writer_thread(Arc::clone(&inner)).inspect_err(|_| inner.invalidate_live())?);
        }
        let wants_maintenance = options.compaction.background
            || options.checkpoint_every_bytes > 0
            || options.checkpoint_interval.is_some();
        let mut db = Db { inner, threads };
        if wants_maintenance {
            let thread = maintenance::spawn_maintenance_thread(Arc::clone(&db.inner))
                .inspect_err(|_| db.inner.invalidate_live())?;
            db.threads.push(thread);
        }
        tracing::info!(log_end, clean = db.inner.recovery.clean, "opened");
        Ok(db)
    }

    /// Sets `key` to `value`. With [`SyncMode::Always`] it is durable when this returns.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooLarge`], [`Error::ValueTooLarge`] (nothing written), [`Error::Poisoned`],
    /// [`Error::HashCollisionLimit`], I/O errors (which poison the database).
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.inner.check_sizes(key, Some(value))?;
        self.inner.check_writable()?;
        let _in_flight = self.inner.writer_in_flight();
        let hash = self.inner.hash(key);
        let end = {
            let _stripe = self.inner.write_stripe(stripe_of(hash));
            let (existing, n_sharing) = self.inner.find_counting(hash, key)?;
            if existing.is_none() {
                self.inner.check_room_for_new_keys(n_sharing, 1)?;
            }
            let mut next_seq = self.inner.append.lock();
            let (address, end) = self.inner.append_record(&mut next_seq, RecordKind::Put, 0, key, value)?;
            self.inner.superseded(existing);
            self.inner.publish(end, *next_seq);
            drop(next_seq);
            self.inner
                .index_put(hash, existing.map(|loc| loc.address), address)
                .inspect_err(|_| self.inner.index_failed())?;
            end
        };
        bump(&self.inner.counters.n_puts);
        self.inner.after_write(end)
    }

    /// Removes `key` (nothing happens if it is absent). With [`SyncMode::Always`] the
    /// removal is durable when this returns.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooLarge`], [`Error::Poisoned`], I/O errors.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        self.inner.check_sizes(key, None)?;
        self.inner.check_writable()?;
        let _in_flight = self.inner.writer_in_flight();
        let hash = self.inner.hash(key);
        let end = {
            let _stripe = self.inner.write_stripe(stripe_of(hash));
            let Some(existing) = self.inner.find(hash, key)? else {
                return Ok(());
            };
            let mut next_seq = self.inner.append.lock();
            let (_, end) = self.inner.append_record(&mut next_seq, RecordKind::Delete, 0, key, &[])?;
            self.inner.superseded(Some(existing));
            self.inner.publish(end, *next_seq);
            drop(next_seq);
            self.inner
                .index
                .remove_if(&hash, |&address| address == existing.address)
                .inspect_err(|_| self.inner.index_failed())?;
            end
        };
        bump(&self.inner.counters.n_deletes);
        self.inner.after_write(end)
    }

    /// Applies every operation of `batch`, atomically for readers and across crashes.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put); a size or collision error leaves nothing written.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let ops: Vec<BatchOp<'_>> = batch.ops().collect();
        for op in &ops {
            match *op {
                BatchOp::Put { key, value } => inner.check_sizes(key, Some(value))?,
                BatchOp::Delete { key } => inner.check_sizes(key, None)?,
            }
        }
        inner.check_writable()?;
        let _in_flight = inner.writer_in_flight();
        let hashes: Vec<u64> = ops.iter().map(|op| inner.hash(op.key())).collect();
        let mut stripe_ids: Vec<usize> = hashes.iter().map(|&hash| stripe_of(hash)).collect();
        stripe_ids.sort_unstable();
        stripe_ids.dedup();
        // Lock every stripe first (in order, so batches cannot deadlock), update the index
        // only after all records are appended, unlock last: a reader sees all or nothing.
        let _stripes: Vec<_> = stripe_ids.iter().map(|&idx| inner.write_stripe(idx)).collect();

        // Keys new to the index, counted per hash, must stay within the collision limit.
        let mut existing: Vec<Option<Loc>> = Vec::with_capacity(ops.len());
        let mut n_sharing: Vec<usize> = Vec::with_capacity(ops.len());
        inner.prefetch_ahead(&hashes, None);
        for (idx, (op, &hash)) in ops.iter().zip(&hashes).enumerate() {
            inner.prefetch_ahead(&hashes, Some(idx));
            let (found, n) = inner.find_counting(hash, op.key())?;
            existing.push(found);
            n_sharing.push(n);
        }
        // Whether the batch may name a key twice (two operations with one hash).
        let mut sorted_hashes = hashes.clone();
        sorted_hashes.sort_unstable();
        let repeats = sorted_hashes.windows(2).any(|pair| pair[0] == pair[1]);
        let is_new = |idx: usize| matches!(ops[idx], BatchOp::Put { .. }) && existing[idx].is_none();
        if repeats {
            // Distinct new keys per hash (a delete later in the batch earns no credit: a
            // conservative bound).
            let mut new_keys: Vec<(u64, &[u8], usize)> = (0..ops.len())
                .filter(|&idx| is_new(idx))
                .map(|idx| (hashes[idx], ops[idx].key(), n_sharing[idx]))
                .collect();
            new_keys.sort_unstable();
            new_keys.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
            for group in new_keys.chunk_by(|a, b| a.0 == b.0) {
                inner.check_room_for_new_keys(group[0].2, group.len())?;
            }
        } else {
            for idx in (0..ops.len()).filter(|&idx| is_new(idx)) {
                inner.check_room_for_new_keys(n_sharing[idx], 1)?;
            }
        }

        let mut addresses = Vec::with_capacity(ops.len());
        let mut befores: Vec<Option<u64>> = Vec::with_capacity(ops.len());
        let end = {
            let mut next_seq = inner.append.lock();
            // Dropped before `next_seq` (declared after it), so under the append lock.
            let mut usage = BatchUsage::new(&inner.usage, &inner.counters.n_log_bytes_appended);
            let last = ops.len() - 1;
            let mut end = 0;
            // Each key's live record as the batch goes (for the accounting): before the
            // batch, or the batch's own latest put of it. Only a batch that may name a key
            // twice needs to track that.
            let mut current: std::collections::HashMap<&[u8], Option<Loc>> = std::collections::HashMap::new();
            for (idx, op) in ops.iter().enumerate() {
                let flags = if idx == last { FLAG_BATCH | FLAG_BATCH_END } else { FLAG_BATCH };
                let (kind, key, value) = match *op {
                    BatchOp::Put { key, value } => (RecordKind::Put, key, value),
                    BatchOp::Delete { key } => (RecordKind::Delete, key, &[][..]),
                };
                let (address, record_end) = match inner.append_uncounted(*next_seq, kind, flags, key, value) {
                    Ok(appended) => appended,
                    Err(error) => {
                        // Part of a batch is in the log: nothing may follow it but the rest.
                        inner.poison("a batch failed half-way through its append");
                        return Err(error);
                    }
                };
                *next_seq += 1;
                usage.appended(address, record_end - address, kind == RecordKind::Delete);
                let before = match repeats {
                    true => current.get(op.key()).copied().unwrap_or(existing[idx]),
                    false => existing[idx],
                };
                if let Some(before) = before {
                    usage.superseded(before.address, before.size);
                }
                befores.push(before.map(|loc| loc.address));
                let now = match op {
                    BatchOp::Put { .. } => Some(Loc { address, size: record_end - address }),
                    BatchOp::Delete { .. } => None,
                };
                if repeats {
                    current.insert(op.key(), now);
                }
                inner.publish(record_end, *next_seq);
                addresses.push(address);
                end = record_end;
            }
            end
        };
        // Apply in order: `befores[idx]` is the key's index entry as the earlier operations
        // of this batch left it (the stripes are held, so nothing else changed it).
        inner.prefetch_ahead(&hashes, None);
        for (idx, op) in ops.iter().enumerate() {
            inner.prefetch_ahead(&hashes, Some(idx));
            let hash = hashes[idx];
            let current = befores[idx];
            match op {
                BatchOp::Put { .. } => {
                    inner.index_put(hash, current, addresses[idx]).inspect_err(|_| inner.index_failed())?
                }
                BatchOp::Delete { .. } => {
                    if let Some(current) = current {
                        inner
                            .index
                            .remove_if(&hash, |&address| address == current)
                            .inspect_err(|_| inner.index_failed())?;
                    }
                }
            }
        }
        drop(_stripes);
        bump(&inner.counters.n_batches);
        inner.after_write(end)
    }

    /// The value of `key`, if it has one.
    ///
    /// # Errors
    ///
    /// [`Error::KeyTooLarge`]; [`Error::Corruption`] if the record read from disk fails its
    /// checksum; I/O errors.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// Calls `f` with the value of `key` without copying it, if it has one, and returns what
    /// `f` returns. The bytes stay valid during the call; `f` should be short and must not
    /// write to this database (memory it pins cannot be reused meanwhile).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn get_with<R>(&self, key: impl AsRef<[u8]>, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let key = key.as_ref();
        self.inner.check_sizes(key, None)?;
        self.inner.counters.n_gets.bump();
        let hash = self.inner.hash(key);
        // Stripe first, then the pin: a writer holding this stripe may be waiting for pinned
        // memory to be released, so nobody may wait for a stripe while pinning.
        let stripe = self.inner.stripe(hash).read();
        let guard = self.inner.ring.pin();
        let located = {
            let _stripe = stripe;
            let mut found = None;
            for &address in self.inner.candidates(hash).as_slice() {
                let located = self.inner.locate(&guard, address)?;
                let record = parse_located(&located, address, &self.inner.segments)?;
                if record.key == key {
                    found = Some(located);
                    break;
                }
            }
            found
        };
        let Some(located) = located else { return Ok(None) };
        let record = record::decode(located.payload(), false).expect("parsed above");
        Ok(Some(f(record.value)))
    }

    /// Whether `key` has a value.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get_with(key, |_| ())?.is_some())
    }

    /// Every live pair, in no particular order. Weakly consistent: a pair written or
    /// removed during the iteration may or may not be seen.
    pub fn iter(&self) -> Iter<'_> {
        // Held while the iterator lives: compaction may move a record after its address was
        // read, but the file it was in stays until the iterator is done.
        let barrier = self.inner.removal_barrier.read();
        Iter { inner: &self.inner, entries: Box::new(self.inner.index.iter()), _barrier: barrier }
    }

    /// Makes every write so far durable.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`], I/O errors (which poison the database).
    pub fn sync(&self) -> Result<()> {
        let until = self.inner.published_until.load(Ordering::Acquire);
        self.inner.wait_durable(until)
    }

    /// Numbers about the database.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// The database directory (or `<storage>` for a database on a custom [`Storage`]).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes the database cleanly: the log synced, the index flushed, the MANIFEST marked
    /// clean, background threads joined, the lock released. The next open replays nothing.
    ///
    /// # Errors
    ///
    /// I/O errors; the next open then rebuilds the index from the log.
    pub fn close(mut self) -> Result<()> {
        self.stop_threads();
        self.inner.close()
    }

    /// For crash tests: stops as if the machine crashed here, the log's files keeping what
    /// was written to them: the log is not synced or written further and the MANIFEST stays
    /// unclean (it is made so if a clean open left it clean, as if the crash came during the
    /// next write), so the next open rebuilds the index from the log (the index's own files
    /// may still be flushed as they are dropped; the rebuild ignores them). The lock is
    /// released.
    #[doc(hidden)]
    pub fn simulate_crash(mut self) {
        self.stop_threads();
        if !self.inner.manifest_unclean_on_disk.load(Ordering::Acquire)
            && let Err(error) = self.inner.mark_unclean_on_disk()
        {
            tracing::warn!(%error, "the simulated crash left the MANIFEST clean");
        }
        if let Some(live) = &self.inner.live {
            live.invalidate();
        }
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    /// For crash tests: stops as if the process were killed here (its memory lost, the page
    /// cache kept): the log is not written further and the MANIFEST stays as it is (unclean,
    /// unless a clean open appended nothing since: then the next open is clean). The next
    /// open takes the database up as it is if it can
    /// ([`Options::resume_after_kill`]), else rebuilds the index. The lock is released.
    #[doc(hidden)]
    pub fn simulate_kill(mut self) {
        self.stop_threads();
        self.inner.index.abandon();
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    fn stop_threads(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.inner.stopping.store(true, Ordering::SeqCst);
        *self.inner.shutdown.lock() = true;
        self.inner.shutdown_signal.notify_all();
        self.inner.flush_signal.notify_all();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a background thread panicked");
            }
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.stop_threads();
        if let Err(error) = self.inner.close() {
            tracing::error!(%error, "closing the database on drop failed; the next open rebuilds the index");
        }
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.inner.path).field("ring", &*self.inner.ring).finish_non_exhaustive()
    }
}

/// Iterator over every live pair; see [`Db::iter`].
pub struct Iter<'a> {
    inner: &'a Inner,
    entries: Box<dyn Iterator<Item = (u64, u64)> + 'a>,
    _barrier: parking_lot::RwLockReadGuard<'a, ()>,
}

impl Iterator for Iter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (_, address) = self.entries.next()?;
        let guard = self.inner.ring.pin();
        let pair = self.inner.locate(&guard, address).and_then(|located| {
            let record = parse_located(&located, address, &self.inner.segments)?;
            Ok((record.key.to_vec(), record.value.to_vec()))
        });
        Some(pair)
    }
}

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

fn parse_located<'a>(located: &'a Located<'_>, address: u64, segments: &Segments) -> Result<Record<'a>> {
    let record = record::decode(located.payload(), false).map_err(|reason| {
        let first = segments.first_address_of(address);
        corruption(&segment_path(first), SEGMENT_HEADER_LEN + (address - first), reason)
    })?;
    if record.kind != RecordKind::Put {
        let first = segments.first_address_of(address);
        return Err(corruption(
            &segment_path(first),
            SEGMENT_HEADER_LEN + (address - first),
            "index points at a delete",
        ));
    }
    Ok(record)
}

fn stripe_of(hash: u64) -> usize {
    // The index uses the hash's high bits for buckets; stripes use a mix of all of them.
    (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % N_STRIPES
}

/// Decrements the in-flight writer count when a durable write returns.
struct InFlight<'a> {
    counter: &'a AtomicU64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A hash's index entries: inline up to four, on the heap beyond.
#[derive(Default)]
struct Candidates {
    inline: [u64; 4],
    n_inline: usize,
    spilled: Vec<u64>,
}

impl Candidates {
    fn push(&mut self, address: u64) {
        if self.n_inline < self.inline.len() && self.spilled.is_empty() {
            self.inline[self.n_inline] = address;
            self.n_inline += 1;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.n_inline]);
            }
            self.spilled.push(address);
        }
    }

    fn as_slice(&self) -> &[u64] {
        match self.spilled.is_empty() {
            true => &self.inline[..self.n_inline],
            false => &self.spilled,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registers every segment file in the log directory. Only the last one is opened now (its
/// header checked): one whose header never made it to disk (a crash while creating it) is
/// removed. The others are opened, and their headers checked, when first read.
fn open_segments(storage: &Arc<dyn Storage>, segments: &Segments, names: &[String], manifest: &Manifest) -> Result<()> {
    let mut firsts: Vec<u64> = names.iter().filter_map(|name| parse_segment_name(name)).collect();
    firsts.sort_unstable();
    let mut live = Vec::with_capacity(firsts.len());
    for &first in &firsts {
        let path = segment_path(first);
        if first < manifest.log_begin || manifest.holes.contains(&first) {
            // Compaction took it out of the log, and a crash came before the file was gone.
            tracing::info!(path, "removing a segment compaction retired");
            storage.remove(&path).map_err(io_error("remove a retired segment", &path))?;
            continue;
        }
        if !first.is_multiple_of(manifest.segment_size) {
            return Err(corruption(&path, 0, "segment name is not a multiple of the segment size"));
        }
        live.push(first);
    }
    for &first in &live {
        segments.insert_listed(first);
    }
    let Some(&last) = live.last() else { return Ok(()) };
    match segments.file(last) {
        Err(error @ Error::Corruption { .. }) => {
            let path = segment_path(last);
            let file = storage.open(&path, false).map_err(io_error("open a segment", &path))?;
            let len = file.len().map_err(io_error("read a segment's length", &path))?;
            if len > SEGMENT_HEADER_LEN || manifest.clean {
                return Err(error);
            }
            tracing::info!(path, "removing a segment whose creation did not finish");
            segments.remove(last)
        }
        opened => opened.map(drop),
    }
}

/// After a clean close the log ends exactly at the recorded end.
fn check_clean_log_end(segments: &Segments, log_end: u64) -> Result<()> {
    let firsts = segments.first_addresses();
    let Some(&last) = firsts.last() else {
        return match log_end {
            0 => Ok(()),
            _ => Err(corruption(MANIFEST_PATH, 48, "the log's segments are missing")),
        };
    };
    let path = segment_path(last);
    let file = segments.file(last)?.expect("listed");
    let len = file.len().map_err(io_error("read a segment's length", &path))?;
    let data_end = last + len.saturating_sub(SEGMENT_HEADER_LEN);
    // A trailing filler leaves the file shorter than the log's end; a longer file means
    // bytes the clean close did not account for.
    if data_end > log_end || (log_end - last > segments.segment_size) {
        return Err(corruption(&path, len, format!("the log ends at {data_end}, the MANIFEST says {log_end}")));
    }
    Ok(())
}

/// A log end taken from a killed process's live state must lie in the last segment file
/// (which may hold preallocated zeros after it, or end early in a filler's hole).
fn check_resumed_log_end(segments: &Segments, log_end: u64) -> Result<()> {
    let last = segments.first_addresses().last().copied();
    let fits = match last {
        None => log_end == 0,
        Some(last) => log_end >= last && log_end - last <= segments.segment_size,
    };
    match fits {
        true => Ok(()),
        false => Err(corruption(crate::live::LIVE_PATH, 0, format!("the log does not end at {log_end}"))),
    }
}

/// Retries `attempt` for a short while as long as it fails with a lock held elsewhere.
/// `flock` locks belong to open file descriptions, which a process forked by another thread
/// of this one shares until it execs: a lock released by `close` can stay held for a moment.
fn retry_while_locked<T, E>(mut attempt: impl FnMut() -> Result<T, E>, locked: impl Fn(&E) -> bool) -> Result<T, E> {
    let deadline = Instant::now() + LOCK_RETRY_FOR;
    loop {
        match attempt() {
            Err(error) if locked(&error) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            result => return result,
        }
    }
}

fn is_locked(error: &talus_bucketmap::Error) -> bool {
    matches!(error, talus_bucketmap::Error::Pool(talus_datapool::Error::Locked { .. }))
}

/// Removes a checkpoint directory.
pub(crate) fn remove_checkpoint(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
        op: "remove a checkpoint",
        file: dir.display().to_string(),
        source,
    })
}

/// Starts a background thread named `name` that runs `work` each time `signal(&inner)` is
/// notified or `every` passes, until the database shuts down (`shutdown` set and every
/// signal notified). What `what` names goes into the error if the thread cannot start.
fn spawn_background(
    inner: Arc<Inner>,
    name: &str,
    what: &'static str,
    signal: fn(&Inner) -> &Condvar,
    every: Duration,
    work: impl Fn(&Inner) + Send + 'static,
) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut stop = inner.shutdown.lock();
            while !*stop {
                signal(&inner).wait_for(&mut stop, every);
                if *stop {
                    break;
                }
                drop(stop);
                work(&inner);
                stop = inner.shutdown.lock();
            }
        })
        .map_err(|source| Error::Io { op: what, file: String::new(), source })
}

/// The background log writer (not with [`SyncMode::Always`], whose commits write the log):
/// woken every `flush_step` bytes of log (and every [`LOG_WRITER_TICK`]), it copies the
/// published log to the segment files, so writers that find memory full only evict, and a
/// sync finds most of the log already in the page cache.
fn spawn_log_writer_thread(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let signal: fn(&Inner) -> &Condvar = |inner| &inner.flush_signal;
    spawn_background(inner, "talus-log-writer", "start the log writer thread", signal, LOG_WRITER_TICK, |inner| {
        if inner.check_writable().is_ok()
            && let Err(error) = inner.write_published()
        {
            tracing::warn!(%error, "the background log writer failed");
        }
    })
}

fn spawn_sync_thread(inner: Arc<Inner>, interval: Duration) -> Result<JoinHandle<()>> {
    let signal: fn(&Inner) -> &Condvar = |inner| &inner.shutdown_signal;
    spawn_background(inner, "talus-sync", "start the sync thread", signal, interval, |inner| {
        let until = inner.published_until.load(Ordering::Acquire);
        if let Err(error) = inner.wait_durable(until) {
            tracing::warn!(%error, "periodic sync failed");
        }
    })
}

impl Inner {
    fn hash(&self, key: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(key, self.hash_seed) & self.hash_mask
    }

    /// Prefetches the index probe windows of a batch's keys a few ahead of the one being
    /// worked on (`at`; `None` before the first), so that their cache misses overlap. (A
    /// large batch's windows prefetched all at once would leave the cache before their
    /// turn.)
    fn prefetch_ahead(&self, hashes: &[u64], at: Option<usize>) {
        let (skip, take) = match at {
            None => (0, PREFETCH_AHEAD),
            Some(at) => (at + PREFETCH_AHEAD, 1),
        };
        for hash in hashes.iter().skip(skip).take(take) {
            self.index.prefetch(hash);
        }
    }

    fn stripe(&self, hash: u64) -> &RwLock<()> {
        &self.stripes[stripe_of(hash)].0
    }

    /// Takes key stripe `idx` for writing, marked busy in the live state while it is held.
    fn write_stripe(&self, idx: usize) -> StripeWriteGuard<'_> {
        let guard = self.stripes[idx].0.write();
        if let Some(live) = &self.live {
            live.stripe_busy(idx, true);
        }
        StripeWriteGuard { inner: self, idx, _guard: guard }
    }

    fn check_sizes(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        if key.len() > MAX_KEY_LEN {
            return Err(Error::KeyTooLarge { len: key.len(), max: MAX_KEY_LEN });
        }
        let max = self.layout.max_value_len();
        match value {
            Some(value) if value.len() > max => Err(Error::ValueTooLarge { len: value.len(), max }),
            _ => Ok(()),
        }
    }

    fn check_writable(&self) -> Result<()> {
        match self.poisoned.load(Ordering::Acquire) {
            true => Err(Error::Poisoned),
            false => Ok(()),
        }
    }

    /// Refuses writes from now on, and records in the MANIFEST where the durable log ends:
    /// the files may show bytes after it that the disk never got (a failed fsync leaves
    /// them in the page cache, marked clean), so the next open cuts them.
    fn poison(&self, why: &str) {
        if let Some(live) = &self.live {
            live.invalidate();
        }
        if self.poisoned.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(why, "the database is poisoned: writes are refused until it is reopened");
        let mut manifest = self.manifest.lock();
        manifest.clean = false;
        manifest.cut_at_log_end = true;
        manifest.log_end = self.synced_until.load(Ordering::Acquire);
        match self.storage.write_atomic(MANIFEST_PATH, &manifest.encode()) {
            Ok(()) => self.manifest_unclean_on_disk.store(true, Ordering::Release),
            Err(error) => tracing::error!(%error, "recording the durable end of the log failed"),
        }
    }

    /// Makes the log writer's durable end known (under its lock): to the live state first,
    /// so that a kill never leaves it below a write some caller was told is durable.
    fn note_synced(&self, writer: &LogWriter) {
        if let Some(live) = &self.live {
            live.synced(writer.synced_until);
        }
        self.synced_until.fetch_max(writer.synced_until, Ordering::AcqRel);
    }

    /// No kill from now on is taken up (an open that fails half-way).
    fn invalidate_live(&self) {
        if let Some(live) = &self.live {
            live.invalidate();
        }
    }

    /// An index update failed after its record was appended: the index and the log now
    /// disagree, so no further write is accepted (and no kill is taken up) until a reopen
    /// rebuilds the index.
    ///
    /// Unlike [`poison`](Self::poison) it cuts nothing: the log is whole, and writes
    /// acknowledged meanwhile (a commit under way) are durable. The MANIFEST already says
    /// "not clean", and a poisoned database never closes cleanly.
    fn index_failed(&self) {
        if let Some(live) = &self.live {
            live.invalidate();
        }
        if !self.poisoned.swap(true, Ordering::AcqRel) {
            tracing::error!("updating the index failed after an append: writes are refused until a reopen rebuilds it");
        }
    }

    /// The index entries for `hash` (usually zero or one), without a heap allocation in
    /// the common case.
    fn candidates(&self, hash: u64) -> Candidates {
        let mut candidates = Candidates::default();
        self.index.for_each_value(&hash, |address| candidates.push(address));
        candidates
    }

    /// The address of `key`'s current record, if it has one.
    fn find(&self, hash: u64, key: &[u8]) -> Result<Option<Loc>> {
        self.find_counting(hash, key).map(|(found, _)| found)
    }

    /// As [`find`](Self::find), also returning how many keys share `hash`.
    fn find_counting(&self, hash: u64, key: &[u8]) -> Result<(Option<Loc>, usize)> {
        let candidates = self.candidates(hash);
        if candidates.is_empty() {
            return Ok((None, 0));
        }
        let guard = self.ring.pin();
        for &address in candidates.as_slice() {
            let located = self.locate(&guard, address)?;
            if parse_located(&located, address, &self.segments)?.key == key {
                let size = entry_size(located.payload().len());
                return Ok((Some(Loc { address, size }), candidates.len()));
            }
        }
        Ok((None, candidates.len()))
    }

    fn check_room_for_new_keys(&self, n_sharing: usize, n_new: usize) -> Result<()> {
        if n_sharing + n_new > MAX_KEYS_PER_HASH {
            return Err(Error::HashCollisionLimit { max: MAX_KEYS_PER_HASH });
        }
        Ok(())
    }

    /// The record at `address`: from memory if it is still there, else from its segment
    /// (checksum verified).
    fn locate<'g>(&self, guard: &'g talus_ringbuf::Guard<'_>, address: u64) -> Result<Located<'g>> {
        if address >= self.ring.head() {
            match guard.read(address) {
                Ok(payload) => return Ok(Located::Memory(payload)),
                Err(talus_ringbuf::Error::Evicted { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.counters.n_disk_reads.bump();
        Ok(Located::Disk(self.segments.read_payload(address)?))
    }

    fn index_put(&self, hash: u64, existing: Option<u64>, address: u64) -> Result<()> {
        match existing {
            Some(old) => {
                let replaced = self.index.replace_if(&hash, |&entry| entry == old, address)?;
                assert!(replaced, "the entry found under the stripe lock is still there");
                Ok(())
            }
            None => insert_new(&self.index, hash, address),
        }
    }

    /// Appends one record (the caller holds `append`, passed in as `next_seq`); returns its
    /// address and the address just past it.
    fn append_record(
        &self,
        next_seq: &mut u64,
        kind: RecordKind,
        flags: u8,
        key: &[u8],
        value: &[u8],
    ) -> Result<(u64, u64)> {
        let appended = self.append_record_with_seq(*next_seq, kind, flags, key, value)?;
        *next_seq += 1;
        Ok(appended)
    }

    /// As [`append_record`](Self::append_record), with the sequence number given (compaction
    /// copies keep theirs). The caller holds `append`.
    fn append_record_with_seq(
        &self,
        seq: u64,
        kind: RecordKind,
        flags: u8,
        key: &[u8],
        value: &[u8],
    ) -> Result<(u64, u64)> {
        let (address, end) = self.append_uncounted(seq, kind, flags, key, value)?;
        self.usage.appended(address, end - address, kind == RecordKind::Delete);
        self.counters.n_log_bytes_appended.fetch_add(end - address, Ordering::Relaxed);
        Ok((address, end))
    }

    /// As [`append_record_with_seq`](Self::append_record_with_seq), leaving the accounting
    /// to the caller (a batch's [`BatchUsage`]).
    fn append_uncounted(&self, seq: u64, kind: RecordKind, flags: u8, key: &[u8], value: &[u8]) -> Result<(u64, u64)> {
        if !self.manifest_unclean_on_disk.load(Ordering::Acquire) {
            self.mark_unclean_on_disk()?;
        }
        let len = record::encoded_len(key.len(), value.len());
        let mut entry = self.alloc(len)?;
        record::encode(&mut entry, kind, flags, seq, key, value);
        let address = entry.address();
        drop(entry); // publishes it
        Ok((address, address + entry_size(len)))
    }

    /// Replaces a clean MANIFEST with the open database's (not clean), before the first
    /// record after a clean open is appended (under `append`): from then on the index and
    /// the log may disagree on disk until the next clean close. A failure leaves the clean
    /// MANIFEST in place and appends nothing.
    #[cold]
    fn mark_unclean_on_disk(&self) -> Result<()> {
        let manifest = self.manifest.lock();
        if !self.manifest_unclean_on_disk.load(Ordering::Acquire) {
            debug_assert!(!manifest.clean, "the open database's MANIFEST is never clean in memory");
            self.storage
                .write_atomic(MANIFEST_PATH, &manifest.encode())
                .map_err(io_error("write the MANIFEST", MANIFEST_PATH))?;
            self.manifest_unclean_on_disk.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Accounts for a live record that a write (under `append`) just superseded.
    fn superseded(&self, loc: Option<Loc>) {
        if let Some(loc) = loc {
            self.usage.superseded(loc.address, loc.size);
        }
    }

    /// Publishes the log up to `end` (under `append`, whose `next_seq` is passed in); wakes
    /// the background log writer every `flush_step` bytes.
    fn publish(&self, end: u64, next_seq: u64) {
        if let Some(live) = &self.live {
            live.published(end, next_seq);
        }
        self.published_until.store(end, Ordering::Release);
        if self.flush_step > 0 && end >= self.flush_requested_until.load(Ordering::Relaxed) + self.flush_step {
            self.flush_requested_until.store(end, Ordering::Relaxed);
            self.flush_signal.notify_one();
        }
    }

    /// Writes the published log to the segment files (the background log writer's work,
    /// and the first half of making room).
    fn write_published(&self) -> Result<u64> {
        let mut writer = self.writer.lock();
        let until = self.published_until.load(Ordering::Acquire);
        let result = writer.write_until(&self.ring, &self.segments, until);
        if let (Ok(()), Some(live)) = (&result, &self.live) {
            live.written(writer.written_until);
        }
        self.note_synced(&writer);
        if let Err(error) = result {
            self.poison("writing the log failed");
            return Err(error);
        }
        Ok(writer.written_until)
    }

    /// Allocates at the tail; when memory is full, writes the oldest records to the segment
    /// files and evicts them.
    fn alloc(&self, len: usize) -> Result<Allocation<'_>> {
        loop {
            match self.ring.alloc(len) {
                Ok(entry) => return Ok(entry),
                Err(talus_ringbuf::Error::Full { .. }) => self.make_room()?,
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn make_room(&self) -> Result<()> {
        self.check_writable()?;
        let written_until = self.write_published()?;
        let ring: &Ring = &self.ring;
        let until = written_until.min(ring.head() + ring.capacity() / 4);
        let report = ring.evict_until(until, |_| EvictAction::Evicted);
        self.counters.n_evicted.fetch_add(report.n_evicted, Ordering::Relaxed);
        if report.n_evicted + report.n_skipped == 0 {
            // Readers still pin the oldest memory: let them finish.
            std::thread::yield_now();
        }
        Ok(())
    }

    fn after_write(&self, end: u64) -> Result<()> {
        match self.sync_mode {
            SyncMode::Always => {
                bump(&self.counters.n_durable_writes);
                self.wait_durable(end)
            }
            SyncMode::Periodic(_) | SyncMode::Never => Ok(()),
        }
    }

    /// Returns once everything below `until` is durable, leading a group commit if no one
    /// else is: one write and one fsync cover every writer waiting.
    fn wait_durable(&self, until: u64) -> Result<()> {
        if self.synced_until.load(Ordering::Acquire) >= until {
            return Ok(());
        }
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        let result = self.wait_durable_slow(until);
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Counts a durable writer in flight until the guard drops.
    fn writer_in_flight(&self) -> Option<InFlight<'_>> {
        (self.sync_mode == SyncMode::Always).then(|| {
            self.writers_in_flight.fetch_add(1, Ordering::SeqCst);
            InFlight { counter: &self.writers_in_flight }
        })
    }

    /// Before a leader takes its snapshot of the log: if other durable writers are still
    /// appending (in flight, not yet waiting), or fewer writes came since the last commit's
    /// snapshot than that commit saw writers (writers taking turns: the others are on their
    /// way back with their next write), give them up to [`GATHER_MAX`] to publish, so that
    /// one fsync covers them too. A lone writer never waits.
    fn gather_writers(&self) {
        let expected = self.expected_group.load(Ordering::Relaxed);
        let since = self.commit_covered.load(Ordering::SeqCst);
        let mut deadline = None;
        let mut n_spins = 0u32;
        loop {
            let appending = self.writers_in_flight.load(Ordering::SeqCst) > self.writers_waiting.load(Ordering::SeqCst);
            let missing = self.counters.n_durable_writes.load(Ordering::SeqCst).saturating_sub(since) < expected;
            if !appending && !missing {
                break;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + GATHER_MAX);
            if Instant::now() >= deadline {
                break;
            }
            n_spins += 1;
            match n_spins % 64 {
                0 => std::thread::yield_now(), // the writers awaited may need this core
                _ => std::hint::spin_loop(),
            }
        }
    }

    fn wait_durable_slow(&self, until: u64) -> Result<()> {
        let mut leader_active = self.commit.lock();
        loop {
            if self.synced_until.load(Ordering::Acquire) >= until {
                return Ok(());
            }
            self.check_writable()?;
            if *leader_active {
                self.commit_done.wait(&mut leader_active);
                continue;
            }
            *leader_active = true;
            drop(leader_active);
            self.gather_writers();
            // About the writes this commit covers: each is counted just after it is
            // published, and `write_and_sync` takes its snapshot of the log after this.
            let covered = self.counters.n_durable_writes.load(Ordering::SeqCst);
            let result = self.write_and_sync();
            let came_meanwhile = self.counters.n_durable_writes.load(Ordering::SeqCst).saturating_sub(covered);
            let group = covered.saturating_sub(self.commit_covered.swap(covered, Ordering::SeqCst));
            self.expected_group.store(group + came_meanwhile, Ordering::Relaxed);
            leader_active = self.commit.lock();
            *leader_active = false;
            self.commit_done.notify_all();
            result?;
        }
    }

    fn write_and_sync(&self) -> Result<()> {
        let mut writer = self.writer.lock();
        let until = self.published_until.load(Ordering::Acquire);
        let written = writer.write_until(&self.ring, &self.segments, until);
        if let (Ok(()), Some(live)) = (&written, &self.live) {
            live.written(writer.written_until);
        }
        let result = written.and_then(|()| writer.sync());
        self.note_synced(&writer);
        match result {
            Ok(()) => {
                bump(&self.counters.n_syncs);
                Ok(())
            }
            Err(error) => {
                self.poison("writing or syncing the log failed");
                Err(error)
            }
        }
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _span = tracing::info_span!("close", path = %self.path.display()).entered();
        // From here the MANIFEST decides: clean once the close is done, else a rebuild.
        if let Some(live) = &self.live {
            live.invalidate();
        }
        if self.poisoned.load(Ordering::Acquire) {
            tracing::warn!("closing a poisoned database: the next open rebuilds the index from the durable log");
            return Err(Error::Poisoned);
        }
        let _append = self.append.lock();
        let next_seq = *_append;
        self.write_and_sync()?;
        self.writer.lock().trim_preallocation()?;
        self.index.flush()?;
        let mut manifest = self.manifest.lock();
        manifest.clean = true;
        manifest.log_end = self.published_until.load(Ordering::Acquire);
        manifest.next_seq = next_seq;
        manifest.holes = self.segments.holes_from(manifest.log_begin);
        manifest.usage = self.usage.snapshot();
        self.storage
            .write_atomic(MANIFEST_PATH, &manifest.encode())
            .map_err(io_error("write the MANIFEST", MANIFEST_PATH))?;
        tracing::info!(log_end = manifest.log_end, "closed cleanly");
        drop(manifest);
        drop(_append);
        // Retired segments an iterator kept alive (no iterator outlives the database).
        self.remove_pending_segments(true)?;
        self.discarded.remove_all();
        Ok(())
    }

    fn stats(&self) -> Stats {
        let writer = self.writer.lock();
        let (written, synced) = (writer.written_until, writer.synced_until);
        drop(writer);
        let ring: &Ring = &self.ring;
        let (head, tail) = (ring.head(), ring.tail());
        let log_begin = self.manifest.lock().log_begin;
        let index_mapped_bytes = self
            .index
            .bucket_paths()
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum();
        let segments: Vec<SegmentStats> = self
            .usage
            .snapshot()
            .into_iter()
            .filter(|usage| !self.segments.is_hole(usage.first_address))
            .map(|usage| SegmentStats {
                first_address: usage.first_address,
                written_bytes: usage.written_bytes,
                live_bytes: usage.live_bytes,
                tombstone_bytes: usage.tombstone_bytes,
                dead_bytes: usage.written_bytes - usage.live_bytes - usage.tombstone_bytes,
            })
            .collect();
        let log_disk_bytes =
            self.segments.first_addresses().into_iter().filter_map(|first| self.segments.file_len(first)).sum();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            n_keys: self.index.len(),
            log_begin,
            log_head: head,
            log_synced_until: synced,
            log_written_until: written,
            log_tail: tail,
            log_bytes: tail - log_begin,
            n_segments: self.segments.len() as u64,
            n_open_segments: self.segments.n_open() as u64,
            segment_size: self.layout.segment_size,
            memory_budget_bytes: self.memory_budget,
            log_memory_bytes: self.layout.ring_capacity,
            log_memory_used_bytes: tail - head,
            index_mapped_bytes,
            max_value_len: self.layout.max_value_len() as u64,
            poisoned: self.poisoned.load(Ordering::Acquire),
            live_bytes: segments.iter().map(|segment| segment.live_bytes).sum(),
            tombstone_bytes: segments.iter().map(|segment| segment.tombstone_bytes).sum(),
            dead_bytes: segments.iter().map(|segment| segment.dead_bytes).sum(),
            log_disk_bytes,
            segments,
            recovery: self.recovery.clone(),
            counters: Counters {
                n_puts: load(&self.counters.n_puts),
                n_deletes: load(&self.counters.n_deletes),
                n_batches: load(&self.counters.n_batches),
                n_gets: self.counters.n_gets.load(),
                n_disk_reads: self.counters.n_disk_reads.load(),
                n_syncs: load(&self.counters.n_syncs),
                n_durable_writes: load(&self.counters.n_durable_writes),
                n_evicted: load(&self.counters.n_evicted),
                n_log_bytes_appended: load(&self.counters.n_log_bytes_appended),
                n_compaction_passes: load(&self.counters.n_compaction_passes),
                n_segments_compacted: load(&self.counters.n_segments_compacted),
                n_compaction_bytes_copied: load(&self.counters.n_compaction_bytes_copied),
                n_checkpoints: load(&self.counters.n_checkpoints),
            },
        }
    }
}
