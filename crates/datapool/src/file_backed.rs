//! `FileBackedMemory`: anonymous memory, saved whole to a file on flush.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checksum::{DataHasher, data_checksum, load_and_hash};
use crate::error::{Error, Result, io_error};
use crate::header::{HEADER_LEN, PoolHeader, check_data_len, now_unix_ns};
use crate::memory::{Memory, MemoryOptions};
use crate::pool::Datapool;
use crate::pool_file::{
    AlignedPage, FILE_MODE, RemoveOnDrop, create_pool_file, fsync_parent_dir, is_direct_io_refusal, open_maybe_direct,
    read_and_check_header, read_exact_at_retrying_buffered, with_suffix,
};

/// Loading reads the file in pieces of this size, hashing each while others are read.
const LOAD_PIECE_LEN: usize = 8 << 20;

/// How many threads read pieces at once when loading.
const LOAD_WORKERS: usize = 4;

/// Suffix of the file a flush writes before renaming it over the pool file.
pub(crate) const FLUSH_TEMP_SUFFIX: &str = ".flushing";

/// A pool whose bytes live in anonymous memory and are saved to a file as a whole image.
///
/// [`flush`](Datapool::flush) is atomic: the new image goes to a temporary file, is synced,
/// then renamed over the old one and the directory synced. A crash at any point leaves the
/// previous image or the new one, never a mix. Between flushes the file is not touched, so
/// the memory can be written at memory speed. I/O uses `O_DIRECT` where the file system
/// supports it (probed at run time), so a pool's bytes are not cached twice.
///
/// One handle per path: two handles flushing to the same path would replace each other's
/// images. Dropping the pool does not flush it.
///
/// ```
/// use talus_datapool::{Datapool, FileBackedMemory};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("pool");
/// let mut pool = FileBackedMemory::create(&path, 100, 3)?;
/// pool.as_mut_slice().copy_from_slice(&[9; 100]);
/// pool.close()?;
///
/// let pool = FileBackedMemory::open(&path, 100, 3)?;
/// assert_eq!(pool.as_slice(), &[9; 100]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct FileBackedMemory {
    path: PathBuf,
    memory: Memory,
    /// The header of the image on disk.
    header: PoolHeader,
    /// Use `O_DIRECT`; turned off for good the first time the file system refuses it.
    direct_io: bool,
    /// Write access was handed out since the image on disk was written or read.
    changed: bool,
}

/// How to create or open a [`FileBackedMemory`].
#[derive(Clone, Copy, Debug)]
pub struct FileBackedOptions {
    verify_checksum: bool,
    direct_io: bool,
    huge_pages: bool,
}

impl Default for FileBackedOptions {
    fn default() -> Self {
        FileBackedOptions { verify_checksum: true, direct_io: true, huge_pages: true }
    }
}

impl FileBackedOptions {
    /// Verify on open, `O_DIRECT` where supported, transparent huge pages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `open` verifies the data checksum (default `true`; hashing runs while the
    /// file is read, so it costs little). The header is always checked.
    pub fn verify_checksum(mut self, verify: bool) -> Self {
        self.verify_checksum = verify;
        self
    }

    /// Whether to try `O_DIRECT` for loading and saving (default `true`). Falls back to
    /// buffered I/O on file systems that refuse it.
    pub fn direct_io(mut self, direct_io: bool) -> Self {
        self.direct_io = direct_io;
        self
    }

    /// Ask for transparent huge pages for the memory (default `true`). Every page of a
    /// file-backed pool is written when it is loaded, so huge pages cost no extra memory, and
    /// they make faulting in a large pool several times cheaper (a 1 GiB load went from
    /// about 0.82 s to 0.58 s in `benches/datapool.rs`). Pools under 2 MiB are unaffected.
    pub fn huge_pages(mut self, huge_pages: bool) -> Self {
        self.huge_pages = huge_pages;
        self
    }

    /// Creates a pool file of `data_len` zero bytes and the zeroed, pre-faulted memory for it.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if `path` exists (it is left unchanged),
    /// [`Error::ZeroLength`], [`Error::TooLarge`], [`Error::Map`], [`Error::Io`].
    pub fn create(&self, path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<FileBackedMemory> {
        let path = path.as_ref();
        check_data_len(data_len)?;
        // Map first: if memory is short, no file is left behind.
        let memory = MemoryOptions::new().huge_pages(self.huge_pages).create(data_len)?;
        let header = create_pool_file(path, data_len, user_version, false)?;
        Ok(FileBackedMemory { path: path.to_path_buf(), memory, header, direct_io: self.direct_io, changed: false })
    }

    /// Opens a pool file and loads its image into memory, checking (in order) its length,
    /// magic, format version, header crc32c, data length, user version, dirty flag and
    /// data checksum.
    ///
    /// # Errors
    ///
    /// One variant per problem: [`Error::FileLength`], [`Error::BadMagic`],
    /// [`Error::UnsupportedVersion`], [`Error::ChecksumMismatch`], [`Error::InvalidHeader`],
    /// [`Error::SizeMismatch`], [`Error::UserVersionMismatch`], [`Error::Dirty`],
    /// [`Error::Map`], [`Error::Io`].
    pub fn open(&self, path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<FileBackedMemory> {
        let path = path.as_ref();
        let started = Instant::now();
        check_data_len(data_len)?;
        let (file, direct_io) =
            open_maybe_direct(OpenOptions::new().read(true), path, self.direct_io).map_err(io_error("open", path))?;
        let header = read_and_check_header(&file, path, data_len, user_version, false)?;

        // The read fills every page, so pre-faulting would touch them twice.
        let mut memory = MemoryOptions::new().prefault(false).huge_pages(self.huge_pages).create(data_len)?;
        let hasher = self.verify_checksum.then(|| DataHasher::new(&header.checksum_prefix()));
        let computed = load_image(&file, path, memory.padded_mut(), data_len, hasher)?;
        if let Some(computed) = computed {
            header.verify_data_checksum(&computed, path)?;
        }
        tracing::debug!(path = %path.display(), data_len, direct_io, verified = self.verify_checksum, elapsed_us = started.elapsed().as_micros() as u64, "loaded file-backed pool");
        Ok(FileBackedMemory {
            path: path.to_path_buf(),
            memory,
            header,
            direct_io: self.direct_io && direct_io,
            changed: false,
        })
    }
}

/// Reads the data pages of a pool file into `padded` (the data length rounded up to a page)
/// and, given a hasher, returns the data checksum; pieces are read by several threads and
/// hashed as they arrive. Padding bytes past `data_len` are zeroed whatever the file holds.
fn load_image(
    file: &File,
    path: &Path,
    padded: &mut [u8],
    data_len: usize,
    hasher: Option<DataHasher>,
) -> Result<Option<[u8; 32]>> {
    let pieces: Vec<(usize, &mut [u8])> =
        padded.chunks_mut(LOAD_PIECE_LEN).enumerate().map(|(idx, chunk)| (idx * LOAD_PIECE_LEN, chunk)).collect();
    load_and_hash(pieces, LOAD_WORKERS, hasher, |(start, chunk)| {
        read_exact_at_retrying_buffered(file, path, chunk, (HEADER_LEN + start) as u64)?;
        let data_end = data_len.saturating_sub(start).min(chunk.len());
        chunk[data_end..].fill(0);
        let chunk: &[u8] = chunk;
        Ok(&chunk[..data_end])
    })
}

impl FileBackedMemory {
    /// Creates a pool with default options. See [`FileBackedOptions::create`].
    ///
    /// # Errors
    ///
    /// As [`FileBackedOptions::create`].
    pub fn create(path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<FileBackedMemory> {
        FileBackedOptions::new().create(path, data_len, user_version)
    }

    /// Opens and loads a pool with default options. See [`FileBackedOptions::open`].
    ///
    /// # Errors
    ///
    /// As [`FileBackedOptions::open`].
    pub fn open(path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<FileBackedMemory> {
        FileBackedOptions::new().open(path, data_len, user_version)
    }

    /// Flushes and drops the pool, reporting any error.
    ///
    /// # Errors
    ///
    /// As [`Datapool::flush`].
    pub fn close(mut self) -> Result<()> {
        self.flush()
    }

    /// The pool file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header of the image on disk: user version, data length, created and last-flushed
    /// times.
    pub fn header(&self) -> &PoolHeader {
        &self.header
    }

    /// Whether `O_DIRECT` is used: as configured, until the file system refuses it once.
    pub fn uses_direct_io(&self) -> bool {
        self.direct_io
    }

    /// Whether write access was handed out since the image on disk was written or read.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Writes the data pages to `file` (from offset `HEADER_LEN`) while hashing them.
    fn write_data(&self, file: &File, prefix: &[u8; HEADER_LEN]) -> (std::io::Result<()>, [u8; 32]) {
        let padded = self.memory.padded();
        let data = self.memory.as_slice();
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| file.write_all_at(padded, HEADER_LEN as u64));
            let checksum = data_checksum(prefix, data);
            (writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), checksum)
        })
    }

    fn flush_changed(&mut self) -> Result<()> {
        let started = Instant::now();
        let temp_path = with_suffix(&self.path, FLUSH_TEMP_SUFFIX);
        let temp_guard = RemoveOnDrop::new(&temp_path);
        let mut header = PoolHeader { dirty: false, flushed_unix_ns: now_unix_ns(), ..self.header };
        let prefix = header.checksum_prefix();

        // Step 1: the new image, data first (hashed as it is written), to a temporary file.
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(FILE_MODE);
        let (mut file, mut direct_io) =
            open_maybe_direct(&options, &temp_path, self.direct_io).map_err(io_error("create", &temp_path))?;
        let (written, checksum) = self.write_data(&file, &prefix);
        match written {
            Ok(()) => {}
            Err(error) if direct_io && is_direct_io_refusal(&error) => {
                tracing::debug!(path = %temp_path.display(), "O_DIRECT write refused; rewriting buffered");
                file = options.open(&temp_path).map_err(io_error("create", &temp_path))?;
                direct_io = false;
                file.write_all_at(self.memory.padded(), HEADER_LEN as u64).map_err(io_error("write", &temp_path))?;
            }
            Err(source) => return Err(Error::Io { op: "write", path: temp_path.clone(), source }),
        }
        header.data_checksum = checksum;
        let mut page = AlignedPage::zeroed();
        header.encode(&mut page.0);
        file.write_all_at(&page.0, 0).map_err(io_error("write header", &temp_path))?;

        // Step 2: the image is durable before it can replace the old one.
        file.sync_all().map_err(io_error("fsync", &temp_path))?;
        drop(file);

        #[cfg(test)]
        if fault::crash_before_rename() {
            // What a crash here leaves behind: the complete temporary file, the old image.
            temp_guard.disarm();
            return Err(Error::Io {
                op: "injected crash before rename",
                path: temp_path.clone(),
                source: std::io::Error::other("test fault hook"),
            });
        }

        // Step 3: atomically replace, then make the rename durable.
        std::fs::rename(&temp_path, &self.path).map_err(io_error("rename", &temp_path))?;
        temp_guard.disarm();
        fsync_parent_dir(&self.path)?;

        self.header = header;
        self.direct_io = direct_io;
        self.changed = false;
        tracing::debug!(path = %self.path.display(), data_len = self.memory.len(), direct_io, elapsed_us = started.elapsed().as_micros() as u64, "flushed file-backed pool");
        Ok(())
    }
}

impl Datapool for FileBackedMemory {
    fn len(&self) -> usize {
        self.memory.len()
    }

    fn as_slice(&self) -> &[u8] {
        self.memory.as_slice()
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.changed = true;
        self.memory.as_mut_slice()
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.changed = true;
        self.memory.as_mut_ptr()
    }

    /// Saves the whole image atomically (temporary file, fsync, rename, fsync directory).
    /// Does nothing if no write access was handed out since the last save or load. A failed
    /// flush leaves the previous image in place and may be retried.
    fn flush(&mut self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        self.flush_changed()
    }
}

impl std::fmt::Debug for FileBackedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBackedMemory")
            .field("path", &self.path)
            .field("data_len", &self.memory.len())
            .field("direct_io", &self.direct_io)
            .field("changed", &self.changed)
            .finish_non_exhaustive()
    }
}

/// A test-only fault hook: makes the next flush on this thread stop as a crash would, after
/// the new image is durable and before it replaces the old one.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;

    thread_local! {
        static CRASH_BEFORE_RENAME: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn arm_crash_before_rename() {
        CRASH_BEFORE_RENAME.with(|armed| armed.set(true));
    }

    pub(crate) fn crash_before_rename() -> bool {
        CRASH_BEFORE_RENAME.with(|armed| armed.replace(false))
    }
}

#[cfg(test)]
mod tests;
