//! `Stats`: plain numbers a caller can log or export.

use std::time::Duration;

use crate::recovery::RepairReport;

/// A snapshot of a database's state and counters (see [`Db::stats`](crate::Db::stats)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys (index entries).
    pub n_keys: u64,
    /// The log's address range: `[log_begin, log_tail)`.
    pub log_begin: u64,
    /// The first address still in memory; below it records are read from segment files.
    pub log_head: u64,
    /// Everything below it is durable.
    pub log_synced_until: u64,
    /// Everything below it is written to the segment files.
    pub log_written_until: u64,
    /// Where the next record goes.
    pub log_tail: u64,
    /// Bytes of log, `log_tail - log_begin`.
    pub log_bytes: u64,
    /// Segment files.
    pub n_segments: u64,
    /// Segment files open now (at most [`Options::max_open_segments`](crate::Options::max_open_segments)).
    pub n_open_segments: u64,
    /// Bytes per segment file.
    pub segment_size: u64,
    /// The configured memory budget.
    pub memory_budget_bytes: u64,
    /// Memory of the in-memory log (the budget rounded down to a power of two).
    pub log_memory_bytes: u64,
    /// Bytes of the in-memory log holding records (`log_tail - log_head`).
    pub log_memory_used_bytes: u64,
    /// Size of the memory-mapped index files (counted apart from the budget).
    pub index_mapped_bytes: u64,
    /// The largest value accepted.
    pub max_value_len: u64,
    /// Whether the database is poisoned by an I/O failure.
    pub poisoned: bool,
    /// Per segment of the log: what it holds (live-byte accounting).
    pub segments: Vec<SegmentStats>,
    /// Bytes of live records (the ones the index points at), in all segments.
    pub live_bytes: u64,
    /// Bytes of delete records, in all segments.
    pub tombstone_bytes: u64,
    /// Bytes of superseded records, in all segments: what compaction can give back.
    pub dead_bytes: u64,
    /// Bytes of the segment files on disk (headers included).
    pub log_disk_bytes: u64,
    /// What happened at open.
    pub recovery: RecoveryStats,
    /// Operation counters since open.
    pub counters: Counters,
}

impl Stats {
    /// Space amplification of the log: its bytes on disk over the live bytes (infinite
    /// when nothing is live but the log holds bytes; 1 for an empty log).
    pub fn space_amplification(&self) -> f64 {
        match (self.log_disk_bytes, self.live_bytes) {
            (0, _) => 1.0,
            (_, 0) => f64::INFINITY,
            (disk, live) => disk as f64 / live as f64,
        }
    }
}

/// One segment's accounting (see [`Stats::segments`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentStats {
    /// The segment's first log address (its file is named by it).
    pub first_address: u64,
    /// Bytes of records written to it.
    pub written_bytes: u64,
    /// Bytes of its records the index points at.
    pub live_bytes: u64,
    /// Bytes of its delete records.
    pub tombstone_bytes: u64,
    /// Bytes of its superseded records.
    pub dead_bytes: u64,
}

/// What the last open did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// The database had been closed cleanly: the index was used as is, nothing replayed.
    pub clean: bool,
    /// The database's process had been killed, and the open took it up as the process left
    /// it (see [`Options::resume_after_kill`](crate::Options::resume_after_kill)): the index
    /// was used as is, nothing replayed.
    pub resumed: bool,
    /// Records of the log scanned to rebuild the index (after a checkpoint: from its
    /// `replay_from` on, those its index copy already held included; they are skipped).
    pub n_records_replayed: u64,
    /// Log bytes scanned.
    pub n_bytes_scanned: u64,
    /// Bytes of a torn tail cut off (unfinished records or batches).
    pub n_torn_bytes: u64,
    /// Time the open took.
    pub duration: Duration,
    /// What `repair` cut, if it cut anything.
    pub repair: Option<RepairReport>,
    /// The checkpoint the rebuild started from (the log address it covers), if any: only
    /// the log after it was replayed.
    pub checkpoint_covers_until: Option<u64>,
    /// Checkpoints found damaged, torn or unusable and passed over.
    pub n_checkpoints_rejected: u64,
}

/// Operation counters since open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Single puts.
    pub n_puts: u64,
    /// Single deletes.
    pub n_deletes: u64,
    /// Batches written.
    pub n_batches: u64,
    /// Lookups (`get`, `get_with`).
    pub n_gets: u64,
    /// Records read from segment files (not from memory).
    pub n_disk_reads: u64,
    /// fsyncs of the log.
    pub n_syncs: u64,
    /// Writes that waited for a sync (with group commit, several share one).
    pub n_durable_writes: u64,
    /// Records moved out of memory (they stay in the segment files).
    pub n_evicted: u64,
    /// Bytes appended to the log, by writes and by compaction.
    pub n_log_bytes_appended: u64,
    /// Compaction passes that compacted at least one segment.
    pub n_compaction_passes: u64,
    /// Segments compacted and removed.
    pub n_segments_compacted: u64,
    /// Bytes of live records compaction copied to the tail.
    pub n_compaction_bytes_copied: u64,
    /// Checkpoints written.
    pub n_checkpoints: u64,
}
