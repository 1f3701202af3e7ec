//! Compaction and checkpoints, measured end to end (issue 8's figures). Each part runs its
//! workload a few times (`TALUS_BENCH_RUNS`, default 3) and prints the median; the
//! databases go in a temporary directory under `TALUS_BENCH_DIR` (default the system temp
//! dir). Parts, chosen by `TALUS_BENCH_PARTS` (default `churn,recovery`):
//!
//! - `churn` (`TALUS_BENCH_CHURN_MB`, default 64): that many MiB of live data (16-byte keys,
//!   1000-byte values) written once, then overwritten 5 times in random order with
//!   [`SyncMode::Never`], 8 MiB segments and a 64 MiB memory budget; once with background
//!   compaction off and once with it on, in the same run. Prints the throughput of the
//!   overwrites with compaction as a fraction of without, the peak space amplification seen
//!   at the end of a round (segment bytes on disk over live bytes) and the write
//!   amplification (log bytes appended, compaction's copies included, over bytes the user
//!   wrote).
//! - `recovery` (`TALUS_BENCH_RECOVERY_KEYS`, default 10,000,000): that many keys (16-byte
//!   keys, 32-byte values); then, per run, a checkpoint, 10,000 more puts, a sync and a
//!   crash (`simulate_crash`: the log is durable, the index is not clean, as after SIGKILL),
//!   and the time to reopen from the checkpoint; then, with the checkpoints removed, the
//!   time to reopen by replaying the whole log.
//!
//! `cargo bench -p talus-engine --bench maintenance`

use std::path::Path;
use std::time::{Duration, Instant};

use talus_engine::{Db, Options, SyncMode, WriteBatch};
use talus_testkit::SplitMix64;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|text| text.parse().ok()).unwrap_or(default)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("TALUS_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).expect("tempdir in TALUS_BENCH_DIR"),
        Err(_) => tempfile::tempdir().expect("tempdir"),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn key_of(idx: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&idx.to_be_bytes());
    key[8..].copy_from_slice(&idx.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    key
}

/// One churn run: returns (overwrite puts per second, peak space amplification at the end
/// of a round, write amplification).
fn churn_once(dir: &Path, live_mb: u64, compaction: bool, seed: u64) -> (f64, f64, f64) {
    const VALUE_LEN: usize = 1000;
    const ROUNDS: u64 = 5;
    let n_keys = live_mb * (1 << 20) / VALUE_LEN as u64;
    let db = Options::new()
        .memory_budget(64 << 20)
        .segment_size(8 << 20)
        .sync_mode(SyncMode::Never)
        .background_compaction(compaction)
        .checkpoint_every_bytes(0)
        .open(dir)
        .expect("open");
    let mut value = vec![0u8; VALUE_LEN];
    for idx in 0..n_keys {
        value[..8].copy_from_slice(&idx.to_le_bytes());
        db.put(key_of(idx), &value).expect("load");
    }
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<u64> = (0..n_keys).collect();
    let appended_before = db.stats().counters.n_log_bytes_appended;
    let started = Instant::now();
    let mut peak_space_amp = 0f64;
    for round in 1..=ROUNDS {
        for idx in (1..order.len()).rev() {
            order.swap(idx, rng.below(idx as u64 + 1) as usize);
        }
        for &idx in &order {
            value[..8].copy_from_slice(&(idx + round * n_keys).to_le_bytes());
            db.put(key_of(idx), &value).expect("overwrite");
        }
        peak_space_amp = peak_space_amp.max(db.stats().space_amplification());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = db.stats();
    let user_bytes = ROUNDS * n_keys * (16 + VALUE_LEN as u64);
    let write_amp = (stats.counters.n_log_bytes_appended - appended_before) as f64 / user_bytes as f64;
    db.close().expect("close");
    ((ROUNDS * n_keys) as f64 / elapsed, peak_space_amp, write_amp)
}

fn churn() {
    let live_mb: u64 = env_or("TALUS_BENCH_CHURN_MB", 64);
    let runs: usize = env_or("TALUS_BENCH_RUNS", 3);
    let (mut off, mut on, mut space, mut write) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        for compaction in [false, true] {
            let dir = bench_dir();
            let (rate, space_amp, write_amp) = churn_once(dir.path(), live_mb, compaction, run as u64);
            println!(
                "churn run {run} compaction {}: {rate:.0} overwrites/s, peak space amplification {space_amp:.2}x, \
                 write amplification {write_amp:.2}x",
                if compaction { "on " } else { "off" }
            );
            match compaction {
                true => {
                    on.push(rate);
                    space.push(space_amp);
                    write.push(write_amp);
                }
                false => off.push(rate),
            }
        }
    }
    let (off, on) = (median(off), median(on));
    println!(
        "churn ({live_mb} MiB live, 5 overwrites, medians of {runs}): {off:.0} overwrites/s without compaction, \
         {on:.0} with ({:.0}%); peak space amplification {:.2}x; write amplification {:.2}x",
        100.0 * on / off,
        median(space),
        median(write)
    );
}

fn open_timed(dir: &Path) -> (Db, Duration) {
    let started = Instant::now();
    let db = Options::new().sync_mode(SyncMode::Never).checkpoint_every_bytes(0).open(dir).expect("open");
    (db, started.elapsed())
}

fn recovery() {
    let n_keys: u64 = env_or("TALUS_BENCH_RECOVERY_KEYS", 10_000_000);
    let runs: usize = env_or("TALUS_BENCH_RUNS", 3);
    let dir = bench_dir();
    let db = Options::new().sync_mode(SyncMode::Never).checkpoint_every_bytes(0).open(dir.path()).expect("open");
    let started = Instant::now();
    let value = [7u8; 32];
    for chunk in (0..n_keys).collect::<Vec<_>>().chunks(1000) {
        let mut batch = WriteBatch::new();
        for &idx in chunk {
            batch.put(key_of(idx), value);
        }
        db.write(batch).expect("load");
    }
    db.sync().expect("sync");
    println!("recovery: loaded {n_keys} keys in {:.1} s", started.elapsed().as_secs_f64());
    let mut db = Some(db);
    let mut with_checkpoint = Vec::new();
    for run in 0..runs {
        let current = db.take().expect("open");
        // A recovery uses its checkpoint up (its index becomes the index): one per run.
        let checkpoint = current.checkpoint().expect("checkpoint");
        println!(
            "recovery run {run}: checkpoint of {} entries, {:.1} MiB, in {:.2} s",
            checkpoint.n_entries,
            checkpoint.n_bytes as f64 / (1 << 20) as f64,
            checkpoint.duration.as_secs_f64()
        );
        for idx in 0..10_000u64 {
            current.put(key_of(n_keys + run as u64 * 10_000 + idx), value).expect("put");
        }
        current.sync().expect("sync");
        current.simulate_crash();
        let (reopened, took) = open_timed(dir.path());
        let recovery = reopened.stats().recovery;
        assert!(recovery.checkpoint_covers_until.is_some(), "the checkpoint was used");
        println!(
            "recovery run {run}: from the checkpoint in {:.3} s ({} records replayed)",
            took.as_secs_f64(),
            recovery.n_records_replayed
        );
        with_checkpoint.push(took.as_secs_f64());
        db = Some(reopened);
    }
    if dir.path().join("checkpoints").exists() {
        std::fs::remove_dir_all(dir.path().join("checkpoints")).expect("remove the checkpoints");
    }
    let mut full = Vec::new();
    for run in 0..runs {
        let current = db.take().expect("open");
        current.put(b"one more", value).expect("put");
        current.sync().expect("sync");
        current.simulate_crash();
        let (reopened, took) = open_timed(dir.path());
        let recovery = reopened.stats().recovery;
        assert!(recovery.checkpoint_covers_until.is_none(), "no checkpoint left");
        println!(
            "recovery run {run}: whole log in {:.3} s ({} records replayed)",
            took.as_secs_f64(),
            recovery.n_records_replayed
        );
        full.push(took.as_secs_f64());
        db = Some(reopened);
    }
    let (with_checkpoint, full) = (median(with_checkpoint), median(full));
    println!(
        "recovery ({n_keys} keys, medians of {runs}): {with_checkpoint:.3} s from a checkpoint + 10,000 records, \
         {full:.3} s replaying the whole log ({:.1}%)",
        100.0 * with_checkpoint / full
    );
    db.take().expect("open").close().expect("close");
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) runs nothing.
    let benching = std::env::args().any(|arg| arg == "--bench");
    let parts = std::env::var("TALUS_BENCH_PARTS").unwrap_or_else(|_| "churn,recovery".to_owned());
    if !benching {
        println!("maintenance bench: run with `cargo bench` for figures");
        return;
    }
    for part in parts.split(',') {
        match part.trim() {
            "churn" => churn(),
            "recovery" => recovery(),
            other => eprintln!("unknown part {other:?} (churn, recovery)"),
        }
    }
}
