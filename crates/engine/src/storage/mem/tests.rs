//! Tests of `MemStorage`: the [`Storage`] contract, and the crash and fault model that the
//! engine's crash tests rely on.

use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

use talus_testkit::{SplitMix64, pattern, test_seed};

use super::{CrashMode, MAX_FILE_LEN_BYTES, MemStorage};
use crate::storage::{Storage, StorageFile};

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MemStorage>();
};

fn read_all(file: &dyn StorageFile) -> Vec<u8> {
    let len = usize::try_from(file.len().expect("len")).expect("length fits usize");
    let mut buf = vec![0xee; len + 7];
    let n_read = file.read_at(&mut buf, 0).expect("read_at");
    assert_eq!(n_read, len);
    buf.truncate(n_read);
    buf
}

fn kind<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.expect_err("an error").kind()
}

/// A file with `synced` durable and `unsynced` written after it, unsynced.
fn file_with(storage: &MemStorage, path: &str, synced: &[u8], unsynced: &[u8]) -> Arc<dyn StorageFile> {
    let file = storage.open(path, true).expect("open");
    file.write_at(synced, 0).expect("write");
    file.sync_data().expect("sync");
    file.write_at(unsynced, synced.len() as u64).expect("write");
    file
}

#[test]
fn writes_round_trip_through_every_handle_and_clone() {
    let storage = MemStorage::new();
    let file = storage.open("MANIFEST", true).expect("open");
    assert_eq!(file.len().expect("len"), 0);
    file.write_at(b"hello world", 0).expect("write");
    file.write_at(b"W", 6).expect("write");
    assert_eq!(file.len().expect("len"), 11);

    let mut buf = [0; 5];
    assert_eq!(file.read_at(&mut buf, 6).expect("read_at"), 5);
    assert_eq!(&buf, b"World");

    let other_handle = storage.open("MANIFEST", false).expect("open");
    assert_eq!(read_all(other_handle.as_ref()), b"hello World");
    other_handle.write_at(b"!", 11).expect("write");
    assert_eq!(read_all(file.as_ref()), b"hello World!");

    let clone = storage.clone();
    assert_eq!(clone.read("MANIFEST").expect("read"), b"hello World!");
    assert_eq!(storage.file_contents("MANIFEST").expect("file exists"), b"hello World!");
    assert_eq!(storage.file_contents("missing"), None);
}

#[test]
fn reads_stop_at_the_end_and_writes_past_it_fill_with_zeros() {
    let storage = MemStorage::new();
    let file = storage.open("f", true).expect("open");
    file.write_at(b"ab", 4).expect("write");
    assert_eq!(read_all(file.as_ref()), b"\0\0\0\0ab");

    let mut buf = [0xee; 4];
    assert_eq!(file.read_at(&mut buf, 3).expect("read_at"), 3);
    assert_eq!(&buf, b"\0ab\xee");
    assert_eq!(file.read_at(&mut buf, 6).expect("read_at"), 0);
    assert_eq!(file.read_at(&mut buf, 1000).expect("read_at"), 0);
    assert_eq!(file.read_at(&mut buf, u64::MAX).expect("read_at"), 0);
    assert_eq!(file.read_at(&mut [], 0).expect("read_at"), 0);

    let mut exact = [0; 3];
    assert_eq!(kind(crate::storage::read_exact_at(file.as_ref(), &mut exact, 4)), io::ErrorKind::UnexpectedEof);

    // Like `pwrite` of nothing, an empty write past the end does not extend the file.
    file.write_at(&[], 100).expect("write");
    assert_eq!(file.len().expect("len"), 6);
}

#[test]
fn set_len_truncates_and_extends_and_waits_for_sync() {
    let storage = MemStorage::new();
    let file = file_with(&storage, "f", b"abcdef", b"");
    file.set_len(3).expect("set_len");
    assert_eq!(read_all(file.as_ref()), b"abc");
    file.set_len(5).expect("set_len");
    assert_eq!(read_all(file.as_ref()), b"abc\0\0");
    assert_eq!(storage.crash(CrashMode::DropUnsynced).read("f").expect("read"), b"abcdef");
    assert_eq!(storage.crash(CrashMode::KeepUnsynced).read("f").expect("read"), b"abc\0\0");
    file.sync_data().expect("sync");
    assert_eq!(storage.crash(CrashMode::DropUnsynced).read("f").expect("read"), b"abc\0\0");
}

#[test]
fn sizes_past_the_limit_are_refused_and_change_nothing() {
    let storage = MemStorage::new();
    let file = storage.open("f", true).expect("open");
    file.write_at(b"x", 0).expect("write");
    assert_eq!(kind(file.write_at(b"y", MAX_FILE_LEN_BYTES)), io::ErrorKind::FileTooLarge);
    assert_eq!(kind(file.write_at(b"y", u64::MAX)), io::ErrorKind::FileTooLarge);
    assert_eq!(kind(file.set_len(MAX_FILE_LEN_BYTES + 1)), io::ErrorKind::FileTooLarge);
    assert_eq!(read_all(file.as_ref()), b"x");
    file.sync_data().expect("sync");
    assert_eq!(storage.crash(CrashMode::KeepUnsynced).read("f").expect("read"), b"x");
}

#[test]
fn missing_files_and_directories_are_not_found() {
    let storage = MemStorage::new();
    assert_eq!(kind(storage.open("MANIFEST", false)), io::ErrorKind::NotFound);
    assert_eq!(kind(storage.open("log/0.seg", true)), io::ErrorKind::NotFound);
    assert_eq!(kind(storage.read("MANIFEST")), io::ErrorKind::NotFound);
    assert_eq!(kind(storage.remove("MANIFEST")), io::ErrorKind::NotFound);
    assert_eq!(kind(storage.write_atomic("log/MANIFEST", b"x")), io::ErrorKind::NotFound);
    assert_eq!(kind(storage.list("log")), io::ErrorKind::NotFound);
    assert_eq!(kind(storage.lock("log/LOCK")), io::ErrorKind::NotFound);
    assert!(storage.file_paths().is_empty(), "failed calls created {:?}", storage.file_paths());
}

#[test]
fn directories_are_created_with_their_parents() {
    let storage = MemStorage::new();
    storage.create_dir("").expect("create_dir");
    storage.create_dir("a/b/c").expect("create_dir");
    storage.create_dir("a/b/c").expect("create_dir");
    for dir in ["", "a", "a/b", "a/b/c"] {
        assert_eq!(storage.list(dir).expect("list"), Vec::<String>::new(), "{dir:?}");
    }
    storage.open("a/b/c/f", true).expect("open");
    assert_eq!(storage.crash(CrashMode::DropUnsynced).list("a/b/c").expect("list"), ["f"]);

    storage.open("file", true).expect("open");
    assert_eq!(kind(storage.create_dir("file")), io::ErrorKind::AlreadyExists);
    assert_eq!(kind(storage.create_dir("file/sub")), io::ErrorKind::AlreadyExists);
    assert_eq!(kind(storage.list("file")), io::ErrorKind::NotADirectory);
    assert_eq!(kind(storage.open("a", true)), io::ErrorKind::IsADirectory);
    assert_eq!(kind(storage.read("a")), io::ErrorKind::IsADirectory);
    assert_eq!(kind(storage.remove("a")), io::ErrorKind::IsADirectory);
    assert_eq!(kind(storage.write_atomic("a", b"x")), io::ErrorKind::IsADirectory);
}

#[test]
fn list_names_only_the_files_directly_inside() {
    let storage = MemStorage::new();
    storage.create_dir("log/old").expect("create_dir");
    for path in ["MANIFEST", "LOCK", "log/1.seg", "log/0.seg", "log/old/9.seg", "logbook"] {
        storage.open(path, true).expect("open");
    }
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    assert_eq!(sorted(storage.list("").expect("list")), ["LOCK", "MANIFEST", "logbook"]);
    assert_eq!(sorted(storage.list("log").expect("list")), ["0.seg", "1.seg"]);
    assert_eq!(storage.list("log/old").expect("list"), ["9.seg"]);
    assert_eq!(storage.file_paths(), ["LOCK", "MANIFEST", "log/0.seg", "log/1.seg", "log/old/9.seg", "logbook"]);
}

#[test]
fn odd_paths_are_invalid_input() {
    let storage = MemStorage::new();
    storage.create_dir("log").expect("create_dir");
    for path in ["", "/MANIFEST", "log/", "log//0.seg", "./MANIFEST", "log/../MANIFEST", ".."] {
        assert_eq!(kind(storage.open(path, true)), io::ErrorKind::InvalidInput, "{path:?}");
        assert_eq!(kind(storage.write_atomic(path, b"x")), io::ErrorKind::InvalidInput, "{path:?}");
    }
    for dir in ["/", "/log", "log/", "a/./b"] {
        assert_eq!(kind(storage.create_dir(dir)), io::ErrorKind::InvalidInput, "{dir:?}");
        assert_eq!(kind(storage.list(dir)), io::ErrorKind::InvalidInput, "{dir:?}");
    }
}

#[test]
fn created_files_exist_durably_at_once() {
    let storage = MemStorage::new();
    storage.create_dir("log").expect("create_dir");
    storage.open("log/0.seg", true).expect("open");
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced, CrashMode::Tear { seed: 7 }] {
        let crashed = storage.crash(mode);
        assert_eq!(crashed.list("log").expect("list"), ["0.seg"]);
        assert_eq!(crashed.read("log/0.seg").expect("read"), b"");
    }
}

#[test]
fn write_atomic_replaces_durably_and_drops_pending_writes() {
    let storage = MemStorage::new();
    let old_handle = file_with(&storage, "MANIFEST", b"old", b" pending");
    storage.write_atomic("MANIFEST", b"new").expect("write_atomic");
    assert_eq!(storage.read("MANIFEST").expect("read"), b"new");
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced, CrashMode::Tear { seed: 1 }] {
        assert_eq!(storage.crash(mode).read("MANIFEST").expect("read"), b"new", "{mode:?}");
    }

    // As after a rename over it, a handle open on the old file keeps the old file.
    assert_eq!(read_all(old_handle.as_ref()), b"old pending");
    old_handle.write_at(b"stale", 0).expect("write");
    old_handle.sync_data().expect("sync");
    assert_eq!(storage.read("MANIFEST").expect("read"), b"new");

    storage.write_atomic("fresh", b"").expect("write_atomic");
    assert_eq!(storage.crash(CrashMode::DropUnsynced).read("fresh").expect("read"), b"");
}

#[test]
fn remove_is_durable_and_the_path_then_names_a_fresh_file() {
    let storage = MemStorage::new();
    let old_handle = file_with(&storage, "f", b"synced", b"");
    storage.remove("f").expect("remove");
    assert_eq!(kind(storage.read("f")), io::ErrorKind::NotFound);
    assert_eq!(kind(storage.remove("f")), io::ErrorKind::NotFound);
    assert!(storage.crash(CrashMode::KeepUnsynced).file_paths().is_empty());

    let new_handle = storage.open("f", true).expect("open");
    assert_eq!(new_handle.len().expect("len"), 0);
    old_handle.write_at(b"ghost", 0).expect("write");
    assert_eq!(read_all(new_handle.as_ref()), b"");
    assert_eq!(storage.read("f").expect("read"), b"");
}

#[test]
fn drop_unsynced_keeps_only_what_was_synced() {
    let storage = MemStorage::new();
    file_with(&storage, "a", b"durable", b" lost");
    file_with(&storage, "b", b"", b"all lost");
    let crashed = storage.crash(CrashMode::DropUnsynced);
    assert_eq!(crashed.read("a").expect("read"), b"durable");
    assert_eq!(crashed.read("b").expect("read"), b"");
    // The original is untouched and may crash again another way.
    assert_eq!(storage.read("a").expect("read"), b"durable lost");
    assert_eq!(storage.crash(CrashMode::KeepUnsynced).read("a").expect("read"), b"durable lost");
}

#[test]
fn keep_unsynced_keeps_every_write_in_order() {
    let storage = MemStorage::new();
    let file = file_with(&storage, "f", b"0123456789", b"");
    file.write_at(b"ab", 2).expect("write");
    file.set_len(4).expect("set_len");
    file.write_at(b"xy", 6).expect("write");
    file.write_at(b"Z", 3).expect("write");
    let expected = b"01aZ\0\0xy";
    assert_eq!(storage.read("f").expect("read"), expected);
    assert_eq!(storage.crash(CrashMode::KeepUnsynced).read("f").expect("read"), expected);
}

#[test]
fn crashed_copies_are_independent_of_the_original() {
    let storage = MemStorage::new();
    storage.create_dir("log").expect("create_dir");
    let old_handle = file_with(&storage, "log/0.seg", b"abc", b"");
    let crashed = storage.crash(CrashMode::KeepUnsynced);

    old_handle.write_at(b"def", 3).expect("write");
    old_handle.sync_data().expect("sync");
    assert_eq!(crashed.read("log/0.seg").expect("read"), b"abc");

    let new_handle = crashed.open("log/0.seg", false).expect("open");
    new_handle.write_at(b"XYZ", 0).expect("write");
    assert_eq!(storage.read("log/0.seg").expect("read"), b"abcdef");
    crashed.create_dir("other").expect("create_dir");
    assert_eq!(kind(storage.list("other")), io::ErrorKind::NotFound);

    // Faults and the sync count belong to one storage and its clones, and start afresh.
    storage.fail_next_syncs(1);
    storage.fail_next_writes(1);
    new_handle.write_at(b"!", 3).expect("write");
    new_handle.sync_data().expect("sync");
    assert_eq!(crashed.n_syncs(), 1);
    assert_eq!(storage.n_syncs(), 2);
}

#[test]
fn tear_keeps_a_prefix_of_the_appends_and_sometimes_cuts_one() {
    let synced = pattern(10, 1);
    let appends: Vec<Vec<u8>> = (0..5).map(|append_idx| pattern(7 + append_idx, 100 + append_idx as u64)).collect();
    let storage = MemStorage::new();
    let file = storage.open("0.seg", true).expect("open");
    file.write_at(&synced, 0).expect("write");
    file.sync_data().expect("sync");
    let mut everything = synced.clone();
    let mut boundaries = BTreeSet::from([everything.len()]);
    for append in &appends {
        file.write_at(append, everything.len() as u64).expect("write");
        everything.extend_from_slice(append);
        boundaries.insert(everything.len());
    }

    let mut lens_seen = BTreeSet::new();
    for seed in 0..512 {
        let torn = storage.crash(CrashMode::Tear { seed }).read("0.seg").expect("read");
        assert!(torn.len() >= synced.len(), "seed {seed}: lost synced bytes");
        assert_eq!(torn, everything[..torn.len()], "seed {seed}: not a prefix of what was written");
        lens_seen.insert(torn.len());
    }
    assert!(lens_seen.contains(&synced.len()), "no seed dropped every append: {lens_seen:?}");
    assert!(lens_seen.contains(&everything.len()), "no seed kept every append: {lens_seen:?}");
    assert!(lens_seen.iter().any(|len| !boundaries.contains(len)), "no seed cut an append: {lens_seen:?}");
}

#[test]
fn tear_depends_on_the_seed_and_the_path_only() {
    let storage = MemStorage::new();
    for path in ["a", "b"] {
        let file = storage.open(path, true).expect("open");
        for write_idx in 0..8u64 {
            file.write_at(&pattern(16, write_idx), write_idx * 16).expect("write");
        }
    }
    let mut files_differed = false;
    for seed in 0..64 {
        let first = storage.crash(CrashMode::Tear { seed });
        let second = storage.crash(CrashMode::Tear { seed });
        assert_eq!(first.read("a").expect("read"), second.read("a").expect("read"), "seed {seed}");
        assert_eq!(first.read("b").expect("read"), second.read("b").expect("read"), "seed {seed}");
        files_differed |= first.read("a").expect("read") != first.read("b").expect("read");
    }
    assert!(files_differed, "files with the same history always tore alike");
}

/// A file as the test sees it, kept with plain vector operations (not the implementation's
/// replay of pending operations): what reads return, what was there at the last sync, and
/// every state a torn writeback may leave.
struct ModelFile {
    current: Vec<u8>,
    at_last_sync: Vec<u8>,
    tear_outcomes: BTreeSet<Vec<u8>>,
}

impl ModelFile {
    fn new() -> Self {
        ModelFile { current: Vec::new(), at_last_sync: Vec::new(), tear_outcomes: BTreeSet::from([Vec::new()]) }
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        // Every prefix of this write, on top of the state before it, may survive a tear.
        for n_bytes in 1..=bytes.len() {
            let mut outcome = self.current.clone();
            if outcome.len() < offset + n_bytes {
                outcome.resize(offset + n_bytes, 0);
            }
            outcome[offset..offset + n_bytes].copy_from_slice(&bytes[..n_bytes]);
            self.tear_outcomes.insert(outcome);
        }
        if !bytes.is_empty() {
            if self.current.len() < offset + bytes.len() {
                self.current.resize(offset + bytes.len(), 0);
            }
            self.current[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }

    fn set_len(&mut self, len: usize) {
        self.current.resize(len, 0);
        self.tear_outcomes.insert(self.current.clone());
    }

    fn sync(&mut self) {
        self.at_last_sync = self.current.clone();
        self.tear_outcomes = BTreeSet::from([self.current.clone()]);
    }
}

#[test]
fn random_histories_crash_as_the_model_says() {
    let seed = test_seed("random_histories_crash_as_the_model_says");
    let mut rng = SplitMix64::new(seed);
    let paths = ["a", "log/b"];
    for round_idx in 0..200 {
        let storage = MemStorage::new();
        storage.create_dir("log").expect("create_dir");
        let handles: Vec<_> = paths.iter().map(|path| storage.open(path, true).expect("open")).collect();
        let mut models: Vec<_> = paths.iter().map(|_| ModelFile::new()).collect();
        for _ in 0..rng.between(0, 30) {
            let file_idx = rng.between(0, paths.len() - 1);
            let (file, model) = (&handles[file_idx], &mut models[file_idx]);
            match rng.below(10) {
                0 => {
                    file.sync_data().expect("sync");
                    model.sync();
                }
                1 => {
                    let len = rng.between(0, 48);
                    file.set_len(len as u64).expect("set_len");
                    model.set_len(len);
                }
                _ => {
                    let offset = rng.between(0, 40);
                    let bytes = pattern(rng.between(0, 12), rng.next_u64());
                    file.write_at(&bytes, offset as u64).expect("write");
                    model.write(offset, &bytes);
                }
            }
            assert_eq!(read_all(file.as_ref()), model.current, "seed {seed} round {round_idx}");
        }

        let tear_seed = rng.next_u64();
        let dropped = storage.crash(CrashMode::DropUnsynced);
        let kept = storage.crash(CrashMode::KeepUnsynced);
        let torn = storage.crash(CrashMode::Tear { seed: tear_seed });
        for (path, model) in paths.iter().zip(&models) {
            let context = format!("seed {seed} round {round_idx} path {path}");
            assert_eq!(storage.read(path).expect("read"), model.current, "{context}");
            assert_eq!(dropped.read(path).expect("read"), model.at_last_sync, "{context}");
            assert_eq!(kept.read(path).expect("read"), model.current, "{context}");
            let torn_contents = torn.read(path).expect("read");
            assert!(
                model.tear_outcomes.contains(&torn_contents),
                "{context}: tear seed {tear_seed} left {torn_contents:?}, which no prefix of the writes gives"
            );
        }
    }
}

#[test]
fn a_failed_sync_loses_its_writes_for_good() {
    let storage = MemStorage::new();
    let file = file_with(&storage, "f", b"synced", b"AAAA");
    storage.fail_next_syncs(1);
    let error = file.sync_data().expect_err("an injected failure");
    assert_eq!(error.kind(), io::ErrorKind::Other);
    assert!(error.to_string().contains("injected"), "{error}");
    assert_eq!(storage.n_syncs(), 1);

    // Reads still see the lost write; no crash keeps it.
    assert_eq!(storage.read("f").expect("read"), b"syncedAAAA");
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced] {
        assert_eq!(storage.crash(mode).read("f").expect("read"), b"synced", "{mode:?}");
    }
    for seed in 0..32 {
        assert_eq!(storage.crash(CrashMode::Tear { seed }).read("f").expect("read"), b"synced", "seed {seed}");
    }

    // A later successful sync makes later writes durable, never the lost one: its bytes read
    // back as the hole they left.
    file.write_at(b"BB", 10).expect("write");
    file.sync_data().expect("sync");
    assert_eq!(storage.n_syncs(), 2);
    assert_eq!(storage.read("f").expect("read"), b"syncedAAAABB");
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced, CrashMode::Tear { seed: 3 }] {
        assert_eq!(storage.crash(mode).read("f").expect("read"), b"synced\0\0\0\0BB", "{mode:?}");
    }
}

#[test]
fn fail_next_syncs_counts_down_across_files_and_clones() {
    let storage = MemStorage::new();
    let a = storage.open("a", true).expect("open");
    let b = storage.clone().open("b", true).expect("open");
    storage.clone().fail_next_syncs(2);
    a.write_at(b"a", 0).expect("write");
    b.write_at(b"b", 0).expect("write");
    assert_eq!(kind(a.sync_data()), io::ErrorKind::Other);
    assert_eq!(kind(b.sync_data()), io::ErrorKind::Other);
    a.sync_data().expect("sync");
    b.sync_data().expect("sync");
    assert_eq!(storage.n_syncs(), 2);
    let crashed = storage.crash(CrashMode::KeepUnsynced);
    assert_eq!(crashed.read("a").expect("read"), b"");
    assert_eq!(crashed.read("b").expect("read"), b"");

    storage.fail_next_syncs(5);
    storage.fail_next_syncs(0);
    a.sync_data().expect("sync");
    assert_eq!(storage.n_syncs(), 3);
}

#[test]
fn a_failed_write_writes_nothing() {
    let storage = MemStorage::new();
    let file = file_with(&storage, "f", b"abc", b"");
    storage.fail_next_writes(2);
    let error = file.write_at(b"XYZ", 1).expect_err("an injected failure");
    assert_eq!(error.kind(), io::ErrorKind::Other);
    assert!(error.to_string().contains("injected"), "{error}");
    assert_eq!(kind(file.write_at(b"XYZ", 10)), io::ErrorKind::Other);
    assert_eq!(read_all(file.as_ref()), b"abc");
    assert_eq!(storage.crash(CrashMode::KeepUnsynced).read("f").expect("read"), b"abc");

    file.write_at(b"d", 3).expect("write");
    assert_eq!(read_all(file.as_ref()), b"abcd");
}

#[test]
fn a_lock_is_exclusive_until_dropped() {
    let storage = MemStorage::new();
    let guard = storage.lock("LOCK").expect("lock");
    assert_eq!(storage.read("LOCK").expect("read"), b"");
    assert_eq!(kind(storage.lock("LOCK")), io::ErrorKind::WouldBlock);
    assert_eq!(kind(storage.clone().lock("LOCK")), io::ErrorKind::WouldBlock);
    let other_guard = storage.lock("OTHER").expect("lock");

    // The crashed process released its locks.
    let crashed = storage.crash(CrashMode::DropUnsynced);
    let crashed_guard = crashed.lock("LOCK").expect("lock");
    assert_eq!(kind(storage.lock("LOCK")), io::ErrorKind::WouldBlock);

    drop(guard);
    let again = storage.lock("LOCK").expect("lock");
    assert_eq!(kind(crashed.lock("LOCK")), io::ErrorKind::WouldBlock);
    drop((again, other_guard, crashed_guard));
    storage.lock("LOCK").expect("lock");
}

#[test]
fn locking_keeps_an_existing_lock_file() {
    let storage = MemStorage::new();
    storage.write_atomic("LOCK", b"pid 42").expect("write_atomic");
    let _guard = storage.lock("LOCK").expect("lock");
    assert_eq!(storage.read("LOCK").expect("read"), b"pid 42");
}

#[test]
fn set_file_contents_corrupts_current_and_durable_alike() {
    let storage = MemStorage::new();
    let file = file_with(&storage, "f", b"abcd", b"ef");
    let mut corrupt = storage.file_contents("f").expect("file exists");
    corrupt[1] ^= 0x01;
    corrupt.truncate(5);
    storage.set_file_contents("f", &corrupt);
    assert_eq!(read_all(file.as_ref()), b"accde");
    for mode in [CrashMode::DropUnsynced, CrashMode::KeepUnsynced, CrashMode::Tear { seed: 9 }] {
        assert_eq!(storage.crash(mode).read("f").expect("read"), b"accde", "{mode:?}");
    }

    storage.set_file_contents("deep/er/g", b"made");
    assert_eq!(storage.list("deep/er").expect("list"), ["g"]);
    assert_eq!(storage.crash(CrashMode::DropUnsynced).read("deep/er/g").expect("read"), b"made");
}

#[test]
fn threads_write_through_shared_handles() {
    const N_THREADS: usize = 4;
    const N_WRITES: usize = 100;
    let storage = MemStorage::new();
    std::thread::scope(|scope| {
        for thread_idx in 0..N_THREADS {
            let storage = storage.clone();
            scope.spawn(move || {
                let file = storage.open("shared", true).expect("open");
                for write_idx in 0..N_WRITES {
                    let offset = (write_idx * N_THREADS + thread_idx) as u64;
                    file.write_at(&[thread_idx as u8 + 1], offset).expect("write");
                    if write_idx % 10 == 0 {
                        file.sync_data().expect("sync");
                    }
                }
                file.sync_data().expect("sync");
            });
        }
    });
    let expected: Vec<u8> = (0..N_THREADS * N_WRITES).map(|byte_idx| (byte_idx % N_THREADS) as u8 + 1).collect();
    assert_eq!(storage.read("shared").expect("read"), expected);
    assert_eq!(storage.crash(CrashMode::DropUnsynced).read("shared").expect("read"), expected);
    assert_eq!(storage.n_syncs(), (N_THREADS * (N_WRITES / 10 + 1)) as u64);
}
