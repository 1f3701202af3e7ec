//! Acceptance criterion 4: a child process inserts and is killed with SIGKILL; the parent
//! sees the map as not clean, and the discard option gives an empty, working map.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use talus_bucketmap::{BucketMap, BucketMapConfig, Error};

const CHILD_ENV: &str = "TALUS_BUCKETMAP_CHILD";
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
    assert_eq!(n_files, 4 + 1, "four bucket files and the manifest: the old files were deleted");
}
