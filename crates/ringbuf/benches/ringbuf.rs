//! The ring's main job, side by side with Bf-Tree's circular buffer in the same run:
//! allocate entries of 64 to 256 bytes, write them, publish them, and evict in FIFO order
//! when the buffer is full; on one thread, and on two threads allocating at once.
//!
//! `cargo bench -p talus-ringbuf --bench ringbuf`. Both buffers get 16 MiB; on "full" each
//! evicts about half of it (Talus by address, Bf-Tree by the equivalent entry count).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bf_tree::circular_buffer::CircularBuffer;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use talus_datapool::Memory;
use talus_ringbuf::{EvictAction, EvictStop, Ring, RingBuffer, RingConfig};

const CAPACITY: usize = 16 << 20;
const ENTRIES_PER_THREAD: u64 = 200_000;
/// Average entry including an 8-byte header, for Bf-Tree's count-based eviction.
const AVERAGE_ENTRY: usize = 160 + 8;

fn entry_len(idx: u64) -> usize {
    64 + (idx.wrapping_mul(37) % 193) as usize
}

fn talus_ring() -> RingBuffer<Memory> {
    let pool = Memory::create(CAPACITY).expect("memory");
    RingBuffer::new(pool, RingConfig::new().page_size(64 << 10)).expect("ring")
}

fn talus_worker(ring: &Ring, n_entries: u64, seed: u64) {
    for idx in 0..n_entries {
        let len = entry_len(idx ^ seed);
        let mut entry = loop {
            match ring.alloc(len) {
                Ok(entry) => break entry,
                Err(_) => {
                    let until = ring.head() + CAPACITY as u64 / 2;
                    if ring
                        .evict_until(until, |entry| {
                            black_box(entry.payload);
                            EvictAction::Evicted
                        })
                        .stop
                        == EvictStop::Busy
                    {
                        std::thread::yield_now();
                    }
                }
            }
        };
        entry.fill(idx as u8);
    }
}

/// Bf-Tree's buffer, shareable between threads as Bf-Tree itself shares it.
struct SharedBfTree(CircularBuffer);

// SAFETY: Bf-Tree's `CircularBuffer` is built for concurrent use through `&self` (its
// mutable state is atomics or guarded by its internal mutex) and Bf-Tree's own tree and
// tests share one between threads the same way; it only lacks the marker traits.
unsafe impl Sync for SharedBfTree {}
// SAFETY: as for `Sync`.
unsafe impl Send for SharedBfTree {}

fn bf_tree_buffer() -> SharedBfTree {
    // capacity, copy-on-access share, min/max record size, leaf page size, max fence length,
    // no preallocated memory, cache-only mode (free lists sized for records, not leaves).
    SharedBfTree(CircularBuffer::new(CAPACITY, 0.1, 2, 256, 4096, 32, None, true))
}

fn bf_tree_worker(buffer: &SharedBfTree, n_entries: u64, seed: u64) {
    let buffer = &buffer.0;
    for idx in 0..n_entries {
        let len = entry_len(idx ^ seed);
        let entry = loop {
            match buffer.alloc(len) {
                Ok(entry) => break entry,
                Err(_) => {
                    let _ = buffer.evict_n(CAPACITY / 2 / AVERAGE_ENTRY, |handle| {
                        black_box(handle.as_ptr());
                        Ok(handle)
                    });
                }
            }
        };
        // SAFETY: `alloc(len)` returned a pointer to at least `len` writable bytes that are
        // exclusively ours until `entry` is dropped (Bf-Tree's documented contract).
        unsafe { std::ptr::write_bytes(entry.as_ptr(), idx as u8, len) };
        drop(entry);
    }
}

fn drain_bf_tree(buffer: &SharedBfTree) {
    // Bf-Tree asserts on drop that every entry was deallocated or evicted.
    buffer.0.drain(Ok);
}

fn run_threads(n_threads: u64, work: impl Fn(u64) + Sync) -> Duration {
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..n_threads {
            let work = &work;
            scope.spawn(move || work(thread));
        }
    });
    started.elapsed()
}

fn ringbuf(c: &mut Criterion) {
    let mut group = c.benchmark_group("alloc_write_publish_evict");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for n_threads in [1u64, 2] {
        group.throughput(Throughput::Elements(ENTRIES_PER_THREAD * n_threads));
        group.bench_function(format!("talus_{n_threads}_threads"), |b| {
            let ring = talus_ring();
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|iter| run_threads(n_threads, |thread| talus_worker(&ring, ENTRIES_PER_THREAD, iter ^ thread)))
                    .sum()
            })
        });
        group.bench_function(format!("bf_tree_{n_threads}_threads"), |b| {
            let buffer = bf_tree_buffer();
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|iter| {
                        run_threads(n_threads, |thread| bf_tree_worker(&buffer, ENTRIES_PER_THREAD, iter ^ thread))
                    })
                    .sum()
            });
            drain_bf_tree(&buffer);
        });
    }
    group.finish();
}

criterion_group!(benches, ringbuf);
criterion_main!(benches);
