//! The boot id: which run of the kernel this is.
//!
//! A store into a mapped file is in the page cache the moment it is made, so it outlives
//! the process that made it: after a process is killed its pools hold every store it made.
//! The page cache does not outlive the kernel, though: after a power loss or an OS crash a
//! dirty pool holds whatever part of it was written back. Comparing the boot id a writer
//! recorded with the current one tells the two cases apart.

use std::path::Path;

use crate::error::{Error, Result};

const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The running kernel's boot id (Linux's random per-boot UUID, as a number): the same for
/// every process until the machine restarts, then different.
///
/// # Errors
///
/// [`Error::Io`] if `/proc/sys/kernel/random/boot_id` cannot be read or is not a UUID.
pub fn boot_id() -> Result<u128> {
    // A process never outlives its boot: read once.
    static BOOT_ID: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    if let Some(&id) = BOOT_ID.get() {
        return Ok(id);
    }
    let id = read_boot_id()?;
    Ok(*BOOT_ID.get_or_init(|| id))
}

fn read_boot_id() -> Result<u128> {
    use std::io::Read as _;
    let path = Path::new(BOOT_ID_PATH);
    // 37 bytes: read into a buffer with room to spare (`read_to_string` asks for the size
    // and reads in small steps, three more system calls on the way to every open).
    let mut buf = [0u8; 64];
    let mut len = 0;
    let mut file = std::fs::File::open(path).map_err(crate::error::io_error("open", path))?;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(crate::error::io_error("read", path)(error)),
        }
    }
    let text = std::str::from_utf8(&buf[..len]).unwrap_or("");
    parse_boot_id(text).ok_or_else(|| Error::Io {
        op: "parse",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a UUID"),
    })
}

fn parse_boot_id(text: &str) -> Option<u128> {
    let hex: String = text.trim().chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_uuid_and_refuses_anything_else() {
        assert_eq!(parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n"), Some(0x0f1e2d3c4b5a69788796a5b4c3d2e1f0));
        for bad in ["", "0f1e2d3c", "zz1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0ff"] {
            assert_eq!(parse_boot_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn is_the_same_twice_in_one_boot() {
        assert_eq!(boot_id().expect("boot id"), boot_id().expect("boot id"));
    }
}
