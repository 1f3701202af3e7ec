//! The 4096-byte header page that starts every pool file, and its codec.
//!
//! Fields are encoded and decoded one by one in little-endian order, never by casting a
//! packed struct, so a damaged page can produce an error but never undefined behaviour.
//! docs/format.md documents every byte; `tests.rs` pins these offsets to that table.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ChecksumRegion, Error, Result, hex};

/// Length of the header page, and the alignment of the data that follows it.
pub const HEADER_LEN: usize = 4096;

/// The unit data is padded to in a file. Equal to the header length so the data starts,
/// and ends, on a page boundary (what `O_DIRECT` and `mmap` need).
pub const PAGE_LEN: usize = 4096;

/// The first eight bytes of every pool file.
pub const MAGIC: [u8; 8] = *b"TALUSDP\x00";

/// The pool file format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The largest data length a pool may have: 16 TiB. Larger requests are
/// [`Error::TooLarge`]; a header that claims more is [`Error::InvalidHeader`].
pub const MAX_DATA_LEN: u64 = 1 << 44;

/// Length of the blake3 data checksum.
pub const CHECKSUM_LEN: usize = 32;

// Byte offsets of the header fields (format version 1). See docs/format.md.
pub(crate) const OFFSET_MAGIC: usize = 0;
pub(crate) const OFFSET_FORMAT_VERSION: usize = 8;
pub(crate) const OFFSET_HEADER_LEN: usize = 12;
pub(crate) const OFFSET_USER_VERSION: usize = 16;
pub(crate) const OFFSET_DATA_LEN: usize = 24;
pub(crate) const OFFSET_CREATED_UNIX_NS: usize = 32;
pub(crate) const OFFSET_FLUSHED_UNIX_NS: usize = 40;
pub(crate) const OFFSET_FLAGS: usize = 48;
pub(crate) const OFFSET_HEADER_CRC32C: usize = 52;
pub(crate) const OFFSET_DATA_CHECKSUM: usize = 56;
/// First byte after the fields; everything from here to `HEADER_LEN` is reserved and zero.
pub(crate) const OFFSET_RESERVED: usize = OFFSET_DATA_CHECKSUM + CHECKSUM_LEN;

/// Bit 0 of the flags word: the pool was handed out for writing after its last flush.
pub(crate) const FLAG_DIRTY: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_DIRTY;

const _: () = assert!(HEADER_LEN.is_power_of_two() && HEADER_LEN == PAGE_LEN);
const _: () = assert!(OFFSET_FORMAT_VERSION == OFFSET_MAGIC + MAGIC.len());
const _: () = assert!(OFFSET_HEADER_LEN == OFFSET_FORMAT_VERSION + 4);
const _: () = assert!(OFFSET_USER_VERSION == OFFSET_HEADER_LEN + 4);
const _: () = assert!(OFFSET_DATA_LEN == OFFSET_USER_VERSION + 8);
const _: () = assert!(OFFSET_CREATED_UNIX_NS == OFFSET_DATA_LEN + 8);
const _: () = assert!(OFFSET_FLUSHED_UNIX_NS == OFFSET_CREATED_UNIX_NS + 8);
const _: () = assert!(OFFSET_FLAGS == OFFSET_FLUSHED_UNIX_NS + 8);
const _: () = assert!(OFFSET_HEADER_CRC32C == OFFSET_FLAGS + 4);
const _: () = assert!(OFFSET_DATA_CHECKSUM == OFFSET_HEADER_CRC32C + 4);
const _: () = assert!(OFFSET_RESERVED == 88 && OFFSET_RESERVED <= HEADER_LEN);
const _: () = assert!(OFFSET_DATA_CHECKSUM.is_multiple_of(8) && OFFSET_DATA_LEN.is_multiple_of(8));

/// The decoded header of a pool file: what the pool is and when it was last saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolHeader {
    /// The file format version (always [`FORMAT_VERSION`] for a header this build decoded).
    pub format_version: u32,
    /// The caller's schema version, fixed at create time.
    pub user_version: u64,
    /// The exact number of data bytes (not rounded to a page).
    pub data_len: u64,
    /// When the pool was created, in nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// When the pool was last flushed, in nanoseconds since the Unix epoch; equal to
    /// `created_unix_ns` for a pool that was never flushed after create.
    pub flushed_unix_ns: u64,
    /// Whether the pool was handed out for writing after its last flush.
    pub dirty: bool,
    /// blake3 over the header (checksum fields zeroed) followed by the `data_len` data bytes.
    pub data_checksum: [u8; CHECKSUM_LEN],
}

impl PoolHeader {
    /// A clean header for a new pool whose checksum is still to be filled in.
    pub(crate) fn new(user_version: u64, data_len: u64, now_unix_ns: u64) -> Self {
        assert!(data_len > 0 && data_len <= MAX_DATA_LEN);
        PoolHeader {
            format_version: FORMAT_VERSION,
            user_version,
            data_len,
            created_unix_ns: now_unix_ns,
            flushed_unix_ns: now_unix_ns,
            dirty: false,
            data_checksum: [0; CHECKSUM_LEN],
        }
    }

    /// When the pool was created.
    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.created_unix_ns)
    }

    /// When the pool was last flushed (the creation time if it never was).
    pub fn flushed_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.flushed_unix_ns)
    }

    /// The header page with both checksum fields zeroed: the prefix the data checksum covers.
    pub(crate) fn checksum_prefix(&self) -> Box<[u8; HEADER_LEN]> {
        let mut page = Box::new([0u8; HEADER_LEN]);
        self.encode_fields(&mut page);
        page
    }

    /// Encodes the complete header page, header crc32c included.
    pub(crate) fn encode(&self, page: &mut [u8; HEADER_LEN]) {
        page.fill(0);
        self.encode_fields(page);
        page[OFFSET_DATA_CHECKSUM..OFFSET_RESERVED].copy_from_slice(&self.data_checksum);
        let crc = crc32c::crc32c(page);
        put_u32(page, OFFSET_HEADER_CRC32C, crc);
        debug_assert_eq!(header_crc_of(page), crc);
    }

    fn encode_fields(&self, page: &mut [u8; HEADER_LEN]) {
        page[OFFSET_MAGIC..OFFSET_MAGIC + MAGIC.len()].copy_from_slice(&MAGIC);
        put_u32(page, OFFSET_FORMAT_VERSION, self.format_version);
        put_u32(page, OFFSET_HEADER_LEN, HEADER_LEN as u32);
        put_u64(page, OFFSET_USER_VERSION, self.user_version);
        put_u64(page, OFFSET_DATA_LEN, self.data_len);
        put_u64(page, OFFSET_CREATED_UNIX_NS, self.created_unix_ns);
        put_u64(page, OFFSET_FLUSHED_UNIX_NS, self.flushed_unix_ns);
        put_u32(page, OFFSET_FLAGS, if self.dirty { FLAG_DIRTY } else { 0 });
    }

    /// Decodes and validates a header page: magic, format version, header crc32c, then the
    /// fields themselves. Caller-specific checks (data length, user version, dirty flag and
    /// the data checksum) are left to the caller, in the order docs/format.md gives.
    pub(crate) fn decode(page: &[u8; HEADER_LEN], path: &Path) -> Result<Self> {
        let invalid = |reason| Error::InvalidHeader { path: path.to_path_buf(), reason };

        let mut magic = [0u8; 8];
        magic.copy_from_slice(&page[OFFSET_MAGIC..OFFSET_MAGIC + 8]);
        if magic != MAGIC {
            return Err(Error::BadMagic { path: path.to_path_buf(), found: magic });
        }
        let format_version = get_u32(page, OFFSET_FORMAT_VERSION);
        if format_version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { path: path.to_path_buf(), found: format_version });
        }
        let stored_crc = get_u32(page, OFFSET_HEADER_CRC32C);
        let computed_crc = header_crc_of(page);
        if stored_crc != computed_crc {
            return Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                region: ChecksumRegion::Header,
                stored: format!("{stored_crc:08x}"),
                computed: format!("{computed_crc:08x}"),
            });
        }

        // The crc matched, so these fields are what a writer wrote; still, a writer with a
        // bug (or a forged file) must not be able to make us misbehave.
        if get_u32(page, OFFSET_HEADER_LEN) as usize != HEADER_LEN {
            return Err(invalid("header length is not 4096"));
        }
        let data_len = get_u64(page, OFFSET_DATA_LEN);
        if data_len == 0 || data_len > MAX_DATA_LEN {
            return Err(invalid("data length is zero or above the maximum"));
        }
        let flags = get_u32(page, OFFSET_FLAGS);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(invalid("unknown flag bits are set"));
        }
        // (OR-ed together rather than searched: this loop vectorises, the search does not.)
        if page[OFFSET_RESERVED..].iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return Err(invalid("reserved bytes are not zero"));
        }
        let mut data_checksum = [0u8; CHECKSUM_LEN];
        data_checksum.copy_from_slice(&page[OFFSET_DATA_CHECKSUM..OFFSET_RESERVED]);

        Ok(PoolHeader {
            format_version,
            user_version: get_u64(page, OFFSET_USER_VERSION),
            data_len,
            created_unix_ns: get_u64(page, OFFSET_CREATED_UNIX_NS),
            flushed_unix_ns: get_u64(page, OFFSET_FLUSHED_UNIX_NS),
            dirty: flags & FLAG_DIRTY != 0,
            data_checksum,
        })
    }

    /// Compares a computed data checksum with the stored one.
    pub(crate) fn verify_data_checksum(&self, computed: &[u8; CHECKSUM_LEN], path: &Path) -> Result<()> {
        if computed == &self.data_checksum {
            Ok(())
        } else {
            Err(Error::ChecksumMismatch {
                path: path.to_path_buf(),
                region: ChecksumRegion::Data,
                stored: hex(&self.data_checksum),
                computed: hex(computed),
            })
        }
    }
}

/// crc32c over the page with its crc field taken as zero.
fn header_crc_of(page: &[u8; HEADER_LEN]) -> u32 {
    let crc = crc32c::crc32c(&page[..OFFSET_HEADER_CRC32C]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &page[OFFSET_HEADER_CRC32C + 4..])
}

/// Data length rounded up to a whole page: how many data bytes a pool file holds.
pub(crate) fn padded_len(data_len: usize) -> usize {
    data_len.div_ceil(PAGE_LEN) * PAGE_LEN
}

/// The exact length of a pool file with `data_len` data bytes.
pub(crate) fn file_len(data_len: usize) -> u64 {
    (HEADER_LEN + padded_len(data_len)) as u64
}

/// Rejects data lengths no pool can have.
pub(crate) fn check_data_len(data_len: usize) -> Result<()> {
    if data_len == 0 {
        return Err(Error::ZeroLength);
    }
    if data_len as u64 > MAX_DATA_LEN {
        return Err(Error::TooLarge { requested: data_len as u64, max: MAX_DATA_LEN });
    }
    Ok(())
}

/// Nanoseconds since the Unix epoch (0 for a clock set before 1970).
pub(crate) fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn put_u32(page: &mut [u8; HEADER_LEN], offset: usize, value: u32) {
    page[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(page: &mut [u8; HEADER_LEN], offset: usize, value: u64) {
    page[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn get_u32(page: &[u8; HEADER_LEN], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&page[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

fn get_u64(page: &[u8; HEADER_LEN], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&page[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests;
