//! What `MmapFile` and `FileBackedMemory` share: creating a pool file atomically, checking
//! an existing one's header in the documented order, and the small file-system helpers.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::checksum::zeros_checksum;
use crate::error::{Error, Result, io_error};
use crate::header::{HEADER_LEN, PoolHeader, check_data_len, file_len, now_unix_ns};

/// Files are created readable and writable by their owner only.
pub(crate) const FILE_MODE: u32 = 0o600;

/// A header-sized buffer aligned for `O_DIRECT`.
#[repr(C, align(4096))]
pub(crate) struct AlignedPage(pub(crate) [u8; HEADER_LEN]);

impl AlignedPage {
    pub(crate) fn zeroed() -> Box<AlignedPage> {
        Box::new(AlignedPage([0; HEADER_LEN]))
    }
}

/// `dir/name` → `dir/name<suffix>`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// fsyncs the directory holding `path`, so a create, rename or delete in it is durable.
pub(crate) fn fsync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("fsync directory", dir))
}

/// Removes a temporary file when dropped, unless disarmed; keeps error paths from leaving
/// half-written files behind.
pub(crate) struct RemoveOnDrop<'a> {
    path: &'a Path,
    armed: bool,
}

impl<'a> RemoveOnDrop<'a> {
    pub(crate) fn new(path: &'a Path) -> Self {
        RemoveOnDrop { path, armed: true }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Err(error) = std::fs::remove_file(self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), %error, "could not remove temporary file");
        }
    }
}

/// Opens `path` with `O_NOATIME` where the kernel allows it (the file's owner), else
/// without. A storage file's access time means nothing, and on a file system mounted
/// `relatime` (the default) updating it costs a journal transaction at the first read of a
/// file written since it was last read: every file a reopen reads. Pools are opened so;
/// exported for the other files of a store built on pools.
///
/// # Errors
///
/// As [`OpenOptions::open`].
pub fn open_noatime(options: &OpenOptions, path: &Path) -> io::Result<File> {
    let mut noatime = options.clone();
    noatime.custom_flags(libc::O_NOATIME);
    match noatime.open(path) {
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => options.open(path),
        opened => opened,
    }
}

/// Opens with `O_DIRECT` when `direct` is asked for and the file system accepts it, else
/// buffered. Returns whether the file is in direct mode.
pub(crate) fn open_maybe_direct(options: &OpenOptions, path: &Path, direct: bool) -> io::Result<(File, bool)> {
    #[cfg(test)]
    let direct = direct && !fault::direct_io_refused();
    if direct {
        let mut direct_options = options.clone();
        direct_options.custom_flags(libc::O_DIRECT);
        match direct_options.open(path) {
            Ok(file) => return Ok((file, true)),
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(path = %path.display(), "O_DIRECT not supported here; using buffered I/O");
            }
            Err(error) => return Err(error),
        }
    }
    Ok((open_noatime(options, path)?, false))
}

/// Whether an error is the kernel refusing an `O_DIRECT` transfer (alignment or file system).
pub(crate) fn is_direct_io_refusal(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINVAL)
}

/// Reserves `len` bytes of disk for `file`, so that writes through a mapping can never hit a
/// hole on a full disk (which would be SIGBUS, not an error).
fn preallocate(file: &File, len: u64, path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(len_off) = libc::off_t::try_from(len) else {
        return Err(Error::TooLarge { requested: len, max: crate::MAX_DATA_LEN });
    };
    // SAFETY: `fallocate` takes a descriptor and two integers and touches no memory of ours;
    // the descriptor is open and owned by `file`, which outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // Some file systems cannot reserve space; size the file and write zeros so that
        // every block exists (the slow but safe way to the same guarantee).
        tracing::debug!(path = %path.display(), "fallocate unsupported; writing zeros");
        let zeros = vec![0u8; 1 << 20];
        let mut offset = HEADER_LEN as u64;
        while offset < len {
            let n = (len - offset).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], offset).map_err(io_error("write", path))?;
            offset += n as u64;
        }
        return Ok(());
    }
    Err(Error::Io { op: "fallocate", path: path.to_path_buf(), source: error })
}

/// Creates a clean pool file of all-zero data at `path`, atomically: the file is built under a
/// temporary name, synced, then hard-linked into place (which fails if `path` appeared in the
/// meantime) and the directory synced. A crash leaves either no pool or a complete one.
///
/// `preallocate` reserves the disk blocks (needed before mapping the file); otherwise the
/// data is a hole that reads as zeros.
pub(crate) fn create_pool_file(
    path: &Path,
    data_len: usize,
    user_version: u64,
    preallocate_blocks: bool,
) -> Result<PoolHeader> {
    check_data_len(data_len)?;
    if path.symlink_metadata().is_ok() {
        return Err(Error::AlreadyExists { path: path.to_path_buf() });
    }

    let mut header = PoolHeader::new(user_version, data_len as u64, now_unix_ns());
    header.data_checksum = zeros_checksum(&header.checksum_prefix(), data_len);
    let mut page = AlignedPage::zeroed();
    header.encode(&mut page.0);

    let temp_path = with_suffix(path, &format!(".{}.creating", std::process::id()));
    let temp_guard = RemoveOnDrop::new(&temp_path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&temp_path)
        .map_err(io_error("create", &temp_path))?;
    file.write_all_at(&page.0, 0).map_err(io_error("write header", &temp_path))?;
    let total_len = file_len(data_len);
    if preallocate_blocks {
        preallocate(&file, total_len, &temp_path)?;
    } else {
        file.set_len(total_len).map_err(io_error("set length", &temp_path))?;
    }
    file.sync_all().map_err(io_error("fsync", &temp_path))?;
    drop(file);

    match std::fs::hard_link(&temp_path, path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists { path: path.to_path_buf() });
        }
        Err(source) => return Err(Error::Io { op: "link", path: path.to_path_buf(), source }),
    }
    std::fs::remove_file(&temp_path).map_err(io_error("remove", &temp_path))?;
    temp_guard.disarm();
    fsync_parent_dir(path)?;
    tracing::debug!(path = %path.display(), data_len, user_version, "created pool file");
    Ok(header)
}

/// Reads the header of an open pool file and checks, in this order: the file is long enough
/// to hold a header, the magic, the format version, the header crc32c, the fields, the data
/// length against the caller's, the file length, the user version and the dirty flag (unless
/// `accept_dirty`). The data checksum is left to the caller.
pub(crate) fn read_and_check_header(
    file: &File,
    path: &Path,
    data_len: usize,
    user_version: u64,
    accept_dirty: bool,
) -> Result<PoolHeader> {
    let found_len = file.metadata().map_err(io_error("stat", path))?.len();
    if found_len < HEADER_LEN as u64 {
        return Err(Error::FileLength { path: path.to_path_buf(), expected: file_len(data_len), found: found_len });
    }
    let mut page = AlignedPage::zeroed();
    read_exact_at_retrying_buffered(file, path, &mut page.0, 0)?;
    let header = PoolHeader::decode(&page.0, path)?;

    if header.data_len != data_len as u64 {
        return Err(Error::SizeMismatch {
            path: path.to_path_buf(),
            expected: data_len as u64,
            found: header.data_len,
        });
    }
    if found_len != file_len(data_len) {
        return Err(Error::FileLength { path: path.to_path_buf(), expected: file_len(data_len), found: found_len });
    }
    if header.user_version != user_version {
        return Err(Error::UserVersionMismatch {
            path: path.to_path_buf(),
            expected: user_version,
            found: header.user_version,
        });
    }
    if header.dirty && !accept_dirty {
        return Err(Error::Dirty { path: path.to_path_buf() });
    }
    Ok(header)
}

/// `read_exact_at`, falling back to a buffered descriptor if the kernel refuses the transfer
/// in `O_DIRECT` mode.
pub(crate) fn read_exact_at_retrying_buffered(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(()),
        Err(error) if is_direct_io_refusal(&error) => {
            let buffered = File::open(path).map_err(io_error("open", path))?;
            buffered.read_exact_at(buf, offset).map_err(io_error("read", path))
        }
        Err(source) => Err(Error::Io { op: "read", path: path.to_path_buf(), source }),
    }
}

/// A test-only fault hook: makes `O_DIRECT` look unsupported on this thread, as on a file
/// system that refuses it.
#[cfg(test)]
pub(crate) mod fault {
    use std::cell::Cell;

    thread_local! {
        static REFUSE_DIRECT_IO: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn refuse_direct_io(refuse: bool) {
        REFUSE_DIRECT_IO.with(|flag| flag.set(refuse));
    }

    pub(crate) fn direct_io_refused() -> bool {
        REFUSE_DIRECT_IO.with(Cell::get)
    }
}
