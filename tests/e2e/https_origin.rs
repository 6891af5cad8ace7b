//! HTTPS targets of an http origin: real TLS origins started here (hyper over tokio-rustls,
//! certificates made by rcgen: a test CA and leaves it signs), verified by the node with the
//! webpki roots plus `ca_file`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::harness::{accept_until_shutdown, refused_addr, reply, Origin, Reply, TestNode};

/// A test CA, with its certificate written to `ca.pem` in a temp dir for `ca_file`.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    fn new() -> Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), issuer.pem())?;
        Ok(TestCa { issuer, dir })
    }

    /// The `ca_file` value: an absolute path, quoted for TOML.
    fn ca_file(&self) -> String {
        format!("{:?}", self.dir.path().join("ca.pem").display().to_string())
    }

    /// A leaf certificate for `names` (DNS names or IP addresses) and its key.
    fn leaf(&self, names: &[&str]) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
        let key = KeyPair::generate()?;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)?.signed_by(&key, &self.issuer)?;
        Ok((
            cert.der().clone(),
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        ))
    }
}

/// What a TLS origin saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    version: Version,
    /// The SNI name the client sent.
    sni: Option<String>,
    host: Option<String>,
    path: String,
}

/// An HTTPS origin on a loopback port, offering `alpn` (HTTP/1.1 and HTTP/2 served either
/// way); answers `200 secure PATH`, cacheable for a minute. Shut down on drop.
struct TlsOrigin {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TlsOrigin {
    async fn start(
        cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
        alpn: &[&[u8]],
    ) -> Result<TlsOrigin> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.0], cert.1)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let tx = accept_until_shutdown(listener, move |stream| {
            let acceptor = acceptor.clone();
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                // A handshake the node refuses ends here: nothing was requested.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = Seen {
                        version: req.version(),
                        sni: sni.clone(),
                        host: req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .map(str::to_owned),
                        path: req.uri().path().to_owned(),
                    };
                    log.lock().expect("origin log lock").push(seen);
                    let body = format!("secure {}", req.uri().path());
                    async move {
                        Ok::<_, std::convert::Infallible>(reply(
                            200,
                            &[("cache-control", "max-age=60")],
                            body,
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        });
        Ok(TlsOrigin {
            addr,
            seen,
            shutdown: Some(tx),
        })
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("origin log lock").clone()
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

const H1: &[&[u8]] = &[b"http/1.1"];
const H2: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A node with debug headers whose one behavior sends everything to `targets`, with these
/// extra lines in the origin's table.
async fn node(targets: &[String], origin_extra: &str) -> Result<TestNode> {
    let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            "[origins.app]\ntype = \"http\"\ntargets = [{}]\n{origin_extra}\n\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
            targets.join(", ")
        ),
    )
    .await
}

async fn debug_get(node: &TestNode, path: &str) -> Result<Reply> {
    node.send(
        node.request("GET", path)
            .header("x-edge-debug", "1")
            .body(Full::<Bytes>::default())?,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn https_target_trusted_by_ca_file_is_fetched_and_cached() -> Result<()> {
    let ca = TestCa::new()?;
    let origin = TlsOrigin::start(ca.leaf(&["127.0.0.1"])?, H1).await?;
    let node = node(&[origin.url()], &format!("ca_file = {}", ca.ca_file())).await?;

    let first = node.get("/page").await?;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.text(), "secure /page");
    assert_eq!(first.x_cache(), "Miss");
    let second = node.get("/page").await?;
    assert_eq!((second.status.as_u16(), second.x_cache()), (200, "Hit"));
    assert_eq!(second.text(), "secure /page");

    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].version, seen[0].path.as_str()),
        (Version::HTTP_11, "/page")
    );
    // Reached by IP: no SNI (RFC 6066 allows only names), `Host` is the target.
    assert_eq!(seen[0].sni, None);
    assert_eq!(
        seen[0].host.as_deref(),
        Some(origin.addr.to_string().as_str())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_certificate_is_502_that_says_so() -> Result<()> {
    let ca = TestCa::new()?;
    let origin = TlsOrigin::start(ca.leaf(&["127.0.0.1"])?, H1).await?;
    // No `ca_file`: the test CA is not among the webpki roots.
    let node = node(&[origin.url()], "").await?;

    let r = debug_get(&node, "/untrusted").await?;
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "502 Bad Gateway\n");
    let error = r.header("x-edge-error").unwrap_or_default();
    assert!(
        error.contains("certificate not trusted for 127.0.0.1") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(
        origin.seen().is_empty(),
        "no request crosses a refused handshake"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn certificate_for_another_name_is_502() -> Result<()> {
    let ca = TestCa::new()?;
    let origin = TlsOrigin::start(ca.leaf(&["other.internal"])?, H1).await?;
    let node = node(&[origin.url()], &format!("ca_file = {}", ca.ca_file())).await?;

    let r = debug_get(&node, "/wrong-name").await?;
    assert_eq!(r.status, 502);
    let error = r.header("x-edge-error").unwrap_or_default();
    assert!(
        error.contains("certificate not trusted for 127.0.0.1")
            && error.contains("not valid for name"),
        "{error}"
    );
    assert!(origin.seen().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_server_name_is_verified_and_sent_for_an_ip_target() -> Result<()> {
    let ca = TestCa::new()?;
    let origin = TlsOrigin::start(ca.leaf(&["app.internal"])?, H1).await?;
    let node = node(
        &[origin.url()],
        &format!(
            "ca_file = {}\ntls_server_name = \"app.internal\"",
            ca.ca_file()
        ),
    )
    .await?;

    let r = debug_get(&node, "/named").await?;
    assert_eq!(r.status, 200, "{:?}", r.header("x-edge-error"));
    assert_eq!(r.text(), "secure /named");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sni.as_deref(), Some("app.internal"));
    // The virtual host the certificate names, with the target's port.
    assert_eq!(
        seen[0].host.as_deref(),
        Some(format!("app.internal:{}", origin.addr.port()).as_str())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_is_used_when_the_origin_offers_it() -> Result<()> {
    let ca = TestCa::new()?;
    let h2 = TlsOrigin::start(ca.leaf(&["127.0.0.1"])?, H2).await?;
    let h1 = TlsOrigin::start(ca.leaf(&["127.0.0.1"])?, H1).await?;
    let ca_file = format!("ca_file = {}", ca.ca_file());
    let node_h2 = node(&[h2.url()], &ca_file).await?;
    let node_h1 = node(&[h1.url()], &ca_file).await?;

    for path in ["/one", "/two"] {
        let r = node_h2.get(path).await?;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, format!("secure {path}"))
        );
        let r = node_h1.get(path).await?;
        assert_eq!(r.status, 200);
    }
    let versions: Vec<Version> = h2.seen().iter().map(|s| s.version).collect();
    assert_eq!(versions, [Version::HTTP_2, Version::HTTP_2]);
    let versions: Vec<Version> = h1.seen().iter().map(|s| s.version).collect();
    assert_eq!(versions, [Version::HTTP_11, Version::HTTP_11]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_http_and_https_targets_fail_over_past_a_bad_certificate() -> Result<()> {
    let ca = TestCa::new()?;
    let other_ca = TestCa::new()?;
    // Signed by a CA the node does not trust.
    let untrusted = TlsOrigin::start(other_ca.leaf(&["127.0.0.1"])?, H2).await?;
    let plain =
        Origin::start(|r| async move { reply(200, &[], format!("plain {}", r.uri)) }).await?;
    let node_a = node(
        &[untrusted.url(), plain.url()],
        &format!("ca_file = {}", ca.ca_file()),
    )
    .await?;
    // Every request is answered, whichever target the round-robin starts with: a failed
    // handshake is a failed connect, retried on the next target.
    for i in 0..4 {
        let path = format!("/mixed-{i}");
        let r = debug_get(&node_a, &path).await?;
        assert_eq!(r.status, 200, "{:?}", r.header("x-edge-error"));
        assert_eq!(r.text(), format!("plain {path}"));
    }
    assert!(untrusted.seen().is_empty());
    assert_eq!(plain.count(), 4);

    // And the other way: a good https target behind a dead http one.
    let good = TlsOrigin::start(ca.leaf(&["127.0.0.1"])?, H2).await?;
    let dead = format!("http://{}", refused_addr().await?);
    let node_b = node(&[dead, good.url()], &format!("ca_file = {}", ca.ca_file())).await?;
    for i in 0..4 {
        let path = format!("/mixed-{i}");
        let r = debug_get(&node_b, &path).await?;
        assert_eq!(r.status, 200, "{:?}", r.header("x-edge-error"));
        assert_eq!(r.text(), format!("secure {path}"));
    }
    assert_eq!(good.seen().len(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_file_that_does_not_load_is_a_config_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("not-a-cert.pem");
    std::fs::write(&bad, "not PEM at all\n")?;
    for (file, expected) in [
        (bad.clone(), "holds no PEM certificate"),
        (dir.path().join("missing.pem"), "cannot load"),
    ] {
        let toml = format!(
            "[origins.app]\ntype = \"http\"\ntargets = [\"https://127.0.0.1:1\"]\nca_file = {:?}\n\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
            file.display().to_string()
        );
        let error = toml
            .parse::<edge_runtime::Config>()
            .err()
            .context("the config should be refused")?
            .to_string();
        assert!(
            error.contains("`origins.app.ca_file`")
                && error.contains(&file.display().to_string())
                && error.contains(expected),
            "{error}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_never_completes_the_handshake_fails_over_within_connect_timeout(
) -> Result<()> {
    // Accepts TCP connections and never answers the ClientHello.
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    let silent_addr = silent.local_addr()?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = silent.accept() => {
                    if let Ok((stream, _)) = accepted {
                        held.push(stream);
                    }
                }
            }
        }
    });
    let plain =
        Origin::start(|r| async move { reply(200, &[], format!("plain {}", r.uri)) }).await?;
    // The response timeout is far beyond the client's 10 s: only the connect timeout can
    // bound the handshake.
    let node = node(
        &[format!("https://{silent_addr}"), plain.url()],
        "connect_timeout = \"300ms\"\nresponse_timeout = \"60s\"",
    )
    .await?;
    let r = debug_get(&node, "/silent").await?;
    assert_eq!(r.status, 200, "{:?}", r.header("x-edge-error"));
    assert_eq!(r.text(), "plain /silent");
    let _ = stop.send(());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_an_https_target_closed_its_connection_under_is_sent_again() -> Result<()> {
    // The https twin of origin_pool's test: the first connection answers a request, then
    // closes under the next one, a keep-alive timeout crossing it on the wire.
    let ca = TestCa::new()?;
    let (cert, key) = ca.leaf(&["127.0.0.1"])?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let _shutdown = accept_until_shutdown(listener, move |stream| {
        let acceptor = acceptor.clone();
        let log = Arc::clone(&log);
        let accepted = Arc::clone(&accepted);
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let connection = accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            crate::origin_pool::answer_but_close_under_second(tls, connection, log).await;
        });
    });
    let node = node(&[url], &format!("ca_file = {}", ca.ca_file())).await?;
    let first = node.get("/a").await?;
    assert_eq!(
        (first.status.as_u16(), first.text()),
        (200, "0-0".to_owned())
    );
    let second = node.get("/b").await?;
    assert_eq!(
        (second.status.as_u16(), second.text()),
        (200, "1-0".to_owned()),
        "the GET lost with the closed connection went out again"
    );
    assert_eq!(
        *seen.lock().expect("origin log lock"),
        [
            "0: GET /a HTTP/1.1",
            "0: GET /b HTTP/1.1",
            "1: GET /b HTTP/1.1",
        ]
    );
    Ok(())
}
