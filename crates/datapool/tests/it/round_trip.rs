//! Acceptance criteria 1, 2 and 6, and the behaviour around them: every kind keeps its
//! bytes, a fresh pool reads as zeros, `create` never clobbers, files are interchangeable.

use std::time::SystemTime;

use talus_datapool::{
    Access, Datapool, Error, FileBackedMemory, FileBackedOptions, MAX_DATA_LEN, Memory, MemoryOptions, MmapFile,
    MmapFileOptions,
};

use crate::common::{FILE_KINDS, FileKind, LENGTHS, pattern};

#[test]
fn memory_keeps_its_bytes_at_every_length() {
    assert_eq!(Memory::create(8192).expect("create").len(), 8192);
    for (idx, &len) in LENGTHS.iter().enumerate() {
        let mut pool = Memory::create(len).expect("create");
        assert_eq!(pool.len(), len);
        assert!(pool.as_slice().iter().all(|&b| b == 0), "fresh memory is zeroed");
        let bytes = pattern(len, idx as u64);
        pool.as_mut_slice().copy_from_slice(&bytes);
        pool.flush().expect("flush of memory is a no-op");
        assert_eq!(pool.len(), len);
        assert_eq!(pool.as_slice(), &bytes[..]);
        assert_eq!(pool.as_mut_ptr() as usize % 4096, 0, "page aligned");
    }
}

#[test]
fn memory_options_work_with_and_without_prefault_and_huge_pages() {
    for (prefault, huge_pages) in [(true, true), (false, true), (false, false), (true, false)] {
        let mut pool =
            MemoryOptions::new().prefault(prefault).huge_pages(huge_pages).create((4 << 20) + 1).expect("create");
        assert!(pool.as_slice().iter().all(|&b| b == 0));
        pool.as_mut_slice()[4 << 20] = 9;
        assert_eq!(pool.as_slice()[4 << 20], 9);
    }
}

#[test]
fn file_pools_round_trip_at_every_length() {
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in FILE_KINDS {
        for (idx, &len) in LENGTHS.iter().enumerate() {
            let path = dir.path().join(format!("{kind:?}-{len}"));
            let bytes = pattern(len, idx as u64 + 100);
            let mut pool = kind.create(&path, len, 42).expect("create");
            assert_eq!(pool.len(), len);
            pool.as_mut_slice().copy_from_slice(&bytes);
            pool.flush().expect("flush");
            drop(pool);

            let pool = kind.open(&path, len, 42).expect("open");
            assert_eq!(pool.len(), len, "{kind:?} len {len}");
            assert_eq!(pool.as_slice(), &bytes[..], "{kind:?} len {len}");
            let file_len = std::fs::metadata(&path).expect("stat").len();
            assert_eq!(file_len, 4096 + len.div_ceil(4096) as u64 * 4096, "documented file length");
        }
    }
}

#[test]
fn a_pool_never_written_or_flushed_opens_as_zeros() {
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in FILE_KINDS {
        for &len in &LENGTHS {
            let path = dir.path().join(format!("{kind:?}-{len}"));
            drop(kind.create(&path, len, 0).expect("create"));
            let pool = kind.open(&path, len, 0).expect("open a never-flushed pool");
            assert_eq!(pool.len(), len);
            assert!(pool.as_slice().iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn create_on_an_existing_path_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in FILE_KINDS {
        // An existing pool...
        let path = dir.path().join(format!("{kind:?}-pool"));
        let mut pool = kind.create(&path, 5000, 1).expect("create");
        pool.as_mut_slice().copy_from_slice(&pattern(5000, 5));
        pool.flush().expect("flush");
        drop(pool);
        // ...and a file that is not a pool at all.
        let other = dir.path().join(format!("{kind:?}-other"));
        std::fs::write(&other, b"precious").expect("write");

        for target in [&path, &other] {
            let before = std::fs::read(target).expect("read");
            let modified = std::fs::metadata(target).and_then(|m| m.modified()).expect("mtime");
            for len in [5000, 100] {
                match kind.create(target, len, 1) {
                    Err(Error::AlreadyExists { path }) => assert_eq!(&path, target),
                    other => panic!("{kind:?}: expected AlreadyExists, got {other:?}"),
                }
            }
            assert_eq!(std::fs::read(target).expect("read"), before, "bytes unchanged");
            assert_eq!(std::fs::metadata(target).and_then(|m| m.modified()).expect("mtime"), modified);
        }
        let pool = kind.open(&path, 5000, 1).expect("the pool still opens");
        assert_eq!(pool.as_slice(), &pattern(5000, 5)[..]);
    }
    // No temporary files are left behind by the refused creates.
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let name = entry.expect("entry").file_name().into_string().expect("utf-8 name");
        assert!(!name.contains(".creating") && !name.contains(".flushing"), "stray {name}");
    }
}

#[test]
fn a_file_saved_by_one_kind_opens_as_the_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, to) in [(FileKind::Mmap, FileKind::FileBacked), (FileKind::FileBacked, FileKind::Mmap)] {
        let path = dir.path().join(format!("{from:?}"));
        let bytes = pattern(10_000, 9);
        let mut pool = from.create(&path, 10_000, 3).expect("create");
        pool.as_mut_slice().copy_from_slice(&bytes);
        pool.flush().expect("flush");
        drop(pool);
        assert_eq!(to.open(&path, 10_000, 3).expect("open").as_slice(), &bytes[..]);
    }
}

#[test]
fn header_accessors_report_what_was_created_and_flushed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = SystemTime::now();

    let mut pool = MmapFile::create(dir.path().join("mmap"), 5000, 77).expect("create");
    assert_eq!((pool.header().user_version, pool.header().data_len), (77, 5000));
    assert!(pool.header().created_at() >= started && pool.header().flushed_at() == pool.header().created_at());
    assert!(!pool.is_dirty() && !pool.header().dirty);
    pool.as_mut_slice()[0] = 1;
    assert!(pool.is_dirty() && pool.header().dirty);
    std::thread::sleep(std::time::Duration::from_millis(2));
    pool.flush().expect("flush");
    assert!(!pool.is_dirty() && pool.header().flushed_at() > pool.header().created_at());

    let mut pool = FileBackedMemory::create(dir.path().join("fbm"), 5000, 78).expect("create");
    assert_eq!((pool.header().user_version, pool.header().data_len), (78, 5000));
    let created_at = pool.header().created_at();
    pool.as_mut_slice()[0] = 1;
    assert!(pool.is_changed());
    std::thread::sleep(std::time::Duration::from_millis(2));
    pool.flush().expect("flush");
    assert!(!pool.is_changed() && pool.header().flushed_at() > created_at && pool.header().created_at() == created_at);
    let flushed_at = pool.header().flushed_at();
    drop(pool);
    let pool = FileBackedMemory::open(dir.path().join("fbm"), 5000, 78).expect("open");
    assert_eq!((pool.header().created_at(), pool.header().flushed_at()), (created_at, flushed_at));
}

#[test]
fn an_open_mmap_file_is_locked_against_a_second_handle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    let first = MmapFile::create(&path, 100, 0).expect("create");
    assert!(matches!(MmapFile::open(&path, 100, 0), Err(Error::Locked { .. })));
    drop(first);
    MmapFile::open(&path, 100, 0).expect("the lock goes with the handle");
}

#[test]
fn flush_without_changes_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in FILE_KINDS {
        let path = dir.path().join(format!("{kind:?}"));
        let mut pool = kind.create(&path, 5000, 0).expect("create");
        let before = std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(5));
        pool.flush().expect("flush");
        assert_eq!(std::fs::metadata(&path).and_then(|m| m.modified()).expect("mtime"), before, "{kind:?}");
    }
}

#[test]
fn bad_lengths_are_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(matches!(Memory::create(0), Err(Error::ZeroLength)));
    let huge = usize::try_from(MAX_DATA_LEN + 1).expect("64-bit");
    assert!(matches!(Memory::create(huge), Err(Error::TooLarge { .. })));
    for kind in FILE_KINDS {
        let path = dir.path().join(format!("{kind:?}"));
        assert!(matches!(kind.create(&path, 0, 0), Err(Error::ZeroLength)));
        assert!(matches!(kind.create(&path, huge, 0), Err(Error::TooLarge { .. })));
        assert!(!path.exists(), "a refused create leaves nothing");
        drop(kind.create(&path, 10, 0).expect("create"));
        assert!(matches!(kind.open(&path, 0, 0), Err(Error::ZeroLength)));
        assert!(matches!(kind.open(&dir.path().join("missing"), 10, 0), Err(Error::Io { op: "open", .. })));
    }
}

#[test]
fn options_change_how_not_what() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bytes = pattern(70_000, 1);
    let path = dir.path().join("mmap");
    let mut pool = MmapFileOptions::new().access(Access::Random).create(&path, 70_000, 0).expect("create");
    pool.as_mut_slice().copy_from_slice(&bytes);
    pool.close().expect("close");
    for access in [Access::Normal, Access::Random, Access::Sequential] {
        for verify in [true, false] {
            let pool = MmapFileOptions::new().access(access).verify_checksum(verify).open(&path, 70_000, 0);
            assert_eq!(pool.expect("open").as_slice(), &bytes[..]);
        }
    }

    let path = dir.path().join("fbm");
    let mut pool = FileBackedOptions::new().direct_io(false).create(&path, 70_000, 0).expect("create");
    assert!(!pool.uses_direct_io());
    pool.as_mut_slice().copy_from_slice(&bytes);
    pool.close().expect("close");
    for direct_io in [true, false] {
        for verify in [true, false] {
            for huge_pages in [true, false] {
                let options =
                    FileBackedOptions::new().direct_io(direct_io).verify_checksum(verify).huge_pages(huge_pages);
                assert_eq!(options.open(&path, 70_000, 0).expect("open").as_slice(), &bytes[..]);
            }
        }
    }
}

#[test]
fn pools_are_send_and_sync_and_usable_as_trait_objects() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<Memory>();
    assert_send_sync::<MmapFile>();
    assert_send_sync::<FileBackedMemory>();
    assert_send_sync::<dyn Datapool>();
}
