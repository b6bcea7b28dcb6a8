//! The recommend Lambda: `GET /v1/recommend/{endpoint}`, `GET /v1/similar/{endpoint}` and `GET /v1/session/{endpoint}`
//! from the models in Redis; served recommendations go to the event stream through the
//! served-log extension by default ([`served`] has the routes). The privacy routes
//! (`DELETE /v1/users/{user_id}`, `DELETE /v1/clients/{client_id}`,
//! `GET /v1/users/{user_id}/export`) record erasures in DynamoDB and read served answers from S3.
//! `main.rs` wires it up; [`handler`] maps Lambda HTTP events to the recommend service.

pub mod flush;
pub mod handler;
pub mod served;
