//! The admin API: a separate listener (loopback by default) for operators and the `edge` CLI.
//! Every call needs `Authorization: Bearer <token>` when a token is configured; a call without
//! it gets 401 and changes nothing.
//!
//! Routes: functions ([`functions`]: upload, describe, list, test, publish, rollback, delete)
//! and invalidations ([`invalidation`]); key-value stores ([`kv`]: read, replace, patch).
//!
//! Two routes need no token, for orchestrators' probes: `GET /healthz` (200 while the process
//! serves) and `GET /readyz` (200 once the node listens with its config loaded and functions
//! compiled, 503 from the moment shutdown begins, so traffic moves elsewhere while in-flight
//! requests drain). Their bodies say nothing but the state.

pub mod functions;
pub mod invalidation;
pub mod kv;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::AdminConfig;
use crate::Edge;

/// What every admin handler returns.
pub type AdminResponse = Response<Full<Bytes>>;

/// Shared by every admin request.
pub struct Admin {
    /// The node.
    pub edge: Arc<Edge>,
    /// The admin settings.
    pub config: AdminConfig,
    /// Invalidations submitted so far.
    pub invalidations: invalidation::Invalidations,
    /// True once the node has begun shutting down: `/readyz` answers 503 from then on.
    pub draining: watch::Receiver<bool>,
}

/// Serves the admin API on `listener` until `shutdown` resolves. `draining` turns true when the
/// node begins shutting down; `shutdown` should resolve only once viewers are drained, so that
/// `/readyz` can say 503 meanwhile instead of refusing connections.
pub async fn serve(
    listener: TcpListener,
    edge: Arc<Edge>,
    config: AdminConfig,
    draining: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()>,
) {
    let admin = Arc::new(Admin {
        edge,
        config,
        invalidations: Default::default(),
        draining,
    });
    tracing::info!(addr = ?listener.local_addr().ok(), auth = admin.config.token.is_some(), "admin API listening");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let admin = Arc::clone(&admin);
                let service = service_fn(move |request| {
                    let admin = Arc::clone(&admin);
                    async move { Ok::<_, Infallible>(handle(&admin, request).await) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
            () = &mut shutdown => break,
        }
    }
}

async fn handle(admin: &Arc<Admin>, request: Request<Incoming>) -> AdminResponse {
    // Probes carry no token (kubelet cannot send a secret header without it sitting in the pod
    // spec), so these two answer anyone and reveal only the state.
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        match request.uri().path() {
            "/healthz" => return probe(StatusCode::OK, "ok\n"),
            "/readyz" if *admin.draining.borrow() => {
                return probe(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: shutting down\n",
                )
            }
            // The admin listener starts only after the config is loaded, the listeners are
            // bound and every function is compiled (`listener::start`): serving means ready.
            "/readyz" => return probe(StatusCode::OK, "ok\n"),
            _ => {}
        }
    }
    if !authorized(admin, &request) {
        let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let limit = match (&method, path.as_str()) {
        (&Method::POST, "/invalidations") => 1024 * 1024,
        _ => admin.config.max_upload_size,
    };
    let body = if matches!(method, Method::PUT | Method::POST | Method::PATCH) {
        match read_body(request, limit).await {
            Ok(body) => body,
            Err(response) => return response,
        }
    } else {
        Bytes::new()
    };
    // Compiling a module, fsyncing the data directory or sweeping the cache can take tens of
    // milliseconds: off the async workers, which serve viewers.
    let routed = {
        let (admin, method, path) = (Arc::clone(admin), method.clone(), path.clone());
        tokio::task::spawn_blocking(move || {
            if method == Method::GET && path == "/metrics" {
                return metrics(&admin, &accept);
            }
            route(&admin, &method, &path, &query, &body)
        })
        .await
    };
    let response = routed.unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("admin call failed: {e}"),
        )
    });
    tracing::info!(target: "edge::admin", %method, %path, status = response.status().as_u16(), "admin call");
    response
}

fn route(admin: &Admin, method: &Method, path: &str, query: &str, body: &[u8]) -> AdminResponse {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Function names are one path segment, percent-encoded by clients (`edge` does): handlers
    // see, and messages name, the decoded name.
    let decoded = |segment: &str| percent_decode_str(segment).decode_utf8_lossy().into_owned();
    match (method, segments.as_slice()) {
        (&Method::GET, ["functions"]) => functions::list(admin),
        (&Method::GET, ["functions", name]) => functions::describe(admin, &decoded(name)),
        (&Method::PUT, ["functions", name]) => functions::upload(admin, &decoded(name), body),
        (&Method::POST, ["functions", name, "test"]) => {
            functions::test(admin, &decoded(name), query, body)
        }
        (&Method::POST, ["functions", name, "publish"]) => {
            functions::publish(admin, &decoded(name), query)
        }
        (&Method::POST, ["functions", name, "rollback"]) => {
            functions::rollback(admin, &decoded(name))
        }
        (&Method::DELETE, ["functions", name]) => functions::delete(admin, &decoded(name)),
        (&Method::GET, ["kv"]) => kv::stores(admin),
        (&Method::GET, ["kv", store]) => kv::list(admin, store),
        (&Method::GET, ["kv", store, _, ..]) => kv::get(admin, store, path),
        (&Method::PUT, ["kv", store]) => kv::replace(admin, store, body),
        (&Method::PATCH, ["kv", store]) => kv::patch(admin, store, body),
        (&Method::POST, ["invalidations"]) => invalidation::create(admin, body),
        (&Method::GET, ["invalidations", id]) => invalidation::status(admin, id),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no admin route {method} {path}"),
        ),
    }
}

/// `GET /metrics`: OpenMetrics text, which is what the registry writes and what Prometheus asks
/// for first; Prometheus text 0.0.4 for a scraper whose `Accept` takes only that.
fn metrics(admin: &Admin, accept: &str) -> AdminResponse {
    let node = admin.edge.current();
    let open = node.metrics().render(node.cache());
    let (body, content_type) = if crate::metrics::wants_prometheus_text(accept) {
        (
            crate::metrics::to_prometheus_text(&open),
            crate::metrics::PROMETHEUS_CONTENT_TYPE,
        )
    } else {
        (open, crate::metrics::CONTENT_TYPE)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Constant-time token check, so the token cannot be guessed byte by byte from timings.
fn authorized(admin: &Admin, request: &Request<Incoming>) -> bool {
    let Some(token) = &admin.config.token else {
        return true;
    };
    // Auth schemes are case-insensitive (RFC 9110 §11.1): `bearer` is `Bearer`.
    let Some(given) = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start_matches(' '))
    else {
        return false;
    };
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Reads a request body of at most `limit` bytes, or the 413/400 response.
async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, AdminResponse> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body over the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let expects_continue = request
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // A client waiting for `100 Continue` has not sent the body: answer now, before hyper
    // sends the 100 (it does when the body is first read), and the body never travels.
    if expects_continue && declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = request.into_body();
    let mut buffer = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            buffer.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(4).max(DRAIN_LIMIT) {
            // Past this, stop reading: the client gets the answer and the connection closes.
            break;
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(buffer.freeze())
}

/// An oversized body is read and dropped up to this size before the 413 goes out: answering
/// while the client is still sending makes many clients see a reset instead of the answer.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// A plain-text probe answer that no cache in between keeps.
fn probe(status: StatusCode, body: &'static str) -> AdminResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl Serialize) -> AdminResponse {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|e| {
        format!("{{\"error\":\"cannot encode the response: {e}\"}}").into_bytes()
    });
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON error `{"error": message}`.
pub fn error(status: StatusCode, message: &str) -> AdminResponse {
    json(status, &serde_json::json!({ "error": message }))
}
