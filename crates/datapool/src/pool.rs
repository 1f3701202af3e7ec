//! The `Datapool` trait: one view of a byte region, whatever keeps it.

use crate::error::Result;

/// A fixed-size region of bytes that a higher layer keeps its data in.
///
/// The region is at least one byte long, starts on a 4096-byte boundary, and never moves or
/// changes length while the pool lives, even when the pool value itself is moved (every
/// implementation keeps its bytes in a memory mapping, not inline).
///
/// Implementations: [`Memory`](crate::Memory) (volatile), [`MmapFile`](crate::MmapFile) (the
/// bytes are a mapped file) and [`FileBackedMemory`](crate::FileBackedMemory) (the bytes are
/// anonymous memory saved to a file on `flush`).
pub trait Datapool: Send + Sync + std::fmt::Debug {
    /// The number of data bytes. Never zero, and the same after create and after open.
    fn len(&self) -> usize;

    /// Always `false`: a pool holds at least one byte. Present because `len` is.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data bytes.
    fn as_slice(&self) -> &[u8];

    /// The data bytes, for writing. A file-backed pool counts as changed from this call on:
    /// [`MmapFile`](crate::MmapFile) marks its header dirty on disk before returning.
    fn as_mut_slice(&mut self) -> &mut [u8];

    /// A raw pointer to the first data byte, for layers (the ring buffer) that share the
    /// region between threads and synchronise access themselves.
    ///
    /// Like [`as_mut_slice`](Self::as_mut_slice), this counts as handing out write access.
    ///
    /// # Safety contract for users of the pointer
    ///
    /// Obtaining the pointer is safe; using it is `unsafe` and the caller must uphold:
    /// - it is valid for reads and writes of [`len`](Self::len) bytes, aligned to 4096, until
    ///   the pool is dropped (flushing does not invalidate it);
    /// - writes through it must not overlap, in time and bytes, any live reference returned by
    ///   [`as_slice`](Self::as_slice) or [`as_mut_slice`](Self::as_mut_slice), nor a running
    ///   [`flush`](Self::flush) (which reads every byte);
    /// - after a `flush`, the pool is clean again: a holder who wants later writes saved must
    ///   call `as_mut_ptr` (or `as_mut_slice`) again before writing, so the pool records that
    ///   it changed.
    fn as_mut_ptr(&mut self) -> *mut u8;

    /// Makes the current bytes durable, if the pool has a file; a no-op for volatile memory.
    ///
    /// # Errors
    ///
    /// I/O errors from writing, syncing or renaming; after a failed flush a
    /// [`MmapFile`](crate::MmapFile) refuses further flushes ([`Error::Poisoned`](crate::Error::Poisoned)).
    fn flush(&mut self) -> Result<()>;
}
