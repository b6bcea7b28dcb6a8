//! Session recommendations: items for an anonymous visit from the items seen in it, newest
//! last. Each seen item votes for its similar items with a recency weight
//! [`SESSION_DECAY`]`^age` (age 0 = the newest item, 1 = the one before, …), and the votes are
//! summed: `score(j) = Σ_i 0.8^age(i) · sim(i, j)`.
//!
//! `sim` is what [`crate::rank::similar_to`] answers from: the version's similar lists when it
//! has them (item_knn; als/mf up to 50,000 items), else the item factors. With factors the sum
//! is one scan: `Σ_i w_i (y_i · y_j) = (Σ_i w_i y_i) · y_j`, so a session costs one scan
//! whatever its length.

use std::collections::HashMap;

use crate::rank::{scan, ItemSide, Scored};

/// The recency decay per position: the newest item weighs 1, the one before 0.8, then 0.64, …
pub const SESSION_DECAY: f32 = 0.8;

/// The most items a session request names.
pub const MAX_SESSION_ITEMS: usize = 50;

/// The recency weight of the item `age` positions before the newest.
pub fn recency_weight(age: usize) -> f32 {
    SESSION_DECAY.powi(age.min(i32::MAX as usize) as i32)
}

/// The top `n` rows for a session whose items (rows of this version) are `seen`, newest last;
/// `exclude` (sorted) is left out (the caller adds the session's own items). `None` when the
/// version has neither similar lists nor factors, or nothing is similar to the session.
pub fn rank_session(
    items: &ItemSide<'_>,
    seen: &[u32],
    exclude: &[u32],
    n: usize,
) -> Option<Vec<Scored>> {
    if seen.is_empty() {
        return None;
    }
    let weighted = seen
        .iter()
        .rev()
        .enumerate()
        .map(|(age, &r)| (r, recency_weight(age)));
    if let Some(sim) = items.similar {
        let mut acc: HashMap<u32, f32> = HashMap::new();
        for (r, w) in weighted {
            for &(o, s) in sim.get(r as usize).into_iter().flatten() {
                *acc.entry(o).or_default() += w * s;
            }
        }
        let mut v: Vec<Scored> = acc
            .into_iter()
            .filter(|(r, _)| exclude.binary_search(r).is_err())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        return Some(v);
    }
    let f = items.factors?;
    let mut x = vec![0f32; f.dim];
    let mut any = false;
    for (r, w) in weighted.filter(|&(r, _)| (r as usize) < f.rows()) {
        for (a, b) in x.iter_mut().zip(f.row(r as usize)) {
            *a += w * b;
        }
        any = true;
    }
    any.then(|| scan(f, items.prepared, &x, n, exclude))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::{Factors, Prepared};

    #[test]
    fn recency_weights_decay_from_the_newest_item() {
        assert_eq!(recency_weight(0), 1.0);
        assert!((recency_weight(2) - 0.64).abs() < 1e-6);
    }

    #[test]
    fn similar_lists_are_summed_with_recency_weights() {
        // GIVEN items 0..4: 0 is like 2 (0.5), 1 is like 3 (0.5), both like 4 (0.1)
        let sim = vec![
            vec![(2, 0.5), (4, 0.1)],
            vec![(3, 0.5), (4, 0.1)],
            vec![],
            vec![],
            vec![],
        ];
        let prepared = Prepared::new(None, None);
        let side = ItemSide {
            factors: None,
            similar: Some(&sim),
            popular: &[],
            prepared: &prepared,
        };
        // WHEN the session saw 0 then 1 (1 is the newest)
        let v = rank_session(&side, &[0, 1], &[0, 1], 10).unwrap();
        // THEN 1's neighbour leads (weight 1 vs 0.8) and 4 sums both votes
        assert_eq!(v[0], (3, 0.5));
        assert!((v[1].1 - 0.4).abs() < 1e-6 && v[1].0 == 2);
        assert!((v[2].1 - 0.18).abs() < 1e-6 && v[2].0 == 4);
        // AND the reverse order flips the lead; exclusions hold; nothing similar is None
        assert_eq!(rank_session(&side, &[1, 0], &[0, 1], 1).unwrap()[0].0, 2);
        assert_eq!(rank_session(&side, &[0], &[2, 4], 5), None);
        assert_eq!(rank_session(&side, &[], &[], 5), None);
    }

    #[test]
    fn factors_score_the_weighted_sum_vector() {
        // GIVEN 2-d factors: 0 = x, 1 = y, 2 = mostly x, 3 = mostly y
        let f = Factors {
            dim: 2,
            data: vec![1.0, 0.0, 0.0, 1.0, 0.9, 0.1, 0.1, 0.9],
        };
        let prepared = Prepared::new(Some(&f), None);
        let side = ItemSide {
            factors: Some(&f),
            similar: None,
            popular: &[],
            prepared: &prepared,
        };
        // WHEN the newest item is 1 (y) after 0 (x)
        let v = rank_session(&side, &[0, 1], &[0, 1], 2).unwrap();
        // THEN the y-like item leads with score (0.8·x + y)·item
        assert_eq!(v[0].0, 3);
        assert!((v[0].1 - (0.8 * 0.1 + 0.9)).abs() < 1e-5);
    }
}
