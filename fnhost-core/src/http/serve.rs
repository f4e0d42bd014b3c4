//! The serving core every fnhost HTTP endpoint runs on: the function front
//! ([`HttpFront`](super::HttpFront)) and the management endpoint
//! (`fnhost_deploy::manage`).
//!
//! One accept loop: each connection gets `TCP_NODELAY`, an optional
//! handshake (TLS) bounded by the header timeout, and HTTP/1.1 with a cap
//! on the request head and a time limit for it. On shutdown the listener
//! closes, every connection finishes the request it is serving and closes
//! (hyper-util's graceful shutdown), background work the endpoint started
//! is waited for, all up to a deadline; what is still running then is
//! cancelled, and [`Stopped`] says how it went.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::timer::LogSink;

/// How a server stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stopped {
    /// Whether every request (and background task) in flight finished
    /// before the deadline.
    pub drained: bool,
    /// Connections and background tasks cancelled at the deadline.
    pub cancelled: usize,
}

/// The limits the serving core enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The largest request line plus headers (431 beyond).
    pub max_header_bytes: usize,
    /// How long a connection may take to send a request head (and to
    /// complete a TLS handshake).
    pub header_read_timeout: Duration,
    /// How long shutdown waits for requests and background work.
    pub shutdown_timeout: Duration,
}

/// A boxed future that can move between threads.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Turns an accepted TCP stream into the stream HTTP is spoken on: itself,
/// or a TLS stream after a handshake.
pub trait Handshake: Send + Sync + 'static {
    /// The stream HTTP runs on.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Completes the handshake (bounded by the header timeout by the
    /// caller).
    fn handshake(&self, stream: TcpStream) -> BoxFuture<io::Result<Self::Stream>>;

    /// What the log calls it (`TLS handshake`).
    fn name(&self) -> &'static str {
        "handshake"
    }
}

/// Plain HTTP: no handshake.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Stream = TcpStream;
    fn handshake(&self, stream: TcpStream) -> BoxFuture<io::Result<TcpStream>> {
        Box::pin(async move { Ok(stream) })
    }
}

/// Background work an endpoint starts outside its requests (an invocation
/// run for the admin API, a deployment queued by an upload): shutdown
/// waits for it with the connections.
pub type Background = Arc<Mutex<JoinSet<()>>>;

/// One endpoint's serving setup.
pub struct Serve<H> {
    listener: TcpListener,
    handshake: H,
    limits: ConnectionLimits,
    log: LogSink,
    name: &'static str,
    background: Option<Background>,
}

impl<H> std::fmt::Debug for Serve<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Serve<Plain> {
    /// Serves plain HTTP on `listener`; `name` prefixes its log lines
    /// (`http`, `manage`).
    pub fn new(listener: TcpListener, limits: ConnectionLimits, name: &'static str) -> Self {
        Serve {
            listener,
            handshake: Plain,
            limits,
            log: crate::timer::tracing_log(),
            name,
            background: None,
        }
    }
}

impl<H: Handshake> Serve<H> {
    /// Runs `handshake` on each connection first (TLS).
    pub fn with_handshake<H2: Handshake>(self, handshake: H2) -> Serve<H2> {
        Serve {
            listener: self.listener,
            handshake,
            limits: self.limits,
            log: self.log,
            name: self.name,
            background: self.background,
        }
    }

    /// Where accept and handshake failures are logged.
    /// Default: [`tracing_log`](crate::timer::tracing_log), each
    /// line a `tracing` event.
    pub fn with_log(mut self, log: LogSink) -> Self {
        self.log = log;
        self
    }

    /// Background work to wait for at shutdown.
    pub fn with_background(mut self, background: Background) -> Self {
        self.background = Some(background);
        self
    }

    /// Accepts connections and serves each with the service `make`
    /// returns for its peer, until `shutdown` resolves; then drains (see
    /// the [module documentation](self)).
    pub async fn run<M, S, B>(self, make: M, shutdown: impl Future<Output = ()>) -> Stopped
    where
        M: Fn(SocketAddr) -> S,
        S: hyper::service::Service<hyper::Request<Incoming>, Response = hyper::Response<B>>
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Serve {
            listener,
            handshake,
            limits,
            log,
            name,
            background,
        } = self;
        let handshake = Arc::new(handshake);
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .max_buf_size(limits.max_header_bytes.max(8192))
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        let graceful = GracefulShutdown::new();
        let mut connections: JoinSet<()> = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        log(&format!("{name}: accept failed: {e}"));
                        // Out of file descriptors, most likely: back off.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let _ = stream.set_nodelay(true);
            let service = make(peer);
            let (http1, watcher, handshake, log) = (
                http1.clone(),
                graceful.watcher(),
                handshake.clone(),
                log.clone(),
            );
            connections.spawn(async move {
                let timeout = limits.header_read_timeout;
                let stream = match tokio::time::timeout(timeout, handshake.handshake(stream)).await
                {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        let what = handshake.name();
                        log(&format!("{name}: {} {what} failed: {e}", peer.ip()));
                        return;
                    }
                    Err(_) => {
                        let what = handshake.name();
                        log(&format!("{name}: {} {what} timed out", peer.ip()));
                        return;
                    }
                };
                let conn = http1.serve_connection(TokioIo::new(stream), service);
                drop(watcher.watch(conn).await);
            });
        }
        drop(listener);
        let mut background = background
            .map(|b| std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default();
        let deadline = tokio::time::Instant::now() + limits.shutdown_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            // Connections finish the request in flight, then close.
            graceful.shutdown().await;
            while connections.join_next().await.is_some() {}
            while background.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        let cancelled = connections.len() + background.len();
        connections.abort_all();
        background.abort_all();
        Stopped { drained, cancelled }
    }
}
