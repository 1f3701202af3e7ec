//! Acceptance criterion 9: injected I/O failures and crashes through `MemStorage`.
//!
//! A failed fsync or write poisons the database: the call that hit it fails, later writes
//! return [`Error::Poisoned`], reads keep working, and reopening recovers the durable state
//! (every acknowledged write, nothing garbled). Power losses that tear unsynced writes
//! (`CrashMode::Tear`) keep every acknowledged write and leave a prefix of the log, and
//! group commit makes every concurrent `SyncMode::Always` write durable.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use talus_engine::storage::{CrashMode, MemStorage};
use talus_engine::{Db, Error, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, pattern, test_seed};

use crate::support::{MEMORY_BUDGET, State, fast_tempdir, open_mem, options, state_of};

/// Opens what a crash of `storage` in `mode` leaves (with its own index directory, so the
/// database on `storage` may stay open) and returns its state.
fn state_after_crash(storage: &MemStorage, mode: CrashMode, index_dir: &Path) -> State {
    let crashed = storage.crash(mode);
    let db = open_mem(options(SyncMode::Never), &crashed, index_dir)
        .unwrap_or_else(|error| panic!("opening after a crash ({mode:?}) failed: {error}"));
    assert!(!db.stats().recovery.clean);
    let state = state_of(&db);
    db.simulate_crash();
    state
}

/// A few acknowledged writes of every kind, recorded in `state`.
fn acknowledged_writes(db: &Db, state: &mut State, rng: &mut SplitMix64, n_writes: u64) {
    for idx in 0..n_writes {
        let key = format!("key {}", rng.below(24)).into_bytes();
        match rng.below(6) {
            0 => {
                db.delete(&key).expect("delete");
                state.remove(&key);
            }
            1 => {
                let mut batch = WriteBatch::new();
                let (other, other_value) = (format!("batch key {idx}").into_bytes(), pattern(rng.between(0, 300), idx));
                batch.put(&key, b"in a batch").put(&other, &other_value).delete(b"key 0");
                db.write(batch).expect("write a batch");
                state.insert(key, b"in a batch".to_vec());
                state.insert(other, other_value);
                state.remove(&b"key 0"[..]);
            }
            _ => {
                let value = pattern(rng.between(0, 2000), idx);
                db.put(&key, &value).expect("put");
                state.insert(key, value);
            }
        }
    }
}

#[test]
fn failed_sync_poisons_and_reopening_recovers_the_durable_state() {
    let seed = test_seed("failed_sync_poisons_and_reopening_recovers_the_durable_state");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, &dir.path().join("index")).expect("open");
    let mut acknowledged = State::new();
    acknowledged_writes(&db, &mut acknowledged, &mut rng, 60);

    storage.fail_next_syncs(1);
    let failed = db.put(b"doomed", b"the value whose sync failed");
    assert!(matches!(failed, Err(Error::Io { .. })), "the write whose sync failed: {failed:?}");
    assert!(db.stats().poisoned);
    assert!(matches!(db.put(b"later", b"value"), Err(Error::Poisoned)));
    assert!(matches!(db.delete(b"key 1"), Err(Error::Poisoned)));
    let mut batch = WriteBatch::new();
    batch.put(b"later", b"value");
    assert!(matches!(db.write(batch), Err(Error::Poisoned)));
    assert!(matches!(db.sync(), Err(Error::Poisoned)));

    // Reads keep working. They also return the value whose sync failed: its record is in
    // memory and the index points at it (the index is updated before the commit), although
    // no crash will find it on disk.
    let mut seen = acknowledged.clone();
    seen.insert(b"doomed".to_vec(), b"the value whose sync failed".to_vec());
    assert!(state_of(&db) == seen, "reads after the failure see every write made");

    // A power loss now, or the process killed now: every acknowledged write, nothing else
    // (the failed sync threw the doomed record's bytes away).
    for (idx, mode) in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced].into_iter().enumerate() {
        let index_dir = dir.path().join(format!("index-crashed-{idx}"));
        assert!(state_after_crash(&storage, mode, &index_dir) == acknowledged, "{mode:?}: not the acknowledged writes");
    }

    // Closing a poisoned database says so; reopening on the same storage (the machine did not
    // crash: its page cache may still hold the doomed bytes) has every acknowledged write.
    assert!(matches!(db.close(), Err(Error::Poisoned)));
    let db = open_mem(options(SyncMode::Always), &storage, &dir.path().join("index")).expect("reopen");
    assert!(!db.stats().poisoned && !db.stats().recovery.clean);
    let mut state = state_of(&db);
    let doomed = state.remove(&b"doomed"[..]);
    let shown = doomed.as_deref().map(String::from_utf8_lossy);
    eprintln!("after reopening on the same storage, the write whose sync failed reads as {shown:?}");
    assert!(doomed.is_none() || doomed.as_deref() == Some(&b"the value whose sync failed"[..]), "{doomed:?}");
    assert!(state == acknowledged, "reopened: not the acknowledged writes");
    db.put(b"after reopen", b"writable again").expect("a reopened database takes writes");
}

/// Reopening a database poisoned by a failed fsync, without a crash, finds the record whose
/// sync failed still readable (the page cache has it) although the disk will never get it.
/// Writes acknowledged after that reopen must survive a later power loss all the same.
#[test]
fn writes_acknowledged_after_reopening_a_poisoned_database_survive_power_loss() {
    let seed = test_seed("writes_acknowledged_after_reopening_a_poisoned_database_survive_power_loss");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("open");
    let mut acknowledged = State::new();
    acknowledged_writes(&db, &mut acknowledged, &mut rng, 40);
    storage.fail_next_syncs(1);
    assert!(db.put(b"doomed", b"never durable").is_err());
    drop(db);

    let db = open_mem(options(SyncMode::Always), &storage, &index_dir).expect("reopen");
    let doomed_visible = db.get(b"doomed").expect("get").is_some();
    for idx in 0..20u64 {
        let key = format!("after reopen {idx}").into_bytes();
        let value = pattern(rng.between(0, 500), idx);
        db.put(&key, &value).expect("put after reopen");
        acknowledged.insert(key, value);
    }
    // Every write since the reopen was acknowledged in `SyncMode::Always`: a power loss must
    // keep them, and the database must open.
    let crashed = storage.crash(CrashMode::DropUnsynced);
    let reopened = open_mem(options(SyncMode::Never), &crashed, &dir.path().join("index-crashed"));
    let reopened = reopened.unwrap_or_else(|error| {
        panic!(
            "after a failed fsync, a reopen (the doomed write visible: {doomed_visible}), 20 acknowledged \
             writes and a power loss, the database does not open: {error}"
        )
    });
    let mut state = state_of(&reopened);
    state.remove(&b"doomed"[..]);
    assert!(state == acknowledged, "writes acknowledged after the reopen were lost in a power loss");
}

#[test]
fn failed_write_while_making_room_poisons() {
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = MemStorage::new();
    // No background log writer: the write that makes room is the one that fails.
    let db = open_mem(options(SyncMode::Never).background_log_writer(false), &storage, &index_dir).expect("open");
    // Keys are written in order, each once: the state after `n` writes is keys `0..n`.
    let key = |idx: u64| format!("key {idx:05}").into_bytes();
    let value_len = |idx: u64| 2000 + (idx as usize * 7919) % 3000;
    let value = |idx: u64| pattern(value_len(idx), idx);
    let mut ends = Vec::new();
    // Three times the memory: the ring has flushed and evicted before the failure.
    let mut idx = 0;
    while db.stats().log_tail < 3 * MEMORY_BUDGET {
        db.put(key(idx), value(idx)).expect("put");
        ends.push(db.stats().log_tail);
        idx += 1;
    }
    assert!(db.stats().counters.n_evicted > 0);
    storage.fail_next_writes(1);
    let n_before_failure = idx;
    let error = loop {
        assert!(idx < n_before_failure + 1000, "memory must fill and be written out within 1000 puts");
        match db.put(key(idx), value(idx)) {
            Ok(()) => {
                ends.push(db.stats().log_tail);
                idx += 1;
            }
            Err(error) => break error,
        }
    };
    let n_acknowledged = idx;
    assert!(matches!(error, Error::Io { .. }), "the write that had to make room: {error:?}");
    let stats = db.stats();
    assert!(stats.poisoned);
    assert!(matches!(db.put(b"later", b"value"), Err(Error::Poisoned)));
    // Reads keep working, from memory and from disk; the failed put was not applied.
    assert_eq!(db.get(key(n_acknowledged)).expect("get the failed key"), None);
    for idx in (0..n_acknowledged).step_by(7).chain([n_acknowledged - 1]) {
        assert_eq!(db.get(key(idx)).expect("get"), Some(value(idx)), "key {idx} after the failure");
    }
    let synced_until = stats.log_synced_until;
    assert!(synced_until <= stats.log_written_until);
    drop(db);

    // Poisoning recorded the durable end of the log in the MANIFEST: reopening (even
    // without a crash, with the written-but-unsynced bytes still in the files) cuts the log
    // there and finds exactly the writes below it.
    let db = open_mem(options(SyncMode::Never), &storage, &index_dir).expect("reopen");
    let n_kept = ends.iter().take_while(|&&end| end <= synced_until).count() as u64;
    let expected: State = (0..n_kept).map(|idx| (key(idx), value(idx))).collect();
    assert!(n_kept > 0 && state_of(&db) == expected, "reopened: not the first {n_kept} writes");
    db.put(b"after reopen", b"writable again").expect("a reopened database takes writes");
}

#[test]
fn failed_write_of_the_background_log_writer_poisons() {
    let dir = fast_tempdir();
    let index_dir = dir.path().join("index");
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Never).background_log_writer(true), &storage, &index_dir).expect("open");
    let key = |idx: u64| format!("key {idx:05}").into_bytes();
    let value = |idx: u64| pattern(1000, idx);
    storage.fail_next_writes(1);
    // The background writer wakes every 1/16 of the memory (64 KiB here) and hits the
    // failure; writers then see the poison.
    let mut idx = 0u64;
    let error = loop {
        assert!(idx < 100_000, "the background writer never wrote");
        match db.put(key(idx), value(idx)) {
            Ok(()) => idx += 1,
            Err(error) => break error,
        }
    };
    assert!(matches!(error, Error::Poisoned | Error::Io { .. }), "{error:?}");
    assert!(db.stats().poisoned);
    for idx in (0..idx).step_by(13) {
        assert_eq!(db.get(key(idx)).expect("reads keep working"), Some(value(idx)));
    }
    drop(db);
    let db = open_mem(options(SyncMode::Never), &storage, &index_dir).expect("reopen");
    let state = state_of(&db);
    assert!((0..state.len() as u64).all(|idx| state.get(&key(idx)) == Some(&value(idx))), "a prefix of the writes");
}

#[test]
fn failed_write_of_a_durable_put_poisons_and_keeps_the_acknowledged() {
    let seed = test_seed("failed_write_of_a_durable_put_poisons_and_keeps_the_acknowledged");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, &dir.path().join("index")).expect("open");
    let mut acknowledged = State::new();
    acknowledged_writes(&db, &mut acknowledged, &mut rng, 50);
    storage.fail_next_writes(1);
    let failed = db.put(b"doomed", b"never written");
    assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
    assert!(db.stats().poisoned);
    assert!(matches!(db.put(b"later", b"value"), Err(Error::Poisoned)));
    for (key, value) in &acknowledged {
        assert_eq!(db.get(key).expect("get").as_ref(), Some(value));
    }
    let index_dir = dir.path().join("index-crashed");
    assert!(state_after_crash(&storage, CrashMode::DropUnsynced, &index_dir) == acknowledged);
}

/// The writes of the tear tests, generated up front so the state after any prefix can be
/// rebuilt.
#[derive(Clone, Debug)]
enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

fn random_writes(rng: &mut SplitMix64, n_writes: usize, max_value_len: usize, tag: u64) -> Vec<Write> {
    (0..n_writes)
        .map(|idx| {
            let tag = tag + idx as u64;
            let key = |rng: &mut SplitMix64| format!("key {}", rng.below(40)).into_bytes();
            match rng.below(8) {
                0 => Write::Delete(key(rng)),
                1 => Write::Batch(
                    (0..rng.between(2, 5))
                        .map(|member| {
                            let value =
                                (rng.below(4) != 0).then(|| pattern(rng.between(0, 600), tag * 8 + member as u64));
                            (key(rng), value)
                        })
                        .collect(),
                ),
                _ => Write::Put(key(rng), pattern(rng.between(0, max_value_len), tag)),
            }
        })
        .collect()
}

fn apply(db: &Db, write: &Write) -> talus_engine::Result<()> {
    match write {
        Write::Put(key, value) => db.put(key, value),
        Write::Delete(key) => db.delete(key),
        Write::Batch(members) => {
            let mut batch = WriteBatch::new();
            for (key, value) in members {
                match value {
                    Some(value) => batch.put(key, value),
                    None => batch.delete(key),
                };
            }
            db.write(batch)
        }
    }
}

fn apply_to_model(state: &mut State, write: &Write) {
    match write {
        Write::Put(key, value) => {
            state.insert(key.clone(), value.clone());
        }
        Write::Delete(key) => {
            state.remove(key);
        }
        Write::Batch(members) => {
            for (key, value) in members {
                match value {
                    Some(value) => state.insert(key.clone(), value.clone()),
                    None => state.remove(key),
                };
            }
        }
    }
}

/// The number of writes whose state `found` is, looking among prefixes `from..=to` of
/// `writes` (`None` if it is none of them).
fn matching_prefix(writes: &[Write], found: &State, from: usize, to: usize) -> Option<usize> {
    let mut state = State::new();
    for write in &writes[..from] {
        apply_to_model(&mut state, write);
    }
    for n_writes in from..=to.min(writes.len()) {
        if &state == found {
            return Some(n_writes);
        }
        if let Some(write) = writes.get(n_writes) {
            apply_to_model(&mut state, write);
        }
    }
    None
}

const N_TEAR_SEEDS: u64 = 12;

/// Durable writes across several segments, then `n_writes` random writes in `sync_mode`.
fn durable_then(
    rng: &mut SplitMix64,
    storage: &MemStorage,
    index_dir: &Path,
    sync_mode: SyncMode,
    n_writes: usize,
) -> (Vec<Write>, Vec<Write>, Db) {
    let durable = random_writes(rng, 150, 8 << 10, 0);
    let db = open_mem(options(SyncMode::Always), storage, index_dir).expect("open");
    for write in &durable {
        apply(&db, write).expect("durable write");
    }
    assert!(db.stats().n_segments >= 2);
    db.close().expect("close");
    let more = random_writes(rng, n_writes, 24 << 10, 1 << 20);
    let db = open_mem(options(sync_mode), storage, index_dir).expect("reopen");
    for write in &more {
        apply(&db, write).expect("write");
    }
    (durable, more, db)
}

#[test]
fn tear_crash_after_durable_writes_keeps_every_acknowledged_write() {
    let seed = test_seed("tear_crash_after_durable_writes_keeps_every_acknowledged_write");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let storage = MemStorage::new();
    let (durable, more, db) = durable_then(&mut rng, &storage, &dir.path().join("index"), SyncMode::Always, 300);
    let expected = matching_state(&durable.iter().chain(&more).cloned().collect::<Vec<_>>());
    assert!(db.stats().n_segments >= 4);
    for tear_seed in (0..N_TEAR_SEEDS).map(|idx| seed ^ idx) {
        let index_dir = dir.path().join(format!("index-tear-{tear_seed}"));
        let found = state_after_crash(&storage, CrashMode::Tear { seed: tear_seed }, &index_dir);
        assert!(found == expected, "seed {seed}, tear seed {tear_seed}: acknowledged writes lost");
    }
}

/// Writes in `SyncMode::Never` reach the segment files as memory fills, and are never
/// synced; a power loss may then keep any prefix of each file's unsynced writes (the disk
/// writes files back in no particular order). The database must open after it, with every
/// durable write and a prefix of the rest.
#[test]
fn tear_crash_of_unsynced_writes_in_several_segments_opens_to_a_prefix() {
    let seed = test_seed("tear_crash_of_unsynced_writes_in_several_segments_opens_to_a_prefix");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let storage = MemStorage::new();
    let (durable, unsynced, db) = durable_then(&mut rng, &storage, &dir.path().join("index"), SyncMode::Never, 300);
    for write in &unsynced {
        apply(&db, write).expect("unsynced write");
    }
    let stats = db.stats();
    assert!(stats.log_written_until > stats.log_synced_until, "unsynced bytes are in the files");
    let all: Vec<Write> = durable.iter().chain(&unsynced).cloned().collect();
    for tear_seed in (0..N_TEAR_SEEDS).map(|idx| seed ^ idx) {
        let crashed = storage.crash(CrashMode::Tear { seed: tear_seed });
        let index_dir = dir.path().join(format!("index-unsynced-tear-{tear_seed}"));
        let db = open_mem(options(SyncMode::Never), &crashed, &index_dir).unwrap_or_else(|error| {
            panic!("seed {seed}, tear seed {tear_seed}: a power loss with unsynced writes does not open: {error}")
        });
        let found = state_of(&db);
        let n_kept = matching_prefix(&all, &found, durable.len(), all.len());
        assert!(
            n_kept.is_some(),
            "seed {seed}, tear seed {tear_seed}: not the durable writes and a prefix of the rest"
        );
        db.simulate_crash();
    }
}

fn matching_state(writes: &[Write]) -> State {
    let mut state = State::new();
    for write in writes {
        apply_to_model(&mut state, write);
    }
    state
}

/// Crashes (torn, or dropping everything unsynced) taken while a writer is in the middle of
/// durable writes: every write acknowledged before the crash is there, and at most the one
/// in flight besides. The log stays in one segment: `MemStorage::crash` copies one file at a
/// time, so with a writer running, files copied at different instants could show a state no
/// real crash leaves.
#[test]
fn crash_during_durable_writes_keeps_every_acknowledged_write() {
    const N_CRASHES: usize = 16;
    let seed = test_seed("crash_during_durable_writes_keeps_every_acknowledged_write");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let storage = MemStorage::new();
    let writes = random_writes(&mut rng, 600, 200, 0);
    let db = open_mem(options(SyncMode::Always), &storage, &dir.path().join("index")).expect("open");
    let n_acknowledged = AtomicUsize::new(0);
    let crashes = std::thread::scope(|scope| {
        scope.spawn(|| {
            for (idx, write) in writes.iter().enumerate() {
                apply(&db, write).expect("durable write");
                n_acknowledged.store(idx + 1, Ordering::Release);
            }
        });
        let mut crashes = Vec::new();
        for crash_idx in 0..N_CRASHES {
            let target = writes.len() * crash_idx / N_CRASHES;
            while n_acknowledged.load(Ordering::Acquire) < target {
                std::thread::yield_now();
            }
            let mode = match crash_idx % 2 {
                0 => CrashMode::Tear { seed: seed ^ crash_idx as u64 },
                _ => CrashMode::DropUnsynced,
            };
            let before = n_acknowledged.load(Ordering::Acquire);
            let crashed = storage.crash(mode);
            let after = n_acknowledged.load(Ordering::Acquire);
            crashes.push((mode, before, after, crashed));
        }
        crashes
    });
    assert_eq!(db.stats().n_segments, 1, "the log stays in one segment (see above)");
    for (crash_idx, (mode, before, after, crashed)) in crashes.into_iter().enumerate() {
        let index_dir = dir.path().join(format!("index-{crash_idx}"));
        let reopened = open_mem(options(SyncMode::Never), &crashed, &index_dir)
            .unwrap_or_else(|error| panic!("seed {seed}: crash {crash_idx} ({mode:?}) does not open: {error}"));
        let found = state_of(&reopened);
        let n_kept = matching_prefix(&writes, &found, before, after + 1);
        assert!(
            n_kept.is_some(),
            "seed {seed}: crash {crash_idx} ({mode:?}) after {before}..={after} acknowledged writes: \
             not a prefix of at least the acknowledged ones"
        );
        reopened.simulate_crash();
    }
}

#[test]
fn group_commit_makes_every_concurrent_durable_put_durable() {
    const N_THREADS: usize = 4;
    const N_PUTS: usize = 150;
    const N_CRASHES: usize = 8;
    let dir = fast_tempdir();
    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Always), &storage, &dir.path().join("index")).expect("open");
    let key = |thread: usize, idx: usize| format!("thread {thread} put {idx:04}").into_bytes();
    let value = |thread: usize, idx: usize| pattern(100 + idx % 50, (thread * N_PUTS + idx) as u64);
    let n_acknowledged: Vec<AtomicUsize> = (0..N_THREADS).map(|_| AtomicUsize::new(0)).collect();
    let crashes = std::thread::scope(|scope| {
        for (thread, acknowledged) in n_acknowledged.iter().enumerate() {
            let db = &db;
            scope.spawn(move || {
                for idx in 0..N_PUTS {
                    db.put(key(thread, idx), value(thread, idx)).expect("durable put");
                    acknowledged.store(idx + 1, Ordering::Release);
                }
            });
        }
        // Power losses while the threads write: what each thread was told is durable is.
        let mut crashes = Vec::new();
        for crash_idx in 0..N_CRASHES {
            while n_acknowledged[0].load(Ordering::Acquire) < N_PUTS * crash_idx / N_CRASHES {
                std::thread::yield_now();
            }
            let before: Vec<usize> = n_acknowledged.iter().map(|n| n.load(Ordering::Acquire)).collect();
            let crashed = storage.crash(CrashMode::DropUnsynced);
            let after: Vec<usize> = n_acknowledged.iter().map(|n| n.load(Ordering::Acquire)).collect();
            crashes.push((before, after, crashed));
        }
        crashes
    });
    let stats = db.stats();
    eprintln!(
        "group commit: {} syncs for {} durable writes from {N_THREADS} threads",
        stats.counters.n_syncs, stats.counters.n_durable_writes
    );
    assert_eq!(stats.counters.n_durable_writes, (N_THREADS * N_PUTS) as u64);
    assert_eq!(stats.n_segments, 1, "one segment: `MemStorage::crash` copies one file at a time");

    let check = |crashed: &MemStorage, index_dir: &Path, before: &[usize], after: &[usize], what: &str| {
        let db = open_mem(options(SyncMode::Never), crashed, index_dir).unwrap_or_else(|e| panic!("{what}: {e}"));
        let found = state_of(&db);
        for thread in 0..N_THREADS {
            // Each thread's puts are sequential, so the durable ones are a prefix of them.
            let n_found =
                (0..N_PUTS).take_while(|&idx| found.get(&key(thread, idx)) == Some(&value(thread, idx))).count();
            let n_keys = found.keys().filter(|key| key.starts_with(format!("thread {thread} ").as_bytes())).count();
            assert_eq!(n_keys, n_found, "{what}: thread {thread}'s durable puts are not a prefix");
            assert!(
                (before[thread]..=after[thread] + 1).contains(&n_found),
                "{what}: thread {thread} had {}..={} puts acknowledged, {n_found} survived",
                before[thread],
                after[thread]
            );
        }
        db.simulate_crash();
    };
    for (crash_idx, (before, after, crashed)) in crashes.iter().enumerate() {
        let index_dir = dir.path().join(format!("index-{crash_idx}"));
        check(crashed, &index_dir, before, after, &format!("power loss {crash_idx} during the puts"));
    }
    let all = vec![N_PUTS; N_THREADS];
    let crashed = storage.crash(CrashMode::DropUnsynced);
    check(&crashed, &dir.path().join("index-end"), &all, &all, "power loss after the puts");
}
