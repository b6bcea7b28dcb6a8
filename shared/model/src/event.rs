//! PEACH Collect Format v1.0.3 payloads: parsing, validation and flattening.
//!
//! A payload carries shared fields once (`client`, `user_id`, timestamps) and a list of events.
//! The collect path validates the whole payload (one invalid event rejects it whole, so nothing
//! is half-stored), then unpacks it into [`FlatEvent`]s, one JSON line each in the event log.
//!
//! Parsing borrows from the request body: free-form objects (`client`, `context`, `props`,
//! `metadata`) are kept as raw JSON slices and written back verbatim, so a 1000-event payload
//! is validated and flattened without building a JSON tree.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::mapping::{
    map_event_fields, metadata_ms, value_number, EventFields, EventWeights, Interaction, Skip,
    WeightRule, TIMESTAMP_PROBLEM,
};
use crate::strict_json;

mod raw;
use raw::{EventSlot, EventsField, RawClient, RawDevice, RawEvent, RawPayload};

/// `client.device.type` values allowed by the PEACH collect format.
pub const DEVICE_TYPES: [&str; 8] = [
    "console", "phone", "tablet", "desktop", "hbbtv", "tvbox", "wearable", "embedded",
];

/// 2000-01-01T00:00:00Z in milliseconds: the earliest timestamp accepted.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;

/// Limits applied to collect payloads. [`CollectLimits::default`] holds the documented values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectLimits {
    /// Maximum decoded body size in bytes (1 MiB).
    pub max_body_bytes: usize,
    /// Maximum number of events in one payload (1000).
    pub max_events: usize,
    /// Maximum length of ids (`client.id`, event `id`, `user_id`, …) in bytes (256).
    pub max_id_len: usize,
    /// Maximum size of each of `context`, `props`, `metadata` (and `client`) as JSON (16 KiB).
    pub max_object_bytes: usize,
    /// How far in the future a timestamp may be, relative to the collect time (24 h).
    pub max_future_ms: i64,
    /// Device clock skew (`collect − sent`) beyond which event times are corrected.
    pub skew_threshold_ms: i64,
    /// Maximum number of problems listed in an error response.
    pub max_problems: usize,
}

impl Default for CollectLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_events: 1000,
            max_id_len: 256,
            max_object_bytes: 16 << 10,
            max_future_ms: 24 * 3600 * 1000,
            skew_threshold_ms: 60_000,
            max_problems: 50,
        }
    }
}

/// One reason a payload was rejected, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// JSON path such as `events[3].event_timestamp`.
    pub path: String,
    /// What is wrong, in plain words.
    pub problem: String,
}

/// A flat event as stored in the event log: one payload event plus the shared payload fields
/// and the fields the server injects (`site_key`, `collect_timestamp`, `event_id`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlatEvent<'a> {
    /// Deterministic id: hash of site, client id, type, id and the device's event timestamp.
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    /// The site (tenant) the event was collected for; from the URL, never from the body.
    #[serde(borrow)]
    pub site_key: Cow<'a, str>,
    /// PEACH event type (`media_play`, `page_view`, `recommendation_hit`, …).
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
    /// What the event is about: the media, article or page; the recommendation for
    /// `recommendation_*` events.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// Event time in ms UTC, corrected for device clock skew when that exceeded the threshold.
    pub event_timestamp: i64,
    /// The event time as the device sent it, present only when it was corrected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_timestamp_original: Option<i64>,
    /// When the server received the payload, ms UTC.
    pub collect_timestamp: i64,
    /// When the device sent the payload, by its own clock, ms UTC.
    pub sent_timestamp: i64,
    /// Start of the app session, by the device clock, ms UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_start_timestamp: Option<i64>,
    /// Logged-in user, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub user_id: Option<Cow<'a, str>>,
    /// PEACH schema version of the payload.
    #[serde(borrow)]
    pub peach_schema_version: Cow<'a, str>,
    /// The payload's `client` object, verbatim.
    #[serde(borrow)]
    pub client: &'a RawValue,
    /// The event's `context` object, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub context: Option<&'a RawValue>,
    /// The event's `props` object, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub props: Option<&'a RawValue>,
    /// The event's `metadata` object, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    pub metadata: Option<&'a RawValue>,
    /// `true` only on the recommend service's `recommendation_served` events (the field
    /// `online::attribution::SERVED_MARKER_FIELD`): collect builds every flat event itself and
    /// never sets it, so online evaluation can tell served answers from forgeries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nectar_served: bool,
}

/// A flat event encoded as one JSON line (no trailing newline), with the fields that
/// writers need for partitioning and dedupe.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedEvent {
    /// The event's id (also inside `line`).
    pub event_id: String,
    /// Event time used for partitioning, ms UTC.
    pub event_timestamp: i64,
    /// The flat event as one line of JSON.
    pub line: String,
    /// What the line maps to under its site's weights, when that was worked out as the event
    /// was accepted ([`accept_site_payload`]): consumers of the batch (`nectar dev`'s
    /// histories and counts) then need not parse the line again. `None`: not worked out
    /// (map the line).
    pub mapped: Option<Result<Interaction, Skip>>,
}

/// The result of a successful validation: the site's events, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The site every event belongs to.
    pub site_key: String,
    /// The flat events in payload order.
    pub events: Vec<EncodedEvent>,
}

/// Collects problems up to a bound, so a huge bad payload does not produce a huge answer.
struct Problems {
    list: Vec<Problem>,
    total: usize,
    max: usize,
    reserved_type: bool,
}

impl Problems {
    fn new(max: usize) -> Self {
        Self {
            list: Vec::new(),
            total: 0,
            max,
            reserved_type: false,
        }
    }

    fn into_rejection(self) -> Rejection {
        Rejection {
            problems: self.list,
            total: self.total,
            reserved_type: self.reserved_type,
        }
    }

    fn push(&mut self, path: impl FnOnce() -> String, problem: impl Into<String>) {
        self.total += 1;
        if self.list.len() < self.max {
            self.list.push(Problem {
                path: path(),
                problem: problem.into(),
            });
        }
    }
}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The problems found (at most [`CollectLimits::max_problems`]).
    pub problems: Vec<Problem>,
    /// How many problems there were in all.
    pub total: usize,
    /// Whether an event has a type only the server writes ([`RESERVED_EVENT_TYPES`]): such a
    /// payload is refused with its own code, `reserved_event_type`.
    pub reserved_type: bool,
}

impl Rejection {
    fn single(path: &str, problem: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                path: path.into(),
                problem: problem.into(),
            }],
            total: 1,
            reserved_type: false,
        }
    }

    /// A one-line summary naming the first offending field.
    pub fn message(&self) -> String {
        match self.problems.first() {
            Some(p) if self.total == 1 => format!("invalid payload: {}: {}", p.path, p.problem),
            Some(p) => format!(
                "invalid payload: {} problems, the first at {}: {}",
                self.total, p.path, p.problem
            ),
            None => "invalid payload".to_string(),
        }
    }
}

/// Event types only the server writes: `recommendation_served` is the recommend service's log
/// of what it answered, which online evaluation trusts; a client may never send one.
pub const RESERVED_EVENT_TYPES: [&str; 1] = ["recommendation_served"];

/// Whether `s` contains a control character (C0 such as NUL and ESC, DEL, or C1): never
/// part of an id, and a hazard in the logs and terminals that show ids.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Whether `s` is a valid site key, endpoint or task name: `[a-z0-9_-]{1,64}`.
pub fn is_valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The deterministic event id: the first 128 bits of SHA-256 over site, client id, type, id
/// and the event timestamp as the device sent it, hex encoded (32 characters).
pub fn event_id(site_key: &str, client_id: &str, event_type: &str, id: &str, ts: i64) -> String {
    let mut h = Sha256::new();
    for part in [site_key, client_id, event_type, id] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(ts.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}

fn kind_of(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Why a value that should be a string did not decode as one.
fn not_a_string(raw: &RawValue) -> String {
    match kind_of(raw) {
        // A string that does not decode: the strict scan names lone surrogates first, so this
        // is a safety net, never "must be a string, not a string".
        "a string" => "is not a decodable string".to_string(),
        kind => format!("must be a string, not {kind}"),
    }
}

fn is_null(raw: &RawValue) -> bool {
    raw.get() == "null"
}

/// Context for field checks: the limits and the collect time.
struct Checker<'l> {
    limits: &'l CollectLimits,
    now_ms: i64,
}

impl Checker<'_> {
    /// A required or optional string id: non-empty, at most `max_id_len` bytes.
    fn id<'a>(
        &self,
        raw: Option<&'a RawValue>,
        required: bool,
        path: impl Fn() -> String,
        problems: &mut Problems,
    ) -> Option<Cow<'a, str>> {
        let raw = match raw {
            Some(r) if !is_null(r) => r,
            _ => {
                if required {
                    problems.push(&path, "is required");
                }
                return None;
            }
        };
        match serde_json::from_str::<Cow<'a, str>>(raw.get()) {
            Ok(s) if s.is_empty() => {
                problems.push(&path, "must not be empty");
                None
            }
            Ok(s) if s.len() > self.limits.max_id_len => {
                problems.push(
                    &path,
                    format!("is longer than {} bytes", self.limits.max_id_len),
                );
                None
            }
            Ok(s) if has_control_chars(&s) => {
                problems.push(
                    &path,
                    "must not contain control characters (U+0000-U+001F, U+007F-U+009F)",
                );
                None
            }
            Ok(s) => Some(s),
            Err(_) => {
                problems.push(&path, not_a_string(raw));
                None
            }
        }
    }

    /// Under a `"value"` weight rule, the event's `props.value` must be a number (or a string
    /// holding one, as the mapping reads it), else the event can never become an interaction.
    fn weight_value(
        &self,
        props: Option<&RawValue>,
        path: impl Fn() -> String,
        problems: &mut Problems,
    ) {
        #[derive(Deserialize)]
        struct ValueField {
            #[serde(default)]
            value: Option<serde_json::Value>,
        }
        let value = props
            .and_then(|p| serde_json::from_str::<ValueField>(p.get()).ok())
            .and_then(|p| p.value);
        match value {
            None => problems.push(
                path,
                "is required: this event type is weighted by its props.value",
            ),
            Some(v) if value_number(&v).is_none() => problems.push(
                path,
                "must be a finite number (or a string holding one): this event type is weighted by it",
            ),
            Some(_) => {}
        }
    }

    /// The catalog reads `metadata.available_from` / `available_until` as timestamps: a value
    /// it cannot read is refused here rather than dropped later.
    fn metadata_window(&self, metadata: Option<&RawValue>, i: usize, problems: &mut Problems) {
        #[derive(Deserialize)]
        struct Window {
            #[serde(default)]
            available_from: Option<serde_json::Value>,
            #[serde(default)]
            available_until: Option<serde_json::Value>,
        }
        // Most metadata has no window: skip the parse.
        let Some(raw) = metadata.filter(|m| m.get().contains("available_")) else {
            return;
        };
        let Ok(w) = serde_json::from_str::<Window>(raw.get()) else {
            return;
        };
        for (field, value) in [
            ("available_from", w.available_from),
            ("available_until", w.available_until),
        ] {
            if value.as_ref().is_some_and(|v| metadata_ms(v).is_none()) {
                problems.push(
                    || format!("events[{i}].metadata.{field}"),
                    TIMESTAMP_PROBLEM,
                );
            }
        }
    }

    /// A timestamp in integer milliseconds since the epoch, within the accepted range.
    fn timestamp(
        &self,
        raw: Option<&RawValue>,
        required: bool,
        path: impl Fn() -> String,
        problems: &mut Problems,
    ) -> Option<i64> {
        let raw = match raw {
            Some(r) if !is_null(r) => r,
            _ => {
                if required {
                    problems.push(&path, "is required");
                }
                return None;
            }
        };
        let Ok(ts) = raw.get().parse::<i64>() else {
            let problem = if kind_of(raw) == "a number" {
                "must be an integer number of milliseconds since 1970-01-01 UTC".to_string()
            } else {
                format!("must be a number (ms since epoch), not {}", kind_of(raw))
            };
            problems.push(&path, problem);
            return None;
        };
        if ts < MIN_TIMESTAMP_MS {
            let hint = if ts > 0 && ts < 100_000_000_000 {
                " (this looks like seconds)"
            } else {
                ""
            };
            problems.push(
                &path,
                format!("must be in milliseconds, not before 2000-01-01{hint}"),
            );
            return None;
        }
        if ts > self.now_ms.saturating_add(self.limits.max_future_ms) {
            problems.push(&path, "is more than 24 hours in the future");
            return None;
        }
        Some(ts)
    }

    /// An optional free-form object, at most `max_object_bytes` of JSON.
    fn object<'a>(
        &self,
        raw: Option<&'a RawValue>,
        path: impl Fn() -> String,
        problems: &mut Problems,
    ) -> Option<&'a RawValue> {
        let raw = raw.filter(|r| !is_null(r))?;
        if !raw.get().starts_with('{') {
            problems.push(&path, format!("must be an object, not {}", kind_of(raw)));
            return None;
        }
        if raw.get().len() > self.limits.max_object_bytes {
            problems.push(
                &path,
                format!("is larger than {} bytes", self.limits.max_object_bytes),
            );
            return None;
        }
        Some(raw)
    }

    /// An optional plain string (names, versions), bounded like ids.
    fn opt_string(
        &self,
        raw: Option<&RawValue>,
        path: impl Fn() -> String,
        problems: &mut Problems,
    ) {
        if let Some(raw) = raw.filter(|r| !is_null(r)) {
            match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
                Ok(s) if s.len() > self.limits.max_id_len => problems.push(
                    &path,
                    format!("is longer than {} bytes", self.limits.max_id_len),
                ),
                Ok(_) => {}
                Err(_) => problems.push(&path, not_a_string(raw)),
            }
        }
    }
}

/// Parses and validates a PEACH payload and flattens it into encoded events, without a site's
/// weight rules (the server's own events, tests); collect uses [`accept_site_payload`].
pub fn accept_payload(
    body: &[u8],
    site_key: &str,
    now_ms: i64,
    limits: &CollectLimits,
) -> Result<Accepted, Rejection> {
    accept(body, site_key, now_ms, limits, None)
}

/// Parses and validates a PEACH payload for a site and flattens it into encoded events.
///
/// `body` is the decoded request body; `now_ms` is the collect timestamp; `weights` are the
/// site's event weights: an event whose type is weighted by `"value"` needs a numeric
/// `props.value`. Any invalid field rejects the whole payload, with every problem found
/// (bounded) and its JSON path. Values no reader could decode back (numbers beyond `f64`,
/// lone surrogate escapes) are refused anywhere in the body, free-form objects included,
/// so that every line of the log stays strict JSON.
pub fn accept_site_payload(
    body: &[u8],
    site_key: &str,
    now_ms: i64,
    limits: &CollectLimits,
    weights: &EventWeights,
) -> Result<Accepted, Rejection> {
    accept(body, site_key, now_ms, limits, Some(weights))
}

/// [`accept_site_payload`]; without the site's weights, no event's mapping is worked out.
fn accept(
    body: &[u8],
    site_key: &str,
    now_ms: i64,
    limits: &CollectLimits,
    weights: Option<&EventWeights>,
) -> Result<Accepted, Rejection> {
    if body.len() > limits.max_body_bytes {
        return Err(Rejection::single(
            "",
            format!("body is larger than {} bytes", limits.max_body_bytes),
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| Rejection::single("", format!("body is not valid UTF-8: {e}")))?;
    let mut problems = Problems::new(limits.max_problems);
    strict_json::scan(text, |path, flaw| {
        problems.push(|| path.to_string(), flaw.problem())
    });
    if problems.total > 0 {
        return Err(problems.into_rejection());
    }
    let payload: RawPayload<'_> = serde_json::from_str(text).map_err(|e| {
        let problem = if e.is_data() {
            "the payload must be a JSON object".to_string()
        } else {
            format!("body is not valid JSON: {e}")
        };
        Rejection::single("", problem)
    })?;

    let ck = Checker { limits, now_ms };

    let schema = ck.id(
        payload.peach_schema_version,
        true,
        || "peach_schema_version".into(),
        &mut problems,
    );
    let sent = ck.timestamp(
        payload.sent_timestamp,
        true,
        || "sent_timestamp".into(),
        &mut problems,
    );
    let session_start = ck.timestamp(
        payload.session_start_timestamp,
        false,
        || "session_start_timestamp".into(),
        &mut problems,
    );
    let user_id = ck.id(payload.user_id, false, || "user_id".into(), &mut problems);
    let (client_raw, client_id) = check_client(&ck, payload.client, &mut problems);

    // Each event with the size of its raw JSON, to size its output line in one allocation.
    let events: Vec<(RawEvent<'_>, usize)> = match payload.events {
        Some(EventsField::List(items)) => {
            if items.is_empty() {
                problems.push(|| "events".into(), "must contain at least one event");
            } else if items.len() > limits.max_events {
                problems.push(
                    || "events".into(),
                    format!(
                        "has {} events, more than {} allowed",
                        items.len(),
                        limits.max_events
                    ),
                );
            }
            let mut out = Vec::with_capacity(items.len().min(limits.max_events));
            for (i, item) in items.into_iter().enumerate().take(limits.max_events) {
                match item {
                    EventSlot::Event(ev) => {
                        let len = ev.raw_len();
                        out.push((ev, len));
                    }
                    EventSlot::NotObject(kind) => problems.push(
                        || format!("events[{i}]"),
                        format!("must be an object, not {kind}"),
                    ),
                }
            }
            out
        }
        Some(EventsField::Other("null")) | None => {
            problems.push(|| "events".into(), "is required");
            Vec::new()
        }
        Some(EventsField::Other(kind)) => {
            problems.push(|| "events".into(), format!("must be an array, not {kind}"));
            Vec::new()
        }
    };

    // Device clock skew: when the device clock is off by more than the threshold, shift the
    // event times by the skew and keep the originals.
    let skew = sent
        .map(|s| now_ms - s)
        .filter(|d| d.abs() > limits.skew_threshold_ms);

    let client_len = client_raw.map_or(0, |c| c.get().len());
    let mut flat = Vec::with_capacity(events.len());
    for (i, (ev, raw_len)) in events.iter().enumerate() {
        let event_type = ck.id(
            ev.event_type,
            true,
            || format!("events[{i}].type"),
            &mut problems,
        );
        if let Some(t) = &event_type {
            if t.len() > 64 {
                problems.push(|| format!("events[{i}].type"), "is longer than 64 bytes");
            }
            if RESERVED_EVENT_TYPES.contains(&t.as_ref()) {
                problems.reserved_type = true;
                problems.push(
                    || format!("events[{i}].type"),
                    format!(
                        "`{t}` is written by the recommend service only; clients cannot send it"
                    ),
                );
            }
        }
        let id = ck.id(ev.id, true, || format!("events[{i}].id"), &mut problems);
        let ts = ck.timestamp(
            ev.event_timestamp,
            true,
            || format!("events[{i}].event_timestamp"),
            &mut problems,
        );
        let context = ck.object(ev.context, || format!("events[{i}].context"), &mut problems);
        let props = ck.object(ev.props, || format!("events[{i}].props"), &mut problems);
        let metadata = ck.object(
            ev.metadata,
            || format!("events[{i}].metadata"),
            &mut problems,
        );
        if let Some(t) = &event_type {
            if weights.and_then(|w| w.rule(t)) == Some(WeightRule::PropsValue) {
                ck.weight_value(props, || format!("events[{i}].props.value"), &mut problems);
            }
        }
        ck.metadata_window(metadata, i, &mut problems);
        if problems.total > 0 {
            // Keep validating to report every problem, but stop building output.
            continue;
        }
        let (
            Some(event_type),
            Some(id),
            Some(ts),
            Some(client_raw),
            Some(client_id),
            Some(sent),
            Some(schema),
        ) = (
            event_type,
            id,
            ts,
            client_raw,
            client_id.as_deref(),
            sent,
            schema.as_ref(),
        )
        else {
            continue;
        };
        let eid = event_id(site_key, client_id, &event_type, &id, ts);
        let event_timestamp = skew.map_or(ts, |d| ts + d);
        // The mapping the line would give (the same fields, before they are written).
        let mapped = weights.map(|w| {
            map_event_fields(
                &EventFields {
                    event_id: &eid,
                    event_type: &event_type,
                    id: &id,
                    event_timestamp,
                    user_id: user_id.as_deref(),
                    client: Some(client_raw.get()),
                    context: context.map(RawValue::get),
                    props: props.map(RawValue::get),
                },
                w,
            )
        });
        let event = FlatEvent {
            event_id: Cow::Owned(eid),
            site_key: Cow::Borrowed(site_key),
            event_type,
            id,
            event_timestamp,
            event_timestamp_original: skew.map(|_| ts),
            collect_timestamp: now_ms,
            sent_timestamp: sent,
            session_start_timestamp: session_start,
            user_id: user_id.clone(),
            peach_schema_version: schema.clone(),
            client: client_raw,
            context,
            props,
            metadata,
            nectar_served: false,
        };
        flat.push((event, raw_len + client_len + 400, mapped));
    }

    if problems.total > 0 {
        return Err(problems.into_rejection());
    }
    let events = flat
        .into_iter()
        .map(|(e, size_hint, mapped)| {
            let mut line = Vec::with_capacity(size_hint);
            serde_json::to_writer(&mut line, &e)
                .expect("serialising a validated flat event cannot fail");
            EncodedEvent {
                line: String::from_utf8(line).expect("serde_json writes UTF-8"),
                event_id: e.event_id.into_owned(),
                event_timestamp: e.event_timestamp,
                mapped,
            }
        })
        .collect();
    Ok(Accepted {
        site_key: site_key.to_string(),
        events,
    })
}

fn check_client<'a>(
    ck: &Checker<'_>,
    raw: Option<&'a RawValue>,
    problems: &mut Problems,
) -> (Option<&'a RawValue>, Option<Cow<'a, str>>) {
    let Some(raw) = ck.object(raw, || "client".into(), problems) else {
        if raw.is_none_or(is_null) {
            problems.push(|| "client".into(), "is required");
        }
        return (None, None);
    };
    let Ok(client) = serde_json::from_str::<RawClient<'a>>(raw.get()) else {
        problems.push(|| "client".into(), "must be an object");
        return (None, None);
    };
    let id = ck.id(client.id, true, || "client.id".into(), problems);
    ck.id(client.app_id, true, || "client.app_id".into(), problems);
    ck.opt_string(client.client_type, || "client.type".into(), problems);
    ck.opt_string(client.name, || "client.name".into(), problems);
    ck.opt_string(client.version, || "client.version".into(), problems);
    if let Some(device) = ck.object(client.device, || "client.device".into(), problems) {
        match serde_json::from_str::<RawDevice<'_>>(device.get()) {
            Ok(d) => match ck.id(
                d.device_type,
                true,
                || "client.device.type".into(),
                problems,
            ) {
                Some(t) if !DEVICE_TYPES.contains(&t.as_ref()) => problems.push(
                    || "client.device.type".into(),
                    format!("must be one of {}", DEVICE_TYPES.join(", ")),
                ),
                _ => {}
            },
            Err(_) => problems.push(|| "client.device".into(), "must be an object"),
        }
    }
    ck.object(client.os, || "client.os".into(), problems);
    (Some(raw), id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_763_000_000_000;

    fn payload() -> serde_json::Value {
        json!({
            "peach_schema_version": "1.0.3",
            "sent_timestamp": NOW - 1000,
            "session_start_timestamp": NOW - 60_000,
            "user_id": "u-42",
            "client": {
                "id": "c-1", "app_id": "ch.ebu.app", "type": "mobileapp", "name": "App", "version": "1.0",
                "device": {"type": "phone", "vendor": "X", "timezone": 1.0},
                "os": {"name": "Android", "version": "14"}
            },
            "events": [
                {"type": "media_play", "id": "m-1", "event_timestamp": NOW - 5000,
                 "context": {"component": {"type": "player"}}, "props": {"playback_position_s": 0}},
                {"type": "recommendation_hit", "id": "r-1", "event_timestamp": NOW - 4000,
                 "context": {"items": ["m-1", "m-2"], "hit_index": 1},
                 "props": {"x": 1}, "metadata": {"m": true}}
            ]
        })
    }

    fn run(v: &serde_json::Value) -> Result<Accepted, Rejection> {
        accept_payload(
            v.to_string().as_bytes(),
            "demo",
            NOW,
            &CollectLimits::default(),
        )
    }

    fn paths(r: Rejection) -> Vec<String> {
        r.problems.into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn valid_payload_is_flattened_with_injected_fields() {
        // GIVEN a valid two-event payload WHEN accepted THEN two flat events carry the shared fields
        let acc = run(&payload()).unwrap();
        assert_eq!(acc.events.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&acc.events[1].line).unwrap();
        assert_eq!(v["site_key"], "demo");
        assert_eq!(v["type"], "recommendation_hit");
        assert_eq!(v["collect_timestamp"], NOW);
        assert_eq!(v["user_id"], "u-42");
        assert_eq!(v["client"]["device"]["type"], "phone");
        assert_eq!(v["context"]["hit_index"], 1);
        assert_eq!(v["event_timestamp"], NOW - 4000);
        assert!(v.get("event_timestamp_original").is_none());
        assert_eq!(v["event_id"], acc.events[1].event_id);
        assert_eq!(acc.events[1].event_id.len(), 32);
        // and each line parses back into a FlatEvent
        let back: FlatEvent<'_> = serde_json::from_str(&acc.events[0].line).unwrap();
        assert_eq!(back.id, "m-1");
    }

    #[test]
    fn event_id_is_deterministic_and_distinguishes_fields() {
        let a = event_id("demo", "c", "media_play", "m", 1);
        assert_eq!(a, event_id("demo", "c", "media_play", "m", 1));
        assert_ne!(a, event_id("demo", "c", "media_play", "m", 2));
        assert_ne!(a, event_id("other", "c", "media_play", "m", 1));
        // field boundaries matter: ("ab","c") differs from ("a","bc")
        assert_ne!(
            event_id("demo", "ab", "c", "m", 1),
            event_id("demo", "a", "bc", "m", 1)
        );
        // a re-sent payload (later sent_timestamp, same events) gives the same ids
        let first = run(&payload()).unwrap();
        let mut p = payload();
        p["sent_timestamp"] = json!(NOW - 10);
        let again = run(&p).unwrap();
        assert_eq!(first.events[0].event_id, again.events[0].event_id);
    }

    #[test]
    fn clock_skew_beyond_threshold_is_corrected_and_original_kept() {
        // GIVEN a device clock 2 hours behind
        let mut p = payload();
        let skew = 2 * 3600 * 1000;
        p["sent_timestamp"] = json!(NOW - skew);
        p["events"][0]["event_timestamp"] = json!(NOW - skew - 5000);
        let acc = run(&p).unwrap();
        let v: serde_json::Value = serde_json::from_str(&acc.events[0].line).unwrap();
        assert_eq!(v["event_timestamp"], NOW - 5000);
        assert_eq!(v["event_timestamp_original"], NOW - skew - 5000);
        // WHEN the skew is within the threshold THEN nothing is corrected
        let acc = run(&payload()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&acc.events[0].line).unwrap();
        assert_eq!(v["event_timestamp"], NOW - 5000);
    }

    #[test]
    fn the_mapping_worked_out_at_accept_is_the_lines_own() {
        // GIVEN the payload with an anonymous, skewed variant and more event types (a rating
        // with and without a value, a pause with no weight, a dismissal)
        let weights = EventWeights::default();
        let mut anon = payload();
        anon.as_object_mut().unwrap().remove("user_id");
        anon["sent_timestamp"] = json!(NOW - 3 * 3600 * 1000);
        let extra = json!([
            {"type": "rating", "id": "m-3", "event_timestamp": NOW - 3000, "props": {"value": 4}},
            {"type": "media_pause", "id": "m-3", "event_timestamp": NOW - 2000},
            {"type": "recommendation_dismissed", "id": "r-1", "event_timestamp": NOW - 1500,
             "context": {"item_id": "m-2"}}
        ]);
        for mut p in [payload(), anon] {
            p["events"]
                .as_array_mut()
                .unwrap()
                .extend(extra.as_array().unwrap().clone());
            let text = p.to_string();
            // WHEN accepted with the site's weights
            let acc = accept_site_payload(
                text.as_bytes(),
                "demo",
                NOW,
                &CollectLimits::default(),
                &weights,
            )
            .unwrap();
            assert_eq!(acc.events.len(), 5);
            // THEN every event carries what mapping its written line gives
            for e in &acc.events {
                let want = crate::mapping::map_event_line(&e.line, &weights);
                assert_eq!(e.mapped.as_ref(), Some(&want), "{}", e.line);
            }
            assert_eq!(
                acc.events
                    .iter()
                    .filter(|e| matches!(e.mapped, Some(Ok(_))))
                    .count(),
                4
            );
            // AND without the site's weights nothing is worked out
            let bare = accept_payload(text.as_bytes(), "demo", NOW, &CollectLimits::default());
            assert!(bare.unwrap().events.iter().all(|e| e.mapped.is_none()));
        }
    }

    #[test]
    fn mandatory_fields_are_required() {
        for (field, path) in [
            ("peach_schema_version", "peach_schema_version"),
            ("sent_timestamp", "sent_timestamp"),
            ("client", "client"),
            ("events", "events"),
        ] {
            let mut p = payload();
            p.as_object_mut().unwrap().remove(field);
            assert_eq!(
                paths(run(&p).unwrap_err()),
                vec![path.to_string()],
                "{field}"
            );
        }
        for (field, path) in [("id", "client.id"), ("app_id", "client.app_id")] {
            let mut p = payload();
            p["client"].as_object_mut().unwrap().remove(field);
            assert_eq!(paths(run(&p).unwrap_err()), vec![path.to_string()]);
        }
        for field in ["type", "id", "event_timestamp"] {
            let mut p = payload();
            p["events"][1].as_object_mut().unwrap().remove(field);
            assert_eq!(
                paths(run(&p).unwrap_err()),
                vec![format!("events[1].{field}")]
            );
        }
        let mut p = payload();
        p["client"]["device"]
            .as_object_mut()
            .unwrap()
            .remove("type");
        assert_eq!(
            paths(run(&p).unwrap_err()),
            vec!["client.device.type".to_string()]
        );
    }

    #[test]
    fn wrong_types_are_named() {
        let cases = [
            (
                "/sent_timestamp",
                json!("1763000000000"),
                "sent_timestamp",
                "must be a number",
            ),
            (
                "/events/0/id",
                json!(12),
                "events[0].id",
                "must be a string",
            ),
            (
                "/events/0/event_timestamp",
                json!(1.763e12),
                "events[0].event_timestamp",
                "integer",
            ),
            (
                "/events/0/context",
                json!([1]),
                "events[0].context",
                "must be an object",
            ),
            (
                "/events/1/props",
                json!("x"),
                "events[1].props",
                "must be an object",
            ),
            (
                "/events/1/metadata",
                json!(3),
                "events[1].metadata",
                "must be an object",
            ),
            ("/client", json!("c"), "client", "must be an object"),
            ("/events", json!({"a": 1}), "events", "must be an array"),
            ("/user_id", json!(7), "user_id", "must be a string"),
            (
                "/client/device/type",
                json!("fridge"),
                "client.device.type",
                "must be one of",
            ),
            ("/client/name", json!(5), "client.name", "must be a string"),
        ];
        for (ptr, value, path, problem) in cases {
            let mut p = payload();
            *p.pointer_mut(ptr).unwrap() = value;
            let r = run(&p).unwrap_err();
            assert_eq!(r.problems[0].path, path);
            assert!(
                r.problems[0].problem.contains(problem),
                "{path}: {}",
                r.problems[0].problem
            );
        }
        let mut p = payload();
        p["events"][0] = json!("not an event");
        assert_eq!(paths(run(&p).unwrap_err()), vec!["events[0]".to_string()]);
    }

    #[test]
    fn timestamps_must_be_ms_after_2000_and_not_far_future() {
        let mut p = payload();
        p["events"][0]["event_timestamp"] = json!((NOW - 5000) / 1000); // seconds
        let r = run(&p).unwrap_err();
        assert!(r.problems[0].problem.contains("seconds"));
        let mut p = payload();
        p["events"][0]["event_timestamp"] = json!(MIN_TIMESTAMP_MS - 1);
        assert_eq!(
            paths(run(&p).unwrap_err()),
            vec!["events[0].event_timestamp".to_string()]
        );
        let mut p = payload();
        p["events"][0]["event_timestamp"] = json!(MIN_TIMESTAMP_MS);
        // 2000-01-01 itself is allowed (sent_timestamp is recent, so it is corrected for skew? no:
        // skew is derived from sent_timestamp only)
        assert!(run(&p).is_ok());
        let mut p = payload();
        p["events"][1]["event_timestamp"] = json!(NOW + 24 * 3600 * 1000 + 1);
        assert_eq!(
            paths(run(&p).unwrap_err()),
            vec!["events[1].event_timestamp".to_string()]
        );
        let mut p = payload();
        p["events"][1]["event_timestamp"] = json!(NOW + 24 * 3600 * 1000);
        assert!(run(&p).is_ok());
        let mut p = payload();
        p["session_start_timestamp"] = json!(-5);
        assert_eq!(
            paths(run(&p).unwrap_err()),
            vec!["session_start_timestamp".to_string()]
        );
    }

    #[test]
    fn event_count_must_be_between_1_and_1000() {
        let mut p = payload();
        p["events"] = json!([]);
        assert_eq!(paths(run(&p).unwrap_err()), vec!["events".to_string()]);
        let ev = payload()["events"][0].clone();
        let mut p = payload();
        p["events"] = json!(vec![ev.clone(); 1000]);
        assert_eq!(run(&p).unwrap().events.len(), 1000);
        p["events"] = json!(vec![ev; 1001]);
        let r = run(&p).unwrap_err();
        assert_eq!(r.problems[0].path, "events");
        assert!(r.problems[0].problem.contains("1001"));
    }

    #[test]
    fn sizes_are_bounded() {
        let long = "x".repeat(257);
        for ptr in ["/events/0/id", "/client/id", "/user_id", "/events/0/type"] {
            let mut p = payload();
            *p.pointer_mut(ptr).unwrap() = json!(long);
            let r = run(&p).unwrap_err();
            assert!(r.problems[0].problem.contains("longer than"), "{ptr}");
        }
        let mut p = payload();
        p["events"][0]["id"] = json!("x".repeat(256));
        assert!(run(&p).is_ok());
        let mut p = payload();
        p["events"][0]["type"] = json!("t".repeat(65));
        assert_eq!(
            paths(run(&p).unwrap_err()),
            vec!["events[0].type".to_string()]
        );
        for field in ["context", "props", "metadata"] {
            let mut p = payload();
            p["events"][0][field] = json!({ "blob": "y".repeat(16 * 1024) });
            let r = run(&p).unwrap_err();
            assert_eq!(r.problems[0].path, format!("events[0].{field}"));
            assert!(r.problems[0].problem.contains("larger than"));
        }
        let big = vec![b' '; (1 << 20) + 1];
        let r = accept_payload(&big, "demo", NOW, &CollectLimits::default()).unwrap_err();
        assert!(r.problems[0].problem.contains("larger than"));
    }

    #[test]
    fn malformed_bodies_are_rejected_with_a_reason() {
        let lim = CollectLimits::default();
        for body in [&b"{"[..], b"[]", b"null", b"\xff\xfe", b""] {
            let r = accept_payload(body, "demo", NOW, &lim).unwrap_err();
            assert_eq!(r.total, 1);
            assert_eq!(r.problems[0].path, "");
        }
    }

    #[test]
    fn every_problem_is_reported_and_nothing_is_accepted() {
        // GIVEN one bad event among good ones WHEN validated THEN the payload is rejected whole
        let mut p = payload();
        p["events"][1]["event_timestamp"] = json!("soon");
        p["events"][0]["id"] = json!("");
        let r = run(&p).unwrap_err();
        assert_eq!(r.total, 2);
        assert_eq!(
            paths(r),
            vec![
                "events[0].id".to_string(),
                "events[1].event_timestamp".to_string()
            ]
        );
        // and the problem list is bounded
        let ev = json!({"type": 1, "id": 2, "event_timestamp": "x"});
        let mut p = payload();
        p["events"] = json!(vec![ev; 500]);
        let r = run(&p).unwrap_err();
        assert_eq!(r.total, 1500);
        assert_eq!(r.problems.len(), CollectLimits::default().max_problems);
        assert!(r.message().contains("1500 problems"));
    }

    #[test]
    fn unknown_event_types_are_stored_and_nulls_mean_absent() {
        let mut p = payload();
        p["events"][0]["type"] = json!("podcast_subscribe");
        p["events"][0]["metadata"] = json!(null);
        p["user_id"] = json!(null);
        let acc = run(&p).unwrap();
        let v: serde_json::Value = serde_json::from_str(&acc.events[0].line).unwrap();
        assert_eq!(v["type"], "podcast_subscribe");
        assert!(v.get("user_id").is_none());
        assert!(v.get("metadata").is_none());
    }

    /// The body with `raw` (JSON text) spliced in place of the `"SLOT"` string.
    fn splice(v: &serde_json::Value, raw: &str) -> String {
        let text = v.to_string();
        assert!(text.contains("\"SLOT\""));
        text.replace("\"SLOT\"", raw)
    }

    fn run_text(text: &str) -> Result<Accepted, Rejection> {
        accept_payload(text.as_bytes(), "demo", NOW, &CollectLimits::default())
    }

    #[test]
    fn out_of_range_numbers_are_refused_anywhere_with_their_path() {
        // GIVEN 1e400 / -1e400 in free-form objects (kept verbatim) and in typed fields
        for (ptr, raw, path) in [
            (
                "/events/0/props/playback_position_s",
                "1e400",
                "events[0].props.playback_position_s",
            ),
            (
                "/events/1/context/hit_index",
                "-1e400",
                "events[1].context.hit_index",
            ),
            (
                "/events/1/metadata/m",
                "[1, 1e400]",
                "events[1].metadata.m[1]",
            ),
            ("/client/device/timezone", "1e400", "client.device.timezone"),
            ("/sent_timestamp", "1e400", "sent_timestamp"),
        ] {
            let mut p = payload();
            *p.pointer_mut(ptr).unwrap() = json!("SLOT");
            // WHEN validated THEN the payload is refused naming the value's path
            let r = run_text(&splice(&p, raw)).unwrap_err();
            assert_eq!(paths(r.clone()), vec![path.to_string()], "{ptr}");
            assert!(r.problems[0].problem.contains("out of range"), "{ptr}");
        }
        // an unknown top-level field is refused too: the check covers the whole body
        let mut p = payload();
        p["extra"] = json!("SLOT");
        assert_eq!(
            paths(run_text(&splice(&p, "1e400")).unwrap_err()),
            vec!["extra"]
        );
        // while tiny and large finite numbers pass and are kept as sent
        let mut p = payload();
        p["events"][0]["props"]["x"] = json!("SLOT");
        let acc = run_text(&splice(&p, "1.5e308")).unwrap();
        assert!(acc.events[0].line.contains("1.5e308"));
        // and every accepted line is strict JSON a reader decodes
        for e in &acc.events {
            serde_json::from_str::<serde_json::Value>(&e.line).unwrap();
        }
    }

    #[test]
    fn control_characters_in_ids_are_refused_naming_the_field() {
        for (ptr, path) in [
            ("/client/id", "client.id"),
            ("/client/app_id", "client.app_id"),
            ("/user_id", "user_id"),
            ("/events/1/id", "events[1].id"),
            ("/events/0/type", "events[0].type"),
            ("/peach_schema_version", "peach_schema_version"),
        ] {
            for bad in [
                r"c\u0000",
                r"\u001b[31mred",
                r"a\u0007b",
                r"del\u007f",
                r"c1\u0085",
            ] {
                let mut p = payload();
                *p.pointer_mut(ptr).unwrap() = json!("SLOT");
                let r = run_text(&splice(&p, &format!("\"{bad}\""))).unwrap_err();
                assert_eq!(paths(r.clone()), vec![path.to_string()], "{ptr} {bad}");
                assert!(r.problems[0].problem.contains("control characters"));
            }
        }
        // a NUL in client.id exactly as the issue sends it
        let mut p = payload();
        p["client"]["id"] = json!("c\0");
        let r = run(&p).unwrap_err();
        assert_eq!(paths(r), vec!["client.id".to_string()]);
        // printable non-ASCII stays allowed
        let mut p = payload();
        p["events"][0]["id"] = json!("émission-日本");
        assert!(run(&p).is_ok());
    }

    #[test]
    fn lone_surrogates_are_refused_with_a_message_that_says_so() {
        for (ptr, path) in [
            ("/client/id", "client.id"),
            ("/events/0/id", "events[0].id"),
            (
                "/events/0/context/component/type",
                "events[0].context.component.type",
            ),
            ("/events/1/metadata/m", "events[1].metadata.m"),
        ] {
            let mut p = payload();
            *p.pointer_mut(ptr).unwrap() = json!("SLOT");
            let r = run_text(&splice(&p, r#""\ud800""#)).unwrap_err();
            assert_eq!(paths(r.clone()), vec![path.to_string()], "{ptr}");
            let problem = &r.problems[0].problem;
            assert!(problem.contains("lone UTF-16 surrogate"), "{problem}");
            assert!(!problem.contains("not a string"), "{problem}");
        }
        // a proper pair (an emoji written as escapes) is fine
        let mut p = payload();
        p["events"][0]["id"] = json!("SLOT");
        assert!(run_text(&splice(&p, r#""m-\ud83d\ude00""#)).is_ok());
    }

    fn rating_payload(props: Option<&str>) -> String {
        let mut p = payload();
        p["events"][0] = json!({"type": "rating", "id": "m-1", "event_timestamp": NOW - 5000});
        if props.is_some() {
            p["events"][0]["props"] = json!("SLOT");
        }
        let text = p.to_string();
        match props {
            Some(raw) => text.replace("\"SLOT\"", raw),
            None => text,
        }
    }

    #[test]
    fn value_weighted_events_need_a_finite_props_value() {
        let weights = EventWeights::default(); // rating = "value"
        let check = |text: &str| {
            accept_site_payload(
                text.as_bytes(),
                "demo",
                NOW,
                &CollectLimits::default(),
                &weights,
            )
        };
        for props in [
            None,
            Some(r#"{}"#),
            Some(r#"{"value": null}"#),
            Some(r#"{"value": "five"}"#),
            Some(r#"{"value": "NaN"}"#),
            Some(r#"{"value": "inf"}"#),
            Some(r#"{"value": true}"#),
            Some(r#"{"value": [4]}"#),
        ] {
            let r = check(&rating_payload(props)).unwrap_err();
            assert_eq!(
                paths(r),
                vec!["events[0].props.value".to_string()],
                "{props:?}"
            );
        }
        // 1e400 is caught by the strict check, at the same path
        let r = check(&rating_payload(Some(r#"{"value": 1e400}"#))).unwrap_err();
        assert_eq!(paths(r), vec!["events[0].props.value".to_string()]);
        for ok in [
            r#"{"value": 4}"#,
            r#"{"value": 3.5}"#,
            r#"{"value": " 2 "}"#,
        ] {
            assert!(check(&rating_payload(Some(ok))).is_ok(), "{ok}");
        }
        // a site that weighs ratings by a fixed number does not need the value
        let mut fixed = EventWeights::default();
        fixed.set("rating", WeightRule::Fixed(1.0));
        let text = rating_payload(None);
        assert!(accept_site_payload(
            text.as_bytes(),
            "demo",
            NOW,
            &CollectLimits::default(),
            &fixed
        )
        .is_ok());
        // and a custom type weighed by "value" needs one just like rating
        let mut stars = EventWeights::default();
        stars.set("stars", WeightRule::PropsValue);
        let text = rating_payload(None).replace("\"rating\"", "\"stars\"");
        let r = accept_site_payload(
            text.as_bytes(),
            "demo",
            NOW,
            &CollectLimits::default(),
            &stars,
        )
        .unwrap_err();
        assert_eq!(paths(r), vec!["events[0].props.value".to_string()]);
    }

    #[test]
    fn metadata_availability_must_be_a_timestamp() {
        for (bad, field) in [
            (json!("tomorrow"), "available_from"),
            (json!("2025-01-31"), "available_until"),
            (json!(1.7e12), "available_from"),
            (json!(true), "available_until"),
            (json!({"ms": 1}), "available_from"),
        ] {
            let mut p = payload();
            p["events"][0]["metadata"] = json!({ field: bad });
            let r = run(&p).unwrap_err();
            assert_eq!(
                paths(r.clone()),
                vec![format!("events[0].metadata.{field}")]
            );
            assert!(r.problems[0].problem.contains("timestamp"));
        }
        // what the catalog reads is accepted: ms integers, strings of one, null
        for ok in [
            json!(1_700_000_000_000_i64),
            json!("1700000000000"),
            json!(null),
        ] {
            let mut p = payload();
            p["events"][0]["metadata"] = json!({"available_from": ok, "available_until": ok});
            assert!(run(&p).is_ok(), "{ok}");
        }
    }

    #[test]
    fn key_names_follow_the_pattern() {
        assert!(is_valid_key("demo"));
        assert!(is_valid_key("a-b_c-9"));
        assert!(is_valid_key(&"a".repeat(64)));
        for bad in ["", "Demo", "a/b", "a b", "é", &"a".repeat(65), "a.b"] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }
}
