//! `nectar bench`: benchmarks of the hot paths that anyone can run from the CLI, each printing
//! one JSON object with its figures (a subcommand per benchmark).
//!
//! They time the code the services run, on synthetic data: `collect` the parse + validate +
//! flatten of a collect payload, `topk` the recommend scan (dot products and top-N with
//! exclusions; from 16,384 items on a 2-bit first pass re-scored exactly). Figures from a debug build are flagged: the
//! model crate is optimised in every profile, the rest is not.

use std::time::Instant;

use anyhow::{bail, ensure};
use nectar_model::event::{accept_payload, CollectLimits};
use nectar_model::rank::QUANTIZE_MIN_ITEMS;
use nectar_model::topk::{dot_scores, top_k, Exclude};
use nectar_platform::model_store::{Factors, ModelItems};
use nectar_platform::recommend::LoadedModel;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Collect: parse, validate and flatten one generated payload of demo events (what every
    /// `POST /v1/collect` does before the sink), repeatedly.
    Collect(CollectArgs),
    /// Recommend: a user vector against every item's factors, then the top N with exclusions,
    /// through the scan the server runs, for many user vectors.
    Topk(TopkArgs),
    /// Online report: generates a data dir of served answers, displays, hits and plays, then
    /// times `build_report` on it end to end (see bench_report.rs).
    Report(crate::bench_report::ReportBenchArgs),
    /// Recommend service in process on a trained data dir: request variants (e.g. with and
    /// without `explain=true`) interleaved, per-variant latency (see bench_serve.rs).
    Serve(crate::bench_serve::ServeBenchArgs),
    /// Train: generates a synthetic event log (raw or compacted), then times the real train
    /// task on it, stage by stage, with its peak RSS (see bench_train.rs).
    Train(crate::bench_train::TrainBenchArgs),
}

/// Flags of `nectar bench collect`.
#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Events in the payload (at most the collect limit, 1000).
    #[arg(long, default_value_t = 1000)]
    pub events: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
}

/// Flags of `nectar bench topk`.
#[derive(Debug, clap::Args)]
pub struct TopkArgs {
    /// Items in the catalogue.
    #[arg(long, default_value_t = 100_000)]
    pub items: usize,
    /// Latent factors per item.
    #[arg(long, default_value_t = 64)]
    pub dim: usize,
    /// Items excluded from every answer (the user's history).
    #[arg(long, default_value_t = 100)]
    pub exclude: usize,
    /// List length.
    #[arg(long, default_value_t = 10)]
    pub n: usize,
    /// Timed queries (one user vector each).
    #[arg(long, default_value_t = 2000)]
    pub queries: usize,
    /// Also rank every query with the exact `f32` scan (untimed) and report how often the
    /// server's top N is the same list (`exact_agreement`).
    #[arg(long)]
    pub exact_check: bool,
}

/// Runs a benchmark and prints its JSON.
pub fn run(cmd: &BenchCommand) -> anyhow::Result<()> {
    let out = match cmd {
        BenchCommand::Collect(a) => collect(a)?,
        BenchCommand::Topk(a) => topk(a)?,
        BenchCommand::Report(a) => crate::runtime()?.block_on(crate::bench_report::run(a))?,
        BenchCommand::Serve(a) => crate::runtime()?.block_on(crate::bench_serve::run(a))?,
        BenchCommand::Train(a) => crate::runtime()?.block_on(crate::bench_train::run(a))?,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub(crate) fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// p50, p99, max and mean of `samples` (µs), rounded to 0.1 µs.
fn latency(mut samples: Vec<f64>) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let r = |x: f64| (x * 10.0).round() / 10.0;
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    json!({
        "p50": r(at(0.5)),
        "p99": r(at(0.99)),
        "max": r(samples[samples.len() - 1]),
        "mean": r(mean),
    })
}

fn collect(a: &CollectArgs) -> anyhow::Result<Value> {
    let limits = CollectLimits::default();
    if a.events == 0 || a.events > limits.max_events {
        bail!("--events must be 1–{}", limits.max_events);
    }
    ensure!(a.iterations > 0, "--iterations must be at least 1");
    let now = nectar_platform::now_ms();
    let body = crate::demo::synthetic_payload(a.events, now, 7);
    let mut times = Vec::with_capacity(a.iterations);
    for _ in 0..a.iterations {
        let t = Instant::now();
        let accepted = accept_payload(&body, "demo", now, &limits)
            .map_err(|r| anyhow::anyhow!("the generated payload was refused: {r:?}"))?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        ensure!(
            accepted.events.len() == a.events,
            "events lost in flattening"
        );
        std::hint::black_box(accepted);
    }
    let mean_s = times.iter().sum::<f64>() / times.len() as f64 / 1e6;
    Ok(json!({
        "bench": "collect",
        "what": "parse + validate + flatten one payload (accept_payload)",
        "profile": profile(),
        "events": a.events,
        "payload_bytes": body.len(),
        "iterations": a.iterations,
        "latency_us": latency(times),
        "events_per_second": (a.events as f64 / mean_s).round(),
        "mib_per_second": ((body.len() as f64 / mean_s / 1_048_576.0) * 10.0).round() / 10.0,
    }))
}

fn topk(a: &TopkArgs) -> anyhow::Result<Value> {
    ensure!(
        a.items > 0 && a.dim > 0,
        "--items and --dim must be at least 1"
    );
    ensure!(a.queries > 0, "--queries must be at least 1");
    ensure!(
        (1..=100).contains(&a.n),
        "--n must be 1–100 (the API's range)"
    );
    ensure!(a.exclude < a.items, "--exclude must be below --items");
    // Factors with no structure are the worst case for the quantised first pass (no clear
    // winners), so the figures are an upper bound for trained models.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let data: Vec<f32> = (0..a.items * a.dim)
        .map(|_| rng.random_range(-1.0..1.0f32) * 0.3)
        .collect();
    let factors = Factors { dim: a.dim, data };
    let t = Instant::now();
    let model = LoadedModel::new(
        "bench",
        ModelItems {
            version: 1,
            item_ids: (0..a.items).map(|i| format!("item-{i}")).collect(),
            item_factors: Some(factors.clone()),
            popular: Vec::new(),
            similar: None,
            metadata: json!({"params": {}}),
        },
    );
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut excluded: Vec<u32> = Vec::with_capacity(a.exclude);
    while excluded.len() < a.exclude {
        excluded.push(rng.random_range(0..a.items as u32));
        excluded.sort_unstable();
        excluded.dedup();
    }
    let users: Vec<Vec<f32>> = (0..a.queries)
        .map(|_| (0..a.dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let mut times = Vec::with_capacity(a.queries);
    let mut cpu_times = Vec::with_capacity(a.queries);
    let mut same = 0usize;
    let mut exact_scores = Vec::new();
    for x in &users {
        let cpu = thread_cpu_us();
        let t = Instant::now();
        let top = model.scan(&factors, x, a.n, &excluded);
        times.push(t.elapsed().as_secs_f64() * 1e6);
        cpu_times.push(thread_cpu_us() - cpu);
        ensure!(top.len() == a.n.min(a.items - excluded.len()), "short list");
        if a.exact_check {
            exact_scores.resize(a.items, 0.0);
            dot_scores(&factors.data, a.dim, x, &mut exact_scores);
            let exact = top_k(&exact_scores, a.n, Exclude::Sorted(&excluded));
            same += usize::from(exact.iter().map(|p| p.0).eq(top.iter().map(|p| p.0)));
        }
        std::hint::black_box(top);
    }
    let method = if a.items >= QUANTIZE_MIN_ITEMS {
        "2-bit scan, best candidates re-scored exactly (one thread)"
    } else {
        "exact f32 scan (one thread)"
    };
    Ok(json!({
        "bench": "topk",
        "what": "user vector · item factors, top N without the excluded items (the server's scan)",
        "profile": profile(),
        "items": a.items,
        "dim": a.dim,
        "exclude": excluded.len(),
        "n": a.n,
        "queries": a.queries,
        "method": method,
        "prepare_ms": (load_ms * 10.0).round() / 10.0,
        "latency_us": latency(times),
        "cpu_us": cpu_times.iter().all(|t| t.is_finite()).then(|| latency(cpu_times)),
        "exact_agreement": a.exact_check.then(|| same as f64 / a.queries as f64),
    }))
}

/// CPU time of the calling thread in µs (Linux `CLOCK_THREAD_CPUTIME_ID`; NaN elsewhere): the
/// time a query spent on a core, which other processes' load does not stretch as it stretches
/// wall time on a shared machine.
#[cfg(target_os = "linux")]
fn thread_cpu_us() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on 64-bit Linux) to the
    // pointer it is given, which points at one.
    if unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return f64::NAN;
    }
    ts.sec as f64 * 1e6 + ts.nsec as f64 / 1e3
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_us() -> f64 {
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        // GIVEN 100 samples 1..=100 µs WHEN summarised THEN p50 is the 51st, p99 the 100th
        let v = latency((1..=100).map(f64::from).collect());
        assert_eq!(v["p50"], 51.0);
        assert_eq!(v["p99"], 100.0);
        assert_eq!(v["max"], 100.0);
        assert_eq!(v["mean"], 50.5);
    }

    #[test]
    fn thread_cpu_time_advances_with_work_and_not_with_sleep() {
        // GIVEN the thread's CPU clock WHEN the thread sleeps 50 ms THEN it barely moves
        let t = thread_cpu_us();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let slept = thread_cpu_us() - t;
        assert!(slept < 20_000.0, "{slept} µs of CPU while asleep");
        // AND it moves while the thread computes
        let t = thread_cpu_us();
        let mut x = 0u64;
        while thread_cpu_us() - t < 2_000.0 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(thread_cpu_us() - t >= 2_000.0);
    }
}
