//! Acceptance criteria 3, 5 and 8: clean reopen, damaged files, several directories.

use std::path::Path;

use talus_bucketmap::{BucketMap, BucketMapConfig, Error};

type Map = BucketMap<[u8; 32], u64>;

fn key(n: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&n.to_le_bytes());
    key[24..].copy_from_slice(&(!n).to_le_bytes());
    key
}

#[test]
fn a_closed_map_reopens_with_every_entry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path()).bucket_bits(3).initial_cells_log2(8);
    let map = Map::create(config.clone()).expect("create");
    for n in 0..100_000 {
        map.insert(key(n), n * 7).expect("insert");
    }
    map.close().expect("close");
    let map = Map::open(config.clone()).expect("open");
    assert_eq!(map.len(), 100_000);
    for n in 0..100_000 {
        assert_eq!(map.get(&key(n)), Some(n * 7));
    }
    assert_eq!(map.get(&key(100_000)), None);
    // A second session's changes survive too.
    map.remove(&key(5)).expect("remove");
    drop(map); // drop flushes as well
    let map = Map::open(config).expect("open again");
    assert_eq!((map.len(), map.get(&key(5))), (99_999, None));
}

fn small_map(dir: &Path) -> BucketMapConfig {
    let config = BucketMapConfig::new(dir).bucket_bits(1).initial_cells_log2(6);
    let map = Map::create(config.clone()).expect("create");
    for n in 0..40 {
        map.insert(key(n), n).expect("insert");
    }
    map.close().expect("close");
    config
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    change(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

/// The bucket files in `dir`, sorted by name.
fn bucket_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("bucket-")))
        .collect();
    files.sort();
    files
}

fn bucket_file(dir: &Path) -> std::path::PathBuf {
    bucket_files(dir).remove(0)
}

#[test]
fn damaged_files_are_typed_errors_at_open() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 6] = [
        ("bucket bit flip", |dir| edit(&bucket_file(dir), |b| b[4096 + 100] ^= 0x10)),
        ("bucket truncated", |dir| edit(&bucket_file(dir), |b| b.truncate(b.len() - 1))),
        ("bucket header flip", |dir| edit(&bucket_file(dir), |b| b[40] ^= 1)),
        ("bucket missing", |dir| std::fs::remove_file(bucket_file(dir)).expect("remove")),
        ("manifest bit flip", |dir| edit(&dir.join("MANIFEST"), |b| b[20] ^= 4)),
        ("manifest truncated", |dir| edit(&dir.join("MANIFEST"), |b| b.truncate(30))),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = small_map(dir.path());
        damage(dir.path());
        match Map::open(config) {
            Err(Error::Pool(_) | Error::CorruptManifest { .. }) => {}
            other => panic!("{what}: expected a typed corruption error, got {:?}", other.map(|m| m.len())),
        }
    }
}

#[test]
fn create_refuses_an_existing_map_and_open_a_missing_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(matches!(Map::open(BucketMapConfig::new(dir.path())), Err(Error::NotFound { .. })));
    let config = small_map(dir.path());
    assert!(matches!(Map::create(config.clone()), Err(Error::AlreadyExists { .. })));
    assert!(matches!(BucketMap::<u64, u64>::open(config), Err(Error::ConfigMismatch { .. })));
}

#[test]
fn bucket_files_spread_over_two_directories_and_reopen() {
    let root = tempfile::tempdir().expect("temp dir");
    let dirs = [root.path().join("a"), root.path().join("b")];
    let config = BucketMapConfig::new(&dirs[0]).dirs(dirs.clone()).bucket_bits(2).initial_cells_log2(4);
    let map = Map::create(config.clone()).expect("create");
    for n in 0..5_000 {
        map.insert(key(n), n).expect("insert");
    }
    let paths = map.bucket_paths();
    for dir in &dirs {
        assert_eq!(paths.iter().filter(|path| path.parent() == Some(dir.as_path())).count(), 2, "{paths:?}");
    }
    map.close().expect("close");
    let map = Map::open(config).expect("open");
    assert_eq!(map.len(), 5_000);
    for n in (0..5_000).step_by(7) {
        assert_eq!(map.get(&key(n)), Some(n));
    }
}

/// A map of more than 64 MiB of cells opens its buckets on several threads: every entry
/// comes back, and a damaged bucket among them is still a typed error.
#[test]
fn a_large_map_opens_in_parallel_and_still_checks_every_bucket() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 16 buckets of 2^17 cells of 48 bytes: 96 MiB in all.
    let config = BucketMapConfig::new(dir.path()).bucket_bits(4).initial_cells_log2(17);
    let map = Map::create(config.clone()).expect("create");
    for n in 0..50_000 {
        map.insert(key(n), n + 1).expect("insert");
    }
    map.close().expect("close");
    let map = Map::open(config.clone()).expect("open");
    assert_eq!(map.len(), 50_000);
    assert!((0..50_000).all(|n| map.get(&key(n)) == Some(n + 1)), "every entry reads back");
    assert_eq!(map.stats().len(), 16);
    drop(map);
    edit(&bucket_files(dir.path())[11], |bytes| bytes[4096 + 24 * 1000 + 3] ^= 0x20);
    match Map::open(config) {
        Err(Error::Pool(_) | Error::CorruptManifest { .. }) => {}
        other => panic!("expected a typed corruption error, got {:?}", other.map(|map| map.len())),
    }
}

/// Waits out the file system's timestamp granularity, so that a change made now gets
/// another change time than the one the close recorded (kernels without fine-grained
/// timestamps tick every few milliseconds).
fn after_a_tick() {
    std::thread::sleep(std::time::Duration::from_millis(20));
}

#[test]
fn a_map_closed_in_this_boot_reopens_without_reading_its_tables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = BucketMapConfig::new(dir.path()).bucket_bits(2).initial_cells_log2(6).resume_after_kill(true);
    let map = Map::create(config.clone()).expect("create");
    for n in 0..10_000 {
        map.insert(key(n), n).expect("insert");
    }
    map.close().expect("close");
    let map = Map::open(config.clone()).expect("open");
    assert!(map.was_trusted(), "closed cleanly in this boot, nothing changed since");
    assert_eq!(map.len(), 10_000);
    for n in 0..10_000 {
        assert_eq!(map.get(&key(n)), Some(n), "key {n}");
    }
    // Changes of a trusted session (growth included) are recorded by its close as well.
    for n in 10_000..20_000 {
        map.insert(key(n), n).expect("insert");
    }
    map.remove(&key(3)).expect("remove");
    map.close().expect("close");
    let map = Map::open(config.clone()).expect("open again");
    assert!(map.was_trusted());
    assert_eq!((map.len(), map.get(&key(3)), map.get(&key(19_999))), (19_999, None, Some(19_999)));
    drop(map);
    // Without the option the tables are read and checked as before.
    let map = Map::open(config.resume_after_kill(false)).expect("open checking");
    assert!(!map.was_trusted());
    assert_eq!(map.len(), 19_999);
}

#[test]
fn a_table_changed_after_the_close_is_read_and_checked_again() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 4] = [
        ("bucket bit flip", |dir| edit(&bucket_file(dir), |b| b[4096 + 100] ^= 0x10)),
        ("bucket truncated", |dir| edit(&bucket_file(dir), |b| b.truncate(b.len() - 1))),
        ("bucket replaced by an older copy", |dir| {
            let path = bucket_file(dir);
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[4096 + 200] ^= 0x01;
            let copy = dir.join("copy");
            std::fs::write(&copy, bytes).expect("write");
            std::fs::rename(copy, path).expect("rename");
        }),
        ("bucket missing", |dir| std::fs::remove_file(bucket_file(dir)).expect("remove")),
    ];
    for (what, damage) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = small_map(dir.path()).resume_after_kill(true);
        after_a_tick();
        damage(dir.path());
        match Map::open(config) {
            Err(Error::Pool(_) | Error::CorruptManifest { .. }) => {}
            other => panic!("{what}: expected a typed corruption error, got {:?}", other.map(|m| m.len())),
        }
    }
    // A write that changes no byte still makes the open read and check the tables.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = small_map(dir.path()).resume_after_kill(true);
    after_a_tick();
    edit(&bucket_file(dir.path()), |_| {});
    let map = Map::open(config).expect("open");
    assert!(!map.was_trusted());
    assert_eq!(map.len(), 40);
}

#[test]
fn a_live_state_from_another_boot_or_shape_is_not_trusted() {
    type Change = fn(&mut Vec<u8>);
    let cases: [(&str, Change); 3] = [
        ("another boot id", |b| b[4096] ^= 1),
        ("a bucket half-way through a change", |b| b[4096 + 64] |= 1),
        ("another entry count", |b| b[4096 + 64 + 24] ^= 1),
    ];
    for (what, change) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = small_map(dir.path()).resume_after_kill(true);
        edit(&dir.path().join("LIVE.pool"), change);
        let map = Map::open(config).unwrap_or_else(|error| panic!("{what}: {error}"));
        assert!(!map.was_trusted(), "{what}");
        assert_eq!(map.len(), 40, "{what}");
    }
}
