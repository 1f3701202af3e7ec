//! Acceptance criterion 8: random operation sequences against a simple model of addresses
//! and states (single-threaded, reuse off, so every outcome is predictable).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use talus_ringbuf::{Error, EvictAction, RingConfig};

use crate::{fill_pattern, has_pattern, heap_ring, test_seed};

const CAPACITY: u64 = 4096;
const PAGE: u64 = 512;

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Free(usize),
    Read(usize),
    /// Evict up to this fraction (in percent) of the way from head to tail.
    Evict(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop_oneof![1..=64usize, 1..=(PAGE as usize - 8)].prop_map(Op::Alloc),
        1 => any::<usize>().prop_map(Op::Free),
        2 => any::<usize>().prop_map(Op::Read),
        1 => (0..=100u8).prop_map(Op::Evict),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Ready,
    Freed,
    Evicted,
    Filler,
}

#[derive(Clone, Copy, Debug)]
struct Item {
    address: u64,
    size: u64,
    len: usize,
    state: State,
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let ring = heap_ring(CAPACITY as usize, RingConfig::new().page_size(PAGE as usize));
    // Entries and fillers tile [0, tail) exactly, in address order.
    let mut items: Vec<Item> = Vec::new();
    let (mut head, mut tail) = (0u64, 0u64);
    let entry_indices = |items: &[Item]| -> Vec<usize> {
        items.iter().enumerate().filter(|(_, item)| item.state != State::Filler).map(|(idx, _)| idx).collect()
    };

    for op in ops {
        match *op {
            Op::Alloc(len) => {
                let size = 8 + len.div_ceil(8) as u64 * 8;
                let page_end = (tail & !(PAGE - 1)) + PAGE;
                let start = if tail + size <= page_end { tail } else { page_end };
                match ring.alloc(len) {
                    Ok(mut entry) => {
                        prop_assert!(start + size <= head + CAPACITY, "allocated although the model is full");
                        prop_assert_eq!(entry.address(), start);
                        fill_pattern(&mut entry, start);
                        if start != tail {
                            items.push(Item { address: tail, size: start - tail, len: 0, state: State::Filler });
                        }
                        items.push(Item { address: start, size, len, state: State::Ready });
                        tail = start + size;
                    }
                    Err(Error::Full { .. }) => prop_assert!(start + size > head + CAPACITY, "full although it fits"),
                    Err(other) => return Err(TestCaseError::fail(format!("alloc({len}): {other}"))),
                }
            }
            Op::Free(pick) | Op::Read(pick) => {
                let indices = entry_indices(&items);
                if indices.is_empty() {
                    continue;
                }
                let item = &mut items[indices[pick % indices.len()]];
                let address = item.address;
                if address < head {
                    item.state = State::Evicted; // head passed it, evicted or skipped
                }
                if matches!(op, Op::Free(_)) {
                    match (item.state, ring.free(address)) {
                        (State::Ready, Ok(())) => item.state = State::Freed,
                        (State::Freed, Err(Error::WrongState { .. }))
                        | (State::Evicted, Err(Error::Evicted { .. })) => {}
                        (state, result) => {
                            return Err(TestCaseError::fail(format!("free {address} in {state:?}: {result:?}")));
                        }
                    }
                } else {
                    let guard = ring.pin();
                    match (item.state, guard.read(address)) {
                        (State::Ready, Ok(bytes)) => {
                            prop_assert_eq!(bytes.len(), item.len);
                            prop_assert!(has_pattern(bytes, address));
                        }
                        (State::Freed, Err(Error::WrongState { .. }))
                        | (State::Evicted, Err(Error::Evicted { .. })) => {}
                        (state, result) => {
                            return Err(TestCaseError::fail(format!("read {address} in {state:?}: {result:?}")));
                        }
                    }
                }
            }
            Op::Evict(percent) => {
                let until = head + (tail - head) * u64::from(percent) / 100;
                let expected: Vec<u64> = items
                    .iter()
                    .filter(|item| item.address >= head && item.address < until && item.state == State::Ready)
                    .map(|item| item.address)
                    .collect();
                let mut seen = Vec::new();
                let mut bytes_ok = true;
                let report = ring.evict_until(until, |entry| {
                    bytes_ok &= has_pattern(entry.payload, entry.address);
                    seen.push(entry.address);
                    EvictAction::Evicted
                });
                prop_assert!(bytes_ok, "evicted bytes differ");
                prop_assert_eq!(&seen, &expected);
                let old_head = head;
                for item in items.iter_mut().filter(|item| item.address >= old_head && item.address < until) {
                    if item.state == State::Ready {
                        item.state = State::Evicted;
                    }
                    head = item.address + item.size;
                }
                prop_assert_eq!(report.head, head);
                prop_assert_eq!(ring.head(), head);
            }
        }
        prop_assert_eq!(ring.tail(), tail);
        // Forget what can no longer be read, so the model stays small.
        if items.len() > 4096 {
            items.retain(|item| item.address + item.size > head);
        }
    }
    Ok(())
}

#[test]
fn random_operations_match_the_model() {
    let seed = test_seed("random_operations_match_the_model");
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128);
    let mut seed_bytes = [0u8; 32];
    for (idx, chunk) in seed_bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&seed.wrapping_add(idx as u64).to_le_bytes());
    }
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    if let Err(failure) = runner.run(&proptest::collection::vec(op(), 1..400), |ops| run(&ops)) {
        panic!("seed {seed}: {failure}");
    }
}
