//! `BucketMapConfig`: where a map lives and how it is shaped.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The most buckets a map may have: 2^16.
pub const MAX_BUCKET_BITS: u32 = 16;
/// The largest `max_search`: probing is linear, so longer windows cost every lookup.
pub const MAX_SEARCH_LIMIT: usize = 1024;
/// The largest bucket: 2^36 cells. Growth beyond it is [`Error::BucketTooLarge`].
pub const MAX_BUCKET_CELLS: u64 = 1 << 36;

/// Where a [`BucketMap`](crate::BucketMap) lives and how it is shaped.
#[derive(Clone, Debug)]
pub struct BucketMapConfig {
    /// Directories for bucket files (bucket `i` goes to `dirs[i % dirs.len()]`); the
    /// manifest lives in the first. At least one.
    pub dirs: Vec<PathBuf>,
    /// `2^bucket_bits` buckets, chosen by the hash's high bits (0 to 16).
    pub bucket_bits: u32,
    /// Each bucket starts with `2^initial_cells_log2` cells (0 to 30).
    pub initial_cells_log2: u32,
    /// How many cells from its home a key may sit; an insert that finds no free cell in
    /// that window grows the bucket (1 to 1024).
    pub max_search: usize,
    /// Verify every bucket file's checksum on open (reads all of them), unless the map was
    /// closed cleanly in this boot and no file changed since (with `resume_after_kill`).
    pub verify_on_open: bool,
    /// On `open`, if the map was not closed cleanly, delete it and start empty instead of
    /// returning [`Error::NotClean`].
    pub discard_if_unclean: bool,
    /// On `open`, if the map was not closed cleanly because its process was killed (the
    /// machine has not restarted since, so the page cache holds every change it made) and
    /// no bucket was half-way through a change, open it as the process left it, at once:
    /// every change made before the kill is there. Otherwise the map is not clean as
    /// without this. Off by default.
    ///
    /// The same trust in this boot's page cache also spares a cleanly closed map's open
    /// from reading its tables (checksums and entry counts) when the map was closed in this
    /// boot and each table file still has the inode and change time its last flush
    /// recorded: any write to a file or replacement of it since changes them (so does
    /// `touch`). See [`BucketMap::was_trusted`](crate::BucketMap::was_trusted).
    pub resume_after_kill: bool,
}

impl BucketMapConfig {
    /// One directory, 16 buckets of 1024 cells to start, `max_search` 32, verification on.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        BucketMapConfig {
            dirs: vec![dir.into()],
            bucket_bits: 4,
            initial_cells_log2: 10,
            max_search: 32,
            verify_on_open: true,
            discard_if_unclean: false,
            resume_after_kill: false,
        }
    }

    /// Spreads bucket files over these directories instead.
    pub fn dirs(mut self, dirs: impl IntoIterator<Item = impl Into<PathBuf>>) -> Self {
        self.dirs = dirs.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the number of buckets to `2^bucket_bits`.
    pub fn bucket_bits(mut self, bucket_bits: u32) -> Self {
        self.bucket_bits = bucket_bits;
        self
    }

    /// Sets each bucket's initial size to `2^initial_cells_log2` cells.
    pub fn initial_cells_log2(mut self, initial_cells_log2: u32) -> Self {
        self.initial_cells_log2 = initial_cells_log2;
        self
    }

    /// Sets the probe window.
    pub fn max_search(mut self, max_search: usize) -> Self {
        self.max_search = max_search;
        self
    }

    /// Turns checksum verification on open on or off.
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// Turns resuming a map whose process was killed on or off (see
    /// [`resume_after_kill`](Self#structfield.resume_after_kill)).
    pub fn resume_after_kill(mut self, resume: bool) -> Self {
        self.resume_after_kill = resume;
        self
    }

    /// Turns discarding an uncleanly closed map on or off.
    pub fn discard_if_unclean(mut self, discard: bool) -> Self {
        self.discard_if_unclean = discard;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.dirs.is_empty() {
            return invalid("at least one directory is needed".to_owned());
        }
        if self.dirs.len() > 1024 {
            return invalid("at most 1024 directories".to_owned());
        }
        if self.bucket_bits > MAX_BUCKET_BITS {
            return invalid(format!("bucket_bits {} is above {MAX_BUCKET_BITS}", self.bucket_bits));
        }
        if self.initial_cells_log2 > 30 {
            return invalid(format!("initial_cells_log2 {} is above 30", self.initial_cells_log2));
        }
        if self.max_search == 0 || self.max_search > MAX_SEARCH_LIMIT {
            return invalid(format!("max_search {} must be from 1 to {MAX_SEARCH_LIMIT}", self.max_search));
        }
        Ok(())
    }
}
