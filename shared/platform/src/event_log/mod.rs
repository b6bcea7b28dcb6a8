//! The event log: gzip JSON Lines files partitioned by site and event hour ([`layout`],
//! [`jsonl`]), written by one writer ([`writer`]) for every producer — the archive function,
//! the S3 store sink of `nectar dev --bucket` ([`store_sink`]), the embedded local log
//! ([`local`]) and `nectar import` — and read by training and the online report ([`reader`]).
//! Finished days are compacted into Parquet (`compact`, `parquet`; feature `parquet`), which
//! training reads for the days that have it.

#[cfg(feature = "parquet")]
pub mod compact;
#[cfg(feature = "parquet")]
pub mod compact_erase;
pub mod jsonl;
pub mod layout;
pub mod local;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod reader;
pub mod store_sink;
#[cfg(feature = "parquet")]
pub mod table;
pub mod writer;
