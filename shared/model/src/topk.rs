//! Top-k selection over a dense score slice, with exclusions.
//!
//! Every algorithm scores all items into a `&[f32]` and calls [`top_k`]. Order: higher score
//! first, ties to the lower item index (refeval's rule). NaN and `-inf` scores are never
//! returned. Cost O(n log k) with a bounded heap, plus O(|excluded|).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Items that must not be returned.
#[derive(Debug, Clone, Copy, Default)]
pub enum Exclude<'a> {
    /// Nothing excluded.
    #[default]
    None,
    /// A sorted, deduplicated list of item indices.
    Sorted(&'a [u32]),
    /// A bitset: item `i` is excluded when bit `i % 64` of word `i / 64` is set.
    Bitset(&'a [u64]),
}

/// A scored candidate; `Ord` puts the *better* candidate first (greater).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand {
    score: f32,
    item: u32,
}

impl Eq for Cand {}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        // Scores are never NaN here.
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.item.cmp(&self.item))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `k` best `(item, score)` pairs of `scores`, best first, skipping excluded items and
/// NaN / `-inf` scores.
pub fn top_k(scores: &[f32], k: usize, exclude: Exclude<'_>) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    // Min-heap of the best k so far (Reverse order), so the root is the worst kept.
    let mut heap: BinaryHeap<std::cmp::Reverse<Cand>> = BinaryHeap::with_capacity(k + 1);
    let mut offer = |item: usize, s: f32| {
        if s.is_nan() || s == f32::NEG_INFINITY {
            return;
        }
        let c = Cand {
            score: s,
            item: item as u32,
        };
        if heap.len() < k {
            heap.push(std::cmp::Reverse(c));
        } else if let Some(worst) = heap.peek() {
            if c > worst.0 {
                heap.pop();
                heap.push(std::cmp::Reverse(c));
            }
        }
    };
    match exclude {
        Exclude::None => {
            for (i, &s) in scores.iter().enumerate() {
                offer(i, s);
            }
        }
        Exclude::Sorted(ex) => {
            let mut e = 0usize;
            for (i, &s) in scores.iter().enumerate() {
                while e < ex.len() && (ex[e] as usize) < i {
                    e += 1;
                }
                if e < ex.len() && ex[e] as usize == i {
                    continue;
                }
                offer(i, s);
            }
        }
        Exclude::Bitset(bits) => {
            for (i, &s) in scores.iter().enumerate() {
                let w = bits.get(i / 64).copied().unwrap_or(0);
                if w >> (i % 64) & 1 == 1 {
                    continue;
                }
                offer(i, s);
            }
        }
    }
    let mut out: Vec<Cand> = heap.into_iter().map(|r| r.0).collect();
    out.sort_unstable_by(|a, b| b.cmp(a));
    out.into_iter().map(|c| (c.item, c.score)).collect()
}

/// `scores[i] = y_i · x` over row-major factors; written so the compiler vectorises it.
pub fn dot_scores(factors: &[f32], dim: usize, x: &[f32], scores: &mut [f32]) {
    for (s, y) in scores.iter_mut().zip(factors.chunks_exact(dim)) {
        let mut acc = [0f32; 8];
        let mut yc = y.chunks_exact(8);
        let mut xc = x.chunks_exact(8);
        for (a, b) in (&mut yc).zip(&mut xc) {
            for k in 0..8 {
                acc[k] += a[k] * b[k];
            }
        }
        let mut t: f32 = acc.iter().sum();
        for (a, b) in yc.remainder().iter().zip(xc.remainder()) {
            t += a * b;
        }
        *s = t;
    }
}

/// Item factors quantised to `i8` per row (symmetric, scale = max |value| / 127), for a
/// first pass that reads a quarter of the bytes of the `f32` scan; the best candidates are
/// then re-scored exactly ([`QuantizedFactors::top_k_reranked`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedFactors {
    dim: usize,
    data: Vec<i8>,
    scale: Vec<f32>,
}

fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        out.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (q, v) in out.iter_mut().zip(row) {
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

impl QuantizedFactors {
    /// Quantises row-major `factors` of width `dim`.
    pub fn new(factors: &[f32], dim: usize) -> Self {
        let rows = factors.len() / dim.max(1);
        let mut data = vec![0i8; rows * dim];
        let scale = factors
            .chunks_exact(dim)
            .zip(data.chunks_exact_mut(dim))
            .map(|(r, q)| quantize_row(r, q))
            .collect();
        Self { dim, data, scale }
    }

    /// Approximate `scores[i] ≈ y_i · x`.
    pub fn approx_scores(&self, x: &[f32], scores: &mut [f32]) {
        self.scan_blocks(x, scores, |_, _| ());
    }

    /// The quantised scan in blocks of rows on the rayon pool (the scan is compute-bound per
    /// core, so the cores of a Lambda or of the dev server each take a share of the items);
    /// `then(first_row, block_scores)` runs on each block while its scores are in cache.
    fn scan_blocks<R: Send>(
        &self,
        x: &[f32],
        scores: &mut [f32],
        then: impl Fn(usize, &mut [f32]) -> R + Sync,
    ) -> Vec<R> {
        use rayon::prelude::*;
        let mut qx = vec![0i8; self.dim];
        let sx = quantize_row(x, &mut qx);
        let dim = self.dim;
        scores
            .par_chunks_mut(SCAN_BLOCK)
            .zip(self.data.par_chunks(SCAN_BLOCK * dim))
            .zip(self.scale.par_chunks(SCAN_BLOCK))
            .enumerate()
            .map(|(b, ((scores, data), scale))| {
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    unsafe { approx_scores_avx2(data, scale, dim, &qx, sx, scores) };
                    return then(b * SCAN_BLOCK, scores);
                }
                approx_scores_body(data, scale, dim, &qx, sx, scores);
                then(b * SCAN_BLOCK, scores)
            })
            .collect()
    }

    /// Top-`k` by the quantised scan, then exact re-ranking of the best `candidates` with the
    /// `f32` factors (the same matrix this was built from).
    pub fn top_k_reranked(
        &self,
        factors: &[f32],
        x: &[f32],
        k: usize,
        candidates: usize,
        exclude: Exclude<'_>,
        scores: &mut [f32],
    ) -> Vec<(u32, f32)> {
        let n = candidates.max(k);
        // Each block keeps its own best `n` (exclusions cut to the block), merged below.
        let per_block = self.scan_blocks(x, scores, |base, block| {
            let end = base + block.len();
            let found = match exclude {
                Exclude::None => top_k(block, n, Exclude::None),
                Exclude::Sorted(ex) => {
                    let lo = ex.partition_point(|&i| (i as usize) < base);
                    let hi = ex.partition_point(|&i| (i as usize) < end);
                    let local: Vec<u32> = ex[lo..hi].iter().map(|&i| i - base as u32).collect();
                    top_k(block, n, Exclude::Sorted(&local))
                }
                // SCAN_BLOCK is a multiple of 64, so a block starts on a word boundary.
                Exclude::Bitset(bits) => top_k(
                    block,
                    n,
                    Exclude::Bitset(bits.get(base / 64..).unwrap_or(&[])),
                ),
            };
            found
                .into_iter()
                .map(move |(i, s)| (i + base as u32, s))
                .collect::<Vec<_>>()
        });
        let mut cands: Vec<(u32, f32)> = per_block.into_iter().flatten().collect();
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        cands.truncate(n);
        let mut exact: Vec<(u32, f32)> = cands
            .into_iter()
            .map(|(i, _)| {
                let r = &factors[i as usize * self.dim..(i as usize + 1) * self.dim];
                (i, r.iter().zip(x).map(|(a, b)| a * b).sum())
            })
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        exact.truncate(k);
        exact
    }
}

/// Rows per block of the quantised scan (a multiple of 64, for bitset exclusions).
const SCAN_BLOCK: usize = 16 * 1024;

/// The quantised scan. `i8 × i8` products fit `i16`, which lets the compiler use the
/// multiply-add of pairs into `i32` (`pmaddwd`) once wider vectors are enabled.
#[inline(always)]
fn approx_scores_body(
    data: &[i8],
    scale: &[f32],
    dim: usize,
    qx: &[i8],
    sx: f32,
    scores: &mut [f32],
) {
    for ((s, q), sc) in scores.iter_mut().zip(data.chunks_exact(dim)).zip(scale) {
        let mut acc = [0i32; 16];
        let mut qc = q.chunks_exact(16);
        let mut xc = qx.chunks_exact(16);
        for (a, b) in (&mut qc).zip(&mut xc) {
            for k in 0..16 {
                acc[k] += i32::from(i16::from(a[k]) * i16::from(b[k]));
            }
        }
        let mut t: i32 = acc.iter().sum();
        for (a, b) in qc.remainder().iter().zip(xc.remainder()) {
            t += i32::from(*a) * i32::from(*b);
        }
        *s = t as f32 * sc * sx;
    }
}

/// [`approx_scores_body`] compiled with AVX2 (chosen at run time: the default x86_64 target
/// only has SSE2, which makes this scan compute-bound).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn approx_scores_avx2(
    data: &[i8],
    scale: &[f32],
    dim: usize,
    qx: &[i8],
    sx: f32,
    scores: &mut [f32],
) {
    approx_scores_body(data, scale, dim, qx, sx, scores)
}

/// Merges two sorted index lists into one sorted, deduplicated list.
pub fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) if x <= y => {
                i += 1;
                if x == y {
                    j += 1;
                }
                x
            }
            (Some(_), Some(&y)) => {
                j += 1;
                y
            }
            (Some(&x), None) => {
                i += 1;
                x
            }
            (None, Some(&y)) => {
                j += 1;
                y
            }
            (None, None) => unreachable!(),
        };
        if out.last() != Some(&next) {
            out.push(next);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_lower_index_and_exclusions_apply() {
        // GIVEN refeval's self-test case: scores [1,3,3,2], item 2 excluded
        let s = [1.0, 3.0, 3.0, 2.0];
        // WHEN asking for 3
        let r = top_k(&s, 3, Exclude::Sorted(&[2]));
        // THEN [1, 3, 0]
        assert_eq!(r, vec![(1, 3.0), (3, 2.0), (0, 1.0)]);
        // AND the bitset form agrees
        let bits = [1u64 << 2];
        assert_eq!(top_k(&s, 3, Exclude::Bitset(&bits)), r);
        // AND without exclusion the tie keeps index order
        let r = top_k(&s, 2, Exclude::None);
        assert_eq!(r, vec![(1, 3.0), (2, 3.0)]);
    }

    #[test]
    fn matches_full_sort_on_random_scores() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let n = rng.random_range(1..300);
            // few distinct values so ties are frequent
            let s: Vec<f32> = (0..n).map(|_| rng.random_range(0..20) as f32).collect();
            let ex: Vec<u32> = (0..n as u32).filter(|_| rng.random_bool(0.2)).collect();
            let k = rng.random_range(0..40);
            let mut all: Vec<(u32, f32)> = (0..n as u32)
                .filter(|i| ex.binary_search(i).is_err())
                .map(|i| (i, s[i as usize]))
                .collect();
            all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            all.truncate(k);
            assert_eq!(top_k(&s, k, Exclude::Sorted(&ex)), all);
        }
    }

    #[test]
    fn skips_nan_and_neg_inf() {
        let s = [f32::NAN, f32::NEG_INFINITY, 0.5];
        assert_eq!(top_k(&s, 3, Exclude::None), vec![(2, 0.5)]);
    }

    #[test]
    fn merge() {
        assert_eq!(merge_sorted(&[1, 3, 5], &[2, 3, 9]), vec![1, 2, 3, 5, 9]);
        assert_eq!(merge_sorted(&[], &[4]), vec![4]);
    }

    #[test]
    fn dot_scores_match_naive() {
        let dim = 13;
        let rows = 7;
        let f: Vec<f32> = (0..rows * dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let x: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut s = vec![0f32; rows];
        super::dot_scores(&f, dim, &x, &mut s);
        for r in 0..rows {
            let naive: f32 = (0..dim).map(|k| f[r * dim + k] * x[k]).sum();
            assert!((s[r] - naive).abs() < 1e-4);
        }
    }

    #[test]
    fn quantized_rerank_matches_exact_on_clear_winners() {
        // GIVEN 500 random items and a query, exact top-5
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let dim = 16;
        let f: Vec<f32> = (0..500 * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let x: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut s = vec![0f32; 500];
        super::dot_scores(&f, dim, &x, &mut s);
        let exact = top_k(&s, 5, Exclude::Sorted(&[3]));
        // WHEN ranking by the i8 scan with 50 candidates re-scored exactly
        let q = QuantizedFactors::new(&f, dim);
        let got = q.top_k_reranked(&f, &x, 5, 50, Exclude::Sorted(&[3]), &mut s);
        // THEN the same items in the same order, with exact scores
        let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&exact));
        for (a, b) in got.iter().zip(&exact) {
            assert!((a.1 - b.1).abs() < 1e-4);
        }
    }

    #[test]
    fn quantised_scan_is_the_same_on_every_code_path() {
        // GIVEN factors whose width is not a multiple of 16 (so the remainder loop runs too)
        let dim = 37;
        let f: Vec<f32> = (0..200 * dim)
            .map(|i| ((i * 7919 % 251) as f32 - 125.0) / 50.0)
            .collect();
        let x: Vec<f32> = (0..dim).map(|i| (i as f32 - 18.0) / 9.0).collect();
        let q = QuantizedFactors::new(&f, dim);
        // WHEN scored by the dispatching entry point and by the portable body
        let mut a = vec![0f32; 200];
        q.approx_scores(&x, &mut a);
        let mut qx = vec![0i8; dim];
        let sx = quantize_row(&x, &mut qx);
        let mut b = vec![0f32; 200];
        approx_scores_body(&q.data, &q.scale, dim, &qx, sx, &mut b);
        // THEN integer accumulation makes them identical, and close to the exact scores
        assert_eq!(a, b);
        let mut exact = vec![0f32; 200];
        dot_scores(&f, dim, &x, &mut exact);
        for (e, a) in exact.iter().zip(&a) {
            assert!((e - a).abs() < 0.2, "{e} vs {a}");
        }
    }

    #[test]
    fn quantised_rerank_spans_blocks_and_respects_exclusions() {
        // GIVEN 40,000 items (three scan blocks), where items i·1000 + 7 score 1 + i/100 and
        // the rest score near 0, and exclusions in several blocks
        let (n, dim) = (40_000usize, 8usize);
        let mut f = vec![0.01f32; n * dim];
        let winners: Vec<u32> = (0..40).map(|i| i * 1000 + 7).collect();
        for (rank, &w) in winners.iter().enumerate() {
            f[w as usize * dim] = 1.0 + rank as f32 / 100.0;
        }
        let x = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let q = QuantizedFactors::new(&f, dim);
        let excluded = vec![17_007u32, 20_007, 39_007];
        let mut scores = vec![0f32; n];
        // WHEN asking for the best 5, excluding three winners (two of them in later blocks)
        let got = q.top_k_reranked(&f, &x, 5, 50, Exclude::Sorted(&excluded), &mut scores);
        // THEN the exact answer: the best remaining winners, across blocks
        let ids: Vec<u32> = got.iter().map(|p| p.0).collect();
        assert_eq!(ids, vec![38_007, 37_007, 36_007, 35_007, 34_007]);
        // AND the bitset form agrees
        let mut bits = vec![0u64; n.div_ceil(64)];
        for &e in &excluded {
            bits[e as usize / 64] |= 1 << (e % 64);
        }
        let got_bits = q.top_k_reranked(&f, &x, 5, 50, Exclude::Bitset(&bits), &mut scores);
        assert_eq!(got_bits, got);
        // AND without exclusions the overall best comes first
        let all = q.top_k_reranked(&f, &x, 1, 50, Exclude::None, &mut scores);
        assert_eq!(all[0].0, 39_007);
    }
}
