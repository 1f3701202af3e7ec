//! The one error type of this crate.
//!
//! Every failure that comes from outside (the file system, a damaged or foreign file, a bad
//! argument) is a variant here; nothing in this crate panics on them.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which checksum of a pool file failed to verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChecksumRegion {
    /// The crc32c over the 4096-byte header page.
    Header,
    /// The blake3 checksum over the header and the data bytes.
    Data,
}

impl fmt::Display for ChecksumRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChecksumRegion::Header => f.write_str("header crc32c"),
            ChecksumRegion::Data => f.write_str("data blake3"),
        }
    }
}

/// Everything that can go wrong in `talus-datapool`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on a file or directory failed.
    #[error("{op} failed for {}: {source}", path.display())]
    Io {
        /// What was being done (`"open"`, `"fsync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Mapping anonymous memory failed (usually: not enough memory or address space).
    #[error("mapping {len} bytes of anonymous memory failed: {source}")]
    Map {
        /// The number of bytes asked for.
        len: usize,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// `create` found something at the path already; it was left untouched.
    #[error("{} already exists", path.display())]
    AlreadyExists {
        /// The path that exists.
        path: PathBuf,
    },

    /// Another handle (in this process or another) holds the pool file open for writing.
    #[error("{} is locked by another handle", path.display())]
    Locked {
        /// The pool file.
        path: PathBuf,
    },

    /// The header records a different data length than the caller asked for.
    #[error("data length mismatch in {}: expected {expected} bytes, the header says {found}", path.display())]
    SizeMismatch {
        /// The pool file.
        path: PathBuf,
        /// The data length the caller asked for.
        expected: u64,
        /// The data length the header records.
        found: u64,
    },

    /// The file is shorter or longer than its header (or the caller's data length) implies:
    /// it was truncated, extended, or is not a pool file.
    #[error("{} is {found} bytes long, expected {expected}", path.display())]
    FileLength {
        /// The pool file.
        path: PathBuf,
        /// The length a pool of this data length has.
        expected: u64,
        /// The length found on disk.
        found: u64,
    },

    /// The first eight bytes are not the pool magic: not a pool file, or an overwritten one.
    #[error("{} is not a talus pool file (magic {found:02x?})", path.display())]
    BadMagic {
        /// The pool file.
        path: PathBuf,
        /// The eight bytes found where the magic belongs.
        found: [u8; 8],
    },

    /// The file was written in a format version this build does not read.
    #[error("{} has pool format version {found}, this build reads version {}", path.display(), crate::FORMAT_VERSION)]
    UnsupportedVersion {
        /// The pool file.
        path: PathBuf,
        /// The format version found.
        found: u32,
    },

    /// The header's checksum is valid but a field holds a value no writer produces.
    #[error("{} has an invalid header: {reason}", path.display())]
    InvalidHeader {
        /// The pool file.
        path: PathBuf,
        /// Which field is wrong and how.
        reason: &'static str,
    },

    /// The caller's schema version differs from the one the pool was created with.
    #[error("user version mismatch in {}: expected {expected}, found {found}", path.display())]
    UserVersionMismatch {
        /// The pool file.
        path: PathBuf,
        /// The user version the caller asked for.
        expected: u64,
        /// The user version the header records.
        found: u64,
    },

    /// The pool was changed after its last flush and never flushed again: the process that
    /// had it open stopped uncleanly, and the bytes may be a mix of old and new.
    #[error("{} was not flushed after its last change (unclean shutdown)", path.display())]
    Dirty {
        /// The pool file.
        path: PathBuf,
    },

    /// A checksum did not match: the file is damaged.
    #[error("{region} checksum mismatch in {}: stored {stored}, computed {computed}", path.display())]
    ChecksumMismatch {
        /// The pool file.
        path: PathBuf,
        /// Which checksum failed.
        region: ChecksumRegion,
        /// The checksum stored in the header, in hex.
        stored: String,
        /// The checksum of the bytes read, in hex.
        computed: String,
    },

    /// An earlier flush of this handle failed; the kernel may have dropped the unsaved pages
    /// while marking them clean, so no later flush can be trusted and all are refused.
    #[error("{} refuses to flush: an earlier flush failed", path.display())]
    Poisoned {
        /// The pool file.
        path: PathBuf,
    },

    /// A pool of zero bytes was asked for.
    #[error("a pool's data length must be at least one byte")]
    ZeroLength,

    /// A pool larger than [`crate::MAX_DATA_LEN`] was asked for.
    #[error("a pool of {requested} bytes is larger than the maximum of {max} bytes")]
    TooLarge {
        /// The data length asked for.
        requested: u64,
        /// The largest data length supported.
        max: u64,
    },

    /// A shared pool's data length must be a whole number of 64-bit words.
    #[error("{} holds {data_len} bytes, not a whole number of 8-byte words", path.display())]
    NotWords {
        /// The pool file.
        path: PathBuf,
        /// Its data length.
        data_len: usize,
    },

    /// The shared pool was retired: its file is gone and it can no longer be flushed.
    #[error("{} was retired", path.display())]
    Retired {
        /// The pool file it had.
        path: PathBuf,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds the `map_err` closure for an I/O failure of `op` on `path`.
pub(crate) fn io_error(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

/// Lower-case hex of a checksum, for error messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}
