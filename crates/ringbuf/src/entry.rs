//! The 8-byte header in front of every entry: its state, its size and its payload length,
//! packed into one atomic word so that a state change is one compare-and-swap.
//!
//! Layout of the word: bits 0..8 state, bits 8..36 the entry size in 8-byte units (header
//! included), bits 36..64 the payload length in bytes. A zero word means "no entry written
//! here yet". The ring never persists it, but a caller that writes raw ring bytes to disk
//! (`Guard::raw_range`) persists it: the layout is therefore stable, stored little-endian
//! by such callers, and decoded with [`EntryHeader::decode`].

/// Bytes of header in front of every payload.
pub const ENTRY_HEADER_LEN: usize = 8;

/// Entries start, and payloads are padded, to this alignment.
pub const ENTRY_ALIGN: usize = 8;

/// The largest page a ring may use (so sizes and lengths fit their header fields).
pub const MAX_PAGE_SIZE: usize = 1 << 28;

const STATE_BITS: u32 = 8;
const SIZE_UNITS_BITS: u32 = 28;
const LEN_SHIFT: u32 = STATE_BITS + SIZE_UNITS_BITS;

const _: () = assert!(MAX_PAGE_SIZE / ENTRY_ALIGN < (1 << SIZE_UNITS_BITS));
const _: () = assert!(((MAX_PAGE_SIZE - ENTRY_HEADER_LEN) as u64) < (1 << (64 - LEN_SHIFT)));

/// Where an entry is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryState {
    /// Reserved by `alloc`, being written; pinned against eviction.
    Allocated = 1,
    /// Published: readable, evictable, freeable.
    Ready = 2,
    /// Handed to an eviction callback, which has it exclusively.
    Evicting = 3,
    /// Evicted; `head` may pass it.
    Evicted = 4,
    /// Freed and never reused: a tombstone that eviction skips.
    Freed = 5,
    /// Freed onto a size-class free list, waiting to be reused in place.
    FreeListed = 6,
    /// Covers the unused end of a page; eviction skips it.
    Filler = 7,
}

impl EntryState {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            1 => EntryState::Allocated,
            2 => EntryState::Ready,
            3 => EntryState::Evicting,
            4 => EntryState::Evicted,
            5 => EntryState::Freed,
            6 => EntryState::FreeListed,
            7 => EntryState::Filler,
            _ => return None,
        })
    }

    /// The state in words, for errors.
    pub fn name(self) -> &'static str {
        match self {
            EntryState::Allocated => "allocated",
            EntryState::Ready => "ready",
            EntryState::Evicting => "evicting",
            EntryState::Evicted => "evicted",
            EntryState::Freed => "freed",
            EntryState::FreeListed => "free-listed",
            EntryState::Filler => "a filler",
        }
    }
}

/// A decoded header word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryHeader {
    /// The entry's state.
    pub state: EntryState,
    /// Bytes the entry occupies, header included; a multiple of 8.
    pub size: usize,
    /// Payload bytes the caller asked for (at most `size - 8`).
    pub len: usize,
}

impl EntryHeader {
    /// The header word. `size` must be a multiple of 8 up to [`MAX_PAGE_SIZE`] and hold
    /// `len` plus the header.
    pub fn encode(self) -> u64 {
        debug_assert!(self.size.is_multiple_of(ENTRY_ALIGN) && self.size <= MAX_PAGE_SIZE);
        debug_assert!(self.len + ENTRY_HEADER_LEN <= self.size);
        u64::from(self.state as u8)
            | (((self.size / ENTRY_ALIGN) as u64) << STATE_BITS)
            | ((self.len as u64) << LEN_SHIFT)
    }

    /// `None` for a zero word (nothing written yet) or a word no writer produces.
    pub fn decode(word: u64) -> Option<Self> {
        let state = EntryState::from_bits((word & 0xff) as u8)?;
        let size = ((word >> STATE_BITS) & ((1 << SIZE_UNITS_BITS) - 1)) as usize * ENTRY_ALIGN;
        let len = (word >> LEN_SHIFT) as usize;
        (size >= ENTRY_HEADER_LEN && len + ENTRY_HEADER_LEN <= size).then_some(EntryHeader { state, size, len })
    }

    pub(crate) fn with_state(self, state: EntryState) -> Self {
        EntryHeader { state, ..self }
    }
}

/// The bytes an entry with a `len`-byte payload occupies.
pub(crate) fn entry_size(len: usize) -> usize {
    ENTRY_HEADER_LEN + len.div_ceil(ENTRY_ALIGN) * ENTRY_ALIGN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_words_round_trip() {
        for state in [EntryState::Allocated, EntryState::Ready, EntryState::Filler, EntryState::FreeListed] {
            for (size, len) in [(16, 1), (16, 8), (2056, 2048), (MAX_PAGE_SIZE, MAX_PAGE_SIZE - 8), (4096, 0)] {
                let header = EntryHeader { state, size, len };
                assert_eq!(EntryHeader::decode(header.encode()), Some(header));
            }
        }
        assert_eq!(EntryHeader::decode(0), None);
        assert_eq!(entry_size(1), 16);
        assert_eq!(entry_size(8), 16);
        assert_eq!(entry_size(2048), 2056);
    }
}
