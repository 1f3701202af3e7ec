//! `SharedMmapFile`: an [`MmapFile`] whose data any number of threads read and write as
//! atomic 64-bit words, without a lock, and which can be retired while readers may still be
//! looking at it.

use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use memmap2::MmapRaw;

use crate::error::{Error, Result, io_error};
use crate::header::HEADER_LEN;
use crate::mmap_file::MmapFile;
use crate::pool::Datapool as _;

/// An [`MmapFile`] shared between threads as a slice of [`AtomicU64`] words.
///
/// This is the building block for lock-free readers (a seqlock, say) over a persistent
/// pool: every access to the data goes through [`words`](Self::words), so readers and
/// writers never race on plain memory, and the caller's own protocol decides what a
/// consistent read is. The data is the pool's data bytes, little-endian in each word; its
/// length must be a whole number of words.
///
/// - [`mark_dirty`](Self::mark_dirty) must be called before the first store after creation,
///   open or a flush, as `as_mut_slice` does for an `MmapFile`. A store without it leaves a
///   header that says clean over changed data, which the next verified open reports as a
///   checksum mismatch.
/// - [`flush`](Self::flush) reads the words atomically while it hashes them; the caller
///   keeps writers out for the duration if the checksum is to match.
/// - [`retire`](Self::retire) deletes the file and gives its disk space and page cache back,
///   but keeps the address range mapped (to private zero pages) until the pool is dropped,
///   so a reader still holding [`words`](Self::words) reads zeros, never unmapped memory;
///   stores after it reach no file.
///
/// ```
/// use std::sync::atomic::Ordering;
/// use talus_datapool::{MmapFile, SharedMmapFile};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("pool");
/// let pool = SharedMmapFile::new(MmapFile::create(&path, 4096, 1)?)?;
/// pool.mark_dirty();
/// std::thread::scope(|scope| {
///     scope.spawn(|| pool.words()[1].store(42, Ordering::Relaxed));
/// });
/// assert_eq!(pool.words()[1].load(Ordering::Relaxed), 42);
/// pool.flush()?;
/// pool.retire()?;
/// assert!(!path.exists());
/// assert_eq!(pool.words()[1].load(Ordering::Relaxed), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedMmapFile {
    /// The first data word (the byte after the header page).
    words: NonNull<AtomicU64>,
    n_words: usize,
    path: PathBuf,
    /// A fast-path copy of the pool's dirty flag.
    dirty: AtomicBool,
    state: Mutex<State>,
}

enum State {
    Live(MmapFile),
    /// The file is gone; the mapping now shows zero pages and is unmapped at drop.
    Retired(#[allow(dead_code, reason = "held for its Drop, which unmaps the range")] MmapRaw),
    /// Only while `retire` works.
    Taken,
}

// SAFETY: the words are `AtomicU64`s, which are `Sync`; the pointer is into a mapping this
// value owns (through `state`) and that stays mapped at the same address until drop, so it
// may be used from any thread. Everything else is `Send + Sync` already.
unsafe impl Send for SharedMmapFile {}
// SAFETY: as for `Send`: shared access only hands out `&[AtomicU64]` and takes the mutex
// for everything else.
unsafe impl Sync for SharedMmapFile {}

impl SharedMmapFile {
    /// Shares `pool`. From now on its data is only reached through [`words`](Self::words).
    ///
    /// # Errors
    ///
    /// [`Error::NotWords`] if the data length is not a multiple of 8.
    pub fn new(pool: MmapFile) -> Result<Self> {
        let data_len = pool.len();
        if !data_len.is_multiple_of(8) {
            return Err(Error::NotWords { path: pool.path().to_path_buf(), data_len });
        }
        // The mapping starts on a page and the header is a whole number of pages, so the
        // data is aligned for `AtomicU64`; checked anyway, as `words` relies on it.
        let first = pool.map().as_mut_ptr().wrapping_add(HEADER_LEN).cast::<AtomicU64>();
        assert!(first.is_aligned(), "pool data is not 8-byte aligned");
        let words = NonNull::new(first).expect("a mapping is never at address 0");
        Ok(SharedMmapFile {
            words,
            n_words: data_len / 8,
            path: pool.path().to_path_buf(),
            dirty: AtomicBool::new(pool.is_dirty()),
            state: Mutex::new(State::Live(pool)),
        })
    }

    /// The data, as words.
    #[inline]
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: `words` points at the data of a mapping owned by `self.state`, which is
        // `n_words * 8` bytes long (checked in `new`) and 8-byte aligned; the mapping stays
        // at this address until `self` is dropped (`retire` replaces its pages in place), so
        // the slice lives no longer than the memory. Once shared, the data bytes are never
        // reached through `&[u8]` or `&mut [u8]` (flush hashes them through these words, and
        // the header page, written under the mutex, lies before them), so every access to
        // them is atomic.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr(), self.n_words) }
    }

    /// The data length in bytes.
    pub fn len(&self) -> usize {
        self.n_words * 8
    }

    /// Whether the data is empty (never, for a pool that opened).
    pub fn is_empty(&self) -> bool {
        self.n_words == 0
    }

    /// The pool file's path (where it was, once retired).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records on disk, before any stores, that the pool is being written (once per flush:
    /// later calls are one atomic load).
    pub fn mark_dirty(&self) {
        if self.dirty.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        if let State::Live(pool) = &mut *state {
            pool.mark_dirty();
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Whether the pool was marked dirty since the last flush.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }

    /// As [`Datapool::flush`](crate::Datapool::flush): syncs the data, then writes and syncs
    /// a clean header with the data's checksum, read through the words.
    ///
    /// # Errors
    ///
    /// As `MmapFile`'s flush; [`Error::Retired`] after [`retire`](Self::retire).
    pub fn flush(&self) -> Result<()> {
        let mut state = self.lock();
        match &mut *state {
            State::Live(pool) => {
                pool.flush_from(Some(self.words()))?;
                self.dirty.store(pool.is_dirty(), Ordering::Release);
                Ok(())
            }
            State::Retired(_) | State::Taken => Err(Error::Retired { path: self.path.clone() }),
        }
    }

    /// Deletes the pool file and lets go of it (its disk space and cached pages are given
    /// back), while the address range stays mapped, now to zero pages, until drop: a reader
    /// that still holds [`words`](Self::words) reads zeros. Retiring twice does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be deleted (the pool is then left as it was) or its
    /// pages cannot be swapped for zero pages (the file is deleted, but the mapping and the
    /// file's space are kept until drop).
    pub fn retire(&self) -> Result<()> {
        let mut state = self.lock();
        if !matches!(*state, State::Live(_)) {
            return Ok(());
        }
        let State::Live(pool) = &*state else { unreachable!("checked above") };
        std::fs::remove_file(&self.path).map_err(io_error("remove", &self.path))?;
        let (start, len) = (pool.map().as_mut_ptr(), pool.map().len());
        // SAFETY: `[start, start + len)` is exactly the mapping the pool owns, and nothing
        // else in this process maps it. MAP_FIXED replaces its pages in one step with fresh
        // anonymous zero pages at the same address (Linux swaps the mappings under the
        // process's mmap lock, so a concurrent access faults and waits rather than meeting a
        // hole): a reader of the words sees either the old bytes or zeros, never an unmapped
        // address, and a store, which no owner should make any more, lands in private memory.
        // The mapping's owner later unmaps the range as usual. No Rust reference to the bytes
        // exists except the atomic words, which may observe the change (as they would a
        // store by another process), and the header page, which is only touched under this
        // lock. A caller that pairs this with a sequence number (the bucketmap's seqlock)
        // relies on its own release store before this call being visible to any reader
        // that then sees the zeros.
        let replaced = unsafe {
            libc::mmap(
                start.cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced == libc::MAP_FAILED {
            // The file stays open and mapped until drop: readers must never meet a hole.
            let source = std::io::Error::last_os_error();
            return Err(Error::Io { op: "mmap (retire)", path: self.path.clone(), source });
        }
        let State::Live(pool) = std::mem::replace(&mut *state, State::Taken) else { unreachable!("checked above") };
        let (_path, file, map) = pool.into_parts();
        drop(file);
        *state = State::Retired(map);
        Ok(())
    }

    /// Whether [`retire`](Self::retire) was called.
    pub fn is_retired(&self) -> bool {
        matches!(*self.lock(), State::Retired(_))
    }

    /// Starts loading the cache line of word `index` (see [`prefetch`](crate::prefetch)); an
    /// index past the end is ignored.
    #[inline]
    pub fn prefetch(&self, index: usize) {
        if let Some(word) = self.words().get(index) {
            crate::prefetch::prefetch_ptr(std::ptr::from_ref(word).cast());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state whole (it is only ever replaced
        // in one assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl std::fmt::Debug for SharedMmapFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMmapFile")
            .field("path", &self.path)
            .field("len", &self.len())
            .field("dirty", &self.is_dirty())
            .finish_non_exhaustive()
    }
}
