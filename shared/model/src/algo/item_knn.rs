//! Item-to-item nearest neighbours on co-occurrence, weighted by cosine or BM25, as implicit's
//! `CosineRecommender` / `BM25Recommender`.
//!
//! The item × user matrix is weighted (BM25: rows are the "documents", users the "terms";
//! cosine: rows scaled to unit norm), the similarity `S = W Wᵀ` is computed row by row, and
//! only each item's `k` largest entries are kept (the item itself included, as implicit does).
//! A user's scores are `user_row · S`; items no neighbour list reaches score `-inf` and are never
//! recommended.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{check_history, check_item, Recommender, Target};
use crate::error::ModelError;
use crate::interactions::{Csr, Interactions};
use crate::topk::{top_k, Exclude};

/// How co-occurrences are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Weighting {
    /// Cosine similarity of item vectors.
    Cosine,
    /// Okapi BM25 weighting of the item × user matrix, then dot products.
    Bm25 {
        /// Term-frequency saturation (implicit's `K1`, default 1.2).
        k1: f32,
        /// Length normalisation (implicit's `B`, default 0.75).
        b: f32,
    },
}

/// Hyper-parameters of [`ItemKnnModel`]. Defaults: BM25 (k1 1.2, b 0.75), k = 100.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemKnnParams {
    weighting: Weighting,
    k: usize,
}

/// Validated [`ItemKnnParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemKnnValidParams(ItemKnnParams);

impl Default for ItemKnnParams {
    fn default() -> Self {
        Self {
            weighting: Weighting::Bm25 { k1: 1.2, b: 0.75 },
            k: 100,
        }
    }
}

impl ItemKnnParams {
    /// Default parameters.
    pub fn new() -> Self {
        Self::default()
    }
    /// The weighting.
    pub fn weighting(mut self, w: Weighting) -> Self {
        self.weighting = w;
        self
    }
    /// Neighbours kept per item (≥ 1).
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }
    /// Validates the parameters.
    pub fn check(self) -> Result<ItemKnnValidParams, ModelError> {
        if self.k == 0 {
            return Err(ModelError::param("k", "must be at least 1"));
        }
        if let Weighting::Bm25 { k1, b } = self.weighting {
            if !(k1.is_finite() && k1 >= 0.0) {
                return Err(ModelError::param("k1", "must be ≥ 0"));
            }
            if !(0.0..=1.0).contains(&b) {
                return Err(ModelError::param("b", "must be in [0, 1]"));
            }
        }
        Ok(ItemKnnValidParams(self))
    }
}

impl ItemKnnValidParams {
    /// Computes the neighbour lists.
    pub fn fit(&self, data: &Interactions) -> Result<ItemKnnModel, ModelError> {
        if data.nnz() == 0 {
            return Err(ModelError::EmptyData);
        }
        let iu = data.item_users();
        let n_items = data.n_items();
        let weighted: Vec<f32> = match self.0.weighting {
            Weighting::Cosine => {
                let mut w = iu.data().to_vec();
                for i in 0..n_items {
                    let rg = iu.row_range(i);
                    let norm = w[rg.clone()].iter().map(|v| v * v).sum::<f32>().sqrt();
                    if norm > 0.0 {
                        w[rg].iter_mut().for_each(|v| *v /= norm);
                    }
                }
                w
            }
            Weighting::Bm25 { k1, b } => {
                let n = n_items as f64;
                let ui = data.user_items();
                let idf: Vec<f64> = (0..data.n_users())
                    .map(|u| n.ln() - (ui.row_range(u).len() as f64).ln_1p())
                    .collect();
                let row_sums: Vec<f64> = (0..n_items)
                    .map(|i| iu.row(i).1.iter().map(|&v| v as f64).sum())
                    .collect();
                let avg = row_sums.iter().sum::<f64>() / n;
                let (k1, b) = (k1 as f64, b as f64);
                let mut w = vec![0f32; iu.nnz()];
                for (i, &len) in row_sums.iter().enumerate() {
                    let norm = (1.0 - b) + b * len / avg;
                    let (users, vals) = iu.row(i);
                    for (p, (&u, &v)) in iu.row_range(i).zip(users.iter().zip(vals)) {
                        let v = v as f64;
                        w[p] = (v * (k1 + 1.0) / (k1 * norm + v) * idf[u as usize]) as f32;
                    }
                }
                w
            }
        };
        let w_iu = Csr::from_parts(
            iu.indptr().to_vec(),
            iu.indices().to_vec(),
            weighted,
            data.n_users(),
        )?;
        let w_ui = w_iu.transpose();
        let k = self.0.k;
        let rows: Vec<Vec<(u32, f32)>> = (0..n_items)
            .into_par_iter()
            .map_init(
                || (vec![0f32; n_items], vec![false; n_items], Vec::<u32>::new()),
                |(acc, mark, touched), i| {
                    let (users, wi) = w_iu.row(i);
                    for (&u, &a) in users.iter().zip(wi) {
                        let (items, wu) = w_ui.row(u as usize);
                        for (&j, &c) in items.iter().zip(wu) {
                            let j = j as usize;
                            if !mark[j] {
                                mark[j] = true;
                                touched.push(j as u32);
                            }
                            acc[j] += a * c;
                        }
                    }
                    let mut cand: Vec<(u32, f32)> = touched
                        .iter()
                        .map(|&j| (j, acc[j as usize]))
                        .filter(|&(_, s)| s != 0.0)
                        .collect();
                    for &j in touched.iter() {
                        acc[j as usize] = 0.0;
                        mark[j as usize] = false;
                    }
                    touched.clear();
                    // keep the k best non-zero entries (ties to the lower index), by index
                    let better =
                        |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                    if cand.len() > k {
                        cand.select_nth_unstable_by(k - 1, better);
                        cand.truncate(k);
                    }
                    cand.sort_unstable_by_key(|p| p.0);
                    cand
                },
            )
            .collect();
        let mut indptr = Vec::with_capacity(n_items + 1);
        indptr.push(0u64);
        let mut indices = Vec::new();
        let mut vals = Vec::new();
        for r in rows {
            for (j, s) in r {
                indices.push(j);
                vals.push(s);
            }
            indptr.push(indices.len() as u64);
        }
        let similarity = Csr::from_parts(indptr, indices, vals, n_items)?;
        Ok(ItemKnnModel { similarity })
    }
}

/// Fitted item-to-item model: the sparse `item × item` neighbour matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemKnnModel {
    similarity: Csr,
}

impl ItemKnnModel {
    /// The neighbour matrix: row `i` holds item `i`'s kept neighbours (itself included).
    pub fn similarity(&self) -> &Csr {
        &self.similarity
    }
}

impl Recommender for ItemKnnModel {
    fn n_items(&self) -> usize {
        self.similarity.n_rows()
    }

    /// `scores = history · S`, the same for known and new users.
    fn score_items(&self, target: Target<'_>, scores: &mut [f32]) -> Result<(), ModelError> {
        let h = target.history();
        check_history(h, self.n_items())?;
        if scores.len() != self.n_items() {
            return Err(ModelError::Shape("score buffer length".into()));
        }
        scores.fill(f32::NEG_INFINITY);
        for (&i, &v) in h.items.iter().zip(h.values) {
            let (js, ss) = self.similarity.row(i as usize);
            for (&j, &s) in js.iter().zip(ss) {
                let slot = &mut scores[j as usize];
                if *slot == f32::NEG_INFINITY {
                    *slot = 0.0;
                }
                *slot += v * s;
            }
        }
        Ok(())
    }

    fn similar_items(&self, item: u32, n: usize) -> Result<Vec<(u32, f32)>, ModelError> {
        check_item(item, self.n_items())?;
        let (js, ss) = self.similarity.row(item as usize);
        let mut scores = vec![f32::NEG_INFINITY; self.n_items()];
        for (&j, &s) in js.iter().zip(ss) {
            scores[j as usize] = s;
        }
        Ok(top_k(&scores, n, Exclude::Sorted(&[item])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::als::known_user;

    /// Users 0..4 use items {0,1,2}, users 4..8 use {3,4,5}; user 8 uses {0,3}; user 0 lacks 2.
    fn data() -> Interactions {
        let mut e = Vec::new();
        for u in 0..8u32 {
            let items = if u < 4 { [0, 1, 2] } else { [3, 4, 5] };
            for i in items {
                if !(u == 0 && i == 2) {
                    e.push((u, i, 1.0));
                }
            }
        }
        e.push((8, 0, 1.0));
        e.push((8, 3, 1.0));
        Interactions::from_indexed(9, 6, &e).unwrap()
    }

    #[test]
    fn cosine_matches_hand_computation() {
        // GIVEN the data above, cosine weighting
        let m = data();
        let model = ItemKnnParams::new()
            .weighting(Weighting::Cosine)
            .check()
            .unwrap()
            .fit(&m)
            .unwrap();
        // THEN sim(0,1) = |{1,2,3}| / (sqrt(5)·sqrt(4)) (item 0: users 0,1,2,3,8; item 1: 0..4)
        let s01 = model.similarity().get(0, 1).unwrap();
        assert!((s01 - 4.0 / (5f32.sqrt() * 2.0)).abs() < 1e-6, "{s01}");
        // AND sim(0,3) = 1 / (sqrt(5)·sqrt(5)) through user 8; sim(1,4) is absent
        assert!((model.similarity().get(0, 3).unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(model.similarity().get(1, 4), None);
        // AND user 0 (items 0, 1) gets item 2 first; item 4 is unreachable
        let r = model.recommend(known_user(&m, 0), 5, true, &[]).unwrap();
        assert_eq!(r[0].0, 2);
        assert!(r.iter().all(|&(i, _)| i != 4 && i != 5), "{r:?}");
        // AND the neighbours of item 4 are 5 (same users: 1.0) then 3 (4/(2·sqrt 5))
        let s: Vec<u32> = model
            .similar_items(4, 5)
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(s[..2].to_vec(), vec![5, 3]);
    }

    #[test]
    fn bm25_and_top_k_cut() {
        // GIVEN BM25 with k = 2 neighbours
        let m = data();
        let model = ItemKnnParams::new().k(2).check().unwrap().fit(&m).unwrap();
        // THEN every row keeps at most 2 entries, the item itself among them
        for i in 0..6 {
            let (js, _) = model.similarity().row(i);
            assert!(js.len() <= 2);
            assert!(js.contains(&(i as u32)), "row {i}: {js:?}");
        }
        // AND BM25 values follow the formula: sim(1,1) = Σ_u w(1,u)², w = (k1+1)/(k1·norm+1)·idf
        let full = ItemKnnParams::new().check().unwrap().fit(&m).unwrap();
        let n = 6f64;
        let lens = [5.0, 4.0, 3.0, 5.0, 4.0, 4.0];
        let avg = lens.iter().sum::<f64>() / n;
        let norm1 = 0.25 + 0.75 * 4.0 / avg;
        let tf = 2.2 / (1.2 * norm1 + 1.0);
        // users of item 1: 0 (2 items), 1, 2, 3 (3 items each)
        let idf2 = n.ln() - 3f64.ln();
        let idf3 = n.ln() - 4f64.ln();
        let expect = tf * tf * (idf2 * idf2 + 3.0 * idf3 * idf3);
        let got = full.similarity().get(1, 1).unwrap() as f64;
        assert!((got - expect).abs() < 1e-5, "{got} vs {expect}");
        assert!(ItemKnnParams::new().k(0).check().is_err());
    }
}
