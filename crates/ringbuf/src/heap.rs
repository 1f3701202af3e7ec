//! `HeapPool`: a datapool in ordinary heap memory, for tests, Miri and loom, where mappings
//! are unavailable or unwanted.

use std::alloc::Layout;
use std::ptr::NonNull;

use talus_datapool::Datapool;

/// A zeroed, 4096-byte-aligned heap allocation behind the [`Datapool`] trait. Volatile.
pub struct HeapPool {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the pool owns its allocation exclusively; shared access only reads through
// `as_slice`, and writers go through `&mut self` or the raw pointer under the Datapool contract.
unsafe impl Send for HeapPool {}
// SAFETY: as for `Send`.
unsafe impl Sync for HeapPool {}

const HEAP_POOL_ALIGN: usize = 4096;

impl HeapPool {
    /// Allocates `len` zeroed bytes; `None` for a zero length, a length the allocator cannot
    /// describe, or an allocation failure.
    pub fn new(len: usize) -> Option<HeapPool> {
        let layout = Layout::from_size_align(len, HEAP_POOL_ALIGN).ok().filter(|_| len > 0)?;
        // SAFETY: the layout has a non-zero size (checked just above).
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(HeapPool { ptr, len })
    }
}

impl Datapool for HeapPool {
    fn len(&self) -> usize {
        self.len
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: the allocation is `len` initialised (zeroed) bytes, owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn flush(&mut self) -> talus_datapool::Result<()> {
        Ok(())
    }
}

impl Drop for HeapPool {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, HEAP_POOL_ALIGN).expect("the layout was valid at creation");
        // SAFETY: allocated in `new` with this very layout, and freed only here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for HeapPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapPool").field("len", &self.len).finish()
    }
}
