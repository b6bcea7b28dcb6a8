//! The S3 store sink: collect's event sink writing straight into an object store's event log
//! (`nectar dev --bucket` without a stream).

use bytes::Bytes;

use super::writer::{counter_seq, put_objects, Partitions};
use crate::object_store::ObjectStore;

/// An event sink that writes each accepted batch straight into the event log of an object
/// store (`nectar dev --bucket` without a stream): one object per touched partition.
#[derive(Debug)]
pub struct StoreSink<O> {
    store: O,
    writer_id: String,
    next_seq: std::sync::atomic::AtomicU64,
}

impl<O: ObjectStore> StoreSink<O> {
    /// A sink writing objects named `<writer_id>-<seq>.jsonl.gz`.
    pub fn new(store: O, writer_id: impl Into<String>) -> Self {
        Self {
            store,
            writer_id: writer_id.into(),
            next_seq: Default::default(),
        }
    }
}

impl<O: ObjectStore> crate::collect::sink::EventSink for StoreSink<O> {
    async fn put(
        &self,
        batch: &nectar_model::event::Accepted,
    ) -> Result<(), crate::collect::sink::SinkError> {
        let first = counter_seq(self.next_seq.fetch_add(
            batch.events.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        ));
        let mut parts = Partitions::new();
        for e in &batch.events {
            parts.push(&batch.site_key, e.event_timestamp, &e.line, ());
        }
        let objects: Vec<(String, Bytes)> = parts
            .iter()
            .map(|p| (p.key(&self.writer_id, &first), Bytes::from(p.member())))
            .collect();
        for result in put_objects(&self.store, objects).await {
            result?;
        }
        Ok(())
    }
}
