//! The data checksum: blake3 over the header prefix followed by the data bytes.
//!
//! Large inputs are hashed on all cores (blake3's rayon support): hashing a 1 GiB pool on one
//! core would cost more than writing it to a fast disk.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use crate::error::Result;
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

/// The checksum of `prefix` followed by the first `data_len` bytes (a whole number of words)
/// of `words` (little-endian),
/// read with relaxed atomic loads into a buffer piece by piece: the words may be in use by
/// other threads.
pub(crate) fn words_checksum(prefix: &[u8; HEADER_LEN], words: &[AtomicU64], data_len: usize) -> [u8; CHECKSUM_LEN] {
    assert!(data_len.is_multiple_of(8) && data_len <= words.len() * 8, "whole words only");
    let mut hasher = DataHasher::new(prefix);
    let mut buffer = vec![0u8; data_len.min(PARALLEL_MIN_LEN)];
    let mut done = 0;
    while done < data_len {
        let n = (data_len - done).min(buffer.len());
        // Whole words: `data_len` is a multiple of 8 for a shared pool.
        for (chunk, word) in buffer[..n].chunks_exact_mut(8).zip(&words[done / 8..]) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        hasher.update(&buffer[..n]);
        done += n;
    }
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

/// Brings a large region in from disk and hashes it, overlapping the two.
///
/// `load` turns a piece description into the piece's bytes (reading a file into memory, or
/// faulting in a mapping). `n_workers` threads call it on interleaved pieces, so several
/// requests are in flight and page faults are taken on several cores, while one more thread
/// feeds the pieces to `hasher` in order. Without a hasher the pieces are only loaded.
/// The first error stops the workers and is returned.
pub(crate) fn load_and_hash<'a, P, F>(
    pieces: Vec<P>,
    n_workers: usize,
    hasher: Option<DataHasher>,
    load: F,
) -> Result<Option<[u8; CHECKSUM_LEN]>>
where
    P: Send,
    F: Fn(P) -> Result<&'a [u8]> + Sync,
{
    assert!(n_workers > 0);
    let n_pieces = pieces.len();
    if n_pieces <= 1 {
        // Small pools: threads would cost more than they save.
        let mut hasher = hasher;
        for piece in pieces {
            let bytes = load(piece)?;
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(bytes);
            }
        }
        return Ok(hasher.map(|hasher| hasher.finalize()));
    }
    let n_workers = n_workers.min(n_pieces);
    let mut per_worker: Vec<Vec<(usize, P)>> = (0..n_workers).map(|_| Vec::new()).collect();
    for (idx, piece) in pieces.into_iter().enumerate() {
        per_worker[idx % n_workers].push((idx, piece));
    }
    let failed = AtomicBool::new(false);
    let load = &load;

    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel::<(usize, &'a [u8])>();
        // Without a hasher the receiver is dropped here and the sends below are no-ops.
        let hashing = hasher.map(|mut hasher| {
            scope.spawn(move || {
                let mut early = BTreeMap::new();
                let mut next_idx = 0;
                for (idx, bytes) in receiver {
                    early.insert(idx, bytes);
                    while let Some(bytes) = early.remove(&next_idx) {
                        hasher.update(bytes);
                        next_idx += 1;
                    }
                }
                (next_idx, hasher.finalize())
            })
        });

        let workers: Vec<_> = per_worker
            .into_iter()
            .map(|mine| {
                let sender = sender.clone();
                let failed = &failed;
                scope.spawn(move || -> Result<()> {
                    for (idx, piece) in mine {
                        if failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        match load(piece) {
                            // A closed channel means no checksum is wanted.
                            Ok(bytes) => drop(sender.send((idx, bytes))),
                            Err(error) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(error);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        drop(sender);

        let mut loaded = Ok(());
        for worker in workers {
            let result = worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            if loaded.is_ok() {
                loaded = result;
            }
        }
        let hashed = hashing.map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        loaded?;
        Ok(hashed.map(|(n_hashed, checksum)| {
            assert_eq!(n_hashed, n_pieces, "every piece was hashed, in order");
            checksum
        }))
    })
}
