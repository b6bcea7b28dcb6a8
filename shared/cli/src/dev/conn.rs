//! How `nectar dev` holds its connections: HTTP/1.1 through hyper with a header-read timeout
//! (which also closes idle keep-alive connections), a bound on concurrent connections (the
//! excess is refused at once with a 503), a graceful shutdown, and a scan of the byte stream
//! that spots request heads carrying both `Content-Length` and `Transfer-Encoding`.
//!
//! Slow clients are cut off at three points: the head ([`HEADER_READ_TIMEOUT`], enforced by
//! hyper), the body ([`BODY_READ_TIMEOUT`], enforced where the handler reads it) and between
//! requests (the same hyper timer: it starts as soon as a connection waits for a request, new
//! or kept alive, so the idle keep-alive timeout is the header-read timeout).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use nectar_platform::http::error::AppError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// A request's head must be complete this long after the connection starts waiting for it;
/// so this is also how long a kept-alive connection may stay idle (see the module docs).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's whole body must arrive within this long after its head (1 MiB in 10 s is
/// 100 KB/s, far below any link that reaches a dev server).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; the next ones are answered 503 and closed at once, rather than
/// left waiting in the accept queue behind connections that may be slow on purpose.
pub const MAX_CONNECTIONS: usize = 512;
/// Refusals being written at once; past this, excess connections are closed without an answer.
const MAX_REFUSALS: usize = 64;
/// How long a shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long writing a refusal may take.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// A response of the dev server.
pub type DevResponse = http::Response<Full<Bytes>>;

/// Serves `handler` on `listener` until `shutdown` completes, then lets requests in flight
/// finish (at most [`SHUTDOWN_GRACE`]). Connections are served on `workers` threads (see
/// [`Workers`]); this task only accepts them. The handler's second argument says whether the
/// request's head carried both `Content-Length` and `Transfer-Encoding` (hyper then reads the
/// body as chunked and drops the length; the handler refuses such requests).
pub async fn serve<H, F>(
    listener: TcpListener,
    workers: usize,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(http::Request<Incoming>, bool) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = DevResponse> + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let graceful = GracefulShutdown::new();
    let workers = Workers::start(workers)?;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait for connections to close
                    // rather than spin or exit.
                    tracing::warn!(error = %e, "Accepting a connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Ok(r) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(r);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Handed over to a worker thread's reactor (see [`Workers`]).
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "Connection lost before it was served.");
                continue;
            }
        };
        let handler = handler.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        workers.spawn(async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "Registering a connection failed.");
                    return;
                }
            };
            let flag = Arc::new(AtomicU64::new(NONE));
            let io = TokioIo::new(ScannedStream {
                inner: stream,
                scanner: FramingScanner::default(),
                flag: flag.clone(),
            });
            let served = Arc::new(AtomicU64::new(0));
            let service = hyper::service::service_fn(move |req| {
                // hyper hands over requests in the order their heads came in, which is the
                // order the scanner counted them.
                let index = served.fetch_add(1, Ordering::Relaxed);
                let ambiguous = flag.load(Ordering::Acquire) == index;
                let fut = handler(req, ambiguous);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            let conn = watcher.watch(builder.serve_connection(io, service));
            if let Err(e) = conn.await {
                // Timeouts, resets and malformed heads end here; hyper already answered
                // what could be answered.
                tracing::debug!(error = %e, "Connection closed with an error.");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("Connections still open after the shutdown grace period; closing them.");
    }
    Ok(())
}

/// Threads that serve connections, each with its own current-thread Tokio runtime: a
/// connection stays on the thread it was given, so its reads, its handler and its writes run
/// without waking another thread (a multi-thread runtime moves tasks between workers and
/// parks and wakes them through the kernel at every turn). The accept loop hands
/// connections out in turn.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    /// Dropping these stops the threads (after the runtime's tasks are dropped).
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    fn start(n: usize) -> io::Result<Self> {
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("nectar-conn-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })?;
        }
        Ok(Self {
            handles,
            next: std::sync::atomic::AtomicUsize::new(0),
            _stops: stops,
        })
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(fut);
    }
}

/// Answers a connection over the bound with a 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let body = AppError::Unavailable("too many connections".into())
        .body()
        .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes: closing with unread data would send a
        // reset, which can destroy the answer before the client reads it.
        let mut buf = [0u8; 4096];
        while stream.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// No request flagged.
const NONE: u64 = u64::MAX;

/// A TCP stream that feeds what it reads to a [`FramingScanner`] and publishes the index of
/// an ambiguous request in `flag`, before hyper parses the same bytes.
struct ScannedStream {
    inner: TcpStream,
    scanner: FramingScanner,
    flag: Arc<AtomicU64>,
}

impl AsyncRead for ScannedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if let Some(index) = this.scanner.feed(&buf.filled()[before..]) {
            this.flag.store(index, Ordering::Release);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ScannedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Largest head or chunk line the scanner follows; past it hyper refuses the request anyway.
const MAX_LINE: usize = 64 * 1024;

/// Where the scanner is in a connection's byte stream.
#[derive(Debug, Default, PartialEq)]
enum Scan {
    /// Reading a request head.
    #[default]
    Head,
    /// Skipping this many bytes of a `Content-Length` body.
    Fixed(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping a chunk's data and its CRLF.
    ChunkData(u64),
    /// Reading trailer lines up to the empty one.
    Trailer,
    /// Not following any more: the stream is malformed (hyper answers it and closes) or a
    /// request was flagged (hyper closes after answering it).
    Off,
}

/// Follows HTTP/1.1 request framing over a connection's byte stream, just far enough to find
/// each request head and tell whether it has both `Content-Length` and `Transfer-Encoding`.
/// hyper lets `Transfer-Encoding` win, drops `Content-Length` from the headers and closes the
/// connection after the answer; that is safe, but the request is ambiguous by RFC 9112 §6.3
/// and the handler cannot see it, so this tells it.
#[derive(Debug, Default)]
struct FramingScanner {
    state: Scan,
    /// Index (from 0) of the request whose head is read next.
    request: u64,
    line: Vec<u8>,
}

impl FramingScanner {
    /// Consumes bytes read from the client; returns the index of a request whose head has
    /// both framing headers, if one completes in `data`.
    fn feed(&mut self, mut data: &[u8]) -> Option<u64> {
        while !data.is_empty() {
            match self.state {
                Scan::Off => return None,
                Scan::Fixed(left) | Scan::ChunkData(left) => {
                    let n = (left as usize).min(data.len());
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = match (&self.state, left) {
                        (Scan::Fixed(_), 0) => Scan::Head,
                        (Scan::Fixed(_), l) => Scan::Fixed(l),
                        (_, 0) => Scan::ChunkSize,
                        (_, l) => Scan::ChunkData(l),
                    };
                }
                Scan::Head | Scan::ChunkSize | Scan::Trailer => {
                    let b = data[0];
                    data = &data[1..];
                    // Empty lines before a request line are allowed (RFC 9112 §2.2).
                    if self.state == Scan::Head
                        && self.line.is_empty()
                        && (b == b'\r' || b == b'\n')
                    {
                        continue;
                    }
                    self.line.push(b);
                    if self.line.len() > MAX_LINE {
                        self.state = Scan::Off;
                        return None;
                    }
                    if b != b'\n' {
                        continue;
                    }
                    if let Some(flagged) = self.line_done() {
                        return Some(flagged);
                    }
                }
            }
        }
        None
    }

    /// A `\n` was read in a line state: moves on if the line (or head) is complete.
    fn line_done(&mut self) -> Option<u64> {
        match self.state {
            Scan::Head => {
                let l = &self.line;
                if !(l.ends_with(b"\n\r\n") || l.ends_with(b"\n\n")) {
                    return None;
                }
                let head = std::mem::take(&mut self.line);
                let index = self.request;
                self.request += 1;
                let (mut length, mut chunked) = (None, false);
                for line in head.split(|&b| b == b'\n').skip(1) {
                    let Some(colon) = line.iter().position(|&b| b == b':') else {
                        continue;
                    };
                    let name = &line[..colon];
                    let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
                    if name.eq_ignore_ascii_case(b"content-length") {
                        match value.parse::<u64>() {
                            Ok(n) => length = Some(n),
                            Err(_) => {
                                self.state = Scan::Off;
                                return None;
                            }
                        }
                    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                        chunked = true;
                    }
                }
                if length.is_some() && chunked {
                    self.state = Scan::Off;
                    return Some(index);
                }
                self.state = match (length, chunked) {
                    (_, true) => Scan::ChunkSize,
                    (Some(n), false) if n > 0 => Scan::Fixed(n),
                    _ => Scan::Head,
                };
                None
            }
            Scan::ChunkSize => {
                let line = std::mem::take(&mut self.line);
                let text = std::str::from_utf8(&line).unwrap_or("");
                let size = text
                    .split(';')
                    .next()
                    .map(|s| s.trim_matches(|c: char| c.is_ascii_whitespace()))
                    .and_then(|s| u64::from_str_radix(s, 16).ok());
                self.state = match size {
                    Some(0) => Scan::Trailer,
                    // The data, then its CRLF.
                    Some(n) => n.checked_add(2).map_or(Scan::Off, Scan::ChunkData),
                    None => Scan::Off,
                };
                None
            }
            Scan::Trailer => {
                let line = std::mem::take(&mut self.line);
                if line == b"\r\n" || line == b"\n" {
                    self.state = Scan::Head;
                }
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(stream: &[u8], step: usize) -> Vec<u64> {
        let mut s = FramingScanner::default();
        stream.chunks(step).filter_map(|c| s.feed(c)).collect()
    }

    #[test]
    fn requests_with_both_framing_headers_are_found_by_index() {
        // GIVEN a keep-alive stream: a plain GET, a length body that looks like a head with
        // both headers, a chunked body whose data does too, then a head with both
        let fake = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let stream = format!(
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
             POST /b HTTP/1.1\r\ncontent-length: {}\r\n\r\n{fake}\
             POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x};ext=1\r\n{fake}\r\n0\r\nX-Trailer: t\r\n\r\n\
             \r\nPOST /d HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            fake.len(),
            fake.len(),
        );
        // WHEN scanned in one piece or byte by byte THEN only the fourth request (index 3)
        // is flagged
        assert_eq!(flags(stream.as_bytes(), stream.len()), [3]);
        assert_eq!(flags(stream.as_bytes(), 1), [3]);
        assert_eq!(flags(stream.as_bytes(), 7), [3]);
    }

    #[test]
    fn ordinary_streams_are_never_flagged() {
        // GIVEN bare-LF heads, an empty body, a zero-length chunked body and a request
        // without a body after them
        let stream = b"GET / HTTP/1.1\nHost: x\n\nPOST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n\
            POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert!(flags(stream, 3).is_empty());
        // AND a malformed chunk size stops the scan (hyper answers 400 and closes)
        let mut s = FramingScanner::default();
        assert_eq!(
            s.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            None
        );
        assert_eq!(s.state, Scan::Off);
    }
}
