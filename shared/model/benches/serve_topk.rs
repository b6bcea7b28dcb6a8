//! Serving hot path: dot product of one user vector with every item vector, then top-10 with
//! exclusions (the user's history), over 100k items × 64 factors, one core. Two methods: the
//! exact `f32` scan, and an `i8` quantised scan (AVX2 / AVX-VNNI multiply-adds, one thread) with exact
//! re-ranking of the best 100.
//!
//! A third case times the same quantised scan called through the one ranker
//! (`nectar_model::rank::scan`, what serving, the gate and `nectar eval` call), which must cost
//! the same as the direct call.
//!
//! `cargo bench -p nectar-model --bench serve_topk` (criterion), then p50/p99 over 2,000 calls
//! per method and how often the quantised top-10 equals the exact one.

use std::time::Instant;

use criterion::{criterion_group, Criterion};
use nectar_model::rank::{self, Factors, Prepared};
use nectar_model::topk::{dot_scores, top_k, Exclude, QuantizedFactors};
use rand::{Rng, SeedableRng};

const ITEMS: usize = 100_000;
const DIM: usize = 64;
const CANDIDATES: usize = 100;

/// Item factors with a few latent "tastes" (so rankings are not pure noise), user vectors,
/// and 100 excluded items per user.
fn data(users: usize) -> (Vec<f32>, Vec<Vec<f32>>, Vec<u32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let f: Vec<f32> = (0..ITEMS * DIM)
        .map(|_| rng.random_range(-1.0..1.0f32) * 0.3)
        .collect();
    let xs = (0..users)
        .map(|_| (0..DIM).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut ex: Vec<u32> = (0..100)
        .map(|_| rng.random_range(0..ITEMS as u32))
        .collect();
    ex.sort_unstable();
    ex.dedup();
    (f, xs, ex)
}

fn exact(f: &[f32], x: &[f32], ex: &[u32], scores: &mut [f32]) -> Vec<(u32, f32)> {
    dot_scores(f, DIM, x, scores);
    top_k(scores, 10, Exclude::Sorted(ex))
}

fn bench(c: &mut Criterion) {
    let (f, xs, ex) = data(1);
    let q = QuantizedFactors::new(&f, DIM);
    let mut scores = vec![0f32; ITEMS];
    c.bench_function("exact_f32_top10_100k_x64", |b| {
        b.iter(|| exact(&f, &xs[0], &ex, &mut scores))
    });
    c.bench_function("quantized_i8_rerank100_top10_100k_x64", |b| {
        b.iter(|| {
            q.top_k_reranked(
                &f,
                &xs[0],
                10,
                CANDIDATES,
                Exclude::Sorted(&ex),
                &mut scores,
            )
        })
    });
    let factors = Factors {
        dim: DIM,
        data: f.clone(),
    };
    let prepared = Prepared::new(Some(&factors), None);
    assert!(prepared.is_quantised());
    c.bench_function("ranker_scan_top10_100k_x64", |b| {
        b.iter(|| rank::scan(&factors, &prepared, &xs[0], 10, &ex))
    });
}

criterion_group!(benches, bench);

fn percentiles(mut t: Vec<f64>) -> (f64, f64, f64) {
    t.sort_by(f64::total_cmp);
    let at = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)];
    (at(0.5), at(0.99), t[t.len() - 1])
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Tail latency (criterion reports means) and agreement with the exact top-10.
    let (f, xs, ex) = data(2000);
    let q = QuantizedFactors::new(&f, DIM);
    let mut scores = vec![0f32; ITEMS];
    // Each method in its own pass (interleaving them would make each evict the other's
    // factors from the cache, which a server answering one model does not do).
    let mut te = Vec::with_capacity(xs.len());
    let mut exact_lists = Vec::with_capacity(xs.len());
    for x in &xs {
        let s = Instant::now();
        let a = std::hint::black_box(exact(&f, x, &ex, &mut scores));
        te.push(s.elapsed().as_secs_f64() * 1e6);
        exact_lists.push(a);
    }
    let (mut tq, mut same) = (Vec::with_capacity(xs.len()), 0usize);
    for (x, a) in xs.iter().zip(&exact_lists) {
        let s = Instant::now();
        let b = std::hint::black_box(q.top_k_reranked(
            &f,
            x,
            10,
            CANDIDATES,
            Exclude::Sorted(&ex),
            &mut scores,
        ));
        tq.push(s.elapsed().as_secs_f64() * 1e6);
        let ids = |v: &[(u32, f32)]| v.iter().map(|p| p.0).collect::<Vec<_>>();
        same += (ids(a) == ids(&b)) as usize;
    }
    let factors = Factors {
        dim: DIM,
        data: f.clone(),
    };
    let prepared = Prepared::new(Some(&factors), None);
    let mut tr = Vec::with_capacity(xs.len());
    for x in &xs {
        let s = Instant::now();
        std::hint::black_box(rank::scan(&factors, &prepared, x, 10, &ex));
        tr.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let (p50, p99, max) = percentiles(te);
    println!(
        "exact f32 scan:       p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs (2,000 users)"
    );
    let (p50, p99, max) = percentiles(tq);
    println!("i8 scan + rerank 100: p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs; top-10 identical to exact for {same}/2000 users ({:.1}%)", same as f64 / 20.0);
    let (p50, p99, max) = percentiles(tr);
    println!("ranker (i8 + rerank):  p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs");
}
