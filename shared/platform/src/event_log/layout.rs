//! The event log layout, shared by S3 and the local data dir:
//! `events/site=<site>/date=YYYY-MM-DD/hour=HH/<writer-id>-<first-seq>.jsonl.gz`, partitioned by
//! event time in UTC (Hive style, readable by Athena, Spark and DuckDB).

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Top-level prefix of the event log.
pub const EVENTS_PREFIX: &str = "events/";
/// Top-level prefix of the compacted event log (Parquet, one folder per site and day).
pub const COMPACTED_PREFIX: &str = "compacted/";
/// Top-level prefix of records that could not be archived.
pub const PARKED_PREFIX: &str = "parked/";

/// UTC date and hour of a timestamp in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour {
    /// Four digits in keys.
    pub year: i32,
    /// Month 1–12.
    pub month: u32,
    /// Day 1–31.
    pub day: u32,
    /// Hour 0–23.
    pub hour: u32,
}

impl Hour {
    /// The UTC hour containing `ts_ms`.
    pub fn of(ts_ms: i64) -> Self {
        let dt: DateTime<Utc> = DateTime::from_timestamp_millis(ts_ms).unwrap_or_default();
        Self {
            year: dt.year(),
            month: dt.month(),
            day: dt.day(),
            hour: dt.hour(),
        }
    }

    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// `events/site=<site>/date=YYYY-MM-DD/hour=HH/`.
pub fn partition_prefix(site_key: &str, hour: Hour) -> String {
    format!(
        "{EVENTS_PREFIX}site={site_key}/date={}/hour={:02}/",
        hour.date(),
        hour.hour
    )
}

/// The object key of one event-log file.
pub fn event_object_key(site_key: &str, hour: Hour, writer_id: &str, first_seq: &str) -> String {
    format!(
        "{}{writer_id}-{first_seq}.jsonl.gz",
        partition_prefix(site_key, hour)
    )
}

/// `events/site=<site>/date=YYYY-MM-DD/`: the prefix of one day, for readers listing a window.
pub fn day_prefix(site_key: &str, date: &str) -> String {
    format!("{EVENTS_PREFIX}site={site_key}/date={date}/")
}

/// `compacted/site=<site>/date=YYYY-MM-DD/`: the compacted day's folder.
pub fn compacted_day_prefix(site_key: &str, date: &str) -> String {
    format!("{COMPACTED_PREFIX}site={site_key}/date={date}/")
}

/// The compacted day's manifest, written last: the day counts as compacted once it exists.
pub fn manifest_key(site_key: &str, date: &str) -> String {
    format!("{}_manifest.json", compacted_day_prefix(site_key, date))
}

/// The `n`th Parquet part of a compacted day: `part-NNNNN.parquet`.
pub fn part_key(site_key: &str, date: &str, n: usize) -> String {
    format!(
        "{}part-{n:05}.parquet",
        compacted_day_prefix(site_key, date)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_hive_layout_in_utc() {
        // 2026-11-21T23:59:59.999Z and one ms later
        let h = Hour::of(1_795_305_599_999);
        assert_eq!(h.date(), "2026-11-21");
        assert_eq!(h.hour, 23);
        assert_eq!(Hour::of(1_795_305_600_000).date(), "2026-11-22");
        assert_eq!(
            event_object_key(
                "demo",
                Hour::of(1_795_305_600_000),
                "shardId-000000000001",
                "4955"
            ),
            "events/site=demo/date=2026-11-22/hour=00/shardId-000000000001-4955.jsonl.gz"
        );
        assert_eq!(
            part_key("demo", "2026-11-22", 3),
            "compacted/site=demo/date=2026-11-22/part-00003.parquet"
        );
        assert_eq!(
            manifest_key("demo", "2026-11-22"),
            "compacted/site=demo/date=2026-11-22/_manifest.json"
        );
    }
}
