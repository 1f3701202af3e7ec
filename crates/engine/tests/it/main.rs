//! Integration tests of `talus-engine`. Randomised tests print their seed; rerun one with
//! `TALUS_TEST_SEED=<seed>`.

mod backup;
mod basics;
mod checkpoint;
mod collisions;
mod compaction;
mod concurrency;
mod corruption;
mod crash;
mod faults;
mod model;
mod scale;
mod support;
mod verify;
