//! The offline bench (`nectar eval`, and the Lab's `nectar.evaluate`): a model fitted as the
//! train task fits it, turned into the artifacts training publishes ([`super::trainer::artifacts`],
//! default `publish` settings), ranked through the serving model and the one ranker with the
//! train task's warm-only protocol ([`Holdout`]: at most `MAX_EVAL_USERS` users, metric
//! formulas of refeval's README §4). Artifacts made elsewhere (a notebook's factors) are scored
//! by [`score_artifacts`] through the same path, so every number compares with every other.

use std::sync::Arc;

use nectar_model::algo::AlgoSpec;
use nectar_model::evaluation::{rating_predictions, OfflineReport, RankingMetrics, WarmTest};
use nectar_model::interactions::{from_rating_rows, RatingRow};
use nectar_model::{Interactions, ModelError};
use serde_json::{json, Map, Value};

use crate::config::PublishConfig;
use crate::model_store::ModelArtifacts;
use crate::recommend::LoadedModel;
use crate::train::trainer::artifacts;
use crate::train::Holdout;

/// What scoring artifacts produced: the metrics, the scored users' lists and the ground truth.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Ranking metrics over the scored users.
    pub ranking: RankingMetrics,
    /// The top-k lists of the scored users, aligned with `test.users`.
    pub recs: Vec<Vec<(u32, f32)>>,
    /// The warm ground truth (subsampled to at most `MAX_EVAL_USERS` users).
    pub test: WarmTest,
    /// Wall-clock of the lists.
    pub recommend_seconds: f64,
}

fn check_k(k: usize) -> Result<(), ModelError> {
    if k == 0 {
        return Err(ModelError::param("k", "must be at least 1"));
    }
    Ok(())
}

/// Scores `a` (whose ids are `train`'s keys) on `test`'s warm rows with the train task's
/// protocol.
pub fn score_artifacts(
    train: Arc<Interactions>,
    a: &ModelArtifacts,
    test: &[RatingRow],
    k: usize,
) -> Result<Scores, ModelError> {
    check_k(k)?;
    let warm = WarmTest::new(&train, test);
    let holdout = Holdout::with_test(train, warm);
    let t0 = std::time::Instant::now();
    let served = LoadedModel::new("eval", a.items(0));
    let (ranking, recs) = holdout.evaluate(&served, &holdout.states_of(a), k)?;
    let recommend_seconds = t0.elapsed().as_secs_f64();
    let test = holdout.warm_test().cloned().ok_or(ModelError::EmptyData)?;
    Ok(Scores {
        ranking,
        recs,
        test,
        recommend_seconds,
    })
}

/// Fits `spec` on `train` as the train task does, publishes its artifacts in memory and scores
/// them on `test` (see the module docs).
pub fn evaluate(
    spec: &AlgoSpec,
    train: &[RatingRow],
    test: &[RatingRow],
    k: usize,
) -> Result<OfflineReport, ModelError> {
    check_k(k)?;
    let m = from_rating_rows(train, spec.value_mode())?;
    let t0 = std::time::Instant::now();
    let model = spec.fit(&m)?;
    let fit_seconds = t0.elapsed().as_secs_f64();
    let mut a = artifacts(&PublishConfig::default(), &m, &model)?;
    a.metadata = json!({ "spec": spec });
    let m = Arc::new(m);
    let scores = score_artifacts(m.clone(), &a, test, k)?;
    let train_m = Arc::try_unwrap(m).unwrap_or_else(|m| (*m).clone());
    let (predictions, rmse, mae) = match rating_predictions(&model, &train_m, test) {
        Some((p, r, a)) => (Some(p), Some(r), Some(a)),
        None => (None, None, None),
    };
    Ok(OfflineReport {
        train: train_m,
        model,
        test: scores.test,
        ranking: scores.ranking,
        rmse,
        mae,
        fit_seconds,
        recommend_seconds: scores.recommend_seconds,
        recs: scores.recs,
        predictions,
    })
}

/// The ranking metrics as `nectar eval --json` names them (`precision@K`, `recall@K`,
/// `recall_capped@K`, `ndcg@K`, `map@K`, `hr@K`, `coverage@K`, `users_scored`).
pub fn ranking_json(m: &RankingMetrics, k: usize) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(format!("precision@{k}"), json!(m.precision));
    o.insert(format!("recall@{k}"), json!(m.recall));
    o.insert(format!("recall_capped@{k}"), json!(m.recall_capped));
    o.insert(format!("ndcg@{k}"), json!(m.ndcg));
    o.insert(format!("map@{k}"), json!(m.map));
    o.insert(format!("hr@{k}"), json!(m.hit_rate));
    o.insert(format!("coverage@{k}"), json!(m.coverage));
    o.insert("users_scored".into(), json!(m.users_scored));
    o
}

/// Everything `nectar eval --json` prints about a report except the algorithm and its
/// parameters: [`ranking_json`], `rmse`/`mae` (rating models), the timings and the sizes.
pub fn report_json(r: &OfflineReport, k: usize) -> Map<String, Value> {
    let mut o = ranking_json(&r.ranking, k);
    if let (Some(rmse), Some(mae)) = (r.rmse, r.mae) {
        o.insert("rmse".into(), json!(rmse));
        o.insert("mae".into(), json!(mae));
    }
    o.insert("fit_seconds".into(), json!(r.fit_seconds));
    o.insert("recommend_seconds".into(), json!(r.recommend_seconds));
    o.insert("train_users".into(), json!(r.train.n_users()));
    o.insert("train_items".into(), json!(r.train.n_items()));
    o.insert("train_nnz".into(), json!(r.train.nnz()));
    o.insert("eval_stats".into(), json!(r.test.stats));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n_users: usize, n_items: usize, t0: i64) -> Vec<RatingRow> {
        // Each user has the items whose index shares the user's parity, a checkerboard the
        // models learn exactly.
        let mut out = Vec::new();
        for u in 0..n_users {
            for i in (u % 2..n_items).step_by(2) {
                out.push(RatingRow {
                    user_id: format!("u{u}"),
                    item_id: format!("i{i}"),
                    rating: 1.0,
                    timestamp: t0 + (u * n_items + i) as i64,
                });
            }
        }
        out
    }

    #[test]
    fn evaluate_scores_the_fitted_artifacts_and_names_metrics_like_nectar_eval() {
        // GIVEN a checkerboard split into train and test (one item per user, each also in train)
        let all = rows(20, 12, 0);
        let (test, train): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| {
            let u: usize = r.user_id[1..].parse().unwrap();
            r.item_id == format!("i{}", (u / 2 * 2) % 12 + u % 2)
        });
        let spec = AlgoSpec::parse("item_knn", &[]).unwrap();
        // WHEN it is evaluated at k = 5
        let r = evaluate(&spec, &train, &test, 5).unwrap();
        // THEN every user is scored, the held-out item is found, and the JSON names the cut-off
        assert_eq!(r.ranking.users_scored, 20);
        assert!(r.ranking.hit_rate > 0.99, "{:?}", r.ranking);
        let j = report_json(&r, 5);
        for key in ["precision@5", "ndcg@5", "hr@5", "coverage@5", "train_nnz"] {
            assert!(j.contains_key(key), "{key} in {j:?}");
        }
        // AND scoring the same artifacts again gives the same metrics
        let m = Arc::new(from_rating_rows(&train, spec.value_mode()).unwrap());
        let a = artifacts(&PublishConfig::default(), &m, &r.model).unwrap();
        let again = score_artifacts(m, &a, &test, 5).unwrap();
        assert_eq!(again.ranking, r.ranking);
        // AND k = 0 is refused naming k
        let e = evaluate(&spec, &train, &test, 0).unwrap_err();
        assert!(e.to_string().contains("`k`"), "{e}");
    }
}
