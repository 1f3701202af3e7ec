//! Acceptance criterion 4: a child process inserts and is killed with SIGKILL; the parent
//! sees the map as not clean, and the discard option gives an empty, working map. And
//! resuming after a kill: the map opens as the killed process left it, with every change it
//! made, or (a bucket half-way through a change, a restarted machine) not at all.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use talus_bucketmap::{BucketMap, BucketMapConfig, Error};
use talus_testkit::{SplitMix64, test_seed};

const CHILD_ENV: &str = "TALUS_BUCKETMAP_CHILD";
const CHILD_LOOP_ENV: &str = "TALUS_BUCKETMAP_CHILD_LOOP";
/// Keys the loop child keeps: op `i` inserts key `i` and removes key `i - WINDOW`.
const WINDOW: u64 = 500;
const MARK: &str = "@talus-child@ ";

fn config(dir: &Path) -> BucketMapConfig {
    BucketMapConfig::new(dir).bucket_bits(2).initial_cells_log2(6)
}

/// Runs in the child: open the map, insert (growing buckets), report, wait to be killed.
#[test]
#[ignore = "entry point for the crash test's child process"]
fn child_entry_point() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let map: BucketMap<u64, u64> = BucketMap::open(config(Path::new(&dir))).expect("child open");
    if std::env::var(CHILD_LOOP_ENV).is_ok() {
        use std::io::Write;
        // Insert key `i` and remove key `i - WINDOW`, for ever, reporting progress.
        for op in 0u64.. {
            map.insert(op, op * 3).expect("child insert");
            if op >= WINDOW {
                map.remove(&(op - WINDOW)).expect("child remove");
            }
            if op % 64 == 0 {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{MARK}done {op}").and_then(|()| stdout.flush()).expect("report");
            }
        }
    }
    for key in 1_000..50_000 {
        map.insert(key, key).expect("child insert");
    }
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{MARK}inserted").and_then(|()| stdout.flush()).expect("report");
    }
    std::mem::forget(map);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

#[test]
fn a_killed_writer_leaves_a_map_that_opens_as_not_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let map: BucketMap<u64, u64> = BucketMap::create(config(dir.path())).expect("create");
    for key in 0..1_000 {
        map.insert(key, key).expect("insert");
    }
    map.close().expect("close");

    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash::child_entry_point", "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let reported =
        BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.contains(&format!("{MARK}inserted")));
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(reported, "the child inserted before it was killed");

    assert!(matches!(BucketMap::<u64, u64>::open(config(dir.path())), Err(Error::NotClean { .. })));
    let map: BucketMap<u64, u64> =
        BucketMap::open(config(dir.path()).discard_if_unclean(true)).expect("discarded and recreated");
    assert_eq!(map.len(), 0);
    assert_eq!(map.get(&5), None);
    map.insert(5, 55).expect("the new map works");
    map.close().expect("close");
    let map: BucketMap<u64, u64> = BucketMap::open(config(dir.path())).expect("clean now");
    assert_eq!((map.len(), map.get(&5)), (1, Some(55)));
    let n_files = std::fs::read_dir(dir.path()).expect("list").count();
    assert_eq!(n_files, 4 + 2, "four bucket files, the manifest and the live state: the old files were deleted");
}

/// Starts the child in `dir`; returns it and its protocol lines.
fn spawn_child(dir: &Path, looping: bool) -> (std::process::Child, impl Iterator<Item = String>) {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["crash::child_entry_point", "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped());
    if looping {
        command.env(CHILD_LOOP_ENV, "1");
    }
    let mut child = command.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let lines = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| line.split_once(MARK).map(|(_, rest)| rest.to_owned()));
    (child, lines)
}

/// A map with keys 0..1000, closed, then the inserting child run on it and killed.
fn killed_after_inserting(dir: &Path) {
    let map: BucketMap<u64, u64> = BucketMap::create(config(dir)).expect("create");
    for key in 0..1_000 {
        map.insert(key, key).expect("insert");
    }
    map.close().expect("close");
    let (mut child, mut lines) = spawn_child(dir, false);
    let reported = lines.any(|line| line == "inserted");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(reported, "the child inserted before it was killed");
}

#[test]
fn a_killed_writer_leaves_a_map_that_resumes_with_every_insert() {
    let dir = tempfile::tempdir().expect("temp dir");
    killed_after_inserting(dir.path());
    let resume = config(dir.path()).resume_after_kill(true);
    let map: BucketMap<u64, u64> = BucketMap::open(resume.clone()).expect("resumed");
    assert!(map.was_resumed());
    assert_eq!(map.len(), 50_000);
    for key in 0..50_000 {
        assert_eq!(map.get(&key), Some(key), "key {key}");
    }
    assert_eq!(map.get(&50_000), None);
    assert!(map.stats().iter().all(|bucket| bucket.resizes > 0), "the child grew every bucket");
    // The killed process's growths left no stray table behind.
    let n_files = std::fs::read_dir(dir.path()).expect("list").count();
    assert_eq!(n_files, 4 + 2, "four bucket files, the manifest and the live state");
    map.insert(50_000, 7).expect("a resumed map takes writes");
    assert_eq!(map.remove(&3).expect("remove"), Some(3));
    map.close().expect("close");
    // Closed cleanly: it opens (checksums verified, counts checked) without resuming.
    let map: BucketMap<u64, u64> = BucketMap::open(resume).expect("clean");
    assert!(!map.was_resumed());
    assert_eq!((map.len(), map.get(&50_000), map.get(&3), map.get(&4)), (50_000, Some(7), None, Some(4)));
}

/// The data word `field` of bucket `idx`'s slot in the live state file (see docs/format.md).
fn live_word_offset(idx: usize, field: usize) -> usize {
    4096 + 64 + idx * 64 + field * 8
}

fn edit_live(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join("LIVE.pool");
    let mut bytes = std::fs::read(&path).expect("read the live state");
    edit(&mut bytes);
    std::fs::write(&path, bytes).expect("write the live state");
}

#[test]
fn a_map_is_not_resumed_mid_change_after_a_restart_or_with_its_live_state_damaged() {
    type Edit = fn(&mut Vec<u8>);
    let edits: [(&str, Edit); 4] = [
        ("a bucket half-way through a change", |bytes| bytes[live_word_offset(2, 0)] |= 1),
        ("another boot", |bytes| bytes[4096 + 3] ^= 0x10),
        ("a table size out of range", |bytes| bytes[live_word_offset(1, 2)] ^= 0x03),
        ("a count larger than the table", |bytes| bytes[live_word_offset(3, 3) + 7] = 0x7f),
    ];
    for (what, edit) in edits {
        let dir = tempfile::tempdir().expect("temp dir");
        killed_after_inserting(dir.path());
        edit_live(dir.path(), edit);
        let resume = config(dir.path()).resume_after_kill(true);
        let opened = BucketMap::<u64, u64>::open(resume.clone());
        assert!(matches!(opened, Err(Error::NotClean { .. })), "{what}: {:?}", opened.map(|map| map.len()));
        let map: BucketMap<u64, u64> = BucketMap::open(resume.discard_if_unclean(true)).expect("discarded");
        assert!(!map.was_resumed() && map.is_empty(), "{what}");
    }
    // A truncated live state file is no resume either.
    let dir = tempfile::tempdir().expect("temp dir");
    killed_after_inserting(dir.path());
    edit_live(dir.path(), |bytes| bytes.truncate(4096 + 100));
    let opened = BucketMap::<u64, u64>::open(config(dir.path()).resume_after_kill(true));
    assert!(matches!(opened, Err(Error::NotClean { .. })));
}

#[test]
fn a_writer_killed_at_random_moments_resumes_as_some_prefix_of_its_operations_or_not_at_all() {
    let seed = test_seed("a_writer_killed_at_random_moments_resumes_as_some_prefix_of_its_operations_or_not_at_all");
    let mut rng = SplitMix64::new(seed);
    let mut n_resumed = 0;
    for round in 0..16 {
        let dir = tempfile::tempdir().expect("temp dir");
        BucketMap::<u64, u64>::create(config(dir.path())).expect("create").close().expect("close");
        let (mut child, lines) = spawn_child(dir.path(), true);
        // Kill it once it has reported a random number of operations.
        let wanted = 64 * rng.below(200);
        let mut reported = None;
        for line in lines {
            let op: u64 = line.strip_prefix("done ").and_then(|op| op.parse().ok()).expect("a progress line");
            reported = Some(op);
            if op >= wanted {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let reported = reported.expect("the child reported progress");
        let map = match BucketMap::<u64, u64>::open(config(dir.path()).resume_after_kill(true)) {
            Ok(map) => map,
            Err(Error::NotClean { .. }) => continue, // killed half-way through a change
            Err(error) => panic!("round {round}: {error}"),
        };
        n_resumed += 1;
        // The state after operations 0..=last, for some last at or after the report: key
        // `last` and the WINDOW keys before it, perhaps without the oldest (its removal is
        // the second half of operation `last`).
        let mut keys: Vec<(u64, u64)> = map.iter().collect();
        keys.sort_unstable();
        let last = keys.last().map(|&(key, _)| key).expect("keys");
        assert!(last >= reported, "round {round}: key {last} is the newest, {reported} was reported");
        let first = keys[0].0;
        assert!(
            first == last.saturating_sub(WINDOW) || first == last.saturating_sub(WINDOW - 1),
            "round {round}: keys {first}..={last}"
        );
        assert_eq!(keys.len() as u64, last - first + 1, "round {round}: no key missing in between");
        assert_eq!(map.len(), keys.len() as u64, "round {round}: len");
        for (key, value) in keys {
            assert_eq!(value, key * 3, "round {round}: key {key}");
            assert_eq!(map.get(&key), Some(key * 3), "round {round}: get {key}");
        }
    }
    println!("resumed {n_resumed} of 16 killed writers (seed {seed})");
}
