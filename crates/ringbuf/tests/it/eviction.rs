//! Acceptance criterion 6: eviction order, bytes, skipping, retries, and head discipline.

use talus_ringbuf::{EvictAction, EvictStop, RingConfig};

use crate::{fill_pattern, has_pattern, heap_ring};

#[test]
fn callback_sees_ready_entries_in_order_with_their_bytes_and_skips_freed_ones() {
    let ring = heap_ring(1 << 16, RingConfig::new().page_size(1024));
    let mut written = Vec::new();
    for idx in 0..200u64 {
        let mut entry = ring.alloc(1 + (idx as usize * 37) % 500).expect("alloc");
        fill_pattern(&mut entry, idx);
        written.push((entry.address(), idx, entry.len()));
    }
    let freed: Vec<u64> = written.iter().step_by(3).map(|&(address, _, _)| address).collect();
    for &address in &freed {
        ring.free(address).expect("free");
    }

    let mut seen = Vec::new();
    let report = ring.evict_all(|entry| {
        assert!(ring.head() <= entry.address, "head never passes an entry being evicted");
        seen.push((entry.address, entry.payload.to_vec()));
        EvictAction::Evicted
    });
    let expected: Vec<_> = written.iter().filter(|(address, _, _)| !freed.contains(address)).collect();
    assert_eq!(seen.len(), expected.len());
    for ((address, payload), &&(expected_address, tag, len)) in seen.iter().zip(&expected) {
        assert_eq!(*address, expected_address, "address order");
        assert_eq!(payload.len(), len);
        assert!(has_pattern(payload, tag), "exact bytes of entry {address}");
    }
    assert_eq!(report.n_evicted, expected.len() as u64);
    assert!(report.n_skipped >= freed.len() as u64, "freed entries (and fillers) skipped");
    assert_eq!((report.head, report.stop), (ring.tail(), EvictStop::Reached));
}

#[test]
fn a_retried_entry_comes_back_and_head_stops_before_it() {
    let ring = heap_ring(1 << 14, RingConfig::new().page_size(1024));
    let addresses: Vec<u64> = (0..10).map(|_| ring.alloc(40).expect("alloc").address()).collect();
    let stubborn = addresses[4];
    let report =
        ring.evict_all(|entry| if entry.address == stubborn { EvictAction::Retry } else { EvictAction::Evicted });
    assert_eq!((report.n_evicted, report.stop, report.head), (4, EvictStop::Retry, stubborn));
    assert_eq!(ring.head(), stubborn);
    assert_eq!(ring.pin().read(stubborn).expect("still readable").len(), 40);

    let mut seen = Vec::new();
    let report = ring.evict_all(|entry| {
        seen.push(entry.address);
        EvictAction::Evicted
    });
    assert_eq!(seen, addresses[4..]);
    assert_eq!((report.stop, report.head), (EvictStop::Reached, ring.tail()));
}

#[test]
fn eviction_waits_for_an_entry_still_being_written() {
    let ring = heap_ring(1 << 14, RingConfig::new().page_size(1024));
    drop(ring.alloc(10).expect("alloc"));
    let writing = ring.alloc(10).expect("alloc");
    drop(ring.alloc(10).expect("alloc"));
    let report = ring.evict_all(|_| EvictAction::Evicted);
    assert_eq!((report.n_evicted, report.stop, report.head), (1, EvictStop::Allocated, writing.address()));
    drop(writing);
    assert_eq!(ring.evict_all(|_| EvictAction::Evicted).n_evicted, 2);
}

#[test]
fn evicting_an_empty_ring_does_nothing() {
    let ring = heap_ring(1 << 12, RingConfig::new().page_size(1024));
    let report = ring.evict_all(|_| panic!("no entries"));
    assert_eq!((report.n_evicted, report.n_skipped, report.head, report.stop), (0, 0, 0, EvictStop::Reached));
    drop(ring.alloc(8).expect("alloc"));
    ring.evict_all(|_| EvictAction::Evicted);
    let report = ring.evict_all(|_| panic!("no entries left"));
    assert_eq!(report.n_evicted, 0);
}

#[test]
fn evict_until_stops_at_the_address() {
    let ring = heap_ring(1 << 14, RingConfig::new().page_size(1024));
    let addresses: Vec<u64> = (0..10).map(|_| ring.alloc(24).expect("alloc").address()).collect();
    let report = ring.evict_until(addresses[6], |_| EvictAction::Evicted);
    assert_eq!((report.n_evicted, report.head), (6, addresses[6]));
    assert!(ring.is_copy_on_access(addresses[6]) || ring.read_only() <= addresses[6]);
}

#[test]
fn a_concurrent_evictor_is_told_busy_and_the_callback_may_use_the_ring() {
    let ring = heap_ring(1 << 14, RingConfig::new().page_size(1024));
    for _ in 0..3 {
        drop(ring.alloc(24).expect("alloc"));
    }
    let report = ring.evict_all(|entry| {
        assert_eq!(ring.evict_all(|_| EvictAction::Evicted).stop, EvictStop::Busy);
        // No lock is held: the callback can allocate and read.
        drop(ring.alloc(8).expect("alloc from inside the callback"));
        assert_eq!(ring.pin().read(entry.address).expect("read").len(), 24);
        EvictAction::Evicted
    });
    assert!(report.n_evicted >= 3);
}

#[test]
fn a_panicking_callback_leaves_the_entry_ready() {
    let ring = heap_ring(1 << 14, RingConfig::new().page_size(1024));
    let address = ring.alloc(24).expect("alloc").address();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ring.evict_all(|_| panic!("callback failure"));
    }));
    assert!(outcome.is_err());
    assert_eq!(ring.head(), address);
    let report = ring.evict_all(|entry| {
        assert_eq!(entry.address, address);
        EvictAction::Evicted
    });
    assert_eq!(report.n_evicted, 1);
}

#[test]
fn raw_ranges_cover_published_entries_and_wrap() {
    let ring = heap_ring(4096, RingConfig::new().page_size(1024));
    // Go around once so the next range wraps the end of the memory.
    for _ in 0..3 {
        drop(ring.alloc(1016).expect("alloc"));
    }
    ring.evict_all(|_| EvictAction::Evicted);
    let from = ring.tail();
    let mut tags = Vec::new();
    for tag in 0..3u64 {
        let mut entry = ring.alloc(1016).expect("alloc");
        fill_pattern(&mut entry, tag);
        tags.push(entry.address());
    }
    let until = ring.tail();
    let guard = ring.pin();
    let range = guard.raw_range(from, until).expect("raw range");
    assert_eq!(range.len() as u64, until - from);
    assert!(!range.second.is_empty(), "this range wraps");
    let mut bytes = range.first.to_vec();
    bytes.extend_from_slice(range.second);
    for (idx, chunk) in bytes.chunks(1024).enumerate() {
        assert!(has_pattern(&chunk[8..], idx as u64), "entry {idx} inside the raw range");
    }
    let writing = ring.alloc(8);
    drop(guard);
    if let Ok(writing) = writing {
        let guard = ring.pin();
        assert!(guard.raw_range(from, ring.tail()).is_err(), "an entry being written is not raw-readable");
        drop(guard);
        drop(writing);
    }
    assert!(ring.pin().raw_range(from + 8, until).is_err(), "from must be an entry start");
}
