//! Segment files: the log's bytes below the in-memory tail, at the same logical addresses.
//! Segment `i` holds `[i·S, (i+1)·S)` and is named by its first address
//! (`log/0000000004000000.seg`). A 4096-byte header comes first; the log byte at address
//! `a` is at file offset `4096 + a - first_address`. The bytes are the ring's, verbatim:
//! an 8-byte entry header word, then the record (see `record.rs`), padded to 8 bytes.
//! Fillers at page ends are written as their header word only (the rest is a hole).
//!
//! Header (docs/format.md, "Segment file"):
//!
//! ```text
//! offset size field
//!      0    8 magic "TALUSSEG"
//!      8    4 version (1)
//!     12    4 header length (4096)
//!     16    8 segment size in bytes
//!     24    8 first logical address
//!     32    8 database id (as in the MANIFEST)
//!     40    4 crc32c of bytes 0..40
//!     44 4052 zero
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use talus_ringbuf::{ENTRY_HEADER_LEN, EntryHeader, EntryState};

use crate::error::{Result, corruption, io_error};
use crate::record::{self, RECORD_HEADER_LEN};
use crate::storage::{Storage, StorageFile, read_exact_at};

/// Bytes in front of a segment's data.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 4096;
const MAGIC: [u8; 8] = *b"TALUSSEG";
const VERSION: u32 = 1;
/// The part of the header that is written (the rest is zero).
const HEADER_USED: usize = 44;
const CRC_OFFSET: usize = 40;
/// The directory of segment files.
pub(crate) const LOG_DIR: &str = "log";

const _: () = assert!(CRC_OFFSET + 4 == HEADER_USED && HEADER_USED as u64 <= SEGMENT_HEADER_LEN);

/// The path of the segment starting at `first_address`.
pub(crate) fn segment_path(first_address: u64) -> String {
    format!("{LOG_DIR}/{first_address:016x}.seg")
}

/// The first address of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    (hex.len() == 16 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

pub(crate) fn encode_header(segment_size: u64, first_address: u64, db_id: u64) -> [u8; HEADER_USED] {
    let mut out = [0u8; HEADER_USED];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    out[16..24].copy_from_slice(&segment_size.to_le_bytes());
    out[24..32].copy_from_slice(&first_address.to_le_bytes());
    out[32..40].copy_from_slice(&db_id.to_le_bytes());
    let crc = crc32c::crc32c(&out[..CRC_OFFSET]);
    out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a segment header against what the MANIFEST and the file name say.
pub(crate) fn check_header(bytes: &[u8], path: &str, segment_size: u64, first_address: u64, db_id: u64) -> Result<()> {
    let bad = |reason: &str| Err(corruption(path, 0, format!("segment header: {reason}")));
    if bytes.len() < HEADER_USED {
        return bad("the file is shorter than its header");
    }
    if bytes[0..8] != MAGIC {
        return bad("bad magic");
    }
    let crc = u32::from_le_bytes(bytes[CRC_OFFSET..HEADER_USED].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&bytes[..CRC_OFFSET]) {
        return bad("checksum mismatch");
    }
    if bytes[..HEADER_USED] != encode_header(segment_size, first_address, db_id) {
        return bad("version, size, address or database id differ from the MANIFEST and the file name");
    }
    Ok(())
}

/// A segment the log directory listed: opened (and its header checked) on first use, so an
/// open that takes a database up reads no segment it does not need. An open one may be
/// closed again to keep the number of open files bounded.
#[derive(Debug)]
enum Slot {
    Listed,
    Open {
        file: Arc<dyn StorageFile>,
        /// The value of [`Files::opens`] when it was last asked for.
        used: AtomicU64,
    },
}

/// The segment files and how many of them are open.
#[derive(Debug, Default)]
struct Files {
    slots: BTreeMap<u64, Slot>,
    n_open: usize,
    /// Segment files opened so far: the clock of [`Slot::Open::used`].
    opens: AtomicU64,
}

impl Files {
    /// Registers `file` as the open file of the segment at `first_address`, closing the
    /// least recently used other segment (never the log's last) if that makes more than
    /// `max_open` open. A closed file stays open until the last reader or writer that holds
    /// it lets it go, and is opened again at its next use.
    fn put_open(&mut self, first_address: u64, file: Arc<dyn StorageFile>, max_open: usize) {
        let now = self.opens.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = Slot::Open { file, used: AtomicU64::new(now) };
        if let Some(Slot::Open { .. }) = self.slots.insert(first_address, slot) {
            return;
        }
        self.n_open += 1;
        if self.n_open <= max_open {
            return;
        }
        let last = self.slots.last_key_value().map(|(&first, _)| first);
        let coldest = self
            .slots
            .iter()
            .filter(|&(&first, _)| first != first_address && Some(first) != last)
            .filter_map(|(&first, slot)| match slot {
                Slot::Open { used, .. } => Some((used.load(Ordering::Relaxed), first)),
                Slot::Listed => None,
            })
            .min();
        if let Some((_, first)) = coldest {
            self.slots.insert(first, Slot::Listed);
            self.n_open -= 1;
        }
    }

    fn remove(&mut self, first_address: u64) {
        if let Some(Slot::Open { .. }) = self.slots.remove(&first_address) {
            self.n_open -= 1;
        }
    }
}

/// The segment files, by first address, and the holes compaction left.
#[derive(Debug)]
pub(crate) struct Segments {
    storage: Arc<dyn Storage>,
    pub(crate) segment_size: u64,
    db_id: u64,
    /// Every segment file, including retired ones not yet unlinked (iterators may still
    /// read them).
    files: RwLock<Files>,
    /// At most this many segment files are kept open (one file descriptor each).
    max_open: usize,
    /// Segments compaction retired: no longer part of the log (their absence is no damage).
    holes: RwLock<BTreeSet<u64>>,
}

impl Segments {
    /// The segments of a log whose files are in `storage`, keeping at most `max_open` (at
    /// least 2) of them open.
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        segment_size: u64,
        db_id: u64,
        holes: &[u64],
        max_open: usize,
    ) -> Segments {
        assert!(max_open >= 2, "the options keep at least two segments open");
        Segments {
            storage,
            segment_size,
            db_id,
            files: RwLock::new(Files::default()),
            max_open,
            holes: RwLock::new(holes.iter().copied().collect()),
        }
    }

    /// Whether compaction removed the segment starting at `first_address`.
    pub(crate) fn is_hole(&self, first_address: u64) -> bool {
        self.holes.read().contains(&first_address)
    }

    /// Whether a hole lies between the segments of addresses `from` and `to`.
    pub(crate) fn hole_between(&self, from: u64, to: u64) -> bool {
        let (from, to) = (self.first_address_of(from), self.first_address_of(to));
        from + self.segment_size < to && self.holes.read().range(from + self.segment_size..to).next().is_some()
    }

    /// Every hole at or above `log_begin`, ascending (below it the log has no segments
    /// to miss; retired files there may still wait for [`unlink`](Self::unlink)).
    pub(crate) fn holes_from(&self, log_begin: u64) -> Vec<u64> {
        self.holes.read().range(log_begin..).copied().collect()
    }

    /// Takes a segment out of the log (its file stays readable until [`unlink`](Self::unlink)).
    pub(crate) fn retire(&self, first_address: u64) {
        self.holes.write().insert(first_address);
    }

    /// Undoes [`retire`](Self::retire) (when recording it failed).
    pub(crate) fn unretire(&self, first_address: u64) {
        self.holes.write().remove(&first_address);
    }

    /// Removes a retired segment's file.
    pub(crate) fn unlink(&self, first_address: u64) -> Result<()> {
        assert!(self.is_hole(first_address), "only retired segments are unlinked");
        self.remove(first_address)
    }

    pub(crate) fn first_address_of(&self, address: u64) -> u64 {
        address - address % self.segment_size
    }

    /// Registers an open segment file.
    pub(crate) fn insert(&self, first_address: u64, file: Arc<dyn StorageFile>) {
        self.files.write().put_open(first_address, file, self.max_open);
    }

    /// Registers a segment file the log directory lists, to be opened on first use.
    pub(crate) fn insert_listed(&self, first_address: u64) {
        self.files.write().slots.entry(first_address).or_insert(Slot::Listed);
    }

    pub(crate) fn remove(&self, first_address: u64) -> Result<()> {
        let path = segment_path(first_address);
        self.files.write().remove(first_address);
        self.storage.remove(&path).map_err(io_error("remove a segment", &path))
    }

    /// The segments of the log (not the retired ones), ascending.
    pub(crate) fn first_addresses(&self) -> Vec<u64> {
        let holes = self.holes.read();
        self.files.read().slots.keys().copied().filter(|first| !holes.contains(first)).collect()
    }

    /// Whether the log has a file for the segment at `first_address` (opened or not).
    pub(crate) fn contains(&self, first_address: u64) -> bool {
        self.files.read().slots.contains_key(&first_address)
    }

    /// Segments in the log.
    pub(crate) fn len(&self) -> usize {
        self.first_addresses().len()
    }

    /// Segment files open now (held here; a closed one a reader still holds is not counted).
    pub(crate) fn n_open(&self) -> usize {
        self.files.read().n_open
    }

    /// The segment file for `first_address`, if the log has one: opened and its header
    /// checked the first time it is asked for (and again after it was closed to keep the
    /// number of open files bounded).
    ///
    /// # Errors
    ///
    /// I/O opening or reading the file; [`Error::Corruption`](crate::Error::Corruption) for a
    /// header that does not match the database (a listed file is then reported again at
    /// every use).
    pub(crate) fn file(&self, first_address: u64) -> Result<Option<Arc<dyn StorageFile>>> {
        {
            let files = self.files.read();
            match files.slots.get(&first_address) {
                Some(Slot::Open { file, used }) => {
                    // The clock moves only when a file is opened: most uses store nothing.
                    let now = files.opens.load(Ordering::Relaxed);
                    if used.load(Ordering::Relaxed) != now {
                        used.store(now, Ordering::Relaxed);
                    }
                    return Ok(Some(Arc::clone(file)));
                }
                Some(Slot::Listed) => {}
                None => return Ok(None),
            }
        }
        // Under the write lock, so it is opened once (and a removal waits for it).
        let mut files = self.files.write();
        match files.slots.get(&first_address) {
            Some(Slot::Open { file, .. }) => return Ok(Some(Arc::clone(file))),
            Some(Slot::Listed) => {}
            None => return Ok(None),
        }
        let path = segment_path(first_address);
        let file = self.storage.open(&path, false).map_err(io_error("open a segment", &path))?;
        let mut header = vec![0u8; SEGMENT_HEADER_LEN as usize];
        let n = file.read_at(&mut header, 0).map_err(io_error("read a segment header", &path))?;
        header.truncate(n);
        check_header(&header, &path, self.segment_size, first_address, self.db_id)?;
        files.put_open(first_address, Arc::clone(&file), self.max_open);
        Ok(Some(file))
    }

    /// The file's length, `None` if the segment has none or it cannot be read (for figures).
    pub(crate) fn file_len(&self, first_address: u64) -> Option<u64> {
        self.file(first_address).ok().flatten()?.len().ok()
    }

    /// The segment file for `first_address`, created (header written and synced, directory
    /// entry durable) if it does not exist yet.
    pub(crate) fn file_or_create(&self, first_address: u64) -> Result<Arc<dyn StorageFile>> {
        if let Some(file) = self.file(first_address)? {
            return Ok(file);
        }
        let path = segment_path(first_address);
        let file = self.storage.open(&path, true).map_err(io_error("create a segment", &path))?;
        let header = encode_header(self.segment_size, first_address, self.db_id);
        file.write_at(&header, 0).map_err(io_error("write a segment header", &path))?;
        file.sync_data().map_err(io_error("sync a segment header", &path))?;
        tracing::debug!(path, "created a log segment");
        self.insert(first_address, Arc::clone(&file));
        Ok(file)
    }

    /// Reads and verifies the record at `address` from its segment; returns its payload.
    pub(crate) fn read_payload(&self, address: u64) -> Result<Vec<u8>> {
        let first = self.first_address_of(address);
        let path = segment_path(first);
        let Some(file) = self.file(first)? else {
            return Err(corruption(&path, 0, format!("segment for address {address} is missing")));
        };
        let offset = SEGMENT_HEADER_LEN + (address - first);
        let mut buf = vec![0u8; 512.min((self.segment_size - (address - first)) as usize)];
        let n = file.read_at(&mut buf, offset).map_err(io_error("read a record", &path))?;
        buf.truncate(n);
        let payload_len = match entry_payload_len(&buf, address - first, self.segment_size) {
            Ok(len) => len,
            Err(reason) => return Err(corruption(&path, offset, reason)),
        };
        let entry_len = ENTRY_HEADER_LEN + payload_len;
        if buf.len() < entry_len {
            let have = buf.len();
            buf.resize(entry_len, 0);
            read_exact_at(file.as_ref(), &mut buf[have..], offset + have as u64)
                .map_err(|_| corruption(&path, offset, "record runs past the end of the file"))?;
        }
        buf.truncate(entry_len);
        buf.drain(..ENTRY_HEADER_LEN);
        record::decode(&buf, true).map_err(|reason| corruption(&path, offset, reason))?;
        Ok(buf)
    }
}

/// The payload length of the ready entry whose header starts `bytes`, at `offset_in_segment`,
/// after checking the header is one the engine writes.
pub(crate) fn entry_payload_len(
    bytes: &[u8],
    offset_in_segment: u64,
    segment_size: u64,
) -> Result<usize, &'static str> {
    let word = bytes.get(..ENTRY_HEADER_LEN).ok_or("entry header cut short")?;
    let header =
        EntryHeader::decode(u64::from_le_bytes(word.try_into().expect("8 bytes"))).ok_or("invalid entry header")?;
    if header.state != EntryState::Ready {
        return Err("entry header is not a ready record");
    }
    check_entry_fits(&header, offset_in_segment, segment_size)?;
    if header.len < RECORD_HEADER_LEN || header.size != ENTRY_HEADER_LEN + header.len.div_ceil(8) * 8 {
        return Err("entry size and record length disagree");
    }
    Ok(header.len)
}

pub(crate) fn check_entry_fits(
    header: &EntryHeader,
    offset_in_segment: u64,
    segment_size: u64,
) -> Result<(), &'static str> {
    // No page the engine writes is larger: a damaged size never makes a large allocation.
    if header.size as u64 > crate::options::MAX_LOG_PAGE_SIZE {
        return Err("entry larger than any log page");
    }
    if offset_in_segment + header.size as u64 > segment_size {
        return Err("entry runs past the end of its segment");
    }
    Ok(())
}
