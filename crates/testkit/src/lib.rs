//! Test support shared by the Talus crates (a dev-dependency only, at the bottom of the
//! stack): seeds that print themselves, a small deterministic generator, and byte patterns
//! that check themselves.
//!
//! Randomised tests take their seed from [`test_seed`]: `TALUS_TEST_SEED` when set, else a
//! fresh one; it is printed either way, so a failing run's output names the seed that
//! reproduces it.

/// The seed for a randomised test: `TALUS_TEST_SEED` if set, else fresh. Printed, so that a
/// failing run (whose output the test harness shows) names the seed that reproduces it.
///
/// # Panics
///
/// If `TALUS_TEST_SEED` is set to something other than a `u64`.
pub fn test_seed(test_name: &str) -> u64 {
    let seed = match std::env::var("TALUS_TEST_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("TALUS_TEST_SEED={text:?} is not a u64")),
        Err(_) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            SplitMix64::new(now.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64()
        }
    };
    eprintln!("{test_name}: seed {seed} (rerun with TALUS_TEST_SEED={seed})");
    seed
}

/// A tiny deterministic generator (SplitMix64): enough for sizes, patterns and timings.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (the tiny modulo bias does not matter for tests).
    ///
    /// # Panics
    ///
    /// If `bound` is zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below((high - low + 1) as u64) as usize
    }
}

/// `len` bytes that differ at every position and with every seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0; len];
    fill_pattern(&mut out, seed);
    out
}

/// Fills `bytes` with the pattern of `tag`.
pub fn fill_pattern(bytes: &mut [u8], tag: u64) {
    let mut rng = SplitMix64::new(tag);
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes()[..chunk.len()]);
    }
}

/// Whether `bytes` hold the pattern of `tag` (as [`fill_pattern`] wrote it).
pub fn has_pattern(bytes: &[u8], tag: u64) -> bool {
    let mut rng = SplitMix64::new(tag);
    bytes.chunks(8).all(|chunk| chunk == &rng.next_u64().to_le_bytes()[..chunk.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_check_themselves() {
        let bytes = pattern(1001, 7);
        assert!(has_pattern(&bytes, 7));
        assert!(!has_pattern(&bytes, 8));
        let mut torn = bytes.clone();
        torn[500] ^= 1;
        assert!(!has_pattern(&torn, 7));
        assert_ne!(pattern(64, 1), pattern(64, 2));
    }
}
