//! The one evaluation protocol of the quality gate and `nectar eval`: warm-only ground truth
//! ([`WarmTest`]: held-out pairs whose user and item were in train and whose pair was not),
//! at most [`MAX_EVAL_USERS`] users (every n-th), each ranked by the one ranker through the
//! very [`LoadedModel`] serving uses, their train items (newest first) as history and
//! exclusions, and scored by the metric functions of `nectar_model::evaluation`.
//!
//! A user the model cannot place gets the model's own popularity list (what serving answers
//! when no fallback task has a version).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use nectar_model::evaluation::{
    evaluate_protocol, RankingMetrics, ScoredList, WarmTest, MAX_EVAL_USERS,
};
use nectar_model::mapping::InteractionsView;
use nectar_model::rank::from_list;
use nectar_model::{Interactions, InteractionsBuilder, ModelError};

use crate::model_store::{ModelArtifacts, UserState};
use crate::recommend::LoadedModel;

/// A holdout prepared for scoring: the train matrix (structure and cell times) and the warm
/// ground truth of the scored users.
#[derive(Debug, Clone, Default)]
pub struct Holdout {
    train: Option<Arc<Interactions>>,
    test: Option<WarmTest>,
}

impl Holdout {
    /// Builds the holdout of a time split. Cell times are kept at second resolution, as the
    /// exported split (`nectar train --export-split`) carries them, so that histories are
    /// ordered the same way when `nectar eval` re-runs the protocol on the files.
    pub fn new(train: InteractionsView<'_>, test: InteractionsView<'_>) -> Self {
        let mut b = InteractionsBuilder::new();
        b.push_view(train, |t| t.div_euclid(1000) * 1000);
        match b.build() {
            Ok(m) => Self::from_matrix(Arc::new(m), test),
            Err(_) => Self::default(),
        }
    }

    /// The holdout of `test` against an already built train matrix.
    pub fn from_matrix(train: Arc<Interactions>, test: InteractionsView<'_>) -> Self {
        // Negative feedback is not something to recommend back: only positives are held out.
        let pairs = test.rows.iter().filter(|r| r.weight > 0.0).map(|r| {
            (
                test.users[r.user as usize].as_str(),
                test.items[r.item as usize].as_str(),
            )
        });
        let warm = WarmTest::from_key_pairs(&train, pairs);
        Self::with_test(train, warm)
    }

    /// A holdout from its parts (`nectar eval`: the matrix built from the train file).
    pub fn with_test(train: Arc<Interactions>, test: WarmTest) -> Self {
        Self {
            train: Some(train),
            test: Some(test.subsample(MAX_EVAL_USERS)),
        }
    }

    /// The same train matrix with another held-out part (the gate's events newer than the
    /// current version's window).
    pub fn restricted(&self, test: InteractionsView<'_>) -> Self {
        match &self.train {
            Some(t) => Self::from_matrix(t.clone(), test),
            None => Self::default(),
        }
    }

    /// Users scored.
    pub fn len(&self) -> usize {
        self.test.as_ref().map_or(0, |t| t.users.len())
    }

    /// Whether no user can be scored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of the users scored.
    pub fn user_ids(&self) -> Vec<String> {
        match (&self.train, &self.test) {
            (Some(m), Some(t)) => t
                .users
                .iter()
                .map(|&u| m.user_ids()[u as usize].clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The warm ground truth (none when nothing can be scored).
    pub fn warm_test(&self) -> Option<&WarmTest> {
        self.test.as_ref()
    }

    /// Scores in-memory artifacts (a candidate) as serving would serve them.
    pub fn evaluate_artifacts(&self, a: &ModelArtifacts) -> BTreeMap<String, f64> {
        let model = LoadedModel::new("candidate", a.items(0));
        let users = self.states_of(a);
        metrics_map(&self.evaluate(&model, &users, super::K).map(|r| r.0))
    }

    /// The states of this holdout's users in `a` (only those: a model of a million users
    /// copies little).
    pub fn states_of(&self, a: &ModelArtifacts) -> HashMap<String, UserState> {
        let wanted: std::collections::HashSet<String> = self.user_ids().into_iter().collect();
        a.user_ids
            .iter()
            .enumerate()
            .filter(|(_, u)| wanted.contains(*u))
            .map(|(r, u)| (u.clone(), a.user_state(r)))
            .collect()
    }

    /// The protocol (see the module docs) for a loaded version and its users' states: the
    /// metrics at `k` and the lists (item indices of the train matrix, aligned with the
    /// scored users).
    pub fn evaluate(
        &self,
        m: &LoadedModel,
        users: &HashMap<String, UserState>,
        k: usize,
    ) -> Result<(RankingMetrics, Vec<ScoredList>), ModelError> {
        let (Some(train), Some(test)) = (&self.train, &self.test) else {
            return Err(ModelError::EmptyData);
        };
        let (user_ids, item_ids) = (train.user_ids(), train.item_ids());
        evaluate_protocol(train, test, k, |u, history| {
            let mut state = users
                .get(&user_ids[u as usize])
                .cloned()
                .unwrap_or_default();
            state.history = history
                .iter()
                .map(|&i| item_ids[i as usize].clone())
                .collect();
            let mut exclude: Vec<u32> = state
                .history
                .iter()
                .filter_map(|id| m.index.get(id).copied())
                .collect();
            exclude.sort_unstable();
            let rows = m
                .rank_user(&state, None, &exclude, k)
                .unwrap_or_else(|| from_list(&m.items.popular, &exclude, k));
            // Back to the train matrix's indices; an item it does not know can never be a
            // hit (u32::MAX is out of range, and not counted in the coverage).
            rows.into_iter()
                .map(|(r, s)| {
                    let id = &m.items.item_ids[r as usize];
                    (train.item_index(id).unwrap_or(u32::MAX), s)
                })
                .collect()
        })
    }
}

/// The run record's metric names (`precision@10`, …, `users_scored`); empty on error.
pub fn metrics_map(m: &Result<RankingMetrics, ModelError>) -> BTreeMap<String, f64> {
    let Ok(m) = m else {
        return BTreeMap::new();
    };
    let k = m.k;
    BTreeMap::from([
        (format!("precision@{k}"), m.precision),
        (format!("recall@{k}"), m.recall),
        (format!("ndcg@{k}"), m.ndcg),
        (format!("map@{k}"), m.map),
        (format!("hr@{k}"), m.hit_rate),
        (format!("coverage@{k}"), m.coverage),
        ("users_scored".to_string(), m.users_scored as f64),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use nectar_model::mapping::{Interaction, InteractionLog};

    fn log(rows: &[(&str, &str, i64)]) -> InteractionLog {
        let mut log = InteractionLog::new();
        for &(user, item, ts) in rows {
            log.push(Interaction {
                user: user.into(),
                item: item.into(),
                weight: 1.0,
                timestamp_ms: ts,
                event_id: format!("{user}-{item}-{ts}"),
            });
        }
        log.sort_by_time();
        log
    }

    #[test]
    fn metrics_follow_refeval_formulas_on_warm_pairs_only() {
        // GIVEN u held out on b, c (warm), a (already in train: dropped) and zzz (cold item);
        // a popular list [a, b, d, c]
        let all = log(&[
            ("u", "a", 1_000),
            ("v", "b", 2_000),
            ("v", "c", 3_000),
            ("v", "d", 4_000),
            ("u", "b", 5_000),
            ("u", "c", 6_000),
            ("u", "a", 6_500),
            ("u", "zzz", 7_000),
            ("new", "a", 8_000),
        ]);
        let h = Holdout::new(all.view_rows(0..4), all.view_rows(4..9));
        assert_eq!(h.len(), 1, "only warm users with warm items are scored");
        assert_eq!(
            h.warm_test().unwrap().truth[0].len(),
            2,
            "a is not ground truth"
        );
        let a = ModelArtifacts {
            item_ids: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            popular: vec![(0, 4.0), (1, 3.0), (3, 2.0), (2, 1.0)],
            ..ModelArtifacts::default()
        };
        let m = h.evaluate_artifacts(&a);
        // THEN recs = [b, d, c] (a excluded): hits at ranks 1 and 3
        let dcg = 1.0 + 1.0 / 4f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((m["ndcg@10"] - dcg / idcg).abs() < 1e-12);
        assert!((m["precision@10"] - 0.2).abs() < 1e-12);
        assert!((m["recall@10"] - 1.0).abs() < 1e-12);
        assert!((m["map@10"] - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(m["hr@10"], 1.0);
        assert!((m["coverage@10"] - 0.75).abs() < 1e-12);
        assert_eq!(m["users_scored"], 1.0);
    }

    #[test]
    fn large_holdouts_score_every_nth_user() {
        // GIVEN 12,000 warm users
        let mut rows = Vec::new();
        let names: Vec<String> = (0..12_000).map(|u| format!("{u}")).collect();
        for u in &names {
            rows.push((u.as_str(), "a", 1));
            rows.push((u.as_str(), "b", 2));
        }
        let test_start = names.len();
        for u in &names {
            rows.push((u.as_str(), "b2", 3));
        }
        rows.push(("0", "b2", 0));
        let all = log(&rows);
        let cut = all.len() - test_start;
        let h = Holdout::new(all.view_rows(0..cut), all.view_rows(cut..all.len()));
        // THEN every third (in natural id order) is scored: at most MAX_EVAL_USERS
        assert_eq!(h.len(), 4_000);
        let ids = h.user_ids();
        assert_eq!(&ids[..3], &["1", "4", "7"]);
    }
}
