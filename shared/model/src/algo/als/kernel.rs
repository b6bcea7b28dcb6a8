//! The sparse part of the CG row solver, four rows of `Y` at a time.
//!
//! The profile of a fit is this loop: per stored cell and CG step, one dot product with a
//! factor row and one `axpy` of that row. Done one row at a time, every dot is a chain of
//! dependent adds (the CPU waits on each add's latency) and every `axpy` loads and stores the
//! whole output vector. Four rows at a time give four independent add chains and one load and
//! store of the output per four rows.
//!
//! Bit-for-bit the same as the row-at-a-time code ([`super::super::dot`], [`super::super::axpy`]
//! applied in item order): each dot keeps its own eight lane accumulators and reduction order,
//! and the four `axpy`s add into each output element in item order.

/// Lanes of one accumulator: the width [`super::super::dot`] sums in.
const LANES: usize = 8;

/// `[y_0·v, …, y_{B−1}·v]`, each exactly as [`super::super::dot`] computes it.
#[inline(always)]
fn dots<const B: usize>(rows: &[&[f32]; B], v: &[f32]) -> [f32; B] {
    let f = v.len();
    let full = f / LANES * LANES;
    let mut acc = [[0f32; LANES]; B];
    let mut c = 0;
    while c < full {
        let vc: &[f32; LANES] = v[c..c + LANES].try_into().expect("lane chunk");
        for (a, row) in acc.iter_mut().zip(rows) {
            let rc: &[f32; LANES] = row[c..c + LANES].try_into().expect("lane chunk");
            for j in 0..LANES {
                a[j] += rc[j] * vc[j];
            }
        }
        c += LANES;
    }
    let mut out = [0f32; B];
    for ((o, a), row) in out.iter_mut().zip(&acc).zip(rows) {
        let mut s = 0f32;
        for (x, y) in row[full..f].iter().zip(&v[full..f]) {
            s += x * y;
        }
        *o = (a[0] + a[4]) + (a[1] + a[5]) + (a[2] + a[6]) + (a[3] + a[7]) + s;
    }
    out
}

/// `out += w_0 y_0 + … + w_{B−1} y_{B−1}`, added in row order (as B `axpy`s would).
#[inline(always)]
fn axpys<const B: usize>(w: [f32; B], rows: &[&[f32]; B], out: &mut [f32]) {
    for (k, o) in out.iter_mut().enumerate() {
        let mut s = *o;
        for b in 0..B {
            s += w[b] * rows[b][k];
        }
        *o = s;
    }
}

/// The four-row block operations, portable or with explicit AVX2 vectors: the same sums in
/// the same order either way (LLVM turns the portable loops into 128-bit code with spills, so
/// the x86 kernel spells the 256-bit vectors out).
pub(super) trait Block4 {
    /// [`dots`] of four rows.
    fn dots4(&self, rows: &[&[f32]; 4], v: &[f32]) -> [f32; 4];
    /// [`axpys`] of four rows.
    fn axpys4(&self, w: [f32; 4], rows: &[&[f32]; 4], out: &mut [f32]);
}

/// The portable block operations.
pub(super) struct Portable;

impl Block4 for Portable {
    #[inline(always)]
    fn dots4(&self, rows: &[&[f32]; 4], v: &[f32]) -> [f32; 4] {
        dots(rows, v)
    }
    #[inline(always)]
    fn axpys4(&self, w: [f32; 4], rows: &[&[f32]; 4], out: &mut [f32]) {
        axpys(w, rows, out)
    }
}

/// The AVX2 block operations; only [`Avx2::new`] makes one, after checking the CPU.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The AVX2 operations.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline(always)]
    pub(super) unsafe fn new() -> Self {
        Self(())
    }
}

#[cfg(target_arch = "x86_64")]
impl Block4 for Avx2 {
    #[inline(always)]
    fn dots4(&self, rows: &[&[f32]; 4], v: &[f32]) -> [f32; 4] {
        // SAFETY: an `Avx2` exists only on a CPU with AVX2 (`Avx2::new`).
        unsafe { dots4_avx2(rows, v) }
    }
    #[inline(always)]
    fn axpys4(&self, w: [f32; 4], rows: &[&[f32]; 4], out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { axpys4_avx2(w, rows, out) }
    }
}

/// [`dots`] of four rows in 256-bit vectors: lane j of accumulator b is `acc[b][j]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn dots4_avx2(rows: &[&[f32]; 4], v: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let f = v.len();
    let full = f / LANES * LANES;
    for r in rows {
        assert!(r.len() >= f, "factor row shorter than the vector");
    }
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut c = 0;
    while c < full {
        // SAFETY: c + 8 ≤ full ≤ f ≤ every row's length (checked above).
        unsafe {
            let vc = _mm256_loadu_ps(v.as_ptr().add(c));
            for (a, r) in acc.iter_mut().zip(rows) {
                let rc = _mm256_loadu_ps(r.as_ptr().add(c));
                *a = _mm256_add_ps(*a, _mm256_mul_ps(rc, vc));
            }
        }
        c += LANES;
    }
    let mut out = [0f32; 4];
    for ((o, a), row) in out.iter_mut().zip(&acc).zip(rows) {
        let mut l = [0f32; LANES];
        // SAFETY: `l` holds 8 floats.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), *a) };
        let mut s = 0f32;
        for (x, y) in row[full..f].iter().zip(&v[full..f]) {
            s += x * y;
        }
        *o = (l[0] + l[4]) + (l[1] + l[5]) + (l[2] + l[6]) + (l[3] + l[7]) + s;
    }
    out
}

/// [`axpys`] of four rows in 256-bit vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn axpys4_avx2(w: [f32; 4], rows: &[&[f32]; 4], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let f = out.len();
    let full = f / LANES * LANES;
    for r in rows {
        assert!(r.len() >= f, "factor row shorter than the output");
    }
    let wv = w.map(|x| _mm256_set1_ps(x));
    let mut c = 0;
    while c < full {
        // SAFETY: c + 8 ≤ full ≤ f ≤ every row's length (checked above) and out's.
        unsafe {
            let mut s = _mm256_loadu_ps(out.as_ptr().add(c));
            for (wb, r) in wv.iter().zip(rows) {
                s = _mm256_add_ps(s, _mm256_mul_ps(*wb, _mm256_loadu_ps(r.as_ptr().add(c))));
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(c), s);
        }
        c += LANES;
    }
    for k in full..f {
        let mut s = out[k];
        for b in 0..4 {
            s += w[b] * rows[b][k];
        }
        out[k] = s;
    }
}

/// Adds `Σ_i g(c_i, y_i·v) y_i` over the user's cells to `out`, for a weight function `g` of
/// the cell's confidence and dot product.
#[inline(always)]
pub(super) fn sparse_update(
    ops: &impl Block4,
    items: &[u32],
    conf: &[f32],
    y: &[f32],
    v: &[f32],
    out: &mut [f32],
    g: impl Fn(f32, f32) -> f32,
) {
    let f = v.len();
    let row = |i: u32| &y[i as usize * f..(i as usize + 1) * f];
    let mut it = items.chunks_exact(4).zip(conf.chunks_exact(4));
    for (ii, cc) in &mut it {
        let rows = [row(ii[0]), row(ii[1]), row(ii[2]), row(ii[3])];
        let d = ops.dots4(&rows, v);
        let w = [
            g(cc[0], d[0]),
            g(cc[1], d[1]),
            g(cc[2], d[2]),
            g(cc[3], d[3]),
        ];
        ops.axpys4(w, &rows, out);
    }
    let tail = items.len() / 4 * 4;
    for (&i, &c) in items[tail..].iter().zip(&conf[tail..]) {
        let rows = [row(i)];
        let d = dots(&rows, v);
        axpys([g(c, d[0])], &rows, out);
    }
}

/// `out = A · v` for a dense symmetric f × f `a`, as a sum of scaled rows (row j = column j),
/// four rows per pass over `out`; the same sums, in the same order, as one `axpy` per row.
#[inline(always)]
pub(super) fn matvec(ops: &impl Block4, a: &[f32], v: &[f32], out: &mut [f32]) {
    let f = v.len();
    out.fill(0.0);
    let mut rows = a.chunks_exact(f);
    let mut vs = v.chunks_exact(4);
    for vv in &mut vs {
        let r = [
            rows.next().expect("f rows"),
            rows.next().expect("f rows"),
            rows.next().expect("f rows"),
            rows.next().expect("f rows"),
        ];
        ops.axpys4([vv[0], vv[1], vv[2], vv[3]], &r, out);
    }
    for (&vj, row) in vs.remainder().iter().zip(rows) {
        axpys([vj], &[row], out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{axpy, dot};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn blocked_sums_are_the_row_at_a_time_sums_bit_for_bit() {
        for f in [1usize, 3, 8, 19, 64] {
            // GIVEN random factor rows, 7 cells (a block of four and a tail of three)
            let mut rng = ChaCha8Rng::seed_from_u64(f as u64);
            let y: Vec<f32> = (0..20 * f).map(|_| rng.random::<f32>() - 0.5).collect();
            let v: Vec<f32> = (0..f).map(|_| rng.random::<f32>() - 0.5).collect();
            let items = [0u32, 3, 4, 9, 11, 17, 19];
            let conf: Vec<f32> = items.iter().map(|_| 1.0 + rng.random::<f32>()).collect();
            let start: Vec<f32> = (0..f).map(|_| rng.random::<f32>()).collect();
            let g = |c: f32, d: f32| c - (c - 1.0) * d;
            // WHEN updated blocked and one row at a time
            let mut blocked = start.clone();
            sparse_update(&Portable, &items, &conf, &y, &v, &mut blocked, g);
            let mut plain = start.clone();
            for (&i, &c) in items.iter().zip(&conf) {
                let yi = &y[i as usize * f..(i as usize + 1) * f];
                axpy(g(c, dot(yi, &v)), yi, &mut plain);
            }
            // THEN the bits are equal
            assert_eq!(blocked, plain, "f = {f}");
            assert_ne!(blocked, start);
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 was just detected.
                let avx2 = unsafe { Avx2::new() };
                let mut vec = start.clone();
                sparse_update(&avx2, &items, &conf, &y, &v, &mut vec, g);
                assert_eq!(vec, plain, "avx2, f = {f}");
                let a: Vec<f32> = (0..f * f).map(|i| (i % 7) as f32 - 3.5).collect();
                let (mut m1, mut m2) = (vec![0f32; f], vec![0f32; f]);
                matvec(&avx2, &a, &v, &mut m1);
                matvec(&Portable, &a, &v, &mut m2);
                assert_eq!(m1, m2, "avx2 matvec, f = {f}");
            }
            // AND the blocked matvec is the row-by-row one
            let a: Vec<f32> = (0..f * f).map(|_| rng.random::<f32>()).collect();
            let mut m1 = vec![0f32; f];
            matvec(&Portable, &a, &v, &mut m1);
            let mut m2 = vec![0f32; f];
            for (&vj, row) in v.iter().zip(a.chunks_exact(f)) {
                axpy(vj, row, &mut m2);
            }
            assert_eq!(m1, m2, "f = {f}");
        }
    }
}
