//! `LogWriter`: copies the published part of the in-memory log to the segment files and
//! syncs them. One at a time (it lives under a mutex); the group commit leader, the
//! eviction path and close all go through it.

use std::sync::Arc;

use talus_ringbuf::{ENTRY_HEADER_LEN, EntryHeader, EntryState, RawRange, Ring};

use crate::error::{Result, io_error};
use crate::segment::{SEGMENT_HEADER_LEN, Segments, segment_path};
use crate::storage::StorageFile;

/// Where the log stands on disk.
#[derive(Debug)]
pub(crate) struct LogWriter {
    /// Everything below this is in the segment files (maybe not yet synced).
    pub(crate) written_until: u64,
    /// Everything below this is durable.
    pub(crate) synced_until: u64,
    /// Files written since their last sync.
    unsynced: Vec<(u64, Arc<dyn StorageFile>)>,
    /// How far ahead of the data the segment being written is filled with zeros (0: off).
    preallocation: u64,
    /// The segment being written, if preallocation is on and it has been written to.
    current: Option<Preallocated>,
    /// A block of zeros to write from (allocated on first use).
    zeros: Vec<u8>,
}

/// The segment being written: where its data ends and how far it is filled with zeros.
#[derive(Debug)]
struct Preallocated {
    first_address: u64,
    file: Arc<dyn StorageFile>,
    /// File offset just past the last byte of log written to it.
    data_end: u64,
    /// File offset up to which the file is written, with data or zeros.
    zeroed_until: u64,
}

/// Zeros are written one page at a time: a large write makes the page cache use large
/// folios, and a later small write dirties (and is accounted as writing) a whole folio.
const ZERO_PIECE: usize = 4096;

impl LogWriter {
    /// A writer appending at `log_end`, filling the segment it writes with zeros
    /// `preallocation` bytes ahead of the data (0: not at all).
    pub(crate) fn new(log_end: u64, preallocation: u64) -> LogWriter {
        LogWriter {
            written_until: log_end,
            synced_until: log_end,
            unsynced: Vec::new(),
            preallocation,
            current: None,
            zeros: Vec::new(),
        }
    }

    /// Takes up the zeros a killed process preallocated after `log_end` in its segment
    /// (when a reopen took the database up as it was): later writes overwrite them, and a
    /// clean close cuts what is left, as if this writer had written them.
    pub(crate) fn adopt_preallocation(&mut self, segments: &Segments, log_end: u64) -> Result<()> {
        let first_address = segments.first_address_of(log_end);
        let Some(file) = segments.file(first_address)? else { return Ok(()) };
        let path = segment_path(first_address);
        let file_len = file.len().map_err(io_error("read a segment's length", &path))?;
        let data_end = SEGMENT_HEADER_LEN + (log_end - first_address);
        if file_len > data_end {
            self.current = Some(Preallocated { first_address, file, data_end, zeroed_until: file_len });
        }
        Ok(())
    }

    /// Takes up the log a killed process left, durable up to `synced_until` (its last
    /// sync): the rest can only lie in the segment holding the log's last byte (a writer
    /// syncs each segment before it writes a later one), so that file is synced with the
    /// next commit instead of now. `false` (nothing changed) otherwise (`synced_until`
    /// before that segment, as a kill right after a roll-over can leave it, or the file
    /// missing): the caller syncs that segment now.
    pub(crate) fn take_up_unsynced(&mut self, segments: &Segments, synced_until: u64) -> bool {
        let log_end = self.written_until;
        if synced_until >= log_end {
            return synced_until == log_end;
        }
        let first_address = segments.first_address_of(log_end - 1);
        if synced_until < first_address {
            return false;
        }
        let Ok(Some(file)) = segments.file(first_address) else { return false };
        self.synced_until = synced_until;
        self.unsynced.push((first_address, file));
        true
    }

    /// Writes `[written_until, until)` from the ring to the segment files. `until` must be an
    /// entry boundary with everything below it published.
    pub(crate) fn write_until(&mut self, ring: &Ring, segments: &Segments, until: u64) -> Result<()> {
        let from = self.written_until;
        if until <= from {
            return Ok(());
        }
        let guard = ring.pin();
        let raw = guard.raw_range(from, until)?;
        let segment_size = segments.segment_size;
        let mut run_start = from;
        let mut address = from;
        while address < until {
            let word = word_at(&raw, (address - from) as usize);
            let header = EntryHeader::decode(word).expect("raw_range checked every entry header");
            let next = address + header.size as u64;
            if header.state == EntryState::Filler {
                // Only the filler's header goes to disk; the rest of the page stays a hole.
                self.write_run(&raw, from, run_start, address + ENTRY_HEADER_LEN as u64, segments)?;
                run_start = next;
            } else if next.is_multiple_of(segment_size) || next == until {
                self.write_run(&raw, from, run_start, next, segments)?;
                run_start = next;
            }
            address = next;
        }
        assert_eq!(address, until, "entries end exactly at the range's end");
        self.written_until = until;
        Ok(())
    }

    fn write_run(
        &mut self,
        raw: &RawRange<'_>,
        raw_start: u64,
        start: u64,
        end: u64,
        segments: &Segments,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let first_address = segments.first_address_of(start);
        assert!(end - first_address <= segments.segment_size, "a run never crosses a segment");
        // A later segment never holds bytes past a hole in an earlier one: before the first
        // write into a segment, the earlier segments' writes are made durable. (After a
        // power loss, then, only the last segment written can have a torn tail.)
        if self.unsynced.iter().any(|(address, _)| *address < first_address) {
            for (address, file) in &self.unsynced {
                if *address < first_address {
                    file.sync_data().map_err(io_error("sync the log", &segment_path(*address)))?;
                }
            }
            self.unsynced.retain(|(address, _)| *address >= first_address);
            // Runs are written in address order, so everything below this segment is now
            // written, and synced.
            self.synced_until = self.synced_until.max(first_address);
        }
        let file = segments.file_or_create(first_address)?;
        let path = segment_path(first_address);
        let file_offset = SEGMENT_HEADER_LEN + (start - first_address);
        let (lo, hi) = ((start - raw_start) as usize, (end - raw_start) as usize);
        let first_len = raw.first.len();
        if lo < first_len {
            let part = &raw.first[lo..hi.min(first_len)];
            file.write_at(part, file_offset).map_err(io_error("write the log", &path))?;
        }
        if hi > first_len {
            let part = &raw.second[lo.max(first_len) - first_len..hi - first_len];
            let offset = file_offset + (lo.max(first_len) - lo) as u64;
            file.write_at(part, offset).map_err(io_error("write the log", &path))?;
        }
        if self.preallocation > 0 {
            // A large commit (a bulk load's batches) pays for its journal commit many times
            // over; zeros ahead of it would only write it twice.
            let small_commit = end.saturating_sub(self.synced_until) <= self.preallocation / 4;
            self.preallocate(first_address, &file, file_offset + (end - start), segments.segment_size, small_commit)?;
        }
        if !self.unsynced.iter().any(|(address, _)| *address == first_address) {
            self.unsynced.push((first_address, file));
        }
        Ok(())
    }

    /// After a write that ends at file offset `data_end` of the segment at `first_address`:
    /// once the data reaches the zeros' end, fills the next `preallocation` bytes (up to the
    /// segment's end) with zeros, if `zero_ahead` (the commit is small). They are synced with the next commit, whose fdatasync then
    /// also records the file's new size; the commits after it only overwrite blocks the file
    /// has, which needs no journal commit.
    fn preallocate(
        &mut self,
        first_address: u64,
        file: &Arc<dyn StorageFile>,
        data_end: u64,
        segment_size: u64,
        zero_ahead: bool,
    ) -> Result<()> {
        let current = match &mut self.current {
            Some(current) if current.first_address == first_address => current,
            _ => self.current.insert(Preallocated {
                first_address,
                file: Arc::clone(file),
                data_end,
                zeroed_until: data_end,
            }),
        };
        current.data_end = current.data_end.max(data_end);
        if current.zeroed_until > data_end || !zero_ahead {
            return Ok(());
        }
        let from = data_end;
        let to = (data_end + self.preallocation).min(SEGMENT_HEADER_LEN + segment_size);
        current.zeroed_until = to;
        if self.zeros.is_empty() {
            self.zeros = vec![0u8; ZERO_PIECE];
        }
        let path = segment_path(first_address);
        let mut at = from;
        while at < to {
            let n = ((to - at) as usize).min(ZERO_PIECE);
            file.write_at(&self.zeros[..n], at).map_err(io_error("preallocate the log", &path))?;
            at += n as u64;
        }
        Ok(())
    }

    /// Cuts the zeros past the data of the segment being written (a clean close: the file
    /// then ends where the log does) and syncs that.
    pub(crate) fn trim_preallocation(&mut self) -> Result<()> {
        let Some(current) = self.current.take() else { return Ok(()) };
        if current.zeroed_until > current.data_end {
            let path = segment_path(current.first_address);
            current.file.set_len(current.data_end).map_err(io_error("trim the log's preallocation", &path))?;
            current.file.sync_data().map_err(io_error("sync the log", &path))?;
        }
        Ok(())
    }

    /// Syncs every file written since its last sync; everything written is then durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        for (first_address, file) in &self.unsynced {
            file.sync_data().map_err(io_error("sync the log", &segment_path(*first_address)))?;
        }
        self.unsynced.clear();
        self.synced_until = self.written_until;
        Ok(())
    }
}

/// The little-endian word at `offset` of a range that may wrap (headers never straddle the
/// wrap: both the region and entries are 8-byte aligned).
fn word_at(raw: &RawRange<'_>, offset: usize) -> u64 {
    let bytes = if offset < raw.first.len() {
        &raw.first[offset..offset + 8]
    } else {
        let offset = offset - raw.first.len();
        &raw.second[offset..offset + 8]
    };
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests;
