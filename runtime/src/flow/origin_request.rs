//! origin-request: the request exactly as the origin will receive it.
//!
//! Proxy headers are set here (hop-by-hop removed, `Via`, `X-Forwarded-*`), and a request that
//! fills the cache asks for the full object: the viewer's conditional and range headers are
//! removed (the cache answers those itself) and a stale copy's validators are added instead.
//! A behavior's `origin-request` edge function will run here (functions issue).

use http::header::{
    HOST, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED,
    RANGE,
};
use http::request::Parts;
use http::{HeaderValue, Request, Version};
use http_body::Body;

use super::RequestCtx;
use crate::body::EdgeBody;
use crate::cache::CachedObject;
use crate::proxy_headers::{
    add_forwarded_for, add_via, strip_hop_by_hop, X_FORWARDED_HOST, X_FORWARDED_PROTO,
};

/// A request ready for an origin.
pub struct OriginRequest {
    /// The request; its URI is origin-form (path and query).
    pub request: Request<EdgeBody>,
    /// Whether it may be sent to another target after a connect failure: idempotent method
    /// (RFC 9110 §9.2.2) and no body to replay.
    pub replayable: bool,
}

/// Builds the origin request. `fill` is `None` for a pass-through, `Some(stale)` when the
/// response will fill the cache (revalidating `stale` if given).
pub fn prepare(
    ctx: &RequestCtx,
    parts: &Parts,
    body: EdgeBody,
    fill: Option<Option<&CachedObject>>,
) -> OriginRequest {
    let replayable = parts.method.is_idempotent() && body.is_end_stream();
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/")
        .parse()
        .unwrap_or_default();
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    *headers = parts.headers.clone();
    strip_hop_by_hop(headers);
    add_via(headers);
    add_forwarded_for(headers, ctx.viewer.ip());
    if let Some(host) = parts.headers.get(HOST) {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));

    if let Some(stale) = fill {
        for name in [
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_MATCH,
            IF_UNMODIFIED_SINCE,
            IF_RANGE,
            RANGE,
        ] {
            headers.remove(name);
        }
        if let Some(stale) = stale {
            if let Some(etag) = &stale.etag {
                headers.insert(IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = stale.headers.get(LAST_MODIFIED) {
                headers.insert(IF_MODIFIED_SINCE, lm.clone());
            }
        }
    }
    OriginRequest {
        request,
        replayable,
    }
}
