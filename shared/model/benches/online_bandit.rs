//! The Thompson draw of a request: one Beta posterior draw per variant and the argmax, for 2–5
//! variants (target: under 20 µs), and the exploration rule's pick over 50 and 200 new items.
//! The RNG is `rand::rng()`, the thread-local generator a request handler would use.
//!
//! `cargo bench -p nectar-model --bench online_bandit`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nectar_model::online::bandit::{explore_picks, thompson_pick, ArmCounts, ExploreRule, NewItem};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("thompson_pick");
    for k in 2..=5u64 {
        // Counts of a running experiment: tens of thousands of impressions, CTR 4–6 %.
        let arms: Vec<ArmCounts> = (0..k)
            .map(|i| ArmCounts::new(40_000 + 1_000 * i, 2_000 + 200 * i))
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(k), &arms, |b, arms| {
            let mut rng = rand::rng();
            b.iter(|| thompson_pick(std::hint::black_box(arms), &mut rng))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("explore_picks_2_slots");
    let rule = ExploreRule {
        slots: vec![3, 7],
        new_days: 7,
    };
    let now = 1_795_000_000_000i64;
    let ids: Vec<String> = (0..200).map(|i| format!("new-{i}")).collect();
    for n in [50usize, 200] {
        let cands: Vec<NewItem> = ids[..n]
            .iter()
            .enumerate()
            .map(|(i, id)| NewItem {
                id,
                first_seen_ms: now - (i as i64 % 7) * 86_400_000,
                counts: ArmCounts::new(10 * i as u64, i as u64 / 3),
            })
            .collect();
        g.bench_with_input(BenchmarkId::from_parameter(n), &cands, |b, cands| {
            let mut rng = rand::rng();
            b.iter(|| {
                explore_picks(
                    &rule,
                    std::hint::black_box(cands),
                    10,
                    now,
                    |_| false,
                    &mut rng,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
