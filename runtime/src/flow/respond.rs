//! Responses the node builds itself: from a cached object, 304s for conditional requests,
//! errors, and the final `X-Cache` / `Age` headers every response gets.

use std::time::Instant;

use bytes::Bytes;
use http::header::{
    HeaderName, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_RANGE,
    CONTENT_TYPE, DATE, ETAG, EXPIRES, LAST_MODIFIED, VARY, VIA,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::{CachePhase, RequestCtx};
use crate::body::EdgeBody;
use crate::cache::CachedObject;
use crate::conditional::{is_conditional, is_not_modified, last_modified};
use crate::error::{Error, Side};
use crate::range::{self, RangeAnswer};
use crate::Node;

/// `X-Cache`: how the cache took part.
pub static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Headers a 304 keeps from the full response (RFC 9110 §15.4.5).
static NOT_MODIFIED_KEEPS: [HeaderName; 8] = [
    CACHE_CONTROL,
    CONTENT_LOCATION,
    DATE,
    ETAG,
    EXPIRES,
    LAST_MODIFIED,
    VARY,
    VIA,
];

/// A response from a cached object: the object itself, or 304 when the viewer's validators
/// match. HEAD gets the headers only.
pub fn from_cache(
    ctx: &mut RequestCtx,
    parts: &Parts,
    object: &CachedObject,
    phase: CachePhase,
) -> Response<EdgeBody> {
    ctx.cache = phase;
    ctx.age = Some(object.age(Instant::now()));
    if object.status == StatusCode::OK
        && is_not_modified(&parts.headers, object.etag.as_ref(), object.last_modified)
    {
        return not_modified(&object.headers);
    }
    let mut response = Response::new(EdgeBody::Empty);
    *response.headers_mut() = object.headers.clone();
    *response.status_mut() = object.status;
    if parts.method == Method::HEAD {
        return response;
    }
    let len = object.body.len() as u64;
    let answer = if object.status == StatusCode::OK {
        range::answer(
            &parts.headers,
            len,
            object.etag.as_ref(),
            object.headers.get(LAST_MODIFIED),
        )
    } else {
        RangeAnswer::Full
    };
    match answer {
        RangeAnswer::Full => *response.body_mut() = EdgeBody::full(object.body.clone()),
        RangeAnswer::Partial { start, end } => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let headers = response.headers_mut();
            headers.insert(
                CONTENT_RANGE,
                header_value(format!("bytes {start}-{end}/{len}")),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            // A slice shares the stored bytes: no copy.
            *response.body_mut() = EdgeBody::full(object.body.slice(start as usize..=end as usize));
        }
        RangeAnswer::Unsatisfiable => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let headers = response.headers_mut();
            headers.insert(CONTENT_RANGE, header_value(format!("bytes */{len}")));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
        }
    }
    response
}

fn header_value(text: String) -> HeaderValue {
    HeaderValue::from_str(&text).expect("digits, spaces, `-`, `/` and `*` are valid header bytes")
}

/// Turns a fresh 200 from the origin into a 304 when the viewer's validators match it. The
/// body is dropped here, but a body being stored keeps flowing into the cache.
pub fn not_modified_if_matching(parts: &Parts, response: Response<EdgeBody>) -> Response<EdgeBody> {
    if response.status() != StatusCode::OK || !is_conditional(&parts.headers) {
        return response;
    }
    let last_modified = last_modified(response.headers());
    if is_not_modified(&parts.headers, response.headers().get(ETAG), last_modified) {
        not_modified(response.headers())
    } else {
        response
    }
}

fn not_modified(headers: &HeaderMap) -> Response<EdgeBody> {
    let mut response = Response::new(EdgeBody::Empty);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    for name in &NOT_MODIFIED_KEEPS {
        for value in headers.get_all(name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

/// A short plain-text error response; the full error chain goes to the log.
pub fn error(node: &Node, ctx: &mut RequestCtx, error: &Error) -> Response<EdgeBody> {
    ctx.cache = CachePhase::Error;
    let status = error.status();
    let origin = ctx.origin.map(|i| node.config.origins[i].name.as_str());
    match error.side() {
        Side::Viewer => {
            tracing::debug!(request = ctx.id, status = status.as_u16(), error = %error, "request refused")
        }
        // `wasm::invoke::run` has logged it, on one line with the function's backtrace.
        Side::Function => {}
        Side::Origin | Side::Internal => {
            tracing::warn!(request = ctx.id, status = status.as_u16(), origin, error = %ErrorChain(error), "request failed")
        }
    }
    // Origin errors name the origin but not its targets' addresses, which viewers need not see.
    let message = match (error, origin) {
        (Error::Origin(e), Some(name)) if e.is_timeout() => format!("origin {name:?} timed out"),
        (Error::Origin(_), Some(name)) => format!("origin {name:?} is unreachable or failed"),
        _ => error.to_string(),
    };
    let body = Bytes::from(format!(
        "{} {}: {message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    ));
    let mut response = Response::new(EdgeBody::full(body.clone()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Error::MethodNotAllowed { allowed, .. } = error {
        if let Ok(allow) = HeaderValue::from_str(allowed) {
            headers.insert(ALLOW, allow);
        }
    }
    response
}

/// Adds `X-Cache` and, for responses that went through the cache, `Age`.
pub fn finish(ctx: &RequestCtx, mut response: Response<EdgeBody>) -> Response<EdgeBody> {
    let headers = response.headers_mut();
    headers.insert(
        X_CACHE.clone(),
        HeaderValue::from_static(ctx.cache.as_str()),
    );
    if let Some(age) = ctx.age {
        headers.insert(http::header::AGE, HeaderValue::from(age));
    }
    response
}

/// Displays an error with its sources, `a: b: c`.
struct ErrorChain<'e>(&'e dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
