//! Index checkpoints: a copy of the index (every `(key hash, log address)` entry) and of the
//! per-segment accounting, as of one log address, so that recovery after a crash loads the
//! latest checkpoint and replays only the log written since, not the whole log
//! (docs/format.md, "Checkpoint files").
//!
//! A checkpoint is taken while writers go on. The entries are read bucket by bucket starting
//! at `replay_from` (the log's end then); the accounting and `covers_until` are taken under
//! the append lock once the entries are read. Every entry then reflects all records below
//! `replay_from` and none at or above `covers_until`, so replaying `[replay_from, end)` over
//! the entries (sequence numbers decide) gives the exact index, and the accounting is exact
//! from `covers_until` on. The log is synced up to `covers_until` before the file is
//! written: an entry never points at bytes a crash could take away.
//!
//! ```text
//! checkpoints/<covers_until as 16 hex digits>.ckpt
//! offset size field
//!      0    8 magic "TALUSCKP"
//!      8    4 version (1)
//!     12    4 header length (64)
//!     16    8 database id (as in the MANIFEST)
//!     24    8 replay_from: recovery replays the log from this address
//!     32    8 covers_until: every entry points below it; the accounting is as of it
//!     40    8 next sequence number at covers_until
//!     48    8 n_entries
//!     56    4 n_usage
//!     60    4 crc32c of bytes 0..60
//!     64 16·n entries: key hash (u64), log address (u64)
//!      .  32·u usage, as in the MANIFEST
//!      .    4 crc32c of bytes 64.. up to here
//!      .    4 zero
//! ```

use std::sync::Arc;

use crate::error::{Result, corruption, io_error};
use crate::manifest::{MAX_LISTED_SEGMENTS, SegmentUsage};
use crate::storage::{Storage, StorageFile, read_exact_at};

/// The directory of checkpoint files.
pub(crate) const CHECKPOINT_DIR: &str = "checkpoints";
const MAGIC: [u8; 8] = *b"TALUSCKP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;
const HEADER_CRC_OFFSET: usize = 60;
const ENTRY_LEN: usize = 16;
const USAGE_LEN: usize = 32;
const TRAILER_LEN: usize = 8;
/// How many checkpoints are kept: the newest, and the one before it in case the newest
/// turns out damaged.
pub(crate) const CHECKPOINTS_KEPT: usize = 2;
/// Entries are written and read in chunks of this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

const _: () = assert!(HEADER_CRC_OFFSET + 4 == HEADER_LEN && CHUNK_BYTES.is_multiple_of(ENTRY_LEN));

/// The path of the checkpoint covering the log up to `covers_until`.
pub(crate) fn checkpoint_path(covers_until: u64) -> String {
    format!("{CHECKPOINT_DIR}/{covers_until:016x}.ckpt")
}

/// The `covers_until` of a checkpoint file name, if it is one.
pub(crate) fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".ckpt")?;
    (hex.len() == 16 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// A checkpoint's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointHeader {
    pub(crate) db_id: u64,
    pub(crate) replay_from: u64,
    pub(crate) covers_until: u64,
    pub(crate) next_seq: u64,
    pub(crate) n_entries: u64,
    pub(crate) n_usage: u32,
}

impl CheckpointHeader {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out[16..24].copy_from_slice(&self.db_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.replay_from.to_le_bytes());
        out[32..40].copy_from_slice(&self.covers_until.to_le_bytes());
        out[40..48].copy_from_slice(&self.next_seq.to_le_bytes());
        out[48..56].copy_from_slice(&self.n_entries.to_le_bytes());
        out[56..60].copy_from_slice(&self.n_usage.to_le_bytes());
        let crc = crc32c::crc32c(&out[..HEADER_CRC_OFFSET]);
        out[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<CheckpointHeader, String> {
        if bytes.len() < HEADER_LEN {
            return Err("shorter than its header".to_owned());
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if bytes[0..8] != MAGIC {
            return Err("bad magic".to_owned());
        }
        if u32_at(HEADER_CRC_OFFSET) != crc32c::crc32c(&bytes[..HEADER_CRC_OFFSET]) {
            return Err("header checksum mismatch".to_owned());
        }
        if u32_at(8) != VERSION || u32_at(12) as usize != HEADER_LEN {
            return Err(format!("unsupported version {}", u32_at(8)));
        }
        let header = CheckpointHeader {
            db_id: u64_at(16),
            replay_from: u64_at(24),
            covers_until: u64_at(32),
            next_seq: u64_at(40),
            n_entries: u64_at(48),
            n_usage: u32_at(56),
        };
        if header.replay_from > header.covers_until
            || header.covers_until > u64::MAX / 4
            || header.n_usage as usize > MAX_LISTED_SEGMENTS
            || header.n_entries > u64::MAX / 64
        {
            return Err("field values out of range".to_owned());
        }
        Ok(header)
    }

    fn file_len(&self) -> u64 {
        HEADER_LEN as u64
            + self.n_entries * ENTRY_LEN as u64
            + u64::from(self.n_usage) * USAGE_LEN as u64
            + TRAILER_LEN as u64
    }
}

/// Writes a checkpoint file: entries first (streamed as the caller produces them), then
/// [`finish`](Self::finish) adds the accounting, the trailer and the header, syncs, and
/// renames the file into place.
pub(crate) struct CheckpointWriter {
    storage: Arc<dyn Storage>,
    file: Arc<dyn StorageFile>,
    temp_path: String,
    buf: Vec<u8>,
    offset: u64,
    crc: u32,
    n_entries: u64,
}

impl CheckpointWriter {
    pub(crate) fn create(storage: Arc<dyn Storage>) -> Result<CheckpointWriter> {
        storage.create_dir(CHECKPOINT_DIR).map_err(io_error("create the checkpoint directory", CHECKPOINT_DIR))?;
        let temp_path = format!("{CHECKPOINT_DIR}/checkpoint.tmp");
        let file = storage.open(&temp_path, true).map_err(io_error("create a checkpoint", &temp_path))?;
        file.set_len(0).map_err(io_error("create a checkpoint", &temp_path))?;
        Ok(CheckpointWriter {
            storage,
            file,
            temp_path,
            buf: Vec::with_capacity(CHUNK_BYTES),
            offset: HEADER_LEN as u64,
            crc: 0,
            n_entries: 0,
        })
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.file.write_at(&self.buf, self.offset).map_err(io_error("write a checkpoint", &self.temp_path))?;
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    pub(crate) fn push_entry(&mut self, hash: u64, address: u64) -> Result<()> {
        self.n_entries += 1;
        let mut entry = [0u8; ENTRY_LEN];
        entry[..8].copy_from_slice(&hash.to_le_bytes());
        entry[8..].copy_from_slice(&address.to_le_bytes());
        self.push_bytes(&entry)
    }

    /// Completes the file and makes it durable under its final name; returns that name and
    /// the file's length.
    pub(crate) fn finish(
        mut self,
        db_id: u64,
        replay_from: u64,
        covers_until: u64,
        next_seq: u64,
        usage: &[SegmentUsage],
    ) -> Result<(String, u64)> {
        for usage in usage {
            let mut bytes = [0u8; USAGE_LEN];
            for (idx, word) in
                [usage.first_address, usage.written_bytes, usage.live_bytes, usage.tombstone_bytes].iter().enumerate()
            {
                bytes[8 * idx..8 * idx + 8].copy_from_slice(&word.to_le_bytes());
            }
            self.push_bytes(&bytes)?;
        }
        self.flush_buf()?;
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[..4].copy_from_slice(&self.crc.to_le_bytes());
        self.file.write_at(&trailer, self.offset).map_err(io_error("write a checkpoint", &self.temp_path))?;
        let header = CheckpointHeader {
            db_id,
            replay_from,
            covers_until,
            next_seq,
            n_entries: self.n_entries,
            n_usage: u32::try_from(usage.len()).expect("bounded by MAX_LISTED_SEGMENTS"),
        };
        assert_eq!(header.file_len(), self.offset + TRAILER_LEN as u64, "the checkpoint's length adds up");
        self.file.write_at(&header.encode(), 0).map_err(io_error("write a checkpoint", &self.temp_path))?;
        self.file.sync_data().map_err(io_error("sync a checkpoint", &self.temp_path))?;
        let path = checkpoint_path(covers_until);
        self.storage.rename(&self.temp_path, &path).map_err(io_error("rename a checkpoint into place", &path))?;
        Ok((path, header.file_len()))
    }
}

/// A checkpoint read back.
pub(crate) struct LoadedCheckpoint {
    pub(crate) header: CheckpointHeader,
    pub(crate) usage: Vec<SegmentUsage>,
}

/// Reads the checkpoint at `path`, handing every entry to `entry` as it goes, and checks
/// every checksum. The caller must discard what `entry` built unless this returns `Ok`.
/// The header alone is checked first through [`read_header`].
pub(crate) fn load(
    file: &dyn StorageFile,
    path: &str,
    header: CheckpointHeader,
    entry: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<LoadedCheckpoint> {
    let entries_end = HEADER_LEN as u64 + header.n_entries * ENTRY_LEN as u64;
    let mut crc = 0u32;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut at = HEADER_LEN as u64;
    while at < entries_end {
        let len = (CHUNK_BYTES as u64).min(entries_end - at) as usize;
        read_exact_at(file, &mut buf[..len], at).map_err(|_| corruption(path, at, "checkpoint cut short"))?;
        crc = crc32c::crc32c_append(crc, &buf[..len]);
        for chunk in buf[..len].chunks_exact(ENTRY_LEN) {
            let hash = u64::from_le_bytes(chunk[..8].try_into().expect("8 bytes"));
            let address = u64::from_le_bytes(chunk[8..].try_into().expect("8 bytes"));
            entry(hash, address)?;
        }
        at += len as u64;
    }
    let mut tail = vec![0u8; header.n_usage as usize * USAGE_LEN + TRAILER_LEN];
    read_exact_at(file, &mut tail, at).map_err(|_| corruption(path, at, "checkpoint cut short"))?;
    let (usage_bytes, trailer) = tail.split_at(tail.len() - TRAILER_LEN);
    crc = crc32c::crc32c_append(crc, usage_bytes);
    if trailer[..4] != crc.to_le_bytes() || trailer[4..] != [0; 4] {
        return Err(corruption(path, at + usage_bytes.len() as u64, "checkpoint checksum mismatch"));
    }
    let usage = usage_bytes
        .chunks_exact(USAGE_LEN)
        .map(|bytes| {
            let word = |idx: usize| u64::from_le_bytes(bytes[8 * idx..8 * idx + 8].try_into().expect("8 bytes"));
            SegmentUsage {
                first_address: word(0),
                written_bytes: word(1),
                live_bytes: word(2),
                tombstone_bytes: word(3),
            }
        })
        .collect();
    Ok(LoadedCheckpoint { header, usage })
}

/// Reads and checks a checkpoint's header, and that the file is as long as it says.
pub(crate) fn read_header(file: &dyn StorageFile, path: &str) -> Result<CheckpointHeader> {
    let mut bytes = [0u8; HEADER_LEN];
    read_exact_at(file, &mut bytes, 0).map_err(|_| corruption(path, 0, "checkpoint shorter than its header"))?;
    let header = CheckpointHeader::decode(&bytes).map_err(|reason| corruption(path, 0, reason))?;
    let len = file.len().map_err(io_error("read a checkpoint's length", path))?;
    if len != header.file_len() {
        return Err(corruption(path, len, format!("checkpoint is {len} bytes, its header says {}", header.file_len())));
    }
    Ok(header)
}

#[cfg(test)]
mod tests;
