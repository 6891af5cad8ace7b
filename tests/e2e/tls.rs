//! Viewer HTTPS and HTTP/2: a real rustls client against the node's HTTPS listener with
//! certificates made per test (rcgen), HTTP/1.1 and HTTP/2 chosen by ALPN, HTTP/2 with prior
//! knowledge on the plain listener, `viewer_protocol`, certificate rotation, and handshakes
//! that fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use edge_runtime::Config;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio_rustls::TlsConnector;

use crate::harness::{read_reply, reply, Origin, Reply, TestNode};

/// A self-signed certificate for `localhost`, written as PEM files `NAME.pem`, `NAME-key.pem`.
fn write_pair(dir: &Path, name: &str) -> Result<CertificateDer<'static>> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?.self_signed(&key)?;
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
    std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem())?;
    Ok(cert.der().clone())
}

/// The `[server]` lines of an HTTPS listener on port 0 with the pair `name` in `dir`.
fn tls_server(dir: &Path, name: &str) -> String {
    let path = |file: String| format!("{:?}", dir.join(file).display().to_string());
    format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert = {}\ntls_key = {}\n",
        path(format!("{name}.pem")),
        path(format!("{name}-key.pem"))
    )
}

/// One viewer connection, HTTP/1.1 or HTTP/2.
enum Conn {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// What a TLS handshake settled.
struct Opened {
    conn: Conn,
    alpn: Option<Vec<u8>>,
    /// The certificate the node presented.
    cert: CertificateDer<'static>,
}

/// Connects over TLS trusting `roots`, offering `alpn`, and speaks what the node chose.
async fn open_tls(
    addr: std::net::SocketAddr,
    roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Opened> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let session = tls.get_ref().1;
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .context("no server certificate")?
        .clone();
    let conn = if alpn.as_deref() == Some(b"h2") {
        let (send, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Conn::H2(send)
    } else {
        let (send, connection) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Conn::H1(send)
    };
    Ok(Opened { conn, alpn, cert })
}

/// HTTP/2 with prior knowledge over plain TCP.
async fn open_h2c(addr: std::net::SocketAddr) -> Result<Conn> {
    let tcp = TcpStream::connect(addr).await?;
    let (send, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(Conn::H2(send))
}

/// HTTP/1.1 over plain TCP.
async fn open_h1(addr: std::net::SocketAddr) -> Result<Conn> {
    let tcp = TcpStream::connect(addr).await?;
    let (send, connection) = http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    Ok(Conn::H1(send))
}

impl Conn {
    /// Sends `method path` for host `localhost` (`Host` on HTTP/1.1, `:authority` on HTTP/2)
    /// and reads the whole response, within 10 s.
    async fn send(&mut self, method: &str, path: &str) -> Result<Reply> {
        let response = match self {
            Conn::H1(send) => {
                let request = Request::builder()
                    .method(method)
                    .uri(path)
                    .header("host", "localhost")
                    .body(Full::default())?;
                send.ready().await?;
                tokio::time::timeout(Duration::from_secs(10), send.send_request(request)).await
            }
            Conn::H2(send) => {
                let request = Request::builder()
                    .method(method)
                    .uri(format!("https://localhost{path}"))
                    .body(Full::default())?;
                send.ready().await?;
                tokio::time::timeout(Duration::from_secs(10), send.send_request(request)).await
            }
        }
        .context("no response headers within 10 s")??;
        read_reply(response).await
    }

    async fn get(&mut self, path: &str) -> Result<Reply> {
        self.send("GET", path).await
    }
}

/// A node in front of `origin` (behavior `*`, plus `behavior` lines) with an HTTPS listener
/// presenting the pair `name` from `dir`.
async fn tls_node(origin: &Origin, dir: &Path, name: &str, behavior: &str) -> Result<TestNode> {
    TestNode::start_with_server(
        &tls_server(dir, name),
        &format!(
            "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n{behavior}\n",
            origin.url()
        ),
    )
    .await
}

fn tls_addr(node: &TestNode) -> Result<std::net::SocketAddr> {
    node.node
        .tls_addr()
        .context("the node has no HTTPS listener")
}

#[tokio::test(flavor = "multi_thread")]
async fn alpn_picks_http2_or_http11_and_the_origin_hears_https() -> Result<()> {
    let origin = Origin::fixed("hello", &[("cache-control", "no-store")]).await?;
    let dir = tempfile::tempdir()?;
    let cert = write_pair(dir.path(), "edge")?;
    let node = tls_node(&origin, dir.path(), "edge", "").await?;
    let addr = tls_addr(&node)?;

    for (offer, expect) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], Some(b"h2".to_vec())),
        (&[b"http/1.1".as_slice()][..], Some(b"http/1.1".to_vec())),
        (&[][..], None),
    ] {
        let mut opened = open_tls(addr, std::slice::from_ref(&cert), offer).await?;
        assert_eq!(opened.alpn, expect, "offered {offer:?}");
        let reply = opened.conn.get("/page?x=1").await?;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "hello");
        let received = origin.last();
        assert_eq!(received.uri, "/page?x=1");
        assert_eq!(received.header("x-forwarded-proto"), Some("https"));
        // HTTP/2's `:authority` reaches the origin as the host, as HTTP/1.1's `Host` does.
        assert_eq!(received.header("x-forwarded-host"), Some("localhost"));
    }
    assert_eq!(origin.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_listener_speaks_http2_with_prior_knowledge() -> Result<()> {
    let origin = Origin::fixed("plain", &[("cache-control", "no-store")]).await?;
    let node = TestNode::in_front_of(&origin, "").await?;
    let mut h2 = open_h2c(node.node.addr()).await?;
    let reply = h2.get("/x").await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "plain");
    assert_eq!(origin.last().header("x-forwarded-proto"), Some("http"));
    assert_eq!(origin.last().header("x-forwarded-host"), Some("localhost"));
    // HTTP/1.1 on the same listener is unchanged.
    let mut h1 = open_h1(node.node.addr()).await?;
    assert_eq!(h1.get("/x").await?.text(), "plain");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miss_over_http11_is_a_hit_over_http2() -> Result<()> {
    let origin = Origin::fixed("cached", &[("cache-control", "max-age=60")]).await?;
    let dir = tempfile::tempdir()?;
    let cert = write_pair(dir.path(), "edge")?;
    let node = tls_node(&origin, dir.path(), "edge", "").await?;

    let mut h1 = open_h1(node.node.addr()).await?;
    let miss = h1.get("/obj?v=1").await?;
    assert_eq!(miss.x_cache(), "Miss");

    let mut h2 = open_tls(tls_addr(&node)?, &[cert], &[b"h2"]).await?.conn;
    let hit = h2.get("/obj?v=1").await?;
    assert_eq!(
        hit.x_cache(),
        "Hit",
        "the same host and path make the same key"
    );
    assert_eq!(hit.text(), "cached");
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_stream_does_not_stall_others_on_one_http2_connection() -> Result<()> {
    let release = Arc::new(Notify::new());
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let origin = {
        let release = Arc::clone(&release);
        Origin::start(move |received| {
            let release = Arc::clone(&release);
            let arrived = arrived_tx.clone();
            async move {
                if received.uri == "/slow" {
                    let _ = arrived.send(());
                    release.notified().await;
                }
                reply(200, &[("cache-control", "no-store")], received.uri)
            }
        })
        .await?
    };
    let dir = tempfile::tempdir()?;
    let cert = write_pair(dir.path(), "edge")?;
    let node = tls_node(&origin, dir.path(), "edge", "").await?;
    let opened = open_tls(tls_addr(&node)?, &[cert], &[b"h2"]).await?;
    let Conn::H2(send) = opened.conn else {
        bail!("expected HTTP/2");
    };

    let mut slow_conn = Conn::H2(send.clone());
    let slow = tokio::spawn(async move { slow_conn.get("/slow").await });
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .context("the slow request never reached the origin")?;

    // The slow stream is still open at the origin; another stream on the same connection is
    // answered meanwhile.
    let fast = Conn::H2(send).get("/fast").await?;
    assert_eq!(fast.text(), "/fast");
    assert!(
        !slow.is_finished(),
        "the slow stream finished before it was released"
    );

    release.notify_one();
    let slow = slow.await??;
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.text(), "/slow");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn viewer_protocol_redirects_or_refuses_plain_http() -> Result<()> {
    let origin = Origin::fixed("secret", &[("cache-control", "no-store")]).await?;
    let dir = tempfile::tempdir()?;
    let cert = write_pair(dir.path(), "edge")?;
    let node = TestNode::start_with_server(
        &tls_server(dir.path(), "edge"),
        &format!(
            "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n\
             [[behaviors]]\npath = \"/private/*\"\norigin = \"app\"\nviewer_protocol = \"https-only\"\n\n\
             [[behaviors]]\npath = \"/open/*\"\norigin = \"app\"\n\n\
             [[behaviors]]\npath = \"*\"\norigin = \"app\"\nmethods = [\"GET\", \"HEAD\", \"POST\"]\nviewer_protocol = \"redirect-to-https\"\n",
            origin.url()
        ),
    )
    .await?;
    let tls_port = tls_addr(&node)?.port();
    let mut plain = open_h1(node.node.addr()).await?;

    let get = plain.get("/shop/cart?item=7&q=a%20b").await?;
    assert_eq!(get.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        get.header("location"),
        Some(format!("https://localhost:{tls_port}/shop/cart?item=7&q=a%20b").as_str())
    );
    assert_eq!(get.x_cache(), "Redirect");
    // Another method is redirected with 307, so the viewer resends the same method and body.
    let post = plain.send("POST", "/shop/order").await?;
    assert_eq!(post.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        post.header("location"),
        Some(format!("https://localhost:{tls_port}/shop/order").as_str())
    );

    let refused = plain.get("/private/report").await?;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(plain.get("/open/page").await?.text(), "secret");
    assert_eq!(
        origin.count(),
        1,
        "only allow-all reached the origin over HTTP"
    );

    let mut https = open_tls(tls_addr(&node)?, &[cert], &[b"h2"]).await?.conn;
    assert_eq!(https.get("/shop/cart").await?.text(), "secret");
    assert_eq!(https.get("/private/report").await?.text(), "secret");
    assert_eq!(origin.count(), 3);
    Ok(())
}

/// Writes `edge.toml` in `dir` naming `certs/edge.pem` and `certs/edge-key.pem` (relative to
/// the config file) and returns its path.
fn config_file(dir: &Path, origin: &Origin) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("certs"))?;
    let path = dir.join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n\
             tls_cert = \"certs/edge.pem\"\ntls_key = \"certs/edge-key.pem\"\n\n\
             [origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n\
             [[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
            origin.url()
        ),
    )?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_rotates_the_certificate_without_dropping_connections() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    let dir = tempfile::tempdir()?;
    let path = config_file(dir.path(), &origin)?;
    let certs = dir.path().join("certs");
    let old = write_pair(&certs, "edge")?;
    let node = edge_runtime::start(Config::load(&path)?, std::future::pending()).await?;
    let addr = node.tls_addr().context("no HTTPS listener")?;

    let mut open = open_tls(addr, std::slice::from_ref(&old), &[b"h2"]).await?;
    assert_eq!(open.cert, old);
    assert_eq!(open.conn.get("/a").await?.text(), "ok");

    // What SIGHUP does (`edge serve`'s handler): load the config again, which loads the
    // files again, and swap the node to it.
    let new = write_pair(&certs, "edge")?;
    node.edge().reload(Config::load(&path)?)?;
    assert_eq!(
        open.conn.get("/b").await?.text(),
        "ok",
        "the open connection keeps working"
    );
    let roots = [old.clone(), new.clone()];
    let fresh = open_tls(addr, &roots, &[b"h2"]).await?;
    assert_eq!(fresh.cert, new, "a new connection sees the new certificate");

    // A broken file on reload: the config is refused and the current certificate stays.
    std::fs::write(
        certs.join("edge.pem"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )?;
    let error = Config::load(&path).expect_err("a broken certificate is refused");
    let message = error.to_string();
    assert!(
        message.contains("`server.tls_cert`") && message.contains("edge.pem"),
        "{message}"
    );
    let after = open_tls(addr, &roots, &[b"http/1.1"]).await?;
    assert_eq!(after.cert, new);
    assert_eq!(open.conn.get("/c").await?.text(), "ok");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_garbage_pair_names_the_key_and_the_file() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let dir = tempfile::tempdir()?;
    let path = config_file(dir.path(), &origin)?;
    let certs = dir.path().join("certs");

    let message = Config::load(&path).expect_err("no files").to_string();
    assert!(
        message.contains("`server.tls_cert`") && message.contains("certs/edge.pem"),
        "{message}"
    );

    write_pair(&certs, "edge")?;
    std::fs::write(certs.join("edge-key.pem"), "not a key")?;
    let message = Config::load(&path).expect_err("garbage key").to_string();
    assert!(
        message.contains("`server.tls_key`") && message.contains("certs/edge-key.pem"),
        "{message}"
    );

    // A key from another pair does not match the certificate.
    write_pair(&certs, "other")?;
    std::fs::copy(certs.join("other-key.pem"), certs.join("edge-key.pem"))?;
    let message = Config::load(&path).expect_err("mismatched key").to_string();
    assert!(
        message.contains("`server.tls_key`") && message.contains("does not match"),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_tls_port_is_counted_and_the_node_keeps_serving() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    let dir = tempfile::tempdir()?;
    let cert = write_pair(dir.path(), "edge")?;
    let node = tls_node(&origin, dir.path(), "edge", "").await?;
    let addr = tls_addr(&node)?;

    // Plain HTTP to the HTTPS port: not a ClientHello.
    let mut raw = TcpStream::connect(addr).await?;
    raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut answer))
        .await
        .context("the node did not close the connection")??;
    let metrics = node.node.node().metrics().render(node.node.node().cache());
    assert!(
        metrics.contains("edge_tls_handshake_failures_total 1"),
        "{metrics}"
    );

    let mut ok = open_tls(addr, &[cert], &[b"h2"]).await?.conn;
    assert_eq!(ok.get("/").await?.text(), "ok");
    Ok(())
}

/// A fleet shares one config, so a parent has the edge's `viewer_protocol` too; the edge's tier
/// request reaches it over plain HTTP and must not be redirected or refused there: the edge
/// already applied the policy to the viewer.
#[tokio::test(flavor = "multi_thread")]
async fn a_parent_serves_tier_requests_of_a_redirect_to_https_behavior() -> Result<()> {
    let origin = Origin::fixed("through the tier", &[("cache-control", "max-age=60")]).await?;
    let dir = tempfile::tempdir()?;
    let cert = write_pair(dir.path(), "node")?;
    let token = dir.path().join("tier-token");
    std::fs::write(&token, "tier-secret-for-tls\n")?;
    let policy = "viewer_protocol = \"redirect-to-https\"";
    let tier = |parents: &str| {
        format!(
            "{policy}\n\n[tier]\nparents = [{parents}]\ntoken_file = {:?}\n",
            token.display().to_string()
        )
    };
    let parent = tls_node(&origin, dir.path(), "node", &tier("")).await?;
    let edge = tls_node(
        &origin,
        dir.path(),
        "node",
        &tier(&format!("\"http://{}\"", parent.node.addr())),
    )
    .await?;

    let mut viewer = open_tls(tls_addr(&edge)?, std::slice::from_ref(&cert), &[b"h2"]).await?;
    let reply = viewer.conn.get("/page").await?;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.headers);
    assert_eq!(reply.text(), "through the tier");
    assert_eq!(origin.count(), 1);
    // The origin behind the parent hears what the viewer used.
    assert_eq!(origin.last().header("x-forwarded-proto"), Some("https"));
    Ok(())
}
