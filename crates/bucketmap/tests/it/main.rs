//! Integration tests of `talus-bucketmap`. Randomised tests print their seed; rerun one
//! with `TALUS_TEST_SEED=<seed>`.

mod concurrency;
mod crash;
mod growth;
mod model;
mod persistence;
mod snapshot;
