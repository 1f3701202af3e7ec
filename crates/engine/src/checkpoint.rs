//! Index checkpoints: a copy of the index and of the per-segment accounting as of one log
//! address, so that recovery after a crash starts from the copy and replays only the log
//! written since, not the whole log (docs/format.md, "Checkpoints").
//!
//! A checkpoint is a directory, `<covers_until as 16 hex digits>/` in the checkpoint
//! directory, holding `index/` (the bucket map's own snapshot: its MANIFEST and bucket
//! files, which open as a clean map) and `CHECKPOINT` (this module's file, below). Recovery
//! copies `index/` into place (a sequential file copy, instead of inserting every entry
//! again) and opens it, which verifies every bucket file's checksum.
//!
//! The copy is taken while writers go on. `replay_from` is the log's end when it starts;
//! the buckets are copied one at a time after that, and just before each is copied the log's
//! end is noted again as that bucket's own `replay_from`; `covers_until`, the accounting and
//! `next_seq` are read under the append lock once they are all copied. (Each of these ends
//! is read once every key stripe has been free for a moment after it: a writer updates the
//! index before it lets go of its stripe, so every record below it is in the index.) Every
//! entry of a bucket's copy then reflects all records below the bucket's `replay_from` and
//! none at or above `covers_until`, so replaying `[replay_from, end)` over the copy, each
//! record only from its key's bucket's `replay_from` on (sequence numbers decide), gives the
//! exact index, and the accounting is exact from `covers_until` on. The log is synced up to
//! `covers_until` before `CHECKPOINT` is written: no entry points at bytes a crash could
//! take away.
//!
//! ```text
//! CHECKPOINT
//! offset size field
//!      0    8 magic "TALUSCKP"
//!      8    4 version (2)
//!     12    4 length of the file (80 + 32·n_usage + 8·n_segments + 8·n_buckets)
//!     16    8 database id (as in the MANIFEST)
//!     24    8 replay_from: recovery replays the log from this address
//!     32    8 covers_until: every entry points below it; the accounting is as of it
//!     40    8 next sequence number at covers_until
//!     48    8 n_entries: entries in the index copy
//!     56    4 n_usage
//!     60    4 n_segments
//!     64 32·u usage, as in the MANIFEST
//!      .  8·s the log's segments at covers_until (first addresses, ascending)
//!      .    4 n_buckets: the index copy's buckets
//!      .    4 zero
//!      .  8·b per bucket, in order: the address its replay starts at (from replay_from
//!             to covers_until)
//!      .    4 crc32c of every byte before it
//!      .    4 zero
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, corruption};
use crate::manifest::{MAX_LISTED_SEGMENTS, SegmentUsage};

/// The name of a checkpoint's metadata file.
pub(crate) const CHECKPOINT_FILE: &str = "CHECKPOINT";
/// The directory of the index copy inside a checkpoint.
pub(crate) const CHECKPOINT_INDEX_DIR: &str = "index";
/// A checkpoint being written (removed if a crash left it).
pub(crate) const CHECKPOINT_TEMP: &str = "checkpoint.tmp";
const MAGIC: [u8; 8] = *b"TALUSCKP";
const VERSION: u32 = 2;
const HEADER_LEN: usize = 64;
const USAGE_LEN: usize = SegmentUsage::ENCODED_LEN;
const TRAILER_LEN: usize = 8;
/// How many checkpoints are kept: the newest, and the one before it in case the newest
/// turns out damaged.
pub(crate) const CHECKPOINTS_KEPT: usize = 2;
/// The most buckets an index has.
const MAX_BUCKETS: usize = 1 << talus_bucketmap::MAX_BUCKET_BITS;
/// The longest `CHECKPOINT` file read (every list at its limit).
const MAX_FILE_LEN: usize = HEADER_LEN + (USAGE_LEN + 8) * MAX_LISTED_SEGMENTS + 8 + 8 * MAX_BUCKETS + TRAILER_LEN;

/// The directory name of the checkpoint covering the log up to `covers_until`.
pub(crate) fn checkpoint_name(covers_until: u64) -> String {
    format!("{covers_until:016x}")
}

/// The `covers_until` of a checkpoint directory name, if it is one.
pub(crate) fn parse_checkpoint_name(name: &str) -> Option<u64> {
    (name.len() == 16 && name.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| u64::from_str_radix(name, 16).ok())
        .flatten()
}

/// A checkpoint's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CheckpointMeta {
    pub(crate) db_id: u64,
    pub(crate) replay_from: u64,
    pub(crate) covers_until: u64,
    pub(crate) next_seq: u64,
    pub(crate) n_entries: u64,
    pub(crate) usage: Vec<SegmentUsage>,
    /// The segments of the log when the checkpoint was taken: entries may point into any
    /// of them, and only into them.
    pub(crate) segments: Vec<u64>,
    /// Per bucket of the index copy: where the replay of its keys' records starts (the
    /// copy reflects every record of its keys below it).
    pub(crate) bucket_replay_from: Vec<u64>,
}

impl CheckpointMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        assert!(self.usage.len() <= MAX_LISTED_SEGMENTS && self.segments.len() <= MAX_LISTED_SEGMENTS);
        assert!(self.bucket_replay_from.len() <= MAX_BUCKETS);
        let len = HEADER_LEN
            + USAGE_LEN * self.usage.len()
            + 8 * self.segments.len()
            + 8
            + 8 * self.bucket_replay_from.len()
            + TRAILER_LEN;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        for word in [self.db_id, self.replay_from, self.covers_until, self.next_seq, self.n_entries] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&(self.usage.len() as u32).to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for usage in &self.usage {
            usage.encode_into(&mut out);
        }
        for first in &self.segments {
            out.extend_from_slice(&first.to_le_bytes());
        }
        out.extend_from_slice(&(self.bucket_replay_from.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for from in &self.bucket_replay_from {
            out.extend_from_slice(&from.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(out.len(), len);
        debug_assert_eq!(CheckpointMeta::decode(&out).as_ref(), Ok(self), "a checkpoint reads back as written");
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<CheckpointMeta, String> {
        if bytes.len() < HEADER_LEN + TRAILER_LEN {
            return Err(format!("{} bytes, shorter than any checkpoint", bytes.len()));
        }
        if bytes[0..8] != MAGIC {
            return Err("bad magic".to_owned());
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if u32_at(8) != VERSION {
            return Err(format!("unsupported version {}", u32_at(8)));
        }
        let (n_usage, n_segments) = (u32_at(56) as usize, u32_at(60) as usize);
        if n_usage > MAX_LISTED_SEGMENTS || n_segments > MAX_LISTED_SEGMENTS {
            return Err("list lengths out of range".to_owned());
        }
        let buckets_at = HEADER_LEN + USAGE_LEN * n_usage + 8 * n_segments;
        if bytes.len() < buckets_at + 8 + TRAILER_LEN || u32_at(12) as usize != bytes.len() {
            return Err(format!("{} bytes, the header says {}", bytes.len(), u32_at(12)));
        }
        let n_buckets = u32_at(buckets_at) as usize;
        if n_buckets > MAX_BUCKETS || u32_at(buckets_at + 4) != 0 {
            return Err("bucket count out of range".to_owned());
        }
        let crc_offset = buckets_at + 8 + 8 * n_buckets;
        if bytes.len() != crc_offset + TRAILER_LEN {
            return Err(format!("{} bytes, the lists take {}", bytes.len(), crc_offset + TRAILER_LEN));
        }
        if u32_at(crc_offset) != crc32c::crc32c(&bytes[..crc_offset]) || u32_at(crc_offset + 4) != 0 {
            return Err("checksum mismatch".to_owned());
        }
        let usage = SegmentUsage::decode_list(&bytes[HEADER_LEN..HEADER_LEN + USAGE_LEN * n_usage]);
        let segments_at = HEADER_LEN + USAGE_LEN * n_usage;
        let segments = (0..n_segments).map(|idx| u64_at(segments_at + 8 * idx)).collect();
        let bucket_replay_from = (0..n_buckets).map(|idx| u64_at(buckets_at + 8 + 8 * idx)).collect();
        let meta = CheckpointMeta {
            db_id: u64_at(16),
            replay_from: u64_at(24),
            covers_until: u64_at(32),
            next_seq: u64_at(40),
            n_entries: u64_at(48),
            usage,
            segments,
            bucket_replay_from,
        };
        if meta.replay_from > meta.covers_until || meta.covers_until > u64::MAX / 4 {
            return Err("field values out of range".to_owned());
        }
        if meta.bucket_replay_from.iter().any(|&from| from < meta.replay_from || from > meta.covers_until) {
            return Err("a bucket's replay start is outside [replay_from, covers_until]".to_owned());
        }
        Ok(meta)
    }

    /// Reads and checks the metadata of the checkpoint in `dir`.
    pub(crate) fn read(dir: &Path) -> Result<CheckpointMeta> {
        let path = dir.join(CHECKPOINT_FILE);
        let shown = path.display().to_string();
        let len = std::fs::metadata(&path)
            .map_err(|source| Error::Io { op: "read a checkpoint", file: shown.clone(), source })?
            .len();
        if len > MAX_FILE_LEN as u64 {
            return Err(corruption(&shown, 0, format!("{len} bytes, longer than any checkpoint")));
        }
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            op: "read a checkpoint",
            file: shown.clone(),
            source,
        })?;
        CheckpointMeta::decode(&bytes).map_err(|reason| corruption(&shown, 0, reason))
    }
}

/// Writes `bytes` to `path` and syncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs a directory (its entries).
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

/// The checkpoints in `dir`, newest first.
pub(crate) fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { op: "list the checkpoints", file: dir.display().to_string(), source }),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            op: "list the checkpoints",
            file: dir.display().to_string(),
            source,
        })?;
        if let Some(covers_until) = entry.file_name().to_str().and_then(parse_checkpoint_name) {
            found.push((covers_until, entry.path()));
        }
    }
    found.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.0));
    Ok(found)
}

#[cfg(test)]
mod tests;
