//! The viewer listeners: accept loop, one hyper connection task per socket, and graceful
//! shutdown (stop accepting, let in-flight requests finish, then close).
//!
//! The plain listener speaks HTTP/1.1, and HTTP/2 to viewers that open with its preface (prior
//! knowledge, RFC 9113 §3.3). The HTTPS listener (`[server] tls_listen`) completes the TLS
//! handshake ([`crate::tls`]) and speaks what ALPN chose. Both hand every request to the same
//! flow, which sees one request model: an HTTP/2 `:authority` becomes the `Host`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::access_log::{self, AccessRecord, LoggedBody};
use crate::body::EdgeBody;
use crate::config::Config;
use crate::error::StartError;
use crate::flow::{self, RequestCtx};
use crate::interim::{InterimIo, InterimSink};
use crate::tls::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::wait_clock::{Busy, WaitClock, Waits};
use crate::{Edge, Node};

/// How long in-flight requests may run after shutdown begins before their connections are cut.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A node serving on a socket (and its admin API, if configured).
pub struct RunningNode {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    edge: Arc<Edge>,
    shutdown: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
    /// Removed (dropped) when the node stops.
    _address_file: Option<crate::node::AddressFile>,
}

impl RunningNode {
    /// The bound address (the real port when the config said port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTPS listener's bound address, if `tls_listen` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The admin API's bound address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The current version of the node, for inspection (cache size, config).
    pub fn node(&self) -> Arc<Node> {
        self.edge.current()
    }

    /// The node across versions: reload, function stages.
    pub fn edge(&self) -> &Arc<Edge> {
        &self.edge
    }

    /// Waits until the node stops on its own (its shutdown signal fired) and has drained.
    pub async fn shutdown_when_done(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }

    /// Stops accepting, waits for in-flight requests (up to [`DEFAULT_SHUTDOWN_GRACE`]).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
    }
}

/// Loads the config's functions, binds `config.server.listen` (and `tls_listen` and the admin
/// API's address, when set) and serves until [`RunningNode::shutdown`] or `signal`.
pub async fn start(
    config: Config,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningNode, StartError> {
    let listen = config.server.listen;
    let admin = config.admin.clone();
    let data_dir = admin.as_ref().and_then(|a| a.data_dir.clone());
    let edge = Arc::new(Edge::new(config)?);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let mut tls = None;
    if let (Some(tls_config), Some(resolver)) =
        (&edge.current().config.server.tls, edge.certificates())
    {
        let bind_error = |source| StartError::Bind {
            addr: tls_config.listen,
            source,
        };
        let listener = TcpListener::bind(tls_config.listen)
            .await
            .map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        tls = Some(TlsListener {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(crate::tls::server_config(Arc::clone(resolver)))),
            port,
        });
    }
    let tls_addr = tls.as_ref().and_then(|t| t.listener.local_addr().ok());
    let (tx, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut tasks = Vec::new();
    let mut admin_addr = None;
    // The admin API outlives the viewer drain, so `/readyz` answers 503 during it (rather than
    // refusing connections, which a probe cannot tell from a crashed node).
    let (drained_tx, drained_rx) = watch::channel(false);
    if let Some(admin) = admin {
        let admin_listener =
            TcpListener::bind(admin.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: admin.listen,
                    source,
                })?;
        admin_addr = Some(
            admin_listener
                .local_addr()
                .map_err(|source| StartError::Bind {
                    addr: admin.listen,
                    source,
                })?,
        );
        tasks.push(tokio::spawn(crate::admin::serve(
            admin_listener,
            Arc::clone(&edge),
            admin,
            rx.clone(),
            stopped(drained_rx),
        )));
    }
    let signal_tx = tx.clone();
    tokio::spawn(async move {
        signal.await;
        let _ = signal_tx.send(true);
    });
    let viewers = serve(listener, tls, Arc::clone(&edge), stopped(rx));
    tasks.push(tokio::spawn(async move {
        viewers.await;
        let _ = drained_tx.send(true);
    }));
    let addresses = crate::node::NodeAddresses {
        pid: std::process::id(),
        listen: addr,
        admin: admin_addr,
    };
    Ok(RunningNode {
        addr,
        tls_addr,
        admin_addr,
        edge,
        shutdown: Some(tx),
        tasks,
        _address_file: data_dir.and_then(|d| crate::node::AddressFile::write(&d, &addresses)),
    })
}

/// How viewer connections are served: one set of protocol settings for both listeners.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// How long a plain connection may wait for its first bytes, and an HTTP/1.1 connection for
    /// each request head ([`WaitClock`]).
    header_read_timeout: Duration,
}

impl Protocols {
    fn new(server: &crate::config::ServerConfig) -> Self {
        // hyper answers requests over either limit with 431 and closes the connection. The
        // limits are read once: a reload that changes them takes effect at restart.
        let (max_header_size, max_headers) =
            (server.max_request_header_size, server.max_request_headers);
        let mut http1 = http1::Builder::new();
        // The header read timeout is the connection's `WaitClock`: hyper's arms a timer per
        // request.
        http1
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(None)
            .max_header_size(max_header_size);
        // hyper keeps up to 100 headers on the stack; any explicit count moves them to the heap
        // for every request (about 5% slower), so only a non-default count is passed on.
        if max_headers != crate::config::DEFAULT_MAX_REQUEST_HEADERS as usize {
            http1.max_headers(max_headers);
        }
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        // The same header budget as HTTP/1.1 (RFC 9113 §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE;
        // h2 counts 32 bytes of overhead per field, close enough to a request line's share).
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_header_size).unwrap_or(u32::MAX));
        Protocols {
            http1,
            http2,
            header_read_timeout: server.header_read_timeout,
        }
    }
}

/// What a connection's requests share: which listener it came in on.
#[derive(Clone, Copy)]
struct Arrival {
    viewer: SocketAddr,
    /// Over the HTTPS listener.
    https: bool,
    /// The HTTPS listener's port, for redirects.
    https_port: Option<u16>,
}

/// The HTTPS listener's parts: socket, and the rustls acceptor with the swappable certificate.
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    port: u16,
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsListener>,
    edge: Arc<Edge>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let protocols = Arc::new(Protocols::new(&edge.current().config.server));
    let https_port = tls.as_ref().map(|t| t.port);
    let accept_tls = || async {
        match &tls {
            Some(tls) => tls.listener.accept().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(shutdown);
    loop {
        let (accepted, https) = tokio::select! {
            accepted = listener.accept() => (accepted, false),
            accepted = accept_tls() => (accepted, true),
            () = &mut shutdown => break,
        };
        let (stream, viewer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually EMFILE: back off briefly instead of spinning on the error.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Headers and body leave in separate writes at times; without TCP_NODELAY the second
        // waits for the viewer's delayed ACK (40 ms on Linux).
        let _ = stream.set_nodelay(true);
        let arrival = Arrival {
            viewer,
            https,
            https_port,
        };
        let (edge, protocols, watcher) = (
            Arc::clone(&edge),
            Arc::clone(&protocols),
            graceful.watcher(),
        );
        match (&tls, https) {
            (Some(tls), true) => {
                let acceptor = tls.acceptor.clone();
                tokio::spawn(async move {
                    // Fallible: the socket comes back on failure and closes after the count, so
                    // a viewer that sees the close also sees the counter.
                    let handshake = tokio::time::timeout(
                        DEFAULT_HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream).into_fallible(),
                    );
                    let stream = match handshake.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err((error, socket))) => {
                            edge.current().metrics.tls_handshake_failed();
                            tracing::debug!(%viewer, %error, "TLS handshake failed");
                            drop(socket);
                            return;
                        }
                        Err(_) => {
                            edge.current().metrics.tls_handshake_failed();
                            tracing::debug!(%viewer, timeout = ?DEFAULT_HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                            return;
                        }
                    };
                    // RFC 9113 §3.2: over TLS, HTTP/2 is chosen by ALPN only; a viewer that
                    // offers no ALPN speaks HTTP/1.1.
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    serve_connection(stream, h2, arrival, edge, &protocols, watcher).await;
                });
            }
            _ => {
                tokio::spawn(async move {
                    // A viewer that sends nothing is cut like one that stalls in its headers.
                    let wait = protocols.header_read_timeout;
                    let h2 = match tokio::time::timeout(wait, is_h2_preface(&stream)).await {
                        Ok(Ok(h2)) => h2,
                        Ok(Err(_)) | Err(_) => return,
                    };
                    serve_connection(stream, h2, arrival, edge, &protocols, watcher).await;
                });
            }
        }
    }
    drop(listener);
    drop(tls);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DEFAULT_SHUTDOWN_GRACE) => tracing::warn!(grace = ?DEFAULT_SHUTDOWN_GRACE, "grace period over; cutting remaining connections"),
    }
}

/// The client connection preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether a plain connection starts with the HTTP/2 preface, read without consuming it.
async fn is_h2_preface(stream: &TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // A prefix of the preface: peek returns at once while bytes are buffered, so wait for
        // more rather than spin (clients send the preface in one write; this is rare).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Serves one viewer connection with HTTP/2 or HTTP/1.1 until it closes or the node shuts
/// down. Each request runs on the version current when it arrives.
async fn serve_connection<I>(
    io: I,
    h2: bool,
    arrival: Arrival,
    edge: Arc<Edge>,
    protocols: &Protocols,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let viewer = arrival.viewer;
    let result = if h2 {
        // Interim responses are written beneath hyper as HTTP/1.1 bytes (`interim`), which
        // would corrupt an HTTP/2 stream: they are not forwarded to HTTP/2 viewers.
        let service = service_fn(move |request| {
            let node = edge.current();
            async move { Ok::<_, Infallible>(serve_request(&node, request, arrival, None, None).await) }
        });
        watcher
            .watch(protocols.http2.serve_connection(TokioIo::new(io), service))
            .await
    } else {
        let (io, interim) = InterimIo::new(io);
        let clock = WaitClock::start(Waits::WhenIdle);
        let requests = Arc::clone(&clock);
        let service = service_fn(move |request| {
            let in_flight = requests.busy();
            let node = edge.current();
            let interim = interim.clone();
            async move {
                let response =
                    serve_request(&node, request, arrival, Some(interim), Some(in_flight)).await;
                Ok::<_, Infallible>(response)
            }
        });
        let connection = watcher.watch(protocols.http1.serve_connection(TokioIo::new(io), service));
        match clock.run(protocols.header_read_timeout, connection).await {
            Some(result) => result,
            None => {
                // What hyper did on its own timeout: close without a response.
                tracing::debug!(%viewer, "no request head within the header read timeout; closing");
                Ok(())
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%viewer, %error, "viewer connection ended with an error");
    }
}

async fn serve_request(
    node: &Node,
    request: Request<Incoming>,
    arrival: Arrival,
    interim: Option<InterimSink>,
    in_flight: Option<Busy>,
) -> Response<LoggedBody> {
    let viewer = arrival.viewer;
    let mut ctx = RequestCtx::new(node.next_request_id(), viewer);
    ctx.interim = interim;
    ctx.https = arrival.https;
    ctx.https_port = arrival.https_port;
    let logged = access_log::enabled().then(|| {
        let path = request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |pq| pq.as_str().to_owned(),
        );
        (request.method().clone(), path)
    });
    let response = flow::handle(node, &mut ctx, request.map(EdgeBody::Viewer)).await;
    let record = logged.map(|(method, path)| {
        Box::new(AccessRecord {
            id: ctx.id,
            method,
            path,
            status: response.status(),
            x_cache: ctx.cache.as_str(),
            origin: ctx
                .origin
                .map_or_else(|| "-".to_owned(), |i| node.config.origins[i].name.clone()),
            viewer,
            started: ctx.started,
        })
    });
    node.metrics.request(response.status().as_u16(), ctx.cache);
    let expected = record
        .as_ref()
        .and(response.headers().get(http::header::CONTENT_LENGTH))
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let metrics = Arc::clone(&node.metrics);
    response.map(|body| LoggedBody::new(body, record, expected, metrics, in_flight))
}
