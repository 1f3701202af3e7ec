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
fn the_ring_zeroes_a_pool_that_held_bytes() {
    let mut pool = HeapPool::new(1 << 12).expect("heap");
    pool.as_mut_slice().fill(0xff);
    let ring = RingBuffer::new(pool, RingConfig::new().page_size(1024)).expect("ring");
    let entry = ring.alloc(100).expect("alloc");
    assert!(entry.iter().all(|&b| b == 0));
}
