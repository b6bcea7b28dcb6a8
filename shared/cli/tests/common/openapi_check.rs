//! Checks answers against the OpenAPI document: the status must be documented for the route's
//! (path template, method), and a JSON body must validate against that answer's schema (JSON
//! Schema draft 2020-12, as OpenAPI 3.1 uses). The black-box suites call it for every answer.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use nectar_platform::http::openapi::{document, path_template};
use serde_json::{json, Value};

fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(document)
}

/// The schema at `pointer` in the document, with the document's components beside it so
/// that its `#/components/...` references resolve.
fn validator(pointer: &str) -> &'static jsonschema::Validator {
    static CACHE: OnceLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> =
        OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap();
    cache.entry(pointer.to_string()).or_insert_with(|| {
        let schema = doc()
            .pointer(pointer)
            .unwrap_or_else(|| panic!("no {pointer}"));
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "allOf": [schema],
            "components": doc()["components"],
        });
        let v = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}"));
        Box::leak(Box::new(v))
    })
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `Err` (saying why) when the answer `status`/`body` to `method path` (the path may carry
/// a query) is not what the document says.
pub fn check(path: &str, method: &str, status: u16, body: &str) -> Result<(), String> {
    let path = path.split('?').next().unwrap_or(path);
    let method = method.to_ascii_lowercase();
    let head = method == "head";
    let method = if head { "get".to_string() } else { method };
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error_body = "/components/schemas/ErrorBody";
    let validate = |pointer: &str, v: &Value| -> Result<(), String> {
        let errors: Vec<String> = validator(pointer)
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {path} {status}: the body does not match {pointer}: {}; body: {body}",
                errors.join("; ")
            ))
        }
    };
    let op = path_template(doc(), path)
        .map(|t| (t, &doc()["paths"][t][&method]))
        .filter(|(_, op)| op.is_object());
    let Some((template, _)) = op else {
        // Not a documented operation: only an error answer fits (404 no route, 405 method,
        // or a refusal that comes before routing: 400 framing, 408, 413, 503 over the bound).
        if !matches!(status, 400 | 404 | 405 | 408 | 413 | 503) {
            return Err(format!(
                "{method} {path} is not documented, yet answered {status}"
            ));
        }
        return match &parsed {
            Some(v) => validate(error_body, v),
            None if head => Ok(()),
            None => Err(format!(
                "{method} {path} {status}: not a JSON error body: {body}"
            )),
        };
    };
    let pointer = format!("/paths/{}/{method}/responses/{status}", escape(template));
    let Some(answer) = doc().pointer(&pointer) else {
        return Err(format!(
            "{method} {template}: status {status} is not documented; body: {body}"
        ));
    };
    let Some(content) = answer["content"].as_object() else {
        return Ok(()); // No body documented (204).
    };
    if head {
        return Ok(());
    }
    match (content.contains_key("application/json"), parsed) {
        (true, Some(v)) => validate(&format!("{pointer}/content/application~1json/schema"), &v),
        // A route answering JSON or another type (the report: json, html, md).
        (true, None) if content.len() > 1 => Ok(()),
        (true, None) => Err(format!("{method} {template} {status}: not JSON: {body}")),
        (false, _) => Ok(()),
    }
}

/// Panics when the answer does not match the document (see [`check`]).
pub fn openapi_check(path: &str, method: &str, status: u16, body: &str) {
    if let Err(e) = check(path, method, status, body) {
        panic!("OpenAPI: {e}");
    }
}

/// [`openapi_check`] for a raw request (its request line gives method and path) and the
/// answer's status and body.
pub fn openapi_check_raw(request: &[u8], status: u16, body: &str) {
    let text = String::from_utf8_lossy(request);
    let mut words = text.lines().next().unwrap_or("").split(' ');
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return; // Not a request line: nothing to look up.
    };
    openapi_check(target, method, status, body);
}
