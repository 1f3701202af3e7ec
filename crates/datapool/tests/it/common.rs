//! Helpers shared by the integration tests: one way to drive either file-backed kind, and
//! the workspace's test kit (seeds, a generator, self-checking patterns).

use std::path::Path;

use talus_datapool::{Datapool, FileBackedMemory, MmapFile, Result};
pub use talus_testkit::{SplitMix64, pattern, test_seed};

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
