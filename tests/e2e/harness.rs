//! The test harness: real origins on loopback ports that record what they receive, a static
//! site in a temp dir, a real node on port 0, and a small HTTP client.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use edge_runtime::body::EdgeBody;
use edge_runtime::{Config, RunningNode};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// What an origin received: one entry per request.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A hyper origin on a loopback port with an inline handler; shut down on drop.
pub struct Origin {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted.
    connections: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Origin {
    /// Starts an origin answering every request with `handler`.
    pub async fn start<F, Fut>(handler: F) -> Result<Origin>
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<EdgeBody>> + Send + 'static,
    {
        Origin::start_at("127.0.0.1:0".parse()?, handler).await
    }

    /// Starts an origin on a given address (e.g. one that refused connections until now).
    pub async fn start_at<F, Fut>(addr: SocketAddr, handler: F) -> Result<Origin>
    where
        F: Fn(Received) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<EdgeBody>> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = Arc::clone(&received);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let tx = accept_until_shutdown(listener, move |stream| {
            accepted.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_nodelay(true);
            let handler = Arc::clone(&handler);
            let log = Arc::clone(&log);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&log);
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let r = Received {
                        method: parts.method,
                        uri: parts
                            .uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers: parts.headers,
                        body,
                    };
                    log.lock().expect("origin log lock").push(r.clone());
                    Ok::<_, std::convert::Infallible>(handler(r).await)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        });
        Ok(Origin {
            addr,
            received,
            connections,
            shutdown: Some(tx),
        })
    }

    /// An origin that answers every request 200 with `body` and these headers.
    pub async fn fixed(
        body: &'static str,
        headers: &'static [(&'static str, &'static str)],
    ) -> Result<Origin> {
        Origin::start(move |_| async move { reply(200, headers, body) }).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// How many requests it has received.
    pub fn count(&self) -> usize {
        self.received.lock().expect("origin log lock").len()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("origin log lock").clone()
    }

    pub fn last(&self) -> Received {
        self.received()
            .pop()
            .expect("the origin received a request")
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A response for an origin handler.
pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::full(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).expect("valid status");
    for (n, v) in headers {
        response.headers_mut().append(
            http::header::HeaderName::from_bytes(n.as_bytes()).expect("valid header name"),
            v.parse().expect("valid header value"),
        );
    }
    response
}

/// A loopback address where nothing listens (bound, then closed): connections are refused.
pub async fn refused_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

/// A loopback address that accepts no connection within any timeout: a listener with a full
/// accept queue that never accepts, so the kernel drops new SYNs. Keep the guard alive.
pub fn black_hole() -> Result<(SocketAddr, Vec<socket2::Socket>)> {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.bind(&"127.0.0.1:0".parse::<SocketAddr>()?.into())?;
    listener.listen(0)?;
    let addr = listener.local_addr()?.as_socket().context("inet address")?;
    let mut guards = vec![listener];
    // Fill the accept queue (backlog 0 still queues one or two connections).
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_nonblocking(true)?;
        let _ = s.connect(&addr.into());
        guards.push(s);
    }
    Ok((addr, guards))
}

/// A temp directory with files, for a static origin.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new(files: &[(&str, &str)]) -> Result<Site> {
        let dir = tempfile::tempdir()?;
        for (path, content) in files {
            let full = dir.path().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(full, content)?;
        }
        Ok(Site { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The root as a TOML string value.
    pub fn root(&self) -> String {
        format!("{:?}", self.dir.path().display().to_string())
    }
}

/// A running node and a client for it.
pub struct TestNode {
    pub node: RunningNode,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn x_cache(&self) -> &str {
        self.header("x-cache").unwrap_or("<none>")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestNode {
    /// Starts a node whose one behavior `*` sends everything to `origin` (named `app`), with
    /// `behavior` as further lines of that behavior's table (`cache = { ... }`, ...).
    pub async fn in_front_of(origin: &Origin, behavior: &str) -> Result<TestNode> {
        TestNode::start(&format!(
            "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n{behavior}\n",
            origin.url()
        ))
        .await
    }

    /// Starts a node on port 0 with this config (its `[server]` table is added here).
    pub async fn start(toml: &str) -> Result<TestNode> {
        let config: Config = format!("[server]\nlisten = \"127.0.0.1:0\"\n{toml}").parse()?;
        let node = edge_runtime::start(config, std::future::pending()).await?;
        Ok(TestNode {
            node,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.node.addr())
    }

    /// A request builder for `path` on this node.
    pub fn request(&self, method: &str, path: &str) -> http::request::Builder {
        Request::builder().method(method).uri(self.url(path))
    }

    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.send(self.request("GET", path).body(Full::default())?)
            .await
    }

    /// GETs `path`, with the interim (1xx) responses that came before the final one: each
    /// one's status and `Link`.
    pub async fn get_with_interim(
        &self,
        path: &str,
    ) -> Result<(Reply, Vec<(u16, Option<http::HeaderValue>)>)> {
        let interim = Arc::new(Mutex::new(Vec::new()));
        let mut request = self.request("GET", path).body(Full::default())?;
        let log = Arc::clone(&interim);
        hyper::ext::on_informational(&mut request, move |response| {
            let link = response.headers().get("link").cloned();
            log.lock()
                .expect("interim log lock")
                .push((response.status().as_u16(), link));
        });
        let reply = self.send(request).await?;
        let interim = interim.lock().expect("interim log lock").clone();
        Ok((reply, interim))
    }

    /// Sends and reads the whole response (bounded by a 10 s timeout).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Reply> {
        read_reply(self.send_streaming(request).await?).await
    }

    /// Sends and returns as soon as the response headers arrive.
    pub async fn send_streaming(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>> {
        Ok(
            tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
                .await
                .context("no response headers within 10 s")??,
        )
    }
}

/// Hand-written modules for a test, as `.wat` files in a temp dir.
pub struct Modules {
    pub dir: tempfile::TempDir,
    names: Vec<String>,
}

impl Modules {
    /// Writes each `(name, wat)`; [`Modules::toml`] declares them as `[functions.NAME]`.
    pub fn new(modules: &[(&str, &str)]) -> Result<Modules> {
        let dir = tempfile::tempdir()?;
        for (name, wat) in modules {
            std::fs::write(dir.path().join(format!("{name}.wat")), wat)?;
        }
        Ok(Modules {
            dir,
            names: modules.iter().map(|(n, _)| n.to_string()).collect(),
        })
    }

    /// `[functions.NAME]` tables for every module, with `extra` lines in each.
    pub fn toml(&self, extra: &str) -> String {
        self.names
            .iter()
            .map(|n| {
                format!(
                    "[functions.{n}]\nmodule = {:?}\n{extra}\n",
                    self.dir
                        .path()
                        .join(format!("{n}.wat"))
                        .display()
                        .to_string()
                )
            })
            .collect()
    }
}

/// `[functions.NAME]` for a module file.
pub fn function(name: &str, path: &str) -> String {
    format!("[functions.{name}]\nmodule = {path:?}\n")
}

/// The admin token the admin tests configure.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

impl TestNode {
    /// Calls the admin API with `token` (or none).
    pub async fn admin_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<Reply> {
        let addr = self
            .node
            .admin_addr()
            .context("the node has no [admin] section")?;
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request.body(Full::new(body.into()))?).await
    }

    /// Calls the admin API with [`ADMIN_TOKEN`].
    pub async fn admin(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Result<Reply> {
        self.admin_as(Some(ADMIN_TOKEN), method, path, body).await
    }
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", self.text()))
    }
}

impl TestNode {
    /// Starts a node whose `[server]` table has these extra lines besides the ephemeral listen.
    pub async fn start_with_server(server: &str, toml: &str) -> Result<TestNode> {
        let config: Config =
            format!("[server]\nlisten = \"127.0.0.1:0\"\n{server}\n{toml}").parse()?;
        let node = edge_runtime::start(config, std::future::pending()).await?;
        Ok(TestNode {
            node,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }
}

/// What a [`RawOrigin`] does with one request (numbered from 0 across connections).
pub enum RawAction {
    /// Write these bytes and keep the connection for the next request.
    Send(Vec<u8>),
    /// Write these bytes, then close the connection (FIN).
    SendAndClose(Vec<u8>),
    /// Write these bytes, then reset the connection (RST).
    SendAndReset(Vec<u8>),
    /// Wait, then write these bytes and keep the connection: a slow origin.
    Delay(Duration, Vec<u8>),
}

/// An origin on raw sockets, for answers no well-behaved HTTP server would send: broken
/// framing, garbage, resets. Reads each request's head (and a `Content-Length` body), records
/// it, then acts as the handler says. Shut down on drop.
pub struct RawOrigin {
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl RawOrigin {
    pub async fn start<F>(handler: F) -> Result<RawOrigin>
    where
        F: Fn(usize) -> RawAction + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let heads = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let log = Arc::clone(&heads);
        let tx = accept_until_shutdown(listener, move |stream| {
            tokio::spawn(raw_origin_connection(
                stream,
                Arc::clone(&handler),
                Arc::clone(&log),
            ));
        });
        Ok(RawOrigin {
            addr,
            heads,
            shutdown: Some(tx),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it has read.
    pub fn count(&self) -> usize {
        self.heads.lock().expect("raw origin log lock").len()
    }

    /// The request heads it has read, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("raw origin log lock").clone()
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn raw_origin_connection<F>(
    mut stream: tokio::net::TcpStream,
    handler: Arc<F>,
    log: Arc<Mutex<Vec<String>>>,
) where
    F: Fn(usize) -> RawAction + Send + Sync + 'static,
{
    use tokio::io::AsyncWriteExt;
    let mut buffer = Vec::new();
    loop {
        let Ok(Some(head)) = read_head(&mut stream, &mut buffer).await else {
            return;
        };
        let length = header_in(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if read_exact_into(&mut stream, &mut buffer, length)
            .await
            .is_err()
        {
            return;
        }
        buffer.drain(..length);
        let index = {
            let mut log = log.lock().expect("raw origin log lock");
            log.push(head);
            log.len() - 1
        };
        match handler(index) {
            RawAction::Send(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            RawAction::Delay(delay, bytes) => {
                tokio::time::sleep(delay).await;
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            RawAction::SendAndClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
            RawAction::SendAndReset(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.flush().await;
                // SO_LINGER 0: close sends RST instead of FIN.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                drop(stream);
                return;
            }
        }
    }
}

/// Reads up to the end of a message head (`\r\n\r\n`); returns it as text and leaves what
/// follows in `buffer`. `None` at a clean end of stream.
async fn read_head(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    use tokio::io::AsyncReadExt;
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = buffer.drain(..end + 4).collect();
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        let mut chunk = [0u8; 4096];
        let n = match stream.read(&mut chunk).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            read => read?,
        };
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Makes sure `buffer` holds at least `n` bytes.
async fn read_exact_into(
    stream: &mut tokio::net::TcpStream,
    buffer: &mut Vec<u8>,
    n: usize,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    while buffer.len() < n {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    Ok(())
}

/// The first value of header `name` in a message head.
fn header_in<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A response read off a raw socket, framed exactly as its headers say.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// The head as received, status line first.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.head, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A viewer on a raw socket: sends bytes as given and reads responses by their own framing,
/// so a response that announces the wrong length shows up in the next one.
pub struct RawViewer {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

/// Bound on every raw read, so a test fails instead of hanging.
const RAW_READ_LIMIT: Duration = Duration::from_secs(10);

impl RawViewer {
    pub async fn connect(addr: SocketAddr) -> Result<RawViewer> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(RawViewer {
            stream,
            buffer: Vec::new(),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one response to a request that was not HEAD. Fails if the connection ends first
    /// or the response does not parse.
    pub async fn response(&mut self) -> Result<RawReply> {
        tokio::time::timeout(RAW_READ_LIMIT, self.read_response())
            .await
            .context("no complete response within 10 s")?
    }

    async fn read_response(&mut self) -> Result<RawReply> {
        let head = read_head(&mut self.stream, &mut self.buffer)
            .await?
            .context("connection closed before a response")?;
        let status_line = head.lines().next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("not a status line: {status_line:?}"))?;
        let chunked = header_in(&head, "transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let body = if status == 304 || status == 204 || (100..200).contains(&status) {
            Vec::new()
        } else if chunked {
            self.read_chunked().await?
        } else if let Some(length) = header_in(&head, "content-length") {
            let length: usize = length.parse().context("content-length")?;
            read_exact_into(&mut self.stream, &mut self.buffer, length).await?;
            self.buffer.drain(..length).collect()
        } else {
            // Close-delimited.
            use tokio::io::AsyncReadExt;
            self.stream.read_to_end(&mut self.buffer).await?;
            std::mem::take(&mut self.buffer)
        };
        Ok(RawReply { status, head, body })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body);
            }
            read_exact_into(&mut self.stream, &mut self.buffer, size + 2).await?;
            body.extend(self.buffer.drain(..size));
            let crlf: Vec<u8> = self.buffer.drain(..2).collect();
            anyhow::ensure!(crlf == b"\r\n", "chunk not followed by CRLF");
        }
    }

    async fn read_line(&mut self) -> Result<String> {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "connection closed inside a chunked body");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits until the node closes the connection (bounded); returns the bytes read meanwhile.
    pub async fn closed(&mut self) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut rest = std::mem::take(&mut self.buffer);
        tokio::time::timeout(RAW_READ_LIMIT, async {
            loop {
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => rest.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .context("the node kept the connection open for 10 s")?;
        Ok(rest)
    }
}

/// Sends `bytes` on a new connection and reads one response (or `None` when the node closes
/// the connection without one).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Option<RawReply>> {
    let mut viewer = RawViewer::connect(addr).await?;
    viewer.send(bytes).await?;
    match viewer.response().await {
        Ok(reply) => Ok(Some(reply)),
        Err(error) if format!("{error:#}").contains("connection closed before a response") => {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Accepts connections on `listener` and hands each to `serve` until the returned sender fires
/// or is dropped: the accept loop every test server shares.
pub fn accept_until_shutdown(
    listener: TcpListener,
    serve: impl Fn(TcpStream) + Send + 'static,
) -> oneshot::Sender<()> {
    let (tx, mut rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    serve(stream);
                }
            }
        }
    });
    tx
}

/// Reads a whole response into a [`Reply`] (the body bounded by a 10 s timeout).
pub async fn read_reply(response: Response<Incoming>) -> Result<Reply> {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .context("response body took over 10 s")??
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}
