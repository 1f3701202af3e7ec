//! `SharedMmapFile`: words written from several threads are flushed with a checksum that
//! verifies at the next open; retiring deletes the file while readers keep reading zeros.

use std::sync::atomic::{AtomicBool, Ordering};

use talus_datapool::{Datapool, Error, MmapFile, SharedMmapFile};

#[test]
fn words_written_from_threads_flush_and_reopen_verified() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    let n_words = 300_000; // over a MiB, so the flush hashes in pieces beside the sync
    let pool = SharedMmapFile::new(MmapFile::create(&path, n_words * 8, 7).expect("create")).expect("share");
    assert!(!pool.is_dirty());
    pool.mark_dirty();
    std::thread::scope(|scope| {
        for thread in 0..2 {
            let pool = &pool;
            scope.spawn(move || {
                for (i, word) in pool.words().iter().enumerate().skip(thread).step_by(2) {
                    word.store(i as u64 ^ 0xA5A5, Ordering::Relaxed);
                }
            });
        }
    });
    pool.flush().expect("flush");
    assert!(!pool.is_dirty());
    drop(pool);

    let reopened = MmapFile::open(&path, n_words * 8, 7).expect("open verifies the checksum");
    for (i, chunk) in reopened.as_slice().chunks(8).enumerate() {
        assert_eq!(u64::from_le_bytes(chunk.try_into().expect("8 bytes")), i as u64 ^ 0xA5A5);
    }
}

#[test]
fn a_store_without_mark_dirty_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    let pool = SharedMmapFile::new(MmapFile::create(&path, 4096, 1).expect("create")).expect("share");
    pool.words()[3].store(1, Ordering::Relaxed);
    drop(pool);
    assert!(matches!(MmapFile::open(&path, 4096, 1), Err(Error::ChecksumMismatch { .. })));
}

#[test]
fn a_length_that_is_not_whole_words_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = MmapFile::create(dir.path().join("pool"), 4097, 1).expect("create");
    assert!(matches!(SharedMmapFile::new(pool), Err(Error::NotWords { data_len: 4097, .. })));
}

#[test]
fn retiring_deletes_the_file_while_readers_read_zeros() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    let n_words = 1 << 18;
    let pool = SharedMmapFile::new(MmapFile::create(&path, n_words * 8, 1).expect("create")).expect("share");
    pool.mark_dirty();
    pool.words().iter().for_each(|word| word.store(u64::MAX, Ordering::Relaxed));
    let retired = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (pool, retired) = (&pool, &retired);
        scope.spawn(move || {
            // Reads before, during and after the retirement: each word is the old value or
            // zero, and once retirement is seen to be over, zero.
            loop {
                let done = retired.load(Ordering::Acquire);
                for word in pool.words().iter().step_by(509) {
                    let value = word.load(Ordering::Relaxed);
                    assert!(value == u64::MAX || value == 0);
                    assert!(!done || value == 0);
                }
                if done {
                    break;
                }
            }
        });
        pool.retire().expect("retire");
        retired.store(true, Ordering::Release);
    });
    assert!(!path.exists());
    assert!(pool.is_retired());
    pool.retire().expect("a second retire does nothing");
    assert!(matches!(pool.flush(), Err(Error::Retired { .. })));
}
