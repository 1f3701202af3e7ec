//! Acceptance criterion 1: random sequences of puts, deletes, batches, syncs, clean reopens
//! and crash reopens against a `BTreeMap` model. A 1 MiB memory budget and 256 KiB segments
//! make eviction, reads from disk and segment rollover part of many cases; keys come from a
//! small pool per case, so overwrites and deletes usually hit live keys. Most cases keep the
//! log in a `MemStorage` (fast, and it can lose power), a quarter in a real directory.
//!
//! Values are stored in the model as (length, tag) and rebuilt for comparison, so the model
//! stays small while values reach the largest size. The model also computes where the log
//! ends after every write, which says what a crash keeps. After a crash the model rolls back to the newest write that the crash kept: everything
//! written to the files (a killed process) or everything synced (a power loss, `MemStorage`
//! only); the engine must then hold exactly that state.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use talus_engine::storage::{CrashMode, MemStorage};
use talus_engine::{Db, SyncMode, WriteBatch};
use talus_testkit::{pattern, test_seed};

use crate::support::{MEMORY_BUDGET, options, try_fast_tempdir};

/// Log pages: a quarter of the memory; a record that does not fit in a page's rest starts
/// the next page, after a filler.
const PAGE_SIZE: u64 = MEMORY_BUDGET / 4;
/// Values are mostly small; a third of them are at least this large.
const LARGE_VALUE_MIN: usize = 64 << 10;
const MAX_KEY_LEN_IN_TEST: usize = 300;
const MAX_SMALL_VALUE_LEN: usize = 300;
/// After every operation the keys it wrote and one more pool key are read back; every pool
/// key after this many operations and after every reopen; the whole database (`iter`
/// included) after every crash reopen and at the end. `iter` walks the whole index, which
/// is large however few keys it holds.
const CHECK_KEYS_EVERY: usize = 8;
/// Bytes of the ring's entry header and of the record header in front of every key.
const ENTRY_HEADER_LEN: usize = 8;
const RECORD_HEADER_LEN: usize = 24;
/// Values repeat a block of this many bytes (a prime, so a shifted copy does not match).
const VALUE_BLOCK_LEN: usize = 1021;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// The log in a `MemStorage` (fast; power losses can be simulated).
    Memory,
    /// The log in a real temporary directory.
    Files,
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: Index,
        value_len: usize,
    },
    Delete {
        key: Index,
    },
    /// `None` deletes.
    Batch(Vec<(Index, Option<usize>)>),
    Sync,
    /// `close`, then open: nothing replayed.
    CleanReopen,
    /// `simulate_crash` (after a `sync` if `sync_first`), then open. `power_loss` drops what
    /// was not synced (with `MemStorage`; the file system backend only loses the process).
    CrashReopen {
        sync_first: bool,
        power_loss: bool,
    },
}

#[derive(Clone, Debug)]
struct Case {
    backend: Backend,
    sync_mode: SyncMode,
    keys: Vec<Vec<u8>>,
    ops: Vec<Op>,
}

/// A value as the model holds it; [`Value::bytes`] makes the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Value {
    len: usize,
    /// Unique per write in a case.
    tag: u64,
}

impl Value {
    /// `len` bytes that differ for every tag: testkit's pattern over a short block, repeated
    /// (generating and comparing a whole 190 KiB pattern byte by byte is slow in a debug
    /// build, and the case checks values many times).
    fn bytes(&self) -> Vec<u8> {
        let block = pattern(self.len.min(VALUE_BLOCK_LEN), self.tag);
        let mut bytes = block.repeat(self.len.div_ceil(VALUE_BLOCK_LEN));
        bytes.truncate(self.len);
        bytes
    }
}

type Model = BTreeMap<Vec<u8>, Value>;

fn key() -> impl Strategy<Value = Vec<u8>> {
    // Tiny keys over a tiny alphabet (the empty key included) as well as long random ones.
    prop_oneof![vec(0..3u8, 0..=3), vec(any::<u8>(), 0..=MAX_KEY_LEN_IN_TEST)]
}

fn value_len(max_value_len: usize) -> impl Strategy<Value = usize> {
    prop_oneof![2 => 0..=MAX_SMALL_VALUE_LEN, 1 => LARGE_VALUE_MIN..=max_value_len]
}

fn op(max_value_len: usize) -> impl Strategy<Value = Op> {
    // Reopens are rare: each costs as much as dozens of other operations (it builds or
    // checks an index of hundreds of files).
    prop_oneof![
        20 => (any::<Index>(), value_len(max_value_len)).prop_map(|(key, value_len)| Op::Put { key, value_len }),
        8 => any::<Index>().prop_map(|key| Op::Delete { key }),
        6 => vec((any::<Index>(), proptest::option::weighted(0.75, value_len(max_value_len))), 1..6).prop_map(Op::Batch),
        2 => Just(Op::Sync),
        1 => Just(Op::CleanReopen),
        2 => (any::<bool>(), any::<bool>())
            .prop_map(|(sync_first, power_loss)| Op::CrashReopen { sync_first, power_loss }),
    ]
}

fn case(max_value_len: usize) -> impl Strategy<Value = Case> {
    let backend = prop_oneof![3 => Just(Backend::Memory), 1 => Just(Backend::Files)];
    let sync_mode = prop_oneof![7 => Just(SyncMode::Never), 1 => Just(SyncMode::Always)];
    (backend, sync_mode, vec(key(), 1..16), vec(op(max_value_len), 1..64))
        .prop_map(|(backend, sync_mode, keys, ops)| Case { backend, sync_mode, keys, ops })
}

/// Turns an engine error into a test failure that says what was being done.
fn fail(context: &str) -> impl FnOnce(talus_engine::Error) -> TestCaseError + '_ {
    move |error| TestCaseError::fail(format!("{context}: {error}"))
}

/// What the cases saw, summed over the run, to show that the interesting paths ran.
#[derive(Default)]
struct Coverage {
    n_cases: Cell<u64>,
    n_cases_evicting: Cell<u64>,
    n_cases_reading_disk: Cell<u64>,
    n_cases_rolling_segments: Cell<u64>,
    n_crash_reopens: Cell<u64>,
    n_crashes_losing_writes: Cell<u64>,
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get() + n);
}

/// One case: the database, the model, and what a crash may roll back to.
struct Harness<'c> {
    case: &'c Case,
    dir: tempfile::TempDir,
    /// The log's storage for [`Backend::Memory`].
    storage: Option<MemStorage>,
    db: Option<Db>,
    model: Model,
    /// Where the log ends, as the model computes it (checked against the engine's
    /// `stats().log_tail` now and then, which is too slow to ask after every write).
    log_tail: u64,
    /// Since the last open: the log's end after each write and the model after it, oldest
    /// first; the first entry is the state at open.
    history: Vec<(u64, Model)>,
    n_writes: u64,
    /// Whether any open of this case evicted, read from disk, or made a second segment.
    evicted: bool,
    read_disk: bool,
    rolled_segments: bool,
    n_crash_reopens: u64,
    n_crashes_losing_writes: u64,
}

impl<'c> Harness<'c> {
    fn new(case: &'c Case) -> Result<Self, TestCaseError> {
        let dir = try_fast_tempdir().map_err(|error| TestCaseError::fail(format!("tempdir: {error}")))?;
        let storage = (case.backend == Backend::Memory).then(MemStorage::new);
        let mut harness = Harness {
            case,
            dir,
            storage,
            db: None,
            model: Model::new(),
            log_tail: 0,
            history: Vec::new(),
            n_writes: 0,
            evicted: false,
            read_disk: false,
            rolled_segments: false,
            n_crash_reopens: 0,
            n_crashes_losing_writes: 0,
        };
        harness.open()?;
        Ok(harness)
    }

    fn open(&mut self) -> Result<(), TestCaseError> {
        let options = options(self.case.sync_mode);
        let db = match &self.storage {
            Some(storage) => options.open_with_storage(Arc::new(storage.clone()), self.dir.path().join("index")),
            None => options.open(self.dir.path()),
        }
        .map_err(fail("open"))?;
        self.log_tail = db.stats().log_tail;
        self.history = vec![(self.log_tail, self.model.clone())];
        self.db = Some(db);
        Ok(())
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("the database is open between operations")
    }

    fn key(&self, idx: &Index) -> Vec<u8> {
        idx.get(&self.case.keys).clone()
    }

    fn next_value(&mut self, len: usize) -> Value {
        self.n_writes += 1;
        Value { len, tag: self.n_writes }
    }

    /// Moves the model's log tail past one record: the next page holds it if the rest of
    /// this one does not (a filler covers the rest).
    fn append_record(&mut self, key: &[u8], value_len: usize) {
        let size = (ENTRY_HEADER_LEN + (RECORD_HEADER_LEN + key.len() + value_len).next_multiple_of(8)) as u64;
        if self.log_tail % PAGE_SIZE + size > PAGE_SIZE {
            self.log_tail = self.log_tail.next_multiple_of(PAGE_SIZE);
        }
        self.log_tail += size;
    }

    /// Records a write the engine acknowledged.
    fn after_write(&mut self) {
        self.history.push((self.log_tail, self.model.clone()));
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Put { key, value_len } => {
                let (key, value) = (self.key(key), self.next_value(*value_len));
                self.db().put(&key, value.bytes()).map_err(fail("put"))?;
                self.append_record(&key, value.len);
                self.model.insert(key.clone(), value);
                self.after_write();
                self.check_key(&key)?;
            }
            Op::Delete { key } => {
                let key = self.key(key);
                self.db().delete(&key).map_err(fail("delete"))?;
                if self.model.remove(&key).is_some() {
                    self.append_record(&key, 0); // deleting an absent key writes nothing
                }
                self.after_write();
                self.check_key(&key)?;
            }
            Op::Batch(items) => {
                let mut batch = WriteBatch::new();
                let mut touched = Vec::new();
                for (key, value_len) in items {
                    let key = self.key(key);
                    match value_len {
                        Some(len) => {
                            let value = self.next_value(*len);
                            batch.put(&key, value.bytes());
                            self.append_record(&key, value.len);
                            self.model.insert(key.clone(), value);
                        }
                        None => {
                            batch.delete(&key);
                            self.append_record(&key, 0); // in a batch, even an absent key's
                            self.model.remove(&key);
                        }
                    }
                    touched.push(key);
                }
                self.db().write(batch).map_err(fail("write a batch"))?;
                self.after_write();
                for key in &touched {
                    self.check_key(key)?;
                }
            }
            Op::Sync => {
                self.db().sync().map_err(fail("sync"))?;
                let stats = self.db().stats();
                prop_assert_eq!(stats.log_synced_until, self.log_tail);
            }
            Op::CleanReopen => {
                let db = self.db.take().expect("open");
                let log_end = self.log_tail;
                self.note_coverage(&db);
                db.close().map_err(fail("close"))?;
                self.open()?;
                let stats = self.db().stats();
                prop_assert!(stats.recovery.clean, "a clean close opens clean: {:?}", stats.recovery);
                prop_assert_eq!(stats.recovery.n_records_replayed, 0);
                prop_assert_eq!(stats.log_tail, log_end);
                self.check_keys()?;
                self.verify()?;
            }
            Op::CrashReopen { sync_first, power_loss } => self.crash_reopen(*sync_first, *power_loss)?,
        }
        Ok(())
    }

    fn crash_reopen(&mut self, sync_first: bool, power_loss: bool) -> Result<(), TestCaseError> {
        let db = self.db.take().expect("open");
        if sync_first {
            db.sync().map_err(fail("sync before the crash"))?;
        }
        self.note_coverage(&db);
        let stats = db.stats();
        prop_assert_eq!(stats.log_tail, self.log_tail, "the log ends where the model says");
        let power_loss = power_loss && self.storage.is_some();
        let survives_until = if power_loss { stats.log_synced_until } else { stats.log_written_until };
        db.simulate_crash();
        if let Some(storage) = &mut self.storage {
            let mode = if power_loss { CrashMode::DropUnsynced } else { CrashMode::KeepUnsynced };
            *storage = storage.crash(mode);
        }
        // The newest write whose bytes all survived; the first entry (the state at open) always has.
        let (min_end, _) =
            self.history.iter().rev().find(|(end, _)| *end <= survives_until).expect("the state at open survives");
        let min_end = *min_end;
        let history = std::mem::take(&mut self.history);
        self.open()?;
        let stats = self.db().stats();
        prop_assert!(!stats.recovery.clean, "a crash reopens unclean");
        // The background log writer (not with `Always`) may have written (and, moving to a
        // new segment, synced) more between the stats above and the crash: any later write
        // may have survived, as long as the state is exactly the one after it.
        let (log_end, kept) = match self.case.sync_mode == SyncMode::Always {
            true => history.iter().rev().find(|(end, _)| *end == min_end),
            false => history.iter().rev().find(|(end, _)| *end <= stats.log_tail && *end >= min_end),
        }
        .expect("a write the log can end after");
        let (log_end, kept) = (*log_end, kept.clone());
        self.n_crash_reopens += 1;
        self.n_crashes_losing_writes += u64::from(log_end < self.log_tail);
        self.model = kept.clone();
        self.history = vec![(stats.log_tail, kept)];
        // The log ends after the last write that survived, or after the filler that followed it.
        let ends_in_filler = stats.log_tail > log_end
            && stats.log_tail.is_multiple_of(PAGE_SIZE)
            && stats.log_tail - log_end < PAGE_SIZE;
        prop_assert!(
            stats.log_tail == log_end || ends_in_filler,
            "the log ends at {} after a crash, the last write that survived at {}",
            stats.log_tail,
            log_end
        );
        self.check_all()?;
        self.verify()
    }

    /// `Db::verify` finds nothing wrong, and as many live records as the model has keys.
    fn verify(&mut self) -> Result<(), TestCaseError> {
        let n_keys = self.model.len() as u64;
        let report = self.db.as_mut().expect("open").verify().map_err(fail("verify"))?;
        prop_assert!(report.is_ok(), "verify after a reopen: {:?}", report.problems);
        prop_assert_eq!(report.n_live_records, n_keys);
        prop_assert_eq!(report.n_index_entries, n_keys);
        Ok(())
    }

    fn note_coverage(&mut self, db: &Db) {
        let stats = db.stats();
        self.evicted |= stats.counters.n_evicted > 0;
        self.read_disk |= stats.counters.n_disk_reads > 0;
        self.rolled_segments |= stats.n_segments > 1;
    }

    fn check_key(&self, key: &[u8]) -> Result<(), TestCaseError> {
        let found = self.db().get(key).map_err(fail("get"))?;
        match (found, self.model.get(key)) {
            (None, None) => {}
            (Some(found), Some(value)) => check_value(key, &found, value)?,
            (found, expected) => {
                return Err(TestCaseError::fail(format!(
                    "key {key:?}: the engine has a value of {:?} bytes, the model {expected:?}",
                    found.map(|found| found.len())
                )));
            }
        }
        Ok(())
    }

    /// Every pool key, the key count and the log's end against the model.
    fn check_keys(&self) -> Result<(), TestCaseError> {
        for key in &self.case.keys {
            self.check_key(key)?;
        }
        let stats = self.db().stats();
        prop_assert_eq!(stats.n_keys, self.model.len() as u64);
        prop_assert_eq!(stats.log_tail, self.log_tail, "the log ends where the model says");
        if self.case.sync_mode == SyncMode::Always {
            prop_assert_eq!(stats.log_synced_until, stats.log_tail, "acknowledged writes are durable");
        }
        Ok(())
    }

    /// As [`check_keys`](Self::check_keys), and the whole iteration.
    fn check_all(&self) -> Result<(), TestCaseError> {
        self.check_keys()?;
        let mut pairs = self.db().iter().collect::<Result<Vec<_>, _>>().map_err(fail("iter"))?;
        pairs.sort();
        let keys: Vec<&Vec<u8>> = pairs.iter().map(|(key, _)| key).collect();
        let model_keys: Vec<&Vec<u8>> = self.model.keys().collect();
        prop_assert_eq!(keys, model_keys, "iter yields exactly the model's keys");
        for ((key, found), value) in pairs.iter().zip(self.model.values()) {
            check_value(key, found, value)?;
        }
        Ok(())
    }
}

fn check_value(key: &[u8], found: &[u8], expected: &Value) -> Result<(), TestCaseError> {
    prop_assert!(
        found == expected.bytes(),
        "key {:?}: {} bytes that are not the value of write {} ({} bytes)",
        key,
        found.len(),
        expected.tag,
        expected.len
    );
    Ok(())
}

fn run_case(case: &Case, coverage: &Coverage) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(case)?;
    for (op_idx, op) in case.ops.iter().enumerate() {
        harness.run(op).map_err(|error| TestCaseError::fail(format!("op {op_idx} ({op:?}): {error}")))?;
        let bystander = &case.keys[op_idx % case.keys.len()];
        harness.check_key(bystander).map_err(|error| TestCaseError::fail(format!("after op {op_idx}: {error}")))?;
        if (op_idx + 1) % CHECK_KEYS_EVERY == 0 {
            harness.check_keys().map_err(|error| TestCaseError::fail(format!("after op {op_idx}: {error}")))?;
        }
    }
    harness.check_all()?;
    let db = harness.db.take().expect("open");
    harness.note_coverage(&db);
    db.close().map_err(fail("close at the end"))?;
    add(&coverage.n_cases, 1);
    add(&coverage.n_cases_evicting, u64::from(harness.evicted));
    add(&coverage.n_cases_reading_disk, u64::from(harness.read_disk));
    add(&coverage.n_cases_rolling_segments, u64::from(harness.rolled_segments));
    add(&coverage.n_crash_reopens, harness.n_crash_reopens);
    add(&coverage.n_crashes_losing_writes, harness.n_crashes_losing_writes);
    Ok(())
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (idx, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&seed.wrapping_add(idx as u64).to_le_bytes());
    }
    bytes
}

/// 1,000 cases unless `PROPTEST_CASES` says otherwise.
fn n_cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(1000)
}

#[test]
fn random_operations_match_a_btreemap() {
    let seed = test_seed("random_operations_match_a_btreemap");
    let max_value_len = options(SyncMode::Never).max_value_len();
    assert!(max_value_len > LARGE_VALUE_MIN, "the budget takes values of 64 KiB and more");
    let config = Config { cases: n_cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)));
    let coverage = Coverage::default();
    if let Err(failure) = runner.run(&case(max_value_len), |case| run_case(&case, &coverage)) {
        panic!("seed {seed}: {failure}");
    }
    eprintln!(
        "{} cases: {} evicted, {} read from disk, {} used several segments; {} crash reopens, {} of them lost writes",
        coverage.n_cases.get(),
        coverage.n_cases_evicting.get(),
        coverage.n_cases_reading_disk.get(),
        coverage.n_cases_rolling_segments.get(),
        coverage.n_crash_reopens.get(),
        coverage.n_crashes_losing_writes.get(),
    );
    // The point of the small budget: make sure the cases really leave memory.
    if coverage.n_cases.get() >= 100 {
        assert!(coverage.n_cases_evicting.get() > 0 && coverage.n_cases_reading_disk.get() > 0);
        assert!(coverage.n_cases_rolling_segments.get() > 0 && coverage.n_crashes_losing_writes.get() > 0);
    }
}
