//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong in `talus-bucketmap`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bucket file could not be created, opened, flushed or verified.
    #[error("bucket file: {0}")]
    Pool(#[from] talus_datapool::Error),

    /// A file-system operation on the manifest or a directory failed.
    #[error("{op} failed for {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// The configuration cannot describe a map.
    #[error("invalid bucket map configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// `create` found a map (a manifest) in the directory already.
    #[error("a bucket map already exists in {}", path.display())]
    AlreadyExists {
        /// The manifest found.
        path: PathBuf,
    },

    /// `open` found no manifest.
    #[error("no bucket map in {} (no manifest)", path.display())]
    NotFound {
        /// The manifest looked for.
        path: PathBuf,
    },

    /// The map was open for writing when its process stopped: its files may be torn. Open
    /// with `discard_if_unclean` to start over empty and rebuild.
    #[error("the bucket map in {} was not closed cleanly", path.display())]
    NotClean {
        /// The manifest.
        path: PathBuf,
    },

    /// The manifest is damaged or not a manifest.
    #[error("manifest {} is corrupt: {reason}", path.display())]
    CorruptManifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The map on disk was made for other key or value sizes, or another search bound.
    #[error("the bucket map in {} does not match the configuration: {reason}", path.display())]
    ConfigMismatch {
        /// The manifest.
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// More than `max_search` entries share one hash: no table size can hold them within
    /// the search bound. Raised instead of growing forever.
    #[error("more than {max_search} entries share one hash")]
    TooManyDuplicates {
        /// The configured search bound.
        max_search: usize,
    },

    /// A bucket would have to grow beyond the largest supported size.
    #[error("a bucket would grow beyond {max_cells} cells")]
    BucketTooLarge {
        /// The limit.
        max_cells: u64,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}
