//! Acceptance criteria 1 to 5: capacity arithmetic, page ends, size limits, the
//! copy-on-access boundary and free lists.

use talus_ringbuf::{Error, EvictAction, EvictStop, RingConfig};

use crate::{SplitMix64, heap_ring, test_seed};

fn evict_everything(ring: &talus_ringbuf::Ring) -> u64 {
    let report = ring.evict_all(|_| EvictAction::Evicted);
    assert_eq!(report.stop, EvictStop::Reached);
    report.n_evicted
}

#[test]
fn capacity_arithmetic_one_page() {
    let ring = heap_ring(8192, RingConfig::new().page_size(8192));
    for idx in 0..3u64 {
        let entry = ring.alloc(2048).expect("fits");
        assert_eq!(entry.address(), idx * 2056);
    }
    match ring.alloc(2048) {
        Err(Error::Full { needed, available }) => assert_eq!((needed, available), (8192 + 2056 - 6168, 8192 - 6168)),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(evict_everything(&ring), 3);
    let entry = ring.alloc(2048).expect("fits after eviction");
    assert_eq!(entry.address(), 8192, "on the next page, after a filler");
}

#[test]
fn page_ends_get_a_filler() {
    let ring = heap_ring(2048, RingConfig::new().page_size(2048));
    for _ in 0..7 {
        drop(ring.alloc(256).expect("fits"));
    }
    assert!(matches!(ring.alloc(400), Err(Error::Full { .. })));
    assert_eq!(evict_everything(&ring), 7);
    let entry = ring.alloc(400).expect("fits after eviction");
    assert_eq!(entry.address(), 2048);
    drop(entry);
    let metrics = ring.metrics();
    assert_eq!((metrics.states.n_fillers, metrics.states.filler_bytes), (1, 2048 - 7 * 264));
    assert_eq!(metrics.states.n_ready, 1);
}

#[test]
fn no_entry_straddles_a_page_for_random_sizes() {
    let seed = test_seed("no_entry_straddles_a_page_for_random_sizes");
    let mut rng = SplitMix64::new(seed);
    for page in [64usize, 256, 4096] {
        let ring = heap_ring(4 * page, RingConfig::new().page_size(page));
        for _ in 0..5000 {
            let len = rng.between(1, page - 8);
            let entry = match ring.alloc(len) {
                Ok(entry) => entry,
                Err(Error::Full { .. }) => {
                    evict_everything(&ring);
                    ring.alloc(len).expect("fits in an empty ring")
                }
                Err(other) => panic!("{other}"),
            };
            let size = 8 + len.div_ceil(8) as u64 * 8;
            let (first, last) = (entry.address(), entry.address() + size - 1);
            assert_eq!(first / page as u64, last / page as u64, "entry at {first} of {size} bytes straddles");
            assert_eq!(first % 8, 0);
        }
    }
}

#[test]
fn sizes_outside_the_limits_are_errors() {
    let ring = heap_ring(8192, RingConfig::new().page_size(4096));
    assert!(matches!(ring.alloc(0), Err(Error::ZeroLength)));
    assert_eq!(ring.max_payload_len(), 4088);
    for len in [4089, 4096, 1 << 30, usize::MAX] {
        match ring.alloc(len) {
            Err(error @ Error::TooLarge { requested, max }) => {
                assert_eq!((requested, max), (len, 4088));
                assert!(error.to_string().contains("4088"), "{error}");
            }
            other => panic!("alloc({len}): {other:?}"),
        }
    }
    ring.alloc(4088).expect("the largest entry fits");
}

#[test]
fn bad_configurations_are_errors() {
    use talus_ringbuf::{HeapPool, RingBuffer};
    let cases: [(usize, RingConfig); 6] = [
        (3 * 4096, RingConfig::new().page_size(4096)),
        (8192, RingConfig::new().page_size(3000)),
        (8192, RingConfig::new().page_size(32)),
        (8192, RingConfig::new().page_size(16384)),
        (8192, RingConfig::new().page_size(4096).mutable_fraction(1.5)),
        (8192, RingConfig::new().page_size(4096).mutable_fraction(f64::NAN)),
    ];
    for (capacity, config) in cases {
        let pool = HeapPool::new(capacity).expect("heap pool");
        assert!(matches!(RingBuffer::new(pool, config), Err(Error::InvalidConfig { .. })), "{capacity} {config:?}");
    }
}

#[test]
fn copy_on_access_boundary_follows_the_fraction() {
    let capacity = 64 << 10;
    for fraction in [0.0, 0.25, 0.5, 1.0] {
        let ring = heap_ring(capacity, RingConfig::new().page_size(4096).mutable_fraction(fraction));
        let mutable_len = (capacity as f64 * fraction) as u64;
        let mut addresses = Vec::new();
        for _ in 0..600 {
            match ring.alloc(100) {
                Ok(entry) => addresses.push(entry.address()),
                Err(Error::Full { .. }) => {
                    let until = ring.tail() - capacity as u64 / 2;
                    ring.evict_until(until, |_| EvictAction::Evicted);
                    continue;
                }
                Err(other) => panic!("{other}"),
            }
            let (head, read_only, tail) = (ring.head(), ring.read_only(), ring.tail());
            assert_eq!(read_only, head.max(tail.saturating_sub(mutable_len)), "fraction {fraction}");
            assert!(head <= read_only && read_only <= tail);
            for &address in addresses.iter().rev().take(50) {
                let expected = address >= head && address < read_only;
                assert_eq!(ring.is_copy_on_access(address), expected, "address {address}");
            }
        }
        assert!(ring.head() > 0, "the test went around the ring");
    }
}

#[test]
fn free_lists_reuse_in_the_mutable_region_only() {
    let ring = heap_ring(64 << 10, RingConfig::new().page_size(4096).mutable_fraction(0.5).reuse_freed(true));
    let first = ring.alloc(100).expect("alloc").address();
    ring.free(first).expect("free");
    let again = ring.alloc(100).expect("alloc");
    assert_eq!(again.address(), first, "reused, same address");
    drop(again);
    // Another class does not take it.
    ring.free(first).expect("free");
    let other_class = ring.alloc(1000).expect("alloc").address();
    assert_ne!(other_class, first);
    assert_eq!(ring.alloc(97).expect("same class").address(), first);

    // An entry in the copy-on-access region becomes a tombstone, never reused.
    let old = ring.alloc(100).expect("alloc").address();
    while !ring.is_copy_on_access(old) {
        drop(ring.alloc(2000).expect("alloc"));
    }
    ring.free(old).expect("free");
    for _ in 0..5 {
        assert_ne!(ring.alloc(100).expect("alloc").address(), old);
    }
    assert_eq!(ring.metrics().states.n_freed, 1);
}

#[test]
fn a_reader_pinned_before_a_free_blocks_reuse_until_it_lets_go() {
    let ring = heap_ring(64 << 10, RingConfig::new().page_size(4096).reuse_freed(true));
    let mut entry = ring.alloc(64).expect("alloc");
    entry.fill(7);
    let address = entry.address();
    drop(entry);

    let guard = ring.pin();
    let bytes = guard.read(address).expect("read");
    ring.free(address).expect("free");
    let meanwhile = ring.alloc(64).expect("alloc");
    assert_ne!(meanwhile.address(), address, "not reused while an earlier reader holds it");
    drop(meanwhile);
    assert!(bytes.iter().all(|&b| b == 7), "the reader's bytes are intact");
    drop(guard);

    let later_guard = ring.pin(); // pinned after the free: does not block reuse
    assert_eq!(ring.alloc(64).expect("alloc").address(), address);
    drop(later_guard);
}

#[test]
fn reads_check_addresses_and_states() {
    let ring = heap_ring(8192, RingConfig::new().page_size(4096));
    let mut entry = ring.alloc(16).expect("alloc");
    entry.copy_from_slice(b"0123456789abcdef");
    let address = entry.address();
    {
        let guard = ring.pin();
        assert!(matches!(guard.read(address), Err(Error::WrongState { state: "allocated", .. })));
    }
    drop(entry);
    let guard = ring.pin();
    assert_eq!(guard.read(address).expect("read"), b"0123456789abcdef");
    for bad in [address + 8, address + 3, ring.tail(), ring.tail() + 8, u64::MAX - 7] {
        assert!(matches!(guard.read(bad), Err(Error::InvalidAddress { .. })), "{bad}");
    }
    drop(guard);
    ring.free(address).expect("free");
    assert!(matches!(ring.free(address), Err(Error::WrongState { state: "freed", .. })));
    assert!(matches!(ring.pin().read(address), Err(Error::WrongState { .. })));
    ring.evict_all(|_| EvictAction::Evicted);
    assert!(matches!(ring.pin().read(address), Err(Error::Evicted { .. })));
}

#[test]
fn start_address_continues_a_log() {
    // Start mid-page, more than a lap in: the first page is partial and addresses never
    // repeat the earlier log's.
    let start = 3 * 8192 + 8192 + 4000;
    let ring = heap_ring(8192, RingConfig::new().page_size(4096).start_address(start));
    assert_eq!((ring.head(), ring.tail()), (start, start));
    let first = ring.alloc(64).expect("fits").address();
    assert_eq!(first, start);
    let second = ring.alloc(16).expect("fits exactly at the page end").address();
    assert_eq!(second, start + 72);
    let third = ring.alloc(64).expect("the next page").address();
    assert_eq!(third, start - 4000 + 4096, "after a filler to the page end");
    assert_eq!(ring.pin().read(first).expect("readable").len(), 64);
    let header = {
        let guard = ring.pin();
        let raw = guard.raw_range(start, third).expect("published");
        u64::from_le_bytes(raw.first[..8].try_into().expect("8 bytes"))
    };
    let decoded = talus_ringbuf::EntryHeader::decode(header).expect("a header");
    assert_eq!((decoded.state, decoded.size, decoded.len), (talus_ringbuf::EntryState::Ready, 72, 64));
    // A lap later the memory is reused at the same offsets.
    let mut n_allocated = 0;
    loop {
        match ring.alloc(1000) {
            Ok(_) => n_allocated += 1,
            Err(Error::Full { .. }) => break,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(n_allocated >= 6);
    let tail = ring.tail();
    assert!(tail > start + 4096);
    assert!(evict_everything(&ring) > 6);
    assert!(ring.alloc(1000).expect("fits after eviction").address() >= tail);
}

#[test]
fn start_address_must_be_aligned() {
    let pool = talus_ringbuf::HeapPool::new(8192).expect("heap pool");
    let config = RingConfig::new().page_size(4096).start_address(12);
    assert!(matches!(talus_ringbuf::RingBuffer::new(pool, config), Err(Error::InvalidConfig { .. })));
}
