//! The privacy routes through the Lambda handler: `events/users-erase.json`,
//! `events/clients-erase.json` and `events/users-export.json` on the local backends.

use super::tests::{local_privacy, service};
use super::*;
use nectar_platform::auth::AdminKeys;
use nectar_platform::privacy::{ErasureLog, Subject};
use serde_json::Value;

const ERASE: &str = include_str!("../../../events/users-erase.json");
const ERASE_CLIENT: &str = include_str!("../../../events/clients-erase.json");
const EXPORT: &str = include_str!("../../../events/users-export.json");
/// The fixtures' bearer key, registered for site `demo` below.
const FIXTURE_KEY: &str = "nk_demo_0123456789abcdef0123456789abcdef";

/// A fixture with its authorization header replaced (`None`: removed) and, when given, its
/// raw path.
fn event(fixture: &str, auth: Option<&str>, raw_path: Option<&str>) -> Request {
    let mut ev: Value = serde_json::from_str(fixture).unwrap();
    let headers = ev["headers"].as_object_mut().unwrap();
    match auth {
        Some(a) => headers.insert("authorization".into(), a.into()),
        None => headers.remove("authorization"),
    };
    if let Some(p) = raw_path {
        ev["rawPath"] = p.into();
        ev["requestContext"]["http"]["path"] = p.into();
    }
    lambda_http::request::from_str(&ev.to_string()).unwrap()
}

#[tokio::test]
async fn privacy_routes_check_the_site_admin_key_then_erase_and_export() {
    let dir = std::env::temp_dir().join(format!("nectar-reco-priv-{}", rand_suffix()));
    let mut keys = AdminKeys::none();
    keys.add(FIXTURE_KEY, "demo");
    keys.add("nk_other_key", "other");
    let svc = service(&dir, keys);
    let privacy = local_privacy(&dir);
    // GIVEN u-1042 has a history
    svc.models()
        .append_history("demo", "u-1042", &["m-1".into(), "m-2".into()], 10)
        .await
        .unwrap();
    let call = |req: Request| {
        let (svc, privacy) = (&svc, &privacy);
        async move {
            let resp = handle(svc, None, privacy, req).await.unwrap();
            let body: Value = match resp.body() {
                Body::Text(t) => serde_json::from_str(t).unwrap(),
                _ => panic!("text body expected"),
            };
            (resp.status().as_u16(), body)
        }
    };

    // WHEN the routes are called without a key THEN 401
    for fixture in [ERASE, ERASE_CLIENT, EXPORT] {
        let (status, body) = call(event(fixture, None, None)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &"unauthorized".into())
        );
    }
    // WHEN with another site's key THEN 403, and nothing is erased or recorded
    let (status, body) = call(event(ERASE, Some("Bearer nk_other_key"), None)).await;
    assert_eq!((status, &body["error"]["code"]), (403, &"forbidden".into()));
    assert!(privacy.log.erasures("demo").await.unwrap().is_empty());

    // WHEN the export sample comes with the site's key THEN 200 with the history, no erasure
    let (status, body) = call(event(EXPORT, Some(&format!("Bearer {FIXTURE_KEY}")), None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "u-1042");
    assert_eq!(body["history"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(body["erasure"]["state"], "none");

    // WHEN the erasure samples come THEN 202, the history went and both requests are recorded
    let (status, body) = call(event(ERASE, Some(&format!("Bearer {FIXTURE_KEY}")), None)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["erased"]["history_items"], 2, "{body}");
    assert!(body["pending"]
        .as_array()
        .unwrap()
        .contains(&"training".into()));
    let (status, _) = call(event(
        ERASE_CLIENT,
        Some(&format!("Bearer {FIXTURE_KEY}")),
        None,
    ))
    .await;
    assert_eq!(status, 202);
    let all = privacy.log.erasures("demo").await.unwrap();
    let subjects: Vec<&str> = all.iter().map(|e| e.subject.as_str()).collect();
    assert!(subjects.contains(&Subject::User("u-1042".into()).key().as_str()));
    assert!(subjects.contains(&"client:c-77f3"), "{subjects:?}");

    // AND the export now shows the pending erasure and no history
    let (status, body) = call(event(EXPORT, Some(&format!("Bearer {FIXTURE_KEY}")), None)).await;
    assert_eq!(status, 200);
    assert_eq!(body["erasure"]["state"], "requested");
    assert!(body["erasure"]["requested_ms"].is_i64());
    assert_eq!(body["history"], serde_json::json!([]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_bad_id_is_a_structured_400_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("nectar-reco-priv-bad-{}", rand_suffix()));
    let mut keys = AdminKeys::none();
    keys.add(FIXTURE_KEY, "demo");
    let svc = service(&dir, keys);
    let privacy = local_privacy(&dir);
    let auth = format!("Bearer {FIXTURE_KEY}");
    // GIVEN ids with a control character, or longer than 512 bytes
    let long = format!("/v1/clients/{}", "x".repeat(513));
    for (fixture, path, field) in [
        (ERASE, "/v1/users/u%01x", "user_id"),
        (EXPORT, "/v1/users/u%0Ax/export", "user_id"),
        (ERASE_CLIENT, long.as_str(), "client_id"),
    ] {
        // WHEN erased or exported with the right key
        let resp = handle(
            &svc,
            None,
            &privacy,
            event(fixture, Some(&auth), Some(path)),
        )
        .await
        .unwrap();
        let body: Value = match resp.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => panic!("text body expected"),
        };
        // THEN 400 invalid_request naming the path parameter, and nothing recorded
        assert_eq!(resp.status().as_u16(), 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["details"][0]["path"], field, "{body}");
    }
    assert!(privacy.log.erasures("demo").await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

fn rand_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
