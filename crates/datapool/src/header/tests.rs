//! Header codec tests, and the pin between the code's offsets and docs/format.md.

use std::path::Path;

use super::*;
use crate::error::Error;

fn sample() -> PoolHeader {
    let mut header = PoolHeader::new(0x0102_0304_0506_0708, 5000, 1_700_000_000_123_456_789);
    header.flushed_unix_ns = 1_700_000_001_000_000_000;
    header.data_checksum = [0xab; CHECKSUM_LEN];
    header
}

fn encoded(header: &PoolHeader) -> [u8; HEADER_LEN] {
    let mut page = [0u8; HEADER_LEN];
    header.encode(&mut page);
    page
}

/// Rewrites the header crc so a test can reach the checks behind it.
fn reseal(page: &mut [u8; HEADER_LEN]) {
    page[OFFSET_HEADER_CRC32C..OFFSET_HEADER_CRC32C + 4].fill(0);
    let crc = crc32c::crc32c(page);
    page[OFFSET_HEADER_CRC32C..OFFSET_HEADER_CRC32C + 4].copy_from_slice(&crc.to_le_bytes());
}

fn decode(page: &[u8; HEADER_LEN]) -> Result<PoolHeader> {
    PoolHeader::decode(page, Path::new("test"))
}

#[test]
fn encode_then_decode_is_identity() {
    for dirty in [false, true] {
        let header = PoolHeader { dirty, ..sample() };
        assert_eq!(decode(&encoded(&header)).expect("valid header"), header);
    }
}

#[test]
fn fields_land_at_their_documented_offsets() {
    let page = encoded(&PoolHeader { dirty: true, ..sample() });
    assert_eq!(&page[0..8], b"TALUSDP\0");
    assert_eq!(page[8..12], 1u32.to_le_bytes());
    assert_eq!(page[12..16], 4096u32.to_le_bytes());
    assert_eq!(page[16..24], 0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(page[24..32], 5000u64.to_le_bytes());
    assert_eq!(page[32..40], 1_700_000_000_123_456_789u64.to_le_bytes());
    assert_eq!(page[40..48], 1_700_000_001_000_000_000u64.to_le_bytes());
    assert_eq!(page[48..52], 1u32.to_le_bytes());
    assert_eq!(page[56..88], [0xab; 32]);
    assert!(page[88..].iter().all(|&b| b == 0));
}

#[test]
fn checksum_prefix_zeroes_both_checksums() {
    let header = sample();
    let prefix = header.checksum_prefix();
    let page = encoded(&header);
    assert!(prefix[OFFSET_HEADER_CRC32C..OFFSET_RESERVED].iter().all(|&b| b == 0));
    assert_eq!(prefix[..OFFSET_HEADER_CRC32C], page[..OFFSET_HEADER_CRC32C]);
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let page = encoded(&sample());
    for bit in 0..HEADER_LEN * 8 {
        let mut damaged = page;
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&damaged).is_err(), "bit {bit} flipped yet the header decoded");
    }
}

#[test]
fn each_problem_is_its_own_variant() {
    let page = encoded(&sample());

    let mut bad_magic = page;
    bad_magic[0] = b'X';
    assert!(matches!(decode(&bad_magic), Err(Error::BadMagic { .. })));

    let mut future = page;
    future[OFFSET_FORMAT_VERSION..OFFSET_FORMAT_VERSION + 4].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut future);
    assert!(matches!(decode(&future), Err(Error::UnsupportedVersion { found: 2, .. })));

    let mut torn = page;
    torn[OFFSET_CREATED_UNIX_NS] ^= 0x10;
    assert!(matches!(decode(&torn), Err(Error::ChecksumMismatch { region: crate::ChecksumRegion::Header, .. })));

    let cases: [(usize, &[u8], &str); 5] = [
        (OFFSET_HEADER_LEN, &512u32.to_le_bytes(), "header length"),
        (OFFSET_DATA_LEN, &0u64.to_le_bytes(), "data length"),
        (OFFSET_DATA_LEN, &(MAX_DATA_LEN + 1).to_le_bytes(), "data length"),
        (OFFSET_FLAGS, &2u32.to_le_bytes(), "flag"),
        (HEADER_LEN - 1, &[1], "reserved"),
    ];
    for (offset, bytes, what) in cases {
        let mut forged = page;
        forged[offset..offset + bytes.len()].copy_from_slice(bytes);
        reseal(&mut forged);
        match decode(&forged) {
            Err(Error::InvalidHeader { reason, .. }) => assert!(reason.contains(what), "{reason}"),
            other => panic!("forged {what}: expected InvalidHeader, got {other:?}"),
        }
    }
}

#[test]
fn all_zero_page_is_bad_magic() {
    assert!(matches!(decode(&[0u8; HEADER_LEN]), Err(Error::BadMagic { .. })));
}

#[test]
fn padded_and_file_lengths() {
    assert_eq!(padded_len(1), 4096);
    assert_eq!(padded_len(4096), 4096);
    assert_eq!(padded_len(4097), 8192);
    assert_eq!(file_len(1), 8192);
    assert_eq!(file_len((1 << 20) + 3), 4096 + (1 << 20) + 4096);
}

/// Acceptance criterion 8: the offsets in the code are the ones docs/format.md documents.
#[test]
fn offsets_match_docs_format_md() {
    let doc = include_str!("../../../../docs/format.md");
    let section = doc
        .split("### Header page (4096 bytes)")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("docs/format.md has a header page table");

    let mut documented = Vec::new();
    for line in section.lines().filter(|line| line.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Ok(offset), Ok(size)) = (cells[1].parse::<usize>(), cells[2].parse::<usize>()) else {
            continue; // the heading row
        };
        documented.push((cells[3].trim_matches('`').to_owned(), offset, size));
    }

    let in_code = [
        ("magic", OFFSET_MAGIC, MAGIC.len()),
        ("format_version", OFFSET_FORMAT_VERSION, 4),
        ("header_len", OFFSET_HEADER_LEN, 4),
        ("user_version", OFFSET_USER_VERSION, 8),
        ("data_len", OFFSET_DATA_LEN, 8),
        ("created_unix_ns", OFFSET_CREATED_UNIX_NS, 8),
        ("flushed_unix_ns", OFFSET_FLUSHED_UNIX_NS, 8),
        ("flags", OFFSET_FLAGS, 4),
        ("header_crc32c", OFFSET_HEADER_CRC32C, 4),
        ("data_checksum", OFFSET_DATA_CHECKSUM, CHECKSUM_LEN),
        ("reserved", OFFSET_RESERVED, HEADER_LEN - OFFSET_RESERVED),
    ];
    let in_code: Vec<(String, usize, usize)> =
        in_code.iter().map(|&(name, offset, size)| (name.to_owned(), offset, size)).collect();
    assert_eq!(documented, in_code, "docs/format.md and header.rs disagree");

    // The documented fields tile the page exactly.
    let mut next = 0;
    for (name, offset, size) in &documented {
        assert_eq!(*offset, next, "gap or overlap before {name}");
        next = offset + size;
    }
    assert_eq!(next, HEADER_LEN);
    assert!(doc.contains("54 41 4c 55 53 44 50 00"), "the magic's bytes are documented");
}
