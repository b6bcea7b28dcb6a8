//! Small JSON answers as types, so the OpenAPI document derives their schemas from what the
//! services actually send.

use serde::Serialize;

/// `202` (or the site's `collect_status`) answer of `POST /v1/collect`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CollectAnswer {
    /// Events accepted from the payload.
    pub accepted: usize,
}

/// `200` answer of `PUT /v1/items`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpsertAnswer {
    /// Items inserted or updated.
    pub upserted: usize,
}

/// Serialises an answer type (plain data: cannot fail).
pub fn to_json<T: Serialize>(answer: &T) -> serde_json::Value {
    serde_json::to_value(answer).expect("plain data serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_serialise_to_their_documented_keys() {
        assert_eq!(
            to_json(&CollectAnswer { accepted: 2 }),
            serde_json::json!({"accepted": 2})
        );
        assert_eq!(
            to_json(&UpsertAnswer { upserted: 3 }),
            serde_json::json!({"upserted": 3})
        );
    }
}
