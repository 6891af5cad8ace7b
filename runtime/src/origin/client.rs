//! The HTTP client every network origin uses: `http` and `https` targets through one pooled
//! hyper client, TLS by rustls (ring) with the webpki roots plus the origin's `ca_file`, and
//! HTTP/2 on connections where the origin offers `h2` by ALPN.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BodyError as BoxError, EdgeBody};
use crate::config::OriginTls;

/// Idle pooled connections are closed after this; below common app servers' keep-alive (Node's
/// 5 s default is the exception, and a request that finds a just-closed connection is sent
/// again on another).
pub(super) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A pooled client for one origin's targets.
pub type OriginClient = Client<ConnectTimeout<HttpsConnector<HttpConnector>>, EdgeBody>;

/// Builds the client for one origin: `connect_timeout` bounds the TCP connect and the TLS
/// handshake together.
pub fn build(connect_timeout: Duration, tls: &OriginTls) -> OriginClient {
    let mut http = HttpConnector::new();
    // Without TCP_NODELAY a request whose headers and body go out in two writes waits for
    // the delayed ACK (40 ms on Linux loopback).
    http.set_nodelay(true);
    // The https connector refuses `http` URIs unless told otherwise.
    http.enforce_http(false);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(tls))
        .https_or_http();
    let builder = match &tls.server_name {
        Some(name) => builder.with_server_name_resolver(FixedServerNameResolver::new(name.clone())),
        None => builder,
    };
    let connector = ConnectTimeout {
        inner: builder.enable_http1().enable_http2().wrap_connector(http),
        timeout: connect_timeout,
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// A connector whose whole connect (TCP, then the TLS handshake) must finish in `timeout`:
/// a target that accepts connections but never completes a handshake is as down as one that
/// accepts none, and must fail over just as fast. The error is `TimedOut`, which the pool
/// reports as a connect timeout.
#[derive(Clone)]
pub struct ConnectTimeout<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower_service::Service<Uri> for ConnectTimeout<C>
where
    C: tower_service::Service<Uri, Error = BoxError>,
    C::Future: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                Err(_elapsed) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {timeout:?}"),
                )
                .into()),
            }
        })
    }
}

/// rustls on ring (named, not the process default, so that no other crate's provider choice
/// changes it) trusting the webpki roots and the origin's own.
fn tls_config(tls: &OriginTls) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // Config validation added each of these to a store already: none is rejected here.
    roots.add_parsable_certificates(tls.ca_certs.iter().cloned());
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls' default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Why a connect error was a failed TLS handshake, if it was: rustls' error, found under the
/// layers of `io::Error` that tokio-rustls and hyper-rustls wrap it in.
fn tls_failure<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // `io::Error::source` skips the error it wraps and returns that error's source.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(tls) = tls_failure(inner) {
                return Some(tls);
            }
        }
        next = e.source();
    }
    None
}

/// The rustls error of a client error that was a failed TLS handshake.
pub fn tls_error(error: &hyper_util::client::legacy::Error) -> Option<&rustls::Error> {
    error.source().and_then(tls_failure)
}
