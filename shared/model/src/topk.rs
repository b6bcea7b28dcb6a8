//! Top-k selection over a dense score slice, with exclusions.
//!
//! Every algorithm scores all items into a `&[f32]` and calls [`top_k`]. Order: higher score
//! first, ties to the lower item index (refeval's rule). NaN and `-inf` scores are never
//! returned. Cost O(n) (a buffer of 2k cut back by linear-time selection), plus O(|excluded|).

pub mod coarse;

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

/// A candidate as one integer whose ascending order is the ranking: the score's bits mapped
/// to an order-preserving `u32` and inverted (higher score first) in the high half, the item
/// in the low half (lower item first on equal scores). Selecting and sorting plain `u64`s is
/// branch-free, where comparing `(f32, u32)` pairs was most of a large pool's cost.
type Key = u64;

fn key(score: f32, item: u32) -> Key {
    // `+ 0.0` turns -0 into +0: they compare equal as floats, so they must as keys.
    let bits = (score + 0.0).to_bits();
    let ord = if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    };
    (u64::from(!ord) << 32) | u64::from(item)
}

fn unkey(k: Key) -> (u32, f32) {
    let ord = !((k >> 32) as u32);
    let bits = if ord & 0x8000_0000 != 0 {
        ord & 0x7fff_ffff
    } else {
        !ord
    };
    (k as u32, f32::from_bits(bits))
}

/// The best `k` candidates seen so far, offered in increasing item order (so an equal
/// score never displaces a kept one: ties go to the lower index).
///
/// Candidates that beat the floor are appended to a buffer of `2k`; a full buffer is cut
/// back to its best `k` with one linear-time selection, which raises the floor. On scores in
/// no particular order that is a few hundred appends and a handful of selections per scan,
/// where a binary heap paid a pop and a push (O(log k) each) per improving score.
struct Best {
    buf: Vec<Key>,
    k: usize,
    /// A score must beat it to get in: `-inf` until `k` are kept (which also keeps NaN and
    /// `-inf` out: they beat nothing), then the worst kept score.
    floor: f32,
}

impl Best {
    fn new(k: usize) -> Self {
        Self {
            buf: Vec::with_capacity(2 * k),
            k,
            floor: f32::NEG_INFINITY,
        }
    }

    #[inline]
    fn offer(&mut self, item: usize, s: f32) {
        if s > self.floor {
            self.push(item, s);
        }
    }

    /// Appends a candidate that beat the floor when it was checked (a cut in between may
    /// have raised it: the next cut or the final sort drops it then).
    #[inline]
    fn push(&mut self, item: usize, s: f32) {
        self.buf.push(key(s, item as u32));
        if self.buf.len() >= 2 * self.k {
            self.cut();
        }
    }

    /// Keeps the best `k` of the buffer; their worst score becomes the floor.
    fn cut(&mut self) {
        let k = self.k;
        self.buf.select_nth_unstable(k - 1);
        self.buf.truncate(k);
        // The selection put the k-th best at k - 1: the worst kept one.
        self.floor = unkey(self.buf[k - 1]).1;
    }

    /// Offers `scores[i]` as item `base + i`. Per run of 16: one vector compare with the
    /// floor gives the mask of scores that beat it (usually none), and only those are
    /// appended, without a branch per score.
    #[inline]
    fn offer_run(&mut self, base: usize, scores: &[f32]) {
        let mut chunks = scores.chunks_exact(16);
        for (c, chunk) in (&mut chunks).enumerate() {
            let floor = self.floor;
            let mut mask = chunk
                .iter()
                .enumerate()
                .fold(0u32, |m, (j, &v)| m | (u32::from(v > floor) << j));
            let at = base + c * 16;
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                self.push(at + j, chunk[j]);
            }
        }
        let at = base + scores.len() - chunks.remainder().len();
        for (j, &s) in chunks.remainder().iter().enumerate() {
            self.offer(at + j, s);
        }
    }

    fn into_sorted(mut self) -> Vec<(u32, f32)> {
        self.buf.sort_unstable();
        self.buf.truncate(self.k);
        self.buf.into_iter().map(unkey).collect()
    }
}

/// The `k` best `(item, score)` pairs of `scores`, best first, skipping excluded items and
/// NaN / `-inf` scores. Once `k` are kept, runs of scores below the worst kept one are
/// skipped a vector at a time, so the usual cost is one pass of compares.
pub fn top_k(scores: &[f32], k: usize, exclude: Exclude<'_>) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut best = Best::new(k);
    best.offer_block(0, scores, exclude);
    best.into_sorted()
}

impl Best {
    /// Offers `scores[i]` as item `base + i`, leaving out the excluded items (`exclude` in
    /// item numbers; a bitset block must start on a multiple of 64). Blocks are offered in
    /// increasing `base` order.
    fn offer_block(&mut self, base: usize, scores: &[f32], exclude: Exclude<'_>) {
        match exclude {
            Exclude::None => self.offer_run(base, scores),
            Exclude::Sorted(ex) => {
                // The runs between excluded items of this block.
                let end = base + scores.len();
                let lo = ex.partition_point(|&i| (i as usize) < base);
                let mut start = base;
                for &e in &ex[lo..] {
                    let e = e as usize;
                    if e >= end {
                        break;
                    }
                    if e >= start {
                        self.offer_run(start, &scores[start - base..e - base]);
                        start = e + 1;
                    }
                }
                if start < end {
                    self.offer_run(start, &scores[start - base..]);
                }
            }
            Exclude::Bitset(bits) => {
                debug_assert_eq!(base % 64, 0);
                for (w, chunk) in scores.chunks(64).enumerate() {
                    let at = base + w * 64;
                    let word = bits.get(at / 64).copied().unwrap_or(0);
                    if word == 0 {
                        self.offer_run(at, chunk);
                    } else {
                        for (j, &s) in chunk.iter().enumerate() {
                            if word >> j & 1 == 0 {
                                self.offer(at + j, s);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `scores[i] = y_i · x` over row-major factors; written so the compiler vectorises it.
/// On x86-64 with AVX2, eight rows are scored at a time ([`dot_scores_avx2`]) with the same
/// operations in the same order, so the scores are identical on every CPU.
pub fn dot_scores(factors: &[f32], dim: usize, x: &[f32], scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { dot_scores_avx2(factors, dim, x, scores) };
            return;
        }
    }
    dot_scores_portable(factors, dim, x, scores)
}

/// [`dot_scores`] with AVX2: eight rows at a time, each row's eight partial sums in one
/// vector as the portable code keeps them (multiply, then add: no FMA, whose single rounding
/// would change the scores); the eight vectors are transposed so that the partial sums are
/// added across rows in the portable code's order (lane 0 + lane 1 + … + lane 7), seven
/// vector adds for eight rows where each row paid seven dependent scalar adds. The scores
/// are bit-for-bit the portable ones; leftover rows, and a query of another width, take the
/// portable code.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_scores_avx2(factors: &[f32], dim: usize, x: &[f32], scores: &mut [f32]) {
    use std::arch::x86_64::*;
    let rows = scores.len().min(factors.len() / dim.max(1));
    if x.len() != dim || dim < 8 {
        return dot_scores_portable(factors, dim, x, scores);
    }
    let full = dim / 8 * 8;
    let mut r = 0;
    while r + 8 <= rows {
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in (0..full).step_by(8) {
            // SAFETY: c + 8 ≤ dim = x.len(), and rows r..r + 8 lie inside `factors`.
            unsafe {
                let xv = _mm256_loadu_ps(x.as_ptr().add(c));
                for (i, a) in acc.iter_mut().enumerate() {
                    let y = _mm256_loadu_ps(factors.as_ptr().add((r + i) * dim + c));
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(y, xv));
                }
            }
        }
        // Transpose: t[k] holds lane k of the eight rows' accumulators.
        let [a0, a1, a2, a3, a4, a5, a6, a7] = acc;
        let (u0, u1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
        let (u2, u3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
        let (u4, u5) = (_mm256_unpacklo_ps(a4, a5), _mm256_unpackhi_ps(a4, a5));
        let (u6, u7) = (_mm256_unpacklo_ps(a6, a7), _mm256_unpackhi_ps(a6, a7));
        let v0 = _mm256_shuffle_ps::<0x44>(u0, u2);
        let v1 = _mm256_shuffle_ps::<0xEE>(u0, u2);
        let v2 = _mm256_shuffle_ps::<0x44>(u1, u3);
        let v3 = _mm256_shuffle_ps::<0xEE>(u1, u3);
        let v4 = _mm256_shuffle_ps::<0x44>(u4, u6);
        let v5 = _mm256_shuffle_ps::<0xEE>(u4, u6);
        let v6 = _mm256_shuffle_ps::<0x44>(u5, u7);
        let v7 = _mm256_shuffle_ps::<0xEE>(u5, u7);
        let t = [
            _mm256_permute2f128_ps::<0x20>(v0, v4),
            _mm256_permute2f128_ps::<0x20>(v1, v5),
            _mm256_permute2f128_ps::<0x20>(v2, v6),
            _mm256_permute2f128_ps::<0x20>(v3, v7),
            _mm256_permute2f128_ps::<0x31>(v0, v4),
            _mm256_permute2f128_ps::<0x31>(v1, v5),
            _mm256_permute2f128_ps::<0x31>(v2, v6),
            _mm256_permute2f128_ps::<0x31>(v3, v7),
        ];
        let mut sum = t[0];
        for v in &t[1..] {
            sum = _mm256_add_ps(sum, *v);
        }
        let mut out = [0f32; 8];
        // SAFETY: `out` holds eight f32.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
        for (i, mut s) in out.into_iter().enumerate() {
            let y = &factors[(r + i) * dim..(r + i + 1) * dim];
            for (a, b) in y[full..].iter().zip(&x[full..]) {
                s += a * b;
            }
            scores[r + i] = s;
        }
        r += 8;
    }
    dot_scores_portable(&factors[r * dim..], dim, x, &mut scores[r..rows]);
}

#[inline(always)]
fn dot_scores_portable(factors: &[f32], dim: usize, x: &[f32], scores: &mut [f32]) {
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
///
/// Rows are padded with zeros to a multiple of 32 bytes, so the x86 code paths take whole
/// 256-bit vectors: `|x| (u8) × y·sign(x) (i8)` multiply-adds (`vpmaddubsw`, or `vpdpbusd`
/// with AVX-VNNI), the sums of eight rows reduced together. Every path computes the same
/// integer dot products, so the scores are identical whichever runs.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedFactors {
    dim: usize,
    /// Bytes per stored row: `dim` rounded up to a multiple of 32.
    stride: usize,
    data: Vec<i8>,
    scale: Vec<f32>,
}

fn quantize_row(row: &[f32], out: &mut [i8]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        out.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let inv = 127.0 / max;
    for (q, v) in out.iter_mut().zip(row) {
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// The query in the form the scan uses: `|x|` as `u8` and the sign of `x`, padded to the
/// stride, plus the query's scale.
struct QueryI8 {
    abs: Vec<u8>,
    sign: Vec<i8>,
    scale: f32,
}

/// A block of the scan: its number, scores, quantised rows and row scales.
type ScanBlock<'a> = (usize, ((&'a mut [f32], &'a [i8]), &'a [f32]));

/// Rows per block of the quantised scan (a multiple of 64, for bitset exclusions).
const SCAN_BLOCK: usize = 16 * 1024;
/// Below this many rows the scan runs on the calling thread (waking the rayon pool costs
/// more than it saves, and adds to the latency tail).
const PARALLEL_MIN_ROWS: usize = 256 * 1024;

impl QuantizedFactors {
    /// Quantises row-major `factors` of width `dim`.
    pub fn new(factors: &[f32], dim: usize) -> Self {
        let dim = dim.max(1);
        let stride = dim.div_ceil(32) * 32;
        let rows = factors.len() / dim;
        let mut data = vec![0i8; rows * stride];
        let scale = factors
            .chunks_exact(dim)
            .zip(data.chunks_exact_mut(stride))
            .map(|(r, q)| quantize_row(r, &mut q[..dim]))
            .collect();
        Self {
            dim,
            stride,
            data,
            scale,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.scale.len()
    }

    fn query(&self, x: &[f32]) -> QueryI8 {
        let mut q = vec![0i8; self.stride];
        let scale = quantize_row(&x[..self.dim.min(x.len())], &mut q[..self.dim]);
        QueryI8 {
            abs: q.iter().map(|v| v.unsigned_abs()).collect(),
            sign: q.iter().map(|v| v.signum()).collect(),
            scale,
        }
    }

    /// Approximate `scores[i] ≈ y_i · x`.
    pub fn approx_scores(&self, x: &[f32], scores: &mut [f32]) {
        self.scan_blocks(x, scores, |_, _| ());
    }

    /// The quantised scan in blocks of rows; `then(first_row, block_scores)` runs on each
    /// block while its scores are in cache. Large matrices spread the blocks over the rayon
    /// pool; smaller ones (100k × 64 takes about 0.15 ms on one core) stay on this thread.
    fn scan_blocks<R: Send>(
        &self,
        x: &[f32],
        scores: &mut [f32],
        then: impl Fn(usize, &mut [f32]) -> R + Sync,
    ) -> Vec<R> {
        use rayon::prelude::*;
        let q = self.query(x);
        let rows = self.rows().min(scores.len());
        let scores = &mut scores[..rows];
        let block = |(b, ((scores, data), scale)): ScanBlock<'_>| {
            scan_dispatch(data, scale, self.stride, &q, scores);
            then(b * SCAN_BLOCK, scores)
        };
        let stride = self.stride;
        if rows >= PARALLEL_MIN_ROWS {
            scores
                .par_chunks_mut(SCAN_BLOCK)
                .zip(self.data.par_chunks(SCAN_BLOCK * stride))
                .zip(self.scale.par_chunks(SCAN_BLOCK))
                .enumerate()
                .map(block)
                .collect()
        } else {
            scores
                .chunks_mut(SCAN_BLOCK)
                .zip(self.data.chunks(SCAN_BLOCK * stride))
                .zip(self.scale.chunks(SCAN_BLOCK))
                .enumerate()
                .map(block)
                .collect()
        }
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
        let rows = self.rows().min(scores.len());
        let cands = if rows < PARALLEL_MIN_ROWS {
            // One thread: scan everything, then one selection over the scores (in L2).
            self.approx_scores(x, &mut scores[..rows]);
            top_k(&scores[..rows], n, exclude)
        } else {
            self.block_candidates(x, n, exclude, scores)
        };
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

    /// The best `n` by the parallel scan: each block keeps its own best `n` (exclusions cut
    /// to the block) while its scores are in cache; the blocks' lists are merged.
    fn block_candidates(
        &self,
        x: &[f32],
        n: usize,
        exclude: Exclude<'_>,
        scores: &mut [f32],
    ) -> Vec<(u32, f32)> {
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
        cands
    }
}

/// Runs the fastest scan this CPU has.
fn scan_dispatch(data: &[i8], scale: &[f32], stride: usize, q: &QueryI8, scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avxvnni") {
            // SAFETY: the CPU has AVX2 and AVX-VNNI, checked just above.
            unsafe { x86::scan_avx_vnni(data, scale, stride, q, scores) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { x86::scan_avx2(data, scale, stride, q, scores) };
            return;
        }
    }
    scan_portable(data, scale, stride, q, scores)
}

/// The portable scan: the same integer dot products as the vector paths.
fn scan_portable(data: &[i8], scale: &[f32], stride: usize, q: &QueryI8, scores: &mut [f32]) {
    for ((s, y), sc) in scores.iter_mut().zip(data.chunks_exact(stride)).zip(scale) {
        *s = dot_i8(y, &q.abs, &q.sign) as f32 * (sc * q.scale);
    }
}

/// `Σ |x|·(y·sign x)` = `Σ x·y` in `i32`.
#[inline(always)]
fn dot_i8(y: &[i8], abs: &[u8], sign: &[i8]) -> i32 {
    let mut acc = [0i32; 16];
    for ((yc, ac), sc) in y
        .chunks_exact(16)
        .zip(abs.chunks_exact(16))
        .zip(sign.chunks_exact(16))
    {
        for k in 0..16 {
            acc[k] += i32::from(ac[k]) * i32::from(yc[k]) * i32::from(sc[k]);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{dot_i8, QueryI8};
    use std::arch::x86_64::*;

    /// One scan function per instruction set: eight rows at a time, each row's
    /// `Σ |x|·(y·sign x)` in eight `i32` lanes (the multiply-add given as the closure-like
    /// last argument), the eight rows' sums reduced together, then scaled in one vector.
    macro_rules! scan_fn {
        ($name:ident, $features:literal, |$acc:ident, $a:ident, $ys:ident| $madd:expr) => {
            /// # Safety
            /// The CPU must support the enabled target features.
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(
                data: &[i8],
                scale: &[f32],
                stride: usize,
                q: &QueryI8,
                scores: &mut [f32],
            ) {
                #[inline]
                #[target_feature(enable = $features)]
                unsafe fn row_acc(row: *const i8, abs: &[__m256i], sign: &[__m256i]) -> __m256i {
                    let mut acc = _mm256_setzero_si256();
                    for (c, (a, s)) in abs.iter().zip(sign).enumerate() {
                        // SAFETY: the caller guarantees `abs.len() × 32` bytes from `row`.
                        let y = unsafe { _mm256_loadu_si256(row.add(c * 32).cast()) };
                        let ys = _mm256_sign_epi8(y, *s);
                        let ($acc, $a, $ys) = (acc, *a, ys);
                        acc = $madd;
                    }
                    acc
                }
                let chunks = stride / 32;
                // SAFETY: `abs` and `sign` have `stride` bytes.
                let abs: Vec<__m256i> = (0..chunks)
                    .map(|c| unsafe { _mm256_loadu_si256(q.abs.as_ptr().add(c * 32).cast()) })
                    .collect();
                let sign: Vec<__m256i> = (0..chunks)
                    .map(|c| unsafe { _mm256_loadu_si256(q.sign.as_ptr().add(c * 32).cast()) })
                    .collect();
                let rows = scores.len().min(scale.len()).min(data.len() / stride);
                let full = rows / 8 * 8;
                let sx = _mm256_set1_ps(q.scale);
                let base = data.as_ptr();
                for r in (0..full).step_by(8) {
                    // SAFETY: rows r..r+8 are within `data` (r + 8 ≤ rows).
                    let a: [__m256i; 8] = std::array::from_fn(|i| unsafe {
                        row_acc(base.add((r + i) * stride), &abs, &sign)
                    });
                    let h01 = _mm256_hadd_epi32(a[0], a[1]);
                    let h23 = _mm256_hadd_epi32(a[2], a[3]);
                    let h45 = _mm256_hadd_epi32(a[4], a[5]);
                    let h67 = _mm256_hadd_epi32(a[6], a[7]);
                    let h0123 = _mm256_hadd_epi32(h01, h23);
                    let h4567 = _mm256_hadd_epi32(h45, h67);
                    let lo = _mm256_permute2x128_si256(h0123, h4567, 0x20);
                    let hi = _mm256_permute2x128_si256(h0123, h4567, 0x31);
                    let sums = _mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi));
                    // SAFETY: r + 8 ≤ rows ≤ scale.len(), scores.len().
                    unsafe {
                        let sc = _mm256_mul_ps(_mm256_loadu_ps(scale.as_ptr().add(r)), sx);
                        _mm256_storeu_ps(scores.as_mut_ptr().add(r), _mm256_mul_ps(sums, sc));
                    }
                }
                for r in full..rows {
                    let y = &data[r * stride..(r + 1) * stride];
                    scores[r] = dot_i8(y, &q.abs, &q.sign) as f32 * (scale[r] * q.scale);
                }
            }
        };
    }

    // |x|·|y| ≤ 127·127, so a pair sum of `vpmaddubsw` never saturates i16.
    scan_fn!(scan_avx2, "avx2", |acc, a, ys| _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(a, ys), _mm256_set1_epi16(1))
    ));
    scan_fn!(scan_avx_vnni, "avx2,avxvnni", |acc, a, ys| {
        _mm256_dpbusd_avx_epi32(acc, a, ys)
    });
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
            let n: usize = rng.random_range(1..3000);
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
            let mut bits = vec![0u64; n.div_ceil(64)];
            for &e in &ex {
                bits[e as usize / 64] |= 1 << (e % 64);
            }
            assert_eq!(top_k(&s, k, Exclude::Bitset(&bits)), all);
        }
    }

    #[test]
    fn integer_keys_order_as_score_then_item_and_give_the_score_back() {
        use rand::{Rng, SeedableRng};
        // GIVEN scores of every sign and kind: zeros of both signs (equal as floats),
        // subnormals, infinities, and random bit patterns (NaN left out: it never enters)
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut scores = vec![
            0.0f32,
            -0.0,
            f32::MIN_POSITIVE / 4.0,
            -f32::MIN_POSITIVE / 4.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            1.0,
            -1.0,
        ];
        scores.extend(
            (0..500)
                .map(|_| f32::from_bits(rng.random()))
                .filter(|v| !v.is_nan()),
        );
        let cands: Vec<(u32, f32)> = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| (rng.random_range(0..8u32) + i as u32 % 3, s))
            .collect();
        for &(ia, sa) in &cands {
            // THEN each key gives its item and score back (-0 as +0, an equal float)
            assert_eq!(unkey(key(sa, ia)), (ia, sa + 0.0));
            for &(ib, sb) in &cands {
                // AND keys order as the float comparator does: higher score, then lower item
                let want = sb.partial_cmp(&sa).unwrap().then(ia.cmp(&ib));
                assert_eq!(
                    key(sa, ia).cmp(&key(sb, ib)),
                    want,
                    "{sa}/{ia} vs {sb}/{ib}"
                );
            }
        }
    }

    #[test]
    fn negative_scores_and_a_pool_spanning_many_cuts_match_a_full_sort() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        // GIVEN 20,000 scores of both signs, increasing on average (the floor keeps rising,
        // so the buffer is cut many times), some repeated
        let s: Vec<f32> = (0..20_000)
            .map(|i| (rng.random_range(-1.0..1.0f32) + i as f32 * 1e-4) * 100.0)
            .map(|v| if v.abs() < 1.0 { v.round() } else { v })
            .collect();
        for k in [1, 7, 300] {
            let mut all: Vec<(u32, f32)> =
                (0..s.len() as u32).map(|i| (i, s[i as usize])).collect();
            all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
            all.truncate(k);
            // THEN the selection is the full sort's head, exact floats and all
            let got = top_k(&s, k, Exclude::None);
            assert_eq!(got.len(), k);
            for (g, w) in got.iter().zip(&all) {
                assert_eq!(g.0, w.0);
                assert_eq!(g.1, w.1);
            }
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
        // AND the portable code path gives the very same scores as the dispatched one
        let mut p = vec![0f32; rows];
        super::dot_scores_portable(&f, dim, &x, &mut p);
        assert_eq!(p, s);
    }

    #[test]
    fn the_vector_scan_gives_the_portable_scores_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        // GIVEN widths below, at and around multiples of 8, row counts around multiples of 8,
        // values of mixed magnitudes (so rounding order matters)
        for dim in [1usize, 7, 8, 9, 16, 31, 64, 100] {
            for rows in [0usize, 1, 7, 8, 9, 23, 64, 203] {
                let f: Vec<f32> = (0..rows * dim)
                    .map(|_| rng.random_range(-1.0..1.0f32) * 10f32.powi(rng.random_range(-3..4)))
                    .collect();
                let x: Vec<f32> = (0..dim).map(|_| rng.random_range(-2.0..2.0f32)).collect();
                // WHEN scored by the dispatched scan and the portable one
                let mut a = vec![f32::NAN; rows];
                super::dot_scores(&f, dim, &x, &mut a);
                let mut b = vec![f32::NAN; rows];
                super::dot_scores_portable(&f, dim, &x, &mut b);
                // THEN the bits are the same
                let bits = |v: &[f32]| v.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&b), "{rows}×{dim}");
            }
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
        // GIVEN factors whose width is not a multiple of 32 (padded rows) and a row count
        // that is not a multiple of 8 (so the remainder rows run too)
        let (rows, dim) = (203usize, 37usize);
        let f: Vec<f32> = (0..rows * dim)
            .map(|i| ((i * 7919 % 251) as f32 - 125.0) / 50.0)
            .collect();
        let x: Vec<f32> = (0..dim).map(|i| (i as f32 - 18.0) / 9.0).collect();
        let q = QuantizedFactors::new(&f, dim);
        let qx = q.query(&x);
        // WHEN scored by the dispatching entry point and by each code path
        let mut a = vec![0f32; rows];
        q.approx_scores(&x, &mut a);
        let mut b = vec![0f32; rows];
        scan_portable(&q.data, &q.scale, q.stride, &qx, &mut b);
        // THEN integer accumulation makes them identical, and close to the exact scores
        assert_eq!(a, b);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut c = vec![0f32; rows];
                // SAFETY: AVX2 checked above.
                unsafe { x86::scan_avx2(&q.data, &q.scale, q.stride, &qx, &mut c) };
                assert_eq!(c, b);
            }
            if std::arch::is_x86_feature_detected!("avxvnni") {
                let mut c = vec![0f32; rows];
                // SAFETY: AVX2 and AVX-VNNI checked above.
                unsafe { x86::scan_avx_vnni(&q.data, &q.scale, q.stride, &qx, &mut c) };
                assert_eq!(c, b);
            }
        }
        let mut exact = vec![0f32; rows];
        dot_scores(&f, dim, &x, &mut exact);
        for (e, a) in exact.iter().zip(&a) {
            assert!((e - a).abs() < 0.2, "{e} vs {a}");
        }
        // AND extreme values (±127 everywhere) do not saturate the i16 pair sums
        let f = vec![-3.0f32; 8 * 64];
        let x = vec![5.0f32; 64];
        let q = QuantizedFactors::new(&f, 64);
        let mut s = vec![0f32; 8];
        q.approx_scores(&x, &mut s);
        for v in s {
            assert!((v - -960.0).abs() < 1e-2, "{v}");
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
        // AND the per-block selection (used for matrices too big for one thread) agrees
        let blocks = q.block_candidates(&x, 50, Exclude::Sorted(&excluded), &mut scores);
        let ids: Vec<u32> = blocks.iter().take(5).map(|p| p.0).collect();
        assert_eq!(ids, vec![38_007, 37_007, 36_007, 35_007, 34_007]);
        let blocks = q.block_candidates(&x, 50, Exclude::Bitset(&bits), &mut scores);
        assert_eq!(blocks.iter().take(5).map(|p| p.0).collect::<Vec<_>>(), ids);
        // AND without exclusions the overall best comes first
        let all = q.top_k_reranked(&f, &x, 1, 50, Exclude::None, &mut scores);
        assert_eq!(all[0].0, 39_007);
    }
}
