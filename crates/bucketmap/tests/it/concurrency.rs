//! Acceptance criterion 7: threads mixing get, insert and remove on disjoint key sets while
//! buckets grow lose no entry and invent none.

use std::collections::HashMap;

use talus_bucketmap::{BucketMap, BucketMapConfig};
use talus_testkit::{SplitMix64, test_seed};

#[test]
fn threads_on_disjoint_keys_lose_nothing_while_buckets_grow() {
    let seed = test_seed("threads_on_disjoint_keys_lose_nothing_while_buckets_grow");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path()).bucket_bits(2).initial_cells_log2(4).max_search(16);
    let map: BucketMap<u64, u64> = BucketMap::create(config).expect("create");
    let n_threads = 4u64;
    let models: Vec<HashMap<u64, u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_threads)
            .map(|thread| {
                let map = &map;
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ thread);
                    let mut model = HashMap::new();
                    for op in 0..30_000u64 {
                        // Keys of this thread only: k * n_threads + thread.
                        let key = rng.below(8_000) * n_threads + thread;
                        match rng.below(4) {
                            0 | 1 => assert_eq!(map.insert(key, op).expect("insert"), model.insert(key, op)),
                            2 => assert_eq!(map.remove(&key).expect("remove"), model.remove(&key)),
                            _ => assert_eq!(map.get(&key), model.get(&key).copied(), "key {key}"),
                        }
                    }
                    model
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("thread")).collect()
    });
    let expected: usize = models.iter().map(HashMap::len).sum();
    assert_eq!(map.len(), expected as u64);
    for model in &models {
        for (key, value) in model {
            assert_eq!(map.get(key), Some(*value));
        }
    }
    assert_eq!(map.iter().count(), expected, "no phantom entries");
    assert!(map.stats().iter().all(|bucket| bucket.resizes > 0));
}

/// Readers take no lock: they must never miss an entry that stays, see a wrong value, or
/// find a key that was never there, while writers shift clusters back on removal and
/// buckets grow and retire their old tables under them.
#[test]
fn lock_free_readers_see_every_entry_that_stays_while_writers_shift_and_grow() {
    let seed = test_seed("lock_free_readers_see_every_entry_that_stays_while_writers_shift_and_grow");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path()).bucket_bits(1).initial_cells_log2(4).max_search(8);
    let map: BucketMap<u64, u64> = BucketMap::create(config).expect("create");
    let value_of = |key: u64| key.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    // Even keys stay from start to end; writers churn odd keys around them.
    let n_stable = 2_000u64;
    for k in 0..n_stable {
        map.insert(2 * k, value_of(2 * k)).expect("insert");
    }
    let writers_done = std::sync::atomic::AtomicUsize::new(0);
    let n_writers = 2u64;
    let reads: u64 = std::thread::scope(|scope| {
        for thread in 0..n_writers {
            let (map, writers_done) = (&map, &writers_done);
            scope.spawn(move || {
                let mut rng = SplitMix64::new(seed ^ thread);
                for op in 0..100_000u64 {
                    let key = 2 * (rng.below(20_000) * n_writers + thread) + 1;
                    match rng.below(3) {
                        0 | 1 => {
                            map.insert(key, op).expect("insert");
                        }
                        _ => {
                            map.remove(&key).expect("remove");
                        }
                    }
                }
                writers_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let readers: Vec<_> = (0..2u64)
            .map(|thread| {
                let (map, writers_done) = (&map, &writers_done);
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ (thread + 100));
                    let mut reads = 0u64;
                    while writers_done.load(std::sync::atomic::Ordering::SeqCst) < n_writers as usize {
                        let key = 2 * rng.below(n_stable);
                        assert_eq!(map.get(&key), Some(value_of(key)), "stable key {key} (seed {seed})");
                        let mut values = Vec::new();
                        map.for_each_value(&key, |value| values.push(value));
                        assert_eq!(values, [value_of(key)], "stable key {key} (seed {seed})");
                        let absent = 2 * (n_stable + rng.below(1_000_000));
                        assert_eq!(map.get(&absent), None, "absent key {absent} (seed {seed})");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        readers.into_iter().map(|reader| reader.join().expect("reader")).sum()
    });
    assert!(reads > 0);
    assert!(map.stats().iter().all(|bucket| bucket.resizes > 0), "the buckets grew under the readers");
    // Every replaced table's file is gone: one file per bucket is left.
    let files = std::fs::read_dir(dir.path())
        .expect("list")
        .filter(|entry| entry.as_ref().expect("entry").file_name().to_string_lossy().starts_with("bucket-"))
        .count();
    assert_eq!(files, 2);
}
