//! Integration tests of the `talus` command-line tool: each test runs the built binary in a
//! temporary directory of its own and checks its exit code, stdout and stderr against the
//! interface the tool promises (exit 0 success, 1 not found or damage found, 2 any error on
//! one line of stderr). Randomised tests print their seed; rerun one with
//! `TALUS_TEST_SEED=<seed>`.

mod basics;
mod bench;
mod check;
mod errors;
mod maintenance;
mod support;
mod transfer;
mod verbose;
