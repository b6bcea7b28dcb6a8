//! The Lambda functions' metrics recorder: everything recorded through the `metrics` facade
//! during an invocation is written, when the invocation ends ([`EmfRecorder::flush`]), as
//! CloudWatch Embedded Metric Format lines on stdout, which Lambda ships to CloudWatch Logs and
//! CloudWatch turns into metrics in the [`NAMESPACE`] namespace.
//!
//! Why not the `metrics_cloudwatch_embedded` crate: it writes exactly one dimension set per
//! metric (its labels). The operators' alarms need some metrics at the site level too (the
//! fallback share, the collect rejection ratio, see [`SITE_ROLLUP`]), and CloudWatch only
//! aggregates over the exact dimension set of a datapoint; EMF allows several sets per
//! document, so this recorder lists `[site]` beside the full set for those metrics, and a
//! single datapoint feeds both (two `counter!` calls would double-count in Prometheus).
//!
//! One document per label set per flush: counters as the increase since the last flush (zero
//! increases are left out), gauges when set since the last flush, histograms as arrays of at
//! most 100 values (the EMF limit; more values go in further documents).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use serde_json::{json, Map, Value};

use super::names::{
    dim, COLLECT_PAYLOADS_REJECTED, NAMESPACE, RECOMMEND_FALLBACKS, RECOMMEND_REQUESTS,
};

/// Metrics also published at the site level (`[site]`) beside their full dimension set.
pub const SITE_ROLLUP: &[&str] = &[
    RECOMMEND_REQUESTS,
    RECOMMEND_FALLBACKS,
    COLLECT_PAYLOADS_REJECTED,
];

/// Values per metric in one EMF document (CloudWatch's limit).
const MAX_VALUES: usize = 100;

#[derive(Debug, Default)]
struct GaugeCell {
    bits: AtomicU64,
    set: AtomicBool,
}

impl GaugeCell {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .bits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(f(f64::from_bits(b)).to_bits())
            });
        self.set.store(true, Ordering::Release);
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

#[derive(Debug, Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().expect("histogram lock").push(value);
    }
}

/// A label set (key, value pairs) and the data recorded under it.
type Groups = BTreeMap<Vec<(String, String)>, Vec<(String, Datum)>>;

#[derive(Debug, Default)]
struct Cells {
    counters: BTreeMap<Key, Arc<AtomicU64>>,
    gauges: BTreeMap<Key, Arc<GaugeCell>>,
    histograms: BTreeMap<Key, Arc<Values>>,
}

/// A `metrics` recorder writing CloudWatch EMF documents; clones share the same cells.
#[derive(Debug, Clone, Default)]
pub struct EmfRecorder {
    cells: Arc<Mutex<Cells>>,
}

/// One metric's value in a document.
enum Datum {
    Count(u64),
    Gauge(f64),
    Values(Vec<f64>),
}

fn unit_of(name: &str) -> &'static str {
    if name.ends_with("_ms") {
        "Milliseconds"
    } else if name.ends_with("_seconds") {
        "Seconds"
    } else if name.ends_with("_ctr") || name.contains("ndcg") {
        "None"
    } else {
        "Count"
    }
}

impl EmfRecorder {
    /// A recorder with no metrics yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder installed as the process's global one (at cold start). Should another be
    /// installed already, that one keeps recording and this one stays empty (logged).
    pub fn install_global() -> Self {
        let rec = Self::new();
        if metrics::set_global_recorder(rec.clone()).is_err() {
            tracing::warn!("A metrics recorder was already installed; EMF output stays empty.");
        }
        rec
    }

    /// The EMF documents of everything recorded since the last call, one JSON object per
    /// label set (and more when a histogram holds over 100 values), and resets the counters
    /// and histograms.
    pub fn take_documents(&self, now_ms: i64) -> Vec<Value> {
        // label set → metric name → datum
        let mut groups: Groups = BTreeMap::new();
        {
            let cells = self.cells.lock().expect("metrics lock");
            let mut put = |key: &Key, d: Datum| {
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect();
                groups
                    .entry(labels)
                    .or_default()
                    .push((key.name().to_string(), d));
            };
            for (k, c) in &cells.counters {
                let n = c.swap(0, Ordering::AcqRel);
                if n > 0 {
                    put(k, Datum::Count(n));
                }
            }
            for (k, g) in &cells.gauges {
                if g.set.swap(false, Ordering::AcqRel) {
                    put(
                        k,
                        Datum::Gauge(f64::from_bits(g.bits.load(Ordering::Acquire))),
                    );
                }
            }
            for (k, h) in &cells.histograms {
                let values = std::mem::take(&mut *h.0.lock().expect("histogram lock"));
                if !values.is_empty() {
                    put(k, Datum::Values(values));
                }
            }
        }
        let mut docs = Vec::new();
        for (labels, data) in groups {
            let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
            let has_site = keys.contains(&dim::SITE);
            let mut pending = data;
            while !pending.is_empty() {
                let mut doc = Map::new();
                for (k, v) in &labels {
                    doc.insert(k.clone(), Value::String(v.clone()));
                }
                let (mut rolled, mut plain) = (Vec::new(), Vec::new());
                let mut rest = Vec::new();
                for (name, datum) in pending {
                    let value = match datum {
                        Datum::Count(n) => json!(n),
                        Datum::Gauge(v) => json!(v),
                        Datum::Values(mut vs) => {
                            if vs.len() > MAX_VALUES {
                                let more = vs.split_off(MAX_VALUES);
                                rest.push((name.clone(), Datum::Values(more)));
                            }
                            json!(vs)
                        }
                    };
                    let def = json!({"Name": name, "Unit": unit_of(&name)});
                    if has_site && keys.len() > 1 && SITE_ROLLUP.contains(&name.as_str()) {
                        rolled.push(def);
                    } else {
                        plain.push(def);
                    }
                    doc.insert(name, value);
                }
                let mut directives = Vec::new();
                if !rolled.is_empty() {
                    directives.push(json!({
                        "Namespace": NAMESPACE,
                        "Dimensions": [[dim::SITE], keys],
                        "Metrics": rolled,
                    }));
                }
                if !plain.is_empty() {
                    directives.push(json!({
                        "Namespace": NAMESPACE,
                        "Dimensions": [keys],
                        "Metrics": plain,
                    }));
                }
                doc.insert(
                    "_aws".into(),
                    json!({"Timestamp": now_ms, "CloudWatchMetrics": directives}),
                );
                docs.push(Value::Object(doc));
                pending = rest;
            }
        }
        docs
    }

    /// Writes [`Self::take_documents`] as JSON lines to `out` (stdout in Lambda).
    pub fn flush_to(&self, out: &mut impl Write, now_ms: i64) -> std::io::Result<()> {
        for doc in self.take_documents(now_ms) {
            writeln!(out, "{doc}")?;
        }
        out.flush()
    }

    /// Writes the documents to stdout; a failure is logged, never raised (metrics must not
    /// fail an invocation).
    pub fn flush_stdout(&self) {
        if let Err(e) = self.flush_to(&mut std::io::stdout().lock(), crate::now_ms()) {
            tracing::warn!(error = %e, "Writing the metrics failed.");
        }
    }
}

impl Recorder for EmfRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut cells = self.cells.lock().expect("metrics lock");
        Counter::from_arc(cells.counters.entry(key.clone()).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut cells = self.cells.lock().expect("metrics lock");
        Gauge::from_arc(cells.gauges.entry(key.clone()).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut cells = self.cells.lock().expect("metrics lock");
        Histogram::from_arc(cells.histograms.entry(key.clone()).or_default().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::names::{MODEL_AGE_SECONDS, RECOMMEND_LATENCY_MS};

    #[test]
    fn documents_follow_the_emf_spec_with_the_site_rollup() {
        // GIVEN a recorder and an invocation's metrics
        let rec = EmfRecorder::new();
        metrics::with_local_recorder(&rec, || {
            let labels = [
                (dim::SITE, "demo"),
                (dim::ENDPOINT, "for-you"),
                (dim::VARIANT, "als"),
                (dim::STATUS, "200"),
            ];
            metrics::counter!(RECOMMEND_REQUESTS, &labels).increment(2);
            metrics::counter!(RECOMMEND_REQUESTS, &labels).increment(1);
            metrics::histogram!(RECOMMEND_LATENCY_MS, dim::SITE => "demo", dim::ENDPOINT => "for-you")
                .record(1.5);
            metrics::gauge!(MODEL_AGE_SECONDS, dim::SITE => "demo", dim::TASK => "als").set(60.0);
        });
        // WHEN flushed
        let mut out = Vec::new();
        rec.flush_to(&mut out, 1_700_000_000_000).unwrap();
        let docs: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // THEN one document per label set, each valid EMF
        assert_eq!(docs.len(), 3, "{docs:?}");
        for d in &docs {
            assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000i64);
            for directive in d["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
                assert_eq!(directive["Namespace"], "Nectar");
                for set in directive["Dimensions"].as_array().unwrap() {
                    for k in set.as_array().unwrap() {
                        assert!(d[k.as_str().unwrap()].is_string(), "{k} has no value");
                    }
                }
                for m in directive["Metrics"].as_array().unwrap() {
                    assert!(
                        !d[m["Name"].as_str().unwrap()].is_null(),
                        "{m} has no value"
                    );
                }
            }
        }
        let req = docs.iter().find(|d| d["variant"] == "als").unwrap();
        assert_eq!(req[RECOMMEND_REQUESTS], 3);
        let directive = &req["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            directive["Dimensions"],
            json!([["site"], ["site", "endpoint", "variant", "status"]])
        );
        assert_eq!(directive["Metrics"][0]["Unit"], "Count");
        let lat = docs
            .iter()
            .find(|d| !d[RECOMMEND_LATENCY_MS].is_null())
            .unwrap();
        assert_eq!(lat[RECOMMEND_LATENCY_MS], json!([1.5]));
        let lat_dirs = lat["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(lat_dirs.len(), 1, "no rollup for latency");
        assert_eq!(lat_dirs[0]["Metrics"][0]["Unit"], "Milliseconds");
        let age = docs.iter().find(|d| d["task"] == "als").unwrap();
        assert_eq!(age[MODEL_AGE_SECONDS], 60.0);
        // AND a second flush has nothing new: counters were reset, the gauge not set again
        assert!(rec.take_documents(0).is_empty());
    }

    #[test]
    fn more_than_100_values_are_split_over_documents() {
        let rec = EmfRecorder::new();
        metrics::with_local_recorder(&rec, || {
            let h = metrics::histogram!(RECOMMEND_LATENCY_MS, dim::SITE => "demo");
            for i in 0..250 {
                h.record(i as f64);
            }
        });
        let docs = rec.take_documents(0);
        let sizes: Vec<usize> = docs
            .iter()
            .map(|d| d[RECOMMEND_LATENCY_MS].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        let total: f64 = docs
            .iter()
            .flat_map(|d| d[RECOMMEND_LATENCY_MS].as_array().unwrap().clone())
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert_eq!(total, (0..250).sum::<i32>() as f64);
    }
}
