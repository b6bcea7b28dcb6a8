//! Where the served log goes (`NECTAR_SERVED_LOG`), and the one sink type the service is built
//! over whichever it is.
//!
//! - `log` (default): each answer's `recommendation_served` event is written as a JSON line to
//!   stdout before the answer is returned; a CloudWatch Logs subscription filter delivers the
//!   lines to the event stream. Nothing waits on the network and nothing stays queued.
//! - `extension`: the event is handed over a Unix socket to the served-log extension (a second
//!   binary in a layer, `extensions/served-log`), which batches across invocations and writes
//!   to Kinesis on a timer and on `SHUTDOWN`.
//! - `kinesis`: the earlier design: queued, then written with `PutRecords` by an internal
//!   extension after each invocation (billed, and the instance is held, until Kinesis answers).

use std::io::Stdout;

use nectar_model::event::Accepted;
use nectar_platform::collect::kinesis::{KinesisSink, SdkKinesis};
use nectar_platform::collect::local_socket::SocketSink;
use nectar_platform::collect::log_stream::LogStreamSink;
use nectar_platform::collect::sink::{EventSink, SinkError};
use nectar_platform::env::{EnvError, NECTAR_SERVED_LOG};

/// The value of `NECTAR_SERVED_LOG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedRoute {
    /// JSON lines on stdout, delivered by a log subscription.
    Log,
    /// The served-log extension's socket.
    Extension,
    /// Kinesis `PutRecords` after each invocation.
    Kinesis,
}

impl ServedRoute {
    /// Parses the variable's value; unset or empty is [`ServedRoute::Log`].
    pub fn parse(value: Option<&str>) -> Result<Self, EnvError> {
        match value.unwrap_or("") {
            "" | "log" => Ok(Self::Log),
            "extension" => Ok(Self::Extension),
            "kinesis" => Ok(Self::Kinesis),
            other => Err(EnvError::Invalid {
                name: NECTAR_SERVED_LOG,
                problem: format!("{other:?} is not one of log, extension, kinesis"),
            }),
        }
    }

    /// Whether the served log is written in the invocation, before the answer is returned
    /// (a local write of microseconds); else an internal extension writes it afterwards.
    pub fn written_inline(self) -> bool {
        !matches!(self, Self::Kinesis)
    }
}

/// The served log's sink, one variant per route.
#[derive(Debug)]
pub enum ServedSink {
    /// stdout.
    Log(LogStreamSink<Stdout>),
    /// The extension's socket.
    Extension(SocketSink),
    /// The event stream.
    Kinesis(KinesisSink<SdkKinesis>),
}

impl EventSink for ServedSink {
    async fn put(&self, batch: &Accepted) -> Result<(), SinkError> {
        match self {
            Self::Log(s) => s.put(batch).await,
            Self::Extension(s) => s.put(batch).await,
            Self::Kinesis(s) => s.put(batch).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_log_is_the_default() {
        // GIVEN each documented value, unset, and a typo
        assert_eq!(ServedRoute::parse(None).unwrap(), ServedRoute::Log);
        assert_eq!(ServedRoute::parse(Some("")).unwrap(), ServedRoute::Log);
        assert_eq!(ServedRoute::parse(Some("log")).unwrap(), ServedRoute::Log);
        assert_eq!(
            ServedRoute::parse(Some("extension")).unwrap(),
            ServedRoute::Extension
        );
        assert_eq!(
            ServedRoute::parse(Some("kinesis")).unwrap(),
            ServedRoute::Kinesis
        );
        // THEN the typo fails naming the variable
        let e = ServedRoute::parse(Some("stdout")).unwrap_err().to_string();
        assert!(e.contains("NECTAR_SERVED_LOG"), "{e}");
        // AND only the Kinesis route writes after the answer
        assert!(ServedRoute::Log.written_inline());
        assert!(ServedRoute::Extension.written_inline());
        assert!(!ServedRoute::Kinesis.written_inline());
    }
}
