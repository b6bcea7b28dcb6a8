//! Attribution: joins each served recommendation with the PEACH events that refer to it.
//!
//! A served answer (`recommendation_served`, written by the recommend service) is credited with:
//! - `recommendation_displayed` events whose `id` is its `recommendation_id` (an impression);
//! - the first `recommendation_hit` on it (a click: the item is `context.items[hit_index]`, its
//!   1-based position `hit_index + 1`); further hits on the same answer are double clicks,
//!   counted once;
//! - the clicked item's consumption by the same person within the attribution window after
//!   the click: a play (`media_play` or `article_start`) and, after that play, a completion
//!   (`media_end` or `article_end`). Long programmes finish after a short window, so
//!   completion is a lower bound unless the window covers them.
//!
//! Only the person it was served to is credited: a display or hit counts when its `user_id`
//! equals the served `user_id`, or its `client.id` equals the served client id. Answers to
//! anonymous requests (no user, no client) are credited on the recommendation id alone: it is
//! a random 128-bit id that only the page that received the answer knows. Hits and displays
//! of an unknown recommendation (or one served on another site) are orphans: counted, never
//! credited. Every event is deduplicated by `event_id` first (the log is at-least-once).
//!
//! Served events are trusted only when they carry the top-level marker
//! [`SERVED_MARKER_FIELD`]` = true`. Collect builds every flat event itself from a fixed set
//! of fields, so no client payload can produce it; served events without it (forged, or
//! written before the marker existed) are counted and ignored. The writer side (the served
//! log setting the marker) and collect's `400 reserved_event_type` for client payloads of
//! type `recommendation_served` are wired outside this crate.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::mapping::{dedupe_key, hit_target, Deduper};

/// Top-level flat-event field that marks a served event as written by the recommend service
/// (`"nectar_served": true`).
pub const SERVED_MARKER_FIELD: &str = "nectar_served";
/// Event type of a served answer.
pub const SERVED_EVENT_TYPE: &str = "recommendation_served";
/// `client.id` of served events for anonymous requests (the recommend service's `app_id`, as
/// the served log writes it).
pub const SERVED_APP_ID: &str = "nectar-recommend";
/// The attribution window when the config sets none.
pub const DEFAULT_ATTRIBUTION_WINDOW_MINUTES: u32 = 30;
/// The variant of an answer whose endpoint has no experiment.
const DEFAULT_VARIANT: &str = "default";

/// Why a line was not read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a flat event: {0}")]
pub struct ParseError(pub String);

/// The model that computed a served answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    /// The task (model) name; empty when no model answered.
    pub name: String,
    /// Its version (0 when none).
    pub version: u64,
}

/// What a served event's `context` says about the answer (borrowed from the line where its
/// strings have no escapes).
#[derive(Debug, Clone, PartialEq)]
pub struct ServedContext<'a> {
    /// The endpoint asked.
    pub endpoint: Cow<'a, str>,
    /// The experiment variant (`"default"` without an experiment).
    pub variant: Cow<'a, str>,
    /// The model that answered: name (empty when none) and version (0 when none).
    pub model: Option<(Cow<'a, str>, u64)>,
    /// The item ids, in the order served.
    pub items: Vec<Cow<'a, str>>,
    /// Whether a fallback list answered.
    pub fallback: bool,
}

/// What an event is, for attribution.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind<'a> {
    /// A trusted served answer (it carries [`SERVED_MARKER_FIELD`]).
    Served(ServedContext<'a>),
    /// A `recommendation_served` event without the marker: never trusted.
    UntrustedServed,
    /// `recommendation_displayed`: the list was shown.
    Displayed,
    /// `recommendation_hit`: `(0-based hit_index, item)` when `context` names the item.
    Hit(Option<(usize, String)>),
    /// `media_play` / `article_start` of the item `id`.
    Play,
    /// `media_end` / `article_end` of the item `id`.
    End,
    /// Anything else (not used by attribution).
    Other,
}

/// One flat event of the log, with the fields attribution needs (borrowed from the line where
/// its strings have no escapes: a report reads millions of lines).
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineEvent<'a> {
    /// Dedupe key.
    pub event_id: Cow<'a, str>,
    /// The site the event belongs to.
    pub site_key: Cow<'a, str>,
    /// The recommendation id for `recommendation_*` events, the item for consumption.
    pub id: Cow<'a, str>,
    /// The logged-in user, if any.
    pub user_id: Option<Cow<'a, str>>,
    /// `client.id`, if any (for served events, `None` when it is [`SERVED_APP_ID`]).
    pub client_id: Option<Cow<'a, str>>,
    /// Event time, ms UTC.
    pub timestamp_ms: i64,
    /// What the event is.
    pub kind: EventKind<'a>,
}

#[derive(Deserialize)]
struct LineView<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    site_key: Cow<'a, str>,
    event_timestamp: i64,
    #[serde(default, borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    client: Option<&'a RawValue>,
    #[serde(default, borrow)]
    context: Option<&'a RawValue>,
    // Must equal SERVED_MARKER_FIELD (a test pins it).
    #[serde(default)]
    nectar_served: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ClientView<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ServedView<'a> {
    #[serde(default, borrow)]
    endpoint: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    variant: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<ModelView<'a>>,
    #[serde(default, borrow)]
    items: Option<Vec<ItemView<'a>>>,
    #[serde(default)]
    fallback: Option<bool>,
}

#[derive(Deserialize)]
struct ModelView<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    version: Option<u64>,
}

/// A served item id; anything else in the list is skipped.
#[derive(Deserialize)]
#[serde(untagged)]
enum ItemView<'a> {
    Id(#[serde(borrow)] Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

fn non_empty(s: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty())
}

impl<'a> OnlineEvent<'a> {
    /// Reads one flat event (a JSON line of the event log). Served events need a `context`
    /// with an `endpoint`; other fields of unused types are not checked.
    pub fn parse(line: &'a str) -> Result<Self, ParseError> {
        let v: LineView<'a> = serde_json::from_str(line).map_err(|e| ParseError(e.to_string()))?;
        let client_id = v
            .client
            .and_then(|c| serde_json::from_str::<ClientView<'a>>(c.get()).ok())
            .and_then(|c| non_empty(c.id));
        let kind = match v.event_type.as_ref() {
            SERVED_EVENT_TYPE if v.nectar_served == Some(serde_json::Value::Bool(true)) => {
                EventKind::Served(served_context(v.context)?)
            }
            SERVED_EVENT_TYPE => EventKind::UntrustedServed,
            "recommendation_displayed" => EventKind::Displayed,
            "recommendation_hit" => EventKind::Hit(hit_target(v.context)),
            "media_play" | "article_start" => EventKind::Play,
            "media_end" | "article_end" => EventKind::End,
            _ => EventKind::Other,
        };
        let client_id = match kind {
            EventKind::Served(_) => client_id.filter(|c| c != SERVED_APP_ID),
            _ => client_id,
        };
        Ok(Self {
            event_id: v.event_id,
            site_key: v.site_key,
            id: v.id,
            user_id: non_empty(v.user_id),
            client_id,
            timestamp_ms: v.event_timestamp,
            kind,
        })
    }
}

fn served_context(context: Option<&RawValue>) -> Result<ServedContext<'_>, ParseError> {
    let missing = || ParseError("a served event needs context.endpoint".into());
    let c: ServedView = serde_json::from_str(context.ok_or_else(missing)?.get())
        .map_err(|e| ParseError(e.to_string()))?;
    Ok(ServedContext {
        endpoint: c.endpoint.filter(|e| !e.is_empty()).ok_or_else(missing)?,
        variant: c
            .variant
            .filter(|v| !v.is_empty())
            .unwrap_or(Cow::Borrowed(DEFAULT_VARIANT)),
        model: c
            .model
            .map(|m| (m.name.unwrap_or_default(), m.version.unwrap_or_default())),
        items: c
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| match i {
                ItemView::Id(s) => Some(s),
                ItemView::Other(_) => None,
            })
            .collect(),
        fallback: c.fallback.unwrap_or(false),
    })
}

/// Index of an item in [`Attribution::items`].
pub type ItemId = u32;

/// The credited click on a served answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Click {
    /// The clicked item, when the hit named it.
    pub item: Option<ItemId>,
    /// Its 1-based position (`hit_index + 1`), when the hit named it.
    pub position: Option<u32>,
    /// Time of the hit, ms UTC.
    pub timestamp_ms: i64,
}

/// What happened to one served answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// A display event came from the person served.
    pub displayed: bool,
    /// The first credited hit.
    pub click: Option<Click>,
    /// The clicked item was played (or the article opened) within the window after the click.
    pub played: bool,
    /// After that play, it was finished within the window.
    pub completed: bool,
}

/// A served answer and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributedRecommendation {
    /// The answer's `recommendation_id`.
    pub recommendation_id: String,
    /// The site.
    pub site_key: Arc<str>,
    /// The endpoint.
    pub endpoint: Arc<str>,
    /// The variant.
    pub variant: Arc<str>,
    /// The model that answered.
    pub model: Option<Arc<ModelRef>>,
    /// Item ids in the order served, as indices into [`Attribution::items`].
    pub items: Vec<ItemId>,
    /// Whether a fallback list answered.
    pub fallback: bool,
    /// Serving time, ms UTC.
    pub timestamp_ms: i64,
    /// What the person served did with it.
    pub outcome: Outcome,
}

/// Tallies of one site's events that were not, or not fully, credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttributionCounts {
    /// Distinct events read (after dedupe).
    pub events: u64,
    /// Events dropped as repeats of an `event_id` already read, and served events repeating a
    /// `recommendation_id` already served.
    pub duplicates: u64,
    /// `recommendation_served` events without the served marker (ignored).
    pub untrusted_served: u64,
    /// Hits whose recommendation was never served on this site (never credited).
    pub orphan_hits: u64,
    /// Hits from another user or client than the one served (not credited).
    pub foreign_hits: u64,
    /// Further hits on an already clicked answer (the click counts once).
    pub double_clicks: u64,
    /// Displays whose recommendation was never served on this site.
    pub orphan_displays: u64,
    /// Displays from another user or client than the one served.
    pub foreign_displays: u64,
}

/// An orphan hit: a click on a recommendation this log never served.
#[derive(Debug, Clone, PartialEq)]
pub struct OrphanHit {
    /// The site it was collected for.
    pub site_key: Arc<str>,
    /// Its time, ms UTC.
    pub timestamp_ms: i64,
}

/// The result of attribution: every trusted served answer with its outcome.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// Served answers, in the order read.
    pub recommendations: Vec<AttributedRecommendation>,
    /// Item ids, indexed by [`ItemId`].
    pub items: Vec<Arc<str>>,
    /// Orphan hits (kept with their time, so a report can count those in its range).
    pub orphan_hits: Vec<OrphanHit>,
    /// Tallies by site.
    pub counts: BTreeMap<Arc<str>, AttributionCounts>,
    /// Lines that were not flat events (or served events without an endpoint).
    pub malformed: u64,
}

impl Attribution {
    /// The id of an item.
    pub fn item(&self, id: ItemId) -> &str {
        &self.items[id as usize]
    }
}

/// Strings interned to small integers (sites, endpoints, variants, items).
#[derive(Debug, Default)]
struct Interner {
    map: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let a: Arc<str> = Arc::from(s);
        let i = self.names.len() as u32;
        self.names.push(a.clone());
        self.map.insert(a, i);
        i
    }

    fn name(&self, i: u32) -> &Arc<str> {
        &self.names[i as usize]
    }
}

/// Who an event came from: hashed user and client ids ([`person_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Person {
    user: Option<u64>,
    client: Option<u64>,
}

impl Person {
    fn anonymous(&self) -> bool {
        self.user.is_none() && self.client.is_none()
    }

    /// Whether `other` is this person: same user, or same client.
    fn matches(&self, other: &Person) -> bool {
        (self.user.is_some() && self.user == other.user)
            || (self.client.is_some() && self.client == other.client)
    }
}

#[derive(Debug)]
struct ServedRec {
    rec: AttributedRecommendation,
    site: u32,
    person: Person,
}

#[derive(Debug, Clone, Copy)]
struct Touch {
    rec: u128,
    site: u32,
    person: Person,
    timestamp_ms: i64,
    /// For hits: `(1-based position, item)` when the hit names the item.
    hit: Option<(u32, ItemId)>,
    /// Dedupe key of the event, to order same-time hits deterministically.
    key: u128,
}

#[derive(Debug, Clone, Copy)]
struct Consumption {
    person: Person,
    timestamp_ms: i64,
    end: bool,
}

/// Streams flat events into an [`Attribution`]: [`Attributor::push`] (or
/// [`Attributor::push_line`]) every event of the range, in any order, then
/// [`Attributor::finish`].
#[derive(Debug)]
pub struct Attributor {
    window_ms: i64,
    seen: Deduper,
    labels: Interner,
    items: Interner,
    models: Vec<Arc<ModelRef>>,
    served: Vec<ServedRec>,
    by_rec: HashMap<u128, u32>,
    displays: Vec<Touch>,
    hits: Vec<Touch>,
    consumption: HashMap<ItemId, Vec<Consumption>>,
    counts: BTreeMap<u32, AttributionCounts>,
    malformed: u64,
}

impl Attributor {
    /// An empty attributor crediting consumption up to `window_minutes` after a click.
    pub fn new(window_minutes: u32) -> Self {
        Self {
            window_ms: i64::from(window_minutes) * 60_000,
            seen: Deduper::new(),
            labels: Interner::default(),
            items: Interner::default(),
            models: Vec::new(),
            served: Vec::new(),
            by_rec: HashMap::new(),
            displays: Vec::new(),
            hits: Vec::new(),
            consumption: HashMap::new(),
            counts: BTreeMap::new(),
            malformed: 0,
        }
    }

    /// Reads one event-log line ([`OnlineEvent::parse`]); a line that is not an event is
    /// counted in [`Attribution::malformed`].
    pub fn push_line(&mut self, line: &str) {
        match OnlineEvent::parse(line) {
            Ok(ev) => self.push(ev),
            Err(_) => self.malformed += 1,
        }
    }

    /// Adds one event.
    pub fn push(&mut self, mut ev: OnlineEvent<'_>) {
        let site = self.labels.get(&ev.site_key);
        let counts = self.counts.entry(site).or_default();
        if !self.seen.first_time(&ev.event_id) {
            counts.duplicates += 1;
            return;
        }
        counts.events += 1;
        let kind = std::mem::replace(&mut ev.kind, EventKind::Other);
        if kind == EventKind::UntrustedServed {
            counts.untrusted_served += 1;
        }
        let person = Person {
            user: ev.user_id.as_deref().map(person_key),
            client: ev.client_id.as_deref().map(person_key),
        };
        let touch = |hit| Touch {
            rec: rec_key(&ev.id),
            site,
            person,
            timestamp_ms: ev.timestamp_ms,
            hit,
            key: dedupe_key(&ev.event_id),
        };
        match kind {
            EventKind::Served(ctx) => self.push_served(&ev, site, person, ctx),
            EventKind::Displayed => self.displays.push(touch(None)),
            EventKind::Hit(target) => {
                let hit = target.and_then(|(index, item)| {
                    let position = u32::try_from(index).ok()?.checked_add(1)?;
                    Some((position, self.items.get(&item)))
                });
                self.hits.push(touch(hit));
            }
            EventKind::Play | EventKind::End => {
                let item = self.items.get(&ev.id);
                self.consumption.entry(item).or_default().push(Consumption {
                    person,
                    timestamp_ms: ev.timestamp_ms,
                    end: kind == EventKind::End,
                });
            }
            EventKind::UntrustedServed | EventKind::Other => {}
        }
    }

    fn push_served(
        &mut self,
        ev: &OnlineEvent<'_>,
        site: u32,
        person: Person,
        ctx: ServedContext<'_>,
    ) {
        // A recommendation id is served once (the id is random; re-sent copies share their
        // event id and were dropped above): another served event with the same id is counted
        // as a duplicate, so the answer is never counted twice.
        let key = rec_key(&ev.id);
        if self.by_rec.contains_key(&key) {
            self.counts.entry(site).or_default().duplicates += 1;
            return;
        }
        let endpoint = self.labels.get(&ctx.endpoint);
        let variant = self.labels.get(&ctx.variant);
        let model = ctx.model.map(|(name, version)| self.model(&name, version));
        let items = ctx.items.iter().map(|i| self.items.get(i)).collect();
        let rec = AttributedRecommendation {
            recommendation_id: ev.id.to_string(),
            site_key: self.labels.name(site).clone(),
            endpoint: self.labels.name(endpoint).clone(),
            variant: self.labels.name(variant).clone(),
            model,
            items,
            fallback: ctx.fallback,
            timestamp_ms: ev.timestamp_ms,
            outcome: Outcome::default(),
        };
        self.by_rec.insert(key, self.served.len() as u32);
        self.served.push(ServedRec { rec, site, person });
    }

    /// The shared record of a model (a site serves few).
    fn model(&mut self, name: &str, version: u64) -> Arc<ModelRef> {
        if let Some(m) = self
            .models
            .iter()
            .find(|m| m.name == name && m.version == version)
        {
            return m.clone();
        }
        let m = Arc::new(ModelRef {
            name: name.to_string(),
            version,
        });
        self.models.push(m.clone());
        m
    }

    /// The served answer a display or hit refers to, on the same site.
    fn served_for(&self, t: &Touch) -> Option<usize> {
        let i = *self.by_rec.get(&t.rec)? as usize;
        (self.served[i].site == t.site).then_some(i)
    }

    /// Joins displays, hits and consumption with the served answers.
    pub fn finish(mut self) -> Attribution {
        let displays = std::mem::take(&mut self.displays);
        for t in &displays {
            let found = self.served_for(t);
            let counts = self.counts.entry(t.site).or_default();
            match found {
                None => counts.orphan_displays += 1,
                Some(i) => {
                    let s = &mut self.served[i];
                    if s.person.anonymous() || s.person.matches(&t.person) {
                        s.rec.outcome.displayed = true;
                    } else {
                        counts.foreign_displays += 1;
                    }
                }
            }
        }
        let mut hits = std::mem::take(&mut self.hits);
        // The earliest hit is the click; ties are broken by event id so that the result does
        // not depend on the order the log was read in.
        hits.sort_by_key(|t| (t.timestamp_ms, t.key));
        let mut orphan_hits = Vec::new();
        for t in &hits {
            let Some(i) = self.served_for(t) else {
                self.counts.entry(t.site).or_default().orphan_hits += 1;
                orphan_hits.push(OrphanHit {
                    site_key: self.labels.name(t.site).clone(),
                    timestamp_ms: t.timestamp_ms,
                });
                continue;
            };
            let counts = self.counts.entry(t.site).or_default();
            let s = &mut self.served[i];
            if !(s.person.anonymous() || s.person.matches(&t.person)) {
                counts.foreign_hits += 1;
                continue;
            }
            if s.rec.outcome.click.is_some() {
                counts.double_clicks += 1;
                continue;
            }
            s.rec.outcome.click = Some(Click {
                item: t.hit.map(|(_, item)| item),
                position: t.hit.map(|(position, _)| position),
                timestamp_ms: t.timestamp_ms,
            });
            if let Some((_, item)) = t.hit {
                let (played, completed) = consumed(
                    self.consumption.get(&item),
                    &t.person,
                    t.timestamp_ms,
                    self.window_ms,
                );
                s.rec.outcome.played = played;
                s.rec.outcome.completed = completed;
            }
        }
        Attribution {
            recommendations: self.served.into_iter().map(|s| s.rec).collect(),
            items: self.items.names,
            orphan_hits,
            counts: self
                .counts
                .into_iter()
                .map(|(site, c)| (self.labels.names[site as usize].clone(), c))
                .collect(),
            malformed: self.malformed,
        }
    }
}

/// A user or client id as attribution compares it: a 64-bit hash, so that no personal id is
/// kept in memory (two of a site's ids colliding, about n²/2⁶⁵ for n ids, would at worst
/// credit one person's click to another's answer).
fn person_key(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // DefaultHasher::new() has fixed keys: the same id gets the same key within a run.
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// The join key of a recommendation id: the recommend service's ids (`r-` and 32 hex digits)
/// are read as the number they spell, any other id is hashed (SHA-256, first 128 bits) so that
/// it cannot stand for one of them.
fn rec_key(id: &str) -> u128 {
    if let Some(hex) = id.strip_prefix("r-").filter(|h| h.len() == 32) {
        if let Ok(v) = u128::from_str_radix(hex, 16) {
            return v;
        }
    }
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_be_bytes(b)
}

/// Whether the clicked item was played by the clicker within `[click, click + window]`, and
/// finished after that play within the same window.
fn consumed(
    events: Option<&Vec<Consumption>>,
    clicker: &Person,
    click_ms: i64,
    window_ms: i64,
) -> (bool, bool) {
    let Some(events) = events else {
        return (false, false);
    };
    let within = |c: &&Consumption| {
        c.timestamp_ms >= click_ms
            && c.timestamp_ms <= click_ms.saturating_add(window_ms)
            && clicker.matches(&c.person)
    };
    let Some(first_play) = events
        .iter()
        .filter(within)
        .filter(|c| !c.end)
        .map(|c| c.timestamp_ms)
        .min()
    else {
        return (false, false);
    };
    let completed = events
        .iter()
        .filter(within)
        .any(|c| c.end && c.timestamp_ms >= first_play);
    (true, completed)
}

/// Attributes a whole set of events ([`Attributor`]).
pub fn attribute<'a>(
    events: impl IntoIterator<Item = OnlineEvent<'a>>,
    window_minutes: u32,
) -> Attribution {
    let mut a = Attributor::new(window_minutes);
    for ev in events {
        a.push(ev);
    }
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::online::fixture::{forged, lines, t};

    fn run(lines: &[String], window: u32) -> Attribution {
        let mut a = Attributor::new(window);
        for l in lines {
            a.push_line(l);
        }
        a.finish()
    }

    /// `(displayed, clicked item and position, played, completed)` of a recommendation.
    fn outcome(a: &Attribution, rec: &str) -> (bool, Option<(String, u32)>, bool, bool) {
        let r = a
            .recommendations
            .iter()
            .find(|r| r.recommendation_id == rec)
            .unwrap_or_else(|| panic!("{rec} not served"));
        let o = r.outcome;
        let click = o
            .click
            .map(|c| (a.item(c.item.unwrap()).to_string(), c.position.unwrap()));
        (o.displayed, click, o.played, o.completed)
    }

    fn clicked(item: &str, pos: u32) -> Option<(String, u32)> {
        Some((item.to_string(), pos))
    }

    #[test]
    fn each_served_answer_gets_the_outcome_worked_out_by_hand() {
        // GIVEN the hand-built set (see fixture.rs) and the default 30-minute window
        let a = run(&lines(), DEFAULT_ATTRIBUTION_WINDOW_MINUTES);
        // THEN r1: shown, first hit (m2 at position 2) credited, played at +2 min, ended +19
        assert_eq!(outcome(&a, "r1"), (true, clicked("m2", 2), true, true));
        // r2: played on another device of the same user; ended 38 min after the click
        assert_eq!(outcome(&a, "r2"), (true, clicked("m5", 3), true, false));
        assert_eq!(outcome(&a, "r12"), (false, None, false, false));
        // r5: served to a client only; a play before the click and one 44 min after do not count
        assert_eq!(outcome(&a, "r5"), (false, clicked("m1", 1), false, false));
        assert_eq!(outcome(&a, "r11"), (true, None, false, false));
        // r3: the only hit came from another user
        assert_eq!(outcome(&a, "r3"), (true, None, false, false));
        // r4: the display came from another user; the click by u4 counts, and the play by u4
        // on another client; the end is 40 min after the click
        assert_eq!(outcome(&a, "r4"), (false, clicked("m6", 1), true, false));
        // r6: anonymous answer, credited on its id alone
        assert_eq!(outcome(&a, "r6"), (true, clicked("m6", 3), true, false));
        assert_eq!(outcome(&a, "r7"), (false, clicked("m9", 2), false, false));
        assert_eq!(outcome(&a, "r8"), (false, None, false, false));
        assert_eq!(outcome(&a, "r13"), (true, clicked("m1", 1), false, false));
        // AND r1, read twice, is one answer; the r10 hit sent for s1 did not credit s2's r10
        assert_eq!(a.recommendations.len(), 12);
        assert_eq!(outcome(&a, "r10"), (false, None, false, false));
        let r2 = a
            .recommendations
            .iter()
            .find(|r| r.recommendation_id == "r2")
            .unwrap();
        assert_eq!(
            (&*r2.endpoint, &*r2.variant, r2.fallback),
            ("for-you", "a", true)
        );
        assert_eq!(
            r2.model.as_deref(),
            Some(&ModelRef {
                name: "als".into(),
                version: 3
            })
        );
        let items: Vec<&str> = r2.items.iter().map(|&i| a.item(i)).collect();
        assert_eq!(items, ["m1", "m4", "m5"]);
    }

    #[test]
    fn uncredited_events_are_counted_by_kind() {
        // GIVEN the hand-built set plus a forged served event (no marker)
        let mut all = lines();
        all.push(forged());
        all.push("not json".into());
        let a = run(&all, DEFAULT_ATTRIBUTION_WINDOW_MINUTES);
        // THEN the counts are those of the fixture: 45 lines, one of them on s2; three lines
        // read twice (r1's served, display and first hit); hits on r-unknown, on s2's r10 and
        // on r-old are orphans; u9's hit on r3 and display of r4 are foreign; r1's second hit
        // is a double click; the forged r9 is untrusted
        let s1 = a.counts[&Arc::from("s1")];
        let want = AttributionCounts {
            events: 44 - 3 + 1,
            duplicates: 3,
            untrusted_served: 1,
            orphan_hits: 3,
            foreign_hits: 1,
            double_clicks: 1,
            orphan_displays: 0,
            foreign_displays: 1,
        };
        assert_eq!(s1, want);
        assert_eq!(a.counts[&Arc::from("s2")].events, 1);
        assert_eq!(a.malformed, 1);
        // AND the forged answer is not among the served ones
        assert!(a
            .recommendations
            .iter()
            .all(|r| r.recommendation_id != "r9"));
        let orphan_days: Vec<i64> = a.orphan_hits.iter().map(|o| o.timestamp_ms).collect();
        assert_eq!(orphan_days, [t(0, 14, 0), t(1, 14, 0), t(2, 14, 0)]);
    }

    #[test]
    fn the_order_events_are_read_in_does_not_matter() {
        // GIVEN the set read forwards and backwards
        let mut back = lines();
        back.reverse();
        let (f, b) = (run(&lines(), 30), run(&back, 30));
        // THEN every answer has the same outcome and the counts agree
        for r in &f.recommendations {
            let other = b
                .recommendations
                .iter()
                .find(|o| o.recommendation_id == r.recommendation_id)
                .unwrap();
            assert_eq!(
                outcome(&f, &r.recommendation_id),
                outcome(&b, &other.recommendation_id)
            );
        }
        assert_eq!(f.counts, b.counts);
    }

    #[test]
    fn a_longer_window_credits_later_consumption() {
        // GIVEN a 60-minute window
        let a = run(&lines(), 60);
        // THEN r5's play 44 min after the click counts, and so do the ends of r2 (38 min) and
        // r4 (40 min)
        assert_eq!(outcome(&a, "r5"), (false, clicked("m1", 1), true, false));
        assert_eq!(outcome(&a, "r2"), (true, clicked("m5", 3), true, true));
        assert_eq!(outcome(&a, "r4"), (false, clicked("m6", 1), true, true));
    }

    #[test]
    fn only_served_events_with_the_marker_set_to_true_are_trusted() {
        let base = || -> serde_json::Value {
            serde_json::from_str(
                &crate::online::fixture::Served {
                    rec: "r1",
                    site: "s1",
                    user: Some("u1"),
                    client: None,
                    endpoint: "for-you",
                    variant: "a",
                    items: &["m1"],
                    fallback: false,
                    ts: t(1, 0, 0),
                }
                .line(),
            )
            .unwrap()
        };
        // GIVEN the marker as the served log writes it
        let line = base().to_string();
        let ev = OnlineEvent::parse(&line).unwrap();
        let EventKind::Served(ctx) = ev.kind else {
            panic!("not trusted: {:?}", ev.kind)
        };
        assert_eq!((&*ctx.endpoint, ctx.items.len()), ("for-you", 1));
        // AND its client id was the user's (no client in the request): kept as a client id
        assert_eq!(
            (ev.user_id.as_deref(), ev.client_id.as_deref()),
            (Some("u1"), Some("u1"))
        );
        // WHEN the marker is false, a string, or absent THEN the event is untrusted
        for marker in [
            Some(serde_json::json!(false)),
            Some(serde_json::json!("true")),
            None,
        ] {
            let mut v = base();
            match marker {
                Some(m) => v[SERVED_MARKER_FIELD] = m,
                None => {
                    v.as_object_mut().unwrap().remove(SERVED_MARKER_FIELD);
                }
            }
            let line = v.to_string();
            assert_eq!(
                OnlineEvent::parse(&line).unwrap().kind,
                EventKind::UntrustedServed
            );
        }
        // AND a trusted served event without an endpoint is malformed
        let mut v = base();
        v["context"].as_object_mut().unwrap().remove("endpoint");
        assert!(OnlineEvent::parse(&v.to_string()).is_err());
        // AND an anonymous answer's client id (the service's own) is no client
        let mut v = base();
        v.as_object_mut().unwrap().remove("user_id");
        v["client"]["id"] = serde_json::json!(SERVED_APP_ID);
        let line = v.to_string();
        let ev = OnlineEvent::parse(&line).unwrap();
        assert_eq!((ev.user_id, ev.client_id), (None, None));
    }

    #[test]
    fn served_item_ids_with_escapes_are_read_and_non_string_items_skipped() {
        // GIVEN a served event whose items hold an escaped id, a non-string and a plain id
        let mut v: serde_json::Value = serde_json::from_str(
            &crate::online::fixture::Served {
                rec: "r1",
                site: "s1",
                user: None,
                client: Some("c1"),
                endpoint: "e",
                variant: "",
                items: &[],
                fallback: false,
                ts: t(1, 0, 0),
            }
            .line(),
        )
        .unwrap();
        v["context"]["items"] = serde_json::json!(["quote\"dé", 7, "m2"]);
        let line = v.to_string();
        // WHEN it is parsed
        let ev = OnlineEvent::parse(&line).unwrap();
        let EventKind::Served(ctx) = ev.kind else {
            panic!("not trusted")
        };
        // THEN the ids are decoded, the number skipped, and an empty variant is "default"
        assert_eq!(ctx.items, ["quote\"dé", "m2"]);
        assert_eq!(&*ctx.variant, "default");
    }

    #[test]
    fn a_recommendation_id_served_twice_counts_once() {
        // GIVEN two served events of one recommendation id under different event ids
        let line = crate::online::fixture::Served {
            rec: "r1",
            site: "s1",
            user: Some("u1"),
            client: None,
            endpoint: "e",
            variant: "a",
            items: &["m1"],
            fallback: false,
            ts: t(1, 0, 0),
        }
        .line();
        let mut other: serde_json::Value = serde_json::from_str(&line).unwrap();
        other["event_id"] = serde_json::json!("another-id");
        let a = run(&[line, other.to_string()], 30);
        // THEN there is one answer and one duplicate
        assert_eq!(a.recommendations.len(), 1);
        assert_eq!(a.counts[&Arc::from("s1")].duplicates, 1);
    }

    #[test]
    fn a_hit_that_names_no_item_is_a_click_without_a_position() {
        // GIVEN a served answer and a hit whose context has no hit_index
        let served = crate::online::fixture::Served {
            rec: "r1",
            site: "s1",
            user: None,
            client: Some("c1"),
            endpoint: "e",
            variant: "a",
            items: &["m1"],
            fallback: false,
            ts: t(1, 0, 0),
        }
        .line();
        let mut hit: serde_json::Value = serde_json::from_str(&crate::online::fixture::hit(
            "h1",
            "s1",
            "r1",
            crate::online::fixture::Who(None, "c1"),
            &["m1"],
            0,
            t(1, 0, 1),
        ))
        .unwrap();
        hit["context"].as_object_mut().unwrap().remove("hit_index");
        let a = run(&[served, hit.to_string()], 30);
        // THEN the answer is clicked, with no item or position
        let c = a.recommendations[0].outcome.click.unwrap();
        assert_eq!((c.item, c.position), (None, None));
    }
}
