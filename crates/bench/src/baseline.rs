//! The machine's raw disk, measured in the same run as the engines: sequential write
//! bandwidth, the latency of a small append plus `fdatasync` (what a durable write must pay
//! at least), and the latency of a random 4 KiB read that bypasses the page cache.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};
use talus_workload::{Histogram, Rng};

const SEQUENTIAL_BYTES: usize = 256 << 20;
const CHUNK: usize = 1 << 20;
const N_SYNCS: usize = 1_000;
const N_READS: usize = 2_000;

/// Runs the three measurements in `dir`; one result row each.
pub fn measure(dir: &Path) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    let path = dir.join("sequential");
    let mut file = OpenOptions::new().create(true).write(true).read(true).truncate(true).open(&path)?;
    let chunk = vec![0x5Au8; CHUNK];
    let started = Instant::now();
    for _ in 0..SEQUENTIAL_BYTES / CHUNK {
        file.write_all(&chunk)?;
    }
    file.sync_data()?;
    let mib_per_sec = (SEQUENTIAL_BYTES as f64 / (1 << 20) as f64) / started.elapsed().as_secs_f64();
    rows.push(json!({
        "kind": "raw", "what": "sequential write",
        "mib_per_sec": mib_per_sec,
        "summary": format!("{mib_per_sec:.0} MiB/s (256 MiB in 1 MiB writes, then fdatasync)"),
    }));

    let log = OpenOptions::new().create(true).append(true).open(dir.join("appends"))?;
    let record = [0xA5u8; 128];
    let mut syncs = Histogram::default();
    for _ in 0..N_SYNCS {
        let started = Instant::now();
        (&log).write_all(&record)?;
        log.sync_data()?;
        syncs.record(started.elapsed().as_nanos() as u64);
    }
    let (p50, p99) = (syncs.quantile(0.5) as f64 / 1000.0, syncs.quantile(0.99) as f64 / 1000.0);
    rows.push(json!({
        "kind": "raw", "what": "append + fdatasync",
        "p50_us": p50, "p99_us": p99,
        "summary": format!("p50 {p50:.1} µs, p99 {p99:.1} µs (128-byte appends, {N_SYNCS} times)"),
    }));

    // O_DIRECT needs a block-aligned buffer: find the aligned 4 KiB inside a larger one.
    let direct = OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&path);
    let mut reads = Histogram::default();
    let note = match direct {
        Ok(direct) => {
            let mut buffer = vec![0u8; 8192];
            let skip = (4096 - buffer.as_ptr() as usize % 4096) % 4096;
            let block = &mut buffer[skip..skip + 4096];
            let mut rng = Rng::new(7);
            let n_blocks = (SEQUENTIAL_BYTES / 4096) as u64;
            for _ in 0..N_READS {
                let offset = rng.below(n_blocks) * 4096;
                let started = Instant::now();
                direct.read_exact_at(block, offset)?;
                reads.record(started.elapsed().as_nanos() as u64);
            }
            "O_DIRECT"
        }
        Err(_) => "O_DIRECT refused: through the page cache",
    };
    if !reads.is_empty() {
        let (p50, p99) = (reads.quantile(0.5) as f64 / 1000.0, reads.quantile(0.99) as f64 / 1000.0);
        rows.push(json!({
            "kind": "raw", "what": "random 4 KiB read",
            "p50_us": p50, "p99_us": p99,
            "summary": format!("p50 {p50:.1} µs, p99 {p99:.1} µs ({N_READS} reads, {note})"),
        }));
    }
    Ok(rows)
}
