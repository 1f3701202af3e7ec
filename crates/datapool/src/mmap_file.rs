//! `MmapFile`: a pool whose bytes are a memory-mapped file.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::checksum::{DataHasher, data_checksum, load_and_hash, words_checksum};
use crate::error::{Error, Result, io_error};
use crate::header::{HEADER_LEN, PoolHeader, check_data_len, file_len, now_unix_ns, padded_len};
use crate::pool::Datapool;
use crate::pool_file::{create_pool_file, open_noatime, read_and_check_header};

/// Below this data length, `flush` syncs and hashes on the calling thread; above it, the two
/// run side by side.
const OVERLAP_MIN_LEN: usize = 1 << 20;

/// Verification faults the data in and hashes it in pieces of this size...
const VERIFY_PIECE_LEN: usize = 32 << 20;

/// ...on this many threads at once.
const VERIFY_WORKERS: usize = 4;

/// How the pool's pages will be accessed, passed to the kernel as `madvise` advice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// No advice: the kernel's default read-ahead.
    #[default]
    Normal,
    /// Random access (hash indexes): no read-ahead.
    Random,
    /// Sequential access (scans): aggressive read-ahead.
    Sequential,
}

/// A pool stored in a memory-mapped file, in the format of docs/format.md.
///
/// Writes go straight to the page cache; [`flush`](Datapool::flush) makes them durable and
/// records a checksum. The file is marked dirty on disk the first time write access is
/// handed out after a flush (or after open), so a process that stops without flushing leaves
/// a file that the next `open` reports as [`Error::Dirty`] instead of serving torn bytes.
///
/// One handle per file: the file is locked (`flock`) while open, and a second open, in this
/// process or another, is [`Error::Locked`]. Dropping the pool does not flush it.
///
/// ```
/// use talus_datapool::{Datapool, MmapFile};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("pool");
/// let mut pool = MmapFile::create(&path, 5000, 1)?;
/// pool.as_mut_slice()[4999] = 42;
/// pool.close()?;
///
/// let pool = MmapFile::open(&path, 5000, 1)?;
/// assert_eq!(pool.as_slice()[4999], 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MmapFile {
    path: PathBuf,
    /// Held open for the lock; the mapping does not need it.
    _file: File,
    /// The whole file: header page, then the data padded to a page. Held raw, and reached
    /// only through pointers to the parts in use, so that no reference ever spans both the
    /// header and the data (a shared pool's data is in use by other threads while its
    /// header is written).
    map: MmapRaw,
    data_len: usize,
    /// The header as it is now in the mapping.
    header: PoolHeader,
    /// Write access was handed out since the last flush (and the header says dirty).
    dirty: bool,
    /// A sync failed: the file on disk may not hold what memory holds, forever.
    poisoned: bool,
}

/// How to create or open an [`MmapFile`].
#[derive(Clone, Copy, Debug)]
pub struct MmapFileOptions {
    verify_checksum: bool,
    access: Access,
    huge_pages: bool,
    resume_dirty: bool,
}

impl Default for MmapFileOptions {
    fn default() -> Self {
        MmapFileOptions { verify_checksum: true, access: Access::Normal, huge_pages: false, resume_dirty: false }
    }
}

impl MmapFileOptions {
    /// Verify the checksum on open; no access advice.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `open` reads every byte to verify the data checksum (default `true`).
    /// Without it, opening is instant but damage inside the data goes unnoticed; the header,
    /// its crc32c and the dirty flag are always checked.
    pub fn verify_checksum(mut self, verify: bool) -> Self {
        self.verify_checksum = verify;
        self
    }

    /// Access advice for the mapping (default [`Access::Normal`]).
    pub fn access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Ask the kernel to map the file with transparent huge pages (`MADV_HUGEPAGE`; default
    /// `false`). Where the file system keeps large folios in the page cache (ext4 and XFS on
    /// recent kernels), random accesses over a large pool then miss the TLB far less often.
    /// It costs no extra memory for a pool whose pages are all used. [`Access::Random`]
    /// keeps the kernel from building huge folios, so pair this with [`Access::Normal`].
    pub fn huge_pages(mut self, huge_pages: bool) -> Self {
        self.huge_pages = huge_pages;
        self
    }

    /// Open a pool whose dirty flag is set instead of refusing it with [`Error::Dirty`]
    /// (default `false`): the pool opens as it is, still dirty, without its data checksum
    /// checked (it describes the last flush, not the data). Only for a caller that knows the
    /// data is whole: a mapped file's stores are in the page cache the moment they are made,
    /// so a pool left dirty by a process that was killed holds every store that process
    /// made, for as long as the machine has not restarted since (see [`boot_id`]). A clean
    /// pool opens as usual, checksum and all.
    ///
    /// [`boot_id`]: crate::boot_id
    pub fn resume_dirty(mut self, resume: bool) -> Self {
        self.resume_dirty = resume;
        self
    }

    /// Creates a new pool file of `data_len` zero bytes and opens it.
    ///
    /// The file is complete (header, checksum, disk space reserved) before it appears at
    /// `path`; a crash during create leaves no file there.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] if `path` exists (it is left unchanged),
    /// [`Error::ZeroLength`], [`Error::TooLarge`], [`Error::Io`].
    pub fn create(&self, path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<MmapFile> {
        let path = path.as_ref();
        create_pool_file(path, data_len, user_version, true)?;
        // Just written and synced: no need to read it all back.
        MmapFileOptions { verify_checksum: false, ..*self }.open(path, data_len, user_version)
    }

    /// Opens an existing pool file, checking (in order) its length, magic, format version,
    /// header crc32c, data length, user version, dirty flag and data checksum.
    ///
    /// # Errors
    ///
    /// One variant per problem: [`Error::FileLength`], [`Error::BadMagic`],
    /// [`Error::UnsupportedVersion`], [`Error::ChecksumMismatch`], [`Error::InvalidHeader`],
    /// [`Error::SizeMismatch`], [`Error::UserVersionMismatch`], [`Error::Dirty`] (unless
    /// [`resume_dirty`](Self::resume_dirty)),
    /// [`Error::Locked`], [`Error::Io`].
    pub fn open(&self, path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<MmapFile> {
        let path = path.as_ref();
        let started = Instant::now();
        check_data_len(data_len)?;
        let file = open_noatime(OpenOptions::new().read(true).write(true), path).map_err(io_error("open", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked { path: path.to_path_buf() }),
            Err(TryLockError::Error(source)) => return Err(Error::Io { op: "lock", path: path.to_path_buf(), source }),
        }
        let header = read_and_check_header(&file, path, data_len, user_version, self.resume_dirty)?;

        let map_len = usize::try_from(file_len(data_len))
            .map_err(|_| Error::TooLarge { requested: data_len as u64, max: crate::MAX_DATA_LEN })?;
        // The mapping is exactly as long as the file, checked just above, so no page of it
        // lies past the end of the file; the file is locked against other talus handles for
        // as long as the mapping lives (it is dropped with `_file`'s owner). A process that
        // ignores the lock and truncates the file could still cause SIGBUS; ARCHITECTURE.md
        // records this as a limit of memory-mapped files. The mapping is raw: the bytes are
        // reached through `data_slice`, `as_mut_slice` and `write_header`, whose SAFETY
        // comments rely on the length checked here.
        let map = MmapOptions::new().len(map_len).map_raw(&file).map_err(io_error("mmap", path))?;

        // A resumed dirty pool's checksum describes its last flush, not its data.
        if self.verify_checksum && !header.dirty {
            advise(&map, Advice::Sequential);
            let computed = verify_pieces(&map, path, data_len, &header)?;
            header.verify_data_checksum(&computed, path)?;
        }
        match self.access {
            // The kernel's default, unless verification just advised otherwise.
            Access::Normal if self.verify_checksum && !header.dirty => advise(&map, Advice::Normal),
            Access::Normal => {}
            Access::Random => advise(&map, Advice::Random),
            Access::Sequential => advise(&map, Advice::Sequential),
        }
        if self.huge_pages {
            advise(&map, Advice::HugePage);
        }
        tracing::debug!(path = %path.display(), data_len, verified = self.verify_checksum && !header.dirty, resumed_dirty = header.dirty, elapsed_us = started.elapsed().as_micros() as u64, "opened mmap pool");
        let dirty = header.dirty;
        Ok(MmapFile { path: path.to_path_buf(), _file: file, map, data_len, header, dirty, poisoned: false })
    }
}

/// Faults the data in from disk piece by piece on several threads (`MADV_POPULATE_READ`,
/// which reports a read error as an error where touching the page would raise SIGBUS) and
/// hashes the pieces as they arrive.
fn verify_pieces(map: &MmapRaw, path: &Path, data_len: usize, header: &PoolHeader) -> Result<[u8; 32]> {
    let pieces: Vec<usize> = (0..data_len).step_by(VERIFY_PIECE_LEN).collect();
    let hasher = DataHasher::new(&header.checksum_prefix());
    let checksum = load_and_hash(pieces, VERIFY_WORKERS, Some(hasher), |start| {
        let end = (start + VERIFY_PIECE_LEN).min(data_len);
        // Read the whole piece in large requests, then map it.
        if let Err(error) = map.advise_range(Advice::WillNeed, HEADER_LEN + start, end - start) {
            tracing::debug!(%error, "MADV_WILLNEED failed; relying on page faults");
        }
        match map.advise_range(Advice::PopulateRead, HEADER_LEN + start, end - start) {
            Ok(()) => {}
            // Kernels before 5.14 lack the advice; plain page faults do the same job.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {}
            Err(source) => return Err(Error::Io { op: "read (populate)", path: path.to_path_buf(), source }),
        }
        Ok(data_slice(map, data_len).get(start..end).expect("pieces lie within the data"))
    })?;
    Ok(checksum.expect("a hasher was given"))
}

/// The data bytes of a pool's mapping, for a pool that is not shared (or not yet).
fn data_slice(map: &MmapRaw, data_len: usize) -> &[u8] {
    // SAFETY: the mapping is `file_len(data_len)` bytes, at least HEADER_LEN + data_len
    // (checked when it was made), and lives as long as `map`'s borrow. Callers hold the
    // pool (or the mapping, before the pool exists) by shared reference or own it, and a
    // pool's data is only written through `as_mut_slice` (`&mut self`, so not meanwhile)
    // or, once it is shared, through atomics that never meet this slice: a shared pool
    // reads its data through its words instead.
    unsafe { std::slice::from_raw_parts(map.as_ptr().add(HEADER_LEN), data_len) }
}

fn advise(map: &MmapRaw, advice: Advice) {
    if let Err(error) = map.advise(advice) {
        tracing::debug!(%error, ?advice, "madvise failed; continuing without the advice");
    }
}

impl MmapFile {
    /// Creates a new pool file with default options. See [`MmapFileOptions::create`].
    ///
    /// # Errors
    ///
    /// As [`MmapFileOptions::create`].
    pub fn create(path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<MmapFile> {
        MmapFileOptions::new().create(path, data_len, user_version)
    }

    /// Opens a pool file with default options (checksum verified). See [`MmapFileOptions::open`].
    ///
    /// # Errors
    ///
    /// As [`MmapFileOptions::open`].
    pub fn open(path: impl AsRef<Path>, data_len: usize, user_version: u64) -> Result<MmapFile> {
        MmapFileOptions::new().open(path, data_len, user_version)
    }

    /// Flushes and closes the pool, reporting any error that dropping would swallow.
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

    /// The header as it is now (dirty while unflushed changes may exist): user version, data
    /// length, created and last-flushed times.
    pub fn header(&self) -> &PoolHeader {
        &self.header
    }

    /// Whether write access was handed out since the last flush.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    fn write_header(&mut self, header: &PoolHeader) {
        let mut page = [0u8; HEADER_LEN];
        header.encode(&mut page);
        // SAFETY: the mapping is at least one header page plus a data page long (the file
        // length was checked at open), so the first HEADER_LEN bytes are in it; the header
        // page is only ever accessed by this pool's owner (`&mut self`), through this
        // pointer, never through `as_slice` (which starts after it) or a shared pool's
        // words; `page` is a separate local buffer.
        unsafe { std::ptr::copy_nonoverlapping(page.as_ptr(), self.map.as_mut_ptr(), HEADER_LEN) };
        self.header = *header;
    }

    /// Records on disk, before any data byte can change, that the pool is being written.
    pub(crate) fn mark_dirty(&mut self) {
        if self.dirty {
            return;
        }
        self.dirty = true;
        let header = PoolHeader { dirty: true, ..self.header };
        self.write_header(&header);
        if let Err(error) = self.map.flush_range(0, HEADER_LEN) {
            // The flag is in the page cache and reaches disk with the next writeback; should
            // the OS crash first, the data checksum still catches the change. But a failed
            // sync means the kernel may have dropped the page, so no flush is trusted again.
            tracing::error!(path = %self.path.display(), %error, "could not sync the dirty flag");
            self.poisoned = true;
        }
    }

    /// Syncs the data and writes a clean header with its checksum. The data is read from
    /// `words` when the pool is shared (its bytes are then only ever accessed atomically),
    /// else from the mapping.
    fn flush_dirty(&mut self, words: Option<&[AtomicU64]>) -> Result<()> {
        let started = Instant::now();
        let mut header = PoolHeader { dirty: false, flushed_unix_ns: now_unix_ns(), ..self.header };
        let prefix = header.checksum_prefix();
        let padded = padded_len(self.data_len);
        let map = &self.map;
        let data_len = self.data_len;
        let hash = || match words {
            Some(words) => words_checksum(&prefix, words, data_len),
            None => data_checksum(&prefix, data_slice(map, data_len)),
        };

        // Step 1: the data reaches disk (msync) while its checksum is computed.
        let (synced, checksum) = if self.data_len < OVERLAP_MIN_LEN {
            (map.flush_range(HEADER_LEN, padded), hash())
        } else {
            std::thread::scope(|scope| {
                let syncer = scope.spawn(|| map.flush_range(HEADER_LEN, padded));
                let checksum = hash();
                (syncer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), checksum)
            })
        };
        synced.map_err(io_error("msync data", &self.path))?;

        // Step 2: only then the clean header, with the checksum of what is on disk.
        header.data_checksum = checksum;
        self.write_header(&header);
        self.map.flush_range(0, HEADER_LEN).map_err(io_error("msync header", &self.path))?;
        self.dirty = false;
        tracing::debug!(path = %self.path.display(), data_len = self.data_len, elapsed_us = started.elapsed().as_micros() as u64, "flushed mmap pool");
        Ok(())
    }
}

impl Datapool for MmapFile {
    fn len(&self) -> usize {
        self.data_len
    }

    fn as_slice(&self) -> &[u8] {
        data_slice(&self.map, self.data_len)
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.mark_dirty();
        // SAFETY: as in `data_slice`, and `&mut self` makes this the only reference to the
        // data while it lives (a pool that is shared is owned by its `SharedMmapFile`,
        // which never calls this).
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(HEADER_LEN), self.data_len) }
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.mark_dirty();
        self.map.as_mut_ptr().wrapping_add(HEADER_LEN)
    }

    /// Syncs the data, then writes and syncs a clean header with the new checksum. Does
    /// nothing if no write access was handed out since the last flush.
    fn flush(&mut self) -> Result<()> {
        self.flush_from(None)
    }
}

impl MmapFile {
    /// [`Datapool::flush`], hashing the data from `words` when the pool is shared.
    pub(crate) fn flush_from(&mut self, words: Option<&[AtomicU64]>) -> Result<()> {
        if self.poisoned {
            return Err(Error::Poisoned { path: self.path.clone() });
        }
        if !self.dirty {
            return Ok(());
        }
        let result = self.flush_dirty(words);
        if let Err(error) = &result {
            tracing::error!(path = %self.path.display(), %error, "flush failed; pool poisoned");
            self.poisoned = true;
        }
        result
    }

    /// The mapping (header page first) and the open, locked file, for a shared pool.
    pub(crate) fn map(&self) -> &MmapRaw {
        &self.map
    }

    /// Takes the pool apart: its path, the locked file and the mapping.
    pub(crate) fn into_parts(self) -> (PathBuf, File, MmapRaw) {
        (self.path, self._file, self.map)
    }
}

impl std::fmt::Debug for MmapFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmapFile")
            .field("path", &self.path)
            .field("data_len", &self.data_len)
            .field("dirty", &self.dirty)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}
