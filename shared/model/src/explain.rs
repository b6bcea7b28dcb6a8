//! Explanations: which of a user's (or a visit's) items an answered item owes its place to.
//!
//! - Factor models (als, mf's item vectors): the seed items with the largest contribution
//!   `y_item · y_seed`, the item-item term of the score. This is the plain dot product, not
//!   Hu-Koren-Volinsky's `(YᵀCY + λI)⁻¹` weighted one: that needs a `k × k` solve per user,
//!   while the dot product costs `k` multiply-adds per seed.
//! - Item-kNN (similar lists): the seeds whose similar list holds the item, by similarity.
//!
//! Cost is bounded: at most [`MAX_SEEDS`] seeds (the newest) per answered item.

use crate::rank::ItemSide;

/// The most seed items considered (the newest).
pub const MAX_SEEDS: usize = 20;
/// The most items an explanation names.
pub const MAX_BECAUSE: usize = 3;

/// The seeds (rows, newest first; the first [`MAX_SEEDS`] considered) that led to `item`, best
/// first, at most [`MAX_BECAUSE`]; only seeds with a positive contribution. Empty when the
/// version has neither similar lists nor factors.
pub fn because(items: &ItemSide<'_>, seeds: &[u32], item: u32) -> Vec<u32> {
    let seeds = &seeds[..seeds.len().min(MAX_SEEDS)];
    let mut scored: Vec<(u32, f32)> = if let Some(sim) = items.similar {
        seeds
            .iter()
            .filter_map(|&s| {
                let list = sim.get(s as usize)?;
                list.iter().find(|&&(o, _)| o == item).map(|&(_, v)| (s, v))
            })
            .collect()
    } else if let Some(f) = items.factors {
        if item as usize >= f.rows() {
            return Vec::new();
        }
        let y = f.row(item as usize);
        seeds
            .iter()
            .filter(|&&s| (s as usize) < f.rows())
            .map(|&s| (s, y.iter().zip(f.row(s as usize)).map(|(a, b)| a * b).sum()))
            .collect()
    } else {
        return Vec::new();
    };
    scored.retain(|&(s, v)| v > 0.0 && s != item);
    // Stable: equal contributions keep the newer seed first.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out: Vec<u32> = Vec::with_capacity(MAX_BECAUSE);
    for (s, _) in scored {
        if !out.contains(&s) {
            out.push(s);
        }
        if out.len() == MAX_BECAUSE {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rank::{Factors, Prepared};

    #[test]
    fn factor_explanations_rank_seeds_by_their_dot_product() {
        // GIVEN 2-d factors: item 0 = x; seeds 1 (0.9x), 2 (y), 3 (0.5x), 4 (-x), 5 (0.7x)
        let f = Factors {
            dim: 2,
            data: vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.5, 0.5, -1.0, 0.0, 0.7, 0.0],
        };
        let prepared = Prepared::new(Some(&f), None);
        let side = ItemSide {
            factors: Some(&f),
            similar: None,
            popular: &[],
            prepared: &prepared,
        };
        // WHEN item 0 is explained THEN the three largest positive contributions, best first
        assert_eq!(because(&side, &[2, 3, 4, 1, 5], 0), vec![1, 5, 3]);
        // AND orthogonal or opposite seeds never explain
        assert!(because(&side, &[2, 4], 0).is_empty());
    }

    #[test]
    fn knn_explanations_name_the_seeds_whose_lists_hold_the_item() {
        // GIVEN similar lists: 0 → 3 (0.2); 1 → 3 (0.9); 2 → 4
        let sim = vec![
            vec![(3, 0.2)],
            vec![(3, 0.9)],
            vec![(4, 0.5)],
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
        assert_eq!(because(&side, &[0, 1, 2], 3), vec![1, 0]);
        assert_eq!(because(&side, &[0, 1], 4), Vec::<u32>::new());
        // AND only the newest MAX_SEEDS seeds are considered
        let mut seeds = vec![2u32; MAX_SEEDS];
        seeds.push(1);
        assert!(because(&side, &seeds, 3).is_empty());
    }
}
