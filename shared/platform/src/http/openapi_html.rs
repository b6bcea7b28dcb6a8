//! `GET /docs`: the OpenAPI document rendered as one static HTML page (inline CSS, no script,
//! nothing fetched), so the reference works offline and says exactly what the document says.

use std::fmt::Write as _;

use html_escape::encode_text as esc;
use serde_json::Value;

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;\
padding:0 1rem;color:#222}code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;\
padding:0 .2em}h2{border-bottom:1px solid #ccc;margin-top:2.5rem}h3{margin:1.8rem 0 .3rem}\
table{border-collapse:collapse;margin:.4rem 0 1rem;width:100%}td,th{border:1px solid #ddd;\
padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#fafafa}\
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}\
.get{color:#075}.post{color:#a50}.put{color:#05a}.delete{color:#b00}.options{color:#666}\
nav a{margin-right:.8em}";

/// The page for `doc` (an OpenAPI 3.1 document as JSON).
pub fn render(doc: &Value) -> String {
    let mut h = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{t} API reference</title>\
         <style>{STYLE}</style></head><body><h1>{t} API reference</h1><p>{d}</p>\
         <p>OpenAPI {v}: <a href=\"/openapi.json\">/openapi.json</a>.</p>",
        t = esc(title),
        d = inline_code(doc["info"]["description"].as_str().unwrap_or("")),
        v = esc(doc["openapi"].as_str().unwrap_or("")),
    );
    if let Some(schemes) = doc["components"]["securitySchemes"].as_object() {
        h.push_str("<h2>Authentication</h2><ul>");
        for (name, s) in schemes {
            let _ = write!(
                h,
                "<li><code>{}</code>: HTTP <code>Authorization: {} &lt;key&gt;</code>. {}</li>",
                esc(name),
                esc(&capitalised(s["scheme"].as_str().unwrap_or(""))),
                inline_code(s["description"].as_str().unwrap_or(""))
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Routes</h2><nav>");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for method in item.as_object().into_iter().flat_map(|o| o.keys()) {
            let _ = write!(
                h,
                "<a href=\"#{}\">{} {}</a> ",
                anchor(method, path),
                esc(&method.to_uppercase()),
                esc(path)
            );
        }
    }
    h.push_str("</nav>");
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            operation(&mut h, path, method, op);
        }
    }
    h.push_str("<h2>Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let _ = write!(h, "<h3 id=\"schema-{n}\">{n}</h3>", n = esc(name));
        schema_block(&mut h, schema);
    }
    h.push_str("</body></html>");
    h
}

fn operation(h: &mut String, path: &str, method: &str, op: &Value) {
    let _ = write!(
        h,
        "<h3 id=\"{}\"><span class=\"m {m}\">{M}</span> <code>{p}</code></h3>",
        anchor(method, path),
        m = esc(method),
        M = esc(&method.to_uppercase()),
        p = esc(path)
    );
    if let Some(sec) = op["security"].as_array() {
        let names: Vec<String> = sec
            .iter()
            .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys().cloned()))
            .collect();
        let optional = sec
            .iter()
            .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
        if !names.is_empty() {
            let _ = write!(
                h,
                "<p>Authentication: <code>{}</code>{}</p>",
                esc(&names.join(", ")),
                if optional {
                    " (only where the endpoint requires a key)"
                } else {
                    ""
                }
            );
        }
    }
    if let Some(params) = op["parameters"].as_array() {
        h.push_str("<table><tr><th>Parameter</th><th>In</th><th>Type</th><th>Required</th><th>Description</th></tr>");
        for p in params {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                esc(p["in"].as_str().unwrap_or("")),
                type_of(&p["schema"]),
                if p["required"] == true { "yes" } else { "no" },
                inline_code(p["description"].as_str().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    }
    if let Some(body) = op["requestBody"].as_object() {
        let _ = write!(
            h,
            "<p>Request body: {}</p>",
            inline_code(
                body.get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            )
        );
        content_table(h, body.get("content").unwrap_or(&Value::Null));
    }
    h.push_str("<table><tr><th>Status</th><th>Description</th><th>Body</th></tr>");
    for (status, r) in op["responses"].as_object().into_iter().flatten() {
        let mut bodies = String::new();
        for (ct, c) in r["content"].as_object().into_iter().flatten() {
            let _ = write!(
                bodies,
                "<code>{}</code> {}<br>",
                esc(ct),
                type_of(&c["schema"])
            );
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(status),
            inline_code(r["description"].as_str().unwrap_or("")),
            bodies
        );
    }
    h.push_str("</table>");
}

fn content_table(h: &mut String, content: &Value) {
    h.push_str("<table><tr><th>Content type</th><th>Schema</th></tr>");
    for (ct, c) in content.as_object().into_iter().flatten() {
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            esc(ct),
            type_of(&c["schema"])
        );
    }
    h.push_str("</table>");
}

fn schema_block(h: &mut String, schema: &Value) {
    if let Some(d) = schema["description"].as_str() {
        let _ = write!(h, "<p>{}</p>", inline_code(d));
    }
    if let Some(props) = schema["properties"].as_object() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        h.push_str(
            "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>",
        );
        for (name, p) in props {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                type_of(p),
                if required.contains(&name.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                inline_code(p["description"].as_str().unwrap_or(""))
            );
        }
        h.push_str("</table>");
    } else {
        let _ = write!(h, "<p>{}</p>", type_of(schema));
    }
}

/// A short type expression with links to named schemas: `string`, `integer | null`,
/// `array of ScoredItem`, `one of: ready, not_ready`.
fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{n}\">{n}</a>", n = esc(name));
    }
    if let Some(e) = s["enum"].as_array() {
        let vals: Vec<String> = e
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string().replace('"', ""))))
            .collect();
        return format!("one of: {}", vals.join(", "));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = s[key].as_array() {
            return alts.iter().map(type_of).collect::<Vec<_>>().join(" | ");
        }
    }
    let t = match &s["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => vec![],
    };
    if t.is_empty() {
        return "any".into();
    }
    t.iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", type_of(&s["items"])),
            "object" if s["additionalProperties"].is_object() => {
                format!("map of {}", type_of(&s["additionalProperties"]))
            }
            other => esc(other).into_owned(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Escapes `text` and turns its `` `code` `` spans into `<code>`.
fn inline_code(text: &str) -> String {
    esc(text)
        .split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{part}</code>")
            } else {
                part.to_string()
            }
        })
        .collect()
}

fn anchor(method: &str, path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{method}{slug}")
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_lists_every_route_with_its_parameters_answers_and_schemas() {
        // GIVEN the document
        let doc = crate::http::openapi::document();
        // WHEN rendered
        let page = render(&doc);
        // THEN every operation has its heading, and every schema its section
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    page.contains(&format!("id=\"{}\"", anchor(method, path))),
                    "{method} {path}"
                );
            }
        }
        for name in doc["components"]["schemas"].as_object().unwrap().keys() {
            assert!(page.contains(&format!("id=\"schema-{name}\"")), "{name}");
        }
        // AND parameters, error codes and the bearer scheme are on the page
        assert!(page.contains("<code>user_id</code>"));
        assert!(page.contains("<code>unknown_endpoint</code>"));
        assert!(page.contains("Authorization: Bearer"));
        // AND the descriptions' `code` spans are rendered, not shown as backticks
        assert!(!page.contains('`'), "a raw backtick on the page");
        // AND it is self-contained: no script, nothing loaded from elsewhere
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn types_read_as_short_expressions() {
        let s = serde_json::json!({"type": ["integer", "null"]});
        assert_eq!(type_of(&s), "integer | null");
        let s = serde_json::json!({"type": "array", "items": {"$ref": "#/components/schemas/X"}});
        assert_eq!(type_of(&s), "array of <a href=\"#schema-X\">X</a>");
        assert_eq!(inline_code("a `b` <c>"), "a <code>b</code> &lt;c&gt;");
    }
}
