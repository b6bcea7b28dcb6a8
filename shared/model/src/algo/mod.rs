//! The recommendation algorithms and their common [`Recommender`] interface.
//!
//! Each algorithm follows linfa's pattern: a params builder, `check()` into validated params,
//! then `fit(&Interactions) -> Result<Model, ModelError>`. Fitted models implement
//! [`Recommender`], modelled on implicit's `RecommenderBase`.

pub mod als;
pub mod item_knn;
pub mod mf;
pub mod popular;
pub mod spec;

pub use spec::{AlgoSpec, FittedModel};

use crate::error::ModelError;
use crate::topk::{merge_sorted, top_k, Exclude};

/// A user's interactions as the model sees them: sorted item indices and their values (a row
/// of [`crate::Interactions::user_items`], or a history built at serving time).
#[derive(Debug, Clone, Copy, Default)]
pub struct UserHistory<'a> {
    /// Item indices, sorted ascending, unique.
    pub items: &'a [u32],
    /// Values aligned with `items`.
    pub values: &'a [f32],
}

impl<'a> UserHistory<'a> {
    /// A history from a CSR row.
    pub fn new(items: &'a [u32], values: &'a [f32]) -> Self {
        Self { items, values }
    }

    /// An empty history.
    pub fn empty() -> Self {
        Self::default()
    }
}

/// What to recommend for.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A user seen at training time (train index) with their history (used for exclusion
    /// and by history-based models).
    Known(u32, UserHistory<'a>),
    /// A user unseen at training time: only their recent history (ALS folds it in).
    New(UserHistory<'a>),
}

impl<'a> Target<'a> {
    /// The user's history.
    pub fn history(&self) -> UserHistory<'a> {
        match *self {
            Target::Known(_, h) | Target::New(h) => h,
        }
    }
}

/// The common interface of fitted models (implicit's `RecommenderBase`).
pub trait Recommender: Send + Sync {
    /// Number of items the model scores.
    fn n_items(&self) -> usize;

    /// Writes a score for every item into `scores` (length [`Self::n_items`]); higher is
    /// better.
    fn score_items(&self, target: Target<'_>, scores: &mut [f32]) -> Result<(), ModelError>;

    /// The `n` most similar other items to `item`, best first (the item itself excluded).
    fn similar_items(&self, item: u32, n: usize) -> Result<Vec<(u32, f32)>, ModelError>;

    /// The top `n` items for `target`, best first, ties to the lower index. With
    /// `filter_seen` the history's items are excluded; `exclude` (sorted) is excluded too
    /// (business rules, unavailable items).
    fn recommend(
        &self,
        target: Target<'_>,
        n: usize,
        filter_seen: bool,
        exclude: &[u32],
    ) -> Result<Vec<(u32, f32)>, ModelError> {
        let mut scores = vec![0f32; self.n_items()];
        self.score_items(target, &mut scores)?;
        let merged;
        let ex: &[u32] = match (filter_seen, exclude.is_empty()) {
            (true, true) => target.history().items,
            (true, false) => {
                merged = merge_sorted(target.history().items, exclude);
                &merged
            }
            (false, _) => exclude,
        };
        Ok(top_k(&scores, n, Exclude::Sorted(ex)))
    }
}

pub(crate) fn check_item(item: u32, n_items: usize) -> Result<(), ModelError> {
    if (item as usize) < n_items {
        Ok(())
    } else {
        Err(ModelError::OutOfRange {
            what: "item",
            index: item as usize,
            len: n_items,
        })
    }
}

pub(crate) fn check_history(h: UserHistory<'_>, n_items: usize) -> Result<(), ModelError> {
    if h.items.len() != h.values.len() {
        return Err(ModelError::Shape(
            "history items and values differ in length".into(),
        ));
    }
    if h.items.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ModelError::InvalidInput(
            "history items must be sorted and unique".into(),
        ));
    }
    if let Some(&last) = h.items.last() {
        check_item(last, n_items)?;
    }
    Ok(())
}

/// Dot product with eight independent accumulators so the compiler can vectorise it (the
/// summation order is fixed, so SSE2 and AVX2 code give the same bits).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + s
}

/// `y += a · x`.
#[inline(always)]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}
