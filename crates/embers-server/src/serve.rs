//! Serving HTTP/1 and HTTP/2 connections with hyper directly, because `axum::serve` has
//! no knobs for what an exposed server needs:
//!
//! - a **connection cap**: past `max_connections`, a new connection is answered
//!   `503 Service Unavailable` with `Retry-After` and closed at once (not left waiting in
//!   the kernel's backlog, where the client would only see latency grow);
//! - a **header timeout**: a connection must deliver a complete request head within
//!   `header_timeout` of opening (a silent connection is closed), and a keep-alive
//!   connection within `header_timeout` of the first byte of its next request;
//! - an **idle timeout**: a keep-alive connection with no request and no bytes for
//!   `idle_timeout` is closed.
//!
//! HTTP/2 without TLS (h2c, prior knowledge) is served on the same port, detected from
//! the connection preface by hyper-util's `auto` builder: OTLP/gRPC exporters speak it.
//!
//! With a certificate ([`crate::tls::Tls`]) every connection is HTTPS: the handshake
//! runs inside the connection's task, holding its slot, and must finish within the
//! header timeout like a request head (a client that opens TCP and never says hello
//! is closed, it does not keep a slot); past the cap a connection is closed at once
//! without a handshake. A client speaking plain HTTP to the TLS port is
//! answered `400` in plain text saying so, and closed. After the handshake the same
//! `auto` builder serves HTTP/1.1 or HTTP/2 (ALPN `h2`, for gRPC over TLS).
//! An HTTP/2 connection counts once against the cap whatever its streams; its requests
//! are bounded by the same ingest and query budgets as any other.
//!
//! A connection serving a request is never cut by either timeout. On shutdown the
//! listener closes, idle connections close, and requests in flight finish (hyper's
//! graceful shutdown) before [`serve`] returns.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::metrics::{Metrics, RouteLabel};
use crate::tls::Tls;

/// Connection limits (from the server's configuration).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time to deliver a request head (see the module doc).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit without a request.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains (module doc).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait for connections to close.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                metrics.connection_opened();
                tokio::spawn(accepted(
                    stream,
                    tls.clone(),
                    slot,
                    router.clone(),
                    limits,
                    Arc::clone(&metrics),
                    stopped.clone(),
                ));
            }
            Err(_) => {
                metrics.rejected(crate::metrics::Rejection::Connections);
                metrics.http_response("(connection)", 503);
                // Over TLS a plain-text 503 would read as a broken handshake, and
                // shaking hands first would spend the CPU the cap protects: close.
                if tls.is_none() {
                    tokio::spawn(refuse(stream));
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it is done.
    let _ = slots.acquire_many(max as u32).await;
}

/// Answers a connection over the cap with a 503 and closes it.
async fn refuse(stream: TcpStream) {
    const ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
        content-type: text/plain\r\ncontent-length: 58\r\nconnection: close\r\n\r\n\
        too many connections (max_connections); retry in a moment\n";
    close_with(stream, ANSWER).await;
}

/// Serves one accepted connection, over TLS when there is a certificate.
async fn accepted(
    stream: TcpStream,
    tls: Option<Arc<Tls>>,
    slot: OwnedSemaphorePermit,
    router: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    // The peer, for logs of refused requests (access.rs).
    let peer = stream.peer_addr().ok();
    let Some(tls) = tls else {
        let own = Own {
            activity,
            peer,
            _slot: slot,
        };
        return connection(stream, own, router, limits, metrics, stopped).await;
    };
    // The handshake is part of the time to a request head: it is spent from the same
    // header timeout, counted from the accept.
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await? == 1 && first[0].is_ascii_alphabetic() {
            // A TLS connection starts with a handshake record (0x16); a letter is an
            // HTTP method: say what is wrong rather than fail with a TLS alert.
            return Ok(Handshake::Plaintext(stream));
        }
        tls.acceptor()
            .accept(stream)
            .await
            .map(|s| Handshake::Done(Box::new(s)))
    };
    let mut stopping = stopped.clone();
    let outcome = tokio::select! {
        outcome = tokio::time::timeout(limits.header_timeout, handshake) => outcome,
        // Stopping: a connection still shaking hands has no request to finish.
        _ = stopping.wait_for(|stop| *stop) => {
            metrics.connection_closed(Closed::Shutdown);
            metrics.connection_ended();
            return;
        }
    };
    match outcome {
        Ok(Ok(Handshake::Done(stream))) => {
            let own = Own {
                activity,
                peer,
                _slot: slot,
            };
            connection(*stream, own, router, limits, metrics, stopped).await;
        }
        Ok(Ok(Handshake::Plaintext(stream))) => {
            metrics.http_response("(connection)", 400);
            plaintext_to_tls_port(stream).await;
            metrics.connection_ended();
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            metrics.connection_ended();
        }
        Err(_) => {
            metrics.connection_closed(Closed::HeaderTimeout);
            metrics.connection_ended();
        }
    }
}

enum Handshake {
    Done(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Plaintext(TcpStream),
}

/// Answers a plain HTTP request on the HTTPS port with a 400 that says so, and closes.
async fn plaintext_to_tls_port(stream: TcpStream) {
    const BODY: &str = "this port serves HTTPS: use an https:// URL\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    close_with(stream, answer.as_bytes()).await;
}

/// Writes `answer`, then reads what the client sent until it closes (so closing does not
/// reset the connection before it has read the answer), for at most a second.
async fn close_with(mut stream: TcpStream, answer: &[u8]) {
    let answer = async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        loop {
            if tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// What one connection holds: its activity, its peer and its slot under the cap.
struct Own {
    activity: Arc<Activity>,
    peer: Option<SocketAddr>,
    _slot: OwnedSemaphorePermit,
}

async fn connection<S>(
    stream: S,
    own: Own,
    router: Router,
    limits: ConnLimits,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Own {
        activity,
        peer,
        _slot,
    } = own;
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service_activity = Arc::clone(&activity);
    let service_metrics = Arc::clone(&metrics);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let activity = Arc::clone(&service_activity);
        let metrics = Arc::clone(&service_metrics);
        let router = router.clone();
        activity.begin();
        async move {
            let response = router.oneshot(request).await;
            activity.end();
            if let Ok(r) = &response {
                let route = r.extensions().get::<RouteLabel>().map_or("other", |l| &l.0);
                metrics.http_response(route, r.status().as_u16());
            }
            response
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Our own deadlines below replace hyper's header timer, which would also cut
    // keep-alive connections idle for longer than it.
    builder.http1().header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = *stopped.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = activity.deadline(&limits, draining);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            changed = stopped.changed(), if !draining => {
                if changed.is_ok() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                if let Some(reason) = activity.expired(&limits, draining) {
                    metrics.connection_closed(reason);
                    // Dropping the connection closes the socket; no request is in flight.
                    break;
                }
            }
        }
    }
    metrics.connection_ended();
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No complete request head in time.
    HeaderTimeout,
    /// Keep-alive connection without a request for too long.
    IdleTimeout,
    /// Idle when the server stopped.
    Shutdown,
}

const NONE: u64 = u64::MAX;

/// What a connection did when, in milliseconds since it was accepted.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    busy: AtomicUsize,
    served: AtomicU64,
    last_done: AtomicU64,
    last_io: AtomicU64,
    /// First byte of a request whose head is not complete yet.
    first_byte: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            accepted: Instant::now(),
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_done: AtomicU64::new(0),
            last_io: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
        }
    }

    fn now(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Acquire) == 0 {
            let _ =
                self.first_byte
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn begin(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.first_byte.store(NONE, Ordering::Relaxed);
    }

    fn end(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.last_done.store(self.now(), Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// When the connection should be closed if nothing happens meanwhile, and why; `None`
    /// while a request is being served.
    fn due(&self, limits: &ConnLimits, draining: bool) -> Option<(u64, Closed)> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = |d: Duration| d.as_millis() as u64;
        let first_byte = self.first_byte.load(Ordering::Relaxed);
        if draining && first_byte == NONE {
            return Some((0, Closed::Shutdown));
        }
        if self.served.load(Ordering::Relaxed) == 0 {
            // A new connection: its first request head is due within the header timeout.
            return Some((ms(limits.header_timeout), Closed::HeaderTimeout));
        }
        if first_byte != NONE {
            return Some((
                first_byte.saturating_add(ms(limits.header_timeout)),
                Closed::HeaderTimeout,
            ));
        }
        let last = self
            .last_done
            .load(Ordering::Relaxed)
            .max(self.last_io.load(Ordering::Relaxed));
        Some((
            last.saturating_add(ms(limits.idle_timeout)),
            Closed::IdleTimeout,
        ))
    }

    fn deadline(&self, limits: &ConnLimits, draining: bool) -> Instant {
        let at = match self.due(limits, draining) {
            Some((at, _)) => at,
            // Serving: look again soon enough to hold the next request's deadlines.
            None => self.now() + limits.idle_timeout.min(limits.header_timeout).as_millis() as u64,
        };
        self.accepted + Duration::from_millis(at)
    }

    fn expired(&self, limits: &ConnLimits, draining: bool) -> Option<Closed> {
        self.due(limits, draining)
            .filter(|&(at, _)| self.now() >= at)
            .map(|(_, why)| why)
    }
}

/// The connection (the socket, or the TLS stream over it), noting when bytes move.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        }
    }

    #[test]
    fn deadlines_follow_the_connection_phase() {
        let a = Activity::new();
        let l = limits();
        // New and silent: the header timeout.
        assert_eq!(a.due(&l, false), Some((10_000, Closed::HeaderTimeout)));
        // Serving: never cut.
        a.begin();
        assert_eq!(a.due(&l, false), None);
        assert_eq!(a.due(&l, true), None);
        a.end();
        // Kept alive without bytes: the idle timeout; at once when draining.
        let (at, why) = a.due(&l, false).unwrap();
        assert_eq!(why, Closed::IdleTimeout);
        assert!(at >= 60_000);
        assert_eq!(a.due(&l, true), Some((0, Closed::Shutdown)));
        // A next request begins arriving: its head is due within the header timeout.
        a.read();
        let (_, why) = a.due(&l, true).unwrap();
        assert_eq!(why, Closed::HeaderTimeout);
    }
}
