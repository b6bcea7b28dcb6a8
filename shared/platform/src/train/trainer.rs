//! The model crate's algorithms behind the train service's [`Trainer`] seam.
//!
//! [`ModelTrainer`] parses the task's params with `AlgoSpec::parse` (the names of `nectar
//! eval`), builds the interaction matrix in the algorithm's value mode, fits, and turns the
//! fitted model into [`ModelArtifacts`]:
//!
//! | algorithm | item factors | user factors | popular list | similar lists | user lists |
//! |---|---|---|---|---|---|
//! | `popular`, `trending` | – | – | the model's ranking | – | – |
//! | `item_knn` | – | – | counts | the neighbours | – |
//! | `als` | yes | yes | counts | cosine of item factors (catalogs ≤ [`MAX_ALS_SIMILAR_ITEMS`]) | – |
//! | `mf` | – | – | counts | – | always (biases are not in a dot product) |
//!
//! `publish.user_lists = true` adds per-user top-N lists for every algorithm.

use nectar_model::algo::als::WarmStart;
use nectar_model::algo::popular::{PopularParams, PopularityModel};
use nectar_model::algo::spec::{AlgoSpec, FittedModel};
use nectar_model::algo::{Recommender, Target, UserHistory};
use nectar_model::mapping::InteractionsView;
use nectar_model::{Interactions, InteractionsBuilder, ModelError};
use rayon::prelude::*;

use crate::config::{PublishConfig, TaskConfig};
use crate::model_store::{Factors, ModelArtifacts, Scored};
use crate::train::{Trainer, TrainerError};

/// Above this many items, ALS similar-item lists (all pairs of item vectors) are skipped.
pub const MAX_ALS_SIMILAR_ITEMS: usize = 50_000;

/// The model crate's algorithms.
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelTrainer;

fn fit_err(e: ModelError) -> TrainerError {
    match e {
        ModelError::InvalidParam { name, reason } => TrainerError::InvalidParam {
            name,
            problem: reason,
        },
        other => TrainerError::Fit(Box::new(other)),
    }
}

fn factors_of(view: ndarray::ArrayView2<'_, f32>) -> Factors {
    Factors {
        dim: view.ncols(),
        data: view.iter().copied().collect(),
    }
}

impl Trainer for ModelTrainer {
    fn fit(
        &self,
        task: &TaskConfig,
        data: InteractionsView<'_>,
        progress: &dyn Fn(f64),
    ) -> Result<ModelArtifacts, TrainerError> {
        fit_artifacts(task, data, None, progress)
    }

    /// ALS starts from the candidate's factors ([`AlsValidParams::fit_warm`]: a third of the
    /// iterations); other algorithms fit from scratch.
    fn refit(
        &self,
        task: &TaskConfig,
        data: InteractionsView<'_>,
        candidate: &ModelArtifacts,
        progress: &dyn Fn(f64),
    ) -> Result<ModelArtifacts, TrainerError> {
        fit_artifacts(task, data, Some(candidate), progress)
    }
}

/// The matrix in the algorithm's value mode, the fit (warm from `warm`'s factors when it has
/// them and the algorithm is ALS), and the artifacts.
fn fit_artifacts(
    task: &TaskConfig,
    data: InteractionsView<'_>,
    warm: Option<&ModelArtifacts>,
    progress: &dyn Fn(f64),
) -> Result<ModelArtifacts, TrainerError> {
    let spec = AlgoSpec::parse(task.algorithm.as_str(), &task.param_strings()).map_err(fit_err)?;
    let mut b = InteractionsBuilder::with_capacity(data.rows.len()).value_mode(spec.value_mode());
    b.push_view(data, |t| t);
    let m = b.build().map_err(fit_err)?;
    progress(0.05);
    let fitted = match &spec {
        AlgoSpec::Als(p) => {
            let warm = warm.and_then(|a| {
                let (items, users) = (a.item_factors.as_ref()?, a.user_factors.as_ref());
                (items.dim == p.factors()).then(|| WarmStart {
                    user_ids: if users.is_some() { &a.user_ids } else { &[] },
                    user_factors: users.map_or(&[][..], |u| &u.data),
                    item_ids: &a.item_ids,
                    item_factors: &items.data,
                })
            });
            let total = match warm {
                Some(_) => p.warm_iterations(),
                None => p.iterations(),
            } as f64;
            let report = |it: usize| progress(0.05 + 0.85 * it as f64 / total);
            FittedModel::Als(
                match warm {
                    Some(w) => p.fit_warm(&m, &w, report),
                    None => p.fit_with_progress(&m, report),
                }
                .map_err(fit_err)?,
            )
        }
        other => other.fit(&m).map_err(fit_err)?,
    };
    progress(0.9);
    let a = artifacts(&task.publish, &m, &fitted).map_err(fit_err)?;
    progress(1.0);
    Ok(a)
}

/// The first `n` of a popularity model's ranking, with scores.
fn ranked(p: &PopularityModel, n: usize) -> Vec<Scored> {
    p.ranking()
        .iter()
        .take(n)
        .map(|&i| (i, p.scores()[i as usize]))
        .collect()
}

fn user_lists(
    m: &Interactions,
    model: &dyn Recommender,
    n: usize,
) -> Result<Vec<Vec<Scored>>, ModelError> {
    (0..m.n_users() as u32)
        .into_par_iter()
        .map(|u| {
            let (items, values) = m.user_row(u);
            model.recommend(
                Target::Known(u, UserHistory::new(items, values)),
                n,
                true,
                &[],
            )
        })
        .collect()
}

fn similar_lists(
    model: &dyn Recommender,
    n_items: usize,
    n: usize,
) -> Result<Vec<Vec<Scored>>, ModelError> {
    (0..n_items as u32)
        .into_par_iter()
        .map(|i| model.similar_items(i, n))
        .collect()
}

/// The artifacts of a fitted model (see the module docs); `nectar eval` builds them the same
/// way, so that it ranks what training publishes.
pub fn artifacts(
    publish: &PublishConfig,
    m: &Interactions,
    fitted: &FittedModel,
) -> Result<ModelArtifacts, ModelError> {
    let mut a = ModelArtifacts {
        item_ids: m.item_ids().to_vec(),
        // Every model carries the popularity list (its fallback), from the one implementation.
        popular: ranked(&PopularParams::new().check()?.fit(m)?, publish.top_n),
        ..ModelArtifacts::default()
    };
    let model = fitted.as_recommender();
    match fitted {
        FittedModel::Popularity(p) => a.popular = ranked(p, publish.top_n),
        FittedModel::ItemKnn(_) => {
            if publish.similar_n > 0 {
                a.similar = Some(similar_lists(model, m.n_items(), publish.similar_n)?);
            }
        }
        FittedModel::Als(als) => {
            a.item_factors = Some(factors_of(als.item_factors()));
            a.user_ids = m.user_ids().to_vec();
            a.user_factors = Some(factors_of(als.user_factors()));
            if publish.similar_n > 0 {
                if m.n_items() <= MAX_ALS_SIMILAR_ITEMS {
                    a.similar = Some(similar_lists(model, m.n_items(), publish.similar_n)?);
                } else {
                    tracing::warn!(
                        items = m.n_items(),
                        "Too many items for ALS similar-item lists; none published."
                    );
                }
            }
        }
        FittedModel::Mf(_) => {}
    }
    if publish.user_lists || matches!(fitted, FittedModel::Mf(_)) {
        a.user_ids = m.user_ids().to_vec();
        a.user_top = Some(user_lists(m, model, publish.top_n)?);
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NectarConfig;
    use nectar_model::mapping::{Interaction, InteractionLog};

    fn task(toml: &str) -> TaskConfig {
        NectarConfig::from_toml(&format!("[sites.s.tasks.t]\n{toml}\n"), "t")
            .unwrap()
            .task("s", "t")
            .unwrap()
            .clone()
    }

    /// Two blocks: users 0..6 play items a0..a4, users 6..12 play items b0..b4; u0 has not
    /// played a0.
    fn blocks() -> InteractionLog {
        let mut log = InteractionLog::new();
        let mut ts = 0;
        for u in 0..12 {
            let block = if u < 6 { "a" } else { "b" };
            for i in 0..5 {
                if u == 0 && i == 0 {
                    continue;
                }
                ts += 1;
                log.push(Interaction {
                    user: format!("u{u}"),
                    item: format!("{block}{i}"),
                    weight: 1.0,
                    timestamp_ms: ts,
                    event_id: String::new(),
                });
            }
        }
        log.sort_by_time();
        log
    }

    #[test]
    fn als_publishes_factors_and_similar_items_within_the_block() {
        let t = task(
            "algorithm = \"als\"\nparams = { factors = 2, regularization = 0.1 }\npublish = { similar_n = 3 }",
        );
        let log = blocks();
        let a = ModelTrainer.fit(&t, log.view(), &|_| {}).unwrap();
        a.validate().unwrap();
        assert_eq!(a.item_factors.as_ref().unwrap().dim, 2);
        assert_eq!(a.user_ids.len(), 12);
        let sim = a.similar.as_ref().unwrap();
        for (i, list) in sim.iter().enumerate() {
            let block = &a.item_ids[i][..1];
            assert_eq!(list.len(), 3);
            for &(j, _) in list {
                assert_eq!(
                    &a.item_ids[j as usize][..1],
                    block,
                    "{} ~ {}",
                    a.item_ids[i],
                    a.item_ids[j as usize]
                );
            }
        }
        // the served model recommends u0 the one item of its block it has not played
        let m = crate::recommend::LoadedModel::new("t", a.items(1));
        let u0 = a.user_ids.iter().position(|u| u == "u0").unwrap();
        let mut played: Vec<u32> = ["a1", "a2", "a3", "a4"].map(|i| m.index[i]).to_vec();
        played.sort_unstable();
        let top = m.rank_user(&a.user_state(u0), None, &played, 1).unwrap();
        assert_eq!(a.item_ids[top[0].0 as usize], "a0");
    }

    #[test]
    fn the_als_refit_starts_from_the_candidates_factors() {
        use nectar_model::algo::als::AlsParams;
        // GIVEN a candidate fitted on the older half of the block data
        let t = task("algorithm = \"als\"\nparams = { factors = 2, iterations = 6 }");
        let log = blocks();
        let half = log.len() / 2;
        let cand = ModelTrainer
            .fit(&t, log.view_rows(0..half), &|_| {})
            .unwrap();
        // WHEN the whole log is refitted from it
        let refit = ModelTrainer.refit(&t, log.view(), &cand, &|_| {}).unwrap();
        // THEN the factors are the model crate's warm fit from the candidate's (a third of the
        // iterations), not a cold fit's
        let mut b = InteractionsBuilder::new();
        b.push_view(log.view(), |t| t);
        let m = b.build().unwrap();
        let p = AlsParams::new().factors(2).iterations(6).check().unwrap();
        let (cu, ci) = (
            cand.user_factors.as_ref().unwrap(),
            cand.item_factors.as_ref().unwrap(),
        );
        let warm = p
            .fit_warm(
                &m,
                &WarmStart {
                    user_ids: &cand.user_ids,
                    user_factors: &cu.data,
                    item_ids: &cand.item_ids,
                    item_factors: &ci.data,
                },
                |_| {},
            )
            .unwrap();
        assert_eq!(refit.item_factors, Some(factors_of(warm.item_factors())));
        let cold = ModelTrainer.fit(&t, log.view(), &|_| {}).unwrap();
        assert_ne!(refit.item_factors, cold.item_factors);
        // AND a candidate of another width (the params changed) gives a cold fit
        let mut other = cand.clone();
        other.item_factors = Some(Factors {
            dim: 1,
            data: vec![0.5; cand.item_ids.len()],
        });
        let refit = ModelTrainer.refit(&t, log.view(), &other, &|_| {}).unwrap();
        assert_eq!(refit.item_factors, cold.item_factors);
    }

    #[test]
    fn other_algorithms_publish_their_lists() {
        let log = blocks();
        let knn = ModelTrainer
            .fit(
                &task("algorithm = \"item_knn\"\nparams = { k = 3 }"),
                log.view(),
                &|_| {},
            )
            .unwrap();
        assert!(knn.similar.is_some() && knn.item_factors.is_none());
        let pop = ModelTrainer
            .fit(&task("algorithm = \"popular\""), log.view(), &|_| {})
            .unwrap();
        assert_eq!(pop.popular.len(), 10);
        let mf = ModelTrainer
            .fit(
                &task("algorithm = \"mf\"\npublish = { top_n = 2 }"),
                log.view(),
                &|_| {},
            )
            .unwrap();
        assert_eq!(mf.user_top.as_ref().unwrap().len(), 12);
        assert!(mf.user_top.unwrap().iter().all(|l| l.len() <= 2));
        let e = ModelTrainer
            .fit(
                &task("algorithm = \"trending\""),
                InteractionLog::new().view(),
                &|_| {},
            )
            .unwrap_err();
        assert!(matches!(e, TrainerError::Fit(_)), "{e}");
    }
}
