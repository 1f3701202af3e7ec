//! The data checksum: blake3 over the header prefix followed by the data bytes.
//!
//! Large inputs are hashed on all cores (blake3's rayon support): hashing a 1 GiB pool on one
//! core would cost more than writing it to a fast disk.

use crate::header::{CHECKSUM_LEN, HEADER_LEN};

/// Below this many bytes an update is hashed on the calling thread; splitting smaller inputs
/// across threads costs more than it saves.
const PARALLEL_MIN_LEN: usize = 1 << 20;

/// Size of the zero buffer used to checksum a freshly created (all-zero) pool.
const ZERO_CHUNK_LEN: usize = 8 << 20;

/// An incremental data checksum, fed the data in order (possibly in pieces).
pub(crate) struct DataHasher {
    hasher: blake3::Hasher,
}

impl DataHasher {
    /// Starts a checksum over `prefix` (the header page with checksum fields zeroed).
    pub(crate) fn new(prefix: &[u8; HEADER_LEN]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(prefix);
        DataHasher { hasher }
    }

    /// Adds the next piece of data.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if bytes.len() >= PARALLEL_MIN_LEN {
            self.hasher.update_rayon(bytes);
        } else {
            self.hasher.update(bytes);
        }
    }

    /// The checksum of everything added so far.
    pub(crate) fn finalize(&self) -> [u8; CHECKSUM_LEN] {
        *self.hasher.finalize().as_bytes()
    }
}

/// The checksum of `prefix` followed by `data`.
pub(crate) fn data_checksum(prefix: &[u8; HEADER_LEN], data: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = DataHasher::new(prefix);
    hasher.update(data);
    hasher.finalize()
}

/// The checksum of `prefix` followed by `data_len` zero bytes, without allocating them all.
pub(crate) fn zeros_checksum(prefix: &[u8; HEADER_LEN], data_len: usize) -> [u8; CHECKSUM_LEN] {
    let zeros = vec![0u8; data_len.min(ZERO_CHUNK_LEN)];
    let mut hasher = DataHasher::new(prefix);
    let mut remaining = data_len;
    while remaining > 0 {
        let n = remaining.min(zeros.len());
        hasher.update(&zeros[..n]);
        remaining -= n;
    }
    hasher.finalize()
}
