//! Integration tests of `talus-ringbuf`, through its public API.
//!
//! Randomised tests print their seed; rerun one with `TALUS_TEST_SEED=<seed>`.

mod basics;
mod eviction;
mod model;
mod pools;
mod stress;

use talus_ringbuf::{HeapPool, RingBuffer, RingConfig};
pub use talus_testkit::{SplitMix64, fill_pattern, has_pattern, test_seed};

/// A ring of `capacity` bytes in heap memory.
pub fn heap_ring(capacity: usize, config: RingConfig) -> RingBuffer<HeapPool> {
    RingBuffer::new(HeapPool::new(capacity).expect("heap pool"), config).expect("ring")
}
