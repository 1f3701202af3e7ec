//! Acceptance criterion 3: `open` names each problem with its own variant, and damaged files
//! never panic the process or raise SIGBUS (every case here runs in-process).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use talus_datapool::{ChecksumRegion, Error, FileBackedMemory, MmapFile, MmapFileOptions};

use crate::common::{FILE_KINDS, FileKind, SplitMix64, pattern, test_seed};

const DATA_LEN: usize = 5000;
const USER_VERSION: u64 = 11;

/// A flushed pool holding a pattern; returns its path.
fn good_pool(dir: &Path, kind: FileKind, name: &str) -> PathBuf {
    let path = dir.join(format!("{kind:?}-{name}"));
    let mut pool = kind.create(&path, DATA_LEN, USER_VERSION).expect("create");
    pool.as_mut_slice().copy_from_slice(&pattern(DATA_LEN, 3));
    pool.flush().expect("flush");
    path
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).expect("read");
    change(&mut bytes);
    std::fs::write(path, bytes).expect("write");
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(len)).expect("truncate");
}

fn open_error(kind: FileKind, path: &Path, data_len: usize, user_version: u64) -> Error {
    match kind.open(path, data_len, user_version) {
        Ok(_) => panic!("{kind:?}: {} opened despite the damage", path.display()),
        Err(error) => error,
    }
}

#[test]
fn each_problem_is_reported_as_its_own_variant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file_len = 4096 + 8192u64;
    for kind in FILE_KINDS {
        let path = good_pool(dir.path(), kind, "size");
        for wrong_len in [DATA_LEN - 1, DATA_LEN + 1, 9000, 1] {
            match open_error(kind, &path, wrong_len, USER_VERSION) {
                Error::SizeMismatch { expected, found, .. } => {
                    assert_eq!((expected, found), (wrong_len as u64, DATA_LEN as u64))
                }
                other => panic!("{kind:?} wrong data_len: {other:?}"),
            }
        }

        match open_error(kind, &path, DATA_LEN, USER_VERSION + 1) {
            Error::UserVersionMismatch { expected, found, .. } => assert_eq!((expected, found), (12, 11)),
            other => panic!("{kind:?} wrong user version: {other:?}"),
        }

        let path = good_pool(dir.path(), kind, "magic");
        edit(&path, |b| b[..8].copy_from_slice(b"GARBAGE!"));
        match open_error(kind, &path, DATA_LEN, USER_VERSION) {
            Error::BadMagic { found, .. } => assert_eq!(&found, b"GARBAGE!"),
            other => panic!("{kind:?} garbage magic: {other:?}"),
        }

        let path = good_pool(dir.path(), kind, "version");
        edit(&path, |b| b[8..12].copy_from_slice(&2u32.to_le_bytes()));
        assert!(matches!(open_error(kind, &path, DATA_LEN, USER_VERSION), Error::UnsupportedVersion { found: 2, .. }));

        for data_byte in [0, 1234, DATA_LEN - 1] {
            let path = good_pool(dir.path(), kind, &format!("data-bit-{data_byte}"));
            edit(&path, |b| b[4096 + data_byte] ^= 0x04);
            match open_error(kind, &path, DATA_LEN, USER_VERSION) {
                Error::ChecksumMismatch { region: ChecksumRegion::Data, stored, computed, .. } => {
                    assert_ne!(stored, computed)
                }
                other => panic!("{kind:?} flipped data bit: {other:?}"),
            }
        }

        for header_byte in [20, 35, 60, 100, 4095] {
            let path = good_pool(dir.path(), kind, &format!("header-bit-{header_byte}"));
            edit(&path, |b| b[header_byte] ^= 0x80);
            assert!(
                matches!(
                    open_error(kind, &path, DATA_LEN, USER_VERSION),
                    Error::ChecksumMismatch { region: ChecksumRegion::Header, .. }
                ),
                "{kind:?} header byte {header_byte}"
            );
        }

        for short_len in [0, 4096, file_len - 1, 100] {
            let path = good_pool(dir.path(), kind, &format!("short-{short_len}"));
            truncate(&path, short_len);
            match open_error(kind, &path, DATA_LEN, USER_VERSION) {
                Error::FileLength { expected, found, .. } => assert_eq!((expected, found), (file_len, short_len)),
                other => panic!("{kind:?} truncated to {short_len}: {other:?}"),
            }
        }

        let path = good_pool(dir.path(), kind, "long");
        truncate(&path, file_len + 1);
        assert!(
            matches!(open_error(kind, &path, DATA_LEN, USER_VERSION), Error::FileLength { found, .. } if found == file_len + 1)
        );

        let path = dir.path().join(format!("{kind:?}-zeros"));
        std::fs::write(&path, vec![0u8; file_len as usize]).expect("write");
        assert!(
            matches!(open_error(kind, &path, DATA_LEN, USER_VERSION), Error::BadMagic { found, .. } if found == [0; 8])
        );
    }
}

#[test]
fn damage_is_reported_even_on_a_file_that_was_never_flushed() {
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in FILE_KINDS {
        let path = dir.path().join(format!("{kind:?}"));
        drop(kind.create(&path, 1 << 20, 0).expect("create"));
        edit(&path, |b| b[4096 + 777_777] = 1);
        assert!(matches!(
            open_error(kind, &path, 1 << 20, 0),
            Error::ChecksumMismatch { region: ChecksumRegion::Data, .. }
        ));
    }
}

/// Random single-bit flips anywhere in the header or data: every one is caught.
#[test]
fn random_bit_flips_never_go_unnoticed() {
    let seed = test_seed("random_bit_flips_never_go_unnoticed");
    let mut rng = SplitMix64::new(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    for kind in FILE_KINDS {
        for round in 0..40 {
            let path = good_pool(dir.path(), kind, &format!("flip-{round}"));
            let offset = rng.below((4096 + DATA_LEN) as u64) as usize;
            let bit = rng.below(8);
            edit(&path, |b| b[offset] ^= 1 << bit);
            let error = open_error(kind, &path, DATA_LEN, USER_VERSION);
            assert!(
                matches!(
                    error,
                    Error::ChecksumMismatch { .. } | Error::BadMagic { .. } | Error::UnsupportedVersion { .. }
                ),
                "{kind:?} byte {offset} bit {bit}: {error:?}"
            );
        }
    }
}

#[test]
fn skipping_verification_still_checks_the_header_and_dirty_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = good_pool(dir.path(), FileKind::Mmap, "noverify");
    edit(&path, |b| b[4096] ^= 1);
    let options = MmapFileOptions::new().verify_checksum(false);
    let pool = options.open(&path, DATA_LEN, USER_VERSION).expect("data damage is not looked for");
    drop(pool);
    edit(&path, |b| b[30] ^= 1);
    assert!(matches!(
        options.open(&path, DATA_LEN, USER_VERSION),
        Err(Error::ChecksumMismatch { region: ChecksumRegion::Header, .. })
    ));
}

#[test]
fn error_messages_name_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = good_pool(dir.path(), FileKind::FileBacked, "message");
    let message = FileBackedMemory::open(&path, DATA_LEN, 99).expect_err("wrong version").to_string();
    assert!(message.contains(&*path.to_string_lossy()) && message.contains("user version"), "{message}");
    let message = MmapFile::open(dir.path().join("missing"), 1, 0).expect_err("missing").to_string();
    assert!(message.contains("missing") && message.starts_with("open failed"), "{message}");
}
