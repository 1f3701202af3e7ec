//! `talus-engine`: the embeddable key-value engine of Talus.
//!
//! A hybrid log in the FASTER family: every write appends a checksummed record to the
//! in-memory tail of one logical log (a `talus-ringbuf` ring, sized by the memory budget);
//! older log bytes live in fixed-size segment files at the same addresses; a
//! `talus-bucketmap` index maps each key's 64-bit hash to the address of its latest record.
//! Writes are made durable by group commit; a clean close leaves the index usable as is,
//! and after a crash the index is rebuilt from the log.
//!
//! This crate owns keys, values, records, the log's files and their recovery. It does not
//! own memory regions (`talus-datapool`), the allocator of the in-memory log
//! (`talus-ringbuf`) or the index's file format (`talus-bucketmap`). All of its file I/O
//! on the log and the MANIFEST goes through [`storage::Storage`].
//!
//! ```
//! use talus_engine::{Db, WriteBatch};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Db::open(dir.path())?;
//! db.put(b"apple", b"red")?;
//! let mut batch = WriteBatch::new();
//! batch.put(b"banana", b"yellow").delete(b"apple");
//! db.write(batch)?;
//! assert_eq!(db.get(b"apple")?, None);
//! assert_eq!(db.get_with(b"banana", |value| value.len())?, Some(6));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

#[cfg(not(target_endian = "little"))]
compile_error!("talus-engine writes the ring's native header words to disk and supports little-endian targets only");

mod batch;
mod checkpoint;
mod db;
mod error;
mod live;
mod manifest;
mod options;
mod record;
mod recovery;
mod segment;
mod stats;
pub mod storage;
mod usage;
mod writer;

pub use batch::WriteBatch;
pub use db::{
    BackupReport, CheckpointReport, CompactionReport, Db, Iter, MAX_KEYS_PER_HASH, MAX_PROBLEMS_LISTED, Problem,
    VerifyReport,
};
pub use error::{Error, Result};
pub use options::{
    DEFAULT_CHECKPOINT_EVERY_BYTES, DEFAULT_COMPACTION_GARBAGE_RATIO, DEFAULT_COMPACTION_SPACE_AMPLIFICATION,
    DEFAULT_LOG_PREALLOCATION, DEFAULT_MAX_OPEN_SEGMENTS, DEFAULT_MEMORY_BUDGET, DEFAULT_SEGMENT_SIZE,
    MAX_LOG_PAGE_SIZE, MAX_SEGMENT_SIZE, MIN_MEMORY_BUDGET, MIN_SEGMENT_SIZE, Options, SyncMode,
};
pub use record::MAX_KEY_LEN;
pub use recovery::RepairReport;
pub use stats::{Counters, RecoveryStats, SegmentStats, Stats};

/// The README's examples, compiled and run as doc tests here, the top of the stack.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
