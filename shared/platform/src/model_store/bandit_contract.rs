//! The contract of the bandit port ([`BanditStore`]), run against the local store (unit
//! tests) and real Redis, single node and cluster (`tests/tests/model_store_redis.rs`).

use nectar_model::online::bandit::ArmCounts;

use super::bandit::{
    BanditStore, ExploreUpdate, OnceMark, ServedRef, VariantCounter, VariantCounts,
    VariantIncrement,
};

const DAY: i64 = 86_400_000;

fn served(endpoint: &str, variant: &str, items: &[&str]) -> ServedRef {
    ServedRef {
        endpoint: endpoint.into(),
        variant: variant.into(),
        items: items.iter().map(|s| s.to_string()).collect(),
    }
}

fn inc(endpoint: &str, variant: &str, counter: VariantCounter, n: u64) -> VariantIncrement {
    VariantIncrement {
        endpoint: endpoint.into(),
        variant: variant.into(),
        counter,
        n,
    }
}

/// Served lookup, once-marks, variant counters and exploration counts; panics on a violation.
pub async fn bandit_store_contract<S: BanditStore>(store: &S) {
    let site = format!("t{:016x}", rand::random::<u64>());
    let site = site.as_str();
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // GIVEN two served answers WHEN remembered THEN both are new and read back; unknown ids
    // read as None, and remembering one again is not new (a redelivered batch counts once)
    let a = served("home", "als", &["m1", "m2"]);
    let b = served("home", "pop", &[]);
    let fresh = store
        .remember_served(
            site,
            &[("r-1".into(), a.clone()), ("r-2".into(), b.clone())],
            60,
        )
        .await
        .unwrap();
    assert_eq!(fresh, [true, true]);
    let got = store
        .served_refs(site, &ids(&["r-2", "r-x", "r-1"]))
        .await
        .unwrap();
    assert_eq!(got, [Some(b), None, Some(a.clone())]);
    let again = store
        .remember_served(site, &[("r-1".into(), served("home", "other", &[]))], 60)
        .await
        .unwrap();
    assert_eq!(again, [false]);
    assert_eq!(
        store.served_refs(site, &ids(&["r-1"])).await.unwrap(),
        [Some(a)]
    );
    // AND another site does not see them
    let other = format!("{site}x");
    assert_eq!(
        store.served_refs(&other, &ids(&["r-1"])).await.unwrap(),
        [None]
    );

    // WHEN ids are marked clicked THEN only the first mark of each id is new, and a display
    // mark is separate from a click mark
    let m = store
        .mark_once(site, OnceMark::Clicked, &ids(&["r-1", "r-1", "r-2"]), 60)
        .await
        .unwrap();
    assert_eq!(m, [true, false, true]);
    let m = store
        .mark_once(site, OnceMark::Clicked, &ids(&["r-1"]), 60)
        .await
        .unwrap();
    assert_eq!(m, [false]);
    let m = store
        .mark_once(site, OnceMark::Displayed, &ids(&["r-1"]), 60)
        .await
        .unwrap();
    assert_eq!(m, [true]);

    // WHEN variant counters are incremented on two endpoints THEN each endpoint reads its own
    assert!(store.variant_counts(site, "home").await.unwrap().is_empty());
    store
        .add_variant_counts(
            site,
            &[
                inc("home", "als", VariantCounter::Served, 3),
                inc("home", "als", VariantCounter::Clicks, 1),
                inc("home", "pop", VariantCounter::Displayed, 2),
                inc("next", "als", VariantCounter::Served, 7),
            ],
        )
        .await
        .unwrap();
    store
        .add_variant_counts(site, &[inc("home", "als", VariantCounter::Served, 1)])
        .await
        .unwrap();
    let home = store.variant_counts(site, "home").await.unwrap();
    assert_eq!(
        home["als"],
        VariantCounts {
            served: 4,
            displayed: 0,
            clicks: 1
        }
    );
    assert_eq!(
        home["pop"],
        VariantCounts {
            served: 0,
            displayed: 2,
            clicks: 0
        }
    );
    assert_eq!(home.len(), 2);
    assert_eq!(
        store.variant_counts(site, "next").await.unwrap()["als"].served,
        7
    );

    // GIVEN items seen at various times WHEN counts are added THEN items read newest first
    // with their counts, the earliest sighting wins, and old items are forgotten
    let now = 1_795_000_000_000i64;
    store
        .add_explore(
            site,
            &ExploreUpdate {
                seen: vec![
                    ("new".into(), now - DAY, now - DAY),
                    ("mid".into(), now - 5 * DAY, now - 5 * DAY),
                    ("old".into(), now - 20 * DAY, now - 20 * DAY),
                    ("kept".into(), now - 40 * DAY, now - 3 * DAY),
                ],
                counts: vec![("new".into(), ArmCounts::new(10, 2))],
                keep_since_ms: now - 30 * DAY,
            },
        )
        .await
        .unwrap();
    store
        .add_explore(
            site,
            &ExploreUpdate {
                // A later sighting keeps the first; an earlier one moves it back.
                seen: vec![
                    ("new".into(), now, now),
                    ("mid".into(), now - 6 * DAY, now - 6 * DAY),
                    ("kept".into(), now - 2 * DAY, now - 2 * DAY),
                ],
                counts: vec![
                    ("new".into(), ArmCounts::new(5, 1)),
                    ("mid".into(), ArmCounts::new(3, 0)),
                ],
                keep_since_ms: now - 30 * DAY,
            },
        )
        .await
        .unwrap();
    let got = store.explore_items(site, now - 7 * DAY).await.unwrap();
    let got: Vec<(&str, i64, ArmCounts)> = got
        .iter()
        .map(|e| (e.item.as_str(), e.first_seen_ms, e.counts))
        .collect();
    assert_eq!(
        got,
        [
            ("new", now - DAY, ArmCounts::new(15, 3)),
            ("mid", now - 6 * DAY, ArmCounts::new(3, 0)),
        ]
    );
    assert_eq!(
        store
            .explore_items(site, now - 25 * DAY)
            .await
            .unwrap()
            .len(),
        3
    );
    // WHEN the retention moves past "old" (last seen 20 days ago) THEN it is gone, counts and
    // all, while "kept" (first seen 40 days ago, seen again 2 days ago) stays old
    // (an item that keeps appearing never becomes new again)
    store
        .add_explore(
            site,
            &ExploreUpdate {
                seen: vec![],
                counts: vec![],
                keep_since_ms: now - 10 * DAY,
            },
        )
        .await
        .unwrap();
    let all = store.explore_items(site, 0).await.unwrap();
    let all: Vec<(&str, i64)> = all
        .iter()
        .map(|e| (e.item.as_str(), e.first_seen_ms))
        .collect();
    assert_eq!(
        all,
        [
            ("new", now - DAY),
            ("mid", now - 6 * DAY),
            ("kept", now - 40 * DAY)
        ]
    );
}
