//! Compute time per chunk: mean, p99 and max, in fixed memory.

use std::time::Duration;

/// Bins of 10 µs up to 100 ms; longer times land in the last bin (and in `max`).
const BIN_US: u64 = 10;
const BINS: usize = 10_000;

/// A histogram of durations. Recording is real-time safe (no allocation, no lock).
#[derive(Debug, Clone)]
pub struct ComputeStats {
    bins: Box<[u32; BINS]>,
    count: u64,
    total: Duration,
    max: Duration,
}

impl Default for ComputeStats {
    fn default() -> Self {
        Self {
            bins: Box::new([0; BINS]),
            count: 0,
            total: Duration::ZERO,
            max: Duration::ZERO,
        }
    }
}

impl ComputeStats {
    /// Adds one measured duration.
    pub fn record(&mut self, d: Duration) {
        let bin = ((d.as_micros() as u64) / BIN_US).min(BINS as u64 - 1) as usize;
        self.bins[bin] = self.bins[bin].saturating_add(1);
        self.count += 1;
        self.total += d;
        self.max = self.max.max(d);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their mean.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.total / self.count as u32
        }
    }

    /// The largest.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The `q`-quantile (0–1), to the 10 µs bin's upper edge.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let want = ((self.count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &n) in self.bins.iter().enumerate() {
            seen += u64::from(n);
            if seen >= want {
                return Duration::from_micros((i as u64 + 1) * BIN_US).min(self.max);
            }
        }
        self.max
    }

    /// The total time recorded.
    pub fn total(&self) -> Duration {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_quantile_and_max() {
        let mut s = ComputeStats::default();
        for i in 1..=100u64 {
            s.record(Duration::from_micros(i * 100));
        }
        assert_eq!(s.count(), 100);
        assert_eq!(s.mean(), Duration::from_micros(5050));
        assert_eq!(s.max(), Duration::from_micros(10_000));
        let p99 = s.quantile(0.99);
        assert!(
            p99 >= Duration::from_micros(9_900) && p99 <= Duration::from_micros(9_910),
            "{p99:?}"
        );
    }
}
