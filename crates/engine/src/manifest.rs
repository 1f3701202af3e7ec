//! The MANIFEST: the database's identity, whether it was closed cleanly, which log segments
//! compaction removed, and (after a clean close) the live bytes of every segment. Small,
//! checksummed, replaced atomically (docs/format.md, "MANIFEST").
//!
//! ```text
//! offset size field
//!      0    8 magic "TALUSMF\0"
//!      8    4 version (2; version 1, the same first 80 bytes with no lists, is still read)
//!     12    4 length of the manifest in bytes (96 + 8·n_holes + 32·n_usage)
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
//!     80    4 n_holes: segments at or above log begin that compaction removed
//!     84    4 n_usage: segments with a usage entry (meaningful when clean)
//!     88  8·h holes: the first address of each removed segment, ascending
//!      .  32·u usage: per segment, ascending by first address: first address, bytes of
//!               records written, live bytes, tombstone bytes (u64 each)
//!      .    4 crc32c of every byte before it
//!      .    4 zero
//! ```

/// The file name.
pub(crate) const MANIFEST_PATH: &str = "MANIFEST";
const MAGIC: [u8; 8] = *b"TALUSMF\0";
const VERSION: u32 = 2;
/// Bytes in a version 1 manifest.
const V1_LEN: usize = 88;
/// Bytes in front of the lists.
const FIXED_LEN: usize = 88;
/// Bytes after the lists: the crc and a zero word.
const TRAILER_LEN: usize = 8;
const FLAG_CLEAN: u32 = 1;
const FLAG_CUT: u32 = 2;
/// The most holes or usage entries a manifest lists (2^22 segments: 1 PiB of the smallest
/// segments); a damaged count is an error, never a large allocation.
pub(crate) const MAX_LISTED_SEGMENTS: usize = 1 << 22;

const _: () = assert!(FIXED_LEN == 80 + 4 + 4 && V1_LEN == 80 + 8);

/// Live-byte accounting of one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentUsage {
    pub(crate) first_address: u64,
    /// Bytes of records (entry headers included, fillers not) written to it.
    pub(crate) written_bytes: u64,
    /// Bytes of the records the index points at.
    pub(crate) live_bytes: u64,
    /// Bytes of delete records.
    pub(crate) tombstone_bytes: u64,
}

impl SegmentUsage {
    /// Bytes of one entry in the MANIFEST and in a checkpoint: four little-endian u64s.
    pub(crate) const ENCODED_LEN: usize = 32;

    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        for word in [self.first_address, self.written_bytes, self.live_bytes, self.tombstone_bytes] {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// Entries back to back (`bytes` is a whole number of them).
    pub(crate) fn decode_list(bytes: &[u8]) -> Vec<SegmentUsage> {
        bytes
            .chunks_exact(Self::ENCODED_LEN)
            .map(|entry| {
                let word = |idx: usize| u64::from_le_bytes(entry[8 * idx..8 * idx + 8].try_into().expect("8 bytes"));
                SegmentUsage {
                    first_address: word(0),
                    written_bytes: word(1),
                    live_bytes: word(2),
                    tombstone_bytes: word(3),
                }
            })
            .collect()
    }
}

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Segments at or above `log_begin` that compaction removed: their absence is not damage.
    pub(crate) holes: Vec<u64>,
    /// Per segment accounting at the last clean close (empty otherwise).
    pub(crate) usage: Vec<SegmentUsage>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        assert!(self.holes.len() <= MAX_LISTED_SEGMENTS && self.usage.len() <= MAX_LISTED_SEGMENTS);
        let len = FIXED_LEN + 8 * self.holes.len() + SegmentUsage::ENCODED_LEN * self.usage.len() + TRAILER_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        for word in [self.db_id, self.hash_seed, self.segment_size, self.log_begin, self.log_end, self.next_seq] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        let flags = if self.clean { FLAG_CLEAN } else { 0 } | if self.cut_at_log_end { FLAG_CUT } else { 0 };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&self.hash_bits.to_le_bytes());
        out.extend_from_slice(&self.created_unix_ns.to_le_bytes());
        out.extend_from_slice(&(self.holes.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.usage.len() as u32).to_le_bytes());
        for hole in &self.holes {
            out.extend_from_slice(&hole.to_le_bytes());
        }
        for usage in &self.usage {
            usage.encode_into(&mut out);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(out.len(), len);
        debug_assert_eq!(Manifest::decode(&out).as_ref(), Ok(self), "a manifest reads back as written");
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        if bytes.len() < 8 || bytes[0..8] != MAGIC {
            return Err("bad magic: not a talus MANIFEST".to_owned());
        }
        if bytes.len() < V1_LEN {
            return Err(format!("{} bytes, shorter than any manifest", bytes.len()));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        let (n_holes, n_usage, crc_offset) = match version {
            1 => (0, 0, 80),
            VERSION => {
                let (n_holes, n_usage) = (u32_at(80) as usize, u32_at(84) as usize);
                if n_holes > MAX_LISTED_SEGMENTS || n_usage > MAX_LISTED_SEGMENTS {
                    return Err("list lengths out of range".to_owned());
                }
                (n_holes, n_usage, FIXED_LEN + 8 * n_holes + SegmentUsage::ENCODED_LEN * n_usage)
            }
            other => return Err(format!("unsupported version {other}")),
        };
        if bytes.len() != crc_offset + TRAILER_LEN || u32_at(12) as usize != bytes.len() {
            return Err(format!("{} bytes, the header says {}", bytes.len(), u32_at(12)));
        }
        if u32_at(crc_offset) != crc32c::crc32c(&bytes[..crc_offset]) {
            return Err("checksum mismatch".to_owned());
        }
        if u32_at(64) & !(FLAG_CLEAN | FLAG_CUT) != 0 || u32_at(crc_offset + 4) != 0 {
            return Err("unknown flags".to_owned());
        }
        let holes: Vec<u64> = (0..n_holes).map(|idx| u64_at(FIXED_LEN + 8 * idx)).collect();
        let usage_at = FIXED_LEN + 8 * n_holes;
        let usage = SegmentUsage::decode_list(&bytes[usage_at..usage_at + SegmentUsage::ENCODED_LEN * n_usage]);
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
            holes,
            usage,
        };
        let segment_size = manifest.segment_size;
        let segment_ok = segment_size.is_power_of_two()
            && (crate::options::MIN_SEGMENT_SIZE..=crate::options::MAX_SEGMENT_SIZE).contains(&segment_size);
        let aligned = |address: &u64| segment_ok && address.is_multiple_of(segment_size);
        let ascending = |addresses: &[u64]| addresses.windows(2).all(|pair| pair[0] < pair[1]);
        if !segment_ok
            || !(1..=64).contains(&manifest.hash_bits)
            || manifest.log_begin > manifest.log_end
            || !manifest.log_begin.is_multiple_of(segment_size)
            || manifest.log_end > u64::MAX / 4
            || !manifest
                .holes
                .iter()
                .all(|hole| aligned(hole) && *hole >= manifest.log_begin && *hole < manifest.log_end)
            || !ascending(&manifest.holes)
            || !manifest.usage.iter().all(|usage| {
                aligned(&usage.first_address)
                    && usage.live_bytes.saturating_add(usage.tombstone_bytes) <= usage.written_bytes
                    && usage.written_bytes <= segment_size
            })
            || !ascending(&manifest.usage.iter().map(|usage| usage.first_address).collect::<Vec<_>>())
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
