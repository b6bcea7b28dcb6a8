//! Readiness of the recommend service (`GET /healthz`): per endpoint of every site, the model
//! version it serves and its age, the fallback list behind it, and why it cannot answer.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::{no_model_message, LoadedModel, ModelState, RecommendService};
use crate::collect::sink::EventSink;
use crate::config::{EndpointConfig, EndpointKind};
use crate::http::response::json_response;
use crate::model_store::ModelStore;

/// The readiness route.
pub const HEALTH_PATH: &str = "/healthz";

/// What a readiness check found for one task.
struct TaskState {
    task: String,
    state: ModelState,
}

impl TaskState {
    fn ready(&self) -> Option<&LoadedModel> {
        match &self.state {
            ModelState::Ready(m) => Some(m),
            _ => None,
        }
    }

    /// `{"task", "version", "age_seconds"}` when a version is loaded, else `null`.
    fn json(&self, now_ms: i64) -> Value {
        self.ready().map_or(Value::Null, |m| {
            // Trained time, not load time: what an operator wants to know is how stale the
            // data behind the answers is.
            let age = m.trained_ms().map(|t| (now_ms - t).max(0) / 1000);
            json!({ "task": self.task, "version": m.version(), "age_seconds": age })
        })
    }

    fn unreachable(&self) -> bool {
        matches!(self.state, ModelState::Unreachable)
    }
}

impl<M: ModelStore, S: EventSink + 'static> RecommendService<M, S> {
    async fn task_state(&self, site: &str, task: &str) -> TaskState {
        TaskState {
            task: task.to_string(),
            state: self.model(site, task).await,
        }
    }

    /// One endpoint's readiness: it is ready when every request can get an answer, i.e. each
    /// variant's model is loaded (its own popularity list answers unknown users) or a
    /// fallback list is.
    async fn endpoint_health(
        &self,
        site: &str,
        name: &str,
        ep: &EndpointConfig,
        now_ms: i64,
    ) -> (bool, Value) {
        let model = self.task_state(site, &ep.model).await;
        let mut fallback = None;
        let mut fallback_missing = false;
        let mut unreachable = model.unreachable();
        for task in ep.fallback_tasks() {
            let t = self.task_state(site, &task).await;
            unreachable |= t.unreachable();
            if t.ready().is_some() {
                fallback = Some(t);
                break;
            }
            fallback_missing |= matches!(t.state, ModelState::NoModel);
        }
        let fallback_ready = fallback.is_some();
        let mut reasons = Vec::new();
        let mut variants = serde_json::Map::new();
        let targets: Vec<(Option<String>, Option<String>)> = match &ep.experiment {
            None => vec![(None, Some(ep.model.clone()))],
            Some(x) => x
                .variants
                .iter()
                .map(|v| (Some(v.name.clone()), v.model.clone()))
                .collect(),
        };
        for (variant, task) in targets {
            let other;
            let state = match &task {
                Some(t) if *t == ep.model => Some(&model),
                Some(t) => {
                    other = self.task_state(site, t).await;
                    Some(&other)
                }
                None => None,
            };
            unreachable |= state.is_some_and(TaskState::unreachable);
            let model_ready = state.is_some_and(|s| s.ready().is_some());
            let ready = model_ready || fallback_ready;
            if !ready {
                reasons.push(if unreachable {
                    "the model store is unreachable and no list is in memory".to_string()
                } else {
                    no_model_message(
                        site,
                        name,
                        task.as_deref(),
                        false,
                        &ep.fallback_tasks(),
                        fallback_missing,
                    )
                });
            }
            if let Some(v) = variant {
                variants.insert(
                    v,
                    json!({
                        "ready": ready,
                        "model": state.map_or(Value::Null, |s| s.json(now_ms)),
                    }),
                );
            }
        }
        reasons.dedup();
        let ready = reasons.is_empty();
        let mut out = json!({
            "kind": match ep.kind {
                EndpointKind::User => "user",
                EndpointKind::Similar => "similar",
                EndpointKind::Session => "session",
            },
            "ready": ready,
            "model": model.json(now_ms),
            "fallback": fallback.as_ref().map_or(Value::Null, |f| f.json(now_ms)),
        });
        if !variants.is_empty() {
            out["variants"] = Value::Object(variants);
        }
        if !ready {
            out["reason"] = json!(reasons.join("; "));
        }
        (ready, out)
    }

    /// Readiness of every endpoint of every site: `{"status": "ready" | "not_ready", "sites":
    /// {SITE: {"endpoints": {NAME: {"kind", "ready", "model", "fallback", "variants"?,
    /// "reason"?}}}}}`. Checking loads the versions it reports, so a ready answer also means
    /// the first request will not wait for a load.
    pub async fn health(&self, now_ms: i64) -> (bool, Value) {
        let mut all_ready = true;
        let mut sites = serde_json::Map::new();
        for (site, sc) in &self.config.sites {
            let mut endpoints = serde_json::Map::new();
            for (name, ep) in &sc.endpoints {
                let (ready, v) = self.endpoint_health(site, name, ep, now_ms).await;
                all_ready &= ready;
                endpoints.insert(name.clone(), v);
            }
            sites.insert(site.clone(), json!({ "endpoints": endpoints }));
        }
        let status = if all_ready { "ready" } else { "not_ready" };
        (all_ready, json!({ "status": status, "sites": sites }))
    }

    /// `GET /healthz`: the [`Self::health`] document, 200 when every endpoint can answer,
    /// else 503.
    pub async fn health_response(&self, now_ms: i64) -> http::Response<Bytes> {
        let (ready, body) = self.health(now_ms).await;
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut resp = json_response(status, &body);
        resp.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        resp
    }
}
