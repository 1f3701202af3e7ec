//! `RingMetrics`: what is in the ring, by state, and what it has done.

use crate::entry::EntryState;

/// Entries and bytes (headers included) per state over `[head, tail)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateMetrics {
    /// Reserved and being written.
    pub n_allocated: u64,
    /// Bytes of `n_allocated`.
    pub allocated_bytes: u64,
    /// Published.
    pub n_ready: u64,
    /// Bytes of `n_ready`.
    pub ready_bytes: u64,
    /// Held by an eviction callback.
    pub n_evicting: u64,
    /// Bytes of `n_evicting`.
    pub evicting_bytes: u64,
    /// Evicted but not yet passed by head.
    pub n_evicted: u64,
    /// Bytes of `n_evicted`.
    pub evicted_bytes: u64,
    /// Tombstones.
    pub n_freed: u64,
    /// Bytes of `n_freed`.
    pub freed_bytes: u64,
    /// On a free list.
    pub n_free_listed: u64,
    /// Bytes of `n_free_listed`.
    pub free_listed_bytes: u64,
    /// Page-end fillers.
    pub n_fillers: u64,
    /// Bytes of `n_fillers`.
    pub filler_bytes: u64,
    /// Bytes reserved whose header was not written yet when the walk reached them.
    pub in_progress_bytes: u64,
}

impl StateMetrics {
    pub(crate) fn add(&mut self, state: EntryState, size: u64) {
        let (count, bytes) = match state {
            EntryState::Allocated => (&mut self.n_allocated, &mut self.allocated_bytes),
            EntryState::Ready => (&mut self.n_ready, &mut self.ready_bytes),
            EntryState::Evicting => (&mut self.n_evicting, &mut self.evicting_bytes),
            EntryState::Evicted => (&mut self.n_evicted, &mut self.evicted_bytes),
            EntryState::Freed => (&mut self.n_freed, &mut self.freed_bytes),
            EntryState::FreeListed => (&mut self.n_free_listed, &mut self.free_listed_bytes),
            EntryState::Filler => (&mut self.n_fillers, &mut self.filler_bytes),
        };
        *count += 1;
        *bytes += size;
    }
}

/// A snapshot of a ring (see [`Ring::metrics`](crate::Ring::metrics)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RingMetrics {
    /// Bytes of memory.
    pub capacity: u64,
    /// Bytes per page.
    pub page_size: u64,
    /// First address in memory.
    pub head: u64,
    /// Start of the mutable region.
    pub read_only: u64,
    /// End of the range an eviction has claimed (equal to `head` when none runs).
    pub evicting_until: u64,
    /// Next allocation address.
    pub tail: u64,
    /// Memory below this is zeroed and reusable.
    pub reclaimed_until: u64,
    /// The entries in `[head, tail)`, by state.
    pub states: StateMetrics,
    /// Entries evicted since the ring was made.
    pub n_evicted_total: u64,
    /// Bytes evicted since the ring was made.
    pub evicted_bytes_total: u64,
    /// Allocations served from a free list.
    pub n_reused_total: u64,
    /// Allocations refused because the ring was full.
    pub n_full_total: u64,
    /// Entries on free lists now.
    pub n_free_listed: usize,
    /// Reader pins held now.
    pub n_pinned: usize,
}
