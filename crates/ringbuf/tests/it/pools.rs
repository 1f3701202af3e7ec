//! Acceptance criterion 10: the ring works over every datapool kind.

use talus_datapool::{Datapool, FileBackedMemory, Memory, MmapFile};
use talus_ringbuf::{EvictAction, HeapPool, RingBuffer, RingConfig};

use crate::{fill_pattern, has_pattern};

fn exercise<P: Datapool>(pool: P) {
    let ring = RingBuffer::new(pool, RingConfig::new().page_size(4096)).expect("ring");
    let mut evicted = 0u64;
    for round in 0..3000u64 {
        let mut entry = loop {
            match ring.alloc(100 + (round as usize % 300)) {
                Ok(entry) => break entry,
                Err(_) => {
                    ring.evict_until(ring.tail() - ring.capacity() / 2, |entry| {
                        assert!(has_pattern(
                            &entry.payload[8..],
                            u64::from_le_bytes(entry.payload[..8].try_into().expect("tag"))
                        ));
                        evicted += 1;
                        EvictAction::Evicted
                    });
                }
            }
        };
        entry[..8].copy_from_slice(&round.to_le_bytes());
        fill_pattern(&mut entry[8..], round);
        let address = entry.address();
        drop(entry);
        let guard = ring.pin();
        let payload = guard.read(address).expect("read");
        assert!(has_pattern(&payload[8..], round));
    }
    assert!(evicted > 0, "the ring wrapped");
}

#[test]
fn works_over_every_datapool_kind() {
    let dir = tempfile::tempdir().expect("temp dir");
    exercise(HeapPool::new(1 << 16).expect("heap"));
    exercise(Memory::create(1 << 16).expect("memory"));
    exercise(MmapFile::create(dir.path().join("mmap"), 1 << 16, 0).expect("mmap"));
    exercise(FileBackedMemory::create(dir.path().join("fbm"), 1 << 16, 0).expect("fbm"));
}

#[test]
fn stale_pool_bytes_never_look_like_entries() {
    let mut pool = HeapPool::new(1 << 12).expect("heap");
    // Bytes that would decode as a ready entry header everywhere.
    for word in pool.as_mut_slice().chunks_mut(8) {
        word.copy_from_slice(&(2u64 | (2 << 8) | (8 << 36)).to_le_bytes());
    }
    let ring = RingBuffer::new(pool, RingConfig::new().page_size(1024)).expect("ring");
    assert_eq!(ring.metrics().states, Default::default());
    assert_eq!(ring.evict_all(|_| panic!("nothing was allocated")).n_evicted, 0);
    let address = ring.alloc(100).expect("alloc").address();
    let guard = ring.pin();
    assert!(guard.read(address + 16).is_err(), "stale header bytes inside a payload are not an entry");
    assert_eq!(guard.read(address).expect("read").len(), 100);
}

#[test]
fn dropping_a_ring_with_live_allocations_and_pins_is_fine() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RingBuffer<HeapPool>>();
    assert_send_sync::<RingBuffer<Memory>>();
    assert_send_sync::<talus_ringbuf::Ring>();

    let ring = RingBuffer::new(HeapPool::new(1 << 12).expect("heap"), RingConfig::new().page_size(1024)).expect("ring");
    std::mem::forget(ring.alloc(100).expect("alloc")); // never published
    std::mem::forget(ring.pin()); // never released
    drop(ring); // frees the pool it owns, nothing else, and does not panic
}
