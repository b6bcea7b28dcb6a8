//! The serving banner of `nectar dev` (and so of `nectar demo`, which ends by serving): the
//! address actually bound and paste-ready `curl` lines whose ids come from the data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use nectar_model::mapping::{map_event_line, EventWeights, Interaction};
use nectar_platform::config::{EndpointKind, NectarConfig};
use nectar_platform::event_log::jsonl::gunzip_text;
use nectar_platform::event_log::layout::EVENTS_PREFIX;
use nectar_platform::object_store::ObjectStore;

/// The newest files looked at for an interaction (the newest hour may hold only served
/// events).
const FILES_TRIED: usize = 4;

/// What the collect line sends, and so the ids to ask about when the log is empty.
const EXAMPLE_CLIENT: &str = "cookie-1";
const EXAMPLE_ITEM: &str = "urn:video:1";

/// The newest interaction of `site` in the event log: its user has a recent history and its
/// item is in the data, so the banner's requests get real answers. `None` when the log has
/// none (or cannot be read: the banner is best effort).
pub async fn newest_interaction<O: ObjectStore>(
    events: &O,
    site: &str,
    weights: &EventWeights,
) -> Option<Interaction> {
    let mut keys = events
        .list(&format!("{EVENTS_PREFIX}site={site}/"))
        .await
        .ok()?;
    // Keys sort by date and hour (zero-padded), so the last ones are the newest partitions.
    keys.sort_unstable_by(|a, b| b.cmp(a));
    for key in keys.iter().take(FILES_TRIED) {
        let Ok(Some(body)) = events.get(key).await else {
            continue;
        };
        let text = gunzip_text(&body).text;
        if let Some(i) = text
            .lines()
            .rev()
            .find_map(|l| map_event_line(l, weights).ok())
        {
            return Some(i);
        }
    }
    None
}

/// The newest interaction of every site of `config` (see [`newest_interaction`]).
pub async fn samples<O: ObjectStore>(
    events: &O,
    config: &NectarConfig,
) -> BTreeMap<String, Interaction> {
    let mut out = BTreeMap::new();
    for (site, sc) in &config.sites {
        if let Some(i) = newest_interaction(events, site, &sc.weights()).await {
            out.insert(site.clone(), i);
        }
    }
    out
}

fn query_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The request lines of the banner: send an event, ask every endpoint of every site about a
/// real user or item (from `samples`, else the ids the collect line sends), upsert items.
pub fn request_lines(
    addr: SocketAddr,
    config: &NectarConfig,
    samples: &BTreeMap<String, Interaction>,
    data_dir: &Path,
) -> Vec<String> {
    let base = format!("http://{addr}");
    let first = config.sites.keys().next().cloned().unwrap_or_default();
    let mut out = vec![
        "  send an event:".to_string(),
        format!(
            "    curl -i -X POST '{base}/v1/collect?s={first}' -H 'content-type: application/json' \
             -d '{{\"peach_schema_version\":\"1.0.3\",\"sent_timestamp\":'$(date +%s%3N)',\
             \"client\":{{\"id\":\"{EXAMPLE_CLIENT}\",\"app_id\":\"ch.example.web\"}},\
             \"events\":[{{\"type\":\"media_play\",\"id\":\"{EXAMPLE_ITEM}\",\
             \"event_timestamp\":'$(date +%s%3N)'}}]}}'"
        ),
    ];
    for (site, sc) in &config.sites {
        if sc.endpoints.is_empty() {
            continue;
        }
        let (user, item) = match samples.get(site) {
            Some(i) => {
                out.push(format!(
                    "  ask site {site} (user {} and item {} are from its newest interaction):",
                    i.user, i.item
                ));
                (i.user.as_str(), i.item.as_str())
            }
            None => {
                out.push(format!(
                    "  ask site {site} (no events yet: the ids are those the line above sends):"
                ));
                (EXAMPLE_CLIENT, EXAMPLE_ITEM)
            }
        };
        for (name, ep) in &sc.endpoints {
            let url = match ep.kind {
                EndpointKind::User => format!(
                    "{base}/v1/recommend/{name}?s={site}&user_id={}&n=10",
                    query_value(user)
                ),
                EndpointKind::Similar => format!(
                    "{base}/v1/similar/{name}?s={site}&item_id={}&n=10",
                    query_value(item)
                ),
                EndpointKind::Session => format!(
                    "{base}/v1/session/{name}?s={site}&items={}&n=10",
                    query_value(item)
                ),
            };
            let auth = if ep.require_key {
                " -H \"authorization: Bearer $KEY\""
            } else {
                ""
            };
            out.push(format!("    curl{auth} '{url}'"));
        }
    }
    out.push(format!(
        "  upsert catalogue items (KEY=$(nectar key create --site {first} --data-dir {}), then \
         restart):",
        data_dir.display()
    ));
    out.push(format!(
        "    curl -i -X PUT '{base}/v1/items?s={first}' -H \"authorization: Bearer $KEY\" \
         -H 'content-type: application/json' -d '{{\"items\":[{{\"id\":\"{EXAMPLE_ITEM}\",\
         \"category\":\"news\",\"title\":\"Evening news\"}}]}}'"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nectar_platform::event_log::jsonl::gzip_lines;
    use nectar_platform::object_store::LocalStore;

    fn line(event_type: &str, user: &str, item: &str, ts: i64) -> String {
        serde_json::json!({
            "event_id": format!("{user}-{item}-{ts}"), "site_key": "demo", "type": event_type,
            "id": item, "event_timestamp": ts, "collect_timestamp": ts, "user_id": user,
            "client": {"id": "c", "app_id": "a"},
        })
        .to_string()
    }

    #[tokio::test]
    async fn banner_asks_about_the_newest_interaction() {
        // GIVEN an event log whose newest hour ends with a served event (not an interaction)
        let dir = std::env::temp_dir().join(format!("nectar-banner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LocalStore::new(&dir);
        let old = gzip_lines([line("media_play", "u-old", "i-old", 1).as_str()]);
        let newer = gzip_lines([
            line("media_play", "u 1&x", "news/007", 2).as_str(),
            line("recommendation_served", "visitor", "r-1", 3).as_str(),
        ]);
        store
            .put(
                "events/site=demo/date=2026-01-01/hour=00/w-1.jsonl.gz",
                Bytes::from(old),
            )
            .await
            .unwrap();
        store
            .put(
                "events/site=demo/date=2026-01-02/hour=05/w-2.jsonl.gz",
                Bytes::from(newer),
            )
            .await
            .unwrap();
        let config = NectarConfig::embedded_default();
        // WHEN the samples and the banner lines are built
        let samples = samples(&store, &config).await;
        let addr: SocketAddr = "127.0.0.1:43210".parse().unwrap();
        let lines = request_lines(addr, &config, &samples, Path::new("/d"));
        let text = lines.join("\n");
        // THEN the user and item are the newest interaction's, URL-encoded, on the bound port
        assert!(
            text.contains(
                "curl 'http://127.0.0.1:43210/v1/recommend/for-you?s=demo&user_id=u+1%26x&n=10'"
            ),
            "{text}"
        );
        assert!(
            text.contains("/v1/similar/more-like-this?s=demo&item_id=news%2F007&n=10'"),
            "{text}"
        );
        assert!(!text.contains("USER") && !text.contains("ITEM"), "{text}");
        // AND with no events the ids are those the collect line sends
        let empty = request_lines(addr, &config, &BTreeMap::new(), Path::new("/d")).join("\n");
        assert!(empty.contains("user_id=cookie-1&"), "{empty}");
        assert!(empty.contains("\"client\":{\"id\":\"cookie-1\""), "{empty}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
