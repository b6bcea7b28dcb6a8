//! The statistics of the online report: intervals for proportions, the comparison of a variant
//! with the control, the always-valid p-value for daily looks, and the sample-ratio-mismatch
//! check. Each function names its textbook formula; the tests compare them with `statsmodels`
//! and `scipy` values.
//!
//! Every figure is `None` where the formula is undefined (no observations, a zero rate in a
//! ratio), never NaN: the report serialises `None` as `null`.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// The two-sided 95 % normal quantile, Φ⁻¹(0.975).
pub const Z95: f64 = 1.959_963_984_540_054;

/// Sample-ratio-mismatch threshold: an assignment p-value below it flags the experiment (the
/// split does not match the declared weights, so its comparisons cannot be trusted).
pub const SRM_ALPHA: f64 = 0.001;

/// The mSPRT mixing variance τ² used by the report: τ = 0.01, i.e. the experiments are expected
/// to move a click-through rate by about one percentage point (Johari et al. advise matching τ
/// to the effect sizes one anticipates). A smaller τ is more sensitive to small effects late in
/// an experiment and less to large ones early.
pub const DEFAULT_MSPRT_TAU2: f64 = 1e-4;

/// A closed interval `[low, high]` (serialised as a two-element JSON array).
pub type Interval = [f64; 2];

/// Observations of a proportion: `successes` out of `trials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Successes (clicks, plays, …).
    pub successes: u64,
    /// Trials (impressions, clicks, …).
    pub trials: u64,
}

impl Counts {
    /// `successes` out of `trials`.
    pub fn new(successes: u64, trials: u64) -> Self {
        Self { successes, trials }
    }

    /// The observed rate, `None` without trials.
    pub fn rate(&self) -> Option<f64> {
        (self.trials > 0).then(|| self.successes as f64 / self.trials as f64)
    }
}

fn std_normal() -> Normal {
    Normal::standard()
}

/// Two-sided p-value of a standard normal statistic, 2·(1 − Φ(|z|)).
fn two_sided(z: f64) -> f64 {
    (2.0 * std_normal().sf(z.abs())).min(1.0)
}

/// Wilson score interval at 95 % for `k` successes out of `n` (Wilson 1927):
/// `(p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)`, z = [`Z95`].
///
/// `None` when `n = 0` (no observations say nothing; the report prints `null`). Unlike the
/// Wald interval it stays inside [0, 1] and is not degenerate at 0 or n successes.
pub fn wilson(c: Counts) -> Option<Interval> {
    if c.trials == 0 {
        return None;
    }
    let n = c.trials as f64;
    let p = (c.successes.min(c.trials)) as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some([(centre - half).max(0.0), (centre + half).min(1.0)])
}

/// Normal 95 % interval of a mean from `n` observations given their sum and sum of squares:
/// `x̄ ± z·s/√n` with the sample standard deviation `s` (n − 1). `None` below two
/// observations (no spread is known).
pub fn mean_interval(sum: f64, sum_sq: f64, n: u64) -> Option<Interval> {
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean = sum / nf;
    // Clamped: rounding can make the difference slightly negative for equal observations.
    let var = ((sum_sq - nf * mean * mean) / (nf - 1.0)).max(0.0);
    let half = Z95 * (var / nf).sqrt();
    Some([mean - half, mean + half])
}

/// A treatment compared with the control on one proportion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Absolute lift `p_t − p_c`.
    pub abs_lift: f64,
    /// 95 % Wald interval of the absolute lift with the unpooled standard error
    /// `√(p_t(1−p_t)/n_t + p_c(1−p_c)/n_c)`.
    pub abs_lift_ci: Interval,
    /// Relative lift `p_t/p_c − 1`; `None` when the control's rate is 0.
    pub rel_lift: Option<f64>,
    /// 95 % Katz log interval of the relative lift (the delta method on `ln(p_t/p_c)`:
    /// `exp(ln RR ± z·√(1/k_t − 1/n_t + 1/k_c − 1/n_c)) − 1`); `None` when either arm has no
    /// successes (the log is undefined).
    pub rel_lift_ci: Option<Interval>,
    /// Two-sided two-proportion z-test p-value with the pooled variance (see
    /// [`z_test_p_value`]).
    pub p_value: f64,
}

/// Compares `treatment` with `control` ([`Comparison`]); `None` when either arm has no trials.
pub fn compare(treatment: Counts, control: Counts) -> Option<Comparison> {
    let (pt, pc) = (treatment.rate()?, control.rate()?);
    let (nt, nc) = (treatment.trials as f64, control.trials as f64);
    let (pt, pc) = (pt.min(1.0), pc.min(1.0));
    let abs_lift = pt - pc;
    let se = (pt * (1.0 - pt) / nt + pc * (1.0 - pc) / nc).sqrt();
    let abs_lift_ci = [abs_lift - Z95 * se, abs_lift + Z95 * se];
    let rel_lift = (pc > 0.0).then(|| pt / pc - 1.0);
    let rel_lift_ci = (treatment.successes > 0 && control.successes > 0).then(|| {
        let (kt, kc) = (treatment.successes as f64, control.successes as f64);
        let ln_rr = (pt / pc).ln();
        let se = (1.0 / kt - 1.0 / nt + 1.0 / kc - 1.0 / nc).max(0.0).sqrt();
        [
            (ln_rr - Z95 * se).exp() - 1.0,
            (ln_rr + Z95 * se).exp() - 1.0,
        ]
    });
    Some(Comparison {
        abs_lift,
        abs_lift_ci,
        rel_lift,
        rel_lift_ci,
        p_value: z_test_p_value(treatment, control)?,
    })
}

/// Two-sided two-proportion z-test with the pooled variance (the score test of `statsmodels`'
/// `proportions_ztest`): `z = (p_t − p_c) / √(p̄(1−p̄)(1/n_t + 1/n_c))`, `p̄ = (k_t+k_c)/(n_t+n_c)`,
/// p = 2·(1 − Φ(|z|)).
///
/// `None` when either arm has no trials; 1 when the pooled variance is 0 (both arms all
/// successes or all failures: no difference was observed).
pub fn z_test_p_value(treatment: Counts, control: Counts) -> Option<f64> {
    let (pt, pc) = (treatment.rate()?, control.rate()?);
    let (nt, nc) = (treatment.trials as f64, control.trials as f64);
    let pooled = ((treatment.successes + control.successes) as f64 / (nt + nc)).min(1.0);
    let var = pooled * (1.0 - pooled) * (1.0 / nt + 1.0 / nc);
    if var <= 0.0 {
        return Some(1.0);
    }
    Some(two_sided((pt - pc) / var.sqrt()))
}

/// The mSPRT likelihood ratio with a normal mixing distribution N(0, τ²) over the difference
/// θ = p_t − p_c (Johari, Koomen, Pekelis & Walsh, "Peeking at A/B Tests", KDD 2017, and
/// "Always Valid Inference", Operations Research 2022):
/// `Λ = √(V/(V+τ²)) · exp(τ² θ̂² / (2V(V+τ²)))`, with θ̂ = p̂_t − p̂_c and V its unpooled
/// variance `p̂_t(1−p̂_t)/n_t + p̂_c(1−p̂_c)/n_c`.
///
/// `None` when either arm has no trials or V = 0 (no variation observed yet).
pub fn msprt_lambda(treatment: Counts, control: Counts, tau2: f64) -> Option<f64> {
    let (pt, pc) = (treatment.rate()?.min(1.0), control.rate()?.min(1.0));
    let v = pt * (1.0 - pt) / treatment.trials as f64 + pc * (1.0 - pc) / control.trials as f64;
    if v <= 0.0 || tau2.is_nan() || tau2 <= 0.0 {
        return None;
    }
    let theta = pt - pc;
    let log_lambda = 0.5 * (v / (v + tau2)).ln() + tau2 * theta * theta / (2.0 * v * (v + tau2));
    Some(log_lambda.exp())
}

/// The always-valid p-value of one look, `min(1, 1/Λ)` ([`msprt_lambda`]); 1 where Λ is
/// undefined (nothing observed yet is no evidence). Over a sequence of looks it must be made
/// monotone: use [`always_valid_p_values`].
pub fn always_valid_p_value(treatment: Counts, control: Counts, tau2: f64) -> f64 {
    msprt_lambda(treatment, control, tau2).map_or(1.0, |l| (1.0 / l).min(1.0))
}

/// Always-valid p-values over a sequence of looks at cumulative counts (e.g. one per day,
/// `(treatment, control)` so far): the running minimum of [`always_valid_p_value`], so that the
/// p-value of day d holds whatever was seen on any earlier day, and reading it every day does
/// not inflate false positives.
pub fn always_valid_p_values(looks: &[(Counts, Counts)], tau2: f64) -> Vec<f64> {
    let mut best = 1.0_f64;
    looks
        .iter()
        .map(|&(t, c)| {
            best = best.min(always_valid_p_value(t, c, tau2));
            best
        })
        .collect()
}

/// Sample-ratio-mismatch check: Pearson's chi-square goodness-of-fit of the assignment counts
/// against the declared weights, `χ² = Σ (o_i − e_i)² / e_i` with `e_i = N·w_i/Σw`, and its
/// p-value from the chi-square survival function with k − 1 degrees of freedom (as `scipy`'s
/// `chisquare(f_obs, f_exp)`).
///
/// `None` with fewer than two arms, no observations, or weights that are not all finite and
/// positive. Flag the experiment when the p-value is below [`SRM_ALPHA`] ([`srm_flagged`]).
pub fn srm_p_value(counts: &[u64], weights: &[f64]) -> Option<f64> {
    if counts.len() < 2 || counts.len() != weights.len() {
        return None;
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return None;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let wsum: f64 = weights.iter().sum();
    let stat: f64 = counts
        .iter()
        .zip(weights)
        .map(|(&o, &w)| {
            let e = total as f64 * w / wsum;
            (o as f64 - e).powi(2) / e
        })
        .sum();
    let dist = ChiSquared::new((counts.len() - 1) as f64).ok()?;
    Some(dist.sf(stat))
}

/// Whether an SRM p-value flags the experiment (below [`SRM_ALPHA`]).
pub fn srm_flagged(p_value: f64) -> bool {
    p_value < SRM_ALPHA
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Binomial, Distribution};

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tolerance {tol})");
    }

    // Reference values below: Python 3 with statsmodels 0.15.0, scipy 1.17.1 and numpy 2.4.6,
    // by the calls named in each test (all of them in scripts/online_stats_reference.py).

    #[test]
    fn z_test_matches_statsmodels_proportions_ztest() {
        // GIVEN three (k_t, n_t, k_c, n_c) cases and
        // statsmodels.stats.proportion.proportions_ztest(count=[k_t, k_c], nobs=[n_t, n_c])[1]
        let cases = [
            (120, 1000, 100, 1000, 0.1529177818639462),
            (45, 1500, 30, 1450, 0.10826472252032578),
            (7, 80, 2, 95, 0.047415594766812307),
        ];
        for (kt, nt, kc, nc, want) in cases {
            // WHEN the p-value is computed THEN it equals statsmodels' to 1e-6
            let got = z_test_p_value(Counts::new(kt, nt), Counts::new(kc, nc)).unwrap();
            close(got, want, 1e-6);
        }
        // AND degenerate inputs give no NaN
        assert_eq!(
            z_test_p_value(Counts::new(0, 10), Counts::new(0, 5)),
            Some(1.0)
        );
        assert_eq!(z_test_p_value(Counts::new(0, 0), Counts::new(0, 5)), None);
    }

    #[test]
    fn mean_interval_is_the_normal_interval_with_the_sample_deviation() {
        // 1, 2, 3: mean 2, s = 1, so 2 ± 1.96/√3
        let [lo, hi] = mean_interval(6.0, 14.0, 3).unwrap();
        let half = Z95 / 3f64.sqrt();
        assert!((lo - (2.0 - half)).abs() < 1e-12 && (hi - (2.0 + half)).abs() < 1e-12);
        assert_eq!(mean_interval(0.5, 0.25, 1), None);
        assert_eq!(mean_interval(1.0, 0.5, 2), Some([0.5, 0.5]));
    }

    #[test]
    fn wilson_matches_statsmodels_proportion_confint() {
        // GIVEN statsmodels.stats.proportion.proportion_confint(k, n, alpha=0.05,
        // method='wilson')
        let cases = [
            (120, 1000, 0.10129926060130912, 0.14160907584771276),
            (0, 10, 0.0, 0.27753279986288926),
            (10, 10, 0.7224672001371106, 1.0),
            (3, 7, 0.15821985525146964, 0.7495416354723428),
        ];
        for (k, n, lo, hi) in cases {
            let [l, h] = wilson(Counts::new(k, n)).unwrap();
            close(l, lo, 1e-9);
            close(h, hi, 1e-9);
        }
        // AND no observations give no interval
        assert_eq!(wilson(Counts::new(0, 0)), None);
    }

    #[test]
    fn lift_intervals_match_statsmodels_confint_proportions_2indep() {
        // GIVEN statsmodels.stats.proportion.confint_proportions_2indep(k_t, n_t, k_c, n_c,
        // method='wald', compare='diff') and (…, method='log', compare='ratio'); the ratio
        // interval minus 1 is the relative lift's
        let cases = [
            (
                120,
                1000,
                100,
                1000,
                [-0.007411481998019949, 0.04741148199801993],
                [0.9341057510629938, 1.541581344897308],
            ),
            (
                45,
                1500,
                30,
                1450,
                [-0.002012330410342572, 0.020633020065514984],
                [0.9187599992785728, 2.288410468077541],
            ),
            (
                7,
                80,
                2,
                95,
                [-0.0018704684220281625, 0.13476520526413344],
                [0.888293212757852, 19.446747779225674],
            ),
        ];
        for (kt, nt, kc, nc, diff, ratio) in cases {
            let c = compare(Counts::new(kt, nt), Counts::new(kc, nc)).unwrap();
            close(
                c.abs_lift,
                kt as f64 / nt as f64 - kc as f64 / nc as f64,
                1e-12,
            );
            close(c.abs_lift_ci[0], diff[0], 1e-9);
            close(c.abs_lift_ci[1], diff[1], 1e-9);
            let rr = (kt as f64 / nt as f64) / (kc as f64 / nc as f64);
            close(c.rel_lift.unwrap(), rr - 1.0, 1e-12);
            let ci = c.rel_lift_ci.unwrap();
            close(ci[0], ratio[0] - 1.0, 1e-9);
            close(ci[1], ratio[1] - 1.0, 1e-9);
        }
        // AND a control without clicks has no relative lift, and no interval
        let c = compare(Counts::new(3, 100), Counts::new(0, 100)).unwrap();
        assert_eq!((c.rel_lift, c.rel_lift_ci), (None, None));
        assert_eq!(compare(Counts::new(3, 100), Counts::new(0, 0)), None);
    }

    #[test]
    fn msprt_matches_a_numpy_computation_of_the_formula() {
        // GIVEN numpy: pt, pc = kt/nt, kc/nc; V = pt*(1-pt)/nt + pc*(1-pc)/nc; th = pt - pc;
        // L = np.sqrt(V/(V+tau2)) * np.exp(tau2*th**2/(2*V*(V+tau2))); p = min(1, 1/L)
        let cases = [
            (
                120,
                1000,
                100,
                1000,
                1e-4,
                1.1496265900244125,
                0.8698476606902115,
            ),
            (
                600,
                10000,
                500,
                10000,
                1e-4,
                23.993718998426818,
                0.04167757403783742,
            ),
            (45, 1500, 30, 1450, 1e-3, 0.6314858009819934, 1.0),
            (
                1300,
                20000,
                1000,
                20000,
                1e-4,
                82534049.53058615,
                1.2116211499223865e-08,
            ),
        ];
        for (kt, nt, kc, nc, tau2, lambda, p) in cases {
            let (t, c) = (Counts::new(kt, nt), Counts::new(kc, nc));
            let got = msprt_lambda(t, c, tau2).unwrap();
            close(got / lambda, 1.0, 1e-9);
            close(always_valid_p_value(t, c, tau2), p, 1e-12);
        }
    }

    #[test]
    fn always_valid_p_values_are_the_running_minimum_over_looks() {
        // GIVEN four cumulative daily looks; numpy per look (same formula, tau2 = 1e-4):
        // 1.0, 0.32265755932461104, 1.0, 0.010718676348240906
        let looks = [
            (Counts::new(50, 1000), Counts::new(40, 1000)),
            (Counts::new(110, 2000), Counts::new(80, 2000)),
            (Counts::new(150, 3000), Counts::new(130, 3000)),
            (Counts::new(230, 4000), Counts::new(160, 4000)),
        ];
        let got = always_valid_p_values(&looks, 1e-4);
        // THEN day 3 keeps day 2's evidence
        let want = [
            1.0,
            0.32265755932461104,
            0.32265755932461104,
            0.010718676348240906,
        ];
        for (g, w) in got.iter().zip(want) {
            close(*g, w, 1e-9);
        }
    }

    #[test]
    fn under_the_null_the_always_valid_p_value_keeps_its_level_while_daily_z_tests_do_not() {
        // GIVEN 500 A/A experiments (both arms CTR 5 %, 500 impressions per arm per day),
        // each looked at daily for 30 days
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let day = Binomial::new(500, 0.05).unwrap();
        let (runs, days) = (500, 30);
        let (mut msprt_rejects, mut naive_rejects) = (0, 0);
        for _ in 0..runs {
            let (mut t, mut c) = (Counts::default(), Counts::default());
            let mut looks = Vec::with_capacity(days);
            let mut naive = false;
            for _ in 0..days {
                t = Counts::new(t.successes + day.sample(&mut rng), t.trials + 500);
                c = Counts::new(c.successes + day.sample(&mut rng), c.trials + 500);
                looks.push((t, c));
                naive |= z_test_p_value(t, c).unwrap() < 0.05;
            }
            let p = always_valid_p_values(&looks, DEFAULT_MSPRT_TAU2);
            msprt_rejects += usize::from(p.iter().any(|&p| p < 0.05));
            naive_rejects += usize::from(naive);
        }
        // THEN the mSPRT rejects at any look in at most 5 % (+1 % tolerance) of the runs
        let (m, z) = (
            msprt_rejects as f64 / runs as f64,
            naive_rejects as f64 / runs as f64,
        );
        assert!(m <= 0.06, "mSPRT false positive rate {m}");
        // AND the naive daily z-test rejects far more often (numpy with the same design:
        // ≈ 0.30 against ≈ 0.016)
        assert!(z > 0.15 && z > 3.0 * m, "naive {z} vs mSPRT {m}");
    }

    #[test]
    fn srm_matches_scipy_chisquare() {
        // GIVEN scipy.stats.chisquare(f_obs, f_exp) with f_exp = N * w / sum(w)
        let cases: [(&[u64], &[f64], f64); 4] = [
            (&[5050, 4950], &[1.0, 1.0], 0.31731050786291115),
            (&[1000, 1100, 900], &[1.0, 1.0, 1.0], 4.539992976248486e-05),
            (
                &[480, 530, 7990],
                &[0.05, 0.05, 0.9],
                0.00014223574635373822,
            ),
            (&[5200, 4800], &[1.0, 1.0], 6.334248366623988e-05),
        ];
        for (obs, w, want) in cases {
            let got = srm_p_value(obs, w).unwrap();
            close(got, want, 1e-6);
            close(got / want, 1.0, 1e-6);
        }
        // THEN a 50.5/49.5 split passes and a 52/48 split of 10,000 is flagged
        assert!(!srm_flagged(
            srm_p_value(&[5050, 4950], &[1.0, 1.0]).unwrap()
        ));
        assert!(srm_flagged(
            srm_p_value(&[5200, 4800], &[1.0, 1.0]).unwrap()
        ));
        // AND nothing to test gives None
        assert_eq!(srm_p_value(&[0, 0], &[1.0, 1.0]), None);
        assert_eq!(srm_p_value(&[10], &[1.0]), None);
        assert_eq!(srm_p_value(&[10, 10], &[1.0, 0.0]), None);
    }
}
