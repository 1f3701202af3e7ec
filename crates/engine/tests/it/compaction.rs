//! Compaction (issue 8): overwrite churn keeps the log on disk within 1.5 times the live
//! data (acceptance criterion 1); deleting every key gives the disk back, and no deleted key
//! comes back through a clean or a crash reopen (criterion 2); the per-segment live-byte
//! accounting equals a recount from a model, and every kind of reopen (MANIFEST, full log
//! replay, checkpoint plus replay) brings the same numbers back; compaction runs beside
//! readers, writers and iterators without any of them seeing a missing, stale or foreign
//! value; and random writes, compactions, checkpoints and reopens keep the database equal
//! to a `BTreeMap` model.
//!
//! Randomised tests print their seed; rerun one with `TALUS_TEST_SEED=<seed>`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use talus_engine::{Db, Options, SegmentStats, Stats, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, fill_pattern, has_pattern, pattern, test_seed};

use crate::support::{SEGMENT_SIZE, State, fast_tempdir, options, state_of};

const MIB: u64 = 1 << 20;
/// Bytes of the ring's entry header in front of every record.
const ENTRY_HEADER_LEN: u64 = 8;
/// Bytes of the record header in front of every key (docs/format.md).
const RECORD_HEADER_LEN: u64 = 24;
/// Bytes of a segment file's header, in front of its data (docs/format.md).
const SEGMENT_HEADER_LEN: u64 = 4096;

/// Bytes a record of this key and value takes in the log: the entry header, then the
/// record header, key and value padded to a multiple of 8. The live-byte accounting counts
/// exactly this per record.
fn record_size(key_len: usize, value_len: usize) -> u64 {
    ENTRY_HEADER_LEN + (RECORD_HEADER_LEN + key_len as u64 + value_len as u64).next_multiple_of(8)
}

/// What holds of any `stats()`: per segment, live + tombstone + dead bytes are the bytes
/// written; the totals are the sums over the segments.
fn check_accounting_identities(stats: &Stats, context: &str) {
    for segment in &stats.segments {
        assert_eq!(
            segment.live_bytes + segment.tombstone_bytes + segment.dead_bytes,
            segment.written_bytes,
            "{context}: live + tombstone + dead == written in {segment:?}"
        );
    }
    let sum = |bytes: fn(&SegmentStats) -> u64| stats.segments.iter().map(bytes).sum::<u64>();
    assert_eq!(stats.live_bytes, sum(|segment| segment.live_bytes), "{context}: live bytes are the segments' sum");
    assert_eq!(stats.tombstone_bytes, sum(|segment| segment.tombstone_bytes), "{context}: tombstone bytes");
    assert_eq!(stats.dead_bytes, sum(|segment| segment.dead_bytes), "{context}: dead bytes");
}

/// `verify` on `db` must find nothing wrong.
fn verify_ok(db: &mut Db, context: &str) {
    let report = db.verify().expect("verify");
    assert!(report.is_ok(), "{context}: verify found problems: {:?}", report.problems);
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// A run that takes longer than this is taken for a deadlock.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `work` on its own thread; fails the test if it does not finish within
/// [`WATCHDOG`], and re-raises its panic.
fn with_watchdog(what: &str, work: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        work();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(WATCHDOG) {
        // Disconnected: the work panicked before it could report; join re-raises that.
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
            worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within {WATCHDOG:?}: a deadlock or a hang"),
    }
}

// ---------------------------------------------------------------------------------------
// Criterion 1: overwrite churn.

/// Megabytes (MiB) of live values the churn test keeps, if set (default
/// [`DEFAULT_CHURN_MIB`]).
const CHURN_MIB_ENV: &str = "TALUS_CHURN_MB";
const DEFAULT_CHURN_MIB: u64 = 100;
const CHURN_VALUE_LEN: usize = 1000;
/// After the first write of every key, every key is overwritten this many times.
const CHURN_OVERWRITE_ROUNDS: u32 = 10;
/// Every this many writes, a sample of keys is read back and the disk usage looked at.
const CHURN_CHECK_EVERY: u64 = 10_000;
const CHURN_SAMPLE_LEN: usize = 64;

fn churn_key(idx: u32) -> Vec<u8> {
    format!("k{idx:08}").into_bytes()
}

/// A value names its key and round: the pattern of this tag.
fn churn_tag(idx: u32, round: u32) -> u64 {
    u64::from(idx) << 32 | u64::from(round)
}

fn churn_options() -> Options {
    Options::new().memory_budget(8 * MIB).segment_size(MIB).sync_mode(SyncMode::Never)
}

/// Reads `idx` and checks that it holds its value of `round`; the message says which round
/// it holds instead.
fn check_churn_key(db: &Db, idx: u32, round: u32) {
    let key = churn_key(idx);
    let intact = db
        .get_with(&key, |value| value.len() == CHURN_VALUE_LEN && has_pattern(value, churn_tag(idx, round)))
        .expect("get");
    if intact == Some(true) {
        return;
    }
    let found = match db.get(&key).expect("get") {
        None => "nothing".to_owned(),
        Some(value) => match (0..=CHURN_OVERWRITE_ROUNDS).find(|&other| has_pattern(&value, churn_tag(idx, other))) {
            Some(other) => format!("its value of round {other}"),
            None => format!("a value of {} bytes that no round wrote", value.len()),
        },
    };
    panic!("key {idx} should hold its value of round {round}, but holds {found}");
}

/// Disk usage seen in one round of the churn.
#[derive(Default)]
struct RoundPeak {
    disk_bytes: u64,
    space_amplification: f64,
}

impl RoundPeak {
    fn see(&mut self, stats: &Stats) {
        self.disk_bytes = self.disk_bytes.max(stats.log_disk_bytes);
        self.space_amplification = self.space_amplification.max(stats.space_amplification());
    }
}

/// Acceptance criterion 1: values of `TALUS_CHURN_MB` MiB in all (1000-byte values), each
/// written once and then overwritten ten times in a random order per round, with the
/// background compaction at its defaults. Reads of random keys always return the latest
/// value; once a `compact` has settled the log, its files take at most 1.5 times the live
/// bytes (which are those of exactly one record per key); a reopen reads every key back
/// and `verify` finds nothing wrong. Prints the space amplification and disk usage per
/// round, and the write amplification.
#[test]
fn overwrite_churn_keeps_disk_within_1_5x_of_live_data() {
    let started = Instant::now();
    let seed = test_seed("overwrite_churn");
    let mut rng = SplitMix64::new(seed);
    let churn_mib = match std::env::var(CHURN_MIB_ENV) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{CHURN_MIB_ENV}={text:?} is not a number")),
        Err(_) => DEFAULT_CHURN_MIB,
    };
    let n_keys = u32::try_from(churn_mib * MIB / CHURN_VALUE_LEN as u64).expect("fewer than 2^32 keys");
    assert!(n_keys > 0, "{CHURN_MIB_ENV} too small");
    let key_len = churn_key(0).len();
    let record_bytes = record_size(key_len, CHURN_VALUE_LEN);
    let expected_live_bytes = u64::from(n_keys) * record_bytes;
    let dir = fast_tempdir();
    let db = churn_options().open(dir.path()).expect("open");

    // The round each key holds (written in order in round 0, so only keys below the
    // number written so far are sampled then).
    let mut rounds: Vec<u32> = vec![0; n_keys as usize];
    let mut order: Vec<u32> = (0..n_keys).collect();
    let mut value = vec![0u8; CHURN_VALUE_LEN];
    let mut n_writes = 0u64;
    let mut peak_disk_bytes = 0u64;
    let mut peak_space_amplification = 0f64;
    for round in 0..=CHURN_OVERWRITE_ROUNDS {
        if round > 0 {
            // Fisher-Yates, seeded.
            for idx in (1..order.len()).rev() {
                order.swap(idx, rng.below(idx as u64 + 1) as usize);
            }
        }
        let mut peak = RoundPeak::default();
        for (n_written_in_round, &idx) in order.iter().enumerate() {
            fill_pattern(&mut value, churn_tag(idx, round));
            db.put(churn_key(idx), &value).expect("put");
            rounds[idx as usize] = round;
            n_writes += 1;
            if n_writes.is_multiple_of(CHURN_CHECK_EVERY) {
                let n_sampled_from = if round == 0 { n_written_in_round as u64 + 1 } else { u64::from(n_keys) };
                for _ in 0..CHURN_SAMPLE_LEN {
                    let sample = rng.below(n_sampled_from) as u32;
                    check_churn_key(&db, sample, rounds[sample as usize]);
                }
                peak.see(&db.stats());
            }
        }
        let stats = db.stats();
        peak.see(&stats);
        check_accounting_identities(&stats, &format!("after round {round}"));
        eprintln!(
            "churn: round {round:2}: disk {:7.1} MiB (peak in round {:7.1} MiB), live {:6.1} MiB, space \
             amplification {:5.2} (peak in round {:5.2}), so far {} segments compacted in {} passes ({:.2?})",
            mib(stats.log_disk_bytes),
            mib(peak.disk_bytes),
            mib(stats.live_bytes),
            stats.space_amplification(),
            peak.space_amplification,
            stats.counters.n_segments_compacted,
            stats.counters.n_compaction_passes,
            started.elapsed(),
        );
        peak_disk_bytes = peak_disk_bytes.max(peak.disk_bytes);
        if round > 0 {
            peak_space_amplification = peak_space_amplification.max(peak.space_amplification);
        }
    }
    let churned_at = started.elapsed();

    let report = db.compact().expect("compact");
    let stats = db.stats();
    check_accounting_identities(&stats, "after the settling compaction");
    let user_bytes = n_writes * (key_len + CHURN_VALUE_LEN) as u64;
    let user_record_bytes = n_writes * record_bytes;
    eprintln!(
        "churn: {n_keys} keys, {n_writes} writes of {} key+value bytes ({:.1} MiB); settling compact: {report:?}",
        key_len + CHURN_VALUE_LEN,
        mib(user_bytes)
    );
    eprintln!(
        "churn: settled: disk {:.1} MiB in {} segments, live {} bytes (expected {expected_live_bytes}: {n_keys} \
         records of {record_bytes} bytes), space amplification {:.3}; peak disk {:.1} MiB, peak space \
         amplification while overwriting {:.2}",
        mib(stats.log_disk_bytes),
        stats.n_segments,
        stats.live_bytes,
        stats.space_amplification(),
        mib(peak_disk_bytes),
        peak_space_amplification,
    );
    eprintln!(
        "churn: write amplification {:.3} (log bytes appended {:.1} MiB / key+value bytes written {:.1} MiB); \
         {:.3} over the records' bytes; compaction copied {:.1} MiB in {} segments",
        stats.counters.n_log_bytes_appended as f64 / user_bytes as f64,
        mib(stats.counters.n_log_bytes_appended),
        mib(user_bytes),
        stats.counters.n_log_bytes_appended as f64 / user_record_bytes as f64,
        mib(stats.counters.n_compaction_bytes_copied),
        stats.counters.n_segments_compacted,
    );
    assert_eq!(stats.n_keys, u64::from(n_keys));
    let live_error = stats.live_bytes.abs_diff(expected_live_bytes) as f64 / expected_live_bytes as f64;
    assert!(
        live_error <= 0.1,
        "live bytes {} should be within 10% of {n_keys} records of {record_bytes} bytes ({expected_live_bytes})",
        stats.live_bytes
    );
    assert!(
        stats.log_disk_bytes as f64 <= 1.5 * stats.live_bytes as f64,
        "after compaction the log takes {} bytes on disk, more than 1.5 x the {} live bytes (space \
         amplification {:.4})",
        stats.log_disk_bytes,
        stats.live_bytes,
        stats.space_amplification()
    );
    assert!(stats.counters.n_segments_compacted > 0, "the churn made compaction run");
    db.close().expect("close");
    let compacted_at = started.elapsed();

    let mut db = churn_options().open(dir.path()).expect("reopen");
    assert!(db.stats().recovery.clean, "a clean close replays nothing");
    for idx in 0..n_keys {
        check_churn_key(&db, idx, rounds[idx as usize]);
    }
    verify_ok(&mut db, "after the churn and a reopen");
    db.close().expect("close");
    eprintln!(
        "churn: timings: churn {churned_at:.2?}, settle and close {:.2?}, reopen, read back and verify {:.2?}",
        compacted_at - churned_at,
        started.elapsed() - compacted_at
    );
}

// ---------------------------------------------------------------------------------------
// Criterion 2: deleting gives the disk back.

const N_SMALL_KEYS: u64 = 1_000_000;
const SMALL_VALUE_LEN: usize = 16;
const DELETE_BATCH_LEN: u64 = 1000;
/// Before the last check (after a crash reopen that replays the whole log), `get` reads
/// every this many keys (odd: both halves of the keys are read); `iter` sees all of them.
const SMALL_SAMPLE_STRIDE: usize = 7;

fn small_key(idx: u64) -> [u8; 8] {
    idx.to_be_bytes()
}

fn small_value(idx: u64, version: u32) -> [u8; SMALL_VALUE_LEN] {
    let mut value = [0u8; SMALL_VALUE_LEN];
    fill_pattern(&mut value, idx << 8 | u64::from(version));
    value
}

fn small_options() -> Options {
    // No background thread at all: compactions and checkpoints happen when the test says.
    Options::new()
        .memory_budget(8 * MIB)
        .segment_size(MIB)
        .sync_mode(SyncMode::Never)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

/// The key's expected value after the deletes: version 2 for even keys if they were put
/// again, else none.
fn small_expected(idx: u64, put_half_again: bool) -> Option<[u8; SMALL_VALUE_LEN]> {
    (put_half_again && idx.is_multiple_of(2)).then(|| small_value(idx, 2))
}

/// Every key of the million (or every [`SMALL_SAMPLE_STRIDE`]th, unless `every_key`) holds
/// what [`small_expected`] says through `get`; `iter` shows exactly the keys expected, with
/// their values, and `n_keys` agrees.
fn check_small_state(db: &Db, put_half_again: bool, every_key: bool, context: &str) {
    let stride = if every_key { 1 } else { SMALL_SAMPLE_STRIDE };
    for idx in (0..N_SMALL_KEYS).step_by(stride) {
        let expected = small_expected(idx, put_half_again);
        let found = db.get_with(small_key(idx), |value| value == expected.as_ref().map_or(&[][..], |v| &v[..]));
        match (found.expect("get"), expected) {
            (None, None) | (Some(true), Some(_)) => {}
            (None, Some(_)) => panic!("{context}: key {idx} was put again after the delete, but is gone"),
            (Some(_), None) => panic!("{context}: deleted key {idx} came back"),
            (Some(false), Some(_)) => panic!("{context}: key {idx} does not hold the value put after the delete"),
        }
    }
    let n_expected = if put_half_again { N_SMALL_KEYS / 2 } else { 0 };
    let mut n_iterated = 0u64;
    for pair in db.iter() {
        let (key, value) = pair.expect("iter");
        let idx = u64::from_be_bytes(key.as_slice().try_into().expect("8-byte keys"));
        let expected = small_expected(idx, put_half_again);
        assert_eq!(Some(value.as_slice()), expected.as_ref().map(|v| &v[..]), "{context}: iter's key {idx}");
        n_iterated += 1;
    }
    assert_eq!(n_iterated, n_expected, "{context}: pairs iterated");
    let stats = db.stats();
    assert_eq!(stats.n_keys, n_expected, "{context}: n_keys");
    check_accounting_identities(&stats, context);
    assert_eq!(
        stats.live_bytes,
        n_expected * record_size(8, SMALL_VALUE_LEN),
        "{context}: live bytes are those of the keys left"
    );
}

/// Loads a million small keys, takes a checkpoint (whose entries all point at records
/// compaction will remove), deletes every key (half in batches, half one by one),
/// optionally puts the even keys again, compacts, and checks the state after the
/// compaction, a clean reopen, a crash reopen from that checkpoint and a crash reopen from
/// the whole log (the checkpoint removed).
fn delete_everything(put_half_again: bool) {
    let started = Instant::now();
    let mut phases: Vec<(&str, Duration)> = Vec::new();
    let mut phase_started = Instant::now();
    let mut phase = |name: &'static str| {
        phases.push((name, phase_started.elapsed()));
        phase_started = Instant::now();
    };
    let name = if put_half_again { "delete, put half again" } else { "delete everything" };
    let dir = fast_tempdir();
    let db = small_options().open(dir.path()).expect("open");
    for idx in 0..N_SMALL_KEYS {
        db.put(small_key(idx), small_value(idx, 1)).expect("put");
    }
    let checkpoint = db.checkpoint().expect("checkpoint");
    let loaded = db.stats();
    assert_eq!(loaded.n_keys, N_SMALL_KEYS);
    assert_eq!(loaded.live_bytes, N_SMALL_KEYS * record_size(8, SMALL_VALUE_LEN));
    phase("load and checkpoint");

    // Half the keys through batches, half through single deletes.
    for first in (0..N_SMALL_KEYS).step_by(DELETE_BATCH_LEN as usize) {
        let chunk = first..(first + DELETE_BATCH_LEN).min(N_SMALL_KEYS);
        if (first / DELETE_BATCH_LEN).is_multiple_of(2) {
            let mut batch = WriteBatch::new();
            for idx in chunk {
                batch.delete(small_key(idx));
            }
            db.write(batch).expect("delete batch");
        } else {
            for idx in chunk {
                db.delete(small_key(idx)).expect("delete");
            }
        }
    }
    assert_eq!(db.stats().n_keys, 0);
    if put_half_again {
        for idx in (0..N_SMALL_KEYS).step_by(2) {
            db.put(small_key(idx), small_value(idx, 2)).expect("put again");
        }
    }
    let before_compaction = db.stats();
    phase("delete (and put again)");
    let report = db.compact().expect("compact");
    let compacted = db.stats();
    phase("compact");
    eprintln!(
        "{name}: disk after the load {:.1} MiB ({} segments), after the deletes {:.1} MiB, after compaction \
         {:.3} MiB ({} bytes, {} segments); {report:?}",
        mib(loaded.log_disk_bytes),
        loaded.n_segments,
        mib(before_compaction.log_disk_bytes),
        mib(compacted.log_disk_bytes),
        compacted.log_disk_bytes,
        compacted.n_segments,
    );
    check_small_state(&db, put_half_again, false, &format!("{name}, after compaction"));
    phase("check");
    let segment_bytes = compacted.segment_size + SEGMENT_HEADER_LEN;
    if put_half_again {
        // The records put again fill segments of their own, but for the first (which
        // begins with the last deletes) and the tail.
        let bound = compacted.live_bytes + compacted.n_segments * SEGMENT_HEADER_LEN + 2 * compacted.segment_size;
        assert!(
            compacted.log_disk_bytes <= bound,
            "{name}: the log takes {} bytes, more than the {} live bytes and two segments ({bound})",
            compacted.log_disk_bytes,
            compacted.live_bytes
        );
    } else {
        assert_eq!(compacted.live_bytes, 0);
        assert!(compacted.n_segments <= 2, "{name}: {} segments left: {:?}", compacted.n_segments, compacted.segments);
        assert!(
            compacted.log_disk_bytes <= 2 * segment_bytes,
            "{name}: the log takes {} bytes, more than two segments",
            compacted.log_disk_bytes
        );
        assert!(compacted.log_disk_bytes * 20 < loaded.log_disk_bytes, "{name}: far below the loaded size");
    }

    db.close().expect("close");
    let db = small_options().open(dir.path()).expect("clean reopen");
    phase("close and reopen");
    assert!(db.stats().recovery.clean);
    check_small_state(&db, put_half_again, false, &format!("{name}, after a clean reopen"));
    phase("check");
    assert_eq!(db.stats().segments, compacted.segments, "{name}: the accounting comes back from the MANIFEST");

    db.simulate_crash();
    // Fails here with the engine bug described at `a_checkpoint_older_than_a_compaction_recovers`.
    let db = small_options().open(dir.path()).expect("crash reopen");
    phase("crash reopen from the checkpoint");
    let recovery = db.stats().recovery;
    assert!(!recovery.clean);
    assert_eq!(recovery.checkpoint_covers_until, Some(checkpoint.covers_until), "{name}: {recovery:?}");
    check_small_state(&db, put_half_again, false, &format!("{name}, after a crash reopen from the checkpoint"));
    phase("check");
    assert_eq!(db.stats().segments, compacted.segments, "{name}: the checkpoint and replay give the accounting back");

    db.simulate_crash();
    let checkpoint_dir = dir.path().join("checkpoints");
    for entry in std::fs::read_dir(&checkpoint_dir).expect("list the checkpoints") {
        let path = entry.expect("a checkpoint").path();
        match path.is_dir() {
            true => std::fs::remove_dir_all(&path),
            false => std::fs::remove_file(&path),
        }
        .expect("remove a checkpoint");
    }
    let mut db = small_options().open(dir.path()).expect("crash reopen without a checkpoint");
    phase("crash reopen replaying the log");
    let recovery = db.stats().recovery;
    assert!(!recovery.clean);
    assert_eq!(recovery.checkpoint_covers_until, None, "{name}: {recovery:?}");
    check_small_state(&db, put_half_again, true, &format!("{name}, after a crash reopen replaying the whole log"));
    assert_eq!(db.stats().segments, compacted.segments, "{name}: the replay gives the accounting back");
    phase("check");
    verify_ok(&mut db, name);
    db.close().expect("close");
    phase("verify and close");
    eprintln!("{name}: {:.2?} in all: {phases:.2?}", started.elapsed());
}

/// Acceptance criterion 2: a million keys deleted and compacted leave at most two segments
/// on disk (from about 55 MiB), and no key comes back after a clean reopen, a crash reopen
/// from a checkpoint taken before the deletes (every entry of which points into a removed
/// segment) or a crash reopen replaying the whole log.
#[test]
fn deleting_every_key_gives_the_disk_back() {
    delete_everything(false);
}

/// Criterion 2's variant: after deleting every key, half of them are put again before the
/// compaction; exactly those survive, with their new values, through the compaction, a
/// clean reopen and both kinds of crash reopen; the other half stay deleted.
#[test]
fn keys_put_again_after_a_delete_survive_compaction() {
    delete_everything(true);
}

/// A checkpoint taken while the newest records are still only in memory (`SyncMode::Never`,
/// nothing written to the segment files yet), then every key deleted and the segments the
/// checkpoint's entries point into compacted away: a crash reopen must start from the
/// checkpoint, drop its entries into the removed segments, and find no key. (The small
/// version of what [`deleting_every_key_gives_the_disk_back`] does with a million keys.)
// A regression test: checkpoints once listed only the segments that had files, leaving
// out the tail still in memory, and kept entries into them after compaction removed them.
#[test]
fn a_checkpoint_older_than_a_compaction_recovers() {
    const N_KEYS: u32 = 2_000;
    let dir = fast_tempdir();
    let open = |path: &Path| options(SyncMode::Never).background_compaction(false).checkpoint_every_bytes(0).open(path);
    let db = open(dir.path()).expect("open");
    let key = |idx: u32| format!("older-{idx:05}").into_bytes();
    for idx in 0..N_KEYS {
        db.put(key(idx), pattern(300, u64::from(idx))).expect("put");
    }
    let checkpoint = db.checkpoint().expect("checkpoint");
    for idx in 0..N_KEYS {
        db.delete(key(idx)).expect("delete");
    }
    let report = db.compact().expect("compact");
    assert!(report.n_segments_compacted > 0, "{report:?}");
    db.simulate_crash();
    let db = open(dir.path()).expect("crash reopen after a checkpoint older than a compaction");
    assert_eq!(db.stats().recovery.checkpoint_covers_until, Some(checkpoint.covers_until));
    assert_eq!(state_of(&db), State::new(), "no deleted key comes back");
    db.close().expect("close");
}

// ---------------------------------------------------------------------------------------
// Accounting.

const ACCOUNTING_N_KEYS: u64 = 3_000;
const ACCOUNTING_N_OPS: usize = 20_000;

fn accounting_key(idx: u64) -> Vec<u8> {
    // Lengths from 7 to 31 bytes, so that records pad differently.
    let mut key = format!("acct-{idx:04}").into_bytes();
    key.resize(key.len() + (idx % 23) as usize, b'.');
    key
}

fn accounting_value_len(rng: &mut SplitMix64) -> usize {
    match rng.below(5) {
        0 => rng.between(200, 3_000),
        _ => rng.between(0, 200),
    }
}

/// Random puts, overwrites, deletes (of live and of absent keys) and batches (which may
/// touch a key twice), with a compaction now and then. Keeps `model` up to date.
fn accounting_ops(db: &Db, model: &mut State, rng: &mut SplitMix64, n_ops: usize, tag: &mut u64) {
    let mut value = |rng: &mut SplitMix64| {
        *tag += 1;
        pattern(accounting_value_len(rng), *tag)
    };
    for _ in 0..n_ops {
        let key = accounting_key(rng.below(ACCOUNTING_N_KEYS));
        match rng.below(100) {
            0..=49 => {
                let value = value(rng);
                db.put(&key, &value).expect("put");
                model.insert(key, value);
            }
            50..=69 => {
                db.delete(&key).expect("delete");
                model.remove(&key);
            }
            70..=98 => {
                let mut batch = WriteBatch::new();
                let mut key = key;
                for _ in 0..rng.between(1, 10) {
                    if rng.below(4) == 0 {
                        batch.delete(&key);
                        model.remove(&key);
                    } else {
                        let value = value(rng);
                        batch.put(&key, &value);
                        model.insert(key.clone(), value);
                    }
                    // Sometimes the same key again.
                    if rng.below(4) != 0 {
                        key = accounting_key(rng.below(ACCOUNTING_N_KEYS));
                    }
                }
                db.write(batch).expect("batch");
            }
            _ => {
                db.compact().expect("compact");
            }
        }
    }
}

/// The database holds `model`, and its live bytes are the model's records' bytes.
fn check_recount(db: &Db, model: &State, context: &str) -> Stats {
    assert_eq!(&state_of(db), model, "{context}: the database holds the model");
    let stats = db.stats();
    check_accounting_identities(&stats, context);
    let recount: u64 = model.iter().map(|(key, value)| record_size(key.len(), value.len())).sum();
    assert_eq!(stats.live_bytes, recount, "{context}: live bytes equal a recount of the live records");
    assert_eq!(stats.n_keys, model.len() as u64, "{context}");
    stats
}

/// The live-byte accounting equals a recount (one record per live key, of the size the
/// format gives it) after random puts, overwrites, deletes, batches and compactions, and
/// every segment's numbers come back unchanged after a clean reopen (from the MANIFEST),
/// after a crash with no checkpoint (a replay of the whole log) and after a crash following
/// a checkpoint and more writes and compactions (the checkpoint's numbers plus a replay).
#[test]
fn accounting_matches_a_recount() {
    let seed = test_seed("accounting_matches_a_recount");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let open = |path: &Path| {
        options(SyncMode::Never).background_compaction(false).checkpoint_every_bytes(0).open(path).expect("open")
    };
    let mut model = State::new();
    let mut tag = 0u64;
    let db = open(dir.path());
    accounting_ops(&db, &mut model, &mut rng, ACCOUNTING_N_OPS, &mut tag);
    let before = check_recount(&db, &model, "after the random writes");
    assert!(before.counters.n_segments_compacted > 0, "compaction ran: {:?}", before.counters);
    assert!(before.tombstone_bytes > 0 && before.dead_bytes > 0, "{before:?}");
    eprintln!(
        "accounting: {} segments, live {} bytes, tombstones {}, dead {}, {} segments compacted",
        before.segments.len(),
        before.live_bytes,
        before.tombstone_bytes,
        before.dead_bytes,
        before.counters.n_segments_compacted
    );

    db.close().expect("close");
    let db = open(dir.path());
    assert!(db.stats().recovery.clean);
    let after = check_recount(&db, &model, "after a clean reopen");
    assert_eq!(after.segments, before.segments, "a clean reopen brings every segment's numbers back");

    db.sync().expect("sync");
    db.simulate_crash();
    let db = open(dir.path());
    let after = check_recount(&db, &model, "after a crash reopen replaying the whole log");
    assert_eq!(after.recovery.checkpoint_covers_until, None);
    assert!(after.recovery.n_records_replayed > 0);
    assert_eq!(after.segments, before.segments, "a replay of the whole log brings every segment's numbers back");

    let checkpoint = db.checkpoint().expect("checkpoint");
    accounting_ops(&db, &mut model, &mut rng, ACCOUNTING_N_OPS / 4, &mut tag);
    db.compact().expect("compact");
    let before = check_recount(&db, &model, "after a checkpoint and more writes");
    db.sync().expect("sync");
    db.simulate_crash();
    let db = open(dir.path());
    let after = check_recount(&db, &model, "after a crash reopen from a checkpoint");
    assert_eq!(after.recovery.checkpoint_covers_until, Some(checkpoint.covers_until));
    assert_eq!(after.segments, before.segments, "a checkpoint and a replay bring every segment's numbers back");

    // A killed process's accounting is taken up as it was, with its index and log.
    accounting_ops(&db, &mut model, &mut rng, ACCOUNTING_N_OPS / 4, &mut tag);
    db.compact().expect("compact");
    db.sync().expect("sync");
    let before = check_recount(&db, &model, "before a kill");
    db.simulate_kill();
    let mut db = open(dir.path());
    let after = check_recount(&db, &model, "after a kill");
    assert!(after.recovery.resumed && after.recovery.n_records_replayed == 0, "{:?}", after.recovery);
    assert_eq!(after.segments, before.segments, "taking up a killed process brings every segment's numbers back");
    assert!(db.verify().expect("verify").is_ok(), "the index and the log agree");
    db.close().expect("close");
}

/// Compaction copies a tombstone forward with its old sequence number, so it can land
/// after a newer put of its key whose own delete a later compaction dropped. The replay
/// must still count it as a tombstone, as the live accounting did when it was appended.
// A regression test: the replay once counted such a tombstone as garbage, found by
// `accounting_matches_a_recount` with seed 18199422244511263696.
#[test]
fn a_tombstone_copied_past_a_newer_put_counts_the_same_on_replay() {
    const FILLER_LEN: usize = 4_000;
    let dir = fast_tempdir();
    let open = |path: &Path| {
        options(SyncMode::Never)
            .compaction_garbage_ratio(0.5)
            .compaction_space_amplification(100.0)
            .checkpoint_every_bytes(0)
            .open(path)
            .expect("open")
    };
    let db = open(dir.path());
    let key = b"the-key".as_slice();
    let segment_of = |db: &Db| db.stats().log_tail / SEGMENT_SIZE;
    // Writes fillers named `prefix-N` until the log reaches the next segment.
    let fill = |db: &Db, prefix: &str| -> Vec<Vec<u8>> {
        let segment = segment_of(db);
        let mut keys = Vec::new();
        while segment_of(db) == segment {
            let filler = format!("{prefix}-{}", keys.len()).into_bytes();
            db.put(&filler, pattern(FILLER_LEN, keys.len() as u64)).expect("put a filler");
            keys.push(filler);
        }
        keys
    };
    db.put(key, b"first").expect("put"); // S1, whose live fillers keep it
    fill(&db, "a");
    db.delete(key).expect("delete"); // S2, all garbage soon
    let in_s2 = fill(&db, "b");
    db.put(key, b"second").expect("put"); // S3, whose live fillers keep it
    fill(&db, "c");
    db.delete(key).expect("delete"); // S4, all garbage later
    let in_s4 = fill(&db, "d");

    // S2 goes: S1 may still hold a put the tombstone hides, and no put of the key is
    // live, so the tombstone is copied to the tail, after S3's newer put.
    in_s2.iter().for_each(|filler| db.delete(filler).expect("delete a filler"));
    let first = db.compact().expect("compact");
    assert_eq!((first.n_segments_compacted, first.n_tombstones_copied), (1, 1), "{first:?}");
    // Then a newer put, and S4 goes, its tombstone dropped (the newer put hides S3's).
    db.put(key, b"third").expect("put");
    in_s4.iter().for_each(|filler| db.delete(filler).expect("delete a filler"));
    let second = db.compact().expect("compact");
    assert!(second.n_segments_compacted >= 1 && second.n_tombstones_dropped >= 1, "{second:?}");
    let before = db.stats();
    check_accounting_identities(&before, "before the crash");
    let model = state_of(&db);
    assert_eq!(model.get(key).map(Vec::as_slice), Some(b"third".as_slice()));

    db.sync().expect("sync");
    db.simulate_crash();
    let db = open(dir.path());
    let after = db.stats();
    assert!(after.recovery.n_records_replayed > 0);
    assert_eq!(state_of(&db), model, "the replay gives the same contents");
    check_accounting_identities(&after, "after a replay");
    assert_eq!(after.segments, before.segments, "the replay gives every segment's numbers back");
    db.close().expect("close");
}

// ---------------------------------------------------------------------------------------
// Concurrency.

const CONCURRENT_N_WRITERS: u32 = 2;
const CONCURRENT_N_READERS: u32 = 2;
const CONCURRENT_KEYS_PER_WRITER: u32 = 256;
const CONCURRENT_WRITES_PER_WRITER: u32 = 15_000;
const CONCURRENT_MAX_FILLER_LEN: usize = 1_500;

fn concurrent_key(idx: u32) -> Vec<u8> {
    format!("conc-{idx:04}").into_bytes()
}

/// `key`, the version (u32), then a pattern tagged with both.
fn concurrent_value(idx: u32, version: u32, filler_len: usize) -> Vec<u8> {
    let key = concurrent_key(idx);
    let mut value = Vec::with_capacity(key.len() + 4 + filler_len);
    value.extend_from_slice(&key);
    value.extend_from_slice(&version.to_le_bytes());
    value.resize(key.len() + 4 + filler_len, 0);
    fill_pattern(&mut value[key.len() + 4..], u64::from(idx) << 32 | u64::from(version));
    value
}

/// The version of `value`, read for key `idx`, if it is one some writer wrote for it.
fn concurrent_version(idx: u32, value: &[u8]) -> Option<u32> {
    let key = concurrent_key(idx);
    let rest = value.strip_prefix(key.as_slice())?;
    let version = u32::from_le_bytes(rest.get(..4)?.try_into().expect("4 bytes"));
    has_pattern(&rest[4..], u64::from(idx) << 32 | u64::from(version)).then_some(version)
}

fn concurrent_key_idx(key: &[u8]) -> u32 {
    std::str::from_utf8(key).ok().and_then(|key| key.strip_prefix("conc-")?.parse().ok()).expect("a key of the test")
}

/// Two writers overwrite their own keys with numbered versions (single puts and batches),
/// two readers check that every value read is one written for that key and no older than
/// the version acknowledged before the read started, and a thread iterates the whole
/// database again and again (every key seen exactly once per pass, every value its key's),
/// while the main thread compacts in a loop. Afterwards every key holds its last version,
/// `verify` finds nothing wrong, and so again after a reopen.
#[test]
fn compaction_runs_beside_readers_and_writers() {
    let seed = test_seed("compaction_runs_beside_readers_and_writers");
    with_watchdog("compaction beside readers and writers", move || concurrent_compaction(seed));
}

fn concurrent_compaction(seed: u64) {
    let n_keys = CONCURRENT_N_WRITERS * CONCURRENT_KEYS_PER_WRITER;
    let dir = fast_tempdir();
    // Two open segment files at most: compaction, readers and the writer close each
    // other's files and open them again.
    let open = |path: &Path| {
        options(SyncMode::Never).background_compaction(false).max_open_segments(2).open(path).expect("open")
    };
    let db = open(dir.path());
    for idx in 0..n_keys {
        db.put(concurrent_key(idx), concurrent_value(idx, 1, 100)).expect("put");
    }
    // Per key: the highest version a writer has started to write, and the highest one
    // acknowledged.
    let started: Vec<AtomicU32> = (0..n_keys).map(|_| AtomicU32::new(1)).collect();
    let acked: Vec<AtomicU32> = (0..n_keys).map(|_| AtomicU32::new(1)).collect();
    let writers_done = AtomicBool::new(false);
    let (mut n_compacted, mut n_compactions, mut n_passes, mut n_reads) = (0u64, 0u64, 0u64, 0u64);
    std::thread::scope(|scope| {
        let (db, started, acked, writers_done) = (&db, &started, &acked, &writers_done);
        let writers: Vec<_> = (0..CONCURRENT_N_WRITERS)
            .map(|writer| {
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ u64::from(writer + 1));
                    let first = writer * CONCURRENT_KEYS_PER_WRITER;
                    let mut n_writes = 0;
                    while n_writes < CONCURRENT_WRITES_PER_WRITER {
                        // A single put, or (one time in four) a batch of puts, which may
                        // write one key twice.
                        let n_puts = if rng.below(4) == 0 { rng.between(2, 5) } else { 1 };
                        let mut written = Vec::with_capacity(n_puts);
                        for _ in 0..n_puts {
                            let idx = first + rng.below(u64::from(CONCURRENT_KEYS_PER_WRITER)) as u32;
                            let version = started[idx as usize].load(Ordering::Relaxed) + 1;
                            started[idx as usize].store(version, Ordering::Release);
                            let filler_len = rng.between(0, CONCURRENT_MAX_FILLER_LEN);
                            written.push((idx, version, concurrent_value(idx, version, filler_len)));
                        }
                        if let [(idx, _, value)] = written.as_slice() {
                            db.put(concurrent_key(*idx), value).expect("put");
                        } else {
                            let mut batch = WriteBatch::new();
                            for (idx, _, value) in &written {
                                batch.put(concurrent_key(*idx), value);
                            }
                            db.write(batch).expect("batch");
                        }
                        for (idx, version, _) in written {
                            acked[idx as usize].store(version, Ordering::Release);
                        }
                        n_writes += n_puts as u32;
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..CONCURRENT_N_READERS)
            .map(|reader| {
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ u64::from(reader + 100));
                    let mut n_reads = 0u64;
                    while !writers_done.load(Ordering::Acquire) {
                        let idx = rng.below(u64::from(n_keys)) as u32;
                        let acked_before = acked[idx as usize].load(Ordering::Acquire);
                        let value = db.get(concurrent_key(idx)).expect("get").expect("every key has a value");
                        let version = concurrent_version(idx, &value)
                            .unwrap_or_else(|| panic!("key {idx}: read a value no writer wrote for it"));
                        let started = started[idx as usize].load(Ordering::Acquire);
                        assert!(
                            acked_before <= version && version <= started,
                            "key {idx}: read version {version}; {acked_before} was acknowledged before the read, \
                             {started} is the newest started"
                        );
                        n_reads += 1;
                    }
                    n_reads
                })
            })
            .collect();
        let iterator = scope.spawn(move || {
            let mut n_passes = 0u64;
            while !writers_done.load(Ordering::Acquire) || n_passes == 0 {
                let mut seen = HashSet::new();
                for pair in db.iter() {
                    let (key, value) = pair.expect("iter");
                    let idx = concurrent_key_idx(&key);
                    assert!(concurrent_version(idx, &value).is_some(), "iter: key {idx} with a value not its own");
                    assert!(seen.insert(idx), "iter: key {idx} seen twice in one pass");
                }
                assert_eq!(seen.len() as u32, n_keys, "iter: a pass sees every key");
                n_passes += 1;
            }
            n_passes
        });
        while !writers.iter().all(|writer| writer.is_finished()) {
            let report = db.compact().expect("compact");
            n_compacted += report.n_segments_compacted;
            n_compactions += 1;
        }
        // Before the joins: a writer that panicked must not leave the others waiting.
        writers_done.store(true, Ordering::Release);
        for writer in writers {
            writer.join().expect("writer");
        }
        n_reads = readers.into_iter().map(|reader| reader.join().expect("reader")).sum();
        n_passes = iterator.join().expect("iterator");
    });
    // Removes what the iterator kept.
    db.compact().expect("compact");
    eprintln!(
        "concurrent: {n_compactions} compactions ({n_compacted} segments) beside the writers, {n_reads} reads, \
         {n_passes} iterations; {:?}",
        db.stats().counters
    );
    assert!(n_compacted > 0, "compaction ran beside the writers");
    let check_last_versions = |db: &Db, context: &str| {
        for idx in 0..n_keys {
            let last = acked[idx as usize].load(Ordering::Acquire);
            let value = db.get(concurrent_key(idx)).expect("get").expect("every key has a value");
            assert_eq!(concurrent_version(idx, &value), Some(last), "{context}: key {idx} holds its last version");
        }
    };
    let mut db = db;
    check_last_versions(&db, "after the writers");
    verify_ok(&mut db, "after the writers");
    db.close().expect("close");
    let mut db = open(dir.path());
    check_last_versions(&db, "after a reopen");
    verify_ok(&mut db, "after a reopen");
    db.close().expect("close");
}

// ---------------------------------------------------------------------------------------
// Model.

const MODEL_N_CASES: u64 = 6;
const MODEL_N_OPS: usize = 300;
const MODEL_N_KEYS: u64 = 40;

fn model_key(idx: u64) -> Vec<u8> {
    // The empty key, one-byte keys and longer ones.
    match idx {
        0 => Vec::new(),
        1..=9 => vec![idx as u8],
        _ => format!("model-key-{idx}-").repeat(1 + (idx % 4) as usize).into_bytes(),
    }
}

fn model_value(rng: &mut SplitMix64, tag: u64) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => rng.between(8 << 10, 60 << 10),
        1..=3 => rng.between(100, 2_000),
        _ => rng.between(0, 100),
    };
    pattern(len, tag)
}

/// One case of [`a_model_with_compaction_and_reopens`]; returns the segments its `compact`
/// calls compacted.
fn model_case(seed: u64) -> u64 {
    let mut rng = SplitMix64::new(seed);
    let background = rng.below(3) == 0;
    let checkpoint_every_bytes = if rng.below(2) == 0 { 0 } else { 64 << 10 };
    let open = |path: &Path| {
        options(SyncMode::Always)
            .background_compaction(background)
            .checkpoint_every_bytes(checkpoint_every_bytes)
            .open(path)
            .expect("open")
    };
    let dir = fast_tempdir();
    let mut db = open(dir.path());
    let mut model = State::new();
    let (mut n_reopens, mut n_segments_compacted, mut n_from_checkpoint) = (0u32, 0u64, 0u32);
    let check_after_reopen = |db: &mut Db, model: &State, what: &str| {
        let context = format!("case {seed}: after a {what}");
        assert_eq!(&state_of(db), model, "{context}: the database holds the model");
        let stats = db.stats();
        check_accounting_identities(&stats, &context);
        if !background {
            // With the background thread on, a copy may be in flight.
            let recount: u64 = model.iter().map(|(key, value)| record_size(key.len(), value.len())).sum();
            assert_eq!(stats.live_bytes, recount, "{context}: live bytes equal a recount");
        }
        verify_ok(db, &context);
    };
    for op_idx in 0..MODEL_N_OPS {
        let key = model_key(rng.below(MODEL_N_KEYS));
        match rng.below(100) {
            0..=39 => {
                let value = model_value(&mut rng, (op_idx as u64) << 8);
                db.put(&key, &value).expect("put");
                model.insert(key.clone(), value);
            }
            40..=54 => {
                db.delete(&key).expect("delete");
                model.remove(&key);
            }
            55..=69 => {
                let mut batch = WriteBatch::new();
                for op in 0..rng.between(1, 6) {
                    let key = model_key(rng.below(MODEL_N_KEYS));
                    if rng.below(4) == 0 {
                        batch.delete(&key);
                        model.remove(&key);
                    } else {
                        let value = model_value(&mut rng, (op_idx as u64) << 8 | op as u64);
                        batch.put(&key, &value);
                        model.insert(key, value);
                    }
                }
                db.write(batch).expect("batch");
            }
            70..=79 => {
                n_segments_compacted += db.compact().expect("compact").n_segments_compacted;
            }
            80..=84 => {
                db.checkpoint().expect("checkpoint");
            }
            85..=88 => {
                db.close().expect("close");
                db = open(dir.path());
                assert!(db.stats().recovery.clean);
                check_after_reopen(&mut db, &model, "clean reopen");
                n_reopens += 1;
            }
            89..=93 => {
                db.simulate_crash();
                db = open(dir.path());
                let recovery = db.stats().recovery;
                assert!(!recovery.clean);
                n_from_checkpoint += u32::from(recovery.checkpoint_covers_until.is_some());
                check_after_reopen(&mut db, &model, "crash reopen");
                n_reopens += 1;
            }
            _ => {}
        }
        // The key the operation drew reads back as the model says.
        assert_eq!(db.get(&key).expect("get").as_ref(), model.get(&key), "case {seed}: op {op_idx}: key {key:?}");
    }
    db.simulate_crash();
    let mut db = open(dir.path());
    check_after_reopen(&mut db, &model, "final crash reopen");
    let stats = db.stats();
    eprintln!(
        "model case {seed}: background {background}, checkpoints every {checkpoint_every_bytes} bytes, {n_reopens} \
         reopens ({n_from_checkpoint} crash reopens from a checkpoint), {n_segments_compacted} segments compacted \
         by compact, {} keys, {} segments at the end",
        model.len(),
        stats.n_segments
    );
    db.close().expect("close");
    n_segments_compacted
}

/// Random puts, deletes, batches, compactions, checkpoints, clean reopens and crash
/// reopens (every write durable, `SyncMode::Always`) against a `BTreeMap` model, in small
/// segments so that compaction has work; some cases also compact and checkpoint in the
/// background. After every reopen the database equals the model, its live bytes equal a
/// recount, and `verify` finds nothing wrong.
#[test]
fn a_model_with_compaction_and_reopens() {
    let seed = test_seed("a_model_with_compaction_and_reopens");
    let mut seeds = SplitMix64::new(seed);
    let mut n_segments_compacted = 0;
    for case in 0..MODEL_N_CASES {
        let case_seed = seeds.next_u64();
        eprintln!("model case {case}: seed {case_seed}");
        n_segments_compacted += model_case(case_seed);
    }
    assert!(n_segments_compacted > 0, "the cases gave compaction work");
}

/// The rate limit slows compaction down but it still finishes, copies every live record and
/// gives the space back (no timing is asserted: the limit only sleeps between records).
#[test]
fn a_rate_limited_compaction_still_finishes() {
    let dir = fast_tempdir();
    let db = options(SyncMode::Never)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
        .compaction_rate_limit(64 << 20)
        .open(dir.path())
        .expect("open");
    for round in 0..4u64 {
        for idx in 0..2_000u64 {
            db.put(format!("limited-{idx:05}"), pattern(500, round * 10_000 + idx)).expect("put");
        }
    }
    let before = db.stats();
    let report = db.compact().expect("compact");
    let after = db.stats();
    assert!(report.n_segments_compacted > 0 && after.log_disk_bytes < before.log_disk_bytes, "{report:?}");
    for idx in 0..2_000u64 {
        let value = db.get(format!("limited-{idx:05}")).expect("get").expect("present");
        assert_eq!(value, pattern(500, 3 * 10_000 + idx));
    }
    db.close().expect("close");
}
