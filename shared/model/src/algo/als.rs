//! Implicit ALS (Hu, Koren, Volinsky 2008) with the conjugate-gradient solver of Takács,
//! Pilászy, Tikk (2011), as implicit's CPU `least_squares_cg`.
//!
//! Each user vector solves `(YᵀC_uY + λI) x_u = YᵀC_u p_u`, with confidence
//! `c_ui = 1 + alpha·r_ui` on observed cells (`r = 1` in binary mode), 1 elsewhere, and
//! preference 1 on observed cells. `YᵀY + λI` is computed once per half-iteration so every row
//! only touches its own non-zeros; a few CG steps per row, warm-started from the previous
//! factors, replace the exact solve.
//!
//! Determinism: the initial factors come from a per-row ChaCha stream of the seed, every row is
//! solved independently, and `YᵀY` is summed over fixed row blocks in a fixed order, so the
//! result is bit-for-bit the same for any number of threads.

mod kernel;

use ndarray::{ArrayView2, ArrayViewMut2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{axpy, check_history, check_item, dot, Recommender, Target, UserHistory};
use crate::error::ModelError;
use crate::interactions::{Csr, Interactions};
use crate::topk::{top_k, Exclude};
use kernel::{matvec, sparse_update, Block4, Portable};

mod warm;
pub use warm::WarmStart;

/// How matrix values become confidences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Confidence {
    /// `c = 1 + alpha` for every observed cell.
    #[default]
    Binary,
    /// `c = 1 + alpha · value` (the cell's summed weight or rating).
    Value,
}

/// Hyper-parameters of [`AlsModel`] (builder; call [`AlsParams::check`]).
///
/// Defaults are refeval's tuned MovieLens row: 64 factors, regularization 20, alpha 1,
/// binary confidence, 15 iterations, 3 CG steps, seed 42.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsParams {
    factors: usize,
    regularization: f32,
    alpha: f32,
    iterations: usize,
    cg_steps: usize,
    confidence: Confidence,
    seed: u64,
}

/// Validated [`AlsParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsValidParams(AlsParams);

impl Default for AlsParams {
    fn default() -> Self {
        Self {
            factors: 64,
            regularization: 20.0,
            alpha: 1.0,
            iterations: 15,
            cg_steps: 3,
            confidence: Confidence::Binary,
            seed: 42,
        }
    }
}

impl AlsParams {
    /// Default parameters.
    pub fn new() -> Self {
        Self::default()
    }
    /// Number of latent factors (≥ 1).
    pub fn factors(mut self, v: usize) -> Self {
        self.factors = v;
        self
    }
    /// L2 regularization λ (≥ 0).
    pub fn regularization(mut self, v: f32) -> Self {
        self.regularization = v;
        self
    }
    /// Confidence slope alpha (≥ 0).
    pub fn alpha(mut self, v: f32) -> Self {
        self.alpha = v;
        self
    }
    /// Number of alternating iterations (≥ 1).
    pub fn iterations(mut self, v: usize) -> Self {
        self.iterations = v;
        self
    }
    /// CG steps per row and half-iteration (≥ 1).
    pub fn cg_steps(mut self, v: usize) -> Self {
        self.cg_steps = v;
        self
    }
    /// How values become confidences.
    pub fn confidence(mut self, v: Confidence) -> Self {
        self.confidence = v;
        self
    }
    /// Seed of the initial factors.
    pub fn seed(mut self, v: u64) -> Self {
        self.seed = v;
        self
    }

    /// Validates the parameters.
    pub fn check(self) -> Result<AlsValidParams, ModelError> {
        if self.factors == 0 {
            return Err(ModelError::param("factors", "must be at least 1"));
        }
        if !(self.regularization.is_finite() && self.regularization >= 0.0) {
            return Err(ModelError::param("regularization", "must be ≥ 0"));
        }
        if !(self.alpha.is_finite() && self.alpha >= 0.0) {
            return Err(ModelError::param("alpha", "must be ≥ 0"));
        }
        if self.iterations == 0 {
            return Err(ModelError::param("iterations", "must be at least 1"));
        }
        if self.cg_steps == 0 {
            return Err(ModelError::param("cg_steps", "must be at least 1"));
        }
        Ok(AlsValidParams(self))
    }
}

impl AlsValidParams {
    /// The validated parameters.
    pub fn params(&self) -> &AlsParams {
        &self.0
    }

    /// Number of latent factors.
    pub fn factors(&self) -> usize {
        self.0.factors
    }

    /// Alternating iterations of a cold fit.
    pub fn iterations(&self) -> usize {
        self.0.iterations
    }

    pub(crate) fn params_confidence(&self) -> Confidence {
        self.0.confidence
    }

    /// A model over stored item factors that folds users unseen at training time in with
    /// exactly these params (regularization, alpha, confidence), as serving does.
    pub fn fold_in_model(
        &self,
        dim: usize,
        item_factors: Vec<f32>,
    ) -> Result<AlsModel, ModelError> {
        AlsModel::from_factors(
            dim,
            Vec::new(),
            item_factors,
            self.0.regularization,
            self.0.alpha,
            self.0.confidence,
        )
    }

    /// Fits the model.
    pub fn fit(&self, data: &Interactions) -> Result<AlsModel, ModelError> {
        self.fit_with_progress(data, |_| {})
    }

    /// Fits the model, calling `progress(iteration)` after each completed iteration
    /// (1-based), e.g. to drive a progress bar.
    pub fn fit_with_progress(
        &self,
        data: &Interactions,
        progress: impl FnMut(usize),
    ) -> Result<AlsModel, ModelError> {
        let p = &self.0;
        if data.nnz() == 0 {
            return Err(ModelError::EmptyData);
        }
        let x = init_factors(data.n_users(), p.factors, p.seed, 0);
        let y = init_factors(data.n_items(), p.factors, p.seed, 1);
        self.fit_from(data, x, y, p.iterations, progress)
    }

    /// `iterations` alternations from the starting factors `x` (users) and `y` (items).
    fn fit_from(
        &self,
        data: &Interactions,
        mut x: Vec<f32>,
        mut y: Vec<f32>,
        iterations: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<AlsModel, ModelError> {
        let p = &self.0;
        let f = p.factors;
        let cui = confidences(data.user_items(), p.alpha, p.confidence);
        let ciu = confidences(data.item_users(), p.alpha, p.confidence);
        for it in 0..iterations {
            solve_side(
                data.user_items(),
                &cui,
                &mut x,
                &y,
                f,
                p.regularization,
                p.cg_steps,
            );
            solve_side(
                data.item_users(),
                &ciu,
                &mut y,
                &x,
                f,
                p.regularization,
                p.cg_steps,
            );
            progress(it + 1);
        }
        let yty = gram(&y, f, p.regularization);
        Ok(AlsModel {
            factors: f,
            regularization: p.regularization,
            alpha: p.alpha,
            confidence: p.confidence,
            user_factors: x,
            item_factors: y,
            yty,
        })
    }
}

/// The confidence of every stored cell (the CSR values mapped once, outside the hot loop).
fn confidences(m: &Csr, alpha: f32, mode: Confidence) -> Vec<f32> {
    m.data()
        .iter()
        .map(|&v| match mode {
            Confidence::Binary => 1.0 + alpha,
            Confidence::Value => 1.0 + alpha * v,
        })
        .collect()
}

fn init_factors(n: usize, f: usize, seed: u64, side: u64) -> Vec<f32> {
    let mut out = vec![0f32; n * f];
    out.par_chunks_mut(f).enumerate().for_each(|(r, row)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream((side << 48) | r as u64);
        for v in row {
            *v = rng.random::<f32>() * 0.01;
        }
    });
    out
}

/// Rows summed per block; fixed, so the sum order never depends on the thread count.
const GRAM_BLOCK: usize = 4096;

/// `YᵀY + λI` (f × f, row-major).
fn gram(y: &[f32], f: usize, reg: f32) -> Vec<f32> {
    let n = y.len() / f;
    let partials: Vec<Vec<f32>> = y
        .par_chunks(GRAM_BLOCK * f)
        .map(|blk| {
            let rows = blk.len() / f;
            let v = ArrayView2::from_shape((rows, f), blk).expect("block shape");
            let g = v.t().dot(&v);
            g.into_raw_vec_and_offset().0
        })
        .collect();
    let mut g = vec![0f32; f * f];
    if n > 0 {
        for p in &partials {
            for (a, b) in g.iter_mut().zip(p) {
                *a += b;
            }
        }
    }
    for d in 0..f {
        g[d * f + d] += reg;
    }
    g
}

/// One half-iteration: every row of `x` re-solved against the fixed `y`.
fn solve_side(
    m: &Csr,
    conf: &[f32],
    x: &mut [f32],
    y: &[f32],
    f: usize,
    reg: f32,
    cg_steps: usize,
) {
    let a = gram(y, f, reg);
    let kernel = pick_cg_kernel();
    x.par_chunks_mut(f).enumerate().for_each_init(
        || vec![0f32; 3 * f],
        |scratch, (u, xu)| {
            let rg = m.row_range(u);
            kernel(
                &a,
                &m.indices()[rg.clone()],
                &conf[rg],
                y,
                xu,
                scratch,
                cg_steps,
            );
        },
    );
}

type CgKernel = fn(&[f32], &[u32], &[f32], &[f32], &mut [f32], &mut [f32], usize);

/// The row solver compiled for the best vector extension this CPU has. The arithmetic and its
/// order are the same in every variant (no FMA contraction), so results do not change.
fn pick_cg_kernel() -> CgKernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            return |a, items, conf, y, x, scratch, steps| {
                // SAFETY: AVX2 support was just checked at run time.
                unsafe { cg_row_avx2(a, items, conf, y, x, scratch, steps) }
            };
        }
    }
    cg_row
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn cg_row_avx2(
    a: &[f32],
    items: &[u32],
    conf: &[f32],
    y: &[f32],
    x: &mut [f32],
    scratch: &mut [f32],
    cg_steps: usize,
) {
    // SAFETY: the caller runs this only on a CPU with AVX2.
    let ops = unsafe { kernel::Avx2::new() };
    cg_row_body(&ops, a, items, conf, y, x, scratch, cg_steps)
}

/// The portable row solver.
fn cg_row(
    a: &[f32],
    items: &[u32],
    conf: &[f32],
    y: &[f32],
    x: &mut [f32],
    scratch: &mut [f32],
    cg_steps: usize,
) {
    cg_row_body(&Portable, a, items, conf, y, x, scratch, cg_steps)
}

/// A few CG steps on `(A + Σ (c_i − 1) y_i y_iᵀ) x = Σ c_i y_i`, from the current `x`.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the row kernel's operands; a struct would cost a copy per row
fn cg_row_body(
    ops: &impl Block4,
    a: &[f32],
    items: &[u32],
    conf: &[f32],
    y: &[f32],
    x: &mut [f32],
    scratch: &mut [f32],
    cg_steps: usize,
) {
    let f = x.len();
    let (r, rest) = scratch.split_at_mut(f);
    let (p, ap) = rest.split_at_mut(f);
    let ap = &mut ap[..f];
    // r = b − A_u x
    matvec(ops, a, x, r);
    for v in r.iter_mut() {
        *v = -*v;
    }
    sparse_update(ops, items, conf, y, x, r, |c, d| c - (c - 1.0) * d);
    p.copy_from_slice(r);
    let mut rs_old = dot(r, r);
    if rs_old < 1e-20 {
        return;
    }
    for _ in 0..cg_steps {
        matvec(ops, a, p, ap);
        sparse_update(ops, items, conf, y, p, ap, |c, d| (c - 1.0) * d);
        let pap = dot(p, ap);
        if pap <= 0.0 || !pap.is_finite() {
            return;
        }
        let step = rs_old / pap;
        axpy(step, p, x);
        axpy(-step, ap, r);
        let rs_new = dot(r, r);
        if rs_new < 1e-20 {
            return;
        }
        let beta = rs_new / rs_old;
        for (pi, ri) in p.iter_mut().zip(r.iter()) {
            *pi = ri + beta * *pi;
        }
        rs_old = rs_new;
    }
}

/// A fitted implicit ALS model: user and item factors (row-major, `f32`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlsModel {
    factors: usize,
    regularization: f32,
    alpha: f32,
    confidence: Confidence,
    user_factors: Vec<f32>,
    item_factors: Vec<f32>,
    /// `YᵀY + λI` of the final item factors, for fold-in.
    yty: Vec<f32>,
}

impl AlsModel {
    /// Rebuilds a model from stored factors (e.g. item factors loaded from the model store;
    /// `user_factors` may be empty when users are folded in at serving time).
    pub fn from_factors(
        factors: usize,
        user_factors: Vec<f32>,
        item_factors: Vec<f32>,
        regularization: f32,
        alpha: f32,
        confidence: Confidence,
    ) -> Result<Self, ModelError> {
        if factors == 0
            || !user_factors.len().is_multiple_of(factors)
            || !item_factors.len().is_multiple_of(factors)
        {
            return Err(ModelError::Shape(
                "factor vectors are not a multiple of `factors`".into(),
            ));
        }
        let yty = gram(&item_factors, factors, regularization);
        Ok(Self {
            factors,
            regularization,
            alpha,
            confidence,
            user_factors,
            item_factors,
            yty,
        })
    }

    /// The regularization (λ) of fits and fold-ins.
    pub fn regularization(&self) -> f32 {
        self.regularization
    }

    /// Number of latent factors.
    pub fn factors(&self) -> usize {
        self.factors
    }

    /// Number of users with a trained vector.
    pub fn n_users(&self) -> usize {
        self.user_factors.len() / self.factors
    }

    /// User factors, `n_users × factors`.
    pub fn user_factors(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.n_users(), self.factors), &self.user_factors)
            .expect("consistent shape")
    }

    /// Item factors, `n_items × factors`.
    pub fn item_factors(&self) -> ArrayView2<'_, f32> {
        ArrayView2::from_shape((self.n_items(), self.factors), &self.item_factors)
            .expect("consistent shape")
    }

    /// Mutable user factors (e.g. to patch in folded-in users).
    pub fn user_factors_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        let n = self.n_users();
        ArrayViewMut2::from_shape((n, self.factors), &mut self.user_factors)
            .expect("consistent shape")
    }

    /// The trained vector of user `u`.
    pub fn user_vector(&self, u: u32) -> Result<&[f32], ModelError> {
        let n = self.n_users();
        if u as usize >= n {
            return Err(ModelError::OutOfRange {
                what: "user",
                index: u as usize,
                len: n,
            });
        }
        let f = self.factors;
        Ok(&self.user_factors[u as usize * f..(u as usize + 1) * f])
    }

    /// The vector of item `i`.
    pub fn item_vector(&self, i: u32) -> Result<&[f32], ModelError> {
        check_item(i, self.n_items())?;
        let f = self.factors;
        Ok(&self.item_factors[i as usize * f..(i as usize + 1) * f])
    }

    /// Solves the user least-squares problem exactly (Cholesky) for a history of
    /// `(item, value)` pairs, as training would for a user with that row: the vector for a
    /// user unseen at training time. Values are used as the matrix values were (ignored in
    /// binary mode). Unknown items are an error; an empty history gives the zero vector.
    pub fn fold_in(&self, history: &[(u32, f32)]) -> Result<Vec<f32>, ModelError> {
        let f = self.factors;
        let mut a: Vec<f64> = self.yty.iter().map(|&v| v as f64).collect();
        let mut b = vec![0f64; f];
        for &(i, v) in history {
            let yi = self.item_vector(i)?;
            let c = match self.confidence {
                Confidence::Binary => 1.0 + self.alpha,
                Confidence::Value => 1.0 + self.alpha * v,
            } as f64;
            for r in 0..f {
                let yr = yi[r] as f64;
                b[r] += c * yr;
                let row = &mut a[r * f..(r + 1) * f];
                for (s, aa) in row.iter_mut().enumerate() {
                    *aa += (c - 1.0) * yr * yi[s] as f64;
                }
            }
        }
        cholesky_solve(&mut a, &mut b, f)?;
        Ok(b.into_iter().map(|v| v as f32).collect())
    }

    /// `scores[i] = y_i · x` for every item.
    pub fn score_vector(&self, x: &[f32], scores: &mut [f32]) {
        let f = self.factors;
        for (s, yi) in scores.iter_mut().zip(self.item_factors.chunks_exact(f)) {
            *s = dot(yi, x);
        }
    }
}

/// Solves `A x = b` in place (`b` becomes `x`) for a symmetric positive definite `A`.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) -> Result<(), ModelError> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return Err(ModelError::InvalidInput(
                "fold-in system is not positive definite".into(),
            ));
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Ok(())
}

impl Recommender for AlsModel {
    fn n_items(&self) -> usize {
        self.item_factors.len() / self.factors
    }

    /// Known users use their trained vector; new users are folded in from their history.
    fn score_items(&self, target: Target<'_>, scores: &mut [f32]) -> Result<(), ModelError> {
        if scores.len() != self.n_items() {
            return Err(ModelError::Shape("score buffer length".into()));
        }
        match target {
            Target::Known(u, _) => self.score_vector(self.user_vector(u)?, scores),
            Target::New(h) => {
                check_history(h, self.n_items())?;
                let hist: Vec<(u32, f32)> = h
                    .items
                    .iter()
                    .copied()
                    .zip(h.values.iter().copied())
                    .collect();
                let x = self.fold_in(&hist)?;
                self.score_vector(&x, scores);
            }
        }
        Ok(())
    }

    /// Cosine similarity of item factors.
    fn similar_items(&self, item: u32, n: usize) -> Result<Vec<(u32, f32)>, ModelError> {
        let q = self.item_vector(item)?;
        let f = self.factors;
        let qn = dot(q, q).sqrt();
        let scores: Vec<f32> = self
            .item_factors
            .chunks_exact(f)
            .map(|yi| {
                let d = dot(yi, yi).sqrt() * qn;
                if d > 0.0 {
                    dot(yi, q) / d
                } else {
                    0.0
                }
            })
            .collect();
        Ok(top_k(&scores, n, Exclude::Sorted(&[item])))
    }
}

/// Convenience: the history of a known user as a [`Target`].
pub fn known_user(data: &Interactions, u: u32) -> Target<'_> {
    let (items, values) = data.user_row(u);
    Target::Known(u, UserHistory::new(items, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two blocks: users 0..6 use items 0..5, users 6..12 use items 5..10, each missing one.
    fn blocks() -> Interactions {
        let mut e = Vec::new();
        for u in 0..12u32 {
            let (lo, hi) = if u < 6 { (0, 5) } else { (5, 10) };
            for i in lo..hi {
                if i != lo + (u % 5) {
                    e.push((u, i, 1.0));
                }
            }
        }
        Interactions::from_indexed(12, 10, &e).unwrap()
    }

    #[test]
    fn recommends_the_missing_item_of_the_own_block() {
        // GIVEN block data where each user misses one item of their block
        let m = blocks();
        // WHEN fitting a small model
        let model = AlsParams::new()
            .factors(4)
            .regularization(0.1)
            .alpha(10.0)
            .iterations(20)
            .check()
            .unwrap()
            .fit(&m)
            .unwrap();
        // THEN every user's top item is the one they miss
        for u in 0..12u32 {
            let r = model.recommend(known_user(&m, u), 1, true, &[]).unwrap();
            let lo = if u < 6 { 0 } else { 5 };
            assert_eq!(r[0].0, lo + (u % 5), "user {u}");
        }
    }

    #[test]
    fn similar_items_stay_in_their_block() {
        // GIVEN two complete blocks (users 0..6 × items 0..5, users 6..12 × items 5..10)
        let mut e = Vec::new();
        for u in 0..12u32 {
            let lo = if u < 6 { 0 } else { 5 };
            for i in lo..lo + 5 {
                e.push((u, i, 1.0));
            }
        }
        let m = Interactions::from_indexed(12, 10, &e).unwrap();
        // WHEN fitting two factors
        let model = AlsParams::new()
            .factors(2)
            .regularization(0.1)
            .check()
            .unwrap()
            .fit(&m)
            .unwrap();
        // THEN the 4 most similar items to items 0 and 7 are the rest of their block
        let s: Vec<u32> = model
            .similar_items(0, 4)
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(s, vec![1, 2, 3, 4]);
        let s: Vec<u32> = model
            .similar_items(7, 4)
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert!(s.iter().all(|i| (5..10).contains(i)), "{s:?}");
    }

    #[test]
    fn same_result_for_any_thread_count() {
        // GIVEN the same data and seed
        let m = blocks();
        let params = AlsParams::new().factors(8).iterations(3).check().unwrap();
        // WHEN fitted on 1 and on 3 threads
        let fit = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(|| params.fit(&m).unwrap())
        };
        // THEN the factors are bit-for-bit equal
        assert_eq!(fit(1), fit(3));
        // AND a different seed gives different factors
        let other = AlsParams::new()
            .factors(8)
            .iterations(3)
            .seed(7)
            .check()
            .unwrap();
        assert_ne!(other.fit(&m).unwrap(), fit(2));
    }

    #[test]
    fn converged_cg_matches_exact_fold_in() {
        // GIVEN enough CG steps to solve each row exactly (CG converges in f steps)
        let m = blocks();
        let model = AlsParams::new()
            .factors(3)
            .regularization(0.5)
            .alpha(2.0)
            .iterations(5)
            .cg_steps(12)
            .confidence(Confidence::Value)
            .check()
            .unwrap()
            .fit(&m)
            .unwrap();
        // WHEN the last half-iteration's item factors fold a training user back in
        // THEN... users were solved against the previous item factors, so instead check the
        // fold-in solves the normal equations: A x = b with the final items.
        let (items, vals) = m.user_row(3);
        let hist: Vec<(u32, f32)> = items.iter().copied().zip(vals.iter().copied()).collect();
        let x = model.fold_in(&hist).unwrap();
        let f = 3;
        let y = model.item_factors();
        for r in 0..f {
            let mut lhs = 0f64;
            let mut rhs = 0f64;
            for s in 0..f {
                let mut a = model.yty[r * f + s] as f64;
                for &(i, v) in &hist {
                    let c = 1.0 + 2.0 * v as f64;
                    a += (c - 1.0) * (y[[i as usize, r]] * y[[i as usize, s]]) as f64;
                }
                lhs += a * x[s] as f64;
            }
            for &(i, v) in &hist {
                rhs += (1.0 + 2.0 * v as f64) * y[[i as usize, r]] as f64;
            }
            assert!(
                (lhs - rhs).abs() < 1e-3 * rhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
        // AND one more exact user solve equals the CG solve with enough steps
        let mut xu = model.user_vector(3).unwrap().to_vec();
        let a = gram(&model.item_factors, f, 0.5);
        let conf: Vec<f32> = vals.iter().map(|v| 1.0 + 2.0 * v).collect();
        let mut scratch = vec![0f32; 3 * f];
        cg_row(
            &a,
            items,
            &conf,
            &model.item_factors,
            &mut xu,
            &mut scratch,
            12,
        );
        for (p, q) in xu.iter().zip(&x) {
            assert!((p - q).abs() < 1e-3, "{xu:?} vs {x:?}");
        }
    }

    #[test]
    fn fold_in_user_gets_block_items() {
        // GIVEN a fitted model
        let m = blocks();
        let model = AlsParams::new()
            .factors(4)
            .regularization(0.1)
            .alpha(10.0)
            .check()
            .unwrap()
            .fit(&m)
            .unwrap();
        // WHEN a new user with items 6, 7 is folded in
        let items = [6u32, 7];
        let vals = [1.0f32, 1.0];
        let r = model
            .recommend(Target::New(UserHistory::new(&items, &vals)), 3, true, &[])
            .unwrap();
        // THEN the recommendations come from block 5..10
        assert!(r.iter().all(|&(i, _)| (5..10).contains(&i)), "{r:?}");
        assert!(model.fold_in(&[(99, 1.0)]).is_err());
        assert!(AlsParams::new().factors(0).check().is_err());
    }

    #[test]
    fn vector_kernels_agree_bit_for_bit() {
        // GIVEN a random row problem with f = 19 (not a multiple of the vector width)
        let f = 19;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let y: Vec<f32> = (0..30 * f).map(|_| rng.random::<f32>() - 0.5).collect();
        let a = gram(&y, f, 0.3);
        let items: Vec<u32> = (0..30).step_by(3).collect();
        let conf: Vec<f32> = items
            .iter()
            .map(|_| 1.0 + rng.random::<f32>() * 5.0)
            .collect();
        let x0: Vec<f32> = (0..f).map(|_| rng.random::<f32>() * 0.01).collect();
        // WHEN solved by the portable kernel and by the dispatched one
        let mut x1 = x0.clone();
        let mut x2 = x0.clone();
        let mut s = vec![0f32; 3 * f];
        cg_row(&a, &items, &conf, &y, &mut x1, &mut s, 3);
        pick_cg_kernel()(&a, &items, &conf, &y, &mut x2, &mut s, 3);
        // THEN the bits are identical
        assert_eq!(x1, x2);
        assert_ne!(x1, x0);
    }
}
