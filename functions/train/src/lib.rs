//! The train Lambda: an EventBridge schedule whose input names a task from the config
//! (`{"task": "als", "site": "demo"}`) runs it: read the S3 window, fit, evaluate, gate,
//! publish to Redis, record in DynamoDB. `main.rs` wires it up; [`handler`] maps the event.

pub mod handler;
