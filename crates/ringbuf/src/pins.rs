//! Reader pins: how a reader keeps the memory it reads from being reclaimed or reused.
//!
//! Each pin occupies a slot holding two values: the `head` the reader saw when it pinned
//! (memory at or above it is not reclaimed while the pin lives), and the free epoch it saw
//! (entries freed at or after that epoch are not reused in place while the pin lives).
//!
//! The protocol, a store-then-load handshake on each side with a sequentially consistent
//! fence between (the classic Dekker pattern: one side must see the other):
//! - a reader claims a slot with the current `head` (fence), stores the current free epoch
//!   (fence), and checks `address >= head` on every read;
//! - reclaim runs after `head` moved, fences, scans the slots, and makes reusable only
//!   memory below the smallest head it found;
//! - reuse takes an entry freed (state changed, then epoch taken) at epoch `f` only when a
//!   scan after a fence finds every pinned slot's epoch above `f`.
//!
//! A reader whose claim a scan missed is guaranteed to see the `head` (or the freed state)
//! that the scan's caller published, so it never reads what is being recycled.
//! `src/loom_tests.rs` model-checks these handshakes.

use crate::sync::{AtomicU64, AtomicUsize, CachePadded, Ordering, fence, spin_hint};

/// How many pins may be held at once; pinning waits while all are taken.
#[cfg(not(loom))]
pub const MAX_PINS: usize = 128;
/// How many pins may be held at once (small under loom, to keep its state space small).
#[cfg(loom)]
pub const MAX_PINS: usize = 4;

const UNPINNED: u64 = u64::MAX;

#[derive(Debug, Default)]
struct Slot {
    /// `UNPINNED`, or the head seen at pin time.
    head: AtomicU64,
    /// The free epoch seen at pin time; 0 while it is being set (which blocks all reuse).
    epoch: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Pins {
    slots: Box<[CachePadded<Slot>]>,
    /// Slots at or above this index have never been used; scans stop there.
    high_water: AtomicUsize,
}

impl Pins {
    pub(crate) fn new() -> Self {
        let slots = (0..MAX_PINS)
            .map(|_| CachePadded(Slot { head: AtomicU64::new(UNPINNED), epoch: AtomicU64::new(0) }))
            .collect();
        Pins { slots, high_water: AtomicUsize::new(0) }
    }

    /// Pins: claims a slot with the current `head` and free `epoch`; returns the slot.
    pub(crate) fn pin(&self, head: &AtomicU64, epoch: &AtomicU64) -> usize {
        let mut idx = hint();
        loop {
            for _ in 0..MAX_PINS {
                let slot = &self.slots[idx];
                if slot.head.load(Ordering::Relaxed) == UNPINNED {
                    let seen_head = head.load(Ordering::SeqCst);
                    if slot.head.compare_exchange(UNPINNED, seen_head, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                        if self.high_water.load(Ordering::Relaxed) <= idx {
                            self.high_water.fetch_max(idx + 1, Ordering::SeqCst);
                        }
                        // The slot is claimed before the epoch and every later head check
                        // are read: with the fence in `scan_fence`, either a scan sees this
                        // slot or this reader sees the scanner's head and epoch.
                        fence(Ordering::SeqCst);
                        slot.epoch.store(epoch.load(Ordering::SeqCst), Ordering::SeqCst);
                        fence(Ordering::SeqCst);
                        set_hint(idx);
                        return idx;
                    }
                }
                idx = (idx + 1) % MAX_PINS;
            }
            // Every slot is taken: wait for a reader to let go.
            spin_hint();
        }
    }

    pub(crate) fn unpin(&self, idx: usize) {
        let slot = &self.slots[idx];
        slot.epoch.store(0, Ordering::Relaxed);
        slot.head.store(UNPINNED, Ordering::SeqCst);
    }

    /// The slots ever used, after a fence that pairs with the one in `pin` (so that a scan
    /// made after moving head or taking a free epoch sees every pin that could miss them).
    fn used(&self) -> &[CachePadded<Slot>] {
        fence(Ordering::SeqCst);
        &self.slots[..self.high_water.load(Ordering::SeqCst)]
    }

    /// The smallest head any live pin saw (`u64::MAX` without pins).
    pub(crate) fn min_head(&self) -> u64 {
        self.used().iter().map(|slot| slot.head.load(Ordering::SeqCst)).min().unwrap_or(UNPINNED)
    }

    /// The smallest free epoch any live pin saw (`u64::MAX` without pins).
    pub(crate) fn min_epoch(&self) -> u64 {
        self.used()
            .iter()
            .filter(|slot| slot.head.load(Ordering::SeqCst) != UNPINNED)
            .map(|slot| slot.epoch.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// How many pins are live (for metrics).
    #[cfg(not(loom))]
    pub(crate) fn n_pinned(&self) -> usize {
        self.used().iter().filter(|slot| slot.head.load(Ordering::Relaxed) != UNPINNED).count()
    }
}

#[cfg(not(loom))]
thread_local! {
    static HINT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

#[cfg(not(loom))]
static NEXT_HINT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Where this thread starts looking for a free slot: its last slot, so that each thread
/// tends to keep a slot (and its cache line) of its own.
#[cfg(not(loom))]
fn hint() -> usize {
    HINT.with(|hint| {
        if hint.get() == usize::MAX {
            hint.set(NEXT_HINT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % MAX_PINS);
        }
        hint.get()
    })
}

#[cfg(not(loom))]
fn set_hint(idx: usize) {
    HINT.with(|hint| hint.set(idx));
}

#[cfg(loom)]
fn hint() -> usize {
    0
}

#[cfg(loom)]
fn set_hint(_idx: usize) {}
