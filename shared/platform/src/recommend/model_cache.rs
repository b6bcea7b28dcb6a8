//! The in-memory model cache of the recommend service: each (site, task)'s loaded version,
//! reloaded when the store's pointer moves (checked at most every `reload_interval`, with
//! jitter), kept while the store is unreachable.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nectar_model::algo::AlgoSpec;
use nectar_model::rank::{self, ItemSide, Prepared, UserInput};
use rand::Rng;

use super::RecommendService;
use crate::collect::sink::EventSink;
use crate::model_store::{algo_spec, Factors, ModelItems, ModelStore, UserState};

/// One model version as served from memory.
#[derive(Debug)]
pub struct LoadedModel {
    /// The task name.
    pub task: String,
    /// The item side.
    pub items: ModelItems,
    /// Item id → row (foldhash: every request looks up its history and exclusions here;
    /// the keys are the model's own ids, so a client cannot choose what collides).
    pub index: HashMap<String, u32, foldhash::fast::RandomState>,
    /// Fold-in model (with the version's own training params) and quantised factors.
    pub(super) prepared: Prepared,
    /// The model-wide list with item ids (what a fallback serves).
    pub(super) list: Arc<Vec<(String, f32)>>,
}

impl LoadedModel {
    /// Prepares a version for serving (id index, fold-in model, quantised factors); public so
    /// that `nectar bench topk` times the very scan the server runs, and the quality gate and
    /// `nectar eval` rank through the very model serving uses.
    pub fn new(task: &str, items: ModelItems) -> Self {
        let index = items
            .item_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        // Fold-in uses the params the version was trained with (ALS defaults when the version
        // predates stored params), never numbers of its own.
        let als = match algo_spec(&items.metadata) {
            Some(AlgoSpec::Als(p)) => Some(p),
            _ => None,
        };
        let prepared = Prepared::new(items.item_factors.as_ref(), als.as_ref());
        let list = Arc::new(
            items
                .popular
                .iter()
                .map(|&(r, s)| (items.item_ids[r as usize].clone(), s))
                .collect(),
        );
        Self {
            task: task.to_string(),
            items,
            index,
            prepared,
            list,
        }
    }

    /// The best `want` items for the query vector `x`, skipping `excluded` (sorted).
    pub fn scan(&self, f: &Factors, x: &[f32], want: usize, excluded: &[u32]) -> Vec<(u32, f32)> {
        rank::scan(f, &self.prepared, x, want, excluded)
    }

    /// The item side as the ranker reads it.
    pub fn item_side(&self) -> ItemSide<'_> {
        ItemSide {
            factors: self.items.item_factors.as_ref(),
            similar: self.items.similar.as_deref(),
            popular: &self.items.popular,
            prepared: &self.prepared,
        }
    }

    /// The fold-in model (factor versions only).
    pub fn fold_in(&self) -> Option<&nectar_model::algo::als::AlsModel> {
        self.prepared.fold_in()
    }

    /// The top `n` rows for a user of this version (see [`nectar_model::rank`] for the
    /// precedence); `None` when the model cannot place the user.
    pub fn rank_user(
        &self,
        state: &UserState,
        context: Option<&str>,
        exclude: &[u32],
        n: usize,
    ) -> Option<Vec<(u32, f32)>> {
        let history: Vec<u32> = state
            .history
            .iter()
            .filter_map(|id| self.index.get(id).copied())
            .collect();
        let user = UserInput {
            factors: state.factors.as_deref(),
            top: state.top.as_deref(),
            history: &history,
            context: context.and_then(|c| self.index.get(c).copied()),
        };
        rank::rank(&self.item_side(), &user, exclude, n)
    }

    /// The version.
    pub fn version(&self) -> u64 {
        self.items.version
    }

    /// When the version's training ended (ms), from its metadata.
    pub fn trained_ms(&self) -> Option<i64> {
        self.items.metadata["trained_ms"].as_i64()
    }
}

#[derive(Debug)]
pub(super) struct Slot {
    loaded: Option<Arc<LoadedModel>>,
    next_check: Instant,
    /// Whether the pointer was ever read successfully (else "no model yet" is unknown).
    checked: bool,
    /// Held while the pointer is checked and a version loaded.
    loading: Arc<tokio::sync::Mutex<()>>,
}

/// Why a model could not be used for a request.
pub(super) enum ModelState {
    Ready(Arc<LoadedModel>),
    /// The pointer names no version.
    NoModel,
    /// The store failed and nothing is in memory.
    Unreachable,
}

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    /// The loaded model of a task, reloading when the pointer moved.
    pub(super) async fn model(&self, site: &str, task: &str) -> ModelState {
        let key = (site.to_string(), task.to_string());
        let now = Instant::now();
        let (current, due, lock, checked) = {
            let mut cache = self.cache.lock().expect("cache lock");
            let slot = cache.entry(key.clone()).or_insert_with(|| Slot {
                loaded: None,
                next_check: now,
                checked: false,
                loading: Arc::new(tokio::sync::Mutex::new(())),
            });
            let due = now >= slot.next_check;
            if due {
                // Other requests keep serving the loaded version while this one checks.
                slot.next_check = now + self.jittered();
            }
            (slot.loaded.clone(), due, slot.loading.clone(), slot.checked)
        };
        if !due {
            if let Some(m) = current {
                return ModelState::Ready(m);
            }
            if checked {
                return ModelState::NoModel;
            }
            // Cold start: wait for the request that is loading the first version.
            let _first = lock.lock().await;
            let cache = self.cache.lock().expect("cache lock");
            return match cache.get(&key) {
                Some(Slot {
                    loaded: Some(m), ..
                }) => ModelState::Ready(m.clone()),
                Some(Slot { checked: true, .. }) => ModelState::NoModel,
                _ => ModelState::Unreachable,
            };
        }
        let _loading = lock.lock().await;
        let pointer = tokio::time::timeout(
            self.options.request_timeout.max(Duration::from_millis(500)),
            self.models.current_version(site, task),
        )
        .await;
        let version = match pointer {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(%site, %task, error = %e, "Model pointer check failed.");
                return self.stale(&key, current);
            }
            Err(_) => {
                tracing::warn!(%site, %task, "Model pointer check timed out.");
                return self.stale(&key, current);
            }
        };
        let Some(version) = version else {
            self.set_checked(&key, None);
            return ModelState::NoModel;
        };
        if let Some(m) = &current {
            if m.version() == version {
                self.set_checked(&key, Some(m.clone()));
                return ModelState::Ready(m.clone());
            }
        }
        let loaded = tokio::time::timeout(
            self.options.load_timeout,
            self.models.load_items(site, task, version),
        )
        .await;
        match loaded {
            Ok(Ok(Some(items))) => {
                let m = Arc::new(LoadedModel::new(task, items));
                tracing::info!(%site, %task, version, items = m.items.item_ids.len(), "Loaded model version.");
                self.set_checked(&key, Some(m.clone()));
                ModelState::Ready(m)
            }
            Ok(Ok(None)) => {
                // Superseded between the pointer read and the load: check again next time.
                self.cache
                    .lock()
                    .expect("cache lock")
                    .entry(key.clone())
                    .and_modify(|s| s.next_check = Instant::now());
                self.stale(&key, current)
            }
            Ok(Err(e)) => {
                tracing::warn!(%site, %task, version, error = %e, "Loading model version failed.");
                self.stale(&key, current)
            }
            Err(_) => {
                tracing::warn!(%site, %task, version, "Loading model version timed out.");
                self.stale(&key, current)
            }
        }
    }

    pub(super) fn stale(
        &self,
        key: &(String, String),
        current: Option<Arc<LoadedModel>>,
    ) -> ModelState {
        match current {
            Some(m) => ModelState::Ready(m),
            None => {
                let checked = self
                    .cache
                    .lock()
                    .expect("cache lock")
                    .get(key)
                    .is_some_and(|s| s.checked);
                if checked {
                    ModelState::NoModel
                } else {
                    ModelState::Unreachable
                }
            }
        }
    }

    pub(super) fn set_checked(&self, key: &(String, String), m: Option<Arc<LoadedModel>>) {
        let mut cache = self.cache.lock().expect("cache lock");
        if let Some(slot) = cache.get_mut(key) {
            slot.loaded = m;
            slot.checked = true;
        }
    }

    pub(super) fn jittered(&self) -> Duration {
        let base = self.options.reload_interval;
        let jitter = rand::rng().random_range(0.0..0.5);
        base + base.mul_f64(jitter)
    }
}
