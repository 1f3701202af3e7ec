//! `Db::verify` (the check behind `talus check`), `Options::repair` on a cleanly closed
//! database, `Options::create_if_missing` and the recovery progress callback.

use std::sync::{Arc, Mutex};

use talus_engine::{Error, Options, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, pattern, test_seed};

use crate::support::{SEGMENT_SIZE, State, fast_tempdir, options, state_of};

const SEGMENT_HEADER_LEN: u64 = 4096;

fn file_and_offset(address: u64) -> (String, u64) {
    let first = address - address % SEGMENT_SIZE;
    (format!("log/{first:016x}.seg"), SEGMENT_HEADER_LEN + address - first)
}

fn key(idx: u64) -> Vec<u8> {
    format!("key {idx:05}").into_bytes()
}

fn value(idx: u64) -> Vec<u8> {
    pattern(900 + idx as usize % 300, idx)
}

/// Writes `n` keys (every tenth overwritten, every seventh deleted, a batch every 50) into
/// a small database spread over several segments; returns the address and entry size of
/// key `target`'s put, the log's end and the state.
fn small_database(dir: &std::path::Path, n: u64, target: u64) -> (u64, u64, u64, State) {
    let db = options(SyncMode::Never).open(dir).expect("open");
    let mut state = State::new();
    let mut target_at = (0, 0);
    for idx in 0..n {
        let before = db.stats().log_tail;
        db.put(key(idx), value(idx)).expect("put");
        let after = db.stats().log_tail;
        let size = 8 + (24 + key(idx).len() as u64 + value(idx).len() as u64).div_ceil(8) * 8;
        assert!(after - before >= size);
        if idx == target {
            target_at = (after - size, size);
        }
        state.insert(key(idx), value(idx));
        if idx % 10 == 9 {
            db.put(key(idx - 5), b"overwritten").expect("overwrite");
            state.insert(key(idx - 5), b"overwritten".to_vec());
        }
        if idx % 7 == 6 {
            db.delete(key(idx - 3)).expect("delete");
            state.remove(&key(idx - 3));
        }
        if idx % 50 == 49 {
            let mut batch = WriteBatch::new();
            batch.put(b"batch", idx.to_le_bytes()).delete(key(idx - 1)).put(key(idx - 1), b"re-put");
            db.write(batch).expect("batch");
            state.insert(b"batch".to_vec(), idx.to_le_bytes().to_vec());
            state.insert(key(idx - 1), b"re-put".to_vec());
        }
    }
    let log_end = db.stats().log_tail;
    assert!(log_end > 3 * SEGMENT_SIZE, "several segments");
    db.close().expect("close");
    (target_at.0, target_at.1, log_end, state)
}

#[test]
fn verify_passes_a_sound_database_and_counts_its_records() {
    let dir = fast_tempdir();
    let (_, _, log_end, state) = small_database(dir.path(), 1000, 0);
    let mut db = options(SyncMode::Never).open(dir.path()).expect("reopen");
    db.put(b"in memory only", b"not yet in a segment").expect("put");
    let mut calls = Vec::new();
    let report = db.verify_with_progress(|done, total| calls.push((done, total))).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.n_live_records, state.len() as u64 + 1, "{report:?}");
    assert_eq!(report.n_index_entries, report.n_live_records);
    assert_eq!(report.n_records, report.n_live_records + report.n_superseded_records, "{report:?}");
    assert!(report.n_delete_records > 100, "{report:?}");
    assert!(report.n_bytes_scanned > log_end, "the unsynced put was written first: {report:?}");
    assert!(calls.windows(2).all(|pair| pair[0].0 <= pair[1].0), "progress only grows: {calls:?}");
    let &(done, total) = calls.last().expect("progress is reported");
    assert_eq!((done, total), (report.n_bytes_scanned, report.n_bytes_scanned));
}

#[test]
fn verify_names_a_flipped_bit_and_keeps_going() {
    const TARGET: u64 = 400;
    let seed = test_seed("verify_names_a_flipped_bit_and_keeps_going");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let (address, size, _, state) = small_database(dir.path(), 1000, TARGET);
    let (path, offset) = file_and_offset(address);
    let flip_at = offset + 40 + rng.below(size - 48);
    let bit = rng.below(8);
    let file = dir.path().join(&path);
    let mut bytes = std::fs::read(&file).expect("read the segment");
    bytes[flip_at as usize] ^= 1 << bit;
    std::fs::write(&file, &bytes).expect("write the segment");
    let what = format!("seed {seed}: bit {bit} of byte {flip_at} of {path}");

    let mut db = options(SyncMode::Never).open(dir.path()).expect("a clean open does not read the log");
    let report = db.verify().expect("verify");
    assert!(!report.is_ok(), "{what}: the damage is found");
    let damage = &report.problems[0];
    assert_eq!((damage.file.as_str(), damage.offset, damage.address), (path.as_str(), offset, Some(address)), "{what}");
    assert!(damage.n_bytes >= size, "{what}: {damage}");
    // The damaged record was the only copy of the target's latest value: its key is also
    // reported as one the index points at with nothing valid behind it.
    assert!(report.n_problems <= 3, "{what}: {:?}", report.problems);
    // The walk went on after the damage: every other live record was seen.
    assert_eq!(report.n_live_records, state.len() as u64 - 1, "{what}: {report:?}");
    drop(db);

    // `repair` rebuilds even after a clean close: the log is cut at the damage.
    let db = options(SyncMode::Never).repair(true).open(dir.path()).expect("open with repair");
    let repair = db.stats().recovery.repair.expect("repair reports what it cut");
    assert_eq!((repair.file.as_str(), repair.offset, repair.cut_at_address), (path.as_str(), offset, address));
    assert!(repair.n_records_dropped > 600, "{what}: the intact records after the cut are counted: {repair:?}");
    let kept = state_of(&db);
    assert!(kept.len() < state.len() && kept.keys().all(|key| state.contains_key(key) || key == b"batch"));
    let mut db = db;
    let report = db.verify().expect("verify after repair");
    assert!(report.is_ok(), "{what}: {:?}", report.problems);
}

#[test]
fn verify_reports_a_missing_segment() {
    let dir = fast_tempdir();
    let (_, _, _, _) = small_database(dir.path(), 1000, 0);
    let second = dir.path().join(format!("log/{SEGMENT_SIZE:016x}.seg"));
    std::fs::remove_file(&second).expect("remove the second segment");
    let mut db = options(SyncMode::Never).open(dir.path()).expect("a clean open lists segments only");
    let report = db.verify().expect("verify");
    let missing = &report.problems[0];
    assert_eq!(missing.address, Some(SEGMENT_SIZE), "{:?}", report.problems);
    assert_eq!(missing.n_bytes, SEGMENT_SIZE);
    assert!(missing.reason.contains("missing"), "{missing}");
}

#[test]
fn create_if_missing_off_creates_nothing() {
    let dir = fast_tempdir();
    let missing = dir.path().join("not here");
    let result = Options::new().create_if_missing(false).open(&missing);
    assert!(matches!(result, Err(Error::NotFound { ref path }) if *path == missing), "{result:?}");
    assert!(!missing.exists(), "no directory was made");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let result = Options::new().create_if_missing(false).open(&empty);
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    assert_eq!(std::fs::read_dir(&empty).expect("list").count(), 0, "nothing was written into it");
    Options::new().open(&empty).expect("create").close().expect("close");
    let db = Options::new().create_if_missing(false).open(&empty).expect("an existing database opens");
    db.close().expect("close");
}

#[test]
fn recovery_reports_its_progress() {
    let dir = fast_tempdir();
    let db = options(SyncMode::Never).open(dir.path()).expect("open");
    for idx in 0..3000u64 {
        db.put(key(idx), value(idx)).expect("put");
    }
    db.sync().expect("sync");
    let log_end = db.stats().log_tail;
    db.simulate_crash();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&calls);
    let db = options(SyncMode::Never)
        .on_recovery_progress(move |done, total| sink.lock().expect("lock").push((done, total)))
        .open(dir.path())
        .expect("reopen");
    assert!(!db.stats().recovery.clean);
    let calls = calls.lock().expect("lock").clone();
    assert!(calls.len() >= 2, "{calls:?}");
    assert!(calls.windows(2).all(|pair| pair[0].0 <= pair[1].0), "{calls:?}");
    assert!(calls.iter().all(|&(done, total)| done <= total), "{calls:?}");
    assert_eq!(calls.last().expect("calls").0, log_end, "{calls:?}");
}

/// Writes `n` keys with distinct values and closes cleanly; returns the last record's
/// address and the log's end.
fn closed_database(dir: &std::path::Path, n: u64) -> (u64, u64) {
    let db = options(SyncMode::Never).open(dir).expect("open");
    let mut last = 0;
    for idx in 0..n {
        db.put(key(idx), value(idx)).expect("put");
        let size = 8 + (24 + key(idx).len() as u64 + value(idx).len() as u64).div_ceil(8) * 8;
        last = db.stats().log_tail - size;
    }
    let log_end = db.stats().log_tail;
    db.close().expect("close");
    (last, log_end)
}

#[test]
fn damage_at_the_end_of_a_cleanly_closed_log_is_not_a_torn_tail() {
    let dir = fast_tempdir();
    let (last, log_end) = closed_database(dir.path(), 500);
    let (path, offset) = file_and_offset(last);
    let file = dir.path().join(&path);
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[offset as usize + 100] ^= 0x10;
    std::fs::write(&file, &bytes).expect("write");

    let mut db = options(SyncMode::Never).open(dir.path()).expect("a clean open uses the index");
    let report = db.verify().expect("verify");
    assert_eq!(report.problems[0].offset, offset, "{:?}", report.problems);
    drop(db);
    // Without its index, the open must rebuild: the damaged last record was acknowledged
    // by the clean close, so it is not cut silently as a torn tail.
    std::fs::remove_dir_all(dir.path().join("index")).expect("remove the index");
    // (The drop above closed cleanly again, so the MANIFEST still vouches for the log.)
    let result = options(SyncMode::Never).open(dir.path());
    assert!(
        matches!(&result, Err(Error::Corruption { file, offset: at, .. }) if *file == path && *at == offset),
        "{result:?}"
    );
    let db = options(SyncMode::Never).repair(true).open(dir.path()).expect("repair");
    let repair = db.stats().recovery.repair.expect("repair reports the loss");
    assert_eq!((repair.cut_at_address, repair.n_bytes_dropped, repair.n_records_dropped), (last, log_end - last, 0));
    assert_eq!(db.stats().n_keys, 499);
}

#[test]
fn a_log_cut_short_after_a_clean_close_is_reported() {
    let dir = fast_tempdir();
    let (_, log_end) = closed_database(dir.path(), 500);
    let (path, _) = file_and_offset(log_end - 1);
    let file = dir.path().join(&path);
    let len = std::fs::metadata(&file).expect("stat").len();
    std::fs::OpenOptions::new().write(true).open(&file).expect("open").set_len(len - 2000).expect("truncate");
    std::fs::remove_dir_all(dir.path().join("index")).expect("remove the index");
    let result = options(SyncMode::Never).open(dir.path());
    assert!(matches!(&result, Err(Error::Corruption { file, .. }) if *file == path), "{result:?}");
    let db = options(SyncMode::Never).repair(true).open(dir.path()).expect("repair");
    let repair = db.stats().recovery.repair.expect("repair reports the loss");
    assert_eq!(repair.n_bytes_dropped, log_end - repair.cut_at_address, "{repair:?}");
    assert!(repair.n_bytes_dropped >= 2000, "{repair:?}");
    assert!(db.stats().n_keys < 500);
}
