//! Times the parts of the quantised serving scan (scan, top-k, re-rank) over 100k × 64.
//! `cargo run --release -p nectar-model --example topk_parts`
use nectar_model::topk::{dot_scores, top_k, Exclude, QuantizedFactors};
use std::time::Instant;

fn main() {
    let (n, d) = (100_000usize, 64usize);
    let f: Vec<f32> = (0..n * d)
        .map(|i| ((i * 2654435761usize % 1000) as f32 / 1000.0 - 0.5) * 0.6)
        .collect();
    let x: Vec<f32> = (0..d).map(|i| (i as f32 / d as f32) - 0.5).collect();
    let ex: Vec<u32> = (0..100).map(|i| i * 997).collect();
    let q = QuantizedFactors::new(&f, d);
    let mut s = vec![0f32; n];
    let reps = 300;
    let t = Instant::now();
    for _ in 0..reps {
        q.approx_scores(&x, &mut s);
    }
    println!("i8 scan: {:?}", t.elapsed() / reps);
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(top_k(&s, 100, Exclude::Sorted(&ex)));
    }
    println!("top_k 100 of 100k: {:?}", t.elapsed() / reps);
    let t = Instant::now();
    for _ in 0..reps {
        dot_scores(&f, d, &x, &mut s);
    }
    println!("f32 scan: {:?}", t.elapsed() / reps);
}
