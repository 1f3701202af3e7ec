use super::*;

#[test]
fn records_round_trip_and_any_flipped_bit_is_caught() {
    let (key, value) = (b"key".as_slice(), b"a value".as_slice());
    let mut bytes = vec![0u8; encoded_len(key.len(), value.len())];
    encode(&mut bytes, RecordKind::Put, FLAG_BATCH, 42, key, value);
    let record = decode(&bytes, true).expect("valid");
    assert_eq!(record, Record { kind: RecordKind::Put, flags: FLAG_BATCH, seq: 42, key, value });
    for bit in 0..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(decode(&damaged, true).is_err(), "bit {bit} flipped unnoticed");
    }
}

#[test]
fn layout_matches_the_format_document() {
    let mut bytes = vec![0u8; encoded_len(2, 3)];
    encode(&mut bytes, RecordKind::Delete, 0, 1, b"ab", b"xyz");
    // A delete never has a value: encode is lenient, decode is not.
    let mut bytes2 = vec![0u8; encoded_len(2, 0)];
    encode(&mut bytes2, RecordKind::Delete, FLAG_BATCH | FLAG_BATCH_END, 0x0102_0304_0506_0708, b"ab", b"");
    assert!(decode(&bytes, true).is_err());
    assert_eq!(bytes2[4], 2);
    assert_eq!(bytes2[5], 3);
    assert_eq!(&bytes2[6..8], &[2, 0]);
    assert_eq!(&bytes2[8..12], &[0, 0, 0, 0]);
    assert_eq!(&bytes2[16..24], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(&bytes2[24..26], b"ab");
    assert_eq!(u32::from_le_bytes(bytes2[0..4].try_into().expect("4")), crc32c::crc32c(&bytes2[4..]));
}
