//! Popularity and trending: one global ranking, the baseline and the cold-start fallback.
//!
//! `popular` ranks items by how many users interacted with them (refeval's most-popular: ties
//! to the lower item index). `trending` ranks by exponentially time-decayed counts: every
//! (user, item) cell counts `0.5^(age / half_life)`, its age taken from the cell's newest
//! timestamp to the anchor.

use serde::{Deserialize, Serialize};

use super::{check_history, check_item, Recommender, Target};
use crate::error::ModelError;
use crate::interactions::Interactions;
use crate::topk::{top_k, Exclude};

/// Parameters of the `popular` model (none yet; kept for the common builder shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PopularParams {}

/// Validated [`PopularParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopularValidParams {}

impl PopularParams {
    /// Default parameters.
    pub fn new() -> Self {
        Self {}
    }

    /// Validates the parameters.
    pub fn check(self) -> Result<PopularValidParams, ModelError> {
        Ok(PopularValidParams {})
    }
}

impl PopularValidParams {
    /// Counts the users of every item.
    pub fn fit(&self, data: &Interactions) -> Result<PopularityModel, ModelError> {
        if data.nnz() == 0 {
            return Err(ModelError::EmptyData);
        }
        let iu = data.item_users();
        let scores = (0..data.n_items())
            .map(|i| iu.row_range(i).len() as f32)
            .collect();
        Ok(PopularityModel::from_scores(scores))
    }
}

/// Parameters of the `trending` model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendingParams {
    half_life_hours: f64,
    anchor_ms: Option<i64>,
}

/// Validated [`TrendingParams`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendingValidParams {
    half_life_hours: f64,
    anchor_ms: Option<i64>,
}

impl Default for TrendingParams {
    fn default() -> Self {
        Self {
            half_life_hours: 24.0,
            anchor_ms: None,
        }
    }
}

impl TrendingParams {
    /// Defaults: a 24 h half-life, anchored at the newest timestamp in the data.
    pub fn new() -> Self {
        Self::default()
    }

    /// Half-life of a cell's weight, in hours (> 0).
    pub fn half_life_hours(mut self, h: f64) -> Self {
        self.half_life_hours = h;
        self
    }

    /// The time ages are measured to (ms); `None` = the newest timestamp in the data.
    pub fn anchor_ms(mut self, t: Option<i64>) -> Self {
        self.anchor_ms = t;
        self
    }

    /// Validates the parameters.
    pub fn check(self) -> Result<TrendingValidParams, ModelError> {
        if !(self.half_life_hours.is_finite() && self.half_life_hours > 0.0) {
            return Err(ModelError::param(
                "half_life_hours",
                "must be a positive number",
            ));
        }
        Ok(TrendingValidParams {
            half_life_hours: self.half_life_hours,
            anchor_ms: self.anchor_ms,
        })
    }
}

impl TrendingValidParams {
    /// Sums the decayed weight of every cell per item. Needs cell timestamps.
    pub fn fit(&self, data: &Interactions) -> Result<PopularityModel, ModelError> {
        if data.nnz() == 0 {
            return Err(ModelError::EmptyData);
        }
        let ts = data.last_timestamps().ok_or_else(|| {
            ModelError::InvalidInput("trending needs interaction timestamps".into())
        })?;
        let anchor = self
            .anchor_ms
            .unwrap_or_else(|| ts.iter().copied().max().unwrap_or(0));
        let half_life_ms = self.half_life_hours * 3_600_000.0;
        let mut acc = vec![0f64; data.n_items()];
        for (&i, &t) in data.user_items().indices().iter().zip(ts) {
            let age = (anchor - t).max(0) as f64;
            acc[i as usize] += (0.5f64).powf(age / half_life_ms);
        }
        Ok(PopularityModel::from_scores(
            acc.into_iter().map(|v| v as f32).collect(),
        ))
    }
}

/// A global ranking of items (popular or trending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopularityModel {
    scores: Vec<f32>,
    /// All items, best first (ties to the lower index).
    order: Vec<u32>,
}

impl PopularityModel {
    fn from_scores(scores: Vec<f32>) -> Self {
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order.sort_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(a.cmp(&b))
        });
        Self { scores, order }
    }

    /// The score of every item.
    pub fn scores(&self) -> &[f32] {
        &self.scores
    }

    /// All items, best first.
    pub fn ranking(&self) -> &[u32] {
        &self.order
    }
}

impl Recommender for PopularityModel {
    fn n_items(&self) -> usize {
        self.scores.len()
    }

    fn score_items(&self, target: Target<'_>, scores: &mut [f32]) -> Result<(), ModelError> {
        check_history(target.history(), self.n_items())?;
        if scores.len() != self.scores.len() {
            return Err(ModelError::Shape("score buffer length".into()));
        }
        scores.copy_from_slice(&self.scores);
        Ok(())
    }

    /// Popularity has no notion of similarity: the most popular other items.
    fn similar_items(&self, item: u32, n: usize) -> Result<Vec<(u32, f32)>, ModelError> {
        check_item(item, self.n_items())?;
        Ok(top_k(&self.scores, n, Exclude::Sorted(&[item])))
    }

    fn recommend(
        &self,
        target: Target<'_>,
        n: usize,
        filter_seen: bool,
        exclude: &[u32],
    ) -> Result<Vec<(u32, f32)>, ModelError> {
        let h = target.history();
        check_history(h, self.n_items())?;
        // Walk the precomputed ranking instead of scoring every item.
        let mut out = Vec::with_capacity(n);
        for &i in &self.order {
            if out.len() == n {
                break;
            }
            if (filter_seen && h.items.binary_search(&i).is_ok())
                || exclude.binary_search(&i).is_ok()
            {
                continue;
            }
            out.push((i, self.scores[i as usize]));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::UserHistory;
    use crate::interactions::InteractionsBuilder;

    #[test]
    fn popular_counts_users_and_breaks_ties_low() {
        // GIVEN item 2 seen by 3 users, items 0 and 1 by 2 each, item 3 by 1
        let m = Interactions::from_indexed(
            4,
            4,
            &[
                (0, 2, 1.0),
                (1, 2, 5.0),
                (2, 2, 1.0),
                (0, 1, 1.0),
                (1, 1, 1.0),
                (2, 0, 1.0),
                (3, 0, 1.0),
                (3, 3, 9.0),
            ],
        )
        .unwrap();
        // WHEN fitted
        let p = PopularParams::new().check().unwrap().fit(&m).unwrap();
        // THEN the ranking is 2, then the tie 0 before 1, then 3
        assert_eq!(p.ranking(), &[2, 0, 1, 3]);
        // AND user 0's seen items (1, 2) are filtered
        let (items, vals) = m.user_row(0);
        let r = p
            .recommend(
                Target::Known(0, UserHistory::new(items, vals)),
                2,
                true,
                &[],
            )
            .unwrap();
        assert_eq!(r, vec![(0, 2.0), (3, 1.0)]);
        // AND the default trait path (score + top-k) agrees
        let mut s = vec![0.0; 4];
        p.score_items(Target::New(UserHistory::empty()), &mut s)
            .unwrap();
        assert_eq!(top_k(&s, 2, Exclude::Sorted(items)), r);
    }

    #[test]
    fn trending_prefers_recent() {
        // GIVEN item "old" with 3 users an hour+ ago, item "new" with 2 users now
        let h = 3_600_000;
        let mut b = InteractionsBuilder::new();
        for u in ["a", "b", "c"] {
            b.push(u, "old", 1.0, 0);
        }
        b.push("a", "new", 1.0, 10 * h);
        b.push("d", "new", 1.0, 10 * h);
        let m = b.build().unwrap();
        // WHEN trending with a 1 h half-life (anchor = newest event)
        let t = TrendingParams::new()
            .half_life_hours(1.0)
            .check()
            .unwrap()
            .fit(&m)
            .unwrap();
        // THEN "new" (2.0) beats "old" (3 · 2^-10)
        let new = m.item_index("new").unwrap();
        assert_eq!(t.ranking()[0], new);
        assert!((t.scores()[new as usize] - 2.0).abs() < 1e-6);
        // AND popular says the opposite
        let p = PopularParams::new().check().unwrap().fit(&m).unwrap();
        assert_eq!(p.ranking()[0], m.item_index("old").unwrap());
        assert!(TrendingParams::new().half_life_hours(0.0).check().is_err());
    }
}
