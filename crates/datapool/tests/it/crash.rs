//! Acceptance criterion 4 and crash loops: a child process (this test binary, re-run in a
//! child mode) writes to a pool and is killed with SIGKILL, so no destructor or flush runs.
//! The parent then opens the pool and checks what a crash may leave.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use talus_datapool::{Datapool, Error, FileBackedMemory, MmapFile, MmapFileOptions};

use crate::common::{FileKind, SplitMix64, pattern, test_seed};

const CHILD_ENV: &str = "TALUS_DATAPOOL_CHILD";
/// Starts each protocol line; the harness may print its own text before it on the same line.
const PROTOCOL_MARK: &str = "@talus-child@ ";
const DATA_LEN: usize = (1 << 20) + 3;

/// What the child does before it waits to be killed.
#[derive(Clone, Copy, Debug)]
enum ChildAction {
    /// Open the MmapFile, write a new pattern, never flush.
    WriteNoFlush,
    /// Open the MmapFile, write a new pattern, flush.
    WriteAndFlush,
    /// Open the MmapFile and only read it.
    ReadOnly,
    /// Loop: write pattern `i`, flush, report `i`. Killed at a random moment.
    FlushLoop(FileKind),
}

impl ChildAction {
    fn encode(self) -> &'static str {
        match self {
            ChildAction::WriteNoFlush => "write-no-flush",
            ChildAction::WriteAndFlush => "write-and-flush",
            ChildAction::ReadOnly => "read-only",
            ChildAction::FlushLoop(FileKind::Mmap) => "flush-loop-mmap",
            ChildAction::FlushLoop(FileKind::FileBacked) => "flush-loop-file-backed",
        }
    }

    fn decode(text: &str) -> Self {
        match text {
            "write-no-flush" => ChildAction::WriteNoFlush,
            "write-and-flush" => ChildAction::WriteAndFlush,
            "read-only" => ChildAction::ReadOnly,
            "flush-loop-mmap" => ChildAction::FlushLoop(FileKind::Mmap),
            "flush-loop-file-backed" => ChildAction::FlushLoop(FileKind::FileBacked),
            other => panic!("unknown child action {other}"),
        }
    }
}

/// The child's side: runs inside the test named `child_entry_point` when `CHILD_ENV` is set.
/// Reports progress as lines `ready` and `flushed <i>` on stdout, then sleeps until killed.
fn child_main(spec: &str) {
    let (action, path) = spec.split_once(':').expect("action:path");
    let path = Path::new(path);
    match ChildAction::decode(action) {
        ChildAction::WriteNoFlush | ChildAction::WriteAndFlush | ChildAction::ReadOnly => {
            let action = ChildAction::decode(action);
            let mut pool = MmapFile::open(path, DATA_LEN, 0).expect("child open");
            match action {
                ChildAction::ReadOnly => assert!(pool.as_slice().iter().any(|&b| b != 0)),
                _ => pool.as_mut_slice().copy_from_slice(&pattern(DATA_LEN, 2)),
            }
            if matches!(action, ChildAction::WriteAndFlush) {
                pool.flush().expect("child flush");
            }
            report("ready");
            std::mem::forget(pool); // even if the kill were late, no destructor runs
        }
        ChildAction::FlushLoop(kind) => {
            let mut pool = kind.open(path, DATA_LEN, 0).expect("child open");
            for i in 1u64.. {
                pool.as_mut_slice().copy_from_slice(&pattern(DATA_LEN, i));
                pool.flush().expect("child flush");
                report(&format!("flushed {i}"));
            }
        }
    }
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Writes one protocol line to the parent, flushed at once (stdout to a pipe is buffered).
fn report(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{PROTOCOL_MARK}{line}").and_then(|()| stdout.flush()).expect("report to parent");
}

/// Not a test of its own: the entry point the parent re-runs this binary into (ignored in
/// normal runs; the parent passes `--include-ignored`).
#[test]
#[ignore = "entry point for the crash tests' child processes"]
fn child_entry_point() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
    }
}

struct Spawned {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
}

fn spawn(action: ChildAction, path: &Path) -> Spawned {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash::child_entry_point", "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}:{}", action.encode(), path.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    Spawned { child, lines }
}

impl Spawned {
    /// Waits for the next protocol line (skipping the harness's own output).
    fn next_line(&mut self) -> Option<String> {
        self.lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.split_once(PROTOCOL_MARK).map(|(_, message)| message.to_owned()))
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL"); // `Child::kill` sends SIGKILL on Unix
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "the child was killed, not finished");
    }
}

fn pool_with_pattern_one(path: &Path) {
    let mut pool = MmapFile::create(path, DATA_LEN, 0).expect("create");
    pool.as_mut_slice().copy_from_slice(&pattern(DATA_LEN, 1));
    pool.close().expect("close");
}

#[test]
fn mmap_file_killed_after_writing_without_flush_is_dirty_and_resumes_with_every_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    pool_with_pattern_one(&path);

    let mut child = spawn(ChildAction::WriteNoFlush, &path);
    assert_eq!(child.next_line().as_deref(), Some("ready"));
    child.kill();
    assert!(matches!(MmapFile::open(&path, DATA_LEN, 0), Err(Error::Dirty { .. })));
    assert!(matches!(FileBackedMemory::open(&path, DATA_LEN, 0), Err(Error::Dirty { .. })));
    // The killed process's stores are in the page cache: a resumed pool holds all of them,
    // and stays dirty until it is flushed.
    let resume = MmapFileOptions::new().resume_dirty(true);
    let pool = resume.open(&path, DATA_LEN, 0).expect("a dirty pool resumes");
    assert!(pool.is_dirty());
    assert!(pool.as_slice() == &pattern(DATA_LEN, 2)[..], "the bytes the killed process wrote");
    drop(pool);
    assert!(matches!(MmapFile::open(&path, DATA_LEN, 0), Err(Error::Dirty { .. })), "dropping it flushed nothing");
    let mut pool = resume.open(&path, DATA_LEN, 0).expect("resumes again");
    pool.flush().expect("flush");
    drop(pool);
    let pool = MmapFile::open(&path, DATA_LEN, 0).expect("clean after its flush, with a checksum that verifies");
    assert!(pool.as_slice() == &pattern(DATA_LEN, 2)[..]);
}

#[test]
fn mmap_file_killed_after_flush_opens_with_the_new_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    pool_with_pattern_one(&path);

    let mut child = spawn(ChildAction::WriteAndFlush, &path);
    assert_eq!(child.next_line().as_deref(), Some("ready"));
    child.kill();
    let pool = MmapFile::open(&path, DATA_LEN, 0).expect("a flushed pool opens");
    assert!(pool.as_slice() == &pattern(DATA_LEN, 2)[..], "the bytes written before the flush");
}

#[test]
fn mmap_file_killed_after_only_reading_is_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    pool_with_pattern_one(&path);

    let mut child = spawn(ChildAction::ReadOnly, &path);
    assert_eq!(child.next_line().as_deref(), Some("ready"));
    child.kill();
    let pool = MmapFile::open(&path, DATA_LEN, 0).expect("reading does not dirty the pool");
    assert!(pool.as_slice() == &pattern(DATA_LEN, 1)[..]);
}

/// Kills a child that writes and flushes in a loop at random moments. After each kill the
/// pool holds the last acknowledged image or the one after it, whole; an `MmapFile` may also
/// be reported dirty (killed between a write and its flush), never torn or mixed.
fn crash_loop(kind: FileKind, test_name: &str) {
    let seed = test_seed(test_name);
    let mut rng = SplitMix64::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..6 {
        let path = dir.path().join(format!("pool-{round}"));
        drop(kind.create(&path, DATA_LEN, 0).expect("create"));
        let mut child = spawn(ChildAction::FlushLoop(kind), &path);
        let mut acknowledged = 0u64;
        let wanted = 1 + rng.below(4);
        while acknowledged < wanted {
            let line = child.next_line().expect("child alive");
            acknowledged = line["flushed ".len()..].parse().expect("number");
        }
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        child.kill();
        // Lines the child wrote before dying are acknowledgements too.
        // (They are unread; `acknowledged` is a lower bound, which is what we check.)
        match kind.open(&path, DATA_LEN, 0) {
            Ok(pool) => {
                let found = (acknowledged..acknowledged + 64)
                    .find(|&i| pool.as_slice() == &pattern(DATA_LEN, i)[..])
                    .unwrap_or_else(|| panic!("{kind:?} round {round}: image is none of the flushed ones"));
                assert!(found >= acknowledged);
            }
            Err(Error::Dirty { .. }) if kind == FileKind::Mmap => {}
            Err(error) => panic!("{kind:?} round {round}: {error}"),
        }
    }
}

#[test]
fn file_backed_memory_killed_mid_flush_keeps_a_whole_image() {
    crash_loop(FileKind::FileBacked, "file_backed_memory_killed_mid_flush_keeps_a_whole_image");
}

#[test]
fn mmap_file_killed_mid_flush_is_whole_or_dirty() {
    crash_loop(FileKind::Mmap, "mmap_file_killed_mid_flush_is_whole_or_dirty");
}
