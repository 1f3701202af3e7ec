//! Index checkpoints (acceptance criteria 4 and 5). Recovery after a crash loads the newest
//! checkpoint that verifies and replays only the log written since: after a SIGKILL a
//! million keys come back by replaying the 10,000 writes after the checkpoint, not the whole
//! log. A checkpoint (a directory: its `CHECKPOINT` metadata and a copy of the index) that is
//! damaged, torn, grown, incomplete or from another database is never used: the one before it
//! is, or the whole log. Checkpoints are taken in the background (by bytes written and by
//! time) with only the newest two kept, and a checkpoint taken while writers run recovers
//! exactly the state they had acknowledged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use talus_engine::{CheckpointReport, Db, Options, SyncMode, WriteBatch};
use talus_testkit::{SplitMix64, fill_pattern, test_seed};

use crate::support::{State, fast_tempdir, options, state_of};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------
// Criterion 4: a million keys, a checkpoint, 10,000 writes, SIGKILL.

const CHILD_DIR_ENV: &str = "TALUS_ENGINE_CHECKPOINT_CHILD_DIR";
const MARK: &str = "@talus-child@ ";
/// How long the parent waits for the child to load, checkpoint and write.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

const LOADED_N_KEYS: u64 = 1_000_000;
const LOAD_BATCH_LEN: u64 = 1_000;
const N_PUTS_AFTER_CHECKPOINT: u64 = 10_000;
/// Keys the puts after the checkpoint add (the even ones; the odd ones overwrite).
const N_KEYS_ADDED_AFTER: u64 = N_PUTS_AFTER_CHECKPOINT / 2;

/// 64 MiB of memory, 8 MiB segments, no checkpoints but the one the test asks for;
/// background compaction stays on.
fn million_options() -> Options {
    Options::new().memory_budget(64 * MIB).segment_size(8 * MIB).sync_mode(SyncMode::Never).checkpoint_every_bytes(0)
}

/// 16-byte keys.
fn million_key(idx: u64) -> [u8; 16] {
    let mut key = *b"ckpt:00000000000";
    key[5..].copy_from_slice(format!("{idx:011}").as_bytes());
    key
}

/// A 32-byte value naming its key and version.
fn million_value(idx: u64, version: u64) -> [u8; 32] {
    let mut value = [0u8; 32];
    let mut rng = SplitMix64::new(idx << 24 ^ version);
    for chunk in value.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    value
}

/// Put `op` after the checkpoint: (key, version). Even ones add a key, odd ones overwrite
/// a loaded key with a version of their own.
fn put_after_checkpoint(op: u64) -> (u64, u64) {
    match op % 2 {
        0 => (LOADED_N_KEYS + op / 2, 1),
        _ => (op.wrapping_mul(104_729) % LOADED_N_KEYS, op + 1),
    }
}

/// Every key's version once the child is done.
fn million_versions() -> Vec<u64> {
    let mut versions = vec![0u64; (LOADED_N_KEYS + N_KEYS_ADDED_AFTER) as usize];
    for op in 0..N_PUTS_AFTER_CHECKPOINT {
        let (idx, version) = put_after_checkpoint(op);
        versions[idx as usize] = version;
    }
    versions
}

fn check_million(db: &Db, versions: &[u64], context: &str) {
    assert_eq!(db.stats().n_keys, versions.len() as u64, "{context}: n_keys");
    for (idx, &version) in versions.iter().enumerate() {
        let idx = idx as u64;
        let intact = db.get_with(million_key(idx), |value| value == million_value(idx, version)).expect("get");
        assert_eq!(intact, Some(true), "{context}: key {idx} holds version {version}");
    }
}

fn report(line: &str) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{MARK}{line}").and_then(|()| stdout.flush()).expect("child: report");
}

/// The child of [`recovery_after_a_checkpoint_replays_only_the_log_since`]: loads a million
/// keys, checkpoints, writes 10,000 puts, makes them durable, reports and waits for SIGKILL.
#[test]
#[ignore = "entry point of the child process of recovery_after_a_checkpoint_replays_only_the_log_since"]
fn million_keys_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let db = million_options().open(&dir).expect("child: open");
    let started = Instant::now();
    for first in (0..LOADED_N_KEYS).step_by(LOAD_BATCH_LEN as usize) {
        let mut batch = WriteBatch::new();
        for idx in first..first + LOAD_BATCH_LEN {
            batch.put(million_key(idx), million_value(idx, 0));
        }
        db.write(batch).expect("child: write a batch");
    }
    db.sync().expect("child: sync the load");
    let load_duration = started.elapsed();
    let checkpoint = db.checkpoint().expect("child: checkpoint");
    for op in 0..N_PUTS_AFTER_CHECKPOINT {
        let (idx, version) = put_after_checkpoint(op);
        db.put(million_key(idx), million_value(idx, version)).expect("child: put");
    }
    db.sync().expect("child: sync the puts");
    report(&format!(
        "loaded {LOADED_N_KEYS} keys in {load_duration:.2?}; checkpoint of {} entries ({} MiB) in {:.2?}",
        checkpoint.n_entries,
        checkpoint.n_bytes / MIB,
        checkpoint.duration
    ));
    report(&format!("covers_until {}", checkpoint.covers_until));
    report("ready");
    std::thread::sleep(2 * CHILD_TIMEOUT);
    drop(db);
    std::process::exit(1)
}

/// Runs [`million_keys_child`] in `dir` until it reports ready, then kills it with SIGKILL;
/// returns the log address its checkpoint covers.
fn run_million_keys_child(dir: &Path) -> u64 {
    let mut child = KilledOnDrop(
        Command::new(std::env::current_exe().expect("the test binary"))
            .args(["checkpoint::million_keys_child", "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the child"),
    );
    let stdout = child.0.stdout.take().expect("the child's stdout");
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, message)) = line.split_once(MARK)
                && sender.send(message.to_owned()).is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut covers_until = None;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line == "ready" => break,
            Ok(line) => {
                eprintln!("million_keys_child: {line}");
                if let Some(number) = line.strip_prefix("covers_until ") {
                    covers_until = Some(number.parse::<u64>().expect("the child's covers_until"));
                }
            }
            Err(error) => {
                let status = child.kill();
                panic!("the child never reported ready ({error}; it ended: {status})");
            }
        }
    }
    let status = child.kill();
    assert_eq!(status.signal(), Some(9), "the child died before the kill ({status})");
    covers_until.expect("the child reported its checkpoint")
}

/// A child process that is killed (SIGKILL) and reaped however the test ends.
struct KilledOnDrop(std::process::Child);

impl KilledOnDrop {
    fn kill(&mut self) -> std::process::ExitStatus {
        let _ = self.0.kill(); // fails only if it has exited already
        self.0.wait().expect("wait for the child")
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Criterion 4: a process loads a million keys, checkpoints, makes 10,000 more puts (new
/// keys and overwrites) durable and is killed with SIGKILL. The reopen starts from the
/// checkpoint and replays only those puts (about 10,000 records, not a million), and every
/// key holds exactly its last value. For comparison (printed, not asserted) the same
/// directory is crashed again without its checkpoints, so that recovery replays the whole log.
/// (Taking up the killed process's state instead, as the default open would, is turned off:
/// this is the recovery an OS crash gets.)
#[test]
fn recovery_after_a_checkpoint_replays_only_the_log_since() {
    let dir = tempfile::tempdir().expect("tempdir");
    let covers_until = run_million_keys_child(dir.path());
    let checkpoint = dir.path().join("checkpoints").join(checkpoint_name(covers_until));
    assert!(checkpoint.join(META_FILE).is_file(), "the checkpoint's metadata is in {}", checkpoint.display());
    assert!(checkpoint.join(INDEX_DIR).join("MANIFEST").is_file(), "the index copy is in {}", checkpoint.display());
    let versions = million_versions();

    let db = million_options().resume_after_kill(false).open(dir.path()).expect("reopen after SIGKILL");
    let with_checkpoint = db.stats().recovery;
    assert!(!with_checkpoint.clean, "{with_checkpoint:?}");
    assert_eq!(with_checkpoint.checkpoint_covers_until, Some(covers_until), "{with_checkpoint:?}");
    assert_eq!(with_checkpoint.n_checkpoints_rejected, 0, "{with_checkpoint:?}");
    assert!(
        (N_PUTS_AFTER_CHECKPOINT..2 * N_PUTS_AFTER_CHECKPOINT).contains(&with_checkpoint.n_records_replayed),
        "only the log after the checkpoint is replayed: {with_checkpoint:?}"
    );
    check_million(&db, &versions, "recovered from the checkpoint");
    db.simulate_crash();

    std::fs::remove_dir_all(dir.path().join("checkpoints")).expect("remove the checkpoints");
    let db = million_options().open(dir.path()).expect("reopen without checkpoints");
    let whole_log = db.stats().recovery;
    assert_eq!(whole_log.checkpoint_covers_until, None, "{whole_log:?}");
    assert!(whole_log.n_records_replayed >= LOADED_N_KEYS + N_PUTS_AFTER_CHECKPOINT, "{whole_log:?}");
    check_million(&db, &versions, "recovered from the whole log");
    db.close().expect("close");

    eprintln!(
        "recovery of {} keys after SIGKILL: from the checkpoint {:.2?} ({} records replayed); \
         from the whole log {:.2?} ({} records replayed)",
        versions.len(),
        with_checkpoint.duration,
        with_checkpoint.n_records_replayed,
        whole_log.duration,
        whole_log.n_records_replayed,
    );
}

// ---------------------------------------------------------------------------------------
// Criterion 5: damaged checkpoints.

/// A small database with no checkpoints or compaction but the test's own.
fn manual_options() -> Options {
    options(SyncMode::Never).background_compaction(false).checkpoint_every_bytes(0)
}

fn small_value(key_idx: u64, phase: u64) -> Vec<u8> {
    let mut value = vec![0u8; 40 + (key_idx % 7 * 31) as usize];
    fill_pattern(&mut value, key_idx << 8 | phase);
    value
}

/// Phase `phase` of the writes around the two checkpoints: single puts and deletes, the
/// same every time; returns how many records it wrote.
fn write_phase(db: &Db, model: &mut State, phase: u64) -> u64 {
    let (puts, deletes) = match phase {
        0 => (0..2_000, 0..0),
        1 => (1_000..2_500, 0..200),
        _ => (2_000..3_000, 500..700),
    };
    let mut n_records = 0;
    for key_idx in puts {
        let key = format!("key-{key_idx:05}").into_bytes();
        let value = small_value(key_idx, phase);
        db.put(&key, &value).expect("put");
        model.insert(key, value);
        n_records += 1;
    }
    for key_idx in deletes {
        let key = format!("key-{key_idx:05}").into_bytes();
        db.delete(&key).expect("delete");
        model.remove(&key);
        n_records += 1;
    }
    n_records
}

/// Copies a directory tree.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a directory");
    for entry in std::fs::read_dir(from).expect("read a directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        match entry.file_type().expect("a file type").is_dir() {
            true => copy_dir(&entry.path(), &target),
            false => {
                std::fs::copy(entry.path(), &target).expect("copy a file");
            }
        }
    }
}

/// A checkpoint's directory name: the log address it covers, as 16 hex digits.
fn checkpoint_name(covers_until: u64) -> String {
    format!("{covers_until:016x}")
}

/// Where `checkpoint`, reported by the database in `original`, lies in `dir`, a copy of
/// `original`.
fn checkpoint_in_copy(original: &Path, dir: &Path, checkpoint: &CheckpointReport) -> PathBuf {
    dir.join(checkpoint.path.strip_prefix(original).expect("the checkpoint lies in its database's directory"))
}

/// A checkpoint's metadata file (see crates/engine/src/checkpoint.rs).
const META_FILE: &str = "CHECKPOINT";
/// The metadata file's layout: a 64-byte header (`n_usage` at 56, `n_segments` at 60),
/// 32 bytes per usage entry, 8 per segment, then an 8-byte trailer (crc32c, 4 zeros).
const META_HEADER_LEN: usize = 64;
const META_USAGE_LEN: usize = 32;
const META_TRAILER_LEN: usize = 8;
/// A checkpoint's copy of the index: a bucket map's `MANIFEST` and bucket files.
const INDEX_DIR: &str = "index";
/// Every bucket file (a datapool file) starts with a header this long; its data follows.
const POOL_HEADER_LEN: usize = 4096;

/// Ways of damaging a checkpoint directory.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// A bit of `next_seq` in `CHECKPOINT`'s header (only the checksum can tell).
    FlipHeaderBit,
    /// A bit of the last usage entry's live bytes.
    FlipUsageBit,
    /// A bit of the last segment's first address (it stays a multiple of the segment size).
    FlipSegmentBit,
    /// A bit of the last bucket's replay start (a small one: only the checksum can tell).
    FlipBucketStartBit,
    FlipTrailerCrcBit,
    FlipTrailerZeroBit,
    CutOneByte,
    CutToHalf,
    CutToNothing,
    AppendByte,
    RemoveMeta,
    /// A bit in the middle of a bucket file's data (beyond its header).
    FlipBucketDataBit,
    /// A bucket file cut to half its data.
    CutBucketFile,
    RemoveBucketFile,
    /// A bit of the seed in the index copy's `MANIFEST`.
    FlipIndexManifestBit,
    RemoveIndexDir,
}

const ALL_DAMAGE: [Damage; 16] = [
    Damage::FlipHeaderBit,
    Damage::FlipUsageBit,
    Damage::FlipSegmentBit,
    Damage::FlipBucketStartBit,
    Damage::FlipTrailerCrcBit,
    Damage::FlipTrailerZeroBit,
    Damage::CutOneByte,
    Damage::CutToHalf,
    Damage::CutToNothing,
    Damage::AppendByte,
    Damage::RemoveMeta,
    Damage::FlipBucketDataBit,
    Damage::CutBucketFile,
    Damage::RemoveBucketFile,
    Damage::FlipIndexManifestBit,
    Damage::RemoveIndexDir,
];

/// Rewrites the file at `path` as `change` leaves its bytes.
fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read a checkpoint's file");
    change(&mut bytes);
    std::fs::write(path, &bytes).expect("write a damaged checkpoint's file");
}

/// The largest bucket file of the index copy in `index_dir` (the first by name of those).
fn largest_bucket_file(index_dir: &Path) -> PathBuf {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(index_dir)
        .expect("the index copy")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "pool"))
        .map(|path| (std::fs::metadata(&path).expect("a bucket file's length").len(), path))
        .collect();
    files.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let (len, path) = files.into_iter().next().expect("the index copy holds bucket files");
    assert!(len > POOL_HEADER_LEN as u64, "{} holds data ({len} bytes)", path.display());
    path
}

fn damage_meta(bytes: &mut Vec<u8>, damage: Damage) {
    let len = bytes.len();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    let (n_usage, n_segments) = (u32_at(56), u32_at(60));
    let buckets_at = META_HEADER_LEN + META_USAGE_LEN * n_usage + 8 * n_segments;
    let n_buckets = u32_at(buckets_at);
    assert!(n_buckets > 0, "CHECKPOINT lists the buckets' replay starts");
    assert_eq!(len, buckets_at + 8 + 8 * n_buckets + META_TRAILER_LEN, "CHECKPOINT");
    assert!(n_usage > 0 && n_segments > 0, "CHECKPOINT lists usage and segments ({n_usage}, {n_segments})");
    let last_usage_at = META_HEADER_LEN + META_USAGE_LEN * (n_usage - 1);
    let last_segment_at = META_HEADER_LEN + META_USAGE_LEN * n_usage + 8 * (n_segments - 1);
    match damage {
        Damage::FlipHeaderBit => bytes[42] ^= 0x10,
        Damage::FlipUsageBit => bytes[last_usage_at + 16] ^= 0x02,
        Damage::FlipSegmentBit => bytes[last_segment_at + 3] ^= 0x04,
        Damage::FlipBucketStartBit => bytes[buckets_at + 8 + 8 * (n_buckets - 1)] ^= 0x08,
        Damage::FlipTrailerCrcBit => bytes[len - 7] ^= 0x80,
        Damage::FlipTrailerZeroBit => bytes[len - 2] ^= 0x04,
        Damage::CutOneByte => bytes.truncate(len - 1),
        Damage::CutToHalf => bytes.truncate(len / 2),
        Damage::CutToNothing => bytes.clear(),
        Damage::AppendByte => bytes.push(0),
        _ => unreachable!("{damage:?} is no damage to CHECKPOINT"),
    }
}

/// Damages the checkpoint in the directory `checkpoint`.
fn damage(checkpoint: &Path, damage: Damage) {
    let index_dir = checkpoint.join(INDEX_DIR);
    match damage {
        Damage::RemoveMeta => std::fs::remove_file(checkpoint.join(META_FILE)).expect("remove CHECKPOINT"),
        Damage::FlipBucketDataBit => rewrite(&largest_bucket_file(&index_dir), |bytes| {
            let data_len = bytes.len() - POOL_HEADER_LEN;
            bytes[POOL_HEADER_LEN + data_len / 2] ^= 0x08;
        }),
        Damage::CutBucketFile => rewrite(&largest_bucket_file(&index_dir), |bytes| {
            let data_len = bytes.len() - POOL_HEADER_LEN;
            bytes.truncate(POOL_HEADER_LEN + data_len / 2);
        }),
        Damage::RemoveBucketFile => {
            std::fs::remove_file(largest_bucket_file(&index_dir)).expect("remove a bucket file");
        }
        Damage::FlipIndexManifestBit => rewrite(&index_dir.join("MANIFEST"), |bytes| bytes[17] ^= 0x01),
        Damage::RemoveIndexDir => std::fs::remove_dir_all(&index_dir).expect("remove the index copy"),
        _ => rewrite(&checkpoint.join(META_FILE), |bytes| damage_meta(bytes, damage)),
    }
}

/// Opens a copy of `crashed` after `prepare` changed it.
fn open_copy(crashed: &Path, prepare: impl FnOnce(&Path)) -> (tempfile::TempDir, Db) {
    let copy = fast_tempdir();
    copy_dir(crashed, copy.path());
    prepare(copy.path());
    let db = manual_options().open(copy.path()).expect("open the damaged copy");
    (copy, db)
}

/// Criterion 5: a database with two checkpoints, A then B, crashed. Whatever the damage to
/// B's directory (in `CHECKPOINT`: a bit flipped in its header, its usage or segment list or
/// its trailer; cut by a byte, to half, to nothing; a byte appended; the file removed; in
/// the index copy: a bit flipped in a bucket file's data, a bucket file cut or removed, a bit
/// flipped in its `MANIFEST`, the whole copy removed), recovery rejects B, starts from A,
/// replays exactly the log after A and recovers the exact contents. With A damaged too it
/// replays the whole log; and a checkpoint of another database, named to sort newest, is
/// rejected as well.
#[test]
fn a_damaged_checkpoint_is_never_used() {
    let crashed = fast_tempdir();
    let mut model = State::new();
    let db = manual_options().open(crashed.path()).expect("open");
    let n_records_before_a = write_phase(&db, &mut model, 0);
    // The log so far is in memory only; A's CHECKPOINT lists its segments all the same.
    let a = db.checkpoint().expect("checkpoint A");
    let n_records_a_to_b = write_phase(&db, &mut model, 1);
    let b = db.checkpoint().expect("checkpoint B");
    let n_records_after_b = write_phase(&db, &mut model, 2);
    db.sync().expect("sync");
    let log_tail = db.stats().log_tail;
    assert!(a.covers_until < b.covers_until && b.covers_until < log_tail, "{a:?} {b:?} {log_tail}");
    for checkpoint in [&a, &b] {
        let expected = crashed.path().join("checkpoints").join(checkpoint_name(checkpoint.covers_until));
        assert_eq!(checkpoint.path, expected, "a checkpoint's directory is named by what it covers");
        assert!(checkpoint.path.join(META_FILE).is_file(), "{checkpoint:?}");
        assert!(checkpoint.path.join(INDEX_DIR).join("MANIFEST").is_file(), "{checkpoint:?}");
    }
    db.simulate_crash();

    // Undamaged: B is used.
    let (_copy, db) = open_copy(crashed.path(), |_| {});
    let recovery = db.stats().recovery;
    assert_eq!(recovery.checkpoint_covers_until, Some(b.covers_until), "{recovery:?}");
    assert_eq!(recovery.n_checkpoints_rejected, 0, "{recovery:?}");
    assert_eq!(recovery.n_records_replayed, n_records_after_b, "{recovery:?}");
    assert_eq!(state_of(&db), model);
    db.close().expect("close");

    for kind in ALL_DAMAGE {
        let (_copy, db) = open_copy(crashed.path(), |dir| damage(&checkpoint_in_copy(crashed.path(), dir, &b), kind));
        let recovery = db.stats().recovery;
        assert_eq!(recovery.checkpoint_covers_until, Some(a.covers_until), "B {kind:?}: {recovery:?}");
        assert_eq!(recovery.n_checkpoints_rejected, 1, "B {kind:?}: {recovery:?}");
        assert_eq!(recovery.n_records_replayed, n_records_a_to_b + n_records_after_b, "B {kind:?}: {recovery:?}");
        assert_eq!(state_of(&db), model, "B {kind:?}: contents");
        db.close().expect("close");
    }

    for (kind_a, kind_b) in ALL_DAMAGE.iter().zip(ALL_DAMAGE.iter().cycle().skip(3)) {
        let (_copy, db) = open_copy(crashed.path(), |dir| {
            damage(&checkpoint_in_copy(crashed.path(), dir, &a), *kind_a);
            damage(&checkpoint_in_copy(crashed.path(), dir, &b), *kind_b);
        });
        let recovery = db.stats().recovery;
        let context = format!("A {kind_a:?}, B {kind_b:?}: {recovery:?}");
        assert_eq!(recovery.checkpoint_covers_until, None, "{context}");
        assert_eq!(recovery.n_checkpoints_rejected, 2, "{context}");
        assert_eq!(recovery.n_records_replayed, n_records_before_a + n_records_a_to_b + n_records_after_b, "{context}");
        assert_eq!(state_of(&db), model, "{context}: contents");
        db.close().expect("close");
    }

    // Another database with the same writes (so the same log addresses, but its own id and
    // hash seed), checkpointed at the end of the log: its checkpoint, copied in under its own
    // name (what it covers, past B), sorts newest here.
    let other_dir = fast_tempdir();
    let other = manual_options().open(other_dir.path()).expect("open the other database");
    let mut other_model = State::new();
    for phase in 0..3 {
        write_phase(&other, &mut other_model, phase);
    }
    let foreign = other.checkpoint().expect("checkpoint the other database");
    other.close().expect("close the other database");
    assert_eq!(foreign.covers_until, log_tail, "the same writes end at the same address");
    let (_copy, db) = open_copy(crashed.path(), |dir| {
        let target = checkpoint_in_copy(other_dir.path(), dir, &foreign);
        assert_eq!(target, dir.join("checkpoints").join(checkpoint_name(log_tail)), "{foreign:?}");
        copy_dir(&foreign.path, &target);
    });
    let recovery = db.stats().recovery;
    assert_eq!(recovery.checkpoint_covers_until, Some(b.covers_until), "foreign checkpoint: {recovery:?}");
    assert_eq!(recovery.n_checkpoints_rejected, 1, "foreign checkpoint: {recovery:?}");
    assert_eq!(recovery.n_records_replayed, n_records_after_b, "foreign checkpoint: {recovery:?}");
    assert_eq!(state_of(&db), model, "foreign checkpoint: contents");
    db.close().expect("close");
}

// ---------------------------------------------------------------------------------------
// Background checkpoints.

/// The checkpoint directories in `<db>/checkpoints`, not counting the one being written.
fn checkpoint_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("checkpoints"))
        .expect("the checkpoint directory")
        .map(|entry| entry.expect("a directory entry"))
        // An entry whose type cannot be read was removed meanwhile (an old checkpoint).
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "checkpoint.tmp")
        .collect();
    names.sort();
    names
}

/// The checkpoint directories, listed again for a moment while there are more than two: a
/// checkpoint being written is renamed into place just before the oldest one is removed.
fn kept_checkpoint_dirs(dir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let dirs = checkpoint_dirs(dir);
        if dirs.len() <= 2 || Instant::now() >= deadline {
            return dirs;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (up to 10 s) until the database has written more than `n_checkpoints` checkpoints.
fn wait_for_checkpoints_beyond(db: &Db, n_checkpoints: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = db.stats().counters.n_checkpoints;
        if now > n_checkpoints {
            return now;
        }
        assert!(Instant::now() < deadline, "no background checkpoint after {n_checkpoints} in 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes about `n_bytes` of puts (overwrites of 1,000 keys) and some deletes.
fn write_bytes(db: &Db, model: &mut State, rng: &mut SplitMix64, n_bytes: u64) {
    let mut written = 0u64;
    while written < n_bytes {
        let key = format!("bg-{:04}", rng.below(1_000)).into_bytes();
        if rng.below(10) == 0 {
            db.delete(&key).expect("delete");
            model.remove(&key);
            continue;
        }
        let mut value = vec![0u8; rng.between(100, 2_000)];
        fill_pattern(&mut value, rng.next_u64());
        db.put(&key, &value).expect("put");
        written += value.len() as u64;
        model.insert(key, value);
    }
}

/// Writes rounds with `options`, waiting after each for a background checkpoint; at most
/// two checkpoint directories are ever kept. After a crash, recovery starts from the newest
/// and the contents are exact.
fn background_checkpoints(test_name: &str, options: Options, bytes_per_round: u64) {
    let seed = test_seed(test_name);
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let mut model = State::new();
    let db = options.clone().open(dir.path()).expect("open");
    let mut n_checkpoints = 0;
    for round in 0..4 {
        write_bytes(&db, &mut model, &mut rng, bytes_per_round);
        n_checkpoints = wait_for_checkpoints_beyond(&db, n_checkpoints);
        let kept = kept_checkpoint_dirs(dir.path());
        assert!(
            (1..=2).contains(&kept.len()),
            "seed {seed}, round {round}: {n_checkpoints} checkpoints written, directories kept: {kept:?}"
        );
        for name in &kept {
            let covers_until = u64::from_str_radix(name, 16).ok().filter(|_| name.len() == 16);
            assert!(covers_until.is_some(), "seed {seed}, round {round}: a stray directory {name:?}: {kept:?}");
        }
    }
    // A little more after the last checkpoint: recovery replays it over the checkpoint.
    write_bytes(&db, &mut model, &mut rng, 20_000);
    db.sync().expect("sync");
    db.simulate_crash();
    let newest = checkpoint_dirs(dir.path()).pop().expect("a checkpoint is kept");
    let newest_dir = dir.path().join("checkpoints").join(&newest);
    assert!(newest_dir.join(META_FILE).is_file(), "seed {seed}: {newest} holds its metadata");
    assert!(newest_dir.join(INDEX_DIR).join("MANIFEST").is_file(), "seed {seed}: {newest} holds an index copy");

    let db = options.open(dir.path()).expect("reopen");
    let recovery = db.stats().recovery;
    let covers_until = recovery.checkpoint_covers_until.unwrap_or_else(|| panic!("seed {seed}: {recovery:?}"));
    assert_eq!(checkpoint_name(covers_until), newest, "seed {seed}: the newest checkpoint is used");
    assert_eq!(recovery.n_checkpoints_rejected, 0, "seed {seed}: {recovery:?}");
    assert_eq!(state_of(&db), model, "seed {seed}: contents after recovery from a background checkpoint");
    db.close().expect("close");
}

/// `checkpoint_every_bytes` and `checkpoint_interval` make the background thread write
/// checkpoints as the log grows (or time passes, with writes); it keeps only the newest two
/// directories, and recovery after a crash starts from the newest and recovers the exact
/// contents.
#[test]
fn checkpoints_are_taken_in_the_background() {
    background_checkpoints(
        "checkpoints_are_taken_in_the_background (by bytes)",
        options(SyncMode::Never).checkpoint_every_bytes(MIB),
        3 * MIB / 2,
    );
    background_checkpoints(
        "checkpoints_are_taken_in_the_background (by time)",
        options(SyncMode::Never).checkpoint_every_bytes(0).checkpoint_interval(Some(Duration::from_millis(200))),
        100_000,
    );
}

/// Once writes pause for a second, the background thread writes a checkpoint if a
/// sixteenth of `checkpoint_every_bytes` was written since the last: a crash after the pause
/// replays nothing. Less than that leaves no checkpoint.
#[test]
fn a_checkpoint_is_written_when_writes_pause() {
    let seed = test_seed("a_checkpoint_is_written_when_writes_pause");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let mut model = State::new();
    let options = options(SyncMode::Never).checkpoint_every_bytes(64 * MIB);
    let db = options.clone().open(dir.path()).expect("open");
    // Below 4 MiB: no checkpoint, however long the pause.
    write_bytes(&db, &mut model, &mut rng, MIB);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(db.stats().counters.n_checkpoints, 0, "seed {seed}: no checkpoint for 1 MiB");
    // Past 4 MiB (still far below 64 MiB): one checkpoint once the pause is long enough.
    write_bytes(&db, &mut model, &mut rng, 4 * MIB);
    let written_at = Instant::now();
    let n_checkpoints = wait_for_checkpoints_beyond(&db, 0);
    assert!(written_at.elapsed() >= Duration::from_millis(900), "seed {seed}: not before the pause");
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(db.stats().counters.n_checkpoints, n_checkpoints, "seed {seed}: one per pause");
    let log_end = db.stats().log_tail;
    db.simulate_crash();
    let db = options.open(dir.path()).expect("reopen");
    let recovery = db.stats().recovery;
    assert_eq!(recovery.checkpoint_covers_until, Some(log_end), "seed {seed}: the checkpoint covers the whole log");
    assert_eq!(recovery.n_bytes_scanned, 0, "seed {seed}: nothing to replay: {recovery:?}");
    assert_eq!(state_of(&db), model, "seed {seed}: contents after recovery from the pause's checkpoint");
    db.close().expect("close");
}

// ---------------------------------------------------------------------------------------
// Checkpoints under concurrent writes.

/// Keys both writers pick from; many, so that most keys' values at a crash come from the
/// checkpoint's entries rather than from the log replayed after it.
const N_SHARED_KEYS: u64 = 1_024;
const N_WRITERS: u64 = 2;
const N_CONCURRENT_ROUNDS: u64 = 8;

/// What a writer thread acknowledged last for each key it wrote: a value, or `None` for a
/// delete.
type Acknowledged = HashMap<Vec<u8>, Option<Vec<u8>>>;

/// Sets the flag when dropped, so writer threads stop even when the test panics (a scope
/// whose threads never end would hang instead of failing).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Who writes a value: round, writer, operation, batch member (no two writes make the same).
#[derive(Clone, Copy)]
struct Writer {
    round: u64,
    writer: u64,
}

fn unique_value(who: Writer, op: u64, member: u64, rng: &mut SplitMix64) -> Vec<u8> {
    let mut value = format!("r{}-w{}-op{op}-m{member}-", who.round, who.writer).into_bytes();
    let start = value.len();
    value.resize(start + rng.between(50, 400), 0);
    fill_pattern(&mut value[start..], who.round << 56 ^ who.writer << 48 ^ op << 8 ^ member);
    value
}

/// Puts, deletes and batches on the shared keys until `stop`; returns what it acknowledged
/// and how many operations it made.
fn concurrent_writer(db: &Db, who: Writer, seed: u64, stop: &AtomicBool) -> (Acknowledged, u64) {
    let mut rng = SplitMix64::new(seed ^ (who.round << 8 | who.writer).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut acknowledged = Acknowledged::new();
    let mut op = 0u64;
    let key = |rng: &mut SplitMix64| format!("shared-{:04}", rng.below(N_SHARED_KEYS)).into_bytes();
    while !stop.load(Ordering::Relaxed) {
        match rng.below(10) {
            0..=5 => {
                let (key, value) = (key(&mut rng), unique_value(who, op, 0, &mut rng));
                db.put(&key, &value).expect("put");
                acknowledged.insert(key, Some(value));
            }
            6 | 7 => {
                let key = key(&mut rng);
                db.delete(&key).expect("delete");
                acknowledged.insert(key, None);
            }
            _ => {
                let mut batch = WriteBatch::new();
                let mut changes = Vec::new();
                for member in 0..rng.between(2, 6) as u64 {
                    let key = key(&mut rng);
                    match rng.below(4) {
                        0 => {
                            batch.delete(&key);
                            changes.push((key, None));
                        }
                        _ => {
                            let value = unique_value(who, op, member, &mut rng);
                            batch.put(&key, &value);
                            changes.push((key, Some(value)));
                        }
                    }
                }
                db.write(batch).expect("write a batch");
                acknowledged.extend(changes);
            }
        }
        op += 1;
    }
    (acknowledged, op)
}

/// Checks that the writers' round took `before` to `after`: a key no writer touched is as it
/// was, and a key they touched holds what one of them acknowledged last for it.
fn check_round(before: &State, after: &State, writers: &[(Acknowledged, u64)], context: &str) {
    let mut keys: Vec<&Vec<u8>> = before.keys().chain(after.keys()).collect();
    keys.extend(writers.iter().flat_map(|(acknowledged, _)| acknowledged.keys()));
    keys.sort();
    keys.dedup();
    for key in keys {
        let candidates: Vec<Option<&Vec<u8>>> =
            writers.iter().filter_map(|(acknowledged, _)| acknowledged.get(key)).map(Option::as_ref).collect();
        let found = after.get(key);
        match candidates.is_empty() {
            true => assert_eq!(found, before.get(key), "{context}: a key no writer touched changed"),
            false => assert!(
                candidates.contains(&found),
                "{context}: {} holds a value no writer acknowledged last",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

/// Rounds of two writers putting, deleting and writing batches on the same keys with
/// `SyncMode::Always` (background compaction on) while checkpoints are taken back to back
/// (and, every other round, a compaction moves records after the last one). The writers
/// stop as soon as the last checkpoint (or compaction) is done, the database crashes, and
/// recovery starts from that checkpoint (taken mid-write) and gives back exactly the state
/// the writers had acknowledged: every key holds the last value one of them acknowledged.
#[test]
fn checkpoint_during_concurrent_writes_is_consistent() {
    let seed = test_seed("checkpoint_during_concurrent_writes_is_consistent");
    let mut rng = SplitMix64::new(seed);
    let dir = fast_tempdir();
    let options = options(SyncMode::Always).checkpoint_every_bytes(0).compaction_garbage_ratio(0.2);
    let mut db = options.clone().open(dir.path()).expect("open");
    let mut state = State::new();
    let mut n_segments_compacted = 0;
    for round in 0..N_CONCURRENT_ROUNDS {
        let context = format!("seed {seed}, round {round}");
        let stop = AtomicBool::new(false);
        let (last_checkpoint, writers) = std::thread::scope(|scope| {
            let _stop_writers = StopOnDrop(&stop);
            let writers: Vec<_> = (0..N_WRITERS)
                .map(|writer| {
                    let (db, stop) = (&db, &stop);
                    scope.spawn(move || concurrent_writer(db, Writer { round, writer }, seed, stop))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(5 + rng.below(25)));
            let mut last_checkpoint = None;
            for _ in 0..3 {
                last_checkpoint = Some(db.checkpoint().expect("checkpoint"));
            }
            // Every other round, compaction then moves records the checkpoint points at.
            if round % 2 == 1 {
                n_segments_compacted += db.compact().expect("compact").n_segments_compacted;
            }
            stop.store(true, Ordering::Relaxed);
            let writers: Vec<(Acknowledged, u64)> =
                writers.into_iter().map(|writer| writer.join().expect("a writer thread")).collect();
            (last_checkpoint.expect("checkpoints were taken"), writers)
        });
        let n_ops: Vec<u64> = writers.iter().map(|(_, n_ops)| *n_ops).collect();
        assert!(n_ops.iter().all(|&n| n > 0), "{context}: both writers wrote");
        db.sync().expect("sync");
        let live = state_of(&db);
        check_round(&state, &live, &writers, &context);
        db.simulate_crash();

        db = options.clone().open(dir.path()).expect("reopen");
        let recovery = db.stats().recovery;
        eprintln!(
            "{context}: writers made {n_ops:?} operations; {} keys; {n_segments_compacted} segments compacted so far; \
             {} records replayed after the checkpoint",
            live.len(),
            recovery.n_records_replayed
        );
        assert_eq!(recovery.checkpoint_covers_until, Some(last_checkpoint.covers_until), "{context}: {recovery:?}");
        assert_eq!(state_of(&db), live, "{context}: contents after recovery from a checkpoint taken mid-write");
        state = live;
    }
    db.close().expect("close");
    assert!(n_segments_compacted > 0, "seed {seed}: compaction moved records after checkpoints");
}

/// A regression test: a checkpoint taken while the log is still only in memory must list
/// its segments all the same, so that recovery drops the entries pointing into segments
/// compaction removed since (they once came back as corrupt entries of deleted keys).
#[test]
fn a_checkpoint_of_a_log_still_in_memory_drops_entries_of_compacted_segments() {
    let dir = fast_tempdir();
    let db = manual_options().open(dir.path()).expect("open");
    for idx in 0..1_000u32 {
        db.put(format!("doomed-{idx:04}"), [7u8; 150]).expect("put");
    }
    let checkpoint = db.checkpoint().expect("checkpoint");
    let meta = std::fs::read(checkpoint.path.join(META_FILE)).expect("read CHECKPOINT");
    let n_segments = u32::from_le_bytes(meta[60..64].try_into().expect("4 bytes"));
    eprintln!("{checkpoint:?}: CHECKPOINT lists {n_segments} segments");
    for idx in 0..1_000u32 {
        db.delete(format!("doomed-{idx:04}")).expect("delete");
    }
    for idx in 0..4_000u32 {
        db.put(format!("filler-{:03}", idx % 100), [9u8; 1_000]).expect("put");
    }
    db.sync().expect("sync");
    while db.compact().expect("compact").n_segments_compacted > 0 {}
    let live = state_of(&db);
    assert!(db.stats().log_begin > checkpoint.covers_until, "compaction removed the checkpoint's segments");
    db.simulate_crash();

    let db = manual_options().open(dir.path()).expect("reopen");
    let recovery = db.stats().recovery;
    assert_eq!(recovery.checkpoint_covers_until, Some(checkpoint.covers_until), "{recovery:?}");
    assert_eq!(db.stats().n_keys, live.len() as u64, "{recovery:?}");
    assert_eq!(db.get("doomed-0000").expect("get"), None);
    assert_eq!(state_of(&db), live);
}
