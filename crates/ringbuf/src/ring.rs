//! `Ring`: the allocator itself, and `RingBuffer`, which owns the pool under it.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64 as StdAtomicU64;

use talus_datapool::Datapool;

use crate::config::RingConfig;
use crate::entry::{ENTRY_ALIGN, EntryHeader, EntryState, entry_size};
use crate::error::{Error, Result};
use crate::free_list::{FreeEntry, FreeLists, class_of, class_size};
use crate::metrics::{RingMetrics, StateMetrics};
use crate::pins::Pins;
use crate::region::Region;
use crate::sync::{AtomicBool, AtomicU64, CachePadded, Mutex, Ordering, fence};

/// A FASTER-style circular allocator over a [`Datapool`]: variable-size entries at growing
/// logical addresses, evicted in order from the head.
///
/// `RingBuffer` owns the pool; everything else is on [`Ring`], which it dereferences to.
///
/// ```
/// use talus_datapool::Memory;
/// use talus_ringbuf::{EvictAction, RingBuffer, RingConfig};
///
/// let ring = RingBuffer::new(Memory::create(1 << 20)?, RingConfig::new().page_size(4096))?;
/// let mut entry = ring.alloc(5)?;
/// entry.copy_from_slice(b"hello");
/// let address = entry.address();
/// drop(entry); // publishes it
///
/// assert_eq!(ring.pin().read(address)?, b"hello");
/// let report = ring.evict_all(|entry| {
///     assert_eq!(entry.payload, b"hello"); // persist it here
///     EvictAction::Evicted
/// });
/// assert_eq!(report.n_evicted, 1);
/// assert!(ring.pin().read(address).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RingBuffer<P: Datapool> {
    ring: Ring,
    /// Owns the memory `ring` points into; declared last so it is dropped last.
    _pool: P,
}

impl<P: Datapool> RingBuffer<P> {
    /// Builds a ring over all of `pool`, whose length must be a power of two. Whatever the
    /// pool held before is ignored: the ring starts empty, and an entry exists only where
    /// this ring allocated one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a pool length that is not a power of two, a bad page size
    /// or a mutable fraction outside 0.0 to 1.0.
    pub fn new(mut pool: P, config: RingConfig) -> Result<Self> {
        let capacity = pool.len();
        config.validate(capacity)?;
        let base = NonNull::new(pool.as_mut_ptr())
            .ok_or_else(|| Error::InvalidConfig { reason: "the pool returned a null pointer".to_owned() })?;
        if !(base.as_ptr() as usize).is_multiple_of(ENTRY_ALIGN) {
            return Err(Error::InvalidConfig { reason: "the pool's memory is not 8-byte aligned".to_owned() });
        }
        // SAFETY: the Datapool contract: the pointer is valid for `len()` bytes until the pool
        // is dropped, and the region never moves; the pool is kept in `_pool`, dropped after
        // the ring, and this crate never touches it otherwise. Alignment checked above;
        // capacity is a power of two (validated) and at least a page (>= 64).
        let region = unsafe { Region::new(base, capacity) };
        Ok(RingBuffer { ring: Ring::new(region, capacity, config), _pool: pool })
    }
}

impl<P: Datapool> std::ops::Deref for RingBuffer<P> {
    type Target = Ring;
    fn deref(&self) -> &Ring {
        &self.ring
    }
}

impl<P: Datapool> std::fmt::Debug for RingBuffer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ring.fmt(f)
    }
}

/// The allocator: `begin <= head <= read_only <= tail`, with `[head, tail)` in memory.
///
/// - `tail`: where the next entry goes; advanced by a compare-and-swap per allocation.
/// - `head`: the first entry not yet evicted; advanced only by eviction, over a contiguous
///   prefix of evicted (or skipped) entries.
/// - `read_only`: `max(head, tail - mutable bytes)`; `[head, read_only)` is the
///   copy-on-access region, whose entries are never changed or reused in place.
/// - `reclaimed_until`: memory below it is dead (no pin can reach it) and its entry-start
///   bits are cleared, so the allocator may use addresses up to `reclaimed_until + capacity`.
///
/// An entry's header is trusted only where its entry-start bit is set: the allocator sets
/// the bit after writing the header, so a reserved entry whose header is not written yet,
/// and stale bytes from an earlier lap, are never read as headers.
pub struct Ring {
    region: Region,
    capacity: u64,
    page_size: u64,
    mutable_len: u64,
    max_payload_len: usize,
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    reclaimed_until: CachePadded<AtomicU64>,
    /// `[head, evicting_until)` is being evicted: frees and reuse there are refused, which
    /// gives the eviction callback its exclusive access without a per-entry atomic
    /// read-modify-write (see `evict_until` and `free`).
    evicting_until: CachePadded<AtomicU64>,
    /// Bumped by every free onto a list; pins record it (see `pins.rs`).
    free_epoch: CachePadded<AtomicU64>,
    pins: Pins,
    reclaim_lock: Mutex<()>,
    evicting: AtomicBool,
    /// One bit per 8 bytes of the region: set where an entry (or filler) starts in the
    /// current lap, so a reader never takes payload bytes for a header.
    starts: Box<[StdAtomicU64]>,
    free_lists: Option<FreeLists>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Counters {
    n_evicted: StdAtomicU64,
    evicted_bytes: StdAtomicU64,
    n_reused: StdAtomicU64,
    n_full: StdAtomicU64,
}

/// How far ahead of the tail (allocation) and of head (eviction) memory is prefetched.
const PREFETCH_AHEAD: u64 = 1024;

/// Eviction publishes `head` after this many entries (and at the end of a call).
const HEAD_STORE_INTERVAL: u32 = 64;

/// What an eviction callback decides for the entry it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictAction {
    /// The entry is dealt with (persisted, or not needed); `head` may pass it.
    Evicted,
    /// Not now: the entry stays ready, eviction stops before it, a later call retries it.
    Retry,
}

/// An entry handed to an eviction callback, which has it exclusively until it returns.
#[derive(Debug)]
pub struct EvictEntry<'a> {
    /// The entry's logical address.
    pub address: u64,
    /// Its payload, exactly as written.
    pub payload: &'a [u8],
}

/// Why an eviction stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictStop {
    /// It reached the requested address (or the tail).
    Reached,
    /// The callback asked to retry the entry at `head`.
    Retry,
    /// The entry at `head` is still being written (its allocation guard is alive).
    Allocated,
    /// Another thread is evicting; this call did nothing.
    Busy,
}

/// What an eviction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictReport {
    /// Entries handed to the callback and evicted.
    pub n_evicted: u64,
    /// Freed entries and fillers skipped.
    pub n_skipped: u64,
    /// `head` after the call.
    pub head: u64,
    /// Why it stopped.
    pub stop: EvictStop,
}

impl Ring {
    fn new(region: Region, capacity: usize, config: RingConfig) -> Ring {
        let mutable_len = ((capacity as f64 * config.mutable_fraction) as u64) & !(ENTRY_ALIGN as u64 - 1);
        let n_start_words = (capacity / ENTRY_ALIGN).div_ceil(64);
        Ring {
            region,
            capacity: capacity as u64,
            page_size: config.page_size as u64,
            mutable_len,
            max_payload_len: config.max_payload_len(),
            tail: CachePadded(AtomicU64::new(config.start_address)),
            head: CachePadded(AtomicU64::new(config.start_address)),
            reclaimed_until: CachePadded(AtomicU64::new(config.start_address)),
            evicting_until: CachePadded(AtomicU64::new(config.start_address)),
            free_epoch: CachePadded(AtomicU64::new(1)),
            pins: Pins::new(),
            reclaim_lock: Mutex::new(()),
            evicting: AtomicBool::new(false),
            // Zeroed by the allocator (fresh pages from the kernel for a large ring), not
            // word by word: a 256 MiB ring has a 4 MiB bitmap that an open need not touch.
            starts: bytemuck::zeroed_slice_box(n_start_words),
            free_lists: config.reuse_freed.then(|| FreeLists::new(config.page_size)),
            counters: Counters::default(),
        }
    }

    /// Bytes of memory the ring allocates from.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes per page.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// The largest payload one entry can hold: one page minus the entry header.
    pub fn max_payload_len(&self) -> usize {
        self.max_payload_len
    }

    /// The first address still in memory.
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::SeqCst)
    }

    /// Where the next entry goes.
    pub fn tail(&self) -> u64 {
        self.tail.load(Ordering::Acquire)
    }

    /// The start of the mutable region: `max(head, tail - mutable bytes)`.
    pub fn read_only(&self) -> u64 {
        let tail = self.tail();
        self.head().max(tail.saturating_sub(self.mutable_len))
    }

    /// Whether `address` is in memory but in the copy-on-access region: an update of the
    /// entry there must copy it to the tail instead of changing it in place.
    pub fn is_copy_on_access(&self, address: u64) -> bool {
        let head = self.head();
        address >= head && address < self.read_only()
    }

    /// Reserves an entry with a `len`-byte payload at the tail. The returned guard gives
    /// the payload bytes (their initial contents are unspecified: whatever the memory held)
    /// and the entry's address; dropping it publishes the entry as ready. Until then
    /// eviction waits for it.
    ///
    /// # Errors
    ///
    /// [`Error::ZeroLength`], [`Error::TooLarge`] (above [`max_payload_len`](Self::max_payload_len)),
    /// or [`Error::Full`] when the entry does not fit before the head: evict, then retry.
    pub fn alloc(&self, len: usize) -> Result<Allocation<'_>> {
        if len == 0 {
            return Err(Error::ZeroLength);
        }
        if len > self.max_payload_len {
            return Err(Error::TooLarge { requested: len, max: self.max_payload_len });
        }
        let mut size = entry_size(len);
        if let Some(lists) = &self.free_lists {
            let class = class_of(size);
            size = class_size(class);
            if !lists.is_empty()
                && let Some(allocation) = self.alloc_from_free_list(lists, class, len)
            {
                return Ok(allocation);
            }
        }
        self.alloc_at_tail(size as u64, len)
    }

    fn alloc_at_tail(&self, size: u64, len: usize) -> Result<Allocation<'_>> {
        debug_assert!(size <= self.page_size);
        loop {
            let tail = self.tail.load(Ordering::Acquire);
            let page_end = (tail & !(self.page_size - 1)) + self.page_size;
            let start = if tail + size <= page_end { tail } else { page_end };
            let end = start + size;
            if end > self.reclaimed_until.load(Ordering::Acquire) + self.capacity {
                if self.reclaim() {
                    continue;
                }
                let limit = self.reclaimed_until.load(Ordering::Acquire) + self.capacity;
                if end > limit {
                    self.counters.n_full.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(Error::Full { needed: end - tail, available: limit.saturating_sub(tail) });
                }
                continue;
            }
            if self.tail.compare_exchange_weak(tail, end, Ordering::AcqRel, Ordering::Relaxed).is_err() {
                continue;
            }
            // The entry-start bits of [tail, end) were cleared by reclaim (or never set), so
            // until each header is stored and its bit set, readers and the evictor see
            // "nothing here yet".
            if start != tail {
                let filler = EntryHeader { state: EntryState::Filler, size: (page_end - tail) as usize, len: 0 };
                self.region.header(tail).store(filler.encode(), Ordering::Release);
                self.mark_start(tail);
            }
            let header = EntryHeader { state: EntryState::Allocated, size: size as usize, len };
            self.region.header(start).store(header.encode(), Ordering::Release);
            self.mark_start(start);
            // The memory ahead was last touched a lap ago: start fetching it for the next
            // allocations now, so their writes do not stall on it.
            self.region.prefetch(end + PREFETCH_AHEAD, false);
            return Ok(Allocation { ring: self, address: start, len });
        }
    }

    /// Reuses a freed entry of `class` if one is safe to reuse: still in memory, in the
    /// mutable region, and freed before every live pin was taken.
    fn alloc_from_free_list(&self, lists: &FreeLists, class: usize, len: usize) -> Option<Allocation<'_>> {
        let guard = self.pin(); // keeps the listed entries' memory from being reclaimed
        let mut min_epoch = None;
        let entry = lists.pop(class, |entry: FreeEntry| {
            if entry.address < self.read_only() {
                return Some(false); // evicted, or now copy-on-access: never reused in place
            }
            let safe_epoch = *min_epoch.get_or_insert_with(|| self.pins.min_epoch());
            if entry.freed_at_epoch >= safe_epoch {
                return None; // a reader pinned before the free may still read it
            }
            Some(true)
        })?;
        let header_word = self.region.header(entry.address);
        let current = header_word.load(Ordering::Acquire);
        let header = EntryHeader::decode(current)?;
        if header.state != EntryState::FreeListed {
            return None; // skipped by eviction meanwhile
        }
        let reused = EntryHeader { state: EntryState::Allocated, size: header.size, len };
        if header_word.compare_exchange(current, reused.encode(), Ordering::SeqCst, Ordering::Relaxed).is_err() {
            return None;
        }
        fence(Ordering::SeqCst); // pairs with the evictor's: one of us sees the other
        if entry.address < self.evicting_until.load(Ordering::SeqCst) {
            // An eviction covers it: give it back rather than take it from under the evictor.
            let _ = header_word.compare_exchange(reused.encode(), current, Ordering::SeqCst, Ordering::Relaxed);
            return None;
        }
        if entry.address < self.read_only() {
            // It became copy-on-access while we took it: it must not change in place.
            let freed = EntryHeader { state: EntryState::Freed, ..header };
            header_word.store(freed.encode(), Ordering::Release);
            return None;
        }
        drop(guard);
        self.counters.n_reused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Allocation { ring: self, address: entry.address, len })
    }

    /// Pins: until the guard is dropped, memory at or above the current head is not reused,
    /// so entries read through it stay intact.
    pub fn pin(&self) -> Guard<'_> {
        let slot = self.pins.pin(&self.head, &self.free_epoch);
        Guard { ring: self, slot }
    }

    /// Frees the ready entry at `address`: with reuse on and the entry in the mutable region
    /// it goes to its class's free list (reused once no earlier reader can see it);
    /// otherwise it becomes a tombstone that eviction skips.
    ///
    /// # Errors
    ///
    /// [`Error::Evicted`], [`Error::InvalidAddress`], or [`Error::WrongState`] if the entry
    /// is not ready (being written, being evicted, already freed).
    pub fn free(&self, address: u64) -> Result<()> {
        let guard = self.pin();
        let header_word = guard.entry_header_word(address)?;
        loop {
            let current = header_word.load(Ordering::Acquire);
            let header = EntryHeader::decode(current).ok_or(Error::InvalidAddress { address })?;
            if header.state != EntryState::Ready {
                return Err(Error::WrongState { address, state: header.state.name() });
            }
            let to_list = self.free_lists.is_some() && address >= self.read_only();
            let freed = header.with_state(if to_list { EntryState::FreeListed } else { EntryState::Freed }).encode();
            if header_word.compare_exchange(current, freed, Ordering::SeqCst, Ordering::Acquire).is_err() {
                continue;
            }
            // Pairs with the evictor's fence: either it sees this free and skips the entry, or
            // this sees its claim and backs out (the entry may already be in its callback).
            fence(Ordering::SeqCst);
            if address < self.evicting_until.load(Ordering::SeqCst) {
                let _ = header_word.compare_exchange(freed, current, Ordering::SeqCst, Ordering::Relaxed);
                return Err(Error::WrongState { address, state: EntryState::Evicting.name() });
            }
            if let Some(lists) = self.free_lists.as_ref().filter(|_| to_list) {
                let freed_at_epoch = self.free_epoch.fetch_add(1, Ordering::SeqCst);
                lists.push(class_of(header.size), FreeEntry { address, freed_at_epoch });
            }
            return Ok(());
        }
    }

    /// Evicts ready entries from the head, oldest first, up to (not including) entries that
    /// start at or after `until`: each is handed to `callback` with exclusive access, and
    /// `head` advances over it once the callback says [`EvictAction::Evicted`]. Freed
    /// entries and fillers are skipped. Stops early at an entry still being written, or one
    /// the callback asks to retry. No lock is held while the callback runs; a concurrent
    /// call returns [`EvictStop::Busy`] at once.
    pub fn evict_until(&self, until: u64, mut callback: impl FnMut(EvictEntry<'_>) -> EvictAction) -> EvictReport {
        if self.evicting.swap(true, Ordering::Acquire) {
            return EvictReport { n_evicted: 0, n_skipped: 0, head: self.head(), stop: EvictStop::Busy };
        }
        let until = until.min(self.tail());
        let mut address = self.head.load(Ordering::Relaxed); // only the evictor writes head
        // Claim [head, until) against frees and reuse, then look at the states: with the
        // fences, a free either happened before (we see it) or sees the claim and backs out.
        self.evicting_until.store(until, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let evicting_flag = EndEviction { ring: self };
        let mut report = EvictReport { n_evicted: 0, n_skipped: 0, head: address, stop: EvictStop::Reached };
        let mut evicted_bytes = 0u64;
        let mut n_since_head_store = 0u32;
        while address < until {
            if !self.is_start(address) {
                report.stop = EvictStop::Allocated; // reserved, header not yet written
                break;
            }
            let header_word = self.region.header(address);
            self.region.prefetch(address + PREFETCH_AHEAD, false);
            let current = header_word.load(Ordering::Acquire);
            let header = EntryHeader::decode(current).expect("a marked entry start has a valid header");
            match header.state {
                EntryState::Allocated => {
                    report.stop = EvictStop::Allocated;
                    break;
                }
                EntryState::Ready => {
                    // A plain store: frees and reuse stay out of the claimed range (a free
                    // racing this store backs out and finds the entry evicting).
                    header_word.store(header.with_state(EntryState::Evicting).encode(), Ordering::Release);
                    // The entry is published, exclusively ours, and at or above head, which
                    // only we move: its bytes stay put while the callback runs.
                    // SAFETY: see the line above; `len` comes from its own header.
                    let payload = unsafe { self.region.payload(address, header.len) };
                    let action = {
                        let restore = RestoreOnUnwind { word: header_word, ready: current };
                        let action = callback(EvictEntry { address, payload });
                        std::mem::forget(restore);
                        action
                    };
                    match action {
                        EvictAction::Evicted => {
                            header_word.store(header.with_state(EntryState::Evicted).encode(), Ordering::Release);
                            report.n_evicted += 1;
                            evicted_bytes += header.size as u64;
                        }
                        EvictAction::Retry => {
                            header_word.store(current, Ordering::Release);
                            report.stop = EvictStop::Retry;
                            break;
                        }
                    }
                }
                EntryState::FreeListed => {
                    let evicted = header.with_state(EntryState::Evicted).encode();
                    if header_word.compare_exchange(current, evicted, Ordering::AcqRel, Ordering::Acquire).is_err() {
                        continue; // reused meanwhile: look again
                    }
                    report.n_skipped += 1;
                }
                EntryState::Freed | EntryState::Filler | EntryState::Evicted => report.n_skipped += 1,
                EntryState::Evicting => unreachable!("only one evictor runs at a time"),
            }
            address += header.size as u64;
            n_since_head_store += 1;
            if n_since_head_store == HEAD_STORE_INTERVAL {
                self.head.store(address, Ordering::Release);
                n_since_head_store = 0;
            }
        }
        // Entries evicted but not yet passed by head stay readable; readers lose nothing by
        // seeing head move in steps. This last store is sequentially consistent so that any
        // thread's reclaim that reads it orders it before its pin scan (see pins.rs).
        self.head.store(address, Ordering::SeqCst);
        self.counters.n_evicted.fetch_add(report.n_evicted, std::sync::atomic::Ordering::Relaxed);
        self.counters.evicted_bytes.fetch_add(evicted_bytes, std::sync::atomic::Ordering::Relaxed);
        report.head = address;
        drop(evicting_flag);
        self.reclaim();
        report
    }

    /// Evicts everything published: [`evict_until`](Self::evict_until) the tail.
    pub fn evict_all(&self, callback: impl FnMut(EvictEntry<'_>) -> EvictAction) -> EvictReport {
        self.evict_until(u64::MAX, callback)
    }

    /// Makes memory below `head` reusable once no pin can reach it: clears its entry-start
    /// bits and moves `reclaimed_until`. Returns whether anything was reclaimed.
    fn reclaim(&self) -> bool {
        let _lock = self.reclaim_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let head = self.head.load(Ordering::SeqCst);
        let safe = head.min(self.pins.min_head());
        let from = self.reclaimed_until.load(Ordering::Relaxed);
        if safe <= from {
            return false;
        }
        // [from, safe) is below head (evicted: no allocation guard, no evictor) and below
        // every pin's head (no reader); allocators do not use it until the store below
        // publishes it.
        self.clear_starts(from, safe);
        self.reclaimed_until.store(safe, Ordering::Release);
        true
    }

    fn start_bit(&self, address: u64) -> (usize, u64) {
        let bit = ((address & (self.capacity - 1)) / ENTRY_ALIGN as u64) as usize;
        (bit / 64, 1u64 << (bit % 64))
    }

    fn mark_start(&self, address: u64) {
        let (word, mask) = self.start_bit(address);
        self.starts[word].fetch_or(mask, std::sync::atomic::Ordering::Release);
    }

    fn is_start(&self, address: u64) -> bool {
        let (word, mask) = self.start_bit(address);
        self.starts[word].load(std::sync::atomic::Ordering::Acquire) & mask != 0
    }

    fn clear_starts(&self, from: u64, until: u64) {
        let mut address = from;
        while address < until {
            let (word, mask) = self.start_bit(address);
            let first_bit = mask.trailing_zeros() as u64;
            let n_bits = ((until - address) / ENTRY_ALIGN as u64).min(64 - first_bit);
            let clear = if n_bits == 64 { u64::MAX } else { ((1u64 << n_bits) - 1) << first_bit };
            self.starts[word].fetch_and(!clear, std::sync::atomic::Ordering::Relaxed);
            address += n_bits * ENTRY_ALIGN as u64;
        }
    }

    /// Counts and bytes per entry state over `[head, tail)`, and the ring's counters. Walks
    /// the in-memory entries: meant for monitoring, not for hot paths.
    pub fn metrics(&self) -> RingMetrics {
        let _guard = self.pin();
        let head = self.head();
        let tail = self.tail();
        let mut states = StateMetrics::default();
        let mut address = head;
        while address < tail {
            let header = match self.is_start(address) {
                true => EntryHeader::decode(self.region.header(address).load(Ordering::Acquire)),
                false => None,
            };
            let Some(header) = header else {
                states.in_progress_bytes += tail - address; // reserved, header not yet written
                break;
            };
            states.add(header.state, header.size as u64);
            address += header.size as u64;
        }
        RingMetrics {
            capacity: self.capacity,
            page_size: self.page_size,
            head,
            read_only: self.read_only(),
            evicting_until: self.evicting_until.load(Ordering::SeqCst).max(head),
            tail,
            reclaimed_until: self.reclaimed_until.load(Ordering::Acquire),
            states,
            n_evicted_total: self.counters.n_evicted.load(std::sync::atomic::Ordering::Relaxed),
            evicted_bytes_total: self.counters.evicted_bytes.load(std::sync::atomic::Ordering::Relaxed),
            n_reused_total: self.counters.n_reused.load(std::sync::atomic::Ordering::Relaxed),
            n_full_total: self.counters.n_full.load(std::sync::atomic::Ordering::Relaxed),
            n_free_listed: self.free_lists.as_ref().map_or(0, FreeLists::len),
            n_pinned: self.pins.n_pinned(),
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity)
            .field("page_size", &self.page_size)
            .field("head", &self.head())
            .field("read_only", &self.read_only())
            .field("tail", &self.tail())
            .finish_non_exhaustive()
    }
}

/// Ends an eviction, also when its callback panics: drops the claim on the range not
/// evicted and lets the next evictor in.
struct EndEviction<'a> {
    ring: &'a Ring,
}

impl Drop for EndEviction<'_> {
    fn drop(&mut self) {
        let head = self.ring.head.load(Ordering::Relaxed);
        self.ring.evicting_until.store(head, Ordering::SeqCst);
        self.ring.evicting.store(false, Ordering::Release);
    }
}

/// Puts an entry back to ready if its eviction callback panics.
struct RestoreOnUnwind<'a> {
    word: &'a StdAtomicU64,
    ready: u64,
}

impl Drop for RestoreOnUnwind<'_> {
    fn drop(&mut self) {
        self.word.store(self.ready, std::sync::atomic::Ordering::Release);
    }
}

/// An entry reserved by [`Ring::alloc`]: its payload is the caller's to write until the
/// guard is dropped, which publishes the entry as ready.
pub struct Allocation<'a> {
    ring: &'a Ring,
    address: u64,
    len: usize,
}

impl Allocation<'_> {
    /// The entry's logical address (what [`Guard::read`], [`Ring::free`] and eviction use).
    pub fn address(&self) -> u64 {
        self.address
    }

    /// The payload length asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: allocations hold at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for Allocation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the entry is reserved for this guard (state Allocated): nobody else writes
        // it, eviction waits for it, and reclaim cannot reach it (it is at or above head).
        unsafe { self.ring.region.payload(self.address, self.len) }
    }
}

impl std::ops::DerefMut for Allocation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes this the only access.
        unsafe { self.ring.region.payload_mut(self.address, self.len) }
    }
}

impl Drop for Allocation<'_> {
    fn drop(&mut self) {
        let word = self.ring.region.header(self.address);
        let header = EntryHeader::decode(word.load(std::sync::atomic::Ordering::Relaxed));
        let header = header.expect("an allocated entry has a valid header");
        assert_eq!(header.state, EntryState::Allocated, "only the allocation changes an allocated entry");
        word.store(header.with_state(EntryState::Ready).encode(), std::sync::atomic::Ordering::Release);
    }
}

impl std::fmt::Debug for Allocation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocation").field("address", &self.address).field("len", &self.len).finish()
    }
}

/// A reader's pin (see [`Ring::pin`]): entries read through it stay intact until it drops.
pub struct Guard<'a> {
    ring: &'a Ring,
    slot: usize,
}

impl<'a> Guard<'a> {
    /// The header word of the entry starting at `address`, after checking that one does.
    fn entry_header_word(&self, address: u64) -> Result<&'a StdAtomicU64> {
        let head = self.ring.head();
        if address < head {
            return Err(Error::Evicted { address, head });
        }
        if address >= self.ring.tail() || !address.is_multiple_of(ENTRY_ALIGN as u64) || !self.ring.is_start(address) {
            return Err(Error::InvalidAddress { address });
        }
        Ok(self.ring.region.header(address))
    }

    /// The payload of the published entry at `address`.
    ///
    /// # Errors
    ///
    /// [`Error::Evicted`] below head, [`Error::InvalidAddress`] for an address that is not
    /// an entry start in `[head, tail)`, [`Error::WrongState`] for an entry still being
    /// written or already freed.
    pub fn read(&self, address: u64) -> Result<&[u8]> {
        let header = EntryHeader::decode(self.entry_header_word(address)?.load(Ordering::Acquire))
            .ok_or(Error::InvalidAddress { address })?;
        match header.state {
            // Published: nobody writes it again while this pin lives (reuse waits for it).
            EntryState::Ready | EntryState::Evicting | EntryState::Evicted => {
                // SAFETY: published, so no writer; at or above head when checked while this
                // pin was held, so reclaim cannot reach it and reuse waits for the pin.
                Ok(unsafe { self.ring.region.payload(address, header.len) })
            }
            EntryState::Filler => Err(Error::InvalidAddress { address }),
            state => Err(Error::WrongState { address, state: state.name() }),
        }
    }

    /// The raw bytes of `[from, until)`, headers included, for writing a stretch of the ring
    /// to disk in one call: one slice, or two if the range wraps around the region's end.
    /// `from` must be an entry start at or above head, `until` an entry boundary at or below
    /// tail, and every entry between must be published (ready, evicting, evicted, freed or a
    /// filler).
    ///
    /// # Errors
    ///
    /// [`Error::Evicted`], [`Error::InvalidAddress`] for bad bounds, [`Error::WrongState`]
    /// for an entry in the range that is still being written (or sits on a free list, whose
    /// bytes may change).
    pub fn raw_range(&self, from: u64, until: u64) -> Result<RawRange<'_>> {
        if until < from || until > self.ring.tail() {
            return Err(Error::InvalidAddress { address: until });
        }
        if from == until {
            return Ok(RawRange { first: &[], second: &[] });
        }
        self.entry_header_word(from)?;
        let mut address = from;
        while address < until {
            let header = match self.ring.is_start(address) {
                true => EntryHeader::decode(self.ring.region.header(address).load(Ordering::Acquire)),
                false => None,
            };
            let header = header.ok_or(Error::WrongState { address, state: "being allocated" })?;
            match header.state {
                EntryState::Allocated | EntryState::FreeListed => {
                    return Err(Error::WrongState { address, state: header.state.name() });
                }
                _ => address += header.size as u64,
            }
        }
        if address != until {
            return Err(Error::InvalidAddress { address: until });
        }
        // SAFETY: every entry in the range is published and none is on a free list (checked
        // above), so nobody writes these bytes; this pin keeps reclaim below `from`.
        let (first, second) = unsafe { self.ring.region.bytes(from, until) };
        Ok(RawRange { first, second })
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.ring.pins.unpin(self.slot);
    }
}

impl std::fmt::Debug for Guard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("slot", &self.slot).finish()
    }
}

/// The bytes of a range of the ring, split where it wraps around the end of the memory.
#[derive(Clone, Copy, Debug)]
pub struct RawRange<'a> {
    /// From the range's start up to its end or the end of the region.
    pub first: &'a [u8],
    /// The rest, from the start of the region (empty unless the range wraps).
    pub second: &'a [u8],
}

impl RawRange<'_> {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.first.len() + self.second.len()
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
