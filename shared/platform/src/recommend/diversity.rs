//! The `diversity` rule: candidates re-ranked by maximal marginal relevance
//! ([`nectar_model::diversity::mmr`]) before the other rules, pins and exploration. Similarity
//! is the cosine of the two items' factors when the answering model has them, else 1 for the
//! same catalog category and 0 otherwise (items without a category are like nothing).

use nectar_model::diversity::{cosine, mmr};

use super::model_cache::LoadedModel;
use super::RecommendService;
use crate::collect::sink::EventSink;
use crate::config::DiversityConfig;
use crate::model_store::ModelStore;

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    /// `cands` (best first) in MMR order: the first `2n + 10` chosen by MMR (room for the
    /// availability and category rules that follow), the rest as they were; a pool of at most
    /// `4n + 20` candidates is considered, so the cost is bounded by the answer size.
    pub(super) fn diversify<T: AsRef<str>>(
        &self,
        site: &str,
        d: &DiversityConfig,
        model: Option<&LoadedModel>,
        mut cands: Vec<(T, f32)>,
        n: usize,
    ) -> Vec<(T, f32)> {
        let pool = cands.len().min(4 * n + 20);
        let rest = cands.split_off(pool);
        let scores: Vec<f32> = cands.iter().map(|c| c.1).collect();
        let factors = model.and_then(|m| {
            let f = m.items.item_factors.as_ref()?;
            let rows: Option<Vec<&[f32]>> = cands
                .iter()
                .map(|(id, _)| m.index.get(id.as_ref()).map(|&r| f.row(r as usize)))
                .collect();
            rows
        });
        let order = match factors {
            Some(rows) => mmr(&scores, d.lambda as f32, 2 * n + 10, |a, b| {
                cosine(rows[a], rows[b])
            }),
            None => {
                let cats: Vec<Option<String>> = cands
                    .iter()
                    .map(|(id, _)| self.catalog.get(site, id.as_ref()).and_then(|m| m.category))
                    .collect();
                mmr(&scores, d.lambda as f32, 2 * n + 10, |a, b| {
                    f32::from(cats[a].is_some() && cats[a] == cats[b])
                })
            }
        };
        let mut slots: Vec<Option<(T, f32)>> = cands.into_iter().map(Some).collect();
        let mut out: Vec<(T, f32)> = order.into_iter().filter_map(|i| slots[i].take()).collect();
        out.extend(rest);
        out
    }
}
