//! Flat log events → weighted interactions: the one place where PEACH event types are mapped to
//! `(user, item, weight, time)`.
//!
//! - The user is `user_id` (logged in) else `client.id` (the device).
//! - The item is the event's `id` for `media_*`, `article_*`, `page_view` and `rating` events.
//!   For `recommendation_hit`, `id` names the *recommendation*; the clicked item is
//!   `context.items[context.hit_index]` (the PEACH collector SDKs' `CONTEXT_ITEMS_KEY` and
//!   `CONTEXT_HIT_INDEX_KEY`). `recommendation_loaded` / `recommendation_displayed` say what was
//!   shown, not what the user chose: they are never interactions.
//! - The weight comes from the site's [`EventWeights`]: a fixed number per type, or
//!   [`WeightRule::PropsValue`] (`props.value`, for explicit ratings). Types without a weight,
//!   or with weight 0, are skipped.
//! - Negative feedback ([`NEGATIVE_TYPES`]): `media_dislike` (the item is `id`) and
//!   `recommendation_dismissed` (the item is `context.item_id`; `id` names the recommendation)
//!   map to interactions with a *negative* weight (defaults −1 and −0.5).
//! - Events are deduplicated by `event_id` ([`Deduper`]): the log is at-least-once.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::value::RawValue;

/// How an event type is weighted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightRule {
    /// A fixed weight per event.
    Fixed(f32),
    /// The event's `props.value` (a number), e.g. an explicit rating; skipped when absent.
    PropsValue,
}

/// Event weights by event type.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWeights {
    rules: BTreeMap<String, WeightRule>,
}

impl Default for EventWeights {
    /// Plays count once, completions three times, article reads twice, page views half, hits on
    /// a recommendation once, likes and shares twice, ratings by their value; a dislike −1 and a
    /// dismissed recommendation −0.5.
    fn default() -> Self {
        let mut rules = BTreeMap::new();
        for (t, w) in [
            ("media_play", 1.0),
            ("media_end", 3.0),
            ("media_like", 2.0),
            ("media_share", 2.0),
            ("article_start", 1.0),
            ("article_end", 2.0),
            ("page_view", 0.5),
            ("recommendation_hit", 1.0),
            ("media_dislike", -1.0),
            ("recommendation_dismissed", -0.5),
        ] {
            rules.insert(t.to_string(), WeightRule::Fixed(w));
        }
        rules.insert("rating".to_string(), WeightRule::PropsValue);
        Self { rules }
    }
}

impl EventWeights {
    /// No weights at all (every event is skipped until rules are added).
    pub fn empty() -> Self {
        Self {
            rules: BTreeMap::new(),
        }
    }

    /// Sets (or replaces) the rule of an event type.
    pub fn set(&mut self, event_type: impl Into<String>, rule: WeightRule) -> &mut Self {
        self.rules.insert(event_type.into(), rule);
        self
    }

    /// The rule of an event type, if any.
    pub fn rule(&self, event_type: &str) -> Option<WeightRule> {
        self.rules.get(event_type).copied()
    }

    /// Every rule, by event type.
    pub fn rules(&self) -> &BTreeMap<String, WeightRule> {
        &self.rules
    }
}

/// One weighted user–item interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// `user_id`, else `client.id`.
    pub user: String,
    /// The item the user interacted with.
    pub item: String,
    /// The weight from the site's [`EventWeights`]: > 0, or < 0 for negative feedback
    /// ([`NEGATIVE_TYPES`]).
    pub weight: f32,
    /// Event time, ms UTC.
    pub timestamp_ms: i64,
    /// The event's id (the dedupe key).
    pub event_id: String,
}

/// Why an event line produced no interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The line is not a flat event (bad JSON or a required field missing).
    Malformed(String),
    /// The event type has no weight (or weight 0), or never names an item
    /// (`recommendation_loaded`, `recommendation_displayed`).
    NotAnInteraction,
    /// A `recommendation_hit` whose `context.items[context.hit_index]` is missing, or a
    /// `recommendation_dismissed` without `context.item_id`.
    NoHitItem,
    /// A `props.value` weight that is absent, not a number, or not positive.
    NoValue,
    /// Neither `user_id` nor `client.id`.
    NoUser,
}

#[derive(Deserialize)]
struct LineView<'a> {
    #[serde(default, borrow)]
    site_key: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    event_id: &'a str,
    #[serde(rename = "type", borrow)]
    event_type: &'a str,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    event_timestamp: i64,
    #[serde(default, borrow)]
    user_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    client: Option<&'a RawValue>,
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
    #[serde(default, borrow)]
    props: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ClientView<'a> {
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct HitContext<'a> {
    /// Raw, so that only the clicked entry is parsed (a hit's context lists the whole
    /// displayed list, often as objects).
    #[serde(default, borrow)]
    items: Vec<&'a RawValue>,
    #[serde(default)]
    hit_index: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ValueProps {
    #[serde(default)]
    value: Option<serde_json::Value>,
}

/// The negative-feedback event types: the only ones whose weight may be negative. The user
/// never wants their item again (serving excludes it for them) and trainers may count it
/// against the pair.
pub const NEGATIVE_TYPES: [&str; 2] = ["media_dislike", "recommendation_dismissed"];

/// Whether an event type is negative feedback ([`NEGATIVE_TYPES`]).
pub fn is_negative_type(event_type: &str) -> bool {
    NEGATIVE_TYPES.contains(&event_type)
}

#[derive(Deserialize)]
struct DismissContext {
    #[serde(default)]
    item_id: Option<serde_json::Value>,
}

/// The item a `recommendation_dismissed` event dismisses: its `context.item_id` (a non-empty
/// string); `None` otherwise.
pub fn dismissed_item(context: Option<&RawValue>) -> Option<String> {
    dismissed_item_text(context.map(RawValue::get))
}

/// [`dismissed_item`] on the context's JSON text.
fn dismissed_item_text(context: Option<&str>) -> Option<String> {
    let ctx: DismissContext = serde_json::from_str(context?).ok()?;
    match ctx.item_id? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// The event types that never name an item.
const NON_ITEM_TYPES: [&str; 2] = ["recommendation_loaded", "recommendation_displayed"];

/// Whether an event's `id` names the item it is about: yes for `media_*` (the media),
/// `article_*` (the article), `page_view` (the page), `rating`, and any other type the site
/// weighs; never for `recommendation_*` (there `id` names the recommendation, and a hit's item
/// is in `context`). The catalog reads an event's `metadata` as the item's only when this holds.
pub fn id_names_item(event_type: &str, weights: &EventWeights) -> bool {
    if event_type.starts_with("recommendation_") {
        return false;
    }
    event_type.starts_with("media_")
        || event_type.starts_with("article_")
        || event_type == "page_view"
        || event_type == "rating"
        || weights.rule(event_type).is_some()
}

/// The fields of a flat event that the mapping reads, borrowed from wherever the event is
/// stored: a JSON line of the raw log ([`map_event_line`]) or the columns of the compacted
/// Parquet log. The free-form objects stay JSON text, parsed only when a rule needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// The event's id (the dedupe key).
    pub event_id: &'a str,
    /// The PEACH event type.
    pub event_type: &'a str,
    /// What the event is about (the item, or the recommendation for `recommendation_*`).
    pub id: &'a str,
    /// Event time, ms UTC.
    pub event_timestamp: i64,
    /// `user_id`, when present.
    pub user_id: Option<&'a str>,
    /// The `client` object as JSON text.
    pub client: Option<&'a str>,
    /// The `context` object as JSON text.
    pub context: Option<&'a str>,
    /// The `props` object as JSON text.
    pub props: Option<&'a str>,
}

/// Maps one flat event (a JSON line of the event log) to an interaction.
pub fn map_event_line(line: &str, weights: &EventWeights) -> Result<Interaction, Skip> {
    let ev: LineView<'_> =
        serde_json::from_str(line).map_err(|e| Skip::Malformed(e.to_string()))?;
    map_line_view(&ev, weights)
}

/// Maps one flat event line of any site: its `site_key` chooses the weights (`None`: the
/// site is unknown, [`Skip::NotAnInteraction`]). One parse of the line, where reading the site
/// first and then mapping parsed every line twice (a tenth of `nectar dev`'s ingest CPU).
pub fn map_site_event_line<'w>(
    line: &str,
    weights_of: impl FnOnce(&str) -> Option<&'w EventWeights>,
) -> Result<(String, Interaction), Skip> {
    let ev: LineView<'_> =
        serde_json::from_str(line).map_err(|e| Skip::Malformed(e.to_string()))?;
    let site = ev.site_key.as_deref().ok_or(Skip::NotAnInteraction)?;
    let weights = weights_of(site).ok_or(Skip::NotAnInteraction)?;
    let i = map_line_view(&ev, weights)?;
    Ok((site.to_string(), i))
}

fn map_line_view(ev: &LineView<'_>, weights: &EventWeights) -> Result<Interaction, Skip> {
    map_event_fields(
        &EventFields {
            event_id: ev.event_id,
            event_type: ev.event_type,
            id: &ev.id,
            event_timestamp: ev.event_timestamp,
            user_id: ev.user_id.as_deref(),
            client: ev.client.map(RawValue::get),
            context: ev.context.map(RawValue::get),
            props: ev.props.map(RawValue::get),
        },
        weights,
    )
}

/// Maps a flat event's fields to an interaction: the one mapping, whatever the storage.
pub fn map_event_fields(ev: &EventFields<'_>, weights: &EventWeights) -> Result<Interaction, Skip> {
    if NON_ITEM_TYPES.contains(&ev.event_type) {
        return Err(Skip::NotAnInteraction);
    }
    let rule = weights.rule(ev.event_type).ok_or(Skip::NotAnInteraction)?;
    let weight = match rule {
        WeightRule::Fixed(w) if w > 0.0 && w.is_finite() => w,
        // Config validation allows negative weights only for the negative types.
        WeightRule::Fixed(w) if w < 0.0 && w.is_finite() && is_negative_type(ev.event_type) => w,
        WeightRule::Fixed(_) => return Err(Skip::NotAnInteraction),
        WeightRule::PropsValue => props_value(ev.props).ok_or(Skip::NoValue)?,
    };
    let item = if ev.event_type == "recommendation_hit" {
        hit_item(ev.context).ok_or(Skip::NoHitItem)?
    } else if ev.event_type == "recommendation_dismissed" {
        dismissed_item_text(ev.context).ok_or(Skip::NoHitItem)?
    } else if id_names_item(ev.event_type, weights) {
        ev.id.to_string()
    } else {
        return Err(Skip::NotAnInteraction);
    };
    if item.is_empty() {
        return Err(Skip::Malformed("empty item id".into()));
    }
    let user = match ev.user_id.filter(|u| !u.is_empty()) {
        Some(u) => u.to_string(),
        None => ev
            .client
            .and_then(|c| serde_json::from_str::<ClientView<'_>>(c).ok())
            .and_then(|c| c.id)
            .filter(|id| !id.is_empty())
            .map(|id| id.into_owned())
            .ok_or(Skip::NoUser)?,
    };
    Ok(Interaction {
        user,
        item,
        weight,
        timestamp_ms: ev.event_timestamp,
        event_id: ev.event_id.to_string(),
    })
}

fn props_value(props: Option<&str>) -> Option<f32> {
    let p: ValueProps = serde_json::from_str(props?).ok()?;
    let v = value_number(&p.value?)?;
    (v > 0.0).then_some(v as f32)
}

/// The number in `props.value` as the [`WeightRule::PropsValue`] rule reads it: a JSON number
/// or a string holding one (some SDKs send numbers as strings); `None` unless finite. Collect
/// refuses what this cannot read, so that a stored rating always has a value.
pub fn value_number(v: &serde_json::Value) -> Option<f64> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// What [`metadata_ms`] accepts, as an error message says it.
pub const TIMESTAMP_PROBLEM: &str =
    "must be a timestamp in ms since 1970-01-01 UTC: an integer, or a string holding one";

/// A catalog timestamp (`available_from`, `available_until`, ms UTC) as event metadata and
/// catalog upserts give it: an integer, or a string holding one (some SDKs send numbers as
/// strings). Collect and `PUT /v1/items` refuse what this cannot read.
pub fn metadata_ms(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn hit_item(context: Option<&str>) -> Option<String> {
    hit_target_text(context).map(|(_, item)| item)
}

/// The clicked item of a `recommendation_hit` and its 0-based `context.hit_index` (a number, or
/// a string holding one): `context.items[hit_index]`, an id string or an `{ "id": … }` object.
/// `None` when the context does not name a non-empty item.
pub(crate) fn hit_target(context: Option<&RawValue>) -> Option<(usize, String)> {
    hit_target_text(context.map(RawValue::get))
}

/// [`hit_target`] on the context's JSON text.
fn hit_target_text(context: Option<&str>) -> Option<(usize, String)> {
    let ctx: HitContext<'_> = serde_json::from_str(context?).ok()?;
    let index = match ctx.hit_index? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    let index = usize::try_from(index).ok()?;
    let item = match serde_json::from_str::<serde_json::Value>(ctx.items.get(index)?.get()).ok()? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        // Tolerate item objects `{ "id": … }` as some integrations send.
        serde_json::Value::Object(o) => o
            .get("id")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        _ => None,
    }?;
    Some((index, item))
}

/// Remembers the `event_id`s seen so far; the log is at-least-once, so every reader dedupes.
#[derive(Debug, Default)]
pub struct Deduper {
    seen: HashSet<u128>,
}

impl Deduper {
    /// An empty deduper.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `event_id` is new (and remembers it). Nectar's ids are 32 hex digits and are
    /// kept as 128-bit numbers; other ids are hashed to 128 bits.
    pub fn first_time(&mut self, event_id: &str) -> bool {
        self.seen.insert(id_key(event_id))
    }

    /// Whether a key from [`dedupe_key`] is new (and remembers it).
    pub fn first_time_key(&mut self, key: u128) -> bool {
        self.seen.insert(key)
    }

    /// How many distinct ids were seen.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id was seen.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The 128-bit dedupe key of an event id (see [`Deduper::first_time`]).
pub fn dedupe_key(event_id: &str) -> u128 {
    id_key(event_id)
}

fn id_key(event_id: &str) -> u128 {
    if event_id.len() == 32 {
        if let Ok(v) = u128::from_str_radix(event_id, 16) {
            return v;
        }
    }
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(event_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_be_bytes(b)
}

/// One interaction with interned user and item: 20 bytes, so that tens of millions fit in a
/// Lambda's memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Row in [`InteractionLog::users`].
    pub user: u32,
    /// Row in [`InteractionLog::items`].
    pub item: u32,
    /// Weight (> 0; < 0 for negative feedback).
    pub weight: f32,
    /// Event time, ms UTC.
    pub timestamp_ms: i64,
}

/// Interactions with interned user and item ids, as the trainers take them.
#[derive(Debug, Clone, Default)]
pub struct InteractionLog {
    /// User ids by row.
    pub users: Vec<String>,
    /// Item ids by row.
    pub items: Vec<String>,
    /// The interactions.
    pub rows: Vec<Row>,
    user_rows: HashMap<String, u32>,
    item_rows: HashMap<String, u32>,
}

fn intern(ids: &mut Vec<String>, rows: &mut HashMap<String, u32>, id: String) -> u32 {
    if let Some(&r) = rows.get(&id) {
        return r;
    }
    let r = u32::try_from(ids.len()).expect("fewer than 2^32 distinct ids");
    ids.push(id.clone());
    rows.insert(id, r);
    r
}

impl InteractionLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an interaction.
    pub fn push(&mut self, i: Interaction) {
        let user = intern(&mut self.users, &mut self.user_rows, i.user);
        let item = intern(&mut self.items, &mut self.item_rows, i.item);
        self.rows.push(Row {
            user,
            item,
            weight: i.weight,
            timestamp_ms: i.timestamp_ms,
        });
    }

    /// Number of interactions.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The row of a user id.
    pub fn user_row(&self, id: &str) -> Option<u32> {
        self.user_rows.get(id).copied()
    }

    /// The row of an item id.
    pub fn item_row(&self, id: &str) -> Option<u32> {
        self.item_rows.get(id).copied()
    }

    /// Sorts by time; stable, so equal times keep their (deterministic) reading order.
    pub fn sort_by_time(&mut self) {
        self.rows.sort_by_key(|r| r.timestamp_ms);
    }

    /// A view of all rows.
    pub fn view(&self) -> InteractionsView<'_> {
        self.view_rows(0..self.rows.len())
    }

    /// A view of some rows (e.g. the older part for training, the newer for the holdout);
    /// the id tables are shared, so ids of users or items without rows in the view appear too.
    pub fn view_rows(&self, range: std::ops::Range<usize>) -> InteractionsView<'_> {
        InteractionsView {
            users: &self.users,
            items: &self.items,
            rows: &self.rows[range],
        }
    }
}

/// A borrowed slice of an [`InteractionLog`].
#[derive(Debug, Clone, Copy)]
pub struct InteractionsView<'a> {
    /// User ids by row (shared by the whole log).
    pub users: &'a [String],
    /// Item ids by row (shared by the whole log).
    pub items: &'a [String],
    /// The interactions of this view, sorted by time.
    pub rows: &'a [Row],
}

/// Counts of a mapping pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapStats {
    /// Lines read.
    pub lines: u64,
    /// Lines whose `event_id` was already seen.
    pub duplicates: u64,
    /// Lines that are not flat events.
    pub malformed: u64,
    /// Well-formed events that are not interactions (no weight, no item, no user, no value).
    pub skipped: u64,
    /// Interactions produced.
    pub interactions: u64,
}

impl MapStats {
    /// Adds another pass's counts.
    pub fn add(&mut self, o: &MapStats) {
        self.lines += o.lines;
        self.duplicates += o.duplicates;
        self.malformed += o.malformed;
        self.skipped += o.skipped;
        self.interactions += o.interactions;
    }
}

/// Maps and dedupes many lines; `dedupe` is shared across calls (files) of one read.
pub fn map_lines<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    weights: &EventWeights,
    dedupe: &mut Deduper,
    out: &mut Vec<Interaction>,
) -> MapStats {
    let mut stats = MapStats::default();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        stats.lines += 1;
        match map_event_line(line, weights) {
            Ok(i) => {
                if dedupe.first_time(&i.event_id) {
                    stats.interactions += 1;
                    out.push(i);
                } else {
                    stats.duplicates += 1;
                }
            }
            Err(Skip::Malformed(_)) => stats.malformed += 1,
            Err(_) => stats.skipped += 1,
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_map_exactly_as_their_line() {
        // GIVEN events of each mapping rule, as a line and as borrowed fields (the compacted
        // log's columns), with `client` and `context` as JSON text
        let mut w = EventWeights::default();
        w.set("rating", WeightRule::PropsValue);
        let cases = [
            line("media_play", "m1", ""),
            line("media_play", "m1", r#","user_id":"u7""#),
            line("rating", "m2", r#","props":{"value":"4"}"#),
            line("rating", "m2", r#","props":{"value":0}"#),
            line(
                "recommendation_hit",
                "r1",
                r#","context":{"items":["a",{"id":"b"}],"hit_index":1}"#,
            ),
            line("recommendation_hit", "r1", r#","context":{"items":[]}"#),
            line("recommendation_displayed", "r1", ""),
            r#"{"event_id":"e","type":"media_play","id":"m","event_timestamp":5}"#.to_string(),
        ];
        for l in &cases {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = |k: &str| v.get(k).map(|x| x.to_string());
            let (client, context, props) = (text("client"), text("context"), text("props"));
            let f = EventFields {
                event_id: v["event_id"].as_str().unwrap(),
                event_type: v["type"].as_str().unwrap(),
                id: v["id"].as_str().unwrap(),
                event_timestamp: v["event_timestamp"].as_i64().unwrap(),
                user_id: v.get("user_id").and_then(|u| u.as_str()),
                client: client.as_deref(),
                context: context.as_deref(),
                props: props.as_deref(),
            };
            // WHEN mapped both ways THEN the outcome is the same
            assert_eq!(map_event_fields(&f, &w), map_event_line(l, &w), "{l}");
        }
    }

    fn line(t: &str, id: &str, extra: &str) -> String {
        format!(
            r#"{{"event_id":"{}","site_key":"demo","type":"{t}","id":"{id}","event_timestamp":1000,"collect_timestamp":1001,"sent_timestamp":1001,"peach_schema_version":"1.0.3","client":{{"id":"dev-1","app_id":"a"}}{extra}}}"#,
            crate::event::event_id("demo", "dev-1", t, id, 1000)
        )
    }

    #[test]
    fn negative_feedback_maps_to_negative_weights_and_only_for_its_types() {
        // GIVEN the default weights
        let mut w = EventWeights::default();
        // WHEN a dislike and a dismissal (item in context.item_id) are mapped
        let d = map_event_line(&line("media_dislike", "m1", ""), &w).unwrap();
        let r = map_event_line(
            &line(
                "recommendation_dismissed",
                "r-1",
                r#","context":{"item_id":"m2"}"#,
            ),
            &w,
        )
        .unwrap();
        // THEN they name their items with the negative default weights
        assert_eq!((d.item.as_str(), d.weight), ("m1", -1.0));
        assert_eq!((r.item.as_str(), r.weight), ("m2", -0.5));
        // AND a dismissal without context.item_id is skipped
        let bare = line("recommendation_dismissed", "r-1", "");
        assert_eq!(map_event_line(&bare, &w), Err(Skip::NoHitItem));
        // AND a negative weight on a positive type never maps
        w.set("media_play", WeightRule::Fixed(-1.0));
        assert_eq!(
            map_event_line(&line("media_play", "m", ""), &w),
            Err(Skip::NotAnInteraction)
        );
    }

    #[test]
    fn a_line_of_any_site_maps_with_its_own_sites_weights() {
        let w = EventWeights::default();
        let play = line("media_play", "m1", "");
        // GIVEN a line of site demo WHEN mapped with demo's weights THEN it maps as
        // map_event_line maps it, with its site
        let asked = std::cell::Cell::new(String::new());
        let got = map_site_event_line(&play, |site| {
            asked.set(site.to_string());
            Some(&w)
        });
        assert_eq!(asked.take(), "demo");
        assert_eq!(
            got,
            Ok(("demo".to_string(), map_event_line(&play, &w).unwrap()))
        );
        // AND a site without weights (unknown), or a line without a site, is skipped
        assert_eq!(
            map_site_event_line(&play, |_| None),
            Err(Skip::NotAnInteraction)
        );
        let no_site = play.replace(r#""site_key":"demo","#, "");
        assert_eq!(
            map_site_event_line(&no_site, |_| Some(&w)),
            Err(Skip::NotAnInteraction)
        );
        // AND a torn line is malformed
        assert!(matches!(
            map_site_event_line(&play[..40], |_| Some(&w)),
            Err(Skip::Malformed(_))
        ));
    }

    #[test]
    fn media_and_page_events_map_to_their_id_with_configured_weights() {
        // GIVEN the default weights
        let w = EventWeights::default();
        // WHEN a media_end of m1 by an anonymous device is mapped
        let i = map_event_line(&line("media_end", "m1", ""), &w).unwrap();
        // THEN the user is the client id, the item the media, the weight 3
        assert_eq!(
            (i.user.as_str(), i.item.as_str(), i.weight),
            ("dev-1", "m1", 3.0)
        );
        assert_eq!(i.timestamp_ms, 1000);
        let i = map_event_line(&line("page_view", "p1", r#","user_id":"u9""#), &w).unwrap();
        // a logged-in user wins over the device
        assert_eq!(
            (i.user.as_str(), i.item.as_str(), i.weight),
            ("u9", "p1", 0.5)
        );
    }

    #[test]
    fn recommendation_hit_maps_to_the_clicked_item_not_the_recommendation() {
        let w = EventWeights::default();
        let hit = line(
            "recommendation_hit",
            "reco-42",
            r#","context":{"items":["a","b","c"],"hit_index":2}"#,
        );
        let i = map_event_line(&hit, &w).unwrap();
        assert_eq!(i.item, "c");
        let out_of_range = line(
            "recommendation_hit",
            "reco-42",
            r#","context":{"items":["a"],"hit_index":3}"#,
        );
        assert_eq!(map_event_line(&out_of_range, &w), Err(Skip::NoHitItem));
        let no_ctx = line("recommendation_hit", "reco-42", "");
        assert_eq!(map_event_line(&no_ctx, &w), Err(Skip::NoHitItem));
        for t in ["recommendation_loaded", "recommendation_displayed"] {
            let l = line(t, "reco-42", r#","context":{"items":["a"],"hit_index":0}"#);
            assert_eq!(map_event_line(&l, &w), Err(Skip::NotAnInteraction));
        }
    }

    #[test]
    fn ratings_weigh_their_value_and_unknown_types_need_a_weight() {
        let mut w = EventWeights::default();
        let r = line("rating", "m2", r#","props":{"value":4.5}"#);
        assert_eq!(map_event_line(&r, &w).unwrap().weight, 4.5);
        let r = line("rating", "m2", r#","props":{"other":1}"#);
        assert_eq!(map_event_line(&r, &w), Err(Skip::NoValue));
        let custom = line("podcast_subscribe", "s1", "");
        assert_eq!(map_event_line(&custom, &w), Err(Skip::NotAnInteraction));
        w.set("podcast_subscribe", WeightRule::Fixed(5.0));
        assert_eq!(map_event_line(&custom, &w).unwrap().weight, 5.0);
        w.set("media_play", WeightRule::Fixed(0.0));
        assert_eq!(
            map_event_line(&line("media_play", "m", ""), &w),
            Err(Skip::NotAnInteraction)
        );
        assert!(matches!(
            map_event_line("{not json", &w),
            Err(Skip::Malformed(_))
        ));
    }

    #[test]
    fn id_names_the_item_except_for_recommendation_events() {
        // GIVEN the default weights and one custom weighted type
        let mut w = EventWeights::default();
        w.set("podcast_subscribe", WeightRule::Fixed(1.0));
        // WHEN asked which ids name items
        // THEN media, article, page and rating ids do, even unweighted ones (media_pause)
        for t in [
            "media_play",
            "media_pause",
            "article_end",
            "page_view",
            "rating",
        ] {
            assert!(id_names_item(t, &w), "{t}");
        }
        // and weighted custom types do; recommendation ids and unknown types do not
        assert!(id_names_item("podcast_subscribe", &w));
        for t in [
            "recommendation_hit",
            "recommendation_displayed",
            "recommendation_served",
            "app_open",
        ] {
            assert!(!id_names_item(t, &w), "{t}");
        }
    }

    #[test]
    fn log_interns_users_and_items() {
        let mut log = InteractionLog::new();
        for (u, i, ts) in [("a", "x", 3), ("b", "x", 1), ("a", "y", 2)] {
            log.push(Interaction {
                user: u.into(),
                item: i.into(),
                weight: 1.0,
                timestamp_ms: ts,
                event_id: String::new(),
            });
        }
        log.sort_by_time();
        assert_eq!((log.users.len(), log.items.len(), log.len()), (2, 2, 3));
        let times: Vec<i64> = log.rows.iter().map(|r| r.timestamp_ms).collect();
        assert_eq!(times, vec![1, 2, 3]);
        assert_eq!(log.rows[0].user, log.user_row("b").unwrap());
        assert_eq!(log.rows[1].item, log.item_row("y").unwrap());
        assert_eq!(log.view_rows(1..3).rows.len(), 2);
    }

    #[test]
    fn map_lines_dedupes_by_event_id_across_calls() {
        let w = EventWeights::default();
        let a = line("media_play", "m1", "");
        let b = line("media_play", "m2", "");
        let shown = line("recommendation_displayed", "r", "");
        let mut d = Deduper::new();
        let mut out = Vec::new();
        let s1 = map_lines(
            [a.as_str(), b.as_str(), a.as_str(), "", "x"],
            &w,
            &mut d,
            &mut out,
        );
        let s2 = map_lines([b.as_str(), shown.as_str()], &w, &mut d, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (s1.lines, s1.duplicates, s1.malformed, s1.interactions),
            (4, 1, 1, 2)
        );
        assert_eq!((s2.duplicates, s2.skipped, s2.interactions), (1, 1, 0));
        assert_eq!(d.len(), 2);
        // non-hex ids dedupe too
        assert!(d.first_time("import-1"));
        assert!(!d.first_time("import-1"));
    }
}
