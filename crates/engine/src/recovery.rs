//! Reading the whole log back at open after a crash: find where the valid log ends, tell a
//! torn tail (cut silently) from damage in the middle (an error, or cut with `repair`),
//! and hand every record of every complete batch to the caller, in log order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use talus_bucketmap::{BucketMap, BucketMapConfig};
use talus_ringbuf::{ENTRY_ALIGN, ENTRY_HEADER_LEN, EntryHeader, EntryState};

use crate::checkpoint::{CHECKPOINT_FILE, CHECKPOINT_INDEX_DIR, CheckpointMeta};
use crate::db::MAX_KEYS_PER_HASH;
use crate::db::STORAGE_PATH;
use crate::error::{Error, Result, corruption, io_error};
use crate::record::{self, FLAG_BATCH, FLAG_BATCH_END, Record, RecordKind};
use crate::segment::{SEGMENT_HEADER_LEN, Segments, check_entry_fits, entry_payload_len, segment_path};
use crate::storage::StorageFile;
use crate::usage::{UsageDelta, UsageTable, entry_size};

/// An index rebuild after a crash: from a checkpoint plus the log since, or from the
/// whole log.
pub(crate) struct Rebuild<'a> {
    pub(crate) segments: &'a Segments,
    pub(crate) hasher: &'a KeyHash,
    pub(crate) index_config: &'a BucketMapConfig,
    pub(crate) index_dir: &'a Path,
    pub(crate) db_id: u64,
    pub(crate) log_begin: u64,
    pub(crate) repair: bool,
    pub(crate) complete_until: u64,
    /// Index directories moved out of the way, to be removed later (off the open's path).
    pub(crate) discarded: &'a Discarded,
}

/// What a rebuild produced.
pub(crate) struct Rebuilt {
    pub(crate) index: BucketMap<u64, u64>,
    pub(crate) usage: UsageTable,
    pub(crate) outcome: ScanOutcome,
    /// The checkpoint's next sequence number (0 without one).
    pub(crate) next_seq: u64,
}

impl Rebuild<'_> {
    /// An index sized for `n_entries` (at most 3/4 full), so loading does not grow it step
    /// by step (a new file per bucket per doubling).
    fn new_index(&self, n_entries: u64) -> Result<BucketMap<u64, u64>> {
        discard_index_dir(self.index_dir, self.discarded)?;
        let per_bucket = (n_entries.saturating_mul(4) / 3) >> self.index_config.bucket_bits;
        let cells_log2 = (64 - per_bucket.leading_zeros()).clamp(12, 26);
        Ok(BucketMap::create(self.index_config.clone().initial_cells_log2(cells_log2))?)
    }

    /// Replays the whole log.
    pub(crate) fn replay_whole_log(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<Rebuilt> {
        let index = self.new_index(estimate_records(self.segments))?;
        let usage = UsageTable::new(self.segments.segment_size, &[]);
        let target = ReplayTarget {
            index: &index,
            segments: self.segments,
            usage: &usage,
            counted_until: 0,
            bucket_replay_from: &[],
        };
        let outcome = replay_log(&target, self.hasher, self.log_begin, self.repair, self.complete_until, progress)?;
        Ok(Rebuilt { index, usage, outcome, next_seq: 0 })
    }

    /// Starts from the checkpoint in `dir` and replays the log since. `None` (with the
    /// reason logged) if the checkpoint cannot be used: damaged, torn, from another
    /// database, or covering more log than there is.
    pub(crate) fn replay_after_checkpoint(
        &self,
        dir: &Path,
        covers_until: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Option<Rebuilt>> {
        let _span = tracing::info_span!("load a checkpoint", dir = %dir.display()).entered();
        let (index, meta) = match self.load_checkpoint(dir, covers_until) {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::warn!(%error, dir = %dir.display(), "not using a checkpoint");
                discard_index_dir(self.index_dir, self.discarded)?;
                return Ok(None);
            }
        };
        let usage = UsageTable::new(self.segments.segment_size, &meta.usage);
        let live: std::collections::BTreeSet<u64> = self.segments.first_addresses().into_iter().collect();
        usage.retain(|first| live.contains(&first));
        let from = meta.replay_from.max(self.log_begin);
        let target = ReplayTarget {
            index: &index,
            segments: self.segments,
            usage: &usage,
            counted_until: covers_until,
            bucket_replay_from: &meta.bucket_replay_from,
        };
        let outcome = replay_log(&target, self.hasher, from, false, self.complete_until, progress)?;
        if outcome.log_end < covers_until {
            tracing::warn!(dir = %dir.display(), log_end = outcome.log_end, "the log ends before the checkpoint does; not using it");
            drop(index);
            discard_index_dir(self.index_dir, self.discarded)?;
            return Ok(None);
        }
        tracing::info!(dir = %dir.display(), n_entries = meta.n_entries, replay_from = from, "loaded a checkpoint");
        Ok(Some(Rebuilt { index, usage, outcome, next_seq: meta.next_seq }))
    }

    /// Moves the checkpoint's index into place (the checkpoint is used up: the index changes
    /// in place from here on, and a new checkpoint is due) and opens it, which verifies
    /// every bucket file's checksum; then drops the entries that point into segments
    /// compaction removed since the checkpoint (the records were copied, and the copies are
    /// in the log replayed after it).
    fn load_checkpoint(&self, dir: &Path, covers_until: u64) -> Result<(BucketMap<u64, u64>, CheckpointMeta)> {
        let meta = CheckpointMeta::read(dir)?;
        let shown = dir.join(CHECKPOINT_FILE).display().to_string();
        if meta.db_id != self.db_id || meta.covers_until != covers_until {
            return Err(corruption(&shown, 16, "the checkpoint belongs to another database or directory name"));
        }
        discard_index_dir(self.index_dir, self.discarded)?;
        let copy = dir.join(CHECKPOINT_INDEX_DIR);
        if std::fs::rename(&copy, self.index_dir).is_err() {
            // Another file system (a custom index or checkpoint directory): copy instead.
            copy_dir_files(&copy, self.index_dir)?;
        }
        let index = BucketMap::open(self.index_config.clone().verify_on_open(true))?;
        if index.n_buckets() != meta.bucket_replay_from.len() {
            return Err(corruption(
                &shown,
                0,
                format!("the index copy has {} buckets, not {}", index.n_buckets(), meta.bucket_replay_from.len()),
            ));
        }
        if index.len() != meta.n_entries {
            return Err(corruption(
                &shown,
                48,
                format!("the index copy holds {} entries, not {}", index.len(), meta.n_entries),
            ));
        }
        let gone: Vec<u64> = meta
            .segments
            .iter()
            .copied()
            .filter(|&first| first < self.log_begin || self.segments.is_hole(first))
            .collect();
        let lost = meta
            .segments
            .iter()
            .find(|&&first| first >= self.log_begin && !self.segments.is_hole(first) && !self.segments.contains(first));
        if let Some(&lost) = lost {
            // Not removed by compaction, yet missing: the log is damaged (the whole-log
            // replay reports it where it is).
            return Err(corruption(
                &shown,
                0,
                format!("the segment at address {lost} the checkpoint needs is missing"),
            ));
        }
        if !gone.is_empty() {
            let segment_size = self.segments.segment_size;
            let stale: Vec<(u64, u64)> = index
                .iter()
                .filter(|&(_, address)| gone.binary_search(&(address - address % segment_size)).is_ok())
                .collect();
            tracing::info!(
                n_segments = gone.len(),
                n_entries = stale.len(),
                "dropping entries of segments compacted since the checkpoint"
            );
            for (hash, address) in stale {
                index.remove_if(&hash, |&entry| entry == address)?;
            }
        }
        Ok((index, meta))
    }
}

/// Copies every file of `from` into `to` (created).
fn copy_dir_files(from: &Path, to: &Path) -> Result<()> {
    let io = |op: &'static str, path: &Path| {
        let file = path.display().to_string();
        move |source| Error::Io { op, file, source }
    };
    std::fs::create_dir_all(to).map_err(io("create the index directory", to))?;
    for entry in std::fs::read_dir(from).map_err(io("list a checkpoint's index", from))? {
        let entry = entry.map_err(io("list a checkpoint's index", from))?;
        let target = to.join(entry.file_name());
        std::fs::copy(entry.path(), &target).map_err(io("copy a checkpoint's index", &target))?;
    }
    Ok(())
}

/// Removes the index directory (to rebuild the index from scratch).
pub(crate) fn remove_index_dir(index_dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(index_dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io { op: "remove the old index", file: index_dir.display().to_string(), source }),
    }
}

/// The prefix of the names index directories get when they are moved out of the way.
pub(crate) const DISCARDED_SUFFIX: &str = "discarded-";

/// Index directories moved out of the way, to be removed later (off the open's path):
/// the ones this run moved aside, and the ones an earlier run moved aside and did not get
/// to remove, found by listing the index directory's parent at the first removal (not at
/// open, where that listing would cost a reopen a few system calls for nothing).
pub(crate) struct Discarded {
    index_dir: PathBuf,
    /// Whether the earlier runs' leftovers were listed yet, and the directories to remove.
    dirs: Mutex<(bool, Vec<PathBuf>)>,
}

impl Discarded {
    pub(crate) fn new(index_dir: &Path) -> Discarded {
        Discarded { index_dir: index_dir.to_path_buf(), dirs: Mutex::new((false, Vec::new())) }
    }

    fn push(&self, dir: PathBuf) {
        self.dirs.lock().1.push(dir);
    }

    /// Removes every directory moved aside, listing the earlier runs' ones first if not
    /// done yet (errors are logged: they are tried again at the next open).
    pub(crate) fn remove_all(&self) {
        let dirs = {
            let mut guard = self.dirs.lock();
            let (listed, dirs) = &mut *guard;
            if !*listed {
                *listed = true;
                for dir in leftover_discarded_dirs(&self.index_dir) {
                    if !dirs.contains(&dir) {
                        dirs.push(dir);
                    }
                }
            }
            std::mem::take(dirs)
        };
        for dir in dirs {
            if let Err(error) = std::fs::remove_dir_all(&dir)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, dir = %dir.display(), "removing an old index failed");
            }
        }
    }
}

/// Moves the index directory out of the way (renamed beside it, `<index>.discarded-N`) and
/// lists it in `discarded` for removal later: removing a large index takes a while, and an
/// open after a crash should not wait for it.
pub(crate) fn discard_index_dir(index_dir: &Path, discarded: &Discarded) -> Result<()> {
    if !index_dir.exists() {
        return Ok(());
    }
    let mut name = index_dir.file_name().map(|name| name.to_os_string()).unwrap_or_default();
    name.push(format!(".{DISCARDED_SUFFIX}"));
    for n in 0u32.. {
        let mut candidate = name.clone();
        candidate.push(n.to_string());
        let target = index_dir.with_file_name(candidate);
        if target.exists() {
            continue;
        }
        return match std::fs::rename(index_dir, &target) {
            Ok(()) => {
                discarded.push(target);
                Ok(())
            }
            Err(_) => remove_index_dir(index_dir),
        };
    }
    unreachable!("some name is free")
}

/// Index directories an earlier run moved out of the way and did not get to remove.
fn leftover_discarded_dirs(index_dir: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (index_dir.parent(), index_dir.file_name()) else { return Vec::new() };
    let prefix = format!("{}.{DISCARDED_SUFFIX}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
        .map(|entry| entry.path())
        .collect()
}

/// What `repair` cut away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairReport {
    /// The logical address of the first invalid record: the log now ends here.
    pub cut_at_address: u64,
    /// The segment file and offset of the damage.
    pub file: String,
    /// The byte offset in that file.
    pub offset: u64,
    /// Why the record there is invalid.
    pub reason: String,
    /// Log bytes dropped (from the cut to the old end of the log).
    pub n_bytes_dropped: u64,
    /// Intact records among the dropped bytes (they were after the damage, or in the batch
    /// it broke): the writes the repair gave up to keep the log a prefix of its history.
    pub n_records_dropped: u64,
}

/// The result of a scan.
#[derive(Debug, Default)]
pub(crate) struct ScanOutcome {
    /// The log ends here (the next record goes here).
    pub(crate) log_end: u64,
    pub(crate) max_seq: u64,
    pub(crate) n_records: u64,
    pub(crate) n_bytes: u64,
    pub(crate) n_torn_bytes: u64,
    pub(crate) repair: Option<RepairReport>,
}

/// Reading is done in chunks of this size.
const CHUNK: usize = 4 << 20;
/// Progress is reported about this often (in log bytes).
const PROGRESS_EVERY: u64 = 4 << 20;

/// A buffered reader over one segment's data (offsets relative to the data start).
pub(crate) struct SegmentReader {
    file: Arc<dyn StorageFile>,
    path: String,
    data_len: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl SegmentReader {
    pub(crate) fn new(file: Arc<dyn StorageFile>, path: String) -> Result<SegmentReader> {
        let len = file.len().map_err(io_error("read a segment's length", &path))?;
        Ok(SegmentReader {
            file,
            path,
            data_len: len.saturating_sub(SEGMENT_HEADER_LEN),
            buf: Vec::new(),
            buf_start: 0,
        })
    }

    /// `len` bytes at data offset `at`, or fewer if the file ends first.
    fn bytes(&mut self, at: u64, len: usize) -> Result<&[u8]> {
        let available = self.data_len.saturating_sub(at).min(len as u64) as usize;
        let buf_end = self.buf_start + self.buf.len() as u64;
        if at < self.buf_start || at + available as u64 > buf_end {
            let want = available.max(CHUNK).min(self.data_len.saturating_sub(at) as usize);
            self.buf.resize(want, 0);
            let n = self
                .file
                .read_at(&mut self.buf, SEGMENT_HEADER_LEN + at)
                .map_err(io_error("read the log", &self.path))?;
            self.buf.truncate(n);
            self.buf_start = at;
        }
        let start = (at - self.buf_start) as usize;
        let end = (start + available).min(self.buf.len());
        Ok(&self.buf[start..end])
    }
}

/// One step of the scan.
pub(crate) enum Step {
    Record {
        size: u64,
    },
    Filler {
        size: u64,
    },
    /// The segment's data ends here.
    End,
    Invalid(&'static str),
}

/// The step at data offset `at`, with a record's payload (borrowed from the reader).
pub(crate) fn step(reader: &mut SegmentReader, at: u64, segment_size: u64) -> Result<(Step, Option<&[u8]>)> {
    if at >= reader.data_len {
        return Ok((Step::End, None));
    }
    let bytes = reader.bytes(at, ENTRY_HEADER_LEN)?;
    if bytes.len() < ENTRY_HEADER_LEN {
        return Ok((Step::Invalid("entry header cut short"), None));
    }
    let word = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    let Some(header) = EntryHeader::decode(word) else {
        return Ok((Step::Invalid("invalid entry header"), None));
    };
    if header.state == EntryState::Filler {
        if let Err(reason) = check_entry_fits(&header, at, segment_size) {
            return Ok((Step::Invalid(reason), None));
        }
        return Ok((Step::Filler { size: header.size as u64 }, None));
    }
    let payload_len = match entry_payload_len(bytes, at, segment_size) {
        Ok(len) => len,
        Err(reason) => return Ok((Step::Invalid(reason), None)),
    };
    let entry = reader.bytes(at, ENTRY_HEADER_LEN + payload_len)?;
    if entry.len() < ENTRY_HEADER_LEN + payload_len {
        return Ok((Step::Invalid("record cut short by the end of the file"), None));
    }
    let payload = &entry[ENTRY_HEADER_LEN..];
    if let Err(reason) = record::decode(payload, true) {
        return Ok((Step::Invalid(reason), None));
    }
    Ok((Step::Record { size: header.size as u64 }, Some(payload)))
}

/// Trailing zeros at least this long are the segment's preallocation (see
/// `Options::log_preallocation`), not torn bytes.
const ZERO_TAIL_MIN: u64 = 4096;

/// Where the segment's data ends if a run of at least [`ZERO_TAIL_MIN`] zeros at the end of
/// the file (preallocated, never written) is left out: after the last non-zero byte at or
/// after `from`, rounded up to the 8-byte entry alignment. Shorter zero runs count as data.
fn data_end_before_zeros(reader: &mut SegmentReader, from: u64) -> Result<u64> {
    let data_len = reader.data_len;
    let mut nonzero_end = from.min(data_len);
    let mut at = from;
    while at < data_len {
        let bytes = reader.bytes(at, CHUNK)?;
        if bytes.is_empty() {
            break;
        }
        if let Some(last) = bytes.iter().rposition(|&byte| byte != 0) {
            nonzero_end = at + last as u64 + 1;
        }
        at += bytes.len() as u64;
    }
    let data_end = at.min(data_len);
    Ok(match data_end - nonzero_end >= ZERO_TAIL_MIN {
        true => nonzero_end.next_multiple_of(ENTRY_ALIGN as u64).min(data_end),
        false => data_end,
    })
}

/// Whether any valid record starts at or after data offset `from` in this segment.
pub(crate) fn valid_record_from(reader: &mut SegmentReader, from: u64, segment_size: u64) -> Result<Option<u64>> {
    let mut at = from.next_multiple_of(ENTRY_ALIGN as u64);
    while at + (ENTRY_HEADER_LEN as u64) <= reader.data_len {
        if let (Step::Record { .. }, _) = step(reader, at, segment_size)? {
            return Ok(Some(at));
        }
        at += ENTRY_ALIGN as u64;
    }
    Ok(None)
}

/// Scans the log from `from` (a record boundary: the log's beginning or where a checkpoint
/// says to replay from), calling `apply` for every record of the valid log (batch
/// records only once their batch is complete); segments compaction removed are skipped. Cuts a torn tail (truncating the segment,
/// removing any later ones); damage followed by valid records is [`Error::Corruption`]
/// unless `repair`. `complete_until` is where a clean close said the log ends (0 if
/// unknown): nothing before it can be a torn tail, so losing any of it is damage too.
pub(crate) fn scan_log(
    segments: &Segments,
    from: u64,
    repair: bool,
    complete_until: u64,
    progress: &mut dyn FnMut(u64, u64),
    mut apply: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<ScanOutcome> {
    let segment_size = segments.segment_size;
    let all_firsts = segments.first_addresses();
    let skip = all_firsts.iter().take_while(|&&first| first + segment_size <= from).count();
    let firsts = &all_firsts[skip..];
    let mut outcome = ScanOutcome { log_end: from, ..ScanOutcome::default() };
    let n_bytes_total =
        log_bytes_in_files(segments).saturating_sub(from - all_firsts.first().map_or(from, |&first| first.min(from)));
    let mut next_progress = 0u64;
    let mut pending_batch = PendingBatch::default();
    let mut expected_first = segments.first_address_of(from);
    for (idx, &first) in firsts.iter().enumerate() {
        let path = segment_path(first);
        while expected_first < first && segments.is_hole(expected_first) {
            expected_first += segment_size;
            // A batch that went on into a segment compaction removed was complete:
            // compaction removes a segment only once the log is durable past it.
            outcome.n_records += pending_batch.apply_all(&mut apply)?;
        }
        if first != expected_first {
            return Err(corruption(
                &path,
                0,
                format!("segment missing before it: expected one at address {expected_first}"),
            ));
        }
        expected_first = first + segment_size;
        let is_last = idx + 1 == firsts.len();
        let file = segments.file(first)?.expect("listed segments stay listed while the log is read at open");
        tracing::info!(
            segment = idx + 1,
            n_segments = firsts.len(),
            n_records = outcome.n_records,
            path,
            "recovery: scanning the log"
        );
        let mut reader = SegmentReader::new(file, path.clone())?;
        let mut at = from.saturating_sub(first);
        if at > 0 {
            outcome.log_end = first + at;
        }
        loop {
            if at >= segment_size {
                break; // the next segment continues the log
            }
            let (step, payload) = step(&mut reader, at, segment_size)?;
            match step {
                Step::Record { size } => {
                    let payload = payload.expect("a record step has its payload");
                    let record = record::decode(payload, false).expect("verified by step");
                    let (seq, flags) = (record.seq, record.flags);
                    let address = first + at;
                    outcome.max_seq = outcome.max_seq.max(seq);
                    if flags & FLAG_BATCH != 0 {
                        pending_batch.push(address, payload);
                        if flags & FLAG_BATCH_END != 0 {
                            outcome.n_records += pending_batch.apply_all(&mut apply)?;
                        }
                    } else {
                        if let Some(address) = pending_batch.first_address() {
                            return Err(corruption(
                                &path,
                                SEGMENT_HEADER_LEN + at,
                                format!("a record inside the unfinished batch that starts at address {address}"),
                            ));
                        }
                        apply(address, payload)?;
                        outcome.n_records += 1;
                    }
                    at += size;
                    outcome.log_end = first + at;
                    outcome.n_bytes = outcome.log_end - from;
                    if outcome.n_bytes >= next_progress {
                        progress(outcome.n_bytes, n_bytes_total.max(outcome.n_bytes));
                        next_progress = outcome.n_bytes + PROGRESS_EVERY;
                    }
                }
                Step::Filler { size } => {
                    at += size;
                    outcome.log_end = first + at.min(segment_size);
                }
                Step::End if at >= segment_size || is_last => break,
                Step::End | Step::Invalid(_) => {
                    let reason = match step {
                        Step::Invalid(reason) => reason,
                        _ => "segment ends early",
                    };
                    let damage = DamageAt { first, at, path: path.clone(), reason };
                    let rules = CutRules { repair, complete_until };
                    return finish_cut(segments, &firsts[idx..], reader, damage, rules, pending_batch, outcome);
                }
            }
        }
    }
    progress(outcome.n_bytes, n_bytes_total.max(outcome.n_bytes));
    let old_end = outcome.log_end;
    // The log ends inside a batch: the batch never finished, so it never happened.
    let cut = pending_batch.first_address().unwrap_or(old_end);
    if complete_until > cut {
        // Files cut short or removed after a clean close: acknowledged writes are gone.
        let first = segments.first_address_of(cut);
        let (path, offset) = (segment_path(first), SEGMENT_HEADER_LEN + (cut - first));
        let reason = format!("the log ends here, but it was closed cleanly at address {complete_until}");
        if !repair {
            return Err(corruption(&path, offset, format!("{reason}; open with repair to accept the loss")));
        }
        tracing::warn!(file = %path, offset, "repair accepts a log cut short");
        outcome.repair = Some(RepairReport {
            cut_at_address: cut,
            file: path,
            offset,
            reason,
            n_bytes_dropped: complete_until - cut,
            n_records_dropped: pending_batch.len() as u64,
        });
    }
    if cut < old_end {
        outcome.n_torn_bytes = old_end - cut;
        outcome.log_end = cut;
        truncate_at(segments, cut, firsts)?;
    }
    Ok(outcome)
}

/// The records of a batch whose end the scan has not reached yet: their payloads back to
/// back in one buffer.
#[derive(Default)]
struct PendingBatch {
    bytes: Vec<u8>,
    /// `(address, payload end in bytes)`, in log order.
    records: Vec<(u64, usize)>,
}

impl PendingBatch {
    fn push(&mut self, address: u64, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.records.push((address, self.bytes.len()));
    }

    fn first_address(&self) -> Option<u64> {
        self.records.first().map(|&(address, _)| address)
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    /// Applies every record, in order, and empties the batch; returns how many.
    fn apply_all(&mut self, apply: &mut impl FnMut(u64, &[u8]) -> Result<()>) -> Result<u64> {
        let mut start = 0;
        for &(address, end) in &self.records {
            apply(address, &self.bytes[start..end])?;
            start = end;
        }
        let n = self.records.len() as u64;
        self.bytes.clear();
        self.records.clear();
        Ok(n)
    }
}

/// When a scan may cut the log.
#[derive(Clone, Copy)]
struct CutRules {
    repair: bool,
    /// The end of the log at its last clean close (0 if unknown).
    complete_until: u64,
}

struct DamageAt {
    first: u64,
    at: u64,
    path: String,
    reason: &'static str,
}

fn finish_cut(
    segments: &Segments,
    firsts_from_here: &[u64],
    mut reader: SegmentReader,
    damage: DamageAt,
    rules: CutRules,
    pending_batch: PendingBatch,
    mut outcome: ScanOutcome,
) -> Result<ScanOutcome> {
    let segment_size = segments.segment_size;
    let mut valid_after = valid_record_from(&mut reader, damage.at + ENTRY_ALIGN as u64, segment_size)?;
    let mut old_end = damage.first + data_end_before_zeros(&mut reader, damage.at)?;
    for &later in &firsts_from_here[1..] {
        let path = segment_path(later);
        let file = segments.file(later)?.expect("listed segments stay listed while the log is read at open");
        let mut later_reader = SegmentReader::new(file, path)?;
        old_end = later + data_end_before_zeros(&mut later_reader, 0)?;
        if valid_after.is_none() && valid_record_from(&mut later_reader, 0, segment_size)?.is_some() {
            valid_after = Some(later);
        }
    }
    let damage_address = damage.first + damage.at;
    let cut = pending_batch.first_address().unwrap_or(damage_address);
    // Damage, not a torn tail: valid records follow, or a clean close vouched for the bytes.
    let why_not_torn = match (valid_after, rules.complete_until > damage_address) {
        (Some(_), _) => Some("valid records follow".to_owned()),
        (None, true) => Some(format!("the log was closed cleanly at address {}", rules.complete_until)),
        (None, false) => None,
    };
    if let Some(why_not_torn) = why_not_torn {
        if !rules.repair {
            return Err(corruption(
                &damage.path,
                SEGMENT_HEADER_LEN + damage.at,
                format!("{} ({why_not_torn}, so this is not a torn tail; open with repair to cut here)", damage.reason),
            ));
        }
        tracing::warn!(file = %damage.path, offset = SEGMENT_HEADER_LEN + damage.at, reason = damage.reason, "repair cuts the log");
        let mut n_records_dropped = 0u64;
        walk_log(segments, cut, old_end, &mut |_, _| {}, &mut |found| {
            if let Found::Record(..) = found {
                n_records_dropped += 1;
            }
            Ok(())
        })?;
        outcome.repair = Some(RepairReport {
            cut_at_address: cut,
            file: damage.path.clone(),
            offset: SEGMENT_HEADER_LEN + damage.at,
            reason: damage.reason.to_owned(),
            n_bytes_dropped: old_end.max(rules.complete_until).saturating_sub(cut),
            n_records_dropped,
        });
    } else {
        tracing::info!(file = %damage.path, address = cut, "cut the torn tail of the log");
    }
    outcome.n_torn_bytes = old_end.saturating_sub(cut);
    outcome.log_end = cut;
    let all: Vec<u64> = segments.first_addresses();
    truncate_at(segments, cut, &all)?;
    Ok(outcome)
}

/// What [`walk_log`] finds.
pub(crate) enum Found<'a> {
    /// A valid record at this address.
    Record(u64, Record<'a>),
    /// Bytes of the log that hold no valid record.
    Damage(Damage),
}

/// A stretch of the log that holds no valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Its first logical address.
    pub(crate) address: u64,
    /// The segment file it is in (or would be in, if that file is missing).
    pub(crate) file: String,
    /// The byte offset in that file.
    pub(crate) offset: u64,
    /// Its length: up to the next valid record, or the end of the segment or log.
    pub(crate) n_bytes: u64,
    pub(crate) reason: &'static str,
}

/// Reads the log in `[from, to)` (entry boundaries) and changes nothing: every valid record
/// is visited in log order, and every stretch that is not a valid record is reported as
/// damage, after which the walk goes on at the next valid record (the scan at open stops at
/// the first damage instead). `progress(done, total)` is called every few MiB.
pub(crate) fn walk_log(
    segments: &Segments,
    from: u64,
    to: u64,
    progress: &mut dyn FnMut(u64, u64),
    visit: &mut dyn FnMut(Found<'_>) -> Result<()>,
) -> Result<()> {
    let segment_size = segments.segment_size;
    let n_bytes_total = to.saturating_sub(from);
    let mut next_progress = 0u64;
    let mut expected = segments.first_address_of(from);
    let missing = |visit: &mut dyn FnMut(Found<'_>) -> Result<()>, first: u64, start: u64, end: u64| {
        visit(Found::Damage(Damage {
            address: start,
            file: segment_path(first),
            offset: SEGMENT_HEADER_LEN + (start - first),
            n_bytes: end - start,
            reason: "the segment file is missing",
        }))
    };
    let firsts = segments.first_addresses();
    for first in firsts.into_iter().filter(|&first| first + segment_size > from && first < to) {
        while expected < first {
            if !segments.is_hole(expected) {
                missing(visit, expected, expected.max(from), (expected + segment_size).min(first))?;
            }
            expected += segment_size;
        }
        expected = first + segment_size;
        let path = segment_path(first);
        let file = match segments.file(first) {
            Ok(file) => file,
            // Its header does not match: none of its bytes can be trusted.
            Err(Error::Corruption { .. }) => {
                visit(Found::Damage(Damage {
                    address: first.max(from),
                    file: path.clone(),
                    offset: SEGMENT_HEADER_LEN + (first.max(from) - first),
                    n_bytes: (first + segment_size).min(to) - first.max(from),
                    reason: "the segment's header is damaged or belongs to another database",
                }))?;
                continue;
            }
            Err(error) => return Err(error),
        };
        let Some(file) = file else {
            // Removed since it was listed (compaction retired it): no longer part of the log.
            if !segments.is_hole(first) {
                missing(visit, first, first.max(from), (first + segment_size).min(to))?;
            }
            continue;
        };
        let mut reader = SegmentReader::new(file, path.clone())?;
        let end = (to - first).min(segment_size);
        let mut at = from.saturating_sub(first);
        let damage = |visit: &mut dyn FnMut(Found<'_>) -> Result<()>, at: u64, resume: u64, reason| {
            visit(Found::Damage(Damage {
                address: first + at,
                file: path.clone(),
                offset: SEGMENT_HEADER_LEN + at,
                n_bytes: resume - at,
                reason,
            }))
        };
        while at < end {
            let done = first + at - from;
            if done >= next_progress {
                progress(done, n_bytes_total);
                next_progress = done + PROGRESS_EVERY;
            }
            let (step, payload) = step(&mut reader, at, segment_size)?;
            match step {
                Step::Record { size } => {
                    let payload = payload.expect("a record step has its payload");
                    let record = record::decode(payload, false).expect("verified by step");
                    visit(Found::Record(first + at, record))?;
                    at += size;
                }
                Step::Filler { size } => at += size,
                Step::End => {
                    damage(visit, at, end, "the segment file ends before the log does")?;
                    at = end;
                }
                Step::Invalid(reason) => {
                    let resume = valid_record_from(&mut reader, at + ENTRY_ALIGN as u64, segment_size)?
                        .filter(|&resume| resume < end)
                        .unwrap_or(end);
                    damage(visit, at, resume, reason)?;
                    at = resume;
                }
            }
        }
    }
    while expected < to {
        if !segments.is_hole(expected) {
            missing(visit, expected, expected.max(from), (expected + segment_size).min(to))?;
        }
        expected += segment_size;
    }
    progress(n_bytes_total, n_bytes_total);
    Ok(())
}

/// Bytes of log data in the segment files (their lengths less their headers).
fn log_bytes_in_files(segments: &Segments) -> u64 {
    segments
        .first_addresses()
        .iter()
        .filter_map(|&first| segments.file_len(first))
        .map(|len| len.saturating_sub(SEGMENT_HEADER_LEN))
        .sum()
}

/// Makes the log end at `address`: truncates its segment, removes later ones.
pub(crate) fn truncate_at(segments: &Segments, address: u64, firsts: &[u64]) -> Result<()> {
    let first = segments.first_address_of(address);
    for &later in firsts.iter().filter(|&&later| later > first) {
        segments.remove(later)?;
    }
    if let Some(file) = segments.file(first)? {
        let path = segment_path(first);
        file.set_len(SEGMENT_HEADER_LEN + (address - first)).map_err(io_error("truncate the log", &path))?;
        file.sync_data().map_err(io_error("sync the truncated log", &path))?;
    }
    Ok(())
}

/// Roughly how many records the log holds: its length over the average entry size of a
/// sample (the first MiB of the first segment). Sizes the index before a rebuild, so it
/// does not grow (a new file per bucket per doubling) record by record. Errors just mean
/// no estimate.
pub(crate) fn estimate_records(segments: &Segments) -> u64 {
    const SAMPLE: usize = 1 << 20;
    let firsts = segments.first_addresses();
    let log_bytes = log_bytes_in_files(segments);
    let Some(file) = firsts.first().and_then(|&first| segments.file(first).ok().flatten()) else { return 0 };
    let mut sample = vec![0u8; SAMPLE.min(segments.segment_size as usize)];
    let Ok(n) = file.read_at(&mut sample, SEGMENT_HEADER_LEN) else { return 0 };
    let (mut at, mut n_records) = (0usize, 0u64);
    while at + ENTRY_HEADER_LEN <= n {
        let word = u64::from_le_bytes(sample[at..at + ENTRY_HEADER_LEN].try_into().expect("8 bytes"));
        let Some(header) = EntryHeader::decode(word) else { break };
        if header.state == EntryState::Ready {
            n_records += 1;
        }
        at += header.size;
    }
    match (n_records, at.min(n) as u64) {
        (0, _) | (_, 0) => 0,
        (n_records, sampled) => log_bytes.saturating_mul(n_records) / sampled,
    }
}

/// The key hash: xxh3 with the database's seed, masked only in tests.
pub(crate) struct KeyHash {
    pub(crate) seed: u64,
    pub(crate) mask: u64,
}

impl KeyHash {
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(key, self.seed) & self.mask
    }
}

/// How many records ahead of the one being applied a replay worker prefetches probe windows.
const REPLAY_LOOKAHEAD: usize = 16;
/// Records the scan hands to a replay worker at a time.
const REPLAY_BATCH: usize = 1024;
/// At most this many replay workers (the index's buckets are locked one at a time, so a few
/// threads apply records in parallel with little contention).
const MAX_REPLAY_WORKERS: usize = 4;

/// What replayed records are applied to.
struct ReplayTarget<'a> {
    index: &'a BucketMap<u64, u64>,
    segments: &'a Segments,
    usage: &'a UsageTable,
    /// Records below this address are in the accounting already (a checkpoint's).
    counted_until: u64,
    /// A checkpoint's per-bucket replay starts (empty for a whole-log replay).
    bucket_replay_from: &'a [u64],
}

impl ReplayTarget<'_> {
    /// Whether the checkpoint's copy of the index reflects the record at `address` already
    /// (it is below its key's bucket's replay start), so that it need not be applied.
    fn in_copy(&self, address: u64, hash: u64) -> bool {
        !self.bucket_replay_from.is_empty() && address < self.bucket_replay_from[self.index.bucket_index(&hash)]
    }
}

/// Records for a replay worker: their payloads back to back in one buffer.
#[derive(Default)]
struct ReplayBatch {
    bytes: Vec<u8>,
    /// `(address, key hash, payload end in bytes)`, in log order.
    records: Vec<(u64, u64, usize)>,
}

impl ReplayBatch {
    fn with_capacity(n_records: usize) -> ReplayBatch {
        ReplayBatch { bytes: Vec::with_capacity(n_records * 256), records: Vec::with_capacity(n_records) }
    }

    fn push(&mut self, address: u64, hash: u64, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.records.push((address, hash, self.bytes.len()));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u64, &[u8])> + '_ {
        let mut start = 0;
        self.records.iter().map(move |&(address, hash, end)| {
            let payload = &self.bytes[start..end];
            start = end;
            (address, hash, payload)
        })
    }
}

/// Scans the log from `from` (see [`scan_log`]) and applies every record to `target`. On a
/// machine with more than one core the scan (reading, checksums) runs on this thread and
/// hands the records, by key hash, to one worker per other core (at most
/// [`MAX_REPLAY_WORKERS`]), so a key's records are applied in log order by one worker, and
/// the index's random accesses, which bound a rebuild, run beside the scan.
fn replay_log(
    target: &ReplayTarget<'_>,
    hasher: &KeyHash,
    from: u64,
    repair: bool,
    complete_until: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ScanOutcome> {
    let n_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n_workers = (n_cores - 1).min(MAX_REPLAY_WORKERS);
    let key_hash = |payload: &[u8]| hasher.hash(record::decode(payload, false).expect("verified by the scan").key);
    if n_workers == 0 {
        let mut replayer = Replayer::new(target);
        let mut batch = ReplayBatch::with_capacity(REPLAY_BATCH);
        let outcome = scan_log(target.segments, from, repair, complete_until, progress, |address, payload| {
            let hash = key_hash(payload);
            if target.in_copy(address, hash) {
                return Ok(());
            }
            batch.push(address, hash, payload);
            if batch.records.len() == REPLAY_BATCH {
                replayer.apply(&batch)?;
                batch.clear();
            }
            Ok(())
        })?;
        replayer.apply(&batch)?;
        return replayer.finish().map(|()| outcome);
    }
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(n_workers);
        let mut workers = Vec::with_capacity(n_workers);
        // Applied batches come back to be filled again (a fresh buffer per batch would be
        // mapped and unmapped by the allocator each time).
        let (recycle, recycled) = std::sync::mpsc::sync_channel::<ReplayBatch>(n_workers * 8);
        for _ in 0..n_workers {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<ReplayBatch>(4);
            senders.push(sender);
            let recycle = recycle.clone();
            workers.push(scope.spawn(move || -> Result<()> {
                let mut replayer = Replayer::new(target);
                for mut batch in receiver {
                    replayer.apply(&batch)?;
                    batch.clear();
                    let _ = recycle.try_send(batch); // dropped if the scan has enough
                }
                replayer.finish()
            }));
        }
        drop(recycle);
        let mut batches: Vec<ReplayBatch> = (0..n_workers).map(|_| ReplayBatch::with_capacity(REPLAY_BATCH)).collect();
        let scanned = scan_log(target.segments, from, repair, complete_until, progress, |address, payload| {
            let hash = key_hash(payload);
            if target.in_copy(address, hash) {
                return Ok(());
            }
            let worker = (hash % n_workers as u64) as usize;
            batches[worker].push(address, hash, payload);
            if batches[worker].records.len() == REPLAY_BATCH {
                let empty = recycled.try_recv().unwrap_or_else(|_| ReplayBatch::with_capacity(REPLAY_BATCH));
                let batch = std::mem::replace(&mut batches[worker], empty);
                // A worker stops early only on an error, which is returned below.
                senders[worker].send(batch).map_err(|_| corruption(STORAGE_PATH, 0, "a replay worker stopped"))?;
            }
            Ok(())
        });
        if scanned.is_ok() {
            for (sender, batch) in senders.iter().zip(batches) {
                if !batch.records.is_empty() {
                    let _ = sender.send(batch); // a worker that stopped has its error below
                }
            }
        }
        drop(senders);
        for worker in workers {
            worker.join().expect("a replay worker panicked")?;
        }
        scanned
    })
}

/// Applies one worker's records to the index, in the order given, prefetching each
/// record's probe window [`REPLAY_LOOKAHEAD`] records ahead: the index is far larger than
/// the CPU cache, and the prefetches overlap the cache misses. The accounting's changes are
/// summed per segment here and added to the shared table at the end, so that workers do not
/// contend for it record by record.
struct Replayer<'t, 'a> {
    target: &'t ReplayTarget<'a>,
    usage: UsageDelta,
}

impl<'t, 'a> Replayer<'t, 'a> {
    fn new(target: &'t ReplayTarget<'a>) -> Replayer<'t, 'a> {
        Replayer { target, usage: UsageDelta::new(target.segments.segment_size) }
    }

    /// Applies a batch of verified records, in order.
    fn apply(&mut self, batch: &ReplayBatch) -> Result<()> {
        let target = self.target;
        for &(_, hash, _) in batch.records.iter().take(REPLAY_LOOKAHEAD) {
            target.index.prefetch(&hash);
        }
        for (idx, (address, hash, payload)) in batch.iter().enumerate() {
            if let Some(&(_, ahead, _)) = batch.records.get(idx + REPLAY_LOOKAHEAD) {
                target.index.prefetch(&ahead);
            }
            let record = record::decode(payload, false).expect("verified by the scan");
            let usage = (address >= target.counted_until).then_some(&mut self.usage);
            replay(target.index, target.segments, hash, address, &record, usage)?;
        }
        Ok(())
    }

    /// Adds up the accounting.
    fn finish(self) -> Result<()> {
        self.usage.add_to(self.target.usage);
        Ok(())
    }
}

/// Applies one replayed record (its key hashing to `hash`) to the index being rebuilt, and
/// to the accounting if given.
fn replay(
    index: &BucketMap<u64, u64>,
    segments: &Segments,
    hash: u64,
    address: u64,
    record: &Record<'_>,
    usage: Option<&mut UsageDelta>,
) -> Result<()> {
    let size = entry_size(record::encoded_len(record.key.len(), record.value.len()));
    // Most puts are of a hash with no entry yet: one probe inserts them.
    if record.kind == RecordKind::Put {
        match index.insert_if_absent(hash, address)? {
            None => {
                if let Some(usage) = usage {
                    usage.appended(address, size, false);
                }
                return Ok(());
            }
            // A checkpoint's copy of the index may reflect records after its `replay_from`
            // (never at or after `covers_until`, where the accounting starts): this one is
            // applied already.
            Some(entry) if entry == address => return Ok(()),
            Some(_) => {}
        }
    }
    let mut existing = None;
    for candidate in index.values(&hash) {
        if candidate == address {
            return Ok(()); // applied already, as above
        }
        let payload = segments.read_payload(candidate)?;
        let other = record::decode(&payload, false).expect("verified by read_payload");
        if other.key == record.key {
            existing = Some((candidate, other.seq, entry_size(payload.len())));
            break;
        }
    }
    if let Some((_, seq, _)) = existing
        && seq > record.seq
    {
        // An older version: sequence numbers decide, not positions. (Compaction copies a
        // tombstone forward with its sequence number, so it may land after a newer put of
        // its key.) A delete record counts as a tombstone wherever it stands, as it did
        // when it was appended; an older put is garbage.
        if let Some(usage) = usage {
            match record.kind {
                RecordKind::Delete => usage.appended(address, size, true),
                RecordKind::Put => usage.appended_dead(address, size),
            }
        }
        return Ok(());
    }
    if let Some(usage) = usage {
        usage.appended(address, size, record.kind == RecordKind::Delete);
        if let Some((old, _, old_size)) = existing {
            usage.superseded(old, old_size);
        }
    }
    match (record.kind, existing) {
        (RecordKind::Put, Some((old, ..))) => {
            index.replace_if(&hash, |&address| address == old, address)?;
        }
        (RecordKind::Put, None) => insert_new(index, hash, address)?,
        (RecordKind::Delete, Some((old, ..))) => {
            index.remove_if(&hash, |&address| address == old)?;
        }
        (RecordKind::Delete, None) => {}
    }
    Ok(())
}

pub(crate) fn insert_new(index: &BucketMap<u64, u64>, hash: u64, address: u64) -> Result<()> {
    index.insert_duplicate(hash, address).map_err(|error| match error {
        talus_bucketmap::Error::TooManyDuplicates { .. } => Error::HashCollisionLimit { max: MAX_KEYS_PER_HASH },
        other => other.into(),
    })
}
