//! The `nectar` command as a black box (the built binary), one test binary: each module below
//! was its own binary, each linking the platform crate (about 150 MB in debug). Run one
//! module with `cargo test -p nectar-cli --test cli <module>`.

mod common;

mod compact;
mod demo_diversity;
mod dev_bandit;
mod dev_http;
mod dev_metrics;
mod dev_privacy;
mod newcomer;
mod openapi;
mod report;
