//! `overwrite-churn`: space amplification over time. `--keys` pairs (16-byte keys, 100-byte
//! values) loaded, then 5 rounds, each overwriting every key in a new random order and
//! deleting a tenth of them (put back by the next round), buffered; after the load and
//! after every round the disk use is sampled (the engine's compaction runs as it would on
//! its own). Reported: the disk use and space amplification (disk over live key and value
//! bytes) at every sample, its peak and final value, write amplification and throughput.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};
use talus_workload::{Rng, key_of};

use crate::engines::{self, Settings};
use crate::run::{dir_bytes, io_write_bytes, peak_rss_bytes};

const ROUNDS: u64 = 5;
const BATCH: usize = 1_000;

/// Runs the churn for `engine_name` in the empty directory `dir`.
pub fn run(
    engine_name: &str,
    n_keys: u64,
    key_size: usize,
    value_size: usize,
    cache_bytes: u64,
    dir: &Path,
) -> Result<Value> {
    let io_before = io_write_bytes();
    let engine = engines::open(engine_name, dir, Settings { durable: false, cache_bytes })?;
    let mut rng = Rng::new(0xC4_0A27);
    let pair = |idx: u64, version: u64| {
        let (mut key, mut value) = (Vec::new(), vec![0u8; value_size]);
        key_of(idx, key_size, &mut key);
        Rng::new(idx ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15)).fill(&mut value);
        (key, value)
    };
    let started = Instant::now();
    let all: Vec<u64> = (0..n_keys).collect();
    for chunk in all.chunks(BATCH) {
        engine.put_many(&chunk.iter().map(|&idx| pair(idx, 0)).collect::<Vec<_>>())?;
    }
    engine.sync()?;
    let live_bytes = n_keys * (key_size + value_size) as u64;
    let mut samples = vec![dir_bytes(dir)];
    let mut n_written = n_keys;
    let mut order = all.clone();
    for round in 1..=ROUNDS {
        for idx in (1..order.len()).rev() {
            order.swap(idx, rng.below(idx as u64 + 1) as usize);
        }
        for chunk in order.chunks(BATCH) {
            engine.put_many(&chunk.iter().map(|&idx| pair(idx, round)).collect::<Vec<_>>())?;
        }
        n_written += n_keys;
        let deleted: Vec<Vec<u8>> = order[..order.len() / 10].iter().map(|&idx| pair(idx, 0).0).collect();
        for chunk in deleted.chunks(BATCH) {
            engine.delete_many(chunk)?;
        }
        engine.sync()?;
        samples.push(dir_bytes(dir));
    }
    let secs = started.elapsed().as_secs_f64();
    // The last round deleted a tenth: the live data is nine tenths of the keys.
    let final_live = live_bytes - live_bytes / 10;
    drop(engine);
    let final_disk = dir_bytes(dir);
    let bytes_written = io_write_bytes().saturating_sub(io_before);
    let space: Vec<f64> = samples.iter().map(|&disk| disk as f64 / live_bytes as f64).collect();
    Ok(json!({
        "kind": "churn",
        "engine": engine_name,
        "keys": n_keys,
        "rounds": ROUNDS,
        "writes_per_sec": n_written as f64 / secs,
        "disk_bytes_samples": samples,
        "space_amplification_samples": space,
        "peak_space_amplification": space.iter().copied().fold(0.0, f64::max),
        "final_space_amplification": final_disk as f64 / final_live as f64,
        "write_amplification": bytes_written as f64 / (n_written * (key_size + value_size) as u64) as f64,
        "peak_rss_bytes": peak_rss_bytes(),
    }))
}
