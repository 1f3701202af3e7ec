//! Integration tests of `talus-engine`. Randomised tests print their seed; rerun one with
//! `TALUS_TEST_SEED=<seed>`.

mod basics;
mod collisions;
mod concurrency;
mod corruption;
mod crash;
mod faults;
mod model;
mod scale;
mod support;
mod verify;
