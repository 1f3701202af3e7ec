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
    pub(crate) index_dir: Option<PathBuf>,
    pub(crate) hash_bits: u32,
}

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
            index_dir: None,
            hash_bits: 64,
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

    /// Whether a clean open verifies the index files' checksums (reads all of them).
    pub fn verify_index_on_open(mut self, verify: bool) -> Self {
        self.verify_index_on_open = verify;
        self
    }

    /// Where the index files live (default: `index/` in the database directory).
    pub fn index_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.index_dir = Some(dir.into());
        self
    }

    /// For tests only: keep only the low `bits` bits of every key hash, so that many keys
    /// share one hash. Must be the same on every open of a database.
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
        Db::open_with(Arc::new(storage), path.to_path_buf(), index_dir, self)
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
        Db::open_with(storage, PathBuf::from("<storage>"), index_dir, self)
    }
}
