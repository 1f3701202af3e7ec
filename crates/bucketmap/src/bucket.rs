//! One bucket: a power-of-two table of fixed-size cells with linear probing, in an
//! `MmapFile`.
//!
//! Cell layout (little-endian): an 8-byte meta word (0 = empty; else the key's hash with bit
//! 63 set), the key bytes padded to 8, the value bytes padded to 8. A key's home cell is its
//! hash's low bits; it sits within `max_search` cells after home, with no empty cell between
//! (deletion shifts later entries back, so no tombstones are needed).

use std::path::{Path, PathBuf};

use talus_datapool::{Access, Datapool, MmapFile, MmapFileOptions};

use crate::config::MAX_BUCKET_CELLS;
use crate::error::{Error, Result};
use crate::manifest::BucketRecord;

const OCCUPIED: u64 = 1 << 63;
/// Bumped when the cell layout changes; part of every bucket file's user version.
const CELL_FORMAT_VERSION: u64 = 1;

/// The meta word a key with hash `hash` gets.
pub(crate) fn meta_of(hash: u64) -> u64 {
    hash | OCCUPIED
}

/// Sizes of a cell's parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) key_len: usize,
    pub(crate) value_len: usize,
    key_offset: usize,
    value_offset: usize,
    pub(crate) cell_len: usize,
}

impl Layout {
    pub(crate) fn new(key_len: usize, value_len: usize) -> Layout {
        let key_offset = 8;
        let value_offset = key_offset + key_len.div_ceil(8) * 8;
        let cell_len = value_offset + value_len.div_ceil(8) * 8;
        Layout { key_len, value_len, key_offset, value_offset, cell_len }
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

pub(crate) struct Bucket {
    pool: MmapFile,
    cell_len: usize,
    idx: usize,
    dir_idx: u32,
    generation: u64,
    mask: u64,
    n_entries: u64,
    n_resizes: u32,
    longest_probe: usize,
}

fn file_name(idx: usize, generation: u64) -> String {
    format!("bucket-{idx:05}-g{generation:010}.pool")
}

/// Whether `name` is a bucket file name (for discarding a map).
pub(crate) fn is_bucket_file(name: &str) -> bool {
    name.starts_with("bucket-") && (name.ends_with(".pool") || name.contains(".pool."))
}

impl Bucket {
    pub(crate) fn create(
        dir: &Path,
        dir_idx: u32,
        idx: usize,
        generation: u64,
        n_cells: u64,
        layout: &Layout,
    ) -> Result<Bucket> {
        assert!(n_cells.is_power_of_two() && n_cells <= MAX_BUCKET_CELLS);
        let path = dir.join(file_name(idx, generation));
        let data_len = usize::try_from(n_cells).ok().and_then(|n| n.checked_mul(layout.cell_len));
        let data_len = data_len.ok_or(Error::BucketTooLarge { max_cells: MAX_BUCKET_CELLS })?;
        let pool = MmapFileOptions::new().access(Access::Random).create(&path, data_len, layout.user_version())?;
        Ok(Bucket {
            pool,
            cell_len: layout.cell_len,
            idx,
            dir_idx,
            generation,
            mask: n_cells - 1,
            n_entries: 0,
            n_resizes: 0,
            longest_probe: 0,
        })
    }

    pub(crate) fn open(dir: &Path, idx: usize, record: &BucketRecord, layout: &Layout, verify: bool) -> Result<Bucket> {
        let path = dir.join(file_name(idx, record.generation));
        let data_len = usize::try_from(record.n_cells).ok().and_then(|n| n.checked_mul(layout.cell_len));
        let data_len = data_len.ok_or(Error::BucketTooLarge { max_cells: MAX_BUCKET_CELLS })?;
        let pool = MmapFileOptions::new().access(Access::Random).verify_checksum(verify).open(
            &path,
            data_len,
            layout.user_version(),
        )?;
        let mut bucket = Bucket {
            pool,
            cell_len: layout.cell_len,
            idx,
            dir_idx: record.dir_idx,
            generation: record.generation,
            mask: record.n_cells - 1,
            n_entries: 0,
            n_resizes: record.n_resizes,
            longest_probe: 0,
        };
        // The count is derived from the file itself, and must agree with the manifest.
        bucket.n_entries = (0..record.n_cells).filter(|&cell| bucket.meta(cell) != 0).count() as u64;
        if bucket.n_entries != record.n_entries {
            return Err(Error::CorruptManifest {
                path,
                reason: format!("bucket holds {} entries, the manifest says {}", bucket.n_entries, record.n_entries),
            });
        }
        Ok(bucket)
    }

    pub(crate) fn record(&self) -> BucketRecord {
        BucketRecord {
            generation: self.generation,
            n_cells: self.mask + 1,
            n_entries: self.n_entries,
            n_resizes: self.n_resizes,
            dir_idx: self.dir_idx,
        }
    }

    pub(crate) fn stats(&self) -> BucketStats {
        BucketStats {
            capacity: self.mask + 1,
            entries: self.n_entries,
            resizes: self.n_resizes,
            longest_probe: self.longest_probe,
        }
    }

    pub(crate) fn n_entries(&self) -> u64 {
        self.n_entries
    }

    pub(crate) fn path(&self) -> &Path {
        self.pool.path()
    }

    pub(crate) fn flush(&mut self) -> Result<()> {
        Ok(self.pool.flush()?)
    }

    /// The bucket's data bytes (for a snapshot).
    pub(crate) fn data(&self) -> &[u8] {
        self.pool.as_slice()
    }

    /// The name of this bucket's file.
    pub(crate) fn file_name(&self) -> String {
        file_name(self.idx, self.generation)
    }

    fn cell(&self, cell: u64) -> &[u8] {
        let start = cell as usize * self.cell_len;
        &self.pool.as_slice()[start..start + self.cell_len]
    }

    pub(crate) fn meta(&self, cell: u64) -> u64 {
        u64::from_le_bytes(self.cell(cell)[..8].try_into().expect("8 bytes"))
    }

    pub(crate) fn key<'a>(&'a self, cell: u64, layout: &Layout) -> &'a [u8] {
        &self.cell(cell)[layout.key_offset..layout.key_offset + layout.key_len]
    }

    pub(crate) fn value<'a>(&'a self, cell: u64, layout: &Layout) -> &'a [u8] {
        &self.cell(cell)[layout.value_offset..layout.value_offset + layout.value_len]
    }

    pub(crate) fn set_value(&mut self, cell: u64, layout: &Layout, value: &[u8]) {
        let start = cell as usize * layout.cell_len + layout.value_offset;
        self.pool.as_mut_slice()[start..start + layout.value_len].copy_from_slice(value);
    }

    fn write_cell(&mut self, cell: u64, layout: &Layout, meta: u64, key: &[u8], value: &[u8]) {
        let start = cell as usize * layout.cell_len;
        let bytes = &mut self.pool.as_mut_slice()[start..start + layout.cell_len];
        bytes[..8].copy_from_slice(&meta.to_le_bytes());
        bytes[layout.key_offset..layout.key_offset + layout.key_len].copy_from_slice(key);
        bytes[layout.value_offset..layout.value_offset + layout.value_len].copy_from_slice(value);
    }

    fn clear_cell(&mut self, cell: u64, layout: &Layout) {
        let start = cell as usize * layout.cell_len;
        self.pool.as_mut_slice()[start..start + layout.cell_len].fill(0);
    }

    fn copy_cell(&mut self, from: u64, to: u64, layout: &Layout) {
        let len = layout.cell_len;
        self.pool.as_mut_slice().copy_within(from as usize * len..from as usize * len + len, to as usize * len);
    }

    /// Starts loading the cache line of `hash`'s home cell (see [`talus_datapool::prefetch`]).
    pub(crate) fn prefetch(&self, hash: u64) {
        let start = (hash & self.mask) as usize * self.cell_len;
        talus_datapool::prefetch(&self.pool.as_slice()[start..]);
    }

    /// The cells of `hash`'s probe window, in order, up to the first empty cell.
    pub(crate) fn window(&self, hash: u64, max_search: usize) -> impl Iterator<Item = u64> + '_ {
        let home = hash & self.mask;
        let window = (max_search as u64).min(self.mask + 1);
        (0..window).map(move |distance| (home + distance) & self.mask).take_while(|&cell| self.meta(cell) != 0)
    }

    /// The cells holding `key` (hash `hash`), in probe order.
    pub(crate) fn matches<'a>(
        &'a self,
        hash: u64,
        key: &'a [u8],
        layout: &'a Layout,
        max_search: usize,
    ) -> impl Iterator<Item = u64> + 'a {
        let meta = meta_of(hash);
        self.window(hash, max_search).filter(move |&cell| self.meta(cell) == meta && self.key(cell, layout) == key)
    }

    /// Places a new entry in the first free cell of its window; `false` if there is none.
    fn try_place(&mut self, hash: u64, key: &[u8], value: &[u8], layout: &Layout, max_search: usize) -> bool {
        let home = hash & self.mask;
        let window = (max_search as u64).min(self.mask + 1);
        for distance in 0..window {
            let cell = (home + distance) & self.mask;
            if self.meta(cell) == 0 {
                self.write_cell(cell, layout, meta_of(hash), key, value);
                self.n_entries += 1;
                self.longest_probe = self.longest_probe.max(distance as usize);
                return true;
            }
        }
        false
    }

    /// Adds an entry (even if its key is present), growing the bucket as needed.
    pub(crate) fn insert_new(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        layout: &Layout,
        max_search: usize,
        dirs: &[PathBuf],
    ) -> Result<()> {
        while !self.try_place(hash, key, value, layout, max_search) {
            // Growing cannot separate entries that share the whole hash: refuse instead.
            let meta = meta_of(hash);
            let same_hash = self.window(hash, max_search).filter(|&cell| self.meta(cell) == meta).count();
            if same_hash >= max_search {
                return Err(Error::TooManyDuplicates { max_search });
            }
            let dir = dirs[self.dir_idx as usize].clone();
            self.grow(layout, max_search, &dir)?;
        }
        Ok(())
    }

    /// Doubles the table (again, until every entry fits its window) into a new file, then
    /// switches to it and deletes the old one.
    fn grow(&mut self, layout: &Layout, max_search: usize, dir: &Path) -> Result<()> {
        let old_path = self.pool.path().to_path_buf();
        let mut n_cells = (self.mask + 1) * 2;
        loop {
            if n_cells > MAX_BUCKET_CELLS {
                return Err(Error::BucketTooLarge { max_cells: MAX_BUCKET_CELLS });
            }
            let mut grown = Bucket::create(dir, self.dir_idx, self.idx, self.generation + 1, n_cells, layout)?;
            grown.n_resizes = self.n_resizes + 1;
            let mut all_fit = true;
            for cell in 0..=self.mask {
                let meta = self.meta(cell);
                if meta == 0 {
                    continue;
                }
                if !grown.try_place(
                    meta & !OCCUPIED,
                    self.key(cell, layout),
                    self.value(cell, layout),
                    layout,
                    max_search,
                ) {
                    all_fit = false;
                    break;
                }
            }
            if all_fit {
                debug_assert_eq!(grown.n_entries, self.n_entries);
                tracing::debug!(bucket = self.idx, n_cells, "bucket grew");
                *self = grown;
                remove_file(&old_path)?;
                return Ok(());
            }
            // Some window is still too crowded: drop this attempt and double again.
            let attempt = grown.pool.path().to_path_buf();
            drop(grown);
            remove_file(&attempt)?;
            n_cells *= 2;
        }
    }

    /// Removes the entry in `cell`, shifting later entries of the cluster back so every
    /// window stays gap-free.
    pub(crate) fn remove_cell(&mut self, cell: u64, layout: &Layout) {
        let mut hole = cell;
        self.clear_cell(hole, layout);
        self.n_entries -= 1;
        let mut next = hole;
        loop {
            next = (next + 1) & self.mask;
            let meta = self.meta(next);
            if meta == 0 {
                return;
            }
            let home = (meta & !OCCUPIED) & self.mask;
            // The entry at `next` may move into the hole only if its home is not cyclically
            // within (hole, next]: moving it must not put it before its home.
            let stays = if hole <= next { hole < home && home <= next } else { hole < home || home <= next };
            if !stays {
                self.copy_cell(next, hole, layout);
                self.clear_cell(next, layout);
                hole = next;
            }
        }
    }

    /// Every occupied cell.
    pub(crate) fn occupied(&self) -> impl Iterator<Item = u64> + '_ {
        (0..=self.mask).filter(move |&cell| self.meta(cell) != 0)
    }
}

fn remove_file(path: &PathBuf) -> Result<()> {
    std::fs::remove_file(path).map_err(crate::error::io_error("remove", path))
}
