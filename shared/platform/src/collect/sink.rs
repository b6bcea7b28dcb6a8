//! The event sink port: where the collect service puts accepted events.

use std::future::Future;

use nectar_model::event::Accepted;

/// Why a batch of events could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Some records were still unacknowledged when the deadline passed.
    #[error("{failed} of {total} records were not acknowledged before the deadline")]
    Incomplete {
        /// Records not acknowledged.
        failed: usize,
        /// Records sent.
        total: usize,
        /// The last error seen, if any.
        #[source]
        last: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The backend refused the request in a way retrying will not fix (missing stream, access).
    #[error("the event stream refused the request")]
    Fatal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A local write failed.
    #[error("writing the event log failed")]
    Io(#[from] std::io::Error),
    /// An object store write failed.
    #[error("writing the event log object failed")]
    Store(#[from] crate::object_store::StoreError),
}

/// Stores accepted events durably. `Ok` means every event is acknowledged by the backend.
pub trait EventSink: Send + Sync {
    /// Stores the batch; returns only when all of it is durable, or with an error.
    fn put(&self, batch: &Accepted) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl<T: EventSink> EventSink for std::sync::Arc<T> {
    fn put(&self, batch: &Accepted) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).put(batch)
    }
}
