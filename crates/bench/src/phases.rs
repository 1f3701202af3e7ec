//! `redb-phases`: the phases of redb's own benchmark, run on every engine: 24-byte random
//! keys and 150-byte values; a bulk load; 1,000 individual durable writes; 100 durable
//! batches of 1,000 writes; random gets of every key from 1 thread, then 2; removal of half
//! the keys; the disk size before and after the engine's compaction.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};
use talus_workload::Rng;

use crate::engines::{self, Settings};
use crate::run::dir_bytes;

const KEY_LEN: usize = 24;
const VALUE_LEN: usize = 150;
const N_INDIVIDUAL: u64 = 1_000;
const N_BATCHES: u64 = 100;
const BATCH_LEN: u64 = 1_000;
const LOAD_BATCH: u64 = 10_000;

fn key(idx: u64) -> Vec<u8> {
    let mut key = vec![0u8; KEY_LEN];
    Rng::new(idx ^ 0x6B65_7973).fill(&mut key);
    key
}

fn value(idx: u64) -> Vec<u8> {
    let mut value = vec![0u8; VALUE_LEN];
    Rng::new(idx ^ 0x7661_6C75).fill(&mut value);
    value
}

/// Runs the phases for `engine` with `n_keys` loaded, in the empty directory `dir`.
pub fn run(engine_name: &str, n_keys: u64, cache_bytes: u64, dir: &Path) -> Result<Value> {
    let mut engine = engines::open(engine_name, dir, Settings { durable: true, cache_bytes })?;
    let secs = |started: Instant| started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut idx = 0;
    while idx < n_keys {
        let pairs: Vec<_> = (idx..(idx + LOAD_BATCH).min(n_keys)).map(|idx| (key(idx), value(idx))).collect();
        engine.put_many(&pairs)?;
        idx += LOAD_BATCH;
    }
    engine.sync()?;
    let bulk_load = secs(started);

    let started = Instant::now();
    for idx in n_keys..n_keys + N_INDIVIDUAL {
        engine.put(&key(idx), &value(idx))?;
    }
    let individual = secs(started);

    let started = Instant::now();
    let first = n_keys + N_INDIVIDUAL;
    for batch in 0..N_BATCHES {
        let from = first + batch * BATCH_LEN;
        let pairs: Vec<_> = (from..from + BATCH_LEN).map(|idx| (key(idx), value(idx))).collect();
        engine.put_many(&pairs)?;
    }
    let batches = secs(started);
    let n_total = first + N_BATCHES * BATCH_LEN;

    let keys: Vec<Vec<u8>> = (0..n_total).map(key).collect();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let mut rng = Rng::new(42);
    for idx in (1..order.len()).rev() {
        order.swap(idx, rng.below(idx as u64 + 1) as usize);
    }
    let read_all = |engine: &dyn engines::Engine, part: &[usize]| -> Result<u64> {
        let mut found = 0u64;
        for &idx in part {
            found += u64::from(engine.get(&keys[idx], &mut |_| {})?);
        }
        Ok(found)
    };
    let started = Instant::now();
    let found = read_all(engine.as_ref(), &order)?;
    let gets_1_thread = secs(started);
    anyhow::ensure!(found == n_total, "{engine_name} found {found} of {n_total} keys");
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let halves: Vec<&[usize]> = order.chunks(order.len().div_ceil(2)).collect();
        let engine = engine.as_ref();
        let handles: Vec<_> = halves.into_iter().map(|half| scope.spawn(move || read_all(engine, half))).collect();
        for handle in handles {
            handle.join().expect("a reader panicked")?;
        }
        Ok(())
    })?;
    let gets_2_threads = secs(started);

    let started = Instant::now();
    for chunk in keys[..(n_total / 2) as usize].chunks(LOAD_BATCH as usize) {
        engine.delete_many(chunk)?;
    }
    engine.sync()?;
    let removals = secs(started);

    let disk_before = dir_bytes(dir);
    let started = Instant::now();
    let compacted = engine.compact()?;
    let compaction = secs(started);
    let disk_after = dir_bytes(dir);
    drop(engine);
    Ok(json!({
        "kind": "phases",
        "engine": engine_name,
        "keys": n_keys,
        "bulk_load_secs": bulk_load,
        "individual_writes_secs": individual,
        "batch_writes_secs": batches,
        "gets_1_thread_secs": gets_1_thread,
        "gets_2_threads_secs": gets_2_threads,
        "removals_secs": removals,
        "compaction_secs": if compacted { json!(compaction) } else { Value::Null },
        "disk_bytes_before_compaction": disk_before,
        "disk_bytes_after_compaction": if compacted { json!(disk_after) } else { Value::Null },
    }))
}
