//! The viewer listener: accept loop, one hyper HTTP/1.1 connection task per socket, and
//! graceful shutdown (stop accepting, let in-flight requests finish, then close).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access_log::{self, AccessRecord, LoggedBody};
use crate::body::EdgeBody;
use crate::config::Config;
use crate::error::StartError;
use crate::flow::{self, RequestCtx};
use crate::interim::{InterimIo, InterimSink};
use crate::{Edge, Node};

/// How long in-flight requests may run after shutdown begins before their connections are cut.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// A viewer that has not finished sending request headers by then is disconnected, so idle or
/// slow-loris connections cannot pile up.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A node serving on a socket (and its admin API, if configured).
pub struct RunningNode {
    addr: SocketAddr,
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

/// Loads the config's functions, binds `config.server.listen` (and the admin API's address)
/// and serves until [`RunningNode::shutdown`] or `signal`.
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
    let viewers = serve(listener, Arc::clone(&edge), stopped(rx));
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
        admin_addr,
        edge,
        shutdown: Some(tx),
        tasks,
        _address_file: data_dir.and_then(|d| crate::node::AddressFile::write(&d, &addresses)),
    })
}

async fn serve(listener: TcpListener, edge: Arc<Edge>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // hyper answers requests over either limit with 431 and closes the connection. The limits
    // are read once: a reload that changes them takes effect at restart.
    let (max_header_size, max_headers) = {
        let server = &edge.current().config.server;
        (server.max_request_header_size, server.max_request_headers)
    };
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(max_header_size);
    // hyper keeps up to 100 headers on the stack; any explicit count moves them to the heap for
    // every request (about 5% slower), so only a non-default count is passed on.
    if max_headers != crate::config::DEFAULT_MAX_REQUEST_HEADERS as usize {
        http.max_headers(max_headers);
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, viewer)) => {
                    // Headers and body leave in separate writes at times; without TCP_NODELAY the
                    // second waits for the viewer's delayed ACK (40 ms on Linux).
                    let _ = stream.set_nodelay(true);
                    let edge = Arc::clone(&edge);
                    let (stream, interim) = InterimIo::new(stream);
                    let service = service_fn(move |request| {
                        // Each request runs on the version current when it arrives.
                        let node = edge.current();
                        let interim = interim.clone();
                        async move { Ok::<_, Infallible>(serve_request(&node, request, viewer, interim).await) }
                    });
                    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        if let Err(error) = connection.await {
                            tracing::debug!(%viewer, %error, "viewer connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Usually EMFILE: back off briefly instead of spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(DEFAULT_SHUTDOWN_GRACE) => tracing::warn!(grace = ?DEFAULT_SHUTDOWN_GRACE, "grace period over; cutting remaining connections"),
    }
}

async fn serve_request(
    node: &Node,
    request: Request<Incoming>,
    viewer: SocketAddr,
    interim: InterimSink,
) -> Response<LoggedBody> {
    let mut ctx = RequestCtx::new(node.next_request_id(), viewer);
    ctx.interim = Some(interim);
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
    response.map(|body| LoggedBody::new(body, record, expected, metrics))
}
