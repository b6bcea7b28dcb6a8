//! The contract every [`ModelStore`] adapter passes, run against the local store (unit tests)
//! and real Redis (`tests/tests/model_store_redis.rs`). The functions panic on a violation.

use super::{
    user_state, Factors, ModelArtifacts, ModelStore, ModelStoreError, PublishOptions,
    ITEM_CHUNK_ROWS,
};

/// Deterministic artifacts for `version`: `items` items `v<version>-i<k>` whose factors are all
/// `version` (+ k/1000 in the first column), four users, lists and similar items.
pub fn artifacts(version: u64, items: usize, dim: usize) -> ModelArtifacts {
    let item_ids: Vec<String> = (0..items).map(|k| format!("v{version}-i{k}")).collect();
    let mut data = vec![version as f32; items * dim];
    for k in 0..items {
        data[k * dim] += k as f32 / 1000.0;
    }
    let user_ids: Vec<String> = (0..4).map(|u| format!("u{u}")).collect();
    let user_factors: Vec<f32> = (0..4 * dim).map(|x| x as f32 + version as f32).collect();
    let n = items as u32;
    ModelArtifacts {
        item_ids,
        item_factors: Some(Factors { dim, data }),
        user_ids,
        user_factors: Some(Factors {
            dim,
            data: user_factors,
        }),
        popular: (0..n.min(10)).map(|i| (i, 10.0 - i as f32)).collect(),
        similar: Some(
            (0..n)
                .map(|i| vec![((i + 1) % n, 0.9), ((i + 2) % n, 0.5)])
                .collect(),
        ),
        user_top: Some((0..4).map(|u| vec![(u % n, 1.0)]).collect()),
        metadata: serde_json::json!({ "version": version, "algorithm": "contract" }),
    }
}

fn unique_site() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// The functional contract: pointer, round trips, per-user state, stale and invalid publishes,
/// chunking, `keep_versions`, history.
pub async fn model_store_contract<S: ModelStore>(store: &S, model: &str) {
    let site = unique_site();
    let site = site.as_str();
    let opts = PublishOptions {
        keep_versions: 2,
        ..PublishOptions::default()
    };
    // GIVEN an empty store
    assert_eq!(store.current_version(site, model).await.unwrap(), None);
    assert!(store.load_items(site, model, 1).await.unwrap().is_none());

    // WHEN version 1 is published THEN the pointer names it and it reads back exactly
    let a1 = artifacts(1, 5, 3);
    store.publish(site, model, 1, &a1, &opts).await.unwrap();
    assert_eq!(store.current_version(site, model).await.unwrap(), Some(1));
    let items = store.load_items(site, model, 1).await.unwrap().unwrap();
    assert_eq!(items.version, 1);
    assert_eq!(items.item_ids, a1.item_ids);
    assert_eq!(items.item_factors, a1.item_factors);
    assert_eq!(items.popular, a1.popular);
    assert_eq!(items.similar, a1.similar);
    assert_eq!(items.metadata, a1.metadata);

    // per-user state: factors and top-N of known users, nothing for unknown ones
    let users = vec!["u2".to_string(), "nobody".to_string(), "u0".to_string()];
    let states = store.user_states(site, model, 1, &users).await.unwrap();
    assert_eq!(states.len(), 3);
    let uf = a1.user_factors.as_ref().unwrap();
    assert_eq!(states[0].factors.as_deref(), Some(uf.row(2)));
    assert_eq!(states[0].top, Some(vec![(2, 1.0)]));
    assert_eq!(states[1].factors, None);
    assert_eq!(states[1].top, None);
    assert_eq!(states[2].factors.as_deref(), Some(uf.row(0)));
    // a version with no such user data
    let none = store.user_states(site, model, 99, &users).await.unwrap();
    assert!(none.iter().all(|s| s.factors.is_none() && s.top.is_none()));

    // a stale or inconsistent version is refused and changes nothing
    match store.publish(site, model, 1, &a1, &opts).await {
        Err(ModelStoreError::StaleVersion {
            version: 1,
            current: 1,
        }) => {}
        other => panic!("expected StaleVersion, got {other:?}"),
    }
    let mut bad = artifacts(5, 4, 2);
    bad.item_factors.as_mut().unwrap().data.pop();
    assert!(matches!(
        store.publish(site, model, 5, &bad, &opts).await,
        Err(ModelStoreError::InvalidArtifacts(_))
    ));
    assert_eq!(store.current_version(site, model).await.unwrap(), Some(1));
    assert!(store.load_items(site, model, 5).await.unwrap().is_none());

    // WHEN a version larger than one chunk is published THEN it reads back whole, and the
    // superseded version is still readable (TTL, not deletion)
    let a2 = artifacts(2, ITEM_CHUNK_ROWS * 2 + 7, 4);
    store.publish(site, model, 2, &a2, &opts).await.unwrap();
    assert_eq!(store.current_version(site, model).await.unwrap(), Some(2));
    let items = store.load_items(site, model, 2).await.unwrap().unwrap();
    assert_eq!(items.item_ids, a2.item_ids);
    assert_eq!(items.item_factors, a2.item_factors);
    assert_eq!(items.similar, a2.similar);
    assert!(store.load_items(site, model, 1).await.unwrap().is_some());

    // a model without factors or similar lists (popularity)
    let mut a3 = artifacts(3, 6, 2);
    a3.item_factors = None;
    a3.user_factors = None;
    a3.user_ids.clear();
    a3.user_top = None;
    a3.similar = None;
    store.publish(site, model, 3, &a3, &opts).await.unwrap();
    let items = store.load_items(site, model, 3).await.unwrap().unwrap();
    assert_eq!(items.item_factors, None);
    assert_eq!(items.similar, None);
    assert_eq!(items.popular, a3.popular);

    // keep_versions = 2: versions 3 and 2 stay, version 1 is gone
    assert!(store.load_items(site, model, 1).await.unwrap().is_none());
    assert!(store.load_items(site, model, 2).await.unwrap().is_some());
    assert!(store.user_states(site, model, 1, &users).await.unwrap()[0]
        .factors
        .is_none());

    // rollback to the superseded version 2, then forward again to 3; a missing version is refused
    assert!(store.set_current(site, model, 2, &opts).await.unwrap());
    assert_eq!(store.current_version(site, model).await.unwrap(), Some(2));
    assert_eq!(
        store
            .load_items(site, model, 2)
            .await
            .unwrap()
            .unwrap()
            .item_ids,
        a2.item_ids
    );
    assert!(!store.set_current(site, model, 1, &opts).await.unwrap());
    assert_eq!(store.current_version(site, model).await.unwrap(), Some(2));
    assert!(store.set_current(site, model, 3, &opts).await.unwrap());
    assert_eq!(store.current_version(site, model).await.unwrap(), Some(3));

    // recent history: newest first, trimmed, shared by every version
    store
        .append_history(site, "u0", &["a".into(), "b".into()], 3)
        .await
        .unwrap();
    store
        .append_history(site, "u0", &["c".into(), "d".into()], 3)
        .await
        .unwrap();
    let st = user_state(store, site, model, 2, "u0").await.unwrap();
    assert_eq!(st.history, vec!["d", "c", "b"]);
    assert_eq!(
        st.factors.as_deref(),
        Some(a2.user_factors.as_ref().unwrap().row(0))
    );
    let st = user_state(store, site, model, 2, "u1").await.unwrap();
    assert!(st.history.is_empty());

    // negative feedback: its own list beside the history, newest first, trimmed
    store
        .append_rejected(site, "u0", &["x".into(), "y".into()], 2)
        .await
        .unwrap();
    store
        .append_rejected(site, "u0", &["z".into()], 2)
        .await
        .unwrap();
    let st = user_state(store, site, model, 2, "u0").await.unwrap();
    assert_eq!(st.rejected, vec!["z", "y"]);
    assert_eq!(st.history, vec!["d", "c", "b"], "the history is untouched");
    let st = user_state(store, site, model, 0, "u0").await.unwrap();
    assert_eq!(st.rejected, vec!["z", "y"], "version independent");
    assert!(user_state(store, site, model, 2, "u1")
        .await
        .unwrap()
        .rejected
        .is_empty());

    // hourly interaction counts: increments add up per bucket, unknown buckets are empty
    const H: i64 = 1_763_600_400_000;
    store
        .add_item_counts(site, &[(H, "a".into(), 2), (H, "b".into(), 1)])
        .await
        .unwrap();
    store
        .add_item_counts(
            site,
            &[(H, "a".into(), 3), (H + super::HOUR_MS, "c".into(), 1)],
        )
        .await
        .unwrap();
    let c = store
        .item_counts(site, &[H, H + super::HOUR_MS, H - super::HOUR_MS])
        .await
        .unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!((c[0]["a"], c[0]["b"], c[0].len()), (5, 1, 2));
    assert_eq!((c[1]["c"], c[1].len()), (1, 1));
    assert!(c[2].is_empty());
}

/// Readers resolve the pointer and load that version while versions `1..=rounds` are
/// published (with deletions): every read sees exactly one complete version, and the versions
/// seen never go backwards.
pub async fn concurrent_publish_contract<S: ModelStore>(store: &S, model: &str, rounds: u64) {
    let site = unique_site();
    let site = site.as_str();
    let opts = PublishOptions {
        keep_versions: 2,
        ..PublishOptions::default()
    };
    let size = |v: u64| ITEM_CHUNK_ROWS + 50 * v as usize;
    let done = std::sync::atomic::AtomicBool::new(false);
    let publisher = async {
        for v in 1..=rounds {
            store
                .publish(site, model, v, &artifacts(v, size(v), 4), &opts)
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let reader = |id: usize| {
        let done = &done;
        async move {
            let (mut complete, mut gone, mut last) = (0u64, 0u64, 0u64);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                if let Some(v) = store.current_version(site, model).await.unwrap() {
                    assert!(
                        v >= last,
                        "reader {id}: version went back from {last} to {v}"
                    );
                    last = v;
                    match store.load_items(site, model, v).await.unwrap() {
                        None => gone += 1,
                        Some(items) => {
                            assert_eq!(items.version, v);
                            assert_eq!(items.item_ids.len(), size(v), "reader {id}: v{v} size");
                            let prefix = format!("v{v}-");
                            assert!(items.item_ids.iter().all(|i| i.starts_with(&prefix)));
                            let f = items.item_factors.unwrap();
                            assert_eq!(f.rows(), size(v));
                            assert!(
                                (0..f.rows()).all(|r| f.row(r)[1] == v as f32),
                                "reader {id}: factors of another version in v{v}"
                            );
                            assert_eq!(items.metadata["version"], v);
                            complete += 1;
                        }
                    }
                }
                if finished {
                    break;
                }
                tokio::task::yield_now().await;
            }
            (complete, gone, last)
        }
    };
    let ((), r1, r2, r3) = tokio::join!(publisher, reader(1), reader(2), reader(3));
    for (complete, _gone, last) in [r1, r2, r3] {
        assert!(complete > 0, "readers must have read something");
        assert_eq!(last, rounds, "the last read sees the last version");
    }
}
