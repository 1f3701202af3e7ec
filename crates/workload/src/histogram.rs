//! A latency histogram: log-linear buckets (32 per power of two, so any value is known to
//! within about 3%), a fixed 16 KiB of counters, merged across threads.

/// Sub-buckets per power of two: 2^5.
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any `u64`.
const N_BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// Counts of values (nanoseconds here).
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; N_BUCKETS]>,
    n: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: Box::new([0; N_BUCKETS]), n: 0, max: 0, sum: 0 }
    }
}

fn bucket_of(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let msb = 63 - value.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (value >> shift) as usize & (SUB - 1);
    ((shift as usize + 1) << SUB_BITS) + sub
}

/// The smallest value of a bucket.
fn bucket_low(bucket: usize) -> u64 {
    if bucket < SUB {
        return bucket as u64;
    }
    let shift = (bucket >> SUB_BITS) - 1;
    u64::try_from(((SUB + (bucket & (SUB - 1))) as u128) << shift).unwrap_or(u64::MAX)
}

impl Histogram {
    /// Counts one value.
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.n += 1;
        self.max = self.max.max(value);
        self.sum += value as u128;
    }

    /// Adds every count of `other` (another thread's histogram).
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.n += other.n;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values counted.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// The largest value counted (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean of the values counted (exact).
    pub fn mean(&self) -> f64 {
        match self.n {
            0 => 0.0,
            n => self.sum as f64 / n as f64,
        }
    }

    /// The value below which a fraction `q` of the values lie (the middle of its bucket,
    /// never above the largest value seen).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let low = bucket_low(bucket);
                let high = bucket_low(bucket + 1).max(low + 1);
                return (low + (high - low) / 2).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut previous = 0;
        for value in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket >= previous && bucket < N_BUCKETS, "value {value}");
            assert!(bucket_low(bucket) <= value, "value {value} bucket {bucket}");
            if bucket + 1 < N_BUCKETS {
                assert!(value < bucket_low(bucket + 1), "value {value}");
                let width = bucket_low(bucket + 1) - bucket_low(bucket);
                assert!(width <= 1.max(value / 16), "value {value}: width {width}");
            }
            previous = bucket;
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut histogram = Histogram::default();
        for value in 1..=10_000u64 {
            histogram.record(value);
        }
        let close = |got: u64, want: f64| (got as f64 - want).abs() <= want * 0.04;
        assert!(close(histogram.quantile(0.5), 5000.0), "{}", histogram.quantile(0.5));
        assert!(close(histogram.quantile(0.99), 9900.0), "{}", histogram.quantile(0.99));
        assert_eq!(histogram.quantile(1.0), 10_000);
        assert_eq!(histogram.max(), 10_000);
        let mut merged = Histogram::default();
        merged.merge(&histogram);
        merged.merge(&histogram);
        assert_eq!(merged.len(), 20_000);
        assert!(close(merged.quantile(0.5), 5000.0));
        assert_eq!(Histogram::default().quantile(0.5), 0);
    }
}
