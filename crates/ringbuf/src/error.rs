//! The one error type of this crate.

/// Everything that can go wrong in `talus-ringbuf`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration or the pool cannot make a ring.
    #[error("invalid ring configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// `alloc(0)`: an entry holds at least one byte.
    #[error("an allocation must be at least one byte")]
    ZeroLength,

    /// The entry would not fit in one page.
    #[error("an allocation of {requested} bytes exceeds the largest entry, {max} bytes (one page minus its header)")]
    TooLarge {
        /// The payload length asked for.
        requested: usize,
        /// The largest payload length this ring allocates.
        max: usize,
    },

    /// No room until entries are evicted from the head (and readers pinned before that
    /// eviction let go).
    #[error("the ring is full: {needed} bytes needed, {available} free before the page end")]
    Full {
        /// Bytes the entry (header included, and the filler to the page end if any) needs.
        needed: u64,
        /// Bytes that could be allocated without eviction.
        available: u64,
    },

    /// The address lies below `head`: the entry was evicted.
    #[error("address {address} was evicted (head is {head})")]
    Evicted {
        /// The address asked for.
        address: u64,
        /// The head at the time.
        head: u64,
    },

    /// The address is not the start of an entry in `[head, tail)`.
    #[error("address {address} is not the start of an entry")]
    InvalidAddress {
        /// The address asked for.
        address: u64,
    },

    /// The entry exists but is not in a state that allows the operation (still being
    /// written, being evicted, or already freed).
    #[error("entry {address} is {state}, which does not allow this operation")]
    WrongState {
        /// The entry's address.
        address: u64,
        /// Its state, in words.
        state: &'static str,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
