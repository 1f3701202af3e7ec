//! `talus-bench`: Talus raced against redb, fjall and LMDB on one workload definition, every
//! engine in the same run, with the same durability and cache budget; and the machine's raw
//! disk baselines beside them. docs/bench.md says how to run it and what each number means.
//!
//! Each (engine, workload) pair runs in a child process of this binary, so that peak memory
//! and bytes written are that engine's alone; the parent collects the children's results
//! and prints a table, and writes them as CSV and JSON.

mod baseline;
mod charts;
mod churn;
mod engines;
mod phases;
mod recovery;
mod report;
mod run;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Parser;

/// Race Talus against redb, fjall, LMDB and (with the `rocksdb` feature) RocksDB.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Engines to run, comma-separated (default: every engine built in: talus, redb, fjall,
    /// lmdb, and rocksdb with the `rocksdb` feature).
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// Workloads to run, comma-separated: ycsb-a, ycsb-b, ycsb-c, ycsb-f (each in every mode),
    /// durable-1-writer and durable-2-writers (durable updates only, from 1 and 2 threads),
    /// redb-phases (durable), overwrite-churn, recovery, larger-than-memory (ycsb-b over data
    /// several times the cache).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ycsb-a,ycsb-b,ycsb-c,ycsb-f,durable-1-writer,durable-2-writers,larger-than-memory,redb-phases,overwrite-churn,recovery"
    )]
    workloads: Vec<String>,
    /// Durability modes, comma-separated: buffered (no fsync), durable (fsync per write).
    #[arg(long, value_delimiter = ',', default_value = "buffered,durable")]
    modes: Vec<String>,
    /// Keys loaded before each run.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Operations in each buffered run (all threads together).
    #[arg(long, default_value_t = 2_000_000)]
    ops: u64,
    /// Operations in each durable run (every write waits for the disk).
    #[arg(long, default_value_t = 20_000)]
    durable_ops: u64,
    /// Keys of the larger-than-memory workload.
    #[arg(long, default_value_t = 4_000_000)]
    ltm_keys: u64,
    /// The cache or memory budget of the larger-than-memory workload (the data is several
    /// times larger).
    #[arg(long, default_value_t = 64 << 20)]
    ltm_cache_bytes: u64,
    /// Keys loaded before each recovery run, comma-separated (one row per count).
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    recovery_keys: Vec<u64>,
    /// Keys the redb-phases workload bulk-loads.
    #[arg(long, default_value_t = 1_000_000)]
    phase_keys: u64,
    /// Runs of each (workload, mode, engine); the median of each figure is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Threads running operations.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Key size in bytes (YCSB: 16).
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    /// Value size in bytes (YCSB: 100).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Keys picked uniformly instead of Zipf 0.99.
    #[arg(long)]
    uniform: bool,
    /// Cache or memory budget per engine.
    #[arg(long, default_value_t = 256 << 20)]
    cache_bytes: u64,
    /// Where the databases go (a fresh temporary directory under it per run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where the CSV and JSON results go.
    #[arg(long, default_value = "target/talus-bench")]
    out: PathBuf,
    /// Skip the raw disk baselines.
    #[arg(long)]
    no_baseline: bool,
    /// A tiny configuration of every engine and workload (what CI runs).
    #[arg(long)]
    smoke: bool,
    /// Internal: run one (engine, workload, mode) in this process and print its result.
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: the directory a recovery child works in.
    #[arg(long, hide = true)]
    in_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.engines.is_empty() {
        args.engines = engines::ENGINES.iter().map(|name| name.to_string()).collect();
    }
    if args.smoke {
        args.keys = 2_000;
        args.ops = 4_000;
        args.durable_ops = 100;
        args.phase_keys = 2_000;
        args.ltm_keys = 4_000;
        args.ltm_cache_bytes = 1 << 20;
        args.recovery_keys = vec![2_000];
        args.runs = 1;
        args.cache_bytes = 8 << 20;
        args.no_baseline = true;
    }
    let mut spec = run::Spec {
        keys: args.keys,
        key_size: args.key_size,
        value_size: args.value_size,
        threads: args.threads.max(1),
        uniform: args.uniform,
        cache_bytes: args.cache_bytes,
    };
    if let Some(child) = &args.child {
        let job: run::Job = run::Job::parse(child)?;
        if let Some(dir) = &args.in_dir {
            match job.mode.as_str() {
                "load" => {
                    let (keys, key_size, value_size) = (job.ops, args.key_size, args.value_size);
                    recovery::load_and_wait(&job.engine, keys, key_size, value_size, args.cache_bytes, dir)?;
                }
                _ => {
                    let result = recovery::time_open(&job.engine, args.key_size, args.cache_bytes, dir)?;
                    println!("{}{}", run::RESULT_MARK, serde_json::to_string(&result)?);
                }
            }
            return Ok(());
        }
        let dir = tempfile::Builder::new().prefix("talus-bench-").tempdir_in(job_dir(&args)?)?;
        let result = match job.workload.as_str() {
            "redb-phases" => phases::run(&job.engine, args.phase_keys, args.cache_bytes, dir.path())?,
            "overwrite-churn" => {
                churn::run(&job.engine, args.keys, args.key_size, args.value_size, args.cache_bytes, dir.path())?
            }
            "larger-than-memory" => {
                spec.keys = args.ltm_keys;
                spec.cache_bytes = args.ltm_cache_bytes;
                run::run_job(&job, &spec, dir.path())?
            }
            "durable-1-writer" => run::run_job(&job, &run::Spec { threads: 1, ..spec }, dir.path())?,
            "durable-2-writers" => run::run_job(&job, &run::Spec { threads: 2, ..spec }, dir.path())?,
            _ => run::run_job(&job, &spec, dir.path())?,
        };
        println!("{}{}", run::RESULT_MARK, serde_json::to_string(&result)?);
        return Ok(());
    }
    let mut results = Vec::new();
    if !args.no_baseline {
        let dir = tempfile::Builder::new().prefix("talus-bench-raw-").tempdir_in(job_dir(&args)?)?;
        results.extend(baseline::measure(dir.path())?);
    }
    let argv: Vec<String> = std::env::args().collect();
    for workload in &args.workloads {
        let modes = match workload.as_str() {
            "redb-phases" | "durable-1-writer" | "durable-2-writers" => vec!["durable".to_owned()],
            "overwrite-churn" | "recovery" | "larger-than-memory" => vec!["buffered".to_owned()],
            _ => args.modes.clone(),
        };
        for mode in &modes {
            let ops = if mode == "durable" { args.durable_ops } else { args.ops };
            for engine in &args.engines {
                let job = run::Job { engine: engine.clone(), workload: workload.clone(), mode: mode.clone(), ops };
                if workload == "recovery" {
                    for &n_keys in &args.recovery_keys {
                        let mut runs = Vec::new();
                        for run_idx in 0..args.runs.max(1) {
                            eprintln!(
                                "talus-bench: recovery {engine} {n_keys} keys (run {} of {})",
                                run_idx + 1,
                                args.runs.max(1)
                            );
                            let dir = tempfile::Builder::new().prefix("talus-bench-").tempdir_in(job_dir(&args)?)?;
                            let result = recovery::run(engine, n_keys, &argv, dir.path())
                                .with_context(|| format!("recovery {engine} {n_keys} keys"))?;
                            runs.push(result);
                        }
                        results.push(report::median_of(&runs));
                    }
                    continue;
                }
                let mut runs = Vec::new();
                for run_idx in 0..args.runs.max(1) {
                    eprintln!(
                        "talus-bench: {} {} {} (run {} of {})",
                        job.workload,
                        job.mode,
                        job.engine,
                        run_idx + 1,
                        args.runs.max(1)
                    );
                    let result = run::run_child(&job, &argv)
                        .with_context(|| format!("{} {} {}", job.workload, job.mode, job.engine))?;
                    runs.push(result);
                }
                results.push(report::median_of(&runs));
            }
        }
    }
    report::print_table(&results);
    report::write_files(&args.out, &results)?;
    charts::write_charts(&args.out, &results)?;
    eprintln!("talus-bench: results in {}", args.out.display());
    Ok(())
}

fn job_dir(args: &Args) -> Result<PathBuf> {
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
