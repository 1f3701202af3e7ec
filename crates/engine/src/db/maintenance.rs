//! Maintenance: compaction (giving back the space of superseded records), index
//! checkpoints (bounding recovery after a crash) and online backup, and the background
//! thread that runs the first two. One of them runs at a time (`Inner::maintenance`).
//!
//! Compaction of a segment, step by step:
//! 1. Pick the sealed, durable segment with the most garbage (bytes compaction would not
//!    copy), if it is garbage enough (`Options::compaction_garbage_ratio`) or the log as a
//!    whole takes too much space (`Options::compaction_space_amplification`).
//! 2. Walk its records. A put the index still points at is appended again at the tail with
//!    its sequence number, and the index entry switched to the copy, under the key's stripe
//!    lock, so a concurrent writer of the key always wins. A delete is dropped when no older
//!    segment is left that could hold its key (or the key has a newer put), else copied.
//! 3. Make the copies durable (one group commit).
//! 4. Write the MANIFEST with the segment listed as a hole (and the log's beginning moved
//!    up past any segments gone from the front). From here recovery ignores the segment.
//! 5. Remove the file (later, if an iterator is open: it may still read from it).
//!
//! A crash before step 4 leaves the segment in the log beside its copies: the copies have
//! the same sequence numbers and come later, so replay ends at the same index. A crash
//! after step 4 leaves at most a file that the next open removes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::remove_checkpoint;
use super::{Db, Inner, Loc, Maintenance, STORAGE_PATH, bump};
use crate::checkpoint::{
    CHECKPOINT_FILE, CHECKPOINT_INDEX_DIR, CHECKPOINT_TEMP, CHECKPOINTS_KEPT, CheckpointMeta, checkpoint_name,
    list_checkpoints, sync_dir, write_synced,
};
use crate::error::{Error, Result, corruption, io_error};
use crate::manifest::MANIFEST_PATH;
use crate::record::{self, Record, RecordKind};
use crate::recovery::{Found, walk_log};
use crate::segment::{LOG_DIR, SEGMENT_HEADER_LEN, segment_path};
use crate::usage::entry_size;

/// How often the background thread looks for work.
const TICK: Duration = Duration::from_millis(100);
/// Segments compacted per background tick at most: in effect, as many as are worth it (a
/// rate limit, if set, is what keeps compaction from crowding out writers).
const SEGMENTS_PER_TICK: usize = 1024;
/// A checkpoint is also written once the log has not grown for this long, if at least
/// 1/[`IDLE_CHECKPOINT_FRACTION`] of `checkpoint_every_bytes` was written since the last one:
/// a crash after writes pause then replays next to nothing.
const IDLE_CHECKPOINT_AFTER: Duration = Duration::from_secs(1);
const IDLE_CHECKPOINT_FRACTION: u64 = 16;
/// Below the garbage ratio, a segment is compacted for space amplification only if at
/// least this fraction of it is garbage (copying a nearly live segment gains nothing).
const MIN_GARBAGE_FOR_SPACE: f64 = 0.1;

/// What [`Db::compact`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Segments compacted and removed.
    pub n_segments_compacted: u64,
    /// Live records copied to the tail of the log.
    pub n_records_copied: u64,
    /// Bytes of those records.
    pub n_bytes_copied: u64,
    /// Delete records dropped (no older segment could still hold their key).
    pub n_tombstones_dropped: u64,
    /// Delete records copied forward (an older segment might still hold their key).
    pub n_tombstones_copied: u64,
    /// Bytes of segment files removed (or to be removed once open iterators finish).
    pub n_bytes_reclaimed: u64,
}

/// What [`Db::checkpoint`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointReport {
    /// The checkpoint's directory.
    pub path: PathBuf,
    /// Recovery from this checkpoint replays the log from this address.
    pub replay_from: u64,
    /// The log address the checkpoint covers.
    pub covers_until: u64,
    /// Index entries in it.
    pub n_entries: u64,
    /// Its size in bytes (the index copy's files and the metadata).
    pub n_bytes: u64,
    /// How long writing it took.
    pub duration: Duration,
}

/// What [`Db::backup_to`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// The backup directory.
    pub path: PathBuf,
    /// The backup holds the log up to this address: every write acknowledged before the
    /// backup started, and nothing after this point.
    pub log_end: u64,
    /// Segment files hard-linked (immutable ones on the same file system).
    pub n_segments_linked: u64,
    /// Segment files copied.
    pub n_segments_copied: u64,
    /// Bytes copied (not linked).
    pub n_bytes_copied: u64,
    /// How long it took.
    pub duration: Duration,
}

impl Db {
    /// Compacts the log now: every segment worth it (see
    /// [`Options::compaction_garbage_ratio`](crate::Options::compaction_garbage_ratio)) has
    /// its live records copied to the tail and is removed, until none is left. Readers and
    /// writers go on meanwhile. The segment being written is never compacted.
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`], [`Error::Corruption`] if a segment to compact holds damage (it
    /// is kept), I/O errors.
    pub fn compact(&self) -> Result<CompactionReport> {
        let inner = &self.inner;
        let mut maintenance = inner.maintenance.lock();
        maintenance.failed_segments.clear();
        let _span = tracing::info_span!("compact").entered();
        // Bounded: concurrent writers keep making garbage, and a manual call must return.
        let max_segments = 2 * inner.segments.len() + 2;
        let report = inner.compact_locked(&mut maintenance, max_segments)?;
        inner.remove_pending_segments(false)?;
        Ok(report)
    }

    /// Writes an index checkpoint now; recovery after a crash then replays only the log
    /// written after it. Writers go on meanwhile (they pause once, for a moment).
    ///
    /// # Errors
    ///
    /// [`Error::Poisoned`], I/O errors.
    pub fn checkpoint(&self) -> Result<CheckpointReport> {
        let mut maintenance = self.inner.maintenance.lock();
        self.inner.checkpoint_locked(&mut maintenance)
    }

    /// Copies the database into `dir` (which must not exist, or be empty) while writes go
    /// on: the copy opens as a database holding every write acknowledged before this call
    /// started, and holds exactly a prefix of the log (no later write without every earlier
    /// one). Immutable segment files are hard-linked when `dir` is on the same file system
    /// (so the backup costs little space until the database compacts them away), the rest
    /// copied; a fresh checkpoint goes with them so that opening the backup is quick.
    ///
    /// Only for databases opened on a directory ([`Options::open`](crate::Options::open)).
    ///
    /// # Errors
    ///
    /// [`Error::Backup`] when `dir` is not empty or the database is not in a directory;
    /// [`Error::Poisoned`]; I/O errors (a partial backup may be left in `dir`).
    pub fn backup_to(&self, dir: impl AsRef<Path>) -> Result<BackupReport> {
        let dir = dir.as_ref();
        let inner = &self.inner;
        let refuse = |reason: &str| Error::Backup { path: dir.to_path_buf(), reason: reason.to_owned() };
        if inner.path == Path::new(STORAGE_PATH) {
            return Err(refuse("the database is not in a directory (it was opened on a custom storage)"));
        }
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(refuse("the directory is not empty"));
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(refuse(&error.to_string())),
        }
        let started = Instant::now();
        let _span = tracing::info_span!("backup", to = %dir.display()).entered();
        let mut maintenance = inner.maintenance.lock();
        let checkpoint = inner.checkpoint_locked(&mut maintenance)?;
        let end = inner.published_until.load(Ordering::Acquire);
        inner.wait_durable(end)?;
        let mut manifest = inner.manifest.lock().clone();
        let io = |op: &'static str, path: &Path| {
            let file = path.display().to_string();
            move |source| Error::Io { op, file, source }
        };
        for sub in ["", LOG_DIR, CHECKPOINT_DIR_NAME] {
            let path = dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(io("create a backup directory", &path))?;
        }
        let mut report = BackupReport {
            path: dir.to_path_buf(),
            log_end: end,
            n_segments_linked: 0,
            n_segments_copied: 0,
            n_bytes_copied: 0,
            duration: Duration::ZERO,
        };
        let segment_size = inner.segments.segment_size;
        for first in inner.segments.first_addresses().into_iter().filter(|&first| first < end) {
            let relative = segment_path(first);
            let (from, to) = (inner.path.join(&relative), dir.join(&relative));
            let sealed = first + segment_size <= end;
            if sealed && std::fs::hard_link(&from, &to).is_ok() {
                report.n_segments_linked += 1;
                continue;
            }
            let len = match sealed {
                true => None,
                false => Some(SEGMENT_HEADER_LEN + (end - first)),
            };
            report.n_bytes_copied += copy_file(&from, &to, len).map_err(io("copy a segment", &to))?;
            report.n_segments_copied += 1;
        }
        // Copied, not linked: a recovery from it moves its index into place and changes it.
        let checkpoint_to = dir.join(CHECKPOINT_DIR_NAME).join(checkpoint_name(checkpoint.covers_until));
        report.n_bytes_copied += copy_tree(&checkpoint.path, &checkpoint_to)?;
        manifest.clean = false;
        manifest.cut_at_log_end = false;
        manifest.log_end = end;
        manifest.holes.retain(|&hole| hole < end);
        manifest.usage.clear();
        let temp = dir.join("MANIFEST.tmp");
        write_synced(&temp, &manifest.encode()).map_err(io("write the backup's MANIFEST", &temp))?;
        let final_path = dir.join(MANIFEST_PATH);
        std::fs::rename(&temp, &final_path).map_err(io("write the backup's MANIFEST", &final_path))?;
        for sub in [LOG_DIR, CHECKPOINT_DIR_NAME, ""] {
            let path = dir.join(sub);
            sync_dir(&path).map_err(io("sync a backup directory", &path))?;
        }
        report.duration = started.elapsed();
        tracing::info!(
            log_end = end,
            n_linked = report.n_segments_linked,
            n_copied = report.n_segments_copied,
            "backup done"
        );
        Ok(report)
    }
}

use std::os::unix::fs::DirBuilderExt as _;

/// Copies `from` to `to` (its first `len` bytes if given), synced; returns the bytes copied.
fn copy_file(from: &Path, to: &Path, len: Option<u64>) -> std::io::Result<u64> {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let source = std::fs::File::open(from)?;
    let mut target = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to)?;
    let n = std::io::copy(&mut source.take(len.unwrap_or(u64::MAX)), &mut target)?;
    target.flush()?;
    target.sync_all()?;
    Ok(n)
}

/// The checkpoint directory's name in a backup (where `Options::open` looks by default).
const CHECKPOINT_DIR_NAME: &str = "checkpoints";

/// Copies every file under `from` into `to`, synced; returns the bytes copied.
fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    let io = |op: &'static str, path: &Path| {
        let file = path.display().to_string();
        move |source| Error::Io { op, file, source }
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(to).map_err(io("create a backup directory", to))?;
    let mut n_bytes_copied = 0;
    for entry in std::fs::read_dir(from).map_err(io("list a checkpoint", from))? {
        let entry = entry.map_err(io("list a checkpoint", from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io("list a checkpoint", from))?.is_dir() {
            n_bytes_copied += copy_tree(&entry.path(), &target)?;
        } else {
            n_bytes_copied += copy_file(&entry.path(), &target, None).map_err(io("copy a checkpoint", &target))?;
        }
    }
    sync_dir(to).map_err(io("sync a backup directory", to))?;
    Ok(n_bytes_copied)
}

/// Starts the thread that compacts and checkpoints in the background.
pub(super) fn spawn_maintenance_thread(inner: Arc<Inner>) -> Result<JoinHandle<()>> {
    let signal: fn(&Inner) -> &parking_lot::Condvar = |inner| &inner.shutdown_signal;
    super::spawn_background(inner, "talus-maintenance", "start the maintenance thread", signal, TICK, |inner| {
        inner.background_tick()
    })
}

impl Inner {
    fn background_tick(&self) {
        self.discarded.remove_all();
        if self.poisoned.load(Ordering::Acquire) || self.stopping.load(Ordering::Acquire) {
            return;
        }
        let mut maintenance = self.maintenance.lock();
        if self.compaction.background
            && let Err(error) = self.compact_locked(&mut maintenance, SEGMENTS_PER_TICK)
        {
            tracing::warn!(%error, "background compaction failed");
        }
        if let Err(error) = self.remove_pending_segments(false) {
            tracing::warn!(%error, "removing compacted segments failed");
        }
        let published = self.published_until.load(Ordering::Acquire);
        if published != maintenance.last_published {
            maintenance.last_published = published;
            maintenance.last_growth_at = Instant::now();
        }
        let since = published.saturating_sub(maintenance.last_checkpoint_covers_until);
        let by_bytes = self.checkpoint_every_bytes > 0 && since >= self.checkpoint_every_bytes;
        let when_idle = self.checkpoint_every_bytes > 0
            && since >= (self.checkpoint_every_bytes / IDLE_CHECKPOINT_FRACTION).max(1)
            && maintenance.last_growth_at.elapsed() >= IDLE_CHECKPOINT_AFTER;
        let by_time = self
            .checkpoint_interval
            .is_some_and(|interval| since > 0 && maintenance.last_checkpoint_at.elapsed() >= interval);
        let enabled = self.checkpoint_every_bytes > 0 || self.checkpoint_interval.is_some();
        if (by_bytes || by_time || when_idle || (maintenance.checkpoint_due && enabled))
            && !self.stopping.load(Ordering::Acquire)
            && let Err(error) = self.checkpoint_locked(&mut maintenance)
        {
            tracing::warn!(%error, "background checkpoint failed");
        }
    }

    /// Compacts up to `max_segments` segments, one at a time, while any is worth it.
    fn compact_locked(&self, maintenance: &mut Maintenance, max_segments: usize) -> Result<CompactionReport> {
        let mut report = CompactionReport::default();
        for _ in 0..max_segments {
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            self.check_writable()?;
            let Some((first, oldest)) = self.pick_segment(&maintenance.failed_segments) else { break };
            // The segment must be durable and wholly written, with the log's durable end
            // past it (so no torn tail can ever end inside it).
            let published = self.published_until.load(Ordering::Acquire);
            self.wait_durable(published)?;
            if let Err(error) = self.compact_segment(first, oldest, &mut report) {
                if matches!(error, Error::Corruption { .. }) {
                    maintenance.failed_segments.push(first);
                }
                return Err(error);
            }
        }
        if report.n_segments_compacted > 0 {
            bump(&self.counters.n_compaction_passes);
            tracing::info!(?report, "compacted");
        }
        Ok(report)
    }

    /// The sealed segment compaction would gain most from, if any is worth it; and whether
    /// it is the oldest segment of the log.
    fn pick_segment(&self, failed: &[u64]) -> Option<(u64, bool)> {
        let segment_size = self.segments.segment_size;
        // Sealed: the log's published end is in a later segment (the compaction then syncs
        // up to it, so the durable end is past the segment too).
        let published = self.published_until.load(Ordering::Acquire);
        let firsts = self.segments.first_addresses();
        let oldest = *firsts.first()?;
        let usage: std::collections::BTreeMap<u64, _> =
            self.usage.snapshot().into_iter().map(|usage| (usage.first_address, usage)).collect();
        let (mut disk, mut live) = (0u64, 0u64);
        let mut best: Option<(f64, u64)> = None;
        for &first in &firsts {
            let usage = usage.get(&first).copied().unwrap_or_default();
            disk += usage.written_bytes;
            live += usage.live_bytes;
            if first + segment_size >= published || failed.contains(&first) {
                continue;
            }
            let kept = usage.live_bytes + if first == oldest { 0 } else { usage.tombstone_bytes };
            let ratio = match usage.written_bytes {
                0 => 1.0,
                written => (written - kept.min(written)) as f64 / written as f64,
            };
            if best.is_none_or(|(best_ratio, _)| ratio > best_ratio) {
                best = Some((ratio, first));
            }
        }
        let (ratio, first) = best?;
        let too_big = disk as f64 > self.compaction.space_amplification * live as f64;
        let worth_it = ratio >= self.compaction.garbage_ratio || (too_big && ratio >= MIN_GARBAGE_FOR_SPACE);
        worth_it.then_some((first, first == oldest))
    }

    fn compact_segment(&self, first: u64, oldest: bool, report: &mut CompactionReport) -> Result<()> {
        let segment_size = self.segments.segment_size;
        let _span = tracing::debug_span!("compact a segment", path = segment_path(first)).entered();
        let started = Instant::now();
        let copied_before = report.n_bytes_copied;
        let mut damage = None;
        let mut stopped = false;
        walk_log(&self.segments, first, first + segment_size, &mut |_, _| {}, &mut |found| {
            if stopped || damage.is_some() {
                return Ok(());
            }
            if self.stopping.load(Ordering::Relaxed) {
                stopped = true;
                return Ok(());
            }
            match found {
                Found::Damage(found) => damage = Some(found),
                Found::Record(address, record) => {
                    self.compact_record(address, &record, oldest, report)?;
                    self.throttle(started, report.n_bytes_copied - copied_before);
                }
            }
            Ok(())
        })?;
        if let Some(damage) = damage {
            return Err(corruption(
                &damage.file,
                damage.offset,
                format!("{} (found by compaction, which keeps the segment)", damage.reason),
            ));
        }
        if stopped {
            return Ok(()); // the copies made so far are harmless; the rest waits
        }
        // The copies must be durable before the segment leaves the log.
        let published = self.published_until.load(Ordering::Acquire);
        self.wait_durable(published)?;
        let file_bytes = self.segments.file_len(first).unwrap_or(0);
        self.retire_segment(first)?;
        report.n_segments_compacted += 1;
        report.n_bytes_reclaimed += file_bytes;
        bump(&self.counters.n_segments_compacted);
        Ok(())
    }

    /// Sleeps as needed to keep compaction under its rate limit.
    fn throttle(&self, started: Instant, n_bytes_copied: u64) {
        let limit = self.compaction.rate_limit_bytes_per_sec;
        if limit == 0 {
            return;
        }
        let due = Duration::from_secs_f64(n_bytes_copied as f64 / limit as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(ahead.min(Duration::from_millis(100)));
        }
    }

    /// Copies one record forward if it must survive its segment.
    fn compact_record(
        &self,
        address: u64,
        record: &Record<'_>,
        oldest: bool,
        report: &mut CompactionReport,
    ) -> Result<()> {
        let hash = self.hash(record.key);
        let size = entry_size(record::encoded_len(record.key.len(), record.value.len()));
        let is_indexed = || {
            let mut live = false;
            self.index.for_each_value(&hash, |entry| live |= entry == address);
            live
        };
        // A record the index no longer points at never becomes live again (an address is
        // written once): most records of a segment worth compacting are skipped here,
        // without taking their key's stripe.
        if record.kind == RecordKind::Put && !is_indexed() {
            return Ok(());
        }
        let _stripe = self.write_stripe(super::stripe_of(hash));
        match record.kind {
            RecordKind::Put => {
                if !is_indexed() {
                    return Ok(());
                }
                let next_seq = self.append.lock();
                let (new_address, end) =
                    self.append_record_with_seq(record.seq, RecordKind::Put, 0, record.key, record.value)?;
                self.superseded(Some(Loc { address, size }));
                self.publish(end, *next_seq);
                drop(next_seq);
                let replaced = self
                    .index
                    .replace_if(&hash, |&entry| entry == address, new_address)
                    .inspect_err(|_| self.index_failed())?;
                assert!(replaced, "the entry checked under the stripe lock is still there");
                report.n_records_copied += 1;
                report.n_bytes_copied += size;
                self.counters.n_compaction_bytes_copied.fetch_add(size, Ordering::Relaxed);
            }
            RecordKind::Delete => {
                // Needed only while an older segment may hold a put of the key that it
                // hides, and only if no newer put of the key supersedes it anyway.
                if oldest || self.find(hash, record.key)?.is_some() {
                    report.n_tombstones_dropped += 1;
                    return Ok(());
                }
                let next_seq = self.append.lock();
                let (_, end) = self.append_record_with_seq(record.seq, RecordKind::Delete, 0, record.key, &[])?;
                self.publish(end, *next_seq);
                drop(next_seq);
                report.n_tombstones_copied += 1;
                report.n_bytes_copied += size;
                self.counters.n_compaction_bytes_copied.fetch_add(size, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Takes a compacted segment out of the log: durably in the MANIFEST first, then its
    /// file.
    fn retire_segment(&self, first: u64) -> Result<()> {
        let mut manifest = self.manifest.lock();
        self.segments.retire(first);
        let published = self.published_until.load(Ordering::Acquire);
        let tail_first = self.segments.first_address_of(published);
        let log_begin = self
            .segments
            .first_addresses()
            .first()
            .copied()
            .unwrap_or(tail_first)
            .min(tail_first)
            .max(manifest.log_begin);
        let mut updated = manifest.clone();
        updated.log_begin = log_begin;
        updated.log_end = published.max(manifest.log_end);
        updated.holes = self.segments.holes_from(log_begin);
        updated.usage.clear();
        if let Err(error) = self.storage.write_atomic(MANIFEST_PATH, &updated.encode()) {
            self.segments.unretire(first);
            return Err(io_error("write the MANIFEST", MANIFEST_PATH)(error));
        }
        *manifest = updated;
        self.manifest_unclean_on_disk.store(true, Ordering::Release);
        drop(manifest);
        self.usage.remove(first);
        self.pending_removals.lock().push(first);
        Ok(())
    }

    /// Removes the files of retired segments, unless an iterator is open (then later); with
    /// `wait`, waits for iterators instead.
    pub(super) fn remove_pending_segments(&self, wait: bool) -> Result<()> {
        if self.pending_removals.lock().is_empty() {
            return Ok(());
        }
        let barrier = match wait {
            true => Some(self.removal_barrier.write()),
            false => self.removal_barrier.try_write(),
        };
        let Some(_barrier) = barrier else { return Ok(()) };
        let pending = std::mem::take(&mut *self.pending_removals.lock());
        for first in pending {
            self.segments.unlink(first)?;
        }
        Ok(())
    }

    /// Writes a checkpoint (see `checkpoint.rs` for why it is consistent).
    fn checkpoint_locked(&self, maintenance: &mut Maintenance) -> Result<CheckpointReport> {
        self.check_writable()?;
        let started = Instant::now();
        let _span = tracing::info_span!("checkpoint").entered();
        let replay_from = self.index_applied_until();
        let io = |op: &'static str, path: &Path| {
            let file = path.display().to_string();
            move |source| Error::Io { op, file, source }
        };
        let checkpoint_dir = &self.checkpoint_dir;
        std::fs::create_dir_all(checkpoint_dir).map_err(io("create the checkpoint directory", checkpoint_dir))?;
        let temp = checkpoint_dir.join(CHECKPOINT_TEMP);
        if temp.exists() {
            remove_checkpoint(&temp)?; // left by a crash or a failed checkpoint
        }
        // Each bucket's copy reflects every record below the end noted just before it.
        let mut bucket_replay_from = vec![replay_from; self.index.n_buckets()];
        let n_entries = self.index.snapshot_to_with(temp.join(CHECKPOINT_INDEX_DIR), |idx| {
            bucket_replay_from[idx] = self.index_applied_until();
        })?;
        let (covers_until, usage, next_seq) = {
            let next_seq = self.append.lock();
            (self.published_until.load(Ordering::Acquire), self.usage.snapshot(), *next_seq)
        };
        // No entry may point at bytes a crash could still take away.
        self.wait_durable(covers_until)?;
        // Every segment the entries may point into: the log's, from its beginning to the one
        // holding `covers_until`'s last byte, holes left out (whether or not its file exists
        // yet: the tail may still have been in memory only).
        let segments: Vec<u64> = {
            let log_begin = self.manifest.lock().log_begin;
            let segment_size = self.segments.segment_size;
            let end = covers_until.div_ceil(segment_size) * segment_size;
            (log_begin..end).step_by(segment_size as usize).filter(|&first| !self.segments.is_hole(first)).collect()
        };
        let db_id = self.manifest.lock().db_id;
        let meta = CheckpointMeta {
            db_id,
            replay_from,
            covers_until,
            next_seq,
            n_entries,
            usage,
            segments,
            bucket_replay_from,
        };
        let meta_path = temp.join(CHECKPOINT_FILE);
        write_synced(&meta_path, &meta.encode()).map_err(io("write a checkpoint", &meta_path))?;
        sync_dir(&temp).map_err(io("sync a checkpoint", &temp))?;
        let path = checkpoint_dir.join(checkpoint_name(covers_until));
        if path.exists() {
            remove_checkpoint(&path)?; // nothing was written since that one
        }
        std::fs::rename(&temp, &path).map_err(io("rename a checkpoint into place", &path))?;
        sync_dir(checkpoint_dir).map_err(io("sync the checkpoint directory", checkpoint_dir))?;
        let n_bytes = dir_bytes(&path);
        self.remove_old_checkpoints()?;
        maintenance.last_checkpoint_covers_until = covers_until;
        maintenance.last_checkpoint_at = Instant::now();
        maintenance.checkpoint_due = false;
        bump(&self.counters.n_checkpoints);
        let report =
            CheckpointReport { path, replay_from, covers_until, n_entries, n_bytes, duration: started.elapsed() };
        tracing::info!(?report, "checkpoint written");
        Ok(report)
    }

    /// The log's published end, read once every key stripe has been free for a moment after
    /// it: a writer updates the index after it appends, holding its key's stripe throughout
    /// (compaction's copies too), so every record below it is in the index.
    fn index_applied_until(&self) -> u64 {
        let until = {
            let _append = self.append.lock();
            self.published_until.load(Ordering::Acquire)
        };
        for stripe in self.stripes.iter() {
            drop(stripe.0.write());
        }
        until
    }

    /// Keeps the newest [`CHECKPOINTS_KEPT`] checkpoints.
    fn remove_old_checkpoints(&self) -> Result<()> {
        for (_, old) in list_checkpoints(&self.checkpoint_dir)?.iter().skip(CHECKPOINTS_KEPT) {
            remove_checkpoint(old)?;
        }
        Ok(())
    }
}

/// Bytes in the files under `dir` (best effort: for reports).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|entry| entry.ok())
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            _ => entry.metadata().map_or(0, |metadata| metadata.len()),
        })
        .sum()
}
