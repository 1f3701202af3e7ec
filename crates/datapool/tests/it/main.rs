//! Integration tests of `talus-datapool`, through its public API only.
//!
//! Randomised tests print their seed; rerun one with `TALUS_TEST_SEED=<seed>`.

mod common;
mod crash;
mod model;
mod open_errors;
mod round_trip;
mod shared;
