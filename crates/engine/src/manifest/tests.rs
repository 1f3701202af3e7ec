use super::*;

fn sample() -> Manifest {
    Manifest {
        db_id: 0x1111,
        hash_seed: 0x2222,
        segment_size: 1 << 26,
        log_begin: 1 << 26,
        log_end: 5 << 26,
        next_seq: 77,
        clean: true,
        cut_at_log_end: false,
        hash_bits: 64,
        created_unix_ns: 5,
        holes: vec![2 << 26],
        usage: vec![
            SegmentUsage { first_address: 1 << 26, written_bytes: 1000, live_bytes: 600, tombstone_bytes: 100 },
            SegmentUsage { first_address: 3 << 26, written_bytes: 50, live_bytes: 50, tombstone_bytes: 0 },
        ],
    }
}

#[test]
fn manifest_round_trips_and_rejects_every_flipped_bit() {
    let bytes = sample().encode();
    assert_eq!(Manifest::decode(&bytes), Ok(sample()));
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(Manifest::decode(&damaged).is_err(), "bit {bit}");
    }
    for len in 0..bytes.len() {
        assert!(Manifest::decode(&bytes[..len]).is_err(), "cut to {len} bytes");
    }
}

#[test]
fn manifest_offsets_match_the_format_document() {
    let bytes = sample().encode();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
    assert_eq!(bytes.len(), 96 + 8 + 2 * 32);
    assert_eq!(&bytes[0..8], b"TALUSMF\0");
    assert_eq!(u32_at(8), 2);
    assert_eq!(u32_at(12) as usize, bytes.len());
    assert_eq!(u64_at(16), 0x1111);
    assert_eq!(u64_at(24), 0x2222);
    assert_eq!(u64_at(32), 1 << 26);
    assert_eq!(u64_at(40), 1 << 26);
    assert_eq!(u64_at(48), 5 << 26);
    assert_eq!(u64_at(56), 77);
    assert_eq!(u32_at(64), 1);
    assert_eq!(u32_at(68), 64);
    assert_eq!(u64_at(72), 5);
    assert_eq!(u32_at(80), 1);
    assert_eq!(u32_at(84), 2);
    assert_eq!(u64_at(88), 2 << 26);
    assert_eq!([u64_at(96), u64_at(104), u64_at(112), u64_at(120)], [1 << 26, 1000, 600, 100]);
    assert_eq!(u64_at(128), 3 << 26);
    assert_eq!(u32_at(160), crc32c::crc32c(&bytes[..160]));
    assert_eq!(u32_at(164), 0);
}

#[test]
fn a_version_1_manifest_still_opens() {
    let manifest = Manifest { holes: Vec::new(), usage: Vec::new(), ..sample() };
    let mut v1 = manifest.encode()[..80].to_vec();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    v1[12..16].copy_from_slice(&88u32.to_le_bytes());
    let crc = crc32c::crc32c(&v1);
    v1.extend_from_slice(&crc.to_le_bytes());
    v1.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(Manifest::decode(&v1), Ok(manifest));
}
