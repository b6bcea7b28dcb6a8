//! Thompson sampling: experiments with `allocation = "thompson"` and the exploration rule
//! for new items, pure (the counts and the RNG are handed in).
//!
//! Each arm (a variant, or a new item) has a Beta(1 + clicks, 1 + impressions − clicks)
//! posterior on its click-through rate, from a uniform prior. Every request draws once from
//! each posterior and takes the highest draw, so an arm is chosen with the probability that
//! it is the best one (Thompson 1933; Chapelle & Li, "An Empirical Evaluation of Thompson
//! Sampling", NIPS 2011). Arms without data draw from the uniform prior and get shown; arms
//! that lose get fewer requests but never none. A request's variant is not sticky: the same
//! user can get another variant on the next request.
//!
//! The exploration rule (`explore = { slots = [3, 7], new_days = 7 }`) does the same over the
//! items first seen in the last `new_days` days, each by its own impressions and clicks, and
//! puts the winners in the given 1-based slots of a ranked list: new programmes get shown,
//! and the ones people click keep being shown (the Bayesian form of Personalize's exploration
//! weight).

use rand::Rng;
use rand_distr::{Beta, Distribution};

/// Impressions and clicks of an arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArmCounts {
    /// Times shown (or served, where the app reports no displays).
    pub impressions: u64,
    /// Times clicked (at most `impressions`; more is read as `impressions`).
    pub clicks: u64,
}

impl ArmCounts {
    /// `clicks` out of `impressions`.
    pub fn new(impressions: u64, clicks: u64) -> Self {
        Self {
            impressions,
            clicks,
        }
    }

    /// The Beta posterior's parameters `(1 + clicks, 1 + impressions − clicks)`.
    pub fn posterior(&self) -> (f64, f64) {
        let clicks = self.clicks.min(self.impressions);
        (
            1.0 + clicks as f64,
            1.0 + (self.impressions - clicks) as f64,
        )
    }
}

/// One draw from an arm's Beta posterior ([`ArmCounts::posterior`]).
pub fn draw<R: Rng + ?Sized>(counts: ArmCounts, rng: &mut R) -> f64 {
    let (a, b) = counts.posterior();
    // Both parameters are finite and ≥ 1, which Beta::new accepts; the fallback is the
    // posterior mean, never reached.
    Beta::new(a, b).map_or(a / (a + b), |d| d.sample(rng))
}

/// The arm with the highest posterior draw (the index into `arms`); `None` without arms.
pub fn thompson_pick<R: Rng + ?Sized>(arms: &[ArmCounts], rng: &mut R) -> Option<usize> {
    arms.iter()
        .map(|&c| draw(c, rng))
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// An experiment's `explore` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExploreRule {
    /// 1-based positions filled by exploration, e.g. `[3, 7]`.
    pub slots: Vec<usize>,
    /// Items first seen within this many days count as new.
    pub new_days: u32,
}

/// A candidate for exploration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewItem<'a> {
    /// The item id.
    pub id: &'a str,
    /// When the item was first seen (catalog or first event), ms UTC.
    pub first_seen_ms: i64,
    /// Its own impressions and clicks.
    pub counts: ArmCounts,
}

const DAY_MS: i64 = 86_400_000;

/// The items exploration puts in a list of `len` items: `(0-based position, item id)` in
/// ascending position. Candidates first seen within `rule.new_days` of `now_ms` and not
/// `excluded` (already in the list, already consumed, filtered by the endpoint's rules) are
/// ranked by one posterior draw each; the highest goes to the first slot. Slots beyond the
/// list, or beyond the number of new items, stay as ranked.
pub fn explore_picks<'a, R: Rng + ?Sized>(
    rule: &ExploreRule,
    candidates: &[NewItem<'a>],
    len: usize,
    now_ms: i64,
    excluded: impl Fn(&str) -> bool,
    rng: &mut R,
) -> Vec<(usize, &'a str)> {
    let mut slots: Vec<usize> = rule
        .slots
        .iter()
        .filter(|&&s| s >= 1 && s <= len)
        .map(|s| s - 1)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    if slots.is_empty() {
        return Vec::new();
    }
    let since = now_ms.saturating_sub(i64::from(rule.new_days).saturating_mul(DAY_MS));
    let mut draws: Vec<(f64, &'a str)> = candidates
        .iter()
        .filter(|c| c.first_seen_ms >= since && !excluded(c.id))
        .map(|c| (draw(c.counts, rng), c.id))
        .collect();
    draws.sort_by(|a, b| b.0.total_cmp(&a.0));
    slots
        .into_iter()
        .zip(draws)
        .map(|(slot, (_, id))| (slot, id))
        .collect()
}

/// Puts exploration picks into a ranked list: each pick is inserted at its position (in
/// ascending order, so each lands exactly there), and the list keeps its length (the ranked
/// items after it move down; the last ones drop off).
pub fn apply_exploration<T>(list: &mut Vec<T>, picks: impl IntoIterator<Item = (usize, T)>) {
    let len = list.len();
    for (pos, item) in picks {
        if pos < len {
            list.insert(pos, item);
        }
    }
    list.truncate(len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Serves `rounds` requests to arms with the given true CTRs by Thompson sampling, with
    /// counts that lag like the live ones (refreshed every `refresh` requests), and returns the
    /// share of the second half of the requests that went to each arm.
    fn simulate(ctrs: &[f64], rounds: usize, refresh: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut live = vec![ArmCounts::default(); ctrs.len()];
        let mut seen = live.clone();
        let mut late = vec![0usize; ctrs.len()];
        for round in 0..rounds {
            if round % refresh == 0 {
                seen.clone_from(&live);
            }
            let arm = thompson_pick(&seen, &mut rng).unwrap();
            live[arm].impressions += 1;
            live[arm].clicks += u64::from(rng.random_bool(ctrs[arm]));
            if round >= rounds / 2 {
                late[arm] += 1;
            }
        }
        late.iter()
            .map(|&n| n as f64 / (rounds - rounds / 2) as f64)
            .collect()
    }

    #[test]
    fn two_arms_send_over_80_percent_to_the_best_after_10000_requests() {
        // GIVEN arms with CTR 5 % and 7 %, counts refreshed every 100 requests, 5 seeds
        for seed in 0..5 {
            // WHEN 20,000 requests are served
            let share = simulate(&[0.05, 0.07], 20_000, 100, seed);
            // THEN requests 10,001–20,000 go over 80 % to the 7 % arm
            assert!(share[1] > 0.8, "seed {seed}: {share:?}");
        }
    }

    #[test]
    fn three_arms_send_over_80_percent_to_the_best_after_10000_requests() {
        // GIVEN arms with CTR 3 %, 5 % and 7 %, counts refreshed every 100 requests, 5 seeds
        for seed in 0..5 {
            let share = simulate(&[0.03, 0.05, 0.07], 20_000, 100, seed);
            // THEN requests 10,001–20,000 go over 80 % to the 7 % arm
            assert!(share[2] > 0.8, "seed {seed}: {share:?}");
        }
    }

    #[test]
    fn draws_follow_the_beta_posterior() {
        // GIVEN 20 clicks in 100 impressions: Beta(21, 81), mean 21/102, variance
        // ab/((a+b)²(a+b+1)) = 21·81/(102²·103)
        let c = ArmCounts::new(100, 20);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| draw(c, &mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // THEN the sample moments match (standard error of the mean ≈ 9e-5)
        assert!((mean - 21.0 / 102.0).abs() < 5e-4, "{mean}");
        let want = 21.0 * 81.0 / (102.0f64.powi(2) * 103.0);
        assert!((var / want - 1.0).abs() < 0.02, "{var} vs {want}");
        // AND clicks beyond impressions are read as impressions
        assert_eq!(ArmCounts::new(3, 5).posterior(), (4.0, 1.0));
        assert_eq!(thompson_pick(&[], &mut rng), None);
    }

    fn list() -> Vec<&'static str> {
        vec!["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10"]
    }

    const NOW: i64 = 1_795_000_000_000;

    #[test]
    fn new_items_without_data_are_shown_in_the_exploration_slots() {
        // GIVEN slots 3 and 7, new_days 7, two new items without data, an old item without
        // data (first seen 30 days ago) and a new item already in the list
        let rule = ExploreRule {
            slots: vec![7, 3],
            new_days: 7,
        };
        let cands = [
            NewItem {
                id: "old",
                first_seen_ms: NOW - 30 * DAY_MS,
                counts: ArmCounts::default(),
            },
            NewItem {
                id: "n1",
                first_seen_ms: NOW - DAY_MS,
                counts: ArmCounts::default(),
            },
            NewItem {
                id: "r5",
                first_seen_ms: NOW - DAY_MS,
                counts: ArmCounts::default(),
            },
            NewItem {
                id: "n2",
                first_seen_ms: NOW - 6 * DAY_MS,
                counts: ArmCounts::default(),
            },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut l = list();
        let in_list = list();
        let picks = explore_picks(
            &rule,
            &cands,
            l.len(),
            NOW,
            |id| in_list.contains(&id),
            &mut rng,
        );
        apply_exploration(&mut l, picks);
        // THEN both new items are shown, at positions 3 and 7, and the list keeps its length
        let mut shown = [l[2], l[6]];
        shown.sort_unstable();
        assert_eq!(shown, ["n1", "n2"]);
        assert_eq!(l.len(), 10);
        assert_eq!(&l[..2], ["r1", "r2"]);
        assert_eq!(&l[3..6], ["r3", "r4", "r5"]);
        assert_eq!(&l[7..], ["r6", "r7", "r8"]);
        // AND slots beyond a short list, or without enough new items, keep the ranked items
        let mut short = vec!["r1", "r2", "r3", "r4"];
        let one = [cands[1]];
        let picks = explore_picks(&rule, &one, short.len(), NOW, |_| false, &mut rng);
        apply_exploration(&mut short, picks);
        assert_eq!(short, ["r1", "r2", "n1", "r3"]);
    }

    #[test]
    fn an_item_without_data_beats_one_that_was_shown_a_lot_and_never_clicked() {
        // GIVEN one slot, a new item without data and one with 1000 impressions, no clicks
        let rule = ExploreRule {
            slots: vec![1],
            new_days: 7,
        };
        let cands = [
            NewItem {
                id: "cold",
                first_seen_ms: NOW,
                counts: ArmCounts::new(1000, 0),
            },
            NewItem {
                id: "fresh",
                first_seen_ms: NOW,
                counts: ArmCounts::default(),
            },
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let fresh = (0..1000)
            .filter(|_| explore_picks(&rule, &cands, 10, NOW, |_| false, &mut rng)[0].1 == "fresh")
            .count();
        // THEN the fresh item gets the slot almost always (P(U < Beta(1, 1001) draw) ≈ 0.1 %)
        assert!(fresh > 990, "{fresh}");
    }

    #[test]
    fn exploration_learns_which_new_item_is_clicked() {
        // GIVEN one slot and three new items with true CTR 2 %, 2 % and 10 %
        let rule = ExploreRule {
            slots: vec![1],
            new_days: 7,
        };
        let ids = ["a", "b", "c"];
        let ctr = [0.02, 0.02, 0.10];
        let mut counts = [ArmCounts::default(); 3];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut late_c = 0;
        // WHEN 4,000 requests are served with live counts
        for round in 0..4_000 {
            let cands: Vec<NewItem> = (0..3)
                .map(|i| NewItem {
                    id: ids[i],
                    first_seen_ms: NOW,
                    counts: counts[i],
                })
                .collect();
            let pick = explore_picks(&rule, &cands, 10, NOW, |_| false, &mut rng)[0].1;
            let i = ids.iter().position(|&id| id == pick).unwrap();
            counts[i].impressions += 1;
            counts[i].clicks += u64::from(rng.random_bool(ctr[i]));
            late_c += usize::from(round >= 2_000 && i == 2);
        }
        // THEN the last 2,000 show the 10 % item over 80 % of the time
        assert!(late_c > 1_600, "{late_c}");
    }
}
