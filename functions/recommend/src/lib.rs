//! The recommend Lambda: `GET /v1/recommend/{endpoint}`, `GET /v1/similar/{endpoint}` and `GET /v1/session/{endpoint}`
//! from the models in Redis; served recommendations are logged as JSON lines on stdout (a log
//! subscription delivers them to the event stream; [`served`] has the other routes).
//! `main.rs` wires it up; [`handler`] maps Lambda HTTP events to the recommend service.

pub mod flush;
pub mod handler;
pub mod served;
