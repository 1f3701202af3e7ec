//! Live-byte accounting: for every segment, the bytes of records written to it, the bytes
//! of the records the index points at (live) and the bytes of delete records (tombstones).
//! The rest is garbage that compaction can give back. Kept in memory, updated under the
//! append lock as records are appended and superseded (so a snapshot taken under that lock
//! is exact for its log position), saved in the MANIFEST at a clean close and in every
//! checkpoint, mirrored as it changes into the live state (so a reopen after a kill takes
//! it up as it was), and rebuilt by the log replay after a crash.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use talus_ringbuf::ENTRY_HEADER_LEN;

use crate::live::LiveState;
use crate::manifest::SegmentUsage;

/// Bytes a record of this payload length takes in the log (entry header and padding).
pub(crate) fn entry_size(payload_len: usize) -> u64 {
    (ENTRY_HEADER_LEN + payload_len.div_ceil(8) * 8) as u64
}

#[derive(Debug, Default)]
struct Counts {
    written_bytes: AtomicU64,
    live_bytes: AtomicU64,
    tombstone_bytes: AtomicU64,
}

/// The accounting of every segment that holds records, by first address.
#[derive(Debug)]
pub(crate) struct UsageTable {
    segment_size: u64,
    segments: RwLock<BTreeMap<u64, Counts>>,
    /// Where every change is mirrored, once the open attached it.
    mirror: OnceLock<Arc<LiveState>>,
}

impl UsageTable {
    pub(crate) fn new(segment_size: u64, saved: &[SegmentUsage]) -> UsageTable {
        let segments = saved
            .iter()
            .map(|usage| {
                let counts = Counts {
                    written_bytes: AtomicU64::new(usage.written_bytes),
                    live_bytes: AtomicU64::new(usage.live_bytes),
                    tombstone_bytes: AtomicU64::new(usage.tombstone_bytes),
                };
                (usage.first_address, counts)
            })
            .collect();
        UsageTable { segment_size, segments: RwLock::new(segments), mirror: OnceLock::new() }
    }

    /// Mirrors every change from now on into `live` (which holds the table as it is now).
    pub(crate) fn attach(&self, live: Arc<LiveState>) {
        assert!(self.mirror.set(live).is_ok(), "a usage table is attached once");
    }

    fn with_counts(&self, address: u64, create: bool, f: impl Fn(&Counts)) {
        let first = address - address % self.segment_size;
        let mirror = |counts: &Counts| {
            if let Some(live) = self.mirror.get() {
                let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
                live.set_counts(
                    first,
                    load(&counts.written_bytes),
                    load(&counts.live_bytes),
                    load(&counts.tombstone_bytes),
                );
            }
        };
        if let Some(counts) = self.segments.read().get(&first) {
            f(counts);
            return mirror(counts);
        }
        if create {
            let mut segments = self.segments.write();
            let counts = segments.entry(first).or_insert_with(|| {
                if let Some(live) = self.mirror.get() {
                    live.claim_slot(first);
                }
                Counts::default()
            });
            f(counts);
            mirror(counts);
        }
    }

    /// A record of `size` bytes was appended at `address`: live if it is a put.
    pub(crate) fn appended(&self, address: u64, size: u64, is_tombstone: bool) {
        self.with_counts(address, true, |counts| {
            counts.written_bytes.fetch_add(size, Ordering::Relaxed);
            match is_tombstone {
                true => counts.tombstone_bytes.fetch_add(size, Ordering::Relaxed),
                false => counts.live_bytes.fetch_add(size, Ordering::Relaxed),
            };
        });
    }

    /// The live record of `size` bytes at `address` was superseded (overwritten, deleted or
    /// copied elsewhere by compaction).
    pub(crate) fn superseded(&self, address: u64, size: u64) {
        self.with_counts(address, false, |counts| {
            let _ = counts
                .live_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| Some(live.saturating_sub(size)));
        });
    }

    /// Adds `delta`'s counts (a replay worker's, see [`UsageDelta`]).
    fn add(&self, first: u64, delta: &DeltaCounts) {
        if delta.written_bytes + delta.live_added + delta.tombstone_bytes > 0 {
            self.with_counts(first, true, |counts| {
                counts.written_bytes.fetch_add(delta.written_bytes, Ordering::Relaxed);
                counts.live_bytes.fetch_add(delta.live_added, Ordering::Relaxed);
                counts.tombstone_bytes.fetch_add(delta.tombstone_bytes, Ordering::Relaxed);
            });
        }
        if delta.live_removed > 0 {
            self.superseded(first, delta.live_removed);
        }
    }

    /// The segment starting at `first` is gone.
    pub(crate) fn remove(&self, first: u64) {
        self.segments.write().remove(&first);
        if let Some(live) = self.mirror.get() {
            live.release_slot(first);
        }
    }

    /// Keeps only the segments `keep` says yes to.
    pub(crate) fn retain(&self, mut keep: impl FnMut(u64) -> bool) {
        let mirror = self.mirror.get();
        self.segments.write().retain(|&first, _| {
            let kept = keep(first);
            if let (false, Some(live)) = (kept, mirror) {
                live.release_slot(first);
            }
            kept
        });
    }

    /// Every segment's numbers, ascending by address.
    pub(crate) fn snapshot(&self) -> Vec<SegmentUsage> {
        self.segments
            .read()
            .iter()
            .map(|(&first_address, counts)| {
                let written_bytes = counts.written_bytes.load(Ordering::Relaxed);
                let live_bytes = counts.live_bytes.load(Ordering::Relaxed).min(written_bytes);
                let tombstone_bytes = counts.tombstone_bytes.load(Ordering::Relaxed).min(written_bytes - live_bytes);
                SegmentUsage { first_address, written_bytes, live_bytes, tombstone_bytes }
            })
            .collect()
    }
}

/// One batch's appends (and the records it supersedes), summed for the segment the batch is
/// appending to and added to the table when the batch moves on to another segment, and when
/// this is dropped: the batch must drop it while it still holds the append lock, as the
/// table's updates are made under that lock. A batch takes the table's lock once per segment
/// instead of once per record.
pub(crate) struct BatchUsage<'t> {
    table: &'t UsageTable,
    n_bytes_appended: &'t AtomicU64,
    /// The segment `counts` is for (`u64::MAX` before the first append).
    first: u64,
    counts: DeltaCounts,
    n_bytes: u64,
}

impl<'t> BatchUsage<'t> {
    /// Sums changes to `table`, and the bytes appended into `n_bytes_appended`.
    pub(crate) fn new(table: &'t UsageTable, n_bytes_appended: &'t AtomicU64) -> BatchUsage<'t> {
        BatchUsage { table, n_bytes_appended, first: u64::MAX, counts: DeltaCounts::default(), n_bytes: 0 }
    }

    fn first_of(&self, address: u64) -> u64 {
        address - address % self.table.segment_size
    }

    /// As [`UsageTable::appended`].
    pub(crate) fn appended(&mut self, address: u64, size: u64, is_tombstone: bool) {
        let first = self.first_of(address);
        if first != self.first {
            self.flush();
            self.first = first;
        }
        self.counts.written_bytes += size;
        match is_tombstone {
            true => self.counts.tombstone_bytes += size,
            false => self.counts.live_added += size,
        }
        self.n_bytes += size;
    }

    /// As [`UsageTable::superseded`].
    pub(crate) fn superseded(&mut self, address: u64, size: u64) {
        match self.first_of(address) == self.first {
            true => self.counts.live_removed += size,
            false => self.table.superseded(address, size),
        }
    }

    fn flush(&mut self) {
        if self.first != u64::MAX {
            self.table.add(self.first, &std::mem::take(&mut self.counts));
        }
        self.n_bytes_appended.fetch_add(std::mem::take(&mut self.n_bytes), Ordering::Relaxed);
    }
}

impl Drop for BatchUsage<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One segment's changes in a [`UsageDelta`].
#[derive(Debug, Default)]
struct DeltaCounts {
    written_bytes: u64,
    live_added: u64,
    tombstone_bytes: u64,
    live_removed: u64,
}

/// Changes to a [`UsageTable`] summed privately (by one replay worker) and added at the
/// end with [`add_to`](Self::add_to). A worker replays every record of its keys, so the
/// live bytes it removes from a segment are ones it added, or that the table held before:
/// adding the workers' sums one after another never takes a count below zero.
#[derive(Debug)]
pub(crate) struct UsageDelta {
    segment_size: u64,
    segments: BTreeMap<u64, DeltaCounts>,
}

impl UsageDelta {
    pub(crate) fn new(segment_size: u64) -> UsageDelta {
        UsageDelta { segment_size, segments: BTreeMap::new() }
    }

    fn counts(&mut self, address: u64) -> &mut DeltaCounts {
        self.segments.entry(address - address % self.segment_size).or_default()
    }

    /// As [`UsageTable::appended`].
    pub(crate) fn appended(&mut self, address: u64, size: u64, is_tombstone: bool) {
        let counts = self.counts(address);
        counts.written_bytes += size;
        match is_tombstone {
            true => counts.tombstone_bytes += size,
            false => counts.live_added += size,
        }
    }

    /// A record of `size` bytes was found at `address` that was already superseded when it
    /// was written (replay of an older version).
    pub(crate) fn appended_dead(&mut self, address: u64, size: u64) {
        self.counts(address).written_bytes += size;
    }

    /// As [`UsageTable::superseded`].
    pub(crate) fn superseded(&mut self, address: u64, size: u64) {
        self.counts(address).live_removed += size;
    }

    /// Adds every change to `table`.
    pub(crate) fn add_to(self, table: &UsageTable) {
        for (first, delta) in &self.segments {
            table.add(*first, delta);
        }
    }
}
