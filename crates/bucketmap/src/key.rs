//! Keys and how they are hashed.

/// A fixed-size key: plain bytes compared for equality and hashed with a seeded, stable
/// 64-bit hash. Implemented for `u64` and `[u8; N]`.
pub trait Key: bytemuck::Pod + Eq + Send + Sync + 'static {}

impl Key for u64 {}
impl<const N: usize> Key for [u8; N] {}

/// How key bytes become a 64-bit hash. The hash of a key must never change for a given
/// seed: placement on disk depends on it.
pub trait KeyHasher: Send + Sync + 'static {
    /// The hash of `key` (the key's bytes, little-endian for integers) under `seed`.
    fn hash(&self, key: &[u8], seed: u64) -> u64;
}

/// The default hasher: xxh3 (64-bit) with the map's random, persisted seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Xxh3Hasher;

impl KeyHasher for Xxh3Hasher {
    fn hash(&self, key: &[u8], seed: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(key, seed)
    }
}
