//! Taking up a killed process's unsynced tail: a power loss before the next sync loses it
//! (as it would have lost it from the killed process), and the next sync makes it durable.

use std::sync::Arc;

use super::*;
use crate::storage::{CrashMode, MemStorage, Storage};

const SEGMENT: u64 = 1 << 20;
const DB_ID: u64 = 77;

/// Bytes of log in the file of the segment at `first`, on `storage`.
fn log_bytes(storage: &MemStorage, first: u64) -> usize {
    let contents = storage.file_contents(&segment_path(first)).expect("the segment file");
    contents.len().saturating_sub(SEGMENT_HEADER_LEN as usize)
}

fn new_segments(storage: &Arc<MemStorage>) -> Segments {
    storage.create_dir(crate::segment::LOG_DIR).expect("the log directory");
    Segments::new(Arc::clone(storage) as Arc<dyn Storage>, SEGMENT, DB_ID, &[], 16)
}

#[test]
fn a_taken_up_tail_stays_unsynced_until_the_next_sync() {
    let storage = Arc::new(MemStorage::new());
    let segments = new_segments(&storage);
    // The killed process synced the first segment whole (it wrote the second), and wrote
    // 800 bytes into the second without syncing them.
    let first = segments.file_or_create(0).expect("segment 0");
    first.write_at(&vec![3u8; SEGMENT as usize], SEGMENT_HEADER_LEN).expect("write");
    first.sync_data().expect("sync");
    let tail = segments.file_or_create(SEGMENT).expect("segment 1");
    tail.write_at(&[7u8; 800], SEGMENT_HEADER_LEN).expect("write");
    let log_end = SEGMENT + 800;

    let mut writer = LogWriter::new(log_end, 0);
    assert!(writer.take_up_unsynced(&segments, SEGMENT));
    assert_eq!((writer.written_until, writer.synced_until), (log_end, SEGMENT));
    assert_eq!(log_bytes(&storage.crash(CrashMode::DropUnsynced), SEGMENT), 0, "not durable yet");
    assert_eq!(log_bytes(&storage.crash(CrashMode::DropUnsynced), 0), SEGMENT as usize);

    writer.sync().expect("sync");
    assert_eq!(writer.synced_until, log_end);
    assert_eq!(log_bytes(&storage.crash(CrashMode::DropUnsynced), SEGMENT), 800, "durable after the sync");
}

#[test]
fn only_a_log_as_a_writer_leaves_it_is_taken_up() {
    let storage = Arc::new(MemStorage::new());
    let segments = new_segments(&storage);
    segments.file_or_create(0).expect("segment 0");
    let log_end = SEGMENT + 800;
    // Durable everywhere: nothing to take up, nothing to sync.
    let mut writer = LogWriter::new(800, 0);
    assert!(writer.take_up_unsynced(&segments, 800));
    assert!(writer.unsynced.is_empty());
    // Durable only up to a point before the last segment: the writer synced the earlier
    // segments before it wrote the last, but a kill before it noted that leaves this in the
    // live state. Refused: the open then syncs the last segment itself.
    let mut writer = LogWriter::new(log_end, 0);
    assert!(!writer.take_up_unsynced(&segments, SEGMENT - 8));
    // The last segment's file missing.
    assert!(!writer.take_up_unsynced(&segments, SEGMENT));
    // Synced past the end.
    assert!(!writer.take_up_unsynced(&segments, log_end + 8));
    assert_eq!((writer.synced_until, writer.unsynced.len()), (log_end, 0), "a refusal changes nothing");
}
