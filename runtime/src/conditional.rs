//! Conditional requests (RFC 9110 §13): whether a viewer's `If-None-Match` /
//! `If-Modified-Since` lets us answer 304 instead of sending the body again.

use std::time::SystemTime;

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue};

/// Whether a GET/HEAD with these request headers may be answered 304 for a representation with
/// this `ETag` and `Last-Modified`. `If-None-Match` takes precedence (§13.2.2): when present,
/// `If-Modified-Since` is ignored.
pub fn is_not_modified(
    request: &HeaderMap,
    etag: Option<&HeaderValue>,
    last_modified: Option<SystemTime>,
) -> bool {
    if let Some(inm) = request.get(IF_NONE_MATCH) {
        let (Ok(inm), Some(etag)) = (inm.to_str(), etag.and_then(|e| e.to_str().ok())) else {
            return false;
        };
        // Weak comparison (§8.8.3.2): `W/"x"` matches `"x"`.
        let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
        let current = opaque(etag);
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || opaque(t) == current);
    }
    if let (Some(ims), Some(modified)) = (request.get(IF_MODIFIED_SINCE), last_modified) {
        if let Some(since) = ims
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
        {
            return modified <= since;
        }
    }
    false
}

/// The parsed `Last-Modified` of a response, if present and valid.
pub fn last_modified(headers: &HeaderMap) -> Option<SystemTime> {
    headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// Whether the request is conditional at all (so a cacheable miss must strip it before asking
/// the origin for the full object).
pub fn is_conditional(request: &HeaderMap) -> bool {
    request.contains_key(IF_NONE_MATCH) || request.contains_key(IF_MODIFIED_SINCE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
        h
    }

    #[test]
    fn etag_matching_is_weak() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(is_not_modified(
            &req("if-none-match", "\"abc\""),
            Some(&etag),
            None
        ));
        assert!(is_not_modified(
            &req("if-none-match", "\"x\", W/\"abc\""),
            Some(&etag),
            None
        ));
        assert!(is_not_modified(
            &req("if-none-match", "*"),
            Some(&etag),
            None
        ));
        assert!(!is_not_modified(
            &req("if-none-match", "\"abd\""),
            Some(&etag),
            None
        ));
        assert!(!is_not_modified(
            &req("if-none-match", "\"abc\""),
            None,
            None
        ));
    }

    #[test]
    fn modified_since_compares_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = httpdate::fmt_http_date(t);
        let before = httpdate::fmt_http_date(t - Duration::from_secs(60));
        assert!(is_not_modified(
            &req("if-modified-since", &at),
            None,
            Some(t)
        ));
        assert!(!is_not_modified(
            &req("if-modified-since", &before),
            None,
            Some(t)
        ));
        assert!(!is_not_modified(
            &req("if-modified-since", "garbage"),
            None,
            Some(t)
        ));
    }
}
