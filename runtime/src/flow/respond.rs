//! Responses the node builds itself: from a cached object, 304s for conditional requests,
//! errors, and the final `X-Cache` / `Age` headers every response gets.

use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    HeaderName, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_RANGE,
    CONTENT_TYPE, DATE, ETAG, EXPIRES, LAST_MODIFIED, RANGE, TRANSFER_ENCODING, VARY, VIA,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Body as _;

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
    // The validators are looked up only for requests that can use them (most hits cannot).
    let ok = object.status == StatusCode::OK;
    if ok
        && is_conditional(&parts.headers)
        && is_not_modified(&parts.headers, object.etag().as_ref(), object.last_modified)
    {
        return not_modified(&object.headers.to_map());
    }
    let mut response = Response::new(EdgeBody::Empty);
    // The map has room in its index for the two headers `finish` adds (`X-Cache`, `Age`).
    *response.headers_mut() = object.headers.to_map();
    *response.status_mut() = object.status;
    if parts.method == Method::HEAD {
        return response;
    }
    let len = object.body.len() as u64;
    let answer = if ok && parts.headers.contains_key(RANGE) {
        range::answer(
            &parts.headers,
            len,
            object.etag().as_ref(),
            object.headers.get(&LAST_MODIFIED).as_ref(),
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

/// A short plain-text error response. Its body says what the viewer can act on: the reason
/// for a refused request (4xx), and for everything else only the status line's words, since
/// names of origins and functions, target addresses and Wasm backtraces are the operator's
/// business. The full error chain goes to the log and, on a debug request, `X-Edge-Error`.
pub fn error(node: &Node, ctx: &mut RequestCtx, error: &Error) -> Response<EdgeBody> {
    ctx.cache = CachePhase::Error;
    let status = error.status();
    let origin = ctx.origin.map(|i| node.config.origins[i].name.as_str());
    if let Some(debug) = &mut ctx.debug {
        debug.error = Some(ErrorChain(error).to_string());
    }
    match error.side() {
        Side::Viewer => {
            tracing::debug!(request = ctx.id, status = status.as_u16(), origin, error = %ErrorChain(error), "request refused")
        }
        // `wasm::invoke::run` has logged it, on one line with the function's backtrace.
        Side::Function => {}
        Side::Origin | Side::Internal => {
            tracing::warn!(request = ctx.id, status = status.as_u16(), origin, error = %ErrorChain(error), "request failed")
        }
    }
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = Bytes::from(match viewer_reason(error) {
        Some(detail) => format!("{} {reason}: {detail}\n", status.as_u16()),
        None => format!("{} {reason}\n", status.as_u16()),
    });
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

/// What a viewer is told about its own refused request; `None` for failures on the node's
/// side, whose details stay out of the response.
fn viewer_reason(error: &Error) -> Option<String> {
    match (error.side(), error) {
        // Its message names the origin the body was going to.
        (Side::Viewer, Error::Origin(_)) => {
            Some("the request body is malformed or incomplete".to_owned())
        }
        (Side::Viewer, error) => Some(error.to_string()),
        _ => None,
    }
}

/// Adds `X-Cache` and, for responses that went through the cache, `Age`.
pub fn finish(ctx: &RequestCtx, mut response: Response<EdgeBody>) -> Response<EdgeBody> {
    let headers = response.headers_mut();
    headers.insert(
        X_CACHE.clone(),
        HeaderValue::from_static(ctx.cache.as_str()),
    );
    if let Some(age) = ctx.age {
        headers.insert(http::header::AGE, age_value(age));
    }
    response
}

/// Ages below this have a prebuilt header value: most hits are on objects stored minutes ago.
const PREBUILT_AGES: usize = 4096;

/// The `Age` value for `age` seconds, without allocating for common ages (every hit sends one).
fn age_value(age: u64) -> HeaderValue {
    static PREBUILT: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let prebuilt = PREBUILT.get_or_init(|| {
        // One static string of all the numbers, which each value borrows: cloning a static
        // value copies a pointer, with no reference count to touch.
        let numbers: Vec<String> = (0..PREBUILT_AGES).map(|n| n.to_string()).collect();
        let all: &'static str = Box::leak(numbers.concat().into_boxed_str());
        let mut start = 0;
        numbers
            .iter()
            .map(|n| {
                let value = HeaderValue::from_static(&all[start..start + n.len()]);
                start += n.len();
                value
            })
            .collect()
    });
    usize::try_from(age)
        .ok()
        .and_then(|i| prebuilt.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(age))
}

/// Makes the response's framing headers describe the body hyper will write, whatever built the
/// response (origin, cache, function). The last step before a response leaves.
///
/// A `Content-Length` that disagreed with the body would cut the body short, or (with a body of
/// known size) make hyper write more bytes than announced, which the viewer reads as the start
/// of its next response on a keep-alive connection. So: a body of known size gets its true
/// length; a streamed body with a `Content-Length` is checked against it as it goes (a mismatch
/// aborts the connection); a `Transfer-Encoding` from anywhere is dropped, hyper chooses the
/// framing. HEAD responses and statuses without content keep what they have: there,
/// `Content-Length` describes the representation, not bytes on the wire (RFC 9110 §8.6).
pub fn frame(head: bool, mut response: Response<EdgeBody>) -> Response<EdgeBody> {
    response.headers_mut().remove(TRANSFER_ENCODING);
    let status = response.status();
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        response.headers_mut().remove(CONTENT_LENGTH);
        return response;
    }
    if head || status == StatusCode::NOT_MODIFIED {
        return response;
    }
    if let Some(exact) = response.body().size_hint().exact() {
        // A cached object's length is already right: keep it rather than build a new value.
        if announced_length(&response) != Some(exact) {
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(exact));
        }
        return response;
    }
    match announced_length(&response) {
        Some(length) => response.map(|body| EdgeBody::framed(body, length)),
        None => {
            // Several or unreadable values: send the body chunked rather than guess.
            response.headers_mut().remove(CONTENT_LENGTH);
            response
        }
    }
}

/// The response's `Content-Length`, when it has exactly one and it is digits only (RFC 9110
/// §8.6; `parse` alone would take `+5`, which is not a length on the wire).
fn announced_length(response: &Response<EdgeBody>) -> Option<u64> {
    let mut values = response.headers().get_all(CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(value), None) if value.as_bytes().iter().all(u8::is_ascii_digit) => {
            value.to_str().ok()?.parse::<u64>().ok()
        }
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, lengths: &[&str], body: EdgeBody) -> Response<EdgeBody> {
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(status).expect("status");
        for length in lengths {
            response.headers_mut().append(
                CONTENT_LENGTH,
                HeaderValue::from_str(length).expect("value"),
            );
        }
        response
            .headers_mut()
            .insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        response
    }

    fn lengths(response: &Response<EdgeBody>) -> Vec<&str> {
        response
            .headers()
            .get_all(CONTENT_LENGTH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    #[test]
    fn a_body_of_known_size_announces_its_true_length() {
        let framed = frame(false, response(200, &["5"], EdgeBody::full("hello world")));
        assert_eq!(lengths(&framed), ["11"]);
        assert!(!framed.headers().contains_key(TRANSFER_ENCODING));
        let signed = frame(
            false,
            response(200, &["+11"], EdgeBody::full("hello world")),
        );
        assert_eq!(lengths(&signed), ["11"], "`+11` is not a Content-Length");
        let right = frame(false, response(200, &["11"], EdgeBody::full("hello world")));
        assert_eq!(lengths(&right), ["11"]);
    }

    #[test]
    fn a_streamed_body_is_held_to_its_length() {
        let (_tx, body) = EdgeBody::channel(1);
        let framed = frame(false, response(200, &["5"], body));
        assert_eq!(lengths(&framed), ["5"]);
        assert!(matches!(
            framed.body(),
            EdgeBody::Framed { remaining: 5, .. }
        ));
        let (_tx, body) = EdgeBody::channel(1);
        let unsure = frame(false, response(200, &["5", "6"], body));
        assert!(lengths(&unsure).is_empty(), "two lengths: sent chunked");
    }

    #[test]
    fn ages_are_their_decimal_numbers() {
        for age in [0, 1, 9, 10, 99, 100, 4095, 4096, 86_400, u64::MAX] {
            assert_eq!(age_value(age).to_str().ok(), Some(age.to_string().as_str()));
        }
    }

    #[test]
    fn head_and_bodiless_statuses_keep_or_drop_length() {
        let head = frame(true, response(200, &["42"], EdgeBody::Empty));
        assert_eq!(lengths(&head), ["42"], "HEAD announces the GET's length");
        let no_content = frame(false, response(204, &["0"], EdgeBody::Empty));
        assert!(lengths(&no_content).is_empty());
    }
}
