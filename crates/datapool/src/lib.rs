//! Byte regions that every other Talus layer keeps its data in.
//!
//! This crate owns one abstraction, the [`Datapool`]: a fixed-length, page-aligned region of
//! bytes that does not move. Three kinds keep the bytes in different places:
//!
//! - [`Memory`]: anonymous memory, pre-faulted, optionally on transparent huge pages. Volatile.
//! - [`MmapFile`]: a memory-mapped file. Changes reach the file through the page cache;
//!   `flush` makes them durable and records a checksum.
//! - [`FileBackedMemory`]: anonymous memory that `flush` saves to a file as a whole image,
//!   atomically, and `open` loads and verifies.
//!
//! [`SharedMmapFile`] shares an `MmapFile` between threads as atomic 64-bit words, for
//! owners that read without locks (the bucketmap's seqlock readers).
//!
//! The two file kinds share one format (docs/format.md): a 4096-byte little-endian header page
//! (magic, format version, the caller's user version, the exact data length, timestamps, a
//! dirty flag, a crc32c of the header and a blake3 checksum of header and data), then the data
//! padded to a page. A file saved by one kind opens as the other. Opening checks every field
//! and reports each problem as its own [`Error`] variant; a damaged or foreign file is an
//! error, never a panic, a SIGBUS or bytes served as if they were good.
//!
//! What this crate deliberately does not do: interpret the bytes (that is the layers above),
//! grow or shrink a pool (make a new one), or coordinate writers (the pool hands out the
//! region; its owner synchronises access).

mod boot;
mod checksum;
mod error;
mod file_backed;
mod header;
mod memory;
mod mmap_file;
mod pool;
mod pool_file;
mod prefetch;
mod shared;

pub use boot::boot_id;
pub use error::{ChecksumRegion, Error, Result};
pub use file_backed::{FileBackedMemory, FileBackedOptions};
pub use header::{CHECKSUM_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_DATA_LEN, PAGE_LEN, PoolHeader};
pub use memory::{Memory, MemoryOptions};
pub use mmap_file::{Access, MmapFile, MmapFileOptions};
pub use pool::Datapool;
pub use pool_file::open_noatime;
pub use prefetch::prefetch;
pub use shared::SharedMmapFile;
