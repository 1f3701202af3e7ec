//! `RingConfig`: how a ring divides and uses its memory.

use crate::entry::{ENTRY_ALIGN, ENTRY_HEADER_LEN, MAX_PAGE_SIZE};
use crate::error::{Error, Result};

/// The smallest page: room for a header and a few payload bytes.
pub const MIN_PAGE_SIZE: usize = 64;

/// How a [`RingBuffer`](crate::RingBuffer) divides and uses its memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RingConfig {
    /// Bytes per page: a power of two from 64 bytes to 256 MiB, at most the capacity. An
    /// entry never straddles a page; the largest payload is one page minus its header.
    pub page_size: usize,
    /// The share of the capacity, nearest the tail, that is mutable (0.0 to 1.0). The rest
    /// of the in-memory part, nearest the head, is the copy-on-access region.
    pub mutable_fraction: f64,
    /// Whether freed entries of the mutable region are reused through size-class free lists
    /// (sizes are then rounded up to a class, at most 25% more).
    pub reuse_freed: bool,
    /// The logical address of the first entry (a multiple of 8): a ring that continues a log
    /// whose earlier bytes live elsewhere starts where that log ends, so addresses never
    /// repeat. The first page may then be partial.
    pub start_address: u64,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig { page_size: 64 << 10, mutable_fraction: 0.9, reuse_freed: false, start_address: 0 }
    }
}

impl RingConfig {
    /// 64 KiB pages, 90% mutable, no reuse.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the page size.
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sets the mutable fraction.
    pub fn mutable_fraction(mut self, mutable_fraction: f64) -> Self {
        self.mutable_fraction = mutable_fraction;
        self
    }

    /// Turns reuse of freed entries on or off.
    pub fn reuse_freed(mut self, reuse_freed: bool) -> Self {
        self.reuse_freed = reuse_freed;
        self
    }

    /// Sets the address of the first entry.
    pub fn start_address(mut self, start_address: u64) -> Self {
        self.start_address = start_address;
        self
    }

    /// The largest payload an entry of this configuration can hold.
    pub fn max_payload_len(&self) -> usize {
        self.page_size - ENTRY_HEADER_LEN
    }

    /// Checks the configuration against a pool of `capacity` bytes.
    pub(crate) fn validate(&self, capacity: usize) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if !capacity.is_power_of_two() {
            return invalid(format!("the pool's length ({capacity} bytes) must be a power of two"));
        }
        if !self.page_size.is_power_of_two() || !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&self.page_size) {
            return invalid(format!(
                "page size {} must be a power of two from {MIN_PAGE_SIZE} to {MAX_PAGE_SIZE}",
                self.page_size
            ));
        }
        if self.page_size > capacity {
            return invalid(format!("page size {} exceeds the capacity {capacity}", self.page_size));
        }
        if !self.start_address.is_multiple_of(ENTRY_ALIGN as u64) || self.start_address > u64::MAX / 2 {
            return invalid(format!(
                "start address {} must be a multiple of {ENTRY_ALIGN} below 2^63",
                self.start_address
            ));
        }
        if !(0.0..=1.0).contains(&self.mutable_fraction) {
            return invalid(format!("mutable fraction {} must be from 0.0 to 1.0", self.mutable_fraction));
        }
        Ok(())
    }
}
