//! `FsStorage`: the real file system, with the fsyncs that make each operation durable.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Storage, StorageFile, StorageLock};

/// Files and directories are created private to the owner.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// The file system under one directory (the database directory).
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// Storage rooted at `root`, which is created (mode 0700) if missing.
    ///
    /// # Errors
    ///
    /// I/O errors creating it.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            DirBuilder::new().recursive(true).mode(DIR_MODE).create(&root)?;
            if let Some(parent) = root.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(FsStorage { root })
    }

    /// The directory this storage works in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn sync_parent(&self, relative: &str) -> io::Result<()> {
        match self.path(relative).parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for FsStorage {
    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn create_dir(&self, dir: &str) -> io::Result<()> {
        let path = self.path(dir);
        if path.is_dir() {
            return Ok(());
        }
        DirBuilder::new().recursive(true).mode(DIR_MODE).create(&path)?;
        self.sync_parent(dir)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.path(dir))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, path: &str, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let full = self.path(path);
        // (Asked only when it matters: opening the log's segments is most of a reopen.)
        let existed = create && full.exists();
        let file = talus_datapool::open_noatime(
            OpenOptions::new().read(true).write(true).create(create).mode(FILE_MODE),
            &full,
        )?;
        if create && !existed {
            self.sync_parent(path)?;
        }
        Ok(Arc::new(FsFile { file }))
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        talus_datapool::open_noatime(OpenOptions::new().read(true), &self.path(path))?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn write_atomic(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let full = self.path(path);
        let temp = self.path(&format!("{path}.tmp"));
        {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::rename(&temp, &full)?;
        self.sync_parent(path)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.path(from), self.path(to))?;
        self.sync_parent(to)?;
        match Path::new(from).parent() == Path::new(to).parent() {
            true => Ok(()),
            false => self.sync_parent(from),
        }
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(path))?;
        self.sync_parent(path)
    }

    fn lock(&self, path: &str) -> io::Result<Box<dyn StorageLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(self.path(path))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(FsLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(io::Error::new(io::ErrorKind::WouldBlock, "the lock is held by another handle"))
            }
            Err(std::fs::TryLockError::Error(error)) => Err(error),
        }
    }
}

#[derive(Debug)]
struct FsFile {
    file: File,
}

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Holds an `flock` on the file until dropped (closing the file releases it).
#[derive(Debug)]
struct FsLock {
    _file: File,
}

impl StorageLock for FsLock {}
