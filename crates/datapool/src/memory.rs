//! `Memory`: a volatile pool in anonymous memory.

use memmap2::{MmapMut, MmapOptions};

use crate::error::{Error, Result};
use crate::header::{PAGE_LEN, check_data_len, padded_len};
use crate::pool::Datapool;

/// A pool of anonymous memory, pre-faulted by default so the first writes do not stall on
/// page faults. Its contents are lost when it is dropped; `flush` does nothing.
///
/// ```
/// use talus_datapool::{Datapool, Memory};
///
/// let mut pool = Memory::create(8192)?;
/// assert_eq!(pool.len(), 8192);
/// pool.as_mut_slice()[0] = 7;
/// assert_eq!(pool.as_slice()[0], 7);
/// # Ok::<(), talus_datapool::Error>(())
/// ```
pub struct Memory {
    /// The whole mapping: `len` rounded up to a page. The bytes past `len` are never handed
    /// out through a slice and stay zero, so a file image can be written straight from here.
    map: MmapMut,
    len: usize,
}

/// How to create a [`Memory`] pool.
#[derive(Clone, Copy, Debug)]
pub struct MemoryOptions {
    prefault: bool,
    huge_pages: bool,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions { prefault: true, huge_pages: false }
    }
}

impl MemoryOptions {
    /// Pre-faulted, without huge pages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Touch every page at create time (default `true`), so later writes never fault.
    pub fn prefault(mut self, prefault: bool) -> Self {
        self.prefault = prefault;
        self
    }

    /// Ask the kernel for transparent huge pages (`madvise(MADV_HUGEPAGE)`; default `false`).
    /// A kernel without THP support ignores the request; the pool still works.
    pub fn huge_pages(mut self, huge_pages: bool) -> Self {
        self.huge_pages = huge_pages;
        self
    }

    /// Maps `len` bytes of zeroed anonymous memory.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroLength`], [`Error::TooLarge`], or [`Error::Map`] when the kernel refuses
    /// the mapping.
    pub fn create(&self, len: usize) -> Result<Memory> {
        check_data_len(len)?;
        let map_len = padded_len(len);
        let map_error = |source| Error::Map { len: map_len, source };

        let map = if self.huge_pages {
            let mut map = MmapOptions::new().len(map_len).map_anon().map_err(map_error)?;
            #[cfg(target_os = "linux")]
            if let Err(error) = map.advise(memmap2::Advice::HugePage) {
                tracing::debug!(%error, "transparent huge pages unavailable; using normal pages");
            }
            if self.prefault {
                // MAP_POPULATE would fault the pages before the advice applies, so touch them.
                for page in map.chunks_mut(PAGE_LEN) {
                    page[0] = 0;
                }
            }
            map
        } else if self.prefault {
            // MAP_POPULATE on a private writable mapping write-faults every page up front.
            MmapOptions::new().len(map_len).populate().map_anon().map_err(map_error)?
        } else {
            MmapOptions::new().len(map_len).map_anon().map_err(map_error)?
        };
        Ok(Memory { map, len })
    }
}

impl Memory {
    /// Maps `len` bytes of zeroed, pre-faulted anonymous memory.
    ///
    /// # Errors
    ///
    /// As [`MemoryOptions::create`].
    pub fn create(len: usize) -> Result<Memory> {
        MemoryOptions::new().create(len)
    }

    /// The data bytes plus the zero padding up to a whole page.
    pub(crate) fn padded(&self) -> &[u8] {
        &self.map
    }

    /// The data bytes plus the padding, for loading a whole file image. The caller must leave
    /// the padding zero.
    pub(crate) fn padded_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

impl Datapool for Memory {
    fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[u8] {
        &self.map[..self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map[..self.len]
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory").field("len", &self.len).finish_non_exhaustive()
    }
}
