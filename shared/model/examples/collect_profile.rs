//! Runs the collect hot path on the bench fixture N times (for callgrind / perf):
//! `cargo run --release -p nectar-model --example collect_profile -- 200`.
use nectar_model::event::{accept_payload, CollectLimits};

fn main() {
    let payload = include_str!("../benches/fixtures/peach-1000.json");
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let limits = CollectLimits::default();
    let start = std::time::Instant::now();
    let mut events = 0;
    for _ in 0..n {
        events += accept_payload(payload.as_bytes(), "demo", 1_763_000_000_000, &limits)
            .unwrap()
            .events
            .len();
    }
    let per = start.elapsed() / n as u32;
    println!("{n} payloads, {events} events, {per:?} per 1000-event payload");
}
