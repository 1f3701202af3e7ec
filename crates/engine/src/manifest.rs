//! The MANIFEST: the database's identity and whether it was closed cleanly. Small,
//! checksummed, replaced atomically (docs/format.md, "MANIFEST").
//!
//! ```text
//! offset size field
//!      0    8 magic "TALUSMF\0"
//!      8    4 version (1)
//!     12    4 length of the manifest in bytes (88)
//!     16    8 database id (random; also stamped in every segment header)
//!     24    8 hash seed (random; keys are placed by xxh3 with this seed)
//!     32    8 segment size in bytes
//!     40    8 log begin: the first logical address the log still holds
//!     48    8 log end: where the log ends (meaningful when clean)
//!     56    8 next sequence number (meaningful when clean)
//!     64    4 flags: bit 0 clean (index flushed, log complete up to log end);
//!               bit 1 cut (a failed sync poisoned the database: log end is the durable
//!               end, and bytes after it are cut at the next open)
//!     68    4 hash bits kept (64 except in tests)
//!     72    8 creation time, nanoseconds since the Unix epoch
//!     80    4 crc32c of bytes 0..80
//!     84    4 zero
//! ```

/// The file name.
pub(crate) const MANIFEST_PATH: &str = "MANIFEST";
const MAGIC: [u8; 8] = *b"TALUSMF\0";
const VERSION: u32 = 1;
/// Bytes in a manifest.
pub(crate) const MANIFEST_LEN: usize = 88;
const CRC_OFFSET: usize = 80;
const FLAG_CLEAN: u32 = 1;
const FLAG_CUT: u32 = 2;

const _: () = assert!(CRC_OFFSET + 8 == MANIFEST_LEN);

/// A decoded manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub(crate) db_id: u64,
    pub(crate) hash_seed: u64,
    pub(crate) segment_size: u64,
    pub(crate) log_begin: u64,
    pub(crate) log_end: u64,
    pub(crate) next_seq: u64,
    pub(crate) clean: bool,
    /// Set when a failed sync poisoned the database: `log_end` is the durable end, and
    /// whatever the files show after it (the page cache may still hold bytes the disk never
    /// got) is cut at the next open.
    pub(crate) cut_at_log_end: bool,
    pub(crate) hash_bits: u32,
    pub(crate) created_unix_ns: u64,
}

impl Manifest {
    pub(crate) fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut out = [0u8; MANIFEST_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(MANIFEST_LEN as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.db_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.hash_seed.to_le_bytes());
        out[32..40].copy_from_slice(&self.segment_size.to_le_bytes());
        out[40..48].copy_from_slice(&self.log_begin.to_le_bytes());
        out[48..56].copy_from_slice(&self.log_end.to_le_bytes());
        out[56..64].copy_from_slice(&self.next_seq.to_le_bytes());
        let flags = if self.clean { FLAG_CLEAN } else { 0 } | if self.cut_at_log_end { FLAG_CUT } else { 0 };
        out[64..68].copy_from_slice(&flags.to_le_bytes());
        out[68..72].copy_from_slice(&self.hash_bits.to_le_bytes());
        out[72..80].copy_from_slice(&self.created_unix_ns.to_le_bytes());
        let crc = crc32c::crc32c(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(Manifest::decode(&out), Ok(*self), "a manifest reads back as written");
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() != MANIFEST_LEN {
            return Err(format!("{} bytes, expected {MANIFEST_LEN}", bytes.len()));
        }
        if bytes[0..8] != MAGIC {
            return Err("bad magic: not a talus MANIFEST".to_owned());
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if u32_at(8) != VERSION {
            return Err(format!("unsupported version {}", u32_at(8)));
        }
        if u32_at(CRC_OFFSET) != crc32c::crc32c(&bytes[..CRC_OFFSET]) {
            return Err("checksum mismatch".to_owned());
        }
        if u32_at(12) as usize != MANIFEST_LEN || u32_at(64) & !(FLAG_CLEAN | FLAG_CUT) != 0 || u32_at(84) != 0 {
            return Err("unknown length or flags".to_owned());
        }
        let manifest = Manifest {
            db_id: u64_at(16),
            hash_seed: u64_at(24),
            segment_size: u64_at(32),
            log_begin: u64_at(40),
            log_end: u64_at(48),
            next_seq: u64_at(56),
            clean: u32_at(64) & FLAG_CLEAN != 0,
            cut_at_log_end: u32_at(64) & FLAG_CUT != 0,
            hash_bits: u32_at(68),
            created_unix_ns: u64_at(72),
        };
        let segment_ok = manifest.segment_size.is_power_of_two()
            && (crate::options::MIN_SEGMENT_SIZE..=crate::options::MAX_SEGMENT_SIZE).contains(&manifest.segment_size);
        if !segment_ok
            || !(1..=64).contains(&manifest.hash_bits)
            || manifest.log_begin > manifest.log_end
            || !manifest.log_begin.is_multiple_of(manifest.segment_size)
            || manifest.log_end > u64::MAX / 4
        {
            return Err("field values out of range".to_owned());
        }
        Ok(manifest)
    }
}

/// A fresh random number (for ids and seeds): std's randomly keyed hasher over the clock.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher
        .write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}

pub(crate) fn now_unix_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

#[cfg(test)]
mod tests;
