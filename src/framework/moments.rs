//! Numerically stable, mergeable moments of a sample (count, mean, M2).
//!
//! Values are added with Welford's update and partial states are merged with
//! Chan et al.'s pairwise formula, so variance stays exact to rounding even
//! for prices near 100 with tiny spread, where sum-of-squares cancels.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    pub fn of(value: f64) -> Self {
        Moments {
            count: 1,
            mean: value,
            m2: 0.0,
        }
    }

    #[inline]
    pub fn add(&mut self, value: f64) {
        self.count += 1;
        let delta = value - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (value - self.mean);
    }

    #[inline]
    pub fn merge(&mut self, other: &Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let n = (self.count + other.count) as f64;
        let delta = other.mean - self.mean;
        let (na, nb) = (self.count as f64, other.count as f64);
        self.mean += delta * nb / n;
        self.m2 += other.m2 + delta * delta * na * nb / n;
        self.count += other.count;
    }

    /// Sample variance (divisor n - 1); none below two values.
    pub fn variance(&self) -> Option<f64> {
        (self.count >= 2).then(|| (self.m2 / (self.count - 1) as f64).max(0.0))
    }

    /// Sample standard deviation; none below two values.
    pub fn std(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn two_pass(xs: &[f64]) -> (f64, f64) {
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let ss: f64 = xs.iter().map(|x| (x - mean).powi(2)).sum();
        (mean, ss / (xs.len() - 1) as f64)
    }

    #[test]
    fn stable_near_large_means() {
        // Values 1e6 + k/8 are exact in binary, and the variance does not depend on
        // the offset, so the variance of k/8 alone is the true answer.
        let ks: Vec<f64> = (0..1000).map(|i| (i % 7) as f64 / 8.0).collect();
        let (_, truth) = two_pass(&ks);
        let mut m = Moments::default();
        ks.iter().for_each(|&k| m.add(1e6 + k));
        assert!(
            (m.variance().unwrap() - truth).abs() / truth < 1e-9,
            "{} vs {truth}",
            m.variance().unwrap()
        );
        // The naive formula loses every digit here, which is why it is not used.
        let n = ks.len() as f64;
        let (s, ss) = ks.iter().fold((0.0, 0.0), |(s, ss), &k| {
            (s + 1e6 + k, ss + (1e6 + k) * (1e6 + k))
        });
        let naive = (ss - s * s / n) / (n - 1.0);
        assert!(
            (naive - truth).abs() / truth > 1e-6,
            "naive {naive} vs {truth}"
        );
    }

    proptest! {
        #[test]
        fn merging_any_split_equals_adding_all(xs in prop::collection::vec(50.0f64..150.0, 2..200), cut in 0usize..200) {
            let cut = cut.min(xs.len());
            let mut whole = Moments::default();
            xs.iter().for_each(|&x| whole.add(x));
            let (mut left, mut right) = (Moments::default(), Moments::default());
            xs[..cut].iter().for_each(|&x| left.add(x));
            xs[cut..].iter().for_each(|&x| right.add(x));
            left.merge(&right);
            let (mean, var) = two_pass(&xs);
            prop_assert_eq!(left.count, whole.count);
            prop_assert!((left.mean - mean).abs() <= 1e-9 * mean);
            prop_assert!((left.variance().unwrap() - var).abs() <= 1e-9 * var.max(1e-9));
        }
    }
}

/// Stable, mergeable co-moments of paired samples (x, y): Welford's update for
/// both means and the co-moment, Chan's formula to merge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CoMoments {
    pub count: u64,
    pub mean_x: f64,
    pub mean_y: f64,
    pub m2_x: f64,
    pub m2_y: f64,
    /// Sum of (x - mean_x) * (y - mean_y).
    pub c_xy: f64,
}

impl CoMoments {
    #[inline]
    pub fn add(&mut self, x: f64, y: f64) {
        self.count += 1;
        let n = self.count as f64;
        let dx = x - self.mean_x;
        let dy = y - self.mean_y;
        self.mean_x += dx / n;
        self.mean_y += dy / n;
        self.m2_x += dx * (x - self.mean_x);
        self.m2_y += dy * (y - self.mean_y);
        self.c_xy += dx * (y - self.mean_y);
    }

    pub fn merge(&mut self, o: &CoMoments) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        let (na, nb) = (self.count as f64, o.count as f64);
        let n = na + nb;
        let dx = o.mean_x - self.mean_x;
        let dy = o.mean_y - self.mean_y;
        self.mean_x += dx * nb / n;
        self.mean_y += dy * nb / n;
        self.m2_x += o.m2_x + dx * dx * na * nb / n;
        self.m2_y += o.m2_y + dy * dy * na * nb / n;
        self.c_xy += o.c_xy + dx * dy * na * nb / n;
        self.count += o.count;
    }

    /// Pearson correlation; none when either series is constant.
    pub fn correlation(&self) -> Option<f64> {
        (self.m2_x > 0.0 && self.m2_y > 0.0).then(|| self.c_xy / (self.m2_x * self.m2_y).sqrt())
    }
}

#[cfg(test)]
mod comoment_tests {
    use super::*;

    #[test]
    fn merged_co_moments_equal_the_direct_correlation() {
        let xs: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64 * 0.001).collect();
        let ys: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| x * 0.7 + (i % 3) as f64 * 0.0004)
            .collect();
        let (mx, my) = (xs.iter().sum::<f64>() / 50.0, ys.iter().sum::<f64>() / 50.0);
        let cov: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let vx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        let vy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
        let truth = cov / (vx * vy).sqrt();
        let (mut a, mut b) = (CoMoments::default(), CoMoments::default());
        for i in 0..50 {
            if i < 17 {
                a.add(xs[i], ys[i])
            } else {
                b.add(xs[i], ys[i])
            }
        }
        a.merge(&b);
        assert!((a.correlation().unwrap() - truth).abs() < 1e-12);
        let mut constant = CoMoments::default();
        for y in [0.1, 0.2, 0.3] {
            constant.add(0.5, y);
        }
        assert_eq!(constant.correlation(), None);
    }
}
