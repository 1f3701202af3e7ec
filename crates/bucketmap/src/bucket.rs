//! One bucket: a power-of-two table of fixed-size cells with linear probing, in a shared
//! `MmapFile`, read without locks.
//!
//! Cell layout (little-endian 64-bit words): a meta word (0 = empty; else the key's hash
//! with bit 63 set), the key bytes padded to whole words, the value bytes padded to whole
//! words. A key's home cell is its hash's low bits; it sits within `max_search` cells after
//! home, with no empty cell between (deletion shifts later entries back, so no tombstones
//! are needed).
//!
//! Concurrency: writers of a bucket take its mutex. Readers take nothing: they read the
//! current table's words (atomically) between two loads of the bucket's sequence number,
//! which a writer makes odd while it changes cells or switches tables, and try again if it
//! moved (a seqlock). A table that growth replaced is retired (its file deleted, its pages
//! swapped for zero pages) but stays mapped until the map is dropped, so a reader that
//! still looks at it reads zeros and then sees the sequence number moved.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard};
use talus_datapool::{Access, MmapFileOptions, SharedMmapFile};

use crate::config::MAX_BUCKET_CELLS;
use crate::error::{Error, Result};
use crate::live::LiveState;
use crate::manifest::BucketRecord;

const OCCUPIED: u64 = 1 << 63;
/// Bumped when the cell layout changes; part of every bucket file's user version.
const CELL_FORMAT_VERSION: u64 = 1;
/// Tables a bucket can have in one open: each growth at least doubles it, and a table has
/// at most `MAX_BUCKET_CELLS` (2^36) cells.
const MAX_TABLES: usize = 40;
/// Optimistic read attempts before a reader waits for the bucket's writer instead.
const OPTIMISTIC_READS: usize = 64;

/// The meta word a key with hash `hash` gets.
pub(crate) fn meta_of(hash: u64) -> u64 {
    hash | OCCUPIED
}

/// Sizes of a cell's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) key_len: usize,
    pub(crate) value_len: usize,
    key_words: usize,
    value_words: usize,
    cell_words: usize,
    pub(crate) cell_len: usize,
}

impl Layout {
    pub(crate) fn new(key_len: usize, value_len: usize) -> Layout {
        let key_words = key_len.div_ceil(8);
        let value_words = value_len.div_ceil(8);
        let cell_words = 1 + key_words + value_words;
        Layout { key_len, value_len, key_words, value_words, cell_words, cell_len: cell_words * 8 }
    }

    /// The bucket files' user version: cell format, key and value sizes. Opening a file
    /// made for other sizes is a typed error from the datapool.
    pub(crate) fn user_version(&self) -> u64 {
        (CELL_FORMAT_VERSION << 56) | ((self.key_len as u64) << 28) | self.value_len as u64
    }
}

/// What a bucket reports about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketStats {
    /// Cells in the table.
    pub capacity: u64,
    /// Occupied cells.
    pub entries: u64,
    /// Times the bucket grew (since it was created, across reopens).
    pub resizes: u32,
    /// The longest distance from home at which an insert placed an entry since open.
    pub longest_probe: usize,
}

/// Word `j` of `bytes` as stored: little-endian, the last one padded with zeros.
#[inline]
fn word_of(bytes: &[u8], j: usize) -> u64 {
    let start = j * 8;
    match bytes.get(start..start + 8) {
        Some(chunk) => u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
        None => {
            let mut word = [0u8; 8];
            let tail = bytes.get(start..).unwrap_or_default();
            word[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(word)
        }
    }
}

/// Fills `out` from `words` (little-endian).
#[inline]
fn load_bytes(words: &[AtomicU64], out: &mut [u8]) {
    let mut chunks = out.chunks_exact_mut(8);
    let mut words = words.iter();
    for (chunk, word) in (&mut chunks).zip(&mut words) {
        chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    if let Some(word) = words.next() {
        tail.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes()[..tail.len()]);
    }
}

#[inline]
fn store_bytes(words: &[AtomicU64], bytes: &[u8]) {
    for (j, word) in words.iter().enumerate() {
        word.store(word_of(bytes, j), Ordering::Relaxed);
    }
}

/// One table of cells: a bucket's data in one file.
pub(crate) struct Table {
    pool: SharedMmapFile,
    mask: u64,
    layout: Layout,
    generation: u64,
}

impl Table {
    fn create(dir: &Path, idx: usize, generation: u64, n_cells: u64, layout: &Layout) -> Result<Table> {
        assert!(n_cells.is_power_of_two() && n_cells <= MAX_BUCKET_CELLS);
        let path = dir.join(file_name(idx, generation));
        let data_len = usize::try_from(n_cells).ok().and_then(|n| n.checked_mul(layout.cell_len));
        let data_len = data_len.ok_or(Error::BucketTooLarge { max_cells: MAX_BUCKET_CELLS })?;
        let pool = options().create(&path, data_len, layout.user_version())?;
        Ok(Table { pool: SharedMmapFile::new(pool)?, mask: n_cells - 1, layout: *layout, generation })
    }

    /// Opens a bucket's table as `how` says.
    fn open(dir: &Path, idx: usize, record: &BucketRecord, layout: &Layout, how: OpenTable) -> Result<Table> {
        let path = Bucket::table_path(dir, idx, record);
        let data_len = usize::try_from(record.n_cells).ok().and_then(|n| n.checked_mul(layout.cell_len));
        let data_len = data_len.ok_or(Error::BucketTooLarge { max_cells: MAX_BUCKET_CELLS })?;
        let options = options()
            .verify_checksum(matches!(how, OpenTable::Check { verify: true }))
            .resume_dirty(how == OpenTable::Resume);
        let pool = options.open(&path, data_len, layout.user_version())?;
        Ok(Table {
            pool: SharedMmapFile::new(pool)?,
            mask: record.n_cells - 1,
            layout: *layout,
            generation: record.generation,
        })
    }

    fn n_cells(&self) -> u64 {
        self.mask + 1
    }

    #[inline]
    fn base(&self, cell: u64) -> usize {
        cell as usize * self.layout.cell_words
    }

    #[inline]
    pub(crate) fn meta(&self, cell: u64) -> u64 {
        self.pool.words()[self.base(cell)].load(Ordering::Relaxed)
    }

    #[inline]
    fn key_words(&self, cell: u64) -> &[AtomicU64] {
        let start = self.base(cell) + 1;
        &self.pool.words()[start..start + self.layout.key_words]
    }

    #[inline]
    fn value_words(&self, cell: u64) -> &[AtomicU64] {
        let start = self.base(cell) + 1 + self.layout.key_words;
        &self.pool.words()[start..start + self.layout.value_words]
    }

    /// Whether `cell` holds `key`.
    #[inline]
    fn key_is(&self, cell: u64, key: &[u8]) -> bool {
        self.key_words(cell).iter().enumerate().all(|(j, word)| word.load(Ordering::Relaxed) == word_of(key, j))
    }

    /// The key in `cell`.
    pub(crate) fn key<K: bytemuck::Pod>(&self, cell: u64) -> K {
        let mut key = K::zeroed();
        load_bytes(self.key_words(cell), bytemuck::bytes_of_mut(&mut key));
        key
    }

    /// The value in `cell`.
    #[inline]
    pub(crate) fn value<V: bytemuck::Pod>(&self, cell: u64) -> V {
        let mut value = V::zeroed();
        load_bytes(self.value_words(cell), bytemuck::bytes_of_mut(&mut value));
        value
    }

    /// The table's data, copied out word by word (for a snapshot).
    pub(crate) fn copy_to(&self, out: &mut [u8]) {
        load_bytes(self.pool.words(), out);
    }

    /// Starts loading the cache line of `hash`'s home cell (see [`talus_datapool::prefetch`]).
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        self.pool.prefetch(self.base(hash & self.mask));
    }

    /// The cells of `hash`'s probe window, in order, up to the first empty cell.
    #[inline]
    pub(crate) fn window(&self, hash: u64, max_search: usize) -> impl Iterator<Item = u64> + '_ {
        let home = hash & self.mask;
        let window = (max_search as u64).min(self.mask + 1);
        (0..window).map(move |distance| (home + distance) & self.mask).take_while(|&cell| self.meta(cell) != 0)
    }

    /// The cells holding `key` (hash `hash`), in probe order.
    #[inline]
    pub(crate) fn matches<'a>(&'a self, hash: u64, key: &'a [u8], max_search: usize) -> impl Iterator<Item = u64> + 'a {
        let meta = meta_of(hash);
        self.window(hash, max_search).filter(move |&cell| self.meta(cell) == meta && self.key_is(cell, key))
    }

    /// The first cell holding `key` (hash `hash`): [`matches`](Self::matches)`.next()`,
    /// written out for the lookup path.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8], max_search: usize) -> Option<u64> {
        let words = self.pool.words();
        let meta = meta_of(hash);
        let mut cell = hash & self.mask;
        for _ in 0..(max_search as u64).min(self.mask + 1) {
            let found = words[self.base(cell)].load(Ordering::Relaxed);
            if found == 0 {
                return None;
            }
            if found == meta && self.key_is(cell, key) {
                return Some(cell);
            }
            cell = (cell + 1) & self.mask;
        }
        None
    }

    /// Every occupied cell.
    pub(crate) fn occupied(&self) -> impl Iterator<Item = u64> + '_ {
        (0..=self.mask).filter(move |&cell| self.meta(cell) != 0)
    }

    fn write_cell(&self, cell: u64, meta: u64, key: &[u8], value: &[u8]) {
        let base = self.base(cell);
        // The key and value first, the meta word that makes the cell a match last.
        store_bytes(self.key_words(cell), key);
        store_bytes(self.value_words(cell), value);
        self.pool.words()[base].store(meta, Ordering::Relaxed);
    }

    fn set_value(&self, cell: u64, value: &[u8]) {
        store_bytes(self.value_words(cell), value);
    }

    fn clear_cell(&self, cell: u64) {
        let base = self.base(cell);
        for word in &self.pool.words()[base..base + self.layout.cell_words] {
            word.store(0, Ordering::Relaxed);
        }
    }

    fn copy_cell(&self, from: u64, to: u64) {
        let words = self.pool.words();
        let (from, to) = (self.base(from), self.base(to));
        for j in 0..self.layout.cell_words {
            words[to + j].store(words[from + j].load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The first free cell of `hash`'s window and its distance from home, if any.
    fn free_cell(&self, hash: u64, max_search: usize) -> Option<(u64, usize)> {
        let home = hash & self.mask;
        let window = (max_search as u64).min(self.mask + 1);
        (0..window)
            .map(|distance| ((home + distance) & self.mask, distance as usize))
            .find(|&(cell, _)| self.meta(cell) == 0)
    }
}

fn options() -> MmapFileOptions {
    // Lookups land anywhere: huge pages spare most TLB misses, and random-access advice
    // would keep the kernel from using them.
    MmapFileOptions::new().access(Access::Normal).huge_pages(true)
}

/// A bucket: its tables (the current one and those growth replaced since open) and the
/// writer's bookkeeping.
pub(crate) struct Bucket {
    /// Odd while a writer changes the current table's cells or switches tables (the
    /// readers' seqlock). Every value it takes is also stored in the live state, after it
    /// here, so a kill half-way through a change leaves it odd there.
    seq: AtomicU64,
    /// Where the bucket's sequence number, entry count and current table are recorded, in
    /// slot `idx`: the entry count is written only by the writer (under the mutex, so a
    /// plain store suffices), inside the odd/even bracket of the change that moves it.
    live: Arc<LiveState>,
    idx: usize,
    /// Index in `tables` of the current table.
    current: AtomicUsize,
    tables: Box<[OnceLock<Box<Table>>]>,
    writer: Mutex<Writer>,
}

/// What only the bucket's writer touches.
pub(crate) struct Writer {
    idx: usize,
    dir_idx: u32,
    n_resizes: u32,
    longest_probe: usize,
}

/// How a table is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenTable {
    /// A map closed cleanly: the file must be clean, its entries are counted and the count
    /// must agree with the manifest; `verify` also checks the data checksum.
    Check { verify: bool },
    /// A map closed cleanly in this boot whose file has not changed since (see
    /// `LiveState::unchanged_since_flush`): the file must be clean, nothing else is read.
    Trusted,
    /// A killed process's map (see `LiveState::resume`): clean or not, nothing is read;
    /// the live state's count is trusted.
    Resume,
}

/// A bucket locked for writing.
pub(crate) struct BucketGuard<'a> {
    bucket: &'a Bucket,
    writer: MutexGuard<'a, Writer>,
}

pub(crate) fn file_name(idx: usize, generation: u64) -> String {
    format!("bucket-{idx:05}-g{generation:010}.pool")
}

/// Whether `name` is a bucket file name (for discarding a map).
pub(crate) fn is_bucket_file(name: &str) -> bool {
    name.starts_with("bucket-") && (name.ends_with(".pool") || name.contains(".pool."))
}

impl Bucket {
    /// A bucket whose table is `table`; `live`'s slot `idx` already describes it.
    pub(crate) fn with_table(table: Table, live: Arc<LiveState>, writer: Writer) -> Bucket {
        let tables: Box<[OnceLock<Box<Table>>]> = (0..MAX_TABLES).map(|_| OnceLock::new()).collect();
        assert!(tables[0].set(Box::new(table)).is_ok(), "a new bucket's first table is free");
        Bucket {
            seq: AtomicU64::new(0),
            idx: writer.idx,
            live,
            current: AtomicUsize::new(0),
            tables,
            writer: Mutex::new(writer),
        }
    }

    /// The number of entries (without waiting for a writer).
    pub(crate) fn n_entries(&self) -> u64 {
        self.live.n_entries(self.idx).load(Ordering::Relaxed)
    }

    /// Ends a change begun with [`begin_change`](Self::begin_change), which returned `odd`.
    fn end_change(&self, odd: u64) {
        self.seq.store(odd + 1, Ordering::Release);
        // Release too: no store of the change may be moved after it (a kill sees the
        // killed thread's stores in program order).
        self.live.seq(self.idx).store(odd + 1, Ordering::Release);
    }

    /// Creates bucket `idx`'s first table; returns it and the bucket's record.
    pub(crate) fn create_table(
        dir: &Path,
        dir_idx: u32,
        idx: usize,
        n_cells: u64,
        layout: &Layout,
    ) -> Result<(Table, Writer, BucketRecord)> {
        let table = Table::create(dir, idx, 0, n_cells, layout)?;
        let record = BucketRecord { generation: 0, n_cells, n_entries: 0, n_resizes: 0, dir_idx };
        Ok((table, Writer { idx, dir_idx, n_resizes: 0, longest_probe: 0 }, record))
    }

    /// Opens bucket `idx`'s table as `record` describes it (see [`OpenTable`]).
    pub(crate) fn open_table(
        dir: &Path,
        idx: usize,
        record: &BucketRecord,
        layout: &Layout,
        how: OpenTable,
    ) -> Result<(Table, Writer)> {
        let table = Table::open(dir, idx, record, layout, how)?;
        if let OpenTable::Check { .. } = how {
            let n_entries = table.occupied().count() as u64;
            if n_entries != record.n_entries {
                return Err(Error::CorruptManifest {
                    path: table.pool.path().to_path_buf(),
                    reason: format!("bucket holds {n_entries} entries, the manifest says {}", record.n_entries),
                });
            }
        }
        let writer = Writer { idx, dir_idx: record.dir_idx, n_resizes: record.n_resizes, longest_probe: 0 };
        Ok((table, writer))
    }

    /// The file of bucket `idx`'s table as `record` names it, in `dir`.
    pub(crate) fn table_path(dir: &Path, idx: usize, record: &BucketRecord) -> PathBuf {
        dir.join(file_name(idx, record.generation))
    }

    /// The current table.
    #[inline]
    pub(crate) fn table(&self) -> &Table {
        self.tables[self.current.load(Ordering::Acquire)].get().expect("the current table is set before it is current")
    }

    /// Runs `read` on the current table without a lock, again until no writer changed the
    /// bucket meanwhile; `read` must tolerate torn and zeroed cells (its result is then
    /// thrown away) and must not act on what it reads. After many tries it waits for the
    /// writer's lock instead.
    #[inline(always)]
    pub(crate) fn read<R>(&self, mut read: impl FnMut(&Table) -> R) -> R {
        let seq_word = &self.seq;
        for _ in 0..OPTIMISTIC_READS {
            let seq = seq_word.load(Ordering::Acquire);
            if seq & 1 == 0 {
                let result = read(self.table());
                fence(Ordering::Acquire);
                if seq_word.load(Ordering::Relaxed) == seq {
                    return result;
                }
            }
            std::hint::spin_loop();
        }
        let _writer = self.writer.lock();
        read(self.table())
    }

    /// Makes the sequence number odd before a change (under the writer's lock) and returns
    /// it; the change ends by storing it plus one. Odd already only if a change panicked
    /// half-way: it stays odd, so the next change still ends on an even number.
    fn begin_change(&self) -> u64 {
        let odd = self.seq.load(Ordering::Relaxed) | 1;
        self.seq.store(odd, Ordering::Relaxed);
        self.live.seq(self.idx).store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        odd
    }

    /// Locks the bucket for writing.
    pub(crate) fn lock(&self) -> BucketGuard<'_> {
        BucketGuard { bucket: self, writer: self.writer.lock() }
    }
}

impl BucketGuard<'_> {
    /// The current table (only this guard's holder switches it).
    pub(crate) fn table(&self) -> &Table {
        self.bucket.table()
    }

    /// Makes the changes `change` makes to the current table visible to readers as one
    /// step: the sequence number is odd meanwhile.
    fn change<R>(&mut self, change: impl FnOnce(&Table) -> R) -> R {
        let table = self.bucket.table();
        table.pool.mark_dirty();
        let odd = self.bucket.begin_change();
        let result = change(table);
        self.bucket.end_change(odd);
        result
    }

    /// Counts entries added (or, negative, removed), inside the change that adds or removes
    /// them (so the live state's count always matches the cells of an even sequence
    /// number); only the lock holder writes the count.
    fn add_entries(bucket: &Bucket, delta: i64) {
        let n_entries = bucket.n_entries().wrapping_add_signed(delta);
        bucket.live.n_entries(bucket.idx).store(n_entries, Ordering::Relaxed);
    }

    pub(crate) fn record(&self) -> BucketRecord {
        let table = self.table();
        BucketRecord {
            generation: table.generation,
            n_cells: table.n_cells(),
            n_entries: self.bucket.n_entries(),
            n_resizes: self.writer.n_resizes,
            dir_idx: self.writer.dir_idx,
        }
    }

    pub(crate) fn stats(&self) -> BucketStats {
        BucketStats {
            capacity: self.table().n_cells(),
            entries: self.bucket.n_entries(),
            resizes: self.writer.n_resizes,
            longest_probe: self.writer.longest_probe,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.table().pool.path()
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        Ok(self.table().pool.flush()?)
    }

    /// The name of this bucket's file.
    pub(crate) fn file_name(&self) -> String {
        file_name(self.writer.idx, self.table().generation)
    }

    pub(crate) fn set_value(&mut self, cell: u64, value: &[u8]) {
        self.change(|table| table.set_value(cell, value));
    }

    /// Places a new entry in the first free cell of its window; `false` if there is none.
    fn try_place(&mut self, hash: u64, key: &[u8], value: &[u8], max_search: usize) -> bool {
        let Some((cell, distance)) = self.table().free_cell(hash, max_search) else { return false };
        let bucket = self.bucket;
        self.change(|table| {
            table.write_cell(cell, meta_of(hash), key, value);
            Self::add_entries(bucket, 1);
        });
        self.writer.longest_probe = self.writer.longest_probe.max(distance);
        true
    }

    /// Adds an entry (even if its key is present), growing the bucket as needed.
    pub(crate) fn insert_new(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        max_search: usize,
        dirs: &[PathBuf],
    ) -> Result<()> {
        while !self.try_place(hash, key, value, max_search) {
            // Growing cannot separate entries that share the whole hash: refuse instead.
            let meta = meta_of(hash);
            let table = self.bucket.table();
            let same_hash = table.window(hash, max_search).filter(|&cell| table.meta(cell) == meta).count();
            if same_hash >= max_search {
                return Err(Error::TooManyDuplicates { max_search });
            }
            let dir = dirs[self.writer.dir_idx as usize].clone();
            self.grow(max_search, &dir)?;
        }
        Ok(())
    }

    /// Doubles the table (again, until every entry fits its window) into a new file, then
    /// switches to it and retires the old one.
    fn grow(&mut self, max_search: usize, dir: &Path) -> Result<()> {
        let bucket = self.bucket;
        let old = bucket.table();
        let next = self.bucket.current.load(Ordering::Relaxed) + 1;
        if next >= MAX_TABLES {
            return Err(Error::BucketTooLarge { max_cells: MAX_BUCKET_CELLS });
        }
        let mut n_cells = old.n_cells() * 2;
        let grown = loop {
            if n_cells > MAX_BUCKET_CELLS {
                return Err(Error::BucketTooLarge { max_cells: MAX_BUCKET_CELLS });
            }
            // Nobody else sees the new table yet: it is filled without the sequence number.
            let grown = Table::create(dir, self.writer.idx, old.generation + 1, n_cells, &old.layout)?;
            grown.pool.mark_dirty();
            let all_fit = old.occupied().all(|cell| {
                let meta = old.meta(cell);
                match grown.free_cell(meta & !OCCUPIED, max_search) {
                    Some((free, _)) => {
                        copy_between(old, cell, &grown, free);
                        true
                    }
                    None => false,
                }
            });
            if all_fit {
                break grown;
            }
            // Some window is still too crowded: drop this attempt and double again.
            let attempt = grown.pool.path().to_path_buf();
            drop(grown);
            remove_file(&attempt)?;
            n_cells *= 2;
        };
        tracing::debug!(bucket = self.writer.idx, n_cells, "bucket grew");
        assert!(self.bucket.tables[next].set(Box::new(grown)).is_ok(), "table slots are only filled here");
        self.writer.n_resizes += 1;
        let odd = self.bucket.begin_change();
        self.bucket.current.store(next, Ordering::Release);
        self.bucket.live.set_table(self.writer.idx, old.generation + 1, n_cells, self.writer.n_resizes);
        self.bucket.end_change(odd);
        // Readers may still be in the old table: it keeps its address (as zero pages) until
        // the map is dropped, but its file and memory go now.
        if let Err(error) = old.pool.retire() {
            tracing::warn!(%error, "a replaced bucket table could not be retired; it is kept until the map is dropped");
        }
        Ok(())
    }

    /// Removes the entry in `cell`, shifting later entries of the cluster back so every
    /// window stays gap-free.
    pub(crate) fn remove_cell(&mut self, cell: u64) {
        let bucket = self.bucket;
        self.change(|table| {
            Self::add_entries(bucket, -1);
            let mut hole = cell;
            table.clear_cell(hole);
            let mut next = hole;
            loop {
                next = (next + 1) & table.mask;
                let meta = table.meta(next);
                if meta == 0 {
                    return;
                }
                let home = (meta & !OCCUPIED) & table.mask;
                // The entry at `next` may move into the hole only if its home is not
                // cyclically within (hole, next]: moving it must not put it before its home.
                let stays = if hole <= next { hole < home && home <= next } else { hole < home || home <= next };
                if !stays {
                    table.copy_cell(next, hole);
                    table.clear_cell(next);
                    hole = next;
                }
            }
        });
    }
}

/// Copies cell `from` of `source` into the empty cell `to` of `target`.
fn copy_between(source: &Table, from: u64, target: &Table, to: u64) {
    let (words, target_words) = (source.pool.words(), target.pool.words());
    let (from, to) = (source.base(from), target.base(to));
    for j in 0..source.layout.cell_words {
        target_words[to + j].store(words[from + j].load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

fn remove_file(path: &PathBuf) -> Result<()> {
    std::fs::remove_file(path).map_err(crate::error::io_error("remove", path))
}
