//! Observability (issue 12): the metric names every function emits ([`names`]), the Lambda
//! functions' CloudWatch EMF recorder ([`emf`]) and the sampled request log ([`request_log`]).
//! `nectar dev` serves the same metrics as Prometheus text (`GET /metrics`).

pub mod emf;
pub mod names;
pub mod request_log;
