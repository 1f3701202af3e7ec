//! `talus-workload`: what a Talus benchmark runs, shared by `talus bench` (the CLI) and
//! `talus-bench` (the race against other engines), so that both measure the same thing.
//!
//! It owns the workload definitions (YCSB's A, B, C and F mixes and a write-only one), key
//! choice (uniform, or the scrambled Zipfian of YCSB), the keys themselves, a small
//! deterministic generator, and a log-linear latency histogram. It knows nothing of any
//! engine and does no I/O.

mod histogram;
mod workload;

pub use histogram::Histogram;
pub use workload::{Distribution, KeyChooser, Op, Rng, Workload, Zipf, key_of};
