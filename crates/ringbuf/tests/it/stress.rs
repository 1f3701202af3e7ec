//! Acceptance criterion 7: every core allocates, writes self-checking payloads, reads under
//! guards, frees and evicts at once; no reader ever sees torn bytes or bytes reused under a
//! live guard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use talus_ringbuf::{Error, EvictAction, RingConfig};

use crate::{SplitMix64, fill_pattern, has_pattern, heap_ring, test_seed};

/// Payload layout: address (8 bytes), allocation id (8 bytes), then the id's pattern.
fn check(bytes: &[u8], address: u64) -> Result<u64, String> {
    let stored_address = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let id = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if stored_address != address {
        return Err(format!("entry {address} holds the address {stored_address}"));
    }
    if !has_pattern(&bytes[16..], id) {
        return Err(format!("entry {address} (id {id}) is torn"));
    }
    Ok(id)
}

#[test]
fn concurrent_operations_never_tear_or_reuse_bytes_under_a_guard() {
    let seed = test_seed("concurrent_operations_never_tear_or_reuse_bytes_under_a_guard");
    let total_ops: u64 = std::env::var("TALUS_STRESS_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let n_workers = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let ops_per_worker = total_ops.div_ceil(n_workers as u64);

    let ring = heap_ring(1 << 20, RingConfig::new().page_size(4096).mutable_fraction(0.5).reuse_freed(true));
    let recent: Vec<AtomicU64> = (0..1024).map(|_| AtomicU64::new(u64::MAX)).collect();
    let next_id = AtomicU64::new(1);
    let done = AtomicBool::new(false);
    let n_reads_checked = AtomicU64::new(0);
    let n_evicted = AtomicU64::new(0);

    std::thread::scope(|scope| {
        let evictor = scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let until = ring.tail().saturating_sub(ring.capacity() / 2);
                ring.evict_until(until, |entry| {
                    if let Err(problem) = check(entry.payload, entry.address) {
                        panic!("evicted: {problem}");
                    }
                    n_evicted.fetch_add(1, Ordering::Relaxed);
                    EvictAction::Evicted
                });
                std::thread::yield_now();
            }
        });

        let workers: Vec<_> = (0..n_workers)
            .map(|worker| {
                let (ring, recent, next_id, n_reads_checked) = (&ring, &recent, &next_id, &n_reads_checked);
                scope.spawn(move || {
                    let mut rng = SplitMix64::new(seed ^ (worker as u64).wrapping_mul(0x1234_5678_9abc_def1));
                    for _ in 0..ops_per_worker {
                        match rng.next_u64() % 10 {
                            0..=5 => {
                                let len = rng.between(16, 512);
                                let mut entry = match ring.alloc(len) {
                                    Ok(entry) => entry,
                                    Err(Error::Full { .. }) => {
                                        std::thread::yield_now();
                                        continue;
                                    }
                                    Err(other) => panic!("alloc: {other}"),
                                };
                                let id = next_id.fetch_add(1, Ordering::Relaxed);
                                let address = entry.address();
                                entry[..8].copy_from_slice(&address.to_le_bytes());
                                entry[8..16].copy_from_slice(&id.to_le_bytes());
                                fill_pattern(&mut entry[16..], id);
                                drop(entry);
                                recent[rng.between(0, recent.len() - 1)].store(address, Ordering::Relaxed);
                            }
                            6..=8 => {
                                let guard = ring.pin();
                                let mut held = Vec::new();
                                for _ in 0..4 {
                                    let address = recent[rng.between(0, recent.len() - 1)].load(Ordering::Relaxed);
                                    if let Ok(bytes) = guard.read(address) {
                                        let id =
                                            check(bytes, address).unwrap_or_else(|problem| panic!("read: {problem}"));
                                        held.push((address, bytes, id));
                                    }
                                }
                                // Give eviction, reclaim and reuse a chance to run under us.
                                for _ in 0..rng.between(0, 3) {
                                    std::thread::yield_now();
                                }
                                for (address, bytes, id) in held {
                                    let again =
                                        check(bytes, address).unwrap_or_else(|problem| panic!("held: {problem}"));
                                    assert_eq!(again, id, "entry {address} was reused under a live guard");
                                    n_reads_checked.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => {
                                let address = recent[rng.between(0, recent.len() - 1)].load(Ordering::Relaxed);
                                let _ = ring.free(address); // evicted, freed or being written: fine
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker");
        }
        done.store(true, Ordering::Relaxed);
        evictor.join().expect("evictor");
    });

    let metrics = ring.metrics();
    eprintln!(
        "stress: {n_workers} workers, {} ops, {} held reads re-checked, {} evicted, {} reused, {} full",
        ops_per_worker * n_workers as u64,
        n_reads_checked.load(Ordering::Relaxed),
        n_evicted.load(Ordering::Relaxed),
        metrics.n_reused_total,
        metrics.n_full_total
    );
    assert!(
        n_evicted.load(Ordering::Relaxed) > 0 && metrics.n_reused_total > 0,
        "the test exercised eviction and reuse"
    );
    assert!(n_reads_checked.load(Ordering::Relaxed) > 0);
}
