//! Point operations on a populated index, side by side in one run with `hashbrown::HashMap`
//! (the in-memory upper bound, with `u64` and 32-byte keys) and `atlas-bucket-map` (the
//! Solana-derived bucket map, with 32-byte keys): get (hit and miss), insert of new keys,
//! update of existing ones.
//!
//! `cargo bench -p talus-bucketmap --bench bucketmap` (sizes from `TALUS_BENCH_SIZES`,
//! default `1000000,10000000`; Talus maps with `2^TALUS_BENCH_BUCKET_BITS` buckets, default
//! 64). Each measured batch is 10,000 operations on random keys;
//! inserted keys are removed again, untimed, so every batch sees the same size. Bytes per
//! entry on disk are printed once per map.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use talus_bucketmap::{BucketMap, BucketMapConfig};
use talus_testkit::SplitMix64;

const BATCH: u64 = 10_000;

fn sizes() -> Vec<u64> {
    std::env::var("TALUS_BENCH_SIZES")
        .unwrap_or_else(|_| "1000000,10000000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn key32(n: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    let mut rng = SplitMix64::new(n);
    for chunk in key.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    key
}

fn key64(n: u64) -> u64 {
    SplitMix64::new(n ^ 0x55).next_u64()
}

/// Whether contender `name` runs: all of them, or those named in `TALUS_BENCH_CONTENDERS`
/// (comma-separated, e.g. `talus_key32,atlas_key32`), which also skips the others' loading.
fn selected(name: &str) -> bool {
    std::env::var("TALUS_BENCH_CONTENDERS").map_or(true, |names| names.split(',').any(|n| n.trim() == name))
}

/// How much of this process's file mappings the kernel maps with huge pages (it affects
/// lookups in maps larger than the TLB reaches), from /proc/self/smaps_rollup.
fn file_huge_pages() -> String {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup.lines().find(|line| line.starts_with("FilePmdMapped:")).unwrap_or("FilePmdMapped: unknown").to_owned()
}

/// `2^bits` buckets for the Talus maps: `TALUS_BENCH_BUCKET_BITS`, default 6.
fn bucket_bits() -> u32 {
    std::env::var("TALUS_BENCH_BUCKET_BITS").ok().and_then(|bits| bits.trim().parse().ok()).unwrap_or(6)
}

fn disk_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() { disk_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

/// One contender's operations, over keys numbered `0..n` (present) and `n..` (absent).
trait Contender {
    fn get(&self, n: u64) -> bool;
    fn insert(&mut self, n: u64);
    fn update(&mut self, n: u64);
    fn remove(&mut self, n: u64);
}

struct Talus<K: talus_bucketmap::Key>(BucketMap<K, u64>, fn(u64) -> K);

impl<K: talus_bucketmap::Key> Contender for Talus<K> {
    fn get(&self, n: u64) -> bool {
        self.0.get(&(self.1)(n)).is_some()
    }
    fn insert(&mut self, n: u64) {
        self.0.insert((self.1)(n), n).expect("insert");
    }
    fn update(&mut self, n: u64) {
        self.0.insert((self.1)(n), n + 1).expect("update");
    }
    fn remove(&mut self, n: u64) {
        self.0.remove(&(self.1)(n)).expect("remove");
    }
}

struct Hashbrown<K>(hashbrown::HashMap<K, u64>, fn(u64) -> K);

impl<K: std::hash::Hash + Eq> Contender for Hashbrown<K> {
    fn get(&self, n: u64) -> bool {
        self.0.get(&(self.1)(n)).is_some()
    }
    fn insert(&mut self, n: u64) {
        self.0.insert((self.1)(n), n);
    }
    fn update(&mut self, n: u64) {
        self.0.insert((self.1)(n), n + 1);
    }
    fn remove(&mut self, n: u64) {
        self.0.remove(&(self.1)(n));
    }
}

struct Atlas(atlas_bucket_map::bucket_map::BucketMap<u64>);

fn pubkey(n: u64) -> atlas_pubkey::Pubkey {
    atlas_pubkey::Pubkey::new_from_array(key32(n))
}

impl Contender for Atlas {
    fn get(&self, n: u64) -> bool {
        self.0.read_value(&pubkey(n)).is_some()
    }
    fn insert(&mut self, n: u64) {
        self.0.insert(&pubkey(n), (&[n], 1));
    }
    fn update(&mut self, n: u64) {
        self.0.insert(&pubkey(n), (&[n + 1], 1));
    }
    fn remove(&mut self, n: u64) {
        self.0.delete_key(&pubkey(n));
    }
}

fn bench_contender(c: &mut Criterion, group_name: &str, name: &str, n: u64, contender: &mut dyn Contender) {
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let mut rng = SplitMix64::new(n);
    group.bench_function(format!("{name}/get_hit"), |b| {
        b.iter(|| (0..BATCH).filter(|_| contender.get(rng.below(n))).count())
    });
    group.bench_function(format!("{name}/get_miss"), |b| {
        b.iter(|| (0..BATCH).filter(|_| contender.get(n + 1 + rng.below(n))).count())
    });
    group.bench_function(format!("{name}/update"), |b| {
        b.iter(|| (0..BATCH).for_each(|_| contender.update(rng.below(n))))
    });
    let mut next = 2 * n;
    group.bench_function(format!("{name}/insert"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let first = next;
                let started = Instant::now();
                (first..first + BATCH).for_each(|k| contender.insert(k));
                total += started.elapsed();
                (first..first + BATCH).for_each(|k| contender.remove(k));
                next += BATCH;
            }
            total
        })
    });
    group.finish();
    black_box(contender.get(0));
}

fn bucketmap(c: &mut Criterion) {
    for n in sizes() {
        let group = format!("n{n}");
        if selected("talus_u64") {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = BucketMapConfig::new(dir.path())
                .bucket_bits(bucket_bits())
                .initial_cells_log2(10)
                .verify_on_open(false);
            let mut talus = Talus(BucketMap::create(config).expect("create"), key64 as fn(u64) -> u64);
            (0..n).for_each(|k| talus.insert(k));
            eprintln!(
                "talus u64 keys, {n} entries: {:.1} bytes per entry on disk ({})",
                disk_bytes(dir.path()) as f64 / n as f64,
                file_huge_pages()
            );
            bench_contender(c, &group, "talus_u64", n, &mut talus);
        }
        if selected("hashbrown_u64") {
            let mut hashbrown = Hashbrown(hashbrown::HashMap::new(), key64 as fn(u64) -> u64);
            (0..n).for_each(|k| hashbrown.insert(k));
            bench_contender(c, &group, "hashbrown_u64", n, &mut hashbrown);
        }
        if selected("talus_key32") {
            let dir = tempfile::tempdir().expect("temp dir");
            let config = BucketMapConfig::new(dir.path())
                .bucket_bits(bucket_bits())
                .initial_cells_log2(10)
                .verify_on_open(false);
            let mut talus = Talus(BucketMap::create(config).expect("create"), key32 as fn(u64) -> [u8; 32]);
            (0..n).for_each(|k| talus.insert(k));
            eprintln!(
                "talus 32-byte keys, {n} entries: {:.1} bytes per entry on disk ({})",
                disk_bytes(dir.path()) as f64 / n as f64,
                file_huge_pages()
            );
            bench_contender(c, &group, "talus_key32", n, &mut talus);
        }
        if selected("hashbrown_key32") {
            let mut hashbrown = Hashbrown(hashbrown::HashMap::new(), key32 as fn(u64) -> [u8; 32]);
            (0..n).for_each(|k| hashbrown.insert(k));
            bench_contender(c, &group, "hashbrown_key32", n, &mut hashbrown);
        }
        if selected("atlas_key32") {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut config = atlas_bucket_map::bucket_map::BucketMapConfig::new(64);
            config.drives = Some(vec![dir.path().to_path_buf()]);
            let mut atlas = Atlas(atlas_bucket_map::bucket_map::BucketMap::new(config));
            (0..n).for_each(|k| atlas.insert(k));
            eprintln!(
                "atlas 32-byte keys, {n} entries: {:.1} bytes per entry on disk",
                disk_bytes(dir.path()) as f64 / n as f64
            );
            bench_contender(c, &group, "atlas_key32", n, &mut atlas);
        }
    }
}

criterion_group!(benches, bucketmap);
criterion_main!(benches);
