//! Where the served log goes (`NECTAR_SERVED_LOG`), and the one sink type the service is built
//! over whichever it is.
//!
//! - `extension` (default): the event is handed over a Unix socket to the served-log extension
//!   (a second binary in a layer, `functions/served-log-extension`) before the answer is returned; the
//!   extension batches across invocations and writes to Kinesis on a timer and on `SHUTDOWN`.
//!   The cheapest (README, "The served log on Lambda"), and no personal data in CloudWatch Logs.
//! - `log`: each answer's `recommendation_served` event is written as a JSON line to stdout
//!   before the answer is returned; a CloudWatch Logs subscription filter delivers the lines to
//!   the event stream. Nothing stays queued, but every served line is billed as log ingestion
//!   and the log group then holds user ids for its retention.
//! - `kinesis`: the earlier design: queued, then written with `PutRecords` by an internal
//!   extension after each invocation (billed, and the instance is held, until Kinesis answers).

use std::io::Stdout;
use std::path::Path;

use nectar_model::event::Accepted;
use nectar_platform::collect::kinesis::{KinesisSink, SdkKinesis};
use nectar_platform::collect::local_socket::SocketSink;
use nectar_platform::collect::log_stream::LogStreamSink;
use nectar_platform::collect::sink::{EventSink, SinkError};
use nectar_platform::env::{EnvError, NECTAR_SERVED_LOG};

/// The value of `NECTAR_SERVED_LOG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedRoute {
    /// The served-log extension's socket.
    Extension,
    /// JSON lines on stdout, delivered by a log subscription.
    Log,
    /// Kinesis `PutRecords` after each invocation.
    Kinesis,
}

impl ServedRoute {
    /// Parses the variable's value; unset or empty is [`ServedRoute::Extension`].
    pub fn parse(value: Option<&str>) -> Result<Self, EnvError> {
        match value.unwrap_or("") {
            "" | "extension" => Ok(Self::Extension),
            "log" => Ok(Self::Log),
            "kinesis" => Ok(Self::Kinesis),
            other => Err(EnvError::Invalid {
                name: NECTAR_SERVED_LOG,
                problem: format!("{other:?} is not one of log, extension, kinesis"),
            }),
        }
    }

    /// The extension's socket must exist at the function's init: Lambda starts external
    /// extensions, and waits for them to register, before the runtime, and the extension binds
    /// the socket before it registers. A missing socket means the layer is not attached: fail
    /// the cold start rather than queue every answer for a receiver that never comes.
    pub fn check_socket(path: &Path) -> Result<(), EnvError> {
        if path.exists() {
            Ok(())
        } else {
            Err(EnvError::Invalid {
                name: NECTAR_SERVED_LOG,
                problem: format!(
                    "\"extension\", but no served-log extension listens at {} (attach the \
                     ServedLogLayer, or set NECTAR_SERVED_LOG_SOCKET)",
                    path.display()
                ),
            })
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
    fn routes_parse_and_extension_is_the_default() {
        // GIVEN each documented value, unset, and a typo
        assert_eq!(ServedRoute::parse(None).unwrap(), ServedRoute::Extension);
        assert_eq!(
            ServedRoute::parse(Some("")).unwrap(),
            ServedRoute::Extension
        );
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

    #[test]
    fn a_missing_extension_socket_fails_naming_the_variable() {
        // GIVEN no socket at the path WHEN checked THEN the error names the variable and layer
        let e = ServedRoute::check_socket(Path::new("/nonexistent/served.sock"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("NECTAR_SERVED_LOG") && e.contains("ServedLogLayer"),
            "{e}"
        );
        // AND an existing path passes
        assert!(ServedRoute::check_socket(&std::env::temp_dir()).is_ok());
    }
}
