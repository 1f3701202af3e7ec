//! The live state file (`LIVE.pool`): what describes the map while it is open, kept in a
//! memory-mapped pool so that it outlives a killed process.
//!
//! Every store into a mapped file is in the page cache the moment it is made, so after a
//! process is killed its bucket files hold every change it made. What a reopen needs to
//! trust them is here: each bucket's sequence number (a copy of the readers' seqlock, odd
//! while a writer is half-way through a change), its current table (generation and size), its
//! entry count and resizes, and the boot id of the machine when the map was opened. Each
//! bucket's fields change only inside its odd/even bracket, so a bucket whose number is even
//! is described exactly. See [`BucketMap::open`](crate::BucketMap::open) and
//! `BucketMapConfig::resume_after_kill`.
//!
//! Layout (docs/format.md, "Bucket map live state"): a datapool `MmapFile` whose data is
//! 64-bit little-endian words: a 64-byte header (boot id as two words, the bucket count,
//! five zero words), then one 64-byte slot per bucket (sequence number, generation, cells,
//! entries, resizes, the table file's inode and change time at the last flush, one zero
//! word), one cache line each so that buckets' writers and readers never share one.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use talus_datapool::{MmapFileOptions, SharedMmapFile};

use crate::config::MAX_BUCKET_CELLS;
use crate::error::{Result, io_error};
use crate::manifest::BucketRecord;

pub(crate) const LIVE_NAME: &str = "LIVE.pool";
/// The pool's user version: this layout's version.
const LIVE_USER_VERSION: u64 = 1;
const HEADER_WORDS: usize = 8;
const SLOT_WORDS: usize = 8;

const BOOT_ID_LOW: usize = 0;
const BOOT_ID_HIGH: usize = 1;
const N_BUCKETS: usize = 2;

const SEQ: usize = 0;
const GENERATION: usize = 1;
const N_CELLS: usize = 2;
const N_ENTRIES: usize = 3;
const N_RESIZES: usize = 4;
/// The inode and change time (nanoseconds since the epoch) of the table file at the last
/// flush; zero if none was recorded.
const FLUSHED_INO: usize = 5;
const FLUSHED_CTIME: usize = 6;

const _: () = assert!(HEADER_WORDS * 8 == 64 && SLOT_WORDS * 8 == 64 && FLUSHED_CTIME < SLOT_WORDS);

/// A file's inode number and change time in nanoseconds since the epoch.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let ctime = u64::try_from(meta.ctime()).unwrap_or(0).saturating_mul(1_000_000_000)
        + u64::try_from(meta.ctime_nsec()).unwrap_or(0);
    Ok((meta.ino(), ctime))
}

fn data_len(n_buckets: usize) -> usize {
    (HEADER_WORDS + n_buckets * SLOT_WORDS) * 8
}

fn options() -> MmapFileOptions {
    // The file is rewritten at every open and read back only in the same boot, where its
    // contents are checked field by field: it is never flushed, and its checksum is not used.
    MmapFileOptions::new().verify_checksum(false).resume_dirty(true)
}

/// Why a map cannot be resumed (for the log; the caller then treats it as not clean).
pub(crate) type NotResumable = String;

/// The open map's live state.
pub(crate) struct LiveState {
    pool: SharedMmapFile,
}

impl LiveState {
    /// Opens the live state of `dir` for a map opened now with these buckets, creating it
    /// if missing (or replacing it if it has another shape), and records `boot_id` and the
    /// buckets (sequence numbers even).
    pub(crate) fn start(dir: &Path, boot_id: Option<u128>, buckets: &[BucketRecord]) -> Result<LiveState> {
        let live = Self::open_or_create(dir, buckets.len())?;
        live.record_start(boot_id, buckets);
        Ok(live)
    }

    /// Opens the live state of `dir` as it is, creating it if missing (or replacing it if it
    /// is not one for `n_buckets` buckets). Changes nothing in an existing one.
    pub(crate) fn open_or_create(dir: &Path, n_buckets: usize) -> Result<LiveState> {
        let path = dir.join(LIVE_NAME);
        let data_len = data_len(n_buckets);
        let pool = match options().open(&path, data_len, LIVE_USER_VERSION) {
            Ok(pool) => pool,
            Err(error) => {
                if path.exists() {
                    tracing::debug!(%error, path = %path.display(), "replacing a live state file that does not fit");
                    std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
                }
                options().create(&path, data_len, LIVE_USER_VERSION)?
            }
        };
        Ok(LiveState { pool: SharedMmapFile::new(pool)? })
    }

    /// Records a map opened now: `boot_id` and the buckets (sequence numbers even). The
    /// words a flush records of each table file are left as they are (see
    /// [`unchanged_since_flush`](Self::unchanged_since_flush)).
    pub(crate) fn record_start(&self, boot_id: Option<u128>, buckets: &[BucketRecord]) {
        // Unknown (no /proc): zero, which no resume accepts.
        let boot_id = boot_id.unwrap_or(0);
        self.pool.mark_dirty();
        let words = self.pool.words();
        words[BOOT_ID_LOW].store(boot_id as u64, Ordering::Relaxed);
        words[BOOT_ID_HIGH].store((boot_id >> 64) as u64, Ordering::Relaxed);
        words[N_BUCKETS].store(buckets.len() as u64, Ordering::Relaxed);
        for (idx, record) in buckets.iter().enumerate() {
            // Only words that change are stored (a resumed map's are mostly right already).
            let set = |field: usize, value: u64| {
                let word = self.word(idx, field);
                if word.load(Ordering::Relaxed) != value {
                    word.store(value, Ordering::Relaxed);
                }
            };
            set(SEQ, 0);
            set(N_ENTRIES, record.n_entries);
            set(GENERATION, record.generation);
            set(N_CELLS, record.n_cells);
            set(N_RESIZES, u64::from(record.n_resizes));
        }
    }

    /// Records, at a flush, bucket `idx`'s table file as it is now (its inode and change
    /// time), after the file was flushed and before the manifest is.
    pub(crate) fn record_flushed_file(&self, idx: usize, path: &Path) {
        let (ino, ctime) = match file_identity(path) {
            Ok(found) => found,
            Err(error) => {
                // Only a later open's shortcut is lost: it verifies the file instead.
                tracing::debug!(%error, path = %path.display(), "no identity recorded for a flushed table");
                (0, 0)
            }
        };
        self.word(idx, FLUSHED_INO).store(ino, Ordering::Relaxed);
        self.word(idx, FLUSHED_CTIME).store(ctime, Ordering::Relaxed);
    }

    /// Whether a cleanly closed map's tables are exactly as its last flush left them, in
    /// this boot: this state was written in this boot (`boot_id`, nonzero) for these
    /// `buckets`, no bucket half-way through a change, and each table file (`paths`) has
    /// the inode and change time the flush recorded. Any write to a file, through a mapping
    /// or not, and any replacement of it, changes one of them. The page cache then still
    /// holds what was flushed and checked, so the tables need not be read again.
    pub(crate) fn unchanged_since_flush(
        &self,
        boot_id: Option<u128>,
        buckets: &[BucketRecord],
        paths: &[std::path::PathBuf],
    ) -> bool {
        let Some(boot_id) = boot_id.filter(|&id| id != 0) else { return false };
        let words = self.pool.words();
        let found_boot_id = u128::from(words[BOOT_ID_LOW].load(Ordering::Relaxed))
            | (u128::from(words[BOOT_ID_HIGH].load(Ordering::Relaxed)) << 64);
        if found_boot_id != boot_id || words[N_BUCKETS].load(Ordering::Relaxed) != buckets.len() as u64 {
            return false;
        }
        buckets.iter().zip(paths).enumerate().all(|(idx, (record, path))| {
            let field = |field: usize| self.word(idx, field).load(Ordering::Relaxed);
            let recorded = (field(FLUSHED_INO), field(FLUSHED_CTIME));
            field(SEQ) & 1 == 0
                && field(GENERATION) == record.generation
                && field(N_CELLS) == record.n_cells
                && field(N_ENTRIES) == record.n_entries
                && recorded.1 != 0
                && file_identity(path).is_ok_and(|found| found == recorded)
        })
    }

    /// Opens the live state a killed process left in `dir` and reads every bucket's record
    /// from it, if it can be trusted: written in this boot (`boot_id`), for `n_buckets`
    /// buckets, no bucket half-way through a change, every field in range. `Ok(Err(why))`
    /// when it cannot.
    pub(crate) fn resume(
        dir: &Path,
        boot_id: Option<u128>,
        n_buckets: usize,
    ) -> Result<std::result::Result<(LiveState, Vec<BucketRecord>), NotResumable>> {
        let Some(boot_id) = boot_id.filter(|&id| id != 0) else {
            return Ok(Err("the boot id is unknown".to_owned()));
        };
        let path = dir.join(LIVE_NAME);
        if !path.exists() {
            return Ok(Err("it has no live state file".to_owned()));
        }
        let pool = match options().open(&path, data_len(n_buckets), LIVE_USER_VERSION) {
            Ok(pool) => pool,
            Err(error @ talus_datapool::Error::Locked { .. }) => return Err(error.into()),
            Err(error) => return Ok(Err(format!("its live state file does not open: {error}"))),
        };
        let pool = match SharedMmapFile::new(pool) {
            Ok(pool) => pool,
            Err(error) => return Ok(Err(format!("its live state file is not words: {error}"))),
        };
        let live = LiveState { pool };
        let words = live.pool.words();
        let found_boot_id = u128::from(words[BOOT_ID_LOW].load(Ordering::Relaxed))
            | (u128::from(words[BOOT_ID_HIGH].load(Ordering::Relaxed)) << 64);
        if found_boot_id != boot_id {
            return Ok(Err("the machine restarted since it was written (the page cache is gone)".to_owned()));
        }
        if words[N_BUCKETS].load(Ordering::Relaxed) != n_buckets as u64 {
            return Ok(Err("its live state is for another bucket count".to_owned()));
        }
        let mut records = Vec::with_capacity(n_buckets);
        for idx in 0..n_buckets {
            if live.word(idx, SEQ).load(Ordering::Relaxed) & 1 == 1 {
                return Ok(Err(format!("bucket {idx} was half-way through a change")));
            }
            let record = BucketRecord {
                generation: live.word(idx, GENERATION).load(Ordering::Relaxed),
                n_cells: live.word(idx, N_CELLS).load(Ordering::Relaxed),
                n_entries: live.word(idx, N_ENTRIES).load(Ordering::Relaxed),
                n_resizes: u32::try_from(live.word(idx, N_RESIZES).load(Ordering::Relaxed)).unwrap_or(u32::MAX),
                dir_idx: 0, // the manifest's; the caller fills it in
            };
            let sane = record.n_cells.is_power_of_two()
                && record.n_cells <= MAX_BUCKET_CELLS
                && record.n_entries <= record.n_cells
                && record.n_resizes < u32::MAX;
            if !sane {
                return Ok(Err(format!("the live state of bucket {idx} is out of range")));
            }
            records.push(record);
        }
        Ok(Ok((live, records)))
    }

    fn word(&self, idx: usize, field: usize) -> &AtomicU64 {
        &self.pool.words()[HEADER_WORDS + idx * SLOT_WORDS + field]
    }

    /// Bucket `idx`'s sequence number as its writer last set it (odd while it changes the
    /// bucket; readers use the bucket's own copy in memory).
    #[inline]
    pub(crate) fn seq(&self, idx: usize) -> &AtomicU64 {
        self.word(idx, SEQ)
    }

    /// Bucket `idx`'s entry count (written only by its writer, inside a change).
    #[inline]
    pub(crate) fn n_entries(&self, idx: usize) -> &AtomicU64 {
        self.word(idx, N_ENTRIES)
    }

    /// Records bucket `idx`'s current table (by its writer, inside the switch's bracket).
    pub(crate) fn set_table(&self, idx: usize, generation: u64, n_cells: u64, n_resizes: u32) {
        self.word(idx, GENERATION).store(generation, Ordering::Relaxed);
        self.word(idx, N_CELLS).store(n_cells, Ordering::Relaxed);
        self.word(idx, N_RESIZES).store(u64::from(n_resizes), Ordering::Relaxed);
    }

    /// Marks the file dirty before stores (once: it is never flushed, so it stays dirty on
    /// disk and later opens find it so, with no sync to wait for).
    pub(crate) fn mark_dirty(&self) {
        self.pool.mark_dirty();
    }
}
