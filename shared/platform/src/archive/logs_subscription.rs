//! Stream records written by a CloudWatch Logs subscription filter (the recommend function's
//! served log, `infra/template.yaml` `RecommendServedSubscription`), unpacked into the flat
//! event lines the archive reads.
//!
//! CloudWatch Logs puts each delivery to Kinesis as one gzip'd JSON document:
//! `{"messageType": "DATA_MESSAGE", "owner", "logGroup", "logStream", "subscriptionFilters",
//! "logEvents": [{"id", "timestamp", "message"}]}`, where each `message` is one log line (here a
//! served flat event), or `"messageType": "CONTROL_MESSAGE"` when it checks that the
//! destination is reachable (nothing to archive). Records the collect function writes are plain
//! NDJSON and never start with gzip's magic bytes, so both kinds share the stream.

use std::io::Read;

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use serde::Deserialize;

/// gzip's first two bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Largest unpacked delivery accepted (a Kinesis record is at most 1 MiB gzip'd; log text
/// compresses about 10:1); a bigger one is left packed, so the archive parks it.
const MAX_UNPACKED: u64 = 64 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    message_type: String,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

#[derive(Deserialize)]
struct LogEvent {
    message: String,
}

/// The record's flat event lines: a subscription delivery becomes its messages joined by
/// newlines (a control message becomes nothing); any other record is returned as it is. A
/// gzip'd record that is not a readable delivery is returned as it is too, so the archive parks
/// it with the reason (it is not UTF-8).
pub fn unpack(data: Bytes) -> Bytes {
    if !data.starts_with(&GZIP_MAGIC) {
        return data;
    }
    let mut text = Vec::new();
    let read = MultiGzDecoder::new(&data[..])
        .take(MAX_UNPACKED + 1)
        .read_to_end(&mut text);
    if read.is_err() || text.len() as u64 > MAX_UNPACKED {
        return data;
    }
    let Ok(delivery) = serde_json::from_slice::<Delivery>(&text) else {
        return data;
    };
    if delivery.message_type != "DATA_MESSAGE" {
        return Bytes::new();
    }
    let mut out = String::with_capacity(text.len());
    for e in delivery.log_events {
        out.push_str(e.message.trim_end());
        out.push('\n');
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gzip(text: &str) -> Bytes {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[test]
    fn a_delivery_becomes_its_messages() {
        // GIVEN a gzip'd DATA_MESSAGE with two log events
        let doc = serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": "/nectar/s/recommend", "logStream": "2026/01/01/[$LATEST]x",
            "subscriptionFilters": ["served"],
            "logEvents": [
                {"id": "1", "timestamp": 1, "message": "{\"event_id\":\"a\"}\n"},
                {"id": "2", "timestamp": 2, "message": "{\"event_id\":\"b\"}"}
            ]
        });
        // WHEN unpacked THEN the messages come out one per line, trailing newlines trimmed
        let out = unpack(gzip(&doc.to_string()));
        assert_eq!(&out[..], b"{\"event_id\":\"a\"}\n{\"event_id\":\"b\"}\n");
    }

    #[test]
    fn a_control_message_is_nothing_and_plain_records_pass() {
        // GIVEN a control message, and a plain NDJSON record of the collect function
        let control = r#"{"messageType":"CONTROL_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}"#;
        let plain = Bytes::from_static(b"{\"event_id\":\"a\"}\n");
        // THEN the first has no lines and the second is untouched
        assert!(unpack(gzip(control)).is_empty());
        assert_eq!(unpack(plain.clone()), plain);
    }

    #[test]
    fn unreadable_gzip_is_left_packed() {
        // GIVEN gzip'd text that is not a delivery, and a truncated gzip stream
        let not_json = gzip("hello");
        let truncated = Bytes::copy_from_slice(&gzip(&"x".repeat(1000))[..12]);
        // THEN both come back unchanged (the archive parks them)
        assert_eq!(unpack(not_json.clone()), not_json);
        assert_eq!(unpack(truncated.clone()), truncated);
    }
}
