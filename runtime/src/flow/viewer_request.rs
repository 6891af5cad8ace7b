//! viewer-request: the request as the node understands it, before the cache is looked up.
//!
//! [`normalize`] runs first, before routing: dot segments are resolved (RFC 3986 §5.2.4) so that
//! `/x/../api/y` is routed, keyed and forwarded as `/api/y`, and no path sneaks past a
//! behavior's pattern or method list. Then, after routing, [`run`] runs the behavior's
//! `viewer-request` function, which may rewrite the URI, headers and query, change the cache
//! key, pick the origin, or answer at once.

use edge_sdk::abi::Event;
use http::uri::{PathAndQuery, Uri};
use http::Request;

use super::functions::{self, HookOutcome};
use super::RequestCtx;
use crate::body::EdgeBody;
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
            functions::run_request_event(node, ctx, Event::ViewerRequest, &function, request).await
        }
    }
}

/// Resolves `.` and `..` segments (also percent-encoded: `%2e` is `.`, RFC 3986 §2.3) in the
/// request path. A path that climbs above the root is refused.
pub fn normalize(mut request: Request<EdgeBody>) -> Result<Request<EdgeBody>, Error> {
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

/// The path without dot segments, or `None` when it has none (the common case, no allocation).
fn remove_dot_segments(path: &str) -> Result<Option<String>, Error> {
    let is_dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    let is_dot_dot = |s: &str| {
        matches!(
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

    #[test]
    fn climbing_above_root_is_refused() {
        assert!(remove_dot_segments("/../etc/passwd").is_err());
        assert!(remove_dot_segments("/a/../../etc").is_err());
        assert!(remove_dot_segments("/%2e%2e/x").is_err());
    }
}
