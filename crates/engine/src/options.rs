//! `Options` and `SyncMode`: how a database is opened.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::record::{MAX_KEY_LEN, RECORD_HEADER_LEN};
use crate::storage::{FsStorage, Storage};

/// When writes reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every write is durable before it returns (`fdatasync`); concurrent writers share one
    /// fsync (group commit). After a crash every acknowledged write is there.
    #[default]
    Always,
    /// A background thread syncs at this interval: a crash loses at most about the writes
    /// of the last interval, never part of a record or part of a batch.
    Periodic(Duration),
    /// The operating system decides (writes reach the files when memory runs out and on
    /// [`Db::sync`] and close). A crash of the process loses nothing that was written to the
    /// files; a crash of the machine may lose recent writes, never part of a batch.
    Never,
}

/// The smallest memory budget: four pages of 256 KiB, so the largest key always fits.
pub const MIN_MEMORY_BUDGET: u64 = 1 << 20;
/// The default memory budget for the in-memory tail of the log: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 << 20;
/// The default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Segment sizes range from 256 KiB to 1 TiB (powers of two).
pub const MIN_SEGMENT_SIZE: u64 = 256 << 10;
/// See [`MIN_SEGMENT_SIZE`].
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;
/// Log pages are at most 32 MiB, so the default options take values of more than 16 MiB.
pub const MAX_LOG_PAGE_SIZE: u64 = 32 << 20;

/// How to open a database: a builder, finished by [`open`](Self::open).
///
/// ```
/// use talus_engine::{Options, SyncMode};
///
/// let dir = tempfile::tempdir()?;
/// let db = Options::new().memory_budget(64 << 20).sync_mode(SyncMode::Never).open(dir.path())?;
/// db.put(b"k", b"v")?;
/// assert_eq!(db.get(b"k")?.as_deref(), Some(&b"v"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) create_if_missing: bool,
    pub(crate) recovery_progress: Option<ProgressCallback>,
    pub(crate) memory_budget: u64,
    pub(crate) segment_size: u64,
    pub(crate) sync_mode: SyncMode,
    pub(crate) repair: bool,
    pub(crate) verify_index_on_open: bool,
    pub(crate) resume_after_kill: bool,
    pub(crate) index_dir: Option<PathBuf>,
    pub(crate) hash_bits: u32,
    pub(crate) compaction: CompactionOptions,
    pub(crate) checkpoint_every_bytes: u64,
    pub(crate) checkpoint_interval: Option<Duration>,
    pub(crate) checkpoint_dir: Option<PathBuf>,
    pub(crate) log_preallocation: Option<u64>,
    pub(crate) background_log_writer: bool,
    pub(crate) max_open_segments: usize,
}

/// `<dir>.<suffix>`, beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

/// When compaction runs and how fast (see [`Options::background_compaction`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CompactionOptions {
    pub(crate) background: bool,
    pub(crate) garbage_ratio: f64,
    pub(crate) space_amplification: f64,
    pub(crate) rate_limit_bytes_per_sec: u64,
}

/// By default a segment is compacted once half of it is garbage.
pub const DEFAULT_COMPACTION_GARBAGE_RATIO: f64 = 0.5;
/// By default compaction also runs while the log takes more than 1.5 times its live bytes.
pub const DEFAULT_COMPACTION_SPACE_AMPLIFICATION: f64 = 1.5;
/// By default a checkpoint is written after every GiB of log.
pub const DEFAULT_CHECKPOINT_EVERY_BYTES: u64 = 1 << 30;
/// By default, unless [`SyncMode::Never`], the segment being written is filled with zeros
/// this far ahead of the log's end (see [`Options::log_preallocation`]).
pub const DEFAULT_LOG_PREALLOCATION: u64 = 4 << 20;
/// By default at most this many log segment files are open at once (see
/// [`Options::max_open_segments`]).
pub const DEFAULT_MAX_OPEN_SEGMENTS: usize = 256;

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            recovery_progress: None,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            segment_size: DEFAULT_SEGMENT_SIZE,
            sync_mode: SyncMode::Always,
            repair: false,
            verify_index_on_open: true,
            resume_after_kill: true,
            index_dir: None,
            hash_bits: 64,
            compaction: CompactionOptions {
                background: true,
                garbage_ratio: DEFAULT_COMPACTION_GARBAGE_RATIO,
                space_amplification: DEFAULT_COMPACTION_SPACE_AMPLIFICATION,
                rate_limit_bytes_per_sec: 0,
            },
            checkpoint_every_bytes: DEFAULT_CHECKPOINT_EVERY_BYTES,
            checkpoint_interval: None,
            checkpoint_dir: None,
            log_preallocation: None,
            background_log_writer: true,
            max_open_segments: DEFAULT_MAX_OPEN_SEGMENTS,
        }
    }
}

/// A progress callback: `(bytes done, bytes in all)`.
#[derive(Clone)]
pub(crate) struct ProgressCallback(pub(crate) Arc<dyn Fn(u64, u64) + Send + Sync>);

impl std::fmt::Debug for ProgressCallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressCallback")
    }
}

/// The sizes that follow from the options (and, for the segment size, from the MANIFEST).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Bytes of memory for the in-memory log: the budget rounded down to a power of two.
    pub(crate) ring_capacity: u64,
    /// Bytes per log page; a record never straddles one.
    pub(crate) page_size: u64,
    pub(crate) segment_size: u64,
}

impl Layout {
    pub(crate) fn new(memory_budget: u64, segment_size: u64) -> Result<Layout> {
        let invalid = |reason: String| Err(Error::InvalidOptions { reason });
        if memory_budget < MIN_MEMORY_BUDGET {
            return invalid(format!("memory budget {memory_budget} is below the minimum of {MIN_MEMORY_BUDGET}"));
        }
        if usize::try_from(memory_budget).is_err() {
            return invalid(format!("memory budget {memory_budget} does not fit in memory"));
        }
        if !segment_size.is_power_of_two() || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return invalid(format!(
                "segment size {segment_size} must be a power of two from {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE}"
            ));
        }
        let ring_capacity = 1u64 << (63 - memory_budget.leading_zeros());
        let page_size = (ring_capacity / 4).min(MAX_LOG_PAGE_SIZE).min(segment_size);
        Ok(Layout { ring_capacity, page_size, segment_size })
    }

    /// The largest value: whatever a page holds after the entry and record headers and the
    /// largest key.
    pub(crate) fn max_value_len(&self) -> usize {
        self.page_size as usize - talus_ringbuf::ENTRY_HEADER_LEN - RECORD_HEADER_LEN - MAX_KEY_LEN
    }
}

impl Options {
    /// The defaults: 256 MiB of memory, 64 MiB segments, [`SyncMode::Always`], index
    /// verified on open, no repair.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of memory for the in-memory tail of the log (rounded down to a power of two;
    /// at least [`MIN_MEMORY_BUDGET`]). The index is memory-mapped and counted apart.
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Bytes per log segment file (a power of two, 256 KiB to 1 TiB). Fixed when the
    /// database is created; later opens use the recorded size.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// When writes are made durable.
    pub fn sync_mode(mut self, sync_mode: SyncMode) -> Self {
        self.sync_mode = sync_mode;
        self
    }

    /// How far ahead of the log's end the segment being written is filled with zeros (0:
    /// not at all). A sync that only overwrites blocks the file already has changes no file
    /// metadata, so the file system need not commit its journal: on ext4 a durable write
    /// then costs about a quarter less. The zeros are written (and synced with the next
    /// commit) in steps of this many bytes, at the cost of writing the log twice. Default:
    /// [`DEFAULT_LOG_PREALLOCATION`] unless the sync mode is [`SyncMode::Never`], where no
    /// sync waits for the journal. The zeros past the log's end are cut at a clean close and
    /// are not counted as a torn tail after a crash.
    pub fn log_preallocation(mut self, bytes: u64) -> Self {
        self.log_preallocation = Some(bytes);
        self
    }

    /// Whether a background thread copies the log from memory to the segment files as it
    /// grows (default: on). Without it, the writer that finds memory full writes everything
    /// unwritten before it can evict, and a sync writes all the log since the last one.
    /// [`SyncMode::Always`] has no such thread: its group commits write the log.
    pub fn background_log_writer(mut self, on: bool) -> Self {
        self.background_log_writer = on;
        self
    }

    /// At most this many log segment files are kept open (at least 2; default
    /// [`DEFAULT_MAX_OPEN_SEGMENTS`]), each holding one file descriptor. A segment is opened
    /// when a read first needs it; opening one more than this closes the one used least
    /// recently, which is opened again at its next read. Keep it well under the process's
    /// limit on open files (`ulimit -n`, often 1,024), which the log's segments would
    /// otherwise exhaust once it spans more than that many.
    pub fn max_open_segments(mut self, n: usize) -> Self {
        self.max_open_segments = n.max(2);
        self
    }

    /// The preallocation step in effect (see [`log_preallocation`](Self::log_preallocation)).
    pub(crate) fn effective_log_preallocation(&self) -> u64 {
        match (self.log_preallocation, self.sync_mode) {
            (Some(bytes), _) => bytes,
            (None, SyncMode::Never) => 0,
            (None, SyncMode::Always | SyncMode::Periodic(_)) => DEFAULT_LOG_PREALLOCATION,
        }
    }

    /// Whether opening a directory that holds no database creates one (the default).
    /// Without it, such an open fails with [`Error::NotFound`] and creates nothing.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create_if_missing = create;
        self
    }

    /// Repairs the database as it opens: the index is rebuilt from the log even after a
    /// clean close (so damaged index files cannot matter), and damage in the middle of the
    /// log no longer fails the open: the log is cut at the first invalid record, everything
    /// after it is dropped (the database stays a prefix of its history), and
    /// [`Stats::recovery`](crate::Stats::recovery) says what was cut. Without it such a
    /// database fails to open with [`Error::Corruption`].
    pub fn repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// Calls `progress(bytes scanned, bytes to scan)` every few MiB while open rebuilds the
    /// index from the log (after a crash or with [`repair`](Self::repair)), on the opening
    /// thread. For progress bars: a rebuild reads the whole log.
    pub fn on_recovery_progress(mut self, progress: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.recovery_progress = Some(ProgressCallback(Arc::new(progress)));
        self
    }

    /// Whether a clean open verifies the index files' checksums (reads all of them). With
    /// [`resume_after_kill`](Self::resume_after_kill) (the default), an open in the same
    /// boot as the clean close, of index files whose inode and change time are still those
    /// the close recorded, reads none of them: the page cache holds what the close wrote.
    pub fn verify_index_on_open(mut self, verify: bool) -> Self {
        self.verify_index_on_open = verify;
        self
    }

    /// Whether an open after the process was killed takes the database up as the process
    /// left it, without rebuilding the index (default `true`). A killed process's writes to
    /// the log and index files are in the page cache, so when the machine has not restarted
    /// since, no write was half-way through, and every record the index points at had been
    /// written to the log files (always so in [`SyncMode::Always`] once writers are idle,
    /// and after [`Db::sync`](crate::Db::sync)), the open reads no log at all:
    /// [`RecoveryStats::resumed`](crate::RecoveryStats::resumed) says so. Otherwise, and
    /// with `false`, it rebuilds the index from a checkpoint and the log as after any
    /// crash. Only on storage with a [`local_dir`](crate::storage::Storage::local_dir).
    /// The same trust in this boot's page cache spares a clean open from verifying the
    /// index (see [`verify_index_on_open`](Self::verify_index_on_open)).
    pub fn resume_after_kill(mut self, resume: bool) -> Self {
        self.resume_after_kill = resume;
        self
    }

    /// Where the index files live (default: `index/` in the database directory).
    pub fn index_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.index_dir = Some(dir.into());
        self
    }

    /// For tests only: keep only the low `bits` bits of every key hash, so that many keys
    /// share one hash. Must be the same on every open of a database.
    /// Whether a background thread compacts the log (default on): it gives back the space
    /// of overwritten and deleted records by copying the live records of the most wasteful
    /// segments to the tail and deleting those segments. [`Db::compact`] runs the same
    /// passes on demand either way.
    pub fn background_compaction(mut self, on: bool) -> Self {
        self.compaction.background = on;
        self
    }

    /// A segment whose garbage (bytes compaction would not copy) is at least this fraction
    /// of it is compacted (default [`DEFAULT_COMPACTION_GARBAGE_RATIO`]; clamped to
    /// `0.01..=1.0`).
    pub fn compaction_garbage_ratio(mut self, ratio: f64) -> Self {
        self.compaction.garbage_ratio =
            if ratio.is_nan() { DEFAULT_COMPACTION_GARBAGE_RATIO } else { ratio.clamp(0.01, 1.0) };
        self
    }

    /// While the log's segments hold more than this many times the live bytes, the
    /// segments with the most garbage are compacted even below the garbage ratio (default
    /// [`DEFAULT_COMPACTION_SPACE_AMPLIFICATION`]; at least 1.1).
    pub fn compaction_space_amplification(mut self, factor: f64) -> Self {
        self.compaction.space_amplification =
            if factor.is_nan() { DEFAULT_COMPACTION_SPACE_AMPLIFICATION } else { factor.max(1.1) };
        self
    }

    /// Caps how many bytes per second compaction copies, so it cannot crowd out
    /// foreground writes (0, the default, means no cap).
    pub fn compaction_rate_limit(mut self, bytes_per_sec: u64) -> Self {
        self.compaction.rate_limit_bytes_per_sec = bytes_per_sec;
        self
    }

    /// Writes an index checkpoint after this many bytes of log (default
    /// [`DEFAULT_CHECKPOINT_EVERY_BYTES`]; 0 turns the trigger off), and also once the log
    /// has not grown for a second after a sixteenth of it. Recovery after a crash replays
    /// only the log written since the latest checkpoint.
    pub fn checkpoint_every_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_every_bytes = bytes;
        self
    }

    /// Also writes a checkpoint this often when anything was written since the last one
    /// (default off).
    pub fn checkpoint_interval(mut self, interval: Option<Duration>) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Where index checkpoints go: by default `checkpoints/` in the database directory, or
    /// beside the index directory (`<index dir>.checkpoints`) for a database on a custom
    /// [`Storage`].
    pub fn checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    #[doc(hidden)]
    pub fn hash_bits_for_testing(mut self, bits: u32) -> Self {
        self.hash_bits = bits.clamp(1, 64);
        self
    }

    /// The largest value these options accept (the segment size of an existing database
    /// may lower it): 31.9 MiB with the defaults, about a quarter of the memory budget
    /// below 128 MiB.
    pub fn max_value_len(&self) -> usize {
        Layout::new(self.memory_budget, self.segment_size).map_or(0, |layout| layout.max_value_len())
    }

    /// Opens (creating if needed, unless [`create_if_missing`](Self::create_if_missing) is
    /// off) the database in `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if it is open elsewhere, [`Error::Corruption`] for a damaged log,
    /// [`Error::NotFound`], [`Error::InvalidOptions`], I/O errors.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        let path = path.as_ref();
        if !self.create_if_missing && !path.is_dir() {
            return Err(Error::NotFound { path: path.to_path_buf() });
        }
        let storage = FsStorage::new(path).map_err(|source| Error::Io {
            op: "create the database directory",
            file: path.display().to_string(),
            source,
        })?;
        let index_dir = self.index_dir.clone().unwrap_or_else(|| path.join("index"));
        let checkpoint_dir = self.checkpoint_dir.clone().unwrap_or_else(|| path.join("checkpoints"));
        Db::open_with(Arc::new(storage), path.to_path_buf(), index_dir, checkpoint_dir, self)
    }

    /// Opens a database whose log and MANIFEST live in `storage` (for example a
    /// [`MemStorage`](crate::storage::MemStorage) in tests) and whose index lives in
    /// `index_dir`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with_storage(self, storage: Arc<dyn Storage>, index_dir: impl Into<PathBuf>) -> Result<Db> {
        let index_dir = index_dir.into();
        let checkpoint_dir = self.checkpoint_dir.clone().unwrap_or_else(|| sibling(&index_dir, "checkpoints"));
        Db::open_with(storage, PathBuf::from(crate::db::STORAGE_PATH), index_dir, checkpoint_dir, self)
    }
}
