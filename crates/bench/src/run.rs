//! One run: load the keys, run the workload's operations from several threads, and measure
//! throughput, latency percentiles, peak memory, bytes written and disk use. The parent
//! runs each in a child process (`run_child`), which calls `run_job`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};
use talus_workload::{Distribution, Histogram, KeyChooser, Op, Rng, Workload, key_of};

use crate::engines::{self, Engine, Settings};

/// Marks the child's result line on its stdout.
pub const RESULT_MARK: &str = "@talus-bench-result@ ";
/// Pairs per batch while loading.
const LOAD_BATCH: u64 = 1_000;
/// The seed of every run (the same keys and operations for every engine).
const SEED: u64 = 0x7A1_u64 << 32 | 0xBE_4C;

/// What is the same for every run of an invocation.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub keys: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub threads: usize,
    pub uniform: bool,
    pub cache_bytes: u64,
}

/// One (engine, workload, mode) run.
#[derive(Clone, Debug)]
pub struct Job {
    pub engine: String,
    pub workload: String,
    pub mode: String,
    pub ops: u64,
}

impl Job {
    /// `engine:workload:mode:ops`, as `--child` passes it.
    pub fn parse(text: &str) -> Result<Job> {
        let parts: Vec<&str> = text.split(':').collect();
        let [engine, workload, mode, ops] = parts.as_slice() else { bail!("bad job {text:?}") };
        Ok(Job {
            engine: engine.to_string(),
            workload: workload.to_string(),
            mode: mode.to_string(),
            ops: ops.parse()?,
        })
    }

    fn encode(&self) -> String {
        format!("{}:{}:{}:{}", self.engine, self.workload, self.mode, self.ops)
    }
}

fn workload_of(name: &str) -> Result<Workload> {
    Ok(match name {
        "ycsb-a" => Workload::A,
        "ycsb-b" => Workload::B,
        "ycsb-c" => Workload::C,
        "ycsb-f" => Workload::F,
        "larger-than-memory" => Workload::B,
        "durable-1-writer" | "durable-2-writers" => Workload::W,
        other => bail!("unknown workload {other:?} (ycsb-a, ycsb-b, ycsb-c, ycsb-f)"),
    })
}

/// Runs `job` in a child process of this binary (same arguments, plus `--child`).
pub fn run_child(job: &Job, args: &[String]) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let output = Command::new(exe)
        .args(&args[1..])
        .args(["--child", &job.encode()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("start a child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("the child failed ({}): {stdout}", output.status);
    }
    let line = stdout.lines().find_map(|line| line.strip_prefix(RESULT_MARK)).context("the child printed no result")?;
    Ok(serde_json::from_str(line)?)
}

/// Runs `job` in this process, in the empty directory `dir`.
pub fn run_job(job: &Job, spec: &Spec, dir: &Path) -> Result<Value> {
    let workload = workload_of(&job.workload)?;
    let durable = match job.mode.as_str() {
        "durable" => true,
        "buffered" => false,
        other => bail!("unknown mode {other:?} (buffered, durable)"),
    };
    let io_before = io_write_bytes();
    let engine = engines::open(&job.engine, dir, Settings { durable, cache_bytes: spec.cache_bytes })?;
    let load_started = Instant::now();
    load(engine.as_ref(), spec)?;
    engine.sync()?;
    let load_secs = load_started.elapsed().as_secs_f64();

    let distribution = if spec.uniform { Distribution::Uniform } else { Distribution::Zipf };
    let chooser = KeyChooser::new(distribution, spec.keys.max(1), 0.99);
    let ops_per_thread = job.ops.div_ceil(spec.threads as u64);
    let failed = AtomicBool::new(false);
    let run_started = Instant::now();
    let per_thread: Vec<Result<(Histogram, Histogram, u64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|thread| {
                let (engine, chooser, failed) = (engine.as_ref(), &chooser, &failed);
                scope.spawn(move || run_thread(engine, workload, chooser, spec, thread as u64, ops_per_thread, failed))
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("a run thread panicked")).collect()
    });
    let run_secs = run_started.elapsed().as_secs_f64();
    let (mut reads, mut writes, mut n_written) = (Histogram::default(), Histogram::default(), 0u64);
    for result in per_thread {
        let (thread_reads, thread_writes, thread_written) = result?;
        reads.merge(&thread_reads);
        writes.merge(&thread_writes);
        n_written += thread_written;
    }
    drop(engine); // closes it (each adapter's drop closes cleanly)
    let disk_bytes = dir_bytes(dir);
    let bytes_written = io_write_bytes().saturating_sub(io_before);
    let pair_bytes = (spec.key_size + spec.value_size) as u64;
    let user_bytes = (spec.keys + n_written) * pair_bytes;
    let n_ops = reads.len() + writes.len();
    let micros = |histogram: &Histogram, q: f64| match histogram.is_empty() {
        true => Value::Null,
        false => json!(histogram.quantile(q) as f64 / 1000.0),
    };
    Ok(json!({
        "kind": "engine",
        "engine": job.engine,
        "workload": job.workload,
        "mode": job.mode,
        "distribution": if spec.uniform { "uniform" } else { "zipf-0.99" },
        "keys": spec.keys,
        "ops": n_ops,
        "threads": spec.threads,
        "load_ops_per_sec": spec.keys as f64 / load_secs,
        "run_ops_per_sec": n_ops as f64 / run_secs,
        "read_p50_us": micros(&reads, 0.5),
        "read_p99_us": micros(&reads, 0.99),
        "read_p999_us": micros(&reads, 0.999),
        "write_p50_us": micros(&writes, 0.5),
        "write_p99_us": micros(&writes, 0.99),
        "write_p999_us": micros(&writes, 0.999),
        "peak_rss_bytes": peak_rss_bytes(),
        "bytes_written": bytes_written,
        "disk_bytes": disk_bytes,
        "write_amplification": bytes_written as f64 / user_bytes as f64,
        "space_amplification": disk_bytes as f64 / (spec.keys * pair_bytes) as f64,
    }))
}

fn value_of(idx: u64, version: u64, spec: &Spec, out: &mut Vec<u8>) {
    out.clear();
    out.resize(spec.value_size, 0);
    Rng::new(idx.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version).fill(out);
}

fn load(engine: &dyn Engine, spec: &Spec) -> Result<()> {
    let mut batch = Vec::with_capacity(LOAD_BATCH as usize);
    let mut idx = 0;
    while idx < spec.keys {
        batch.clear();
        for idx in idx..(idx + LOAD_BATCH).min(spec.keys) {
            let (mut key, mut value) = (Vec::new(), Vec::new());
            key_of(idx, spec.key_size, &mut key);
            value_of(idx, 0, spec, &mut value);
            batch.push((key, value));
        }
        engine.put_many(&batch)?;
        idx += LOAD_BATCH;
    }
    Ok(())
}

/// One thread's operations; returns its read and write latencies (ns) and its writes.
fn run_thread(
    engine: &dyn Engine,
    workload: Workload,
    chooser: &KeyChooser,
    spec: &Spec,
    thread: u64,
    n_ops: u64,
    failed: &AtomicBool,
) -> Result<(Histogram, Histogram, u64)> {
    let mut rng = Rng::new(SEED ^ (thread + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let (mut reads, mut writes, mut n_written) = (Histogram::default(), Histogram::default(), 0u64);
    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut sink = 0u64;
    for op_idx in 0..n_ops {
        if failed.load(Ordering::Relaxed) {
            break;
        }
        let idx = chooser.next(&mut rng);
        key_of(idx, spec.key_size, &mut key);
        let op = workload.pick(&mut rng);
        let started = Instant::now();
        let result = match op {
            Op::Read => engine.get(&key, &mut |bytes| sink = sink.wrapping_add(bytes.len() as u64)).map(drop),
            Op::Update | Op::ReadModifyWrite => {
                if op == Op::ReadModifyWrite {
                    engine.get(&key, &mut |bytes| sink = sink.wrapping_add(bytes.len() as u64))?;
                }
                value_of(idx, op_idx + 1, spec, &mut value);
                engine.put(&key, &value)
            }
        };
        if let Err(error) = result {
            failed.store(true, Ordering::Relaxed);
            return Err(error);
        }
        let nanos = started.elapsed().as_nanos() as u64;
        match op {
            Op::Read => reads.record(nanos),
            Op::Update | Op::ReadModifyWrite => {
                writes.record(nanos);
                n_written += 1;
            }
        }
    }
    std::hint::black_box(sink);
    Ok((reads, writes, n_written))
}

/// The process's peak resident memory (`VmHWM`), 0 if unknown.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Bytes this process caused to be written to storage (`/proc/self/io`), 0 if unknown.
pub fn io_write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|line| line.strip_prefix("write_bytes:")).and_then(|rest| rest.trim().parse().ok()).unwrap_or(0)
}

/// Bytes in the files under `dir` (allocated blocks, so sparse files count what they use).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|entry| entry.ok())
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => dir_bytes(&entry.path()),
            Ok(metadata) => metadata.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
