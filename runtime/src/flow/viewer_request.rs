//! viewer-request: the request as the node understands it, before the cache is looked up.
//!
//! [`normalize`] runs first, before routing: dot segments are resolved (RFC 3986 §5.2.4) so that
//! `/x/../api/y` is routed, keyed and forwarded as `/api/y`, and no path sneaks past a
//! behavior's pattern or method list. After routing, [`enforce_protocol`] applies the
//! behavior's `viewer_protocol` to plain-HTTP viewers. Then [`run`] runs the behavior's
//! `viewer-request` function, which may rewrite the URI, headers and query, change the cache
//! key, pick the origin, or answer at once.

use edge_sdk::abi::Event;
use http::header::{CONTENT_LENGTH, HOST, LOCATION};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};

use super::functions::{self, HookOutcome, Started};
use super::{CachePhase, RequestCtx};
use crate::body::EdgeBody;
use crate::config::{BehaviorConfig, ViewerProtocol};
use crate::error::Error;
use crate::Node;

/// Runs the behavior's viewer-request function, if it has one.
pub async fn run(
    node: &Node,
    ctx: &mut RequestCtx,
    request: Request<EdgeBody>,
) -> Result<HookOutcome, Error> {
    match functions::attached(node, ctx, Event::ViewerRequest) {
        None => Ok(HookOutcome::Continue(request)),
        Some(function) => {
            let event = Event::ViewerRequest;
            let run = match functions::start_request_event(node, ctx, event, &function, request) {
                Started::Replayed(outcome) => return outcome,
                Started::Fresh(run) => run,
            };
            run.await
        }
    }
}

/// Applies the behavior's `viewer_protocol` to a request: `Ok(None)` serves it,
/// `Ok(Some(response))` answers with a redirect to HTTPS, `Err` refuses it with 403.
///
/// As CloudFront does: GET and HEAD get 301; other methods get 307, so that the viewer sends
/// the same method and body again (RFC 9110 §15.4.8; a 301 lets clients switch POST to GET).
/// The redirect keeps the host, path and query and names the HTTPS listener's port (left out
/// when it is 443). Runs after [`normalize`], so the host has been checked.
pub fn enforce_protocol(
    behavior: &BehaviorConfig,
    ctx: &mut RequestCtx,
    request: &Request<EdgeBody>,
) -> Result<Option<Response<EdgeBody>>, Error> {
    // A tier request comes from an edge over plain HTTP; the edge applied the policy to its
    // viewer already.
    if ctx.https || ctx.tier.is_some() {
        return Ok(None);
    }
    match behavior.viewer_protocol {
        ViewerProtocol::AllowAll => Ok(None),
        ViewerProtocol::HttpsOnly => Err(Error::HttpsRequired),
        ViewerProtocol::RedirectToHttps => {
            let host = request
                .headers()
                .get(HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok());
            // Config validation requires an HTTPS listener for this policy; a request without a
            // host (HTTP/1.0) cannot be redirected anywhere sensible.
            let (Some(host), Some(port)) = (host, ctx.https_port) else {
                return Err(Error::HttpsRequired);
            };
            let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
            let location = match port {
                443 => format!("https://{}{path}", host.host()),
                port => format!("https://{}:{port}{path}", host.host()),
            };
            let location = HeaderValue::try_from(location)
                .map_err(|_| Error::BadRequest("the request cannot be redirected to HTTPS"))?;
            let status = if request.method() == Method::GET || request.method() == Method::HEAD {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::TEMPORARY_REDIRECT
            };
            let mut response = Response::new(EdgeBody::Empty);
            *response.status_mut() = status;
            response.headers_mut().insert(LOCATION, location);
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            ctx.cache = CachePhase::Redirect;
            Ok(Some(response))
        }
    }
}

/// Resolves `.` and `..` segments (also percent-encoded: `%2e` is `.`, RFC 3986 §2.3) in the
/// request path. A path that climbs above the root is refused.
pub fn normalize(mut request: Request<EdgeBody>) -> Result<Request<EdgeBody>, Error> {
    check_host(&mut request)?;
    // A request target is ASCII (RFC 3986 §2, RFC 9112 §3.2); hyper passes raw UTF-8 through,
    // and such a path would reach cache keys, logs and origins undecoded. Viewers percent-encode.
    let target = request.uri().path_and_query().map_or("", |pq| pq.as_str());
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::BadRequest("the request target must be ASCII"));
    }
    let path = request.uri().path();
    // `OPTIONS *` (asterisk-form) names the server, not a resource: nothing to route or cache.
    if !path.starts_with('/') {
        return Err(Error::BadRequest(
            "the request target must be a path starting with `/`",
        ));
    }
    if let Some(clean) = remove_dot_segments(path)? {
        let path_and_query = match request.uri().query() {
            Some(q) => format!("{clean}?{q}"),
            None => clean,
        };
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(
            PathAndQuery::try_from(path_and_query)
                .map_err(|_| Error::BadRequest("invalid path"))?,
        );
        *request.uri_mut() =
            Uri::from_parts(parts).map_err(|_| Error::BadRequest("invalid path"))?;
    }
    Ok(request)
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, and it must be a valid
/// authority (400 otherwise; two hosts would let the cache key and the origin read different
/// ones). An absolute-form target's authority replaces `Host` (§3.2.2), so the cache key,
/// routing and `X-Forwarded-Host`, which all read `Host`, agree on one host. HTTP/2 requests
/// carry `:authority` (in the URI) instead of `Host` (RFC 9113 §8.3.1): it becomes the `Host`
/// the same way, so the flow sees one request model for both protocols.
fn check_host(request: &mut Request<EdgeBody>) -> Result<(), Error> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Error::BadRequest("more than one Host header"));
    }
    match host {
        None if request.version() >= Version::HTTP_11 && request.uri().authority().is_none() => {
            return Err(Error::BadRequest("missing Host header"))
        }
        Some(value) if !is_valid_host(value.as_bytes()) => {
            return Err(Error::BadRequest("invalid Host header"))
        }
        _ => {}
    }
    if let Some(authority) = request.uri().authority() {
        if !is_valid_host(authority.as_str().as_bytes()) {
            return Err(Error::BadRequest("invalid request target authority"));
        }
        let value = HeaderValue::from_str(authority.as_str())
            .map_err(|_| Error::BadRequest("invalid request target authority"))?;
        request.headers_mut().insert(HOST, value);
    }
    Ok(())
}

/// `host[:port]` (RFC 9110 §7.2), without user info, which a `Host` never carries.
fn is_valid_host(value: &[u8]) -> bool {
    if value.is_empty() || value.contains(&b'@') {
        return false;
    }
    // The common form, a name or IPv4 address with an optional port, is checked here without
    // the copy that parsing an `Authority` makes; anything else is left to that parser.
    let (host, port) = match value.iter().position(|&b| b == b':') {
        Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        None => (value, None),
    };
    let plain_host = !host.is_empty()
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if plain_host && port.is_none_or(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit)) {
        return true;
    }
    is_valid_authority(value)
}

/// [`is_valid_host`] by parsing an `Authority`: the rule the fast path must agree with.
fn is_valid_authority(value: &[u8]) -> bool {
    let Ok(authority) = Authority::try_from(value) else {
        return false;
    };
    // `Authority` accepts any text after the last `:`; a port is digits only.
    match authority.as_str().strip_prefix(authority.host()) {
        Some(rest) => rest.strip_prefix(':').map_or(rest.is_empty(), |port| {
            port.bytes().all(|b| b.is_ascii_digit())
        }),
        None => false,
    }
}

/// The path without dot segments, or `None` when it has none (the common case, no allocation).
fn remove_dot_segments(path: &str) -> Result<Option<String>, Error> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dot_dot = |s: &str| {
        // Checked before lowercasing, which allocates: most segments are not short dot forms.
        (2..=6).contains(&s.len())
            && (s.starts_with('.') || s.starts_with('%'))
            && matches!(
                s.to_ascii_lowercase().as_str(),
                ".." | ".%2e" | "%2e." | "%2e%2e"
            )
    };
    if !path.split('/').any(|s| is_dot(s) || is_dot_dot(s)) {
        return Ok(None);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        if is_dot(segment) || is_dot_dot(segment) {
            if is_dot_dot(segment) && out.pop().is_none() {
                return Err(Error::BadRequest("path climbs above the root"));
            }
            // `/a/b/..` names the directory `/a/`: keep its trailing slash.
            if i == last {
                out.push("");
            }
        } else {
            out.push(segment);
        }
    }
    Ok(Some(format!("/{}", out.join("/"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(path: &str) -> Option<String> {
        remove_dot_segments(path).expect("path stays inside the root")
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(clean("/a/b"), None);
        assert_eq!(clean("/a/.hidden/..x"), None);
        assert_eq!(clean("/x/../api/y"), Some("/api/y".into()));
        assert_eq!(clean("/x/%2E%2e/api/y"), Some("/api/y".into()));
        assert_eq!(clean("/a/./b/."), Some("/a/b/".into()));
        assert_eq!(clean("/a/b/.."), Some("/a/".into()));
        assert_eq!(clean("//a/../b"), Some("//b".into()));
    }

    fn with_hosts(target: &str, version: Version, hosts: &[&str]) -> Request<EdgeBody> {
        let mut request = Request::get(target)
            .version(version)
            .body(EdgeBody::Empty)
            .expect("valid request");
        for host in hosts {
            request
                .headers_mut()
                .append(HOST, HeaderValue::from_str(host).expect("header value"));
        }
        request
    }

    #[test]
    fn host_must_be_single_and_valid() {
        let ok = |r: Request<EdgeBody>| normalize(r).is_ok();
        assert!(ok(with_hosts("/", Version::HTTP_11, &["a.test"])));
        assert!(ok(with_hosts("/", Version::HTTP_11, &["a.test:8080"])));
        assert!(ok(with_hosts("/", Version::HTTP_11, &["[::1]:8080"])));
        assert!(ok(with_hosts("/", Version::HTTP_11, &["[::1]"])));
        assert!(ok(with_hosts("/", Version::HTTP_10, &[])));
        assert!(!ok(with_hosts("/", Version::HTTP_11, &[])));
        assert!(!ok(with_hosts(
            "/",
            Version::HTTP_11,
            &["a.test", "b.test"]
        )));
        assert!(!ok(with_hosts(
            "/",
            Version::HTTP_11,
            &["a.test", "a.test"]
        )));
        for bad in ["", "a b", "user@a.test", "a.test/x", "a.test:port"] {
            assert!(!ok(with_hosts("/", Version::HTTP_11, &[bad])), "{bad:?}");
        }
    }

    #[test]
    fn the_fast_host_check_agrees_with_the_authority_parser() {
        let parts = ["a", "A1", "-", ".", "a-b.c", "127.0.0.1", "x..y", ""];
        let ports = [None, Some(""), Some("80"), Some("099999999999"), Some("8a")];
        for host in parts {
            for port in ports {
                let value = match port {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                };
                if value.is_empty() {
                    continue;
                }
                assert_eq!(
                    is_valid_host(value.as_bytes()),
                    is_valid_authority(value.as_bytes()),
                    "{value:?}"
                );
            }
        }
    }

    #[test]
    fn non_ascii_targets_are_refused() {
        let mut request = with_hosts("/caf%C3%A9?q=%20", Version::HTTP_11, &["a.test"]);
        assert!(normalize(request).is_ok());
        request = with_hosts("/", Version::HTTP_11, &["a.test"]);
        *request.uri_mut() = Uri::from_maybe_shared(bytes::Bytes::from("/caf\u{e9}"))
            .expect("the http crate accepts raw UTF-8 in a path");
        assert!(normalize(request).is_err());
    }

    #[test]
    fn absolute_form_authority_replaces_host() {
        let request = normalize(with_hosts("http://a.test/x", Version::HTTP_11, &["b.test"]))
            .expect("valid request");
        assert_eq!(request.headers()[HOST], "a.test");
    }

    #[test]
    fn climbing_above_root_is_refused() {
        assert!(remove_dot_segments("/../etc/passwd").is_err());
        assert!(remove_dot_segments("/a/../../etc").is_err());
        assert!(remove_dot_segments("/%2e%2e/x").is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Paths built from segments that stress dot handling.
    fn path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E%2e".to_owned()),
            Just(".%2E".to_owned()),
            Just("%2e.".to_owned()),
            Just("...".to_owned()),
            Just(String::new()),
            "[a-z.%]{1,4}",
        ];
        prop::collection::vec(segment, 0..10).prop_map(|s| format!("/{}", s.join("/")))
    }

    fn is_dot_segment(s: &str) -> bool {
        matches!(
            s.to_ascii_lowercase().as_str(),
            "." | "%2e" | ".." | ".%2e" | "%2e." | "%2e%2e"
        )
    }

    /// How deep below the root a path ends, refusing to go above it; `None` if it would.
    fn depth(path: &str) -> Option<usize> {
        let mut depth = 0usize;
        for s in path.split('/').skip(1) {
            match s.to_ascii_lowercase().as_str() {
                "." | "%2e" => {}
                ".." | ".%2e" | "%2e." | "%2e%2e" => depth = depth.checked_sub(1)?,
                _ => depth += 1,
            }
        }
        Some(depth)
    }

    proptest! {
        /// Never panics; a resolved path starts at the root, has no dot segment left (so
        /// resolving again changes nothing), and is refused exactly when it would climb above
        /// the root.
        #[test]
        fn resolution_never_escapes_and_is_idempotent(path in path()) {
            match remove_dot_segments(&path) {
                Err(_) => prop_assert!(depth(&path).is_none(), "{path:?} was refused but stays inside"),
                Ok(resolved) => {
                    prop_assert!(depth(&path).is_some(), "{path:?} climbs above the root");
                    let clean = resolved.unwrap_or_else(|| path.clone());
                    prop_assert!(clean.starts_with('/'), "{clean:?}");
                    prop_assert!(!clean.split('/').any(is_dot_segment), "{path:?} -> {clean:?}");
                    prop_assert_eq!(remove_dot_segments(&clean).ok(), Some(None));
                }
            }
        }

        /// Any request target the node can parse normalizes without panicking, and the result
        /// has no dot segments.
        #[test]
        fn normalize_never_panics(target in "/[!-~]{0,40}") {
            let Ok(request) = http::Request::get(target.as_str()).body(EdgeBody::Empty) else {
                return Ok(());
            };
            if let Ok(request) = normalize(request) {
                prop_assert!(!request.uri().path().split('/').any(is_dot_segment));
            }
        }
    }
}
