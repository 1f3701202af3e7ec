//! `MemStorage`: files in memory for tests. It remembers, for every file, both what reads
//! return and what a power loss would leave, so a test can crash the machine at any instant
//! ([`MemStorage::crash`]) and make writes and syncs fail on demand.
//!
//! The durability model. Creating a directory or a file, replacing one with
//! [`write_atomic`](Storage::write_atomic) and removing one are durable when they return, as
//! [`Storage`] promises. A file's data has two versions: `current`, what reads return, and
//! `durable`, what the disk holds. Between them lies the list of pending operations (writes
//! and `set_len`s) made since the last sync, in order. A successful `sync_data` applies them
//! to `durable`. A failed one throws them away, as Linux does with pages whose writeback
//! failed: reads still return that data, but it never reaches the disk, not even through a
//! later successful sync.
//!
//! Lock order: the directory tree's mutex before a file's mutex; the lock table's mutex is
//! never held with either.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::iter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Storage, StorageFile, StorageLock};

#[cfg(test)]
mod tests;

/// The longest file the simulation holds (16 GiB). A write or `set_len` that would make a file
/// longer fails with [`io::ErrorKind::FileTooLarge`] and changes nothing, rather than asking
/// the allocator for the memory.
const MAX_FILE_LEN_BYTES: u64 = 1 << 34;

/// What a crash leaves of the writes that were not yet synced (see [`MemStorage::crash`]).
/// Writes lost to a failed sync are gone in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// A power loss: every write since the file's last successful sync is lost.
    DropUnsynced,
    /// A killed process: the OS still has every write (the page cache survives).
    KeepUnsynced,
    /// A power loss mid-writeback: for each file, a prefix (chosen by the seed) of its unsynced
    /// writes survives, and the last surviving write may be cut at a random byte.
    Tear {
        /// Picks, together with each file's path, how much of that file survives; the same
        /// seed on the same history always gives the same result.
        seed: u64,
    },
}

/// Files and directories in memory, with injected failures and simulated crashes (see the
/// module documentation for the durability model). Clones share the same files, locks and
/// fault counters; [`crash`](Self::crash) makes an independent copy.
///
/// ```
/// use talus_engine::storage::{CrashMode, MemStorage, Storage as _};
///
/// let storage = MemStorage::new();
/// let file = storage.open("MANIFEST", true)?;
/// file.write_at(b"synced", 0)?;
/// file.sync_data()?;
/// file.write_at(b" and not", 6)?;
/// assert_eq!(storage.read("MANIFEST")?, b"synced and not");
/// let after_power_loss = storage.crash(CrashMode::DropUnsynced);
/// assert_eq!(after_power_loss.read("MANIFEST")?, b"synced");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    shared: Arc<Shared>,
}

/// What the clones of one `MemStorage` share.
#[derive(Debug, Default)]
struct Shared {
    tree: Mutex<Tree>,
    /// Shared with every file, which counts syncs and consults the injected failures.
    faults: Arc<Faults>,
    /// Shared with every held lock, which removes its path when dropped.
    locks: Arc<Mutex<BTreeSet<String>>>,
}

/// The directories and the files in them.
#[derive(Debug, Default)]
struct Tree {
    /// Every directory but the root (`""`), which always exists.
    dirs: BTreeSet<String>,
    /// Every file by path. Open handles hold the same `Arc`, so a removed or replaced file
    /// lives on for them (as an unlinked inode does) but is no longer reachable by path.
    files: BTreeMap<String, Arc<MemFile>>,
}

/// The failures still to inject, and the successful syncs so far.
#[derive(Debug, Default)]
struct Faults {
    n_syncs_to_fail: AtomicU64,
    n_writes_to_fail: AtomicU64,
    n_syncs_ok: AtomicU64,
}

impl Faults {
    /// Takes one failure from `counter` if any is left.
    fn take(counter: &AtomicU64) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

impl MemStorage {
    /// Empty storage: the root directory and nothing in it.
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// A new, independent storage holding what the disk would hold after a crash now, per
    /// `mode`: directories and files as they are (creations and removals are durable at
    /// once), each file's data as described by [`CrashMode`].
    ///
    /// Locks are not carried over (the crashed process released them), and the copy starts
    /// with no injected failures and a sync count of zero. This storage is left as it was,
    /// so a test may crash it again in another mode; handles opened from it keep referring to
    /// its files, never to the copy's.
    pub fn crash(&self, mode: CrashMode) -> MemStorage {
        let tree = self.shared.tree.lock();
        let faults = Arc::new(Faults::default());
        let files = tree
            .files
            .iter()
            .map(|(path, file)| {
                let contents = file.state.lock().after_crash(mode, path);
                (path.clone(), Arc::new(MemFile::new(contents, Arc::clone(&faults))))
            })
            .collect();
        let tree = Tree { dirs: tree.dirs.clone(), files };
        MemStorage { shared: Arc::new(Shared { tree: Mutex::new(tree), faults, locks: Arc::default() }) }
    }

    /// The next `n` calls to `sync_data` (on any file of this storage or its clones) fail with
    /// an [`io::ErrorKind::Other`] error, replacing any failures still to come. A failed sync
    /// makes that file's unsynced writes never durable: reads still return them, but no
    /// crash keeps them, in any mode, and no later successful sync makes them durable.
    pub fn fail_next_syncs(&self, n: u64) {
        self.shared.faults.n_syncs_to_fail.store(n, Ordering::SeqCst);
    }

    /// The next `n` calls to `write_at` (on any file of this storage or its clones) fail with
    /// an [`io::ErrorKind::Other`] error without writing anything, replacing any failures
    /// still to come.
    pub fn fail_next_writes(&self, n: u64) {
        self.shared.faults.n_writes_to_fail.store(n, Ordering::SeqCst);
    }

    /// How many `sync_data` calls have succeeded so far, on all files.
    pub fn n_syncs(&self) -> u64 {
        self.shared.faults.n_syncs_ok.load(Ordering::SeqCst)
    }

    /// The paths of all files (relative, `/`-separated), sorted.
    pub fn file_paths(&self) -> Vec<String> {
        self.shared.tree.lock().files.keys().cloned().collect()
    }

    /// The current contents of the file `path` (what reads return), if it exists.
    pub fn file_contents(&self, path: &str) -> Option<Vec<u8>> {
        let file = Arc::clone(self.shared.tree.lock().files.get(path)?);
        let contents = file.state.lock().current.clone();
        Some(contents)
    }

    /// Replaces the contents of the file `path`, current and durable alike, and forgets its
    /// pending writes: for corruption tests (flip a bit, cut the tail). Open handles see the
    /// new contents. A missing file is created, and so are its missing directories.
    ///
    /// # Panics
    ///
    /// If `path` is not a valid relative path, names a directory, or has a file where one of
    /// its directories should be: a test's own mistake.
    pub fn set_file_contents(&self, path: &str, bytes: &[u8]) {
        let mut tree = self.shared.tree.lock();
        if let Err(error) = check_path(path).and_then(|()| tree.create_dir_all(parent_dir(path))) {
            panic!("set_file_contents({path:?}): {error}");
        }
        assert!(!tree.is_dir(path), "set_file_contents({path:?}): it is a directory");
        match tree.files.get(path) {
            Some(file) => {
                let mut state = file.state.lock();
                state.current = bytes.to_vec();
                state.durable = bytes.to_vec();
                state.pending.clear();
            }
            None => {
                let file = self.new_file(bytes.to_vec());
                tree.files.insert(path.to_owned(), file);
            }
        }
    }

    fn new_file(&self, contents: Vec<u8>) -> Arc<MemFile> {
        Arc::new(MemFile::new(contents, Arc::clone(&self.shared.faults)))
    }
}

impl Tree {
    fn is_dir(&self, dir: &str) -> bool {
        dir.is_empty() || self.dirs.contains(dir)
    }

    /// Creates `dir` and its missing ancestors, like `mkdir -p`.
    fn create_dir_all(&mut self, dir: &str) -> io::Result<()> {
        if dir.is_empty() {
            return Ok(());
        }
        let ancestors_and_dir =
            || dir.match_indices('/').map(|(slash_idx, _)| &dir[..slash_idx]).chain(iter::once(dir));
        if let Some(in_the_way) = ancestors_and_dir().find(|prefix| self.files.contains_key(*prefix)) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("cannot create directory {dir:?}: {in_the_way:?} is a file"),
            ));
        }
        for prefix in ancestors_and_dir() {
            if !self.dirs.contains(prefix) {
                self.dirs.insert(prefix.to_owned());
            }
        }
        Ok(())
    }

    /// Checks that a file may be created at `path`: its directory exists and `path` is not a
    /// directory itself.
    fn check_new_file(&self, path: &str) -> io::Result<()> {
        check_path(path)?;
        if self.is_dir(path) {
            return Err(is_a_directory(path));
        }
        let dir = parent_dir(path);
        if !self.is_dir(dir) {
            return Err(not_found(&format!("directory {dir:?} of {path:?}")));
        }
        Ok(())
    }

    /// The existing file at `path`.
    fn file(&self, path: &str) -> io::Result<Arc<MemFile>> {
        check_path(path)?;
        if self.is_dir(path) {
            return Err(is_a_directory(path));
        }
        self.files.get(path).map(Arc::clone).ok_or_else(|| not_found(&format!("file {path:?}")))
    }
}

/// Checks that `path` is relative, `/`-separated and plain: no empty, `.` or `..` parts.
fn check_path(path: &str) -> io::Result<()> {
    if path.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid storage path {path:?}")));
    }
    Ok(())
}

/// As [`check_path`], but the root (`""`) is a directory too.
fn check_dir_path(dir: &str) -> io::Result<()> {
    if dir.is_empty() { Ok(()) } else { check_path(dir) }
}

/// The directory holding `path` (`""` for the root).
fn parent_dir(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn not_found(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{what} does not exist"))
}

fn is_a_directory(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::IsADirectory, format!("{path:?} is a directory"))
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure (MemStorage)"))
}

/// `len` as an in-memory length, if the simulation holds files that long.
fn checked_len(len: Option<u64>) -> io::Result<usize> {
    len.filter(|len| *len <= MAX_FILE_LEN_BYTES).and_then(|len| usize::try_from(len).ok()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::FileTooLarge, format!("files in memory end by {MAX_FILE_LEN_BYTES} bytes"))
    })
}

impl Storage for MemStorage {
    fn local_dir(&self) -> Option<&std::path::Path> {
        None // it simulates power losses, which no live state survives
    }

    fn create_dir(&self, dir: &str) -> io::Result<()> {
        check_dir_path(dir)?;
        self.shared.tree.lock().create_dir_all(dir)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        check_dir_path(dir)?;
        let tree = self.shared.tree.lock();
        if !tree.is_dir(dir) {
            if tree.files.contains_key(dir) {
                return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{dir:?} is a file")));
            }
            return Err(not_found(&format!("directory {dir:?}")));
        }
        let names = tree
            .files
            .keys()
            .filter(|path| parent_dir(path) == dir)
            .map(|path| path.rsplit_once('/').map_or(path.as_str(), |(_, name)| name).to_owned())
            .collect();
        Ok(names)
    }

    fn open(&self, path: &str, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut tree = self.shared.tree.lock();
        tree.check_new_file(path)?;
        let file: Arc<dyn StorageFile> = match tree.files.get(path) {
            Some(file) => Arc::clone(file) as Arc<dyn StorageFile>,
            None if create => {
                let file = self.new_file(Vec::new());
                tree.files.insert(path.to_owned(), Arc::clone(&file));
                file
            }
            None => return Err(not_found(&format!("file {path:?}"))),
        };
        Ok(file)
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let file = self.shared.tree.lock().file(path)?;
        let contents = file.state.lock().current.clone();
        Ok(contents)
    }

    /// Puts a new file at `path`, as the rename of a synced temporary file does: handles open
    /// on the old file keep it (and its pending writes, which no crash will find).
    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let mut tree = self.shared.tree.lock();
        tree.check_new_file(path)?;
        checked_len(Some(bytes.len() as u64))?;
        tree.files.insert(path.to_owned(), self.new_file(bytes.to_vec()));
        Ok(())
    }

    /// Moves the file (its data, synced or not, and its pending writes) to the new path.
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut tree = self.shared.tree.lock();
        let file = tree.file(from)?;
        tree.check_new_file(to)?;
        tree.files.remove(from);
        tree.files.insert(to.to_owned(), file);
        Ok(())
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        let mut tree = self.shared.tree.lock();
        tree.file(path)?;
        tree.files.remove(path);
        Ok(())
    }

    fn lock(&self, path: &str) -> io::Result<Box<dyn StorageLock>> {
        {
            let mut tree = self.shared.tree.lock();
            tree.check_new_file(path)?;
            if !tree.files.contains_key(path) {
                let file = self.new_file(Vec::new());
                tree.files.insert(path.to_owned(), file);
            }
        }
        if !self.shared.locks.lock().insert(path.to_owned()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the lock {path:?} is held by another handle"),
            ));
        }
        Ok(Box::new(MemLock { locks: Arc::clone(&self.shared.locks), path: path.to_owned() }))
    }
}

/// A held lock: its path is in the storage's lock table until this drops.
#[derive(Debug)]
struct MemLock {
    locks: Arc<Mutex<BTreeSet<String>>>,
    path: String,
}

impl StorageLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        let was_held = self.locks.lock().remove(&self.path);
        debug_assert!(was_held, "lock {:?} released twice", self.path);
    }
}

/// One file, shared by every handle opened on its path.
struct MemFile {
    faults: Arc<Faults>,
    state: Mutex<FileState>,
}

/// A file's two versions and the operations between them.
#[derive(Debug)]
struct FileState {
    /// What reads return.
    current: Vec<u8>,
    /// What the disk holds: the contents at the last successful sync.
    durable: Vec<u8>,
    /// The operations since the last sync (successful or not), oldest first.
    pending: Vec<PendingOp>,
}

/// An operation not yet synced.
#[derive(Debug)]
enum PendingOp {
    Write { offset: usize, bytes: Vec<u8> },
    SetLen { len: usize },
}

impl MemFile {
    fn new(contents: Vec<u8>, faults: Arc<Faults>) -> Self {
        let state = FileState { current: contents.clone(), durable: contents, pending: Vec::new() };
        MemFile { faults, state: Mutex::new(state) }
    }
}

/// Brief, because files are large: lengths rather than bytes.
impl fmt::Debug for MemFile {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        formatter
            .debug_struct("MemFile")
            .field("current_len", &state.current.len())
            .field("durable_len", &state.durable.len())
            .field("n_pending", &state.pending.len())
            .finish()
    }
}

impl PendingOp {
    fn apply(&self, contents: &mut Vec<u8>) {
        match self {
            PendingOp::Write { offset, bytes } => apply_write(contents, *offset, bytes),
            PendingOp::SetLen { len } => contents.resize(*len, 0),
        }
    }
}

/// Writes `bytes` at `offset`, filling any gap after the end with zeros. An empty write
/// changes nothing, as `pwrite` of zero bytes does not extend a file.
fn apply_write(contents: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let end = offset + bytes.len();
    if contents.len() < end {
        contents.resize(end, 0);
    }
    contents[offset..end].copy_from_slice(bytes);
}

impl FileState {
    /// What the disk holds of this file (at `path`) after a crash in `mode`.
    fn after_crash(&self, mode: CrashMode, path: &str) -> Vec<u8> {
        let mut contents = self.durable.clone();
        match mode {
            CrashMode::DropUnsynced => {}
            CrashMode::KeepUnsynced => {
                for op in &self.pending {
                    op.apply(&mut contents);
                }
            }
            CrashMode::Tear { seed } => {
                // The path enters the seed so that files with the same history tear apart.
                let mut rng = TearRng(xxhash_rust::xxh3::xxh3_64_with_seed(path.as_bytes(), seed));
                let n_kept = rng.below(self.pending.len() + 1);
                if let Some((last, before)) = self.pending[..n_kept].split_last() {
                    for op in before {
                        op.apply(&mut contents);
                    }
                    match last {
                        PendingOp::Write { offset, bytes } => {
                            let n_bytes_kept = rng.below(bytes.len() + 1);
                            apply_write(&mut contents, *offset, &bytes[..n_bytes_kept]);
                        }
                        PendingOp::SetLen { .. } => last.apply(&mut contents),
                    }
                }
            }
        }
        contents
    }
}

/// SplitMix64, for tearing (testkit's generator is a dev-dependency only).
struct TearRng(u64);

impl TearRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (give or take a tiny modulo bias); `bound` is not zero.
    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

impl StorageFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.state.lock();
        let Some(available) = usize::try_from(offset).ok().and_then(|offset| state.current.get(offset..)) else {
            return Ok(0);
        };
        let n_read = available.len().min(buf.len());
        buf[..n_read].copy_from_slice(&available[..n_read]);
        Ok(n_read)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if Faults::take(&self.faults.n_writes_to_fail) {
            return Err(injected("write"));
        }
        let end = checked_len(offset.checked_add(buf.len() as u64))?;
        if buf.is_empty() {
            return Ok(());
        }
        let offset = end - buf.len();
        let mut state = self.state.lock();
        apply_write(&mut state.current, offset, buf);
        state.pending.push(PendingOp::Write { offset, bytes: buf.to_vec() });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        if Faults::take(&self.faults.n_syncs_to_fail) {
            // The writeback failed and the kernel marked the pages clean: reads still return
            // them, but the disk never will.
            state.pending.clear();
            return Err(injected("sync"));
        }
        let FileState { durable, pending, .. } = &mut *state;
        for op in pending.drain(..) {
            op.apply(durable);
        }
        self.faults.n_syncs_ok.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.state.lock().current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = checked_len(Some(len))?;
        let mut state = self.state.lock();
        state.current.resize(len, 0);
        state.pending.push(PendingOp::SetLen { len });
        Ok(())
    }
}
