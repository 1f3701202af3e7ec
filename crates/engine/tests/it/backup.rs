//! Online backup (acceptance criterion 6). A backup taken while a writer runs opens as a
//! database holding exactly a prefix of the writes, one that contains every write
//! acknowledged before the backup started, also while segments are hard-linked into it and
//! compacted away between backups. A backup refuses a non-empty target and a database
//! without a directory, and once made it is independent of its source in both directions.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use talus_engine::storage::MemStorage;
use talus_engine::{BackupReport, Db, Error, Options, SyncMode};
use talus_testkit::{SplitMix64, fill_pattern, has_pattern, test_seed};

use crate::support::{State, fast_tempdir, open_mem, options, state_of};

// ---------------------------------------------------------------------------------------
// The writer's sequence of operations: op `i` deletes `k{i % 500}` every 7th time, else
// puts a value that names `i`.

const N_KEYS: u64 = 500;

fn op_key(op: u64) -> Vec<u8> {
    format!("k{}", op % N_KEYS).into_bytes()
}

fn op_is_delete(op: u64) -> bool {
    op % 7 == 6
}

/// The value op `op` puts: its number, then a pattern that depends on it.
fn op_value(op: u64) -> Vec<u8> {
    let mut value = op.to_le_bytes().to_vec();
    value.resize(8 + 100 + (op % 13 * 37) as usize, 0);
    fill_pattern(&mut value[8..], op);
    value
}

/// The op whose value `value` is.
fn parse_op_value(key: &[u8], value: &[u8]) -> u64 {
    let op = u64::from_le_bytes(value.get(..8).and_then(|word| word.try_into().ok()).expect("an op number"));
    assert!(
        value.len() == op_value(op).len() && has_pattern(&value[8..], op) && op_key(op) == key,
        "{} holds a value no op wrote to it",
        String::from_utf8_lossy(key)
    );
    op
}

/// Which op last wrote each live key.
type Model = BTreeMap<Vec<u8>, u64>;

fn apply(model: &mut Model, op: u64) {
    match op_is_delete(op) {
        true => model.remove(&op_key(op)),
        false => model.insert(op_key(op), op),
    };
}

fn write_op(db: &Db, op: u64) {
    match op_is_delete(op) {
        true => db.delete(op_key(op)).expect("delete"),
        false => db.put(op_key(op), op_value(op)).expect("put"),
    }
}

/// A database's contents as a model.
fn model_of(db: &Db) -> Model {
    state_of(db).iter().map(|(key, value)| (key.clone(), parse_op_value(key, value))).collect()
}

/// The `n_ops` such that `model` is the state after ops `0..n_ops`, looking from `lowest`
/// to `highest`.
fn matching_prefix(model: &Model, lowest: u64, highest: u64) -> Option<u64> {
    let mut state = Model::new();
    (0..lowest).for_each(|op| apply(&mut state, op));
    for n_ops in lowest..=highest {
        if state == *model {
            return Some(n_ops);
        }
        apply(&mut state, n_ops);
    }
    None
}

// ---------------------------------------------------------------------------------------
// Criterion 6.

/// Sets the flag when dropped, so writer threads stop even when the test panics (a scope
/// whose threads never end would hang instead of failing).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A backup and what the writer had acknowledged around it.
struct Taken {
    report: BackupReport,
    n_acked_before: u64,
    n_acked_after: u64,
}

/// Takes `n_backups` backups of a database opened with `options` in `dir` while one writer
/// runs the op sequence with `SyncMode::Always`; checks each backup holds a prefix of the ops
/// with every op acknowledged before it started. Returns the backups and the source's stats.
fn backups_during_writes(
    test_name: &str,
    options: Options,
    dir: &Path,
    n_backups: usize,
) -> (Vec<BackupReport>, talus_engine::Stats) {
    let seed = test_seed(test_name);
    let mut rng = SplitMix64::new(seed);
    let source_dir = dir.join("source");
    let db = options.clone().sync_mode(SyncMode::Always).open(&source_dir).expect("open");
    let n_acked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let taken: Vec<Taken> = std::thread::scope(|scope| {
        let _stop_writer = StopOnDrop(&stop);
        let writer = scope.spawn(|| {
            let mut op = 0;
            while !stop.load(Ordering::Relaxed) {
                write_op(&db, op);
                op += 1;
                n_acked.store(op, Ordering::Release);
            }
        });
        let taken = (0..n_backups)
            .map(|idx| {
                let pause = Duration::from_millis(20 + rng.below(150));
                let wanted = n_acked.load(Ordering::Acquire) + 50;
                std::thread::sleep(pause);
                while n_acked.load(Ordering::Acquire) < wanted {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let n_acked_before = n_acked.load(Ordering::Acquire);
                let report = db.backup_to(dir.join(format!("backup-{idx}"))).expect("backup");
                let n_acked_after = n_acked.load(Ordering::Acquire);
                Taken { report, n_acked_before, n_acked_after }
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer thread");
        taken
    });
    let stats = db.stats();
    db.close().expect("close");

    for (idx, taken) in taken.iter().enumerate() {
        let context = format!(
            "seed {seed}, backup {idx} (ops acknowledged: {} before, {} after; {:?})",
            taken.n_acked_before, taken.n_acked_after, taken.report
        );
        let mut backup = options.clone().background_compaction(false).open(&taken.report.path).expect("open a backup");
        let recovery = backup.stats().recovery;
        assert!(recovery.checkpoint_covers_until.is_some(), "{context}: a checkpoint goes with a backup: {recovery:?}");
        let log_tail = backup.stats().log_tail;
        assert_eq!(log_tail, taken.report.log_end, "{context}: the backup's log ends where the report says");
        let model = model_of(&backup);
        // The op after the last one acknowledged may have been under way.
        let n_ops = matching_prefix(&model, taken.n_acked_before, taken.n_acked_after + 1);
        let n_ops = n_ops
            .unwrap_or_else(|| panic!("{context}: the backup holds no prefix of the ops with every acknowledged one"));
        eprintln!(
            "{test_name}: backup {idx} holds ops 0..{n_ops} (acknowledged {} before, {} after); \
             {} segments linked, {} copied ({} bytes) in {:.2?}",
            taken.n_acked_before,
            taken.n_acked_after,
            taken.report.n_segments_linked,
            taken.report.n_segments_copied,
            taken.report.n_bytes_copied,
            taken.report.duration
        );
        let verify = backup.verify().expect("verify a backup");
        assert!(verify.is_ok(), "{context}: {verify:?}");
        backup.close().expect("close a backup");
    }
    (taken.into_iter().map(|taken| taken.report).collect(), stats)
}

/// Criterion 6: backups taken while a writer runs (`SyncMode::Always`) each open as the
/// state after exactly a prefix of the writer's ops, one that holds every op acknowledged
/// before the backup began (and at most the one in flight after it ended), and verify clean.
/// First with 64 MiB segments on disk (everything copied), then with 256 KiB segments and
/// background compaction, so that sealed segments are hard-linked into the backups and
/// compacted away from the source between them.
#[test]
fn a_backup_during_writes_is_a_prefix_of_acknowledged_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (reports, _) = backups_during_writes(
        "a_backup_during_writes_is_a_prefix_of_acknowledged_writes (default segments)",
        Options::new().memory_budget(8 << 20),
        dir.path(),
        4,
    );
    assert!(reports.iter().all(|report| report.n_segments_copied > 0), "{reports:?}");

    let dir = fast_tempdir();
    let (reports, stats) = backups_during_writes(
        "a_backup_during_writes_is_a_prefix_of_acknowledged_writes (small segments, compaction)",
        options(SyncMode::Always).background_compaction(true).compaction_garbage_ratio(0.3),
        dir.path(),
        8,
    );
    let n_linked: u64 = reports.iter().map(|report| report.n_segments_linked).sum();
    assert!(n_linked > 0, "sealed segments are hard-linked: {reports:?}");
    assert!(stats.counters.n_segments_compacted > 0, "the source compacted meanwhile: {:?}", stats.counters);
}

/// A backup into a directory that holds anything is refused and writes nothing there; so
/// is a backup of a database on a custom storage (it has no files to copy).
#[test]
fn backup_refuses_a_non_empty_directory_and_custom_storage() {
    let dir = fast_tempdir();
    let db = options(SyncMode::Never).open(dir.path().join("db")).expect("open");
    db.put(b"key", b"value").expect("put");
    let target = dir.path().join("not-empty");
    std::fs::create_dir(&target).expect("create the target");
    std::fs::write(target.join("already-here"), b"something").expect("write into the target");
    match db.backup_to(&target) {
        Err(Error::Backup { path, .. }) => assert_eq!(path, target),
        other => panic!("a backup into a non-empty directory: {other:?}"),
    }
    let names: Vec<_> =
        std::fs::read_dir(&target).expect("read the target").map(|entry| entry.expect("entry").file_name()).collect();
    assert_eq!(names, ["already-here"], "nothing was written into the target");
    assert_eq!(std::fs::read(target.join("already-here")).expect("read"), b"something");
    db.close().expect("close");

    let storage = MemStorage::new();
    let db = open_mem(options(SyncMode::Never), &storage, &dir.path().join("mem-index")).expect("open on MemStorage");
    db.put(b"key", b"value").expect("put");
    let target = dir.path().join("from-mem");
    match db.backup_to(&target) {
        Err(Error::Backup { path, .. }) => assert_eq!(path, target),
        other => panic!("a backup of a database on a custom storage: {other:?}"),
    }
    assert!(!target.exists(), "the refused backup created nothing");
    db.close().expect("close");
}

/// Backup files that are hard links to the source's (by their inode) still linked there.
fn linked_segments(backup: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(backup.join("log"))
        .expect("the backup's log directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| std::fs::metadata(path).expect("metadata").nlink() > 1)
        .collect()
}

fn write_round(db: &Db, model: &mut State, round: u64, n_keys: u64) {
    for key_idx in 0..n_keys {
        let key = format!("key-{key_idx:05}").into_bytes();
        if (key_idx + round).is_multiple_of(11) {
            db.delete(&key).expect("delete");
            model.remove(&key);
            continue;
        }
        let mut value = vec![0u8; 100 + (key_idx % 5 * 40) as usize];
        fill_pattern(&mut value, key_idx << 16 | round);
        db.put(&key, &value).expect("put");
        model.insert(key, value);
    }
}

/// After a backup the source goes on writing and compacting (removing segment files the
/// backup hard-linked): the backup still opens with exactly the contents it was taken with.
/// Writing to and compacting the backup then leaves the source as it was.
#[test]
fn a_backup_is_independent_of_its_source() {
    let dir = fast_tempdir();
    let options = options(SyncMode::Never).background_compaction(false);
    let source_dir = dir.path().join("source");
    let backup_dir = dir.path().join("backup");
    let db = options.clone().open(&source_dir).expect("open");
    let mut source_model = State::new();
    for round in 0..3 {
        write_round(&db, &mut source_model, round, 2_000);
    }
    let report = db.backup_to(&backup_dir).expect("backup");
    let backed_up = source_model.clone();
    assert!(report.n_segments_linked > 0, "{report:?}");
    let linked = linked_segments(&backup_dir);
    assert_eq!(linked.len() as u64, report.n_segments_linked, "{report:?}");

    for round in 3..6 {
        write_round(&db, &mut source_model, round, 2_000);
    }
    let compaction = db.compact().expect("compact the source");
    assert!(compaction.n_segments_compacted > 0, "{compaction:?}");
    let unlinked = linked.iter().filter(|path| std::fs::metadata(path).expect("metadata").nlink() == 1).count();
    assert!(unlinked > 0, "compaction removed segments the backup linked: {compaction:?}");
    assert_eq!(state_of(&db), source_model);

    let mut backup = options.clone().open(&backup_dir).expect("open the backup");
    assert_eq!(state_of(&backup), backed_up, "the backup after the source compacted");
    assert!(backup.verify().expect("verify the backup").is_ok());
    let mut backup_model = backed_up.clone();
    for round in 10..13 {
        write_round(&backup, &mut backup_model, round, 2_500);
    }
    let compaction = backup.compact().expect("compact the backup");
    assert!(compaction.n_segments_compacted > 0, "{compaction:?}");
    backup.close().expect("close the backup");

    db.close().expect("close the source");
    let mut db = options.clone().open(&source_dir).expect("reopen the source");
    assert_eq!(state_of(&db), source_model, "the source after the backup was written to and compacted");
    assert!(db.verify().expect("verify the source").is_ok());
    db.close().expect("close the source");
    let backup = options.open(&backup_dir).expect("reopen the backup");
    assert_eq!(state_of(&backup), backup_model, "the backup after the source closed");
    backup.close().expect("close the backup");
}
