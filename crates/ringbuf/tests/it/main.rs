//! Integration tests of `talus-ringbuf`, through its public API.
//!
//! Randomised tests print their seed; rerun one with `TALUS_TEST_SEED=<seed>`.

mod basics;
mod eviction;
mod model;
mod pools;
mod stress;

use talus_ringbuf::{HeapPool, RingBuffer, RingConfig};

/// A ring of `capacity` bytes in heap memory.
pub fn heap_ring(capacity: usize, config: RingConfig) -> RingBuffer<HeapPool> {
    RingBuffer::new(HeapPool::new(capacity).expect("heap pool"), config).expect("ring")
}

/// The seed for a randomised test: `TALUS_TEST_SEED` if set, else fresh; printed either way.
pub fn test_seed(test_name: &str) -> u64 {
    let seed = match std::env::var("TALUS_TEST_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("TALUS_TEST_SEED={text:?} is not a u64")),
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            SplitMix64(now.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64()
        }
    };
    eprintln!("{test_name}: seed {seed} (rerun with TALUS_TEST_SEED={seed})");
    seed
}

/// A tiny deterministic generator.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + (self.next_u64() % (high - low + 1) as u64) as usize
    }
}

/// Fills `bytes` with a pattern derived from `tag`.
pub fn fill_pattern(bytes: &mut [u8], tag: u64) {
    for (idx, byte) in bytes.iter_mut().enumerate() {
        *byte = (tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (idx % 57)) as u8 ^ idx as u8;
    }
}

/// Whether `bytes` hold the pattern of `tag`.
pub fn has_pattern(bytes: &[u8], tag: u64) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(idx, &byte)| byte == (tag.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (idx % 57)) as u8 ^ idx as u8)
}
