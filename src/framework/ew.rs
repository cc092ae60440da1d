//! Exponentially weighted means: the baselines of the anomaly detectors and
//! the volatility forecast.

use serde::{Deserialize, Serialize};

/// The weight of a new value in an exponentially weighted mean of half-life `h` updates.
pub fn weight_of_half_life(h: f64) -> f64 {
    1.0 - 0.5f64.powf(1.0 / h.max(1e-9))
}

/// An exponentially weighted mean, bias-corrected while young: the n-th
/// update weighs `max(a, 1/n)`, so the first values are averaged plainly.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EwMean {
    pub mean: f64,
    pub updates: u64,
}

impl EwMean {
    pub fn add(&mut self, value: f64, weight: f64) {
        self.updates += 1;
        let a = weight.max(1.0 / self.updates as f64);
        self.mean += a * (value - self.mean);
    }

    /// `n` updates with the value 0, at once.
    pub fn add_zeros(&mut self, n: u64, weight: f64) {
        // Young means take them one at a time (their weight changes); old ones in closed form.
        let mut left = n;
        while left > 0 && (self.updates as f64) * weight < 1.0 {
            self.add(0.0, weight);
            left -= 1;
        }
        if left > 0 {
            self.updates += left;
            self.mean *= (1.0 - weight).powf(left as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn zeros_at_once_equal_zeros_one_by_one(
            values in proptest::collection::vec(0.0f64..1e6, 0..20),
            zeros in 0u64..300,
            half_life in 1.0f64..200.0,
        ) {
            let w = weight_of_half_life(half_life);
            let (mut at_once, mut one_by_one) = (EwMean::default(), EwMean::default());
            for v in &values {
                at_once.add(*v, w);
                one_by_one.add(*v, w);
            }
            at_once.add_zeros(zeros, w);
            for _ in 0..zeros {
                one_by_one.add(0.0, w);
            }
            prop_assert_eq!(at_once.updates, one_by_one.updates);
            prop_assert!((at_once.mean - one_by_one.mean).abs() <= 1e-9 * (1.0 + one_by_one.mean.abs()));
        }
    }

    #[test]
    fn a_young_mean_is_the_plain_average() {
        let mut m = EwMean::default();
        for v in [2.0, 4.0, 9.0] {
            m.add(v, 0.01);
        }
        assert!((m.mean - 5.0).abs() < 1e-12);
    }
}
