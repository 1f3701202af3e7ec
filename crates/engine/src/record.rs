//! Log records: the payload of every ring entry the engine writes, and of every entry in a
//! segment file (docs/format.md, "Log record").
//!
//! ```text
//! offset size field
//!      0    4 crc32c of bytes 4..(24 + key_len + value_len)
//!      4    1 kind: 1 put, 2 delete
//!      5    1 flags: bit 0 batch member, bit 1 last member of its batch; others zero
//!      6    2 key_len (u16)
//!      8    4 value_len (u32; zero for a delete)
//!     12    4 reserved for a keyspace id (zero)
//!     16    8 sequence number (u64)
//!     24    . key, then value
//! ```

/// The longest key: 65,535 bytes.
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// Bytes of record header in front of the key.
pub(crate) const RECORD_HEADER_LEN: usize = 24;

const _: () = assert!(RECORD_HEADER_LEN == 4 + 1 + 1 + 2 + 4 + 4 + 8);

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum RecordKind {
    Put = 1,
    Delete = 2,
}

/// Set on every record of a batch.
pub(crate) const FLAG_BATCH: u8 = 1;
/// Set on the last record of a batch: the batch is complete.
pub(crate) const FLAG_BATCH_END: u8 = 2;
const KNOWN_FLAGS: u8 = FLAG_BATCH | FLAG_BATCH_END;

/// A record, borrowed from the bytes it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) kind: RecordKind,
    pub(crate) flags: u8,
    pub(crate) seq: u64,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// Bytes a record with these lengths takes.
pub(crate) fn encoded_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_LEN + key_len + value_len
}

/// Writes the record into `out`, which must be exactly [`encoded_len`] bytes.
pub(crate) fn encode(out: &mut [u8], kind: RecordKind, flags: u8, seq: u64, key: &[u8], value: &[u8]) {
    assert!(key.len() <= MAX_KEY_LEN && u32::try_from(value.len()).is_ok(), "lengths checked by the caller");
    assert_eq!(out.len(), encoded_len(key.len(), value.len()));
    out[4] = kind as u8;
    out[5] = flags;
    out[6..8].copy_from_slice(&(key.len() as u16).to_le_bytes());
    out[8..12].copy_from_slice(&(value.len() as u32).to_le_bytes());
    out[12..16].copy_from_slice(&0u32.to_le_bytes());
    out[16..24].copy_from_slice(&seq.to_le_bytes());
    out[RECORD_HEADER_LEN..RECORD_HEADER_LEN + key.len()].copy_from_slice(key);
    out[RECORD_HEADER_LEN + key.len()..].copy_from_slice(value);
    let crc = crc32c::crc32c(&out[4..]);
    out[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// Parses `payload` (exactly one record). With `verify`, also checks the crc32c; records
/// in memory were written by this process and are not re-checked.
pub(crate) fn decode(payload: &[u8], verify: bool) -> Result<Record<'_>, &'static str> {
    if payload.len() < RECORD_HEADER_LEN {
        return Err("record shorter than its header");
    }
    let key_len = u16::from_le_bytes([payload[6], payload[7]]) as usize;
    let value_len = u32::from_le_bytes([payload[8], payload[9], payload[10], payload[11]]) as usize;
    if encoded_len(key_len, value_len) != payload.len() {
        return Err("record lengths disagree with the entry's length");
    }
    if verify {
        let stored = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if crc32c::crc32c(&payload[4..]) != stored {
            return Err("record checksum mismatch");
        }
    }
    let kind = match payload[4] {
        1 => RecordKind::Put,
        2 => RecordKind::Delete,
        _ => return Err("unknown record kind"),
    };
    let flags = payload[5];
    if flags & !KNOWN_FLAGS != 0 || payload[12..16] != [0; 4] {
        return Err("unknown record flags");
    }
    if kind == RecordKind::Delete && value_len != 0 {
        return Err("a delete record with a value");
    }
    let seq = u64::from_le_bytes(payload[16..24].try_into().expect("8 bytes"));
    let key = &payload[RECORD_HEADER_LEN..RECORD_HEADER_LEN + key_len];
    let value = &payload[RECORD_HEADER_LEN + key_len..];
    Ok(Record { kind, flags, seq, key, value })
}

#[cfg(test)]
mod tests;
