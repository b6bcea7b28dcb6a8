//! Diversity: maximal marginal relevance (Carbonell & Goldstein 1998) over a ranked candidate
//! list, and intra-list diversity to measure it.
//!
//! `lambda` is the weight of *diversity* (the endpoint rule `diversity = { lambda = 0.3 }`):
//! each next item maximises `(1 − λ)·rel(i) − λ·max_{j chosen} sim(i, j)`, with `rel` the
//! candidate's score scaled to 0–1 over the list (scores of different models have different
//! scales). `λ = 0` keeps the ranking as it is.

/// The order of `scores` (indices, best first) after MMR: the first `k` picked by MMR, the rest
/// in their original order. `sim(a, b)` is the similarity of candidates `a` and `b` (0–1).
pub fn mmr(
    scores: &[f32],
    lambda: f32,
    k: usize,
    mut sim: impl FnMut(usize, usize) -> f32,
) -> Vec<usize> {
    let n = scores.len();
    if lambda <= 0.0 || n < 2 {
        return (0..n).collect();
    }
    let finite = scores.iter().copied().filter(|s| s.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), s| {
        (l.min(s), h.max(s))
    });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let rel: Vec<f32> = scores
        .iter()
        .map(|&s| if s.is_finite() { (s - lo) / span } else { 0.0 })
        .collect();
    let mut chosen: Vec<usize> = Vec::with_capacity(k.min(n));
    let mut taken = vec![false; n];
    // max similarity of each candidate to the chosen ones, updated as items are picked
    let mut max_sim = vec![0f32; n];
    while chosen.len() < k.min(n) {
        let mut best: Option<(usize, f32)> = None;
        for i in (0..n).filter(|&i| !taken[i]) {
            let v = (1.0 - lambda) * rel[i] - lambda * max_sim[i];
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        let Some((pick, _)) = best else { break };
        taken[pick] = true;
        chosen.push(pick);
        for i in (0..n).filter(|&i| !taken[i]) {
            max_sim[i] = max_sim[i].max(sim(pick, i));
        }
    }
    chosen.extend((0..n).filter(|&i| !taken[i]));
    chosen
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// Intra-list diversity as the demo reports it: distinct categories / list length (items
/// without a category count as one category each); 0 for an empty list.
pub fn category_diversity(categories: &[Option<&str>]) -> f64 {
    if categories.is_empty() {
        return 0.0;
    }
    let mut seen = std::collections::HashSet::new();
    let distinct = categories
        .iter()
        .filter(|c| c.is_none_or(|c| seen.insert(c)))
        .count();
    distinct as f64 / categories.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_rises_with_lambda_on_a_category_fixture() {
        // GIVEN ten candidates best first: the six best are news, then sport, music, news, film
        let cats = [
            "news", "news", "news", "news", "news", "news", "sport", "music", "news", "film",
        ];
        let scores: Vec<f32> = (0..10).map(|i| 10.0 - i as f32).collect();
        let sim = |a: usize, b: usize| f32::from(cats[a] == cats[b]);
        // WHEN the top 5 is re-ranked with growing lambda
        let ild = |lambda: f32| {
            let order = mmr(&scores, lambda, 5, sim);
            let top: Vec<Option<&str>> = order[..5].iter().map(|&i| Some(cats[i])).collect();
            category_diversity(&top)
        };
        // THEN intra-list diversity never falls and rises from plain ranking to lambda 0.3
        let (d0, d3, d9) = (ild(0.0), ild(0.3), ild(0.9));
        assert_eq!(d0, 0.2);
        assert!(d3 > d0 && d9 >= d3, "{d0} {d3} {d9}");
        assert_eq!(d9, 0.8);
        // AND lambda 0 keeps the order; every index appears once
        assert_eq!(mmr(&scores, 0.0, 5, sim), (0..10).collect::<Vec<_>>());
        let mut o = mmr(&scores, 0.5, 5, sim);
        o.sort_unstable();
        assert_eq!(o, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn cosine_of_factor_rows() {
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}
