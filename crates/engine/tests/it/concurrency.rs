//! Acceptance criterion 11: threads doing puts, gets, deletes and batches on overlapping
//! keys, with a memory budget small enough that records are evicted while others read them.
//! Every value read is one some writer wrote for that key; after the writers stop, each key
//! holds its last acknowledged write, also after a crash reopen and a clean reopen; readers
//! never see part of a batch; and everything finishes (a watchdog fails the test if not).

use std::collections::HashMap;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use talus_engine::{Db, Options, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, fill_pattern, has_pattern, test_seed};

/// A run that takes longer than this is taken for a deadlock.
const WATCHDOG: Duration = Duration::from_secs(120);

/// Runs `work` on its own thread and returns what it returns; fails the test if it does
/// not finish within [`WATCHDOG`] (a deadlock or a hang), and re-raises its panic.
fn with_watchdog<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let out = work();
        let _ = done_tx.send(());
        out
    });
    match done_rx.recv_timeout(WATCHDOG) {
        // Disconnected: the work panicked before it could report; join re-raises that.
        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
            worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within {WATCHDOG:?}: a deadlock or a hang"),
    }
}

/// No background compaction: its copies are appended (moving the tail) and made durable
/// only before it retires their segment, so while it runs the durable end may trail the
/// tail, and these tests check that they meet once the writers' acknowledged writes are in.
/// (Compaction beside writer and reader threads is tested in `compaction.rs`.)
///
/// Two open segment files at most: readers of older segments keep closing each other's
/// files and opening them again while the writer appends.
// A regression: a compaction still running when the writers stopped failed the check
// "every acknowledged write is durable" (seed 10866796670332288961, rarely).
fn options(sync_mode: SyncMode) -> Options {
    Options::new()
        .memory_budget(1 << 20)
        .segment_size(1 << 20)
        .sync_mode(sync_mode)
        .background_compaction(false)
        .max_open_segments(2)
}

fn key_of(idx: usize) -> Vec<u8> {
    format!("shared-key-{idx}").into_bytes()
}

/// A value that says who wrote it: `key`, the writer's thread id (u32), its write counter
/// (u64), then a filler pattern tagged with both.
fn make_value(key: &[u8], thread_id: u32, counter: u64, filler_len: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(key.len() + 12 + filler_len);
    value.extend_from_slice(key);
    value.extend_from_slice(&thread_id.to_le_bytes());
    value.extend_from_slice(&counter.to_le_bytes());
    value.resize(key.len() + 12 + filler_len, 0);
    fill_pattern(&mut value[key.len() + 12..], filler_tag(thread_id, counter));
    value
}

/// Who wrote a value, for messages.
fn describe(key: &[u8], value: &Option<Vec<u8>>) -> String {
    match value {
        None => "nothing".to_owned(),
        Some(value) if value.len() >= key.len() + 12 => {
            let thread_id = u32::from_le_bytes(value[key.len()..key.len() + 4].try_into().expect("4 bytes"));
            let counter = u64::from_le_bytes(value[key.len() + 4..key.len() + 12].try_into().expect("8 bytes"));
            format!("the write of thread {thread_id}, counter {counter} ({} bytes)", value.len())
        }
        Some(value) => format!("a value of {} bytes", value.len()),
    }
}

fn filler_tag(thread_id: u32, counter: u64) -> u64 {
    u64::from(thread_id) << 48 | counter
}

/// Who wrote the state of the keys.
struct Writers {
    /// Per thread, the highest write counter it has started (stored before the write).
    started: Vec<AtomicU64>,
}

impl Writers {
    fn new(n_threads: usize) -> Writers {
        Writers { started: (0..n_threads).map(|_| AtomicU64::new(0)).collect() }
    }

    /// Checks that `value`, read for `key`, is one a writer wrote for that key: the key,
    /// a known thread, a counter that thread had started, an intact filler.
    fn validate(&self, key: &[u8], value: &[u8]) {
        let show = || String::from_utf8_lossy(key).into_owned();
        assert!(value.len() >= key.len() + 12, "{}: a value of {} bytes no writer wrote", show(), value.len());
        assert!(value.starts_with(key), "{}: read a value written for another key", show());
        let thread_id = u32::from_le_bytes(value[key.len()..key.len() + 4].try_into().expect("4 bytes"));
        let counter = u64::from_le_bytes(value[key.len() + 4..key.len() + 12].try_into().expect("8 bytes"));
        let started = self
            .started
            .get(thread_id as usize)
            .unwrap_or_else(|| panic!("{}: a value from unknown thread {thread_id}", show()))
            .load(Ordering::Acquire);
        assert!(
            counter <= started,
            "{}: thread {thread_id} never wrote counter {counter} (it is at {started})",
            show()
        );
        assert!(
            has_pattern(&value[key.len() + 12..], filler_tag(thread_id, counter)),
            "{}: the value of thread {thread_id}, counter {counter} is damaged",
            show()
        );
    }
}

/// One writer thread's view: its id, its generator and its counter.
struct Worker<'a> {
    db: &'a Db,
    writers: &'a Writers,
    thread_id: u32,
    rng: SplitMix64,
    counter: u64,
    max_filler_len: usize,
}

impl Worker<'_> {
    /// A new value for `key`, its counter announced before it is written.
    fn next_value(&mut self, key: &[u8]) -> Vec<u8> {
        self.counter += 1;
        self.writers.started[self.thread_id as usize].store(self.counter, Ordering::Release);
        let filler_len = self.rng.between(0, self.max_filler_len);
        make_value(key, self.thread_id, self.counter, filler_len)
    }

    fn read_and_validate(&mut self, key: &[u8]) {
        // Both read paths: a copy, and a borrow of the bytes in place.
        if self.rng.below(2) == 0 {
            if let Some(value) = self.db.get(key).expect("get") {
                self.writers.validate(key, &value);
            }
        } else {
            self.db.get_with(key, |value| self.writers.validate(key, value)).expect("get_with");
        }
    }

    /// Phase 1: anything goes on any key.
    fn chaos(&mut self, n_keys: usize, n_ops: usize) {
        for op_idx in 0..n_ops {
            let key = key_of(self.rng.below(n_keys as u64) as usize);
            match self.rng.below(20) {
                0..=7 => self.read_and_validate(&key),
                8..=12 => {
                    let value = self.next_value(&key);
                    self.db.put(&key, value).expect("put");
                }
                13 | 14 => self.db.delete(&key).expect("delete"),
                _ => {
                    let mut batch = WriteBatch::new();
                    for _ in 0..self.rng.between(1, 8) {
                        let key = key_of(self.rng.below(n_keys as u64) as usize);
                        if self.rng.below(4) == 0 {
                            batch.delete(&key);
                        } else {
                            let value = self.next_value(&key);
                            batch.put(&key, value);
                        }
                    }
                    self.db.write(batch).expect("batch");
                }
            }
            // Now and then a whole (weakly consistent) scan: every pair must be intact.
            if op_idx % 1_000 == 999 && self.thread_id == 0 {
                for pair in self.db.iter() {
                    let (key, value) = pair.expect("iterate");
                    self.writers.validate(&key, &value);
                }
            }
        }
    }

    /// Phase 2: writes go only to this thread's keys (`idx % n_threads == thread_id`), so
    /// the last acknowledged write of each is well defined; reads go anywhere. Returns the
    /// expected state of its keys.
    fn owned_writes(&mut self, n_keys: usize, n_threads: usize, n_ops: usize) -> HashMap<usize, Option<Vec<u8>>> {
        let owned: Vec<usize> = (self.thread_id as usize..n_keys).step_by(n_threads).collect();
        let mut expected = HashMap::new();
        // Every owned key gets a write of this phase, so none keeps a phase-1 value.
        for &idx in &owned {
            let key = key_of(idx);
            if self.rng.below(4) == 0 {
                self.db.delete(&key).expect("delete");
                expected.insert(idx, None);
            } else {
                let value = self.next_value(&key);
                self.db.put(&key, &value).expect("put");
                expected.insert(idx, Some(value));
            }
        }
        for _ in 0..n_ops {
            let idx = owned[self.rng.below(owned.len() as u64) as usize];
            let key = key_of(idx);
            match self.rng.below(10) {
                0..=2 => {
                    // Read your own writes exactly.
                    let found = self.db.get(&key).expect("get");
                    assert!(
                        found == expected[&idx],
                        "key {idx}: the owner expects {} but reads {}",
                        describe(&key, &expected[&idx]),
                        describe(&key, &found)
                    );
                }
                3 | 4 => {
                    let other = key_of(self.rng.below(n_keys as u64) as usize);
                    self.read_and_validate(&other);
                }
                5..=7 => {
                    let value = self.next_value(&key);
                    self.db.put(&key, &value).expect("put");
                    expected.insert(idx, Some(value));
                }
                8 => {
                    self.db.delete(&key).expect("delete");
                    expected.insert(idx, None);
                }
                _ => {
                    let mut batch = WriteBatch::new();
                    for _ in 0..self.rng.between(1, 6) {
                        let idx = owned[self.rng.below(owned.len() as u64) as usize];
                        let key = key_of(idx);
                        if self.rng.below(4) == 0 {
                            batch.delete(&key);
                            expected.insert(idx, None);
                        } else {
                            let value = self.next_value(&key);
                            batch.put(&key, &value);
                            expected.insert(idx, Some(value));
                        }
                    }
                    self.db.write(batch).expect("batch");
                }
            }
        }
        expected
    }
}

fn check_final_state(db: &Db, expected: &HashMap<usize, Option<Vec<u8>>>, when: &str) {
    for (idx, value) in expected {
        let key = key_of(*idx);
        let found = db.get(&key).expect("get");
        assert!(
            &found == value,
            "{when}: key {idx} should hold its last acknowledged write {} but holds {}",
            describe(&key, value),
            describe(&key, &found)
        );
    }
    let n_live = expected.values().filter(|value| value.is_some()).count() as u64;
    assert_eq!(db.stats().n_keys, n_live, "{when}: n_keys");
}

struct MixedRun {
    sync_mode: SyncMode,
    n_threads: usize,
    n_keys: usize,
    n_chaos_ops: usize,
    n_owned_ops: usize,
    max_filler_len: usize,
}

impl MixedRun {
    fn run(self, test_name: &str) {
        let seed = test_seed(test_name);
        let dir = tempfile::tempdir().expect("tempdir");
        let db = options(self.sync_mode).open(dir.path()).expect("open");
        let writers = Writers::new(self.n_threads);
        // Phase 2 starts when every thread has finished phase 1.
        let phase_barrier = Barrier::new(self.n_threads);
        let expected: HashMap<usize, Option<Vec<u8>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.n_threads)
                .map(|thread_id| {
                    let (db, writers, run, phase_barrier) = (&db, &writers, &self, &phase_barrier);
                    scope.spawn(move || {
                        let mut worker = Worker {
                            db,
                            writers,
                            thread_id: thread_id as u32,
                            rng: SplitMix64::new(seed ^ (thread_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                            counter: 0,
                            max_filler_len: run.max_filler_len,
                        };
                        worker.chaos(run.n_keys, run.n_chaos_ops);
                        phase_barrier.wait();
                        worker.owned_writes(run.n_keys, run.n_threads, run.n_owned_ops)
                    })
                })
                .collect();
            handles.into_iter().flat_map(|handle| handle.join().expect("a worker panicked")).collect()
        });
        assert_eq!(expected.len(), self.n_keys, "every key has an owner");
        check_final_state(&db, &expected, "after the threads stopped");
        let stats = db.stats();
        assert!(stats.counters.n_evicted > 0, "records were evicted while threads read: {stats:?}");
        eprintln!(
            "{test_name}: {} records evicted, {} read from disk",
            stats.counters.n_evicted, stats.counters.n_disk_reads
        );
        if self.sync_mode == SyncMode::Always {
            assert_eq!(stats.log_synced_until, stats.log_tail, "every acknowledged write is durable");
            assert!(stats.counters.n_syncs <= stats.counters.n_durable_writes, "{stats:?}");
            eprintln!(
                "{test_name}: {} durable writes shared {} syncs",
                stats.counters.n_durable_writes, stats.counters.n_syncs
            );
        } else {
            db.sync().expect("sync");
        }
        db.simulate_crash();

        let db = options(self.sync_mode).open(dir.path()).expect("reopen after a crash");
        assert!(!db.stats().recovery.clean);
        check_final_state(&db, &expected, "after a crash reopen");
        db.close().expect("close");
        let db = options(self.sync_mode).open(dir.path()).expect("clean reopen");
        assert!(db.stats().recovery.clean);
        check_final_state(&db, &expected, "after a clean reopen");
    }
}

#[test]
fn four_threads_on_shared_keys_read_only_written_values_and_end_at_the_last_writes() {
    with_watchdog("four threads without syncs", || {
        MixedRun {
            sync_mode: SyncMode::Never,
            n_threads: 4,
            n_keys: 2_000,
            n_chaos_ops: 6_000,
            n_owned_ops: 3_000,
            max_filler_len: 2_000,
        }
        .run("four_threads_on_shared_keys")
    });
}

#[test]
fn two_threads_with_group_commit_read_only_written_values_and_end_at_the_last_writes() {
    with_watchdog("two threads with a sync per write", || {
        MixedRun {
            sync_mode: SyncMode::Always,
            n_threads: 2,
            n_keys: 500,
            n_chaos_ops: 600,
            n_owned_ops: 400,
            max_filler_len: 4_000,
        }
        .run("two_threads_with_group_commit")
    });
}

/// Groups of keys that one writer only ever changes together, in one batch, all to the
/// same stamp (which grows by one per batch).
const GROUP_SIZE: usize = 3;

fn group_key(group_idx: usize, member: usize) -> Vec<u8> {
    format!("group-{group_idx}-member-{member}").into_bytes()
}

/// A group member's value: its key, the stamp, and a filler tagged with both.
fn stamped_value(key: &[u8], stamp: u64, filler_len: usize) -> Vec<u8> {
    let mut value = key.to_vec();
    value.extend_from_slice(&stamp.to_le_bytes());
    value.resize(key.len() + 8 + filler_len, 0);
    fill_pattern(&mut value[key.len() + 8..], stamp ^ xxh(key));
    value
}

/// A small stable hash of a key, to tag its fillers.
fn xxh(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The stamp in a group member's value (0: the key has no value yet), checked intact.
fn read_stamp(db: &Db, key: &[u8]) -> u64 {
    let stamp = db.get_with(key, |value| {
        assert!(value.len() >= key.len() + 8 && value.starts_with(key), "a value that is not this key's");
        let stamp = u64::from_le_bytes(value[key.len()..key.len() + 8].try_into().expect("8 bytes"));
        assert!(has_pattern(&value[key.len() + 8..], stamp ^ xxh(key)), "a damaged value");
        stamp
    });
    stamp.expect("get_with").unwrap_or(0)
}

#[test]
fn readers_never_see_part_of_a_batch() {
    const N_GROUPS: usize = 64;
    const N_WRITERS: usize = 2;
    const N_READERS: usize = 2;
    const N_BATCHES_PER_WRITER: usize = 4_000;
    let seed = test_seed("readers_never_see_part_of_a_batch");
    with_watchdog("batch writers and readers", move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = options(SyncMode::Never).open(dir.path()).expect("open");
        let writers_done = AtomicBool::new(false);
        let n_changes_seen = AtomicU64::new(0);
        let final_stamps: Vec<u64> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..N_WRITERS)
                .map(|writer_idx| {
                    let db = &db;
                    scope.spawn(move || {
                        let mut rng = SplitMix64::new(seed ^ (writer_idx as u64 + 1));
                        // Writer `w` owns the groups `g % N_WRITERS == w`.
                        let mut stamps = vec![0u64; N_GROUPS];
                        for _ in 0..N_BATCHES_PER_WRITER {
                            let group_idx = rng.below((N_GROUPS / N_WRITERS) as u64) as usize * N_WRITERS + writer_idx;
                            stamps[group_idx] += 1;
                            let mut members: Vec<usize> = (0..GROUP_SIZE).collect();
                            // A different order of records in the log each time.
                            members.rotate_left(rng.below(GROUP_SIZE as u64) as usize);
                            let mut batch = WriteBatch::new();
                            for member in members {
                                let key = group_key(group_idx, member);
                                let value = stamped_value(&key, stamps[group_idx], rng.between(0, 1_500));
                                batch.put(&key, value);
                            }
                            db.write(batch).expect("batch");
                        }
                        stamps
                    })
                })
                .collect();
            for reader_idx in 0..N_READERS {
                let (db, writers_done, n_changes_seen) = (&db, &writers_done, &n_changes_seen);
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ (reader_idx as u64 + 100));
                    let mut last_seen = vec![0u64; N_GROUPS];
                    while !writers_done.load(Ordering::Acquire) {
                        let group_idx = rng.below(N_GROUPS as u64) as usize;
                        let mut members: Vec<usize> = (0..GROUP_SIZE).collect();
                        members.rotate_left(rng.below(GROUP_SIZE as u64) as usize);
                        if rng.below(2) == 0 {
                            members.reverse();
                        }
                        // Once a member shows stamp s, batch s was applied whole: every
                        // member read after it shows s or later.
                        let mut floor = 0;
                        for member in members {
                            let stamp = read_stamp(db, &group_key(group_idx, member));
                            assert!(
                                stamp >= floor,
                                "group {group_idx}, member {member}: stamp {stamp} after a member at {floor}: \
                                 a reader saw part of a batch"
                            );
                            floor = stamp;
                        }
                        if floor > last_seen[group_idx] {
                            n_changes_seen.fetch_add(1, Ordering::Relaxed);
                        }
                        assert!(floor >= last_seen[group_idx], "group {group_idx} went back in time");
                        last_seen[group_idx] = floor;
                    }
                });
            }
            let joined: Vec<_> = writers.into_iter().map(|writer| writer.join()).collect();
            // Stop the readers before looking at the writers' results, so that a writer's
            // panic fails the test instead of leaving the readers spinning.
            writers_done.store(true, Ordering::Release);
            let mut final_stamps = vec![0u64; N_GROUPS];
            for (writer_idx, joined) in joined.into_iter().enumerate() {
                let stamps = joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                for group_idx in (writer_idx..N_GROUPS).step_by(N_WRITERS) {
                    final_stamps[group_idx] = stamps[group_idx];
                }
            }
            final_stamps
        });
        assert!(n_changes_seen.load(Ordering::Relaxed) > 0, "the readers saw the groups change");
        let stats = db.stats();
        assert!(stats.counters.n_evicted > 0, "records were evicted while readers read: {stats:?}");
        for (group_idx, &stamp) in final_stamps.iter().enumerate() {
            for member in 0..GROUP_SIZE {
                assert_eq!(read_stamp(&db, &group_key(group_idx, member)), stamp, "group {group_idx}, member {member}");
            }
        }
    });
}
