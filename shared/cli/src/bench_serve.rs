//! `nectar bench serve`: the recommend service in process, without HTTP, on a trained data dir,
//! with request variants interleaved (each round asks every variant once, starting with a
//! different one) so that all variants see the same machine: per-variant latency of one answer.
//!
//! It measures what a feature costs on the serving path (`explain=true`, a `diversity` rule, a
//! session request) as a difference between variants, which an HTTP benchmark on a shared
//! machine blurs with connection handling and scheduling. `scripts/bench/serve.sh` with
//! `SERVE_INPROC=1` trains ml-100k and runs it with the default variants.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use nectar_platform::auth::AdminKeys;
use nectar_platform::catalog::Catalog;
use nectar_platform::config::NectarConfig;
use nectar_platform::event_log::local::LocalEventLog;
use nectar_platform::model_store::{AnyModelStore, LocalModelStore};
use nectar_platform::recommend::{RecommendOptions, RecommendService};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Flags of `nectar bench serve`.
#[derive(Debug, clap::Args)]
pub struct ServeBenchArgs {
    /// A data dir with published models (and, for user requests, imported histories).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The config the models were trained with.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A variant as `NAME=TARGET`, e.g. `explain=/v1/recommend/for-you?s=demo&user_id={user}&explain=true`;
    /// `{user}` becomes a random user id in 1..=--users, `{items}` a comma-separated list of
    /// --session-items random item ids in 1..=--items. Repeat for each variant.
    #[arg(long = "variant", required = true, value_name = "NAME=TARGET")]
    pub variants: Vec<String>,
    /// User ids are 1..=users (ml-100k: 943).
    #[arg(long, default_value_t = 943)]
    pub users: u32,
    /// Item ids are 1..=items (ml-100k: 1682).
    #[arg(long, default_value_t = 1682)]
    pub items: u32,
    /// Items of a session request's `{items}`.
    #[arg(long, default_value_t = 10)]
    pub session_items: usize,
    /// Timed answers per variant.
    #[arg(long, default_value_t = 20_000)]
    pub queries: usize,
    /// Untimed answers per variant first (the model cache, the allocator).
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
}

struct Variant {
    name: String,
    target: String,
    nanos: Vec<u64>,
    fallbacks: usize,
}

/// Runs the benchmark; one JSON object with a figure set per variant.
pub async fn run(args: &ServeBenchArgs) -> anyhow::Result<Value> {
    ensure!(args.queries > 0, "--queries must be at least 1");
    ensure!(
        args.users > 0 && args.items > 0,
        "--users and --items must be at least 1"
    );
    let mut variants = Vec::new();
    for v in &args.variants {
        let Some((name, target)) = v.split_once('=') else {
            bail!("--variant {v:?}: expected NAME=TARGET");
        };
        ensure!(
            target.starts_with('/'),
            "--variant {name}: the target must be a path starting with /"
        );
        variants.push(Variant {
            name: name.to_string(),
            target: target.to_string(),
            nanos: Vec::with_capacity(args.queries),
            fallbacks: 0,
        });
    }
    let config = Arc::new(NectarConfig::load(args.config.as_deref())?);
    let svc = RecommendService::new(
        config,
        AnyModelStore::Local(LocalModelStore::new(&args.data_dir)),
        // The served log stays on, as in production: answers are queued for its writer.
        Arc::new(
            LocalEventLog::start(&args.data_dir, "bench-serve")
                .with_context(|| format!("cannot open {}", args.data_dir.display()))?,
        ),
        Catalog::open(&args.data_dir)?,
        AdminKeys::none(),
        RecommendOptions::default(),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let uri = |target: &str, rng: &mut rand_chacha::ChaCha8Rng| {
        let mut t = target.replace("{user}", &rng.random_range(1..=args.users).to_string());
        if t.contains("{items}") {
            let items: Vec<String> = (0..args.session_items)
                .map(|_| rng.random_range(1..=args.items).to_string())
                .collect();
            t = t.replace("{items}", &items.join(","));
        }
        t
    };
    // Warm-up, and a check that every variant answers from its model.
    for v in &variants {
        for i in 0..args.warmup.max(1) {
            let req = http::Request::get(uri(&v.target, &mut rng)).body(Bytes::new())?;
            let resp = svc.handle(&req, nectar_platform::now_ms()).await;
            if i == 0 {
                let body: Value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
                ensure!(
                    resp.status() == 200 && body["items"].as_array().is_some_and(|a| !a.is_empty()),
                    "variant {}: {} {}",
                    v.name,
                    resp.status(),
                    body
                );
            }
        }
    }
    let load_before = load_average();
    let started = Instant::now();
    let n = variants.len();
    for round in 0..args.queries {
        for k in 0..n {
            let v = &mut variants[(round + k) % n];
            let req = http::Request::get(uri(&v.target, &mut rng)).body(Bytes::new())?;
            let t = Instant::now();
            let resp = svc.handle(&req, nectar_platform::now_ms()).await;
            v.nanos.push(t.elapsed().as_nanos() as u64);
            ensure!(
                resp.status() == 200,
                "variant {}: {}",
                v.name,
                resp.status()
            );
            // The answer's fallback flag, without parsing the whole body.
            if memchr_fallback(resp.body()) {
                v.fallbacks += 1;
            }
        }
    }
    let mut out = serde_json::Map::new();
    for v in &mut variants {
        v.nanos.sort_unstable();
        let q = |p: f64| {
            let i = ((v.nanos.len() as f64 * p).ceil() as usize).clamp(1, v.nanos.len()) - 1;
            v.nanos[i] as f64 / 1e6
        };
        let mean = v.nanos.iter().sum::<u64>() as f64 / v.nanos.len() as f64 / 1e6;
        out.insert(
            v.name.clone(),
            json!({
                "target": v.target,
                "answers": v.nanos.len(),
                "fallback_answers": v.fallbacks,
                "mean_ms": round3(mean),
                "p50_ms": round3(q(0.50)),
                "p90_ms": round3(q(0.90)),
                "p99_ms": round3(q(0.99)),
                "max_ms": round3(q(1.0)),
            }),
        );
    }
    Ok(json!({
        "benchmark": "serve (in process, variants interleaved)",
        "profile": crate::bench::profile(),
        "seconds": round3(started.elapsed().as_secs_f64()),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "variants": out,
    }))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Whether an answer body says `"fallback":true` (the answer's own flag).
fn memchr_fallback(body: &[u8]) -> bool {
    body.windows(16).any(|w| w == b"\"fallback\":true")
}

/// The 1-minute load average (Linux), to report how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
