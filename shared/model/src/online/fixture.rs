//! The hand-built event set of the attribution and report tests: two days of a site `s1` with
//! an experiment on `for-you` (variants `a`, the control, and `b`) and an endpoint `more`
//! without one, including duplicates, double clicks, foreign users, orphans, a forged served
//! event, consumption outside the attribution window, and events outside the report range.
//!
//! ```text
//! for-you a: r1 (u1/c1, day 1 10:00, [m1 m2 m3])     displayed; hit m2 (pos 2) 10:01, again 10:02 (double);
//!                                                   play m2 10:03, end 10:20            -> played, completed
//!            r2 (u2/c2, day 1 11:00, [m1 m4 m5], fallback)  displayed; hit m5 (pos 3) 11:02;
//!                                                   play m5 by u2 on client c22 11:05, end 11:40 (38 min) -> played
//!            r12 (u12/c12, day 1 12:30, [m3 m4 m7])  nothing
//!            r5 (client c5 only, day 2 10:00, [m1 m2 m3])   no display; hit m1 (pos 1) 10:01;
//!                                                   play m1 09:59 (before) and 10:45 (44 min) -> not played
//!            r11 (u11/c11, day 2 12:00, [m1 m2 m7])  displayed
//!            r13 (u1/c1, day 3 = outside the range)  displayed, hit
//! for-you b: r3 (u3/c3, day 1 12:00, [m2 m3 m6])     displayed; hit by u9/c9 (foreign)
//!            r4 (u4/c4, day 2 09:00, [m6 m7 m8])     displayed by u9/c9 only (foreign); hit m6 (pos 1) 09:01;
//!                                                   play m6 by u4 on client c44 09:11, end 09:41 (40 min) -> played
//!            r6 (anonymous, day 2 11:00, [m4 m5 m6]) displayed and hit m6 (pos 3) by c6 11:01; play 11:06 -> played
//!            r9: forged `recommendation_served` (no marker) for u3 -> ignored
//! more default: r7 (u1/c1, day 1 13:00, [m2 m9])     hit m9 (pos 2) by u1
//!               r8 (u2/c2, day 2 13:00, [m9 m1], fallback)
//! s2 for-you a: r10 (day 1)
//! orphans (site s1): hit on r-unknown (day 1), hit on r10 sent for s1 (day 2), hit on r-old (day 0,
//! outside the range)
//! duplicates: r1's served, display and first hit lines are each read twice
//! ```

use chrono::NaiveDate;
use serde_json::{json, Value};

/// ms UTC of day `day` (1 = 2026-11-01, 0 = 2026-10-31) at hh:mm.
pub(crate) fn t(day: i64, h: u32, m: u32) -> i64 {
    let d = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap() + chrono::Days::new(day as u64);
    d.and_hms_opt(h, m, 0).unwrap().and_utc().timestamp_millis()
}

/// Who sent an event: the logged-in user, if any, and the device's client id.
#[derive(Clone, Copy)]
pub(crate) struct Who<'a>(pub Option<&'a str>, pub &'a str);

fn flat(eid: &str, site: &str, kind: &str, id: &str, who: Who<'_>, ts: i64, ctx: Value) -> Value {
    let mut v = json!({
        "event_id": eid,
        "site_key": site,
        "type": kind,
        "id": id,
        "event_timestamp": ts,
        "collect_timestamp": ts + 500,
        "sent_timestamp": ts,
        "peach_schema_version": "1.0.3",
        "client": { "id": who.1, "app_id": "app", "device": { "type": "phone" } },
    });
    if let Some(u) = who.0 {
        v["user_id"] = json!(u);
    }
    if !ctx.is_null() {
        v["context"] = ctx;
    }
    v
}

/// A served answer as the recommend service logs it.
pub(crate) struct Served<'a> {
    pub rec: &'a str,
    pub site: &'a str,
    pub user: Option<&'a str>,
    pub client: Option<&'a str>,
    pub endpoint: &'a str,
    pub variant: &'a str,
    pub items: &'a [&'a str],
    pub fallback: bool,
    pub ts: i64,
}

impl Served<'_> {
    /// The flat event as the served log writes it (client id = client, else user, else
    /// `nectar-recommend`), with the served marker.
    pub(crate) fn line(&self) -> String {
        let anonymous = self.user.is_none() && self.client.is_none();
        let client = self.client.or(self.user).unwrap_or("nectar-recommend");
        let ctx = json!({
            "endpoint": self.endpoint, "variant": self.variant,
            "model": { "name": "als", "version": 3 },
            "fallback": self.fallback, "items": self.items, "context_item": null,
            "subject": anonymous.then_some("popular"),
        });
        let eid = format!("{}-served", self.rec);
        let who = Who(self.user, client);
        let mut v = flat(
            &eid,
            self.site,
            "recommendation_served",
            self.rec,
            who,
            self.ts,
            ctx,
        );
        v["client"]["app_id"] = json!("nectar-recommend");
        v[super::attribution::SERVED_MARKER_FIELD] = json!(true);
        v.to_string()
    }
}

/// A `recommendation_displayed` event on site `s1`.
pub(crate) fn displayed(eid: &str, rec: &str, who: Who<'_>, ts: i64) -> String {
    flat(
        eid,
        "s1",
        "recommendation_displayed",
        rec,
        who,
        ts,
        Value::Null,
    )
    .to_string()
}

/// A `recommendation_hit` on `items[index]` of the list the app shows.
pub(crate) fn hit(
    eid: &str,
    site: &str,
    rec: &str,
    who: Who<'_>,
    items: &[&str],
    index: usize,
    ts: i64,
) -> String {
    let ctx = json!({ "items": items, "hit_index": index, "component": { "name": "carousel" } });
    flat(eid, site, "recommendation_hit", rec, who, ts, ctx).to_string()
}

/// A consumption event (`media_play`, `media_end`, …) of an item on site `s1`.
pub(crate) fn consume(eid: &str, kind: &str, item: &str, who: Who<'_>, ts: i64) -> String {
    flat(eid, "s1", kind, item, who, ts, Value::Null).to_string()
}

/// The forged served event of the set (no marker): the one a client could send.
pub(crate) fn forged() -> String {
    let line = Served {
        rec: "r9",
        site: "s1",
        user: Some("u3"),
        client: Some("c3"),
        endpoint: "for-you",
        variant: "b",
        items: &["m1", "m2", "m3"],
        fallback: false,
        ts: t(2, 8, 0),
    }
    .line();
    let mut v: Value = serde_json::from_str(&line).unwrap();
    let marker = super::attribution::SERVED_MARKER_FIELD;
    v.as_object_mut().unwrap().remove(marker);
    v.to_string()
}

/// A served answer on site `s1`: `(user, client)`, `(endpoint, variant)`.
fn sv(
    rec: &str,
    (user, client): (Option<&str>, Option<&str>),
    (endpoint, variant): (&str, &str),
    items: &[&str],
    fallback: bool,
    ts: i64,
) -> String {
    let site = "s1";
    let s = Served {
        rec,
        site,
        user,
        client,
        endpoint,
        variant,
        items,
        fallback,
        ts,
    };
    s.line()
}

/// Every line of the set except the forged served event, in a shuffled-looking order (hits
/// before their served events, days mixed), with three repeated lines.
pub(crate) fn lines() -> Vec<String> {
    let s = "s1";
    let (u1, u2, u3, u4) = (
        Who(Some("u1"), "c1"),
        Who(Some("u2"), "c2"),
        Who(Some("u3"), "c3"),
        Who(Some("u4"), "c4"),
    );
    let (u11, u9, c5, c6) = (
        Who(Some("u11"), "c11"),
        Who(Some("u9"), "c9"),
        Who(None, "c5"),
        Who(None, "c6"),
    );
    let (fy_a, fy_b, more) = (("for-you", "a"), ("for-you", "b"), ("more", "default"));
    let l3: &[&str] = &["m1", "m2", "m3"];
    let (l2, l4, l6, l7) = (
        ["m1", "m4", "m5"],
        ["m2", "m3", "m6"],
        ["m6", "m7", "m8"],
        ["m4", "m5", "m6"],
    );
    vec![
        // Hits and consumption first: attribution must not depend on the order read.
        hit("h-r1-1", s, "r1", u1, l3, 1, t(1, 10, 1)),
        hit("h-r1-2", s, "r1", u1, l3, 0, t(1, 10, 2)),
        hit("h-r1-1", s, "r1", u1, l3, 1, t(1, 10, 1)),
        consume("p-r1", "media_play", "m2", u1, t(1, 10, 3)),
        consume("e-r1", "media_end", "m2", u1, t(1, 10, 20)),
        sv("r1", (Some("u1"), Some("c1")), fy_a, l3, false, t(1, 10, 0)),
        sv("r1", (Some("u1"), Some("c1")), fy_a, l3, false, t(1, 10, 0)),
        displayed("d-r1", "r1", u1, t(1, 10, 0) + 5_000),
        displayed("d-r1", "r1", u1, t(1, 10, 0) + 5_000),
        sv("r2", (Some("u2"), Some("c2")), fy_a, &l2, true, t(1, 11, 0)),
        displayed("d-r2", "r2", u2, t(1, 11, 0) + 3_000),
        hit("h-r2", s, "r2", u2, &l2, 2, t(1, 11, 2)),
        consume(
            "p-r2",
            "media_play",
            "m5",
            Who(Some("u2"), "c22"),
            t(1, 11, 5),
        ),
        consume(
            "e-r2",
            "media_end",
            "m5",
            Who(Some("u2"), "c22"),
            t(1, 11, 40),
        ),
        sv(
            "r12",
            (Some("u12"), Some("c12")),
            fy_a,
            &["m3", "m4", "m7"],
            false,
            t(1, 12, 30),
        ),
        sv("r5", (None, Some("c5")), fy_a, l3, false, t(2, 10, 0)),
        consume("p-r5-early", "media_play", "m1", c5, t(2, 9, 59)),
        hit("h-r5", s, "r5", c5, l3, 0, t(2, 10, 1)),
        consume("p-r5-late", "media_play", "m1", c5, t(2, 10, 45)),
        sv(
            "r11",
            (Some("u11"), Some("c11")),
            fy_a,
            &["m1", "m2", "m7"],
            false,
            t(2, 12, 0),
        ),
        displayed("d-r11", "r11", u11, t(2, 12, 0) + 2_000),
        sv("r13", (Some("u1"), Some("c1")), fy_a, l3, false, t(3, 9, 0)),
        displayed("d-r13", "r13", u1, t(3, 9, 0) + 2_000),
        hit("h-r13", s, "r13", u1, l3, 0, t(3, 9, 1)),
        sv(
            "r3",
            (Some("u3"), Some("c3")),
            fy_b,
            &l4,
            false,
            t(1, 12, 0),
        ),
        displayed("d-r3", "r3", u3, t(1, 12, 0) + 1_000),
        hit("h-r3-foreign", s, "r3", u9, &l4, 0, t(1, 12, 1)),
        sv("r4", (Some("u4"), Some("c4")), fy_b, &l6, false, t(2, 9, 0)),
        displayed("d-r4-foreign", "r4", u9, t(2, 9, 0) + 1_000),
        hit("h-r4", s, "r4", u4, &l6, 0, t(2, 9, 1)),
        consume(
            "p-r4",
            "media_play",
            "m6",
            Who(Some("u4"), "c44"),
            t(2, 9, 11),
        ),
        consume(
            "e-r4",
            "media_end",
            "m6",
            Who(Some("u4"), "c44"),
            t(2, 9, 41),
        ),
        sv("r6", (None, None), fy_b, &l7, false, t(2, 11, 0)),
        displayed("d-r6", "r6", c6, t(2, 11, 0) + 1_000),
        hit("h-r6", s, "r6", c6, &l7, 2, t(2, 11, 1)),
        consume("p-r6", "media_play", "m6", c6, t(2, 11, 6)),
        sv(
            "r7",
            (Some("u1"), Some("c1")),
            more,
            &["m2", "m9"],
            false,
            t(1, 13, 0),
        ),
        hit("h-r7", s, "r7", u1, &["m2", "m9"], 1, t(1, 13, 1)),
        sv(
            "r8",
            (Some("u2"), Some("c2")),
            more,
            &["m9", "m1"],
            true,
            t(2, 13, 0),
        ),
        Served {
            rec: "r10",
            site: "s2",
            user: Some("u1"),
            client: Some("c1"),
            endpoint: "for-you",
            variant: "a",
            items: l3,
            fallback: false,
            ts: t(1, 8, 0),
        }
        .line(),
        hit("h-unknown", s, "r-unknown", u1, l3, 0, t(1, 14, 0)),
        hit("h-r10-s1", s, "r10", u1, l3, 0, t(2, 14, 0)),
        hit("h-old", s, "r-old", u1, l3, 0, t(0, 14, 0)),
        // Events attribution does not use.
        consume("pv-1", "page_view", "home", u1, t(1, 9, 0)),
        consume("pz-1", "media_pause", "m2", u1, t(1, 10, 4)),
    ]
}
