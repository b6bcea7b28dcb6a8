//! A 2-bit first pass for large catalogues: every item factor is coded on four levels
//! (`±0.5d`, `±1.5d`, `d` the row's root mean square, thresholds at `0` and `±d`), the query
//! on `i8`; the scan keeps the best `pool` approximate scores and those are re-scored exactly
//! with the `f32` factors.
//!
//! Why 2 bits: the scan reads 16 bytes per 64 factors, so 100 k × 64 (1.6 MB) stays in L2
//! and 1 M × 64 (16 MB) in L3, where the `i8` pass (4× the bytes) streams from memory. The
//! coarse score is correlated at about 0.97 with the exact one on factors with no structure
//! (the worst case), so the exact top 10 lies far inside a pool of a few hundred to a few
//! thousand (see [`pool_for`]); the bench measures the agreement (`nectar bench topk
//! --exact-check`).
//!
//! Layout: rows are padded to a multiple of 64 factors, and stored in groups of four rows;
//! for each 64-factor block a group holds 64 bytes, row `r`'s 16 bytes at `16r`, where byte
//! `j` carries factor `j + 16p` of the block in bits `2p..2p+2`. One 512-bit load is then
//! four rows × 64 codes, split into four planes by a shift and a mask, each multiplied with
//! the query's 16 matching factors broadcast to the four rows (`vpdpbusd`).

use super::{Best, Exclude};

/// Rows scored per block before their scores are offered (64 KiB of scores, in L2).
const BLOCK: usize = 16 * 1024;

/// The candidate pool re-scored exactly for a top-`k` out of `rows` items: large enough that
/// the coarse pass keeps the exact top 10 for at least 99 % of queries on unstructured
/// factors up to 1 M items (measured by `nectar bench topk --exact-check`).
pub fn pool_for(k: usize, rows: usize) -> usize {
    // The pool's share of the catalogue may shrink as it grows: the exact winners stand
    // further out of the crowd in a larger catalogue.
    let base = if rows <= 200_000 { 300 } else { 1_500 };
    (k * 10).max(base).min(rows)
}

/// Item factors coded on 2 bits, see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct CoarseFactors {
    dim: usize,
    /// 64-factor blocks per row.
    blocks: usize,
    rows: usize,
    /// Groups of four rows × blocks × 64 bytes.
    codes: Vec<u8>,
    /// Per row: `d` (the level step).
    step: Vec<f32>,
}

/// The query: `i8` values padded to the blocks, their scale and sum.
struct Query {
    q: Vec<i8>,
    scale: f32,
    sum: i32,
}

impl CoarseFactors {
    /// Codes row-major `factors` of width `dim`.
    pub fn new(factors: &[f32], dim: usize) -> Self {
        let dim = dim.max(1);
        let blocks = dim.div_ceil(64);
        let rows = factors.len() / dim;
        let groups = rows.div_ceil(4);
        let mut codes = vec![0u8; groups * blocks * 64];
        let mut step = Vec::with_capacity(rows);
        for (r, row) in factors.chunks_exact(dim).enumerate() {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
            let d = if ms.is_finite() { ms.sqrt() } else { 0.0 };
            step.push(d);
            let (g, lane) = (r / 4, r % 4);
            for (i, &v) in row.iter().enumerate() {
                let c: u8 = if d == 0.0 || !v.is_finite() {
                    // Both middle levels: a zero row scores 0 whatever it holds.
                    1
                } else if v < -d {
                    0
                } else if v < 0.0 {
                    1
                } else if v < d {
                    2
                } else {
                    3
                };
                let (b, f) = (i / 64, i % 64);
                let (p, j) = (f / 16, f % 16);
                codes[(g * blocks + b) * 64 + lane * 16 + j] |= c << (2 * p);
            }
        }
        Self {
            dim,
            blocks,
            rows,
            codes,
            step,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn query(&self, x: &[f32]) -> Query {
        let mut q = vec![0i8; self.blocks * 64];
        let x = &x[..self.dim.min(x.len())];
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            0.0
        };
        if scale > 0.0 {
            for (o, v) in q.iter_mut().zip(x) {
                *o = (v / scale).round().clamp(-127.0, 127.0) as i8;
            }
        }
        let sum = q.iter().map(|&v| i32::from(v)).sum();
        Query { q, scale, sum }
    }

    /// Approximate `scores[i] ≈ y_i · x` for rows `first..first + scores.len()` (`first` a
    /// multiple of 4).
    fn scan(&self, x: &Query, first: usize, scores: &mut [f32]) {
        debug_assert_eq!(first % 4, 0);
        let n = scores.len().min(self.rows.saturating_sub(first));
        let scores = &mut scores[..n];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                // SAFETY: the CPU has AVX-512 F/BW/VNNI, checked just above.
                unsafe { x86::scan_avx512(self, x, first, scores) };
                return;
            }
        }
        self.scan_portable(x, first, scores)
    }

    /// The integer dot product of row `r` with the query.
    fn dot_row(&self, x: &Query, r: usize) -> i32 {
        let (g, lane) = (r / 4, r % 4);
        let mut acc = 0i32;
        for b in 0..self.blocks {
            let bytes = &self.codes[(g * self.blocks + b) * 64 + lane * 16..][..16];
            for p in 0..4 {
                for (j, &byte) in bytes.iter().enumerate() {
                    let c = i32::from(byte >> (2 * p) & 3);
                    acc += c * i32::from(x.q[b * 64 + p * 16 + j]);
                }
            }
        }
        acc
    }

    #[inline]
    fn to_score(&self, x: &Query, r: usize, dot: i32) -> f32 {
        // Σ (c − 1.5)·d·q·s = d·s·(Σ c·q − 1.5 Σ q)
        (dot as f32 - 1.5 * x.sum as f32) * (self.step[r] * x.scale)
    }

    fn scan_portable(&self, x: &Query, first: usize, scores: &mut [f32]) {
        for (i, s) in scores.iter_mut().enumerate() {
            let r = first + i;
            *s = self.to_score(x, r, self.dot_row(x, r));
        }
    }

    /// The best `pool` rows by the coarse scan (excluded rows left out), re-scored exactly
    /// with `factors` (the matrix this was built from); the best `k` of them, best first, ties
    /// to the lower row. `scores` is scratch space of any length.
    pub fn top_k_reranked(
        &self,
        factors: &[f32],
        x: &[f32],
        k: usize,
        pool: usize,
        exclude: Exclude<'_>,
        scores: &mut Vec<f32>,
    ) -> Vec<(u32, f32)> {
        if k == 0 || self.rows == 0 {
            return Vec::new();
        }
        let q = self.query(x);
        scores.resize(BLOCK.min(self.rows), 0.0);
        let mut best = Best::new(pool.max(k));
        for first in (0..self.rows).step_by(BLOCK) {
            let n = BLOCK.min(self.rows - first);
            self.scan(&q, first, &mut scores[..n]);
            best.offer_block(first, &scores[..n], exclude);
        }
        let cands = best.into_sorted();
        // The pool's rows are scattered over the f32 matrix (out of cache on a large
        // catalogue): ask for all of them before the first is needed, so the misses overlap.
        #[cfg(target_arch = "x86_64")]
        for &(i, _) in &cands {
            let row = &factors[i as usize * self.dim..(i as usize + 1) * self.dim];
            for line in row.chunks(16) {
                // SAFETY: a prefetch of an address inside `factors` (it reads nothing).
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        line.as_ptr().cast(),
                    )
                };
            }
        }
        let mut exact: Vec<(u32, f32)> = cands
            .into_iter()
            .map(|(i, _)| {
                let r = &factors[i as usize * self.dim..(i as usize + 1) * self.dim];
                (i, exact_dot(r, x))
            })
            .collect();
        exact.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        exact.truncate(k);
        exact
    }
}

/// `y · x` in the order [`super::dot_scores`] sums, so a re-scored item has the score the
/// exact scan gives it.
fn exact_dot(y: &[f32], x: &[f32]) -> f32 {
    let mut s = [0f32];
    super::dot_scores(y, y.len(), x, &mut s);
    s[0]
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CoarseFactors, Query};
    use std::arch::x86_64::*;

    /// Sixteen rows (four groups) per step: per group and block, one load and four planes
    /// multiplied into one accumulator of four rows × four partial sums; the partial sums
    /// are folded within each 128-bit lane and the sixteen rows' sums gathered into one
    /// vector, turned into scores in one go.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn scan_avx512(
        c: &CoarseFactors,
        x: &Query,
        first: usize,
        scores: &mut [f32],
    ) {
        let blocks = c.blocks;
        // The query's 16 factors of plane p of block b, broadcast to the four rows.
        let xs: Vec<__m512i> = (0..blocks * 4)
            .map(|i| {
                // SAFETY: q holds blocks × 64 values; i·16 + 16 ≤ that.
                let v = unsafe { _mm_loadu_si128(x.q.as_ptr().add(i * 16).cast()) };
                _mm512_broadcast_i32x4(v)
            })
            .collect();
        let three = _mm512_set1_epi8(3);
        let sx = _mm512_set1_ps(x.scale);
        let off = _mm512_set1_ps(1.5 * x.sum as f32);
        // Output slot 4·lane + group ← row 4·group + lane: put rows back in order.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let n = scores.len();
        let full = n / 16 * 16;
        let base = c.codes.as_ptr();
        for i in (0..full).step_by(16) {
            let g0 = (first + i) / 4;
            let mut sums = _mm512_setzero_si512();
            for g in 0..4 {
                let mut acc = _mm512_setzero_si512();
                for b in 0..blocks {
                    // SAFETY: rows first + i .. + 16 exist, so their groups' codes do.
                    let v = unsafe {
                        _mm512_loadu_si512(base.add(((g0 + g) * blocks + b) * 64).cast())
                    };
                    let p0 = _mm512_and_si512(v, three);
                    let p1 = _mm512_and_si512(_mm512_srli_epi16::<2>(v), three);
                    let p2 = _mm512_and_si512(_mm512_srli_epi16::<4>(v), three);
                    let p3 = _mm512_and_si512(_mm512_srli_epi16::<6>(v), three);
                    acc = _mm512_dpbusd_epi32(acc, p0, xs[b * 4]);
                    acc = _mm512_dpbusd_epi32(acc, p1, xs[b * 4 + 1]);
                    acc = _mm512_dpbusd_epi32(acc, p2, xs[b * 4 + 2]);
                    acc = _mm512_dpbusd_epi32(acc, p3, xs[b * 4 + 3]);
                }
                // Fold each lane's four sums: every element then holds its lane's total.
                acc = _mm512_add_epi32(acc, _mm512_shuffle_epi32::<0b10_11_00_01>(acc));
                acc = _mm512_add_epi32(acc, _mm512_shuffle_epi32::<0b01_00_11_10>(acc));
                // Keep element g of each lane: slot 4·lane + g.
                let keep: __mmask16 = 0x1111 << g;
                sums = _mm512_mask_mov_epi32(sums, keep, acc);
            }
            let sums = _mm512_permutexvar_epi32(order, sums);
            // SAFETY: rows first + i .. + 16 have steps and scores (i + 16 ≤ n).
            unsafe {
                let step = _mm512_loadu_ps(c.step.as_ptr().add(first + i));
                let v = _mm512_sub_ps(_mm512_cvtepi32_ps(sums), off);
                let out = _mm512_mul_ps(v, _mm512_mul_ps(step, sx));
                _mm512_storeu_ps(scores.as_mut_ptr().add(i), out);
            }
        }
        for (i, s) in scores.iter_mut().enumerate().skip(full) {
            let r = first + i;
            *s = c.to_score(x, r, c.dot_row(x, r));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topk::{dot_scores, top_k};
    use rand::{Rng, SeedableRng};

    fn random(rows: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let f = (0..rows * dim)
            .map(|_| rng.random_range(-1.0..1.0f32) * 0.3)
            .collect();
        let x = (0..dim).map(|_| rng.random_range(-1.0..1.0f32)).collect();
        (f, x)
    }

    #[test]
    fn every_code_path_gives_the_same_coarse_scores_close_to_the_exact_ones() {
        // GIVEN widths that are not multiples of 64 and row counts that are not of 16
        for (rows, dim) in [(203usize, 37usize), (100, 64), (77, 130)] {
            let (f, x) = random(rows, dim, 5);
            let c = CoarseFactors::new(&f, dim);
            let q = c.query(&x);
            // WHEN scored by the dispatching scan and the portable one, from row 0 and 4
            let mut a = vec![0f32; rows];
            c.scan(&q, 0, &mut a);
            let mut b = vec![0f32; rows];
            c.scan_portable(&q, 0, &mut b);
            // THEN integer accumulation makes them identical
            assert_eq!(a, b, "{rows}×{dim}");
            let mut a4 = vec![0f32; rows - 4];
            c.scan(&q, 4, &mut a4);
            assert_eq!(a4, b[4..]);
            // AND correlated with the exact scores (2 bits: about 0.97 on uniform factors)
            let mut e = vec![0f32; rows];
            dot_scores(&f, dim, &x, &mut e);
            let corr = correlation(&a, &e);
            assert!(corr > 0.93, "{rows}×{dim}: correlation {corr}");
        }
    }

    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (
            a.iter().map(|&v| f64::from(v)).sum::<f64>() / n,
            b.iter().map(|&v| f64::from(v)).sum::<f64>() / n,
        );
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa * bb).sqrt()
    }

    #[test]
    fn reranked_top_10_equals_the_exact_one_on_random_factors() {
        // GIVEN 50,000 unstructured items × 64 (the coarse pass's worst case: no clear
        // winners), 200 queries, 100 excluded items each
        let (rows, dim) = (50_000usize, 64usize);
        let (f, _) = random(rows, dim, 11);
        let c = CoarseFactors::new(&f, dim);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let mut exact_scores = vec![0f32; rows];
        let mut scratch = Vec::new();
        let mut same = 0;
        for _ in 0..200 {
            let x: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut ex: Vec<u32> = (0..100).map(|_| rng.random_range(0..rows as u32)).collect();
            ex.sort_unstable();
            ex.dedup();
            dot_scores(&f, dim, &x, &mut exact_scores);
            let exact = top_k(&exact_scores, 10, Exclude::Sorted(&ex));
            // WHEN ranked by the coarse pass and the exact re-score of its pool
            let got = c.top_k_reranked(
                &f,
                &x,
                10,
                pool_for(10, rows),
                Exclude::Sorted(&ex),
                &mut scratch,
            );
            // THEN the exact scores of the items it returns are the exact scan's
            for (i, s) in &got {
                assert_eq!(*s, exact_scores[*i as usize]);
                assert!(ex.binary_search(i).is_err(), "excluded {i} returned");
            }
            same += usize::from(got == exact);
        }
        // AND the same top 10 for at least 99 % of the queries. Why it can differ at all:
        // an exact winner whose coarse score falls below the pool's floor; with a
        // correlation of 0.97 the winners sit about 5 standard deviations of the coarse
        // error above that floor, so a miss is rare but not impossible.
        assert!(same >= 198, "{same}/200 equal");
    }

    #[test]
    fn exclusions_and_ties_follow_the_exact_rules() {
        // GIVEN 20 identical items and one better one (its coarse score is lower: all 2-bit
        // codes of a flat row sit on the top level), a pool that holds them all
        let dim = 8;
        let mut f = vec![0.5f32; 21 * dim];
        f[7 * dim] = 0.9;
        let x = vec![1.0f32; dim];
        let c = CoarseFactors::new(&f, dim);
        let mut scratch = Vec::new();
        // WHEN the better one is excluded THEN the ties come back in row order
        let got = c.top_k_reranked(&f, &x, 3, 30, Exclude::Sorted(&[7]), &mut scratch);
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        // AND without exclusions it comes first; the bitset form agrees
        let got = c.top_k_reranked(&f, &x, 1, 30, Exclude::None, &mut scratch);
        assert_eq!(got[0].0, 7);
        let bits = [1u64 << 7];
        let got = c.top_k_reranked(&f, &x, 1, 30, Exclude::Bitset(&bits), &mut scratch);
        assert_eq!(got[0].0, 0);
    }
}
