//! Cache store: decides per policy whether the origin's response is kept, and keeps it while
//! it streams to the viewer.
//!
//! The viewer is never held back: a spawned task reads the origin body, forwards each chunk to
//! the viewer at once and appends it to the object being built. If the viewer goes away the
//! task still finishes the object (so collapsed waiters get it); if the object grows past
//! `max_object_size` the task stops keeping it and only forwards.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT_RANGES, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_LOCATION, HOST,
    LOCATION, SET_COOKIE,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use super::RequestCtx;
use crate::body::EdgeBody;
use crate::cache::compress;
use crate::cache::policy::{self, Storability};
use crate::cache::stale::{self, StaleWindows};
use crate::cache::{CacheKey, CachedObject, Coalescer, FlightOutcome, Leader, Store};
use crate::config::BehaviorConfig;
use crate::error::{Error, Side};
use crate::Node;

/// Chunks buffered between the origin reader and a slow viewer.
const TEE_DEPTH: usize = 16;
/// An origin body that sends nothing for this long is abandoned (the viewer's connection is
/// cut and nothing is stored), so a stalled origin cannot pin a task and a buffer forever.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The origin's answer, or the stale copy to serve in its place.
pub enum Fetched<'a> {
    /// Go on with the origin's response.
    Response(Response<EdgeBody>),
    /// The origin failed (unreachable, timed out, or 500/502/503/504): serve this stale copy.
    Stale(&'a CachedObject),
}

/// Serves a stale copy instead of an origin failure while its stale-if-error window is open
/// (the response's `stale-if-error`, else the behavior's `cache.stale_if_error`, and never for
/// a response that demanded revalidation: see `cache::stale`); otherwise passes the result
/// through.
pub fn stale_if_error<'a>(
    ctx: &RequestCtx,
    behavior: &BehaviorConfig,
    stale: Option<&'a CachedObject>,
    fetched: Result<Response<EdgeBody>, Error>,
) -> Result<Fetched<'a>, Error> {
    let now = Instant::now();
    let usable = stale.filter(|o| {
        let windows = StaleWindows::of(&o.headers.to_map(), &behavior.cache);
        stale::within(o, windows.if_error, now)
    });
    let failed = match &fetched {
        // The viewer's own broken request is not an origin failure to paper over.
        Err(e) => e.side() != Side::Viewer,
        Ok(response) => is_origin_failure(response.status()),
    };
    match (usable, failed) {
        (Some(object), true) => {
            let reason = match &fetched {
                Err(e) => e.to_string(),
                Ok(r) => format!("origin answered {}", r.status()),
            };
            tracing::warn!(request = ctx.id, %reason, "origin failed; serving the stale copy");
            Ok(Fetched::Stale(object))
        }
        _ => fetched.map(Fetched::Response),
    }
}

/// The statuses that mean the origin failed rather than answered (RFC 5861 §4 names 500, 502,
/// 503 and 504).
pub fn is_origin_failure(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// Invalidates what the cache holds for a URI an unsafe request has just changed (RFC 9111
/// §4.4): after a 2xx or 3xx answer to any method but GET, HEAD, OPTIONS and TRACE (unknown
/// methods count as unsafe), the request's path and the paths in `Location` and
/// `Content-Location` when they are on the request's host (another host's objects are not
/// this request's to remove). Every stored variant of those paths goes: all query strings,
/// key parts and `Vary` variants.
pub fn invalidate_after_unsafe(
    node: &Node,
    ctx: &RequestCtx,
    parts: &Parts,
    response: &Response<EdgeBody>,
) {
    let status = response.status();
    if parts.method.is_safe() || !(status.is_success() || status.is_redirection()) {
        return;
    }
    // The host as the cache key spells it (`cache::key`): the `Host` header, lowercase.
    let Some(host) = parts
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .map(|h| h.to_ascii_lowercase())
    else {
        return;
    };
    let path = parts.uri.path();
    let mut paths = vec![path.to_owned()];
    for name in [LOCATION, CONTENT_LOCATION] {
        let target = response.headers().get(&name).and_then(|v| v.to_str().ok());
        if let Some(target) = target.and_then(|t| same_host_path(&host, path, t)) {
            paths.push(target);
        }
    }
    for path in paths {
        tracing::debug!(request = ctx.id, method = %parts.method, %host, %path, "invalidated by an unsafe request");
        node.store.invalidate(&format!("{host}{path}"));
    }
}

/// The path a `Location` or `Content-Location` value names, resolved against the request's
/// `base` path (RFC 3986 §5.2), when it is on `host`; `None` for another host.
fn same_host_path(host: &str, base: &str, reference: &str) -> Option<String> {
    let reference = reference.trim();
    let reference = reference.split(['#', '?']).next().unwrap_or("");
    let absolute = reference
        .split_once("://")
        .filter(|(scheme, _)| !scheme.is_empty() && !scheme.contains('/'))
        .map(|(_, rest)| rest)
        .or_else(|| reference.strip_prefix("//"));
    if let Some(rest) = absolute {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !authority.eq_ignore_ascii_case(host) {
            return None;
        }
        return Some(if path.is_empty() { "/" } else { path }.to_owned());
    }
    if reference.starts_with('/') {
        return Some(reference.to_owned());
    }
    if reference.is_empty() {
        return Some(base.to_owned());
    }
    let directory = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{directory}{reference}"))
}

/// Refreshes a stale object after the origin answered its revalidation with 304: the stored
/// body is reused with the 304's headers merged in (RFC 9111 §4.3.4). `None` when this is not
/// such a response.
pub fn refresh(
    node: &Node,
    behavior: &BehaviorConfig,
    key: &CacheKey,
    parts: &Parts,
    stale: Option<&Arc<CachedObject>>,
    response: &Response<EdgeBody>,
) -> Option<Arc<CachedObject>> {
    let stale = stale?;
    if response.status() != StatusCode::NOT_MODIFIED {
        return None;
    }
    let mut headers = stale.headers.to_map();
    for name in response.headers().keys() {
        if policy::kept_on_refresh(name) {
            continue;
        }
        headers.remove(name);
        for value in response.headers().get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let storability = policy::storability(
        stale.status,
        &headers,
        parts.headers.contains_key(AUTHORIZATION),
        &behavior.cache,
        SystemTime::now(),
    );
    let ttl = match storability {
        Storability::Store { ttl } => ttl,
        Storability::NotStorable(_) => Duration::ZERO,
    };
    let age = policy::age(response.headers());
    let object = Arc::new(CachedObject::new(
        stale.status,
        headers,
        stale.body.clone(),
        ttl,
        age,
    ));
    if matches!(storability, Storability::Store { .. }) {
        // A `Set-Cookie` on the 304 is for this viewer only (`strip_set_cookie`).
        let stored = if object.headers.contains_key(&SET_COOKIE) {
            let mut headers = object.headers.to_map();
            headers.remove(SET_COOKIE);
            Arc::new(CachedObject::new(
                object.status,
                headers,
                object.body.clone(),
                ttl,
                age,
            ))
        } else {
            object.clone()
        };
        node.store.insert(key, &parts.headers, stored);
        // Variants carry the old headers; the next viewer that wants one builds it anew.
        if behavior.compress {
            compress::remove_variants(&node.store, key);
        }
    }
    Some(object)
}

/// Stores the response if policy allows, returning the response to send to the viewer.
/// Releases collapsed waiters through `leader` either way.
pub fn store(
    node: &Node,
    behavior: &BehaviorConfig,
    ctx: &mut RequestCtx,
    key: CacheKey,
    leader: Option<Leader>,
    parts: &Parts,
    response: Response<EdgeBody>,
) -> Response<EdgeBody> {
    let Some(leader) = leader else {
        return response;
    };
    let storability = policy::storability(
        response.status(),
        response.headers(),
        parts.headers.contains_key(AUTHORIZATION),
        &behavior.cache,
        SystemTime::now(),
    );
    // A function's lifetime replaces the origin's and the behavior's, but never makes storable
    // what must not be shared (no-store, private, Set-Cookie, ...).
    let decided = match (storability, ctx.ttl_override) {
        (Storability::NotStorable(reason), _) if reason != "zero-ttl" => Err(reason),
        (_, Some(0)) => Err("function-ttl-zero"),
        (_, Some(seconds)) => Ok(Duration::from_secs(seconds)),
        (Storability::Store { ttl }, None) => Ok(ttl),
        (Storability::NotStorable(reason), None) => Err(reason),
    };
    let ttl = match decided {
        Ok(ttl) => ttl,
        Err(reason) => {
            tracing::debug!(request = ctx.id, reason, "response not stored");
            // A failing origin's 5xx says nothing of what the key's next answer will be: its
            // misses keep collapsing, so a recovering origin is not met by every viewer at once.
            leader.finish(if response.status().is_server_error() {
                FlightOutcome::Forward
            } else {
                FlightOutcome::Uncacheable
            });
            return response;
        }
    };
    let max = node.config.cache.max_object_size;
    let length = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|l| l > max) {
        tracing::debug!(
            request = ctx.id,
            length,
            max,
            "object over max_object_size passed through"
        );
        leader.finish(FlightOutcome::Uncacheable);
        return response;
    }
    let age = policy::age(response.headers());
    ctx.age = Some(age);
    let (mut head, body) = response.into_parts();
    let mut variants = None;
    let key = if !behavior.compress {
        key
    } else if compress::is_encoded(&head.headers) {
        // The origin encoded it (in the coding it was asked for, `origin_request`): stored
        // untouched as that encoding's variant. A coding the node does not serve is not
        // stored at all: no viewer's key would find it again.
        let Some(encoding) = head
            .headers
            .get(CONTENT_ENCODING)
            .and_then(compress::Encoding::from_content_encoding)
        else {
            tracing::debug!(request = ctx.id, "response in an unknown coding not stored");
            leader.finish(FlightOutcome::Forward);
            return Response::from_parts(head, body);
        };
        compress::add_vary(&mut head.headers);
        compress::variant_key(&key, encoding)
    } else {
        if compress::is_candidate(head.status, &head.headers, length) {
            compress::add_vary(&mut head.headers);
        }
        variants = Some(Variants {
            coalescer: Arc::clone(&node.coalescer),
            derive: ctx.encoding,
        });
        key
    };
    let pending = Pending {
        store: Arc::clone(&node.store),
        variants,
        key,
        request_headers: parts.headers.clone(),
        status: head.status,
        headers: {
            let mut headers = head.headers.clone();
            // Stored only when the behavior strips it (`strip_set_cookie`): the cookie goes to
            // the viewer whose request fetched the object, never to the next ones.
            headers.remove(SET_COOKIE);
            // Hits answer single byte ranges from the stored body (`range`).
            if head.status == StatusCode::OK {
                headers
                    .entry(ACCEPT_RANGES)
                    .or_insert(HeaderValue::from_static("bytes"));
            }
            headers
        },
        ttl,
        age,
        leader,
    };
    let body = match body {
        EdgeBody::Empty | EdgeBody::Full(None) => {
            pending.complete(Bytes::new());
            EdgeBody::Empty
        }
        EdgeBody::Full(Some(bytes)) if bytes.len() as u64 <= max => {
            pending.complete(bytes.clone());
            EdgeBody::full(bytes)
        }
        body => tee(body, pending, max, length),
    };
    Response::from_parts(head, body)
}

/// An object waiting for its body.
struct Pending {
    store: Arc<Store>,
    /// Set for an identity object under `compress = true`.
    variants: Option<Variants>,
    key: CacheKey,
    request_headers: HeaderMap,
    status: StatusCode,
    headers: HeaderMap,
    ttl: Duration,
    age: u64,
    leader: Leader,
}

impl Pending {
    fn complete(self, body: Bytes) {
        let object = Arc::new(CachedObject::new(
            self.status,
            self.headers,
            body,
            self.ttl,
            self.age,
        ));
        if self.variants.is_some() {
            // Variants of the object this one replaces would serve its old content.
            compress::remove_variants(&self.store, &self.key);
        }
        self.store
            .insert(&self.key, &self.request_headers, object.clone());
        self.leader.finish(FlightOutcome::Stored(object.clone()));
        // The viewer that fetched it asked for an encoding: its variant is built now, from
        // this one fetch, rather than on the next request.
        let Some(Variants {
            coalescer,
            derive: Some(encoding),
        }) = self.variants
        else {
            return;
        };
        if !compress::is_derivable(&object) {
            return;
        }
        let (store, key, request) = (self.store, self.key, self.request_headers);
        tokio::spawn(async move {
            compress::derive(&store, &coalescer, &key, &request, object, encoding).await;
        });
    }
}

/// What an identity object stored under `compress = true` does for its compressed variants.
struct Variants {
    /// Collapses concurrent builds of one variant.
    coalescer: Arc<Coalescer>,
    /// The encoding to build at once (the fetching viewer's), if any.
    derive: Option<compress::Encoding>,
}

/// Streams `body` to the returned body while collecting it for the cache.
fn tee(mut body: EdgeBody, pending: Pending, max: u64, length: Option<u64>) -> EdgeBody {
    let (tx, viewer_body) = EdgeBody::channel(TEE_DEPTH);
    tokio::spawn(async move {
        let mut pending = Some(pending);
        let mut buffer = BytesMut::with_capacity(length.unwrap_or(0).min(max) as usize);
        let mut viewer = Some(tx);
        loop {
            let frame = match tokio::time::timeout(DEFAULT_BODY_IDLE_TIMEOUT, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(error))) => {
                    tracing::warn!(error = %error, "origin body failed; object not stored");
                    if let Some(tx) = viewer {
                        let _ = tx.send(Err(error)).await;
                    }
                    return;
                }
                Err(_) => {
                    tracing::warn!(timeout = ?DEFAULT_BODY_IDLE_TIMEOUT, "origin body stalled; object not stored");
                    if let Some(tx) = viewer {
                        let _ = tx.send(Err("origin body stalled".into())).await;
                    }
                    return;
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if pending.is_some() {
                if (buffer.len() + data.len()) as u64 > max {
                    tracing::debug!(max, "object over max_object_size passed through");
                    // Dropping the pending object releases waiters to fetch on their own.
                    pending = None;
                    buffer = BytesMut::new();
                } else {
                    buffer.extend_from_slice(&data);
                }
            }
            if let Some(tx) = &viewer {
                if tx.send(Ok(data)).await.is_err() {
                    viewer = None;
                }
            }
            if viewer.is_none() && pending.is_none() {
                return;
            }
        }
        if let Some(pending) = pending {
            pending.complete(buffer.freeze());
        }
    });
    viewer_body
}

#[cfg(test)]
mod invalidation_tests {
    use super::same_host_path;

    #[test]
    fn locations_resolve_on_the_request_host_only() {
        let resolve = |r: &str| same_host_path("h:8080", "/test/a/b", r);
        assert_eq!(resolve("/x/y?q=1").as_deref(), Some("/x/y"));
        assert_eq!(resolve("target").as_deref(), Some("/test/a/target"));
        assert_eq!(resolve("").as_deref(), Some("/test/a/b"));
        assert_eq!(resolve("http://H:8080/z#f").as_deref(), Some("/z"));
        assert_eq!(resolve("https://h:8080").as_deref(), Some("/"));
        assert_eq!(resolve("//h:8080/n").as_deref(), Some("/n"));
        assert_eq!(resolve("http://other/z"), None, "another host");
        assert_eq!(resolve("http://h:9090/z"), None, "another port");
        assert_eq!(resolve("//evil/z"), None);
    }
}

#[cfg(test)]
mod stale_if_error_tests {
    use super::*;
    use crate::config::Config;
    use http::header::CACHE_CONTROL;

    /// A 60 s object with this `Cache-Control`, stored now.
    fn object(cache_control: &str) -> CachedObject {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, cache_control.parse().expect("value"));
        CachedObject::new(
            StatusCode::OK,
            headers,
            Bytes::from_static(b"copy"),
            Duration::from_secs(60),
            0,
        )
    }

    fn answer(status: u16) -> Result<Response<EdgeBody>, Error> {
        let mut response = Response::new(EdgeBody::Empty);
        *response.status_mut() = StatusCode::from_u16(status).expect("valid status");
        Ok(response)
    }

    /// A behavior with this `cache` table.
    fn behavior(cache: &str) -> BehaviorConfig {
        let config: Config = format!(
            "[origins.o]\ntype = \"http\"\ntargets = [\"http://127.0.0.1:1\"]\n\
             [[behaviors]]\npath = \"*\"\norigin = \"o\"\ncache = {cache}\n"
        )
        .parse()
        .expect("valid config");
        config.behaviors[0].clone()
    }

    fn served_stale(behavior: &BehaviorConfig, object: &CachedObject, status: u16) -> bool {
        let ctx = RequestCtx::new(1, "127.0.0.1:1".parse().expect("address"));
        matches!(
            stale_if_error(&ctx, behavior, Some(object), answer(status)),
            Ok(Fetched::Stale(_))
        )
    }

    #[test]
    fn stale_copy_stands_in_for_origin_failures_only() {
        let default = behavior("{}");
        let copy = object("max-age=60");
        for status in [500, 502, 503, 504] {
            assert!(served_stale(&default, &copy, status), "{status}");
        }
        for status in [200, 304, 404, 501] {
            assert!(
                !served_stale(&default, &copy, status),
                "{status} is not an origin failure"
            );
        }
    }

    #[test]
    fn the_behavior_and_the_response_set_the_window() {
        let off = behavior("{ stale_if_error = \"0s\" }");
        assert!(!served_stale(&off, &object("max-age=60"), 503), "0s: off");
        assert!(
            served_stale(&off, &object("max-age=60, stale-if-error=30"), 503),
            "the response's own window still holds"
        );
        let default = behavior("{}");
        for cc in [
            "max-age=60, must-revalidate",
            "max-age=60, proxy-revalidate",
            "max-age=60, s-maxage=60",
            "no-cache",
        ] {
            assert!(!served_stale(&default, &object(cc), 503), "{cc}");
        }
    }

    #[test]
    fn the_default_window_is_a_day_past_freshness() {
        let copy = object("max-age=60");
        let default = behavior("{}");
        let window = StaleWindows::of(&copy.headers.to_map(), &default.cache).if_error;
        assert_eq!(window, crate::config::DEFAULT_STALE_IF_ERROR);
        // The bound, at a `now` in the future: going back a day from the present would need a
        // machine up for a day (the monotonic clock starts at boot).
        let stale_by = |past: Duration| copy.stored_at + copy.ttl + past;
        let day = crate::config::DEFAULT_STALE_IF_ERROR;
        assert!(stale::within(
            &copy,
            window,
            stale_by(Duration::from_secs(3600))
        ));
        assert!(stale::within(
            &copy,
            window,
            stale_by(day - Duration::from_secs(60))
        ));
        assert!(!stale::within(
            &copy,
            window,
            stale_by(day + Duration::from_secs(60))
        ));
    }
}
