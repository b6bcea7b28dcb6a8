//! Attribution and report over 1 M served answers and 100 k hits (target: under 10 s):
//! event-log lines are generated in memory (7 days, 3 endpoints × 2 variants, lists of 10
//! from 5,000 items, 300 k displays, 100 k hits, 60 k plays, 30 k ends), then read with
//! [`Attributor::push_line`] and reported with [`report`]; each step is timed once.
//!
//! `cargo bench -p nectar-model --bench online_report`

use std::time::Instant;

use nectar_model::online::attribution::{Attributor, SERVED_MARKER_FIELD};
use nectar_model::online::metrics::{report, ExperimentSpec, ReportInput, VariantSpec};
use rand::{Rng, SeedableRng};
use serde_json::json;

const SERVED: usize = 1_000_000;
const HITS: usize = 100_000;
const DAY: i64 = 86_400_000;
const T0: i64 = 1_795_000_000_000;

fn lines() -> Vec<String> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let endpoints = ["for-you", "more-like-this", "trending"];
    let mut out = Vec::with_capacity(SERVED * 3 / 2);
    let mut served = Vec::with_capacity(SERVED);
    for i in 0..SERVED {
        let ts = T0 + rng.random_range(0..7 * DAY);
        let user = format!("u{}", rng.random_range(0..200_000));
        let items: Vec<String> = (0..10)
            .map(|_| format!("m{}", rng.random_range(0..5_000)))
            .collect();
        let rec = format!("r-{i:032x}");
        let mut v = json!({
            "event_id": format!("{:032x}", (1u128 << 100) | i as u128), "site_key": "s1",
            "type": "recommendation_served", "id": rec, "event_timestamp": ts,
            "collect_timestamp": ts, "sent_timestamp": ts, "user_id": user,
            "peach_schema_version": "1.0.3",
            "client": { "id": user, "app_id": "nectar-recommend", "device": { "type": "embedded" } },
            "context": { "endpoint": endpoints[i % 3], "variant": if i % 2 == 0 { "a" } else { "b" },
                "model": { "name": "als", "version": 4 }, "fallback": i % 50 == 0,
                "items": items, "context_item": null, "subject": null },
        });
        v[SERVED_MARKER_FIELD] = json!(true);
        out.push(v.to_string());
        served.push((rec, user, ts, items));
    }
    let event = |kind: &str, id: &str, user: &str, ts: i64, n: u64, ctx: serde_json::Value| {
        json!({
            "event_id": format!("{:032x}", (2u128 << 100) | u128::from(n)), "site_key": "s1", "type": kind, "id": id,
            "event_timestamp": ts, "collect_timestamp": ts, "sent_timestamp": ts, "user_id": user,
            "peach_schema_version": "1.0.3",
            "client": { "id": format!("c-{user}"), "app_id": "app", "device": { "type": "phone" } },
            "context": ctx,
        })
        .to_string()
    };
    let mut n = 0u64;
    for (i, (rec, user, ts, items)) in served.iter().enumerate() {
        if i % 10 < 3 {
            n += 1;
            out.push(event(
                "recommendation_displayed",
                rec,
                user,
                ts + 1_000,
                n,
                json!({ "items": items }),
            ));
        }
        if i % 10 == 0 {
            let k = rng.random_range(0..10);
            n += 1;
            let ctx = json!({ "items": items, "hit_index": k });
            out.push(event("recommendation_hit", rec, user, ts + 5_000, n, ctx));
            if i % 20 < 12 {
                n += 1;
                out.push(event(
                    "media_play",
                    &items[k],
                    user,
                    ts + 60_000,
                    n,
                    json!({}),
                ));
            }
            if i % 20 < 6 {
                n += 1;
                out.push(event(
                    "media_end",
                    &items[k],
                    user,
                    ts + 600_000,
                    n,
                    json!({}),
                ));
            }
        }
    }
    assert_eq!(served.len() / 10, HITS);
    out
}

fn main() {
    let t = Instant::now();
    let lines = lines();
    println!(
        "generated {} lines in {:.1} s",
        lines.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let parsed = lines
        .iter()
        .filter(|l| nectar_model::online::OnlineEvent::parse(l).is_ok())
        .count();
    println!("parse only {:.2} s ({parsed})", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut a = Attributor::new(30);
    for l in &lines {
        a.push_line(l);
    }
    let read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let attribution = a.finish();
    let joined = t.elapsed().as_secs_f64();

    let mut input = ReportInput::new("s1");
    input.catalog_size = Some(5_000);
    for e in ["for-you", "more-like-this", "trending"] {
        let variants = ["a", "b"]
            .iter()
            .map(|v| VariantSpec {
                name: v.to_string(),
                weight: 1.0,
            })
            .collect();
        let x = ExperimentSpec {
            name: "x".into(),
            variants,
            control: None,
            fixed_allocation: true,
        };
        input.experiments.insert(e.into(), x);
    }
    input.popularity = (0..5_000)
        .map(|i| (format!("m{i}"), f64::from(i % 97)))
        .collect();
    input.categories = (0..5_000)
        .map(|i| (format!("m{i}"), format!("c{}", i % 12)))
        .collect();
    let t = Instant::now();
    let r = report(&attribution, &input);
    let reported = t.elapsed().as_secs_f64();
    let clicks: u64 = r
        .endpoints
        .iter()
        .flat_map(|e| &e.variants)
        .map(|v| v.clicks)
        .sum();
    println!(
        "read+parse {read:.2} s, join {joined:.2} s, report {reported:.2} s: total {:.2} s for {} served, {clicks} clicks credited",
        read + joined + reported,
        attribution.recommendations.len()
    );
}
