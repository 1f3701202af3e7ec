//! A FASTER-style circular allocator over a datapool: the in-memory tail of Talus's log.
//!
//! This crate owns one structure, the ring: a power-of-two span of memory (any
//! [`Datapool`](talus_datapool::Datapool)) addressed by ever-growing 64-bit logical
//! addresses, with FASTER's markers `head <= read_only <= tail`:
//!
//! - [`Ring::alloc`] reserves a variable-size entry at the tail (a compare-and-swap, no
//!   lock); dropping the [`Allocation`] publishes it.
//! - [`Ring::pin`] gives a [`Guard`] under which [`Guard::read`] returns entries that stay
//!   intact until the guard drops, whatever eviction and reuse do meanwhile.
//! - [`Ring::evict_until`] hands entries, oldest first, to a callback with exclusive
//!   access and advances `head`; the memory is reused once no pin can reach it.
//! - [`Ring::free`] turns an entry into a tombstone, or (with reuse on, in the mutable
//!   region) puts it on a size-class free list for reuse in place.
//!
//! Entries never straddle a page; a filler covers the unused end of a page. Each entry has an
//! 8-byte header (state, size, length) in front of an 8-byte-aligned payload.
//!
//! What this crate deliberately does not do: file I/O (the engine persists evicted entries),
//! interpret payloads, or keep anything across a restart (the ring is volatile even over a
//! file-backed pool, and zeroes its pool when made).

#[cfg(not(loom))]
mod config;
#[cfg(not(loom))]
mod entry;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod free_list;
#[cfg(not(loom))]
mod heap;
#[cfg(not(loom))]
mod metrics;
mod pins;
#[cfg(not(loom))]
mod region;
#[cfg(not(loom))]
mod ring;
mod sync;

#[cfg(not(loom))]
pub use config::{MIN_PAGE_SIZE, RingConfig};
#[cfg(not(loom))]
pub use entry::{ENTRY_ALIGN, ENTRY_HEADER_LEN, EntryHeader, EntryState, MAX_PAGE_SIZE};
#[cfg(not(loom))]
pub use error::{Error, Result};
#[cfg(not(loom))]
pub use heap::HeapPool;
#[cfg(not(loom))]
pub use metrics::{RingMetrics, StateMetrics};
pub use pins::MAX_PINS;
#[cfg(not(loom))]
pub use ring::{Allocation, EvictAction, EvictEntry, EvictReport, EvictStop, Guard, RawRange, Ring, RingBuffer};

#[cfg(all(test, loom))]
mod loom_tests;
