//! The JSON answer of the recommendation routes, as types: the service builds its answer from
//! them and the OpenAPI document derives its schema from them, so the two cannot drift.

use serde::Serialize;

/// `200` answer of `GET /v1/recommend/{endpoint}`, `/v1/similar/{endpoint}` and
/// `/v1/session/{endpoint}`.
///
/// Fields (here and in [`ScoredItem`]) are in alphabetical order, and scores are written as
/// `f64`: the bytes are those of [`Self::to_json`]'s value (whose maps sort their keys), which
/// is what the service sent when it built the answer as a `Value`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecommendAnswer {
    /// The endpoint asked.
    pub endpoint: String,
    /// Whether a fallback list answered instead of the endpoint's model.
    pub fallback: bool,
    /// The items, best first.
    pub items: Vec<ScoredItem>,
    /// The model (task and version) whose list or ranking answered.
    pub model: ModelRef,
    /// Id of this answer (`r-` and 32 hex digits); clients send it back as the `id` of their
    /// `recommendation_displayed` and `recommendation_hit` events.
    pub recommendation_id: String,
    /// The experiment variant that answered (`default` without an experiment).
    pub variant: String,
}

/// A task's model version.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelRef {
    /// The training task.
    pub name: String,
    /// Its published version.
    pub version: u64,
}

/// One recommended item.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoredItem {
    /// With `explain=true`: the ids of the user's items that led to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub because: Option<Vec<String>>,
    /// Set when the item was placed by exploration rather than by its score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explore: Option<bool>,
    /// The item id.
    pub id: String,
    /// Its score (higher is better; comparable within one answer only); `null` for a pinned
    /// promotion (a non-finite score serialises as `null`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<f32>, required = true))]
    #[serde(serialize_with = "score_as_f64")]
    pub score: f32,
}

/// A score as the `f64` it widens to (what a `Value` holds), `null` when not finite.
fn score_as_f64<S: serde::Serializer>(score: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from(*score))
}

impl ScoredItem {
    /// An item with its score only.
    pub fn new(id: impl Into<String>, score: f32) -> Self {
        Self {
            id: id.into(),
            score,
            explore: None,
            because: None,
        }
    }
}

impl RecommendAnswer {
    /// An answer of `items` with score 1 each: what tests and `nectar bench report` log as
    /// served.
    pub fn of_ids<I: AsRef<str>>(
        recommendation_id: &str,
        endpoint: &str,
        variant: &str,
        model: (&str, u64),
        items: &[I],
        fallback: bool,
    ) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            fallback,
            items: items
                .iter()
                .map(|i| ScoredItem::new(i.as_ref(), 1.0))
                .collect(),
            model: ModelRef {
                name: model.0.to_string(),
                version: model.1,
            },
            recommendation_id: recommendation_id.to_string(),
            variant: variant.to_string(),
        }
    }

    /// The answer as a JSON value: how the service built it before it was typed, kept for
    /// the tests that check the typed bytes against it.
    #[cfg(test)]
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plain data serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_serialises_to_the_documented_keys() {
        // GIVEN an answer with one plain item and one explained, explored item
        let mut explained = ScoredItem::new("b", 0.5);
        explained.explore = Some(true);
        explained.because = Some(vec!["x".into()]);
        let a = RecommendAnswer {
            recommendation_id: "r-1".into(),
            endpoint: "home".into(),
            variant: "default".into(),
            model: ModelRef {
                name: "als".into(),
                version: 3,
            },
            items: vec![ScoredItem::new("a", 1.0), explained],
            fallback: false,
        };
        // WHEN serialised
        let v = a.to_json();
        // THEN the typed body is written byte for byte as the value
        assert_eq!(serde_json::to_string(&a).unwrap(), v.to_string());
        let mut pinned = a.clone();
        pinned.items[0].score = f32::NAN;
        pinned.items[1].score = 0.1;
        assert_eq!(
            serde_json::to_string(&pinned).unwrap(),
            pinned.to_json().to_string()
        );
        assert!(serde_json::to_string(&pinned)
            .unwrap()
            .contains(r#""id":"a","score":null"#));
        // AND the keys are the contract's, and the optional ones appear only when set
        assert_eq!(v["model"], serde_json::json!({"name": "als", "version": 3}));
        assert_eq!(v["items"][0], serde_json::json!({"id": "a", "score": 1.0}));
        assert_eq!(v["items"][1]["because"], serde_json::json!(["x"]));
        assert_eq!(v["items"][1]["explore"], true);
        assert_eq!(v["fallback"], false);
    }
}
