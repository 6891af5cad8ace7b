//! A dynamic origin: HTTP and HTTPS targets behind one name, balanced round-robin like an ALB,
//! with pooled keep-alive connections: HTTP/1.1 for an `http` target ([`h1_pool`]), HTTP/2
//! where an `https` target offers it ([`client`]).
//!
//! A target that refuses connections or does not accept one in time is marked down for
//! [`DEFAULT_DOWN_TIME`] and skipped; the request then goes to the next target if it can be
//! replayed (the caller decides: idempotent method, empty body). When every target is down the
//! pool still tries them, since a target may have come back and an attempt costs little. A
//! request tries each target at most once, so it fails within targets × `connect_timeout`.
//! A TLS handshake that fails (a certificate that does not verify) counts as a failed connect:
//! the request was not sent.
//!
//! [`client`]: super::client
//! [`h1_pool`]: super::h1_pool

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use rustls::pki_types::ServerName;

use super::client::{self, OriginClient};
use super::h1_pool::{self, H1Pool};
use super::resend;
use super::Error;
use crate::body::{BodyError, EdgeBody};
use crate::config::{OriginTls, Target};
use crate::interim::InterimSink;

/// How long a failed target is skipped; long enough not to pay a failed connect per request,
/// short enough that a restarted app is back in rotation quickly.
pub const DEFAULT_DOWN_TIME: Duration = Duration::from_secs(10);

struct TargetState {
    target: Target,
    /// `Host` for requests to this target, built once.
    host: Option<HeaderValue>,
    /// The name its certificate must carry (https targets), for error messages.
    tls_name: String,
    /// Its connections, for an `http` target; `https` ones go through `DynamicPool::client`.
    h1: Option<Arc<H1Pool>>,
    /// Milliseconds since `DynamicPool::epoch` until which the target is skipped.
    down_until_ms: AtomicU64,
}

/// One `type = "http"` origin.
pub struct DynamicPool {
    name: String,
    targets: Vec<TargetState>,
    next: AtomicUsize,
    client: OriginClient,
    connect_timeout: Duration,
    response_timeout: Duration,
    epoch: Instant,
}

enum AttemptError {
    /// No connection was made: the request was not sent, another target may be tried.
    Connect(Error),
    /// The request may have reached the target.
    Other(Error),
}

impl DynamicPool {
    /// A pool over `targets` (non-empty, checked by config validation).
    pub fn new(
        name: &str,
        targets: Vec<Target>,
        connect_timeout: Duration,
        response_timeout: Duration,
        tls: &OriginTls,
    ) -> Self {
        DynamicPool {
            name: name.to_owned(),
            targets: targets
                .into_iter()
                .map(|target| TargetState {
                    host: target_host(&target, tls.server_name.as_ref()),
                    tls_name: match &tls.server_name {
                        Some(name) => name.to_str().into_owned(),
                        None => target.authority.host().to_owned(),
                    },
                    h1: (target.scheme == http::uri::Scheme::HTTP).then(|| {
                        H1Pool::new(target.authority.clone(), connect_timeout, response_timeout)
                    }),
                    target,
                    down_until_ms: AtomicU64::new(0),
                })
                .collect(),
            next: AtomicUsize::new(0),
            client: client::build(connect_timeout, tls),
            connect_timeout,
            response_timeout,
            epoch: Instant::now(),
        }
    }

    /// Sends the request to the next healthy target, failing over on connect errors when
    /// `replayable`.
    pub async fn fetch(
        &self,
        request: Request<EdgeBody>,
        replayable: bool,
        interim: Option<&InterimSink>,
    ) -> Result<Response<EdgeBody>, Error> {
        let (mut parts, body) = request.into_parts();
        let mut body = Some(body);
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let is_up = |i: &usize| self.targets[*i].down_until_ms.load(Ordering::Relaxed) <= now;
        let ring = || (0..n).map(move |i| (start + i) % n);
        // The order is fixed before the first attempt: a lazy "up, then down" chain re-read the
        // down marks that failed attempts had just set, and tried every target twice.
        let many: Vec<usize>;
        let order: &[usize] = if n == 1 {
            &[0]
        } else {
            many = ring()
                .filter(is_up)
                .chain(ring().filter(|i| !is_up(i)))
                .collect();
            &many
        };

        let mut failures = Vec::new();
        for (attempt, &index) in order.iter().enumerate() {
            let Some(attempt_body) = body.take() else {
                break;
            };
            let state = &self.targets[index];
            // The headers are copied only for an attempt that another may follow.
            let headers = if replayable && attempt + 1 < order.len() {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let request = self.target_request(&parts, state, headers, attempt_body, interim);
            match self.attempt(state, request, replayable, interim).await {
                Ok(mut response) => {
                    state.down_until_ms.store(0, Ordering::Relaxed);
                    drop_conflicting_length(&self.name, &state.target, response.headers_mut());
                    return Ok(response);
                }
                Err(AttemptError::Connect(e)) => {
                    tracing::warn!(origin = %self.name, target = %state.target.authority, error = %e, "target marked down");
                    let until = self.now_ms() + DEFAULT_DOWN_TIME.as_millis() as u64;
                    state.down_until_ms.store(until, Ordering::Relaxed);
                    if replayable {
                        body = Some(EdgeBody::Empty);
                    }
                    failures.push(e);
                }
                Err(AttemptError::Other(e)) => return Err(e),
            }
        }
        if failures.len() == 1 {
            return Err(failures.remove(0));
        }
        Err(Error::Unreachable {
            origin: self.name.clone(),
            attempts: failures,
        })
    }

    async fn attempt(
        &self,
        state: &TargetState,
        request: Request<EdgeBody>,
        replayable: bool,
        interim: Option<&InterimSink>,
    ) -> Result<Response<EdgeBody>, AttemptError> {
        match &state.h1 {
            Some(pool) => {
                // The pool keeps the response timeout on each connection.
                match pool.send(request, replayable, interim).await {
                    Ok(response) => Ok(response),
                    Err(h1_pool::SendError::Timeout) => {
                        Err(AttemptError::Other(self.response_timeout_error(state)))
                    }
                    Err(h1_pool::SendError::Connect(e)) => Err(AttemptError::Connect(
                        if e.kind() == std::io::ErrorKind::TimedOut {
                            self.connect_timeout_error(state)
                        } else {
                            self.refused_error(state, e.into())
                        },
                    )),
                    Err(h1_pool::SendError::Exchange(e)) => {
                        Err(AttemptError::Other(self.exchange_error(state, e.into())))
                    }
                }
            }
            None => {
                // Boxed: inline, this 1.6 KB future would size every `http` target's request
                // future too.
                let send = resend::on_legacy_client(&self.client, request, replayable, interim);
                match Box::pin(tokio::time::timeout(self.response_timeout, send)).await {
                    Ok(Ok(response)) => Ok(response.map(EdgeBody::Incoming)),
                    Err(_elapsed) => Err(AttemptError::Other(self.response_timeout_error(state))),
                    Ok(Err(e)) if e.is_connect() => Err(AttemptError::Connect(
                        if let Some(tls) = client::tls_error(&e) {
                            let reason = match tls {
                                rustls::Error::InvalidCertificate(_) => {
                                    format!("certificate not trusted for {}: {tls}", state.tls_name)
                                }
                                _ => format!("TLS handshake with {} failed: {tls}", state.tls_name),
                            };
                            Error::Tls {
                                origin: self.name.clone(),
                                target: state.target.authority.to_string(),
                                reason,
                            }
                        } else if is_timed_out(&e) {
                            self.connect_timeout_error(state)
                        } else {
                            self.refused_error(state, e.into())
                        },
                    )),
                    Ok(Err(e)) => Err(AttemptError::Other(self.exchange_error(state, e.into()))),
                }
            }
        }
    }

    fn response_timeout_error(&self, state: &TargetState) -> Error {
        Error::ResponseTimeout {
            origin: self.name.clone(),
            target: state.target.authority.to_string(),
            timeout: self.response_timeout,
        }
    }

    fn refused_error(&self, state: &TargetState, source: BodyError) -> Error {
        Error::Refused {
            origin: self.name.clone(),
            target: state.target.authority.to_string(),
            source,
        }
    }

    fn connect_timeout_error(&self, state: &TargetState) -> Error {
        Error::ConnectTimeout {
            origin: self.name.clone(),
            target: state.target.authority.to_string(),
            timeout: self.connect_timeout,
        }
    }

    /// A failure after connecting; a request body that failed is the viewer's, and hyper
    /// reports it as its own error: a broken upload must not be blamed on the origin.
    fn exchange_error(&self, state: &TargetState, error: BodyError) -> Error {
        if crate::body::is_viewer_body_error(&*error) {
            Error::ViewerBody {
                origin: self.name.clone(),
                source: error,
            }
        } else {
            Error::Exchange {
                origin: self.name.clone(),
                target: state.target.authority.to_string(),
                source: error,
            }
        }
    }

    /// The `Host` header requests to the first target carry (what an S3 request is signed with).
    pub(super) fn first_host(&self) -> Option<&HeaderValue> {
        self.targets.first().and_then(|t| t.host.as_ref())
    }

    /// The request as one target receives it: the URI its connection needs, `Host` set to the
    /// target (the viewer's host travels in `X-Forwarded-Host`, set by `origin_request`).
    fn target_request(
        &self,
        parts: &http::request::Parts,
        state: &TargetState,
        headers: HeaderMap,
        body: EdgeBody,
        interim: Option<&InterimSink>,
    ) -> Request<EdgeBody> {
        // Only origin-form paths reach here (`viewer_request::normalize` refuses others), but a
        // request target is viewer input: fall back to `/` rather than trust it.
        let path = parts
            .uri
            .path_and_query()
            .filter(|pq| pq.as_str().starts_with('/'))
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // A connection of our own pool is already the target's and takes the origin form;
        // hyper-util's client picks the connection by the absolute URI.
        let uri = if state.h1.is_some() {
            Uri::from(path)
        } else {
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(state.target.scheme.clone());
            uri.authority = Some(state.target.authority.clone());
            uri.path_and_query = Some(path);
            Uri::from_parts(uri).expect(
                "a config-validated scheme and authority with an origin-form path form a URI",
            )
        };
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        if let Some(host) = &state.host {
            request.headers_mut().insert(HOST, host.clone());
        }
        if let Some(sink) = interim {
            sink.attach(&mut request);
        }
        request
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// hyper's client reads a response body by `Transfer-Encoding` when it is present and leaves
/// every header in place. A `Content-Length` beside it describes nothing that was read: RFC 9112
/// §6.3 says the transfer coding wins and an intermediary must remove the length before
/// forwarding. Left in, it went on to the viewer (the transfer coding is hop-by-hop and goes)
/// and announced 5 bytes of an 11-byte body.
fn drop_conflicting_length(origin: &str, target: &Target, headers: &mut HeaderMap) {
    if headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH) {
        tracing::warn!(origin, target = %target.authority, "origin sent both Content-Length and Transfer-Encoding; the length is dropped");
        headers.remove(CONTENT_LENGTH);
    }
}

/// `Host` for a target: its authority, as CloudFront sends the origin's domain name. An https
/// target reached by IP with `tls_server_name` gets that name instead, since a virtual host
/// behind TLS is selected by the name its certificate carries (the port kept unless default).
fn target_host(target: &Target, server_name: Option<&ServerName<'static>>) -> Option<HeaderValue> {
    match server_name {
        Some(name) if target.scheme == http::uri::Scheme::HTTPS => {
            let name = name.to_str();
            match target.authority.port_u16() {
                Some(port) if port != 443 => HeaderValue::from_str(&format!("{name}:{port}")).ok(),
                _ => HeaderValue::from_str(&name).ok(),
            }
        }
        _ => HeaderValue::from_str(target.authority.as_str()).ok(),
    }
}

/// Whether a connect error was the connect timeout rather than a refusal.
fn is_timed_out(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source = error.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = e.source();
    }
    false
}
