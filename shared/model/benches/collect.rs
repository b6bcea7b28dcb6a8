//! Parse + validate + flatten a 1000-event PEACH payload (target: under 1 ms).
//! Run: `cargo bench -p nectar-model --bench collect`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nectar_model::event::{accept_payload, CollectLimits};

const PAYLOAD: &str = include_str!("fixtures/peach-1000.json");
/// The fixture's sent_timestamp, so the clock-skew path is not taken.
const NOW: i64 = 1_763_000_000_000;

fn bench(c: &mut Criterion) {
    let limits = CollectLimits::default();
    let mut g = c.benchmark_group("collect");
    g.throughput(Throughput::Bytes(PAYLOAD.len() as u64));
    g.bench_function("accept_payload_1000_events", |b| {
        b.iter(|| {
            let acc = accept_payload(PAYLOAD.as_bytes(), "demo", NOW, &limits).unwrap();
            assert_eq!(acc.events.len(), 1000);
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
