//! The demo's dynamic origin: a small hyper app run inside the `edge demo` process, so the demo
//! needs nothing else started. It stands in for an application behind a load balancer.
//!
//! Routes: `/` (a signed-in viewer's home, private), `/api/hello` (JSON, not cacheable), `/api/time` (cacheable for 5 s), `/api/echo`
//! (any method; echoes what the origin received, proxy headers included).
//!
//! The demo also listens with HTTPS, on a self-signed certificate made at start
//! ([`self_signed_tls`]), unless its config sets `tls_listen` itself.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Port of the demo's HTTPS listener (the plain one is 8080); port 0 when the plain listener
/// was given port 0, so tests can run demos side by side.
const DEMO_TLS_PORT: u16 = 8443;

/// An HTTPS listener beside `listen` with a self-signed certificate for `localhost` and
/// `127.0.0.1`, made in memory (clients must skip verification: `curl -k`).
pub fn self_signed_tls(listen: SocketAddr) -> std::io::Result<crate::config::TlsConfig> {
    let key = rcgen::KeyPair::generate().map_err(std::io::Error::other)?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .and_then(|params| params.self_signed(&key))
        .map_err(std::io::Error::other)?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let signing = rustls::crypto::ring::sign::any_supported_type(&der.into())
        .map_err(std::io::Error::other)?;
    let port = if listen.port() == 0 { 0 } else { DEMO_TLS_PORT };
    Ok(crate::config::TlsConfig {
        listen: SocketAddr::new(listen.ip(), port),
        cert: "(self-signed, made by edge demo)".into(),
        key: "(in memory)".into(),
        certified: Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            signing,
        )),
    })
}

/// Starts one demo app instance named `name` on an ephemeral loopback port; it runs until the
/// process exits.
pub async fn start_demo_app(name: &'static str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let served = Arc::clone(&served);
            let service = service_fn(move |request| {
                let count = served.fetch_add(1, Ordering::Relaxed) + 1;
                async move { Ok::<_, Infallible>(answer(name, count, request).await) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok(addr)
}

async fn answer(name: &str, count: u64, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    let (status, cache_control, body) = match request.uri().path() {
        // The router sends viewers with a session cookie here for `/`: a per-user page.
        "/" => (
            StatusCode::OK,
            "private, no-store",
            format!("{{\"page\":\"home for a signed-in viewer\",\"instance\":\"{name}\",\"request\":{count}}}\n"),
        ),
        "/api/hello" => (
            StatusCode::OK,
            "no-store",
            format!("{{\"message\":\"hello from the demo app\",\"instance\":\"{name}\",\"request\":{count},\"at\":\"{now}\"}}\n"),
        ),
        "/api/time" => (StatusCode::OK, "public, max-age=5", format!("{{\"instance\":\"{name}\",\"at\":\"{now}\"}}\n")),
        "/api/echo" => {
            let mut body = format!("{} {} (instance {name})\n", request.method(), request.uri());
            for (n, v) in request.headers() {
                let _ = writeln!(body, "{n}: {}", String::from_utf8_lossy(v.as_bytes()));
            }
            let received = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let _ = write!(body, "\n{} body bytes\n", received.len());
            (StatusCode::OK, "no-store", body)
        }
        _ => (StatusCode::NOT_FOUND, "no-store", "{\"error\":\"no such route\"}\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    response
}
