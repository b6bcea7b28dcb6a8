//! Seeded synthetic interaction data with power-law (Zipf) popularity, for scale benches and
//! tests: `n` records over `U` users and `I` items, user activity and item popularity each
//! drawn from a Zipf law. Item 0 is the most popular item, user 0 the most active user.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::interactions::Interactions;

/// Shape of a synthetic dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticParams {
    /// Number of records to draw (duplicate pairs are possible and merge in the matrix).
    pub n_interactions: usize,
    /// Number of users.
    pub n_users: usize,
    /// Number of items.
    pub n_items: usize,
    /// Zipf exponent of item popularity (rank r has weight r^-s).
    pub item_exponent: f64,
    /// Zipf exponent of user activity.
    pub user_exponent: f64,
    /// Timestamps are spread uniformly over `[start_ms, start_ms + span_ms)`.
    pub start_ms: i64,
    /// Width of the time range in ms.
    pub span_ms: i64,
    /// RNG seed.
    pub seed: u64,
}

impl SyntheticParams {
    /// `n` records over `users` × `items`, exponents 0.5 (users) and 0.8 (items), 30 days of
    /// timestamps from 2026-01-01, seed 42.
    pub fn new(n: usize, users: usize, items: usize) -> Self {
        Self {
            n_interactions: n,
            n_users: users,
            n_items: items,
            item_exponent: 0.8,
            user_exponent: 0.5,
            start_ms: 1_767_225_600_000,
            span_ms: 30 * 86_400_000,
            seed: 42,
        }
    }

    fn check(&self) -> Result<(), ModelError> {
        if self.n_users == 0 || self.n_items == 0 || self.n_interactions == 0 {
            return Err(ModelError::EmptyData);
        }
        if self.n_users > u32::MAX as usize || self.n_items > u32::MAX as usize {
            return Err(ModelError::param("n_users", "too many for u32 indices"));
        }
        if self.span_ms <= 0 {
            return Err(ModelError::param("span_ms", "must be positive"));
        }
        Ok(())
    }

    /// The records `(user, item, timestamp_ms)`, lazily, in a seeded order.
    pub fn records(&self) -> Result<impl Iterator<Item = (u32, u32, i64)>, ModelError> {
        self.check()?;
        let users = ZipfTable::new(self.n_users, self.user_exponent);
        let items = ZipfTable::new(self.n_items, self.item_exponent);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (start, span) = (self.start_ms, self.span_ms);
        Ok((0..self.n_interactions).map(move |_| {
            let u = users.sample(&mut rng);
            let i = items.sample(&mut rng);
            let t = start + rng.random_range(0..span);
            (u, i, t)
        }))
    }

    /// The binary interaction matrix (keys are the decimal indices).
    pub fn interactions(&self) -> Result<Interactions, ModelError> {
        let mut entries = Vec::with_capacity(self.n_interactions);
        for (u, i, _) in self.records()? {
            entries.push((u, i, 1.0f32));
        }
        let m = Interactions::from_indexed(self.n_users, self.n_items, &entries)?;
        Ok(m.binarized())
    }
}

/// Inverse-CDF sampler of a Zipf law over `0..n`.
struct ZipfTable {
    cdf: Vec<f64>,
}

impl ZipfTable {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for r in 1..=n {
            acc += (r as f64).powf(-s);
            cdf.push(acc);
        }
        for v in &mut cdf {
            *v /= acc;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> u32 {
        let x: f64 = rng.random();
        let p = self.cdf.partition_point(|&c| c <= x);
        p.min(self.cdf.len() - 1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_power_law() {
        // GIVEN 20k records over 500 users × 100 items
        let p = SyntheticParams::new(20_000, 500, 100);
        // WHEN drawn twice
        let a: Vec<_> = p.records().unwrap().collect();
        let b: Vec<_> = p.records().unwrap().collect();
        // THEN identical, and item 0 is far more popular than item 99
        assert_eq!(a, b);
        let count = |it: u32| a.iter().filter(|r| r.1 == it).count();
        assert!(count(0) > 10 * count(99), "{} vs {}", count(0), count(99));
        let m = p.interactions().unwrap();
        assert_eq!((m.n_users(), m.n_items()), (500, 100));
        assert!(m.nnz() <= 20_000 && m.nnz() > 5_000);
    }
}
