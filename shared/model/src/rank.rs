//! The one ranker: serving (`GET /v1/recommend`), the train task's quality gate and `nectar
//! eval` all turn a model version's published artifacts and a user's state into a top N here,
//! so what is evaluated is what is served.
//!
//! ## Precedence (decided here and nowhere else)
//! For a user ([`rank`]), the first source that applies answers:
//! 1. **the user's precomputed list** (`user_top`, published by `mf` and `publish.user_lists`),
//!    when it is not empty;
//! 2. **factors** (the version has item factors): the user's own vector when it has the
//!    version's dimension, else a vector **folded in** from the recent history with the
//!    version's own training params ([`Prepared::new`]); no vector (no history, no fold-in
//!    model) → `None`;
//! 3. **item-to-item** (the version has similar lists): the similar lists of the context item
//!    and the [`SIMILAR_SEEDS`] newest history items, scores summed; nothing found → `None`;
//! 4. **the model-wide list** (`popular` / `trending` models, which have neither factors nor
//!    similar lists).
//!
//! `None` means the model cannot place this user: the caller falls back (serving: the
//! endpoint's fallback task, else the model's own popularity list; evaluation: the model's
//! popularity list, [`from_list`]). Excluded rows never come back; ties go to the lower row.
//!
//! This is serving's precedence. The gate used to try user factors before the precomputed
//! list; a version has either factors or lists for a user in practice (`mf` publishes lists
//! only, `als` with `publish.user_lists` publishes both, and then the list is what is served).

use std::cell::RefCell;
use std::collections::HashMap;

use crate::algo::als::{AlsModel, AlsParams, AlsValidParams};
use crate::topk::coarse::{pool_for, CoarseFactors};
use crate::topk::{dot_scores, top_k, Exclude};

/// An item reference (row in the version's item ids) with a score.
pub type Scored = (u32, f32);

/// From this many items on, factor scans use the 2-bit first pass with exact re-ranking of
/// its best candidates (below it the exact `f32` scan takes under 0.2 ms anyway).
pub const QUANTIZE_MIN_ITEMS: usize = 16_384;

/// History items whose similar lists are summed for item-to-item recommendations: the recent
/// taste, and a bounded cost per request.
pub const SIMILAR_SEEDS: usize = 20;

/// A dense row-major `f32` matrix: row `r` is `data[r*dim .. (r+1)*dim]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Factors {
    /// Columns (latent factors).
    pub dim: usize,
    /// `rows × dim` values.
    pub data: Vec<f32>,
}

impl Factors {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.dim..(r + 1) * self.dim]
    }
}

/// What a version needs beyond its published data, built once per loaded version: the fold-in
/// model and the 2-bit coded factors.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    fold: Option<AlsModel>,
    quant: Option<CoarseFactors>,
}

impl Prepared {
    /// Prepares item factors for ranking. `params` are the ALS params the version was trained
    /// with; `None` (a version published before params were stored, or not an ALS model) takes
    /// [`AlsParams`]' defaults, which are also what training uses when a task sets none.
    pub fn new(factors: Option<&Factors>, params: Option<&AlsValidParams>) -> Self {
        let Some(f) = factors else {
            return Self::default();
        };
        let defaults;
        let params = match params {
            Some(p) => p,
            None => {
                defaults = AlsParams::new().check().expect("the defaults are valid");
                &defaults
            }
        };
        Self {
            fold: params.fold_in_model(f.dim, f.data.clone()).ok(),
            quant: (f.rows() >= QUANTIZE_MIN_ITEMS).then(|| CoarseFactors::new(&f.data, f.dim)),
        }
    }

    /// The fold-in model (factor versions only).
    pub fn fold_in(&self) -> Option<&AlsModel> {
        self.fold.as_ref()
    }

    /// Whether factor scans take the quantised first pass.
    pub fn is_quantised(&self) -> bool {
        self.quant.is_some()
    }
}

/// A model version's item side, as the ranker reads it.
#[derive(Debug, Clone, Copy)]
pub struct ItemSide<'a> {
    /// Item factors, one row per item.
    pub factors: Option<&'a Factors>,
    /// Per item: its similar items, best first.
    pub similar: Option<&'a [Vec<Scored>]>,
    /// The model-wide list, best first.
    pub popular: &'a [Scored],
    /// The fold-in model and quantised factors of `factors`.
    pub prepared: &'a Prepared,
}

/// One user's state in a version, in item rows of that version.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserInput<'a> {
    /// The user's factor vector (users seen at training time).
    pub factors: Option<&'a [f32]>,
    /// The user's precomputed list, best first.
    pub top: Option<&'a [Scored]>,
    /// Recent items, newest first (fold-in and item-to-item seeds).
    pub history: &'a [u32],
    /// The item the user is looking at, the first item-to-item seed.
    pub context: Option<u32>,
}

/// The top `n` rows for a user, best first, `exclude` (sorted) left out; `None` when the model
/// cannot place the user (see the module docs for the precedence).
pub fn rank(
    items: &ItemSide<'_>,
    user: &UserInput<'_>,
    exclude: &[u32],
    n: usize,
) -> Option<Vec<Scored>> {
    if let Some(top) = user.top.filter(|t| !t.is_empty()) {
        return Some(from_list(top, exclude, n));
    }
    if let Some(f) = items.factors {
        let folded;
        let x = match user.factors {
            Some(x) if x.len() == f.dim => x,
            _ => {
                let hist: Vec<(u32, f32)> = user.history.iter().map(|&r| (r, 1.0)).collect();
                if hist.is_empty() {
                    return None;
                }
                folded = items.prepared.fold.as_ref()?.fold_in(&hist).ok()?;
                &folded
            }
        };
        return Some(scan(f, items.prepared, x, n, exclude));
    }
    if let Some(sim) = items.similar {
        let mut acc: HashMap<u32, f32> = HashMap::new();
        let seeds = user
            .context
            .iter()
            .chain(user.history.iter().take(SIMILAR_SEEDS));
        for &r in seeds {
            for &(o, s) in sim.get(r as usize).into_iter().flatten() {
                *acc.entry(o).or_default() += s;
            }
        }
        if acc.is_empty() {
            return None;
        }
        let mut v: Vec<Scored> = acc
            .into_iter()
            .filter(|(r, _)| exclude.binary_search(r).is_err())
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        return Some(v);
    }
    Some(from_list(items.popular, exclude, n))
}

/// The top `n` items similar to `row`, best first, `exclude` (sorted) left out: its similar
/// list, else the nearest item vectors; `None` when the version has neither.
pub fn similar_to(
    items: &ItemSide<'_>,
    row: u32,
    exclude: &[u32],
    n: usize,
) -> Option<Vec<Scored>> {
    if let Some(sim) = items.similar {
        return Some(from_list(sim.get(row as usize)?, exclude, n));
    }
    let f = items.factors?;
    if row as usize >= f.rows() {
        return None;
    }
    Some(scan(f, items.prepared, f.row(row as usize), n, exclude))
}

/// The first `n` entries of a ranked list that are not excluded (`exclude` sorted).
pub fn from_list(list: &[Scored], exclude: &[u32], n: usize) -> Vec<Scored> {
    list.iter()
        .copied()
        .filter(|(r, _)| exclude.binary_search(r).is_err())
        .take(n)
        .collect()
}

thread_local! {
    /// Per-thread score buffer of the factor scans (one item count's worth, reused).
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The best `n` rows for the query vector `x`, skipping `exclude` (sorted): the 2-bit first
/// pass with exact re-ranking on large catalogues ([`QUANTIZE_MIN_ITEMS`], see
/// [`crate::topk::coarse`]), else the exact scan. Scores are exact `y · x` either way.
pub fn scan(f: &Factors, prepared: &Prepared, x: &[f32], n: usize, exclude: &[u32]) -> Vec<Scored> {
    SCORES.with(|cell| {
        let mut scores = cell.borrow_mut();
        match &prepared.quant {
            Some(q) => q.top_k_reranked(
                &f.data,
                x,
                n,
                pool_for(n, f.rows()),
                Exclude::Sorted(exclude),
                &mut scores,
            ),
            None => {
                scores.resize(f.rows(), 0.0);
                dot_scores(&f.data, f.dim, x, &mut scores);
                top_k(&scores, n, Exclude::Sorted(exclude))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items<'a>(
        factors: Option<&'a Factors>,
        similar: Option<&'a [Vec<Scored>]>,
        popular: &'a [Scored],
        prepared: &'a Prepared,
    ) -> ItemSide<'a> {
        ItemSide {
            factors,
            similar,
            popular,
            prepared,
        }
    }

    #[test]
    fn precomputed_list_then_factors_then_fold_in() {
        // GIVEN items on two axes (x1, x2 along the first, y1 along the second)
        let f = Factors {
            dim: 2,
            data: vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0],
        };
        let p = Prepared::new(Some(&f), None);
        let side = items(Some(&f), None, &[(2, 5.0)], &p);
        // WHEN a user has both a list and a vector THEN the list wins (serving's precedence)
        let top = [(2, 1.0), (0, 0.5)];
        let both = UserInput {
            factors: Some(&[1.0, 0.2]),
            top: Some(&top),
            ..UserInput::default()
        };
        assert_eq!(rank(&side, &both, &[], 1).unwrap(), vec![(2, 1.0)]);
        // AND without the list the vector ranks x1 > x2 > y1, exclusions left out
        let vec_only = UserInput {
            top: Some(&[]),
            ..both
        };
        let ids = |v: Vec<Scored>| v.into_iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(ids(rank(&side, &vec_only, &[], 3).unwrap()), vec![0, 1, 2]);
        assert_eq!(ids(rank(&side, &vec_only, &[0], 1).unwrap()), vec![1]);
        // AND a user known only by history is folded in: y1's neighbourhood comes first
        let new = UserInput {
            history: &[2],
            ..UserInput::default()
        };
        assert_eq!(ids(rank(&side, &new, &[2], 1).unwrap()), vec![1]);
        // AND a user with nothing is not placed: the caller falls back
        assert!(rank(&side, &UserInput::default(), &[], 3).is_none());
    }

    #[test]
    fn item_to_item_sums_similar_lists_of_context_and_recent_history() {
        // GIVEN a ~ b (0.9), a ~ c (0.2), d ~ c (0.5)
        let sim = vec![
            vec![(1, 0.9), (2, 0.2)],
            vec![(0, 0.9)],
            vec![(0, 0.2), (3, 0.5)],
            vec![(2, 0.5)],
        ];
        let p = Prepared::default();
        let side = items(None, Some(&sim), &[(3, 9.0)], &p);
        // WHEN a user had a and d THEN b (0.9) then c (0.7)
        let u = UserInput {
            history: &[0, 3],
            ..UserInput::default()
        };
        let got = rank(&side, &u, &[0, 3], 5).unwrap();
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((got[1].1 - 0.7).abs() < 1e-6);
        // AND only the newest SIMILAR_SEEDS history items count
        let long: Vec<u32> = std::iter::repeat_n(1, SIMILAR_SEEDS).chain([3]).collect();
        let u = UserInput {
            history: &long,
            ..UserInput::default()
        };
        let got = rank(&side, &u, &[1], 5).unwrap();
        assert_eq!(got.len(), 1, "d's neighbour c is not reached: {got:?}");
        assert_eq!(got[0].0, 0);
        // AND no seeds: the caller falls back; a similar-items query reads the item's list
        assert!(rank(&side, &UserInput::default(), &[], 5).is_none());
        assert_eq!(similar_to(&side, 2, &[0], 5).unwrap(), vec![(3, 0.5)]);
        // AND a popularity model serves its list
        let pop = items(None, None, &[(3, 9.0), (1, 2.0)], &p);
        assert_eq!(
            rank(&pop, &UserInput::default(), &[3], 5).unwrap(),
            vec![(1, 2.0)]
        );
    }

    #[test]
    fn large_catalogues_scan_quantised_and_agree_with_the_exact_ranking() {
        // GIVEN a factor model of 20,000 items (above the quantisation threshold)
        let (n, dim) = (20_000usize, 16usize);
        let data: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 2_654_435_761usize % 1000) as f32 / 1000.0 - 0.5) * 0.6)
            .collect();
        let f = Factors { dim, data };
        let p = Prepared::new(Some(&f), None);
        assert!(p.is_quantised());
        let x: Vec<f32> = (0..dim).map(|i| (i as f32 / dim as f32) - 0.5).collect();
        // WHEN the scan asks for 10, excluding the exact winner
        let mut scores = vec![0f32; n];
        dot_scores(&f.data, dim, &x, &mut scores);
        let best = top_k(&scores, 1, Exclude::None)[0].0;
        let got = scan(&f, &p, &x, 10, &[best]);
        // THEN it is the exact top-10 without the excluded item, with exact scores
        let exact = top_k(&scores, 10, Exclude::Sorted(&[best]));
        let ids = |v: &[Scored]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&exact));
        for (a, b) in got.iter().zip(&exact) {
            assert!((a.1 - b.1).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
}
