//! Biased matrix factorisation for explicit ratings, trained by SGD (Funk's SVD as in
//! Surprise's `SVD`): `r̂ = μ + b_u + b_i + q_iᵀ p_u`.
//!
//! Each epoch visits the ratings in a seeded random order (Surprise uses file order), updates
//! both biases and both factor vectors, and the prediction is clipped to the rating range.
//! Unknown users or items fall back to `μ` plus the known biases, as Surprise does.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{check_history, check_item, dot, Recommender, Target};
use crate::error::ModelError;
use crate::interactions::Interactions;
use crate::topk::{top_k, Exclude};

/// Hyper-parameters of [`MfModel`].
///
/// Defaults: 100 factors, 40 epochs, learning rate 0.01, regularization 0.1, init std 0.1,
/// clip bounds from the data. They were chosen on a validation split carved out of refeval's
/// ml-100k `user_random` train set (seed 43), never on its test set. Surprise SVD's own
/// defaults are `epochs 20, lr 0.005, reg 0.02`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfParams {
    factors: usize,
    epochs: usize,
    lr: f32,
    reg: f32,
    init_std: f32,
    seed: u64,
    rating_range: Option<(f32, f32)>,
}

/// Validated [`MfParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfValidParams(MfParams);

impl Default for MfParams {
    fn default() -> Self {
        Self {
            factors: 100,
            epochs: 40,
            lr: 0.01,
            reg: 0.1,
            init_std: 0.1,
            seed: 42,
            rating_range: None,
        }
    }
}

impl MfParams {
    /// Default parameters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of latent factors (≥ 1).
    pub fn factors(mut self, v: usize) -> Self {
        self.factors = v;
        self
    }
    /// Number of passes over the ratings (≥ 1).
    pub fn epochs(mut self, v: usize) -> Self {
        self.epochs = v;
        self
    }
    /// SGD learning rate (> 0).
    pub fn lr(mut self, v: f32) -> Self {
        self.lr = v;
        self
    }
    /// L2 regularization of biases and factors (≥ 0).
    pub fn reg(mut self, v: f32) -> Self {
        self.reg = v;
        self
    }
    /// Standard deviation of the initial factors (≥ 0).
    pub fn init_std(mut self, v: f32) -> Self {
        self.init_std = v;
        self
    }
    /// RNG seed (initial factors and visiting order).
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }
    /// Clip predictions to `[min, max]`; `None` = the training data's range.
    pub fn rating_range(mut self, v: Option<(f32, f32)>) -> Self {
        self.rating_range = v;
        self
    }
    /// Validates the parameters.
    pub fn check(self) -> Result<MfValidParams, ModelError> {
        if self.factors == 0 {
            return Err(ModelError::param("factors", "must be at least 1"));
        }
        if self.epochs == 0 {
            return Err(ModelError::param("epochs", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(ModelError::param("lr", "must be > 0"));
        }
        if !(self.reg.is_finite() && self.reg >= 0.0) {
            return Err(ModelError::param("reg", "must be ≥ 0"));
        }
        if !(self.init_std.is_finite() && self.init_std >= 0.0) {
            return Err(ModelError::param("init_std", "must be ≥ 0"));
        }
        if let Some((lo, hi)) = self.rating_range {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(ModelError::param("rating_range", "needs min ≤ max"));
            }
        }
        Ok(MfValidParams(self))
    }
}

/// A standard normal draw (Box–Muller), so that no extra crate is needed.
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

impl MfValidParams {
    /// Fits on the matrix values as ratings.
    pub fn fit(&self, data: &Interactions) -> Result<MfModel, ModelError> {
        let p = &self.0;
        let ui = data.user_items();
        let n = ui.nnz();
        if n == 0 {
            return Err(ModelError::EmptyData);
        }
        let f = p.factors;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let mut pu: Vec<f32> = (0..data.n_users() * f)
            .map(|_| normal(&mut rng) * p.init_std)
            .collect();
        let mut qi: Vec<f32> = (0..data.n_items() * f)
            .map(|_| normal(&mut rng) * p.init_std)
            .collect();
        let mut bu = vec![0f32; data.n_users()];
        let mut bi = vec![0f32; data.n_items()];
        // Flat (user, item, rating) triples, so an epoch is one pass over contiguous memory.
        let mut triples: Vec<(u32, u32, f32)> = Vec::with_capacity(n);
        for u in 0..data.n_users() {
            let (items, vals) = ui.row(u);
            for (&i, &r) in items.iter().zip(vals) {
                triples.push((u as u32, i, r));
            }
        }
        let mean = triples.iter().map(|t| t.2 as f64).sum::<f64>() / n as f64;
        let range = p.rating_range.unwrap_or_else(|| {
            triples
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |a, t| {
                    (a.0.min(t.2), a.1.max(t.2))
                })
        });
        let mean = mean as f32;
        let (lr, reg) = (p.lr, p.reg);
        for _ in 0..p.epochs {
            triples.shuffle(&mut rng);
            for &(u, i, r) in &triples {
                let (u, i) = (u as usize, i as usize);
                let pu_row = &mut pu[u * f..(u + 1) * f];
                let qi_row = &mut qi[i * f..(i + 1) * f];
                let err = r - (mean + bu[u] + bi[i] + dot(pu_row, qi_row));
                bu[u] += lr * (err - reg * bu[u]);
                bi[i] += lr * (err - reg * bi[i]);
                for (a, b) in pu_row.iter_mut().zip(qi_row.iter_mut()) {
                    let (pa, qb) = (*a, *b);
                    *a += lr * (err * qb - reg * pa);
                    *b += lr * (err * pa - reg * qb);
                }
            }
        }
        Ok(MfModel {
            factors: f,
            mean,
            range,
            user_bias: bu,
            item_bias: bi,
            user_factors: pu,
            item_factors: qi,
        })
    }
}

/// A fitted biased MF model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MfModel {
    factors: usize,
    mean: f32,
    range: (f32, f32),
    user_bias: Vec<f32>,
    item_bias: Vec<f32>,
    user_factors: Vec<f32>,
    item_factors: Vec<f32>,
}

impl MfModel {
    /// The global mean rating μ.
    pub fn global_mean(&self) -> f32 {
        self.mean
    }

    /// The clip range of predictions.
    pub fn rating_range(&self) -> (f32, f32) {
        self.range
    }

    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.user_bias.len()
    }

    fn raw(&self, user: Option<u32>, item: Option<u32>) -> f32 {
        let f = self.factors;
        let u = user.filter(|&u| (u as usize) < self.user_bias.len());
        let i = item.filter(|&i| (i as usize) < self.item_bias.len());
        let mut est = self.mean;
        if let Some(u) = u {
            est += self.user_bias[u as usize];
        }
        if let Some(i) = i {
            est += self.item_bias[i as usize];
        }
        if let (Some(u), Some(i)) = (u, i) {
            let (u, i) = (u as usize, i as usize);
            est += dot(
                &self.user_factors[u * f..(u + 1) * f],
                &self.item_factors[i * f..(i + 1) * f],
            );
        }
        est
    }

    /// Predicted rating, clipped; `None` (or an out-of-range index) means unknown, which
    /// drops the corresponding bias and the factor term.
    pub fn predict(&self, user: Option<u32>, item: Option<u32>) -> f32 {
        self.raw(user, item).clamp(self.range.0, self.range.1)
    }
}

impl Recommender for MfModel {
    fn n_items(&self) -> usize {
        self.item_bias.len()
    }

    /// Unclipped predicted ratings (a new user gets `μ + b_i`).
    fn score_items(&self, target: Target<'_>, scores: &mut [f32]) -> Result<(), ModelError> {
        check_history(target.history(), self.n_items())?;
        if scores.len() != self.n_items() {
            return Err(ModelError::Shape("score buffer length".into()));
        }
        let user = match target {
            Target::Known(u, _) => {
                if u as usize >= self.n_users() {
                    return Err(ModelError::OutOfRange {
                        what: "user",
                        index: u as usize,
                        len: self.n_users(),
                    });
                }
                Some(u)
            }
            Target::New(_) => None,
        };
        for (i, s) in scores.iter_mut().enumerate() {
            *s = self.raw(user, Some(i as u32));
        }
        Ok(())
    }

    /// Cosine similarity of item factors.
    fn similar_items(&self, item: u32, n: usize) -> Result<Vec<(u32, f32)>, ModelError> {
        check_item(item, self.n_items())?;
        let f = self.factors;
        let q = &self.item_factors[item as usize * f..(item as usize + 1) * f];
        let qn = dot(q, q).sqrt();
        let scores: Vec<f32> = self
            .item_factors
            .chunks_exact(f)
            .map(|y| {
                let d = dot(y, y).sqrt() * qn;
                if d > 0.0 {
                    dot(y, q) / d
                } else {
                    0.0
                }
            })
            .collect();
        Ok(top_k(&scores, n, Exclude::Sorted(&[item])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluation::rmse;

    #[test]
    fn learns_a_low_rank_rating_matrix() {
        // GIVEN ratings r = 3 + a_u·b_i (rank 1, in [1, 5]) with 30 % of cells held out
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let a: Vec<f32> = (0..60).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..40).map(|_| rng.random_range(-2.0..2.0)).collect();
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for u in 0..60u32 {
            for i in 0..40u32 {
                let r = 3.0 + a[u as usize] * b[i as usize];
                if rng.random_bool(0.3) {
                    test.push((u, i, r));
                } else {
                    train.push((u, i, r));
                }
            }
        }
        let m = Interactions::from_indexed(60, 40, &train).unwrap();
        // WHEN fitting
        let model = MfParams::new()
            .factors(4)
            .epochs(200)
            .lr(0.02)
            .reg(0.01)
            .check()
            .unwrap()
            .fit(&m)
            .unwrap();
        // THEN held-out RMSE beats the global mean by far
        let pairs: Vec<(f32, f32)> = test
            .iter()
            .map(|&(u, i, r)| (r, model.predict(Some(u), Some(i))))
            .collect();
        let base: Vec<(f32, f32)> = test
            .iter()
            .map(|&(_, _, r)| (r, model.global_mean()))
            .collect();
        let (e, e0) = (rmse(&pairs), rmse(&base));
        assert!(e < 0.25 * e0, "rmse {e} vs mean-only {e0}");
    }

    #[test]
    fn fallbacks_and_clipping() {
        // GIVEN item 1 rated high by everyone, item 0 low
        let m = Interactions::from_indexed(
            3,
            2,
            &[
                (0, 0, 1.0),
                (0, 1, 5.0),
                (1, 0, 1.0),
                (1, 1, 5.0),
                (2, 1, 5.0),
            ],
        )
        .unwrap();
        let model = MfParams::new().epochs(50).check().unwrap().fit(&m).unwrap();
        // THEN an unknown user still gets item 1 above item 0 (μ + b_i)
        let hi = model.predict(None, Some(1));
        let lo = model.predict(None, Some(0));
        assert!(hi > lo);
        assert!((model.predict(None, None) - model.global_mean()).abs() < 1e-6);
        // AND predictions stay within the training range [1, 5]
        for u in 0..3 {
            for i in 0..2 {
                let p = model.predict(Some(u), Some(i));
                assert!((1.0..=5.0).contains(&p));
            }
        }
        assert!(MfParams::new().lr(0.0).check().is_err());
    }
}
