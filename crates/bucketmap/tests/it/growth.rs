//! Acceptance criteria 2 and 6: growth keeps every entry, crowded windows grow instead of
//! failing, and identical hashes hit a typed limit instead of growing forever.

use talus_bucketmap::{BucketMap, BucketMapConfig, Error, KeyHasher};

#[test]
fn a_million_keys_grow_four_buckets_from_32_cells_without_losing_any() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path()).bucket_bits(2).initial_cells_log2(5).max_search(32);
    let map: BucketMap<u64, u64> = BucketMap::create(config).expect("create");
    const N: u64 = 1_000_000;
    let mut n_resizes = 0;
    let mut n_checks = 0;
    for key in 0..N {
        map.insert(key, key ^ 0xabcd).expect("insert");
        let resizes: u32 = map.stats().iter().map(|bucket| bucket.resizes).sum();
        if resizes != n_resizes {
            n_resizes = resizes;
            n_checks += 1;
            for earlier in 0..=key {
                assert_eq!(map.get(&earlier), Some(earlier ^ 0xabcd), "key {earlier} after growth at {key}");
            }
            for later in key + 1..(key + 1000).min(N) {
                assert_eq!(map.get(&later), None, "key {later} before it was inserted");
            }
        }
    }
    assert_eq!(map.len(), N);
    assert!(n_checks >= 4 * 10, "each bucket grew many times ({n_checks} growths)");
    assert!(map.stats().iter().all(|bucket| bucket.capacity >= N / 4));
}

/// Distinct hashes whose low 8 bits are zero: in a small table every key has the same home.
struct CrowdingHasher;

impl KeyHasher for CrowdingHasher {
    fn hash(&self, key: &[u8], _seed: u64) -> u64 {
        u64::from_le_bytes(key.try_into().expect("u64 keys")) << 8
    }
}

/// Every key gets the very same hash.
struct ConstantHasher;

impl KeyHasher for ConstantHasher {
    fn hash(&self, _key: &[u8], _seed: u64) -> u64 {
        0x5eed_5eed_5eed_5eed
    }
}

#[test]
fn crowded_windows_grow_the_bucket_instead_of_failing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path()).bucket_bits(0).initial_cells_log2(5).max_search(8);
    let map: BucketMap<u64, u64, CrowdingHasher> =
        BucketMap::create_with_hasher(config, CrowdingHasher).expect("create");
    for key in 0..200 {
        map.insert(key, key * 3).expect("crowded inserts grow the bucket");
    }
    for key in 0..200 {
        assert_eq!(map.get(&key), Some(key * 3));
    }
    let stats = map.stats();
    assert!(stats[0].resizes > 0 && stats[0].longest_probe < 8, "{stats:?}");
}

#[test]
fn identical_hashes_hit_a_typed_limit_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let max_search = 8;
    let config = BucketMapConfig::new(dir.path()).bucket_bits(0).initial_cells_log2(5).max_search(max_search);
    let map: BucketMap<u64, u64, ConstantHasher> =
        BucketMap::create_with_hasher(config, ConstantHasher).expect("create");

    // Distinct keys that share a hash: up to max_search of them fit.
    for key in 0..max_search as u64 {
        map.insert(key, key).expect("fits");
    }
    assert!(matches!(map.insert(100, 100), Err(Error::TooManyDuplicates { max_search: 8 })));
    for key in 0..max_search as u64 {
        assert_eq!(map.get(&key), Some(key), "no entry lost");
    }
    assert_eq!(map.get(&100), None);

    // Duplicates of one key: the multimap keeps them apart, up to the same bound.
    for key in 0..max_search as u64 {
        map.remove(&key).expect("remove");
    }
    for value in 0..max_search as u64 {
        map.insert_duplicate(42, value).expect("duplicate fits");
    }
    assert!(matches!(map.insert_duplicate(42, 99), Err(Error::TooManyDuplicates { .. })));
    let mut values = map.values(&42);
    values.sort_unstable();
    assert_eq!(values, (0..max_search as u64).collect::<Vec<_>>());
    assert!(map.replace_if(&42, |&v| v == 3, 300).expect("replace"));
    assert!(!map.replace_if(&42, |&v| v == 1000, 0).expect("replace"));
    let mut removed = map.remove_if(&42, |&v| v % 2 == 0 && v < 100).expect("remove_if");
    removed.sort_unstable();
    assert_eq!(removed, vec![0, 2, 4, 6]);
    let mut left = map.values(&42);
    left.sort_unstable();
    assert_eq!(left, vec![1, 5, 7, 300]);
    assert_eq!(map.len(), 4);
    assert_eq!(map.stats()[0].capacity, 32, "no growth loop");
}
