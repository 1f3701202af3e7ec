//! A disk-backed, sharded, open-addressing hash index in datapool files.
//!
//! This crate owns [`BucketMap`]: a persistent map from fixed-size keys ([`Key`]: `u64`,
//! `[u8; N]`) to fixed-size values (`bytemuck::Pod`), placed by a seeded 64-bit hash
//! (xxh3; the seed is random per map and persisted). The hash's high bits pick one of
//! `2^n` buckets; each bucket is a power-of-two table of cells with linear probing in an
//! [`MmapFile`](talus_datapool::MmapFile), and grows on its own (a new file twice the size,
//! rehash, switch, delete the old one) when an insert finds no free cell within
//! `max_search` cells. Keys may repeat (multimap operations), because the engine stores
//! 64-bit key hashes and resolves collisions itself.
//!
//! Lookups take no lock (a seqlock per bucket over the table's words, which datapool's
//! `SharedMmapFile` shares as atomics); writers lock one bucket. A table replaced by
//! growth is retired in place, so a lookup still reading it never meets unmapped memory.
//!
//! A small checksummed manifest, replaced atomically, records each bucket's file and size,
//! the seed and a clean flag. After a crash the map opens as [`Error::NotClean`] (or, on
//! request, is discarded) instead of serving a possibly torn index.
//!
//! What this crate deliberately does not do: variable-size keys or values, ordering, or
//! any `unsafe` (the datapool provides the bytes).

#![forbid(unsafe_code)]

mod bucket;
mod config;
mod error;
mod key;
mod live;
mod manifest;
mod map;

pub use bucket::BucketStats;
pub use config::{BucketMapConfig, MAX_BUCKET_BITS, MAX_BUCKET_CELLS, MAX_SEARCH_LIMIT};
pub use error::{Error, Result};
pub use key::{Key, KeyHasher, Xxh3Hasher};
pub use map::BucketMap;
