//! The benchmark's workload: which keys exist, which key each operation picks (uniform, or
//! Zipfian as in YCSB, hot keys scattered over the key space), and what mix of operations
//! each named workload runs. Deterministic for a seed.

/// YCSB's core workloads (A, B, C, F) and a write-only one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Workload {
    /// 50% reads, 50% updates (YCSB A: a session store).
    A,
    /// 95% reads, 5% updates (YCSB B: photo tagging).
    B,
    /// 100% reads (YCSB C: a user-profile cache).
    C,
    /// 50% reads, 50% read-modify-writes (YCSB F: user records).
    F,
    /// 100% updates.
    W,
}

/// One operation of the run phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Read a key.
    Read,
    /// Write a key's value.
    Update,
    /// Read a key, then write it.
    ReadModifyWrite,
}

impl Workload {
    /// The fraction of reads; the rest are the workload's writes.
    fn read_fraction(self) -> f64 {
        match self {
            Workload::A | Workload::F => 0.5,
            Workload::B => 0.95,
            Workload::C => 1.0,
            Workload::W => 0.0,
        }
    }

    /// The mix in words.
    pub fn describe(self) -> &'static str {
        match self {
            Workload::A => "50% reads, 50% updates",
            Workload::B => "95% reads, 5% updates",
            Workload::C => "100% reads",
            Workload::F => "50% reads, 50% read-modify-writes",
            Workload::W => "100% updates",
        }
    }

    /// The next operation of this mix.
    pub fn pick(self, rng: &mut Rng) -> Op {
        match (rng.next_f64() < self.read_fraction(), self) {
            (true, _) => Op::Read,
            (false, Workload::F) => Op::ReadModifyWrite,
            (false, _) => Op::Update,
        }
    }
}

/// How operations pick keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Distribution {
    /// Zipfian (YCSB's scrambled Zipfian: a few keys get most operations).
    Zipf,
    /// Every key equally likely.
    Uniform,
}

/// SplitMix64: small, fast and good enough to drive a benchmark.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (the same seed, the same sequence).
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Fills `bytes` with random bytes.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// SplitMix64's finaliser: a bijection on `u64` that scatters neighbouring inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of item `idx`: 8 bytes of a bijective scramble of `idx` (distinct for distinct
/// items, in no useful order), then filler up to `key_size` (at least 8).
pub fn key_of(idx: u64, key_size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&mix(idx).to_be_bytes());
    out.resize(key_size.max(8), b'k');
}

/// Picks item indices in `[0, n)`.
#[derive(Clone, Debug)]
pub enum KeyChooser {
    /// Every item equally likely.
    Uniform {
        /// Items to choose from.
        n: u64,
    },
    /// Scrambled Zipfian.
    Zipf(Zipf),
}

impl KeyChooser {
    /// A chooser over `n` items (`theta` is the Zipfian skew, in (0, 1)).
    pub fn new(distribution: Distribution, n: u64, theta: f64) -> KeyChooser {
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform { n },
            Distribution::Zipf => KeyChooser::Zipf(Zipf::new(n, theta)),
        }
    }

    /// The next item.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        match self {
            KeyChooser::Uniform { n } => rng.below(*n),
            KeyChooser::Zipf(zipf) => zipf.next_scrambled(rng),
        }
    }
}

/// The Zipfian generator of Gray et al. ("Quickly generating billion-record synthetic
/// databases", 1994), as YCSB uses it: rank 0 is the most popular, with probability
/// proportional to `1 / (rank + 1)^theta`. O(n) set-up, O(1) per draw.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

impl Zipf {
    /// A generator over `n` ranks with skew `theta` in (0, 1) (YCSB uses 0.99).
    pub fn new(n: u64, theta: f64) -> Zipf {
        assert!(n >= 1 && theta > 0.0 && theta < 1.0, "checked by the caller");
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2.min(n));
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Zipf { n, theta, alpha, zeta_n, eta }
    }

    /// A rank: 0 most often.
    pub fn next_rank(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }

    /// An item: the rank scattered over `[0, n)`, so the hot items are not neighbours.
    pub fn next_scrambled(&self, rng: &mut Rng) -> u64 {
        mix(self.next_rank(rng) ^ 0x5A5A_5A5A) % self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_like_the_formula() {
        let (n, theta) = (1000u64, 0.99);
        let zipf = Zipf::new(n, theta);
        let mut rng = Rng::new(42);
        let mut counts = vec![0u64; n as usize];
        let draws = 200_000;
        for _ in 0..draws {
            counts[zipf.next_rank(&mut rng) as usize] += 1;
        }
        let zeta_n: f64 = (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum();
        let share = |rank: usize| 1.0 / ((rank + 1) as f64).powf(theta) / zeta_n;
        // Ranks 0 and 1 are exact by construction; beyond them the method approximates
        // the distribution, so the rest is checked as mass.
        for rank in [0usize, 1] {
            let expected = draws as f64 * share(rank);
            let got = counts[rank] as f64;
            assert!((got - expected).abs() < expected * 0.05, "rank {rank}: {got} draws, expected {expected}");
        }
        for top in [10usize, 100, 500] {
            let expected = draws as f64 * (0..top).map(share).sum::<f64>();
            let got = counts[..top].iter().sum::<u64>() as f64;
            assert!((got - expected).abs() < expected * 0.1, "top {top}: {got} draws, expected {expected}");
        }
        assert!(counts.iter().all(|&count| count < counts[0] + 1));
    }

    #[test]
    fn keys_are_distinct_and_sized() {
        let mut seen = std::collections::HashSet::new();
        let mut key = Vec::new();
        for idx in 0..10_000 {
            key_of(idx, 16, &mut key);
            assert_eq!(key.len(), 16);
            assert!(seen.insert(key.clone()));
        }
        key_of(1, 4, &mut key);
        assert_eq!(key.len(), 8, "at least the 8 distinguishing bytes");
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rng::new(7);
        for n in [1u64, 2, 3, 1000] {
            let zipf = KeyChooser::new(Distribution::Zipf, n, 0.99);
            let uniform = KeyChooser::new(Distribution::Uniform, n, 0.99);
            for _ in 0..10_000 {
                assert!(zipf.next(&mut rng) < n && uniform.next(&mut rng) < n);
            }
        }
    }
}
