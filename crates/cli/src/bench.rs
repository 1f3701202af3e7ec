//! `bench`: the engine's main job in one command. In a fresh database in a temporary
//! directory: load `--keys` keys (each thread its share, one put at a time), then run
//! `--ops` operations of a YCSB-style workload on them, then close and reopen; print
//! throughput, latency percentiles, disk use and peak memory; remove the directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use serde_json::json;
use talus_engine::{Db, MAX_KEY_LEN, Options, SyncMode};

use crate::Outcome;
use crate::cli::Global;
use crate::progress;
use crate::stats::size;
use talus_workload::{Distribution, Histogram, KeyChooser, Op, Rng, Workload, key_of};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The operation mix of the run phase.
    #[arg(long, value_enum, default_value = "a")]
    workload: Workload,
    /// Keys loaded before the run.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Operations in the run phase.
    #[arg(long, default_value_t = 2_000_000)]
    ops: u64,
    /// Bytes per key (at least 8).
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Client threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// How the run phase picks keys.
    #[arg(long, value_enum, default_value = "zipf")]
    distribution: Distribution,
    /// The Zipfian skew (0 < theta < 1; YCSB uses 0.99).
    #[arg(long, default_value_t = 0.99)]
    zipf_theta: f64,
    /// Where to create the temporary database directory (default: the system's temporary
    /// directory). Sync modes are only as meaningful as this file system.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the database directory afterwards (its path is printed).
    #[arg(long)]
    keep: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// One row of the results: an operation of a phase.
struct Row {
    phase: &'static str,
    operation: &'static str,
    elapsed: Duration,
    latencies: Histogram,
}

/// Per-thread latencies of the run phase, by operation.
#[derive(Default, Clone)]
struct RunLatencies {
    read: Histogram,
    update: Histogram,
    read_modify_write: Histogram,
}

pub(crate) fn bench(global: &Global, args: &BenchArgs) -> Result<Outcome> {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.keys == 0 || threads == 0 {
        bail!("--keys and --threads must be at least 1");
    }
    if !(8..=MAX_KEY_LEN).contains(&args.key_size) {
        bail!("--key-size must be from 8 to {MAX_KEY_LEN}");
    }
    if !(args.zipf_theta > 0.0 && args.zipf_theta < 1.0) {
        bail!("--zipf-theta must be between 0 and 1");
    }
    let sync_mode = global.sync.unwrap_or(SyncMode::Never);
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tempdir = tempfile::Builder::new()
        .prefix("talus-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let db_dir = tempdir.path().join("db");
    let mut options = Options::new().sync_mode(sync_mode);
    if let Some(bytes) = global.memory_budget {
        options = options.memory_budget(bytes);
    }
    if let Some(bytes) = global.segment_size {
        options = options.segment_size(bytes);
    }
    let db = options.clone().open(&db_dir)?;
    let memory_budget_bytes = db.stats().memory_budget_bytes;
    if args.value_size > db.stats().max_value_len as usize {
        bail!(
            "--value-size {} exceeds the largest value, {} (see --memory-budget)",
            args.value_size,
            db.stats().max_value_len
        );
    }
    let mut rows = Vec::new();

    let (elapsed, latencies) = load(&db, args, threads)?;
    rows.push(Row { phase: "load", operation: "insert", elapsed, latencies });
    let (elapsed, latencies) = run(&db, args, threads)?;
    let mut all = Histogram::default();
    for (operation, histogram) in
        [("read", &latencies.read), ("update", &latencies.update), ("read-modify-write", &latencies.read_modify_write)]
    {
        if !histogram.is_empty() {
            all.merge(histogram);
            rows.push(Row { phase: "run", operation, elapsed, latencies: histogram.clone() });
        }
    }
    rows.push(Row { phase: "run", operation: "all", elapsed, latencies: all });

    let n_keys = db.stats().n_keys;
    let started = Instant::now();
    db.close()?;
    let close_time = started.elapsed();
    let started = Instant::now();
    let db = options.open(&db_dir)?;
    let reopen_time = started.elapsed();
    db.close()?;
    let (log_bytes, index_bytes) = (dir_size(&db_dir.join("log")), dir_size(&db_dir.join("index")));
    let peak_rss = peak_rss_bytes();

    let kept = match args.keep {
        true => Some(tempdir.keep()),
        false => {
            tempdir.close().context("removing the benchmark's directory")?;
            None
        }
    };
    let setup = Setup { args, threads, sync_mode, memory_budget_bytes };
    let disk = Disk { n_keys, log_bytes, index_bytes, peak_rss, close_time, reopen_time };
    match args.json {
        true => println!("{}", serde_json::to_string_pretty(&report_json(&setup, &rows, &disk, kept.as_deref()))?),
        false => print!("{}", report_table(&setup, &rows, &disk, kept.as_deref())),
    }
    Ok(Outcome::Done)
}

/// Each thread puts its share of the keys (key `idx` goes to thread `idx % threads`).
fn load(db: &Db, args: &BenchArgs, threads: usize) -> Result<(Duration, Histogram)> {
    let bar = progress::bar("load", args.keys, false);
    let started = Instant::now();
    let results: Vec<Result<Histogram>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let bar = bar.clone();
                scope.spawn(move || -> Result<Histogram> {
                    let mut rng = Rng::new(args.seed ^ (thread as u64).wrapping_mul(0x9E37_79B9));
                    let mut latencies = Histogram::default();
                    let (mut key, mut value) = (Vec::new(), vec![0u8; args.value_size]);
                    rng.fill(&mut value);
                    let mut n = 0u64;
                    for idx in (thread as u64..args.keys).step_by(threads) {
                        key_of(idx, args.key_size, &mut key);
                        stamp(&mut value, idx);
                        let started = Instant::now();
                        db.put(&key, &value)?;
                        latencies.record(started.elapsed().as_nanos() as u64);
                        n += 1;
                        if n.is_multiple_of(4096) {
                            bar.inc(4096);
                        }
                    }
                    Ok(latencies)
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().unwrap_or_else(|_| bail!("a load thread panicked"))).collect()
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut all = Histogram::default();
    for result in results {
        all.merge(&result?);
    }
    Ok((elapsed, all))
}

/// Each thread runs its share of the operations on keys the chooser picks.
fn run(db: &Db, args: &BenchArgs, threads: usize) -> Result<(Duration, RunLatencies)> {
    let chooser = KeyChooser::new(args.distribution, args.keys, args.zipf_theta);
    let bar = progress::bar(&format!("run ({})", args.workload.describe()), args.ops, false);
    let started = Instant::now();
    let results: Vec<Result<RunLatencies>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let (bar, chooser) = (bar.clone(), &chooser);
                let n_ops = args.ops / threads as u64 + u64::from((thread as u64) < args.ops % threads as u64);
                scope.spawn(move || -> Result<RunLatencies> {
                    let mut rng = Rng::new(args.seed.wrapping_add(1) ^ (thread as u64).wrapping_mul(0x85EB_CA6B));
                    let mut latencies = RunLatencies::default();
                    let (mut key, mut value) = (Vec::new(), vec![0u8; args.value_size]);
                    rng.fill(&mut value);
                    for op_idx in 0..n_ops {
                        let op = args.workload.pick(&mut rng);
                        key_of(chooser.next(&mut rng), args.key_size, &mut key);
                        let started = Instant::now();
                        match op {
                            Op::Read => {
                                let found = db.get_with(&key, |value| value.len())?;
                                if found.is_none() {
                                    bail!("a loaded key is missing");
                                }
                                latencies.read.record(started.elapsed().as_nanos() as u64);
                            }
                            Op::Update => {
                                stamp(&mut value, op_idx);
                                db.put(&key, &value)?;
                                latencies.update.record(started.elapsed().as_nanos() as u64);
                            }
                            Op::ReadModifyWrite => {
                                let found = db.get_with(&key, |old| {
                                    let n = value.len().min(old.len());
                                    value[..n].copy_from_slice(&old[..n]);
                                })?;
                                if found.is_none() {
                                    bail!("a loaded key is missing");
                                }
                                stamp(&mut value, op_idx);
                                db.put(&key, &value)?;
                                latencies.read_modify_write.record(started.elapsed().as_nanos() as u64);
                            }
                        }
                        if op_idx % 4096 == 4095 {
                            bar.inc(4096);
                        }
                    }
                    Ok(latencies)
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().unwrap_or_else(|_| bail!("a run thread panicked"))).collect()
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let mut all = RunLatencies::default();
    for result in results {
        let result = result?;
        all.read.merge(&result.read);
        all.update.merge(&result.update);
        all.read_modify_write.merge(&result.read_modify_write);
    }
    Ok((elapsed, all))
}

/// Makes a value distinct per write (its first bytes), without a new allocation.
fn stamp(value: &mut [u8], n: u64) {
    let bytes = n.to_le_bytes();
    let len = value.len().min(8);
    value[..len].copy_from_slice(&bytes[..len]);
}

/// Bytes of the files under `dir` (what they take on disk, holes excluded).
fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| match metadata.is_dir() {
            true => 0,
            false => metadata.blocks() * 512,
        })
        .sum()
}

/// The process's peak resident memory (`VmHWM`), if the system says.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

struct Setup<'a> {
    args: &'a BenchArgs,
    threads: usize,
    sync_mode: SyncMode,
    memory_budget_bytes: u64,
}

struct Disk {
    n_keys: u64,
    log_bytes: u64,
    index_bytes: u64,
    peak_rss: Option<u64>,
    close_time: Duration,
    reopen_time: Duration,
}

fn sync_name(sync_mode: SyncMode) -> String {
    match sync_mode {
        SyncMode::Always => "always".to_owned(),
        SyncMode::Never => "never".to_owned(),
        SyncMode::Periodic(interval) => format!("every {interval:?}"),
    }
}

fn distribution_name(args: &BenchArgs) -> String {
    match args.distribution {
        Distribution::Zipf => format!("zipf {}", args.zipf_theta),
        Distribution::Uniform => "uniform".to_owned(),
    }
}

/// Nanoseconds for people: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
fn latency(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

fn report_table(setup: &Setup<'_>, rows: &[Row], disk: &Disk, kept: Option<&Path>) -> String {
    let args = setup.args;
    let mut out = format!(
        "talus bench: workload {:?} ({}), {} over {} keys of {}+{} bytes, {} threads, sync {}, memory budget {}\n\n",
        args.workload,
        args.workload.describe(),
        distribution_name(args),
        args.keys,
        args.key_size,
        args.value_size,
        setup.threads,
        sync_name(setup.sync_mode),
        size(setup.memory_budget_bytes),
    );
    out += &format!(
        "{:<6} {:<18} {:>10} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "phase", "operation", "ops", "secs", "ops/s", "mean", "p50", "p99", "p99.9", "max"
    );
    for row in rows {
        let secs = row.elapsed.as_secs_f64();
        let latencies = &row.latencies;
        out += &format!(
            "{:<6} {:<18} {:>10} {:>8.3} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            row.phase,
            row.operation,
            latencies.len(),
            secs,
            latencies.len() as f64 / secs.max(1e-9),
            latency(latencies.mean() as u64),
            latency(latencies.quantile(0.5)),
            latency(latencies.quantile(0.99)),
            latency(latencies.quantile(0.999)),
            latency(latencies.max()),
        );
    }
    out += &format!(
        "\nclose (log synced, index flushed): {}; reopen after the clean close: {}\n",
        latency(disk.close_time.as_nanos() as u64),
        latency(disk.reopen_time.as_nanos() as u64)
    );
    out += &format!(
        "disk: {} ({} log, {} index) for {} live keys; peak memory (RSS) {}\n",
        size(disk.log_bytes + disk.index_bytes),
        size(disk.log_bytes),
        size(disk.index_bytes),
        disk.n_keys,
        disk.peak_rss.map_or_else(|| "unknown".to_owned(), size),
    );
    if let Some(path) = kept {
        out += &format!("the database is kept in {}\n", path.join("db").display());
    }
    out
}

fn report_json(setup: &Setup<'_>, rows: &[Row], disk: &Disk, kept: Option<&Path>) -> serde_json::Value {
    let args = setup.args;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let latencies = &row.latencies;
            json!({
                "phase": row.phase,
                "operation": row.operation,
                "ops": latencies.len(),
                "secs": row.elapsed.as_secs_f64(),
                "ops_per_sec": latencies.len() as f64 / row.elapsed.as_secs_f64().max(1e-9),
                "mean_ns": latencies.mean(),
                "p50_ns": latencies.quantile(0.5),
                "p99_ns": latencies.quantile(0.99),
                "p999_ns": latencies.quantile(0.999),
                "max_ns": latencies.max(),
            })
        })
        .collect();
    json!({
        "workload": format!("{:?}", args.workload),
        "distribution": distribution_name(args),
        "keys": args.keys,
        "ops": args.ops,
        "key_size": args.key_size,
        "value_size": args.value_size,
        "threads": setup.threads,
        "sync": sync_name(setup.sync_mode),
        "memory_budget_bytes": setup.memory_budget_bytes,
        "seed": args.seed,
        "rows": rows,
        "close_secs": disk.close_time.as_secs_f64(),
        "reopen_secs": disk.reopen_time.as_secs_f64(),
        "n_keys": disk.n_keys,
        "log_disk_bytes": disk.log_bytes,
        "index_disk_bytes": disk.index_bytes,
        "peak_rss_bytes": disk.peak_rss,
        "kept_in": kept.map(|path| path.join("db").display().to_string()),
    })
}
