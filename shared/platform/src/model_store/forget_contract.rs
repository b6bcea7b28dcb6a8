//! The erasure contract every [`ModelStore`] adapter passes (local unit test and
//! `tests/tests/model_store_redis.rs`). Panics on a violation.

use super::contract::artifacts;
use super::{user_state, ModelStore, PublishOptions};

/// GIVEN a user with history, factors and top lists in two kept versions of two tasks, WHEN
/// the user is forgotten THEN nothing of theirs is served in any version, the report counts
/// what went, other users are untouched, and forgetting again removes nothing.
pub async fn forget_contract<S: ModelStore>(store: &S) {
    let site = format!("t{:016x}", rand::random::<u64>());
    let site = site.as_str();
    let opts = PublishOptions {
        keep_versions: 2,
        ..PublishOptions::default()
    };
    for model in ["als", "item-knn"] {
        for v in [1, 2] {
            store
                .publish(site, model, v, &artifacts(v, 5, 3), &opts)
                .await
                .unwrap();
        }
    }
    let items = ["a".to_string(), "b".to_string()];
    store.append_history(site, "u1", &items, 10).await.unwrap();
    store.append_history(site, "u2", &items, 10).await.unwrap();

    let report = store.forget_user(site, "u1").await.unwrap();

    assert_eq!(report.history_items, 2);
    assert_eq!(report.factors, 4, "{report:?}");
    assert_eq!(report.top_lists, 4, "{report:?}");
    assert_eq!(
        report.versions,
        vec!["als:v1", "als:v2", "item-knn:v1", "item-knn:v2"]
    );
    for model in ["als", "item-knn"] {
        for v in [1, 2] {
            let gone = user_state(store, site, model, v, "u1").await.unwrap();
            assert_eq!(gone.factors, None, "{model} v{v}");
            assert_eq!(gone.top, None, "{model} v{v}");
            assert!(gone.history.is_empty());
            let kept = user_state(store, site, model, v, "u2").await.unwrap();
            // u2 is row 2 of the contract artifacts: its factors are 6..9 + version.
            let want: Vec<f32> = (6..9).map(|x| (x + v) as f32).collect();
            assert_eq!(kept.factors, Some(want), "{model} v{v}");
            assert_eq!(kept.top, Some(vec![(2, 1.0)]));
            assert_eq!(kept.history, vec!["b", "a"]);
        }
    }
    let again = store.forget_user(site, "u1").await.unwrap();
    assert_eq!(again, super::ForgetReport::default());
}
