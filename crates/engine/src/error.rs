//! The one error type of the engine, wrapping the layers below.

use std::path::PathBuf;

/// Everything that can go wrong in `talus-engine`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another handle, in this process or another, has the database open.
    #[error("the database in {} is in use by another handle or process", path.display())]
    Locked {
        /// The database directory.
        path: PathBuf,
    },

    /// Bytes on disk are not what the engine wrote: a checksum mismatch, an impossible
    /// length, a record that cannot be parsed, a missing segment. Nothing damaged is ever
    /// returned as data.
    #[error("corruption in {file} at offset {offset}: {reason}")]
    Corruption {
        /// The file (relative to the database directory).
        file: String,
        /// The byte offset in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// There is no database here, and the options said not to create one.
    #[error("no database in {}", path.display())]
    NotFound {
        /// The database directory.
        path: PathBuf,
    },

    /// An earlier write or fsync of the log failed, so the engine can no longer tell what is
    /// on disk: writes are refused; reads still work; reopening recovers the durable state.
    #[error("the database is poisoned by an earlier I/O failure; reopen it to recover")]
    Poisoned,

    /// A key longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A value longer than [`Options::max_value_len`](crate::Options::max_value_len).
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge {
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// More distinct keys share one 64-bit hash than the index can hold (see
    /// ARCHITECTURE.md); the write was not applied.
    #[error("too many keys share one 64-bit hash ({max} at most)")]
    HashCollisionLimit {
        /// How many entries one hash may have.
        max: usize,
    },

    /// A file operation failed.
    #[error("{op} failed for {file}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file (relative to the database directory).
        file: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The options cannot describe a database.
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: String,
    },

    /// The directory holds files of a database but no valid MANIFEST, or a MANIFEST of an
    /// unsupported version.
    #[error("not a usable database: {reason}")]
    NotADatabase {
        /// What is wrong.
        reason: String,
    },

    /// A backup could not be made where asked.
    #[error("cannot back up to {}: {reason}", path.display())]
    Backup {
        /// The backup directory asked for.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// The index failed.
    #[error("index: {0}")]
    Index(#[from] talus_bucketmap::Error),

    /// The in-memory log failed.
    #[error("log memory: {0}")]
    Ring(#[from] talus_ringbuf::Error),

    /// The memory pool under the in-memory log failed.
    #[error("memory pool: {0}")]
    Pool(#[from] talus_datapool::Error),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(op: &'static str, file: &str) -> impl FnOnce(std::io::Error) -> Error {
    let file = file.to_owned();
    move |source| Error::Io { op, file, source }
}

pub(crate) fn corruption(file: &str, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corruption { file: file.to_owned(), offset, reason: reason.into() }
}
