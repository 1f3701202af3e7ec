//! `snapshot_to`: a copy of a live map that opens as a clean map, taken while writers go on
//! (the engine's index checkpoints are built on it).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use talus_bucketmap::{BucketMap, BucketMapConfig, Error};

type Map = BucketMap<u64, u64>;

#[test]
fn a_snapshot_opens_with_every_entry_and_the_source_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path().join("map")).bucket_bits(3).initial_cells_log2(6);
    let map = Map::create(config).expect("create");
    for n in 0..50_000u64 {
        map.insert(n, n * 3).expect("insert");
    }
    let copy_dir = dir.path().join("copy");
    assert_eq!(map.snapshot_to(&copy_dir).expect("snapshot"), 50_000);
    // The source keeps working after the snapshot; the copy does not see what follows.
    map.insert(1_000_000, 1).expect("insert after");
    map.remove(&7).expect("remove after");
    let copy = Map::open(BucketMapConfig::new(&copy_dir)).expect("open the snapshot");
    assert_eq!(copy.len(), 50_000);
    for n in 0..50_000u64 {
        assert_eq!(copy.get(&n), Some(n * 3), "key {n}");
    }
    assert_eq!(copy.get(&1_000_000), None);
    assert_eq!(map.get(&7), None);
    // A second snapshot into the same place is refused; the first stays as it was.
    drop(copy);
    assert!(matches!(map.snapshot_to(&copy_dir), Err(Error::AlreadyExists { .. })));
    assert_eq!(Map::open(BucketMapConfig::new(&copy_dir)).expect("reopen").len(), 50_000);
}

#[test]
fn a_snapshot_during_inserts_and_growth_holds_everything_inserted_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Small buckets, so that they grow while the snapshot is taken.
    let config = BucketMapConfig::new(dir.path().join("map")).bucket_bits(2).initial_cells_log2(5);
    let map = Map::create(config).expect("create");
    for n in 0..20_000u64 {
        map.insert(n, n + 1).expect("insert");
    }
    let inserted_until = AtomicU64::new(20_000);
    let stop = AtomicBool::new(false);
    let copy_dir = dir.path().join("copy");
    let n_copied = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 20_000u64;
            while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                map.insert(n, n + 1).expect("insert during the snapshot");
                n += 1;
                inserted_until.store(n, Ordering::Release);
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(5));
        let before = inserted_until.load(Ordering::Acquire);
        let n_copied = map.snapshot_to(&copy_dir).expect("snapshot");
        stop.store(true, Ordering::Relaxed);
        assert!(n_copied >= before, "{n_copied} entries copied, {before} were in before");
        n_copied
    });
    let copy = Map::open(BucketMapConfig::new(&copy_dir)).expect("open the snapshot");
    assert_eq!(copy.len(), n_copied);
    // Every entry in the copy is one that was inserted, with its value; every key inserted
    // before the snapshot started is there.
    for (key, value) in copy.iter() {
        assert_eq!(value, key + 1);
    }
    for n in 0..20_000u64 {
        assert_eq!(copy.get(&n), Some(n + 1), "key {n}");
    }
}

#[test]
fn a_damaged_snapshot_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let map = Map::create(BucketMapConfig::new(dir.path().join("map")).bucket_bits(1)).expect("create");
    for n in 0..1000u64 {
        map.insert(n, n).expect("insert");
    }
    let copy_dir = dir.path().join("copy");
    map.snapshot_to(&copy_dir).expect("snapshot");
    let bucket_file = std::fs::read_dir(&copy_dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.extension().is_some_and(|ext| ext == "pool"))
        .expect("a bucket file");
    let mut bytes = std::fs::read(&bucket_file).expect("read");
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    std::fs::write(&bucket_file, &bytes).expect("write");
    let result = Map::open(BucketMapConfig::new(&copy_dir));
    assert!(result.is_err(), "a flipped bit in a snapshot's bucket opens: {:?}", result.map(|map| map.len()));
}

/// `snapshot_to_with` calls back before each bucket's copy: every key inserted before the
/// call for its bucket (`bucket_index`) is in the copy, while inserts and growth go on.
#[test]
fn each_bucket_copy_holds_what_was_inserted_before_its_callback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path().join("map")).bucket_bits(3).initial_cells_log2(5);
    let map = Map::create(config).expect("create");
    assert_eq!(map.n_buckets(), 8);
    let inserted_until = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let copy_dir = dir.path().join("copy");
    let mut marks = vec![None; map.n_buckets()];
    let mut n_calls = 0;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                map.insert(n, n + 1).expect("insert during the snapshot");
                n += 1;
                inserted_until.store(n, Ordering::Release);
            }
        });
        while inserted_until.load(Ordering::Acquire) < 10_000 {
            std::thread::yield_now();
        }
        map.snapshot_to_with(&copy_dir, |idx| {
            marks[idx] = Some(inserted_until.load(Ordering::Acquire));
            n_calls += 1;
        })
        .expect("snapshot");
        stop.store(true, Ordering::Relaxed);
    });
    assert!(n_calls >= map.n_buckets(), "a call per bucket at least");
    let marks: Vec<u64> = marks.into_iter().map(|mark| mark.expect("every bucket called back")).collect();
    assert!(marks.windows(2).all(|pair| pair[0] <= pair[1]), "buckets are copied in order: {marks:?}");
    let copy = Map::open(BucketMapConfig::new(&copy_dir)).expect("open the snapshot");
    let until = *marks.iter().max().expect("marks");
    for n in 0..until {
        if n < marks[map.bucket_index(&n)] {
            assert_eq!(copy.get(&n), Some(n + 1), "key {n}, inserted before its bucket's callback");
        }
    }
    assert_eq!(copy.bucket_index(&12_345), map.bucket_index(&12_345), "the copy places keys as its source");
}
