//! A fixed-size histogram of durations (nanoseconds) for sojourn-time percentiles.
//!
//! Log-linear buckets, as HdrHistogram's: every power of two from 1024 ns (~1 µs) to 2^37 ns
//! (~137 s) is split into [`SUB_BUCKETS`] equal buckets, so a bucket is at most 1/8 of its
//! lower bound wide. A quantile is reported as its bucket's midpoint (clamped to the smallest
//! and largest value seen), so the relative error is at most 1/16 (6.25 %). Values below
//! 1024 ns count in the first bucket, values above the range in the last one. Memory is fixed
//! (~1.8 KB); recording is a few integer operations and never allocates.

/// Buckets per power of two.
pub const SUB_BUCKETS: usize = 8;
const SUB_BITS: u32 = 3;
/// log2 of the smallest bucket's lower bound (1024 ns).
const MIN_EXP: u32 = 10;
/// log2 of the upper end of the range (2^37 ns, ~137 s).
const MAX_EXP: u32 = 37;
/// Number of buckets.
pub const BUCKETS: usize = (MAX_EXP - MIN_EXP) as usize * SUB_BUCKETS;

/// Counts of durations in log-linear buckets; see the module docs.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: [u64; BUCKETS],
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: [0; BUCKETS],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// The bucket a value falls in (clamped to the range).
fn index(ns: u64) -> usize {
    let v = ns.clamp(1 << MIN_EXP, (1 << MAX_EXP) - 1);
    let exp = 63 - v.leading_zeros(); // MIN_EXP..MAX_EXP
    let sub = (v >> (exp - SUB_BITS)) & (SUB_BUCKETS as u64 - 1);
    (exp - MIN_EXP) as usize * SUB_BUCKETS + sub as usize
}

/// The lower bound and width of bucket `i`.
fn bounds(i: usize) -> (u64, u64) {
    #[allow(clippy::cast_possible_truncation, reason = "i / SUB_BUCKETS < 27")]
    let exp = MIN_EXP + (i / SUB_BUCKETS) as u32;
    let width = 1u64 << (exp - SUB_BITS);
    let lower = (1u64 << exp) + (i % SUB_BUCKETS) as u64 * width;
    (lower, width)
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns)] += 1;
        self.count += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (0.0..=1.0, e.g. 0.99) in nanoseconds, within the relative error of
    /// the module docs; `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        // The rank of the wanted value, 1-based: ceil(q * count), at least 1.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "q in 0..=1 times a count fits u64; precision loss only above 2^53 samples"
        )]
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lower, width) = bounds(i);
                return Some((lower + width / 2).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The smallest recorded duration.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest recorded duration.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The mean duration.
    pub fn mean(&self) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        u64::try_from(self.sum / u128::from(self.count)).ok()
    }

    /// Forgets everything recorded.
    pub fn clear(&mut self) {
        *self = Histogram::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact quantile by the same rank rule.
    fn exact(sorted: &[u64], q: f64) -> u64 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn empty_has_no_quantiles() {
        let h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.count(), 0);
        assert_eq!(h.max(), None);
    }

    #[test]
    fn buckets_tile_the_range() {
        let mut next = 1u64 << MIN_EXP;
        for i in 0..BUCKETS {
            let (lower, width) = bounds(i);
            assert_eq!(lower, next, "bucket {i}");
            assert!(width * 8 <= lower, "bucket {i} too wide");
            assert_eq!(index(lower), i);
            assert_eq!(index(lower + width - 1), i);
            next = lower + width;
        }
        assert_eq!(next, 1 << MAX_EXP);
    }

    #[test]
    fn quantiles_match_a_sorted_vector() {
        // A deterministic spread over 1 µs .. 10 s (xorshift, log-uniform).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut values = Vec::new();
        let mut h = Histogram::default();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let exp = 10 + (x % 24);
            let v = (1u64 << exp) + (x >> 40) % (1u64 << exp);
            values.push(v);
            h.record(v);
        }
        values.sort_unstable();
        for q in [0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let want = exact(&values, q);
            let got = h.quantile(q).unwrap();
            #[allow(clippy::cast_precision_loss)]
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err <= 0.0625, "q {q}: got {got}, want {want}, err {err}");
        }
        assert_eq!(h.count(), 20_000);
        assert_eq!(h.min(), values.first().copied());
        assert_eq!(h.max(), values.last().copied());
    }

    #[test]
    fn out_of_range_values_clamp_to_end_buckets() {
        let mut h = Histogram::default();
        h.record(0);
        h.record(5);
        assert_eq!(
            h.quantile(1.0),
            Some(5),
            "clamped to the largest value seen"
        );
        h.record(u64::MAX);
        let (lower, width) = bounds(BUCKETS - 1);
        assert_eq!(h.quantile(1.0), Some(lower + width / 2), "the last bucket");
        assert_eq!(index(u64::MAX), BUCKETS - 1);
        assert_eq!(index(0), 0);
        h.clear();
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn single_value_is_exact() {
        let mut h = Histogram::default();
        for _ in 0..10 {
            h.record(3_000_000);
        }
        assert_eq!(h.quantile(0.5), Some(3_000_000));
        assert_eq!(h.mean(), Some(3_000_000));
    }
}
