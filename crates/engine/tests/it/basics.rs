//! Point operations, batches, limits, clean reopen and crash reopen on small databases.

use talus_engine::{Db, Error, Options, SyncMode, WriteBatch};

fn small() -> Options {
    Options::new().memory_budget(1 << 20).segment_size(1 << 20).sync_mode(SyncMode::Never)
}

#[test]
fn put_get_delete_and_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = small().open(dir.path()).expect("open");
    assert_eq!(db.get(b"missing").expect("get"), None);
    db.put(b"", b"empty key").expect("put");
    db.put(b"k1", b"").expect("put");
    db.put(b"k2", b"v2").expect("put");
    db.put(b"k2", b"v2b").expect("overwrite");
    assert_eq!(db.get(b"").expect("get").as_deref(), Some(&b"empty key"[..]));
    assert_eq!(db.get(b"k1").expect("get").as_deref(), Some(&b""[..]));
    assert_eq!(db.get(b"k2").expect("get").as_deref(), Some(&b"v2b"[..]));
    db.delete(b"k1").expect("delete");
    db.delete(b"never").expect("delete of a missing key");
    assert_eq!(db.get(b"k1").expect("get"), None);
    let mut batch = WriteBatch::new();
    batch.put(b"b1", b"1").put(b"b2", b"2").delete(b"k2").put(b"b1", b"1b");
    db.write(batch).expect("batch");
    assert_eq!(db.get(b"b1").expect("get").as_deref(), Some(&b"1b"[..]));
    assert_eq!(db.get(b"k2").expect("get"), None);
    let mut pairs: Vec<_> = db.iter().map(|pair| pair.expect("pair")).collect();
    pairs.sort();
    let expected: Vec<(Vec<u8>, Vec<u8>)> =
        vec![(b"".to_vec(), b"empty key".to_vec()), (b"b1".to_vec(), b"1b".to_vec()), (b"b2".to_vec(), b"2".to_vec())];
    assert_eq!(pairs, expected);
    assert_eq!(db.stats().n_keys, 3);
}

#[test]
fn limits_are_typed_errors_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = small().open(dir.path()).expect("open");
    let max_value = db.stats().max_value_len as usize;
    let tail = db.stats().log_tail;
    assert!(matches!(db.put(vec![0u8; 65_536], b"v"), Err(Error::KeyTooLarge { len: 65_536, .. })));
    assert!(matches!(db.put(b"k", vec![0u8; max_value + 1]), Err(Error::ValueTooLarge { .. })));
    let mut batch = WriteBatch::new();
    batch.put(b"ok", b"v").put(b"k", vec![0u8; max_value + 1]);
    assert!(matches!(db.write(batch), Err(Error::ValueTooLarge { .. })));
    assert_eq!(db.stats().log_tail, tail, "nothing was written");
    assert_eq!(db.get(b"ok").expect("get"), None);
    db.put(vec![7u8; 65_535], vec![9u8; max_value]).expect("the largest key and value fit");
    assert_eq!(db.get(vec![7u8; 65_535]).expect("get").map(|value| value.len()), Some(max_value));
}

#[test]
fn default_options_take_16_mib_values() {
    assert!(Options::new().max_value_len() >= 16 << 20);
}

#[test]
fn clean_reopen_replays_nothing_and_crash_reopen_rebuilds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = small().open(dir.path()).expect("open");
    for idx in 0..20_000u32 {
        db.put(idx.to_le_bytes(), format!("value {idx}")).expect("put");
    }
    for idx in (0..20_000u32).step_by(3) {
        db.delete(idx.to_le_bytes()).expect("delete");
    }
    db.close().expect("close");
    let db = small().open(dir.path()).expect("reopen");
    assert!(db.stats().recovery.clean);
    assert_eq!(db.stats().recovery.n_records_replayed, 0);
    let check = |db: &Db| {
        for idx in 0..20_000u32 {
            let expected = (idx % 3 != 0).then(|| format!("value {idx}").into_bytes());
            assert_eq!(db.get(idx.to_le_bytes()).expect("get"), expected, "key {idx}");
        }
    };
    check(&db);
    db.put(b"after", b"reopen").expect("put");
    db.sync().expect("sync");
    db.simulate_crash();
    let db = small().open(dir.path()).expect("reopen after a crash");
    let stats = db.stats();
    assert!(!stats.recovery.clean);
    // Every live key's latest record was replayed (compaction may have removed older ones).
    assert!(stats.recovery.n_records_replayed >= stats.n_keys, "{stats:?}");
    check(&db);
    assert_eq!(db.get(b"after").expect("get").as_deref(), Some(&b"reopen"[..]));
    assert_eq!(db.stats().n_keys, 20_000 - 6667 + 1);
}

#[test]
fn second_open_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = small().open(dir.path()).expect("open");
    assert!(matches!(small().open(dir.path()), Err(Error::Locked { .. })));
    drop(db);
    small().open(dir.path()).expect("open after the holder closed");
}

#[test]
fn durable_writes_with_sync_always() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = small().sync_mode(SyncMode::Always).open(dir.path()).expect("open");
    for idx in 0..100u32 {
        db.put(idx.to_le_bytes(), b"durable").expect("put");
    }
    let stats = db.stats();
    assert_eq!(stats.log_synced_until, stats.log_tail);
    assert!(stats.counters.n_syncs >= 1);
}

/// The length of every segment file, by name.
fn segment_lengths(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut lengths: Vec<(String, u64)> = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .map(|entry| entry.expect("entry"))
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.metadata().expect("metadata").len()))
        .collect();
    lengths.sort();
    lengths
}

#[test]
fn durable_writes_preallocate_the_segment_and_a_clean_close_trims_it() {
    const HEADER: u64 = 4096;
    const STEP: u64 = 64 << 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = small().sync_mode(SyncMode::Always).log_preallocation(STEP).open(dir.path()).expect("open");
    for idx in 0..3_000u32 {
        db.put(idx.to_le_bytes(), [7u8; 100]).expect("put");
        let tail = db.stats().log_tail;
        let (_, len) = segment_lengths(dir.path()).pop().expect("a segment");
        let data_end = HEADER + tail % (1 << 20);
        // Zeros reach at least past the data, and at most a step further (or the segment end).
        assert!(len > data_end || tail.is_multiple_of(1 << 20), "put {idx}: {len} <= {data_end}");
        assert!(len <= (data_end + STEP).min(HEADER + (1 << 20)), "put {idx}: {len} runs ahead of {data_end}");
    }
    let tail = db.stats().log_tail;
    db.close().expect("close");
    let lengths = segment_lengths(dir.path());
    let (_, last_len) = lengths.last().expect("a segment");
    assert_eq!(*last_len, HEADER + tail % (1 << 20), "a clean close cuts the zeros");
    for (name, len) in &lengths[..lengths.len() - 1] {
        assert_eq!(*len, HEADER + (1 << 20), "{name}: a sealed segment is whole");
    }
    let db = small().sync_mode(SyncMode::Always).open(dir.path()).expect("reopen");
    assert!(db.stats().recovery.clean);
    for idx in 0..3_000u32 {
        assert_eq!(db.get(idx.to_le_bytes()).expect("get").as_deref(), Some(&[7u8; 100][..]));
    }
    // Crash with the zeros in place: they are no torn tail.
    db.put(b"last", b"one").expect("put");
    let tail = db.stats().log_tail;
    db.simulate_crash();
    assert!(segment_lengths(dir.path()).last().expect("a segment").1 > HEADER + tail % (1 << 20));
    let db = small().sync_mode(SyncMode::Always).open(dir.path()).expect("open after a crash");
    let stats = db.stats();
    assert!(!stats.recovery.clean);
    assert_eq!((stats.log_tail, stats.recovery.n_torn_bytes), (tail, 0), "{:?}", stats.recovery);
    assert_eq!(db.get(b"last").expect("get").as_deref(), Some(&b"one"[..]));
}

#[test]
fn buffered_writes_and_zero_preallocation_write_no_zeros() {
    for options in [small(), small().sync_mode(SyncMode::Always).log_preallocation(0)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = options.open(dir.path()).expect("open");
        for idx in 0..1_000u32 {
            db.put(idx.to_le_bytes(), [7u8; 100]).expect("put");
        }
        db.sync().expect("sync");
        let tail = db.stats().log_tail;
        let (_, len) = segment_lengths(dir.path()).pop().expect("a segment");
        assert_eq!(len, 4096 + tail % (1 << 20), "no zeros past the data");
    }
}

#[test]
fn periodic_sync_makes_writes_durable_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let interval = std::time::Duration::from_millis(5);
    let db = small().sync_mode(SyncMode::Periodic(interval)).open(dir.path()).expect("open");
    db.put(b"k", b"v").expect("put");
    let tail = db.stats().log_tail;
    // The background thread syncs within a few intervals; poll generously.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.stats().log_synced_until < tail {
        assert!(std::time::Instant::now() < deadline, "the periodic sync never ran");
        std::thread::sleep(interval);
    }
    assert!(db.stats().counters.n_syncs >= 1);
    db.close().expect("close joins the sync thread");
    let db = small().open(dir.path()).expect("reopen");
    assert!(db.stats().recovery.clean);
    assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
}

/// An index directory an earlier run moved aside (to rebuild) and did not get to remove is
/// removed by a later run: by its maintenance thread while it is open, or at its close.
#[test]
fn index_directories_an_earlier_run_left_aside_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leftover = |n: u32| {
        let aside = dir.path().join(format!("index.discarded-{n}"));
        std::fs::create_dir_all(&aside).expect("create a leftover");
        std::fs::write(aside.join("bucket-00000-g0000000000.pool"), b"old").expect("write a leftover");
        aside
    };
    let db = small().open(dir.path()).expect("create");
    db.put(b"k", b"v").expect("put");
    db.close().expect("close");

    // Without a maintenance thread: at close.
    let aside = leftover(3);
    let quiet = small().background_compaction(false).checkpoint_every_bytes(0).checkpoint_interval(None);
    let db = quiet.open(dir.path()).expect("reopen");
    assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    db.close().expect("close");
    assert!(!aside.exists(), "removed at close");

    // With one: while open.
    let aside = leftover(4);
    let db = small().open(dir.path()).expect("reopen");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while aside.exists() {
        assert!(std::time::Instant::now() < deadline, "the maintenance thread did not remove {}", aside.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    db.close().expect("close");
    assert!(dir.path().join("index").is_dir(), "the index itself stays");
}

/// The log's segment files this process has open for the database in `dir`.
fn open_segment_files(dir: &std::path::Path) -> usize {
    let log = dir.join("log");
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(&log))
        .count()
}

#[test]
fn reads_across_more_segments_than_may_be_open_keep_the_open_files_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || {
        Options::new()
            .memory_budget(1 << 20)
            .segment_size(256 << 10)
            .sync_mode(SyncMode::Never)
            .background_compaction(false)
    };
    let value = |k: u64| vec![(k % 251) as u8; 3000];
    let n_keys = 3_000u64;
    let db = options().max_open_segments(3).open(dir.path()).expect("open");
    for k in 0..n_keys {
        db.put(k.to_le_bytes(), value(k)).expect("put");
    }
    let n_segments = db.stats().n_segments;
    assert!(n_segments >= 30, "the log spans {n_segments} segments");
    let mut rng = talus_testkit::SplitMix64::new(7);
    for round in 0..2 {
        for _ in 0..n_keys {
            let k = rng.below(n_keys);
            assert_eq!(db.get(k.to_le_bytes()).expect("get"), Some(value(k)), "key {k}, round {round}");
            assert!(db.stats().n_open_segments <= 3, "{} segments open", db.stats().n_open_segments);
        }
        assert!(open_segment_files(dir.path()) <= 3, "{} segment files open", open_segment_files(dir.path()));
    }
    db.close().expect("close");

    let db = options().max_open_segments(2).open(dir.path()).expect("reopen");
    assert_eq!(db.stats().n_segments, n_segments);
    for k in (0..n_keys).rev() {
        assert_eq!(db.get(k.to_le_bytes()).expect("get"), Some(value(k)), "key {k} after the reopen");
    }
    assert!(db.stats().n_open_segments <= 2);
    assert!(open_segment_files(dir.path()) <= 2, "{} segment files open", open_segment_files(dir.path()));
    db.put(b"after", b"reads").expect("a write after many reads");
    db.sync().expect("sync");
    db.simulate_crash();

    // A rebuild reads every segment, in order, within the same bound.
    let db = options().max_open_segments(2).open(dir.path()).expect("reopen after a crash");
    assert!(db.stats().recovery.n_records_replayed >= n_keys);
    assert!(open_segment_files(dir.path()) <= 2, "{} segment files open", open_segment_files(dir.path()));
    for k in 0..n_keys {
        assert_eq!(db.get(k.to_le_bytes()).expect("get"), Some(value(k)), "key {k} after the rebuild");
    }
    assert_eq!(db.get(b"after").expect("get").as_deref(), Some(&b"reads"[..]));
    assert!(db.stats().n_open_segments <= 2);
    db.close().expect("close");
}

#[test]
fn a_clean_open_leaves_the_manifest_clean_until_its_first_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = small().open(dir.path()).expect("open");
    for idx in 0..1_000u32 {
        db.put(idx.to_le_bytes(), format!("value {idx}")).expect("put");
    }
    db.close().expect("close");
    let manifest = std::fs::read(dir.path().join("MANIFEST")).expect("read the MANIFEST");

    // Reads only, then a kill: the files are as the close left them, and the reopen is clean.
    let db = small().open(dir.path()).expect("clean reopen");
    assert!(db.stats().recovery.clean);
    assert_eq!(db.get(7u32.to_le_bytes()).expect("get").as_deref(), Some(&b"value 7"[..]));
    assert_eq!(std::fs::read(dir.path().join("MANIFEST")).expect("read"), manifest, "reads change no MANIFEST");
    db.simulate_kill();
    let db = small().open(dir.path()).expect("reopen after a kill that followed reads only");
    let recovery = db.stats().recovery;
    assert!(recovery.clean && !recovery.resumed, "{recovery:?}");
    assert_eq!(recovery.n_records_replayed, 0);

    // The first write makes it unclean first: a kill after it is taken up, not trusted as clean.
    db.put(b"after", b"the reopen").expect("put");
    assert_ne!(std::fs::read(dir.path().join("MANIFEST")).expect("read"), manifest, "the first write rewrites it");
    db.sync().expect("sync");
    db.simulate_kill();
    let db = small().open(dir.path()).expect("reopen after a kill that followed a write");
    let recovery = db.stats().recovery;
    assert!(!recovery.clean && recovery.resumed, "{recovery:?}");
    assert_eq!(db.get(b"after").expect("get").as_deref(), Some(&b"the reopen"[..]));
    assert_eq!(db.stats().n_keys, 1_001);
}
