use super::*;

fn sample() -> Manifest {
    Manifest {
        db_id: 0x1111,
        hash_seed: 0x2222,
        segment_size: 1 << 26,
        log_begin: 1 << 26,
        log_end: 3 << 26,
        next_seq: 77,
        clean: true,
        cut_at_log_end: false,
        hash_bits: 64,
        created_unix_ns: 5,
    }
}

#[test]
fn manifest_round_trips_and_rejects_every_flipped_bit() {
    let bytes = sample().encode();
    assert_eq!(Manifest::decode(&bytes), Ok(sample()));
    for bit in 0..MANIFEST_LEN * 8 {
        let mut damaged = bytes;
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(Manifest::decode(&damaged).is_err(), "bit {bit}");
    }
    assert!(Manifest::decode(&bytes[..40]).is_err());
}

#[test]
fn manifest_offsets_match_the_format_document() {
    let bytes = sample().encode();
    assert_eq!(&bytes[0..8], b"TALUSMF\0");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().expect("4")), 1);
    assert_eq!(u32::from_le_bytes(bytes[12..16].try_into().expect("4")), 88);
    assert_eq!(u64::from_le_bytes(bytes[16..24].try_into().expect("8")), 0x1111);
    assert_eq!(u64::from_le_bytes(bytes[24..32].try_into().expect("8")), 0x2222);
    assert_eq!(u64::from_le_bytes(bytes[32..40].try_into().expect("8")), 1 << 26);
    assert_eq!(u64::from_le_bytes(bytes[40..48].try_into().expect("8")), 1 << 26);
    assert_eq!(u64::from_le_bytes(bytes[48..56].try_into().expect("8")), 3 << 26);
    assert_eq!(u64::from_le_bytes(bytes[56..64].try_into().expect("8")), 77);
    assert_eq!(u32::from_le_bytes(bytes[64..68].try_into().expect("4")), 1);
    assert_eq!(u32::from_le_bytes(bytes[68..72].try_into().expect("4")), 64);
    assert_eq!(u64::from_le_bytes(bytes[72..80].try_into().expect("8")), 5);
    assert_eq!(u32::from_le_bytes(bytes[80..84].try_into().expect("4")), crc32c::crc32c(&bytes[..80]));
}
