//! Acceptance criterion 1: random operations against `HashMap`, over 1, 2 and 16 buckets.

use std::collections::HashMap;

use talus_bucketmap::{BucketMap, BucketMapConfig};
use talus_testkit::{SplitMix64, test_seed};

#[test]
fn random_operations_match_a_hashmap() {
    let seed = test_seed("random_operations_match_a_hashmap");
    for bucket_bits in [0, 1, 4] {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = BucketMapConfig::new(dir.path()).bucket_bits(bucket_bits).initial_cells_log2(4).max_search(16);
        let map: BucketMap<u64, u64> = BucketMap::create(config).expect("create");
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut rng = SplitMix64::new(seed ^ u64::from(bucket_bits));
        for op in 0..100_000u64 {
            let key = rng.below(5_000);
            match rng.below(9) {
                0..=2 => assert_eq!(map.insert(key, op).expect("insert"), model.insert(key, op), "insert {key}"),
                3 => {
                    map.update(key, |v| v.map(|v| v + 1)).expect("update");
                    if let Some(v) = model.get_mut(&key) {
                        *v += 1;
                    }
                }
                4 => {
                    // An update that removes odd values and creates absent ones.
                    let f = |v: Option<u64>| match v {
                        Some(v) if v % 2 == 1 => None,
                        Some(v) => Some(v + 2),
                        None => Some(7),
                    };
                    map.update(key, f).expect("update");
                    match f(model.get(&key).copied()) {
                        Some(v) => model.insert(key, v),
                        None => model.remove(&key),
                    };
                }
                5 => assert_eq!(map.remove(&key).expect("remove"), model.remove(&key), "remove {key}"),
                6 => {
                    let expected = model.get(&key).copied();
                    model.entry(key).or_insert(op);
                    assert_eq!(
                        map.insert_if_absent(key, op).expect("insert if absent"),
                        expected,
                        "insert_if_absent {key}"
                    );
                }
                _ => assert_eq!(map.get(&key), model.get(&key).copied(), "get {key}"),
            }
            if op % 10_000 == 9_999 {
                assert_eq!(map.len(), model.len() as u64, "len after {op} operations");
                let mut entries: Vec<(u64, u64)> = map.iter().collect();
                entries.sort_unstable();
                let mut expected: Vec<(u64, u64)> = model.iter().map(|(&k, &v)| (k, v)).collect();
                expected.sort_unstable();
                assert_eq!(entries, expected, "every entry after {op} operations ({bucket_bits} bucket bits)");
            }
        }
        let stats = map.stats();
        assert_eq!(stats.len(), 1 << bucket_bits);
        assert!(stats.iter().all(|bucket| bucket.resizes > 0), "every bucket grew");
        assert_eq!(stats.iter().map(|bucket| bucket.entries).sum::<u64>(), model.len() as u64);
    }
}
