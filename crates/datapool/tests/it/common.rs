//! Helpers shared by the integration tests: one way to drive either file-backed kind, data
//! patterns, seeds and a small deterministic generator.

use std::path::Path;

use talus_datapool::{Datapool, FileBackedMemory, MmapFile, Result};

/// The two pool kinds that keep their bytes in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Mmap,
    FileBacked,
}

pub const FILE_KINDS: [FileKind; 2] = [FileKind::Mmap, FileKind::FileBacked];

impl FileKind {
    pub fn create(self, path: &Path, data_len: usize, user_version: u64) -> Result<Box<dyn Datapool>> {
        Ok(match self {
            FileKind::Mmap => Box::new(MmapFile::create(path, data_len, user_version)?),
            FileKind::FileBacked => Box::new(FileBackedMemory::create(path, data_len, user_version)?),
        })
    }

    pub fn open(self, path: &Path, data_len: usize, user_version: u64) -> Result<Box<dyn Datapool>> {
        Ok(match self {
            FileKind::Mmap => Box::new(MmapFile::open(path, data_len, user_version)?),
            FileKind::FileBacked => Box::new(FileBackedMemory::open(path, data_len, user_version)?),
        })
    }
}

/// The data lengths acceptance criterion 1 names.
pub const LENGTHS: [usize; 7] = [1, 4095, 4096, 4097, 5000, 8192, (1 << 20) + 3];

/// A byte pattern that differs at every position and with every seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The seed for a randomised test: `TALUS_TEST_SEED` if set, else fresh. Printed, so that a
/// failing run (whose output the harness shows) names the seed that reproduces it.
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

/// A tiny deterministic generator (SplitMix64), enough for patterns and timings.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (bound > 0; the tiny modulo bias does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}
