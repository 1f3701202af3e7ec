//! The engine's point operations and opens, with the raw cost of a durable append measured
//! in the same run: 16-byte keys, 100-byte values, uniform and Zipf(0.99) key choice.
//!
//! `cargo bench -p talus-engine --bench engine` (key counts from `TALUS_BENCH_KEYS`, default
//! `1000000`; `1000000,10000000` for both sizes of the issue; the databases go in a
//! temporary directory under `TALUS_BENCH_DIR`, default the system temp dir, whose file
//! system is printed: durable writes only mean something on a real disk, not tmpfs).
//!
//! Groups, in the order they run for each key count (criterion writes each median to
//! `target/criterion/engine_<group>/<bench>/<keys>/new/estimates.json`):
//! - `engine/get_mem`: reads with every record in memory, 1 and 2 threads.
//! - `engine/put_never`: [`SyncMode::Never`] puts of new keys and overwrites of random ones.
//! - `engine/raw`: `write` of a 128-byte record + `fdatasync`, appending to a file (what a
//!   log does: the baseline for `put_always`) and overwriting in place (no size change, the
//!   cheapest durable write the file system offers); after `sync`, so no earlier write is
//!   still on its way to the disk.
//! - `engine/put_always`: [`SyncMode::Always`] overwrites of random keys from 1 and 2
//!   threads; the fsyncs per durable write are printed, so that group commit shows. Then,
//!   printed, 2,000 durable puts and raw appends alternating, timed one by one (their ratio
//!   does not drift with the disk), and `engine/raw/append_128b_fdatasync_again`, to show
//!   how far the disk drifted over the group.
//! - `engine/get_4x`: reads with the data at least 4x the memory budget (the rest is read
//!   from the segment files, which the OS page cache holds: this measures the engine's read
//!   path, not the disk).
//! - `engine/open`: opening after a clean close (the index is used as is) and after a crash
//!   (the index is rebuilt from the log).
//!
//! One iteration is one operation (one open for `engine/open`); with two threads the time is
//! that of both threads' operations together divided by their number, so throughput adds up.
//! Loading is done with [`SyncMode::Never`] and not measured; it only happens when a bench
//! that needs it passes the filter.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use talus_engine::{Db, Options, SyncMode};
use talus_testkit::{SplitMix64, fill_pattern};

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
/// The raw baseline's record: about what one put appends (152 bytes with headers).
const RAW_RECORD_LEN: usize = 128;
const ZIPF_THETA: f64 = 0.99;
/// Key choices are drawn before measuring and cycled through (a power of two).
const N_SAMPLES: usize = 1 << 20;
/// Spreads Zipf ranks over the key space: a prime above every key count, so
/// `rank * SCRAMBLE_PRIME % n` is a bijection and popularity says nothing about where in the
/// log (memory or disk) a key's record is.
const SCRAMBLE_PRIME: u128 = 2_654_435_761;

fn key_counts() -> Vec<u64> {
    std::env::var("TALUS_BENCH_KEYS")
        .unwrap_or_else(|_| "1000000".to_owned())
        .split(',')
        .filter_map(|text| text.trim().parse().ok())
        .collect()
}

fn bench_root() -> tempfile::TempDir {
    let parent = std::env::var_os("TALUS_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(&parent).expect("bench temp dir");
    eprintln!("engine bench: databases in {} (file system: {})", dir.path().display(), filesystem_of(dir.path()));
    dir
}

/// The type of the file system holding `path` (the longest mount point in /proc/mounts that
/// contains it), so the output says whether fsyncs went to a disk.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), format!("{fs_type} on {device} at {mount_point}")))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".to_owned(), |(_, description)| description)
}

/// Key number `idx`: its 8 big-endian bytes, then 8 bytes derived from it.
fn key(idx: u64) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    key[..8].copy_from_slice(&idx.to_be_bytes());
    key[8..].copy_from_slice(&SplitMix64::new(idx).next_u64().to_le_bytes());
    key
}

fn value(tag: u64) -> [u8; VALUE_LEN] {
    let mut value = [0u8; VALUE_LEN];
    fill_pattern(&mut value, tag);
    value
}

/// Zipf(theta) over ranks `0..n` (rank `r` drawn with probability proportional to
/// `1 / (r + 1)^theta`), exactly, by inverting the cumulative distribution held in a table.
struct Zipf {
    /// `cdf[r]`: the probability of a rank `<= r`.
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, theta: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for rank in 0..n {
            sum += 1.0 / ((rank + 1) as f64).powf(theta);
            cdf.push(sum);
        }
        cdf.iter_mut().for_each(|c| *c /= sum);
        Zipf { cdf }
    }

    fn rank(&self, rng: &mut SplitMix64) -> u64 {
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64; // uniform in [0, 1)
        (self.cdf.partition_point(|&c| c <= u) as u64).min(self.cdf.len() as u64 - 1)
    }

    /// The probability of a rank below `k`.
    fn share_below(&self, k: u64) -> f64 {
        self.cdf[(k as usize).clamp(1, self.cdf.len()) - 1]
    }
}

#[derive(Clone, Copy, Debug)]
enum Distribution {
    Uniform,
    Zipf,
}

impl Distribution {
    fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipf => "zipf099",
        }
    }
}

/// `N_SAMPLES` key numbers in `0..n` and a cursor into them, so that successive calls read
/// on where the last left off.
struct Samples {
    indices: Vec<u64>,
    cursor: AtomicU64,
}

impl Samples {
    fn new(n: u64, distribution: Distribution, seed: u64) -> Samples {
        let mut rng = SplitMix64::new(seed);
        let indices: Vec<u64> = match distribution {
            Distribution::Uniform => (0..N_SAMPLES).map(|_| rng.below(n)).collect(),
            Distribution::Zipf => {
                let zipf = Zipf::new(n, ZIPF_THETA);
                let ranks: Vec<u64> = (0..N_SAMPLES).map(|_| zipf.rank(&mut rng)).collect();
                let observed = |k: u64| ranks.iter().filter(|&&rank| rank < k).count() as f64 / N_SAMPLES as f64;
                let top_percent = (n / 100).max(1);
                eprintln!(
                    "zipf({ZIPF_THETA}) over {n} keys: hottest key {:.4} of draws (expected {:.4}), hottest 1% {:.3} (expected {:.3})",
                    observed(1),
                    zipf.share_below(1),
                    observed(top_percent),
                    zipf.share_below(top_percent),
                );
                ranks.into_iter().map(|rank| (u128::from(rank) * SCRAMBLE_PRIME % u128::from(n)) as u64).collect()
            }
        };
        Samples { indices, cursor: AtomicU64::new(0) }
    }

    /// Where a call doing `iters` operations starts.
    fn claim(&self, iters: u64) -> u64 {
        self.cursor.fetch_add(iters, Ordering::Relaxed)
    }

    fn at(&self, position: u64) -> u64 {
        self.indices[position as usize % N_SAMPLES]
    }
}

/// Runs `work(thread_idx, first_op, n_ops)` on `n_threads` threads (the caller's is one of
/// them), splitting `iters` operations between them; returns the wall time of all of it.
fn timed_on_threads(n_threads: u64, iters: u64, work: impl Fn(u64, u64, u64) + Sync) -> Duration {
    let share = |thread_idx: u64| iters / n_threads + u64::from(thread_idx < iters % n_threads);
    let first = |thread_idx: u64| (0..thread_idx).map(share).sum::<u64>();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread_idx in 1..n_threads {
            let work = &work;
            scope.spawn(move || work(thread_idx, first(thread_idx), share(thread_idx)));
        }
        work(0, 0, share(0));
    });
    started.elapsed()
}

/// A database of `n` keys (numbers `0..n`, loaded in order with [`SyncMode::Never`] on first
/// use), open with one sync mode at a time.
struct Fixture {
    path: PathBuf,
    n: u64,
    memory_budget: u64,
    db: Option<(Db, SyncMode)>,
    loaded: bool,
}

impl Fixture {
    fn new(path: PathBuf, n: u64, memory_budget: u64) -> Fixture {
        Fixture { path, n, memory_budget, db: None, loaded: false }
    }

    fn options(&self, sync_mode: SyncMode) -> Options {
        Options::new().memory_budget(self.memory_budget).sync_mode(sync_mode)
    }

    /// The database open with `sync_mode`: the handle that loaded it if that was the last
    /// one (so the loaded records are still in memory), else reopened.
    fn db(&mut self, sync_mode: SyncMode) -> &Db {
        if !self.loaded {
            self.load();
        }
        if self.db.as_ref().is_some_and(|(_, mode)| *mode != sync_mode) {
            self.close();
        }
        if self.db.is_none() {
            let db = self.options(sync_mode).open(&self.path).expect("reopen");
            self.db = Some((db, sync_mode));
        }
        &self.db.as_ref().expect("opened above").0
    }

    fn load(&mut self) {
        let started = Instant::now();
        let db = self.options(SyncMode::Never).open(&self.path).expect("open to load");
        for idx in 0..self.n {
            db.put(key(idx), value(idx)).expect("load");
        }
        let stats = db.stats();
        eprintln!(
            "loaded {} keys in {:.1?}: {} MiB of log, memory budget {} MiB ({:.2}x), {} records evicted to the segment files",
            self.n,
            started.elapsed(),
            stats.log_bytes >> 20,
            self.memory_budget >> 20,
            stats.log_bytes as f64 / stats.log_memory_bytes as f64,
            stats.counters.n_evicted,
        );
        self.db = Some((db, SyncMode::Never));
        self.loaded = true;
    }

    /// Loaded and closed cleanly.
    fn closed(&mut self) -> &Path {
        if !self.loaded {
            self.load();
        }
        self.close();
        &self.path
    }

    fn close(&mut self) {
        if let Some((db, _)) = self.db.take() {
            db.close().expect("close");
        }
    }
}

/// What one iteration of a put bench writes: key numbers from `samples` (overwrites) or fresh
/// ones counted up from `next_new` (new keys).
fn put_ops(db: &Db, samples: Option<&Samples>, next_new: &AtomicU64, iters: u64, n_threads: u64) -> Duration {
    let base = match samples {
        Some(samples) => samples.claim(iters),
        None => next_new.fetch_add(iters, Ordering::Relaxed),
    };
    timed_on_threads(n_threads, iters, |_, first, n_ops| {
        for position in base + first..base + first + n_ops {
            let idx = samples.map_or(position, |samples| samples.at(position));
            db.put(key(idx), value(position)).expect("put");
        }
    })
}

fn get_ops(db: &Db, samples: &Samples, iters: u64, n_threads: u64) -> Duration {
    let base = samples.claim(iters);
    timed_on_threads(n_threads, iters, |_, first, n_ops| {
        for position in base + first..base + first + n_ops {
            let found = db.get(key(samples.at(position))).expect("get");
            black_box(found.expect("every loaded key is present"));
        }
    })
}

/// Appends (or, with `appends` false, overwrites in place) a 128-byte record and
/// `fdatasync`s it, once per iteration.
fn bench_raw_write(group: &mut BenchmarkGroup<'_, WallTime>, dir: &Path, name: &str, n: u64, appends: bool) {
    let path = dir.join(name);
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).expect("open");
    let record = [0xa5u8; RAW_RECORD_LEN];
    file.write_all_at(&record, 0).expect("write");
    file.sync_all().expect("sync");
    let mut offset = 0u64;
    group.bench_function(BenchmarkId::new(name, n), |b| {
        quiesce_writeback();
        b.iter(|| {
            if appends {
                offset += RAW_RECORD_LEN as u64;
            }
            file.write_all_at(&record, offset).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    drop(file);
    std::fs::remove_file(&path).expect("remove");
}

/// Writes back every dirty page of the machine, so that the fsyncs measured next do not
/// wait for earlier writes (ext4 commits other files' data with its journal). Called at the
/// start of every sample of the durable benches (untimed).
fn quiesce_writeback() {
    if let Err(error) = std::process::Command::new("sync").status() {
        eprintln!("sync: {error} (fsync timings may include earlier writes)");
    }
}

/// `get_mem` and `put_never` on the handle that loaded the keys (all in memory), then
/// `put_always` on a reopened one.
fn bench_in_memory(c: &mut Criterion, dir: &Path, n: u64, uniform: &Samples, zipf: &Samples) {
    let data_bytes = n * 152; // about 152 log bytes per record (8 + 24 + 16 + 100, padded)
    let memory_budget = (2 * data_bytes).next_power_of_two().max(1 << 30);
    let mut fixture = Fixture::new(dir.join(format!("mem-{n}")), n, memory_budget);

    let mut group = c.benchmark_group("engine/get_mem");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (distribution, samples) in [(Distribution::Uniform, uniform), (Distribution::Zipf, zipf)] {
        for n_threads in [1, 2] {
            let id = BenchmarkId::new(format!("{}_{n_threads}t", distribution.name()), n);
            group.bench_function(id, |b| {
                let db = fixture.db(SyncMode::Never);
                b.iter_custom(|iters| get_ops(db, samples, iters, n_threads))
            });
        }
    }
    if let Some((db, _)) = &fixture.db {
        let stats = db.stats();
        eprintln!("get_mem: {} of {} gets read a segment file", stats.counters.n_disk_reads, stats.counters.n_gets);
    }
    group.finish();

    let mut group = c.benchmark_group("engine/put_never");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let next_new = AtomicU64::new(n);
    group.bench_function(BenchmarkId::new("new_keys", n), |b| {
        let db = fixture.db(SyncMode::Never);
        b.iter_custom(|iters| put_ops(db, None, &next_new, iters, 1))
    });
    group.bench_function(BenchmarkId::new("overwrite_uniform", n), |b| {
        let db = fixture.db(SyncMode::Never);
        b.iter_custom(|iters| put_ops(db, Some(uniform), &next_new, iters, 1))
    });
    if let Some((db, _)) = &fixture.db {
        let stats = db.stats();
        eprintln!(
            "put_never: {} keys, {} MiB of log, {} records evicted to the segment files",
            stats.n_keys,
            stats.log_bytes >> 20,
            stats.counters.n_evicted
        );
    }
    group.finish();

    // Durable writes, between the raw write + fdatasync they are compared with, on a
    // machine with no dirty pages left: the loaded log is written and synced by the close.
    fixture.close();
    let mut group = c.benchmark_group("engine/raw");
    configure_durable(&mut group);
    bench_raw_write(&mut group, dir, "append_128b_fdatasync", n, true);
    bench_raw_write(&mut group, dir, "overwrite_128b_fdatasync", n, false);
    group.finish();

    let mut group = c.benchmark_group("engine/put_always");
    configure_durable(&mut group);
    for n_threads in [1, 2] {
        // Counters from the first call on (warm-up included); `stats` walks the in-memory
        // log, so it is not called per sample.
        let mut before = None;
        group.bench_function(BenchmarkId::new(format!("overwrite_uniform_{n_threads}t"), n), |b| {
            let db = fixture.db(SyncMode::Always);
            before.get_or_insert_with(|| db.stats().counters);
            quiesce_writeback();
            b.iter_custom(|iters| put_ops(db, Some(uniform), &next_new, iters, n_threads))
        });
        if let (Some(before), Some((db, _))) = (before, &fixture.db) {
            let after = db.stats().counters;
            let (durable_writes, syncs) =
                (after.n_durable_writes - before.n_durable_writes, after.n_syncs - before.n_syncs);
            eprintln!(
                "put_always {n_threads} thread(s): {durable_writes} durable writes, {syncs} fsyncs ({:.2} writes per fsync)",
                durable_writes as f64 / syncs.max(1) as f64
            );
        }
    }
    group.finish();
    if let Some((db, SyncMode::Always)) = &fixture.db {
        interleaved_put_vs_raw(db, dir, uniform, 2000);
        interleaved_put_scaling(db, uniform, 20, 100);
    }
    fixture.close();

    // The baseline once more, to show how far the disk drifted meanwhile.
    let mut group = c.benchmark_group("engine/raw");
    configure_durable(&mut group);
    bench_raw_write(&mut group, dir, "append_128b_fdatasync_again", n, true);
    group.finish();
}

/// `n_pairs` durable puts and raw appends + fdatasync, alternating, each timed alone: both
/// see the same disk at the same moments, so their ratio holds on a busy machine where the
/// criterion figures, minutes apart, drift. Prints medians and 90th percentiles.
fn interleaved_put_vs_raw(db: &Db, dir: &Path, samples: &Samples, n_pairs: u64) {
    let path = dir.join("interleaved_raw");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).expect("open");
    let record = [0x5au8; RAW_RECORD_LEN];
    let base = samples.claim(n_pairs);
    let (mut raw_ns, mut put_ns) = (Vec::new(), Vec::new());
    for pair in 0..n_pairs {
        let started = Instant::now();
        file.write_all_at(&record, pair * RAW_RECORD_LEN as u64).expect("write");
        file.sync_data().expect("fdatasync");
        raw_ns.push(started.elapsed().as_nanos() as u64);
        let position = base + pair;
        let started = Instant::now();
        db.put(key(samples.at(position)), value(position)).expect("put");
        put_ns.push(started.elapsed().as_nanos() as u64);
    }
    drop(file);
    std::fs::remove_file(&path).expect("remove");
    let quantile_us = |values: &mut Vec<u64>, q: f64| {
        values.sort_unstable();
        values[((values.len() - 1) as f64 * q) as usize] as f64 / 1000.0
    };
    let (raw_p50, raw_p90) = (quantile_us(&mut raw_ns, 0.5), quantile_us(&mut raw_ns, 0.9));
    let (put_p50, put_p90) = (quantile_us(&mut put_ns, 0.5), quantile_us(&mut put_ns, 0.9));
    eprintln!(
        "interleaved, {n_pairs} pairs: write 128 B + fdatasync p50 {raw_p50:.0} us p90 {raw_p90:.0} us; \
         durable put p50 {put_p50:.0} us p90 {put_p90:.0} us; put / raw: p50 {:.2}x, p90 {:.2}x",
        put_p50 / raw_p50,
        put_p90 / raw_p90,
    );
}

/// Durable puts from 1 and from 2 threads, in alternating bursts of `burst` puts, for the
/// same reason as [`interleaved_put_vs_raw`]; prints the throughput ratio and fsync sharing.
fn interleaved_put_scaling(db: &Db, samples: &Samples, n_rounds: u64, burst: u64) {
    let mut elapsed = [Duration::ZERO; 2];
    let mut writes_per_sync = [0.0; 2];
    for _ in 0..n_rounds {
        for (slot, n_threads) in [1u64, 2].into_iter().enumerate() {
            let before = db.stats().counters;
            elapsed[slot] += put_ops(db, Some(samples), &AtomicU64::new(0), burst, n_threads);
            let after = db.stats().counters;
            writes_per_sync[slot] += (after.n_durable_writes - before.n_durable_writes) as f64
                / (after.n_syncs - before.n_syncs).max(1) as f64;
        }
    }
    let per_put_us = |slot: usize| elapsed[slot].as_secs_f64() * 1e6 / (n_rounds * burst) as f64;
    eprintln!(
        "interleaved, {n_rounds} rounds of {burst} durable puts: 1 thread {:.0} us per put ({:.2} writes per fsync), \
         2 threads {:.0} us per put ({:.2} writes per fsync): 2 threads give {:.2}x the throughput",
        per_put_us(0),
        writes_per_sync[0] / n_rounds as f64,
        per_put_us(1),
        writes_per_sync[1] / n_rounds as f64,
        per_put_us(0) / per_put_us(1),
    );
}

fn configure_durable(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
}

/// `get_4x` on the handle that loaded the keys through a small memory budget, then opens.
fn bench_larger_than_memory(c: &mut Criterion, dir: &Path, n: u64, uniform: &Samples, zipf: &Samples) {
    let data_bytes = n * 152;
    let memory_budget = (1u64 << (63 - (data_bytes / 4).leading_zeros())).max(1 << 20);
    let mut fixture = Fixture::new(dir.join(format!("4x-{n}")), n, memory_budget);

    let mut group = c.benchmark_group("engine/get_4x");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    for (distribution, samples) in [(Distribution::Uniform, uniform), (Distribution::Zipf, zipf)] {
        let mut before = None;
        group.bench_function(BenchmarkId::new(format!("{}_1t", distribution.name()), n), |b| {
            let db = fixture.db(SyncMode::Never);
            before.get_or_insert_with(|| db.stats().counters);
            b.iter_custom(|iters| get_ops(db, samples, iters, 1))
        });
        if let (Some(before), Some((db, _))) = (before, &fixture.db) {
            let after = db.stats().counters;
            eprintln!(
                "get_4x {}: {:.1}% of gets read a segment file (from the OS page cache, not the disk)",
                distribution.name(),
                100.0 * (after.n_disk_reads - before.n_disk_reads) as f64
                    / (after.n_gets - before.n_gets).max(1) as f64
            );
        }
    }
    group.finish();

    let mut group = c.benchmark_group("engine/open");
    group.throughput(Throughput::Elements(n));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(5));
    let options = Options::new().memory_budget(memory_budget).sync_mode(SyncMode::Never);
    group.bench_function(BenchmarkId::new("after_clean_close", n), |b| {
        let path = fixture.closed().to_path_buf();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let db = options.clone().open(&path).expect("open");
                total += started.elapsed();
                assert!(db.stats().recovery.clean, "a clean close leaves a clean open");
                db.close().expect("close");
            }
            total
        })
    });
    // Every measured open rebuilds the index and crashes again before the next; the log is
    // never rewritten, so each open finds the same log.
    let mut crashed = false;
    // About 2 s per open at 1M keys on the development machine; 10 opens at the least.
    group.measurement_time(Duration::from_secs((n / 40_000).max(5)));
    group.bench_function(BenchmarkId::new("after_crash", n), |b| {
        let path = fixture.closed().to_path_buf();
        if !crashed {
            options.clone().open(&path).expect("open").simulate_crash();
            crashed = true;
        }
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let db = options.clone().open(&path).expect("open");
                total += started.elapsed();
                let recovery = db.stats().recovery;
                assert!(!recovery.clean && recovery.n_records_replayed == n, "a crash-open replays every record");
                db.simulate_crash();
            }
            total
        })
    });
    group.finish();
}

fn engine(c: &mut Criterion) {
    let root = bench_root();
    for n in key_counts() {
        let uniform = Samples::new(n, Distribution::Uniform, 0x5eed ^ n);
        let zipf = Samples::new(n, Distribution::Zipf, 0x21bf ^ n);
        bench_in_memory(c, root.path(), n, &uniform, &zipf);
        bench_larger_than_memory(c, root.path(), n, &uniform, &zipf);
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
