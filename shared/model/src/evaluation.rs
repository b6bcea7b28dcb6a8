//! Offline evaluation: ranking metrics at k, RMSE/MAE, the warm-only protocol and a time
//! holdout split.
//!
//! The formulas are those of refeval's README §4 (`shared/tools/refeval`), so that
//! `nectar eval` and refeval's `--score-recs` agree to the last decimal:
//! precision divides by k even when fewer items came back, recall by |T_u|, IDCG and AP by
//! min(k, |T_u|), binary relevance throughout.

use serde::{Deserialize, Serialize};

use std::time::Instant;

use rayon::prelude::*;

use crate::algo::{AlgoSpec, FittedModel, Target, UserHistory};
use crate::error::ModelError;
use crate::interactions::{from_rating_rows, Interactions, RatingRow};

fn hits_prefix<'a>(recs: &'a [u32], truth: &'a [u32], k: usize) -> impl Iterator<Item = bool> + 'a {
    // `truth` is sorted, so membership is a binary search.
    recs.iter()
        .take(k)
        .map(move |i| truth.binary_search(i).is_ok())
}

/// `hits / k` (k stays the denominator even when fewer than k items are recommended).
pub fn precision_at_k(recs: &[u32], truth: &[u32], k: usize) -> f64 {
    let hits = hits_prefix(recs, truth, k).filter(|&h| h).count();
    hits as f64 / k as f64
}

/// `hits / |truth|`; 0 when `truth` is empty.
pub fn recall_at_k(recs: &[u32], truth: &[u32], k: usize) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let hits = hits_prefix(recs, truth, k).filter(|&h| h).count();
    hits as f64 / truth.len() as f64
}

/// `hits / min(k, |truth|)`; 0 when `truth` is empty.
pub fn recall_capped_at_k(recs: &[u32], truth: &[u32], k: usize) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let hits = hits_prefix(recs, truth, k).filter(|&h| h).count();
    hits as f64 / k.min(truth.len()) as f64
}

/// `DCG / IDCG` with `DCG = Σ_{i=1..k} rel_i / log2(i+1)` and
/// `IDCG = Σ_{i=1..min(k,|truth|)} 1 / log2(i+1)`; 0 when `truth` is empty.
pub fn ndcg_at_k(recs: &[u32], truth: &[u32], k: usize) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let disc = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = hits_prefix(recs, truth, k)
        .enumerate()
        .filter(|&(_, h)| h)
        .map(|(i, _)| disc(i))
        .sum();
    let idcg: f64 = (0..k.min(truth.len())).map(disc).sum();
    dcg / idcg
}

/// `AP = (1 / min(k, |truth|)) · Σ_{i=1..k} rel_i · P@i`; 0 when `truth` is empty.
pub fn average_precision_at_k(recs: &[u32], truth: &[u32], k: usize) -> f64 {
    if truth.is_empty() {
        return 0.0;
    }
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (i, h) in hits_prefix(recs, truth, k).enumerate() {
        if h {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    sum / k.min(truth.len()) as f64
}

/// 1 when at least one of the first k items is relevant.
pub fn hit_at_k(recs: &[u32], truth: &[u32], k: usize) -> f64 {
    if hits_prefix(recs, truth, k).any(|h| h) {
        1.0
    } else {
        0.0
    }
}

/// Root mean squared error over `(actual, predicted)` pairs; 0 for no pairs.
pub fn rmse(pairs: &[(f32, f32)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let s: f64 = pairs
        .iter()
        .map(|&(a, p)| {
            let e = a as f64 - p as f64;
            e * e
        })
        .sum();
    (s / pairs.len() as f64).sqrt()
}

/// Mean absolute error over `(actual, predicted)` pairs; 0 for no pairs.
pub fn mae(pairs: &[(f32, f32)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    let s: f64 = pairs
        .iter()
        .map(|&(a, p)| (a as f64 - p as f64).abs())
        .sum();
    s / pairs.len() as f64
}

/// Counts of how the test rows were used, as refeval's `eval_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestStats {
    /// All test rows.
    pub test_rows: usize,
    /// Rows whose user is not in train.
    pub rows_unknown_user: usize,
    /// Rows whose user is in train but item is not.
    pub rows_known_user_unknown_item: usize,
    /// Rows with both user and item in train.
    pub warm_rows: usize,
    /// Warm rows whose (user, item) is already in train (cannot be recommended).
    pub warm_rows_also_in_train_dropped: usize,
    /// Distinct warm (user, item) pairs kept as ground truth.
    pub eval_rows: usize,
    /// Users with at least one ground-truth item.
    pub eval_users: usize,
}

/// The warm ground truth of a test set against a train matrix (refeval §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarmTest {
    /// Train user indices that are scored, ascending.
    pub users: Vec<u32>,
    /// For each scored user, the sorted distinct train item indices held out.
    pub truth: Vec<Vec<u32>>,
    /// Row accounting.
    pub stats: TestStats,
}

impl WarmTest {
    /// Keeps the test rows whose user and item both occur in `train` and whose pair is not a
    /// train cell; groups them by user.
    pub fn new(train: &Interactions, test: &[RatingRow]) -> Self {
        Self::from_key_pairs(
            train,
            test.iter()
                .map(|r| (r.user_id.as_str(), r.item_id.as_str())),
        )
    }

    /// The same as [`WarmTest::new`] for `(user key, item key)` pairs (e.g. the held-out
    /// events of a time split).
    pub fn from_key_pairs<'a>(
        train: &Interactions,
        test: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut stats = TestStats::default();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (user, item) in test {
            stats.test_rows += 1;
            let Some(u) = train.user_index(user) else {
                stats.rows_unknown_user += 1;
                continue;
            };
            let Some(i) = train.item_index(item) else {
                stats.rows_known_user_unknown_item += 1;
                continue;
            };
            stats.warm_rows += 1;
            if train.user_items().get(u as usize, i).is_some() {
                stats.warm_rows_also_in_train_dropped += 1;
                continue;
            }
            pairs.push((u, i));
        }
        Self::from_pairs(pairs, stats)
    }

    /// Builds the ground truth from already indexed `(user, item)` pairs (duplicates merged).
    pub fn from_pairs(mut pairs: Vec<(u32, u32)>, mut stats: TestStats) -> Self {
        pairs.sort_unstable();
        pairs.dedup();
        let mut users = Vec::new();
        let mut truth: Vec<Vec<u32>> = Vec::new();
        for (u, i) in pairs.iter().copied() {
            if users.last() != Some(&u) {
                users.push(u);
                truth.push(Vec::new());
            }
            truth.last_mut().expect("pushed above").push(i);
        }
        stats.eval_rows = pairs.len();
        stats.eval_users = users.len();
        WarmTest {
            users,
            truth,
            stats,
        }
    }
}

/// At most this many users are scored (deterministically chosen, [`WarmTest::subsample`]), to
/// bound the evaluation time on large windows. `nectar eval` and the train task's gate both
/// apply it, so they score the same users.
pub const MAX_EVAL_USERS: usize = 5_000;

impl WarmTest {
    /// Keeps every n-th scored user in index order (the train matrix's natural key order), the
    /// smallest n that leaves at most `max`: a deterministic subsample of large holdouts.
    pub fn subsample(mut self, max: usize) -> Self {
        let step = self.users.len().div_ceil(max.max(1)).max(1);
        if step > 1 {
            self.users = self.users.into_iter().step_by(step).collect();
            self.truth = self.truth.into_iter().step_by(step).collect();
            self.stats.eval_users = self.users.len();
            self.stats.eval_rows = self.truth.iter().map(Vec::len).sum();
        }
        self
    }
}

/// A train user's items, newest first (the cell's newest timestamp), ties to the lower item
/// index: the recent history the ranker is given for a scored user.
pub fn history_newest_first(train: &Interactions, u: u32) -> Vec<u32> {
    let range = train.user_items().row_range(u as usize);
    let items = &train.user_items().indices()[range.clone()];
    let mut h: Vec<(u32, i64)> = match train.last_timestamps() {
        Some(ts) => items
            .iter()
            .copied()
            .zip(ts[range].iter().copied())
            .collect(),
        None => items.iter().map(|&i| (i, 0)).collect(),
    };
    h.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    h.into_iter().map(|p| p.0).collect()
}

/// A ranked list of `(item index, score)`, best first.
pub type ScoredList = Vec<(u32, f32)>;

/// The warm-only protocol for any ranker: for every scored user of `test`, `rank(user,
/// history)` is asked for `k` items (train item indices, best first; the history is
/// [`history_newest_first`] and must be excluded by the ranker), and the lists are scored with
/// [`evaluate_ranking`]. Returns the metrics and the lists (aligned with `test.users`). The
/// train task's gate and `nectar eval` both evaluate this way.
pub fn evaluate_protocol<F>(
    train: &Interactions,
    test: &WarmTest,
    k: usize,
    rank: F,
) -> Result<(RankingMetrics, Vec<ScoredList>), ModelError>
where
    F: Fn(u32, &[u32]) -> Vec<(u32, f32)> + Sync,
{
    let recs: Vec<Vec<(u32, f32)>> = test
        .users
        .par_iter()
        .map(|&u| {
            let mut r = rank(u, &history_newest_first(train, u));
            r.truncate(k);
            r
        })
        .collect();
    let lists: Vec<Vec<u32>> = recs
        .iter()
        .map(|r| r.iter().map(|p| p.0).collect())
        .collect();
    Ok((evaluate_ranking(test, &lists, k, train.n_items())?, recs))
}

/// Mean ranking metrics over the scored users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingMetrics {
    /// The cut-off.
    pub k: usize,
    /// Mean precision@k.
    pub precision: f64,
    /// Mean recall@k (denominator |T_u|).
    pub recall: f64,
    /// Mean recall@k with denominator min(k, |T_u|).
    pub recall_capped: f64,
    /// Mean nDCG@k.
    pub ndcg: f64,
    /// Mean average precision@k.
    pub map: f64,
    /// Share of users with at least one hit.
    pub hit_rate: f64,
    /// Distinct recommended items over the scored users / number of train items.
    pub coverage: f64,
    /// Number of users scored.
    pub users_scored: usize,
}

/// Scores recommendation lists: `recs[j]` is the list for `test.users[j]` (longer lists are
/// cut at k). `n_items` is the number of train items (coverage denominator).
pub fn evaluate_ranking(
    test: &WarmTest,
    recs: &[Vec<u32>],
    k: usize,
    n_items: usize,
) -> Result<RankingMetrics, ModelError> {
    if recs.len() != test.users.len() {
        return Err(ModelError::Shape(format!(
            "{} lists for {} users",
            recs.len(),
            test.users.len()
        )));
    }
    if k == 0 {
        return Err(ModelError::param("k", "must be at least 1"));
    }
    let n = test.users.len();
    let mut m = RankingMetrics {
        k,
        precision: 0.0,
        recall: 0.0,
        recall_capped: 0.0,
        ndcg: 0.0,
        map: 0.0,
        hit_rate: 0.0,
        coverage: 0.0,
        users_scored: n,
    };
    if n == 0 {
        return Ok(m);
    }
    let mut seen = vec![false; n_items];
    let mut distinct = 0usize;
    for (r, t) in recs.iter().zip(&test.truth) {
        m.precision += precision_at_k(r, t, k);
        m.recall += recall_at_k(r, t, k);
        m.recall_capped += recall_capped_at_k(r, t, k);
        m.ndcg += ndcg_at_k(r, t, k);
        m.map += average_precision_at_k(r, t, k);
        m.hit_rate += hit_at_k(r, t, k);
        for &i in r.iter().take(k) {
            if let Some(s) = seen.get_mut(i as usize) {
                if !*s {
                    *s = true;
                    distinct += 1;
                }
            }
        }
    }
    let nf = n as f64;
    m.precision /= nf;
    m.recall /= nf;
    m.recall_capped /= nf;
    m.ndcg /= nf;
    m.map /= nf;
    m.hit_rate /= nf;
    m.coverage = distinct as f64 / n_items.max(1) as f64;
    Ok(m)
}

/// Time holdout: the newest `test_fraction` of the rows (by `sort_keys`, a stable sort, so
/// callers put the timestamp first and any tie-breakers after) become test. Returns a mask
/// aligned with the input, `true` = test; `floor(fraction · N)` rows are test.
pub fn time_holdout_split<K: Ord>(
    sort_keys: &[K],
    test_fraction: f64,
) -> Result<Vec<bool>, ModelError> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(ModelError::param("test_fraction", "must be in [0, 1)"));
    }
    let n = sort_keys.len();
    let n_test = (test_fraction * n as f64 + 1e-9).floor() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| sort_keys[a].cmp(&sort_keys[b]));
    let mut mask = vec![false; n];
    for &i in &order[n - n_test..] {
        mask[i] = true;
    }
    Ok(mask)
}

/// Everything an offline evaluation reports for one algorithm on one train/test split.
#[derive(Debug, Clone)]
pub struct OfflineReport {
    /// The training matrix (its keys map indices back to ids).
    pub train: Interactions,
    /// The fitted model.
    pub model: FittedModel,
    /// The warm ground truth.
    pub test: WarmTest,
    /// Ranking metrics over the scored users.
    pub ranking: RankingMetrics,
    /// RMSE over every test row, for rating models.
    pub rmse: Option<f64>,
    /// MAE over every test row, for rating models.
    pub mae: Option<f64>,
    /// Wall-clock fit, matrix building excluded.
    pub fit_seconds: f64,
    /// Wall-clock of the top-k lists (`offline_eval`: every train user; `nectar eval`: the
    /// scored users).
    pub recommend_seconds: f64,
    /// The top-k lists of the scored users, aligned with `test.users`.
    pub recs: Vec<Vec<(u32, f32)>>,
    /// One prediction per test row (input order), for rating models.
    pub predictions: Option<Vec<f32>>,
}

/// For rating models: one prediction per test row (unknown user/item fall back to the
/// biases), with RMSE and MAE over them; `None` for ranking-only models.
pub fn rating_predictions(
    model: &FittedModel,
    train: &Interactions,
    test_rows: &[RatingRow],
) -> Option<(Vec<f32>, f64, f64)> {
    let FittedModel::Mf(m) = model else {
        return None;
    };
    let preds: Vec<f32> = test_rows
        .iter()
        .map(|r| m.predict(train.user_index(&r.user_id), train.item_index(&r.item_id)))
        .collect();
    let pairs: Vec<(f32, f32)> = test_rows
        .iter()
        .zip(&preds)
        .map(|(r, &p)| (r.rating, p))
        .collect();
    let (r, a) = (rmse(&pairs), mae(&pairs));
    Some((preds, r, a))
}

/// Runs refeval's protocol on a model alone (the model crate's `eval_csv` example): index users
/// and items from `train`, fit (timed), produce top-k lists through [`crate::algo::Recommender`] with train
/// items excluded for every train user (timed), score the warm test users, and for rating
/// models predict every test row (unknown user/item fall back to the biases). `nectar eval`
/// and the train task's gate instead rank the published artifacts through the one ranker
/// ([`crate::rank`]) with [`evaluate_protocol`], so that they measure what is served.
pub fn offline_eval(
    spec: &AlgoSpec,
    train_rows: &[RatingRow],
    test_rows: &[RatingRow],
    k: usize,
) -> Result<OfflineReport, ModelError> {
    if k == 0 {
        return Err(ModelError::param("k", "must be at least 1"));
    }
    let train = from_rating_rows(train_rows, spec.value_mode())?;
    let t0 = Instant::now();
    let model = spec.fit(&train)?;
    let fit_seconds = t0.elapsed().as_secs_f64();

    let rec = model.as_recommender();
    let t0 = Instant::now();
    let all: Vec<Vec<(u32, f32)>> = (0..train.n_users() as u32)
        .into_par_iter()
        .map(|u| {
            let (items, values) = train.user_row(u);
            rec.recommend(
                Target::Known(u, UserHistory::new(items, values)),
                k,
                true,
                &[],
            )
        })
        .collect::<Result<_, _>>()?;
    let recommend_seconds = t0.elapsed().as_secs_f64();

    let test = WarmTest::new(&train, test_rows);
    let recs: Vec<Vec<(u32, f32)>> = test
        .users
        .iter()
        .map(|&u| all[u as usize].clone())
        .collect();
    let lists: Vec<Vec<u32>> = recs
        .iter()
        .map(|r| r.iter().map(|p| p.0).collect())
        .collect();
    let ranking = evaluate_ranking(&test, &lists, k, train.n_items())?;

    let (rmse_v, mae_v, predictions) = match rating_predictions(&model, &train, test_rows) {
        Some((p, r, m)) => (Some(r), Some(m), Some(p)),
        None => (None, None, None),
    };
    Ok(OfflineReport {
        train,
        model,
        test,
        ranking,
        rmse: rmse_v,
        mae: mae_v,
        fit_seconds,
        recommend_seconds,
        recs,
        predictions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approx(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn per_user_formulas_hand_computed() {
        // GIVEN truth {1, 3} and the list [3, 0, 1] at k = 3
        let truth = [1u32, 3];
        let recs = [3u32, 0, 1];
        // THEN hits = 2 at ranks 1 and 3
        approx(precision_at_k(&recs, &truth, 3), 2.0 / 3.0);
        approx(recall_at_k(&recs, &truth, 3), 1.0);
        let idcg = 1.0 + 1.0 / 3f64.log2();
        approx(ndcg_at_k(&recs, &truth, 3), (1.0 + 0.5) / idcg);
        approx(
            average_precision_at_k(&recs, &truth, 3),
            (1.0 + 2.0 / 3.0) / 2.0,
        );
        approx(hit_at_k(&recs, &truth, 3), 1.0);
        // AND precision keeps k as denominator for a short list
        approx(precision_at_k(&[3], &truth, 10), 0.1);
        // AND with k smaller than |T|, IDCG and AP use min(k, |T|)
        let truth = [0u32, 1, 2, 3];
        approx(ndcg_at_k(&[9, 1], &truth, 2), (1.0 / 3f64.log2()) / idcg);
        approx(average_precision_at_k(&[9, 1], &truth, 2), 0.5 / 2.0);
        approx(recall_at_k(&[9, 1], &truth, 2), 0.25);
        approx(recall_capped_at_k(&[9, 1], &truth, 2), 0.5);
        approx(hit_at_k(&[9, 8], &truth, 2), 0.0);
    }

    #[test]
    fn refeval_selftest_case() {
        // GIVEN refeval's toy case: train users 10,11,12; test rows incl. a cold user and item
        let row = |u: &str, i: &str, r: f32, t: i64| RatingRow {
            user_id: u.into(),
            item_id: i.into(),
            rating: r,
            timestamp: t,
        };
        let train = vec![
            row("10", "100", 5.0, 1),
            row("10", "102", 3.0, 2),
            row("11", "101", 4.0, 3),
            row("11", "103", 2.0, 4),
            row("12", "104", 1.0, 5),
        ];
        let test = vec![
            row("10", "101", 4.0, 6),
            row("10", "103", 4.0, 7),
            row("11", "104", 4.0, 8),
            row("13", "100", 4.0, 9),
            row("10", "999", 4.0, 10),
        ];
        let m =
            crate::interactions::from_rating_rows(&train, crate::interactions::ValueMode::Binary)
                .unwrap();
        let wt = WarmTest::new(&m, &test);
        assert_eq!(wt.stats.rows_unknown_user, 1);
        assert_eq!(wt.stats.rows_known_user_unknown_item, 1);
        assert_eq!(wt.users, vec![0, 1]);
        assert_eq!(wt.truth, vec![vec![1, 3], vec![4]]);
        // WHEN scoring refeval's lists [[3,0,1],[0,2]] at k = 3
        let r = evaluate_ranking(&wt, &[vec![3, 0, 1], vec![0, 2]], 3, m.n_items()).unwrap();
        // THEN the numbers are refeval's hand-computed ones
        let idcg0 = 1.0 + 1.0 / 3f64.log2();
        approx(r.precision, (2.0 / 3.0) / 2.0);
        approx(r.recall, 0.5);
        approx(r.recall_capped, 0.5);
        approx(r.ndcg, (1.5 / idcg0) / 2.0);
        approx(r.map, ((1.0 + 2.0 / 3.0) / 2.0) / 2.0);
        approx(r.hit_rate, 0.5);
        approx(r.coverage, 4.0 / 5.0);
        assert_eq!(r.users_scored, 2);
    }

    #[test]
    fn protocol_orders_history_newest_first_and_subsamples_every_nth_user() {
        // GIVEN u1 played b (t=3), a (t=5), c (t=3); u2..u5 played a
        let row = |u: &str, i: &str, t: i64| RatingRow {
            user_id: u.into(),
            item_id: i.into(),
            rating: 1.0,
            timestamp: t,
        };
        let mut train = vec![row("1", "b", 3), row("1", "a", 5), row("1", "c", 3)];
        train.extend((2..=5).map(|u| row(&u.to_string(), "a", 1)));
        let test: Vec<RatingRow> = (1..=5).map(|u| row(&u.to_string(), "b", 9)).collect();
        let m = from_rating_rows(&train, crate::interactions::ValueMode::Binary).unwrap();
        // THEN u1's history is a, then the tie b, c by index
        let ids = |v: Vec<u32>| -> Vec<String> {
            v.into_iter()
                .map(|i| m.item_ids()[i as usize].clone())
                .collect()
        };
        assert_eq!(ids(history_newest_first(&m, 0)), vec!["a", "b", "c"]);
        // AND u1 already has b: four warm users; at most 2 → every 2nd (u2, u4)
        let wt = WarmTest::new(&m, &test).subsample(2);
        assert_eq!(wt.users, vec![1, 3]);
        assert_eq!(wt.stats.eval_users, 2);
        // AND the protocol scores the ranker's lists with the metric functions
        let (r, lists) = evaluate_protocol(&m, &wt, 1, |_, h| {
            assert_eq!(h.len(), 1);
            vec![(m.item_index("b").unwrap(), 1.0), (0, 0.5)]
        })
        .unwrap();
        assert_eq!(lists[0].len(), 1, "lists are cut at k");
        approx(r.ndcg, 1.0);
        approx(r.precision, 1.0);
    }

    #[test]
    fn rmse_mae() {
        let p = [(4.0, 3.0), (2.0, 4.0)];
        approx(rmse(&p), (2.5f64).sqrt());
        approx(mae(&p), 1.5);
    }

    #[test]
    fn time_holdout_takes_newest() {
        // GIVEN timestamps with a tie broken by the second key
        let keys = [(5, 0), (1, 0), (9, 1), (9, 0), (3, 0)];
        // WHEN holding out 40 %
        let m = time_holdout_split(&keys, 0.4).unwrap();
        // THEN the two newest rows are test
        assert_eq!(m, vec![false, false, true, true, false]);
        assert_eq!(time_holdout_split(&keys, 0.0).unwrap(), vec![false; 5]);
        assert!(time_holdout_split(&keys, 1.0).is_err());
    }

    #[test]
    fn offline_eval_popular_and_mf_end_to_end() {
        // GIVEN item "a" rated by 3 users, "b" by 2, "c" by 1; user 4 held out on "a"
        let row = |u: &str, i: &str, r: f32| RatingRow {
            user_id: u.into(),
            item_id: i.into(),
            rating: r,
            timestamp: 0,
        };
        let train = vec![
            row("1", "a", 5.0),
            row("2", "a", 4.0),
            row("3", "a", 5.0),
            row("1", "b", 2.0),
            row("4", "b", 3.0),
            row("4", "c", 1.0),
        ];
        let test = vec![row("4", "a", 4.0), row("9", "a", 4.0)];
        // WHEN evaluating popular at k = 1
        let spec = AlgoSpec::parse("popular", &[]).unwrap();
        let r = offline_eval(&spec, &train, &test, 1).unwrap();
        // THEN user 4 gets "a" (seen items b, c excluded) and every metric is 1
        assert_eq!(r.test.users.len(), 1);
        assert_eq!(r.recs[0][0].0, r.train.item_index("a").unwrap());
        approx(r.ranking.ndcg, 1.0);
        approx(r.ranking.precision, 1.0);
        assert_eq!(r.test.stats.rows_unknown_user, 1);
        assert!(r.rmse.is_none());
        // AND mf predicts every test row, the unknown user from mean + item bias
        let spec = AlgoSpec::parse("mf", &[("epochs".into(), "5".into())]).unwrap();
        let r = offline_eval(&spec, &train, &test, 1).unwrap();
        let p = r.predictions.unwrap();
        assert_eq!(p.len(), 2);
        assert!(p.iter().all(|v| (1.0..=5.0).contains(v)));
        assert!(r.rmse.unwrap() > 0.0);
    }
}
