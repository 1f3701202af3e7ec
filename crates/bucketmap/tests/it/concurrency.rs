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
