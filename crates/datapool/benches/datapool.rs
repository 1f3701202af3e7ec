//! Save and load speed of a large pool, against the two things those operations are made of:
//! writing the bytes to a file and hashing them. Measured in one run so the ratios hold on a
//! noisy machine.
//!
//! `cargo bench -p talus-datapool --bench datapool` (1 GiB by default; set
//! `TALUS_BENCH_POOL_MIB` for another size and `TALUS_BENCH_DIR` for another file system).
//! docs/bench.md explains how the figures in the issue notes were made.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use talus_datapool::{Datapool, FileBackedMemory, Memory, MemoryOptions, MmapFile};

fn pool_len() -> usize {
    let mib = std::env::var("TALUS_BENCH_POOL_MIB").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1024);
    mib << 20
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TALUS_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("bench temp dir")
}

/// Non-zero bytes that differ per round, so every flush has real changes to save.
fn fill(bytes: &mut [u8], round: u64) {
    for (idx, chunk) in bytes.chunks_mut(8).enumerate() {
        let value = (idx as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ round;
        chunk.copy_from_slice(&value.to_le_bytes()[..chunk.len()]);
    }
}

/// Times `iters` flushes, each after changing every byte (the change is not timed).
fn time_flushes(pool: &mut dyn Datapool, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let round = ROUND.fetch_add(1, Ordering::Relaxed);
        fill(pool.as_mut_slice(), round);
        let started = Instant::now();
        pool.flush().expect("flush");
        total += started.elapsed();
    }
    total
}

/// Drops a (clean, synced) file's pages from the page cache.
fn evict_from_page_cache(path: &Path) {
    let file = std::fs::File::open(path).expect("open");
    // SAFETY: `posix_fadvise` takes a descriptor and integers and touches no memory of ours;
    // the descriptor is open and owned by `file` for the duration of the call.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise(DONTNEED) failed");
}

/// Makes every fill differ from the last.
static ROUND: AtomicU64 = AtomicU64::new(2);

fn datapool(c: &mut Criterion) {
    let len = pool_len();
    let dir = bench_dir();
    let mut group = c.benchmark_group("pool_1gib");
    group.throughput(Throughput::Bytes(len as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));

    let mut buffer = vec![0u8; len];
    fill(&mut buffer, 0);

    // Baseline 1: the bytes written to a file and synced.
    let baseline_path = dir.path().join("baseline");
    let file =
        OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&baseline_path).expect("open");
    group.bench_function("baseline_write_all_sync_data", |b| {
        b.iter(|| {
            file.write_all_at(&buffer, 0).expect("write");
            file.sync_data().expect("sync");
        })
    });
    drop(file);
    std::fs::remove_file(&baseline_path).expect("remove");

    // Baseline 2: the bytes hashed, on one core as a plain caller would.
    group.bench_function("baseline_blake3_hash", |b| b.iter(|| black_box(blake3::hash(black_box(&buffer)))));
    // For context: the same on all cores.
    group.bench_function("context_blake3_hash_rayon", |b| {
        b.iter(|| black_box(blake3::Hasher::new().update_rayon(black_box(&buffer)).finalize()))
    });
    drop(buffer);

    let mmap_path = dir.path().join("mmap");
    let mut pool = MmapFile::create(&mmap_path, len, 1).expect("create");
    // Real data on disk before anything is measured (also when a filter skips the flushes).
    fill(pool.as_mut_slice(), 1);
    pool.flush().expect("flush");
    group.bench_function("mmap_file_flush", |b| b.iter_custom(|iters| time_flushes(&mut pool, iters)));
    drop(pool);
    group.bench_function("mmap_file_open_verify", |b| {
        b.iter(|| black_box(MmapFile::open(&mmap_path, len, 1).expect("open")))
    });
    // The same with the file's pages dropped from the page cache first, as after a reboot.
    group.bench_function("mmap_file_open_verify_cold", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                evict_from_page_cache(&mmap_path);
                let started = Instant::now();
                black_box(MmapFile::open(&mmap_path, len, 1).expect("open"));
                total += started.elapsed();
            }
            total
        })
    });
    std::fs::remove_file(&mmap_path).expect("remove");

    let fbm_path = dir.path().join("file-backed");
    let mut pool = FileBackedMemory::create(&fbm_path, len, 1).expect("create");
    fill(pool.as_mut_slice(), 1);
    pool.flush().expect("flush");
    group.bench_function("file_backed_flush", |b| b.iter_custom(|iters| time_flushes(&mut pool, iters)));
    drop(pool);
    group.bench_function("file_backed_open_verify", |b| {
        b.iter(|| black_box(FileBackedMemory::open(&fbm_path, len, 1).expect("open")))
    });
    std::fs::remove_file(&fbm_path).expect("remove");

    group.bench_function("memory_create_prefault", |b| b.iter(|| black_box(Memory::create(len).expect("create"))));
    group.bench_function("memory_create_prefault_huge_pages", |b| {
        b.iter(|| black_box(MemoryOptions::new().huge_pages(true).create(len).expect("create")))
    });
    group.finish();
}

criterion_group!(benches, datapool);
criterion_main!(benches);
