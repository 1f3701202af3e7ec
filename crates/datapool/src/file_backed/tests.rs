//! Acceptance criterion 5: a flush interrupted after the new image is durable but before it
//! replaces the old one leaves the old image, intact, for the next open.

use super::*;

#[test]
fn flush_interrupted_before_rename_keeps_the_previous_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    let data_len = (1 << 20) + 3;

    let mut pool = FileBackedMemory::create(&path, data_len, 7).expect("create");
    pool.as_mut_slice().fill(0x11);
    pool.flush().expect("first flush");
    let first_flushed_at = pool.header().flushed_at();

    pool.as_mut_slice().fill(0x22);
    fault::arm_crash_before_rename();
    let error = pool.flush().expect_err("the hook interrupts the flush");
    assert!(matches!(error, Error::Io { op: "injected crash before rename", .. }), "{error}");
    // The new image was complete and durable under the temporary name...
    let temp_path = with_suffix(&path, FLUSH_TEMP_SUFFIX);
    assert!(temp_path.exists(), "a crash leaves the temporary image behind");
    drop(pool);

    // ...but the pool file still holds the previous image, which opens and verifies.
    let reopened = FileBackedMemory::open(&path, data_len, 7).expect("the previous image opens");
    assert!(reopened.as_slice().iter().all(|&b| b == 0x11), "previous image, not the new one");
    assert_eq!(reopened.header().flushed_at(), first_flushed_at);
    drop(reopened);

    // A later flush overwrites the stray temporary file and goes through.
    let mut pool = FileBackedMemory::open(&path, data_len, 7).expect("open");
    pool.as_mut_slice().fill(0x33);
    pool.flush().expect("flush after the crash");
    assert!(!temp_path.exists(), "the rename consumed the temporary file");
    drop(pool);
    let reopened = FileBackedMemory::open(&path, data_len, 7).expect("open the new image");
    assert!(reopened.as_slice().iter().all(|&b| b == 0x33));
}

#[test]
fn interrupted_flush_of_a_never_flushed_pool_leaves_zeros() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    let mut pool = FileBackedMemory::create(&path, 5000, 1).expect("create");
    pool.as_mut_slice().fill(0xee);
    fault::arm_crash_before_rename();
    pool.flush().expect_err("interrupted");
    drop(pool);
    let reopened = FileBackedMemory::open(&path, 5000, 1).expect("the created image opens");
    assert!(reopened.as_slice().iter().all(|&b| b == 0));
}

#[test]
fn a_file_system_without_o_direct_falls_back_to_buffered_io() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    crate::pool_file::fault::refuse_direct_io(true);
    let mut pool = FileBackedMemory::create(&path, 70_000, 1).expect("create");
    assert!(pool.uses_direct_io(), "not probed until the first flush");
    pool.as_mut_slice().fill(0x5a);
    pool.flush().expect("buffered flush");
    assert!(!pool.uses_direct_io(), "the refusal is remembered");
    drop(pool);
    let pool = FileBackedMemory::open(&path, 70_000, 1).expect("buffered open");
    assert!(!pool.uses_direct_io());
    assert!(pool.as_slice().iter().all(|&b| b == 0x5a));
    crate::pool_file::fault::refuse_direct_io(false);
    let pool = FileBackedMemory::open(&path, 70_000, 1).expect("direct open");
    assert!(pool.as_slice().iter().all(|&b| b == 0x5a));
}
