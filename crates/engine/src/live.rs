//! The engine's live state (`LIVE.pool` in the database directory): what a reopen needs to
//! take up a database whose process was killed, kept in a memory-mapped pool so that it
//! outlives the process.
//!
//! A killed process loses its memory, but not the page cache: the segment files hold every
//! byte it wrote to them, and the index's bucket files every change it made (the bucket
//! map resumes itself, see `BucketMapConfig::resume_after_kill`). What is lost is the
//! in-memory state the index and the log must agree with: where the log ends, the next
//! sequence number and the live-byte accounting. They are mirrored here as they change:
//!
//! - `published_until` and `next_seq`, stored under the append lock by every publish;
//! - `written_until`, stored by the log writer after each write to the segment files, and
//!   `synced_until`, stored after each sync before anyone can learn of it (so every write a
//!   caller was told is durable lies below it);
//! - one busy flag per key stripe, set while a writer holds the stripe (between its append
//!   and its index update, the log and the index disagree);
//! - the accounting of each segment, in a slot chosen by its number.
//!
//! A reopen takes the database up as it is, without a replay, when the state is `valid`
//! (set once an open finished writing it, cleared first thing by every open and close),
//! from this boot (so the page cache is the one the process wrote into), for this database,
//! with every byte the index can point at written to the files (`published_until ==
//! written_until`: the ring's unwritten tail is what a kill loses), no stripe busy and no
//! accounting slot shared. Otherwise the open rebuilds the index as after any crash.
//!
//! Layout (docs/format.md, "Engine live state"): a datapool `MmapFile` of 64-bit
//! little-endian words: three 64-byte lines of header (valid, boot id, published end, next
//! sequence number; written and synced ends; overflow, slot and stripe counts, segment size, database
//! id), one 64-byte line per stripe, then four words per accounting slot (first address + 1
//! or 0 for none, written, live and tombstone bytes).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use talus_datapool::{MmapFileOptions, SharedMmapFile};

use crate::error::Result;
use crate::manifest::SegmentUsage;

/// The file, in the database directory.
pub(crate) const LIVE_PATH: &str = "LIVE.pool";
/// The pool's user version: this layout's version.
const LIVE_USER_VERSION: u64 = 2;
/// Accounting slots: segment `n` uses slot `n % N_SLOTS`, so up to this many segments (256
/// GiB of log with 64 MiB segments) are mirrored before two would share a slot.
pub(crate) const N_SLOTS: usize = 4096;

const LINE_WORDS: usize = 8;
const VALID: usize = 0;
const BOOT_ID_LOW: usize = 1;
const BOOT_ID_HIGH: usize = 2;
const PUBLISHED_UNTIL: usize = 3;
const NEXT_SEQ: usize = 4;
const WRITTEN_UNTIL: usize = LINE_WORDS;
const SYNCED_UNTIL: usize = LINE_WORDS + 1;
const OVERFLOW: usize = 2 * LINE_WORDS;
const SLOT_COUNT: usize = 2 * LINE_WORDS + 1;
const STRIPE_COUNT: usize = 2 * LINE_WORDS + 2;
const SEGMENT_SIZE: usize = 2 * LINE_WORDS + 3;
const DB_ID: usize = 2 * LINE_WORDS + 4;
const HEADER_WORDS: usize = 3 * LINE_WORDS;
const SLOT_WORDS: usize = 4;

#[cfg(test)]
mod tests;

/// What a killed process left, as far as it can be trusted.
#[derive(Debug)]
pub(crate) struct Resumable {
    pub(crate) log_end: u64,
    /// Every byte below this was synced (at most `log_end`).
    pub(crate) synced_until: u64,
    pub(crate) next_seq: u64,
    pub(crate) usage: Vec<SegmentUsage>,
}

/// The mirrored state of an open database.
pub(crate) struct LiveState {
    pool: SharedMmapFile,
    n_stripes: usize,
    segment_size: u64,
}

impl std::fmt::Debug for LiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveState").field("path", &self.pool.path()).finish()
    }
}

fn data_len(n_stripes: usize) -> usize {
    (HEADER_WORDS + n_stripes * LINE_WORDS + N_SLOTS * SLOT_WORDS) * 8
}

impl LiveState {
    /// Opens (or creates, or replaces one of another shape) the live state in `dir`, and
    /// marks it not valid before anything else happens: whatever this open does from here
    /// on, a kill meanwhile leaves nothing to resume from.
    pub(crate) fn open(dir: &Path, n_stripes: usize, segment_size: u64) -> Result<(LiveState, Option<LiveSnapshot>)> {
        let path: PathBuf = dir.join(LIVE_PATH);
        // Its checksum describes its last flush (it is never flushed): not checked. Its
        // words are checked one by one before they are trusted.
        let options = MmapFileOptions::new().verify_checksum(false).resume_dirty(true);
        let len = data_len(n_stripes);
        let pool = match options.open(&path, len, LIVE_USER_VERSION) {
            Ok(pool) => pool,
            Err(error) => {
                if path.exists() {
                    tracing::debug!(%error, "replacing a live state file that does not open");
                    std::fs::remove_file(&path)
                        .map_err(crate::error::io_error("remove", &path.display().to_string()))?;
                }
                options.create(&path, len, LIVE_USER_VERSION)?
            }
        };
        let live = LiveState { pool: SharedMmapFile::new(pool)?, n_stripes, segment_size };
        let snapshot = live.snapshot();
        live.pool.mark_dirty();
        live.word(VALID).store(0, Ordering::Release);
        Ok((live, snapshot))
    }

    fn word(&self, idx: usize) -> &AtomicU64 {
        &self.pool.words()[idx]
    }

    fn load(&self, idx: usize) -> u64 {
        self.word(idx).load(Ordering::Relaxed)
    }

    /// Stores `value` unless the word holds it already: a page of a mapped file costs a
    /// write fault the first time it is written, and an open after a kill finds most words
    /// as they should be.
    fn store_changed(&self, word: &AtomicU64, value: u64) {
        if word.load(Ordering::Relaxed) != value {
            word.store(value, Ordering::Relaxed);
        }
    }

    fn stripe_word(&self, stripe: usize) -> &AtomicU64 {
        self.word(HEADER_WORDS + stripe * LINE_WORDS)
    }

    fn slot_word(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.word(HEADER_WORDS + self.n_stripes * LINE_WORDS + slot * SLOT_WORDS + field)
    }

    /// The state as the file holds it, if it was valid (read before `open` clears that).
    fn snapshot(&self) -> Option<LiveSnapshot> {
        if self.load(VALID) != 1 {
            return None;
        }
        let usage = (0..N_SLOTS)
            .filter_map(|slot| {
                let tag = self.slot_word(slot, 0).load(Ordering::Relaxed);
                (tag != 0).then(|| SegmentUsage {
                    first_address: tag - 1,
                    written_bytes: self.slot_word(slot, 1).load(Ordering::Relaxed),
                    live_bytes: self.slot_word(slot, 2).load(Ordering::Relaxed),
                    tombstone_bytes: self.slot_word(slot, 3).load(Ordering::Relaxed),
                })
            })
            .collect();
        Some(LiveSnapshot {
            boot_id: u128::from(self.load(BOOT_ID_LOW)) | (u128::from(self.load(BOOT_ID_HIGH)) << 64),
            db_id: self.load(DB_ID),
            segment_size: self.load(SEGMENT_SIZE),
            n_slots: self.load(SLOT_COUNT),
            n_stripes: self.load(STRIPE_COUNT),
            overflow: self.load(OVERFLOW) != 0,
            busy_stripe: (0..self.n_stripes).find(|&stripe| self.stripe_word(stripe).load(Ordering::Relaxed) != 0),
            published_until: self.load(PUBLISHED_UNTIL),
            written_until: self.load(WRITTEN_UNTIL),
            synced_until: self.load(SYNCED_UNTIL),
            next_seq: self.load(NEXT_SEQ),
            usage,
        })
    }

    /// Records the state of the database this open produced (`usage` as its table holds
    /// it, the log complete up to `log_end` and durable up to `synced_until`), then marks it
    /// valid.
    pub(crate) fn start(
        &self,
        boot_id: Option<u128>,
        db_id: u64,
        (log_end, synced_until): (u64, u64),
        next_seq: u64,
        usage: &[SegmentUsage],
    ) {
        let boot_id = boot_id.unwrap_or(0);
        self.word(BOOT_ID_LOW).store(boot_id as u64, Ordering::Relaxed);
        self.word(BOOT_ID_HIGH).store((boot_id >> 64) as u64, Ordering::Relaxed);
        self.word(DB_ID).store(db_id, Ordering::Relaxed);
        self.word(SEGMENT_SIZE).store(self.segment_size, Ordering::Relaxed);
        self.word(SLOT_COUNT).store(N_SLOTS as u64, Ordering::Relaxed);
        self.word(STRIPE_COUNT).store(self.n_stripes as u64, Ordering::Relaxed);
        self.word(OVERFLOW).store(0, Ordering::Relaxed);
        self.word(PUBLISHED_UNTIL).store(log_end, Ordering::Relaxed);
        self.word(WRITTEN_UNTIL).store(log_end, Ordering::Relaxed);
        self.word(SYNCED_UNTIL).store(synced_until, Ordering::Relaxed);
        self.word(NEXT_SEQ).store(next_seq, Ordering::Relaxed);
        for stripe in 0..self.n_stripes {
            self.store_changed(self.stripe_word(stripe), 0);
        }
        // Each slot's words as they should be: the first segment of that slot in `usage`
        // (a later one overflows), else zeros. Walked in slot order, with no table of
        // every slot built on the way.
        let mut by_slot: Vec<(usize, &SegmentUsage)> =
            usage.iter().map(|segment| (self.slot_of(segment.first_address), segment)).collect();
        by_slot.sort_by_key(|&(slot, _)| slot);
        let mut next = by_slot.iter().peekable();
        for idx in 0..N_SLOTS {
            let mut words = [0u64; SLOT_WORDS];
            if let Some(&(_, segment)) = next.next_if(|&&(slot, _)| slot == idx) {
                words = [segment.first_address + 1, segment.written_bytes, segment.live_bytes, segment.tombstone_bytes];
            }
            if next.next_if(|&&(slot, _)| slot == idx).is_some() {
                self.word(OVERFLOW).store(1, Ordering::Relaxed);
                while next.next_if(|&&(slot, _)| slot == idx).is_some() {}
            }
            for (field, &value) in words.iter().enumerate() {
                self.store_changed(self.slot_word(idx, field), value);
            }
        }
        self.word(VALID).store(1, Ordering::Release);
    }

    /// Marks the state not valid (a close or a poisoning under way: the next open must
    /// not take it up).
    pub(crate) fn invalidate(&self) {
        self.word(VALID).store(0, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
    }

    /// The log is published up to `end`, and `next_seq` is the next sequence number (under
    /// the append lock).
    #[inline]
    pub(crate) fn published(&self, end: u64, next_seq: u64) {
        self.word(PUBLISHED_UNTIL).store(end, Ordering::Relaxed);
        self.word(NEXT_SEQ).store(next_seq, Ordering::Relaxed);
    }

    /// The log is written to the segment files up to `end` (under the log writer's lock).
    #[inline]
    pub(crate) fn written(&self, end: u64) {
        self.word(WRITTEN_UNTIL).store(end, Ordering::Relaxed);
    }

    /// The log is durable up to `end` (under the log writer's lock, before the rest of the
    /// process can learn of it).
    #[inline]
    pub(crate) fn synced(&self, end: u64) {
        self.word(SYNCED_UNTIL).store(end, Ordering::Relaxed);
    }

    /// A writer took (`true`) or is about to release (`false`) key stripe `stripe`. A kill
    /// sees the stores of the killed threads in program order, so the orderings here only
    /// keep the compiler from moving them: "busy" before every store of the write (a
    /// release fence after it), "not busy" after all of them (a release store).
    #[inline]
    pub(crate) fn stripe_busy(&self, stripe: usize, busy: bool) {
        let word = self.stripe_word(stripe);
        match busy {
            true => {
                word.store(1, Ordering::Relaxed);
                std::sync::atomic::fence(Ordering::Release);
            }
            false => word.store(0, Ordering::Release),
        }
    }

    fn slot_of(&self, first_address: u64) -> usize {
        ((first_address / self.segment_size) % N_SLOTS as u64) as usize
    }

    /// Gives the segment starting at `first_address` its slot; if another segment holds it,
    /// the state can no longer be resumed from (until the next open).
    pub(crate) fn claim_slot(&self, first_address: u64) {
        let tag = self.slot_word(self.slot_of(first_address), 0);
        match tag.load(Ordering::Relaxed) {
            0 => tag.store(first_address + 1, Ordering::Relaxed),
            held if held == first_address + 1 => {}
            _ => {
                tracing::debug!(first_address, "two segments share an accounting slot: no resume until reopened");
                self.word(OVERFLOW).store(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a segment's counts (in its slot, if it holds it).
    pub(crate) fn set_counts(&self, first_address: u64, written: u64, live: u64, tombstone: u64) {
        let slot = self.slot_of(first_address);
        if self.slot_word(slot, 0).load(Ordering::Relaxed) == first_address + 1 {
            self.slot_word(slot, 1).store(written, Ordering::Relaxed);
            self.slot_word(slot, 2).store(live, Ordering::Relaxed);
            self.slot_word(slot, 3).store(tombstone, Ordering::Relaxed);
        }
    }

    /// The segment starting at `first_address` is gone from the accounting.
    pub(crate) fn release_slot(&self, first_address: u64) {
        let slot = self.slot_of(first_address);
        if self.slot_word(slot, 0).load(Ordering::Relaxed) == first_address + 1 {
            for field in (0..SLOT_WORDS).rev() {
                self.slot_word(slot, field).store(0, Ordering::Relaxed);
            }
        }
    }
}

/// The live state as a killed process left it.
#[derive(Debug)]
pub(crate) struct LiveSnapshot {
    boot_id: u128,
    db_id: u64,
    segment_size: u64,
    n_slots: u64,
    n_stripes: u64,
    overflow: bool,
    busy_stripe: Option<usize>,
    published_until: u64,
    written_until: u64,
    synced_until: u64,
    next_seq: u64,
    usage: Vec<SegmentUsage>,
}

impl LiveSnapshot {
    /// What a reopen may take up, or why not.
    pub(crate) fn resumable(
        self,
        boot_id: Option<u128>,
        db_id: u64,
        segment_size: u64,
        n_stripes: usize,
    ) -> std::result::Result<Resumable, String> {
        match boot_id {
            Some(boot_id) if boot_id != 0 && boot_id == self.boot_id => {}
            Some(_) => return Err("the machine restarted since (the page cache is gone)".to_owned()),
            None => return Err("the boot id is unknown".to_owned()),
        }
        if (self.db_id, self.segment_size, self.n_slots, self.n_stripes)
            != (db_id, segment_size, N_SLOTS as u64, n_stripes as u64)
        {
            return Err("the live state is for another database or layout".to_owned());
        }
        if self.overflow {
            return Err("two segments shared an accounting slot".to_owned());
        }
        if let Some(stripe) = self.busy_stripe {
            return Err(format!("a writer was half-way through a write (stripe {stripe})"));
        }
        let aligned = |address: u64| address.is_multiple_of(8);
        let sane_usage = self
            .usage
            .iter()
            .all(|usage| usage.first_address.is_multiple_of(segment_size) && usage.written_bytes <= segment_size);
        if !aligned(self.written_until)
            || !aligned(self.published_until)
            || !aligned(self.synced_until)
            || self.synced_until > self.written_until
            || !sane_usage
        {
            return Err("the live state is out of range".to_owned());
        }
        if self.published_until != self.written_until {
            return Err(format!(
                "the log was published up to {} but written only up to {}: the rest was in memory",
                self.published_until, self.written_until
            ));
        }
        // Clamped as the table's own snapshots are.
        let usage = self
            .usage
            .into_iter()
            .map(|usage| {
                let live_bytes = usage.live_bytes.min(usage.written_bytes);
                let tombstone_bytes = usage.tombstone_bytes.min(usage.written_bytes - live_bytes);
                SegmentUsage { live_bytes, tombstone_bytes, ..usage }
            })
            .collect();
        Ok(Resumable { log_end: self.written_until, synced_until: self.synced_until, next_seq: self.next_seq, usage })
    }
}
