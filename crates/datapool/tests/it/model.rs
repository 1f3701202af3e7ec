//! Acceptance criterion 7: random lengths and random sequences of writes, flushes, clean
//! closes and unclean drops, checked against a model of what each kind promises.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};

use talus_datapool::Error;

use crate::common::{FILE_KINDS, FileKind, test_seed};

#[derive(Clone, Debug)]
enum Op {
    /// Write `bytes` at `offset` (taken modulo the length; clipped at the end).
    Write {
        offset: usize,
        bytes: Vec<u8>,
    },
    Flush,
    /// `flush` then drop, then open.
    CloseAndOpen,
    /// Drop without flushing (as a crashing process would leave it), then open.
    DropAndOpen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(offset, bytes)| Op::Write { offset, bytes }),
        2 => Just(Op::Flush),
        1 => Just(Op::CloseAndOpen),
        1 => Just(Op::DropAndOpen),
    ]
}

fn data_len() -> impl Strategy<Value = usize> {
    prop_oneof![1..=64usize, 4090..=4100usize, 1..=20_000usize]
}

/// What the pool should hold: the bytes in memory, the bytes last saved, and whether write
/// access was handed out since (which is what decides `Dirty` for an `MmapFile`).
struct Model {
    current: Vec<u8>,
    saved: Vec<u8>,
    written_since_flush: bool,
}

fn run_case(kind: FileKind, len: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pool");
    let mut pool = kind.create(&path, len, 5).expect("create");
    let mut model = Model { current: vec![0; len], saved: vec![0; len], written_since_flush: false };

    for op in ops {
        match op {
            Op::Write { offset, bytes } => {
                let start = offset % len;
                let end = (start + bytes.len()).min(len);
                pool.as_mut_slice()[start..end].copy_from_slice(&bytes[..end - start]);
                model.current[start..end].copy_from_slice(&bytes[..end - start]);
                model.written_since_flush = true;
            }
            Op::Flush => {
                pool.flush().expect("flush");
                model.saved.clone_from(&model.current);
                model.written_since_flush = false;
            }
            Op::CloseAndOpen => {
                pool.flush().expect("flush");
                drop(pool);
                pool = kind.open(&path, len, 5).expect("open after a clean close");
                model.saved.clone_from(&model.current);
                model.written_since_flush = false;
            }
            Op::DropAndOpen => {
                drop(pool);
                match (kind, kind.open(&path, len, 5)) {
                    (FileKind::Mmap, Err(Error::Dirty { .. })) if model.written_since_flush => {
                        // The owner's recovery: discard the pool and start again.
                        std::fs::remove_file(&path).expect("remove");
                        pool = kind.create(&path, len, 5).expect("recreate");
                        model.saved = vec![0; len];
                    }
                    (FileKind::Mmap, Ok(_)) if model.written_since_flush => {
                        return Err(TestCaseError::fail("an unflushed, written MmapFile opened as clean"));
                    }
                    (_, Ok(reopened)) => pool = reopened,
                    (_, Err(error)) => return Err(TestCaseError::fail(format!("open after drop: {error}"))),
                }
                model.current.clone_from(&model.saved);
                model.written_since_flush = false;
            }
        }
        prop_assert_eq!(pool.len(), len);
        prop_assert!(pool.as_slice() == &model.current[..], "bytes differ from the model after {:?}", op);
    }
    Ok(())
}

#[test]
fn random_write_flush_reopen_sequences_match_the_model() {
    let seed = test_seed("random_write_flush_reopen_sequences_match_the_model");
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48);
    for kind in FILE_KINDS {
        let config = Config { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..Config::default() };
        let mut runner = TestRunner::new_with_rng(
            config.clone(),
            proptest::test_runner::TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
        );
        let strategy = (data_len(), proptest::collection::vec(op(), 1..40));
        if let Err(failure) = runner.run(&strategy, |(len, ops)| run_case(kind, len, &ops)) {
            panic!("{kind:?} (seed {seed}): {failure}");
        }
    }
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (idx, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&seed.wrapping_add(idx as u64).to_le_bytes());
    }
    bytes
}
