//! Warm starts: a fit that begins from the factors of an earlier fit instead of random ones.
//!
//! The train task fits a candidate on the older part of its window, then refits on the whole
//! window; the two matrices share most users, items and cells, so the candidate's factors
//! are already close to the refit's fixed point. Starting there, a few alternating iterations
//! reach the quality the cold fit reaches in its full count ([`AlsValidParams::warm_iterations`];
//! the test below measures both on the objective).
//!
//! Rows are matched by key (user and item ids); keys the earlier fit did not have (users and
//! items new in the newer events) start from the seeded random factors of a cold fit.

use std::collections::HashMap;

use super::*;

/// The factors of an earlier fit, with their keys (row-major, `factors` wide).
#[derive(Debug, Clone, Copy)]
pub struct WarmStart<'a> {
    /// User keys, one per row of `user_factors` (may be empty: items only).
    pub user_ids: &'a [String],
    /// User factors, `user_ids.len() × factors`.
    pub user_factors: &'a [f32],
    /// Item keys, one per row of `item_factors`.
    pub item_ids: &'a [String],
    /// Item factors, `item_ids.len() × factors`.
    pub item_factors: &'a [f32],
}

/// Overwrites the rows of `out` whose key has a row in `from` (same width `f`); returns how
/// many were copied.
fn copy_matching(
    out: &mut [f32],
    keys: &[String],
    from_keys: &[String],
    from: &[f32],
    f: usize,
) -> usize {
    let index: HashMap<&str, usize> = from_keys
        .iter()
        .enumerate()
        .map(|(r, k)| (k.as_str(), r))
        .collect();
    let mut copied = 0;
    for (row, key) in out.chunks_exact_mut(f).zip(keys) {
        if let Some(&r) = index.get(key.as_str()) {
            row.copy_from_slice(&from[r * f..(r + 1) * f]);
            copied += 1;
        }
    }
    copied
}

impl AlsValidParams {
    /// The iterations a warm-started refit runs: a third of the cold count, at least 2 (one
    /// alternation to absorb the new cells, one to settle), at most the cold count.
    pub fn warm_iterations(&self) -> usize {
        (self.0.iterations / 3).max(2).min(self.0.iterations)
    }

    /// Fits starting from `warm`'s factors where keys match (see the module docs), for
    /// [`Self::warm_iterations`] iterations; `progress(iteration)` as in
    /// [`Self::fit_with_progress`]. The warm factors must be `factors` wide.
    pub fn fit_warm(
        &self,
        data: &Interactions,
        warm: &WarmStart<'_>,
        progress: impl FnMut(usize),
    ) -> Result<AlsModel, ModelError> {
        let f = self.0.factors;
        let shape_ok = |ids: &[String], v: &[f32]| v.len() == ids.len() * f;
        if !shape_ok(warm.user_ids, warm.user_factors)
            || !shape_ok(warm.item_ids, warm.item_factors)
        {
            return Err(ModelError::Shape(format!(
                "warm-start factors do not match their ids at {f} factors"
            )));
        }
        if data.nnz() == 0 {
            return Err(ModelError::EmptyData);
        }
        let mut x = init_factors(data.n_users(), f, self.0.seed, 0);
        let mut y = init_factors(data.n_items(), f, self.0.seed, 1);
        copy_matching(&mut x, data.user_ids(), warm.user_ids, warm.user_factors, f);
        copy_matching(&mut y, data.item_ids(), warm.item_ids, warm.item_factors, f);
        self.fit_from(data, x, y, self.warm_iterations(), progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactions::InteractionsBuilder;

    /// 600 users in 8 taste groups over 240 items (30 per group); each user has about 20
    /// records, 80 % in their group; record `n` has time `n` (a seeded LCG decides the rest).
    fn records() -> Vec<(String, String, i64)> {
        let mut s = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 33) as usize
        };
        let mut out = Vec::new();
        for n in 0..12_000 {
            let u = next() % 600;
            let item = if next() % 10 < 8 {
                (u % 8) * 30 + next() % 30
            } else {
                next() % 240
            };
            out.push((format!("u{u}"), format!("i{item}"), n as i64));
        }
        out
    }

    fn matrix(rows: &[(String, String, i64)]) -> Interactions {
        let mut b = InteractionsBuilder::new();
        for (u, i, t) in rows {
            b.push(u, i, 1.0, *t);
        }
        b.build().unwrap()
    }

    /// The implicit-ALS objective: Σ c_ui (p_ui − x_u·y_i)² over every cell, plus
    /// λ (‖X‖² + ‖Y‖²).
    fn loss(m: &AlsModel, data: &Interactions) -> f64 {
        let f = m.factors;
        let mut total = 0.0f64;
        for u in 0..data.n_users() {
            let (items, _) = data.user_row(u as u32);
            let xu = &m.user_factors[u * f..(u + 1) * f];
            for (i, yi) in m.item_factors.chunks_exact(f).enumerate() {
                let s = f64::from(dot(xu, yi));
                let (p, c) = if items.binary_search(&(i as u32)).is_ok() {
                    (1.0, 1.0 + f64::from(m.alpha))
                } else {
                    (0.0, 1.0)
                };
                total += c * (p - s) * (p - s);
            }
        }
        let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
        total + f64::from(m.regularization) * (norm(&m.user_factors) + norm(&m.item_factors))
    }

    #[test]
    fn a_warm_refit_reaches_the_cold_fits_quality_in_a_third_of_the_iterations() {
        // GIVEN a candidate fitted on the older 90 % of the records, and the whole matrix
        let all = records();
        let older = matrix(&all[..all.len() * 9 / 10]);
        let whole = matrix(&all);
        let params = AlsParams::new()
            .factors(16)
            .regularization(1.0)
            .iterations(15)
            .check()
            .unwrap();
        let cand = params.fit(&older).unwrap();
        let warm = WarmStart {
            user_ids: older.user_ids(),
            user_factors: &cand.user_factors,
            item_ids: older.item_ids(),
            item_factors: &cand.item_factors,
        };
        // WHEN the whole matrix is fitted cold (15 iterations), cold with the warm count, and
        // warm from the candidate
        assert_eq!(params.warm_iterations(), 5);
        let mut warm_its = 0;
        let warm_fit = params.fit_warm(&whole, &warm, |it| warm_its = it).unwrap();
        let cold = params.fit(&whole).unwrap();
        let short = AlsParams::new()
            .factors(16)
            .regularization(1.0)
            .iterations(5)
            .check()
            .unwrap()
            .fit(&whole)
            .unwrap();
        let (l_warm, l_cold, l_short) = (
            loss(&warm_fit, &whole),
            loss(&cold, &whole),
            loss(&short, &whole),
        );
        // THEN the warm refit ran 5 iterations and is as good as the 15-iteration cold fit
        // (within 1 % of its objective), while a cold fit of 5 iterations is clearly worse
        assert_eq!(warm_its, 5);
        assert!(l_warm <= l_cold * 1.01, "warm {l_warm} vs cold {l_cold}");
        assert!(
            l_short > l_warm * 1.02,
            "short cold {l_short} vs warm {l_warm}"
        );
        // AND it recommends as well: the share of top-5 items from the user's own taste group
        // (what the data was drawn from) is the cold fit's, give or take 2 points
        let in_group = |m: &AlsModel| {
            let hits: usize = (0..whole.n_users() as u32)
                .map(|u| {
                    let group = whole.user_ids()[u as usize][1..].parse::<usize>().unwrap() % 8;
                    m.recommend(known_user(&whole, u), 5, true, &[])
                        .unwrap()
                        .iter()
                        .filter(|(i, _)| {
                            let item: usize = whole.item_ids()[*i as usize][1..].parse().unwrap();
                            item / 30 == group
                        })
                        .count()
                })
                .sum();
            hits as f64 / (5 * whole.n_users()) as f64
        };
        let (g_warm, g_cold) = (in_group(&warm_fit), in_group(&cold));
        assert!(g_warm >= g_cold - 0.02, "warm {g_warm} vs cold {g_cold}");
        assert!(g_cold > 0.5, "{g_cold}");
    }

    #[test]
    fn new_keys_start_cold_and_bad_shapes_are_refused() {
        // GIVEN a warm start that knows none of the matrix's keys
        let whole = matrix(&records());
        let params = AlsParams::new().factors(4).iterations(6).check().unwrap();
        let (uid, iid) = (vec!["nobody".to_string()], vec!["nothing".to_string()]);
        let warm = WarmStart {
            user_ids: &uid,
            user_factors: &[9.0; 4],
            item_ids: &iid,
            item_factors: &[9.0; 4],
        };
        // WHEN fitted warm THEN it equals a cold fit of the warm count (same seeded start)
        let w = params.fit_warm(&whole, &warm, |_| {}).unwrap();
        let cold = AlsParams::new().factors(4).iterations(2).check().unwrap();
        assert_eq!(w, cold.fit(&whole).unwrap());
        // AND factors of another width are refused
        let bad = WarmStart {
            item_factors: &[1.0; 3],
            ..warm
        };
        assert!(matches!(
            params.fit_warm(&whole, &bad, |_| {}),
            Err(ModelError::Shape(_))
        ));
    }
}
