//! Acceptance criterion 10: keys that share a 64-bit hash. The test-only option
//! `hash_bits_for_testing` keeps a few bits of every key hash, so thousands of distinct keys
//! land on a handful of hashes; the engine must still tell them apart, through overwrites,
//! deletes, batches, a clean reopen and a crash reopen, and must refuse (with
//! `Error::HashCollisionLimit`, writing nothing) a key that would push one hash past
//! `MAX_KEYS_PER_HASH`.

use std::path::Path;

use talus_engine::{Db, Error, MAX_KEYS_PER_HASH, Options, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, has_pattern, pattern, test_seed};

/// Small memory, so most records are read back from the segment files while the engine
/// compares the keys of colliding candidates.
fn options() -> Options {
    Options::new().memory_budget(1 << 20).segment_size(1 << 20).sync_mode(SyncMode::Never)
}

/// The hash bits the MANIFEST records (docs/format.md: a u32 at offset 68).
fn recorded_hash_bits(dir: &Path) -> u32 {
    let manifest = std::fs::read(dir.join("MANIFEST")).expect("read the MANIFEST");
    u32::from_le_bytes(manifest[68..72].try_into().expect("4 bytes"))
}

fn key_of(idx: usize) -> Vec<u8> {
    format!("collide-{idx}").into_bytes()
}

/// What a key holds in the model: nothing, or a value made from `pattern(len, tag)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    len: usize,
    tag: u64,
}

/// The expected state of keys `0..n`, with values regenerated from their versions.
struct Model {
    versions: Vec<Option<Version>>,
    n_writes: u64,
}

impl Model {
    fn new(n_keys: usize) -> Model {
        Model { versions: vec![None; n_keys], n_writes: 0 }
    }

    /// A fresh value for `idx` (its tag names the key and the write), recorded as current.
    fn next_value(&mut self, idx: usize, rng: &mut SplitMix64) -> Vec<u8> {
        self.n_writes += 1;
        let version = Version { len: rng.between(0, 300), tag: (idx as u64) << 32 | self.n_writes };
        self.versions[idx] = Some(version);
        pattern(version.len, version.tag)
    }

    fn n_live(&self) -> u64 {
        self.versions.iter().filter(|version| version.is_some()).count() as u64
    }

    /// Every key reads back as the model says, the iterator yields exactly the live pairs,
    /// and the key count agrees.
    fn check(&self, db: &Db, when: &str) {
        for (idx, version) in self.versions.iter().enumerate() {
            let found = db.get(key_of(idx)).expect("get");
            match (version, found) {
                (None, None) => {}
                (Some(version), Some(value)) => assert!(
                    value.len() == version.len && has_pattern(&value, version.tag),
                    "{when}: key {idx} reads a value of {} bytes that is not its latest ({version:?})",
                    value.len()
                ),
                (version, found) => {
                    panic!("{when}: key {idx} should hold {version:?} but holds {:?}", found.map(|value| value.len()))
                }
            }
        }
        let mut n_pairs = 0u64;
        for pair in db.iter() {
            let (key, value) = pair.expect("iterate");
            let text = String::from_utf8(key).expect("a key of the test");
            let idx: usize = text.strip_prefix("collide-").and_then(|idx| idx.parse().ok()).expect("a key of the test");
            let version = self.versions[idx].unwrap_or_else(|| panic!("{when}: the iterator yields deleted key {idx}"));
            assert!(has_pattern(&value, version.tag) && value.len() == version.len, "{when}: iterated key {idx}");
            n_pairs += 1;
        }
        assert_eq!(n_pairs, self.n_live(), "{when}: the iterator yields every live key once");
        assert_eq!(db.stats().n_keys, self.n_live(), "{when}: n_keys");
    }

    /// `n_ops` random overwrites, deletes, inserts of deleted keys and batches (which may
    /// name one key more than once; the later operation wins).
    fn random_writes(&mut self, db: &Db, rng: &mut SplitMix64, n_ops: usize) {
        let n_keys = self.versions.len() as u64;
        for _ in 0..n_ops {
            match rng.below(8) {
                0..=3 => {
                    let idx = rng.below(n_keys) as usize;
                    let value = self.next_value(idx, rng);
                    db.put(key_of(idx), value).expect("put");
                }
                4 | 5 => {
                    let idx = rng.below(n_keys) as usize;
                    db.delete(key_of(idx)).expect("delete");
                    self.versions[idx] = None;
                }
                _ => {
                    let mut batch = WriteBatch::new();
                    for _ in 0..rng.between(1, 12) {
                        let idx = rng.below(n_keys) as usize;
                        if rng.below(3) == 0 {
                            batch.delete(key_of(idx));
                            self.versions[idx] = None;
                        } else {
                            let value = self.next_value(idx, rng);
                            batch.put(key_of(idx), value);
                        }
                    }
                    db.write(batch).expect("batch");
                }
            }
        }
    }
}

#[test]
fn twenty_thousand_keys_on_4096_hashes_survive_overwrites_deletes_batches_reopen_and_crash() {
    const N_KEYS: usize = 20_000;
    let seed = test_seed("twenty_thousand_keys_on_4096_hashes");
    let mut rng = SplitMix64::new(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = options().hash_bits_for_testing(12).open(dir.path()).expect("create");
    assert_eq!(recorded_hash_bits(dir.path()), 12, "the MANIFEST records the hash bits at creation");

    // 20,000 keys on at most 4,096 hashes: about five keys per hash.
    let mut model = Model::new(N_KEYS);
    for idx in 0..N_KEYS {
        let value = model.next_value(idx, &mut rng);
        db.put(key_of(idx), value).expect("put");
    }
    model.check(&db, "after inserting");
    model.random_writes(&db, &mut rng, 20_000);
    model.check(&db, "after overwrites, deletes and batches");
    db.close().expect("close");

    // Opened without the option: the recorded 12 bits must still place the keys (were the
    // full hash used now, no key would be found).
    let db = options().open(dir.path()).expect("clean reopen");
    let recovery = db.stats().recovery;
    assert!(recovery.clean && recovery.n_records_replayed == 0, "{recovery:?}");
    assert_eq!(recorded_hash_bits(dir.path()), 12, "a reopen keeps the recorded hash bits");
    model.check(&db, "after a clean reopen");
    model.random_writes(&db, &mut rng, 10_000);
    model.check(&db, "after writes on the reopened database");
    db.sync().expect("sync");
    db.simulate_crash();

    let db = options().hash_bits_for_testing(12).open(dir.path()).expect("reopen after a crash");
    let stats = db.stats();
    let recovery = stats.recovery;
    // Every live key's latest record was replayed (compaction may have removed older ones).
    assert!(!recovery.clean && recovery.n_records_replayed >= stats.n_keys, "{recovery:?}");
    model.check(&db, "after the index was rebuilt from the log");
    model.random_writes(&db, &mut rng, 5_000);
    db.close().expect("close");
    let db = options().hash_bits_for_testing(12).open(dir.path()).expect("clean reopen after the crash");
    model.check(&db, "after a clean reopen following the rebuild");
}

#[test]
fn the_recorded_hash_bits_hold_on_a_reopen_without_the_option() {
    // Pigeonhole: 4,096 hashes with at most MAX_KEYS_PER_HASH keys each hold at most this
    // many keys, so a flood of new keys must hit the limit by then; with full 64-bit hashes
    // it never would.
    const MAX_KEYS_ON_12_BITS: usize = 4_096 * MAX_KEYS_PER_HASH;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = options().hash_bits_for_testing(12).open(dir.path()).expect("create");
    db.put(b"first", b"key").expect("put");
    db.close().expect("close");

    // Enough memory to keep the flood's records in memory: the test is about counting.
    let db = options().memory_budget(16 << 20).open(dir.path()).expect("reopen with default hash bits");
    let mut n_inserted = 1;
    let refused = (0..MAX_KEYS_ON_12_BITS).find(|&idx| match db.put(key_of(idx), b"v") {
        Ok(()) => {
            n_inserted += 1;
            false
        }
        Err(Error::HashCollisionLimit { max }) => {
            assert_eq!(max, MAX_KEYS_PER_HASH);
            true
        }
        Err(error) => panic!("put of key {idx}: {error}"),
    });
    let Some(idx) = refused else {
        panic!("{n_inserted} keys went in without reaching the collision limit: the 12 recorded bits were ignored")
    };
    assert_eq!(db.stats().n_keys, n_inserted, "the refused key was not added");
    expect_refused_put(&db, &key_of(idx));
    eprintln!("the collision limit was reached at key {} of a database with 12-bit hashes", n_inserted + 1);
}

/// Hashing to one bit: two hashes, so at most `2 * MAX_KEYS_PER_HASH` keys fit.
fn one_bit() -> Options {
    options().hash_bits_for_testing(1)
}

/// Puts `key`, expecting `HashCollisionLimit` and nothing written.
fn expect_refused_put(db: &Db, key: &[u8]) {
    let (tail, n_keys) = (db.stats().log_tail, db.stats().n_keys);
    match db.put(key, b"refused") {
        Err(Error::HashCollisionLimit { max }) => assert_eq!(max, MAX_KEYS_PER_HASH),
        other => panic!("put of {:?} should hit the collision limit, got {other:?}", String::from_utf8_lossy(key)),
    }
    assert_eq!(db.stats().log_tail, tail, "a refused put leaves the log tail where it was");
    assert_eq!(db.stats().n_keys, n_keys);
    assert_eq!(db.get(key).expect("get"), None, "a refused key is absent");
}

/// Writes `batch`, expecting `HashCollisionLimit` and nothing written.
fn expect_refused_batch(db: &Db, batch: WriteBatch, what: &str) {
    let tail = db.stats().log_tail;
    match db.write(batch) {
        Err(Error::HashCollisionLimit { max }) => assert_eq!(max, MAX_KEYS_PER_HASH),
        other => panic!("{what}: the batch should hit the collision limit, got {other:?}"),
    }
    assert_eq!(db.stats().log_tail, tail, "{what}: a refused batch leaves the log tail where it was");
}

/// Keys and their values.
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Fills both hashes of a one-bit database: returns the keys stored (with their values)
/// and the index of the next unused candidate key.
fn fill_both_hashes(db: &Db) -> (Pairs, usize) {
    let mut stored = Vec::new();
    let mut idx = 0;
    while stored.len() < 2 * MAX_KEYS_PER_HASH {
        assert!(idx < 10_000, "10,000 candidates did not fill two hashes: {} stored", stored.len());
        let (key, value) = (key_of(idx), format!("value {idx}").into_bytes());
        match db.put(&key, &value) {
            Ok(()) => stored.push((key, value)),
            Err(Error::HashCollisionLimit { .. }) => assert_eq!(db.get(&key).expect("get"), None),
            Err(error) => panic!("put of key {idx}: {error}"),
        }
        idx += 1;
    }
    (stored, idx)
}

fn check_stored(db: &Db, stored: &[(Vec<u8>, Vec<u8>)], when: &str) {
    for (key, value) in stored {
        assert_eq!(db.get(key).expect("get").as_ref(), Some(value), "{when}: {}", String::from_utf8_lossy(key));
    }
    assert_eq!(db.stats().n_keys, stored.len() as u64, "{when}: n_keys");
}

#[test]
fn a_hash_full_of_keys_refuses_new_keys_and_writes_nothing_but_takes_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = one_bit().open(dir.path()).expect("create");
    let (mut stored, mut next_idx) = fill_both_hashes(&db);
    check_stored(&db, &stored, "after filling both hashes");

    // Both hashes are full: every new key is refused, and nothing is written.
    for idx in next_idx..next_idx + 20 {
        expect_refused_put(&db, &key_of(idx));
    }
    next_idx += 20;
    // Existing keys are not new: overwriting every one of them works.
    for (idx, (key, value)) in stored.iter_mut().enumerate() {
        *value = format!("overwritten {idx}").into_bytes();
        db.put(&key, &value).expect("an overwrite of a key on a full hash");
    }
    check_stored(&db, &stored, "after overwriting every key");

    // A batch that overwrites existing keys and adds one new key fails entirely.
    let mut batch = WriteBatch::new();
    batch.put(&stored[0].0, b"not applied").put(&stored[1].0, b"not applied").put(key_of(next_idx), b"new");
    expect_refused_batch(&db, batch, "overwrites and a new key");
    assert_eq!(db.get(key_of(next_idx)).expect("get"), None);
    check_stored(&db, &stored, "after the refused batch");
    // A batch of overwrites and deletes alone goes through.
    let (deleted_key, _) = stored.remove(5);
    stored[0].1 = b"batched overwrite".to_vec();
    let mut batch = WriteBatch::new();
    batch.put(&stored[0].0, &stored[0].1).delete(&deleted_key);
    db.write(batch).expect("a batch without new keys");
    check_stored(&db, &stored, "after a batch of an overwrite and a delete");

    // The delete freed one place on its hash: exactly the candidates on that hash go in
    // now. Find two (taking each out again), then that hash holds MAX_KEYS_PER_HASH - 1.
    let mut on_freed_hash = Vec::new();
    while on_freed_hash.len() < 2 {
        assert!(next_idx < 20_000, "no key found on the freed hash");
        let key = key_of(next_idx);
        next_idx += 1;
        match db.put(&key, b"probe") {
            Ok(()) => {
                db.delete(&key).expect("delete the probe");
                on_freed_hash.push(key);
            }
            Err(Error::HashCollisionLimit { .. }) => {}
            Err(error) => panic!("probe put: {error}"),
        }
    }
    let (first, second) = (&on_freed_hash[0], &on_freed_hash[1]);
    // Two new keys on a hash with one free place: the batch fails entirely.
    let mut batch = WriteBatch::new();
    batch.put(first, b"one").put(second, b"two");
    expect_refused_batch(&db, batch, "two new keys on a hash with one free place");
    assert_eq!(db.get(first).expect("get"), None);
    assert_eq!(db.get(second).expect("get"), None);
    // One of them alone fits, after which the other is refused, alone or in a batch.
    let mut batch = WriteBatch::new();
    batch.put(&stored[1].0, b"with a new key").put(first, b"one");
    db.write(batch).expect("one new key on a hash with one free place");
    stored[1].1 = b"with a new key".to_vec();
    stored.push((first.clone(), b"one".to_vec()));
    check_stored(&db, &stored, "after filling the freed place");
    expect_refused_put(&db, second);
    let mut batch = WriteBatch::new();
    batch.put(&stored[2].0, b"not applied").put(second, b"two");
    expect_refused_batch(&db, batch, "an overwrite and a new key on a full hash");
    check_stored(&db, &stored, "after the second refused batch");

    // The limit holds across a crash reopen (the index rebuilt from the log, which holds
    // probes and deletes) and a clean reopen.
    db.sync().expect("sync");
    db.simulate_crash();
    let db = one_bit().open(dir.path()).expect("reopen after a crash");
    assert!(!db.stats().recovery.clean);
    check_stored(&db, &stored, "after the crash reopen");
    expect_refused_put(&db, second);
    for idx in next_idx..next_idx + 10 {
        expect_refused_put(&db, &key_of(idx));
    }
    db.put(&stored[7].0, b"after the crash").expect("overwrite");
    stored[7].1 = b"after the crash".to_vec();
    db.close().expect("close");
    let db = one_bit().open(dir.path()).expect("clean reopen");
    assert!(db.stats().recovery.clean);
    check_stored(&db, &stored, "after the clean reopen");
    expect_refused_put(&db, second);
}

#[test]
fn a_batch_that_puts_one_new_key_twice_needs_one_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = one_bit().open(dir.path()).expect("create");
    let (stored, mut next_idx) = fill_both_hashes(&db);
    // Free one place, then find a key that goes there (and take it out again).
    db.delete(&stored[0].0).expect("delete");
    let key = loop {
        assert!(next_idx < 20_000, "no key found on the freed hash");
        let key = key_of(next_idx);
        next_idx += 1;
        match db.put(&key, b"probe") {
            Ok(()) => break key,
            Err(Error::HashCollisionLimit { .. }) => {}
            Err(error) => panic!("probe put: {error}"),
        }
    };
    db.delete(&key).expect("delete the probe");
    // The batch adds one key (the later put wins), which fits.
    let mut batch = WriteBatch::new();
    batch.put(&key, b"first").put(&key, b"second");
    db.write(batch).expect("one new key, put twice, fits in one free place");
    assert_eq!(db.get(&key).expect("get").as_deref(), Some(&b"second"[..]));
    assert_eq!(db.stats().n_keys, 2 * MAX_KEYS_PER_HASH as u64);
}
