//! The manifest: which file holds each bucket, how big it is, and the seed. Small, checksummed,
//! and replaced atomically (temporary file, fsync, rename, fsync the directory).
//!
//! Format (version 1, little-endian), documented in docs/format.md:
//! magic `TALUSBM\0`, version u32, flags u32 (bit 0 clean), seed u64, bucket_bits u32,
//! max_search u32, key_len u32, value_len u32, n_dirs u32, reserved u32, then per bucket
//! generation u64, n_cells u64, n_entries u64, n_resizes u32, dir_idx u32, and a crc32c of
//! all preceding bytes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::config::{MAX_BUCKET_BITS, MAX_BUCKET_CELLS, MAX_SEARCH_LIMIT};
use crate::error::{Error, Result, io_error};

pub(crate) const MANIFEST_NAME: &str = "MANIFEST";
const MAGIC: [u8; 8] = *b"TALUSBM\x00";
const VERSION: u32 = 1;
const FLAG_CLEAN: u32 = 1;
pub(crate) const HEADER_LEN: usize = 48;
pub(crate) const BUCKET_RECORD_LEN: usize = 32;
const CRC_LEN: usize = 4;

/// One bucket's entry in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BucketRecord {
    pub(crate) generation: u64,
    pub(crate) n_cells: u64,
    pub(crate) n_entries: u64,
    pub(crate) n_resizes: u32,
    pub(crate) dir_idx: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) clean: bool,
    pub(crate) seed: u64,
    pub(crate) bucket_bits: u32,
    pub(crate) max_search: u32,
    pub(crate) key_len: u32,
    pub(crate) value_len: u32,
    pub(crate) n_dirs: u32,
    pub(crate) buckets: Vec<BucketRecord>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        assert_eq!(self.buckets.len(), 1 << self.bucket_bits);
        let mut out = Vec::with_capacity(HEADER_LEN + self.buckets.len() * BUCKET_RECORD_LEN + CRC_LEN);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(if self.clean { FLAG_CLEAN } else { 0 }).to_le_bytes());
        out.extend_from_slice(&self.seed.to_le_bytes());
        for field in [self.bucket_bits, self.max_search, self.key_len, self.value_len, self.n_dirs, 0] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        debug_assert_eq!(out.len(), HEADER_LEN);
        for bucket in &self.buckets {
            out.extend_from_slice(&bucket.generation.to_le_bytes());
            out.extend_from_slice(&bucket.n_cells.to_le_bytes());
            out.extend_from_slice(&bucket.n_entries.to_le_bytes());
            out.extend_from_slice(&bucket.n_resizes.to_le_bytes());
            out.extend_from_slice(&bucket.dir_idx.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let corrupt = |reason: &str| Error::CorruptManifest { path: path.to_path_buf(), reason: reason.to_owned() };
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(corrupt("shorter than its header"));
        }
        let u32_at = |offset: usize| u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
        let u64_at = |offset: usize| u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"));
        if bytes[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(corrupt("checksum mismatch"));
        }
        if u32_at(8) != VERSION {
            return Err(corrupt("unsupported version"));
        }
        let flags = u32_at(12);
        if flags & !FLAG_CLEAN != 0 {
            return Err(corrupt("unknown flags"));
        }
        let bucket_bits = u32_at(24);
        if bucket_bits > MAX_BUCKET_BITS {
            return Err(corrupt("too many buckets"));
        }
        let n_buckets = 1usize << bucket_bits;
        if bytes.len() != HEADER_LEN + n_buckets * BUCKET_RECORD_LEN + CRC_LEN {
            return Err(corrupt("length does not match the bucket count"));
        }
        let max_search = u32_at(28);
        let n_dirs = u32_at(40);
        if max_search == 0 || max_search as usize > MAX_SEARCH_LIMIT || n_dirs == 0 || n_dirs > 1024 {
            return Err(corrupt("a field is out of range"));
        }
        let buckets = (0..n_buckets)
            .map(|idx| {
                let at = HEADER_LEN + idx * BUCKET_RECORD_LEN;
                let record = BucketRecord {
                    generation: u64_at(at),
                    n_cells: u64_at(at + 8),
                    n_entries: u64_at(at + 16),
                    n_resizes: u32_at(at + 24),
                    dir_idx: u32_at(at + 28),
                };
                let sane = record.n_cells.is_power_of_two()
                    && record.n_cells <= MAX_BUCKET_CELLS
                    && record.n_entries <= record.n_cells
                    && record.dir_idx < n_dirs;
                sane.then_some(record).ok_or_else(|| corrupt("a bucket record is out of range"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Manifest {
            clean: flags & FLAG_CLEAN != 0,
            seed: u64_at(16),
            bucket_bits,
            max_search,
            key_len: u32_at(32),
            value_len: u32_at(36),
            n_dirs,
            buckets,
        })
    }

    pub(crate) fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound { path }),
            Err(source) => return Err(Error::Io { op: "read", path, source }),
        };
        Manifest::decode(&bytes, &path)
    }

    /// Replaces the manifest atomically: temporary file, fsync, rename, fsync directory.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_NAME);
        let temp = dir.join(format!("{MANIFEST_NAME}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        file.write_all(&self.encode()).map_err(io_error("write", &temp))?;
        file.sync_all().map_err(io_error("fsync", &temp))?;
        drop(file);
        std::fs::rename(&temp, &path).map_err(io_error("rename", &temp))?;
        fsync_dir(dir)
    }
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            clean: true,
            seed: 0x1234_5678_9abc_def0,
            bucket_bits: 1,
            max_search: 32,
            key_len: 8,
            value_len: 16,
            n_dirs: 2,
            buckets: vec![
                BucketRecord { generation: 3, n_cells: 1024, n_entries: 10, n_resizes: 2, dir_idx: 0 },
                BucketRecord { generation: 0, n_cells: 64, n_entries: 64, n_resizes: 0, dir_idx: 1 },
            ],
        }
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let manifest = sample();
        let bytes = manifest.encode();
        assert_eq!(bytes.len(), HEADER_LEN + 2 * BUCKET_RECORD_LEN + CRC_LEN);
        assert_eq!(Manifest::decode(&bytes, Path::new("m")).expect("decode"), manifest);
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(Manifest::decode(&damaged, Path::new("m")).is_err(), "bit {bit}");
        }
        for len in [0, 10, HEADER_LEN, bytes.len() - 1] {
            assert!(Manifest::decode(&bytes[..len], Path::new("m")).is_err(), "truncated to {len}");
        }
    }
}
