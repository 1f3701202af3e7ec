//! The unsafe core: a power-of-two span of raw bytes addressed by logical addresses.
//!
//! Every other file of the crate is safe code on top of these few accessors. The region knows
//! nothing of entries' life cycles; the callers' protocol (documented on each function)
//! decides who may touch which bytes when. It is generic over where the bytes live: a
//! datapool's mapping or a heap allocation, anything that hands out a stable pointer.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use crate::entry::{ENTRY_ALIGN, ENTRY_HEADER_LEN};

pub(crate) struct Region {
    base: NonNull<u8>,
    capacity: usize,
}

// SAFETY: the region is a plain span of bytes; all shared access goes through atomics or
// through the callers' protocol (see each accessor), so sharing it between threads is sound.
unsafe impl Send for Region {}
// SAFETY: as for `Send`.
unsafe impl Sync for Region {}

impl Region {
    /// # Safety
    ///
    /// `base` must be valid for reads and writes of `capacity` bytes, aligned to 8, for the
    /// whole life of the region, and nobody else may access those bytes meanwhile.
    /// `capacity` must be a power of two of at least 8.
    pub(crate) unsafe fn new(base: NonNull<u8>, capacity: usize) -> Region {
        assert!(capacity.is_power_of_two() && capacity >= ENTRY_ALIGN);
        assert_eq!(base.as_ptr() as usize % ENTRY_ALIGN, 0);
        Region { base, capacity }
    }

    fn offset(&self, address: u64) -> usize {
        (address as usize) & (self.capacity - 1)
    }

    /// The header word of the entry that starts at `address`.
    ///
    /// Safe to call for any 8-aligned address: the word always lies inside the region, and
    /// the ring's protocol only touches it as an atomic while an entry starts there (the
    /// entry-start bitmap keeps payload bytes, which are written non-atomically, from ever
    /// being read as a header).
    pub(crate) fn header(&self, address: u64) -> &AtomicU64 {
        let offset = self.offset(address);
        assert_eq!(offset % ENTRY_ALIGN, 0, "entry addresses are 8-aligned");
        // SAFETY: `offset + 8 <= capacity` (capacity is a multiple of 8 and offset is
        // 8-aligned), `base` is 8-aligned, so the pointer is valid and aligned for a u64 for
        // the region's life; `AtomicU64` has the size and alignment of `u64`.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast::<u64>()) }
    }

    /// The payload of the entry at `address`.
    ///
    /// # Safety
    ///
    /// An entry of at least `len` payload bytes starts at `address`, is published (nobody
    /// writes its payload while the slice lives), and its memory cannot be reclaimed or
    /// reused while the slice lives (the caller holds a pin that covers it).
    pub(crate) unsafe fn payload(&self, address: u64, len: usize) -> &[u8] {
        let offset = self.offset(address) + ENTRY_HEADER_LEN;
        debug_assert!(offset + len <= self.capacity, "entries never wrap");
        // SAFETY: in bounds (entries never straddle a page and pages tile the region); the
        // caller guarantees no concurrent writer and no reclaim for the slice's life.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(offset), len) }
    }

    /// The payload of the entry at `address`, for writing.
    ///
    /// # Safety
    ///
    /// As [`payload`](Self::payload), and the caller has the entry exclusively (it is the
    /// allocation that reserved it): nobody else reads or writes these bytes meanwhile.
    #[allow(clippy::mut_from_ref)] // exclusive by the entry protocol, not by the borrow
    pub(crate) unsafe fn payload_mut(&self, address: u64, len: usize) -> &mut [u8] {
        let offset = self.offset(address) + ENTRY_HEADER_LEN;
        debug_assert!(offset + len <= self.capacity, "entries never wrap");
        // SAFETY: in bounds as above; exclusivity is the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(offset), len) }
    }

    /// The bytes of logical range `[from, until)`: one slice, or two when the range wraps
    /// around the end of the region.
    ///
    /// # Safety
    ///
    /// `until - from <= capacity`; every entry in the range is published and nobody writes
    /// the range while the slices live; the caller's pin keeps it from being reclaimed.
    pub(crate) unsafe fn bytes(&self, from: u64, until: u64) -> (&[u8], &[u8]) {
        let len = (until - from) as usize;
        assert!(len <= self.capacity);
        let start = self.offset(from);
        let first_len = len.min(self.capacity - start);
        // SAFETY: both pieces lie inside the region; no writer and no reclaim by contract.
        unsafe {
            (
                std::slice::from_raw_parts(self.base.as_ptr().add(start), first_len),
                std::slice::from_raw_parts(self.base.as_ptr(), len - first_len),
            )
        }
    }

    /// Hints the CPU to bring the cache line holding `address` in for writing (or reading),
    /// ahead of use. Never faults, whatever the address.
    #[inline]
    pub(crate) fn prefetch(&self, address: u64, for_write: bool) {
        let offset = self.offset(address);
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_ET0, _MM_HINT_T0, _mm_prefetch};
            // SAFETY: `offset < capacity`, so the pointer is inside the region; a prefetch
            // only hints the cache and never dereferences or faults.
            unsafe {
                let pointer = self.base.as_ptr().add(offset).cast::<i8>();
                if for_write {
                    _mm_prefetch::<_MM_HINT_ET0>(pointer);
                } else {
                    _mm_prefetch::<_MM_HINT_T0>(pointer);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (offset, for_write);
    }
}
