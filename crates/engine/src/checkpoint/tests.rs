use super::*;

fn sample() -> CheckpointMeta {
    CheckpointMeta {
        db_id: 7,
        replay_from: 100,
        covers_until: 200,
        next_seq: 9,
        n_entries: 100_000,
        usage: vec![SegmentUsage { first_address: 0, written_bytes: 900, live_bytes: 800, tombstone_bytes: 50 }],
        segments: vec![0, 1 << 20],
        bucket_replay_from: vec![100, 150, 200],
    }
}

#[test]
fn checkpoint_metadata_round_trips_and_rejects_every_flipped_bit_and_cut() {
    let bytes = sample().encode();
    assert_eq!(CheckpointMeta::decode(&bytes), Ok(sample()));
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(CheckpointMeta::decode(&damaged).is_err(), "bit {bit}");
    }
    for len in 0..bytes.len() {
        assert!(CheckpointMeta::decode(&bytes[..len]).is_err(), "cut to {len}");
    }
    assert_eq!(checkpoint_name(200), "00000000000000c8");
    assert_eq!(parse_checkpoint_name("00000000000000c8"), Some(200));
    assert_eq!(parse_checkpoint_name("checkpoint.tmp"), None);
}

#[test]
fn checkpoint_offsets_match_the_format_document() {
    let bytes = sample().encode();
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
    assert_eq!(bytes.len(), 80 + 32 + 16 + 24);
    assert_eq!(&bytes[0..8], b"TALUSCKP");
    assert_eq!((u32_at(8), u32_at(12) as usize), (2, bytes.len()));
    assert_eq!([u64_at(16), u64_at(24), u64_at(32), u64_at(40), u64_at(48)], [7, 100, 200, 9, 100_000]);
    assert_eq!((u32_at(56), u32_at(60)), (1, 2));
    assert_eq!([u64_at(64), u64_at(72), u64_at(80), u64_at(88)], [0, 900, 800, 50]);
    assert_eq!([u64_at(96), u64_at(104)], [0, 1 << 20]);
    assert_eq!((u32_at(112), u32_at(116)), (3, 0));
    assert_eq!([u64_at(120), u64_at(128), u64_at(136)], [100, 150, 200]);
    assert_eq!(u32_at(144), crc32c::crc32c(&bytes[..144]));
    assert_eq!(u32_at(148), 0);
}
