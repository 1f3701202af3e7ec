//! The I/O chokepoint: every read, write, sync, rename and delete of the log and the
//! MANIFEST goes through [`Storage`] and [`StorageFile`]. [`FsStorage`] is the real one;
//! [`MemStorage`] keeps files in memory for tests, injects errors and simulates crashes.
//! (The index lives in its own memory-mapped files, managed by `talus-bucketmap`.)
//!
//! Paths are relative to the database directory and use `/`: `MANIFEST`, `LOCK`,
//! `log/0000000000000000.seg`.

use std::fmt::Debug;
use std::io;
use std::sync::Arc;

mod fs;
mod mem;

pub use fs::FsStorage;
pub use mem::{CrashMode, MemStorage};

/// A directory of files, as the engine needs it. Every operation that changes the directory
/// (create, replace, remove) is durable when it returns.
pub trait Storage: Send + Sync + Debug {
    /// Creates the directory `dir` if it is missing (and makes that durable).
    ///
    /// # Errors
    ///
    /// The operating system's (or the simulation's) error.
    fn create_dir(&self, dir: &str) -> io::Result<()>;

    /// The names (not paths) of the files in `dir`, in no particular order.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if `dir` does not exist; other I/O errors.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;

    /// Opens `path` for reading and writing. With `create`, a missing file is created empty
    /// and its directory entry made durable; without, a missing file is
    /// [`io::ErrorKind::NotFound`].
    ///
    /// # Errors
    ///
    /// As above; other I/O errors.
    fn open(&self, path: &str, create: bool) -> io::Result<Arc<dyn StorageFile>>;

    /// The whole contents of a small file.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if it does not exist; other I/O errors.
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;

    /// Replaces `path` with `bytes` atomically and durably: after a crash the file holds
    /// either its old contents or all of `bytes`.
    ///
    /// # Errors
    ///
    /// I/O errors; the old contents are then still in place.
    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()>;

    /// Renames the file `from` to `to` (replacing any file there), atomically and durably.
    /// The data of `from` should be synced first: the rename does not sync it.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if `from` does not exist; other I/O errors.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;

    /// Removes the file `path`, durably.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if it does not exist; other I/O errors.
    fn remove(&self, path: &str) -> io::Result<()>;

    /// Takes the exclusive lock named by `path` (creating the file). It is held until the
    /// returned guard drops, and released by the operating system if the process dies.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] when another handle, in this process or another, holds
    /// it; other I/O errors.
    fn lock(&self, path: &str) -> io::Result<Box<dyn StorageLock>>;

    /// The directory of the real file system these files are in, if they are: there the
    /// page cache keeps every write a killed process made, and the engine keeps its live
    /// state beside them so that a reopen after a kill can take the database up as it was.
    /// `None` for storage that is not a local directory, or that simulates losing unsynced
    /// writes: a reopen then always rebuilds the index after a crash. A storage over a
    /// local directory that answers `None` must never share that directory with one that
    /// answers it (the live state left by one could be taken up after the other changed
    /// the log).
    fn local_dir(&self) -> Option<&std::path::Path>;
}

/// One open file.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read, fewer only at
    /// the end of the file.
    ///
    /// # Errors
    ///
    /// I/O errors.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`, extending the file if needed. Not durable until
    /// [`sync_data`](Self::sync_data) returns.
    ///
    /// # Errors
    ///
    /// I/O errors; part of `buf` may have been written.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes every write so far durable (`fdatasync`).
    ///
    /// # Errors
    ///
    /// I/O errors. After a failed sync the written data may be lost even though reads still
    /// return it: callers must treat the file as suspect (the engine poisons itself).
    fn sync_data(&self) -> io::Result<()>;

    /// The file's length in bytes.
    ///
    /// # Errors
    ///
    /// I/O errors.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    ///
    /// # Errors
    ///
    /// I/O errors.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Truncates or extends the file to `len` bytes. Durable after the next
    /// [`sync_data`](Self::sync_data).
    ///
    /// # Errors
    ///
    /// I/O errors.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A held lock (see [`Storage::lock`]); dropping it releases the lock.
pub trait StorageLock: Send + Sync + Debug {}

/// Reads exactly `buf.len()` bytes at `offset`, or fails with
/// [`io::ErrorKind::UnexpectedEof`].
pub(crate) fn read_exact_at(file: &dyn StorageFile, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ends before the bytes asked for"));
        }
        done += n;
    }
    Ok(())
}
