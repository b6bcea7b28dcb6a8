//! Negative feedback in real time: the items a user disliked (`media_dislike`) or dismissed
//! (`recommendation_dismissed`, the item in `context.item_id`) go to their *rejected* list in the
//! model store ([`ModelStore::append_rejected`], beside the history, same TTL), and serving
//! never recommends them to that user again. They are kept out of the history (which is "what
//! the user consumed" and the fold-in input) and out of the trending counts.

use nectar_model::mapping::Interaction;

use crate::model_store::{ModelStore, ModelStoreError};

/// Items kept per user on the rejected list.
pub const REJECTED_LEN: usize = 100;

/// Interactions with their site.
type SiteInteractions = Vec<(String, Interaction)>;

/// Splits mapped interactions into (positive, negative feedback) by the sign of the weight.
pub(super) fn split_negative(all: SiteInteractions) -> (SiteInteractions, SiteInteractions) {
    all.into_iter().partition(|(_, i)| i.weight > 0.0)
}

/// Appends the users' negative-feedback items to their rejected lists; returns the number of
/// users updated.
pub(super) async fn record_rejected<M: ModelStore>(
    models: &M,
    negative: &[(String, Interaction)],
) -> Result<usize, ModelStoreError> {
    let updates = super::histories_of(negative);
    for ((site, user), items) in &updates {
        models
            .append_rejected(site, user, items, REJECTED_LEN)
            .await?;
    }
    Ok(updates.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NectarConfig;
    use crate::model_store::{user_state, LocalModelStore};

    fn line(t: &str, id: &str, user: &str, ts: i64, extra: &str) -> String {
        format!(
            r#"{{"event_id":"{}","site_key":"demo","type":"{t}","id":"{id}","event_timestamp":{ts},"collect_timestamp":{ts},"sent_timestamp":{ts},"peach_schema_version":"1.0.3","user_id":"{user}","client":{{"id":"dev-1"}}{extra}}}"#,
            nectar_model::event::event_id("demo", "dev-1", t, id, ts)
        )
    }

    #[tokio::test]
    async fn dislikes_and_dismissals_go_to_the_rejected_list_not_the_history() {
        // GIVEN a play, a dislike and a dismissal (item in context.item_id) by one user
        let dir = std::env::temp_dir().join(format!("nectar-fb-{:016x}", rand::random::<u64>()));
        let store = LocalModelStore::new(&dir);
        let cfg = NectarConfig::from_toml("[sites.demo]\n", "t.toml").unwrap();
        let now = 1_763_600_400_000;
        let lines = [
            line("media_play", "m1", "u1", now, ""),
            line("media_dislike", "m2", "u1", now + 1, ""),
            line(
                "recommendation_dismissed",
                "r-1",
                "u1",
                now + 2,
                r#","context":{"item_id":"m3"}"#,
            ),
        ];
        // WHEN the activity path records them
        crate::activity::record_history(&store, &cfg, lines.iter().map(String::as_str))
            .await
            .unwrap();
        // THEN the history has the play only and the rejected list the other two, newest first
        let st = user_state(&store, "demo", "any", 0, "u1").await.unwrap();
        assert_eq!(st.history, vec!["m1"]);
        assert_eq!(st.rejected, vec!["m3", "m2"]);
        // AND the trending counts ignore the negative events
        let hour = now.div_euclid(crate::model_store::HOUR_MS) * crate::model_store::HOUR_MS;
        let counts = store.item_counts("demo", &[hour]).await.unwrap();
        assert_eq!(counts[0].keys().collect::<Vec<_>>(), vec!["m1"]);
    }
}
