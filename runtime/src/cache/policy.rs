//! Freshness: whether a response may be stored and for how long (RFC 9111 §3, §4.2), clamped
//! by the behavior's TTL bounds the way CloudFront applies min/default/max TTL.

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, DATE, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE, VARY};
use http::{HeaderMap, StatusCode};

use crate::config::CachePolicyConfig;

/// Lifetime of an error status (404, 410, ...) when the origin gives none: a missing file that
/// appears a minute later should not stay missing for the behavior's full default TTL.
/// CloudFront's default error-caching TTL.
pub const DEFAULT_ERROR_TTL: Duration = Duration::from_secs(10);

/// The directives of `Cache-Control` that decide storing and freshness.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`
    pub no_store: bool,
    /// `no-cache` (unqualified or with field names: both mean revalidate before reuse here)
    pub no_cache: bool,
    /// `private`
    pub private: bool,
    /// `public`
    pub public: bool,
    /// `must-revalidate`
    pub must_revalidate: bool,
    /// `max-age=N`
    pub max_age: Option<u64>,
    /// `s-maxage=N` (a shared cache prefers it over `max-age`)
    pub s_maxage: Option<u64>,
    /// `proxy-revalidate` (`must-revalidate` for shared caches, RFC 9111 §5.2.2.8)
    pub proxy_revalidate: bool,
    /// `stale-while-revalidate=N` (RFC 5861 §3)
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861 §4)
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Parses every `Cache-Control` line; unknown directives are ignored (RFC 9111 §5.2.3), a
    /// malformed `max-age` counts as 0 (§4.2.1: treat invalid freshness as stale).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for line in headers.get_all(CACHE_CONTROL) {
            let Ok(line) = line.to_str() else { continue };
            for directive in line.split(',') {
                let (name, value) = match directive.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let seconds = || value.and_then(|v| v.parse::<u64>().ok()).or(Some(0));
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" => cc.must_revalidate = true,
                    "max-age" => cc.max_age = seconds(),
                    "s-maxage" => cc.s_maxage = seconds(),
                    "proxy-revalidate" => cc.proxy_revalidate = true,
                    "stale-while-revalidate" => cc.stale_while_revalidate = seconds(),
                    "stale-if-error" => cc.stale_if_error = seconds(),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// What to do with a response from the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storability {
    /// Store it; it stays fresh for `ttl` from now (zero: revalidate before every reuse).
    Store {
        /// Remaining freshness, already net of the origin's `Age`.
        ttl: Duration,
    },
    /// Do not store; the reason goes to the debug log.
    NotStorable(&'static str),
}

/// Decides whether a response to a GET may be stored and for how long. `authorized` says
/// whether the request carried `Authorization`.
///
/// Rules, in order: a status that is not cacheable by default, `no-store`, `private`,
/// `Set-Cookie` (one viewer's cookie must never reach another), `Vary: *`, and a response to an
/// authorized request without `public`, `s-maxage` or `must-revalidate` refuse storing.
/// Otherwise the origin's lifetime (`s-maxage`, else `max-age`, else `Expires - Date`) is
/// clamped to `[min_ttl, max_ttl]`; without one, `default_ttl` applies (at most
/// [`DEFAULT_ERROR_TTL`] for error statuses). `no-cache` stores with a zero lifetime, so every
/// reuse revalidates. A zero lifetime is worth storing only with a validator to revalidate with.
pub fn storability(
    status: StatusCode,
    headers: &HeaderMap,
    authorized: bool,
    policy: &CachePolicyConfig,
    now: SystemTime,
) -> Storability {
    let is_error = match status.as_u16() {
        200 | 203 | 204 | 300 | 301 | 308 => false,
        404 | 405 | 410 | 414 | 501 => true,
        _ => return Storability::NotStorable("status"),
    };
    let cc = CacheControl::parse(headers);
    if cc.no_store {
        return Storability::NotStorable("no-store");
    }
    if cc.private {
        return Storability::NotStorable("private");
    }
    if headers.contains_key(SET_COOKIE) {
        return Storability::NotStorable("set-cookie");
    }
    if headers.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|n| n.trim_ascii() == b"*")
    }) {
        return Storability::NotStorable("vary-star");
    }
    // RFC 9111 §3.5: a shared cache must not reuse a response to a request with `Authorization`
    // for any other request unless the origin said it may be shared. Everything stored is served
    // to every viewer with the same key, so "reused for others" and "stored" are one decision.
    // The rule restricts responses *to* authorized requests only: an object stored from an
    // anonymous request is already declared shareable and may answer an authorized request,
    // as the RFC allows (an origin that answers authorized viewers differently must say so with
    // `Vary: Authorization` or `private`).
    if authorized && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
        return Storability::NotStorable("authorization");
    }

    let lifetime = if cc.no_cache {
        Duration::ZERO
    } else {
        match origin_lifetime(&cc, headers, now) {
            Some(t) => t.clamp(policy.min_ttl, policy.max_ttl),
            None if is_error => policy.default_ttl.min(DEFAULT_ERROR_TTL),
            None => policy.default_ttl,
        }
    };
    let ttl = lifetime.saturating_sub(Duration::from_secs(age(headers)));
    if ttl.is_zero() && !has_validator(headers) {
        return Storability::NotStorable("zero-ttl");
    }
    Storability::Store { ttl }
}

/// The freshness lifetime the origin gave, if any (RFC 9111 §4.2.1).
fn origin_lifetime(cc: &CacheControl, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(s) = cc.s_maxage.or(cc.max_age) {
        return Some(Duration::from_secs(s));
    }
    let expires = headers.get(EXPIRES)?;
    // An invalid Expires (often "0") means already expired (§5.3).
    let Some(expires) = expires
        .to_str()
        .ok()
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// The origin's `Age` in seconds (0 when absent or malformed).
pub fn age(headers: &HeaderMap) -> u64 {
    headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the response carries a validator a conditional request can use.
pub fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: u64, default: u64, max: u64) -> CachePolicyConfig {
        CachePolicyConfig {
            min_ttl: Duration::from_secs(min),
            default_ttl: Duration::from_secs(default),
            max_ttl: Duration::from_secs(max),
            stale_if_error: crate::config::DEFAULT_STALE_IF_ERROR,
        }
    }

    fn decide(status: u16, headers: &[(&str, &str)], p: &CachePolicyConfig) -> Storability {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        storability(
            StatusCode::from_u16(status).expect("status"),
            &map,
            false,
            p,
            SystemTime::now(),
        )
    }

    fn ttl(secs: u64) -> Storability {
        Storability::Store {
            ttl: Duration::from_secs(secs),
        }
    }

    #[test]
    fn parses_directives_case_insensitively() {
        let mut h = HeaderMap::new();
        h.append(CACHE_CONTROL, "Public, MAX-AGE=60".parse().expect("v"));
        h.append(
            CACHE_CONTROL,
            "s-maxage=\"5\", no-cache".parse().expect("v"),
        );
        let cc = CacheControl::parse(&h);
        assert_eq!(
            (cc.max_age, cc.s_maxage, cc.no_cache, cc.no_store),
            (Some(60), Some(5), true, false)
        );
    }

    #[test]
    fn s_maxage_beats_max_age_and_bounds_clamp() {
        let p = policy(10, 100, 1000);
        assert_eq!(
            decide(200, &[("cache-control", "max-age=50, s-maxage=70")], &p),
            ttl(70)
        );
        assert_eq!(decide(200, &[("cache-control", "max-age=5")], &p), ttl(10));
        assert_eq!(
            decide(200, &[("cache-control", "max-age=5000")], &p),
            ttl(1000)
        );
        assert_eq!(decide(200, &[], &p), ttl(100));
    }

    #[test]
    fn expires_relative_to_date() {
        let p = policy(0, 100, 1000);
        let h = [
            ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("expires", "Wed, 21 Oct 2015 07:30:00 GMT"),
        ];
        assert_eq!(decide(200, &h, &p), ttl(120));
        assert_eq!(
            decide(200, &[("expires", "0")], &p),
            Storability::NotStorable("zero-ttl")
        );
    }

    #[test]
    fn refusals() {
        let p = policy(0, 100, 1000);
        assert_eq!(
            decide(200, &[("cache-control", "no-store")], &p),
            Storability::NotStorable("no-store")
        );
        assert_eq!(
            decide(200, &[("cache-control", "private, max-age=60")], &p),
            Storability::NotStorable("private")
        );
        assert_eq!(
            decide(200, &[("set-cookie", "a=b")], &p),
            Storability::NotStorable("set-cookie")
        );
        assert_eq!(
            decide(200, &[("vary", "accept, *")], &p),
            Storability::NotStorable("vary-star")
        );
        assert_eq!(
            decide(500, &[("cache-control", "max-age=60")], &p),
            Storability::NotStorable("status")
        );
        assert_eq!(decide(206, &[], &p), Storability::NotStorable("status"));
    }

    #[test]
    fn authorized_responses_are_stored_only_when_marked_shareable() {
        let p = policy(0, 100, 1000);
        let authorized = |headers: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (n, v) in headers {
                map.append(
                    http::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                );
            }
            storability(StatusCode::OK, &map, true, &p, SystemTime::now())
        };
        assert_eq!(
            authorized(&[("cache-control", "max-age=600")]),
            Storability::NotStorable("authorization")
        );
        assert_eq!(authorized(&[]), Storability::NotStorable("authorization"));
        assert_eq!(
            authorized(&[("cache-control", "public, max-age=600")]),
            ttl(600)
        );
        assert_eq!(authorized(&[("cache-control", "s-maxage=60")]), ttl(60));
        assert_eq!(
            authorized(&[("cache-control", "max-age=60, must-revalidate")]),
            ttl(60)
        );
        // `public` does not override the refusals that come first.
        assert_eq!(
            authorized(&[("cache-control", "public, private")]),
            Storability::NotStorable("private")
        );
    }

    #[test]
    fn no_cache_stores_only_with_validator() {
        let p = policy(0, 100, 1000);
        assert_eq!(
            decide(200, &[("cache-control", "no-cache")], &p),
            Storability::NotStorable("zero-ttl")
        );
        assert_eq!(
            decide(200, &[("cache-control", "no-cache"), ("etag", "\"x\"")], &p),
            ttl(0)
        );
    }

    #[test]
    fn zero_default_ttl_means_not_stored_unless_origin_says() {
        let p = policy(0, 0, 60);
        assert_eq!(decide(200, &[], &p), Storability::NotStorable("zero-ttl"));
        assert_eq!(
            decide(200, &[("cache-control", "max-age=600")], &p),
            ttl(60)
        );
    }

    #[test]
    fn errors_get_short_default_and_age_is_subtracted() {
        let p = policy(0, 86400, 86400 * 365);
        assert_eq!(decide(404, &[], &p), ttl(10));
        assert_eq!(
            decide(404, &[("cache-control", "max-age=300")], &p),
            ttl(300)
        );
        assert_eq!(
            decide(200, &[("cache-control", "max-age=300"), ("age", "100")], &p),
            ttl(200)
        );
    }
}
