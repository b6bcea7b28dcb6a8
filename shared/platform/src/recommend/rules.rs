//! The business rules of an endpoint over ranked candidates: diversity, availability windows,
//! category caps and pinned promotions.

use std::collections::HashMap;

use super::model_cache::LoadedModel;
use super::RecommendService;
use crate::collect::sink::EventSink;
use crate::config::EndpointConfig;
use crate::model_store::ModelStore;

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    /// Diversity (MMR, with the answering model's factors when it has them), availability,
    /// category caps and pinned promotions, over candidates best first.
    /// Candidates are ids borrowed from the model or owned (a fallback list's copy); only
    /// the ones kept are turned into owned ids.
    pub(super) fn apply_rules<T: AsRef<str> + Into<String>>(
        &self,
        site: &str,
        ep: &EndpointConfig,
        model: Option<&LoadedModel>,
        cands: Vec<(T, f32)>,
        n: usize,
        now_ms: i64,
    ) -> Vec<(String, f32)> {
        let rules = &ep.rules;
        let cands = match &rules.diversity {
            Some(d) if d.lambda > 0.0 => self.diversify(site, d, model, cands, n),
            _ => cands,
        };
        let pinned: Vec<_> = rules.pinned.iter().filter(|p| p.slot <= n).collect();
        let organic_n = n - pinned.len();
        // One read of the catalog for the whole list; categories are counted by reference.
        let mut out = self.catalog.with_site(site, |items| {
            let mut per_cat: HashMap<&str, usize> = HashMap::new();
            let mut out = Vec::with_capacity(n);
            for (id, s) in cands {
                if out.len() >= organic_n {
                    break;
                }
                if pinned.iter().any(|p| p.item_id == id.as_ref()) {
                    continue;
                }
                let meta = items.and_then(|m| m.get(id.as_ref()));
                if rules.availability && meta.is_some_and(|m| !m.available_at(now_ms)) {
                    continue;
                }
                if let (Some(max), Some(cat)) = (
                    rules.max_per_category,
                    meta.and_then(|m| m.category.as_deref()),
                ) {
                    let c = per_cat.entry(cat).or_default();
                    if *c >= max {
                        continue;
                    }
                    *c += 1;
                }
                out.push((id.into(), s));
            }
            out
        });
        let mut pinned = pinned;
        pinned.sort_by_key(|p| p.slot);
        for p in pinned {
            let at = (p.slot - 1).min(out.len());
            out.insert(at, (p.item_id.clone(), f32::NAN));
        }
        out
    }
}
