//! Acceptance criteria 6 and 7: torn tails and damage in the middle of the log.
//!
//! A torn tail (the log cut at any byte, as a crash mid-write leaves it) opens silently to
//! exactly the writes that ended before the cut; a cut inside a batch drops the whole batch.
//! A flipped bit in the middle of the log is [`Error::Corruption`] on read and on open,
//! naming the file and offset, until `repair` cuts the log there. A damaged MANIFEST or
//! segment header is a typed error, never a panic.
//!
//! Most tests keep the log in a `MemStorage` (hundreds of opens must stay fast) and build the
//! database once, then restore a copy of its files for every cut or flip; one of each kind
//! runs on real files.

use std::path::Path;

use talus_engine::storage::{CrashMode, MemStorage, Storage as _};
use talus_engine::{Db, Error, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, pattern, test_seed};

use crate::support::{SEGMENT_SIZE, State, fast_tempdir, open_mem, options, state_of};

/// Bytes in front of a segment's data (docs/format.md, "Segment file").
const SEGMENT_HEADER_LEN: u64 = 4096;
/// The checked part of a segment header (magic to crc32c).
const SEGMENT_HEADER_USED: usize = 44;
const ENTRY_HEADER_LEN: u64 = 8;
const RECORD_HEADER_LEN: u64 = 24;

/// Bytes a record takes in the log (entry header, record header, key, value, padding).
fn entry_size(key_len: usize, value_len: usize) -> u64 {
    ENTRY_HEADER_LEN + (RECORD_HEADER_LEN + key_len as u64 + value_len as u64).next_multiple_of(8)
}

fn segment_path(first_address: u64) -> String {
    format!("log/{first_address:016x}.seg")
}

/// The segment file holding `address` and the offset of `address` in it.
fn file_and_offset(address: u64) -> (String, u64) {
    let first = address - address % SEGMENT_SIZE;
    (segment_path(first), SEGMENT_HEADER_LEN + address - first)
}

/// The files of a `MemStorage` (the lock aside), to restore into a fresh one per trial.
struct Snapshot(Vec<(String, Vec<u8>)>);

impl Snapshot {
    fn take(storage: &MemStorage) -> Snapshot {
        let files = storage
            .file_paths()
            .into_iter()
            .filter(|path| path != "LOCK")
            .map(|path| {
                let bytes = storage.file_contents(&path).expect("listed");
                (path, bytes)
            })
            .collect();
        Snapshot(files)
    }

    fn restore(&self) -> MemStorage {
        let storage = MemStorage::new();
        for (path, bytes) in &self.0 {
            storage.set_file_contents(path, bytes);
        }
        storage
    }

    fn file(&self, path: &str) -> &[u8] {
        self.0.iter().find(|(name, _)| name == path).map(|(_, bytes)| &bytes[..]).expect("the file exists")
    }

    fn segment_paths(&self) -> Vec<String> {
        self.0.iter().map(|(path, _)| path.clone()).filter(|path| path.starts_with("log/")).collect()
    }
}

/// The writes of a test (one record each) and the state after each: `ends[i]` is where
/// write `i` ends in the log, `states[i + 1]` the state after it (`states[0]` is the empty
/// database).
struct History {
    ends: Vec<u64>,
    /// Where each record's bytes end, before the padding to 8 bytes: a cut in the padding
    /// leaves the record whole.
    data_ends: Vec<u64>,
    states: Vec<State>,
}

impl History {
    fn new() -> History {
        History { ends: Vec::new(), data_ends: Vec::new(), states: vec![State::new()] }
    }

    fn record(&mut self, db: &Db, state: &State, key_len: usize, value_len: usize) {
        let end = db.stats().log_tail;
        let data_len = ENTRY_HEADER_LEN + RECORD_HEADER_LEN + (key_len + value_len) as u64;
        self.ends.push(end);
        self.data_ends.push(end - entry_size(key_len, value_len) + data_len);
        self.states.push(state.clone());
    }

    /// How many writes have all their bytes before `address`.
    fn n_writes_before(&self, address: u64) -> usize {
        self.data_ends.iter().take_while(|&&end| end <= address).count()
    }

    /// Where the log ends after the first `n_writes` writes.
    fn end_after(&self, n_writes: usize) -> u64 {
        if n_writes == 0 { 0 } else { self.ends[n_writes - 1] }
    }
}

fn put(db: &Db, state: &mut State, history: &mut History, key: &[u8], value: Vec<u8>) {
    db.put(key, &value).expect("put");
    state.insert(key.to_vec(), value);
    history.record(db, state, key.len(), state[key].len());
}

/// Builds a log of several segments (large values) ending in at least `n_small` small
/// records that all lie in the last segment; every write synced (`SyncMode::Always`).
fn build_log_with_small_tail(rng: &mut SplitMix64, storage: &MemStorage, index_dir: &Path, n_small: usize) -> History {
    let db = open_mem(options(SyncMode::Always), storage, index_dir).expect("open");
    let mut state = State::new();
    let mut history = History::new();
    let mut tag = 0u64;
    let keys: Vec<Vec<u8>> = (0..8u8).map(|idx| vec![b'k', idx]).collect();
    while db.stats().log_tail < 2 * SEGMENT_SIZE + SEGMENT_SIZE / 3 {
        tag += 1;
        let key = &keys[rng.below(keys.len() as u64) as usize];
        put(&db, &mut state, &mut history, key, pattern(rng.between(1 << 10, 40 << 10), tag));
    }
    // Small writes (puts, and deletes of live keys: each one record) until the last
    // `n_small` of them, and the write before them, end in the last segment.
    for n_small_written in 0.. {
        let n = history.ends.len();
        let (window_start, end) = (history.ends[n - n_small - 1], history.ends[n - 1]);
        let in_last_segment =
            window_start / SEGMENT_SIZE == end / SEGMENT_SIZE && !window_start.is_multiple_of(SEGMENT_SIZE);
        if n_small_written >= n_small && in_last_segment {
            break;
        }
        tag += 1;
        let key = &keys[rng.below(keys.len() as u64) as usize];
        if rng.below(4) == 0 && state.contains_key(key) {
            db.delete(key).expect("delete");
            state.remove(key);
            history.record(&db, &state, key.len(), 0);
        } else {
            put(&db, &mut state, &mut history, key, pattern(rng.between(0, 100), tag));
        }
    }
    db.simulate_crash();
    history
}

/// Opens a copy of `snapshot` with its last segment file cut to `len` bytes.
fn open_cut(snapshot: &Snapshot, path: &str, len: u64, index_dir: &Path) -> (MemStorage, talus_engine::Result<Db>) {
    let storage = snapshot.restore();
    storage.set_file_contents(path, &snapshot.file(path)[..len as usize]);
    let db = open_mem(options(SyncMode::Never), &storage, index_dir);
    (storage, db)
}

#[test]
fn torn_tail_at_every_byte_of_the_last_records_opens_to_a_prefix() {
    const N_CUT_RECORDS: usize = 3;
    let seed = test_seed("torn_tail_at_every_byte_of_the_last_records_opens_to_a_prefix");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = MemStorage::new();
    let history = build_log_with_small_tail(&mut rng, &storage, &index_dir, N_CUT_RECORDS);
    let snapshot = Snapshot::take(&storage.crash(CrashMode::DropUnsynced));
    let n_writes = history.ends.len();
    let log_end = history.ends[n_writes - 1];
    let last_first = log_end - log_end % SEGMENT_SIZE;
    let last_path = segment_path(last_first);
    assert_eq!(snapshot.segment_paths().last(), Some(&last_path));
    // The durable writes preallocated the segment: zeros follow the log's end. They are
    // no torn tail: the log opens whole, with nothing cut.
    let data_end = (SEGMENT_HEADER_LEN + log_end - last_first) as usize;
    let file = snapshot.file(&last_path);
    assert!(file.len() > data_end + 4096, "seed {seed}: the segment is preallocated past its data");
    assert!(file[data_end..].iter().all(|&byte| byte == 0), "seed {seed}: preallocation is zeros");
    {
        let db = open_mem(options(SyncMode::Never), &snapshot.restore(), &index_dir).expect("open with the zeros");
        let stats = db.stats();
        assert_eq!((stats.log_tail, stats.recovery.n_torn_bytes), (log_end, 0), "seed {seed}: zeros are not torn");
        assert!(state_of(&db) == history.states[n_writes], "seed {seed}: every write is there");
        db.simulate_crash();
    }

    let cut_from = history.ends[n_writes - N_CUT_RECORDS - 1];
    let mut n_opens = 0;
    for cut in cut_from..=log_end {
        let (storage, db) = open_cut(&snapshot, &last_path, SEGMENT_HEADER_LEN + cut - last_first, &index_dir);
        let db = db.unwrap_or_else(|error| panic!("seed {seed}: the log cut at address {cut} does not open: {error}"));
        n_opens += 1;
        let n_kept = history.n_writes_before(cut);
        let kept_end = history.end_after(n_kept);
        let stats = db.stats();
        assert!(!stats.recovery.clean);
        assert_eq!(stats.log_tail, kept_end, "seed {seed}: cut at {cut}: the log ends after the last whole record");
        assert_eq!(stats.recovery.n_torn_bytes, cut.saturating_sub(kept_end), "seed {seed}: cut at {cut}");
        assert_eq!(stats.recovery.repair, None, "a torn tail needs no repair");
        assert!(state_of(&db) == history.states[n_kept], "seed {seed}: cut at {cut}: not the first {n_kept} writes");
        // Now and then, go on writing after the cut, crash, and find both.
        if cut % 41 == 0 || cut == log_end {
            db.put(b"after the cut", cut.to_le_bytes()).expect("put after the cut");
            db.sync().expect("sync");
            db.simulate_crash();
            let db = open_mem(options(SyncMode::Never), &storage.crash(CrashMode::DropUnsynced), &index_dir)
                .unwrap_or_else(|error| panic!("seed {seed}: cut at {cut}, written on, crashed: {error}"));
            let mut expected = history.states[n_kept].clone();
            expected.insert(b"after the cut".to_vec(), cut.to_le_bytes().to_vec());
            assert!(state_of(&db) == expected, "seed {seed}: cut at {cut}: the write after the cut");
        } else {
            db.simulate_crash();
        }
    }
    assert!(n_opens > 3 * RECORD_HEADER_LEN as usize);
}

#[test]
fn torn_tail_on_real_files() {
    let seed = test_seed("torn_tail_on_real_files");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let db = options(SyncMode::Always).open(dir.path()).expect("open");
    let mut state = State::new();
    let mut history = History::new();
    for idx in 0..40u64 {
        let key = format!("key {}", rng.below(10)).into_bytes();
        let max_len = if idx < 37 { 12 << 10 } else { 100 };
        put(&db, &mut state, &mut history, &key, pattern(rng.between(0, max_len), idx));
    }
    db.simulate_crash();
    let log_end = *history.ends.last().expect("writes");
    let last_first = log_end - log_end % SEGMENT_SIZE;
    let last_path = dir.path().join(segment_path(last_first));
    let original = std::fs::read(&last_path).expect("read the last segment");
    // Every 8th byte across the last two records, and the bytes around each record end.
    let cut_from = history.ends[history.ends.len() - 3].max(last_first);
    let mut cuts: Vec<u64> = (cut_from..=log_end).step_by(8).collect();
    for &end in &history.ends[history.ends.len() - 3..] {
        cuts.extend([end - 1, end, end + 1].into_iter().filter(|cut| (cut_from..=log_end).contains(cut)));
    }
    for cut in cuts {
        std::fs::write(&last_path, &original[..(SEGMENT_HEADER_LEN + cut - last_first) as usize]).expect("cut");
        let db = options(SyncMode::Never)
            .open(dir.path())
            .unwrap_or_else(|error| panic!("seed {seed}: the log cut at address {cut} does not open: {error}"));
        let n_kept = history.n_writes_before(cut);
        assert_eq!(db.stats().log_tail, history.end_after(n_kept), "seed {seed}: cut at {cut}");
        assert!(state_of(&db) == history.states[n_kept], "seed {seed}: cut at {cut}: not the first {n_kept} writes");
        db.simulate_crash();
    }
}

#[test]
fn torn_batch_opens_with_none_of_it() {
    let seed = test_seed("torn_batch_opens_with_none_of_it");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("open");
    let mut state = State::new();
    for idx in 0..20u64 {
        let key = format!("key {idx}").into_bytes();
        let value = pattern(rng.between(0, 200), idx);
        db.put(&key, &value).expect("put");
        state.insert(key, value);
    }
    let before = state.clone();
    let batch_start = db.stats().log_tail;
    let mut batch = WriteBatch::new();
    let mut batch_size = 0;
    for (key, value) in [(&b"key 3"[..], &b"overwritten"[..]), (b"new key", b"new"), (b"key 7", b"")] {
        batch.put(key, value);
        batch_size += entry_size(key.len(), value.len());
        state.insert(key.to_vec(), value.to_vec());
    }
    batch.delete(b"key 11");
    batch_size += entry_size(b"key 11".len(), 0);
    // The batch is whole once its last record's bytes are, padding or not.
    let last_padding = entry_size(b"key 11".len(), 0) - (ENTRY_HEADER_LEN + RECORD_HEADER_LEN + 6);
    state.remove(&b"key 11"[..]);
    db.write(batch).expect("write the batch");
    let batch_end = db.stats().log_tail;
    assert_eq!(batch_end - batch_start, batch_size, "the batch is contiguous, with no filler");
    db.simulate_crash();
    let snapshot = Snapshot::take(&storage.crash(CrashMode::DropUnsynced));
    let (path, _) = file_and_offset(batch_start);
    assert_eq!(file_and_offset(batch_end - 1).0, path, "the batch lies in one segment");
    let first = batch_start - batch_start % SEGMENT_SIZE;

    for cut in batch_start..=batch_end {
        let (_storage, db) = open_cut(&snapshot, &path, SEGMENT_HEADER_LEN + cut - first, &index_dir);
        let db = db.unwrap_or_else(|error| panic!("seed {seed}: cut at {cut} inside the batch: {error}"));
        let whole = cut >= batch_end - last_padding;
        let expected = if whole { &state } else { &before };
        let stats = db.stats();
        assert_eq!(stats.log_tail, if whole { batch_end } else { batch_start }, "cut at {cut}");
        // A cut in a record's padding leaves the record whole, but its batch is still torn;
        // the count of torn bytes then includes the missing padding.
        let n_torn = if whole { 0..=0 } else { cut - batch_start..=cut.next_multiple_of(8) - batch_start };
        assert!(n_torn.contains(&stats.recovery.n_torn_bytes), "cut at {cut}: {:?}", stats.recovery);
        assert!(&state_of(&db) == expected, "seed {seed}: cut at {cut}: the batch must be all or nothing");
        db.simulate_crash();
    }
}

#[test]
fn batch_torn_across_a_segment_boundary_opens_with_none_of_it() {
    let seed = test_seed("batch_torn_across_a_segment_boundary_opens_with_none_of_it");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("open");
    let mut state = State::new();
    // Fill the first segment to within a few hundred bytes of its end.
    let mut idx = 0u64;
    while db.stats().log_tail < SEGMENT_SIZE - 600 {
        idx += 1;
        let key = format!("key {}", idx % 50).into_bytes();
        let room = (SEGMENT_SIZE - 600 - db.stats().log_tail) as usize;
        let value = pattern(rng.between(0, 8 << 10).min(room), idx);
        db.put(&key, &value).expect("put");
        state.insert(key, value);
    }
    let before = state.clone();
    let batch_start = db.stats().log_tail;
    let mut batch = WriteBatch::new();
    for member in 0..4u64 {
        let (key, value) = (format!("batch {member}").into_bytes(), pattern(300, 1000 + member));
        batch.put(&key, &value);
        state.insert(key, value);
    }
    db.write(batch).expect("write the batch");
    let batch_end = db.stats().log_tail;
    assert!(batch_end > SEGMENT_SIZE && batch_start < SEGMENT_SIZE, "the batch straddles two segments");
    db.simulate_crash();
    let snapshot = Snapshot::take(&storage.crash(CrashMode::DropUnsynced));
    let second = segment_path(SEGMENT_SIZE);

    // The second segment missing, cut to its header, or cut anywhere in the batch's rest.
    let check = |storage: MemStorage, what: &str, complete: bool| {
        let db = open_mem(options(SyncMode::Never), &storage, &index_dir)
            .unwrap_or_else(|error| panic!("seed {seed}: {what}: {error}"));
        let expected = if complete { &state } else { &before };
        assert!(&state_of(&db) == expected, "seed {seed}: {what}: the batch must be all or nothing");
        assert_eq!(db.stats().log_tail, if complete { batch_end } else { batch_start }, "{what}");
        db.simulate_crash();
    };
    let storage = snapshot.restore();
    storage.remove(&second).expect("remove the second segment");
    check(storage, "the second segment missing", false);
    let data_len = batch_end - SEGMENT_SIZE;
    let lens = [0, 20, SEGMENT_HEADER_LEN - 1]
        .into_iter()
        .chain((0..=data_len).filter(|cut| cut % 8 == 0 || cut % 61 == 0).map(|cut| SEGMENT_HEADER_LEN + cut));
    for len in lens {
        let storage = snapshot.restore();
        storage.set_file_contents(&second, &snapshot.file(&second)[..len as usize]);
        let complete = len == SEGMENT_HEADER_LEN + data_len;
        check(storage, &format!("the second segment cut to {len} bytes"), complete);
    }
}

/// Where in the damaged record a bit flips: a name and the byte's offset from the entry's
/// start (`None`: the middle of the value).
const FLIP_SPOTS: [(&str, Option<u64>); 8] = [
    ("entry header state", Some(0)),
    ("entry header size", Some(2)),
    ("entry header length", Some(6)),
    ("record checksum", Some(ENTRY_HEADER_LEN + 1)),
    ("record kind", Some(ENTRY_HEADER_LEN + 4)),
    ("record key length", Some(ENTRY_HEADER_LEN + 6)),
    ("key", Some(ENTRY_HEADER_LEN + RECORD_HEADER_LEN + 5)),
    ("value", None),
];

/// Flips one bit of `path` in `storage`.
fn flip_bit(storage: &MemStorage, path: &str, offset: u64, bit: u64) {
    let mut bytes = storage.file_contents(path).expect("the file exists");
    bytes[offset as usize] ^= 1 << bit;
    storage.set_file_contents(path, &bytes);
}

fn assert_corruption_at<T: std::fmt::Debug>(
    result: talus_engine::Result<T>,
    path: &str,
    offsets: std::ops::Range<u64>,
    what: &str,
) {
    match result {
        Err(Error::Corruption { file, offset, reason }) => {
            assert!(file.ends_with(path), "{what}: corruption reported in {file}, not {path} ({reason})");
            assert!(
                offsets.contains(&offset),
                "{what}: corruption reported at {offset}, not in {offsets:?} ({reason})"
            );
        }
        other => panic!("{what}: expected corruption in {path} at {offsets:?}, got {other:?}"),
    }
}

#[test]
fn flipped_bit_in_the_middle_is_corruption_until_repaired() {
    const N_RECORDS: u64 = 2000;
    const TARGET: u64 = 700;
    let seed = test_seed("flipped_bit_in_the_middle_is_corruption_until_repaired");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let key = |idx: u64| format!("key {idx:05}").into_bytes();
    for (spot, offset_in_entry) in FLIP_SPOTS {
        let storage = MemStorage::new();
        let db = open_mem(options(SyncMode::Never), &storage, &index_dir).expect("open");
        let value_lens: Vec<usize> = (0..N_RECORDS).map(|_| rng.between(600, 1400)).collect();
        let value = |idx: u64| pattern(value_lens[idx as usize], idx);
        let mut target_end = 0;
        for idx in 0..N_RECORDS {
            db.put(key(idx), value(idx)).expect("put");
            if idx == TARGET {
                target_end = db.stats().log_tail;
            }
        }
        db.sync().expect("sync");
        let stats = db.stats();
        let size = entry_size(key(TARGET).len(), value_lens[TARGET as usize]);
        let address = target_end - size;
        assert!(target_end <= stats.log_head, "the damaged record is no longer in memory");
        assert!(stats.log_tail - target_end > SEGMENT_SIZE, "valid records follow it, in later segments too");
        let (path, offset) = file_and_offset(address);
        let offset_in_entry = offset_in_entry.unwrap_or(size - 1 - value_lens[TARGET as usize] as u64 / 2);
        let bit = rng.below(8);
        let what = format!("seed {seed}: bit {bit} of the {spot} (byte {offset_in_entry} of the record at {address})");
        flip_bit(&storage, &path, offset + offset_in_entry, bit);

        // A read of the damaged record fails; its neighbours read fine.
        assert_corruption_at(db.get(key(TARGET)), &path, offset..offset + 1, &what);
        for idx in [0, TARGET - 1, TARGET + 1, N_RECORDS - 1] {
            assert_eq!(db.get(key(idx)).expect("get a neighbour"), Some(value(idx)), "{what}: key {idx}");
        }

        // After a crash, the open names the damage (valid records follow it: not a torn tail).
        db.simulate_crash();
        assert_corruption_at(
            open_mem(options(SyncMode::Never), &storage, &index_dir),
            &path,
            offset..offset + size,
            &what,
        );

        // Repair cuts the log at the damaged record: everything before it is there.
        let db = open_mem(options(SyncMode::Never).repair(true), &storage, &index_dir).expect("open with repair");
        let report = db.stats().recovery.repair.unwrap_or_else(|| panic!("{what}: repair reports nothing"));
        assert_eq!(report.cut_at_address, address, "{what}: {report:?}");
        assert!(report.file.ends_with(&path), "{what}: {report:?}");
        assert_eq!(report.offset, offset, "{what}: {report:?}");
        assert_eq!(report.n_bytes_dropped, stats.log_tail - address, "{what}: {report:?}");
        assert_eq!(db.stats().log_tail, address);
        assert_eq!(db.stats().n_keys, TARGET, "{what}");
        for idx in 0..N_RECORDS {
            let expected = (idx < TARGET).then(|| value(idx));
            assert_eq!(db.get(key(idx)).expect("get after repair"), expected, "{what}: key {idx}");
        }
        db.put(b"after repair", b"written").expect("put after repair");
        db.close().expect("close after repair");
        let db = open_mem(options(SyncMode::Never), &storage, &index_dir).expect("reopen after repair");
        let recovery = db.stats().recovery;
        assert!(recovery.clean && recovery.repair.is_none(), "{what}: {recovery:?}");
        assert_eq!(db.get(b"after repair").expect("get").as_deref(), Some(&b"written"[..]));
        assert_eq!(db.get(key(TARGET - 1)).expect("get"), Some(value(TARGET - 1)));
        assert_eq!(db.stats().n_keys, TARGET + 1);
    }
}

#[test]
fn flipped_bit_on_real_files_after_a_clean_close() {
    const N_RECORDS: u64 = 600;
    const TARGET: u64 = 300;
    let seed = test_seed("flipped_bit_on_real_files_after_a_clean_close");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let key = |idx: u64| format!("key {idx:05}").into_bytes();
    let value = |idx: u64| pattern(1000 + idx as usize % 200, idx);
    let db = options(SyncMode::Never).open(dir.path()).expect("open");
    let mut target_end = 0;
    for idx in 0..N_RECORDS {
        db.put(key(idx), value(idx)).expect("put");
        if idx == TARGET {
            target_end = db.stats().log_tail;
        }
    }
    let log_end = db.stats().log_tail;
    db.close().expect("close");
    let size = entry_size(key(TARGET).len(), value(TARGET).len());
    let address = target_end - size;
    let (path, offset) = file_and_offset(address);
    let bit = rng.below(8);
    let flip_at = offset + size - 100 + rng.below(64);
    let file = dir.path().join(&path);
    let mut bytes = std::fs::read(&file).expect("read the segment");
    bytes[flip_at as usize] ^= 1 << bit;
    std::fs::write(&file, &bytes).expect("write the segment");
    let what = format!("seed {seed}: bit {bit} of byte {flip_at} of {path}");

    let db = options(SyncMode::Never).open(dir.path()).expect("a clean open does not read the log");
    assert!(db.stats().recovery.clean);
    assert_corruption_at(db.get(key(TARGET)), &path, offset..offset + 1, &what);
    assert_eq!(db.get(key(TARGET + 1)).expect("get a neighbour"), Some(value(TARGET + 1)));
    db.simulate_crash();
    assert_corruption_at(options(SyncMode::Never).open(dir.path()), &path, offset..offset + size, &what);
    let db = options(SyncMode::Never).repair(true).open(dir.path()).expect("open with repair");
    let report = db.stats().recovery.repair.expect("repair reports what it cut");
    assert_eq!((report.cut_at_address, report.offset), (address, offset), "{what}: {report:?}");
    assert_eq!(report.n_bytes_dropped, log_end - address, "{what}: {report:?}");
    let expected: State = (0..TARGET).map(|idx| (key(idx), value(idx))).collect();
    assert!(state_of(&db) == expected, "{what}: after repair, exactly the writes before the damage");
}

/// A database of three segments (every write synced), crashed: its files.
fn three_segments(index_dir: &Path) -> Snapshot {
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, index_dir).expect("open");
    let mut idx = 0u64;
    while db.stats().log_tail < 2 * SEGMENT_SIZE + SEGMENT_SIZE / 2 {
        idx += 1;
        db.put(idx.to_le_bytes(), pattern(8 << 10, idx)).expect("put");
    }
    db.simulate_crash();
    Snapshot::take(&storage)
}

#[test]
fn damaged_manifest_is_a_typed_error() {
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("open");
    db.put(b"k", b"v").expect("put");
    db.close().expect("close");
    let clean = Snapshot::take(&storage);
    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("reopen");
    db.put(b"k2", b"v2").expect("put");
    db.simulate_crash();
    let unclean = Snapshot::take(&storage);

    let open_with_manifest = |snapshot: &Snapshot, manifest: &[u8]| {
        let storage = snapshot.restore();
        storage.set_file_contents("MANIFEST", manifest);
        open_mem(options(SyncMode::Always), &storage, &index_dir)
    };
    let assert_typed = |result: talus_engine::Result<Db>, what: &str| match result {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, "MANIFEST", "{what}"),
        Err(Error::NotADatabase { .. }) => {}
        other => panic!("{what}: expected a MANIFEST error, got {other:?}"),
    };
    for (name, snapshot) in [("clean", &clean), ("unclean", &unclean)] {
        let manifest = snapshot.file("MANIFEST").to_vec();
        let manifest_len = manifest.len();
        // 96 bytes, and 32 more per segment accounted for after a clean close.
        assert_eq!(manifest_len, if name == "clean" { 96 + 32 } else { 96 }, "{name}");
        for bit in 0..manifest_len * 8 {
            let mut flipped = manifest.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_typed(open_with_manifest(snapshot, &flipped), &format!("{name} MANIFEST, bit {bit} flipped"));
        }
        for len in [0, 1, 8, 47, 88, manifest_len - 1] {
            assert_typed(open_with_manifest(snapshot, &manifest[..len]), &format!("{name} MANIFEST cut to {len}"));
        }
        let mut longer = manifest.clone();
        longer.push(0);
        assert_typed(open_with_manifest(snapshot, &longer), &format!("{name} MANIFEST with a byte more"));
        assert_typed(open_with_manifest(snapshot, &vec![0xa5; manifest_len]), &format!("{name} MANIFEST of garbage"));
    }
    let storage = unclean.restore();
    storage.remove("MANIFEST").expect("remove the MANIFEST");
    let result = open_mem(options(SyncMode::Always), &storage, &index_dir);
    assert!(matches!(result, Err(Error::NotADatabase { .. })), "segments without a MANIFEST: {result:?}");
}

#[test]
fn damaged_segment_header_is_a_typed_error() {
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let snapshot = three_segments(&index_dir);
    let paths = snapshot.segment_paths();
    assert_eq!(paths.len(), 3);
    for path in [&paths[0], &paths[1], &paths[2]] {
        for bit in 0..SEGMENT_HEADER_USED as u64 * 8 {
            let storage = snapshot.restore();
            flip_bit(&storage, path, bit / 8, bit % 8);
            let result = open_mem(options(SyncMode::Always), &storage, &index_dir);
            assert_corruption_at(result, path, 0..1, &format!("{path}: header bit {bit} flipped"));
        }
    }
    // A middle segment shorter than its header, or missing.
    let storage = snapshot.restore();
    storage.set_file_contents(&paths[1], &snapshot.file(&paths[1])[..20]);
    let result = open_mem(options(SyncMode::Always), &storage, &index_dir);
    assert_corruption_at(result, &paths[1], 0..1, "a middle segment cut inside its header");
    let storage = snapshot.restore();
    storage.remove(&paths[1]).expect("remove a segment");
    let result = open_mem(options(SyncMode::Always), &storage, &index_dir);
    assert!(matches!(result, Err(Error::Corruption { .. })), "a middle segment missing: {result:?}");
}

/// A crash while a segment was being created can leave it without a whole header: after
/// a crash such a last segment is removed (it held no record), after a clean close it is
/// damage.
#[test]
fn a_last_segment_without_a_whole_header_is_removed_after_a_crash_only() {
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let crashed = three_segments(&index_dir);
    let expected = state_of(&open_mem(options(SyncMode::Always), &crashed.restore(), &index_dir).expect("reopen"));
    let storage = crashed.restore();
    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("reopen");
    db.close().expect("close");
    let clean = Snapshot::take(&storage);
    let half_created = segment_path(3 * SEGMENT_SIZE);
    for len in [0, 20, SEGMENT_HEADER_USED - 1] {
        let storage = crashed.restore();
        storage.set_file_contents(&half_created, &vec![0u8; len]);
        let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("a crash's half-created segment");
        assert!(!storage.file_paths().contains(&half_created), "{len} bytes: removed");
        assert_eq!(state_of(&db), expected, "{len} bytes: every record still there");
        drop(db);

        let storage = clean.restore();
        storage.set_file_contents(&half_created, &vec![0u8; len]);
        let result = open_mem(options(SyncMode::Always), &storage, &index_dir);
        assert_corruption_at(result, &half_created, 0..1, &format!("{len} bytes after a clean close"));
    }
}

/// An open that rebuilds nothing opens only the last segment: a damaged header in an
/// earlier one is a typed error when a read first needs that segment, and `verify`
/// reports it, never a panic or a wrong value.
#[test]
fn damaged_header_of_a_segment_not_read_at_open_is_a_typed_error_at_its_first_read() {
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = three_segments(&index_dir).restore();
    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("open and rebuild");
    let n_keys = db.stats().n_keys;
    db.close().expect("close");
    let snapshot = Snapshot::take(&storage);
    let paths = snapshot.segment_paths();
    assert_eq!(paths.len(), 3);
    for bit in (0..SEGMENT_HEADER_USED as u64 * 8).step_by(7) {
        let storage = snapshot.restore();
        flip_bit(&storage, &paths[0], bit / 8, bit % 8);
        let mut db =
            open_mem(options(SyncMode::Always), &storage, &index_dir).expect("a clean open reads no old segment");
        for _ in 0..2 {
            let result = db.get(1u64.to_le_bytes());
            assert_corruption_at(result, &paths[0], 0..1, &format!("bit {bit} flipped: the first key"));
        }
        let last = db.get(n_keys.to_le_bytes()).expect("the last segment reads");
        assert_eq!(last, Some(pattern(8 << 10, n_keys)), "bit {bit} flipped: the last key");
        let report = db.verify().expect("verify");
        assert!(!report.is_ok(), "bit {bit} flipped: verify finds nothing");
        assert!(
            report.problems.iter().any(|problem| format!("{problem:?}").contains(&paths[0])),
            "bit {bit} flipped: verify does not name {}: {:?}",
            paths[0],
            report.problems
        );
    }
}
