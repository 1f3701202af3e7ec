//! loom model checks of the pin protocol (acceptance criterion 9): every interleaving of a
//! reader with a reclaimer, and of a reader with a free-then-reuse, within loom's bounds.
//! Memory is modelled by loom cells, so loom reports any read that races with a write.
//!
//! Run by `cargo xtask ci` as
//! `RUSTFLAGS="--cfg loom" cargo test -p talus-ringbuf --lib --release`.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::pins::Pins;

const ORIGINAL: u64 = 0xabcd;

struct Shared {
    pins: Pins,
    head: AtomicU64,
    free_epoch: AtomicU64,
    /// The payload of the one entry at address 0 (8 bytes long).
    payload: UnsafeCell<u64>,
    /// Its state: 2 = ready, 6 = free-listed, 1 = reallocated.
    state: AtomicU8,
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        pins: Pins::new(),
        head: AtomicU64::new(0),
        free_epoch: AtomicU64::new(1),
        payload: UnsafeCell::new(ORIGINAL),
        state: AtomicU8::new(2),
    })
}

/// A reader's side: pin, check address 0 against head, read it, unpin.
fn pinned_read(ring: &Shared) {
    let slot = ring.pins.pin(&ring.head, &ring.free_epoch);
    if ring.head.load(Ordering::SeqCst) == 0 {
        // SAFETY: loom's cell: the model checks this access for races.
        let value = ring.payload.with(|p| unsafe { *p });
        assert_eq!(value, ORIGINAL, "read reclaimed memory");
    }
    ring.pins.unpin(slot);
}

/// The evictor's side: head passes address 0, then reclaim recycles (here: zeroes) what is
/// below the smallest pinned head.
fn evict_and_reclaim(ring: &Shared) {
    ring.head.store(8, Ordering::SeqCst);
    let safe = ring.head.load(Ordering::SeqCst).min(ring.pins.min_head());
    if safe > 0 {
        // SAFETY: loom's cell: the model checks this access for races.
        ring.payload.with_mut(|p| unsafe { *p = 0 });
    }
}

/// A reader pins, checks the address against head, reads; meanwhile the evictor moves head
/// past the entry and reclaims (zeroes) what no pin protects. The reader either sees the
/// original bytes or learns that the entry was evicted, and never races the zeroing.
#[test]
fn reclaim_never_zeroes_memory_under_a_pin() {
    loom::model(|| {
        let ring = shared();
        let reader = {
            let ring = ring.clone();
            loom::thread::spawn(move || pinned_read(&ring))
        };
        evict_and_reclaim(&ring);
        reader.join().expect("reader");
    });
}

/// A reader pins and reads a ready entry; meanwhile another thread frees it onto a free list
/// and reuses it (overwrites it) only if every pin saw a later epoch. The reader never sees
/// its bytes change, and loom finds no race between its read and the reuse.
#[test]
fn reuse_never_overwrites_memory_under_an_earlier_pin() {
    loom::model(|| {
        let ring = shared();
        let reader = {
            let ring = ring.clone();
            loom::thread::spawn(move || {
                let slot = ring.pins.pin(&ring.head, &ring.free_epoch);
                if ring.state.load(Ordering::SeqCst) == 2 {
                    let first = ring.payload.with(|p| {
                        // SAFETY: loom's cell: the model checks this access for races.
                        unsafe { *p }
                    });
                    let second = ring.payload.with(|p| {
                        // SAFETY: as above.
                        unsafe { *p }
                    });
                    assert_eq!((first, second), (ORIGINAL, ORIGINAL), "bytes changed under a pin");
                }
                ring.pins.unpin(slot);
            })
        };
        // Free: ready -> free-listed, then take the free epoch.
        if ring.state.compare_exchange(2, 6, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let freed_at = ring.free_epoch.fetch_add(1, Ordering::SeqCst);
            // Reuse only once every live pin was taken after the free.
            if freed_at < ring.pins.min_epoch()
                && ring.state.compare_exchange(6, 1, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                // SAFETY: loom's cell: the model checks this access for races.
                ring.payload.with_mut(|p| unsafe { *p = 0x1111 });
            }
        }
        reader.join().expect("reader");
    });
}

/// Two readers and a reclaimer: pins in different slots are all honoured.
#[test]
fn every_pin_is_seen_by_reclaim() {
    loom::model(|| {
        let ring = shared();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let ring = ring.clone();
                loom::thread::spawn(move || pinned_read(&ring))
            })
            .collect();
        evict_and_reclaim(&ring);
        for reader in readers {
            reader.join().expect("reader");
        }
    });
}

/// The evictor claims `[head, until)` with a marker and a fence instead of a per-entry
/// compare-and-swap; a concurrent free either lands before (the evictor sees it and skips
/// the entry) or sees the claim and backs out. The callback's read never races a reuse.
#[test]
fn a_free_never_takes_an_entry_from_under_the_evictor() {
    const READY: u64 = 2;
    const EVICTING: u64 = 3;
    const FREE_LISTED: u64 = 6;
    loom::model(|| {
        let state = Arc::new(AtomicU64::new(READY));
        let evicting_until = Arc::new(AtomicU64::new(0));
        let payload = Arc::new(UnsafeCell::new(ORIGINAL));

        let freer = {
            let (state, evicting_until, payload) = (state.clone(), evicting_until.clone(), payload.clone());
            loom::thread::spawn(move || {
                if state.compare_exchange(READY, FREE_LISTED, Ordering::SeqCst, Ordering::Acquire).is_ok() {
                    loom::sync::atomic::fence(Ordering::SeqCst);
                    if evicting_until.load(Ordering::SeqCst) > 0 {
                        // Claimed by the evictor: back out.
                        let _ = state.compare_exchange(FREE_LISTED, READY, Ordering::SeqCst, Ordering::Relaxed);
                    } else {
                        // Freed: a reuse may now overwrite the payload.
                        // SAFETY: loom's cell: the model checks this access for races.
                        payload.with_mut(|p| unsafe { *p = 0x2222 });
                    }
                }
            })
        };

        evicting_until.store(8, Ordering::SeqCst);
        loom::sync::atomic::fence(Ordering::SeqCst);
        if state.load(Ordering::Acquire) == READY {
            state.store(EVICTING, Ordering::Release);
            // The callback reads the entry.
            // SAFETY: loom's cell: the model checks this access for races.
            let value = payload.with(|p| unsafe { *p });
            assert_eq!(value, ORIGINAL, "the entry changed under the eviction callback");
        }
        freer.join().expect("freer");
    });
}
