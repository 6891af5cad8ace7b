//! Cache lookup: builds the key, finds a fresh object, or arranges the one fetch that
//! concurrent misses for the key share. Only GET and HEAD use the cache.
//!
//! The viewer's own `Cache-Control` is read here (RFC 9111 §5.2.1), as far as the behavior's
//! `viewer_cache_control` allows: by default only `only-if-cached`, which cannot cost the
//! origin anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::{CachePhase, RequestCtx};
use crate::body::EdgeBody;
use crate::cache::compress;
use crate::cache::policy::cache_control_directives;
use crate::cache::stale::{self, StaleWindows};
use crate::cache::{coalesce, CacheKey, CachedObject, FlightOutcome, Join, Leader, Lookup};
use crate::config::{BehaviorConfig, ViewerCacheControl};
use crate::Node;

/// What the flow does next.
pub enum CacheDecision {
    /// Serve this fresh object.
    Hit(Arc<CachedObject>),
    /// Fetch (this request leads the flight for `key`), revalidating `stale` if present.
    Fetch {
        /// The cache key.
        key: CacheKey,
        /// Tells waiting requests the outcome.
        leader: Leader,
        /// A stale copy to revalidate.
        stale: Option<Arc<CachedObject>>,
    },
    /// Serve this stale object at once (`stale-while-revalidate`); `revalidation` is set when
    /// this request starts the object's one background revalidation.
    Stale {
        /// The stale copy to serve.
        object: Arc<CachedObject>,
        /// What the background revalidation needs, unless one is already under way.
        revalidation: Option<Revalidation>,
    },
    /// Forward to the origin and store nothing: not a cacheable method, a HEAD miss, a
    /// collapsed request whose leader's response could not be shared, or a viewer's `no-store`.
    Pass,
    /// Answer with this response at once: `only-if-cached` with no fresh copy (504).
    Respond(Response<EdgeBody>),
}

/// The request `Cache-Control` directives the cache may obey (RFC 9111 §5.2.1).
#[derive(Debug, Default)]
struct ViewerDirectives {
    no_cache: bool,
    no_store: bool,
    only_if_cached: bool,
    max_age: Option<u64>,
    min_fresh: Option<u64>,
}

impl ViewerDirectives {
    /// The directives of `headers` that `policy` lets the viewer use.
    fn read(headers: &HeaderMap, policy: ViewerCacheControl) -> Self {
        let mut directives = ViewerDirectives::default();
        for (name, value) in cache_control_directives(headers) {
            let seconds = || value.and_then(|v| v.parse::<u64>().ok());
            match name.to_ascii_lowercase().as_str() {
                "only-if-cached" => directives.only_if_cached = true,
                _ if policy == ViewerCacheControl::Ignore => {}
                "no-cache" => directives.no_cache = true,
                "no-store" => directives.no_store = true,
                // A malformed value is ignored rather than read as 0: it must not turn every
                // request into an origin fetch.
                "max-age" => directives.max_age = seconds().or(directives.max_age),
                "min-fresh" => directives.min_fresh = seconds().or(directives.min_fresh),
                _ => {}
            }
        }
        directives
    }

    /// Whether the viewer lets a stale copy answer while it is revalidated
    /// (`stale-while-revalidate`): not when it asked for revalidation or a bound on age.
    fn tolerates_stale(&self) -> bool {
        !self.no_cache && self.max_age.is_none() && self.min_fresh.is_none()
    }

    /// Whether a fresh `object` may answer this request as it is, without revalidation.
    fn accepts(&self, object: &CachedObject, now: Instant) -> bool {
        if self.no_cache {
            return false;
        }
        // The exact age, not the whole seconds of `Age`: `max-age=0` must refuse an object
        // stored a moment ago.
        let resident = now.saturating_duration_since(object.stored_at);
        let age = Duration::from_secs(object.initial_age) + resident;
        if self
            .max_age
            .is_some_and(|max| age > Duration::from_secs(max))
        {
            return false;
        }
        let left = object.ttl.saturating_sub(resident);
        self.min_fresh
            .is_none_or(|min| left >= Duration::from_secs(min))
    }
}

/// RFC 9111 §5.2.1.7: `only-if-cached` without a usable stored response gets 504.
fn gateway_timeout(ctx: &mut RequestCtx) -> CacheDecision {
    const BODY: &str = "504 Gateway Timeout\n";
    ctx.cache = CachePhase::Error;
    let mut response = Response::new(EdgeBody::full(BODY));
    *response.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(BODY.len()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    CacheDecision::Respond(response)
}

/// A background revalidation of a stale object served meanwhile: it leads the key's flight, so
/// there is one per object at a time.
pub struct Revalidation {
    /// The cache key.
    pub key: CacheKey,
    /// Tells requests that missed meanwhile the outcome.
    pub leader: Leader,
    /// The stale copy whose validators the origin gets.
    pub stale: Arc<CachedObject>,
}

async fn look(
    node: &Node,
    behavior: &BehaviorConfig,
    ctx: &mut RequestCtx,
    parts: &Parts,
) -> CacheDecision {
    let is_head = parts.method == Method::HEAD;
    if parts.method != Method::GET && !is_head {
        return CacheDecision::Pass;
    }
    let key = key(node, behavior, ctx, parts);
    if let Some(debug) = &mut ctx.debug {
        debug.cache_key = Some(key.as_str().to_owned());
    }
    let viewer = ViewerDirectives::read(&parts.headers, behavior.cache.viewer_cache_control);
    if viewer.no_store && !viewer.only_if_cached {
        return CacheDecision::Pass;
    }
    let now = Instant::now();
    let stale = match find(node, ctx, &key, parts, &viewer, now).await {
        Lookup::Fresh(object) if viewer.accepts(&object, now) => return CacheDecision::Hit(object),
        // Too old for this viewer: revalidated like a stale copy.
        Lookup::Fresh(object) | Lookup::Stale(object) => Some(object),
        Lookup::Miss => None,
    };
    if viewer.only_if_cached {
        return gateway_timeout(ctx);
    }
    let swr_candidate = stale
        .as_ref()
        .filter(|o| !is_head && !o.is_fresh(now) && viewer.tolerates_stale());
    if let Some(object) = swr_candidate {
        let windows = StaleWindows::of(&object.headers.to_map(), &behavior.cache);
        if stale::within(object, windows.while_revalidate, now) {
            // RFC 5861 §3: serve the stale copy now and revalidate in the background, unless a
            // fetch for the key is already under way (then it will refresh the object).
            let revalidation = match node.coalescer.join(&key) {
                Join::Leader(leader) => Some(Revalidation {
                    key,
                    leader,
                    stale: Arc::clone(object),
                }),
                Join::Waiter(_) => None,
            };
            return CacheDecision::Stale {
                object: Arc::clone(object),
                revalidation,
            };
        }
    }
    // A HEAD miss is forwarded as HEAD: fetching the whole body to fill the cache could cost
    // far more than the viewer asked for.
    if is_head {
        return CacheDecision::Pass;
    }
    match node.coalescer.join(&key) {
        Join::Leader(leader) => {
            // The previous flight may have stored the object between our lookup and join.
            let now = Instant::now();
            if let Lookup::Fresh(object) = find(node, ctx, &key, parts, &viewer, now).await {
                if viewer.accepts(&object, now) {
                    leader.finish(FlightOutcome::Stored(object.clone()));
                    return CacheDecision::Hit(object);
                }
            }
            CacheDecision::Fetch { key, leader, stale }
        }
        Join::Waiter(rx) => match coalesce::wait(rx).await {
            // Look up again rather than take the leader's object: under `Vary` the leader's
            // variant may not be this request's.
            FlightOutcome::Stored(_) => {
                match find(node, ctx, &key, parts, &viewer, Instant::now()).await {
                    Lookup::Fresh(object) => CacheDecision::Hit(object),
                    _ => CacheDecision::Pass,
                }
            }
            FlightOutcome::Forward | FlightOutcome::Uncacheable | FlightOutcome::Pending => {
                CacheDecision::Pass
            }
        },
    }
}

/// Finds the stored object for `key`: for a viewer that gets an encoding (`ctx.encoding`),
/// its fresh compressed variant, else one built now from a fresh identity object; otherwise
/// (and for an object that is not compressible) what the identity lookup finds. A variant is
/// never returned stale or refused by the viewer's `Cache-Control`: revalidation and
/// stale-serving work on the identity object, which the variants follow.
async fn find(
    node: &Node,
    ctx: &RequestCtx,
    key: &CacheKey,
    parts: &Parts,
    viewer: &ViewerDirectives,
    now: Instant,
) -> Lookup {
    let Some(encoding) = ctx.encoding else {
        return node.store.lookup_current(key, &parts.headers, now);
    };
    let variant_key = compress::variant_key(key, encoding);
    if let Lookup::Fresh(variant) = node.store.lookup_current(&variant_key, &parts.headers, now) {
        if viewer.accepts(&variant, now) {
            return Lookup::Fresh(variant);
        }
    }
    let identity = node.store.lookup_current(key, &parts.headers, now);
    let derivable = match &identity {
        Lookup::Fresh(object) => viewer.accepts(object, now) && compress::is_derivable(object),
        _ => false,
    };
    let Lookup::Fresh(object) = identity else {
        return identity;
    };
    if !derivable {
        return Lookup::Fresh(object);
    }
    let derived = compress::derive(
        &node.store,
        &node.coalescer,
        key,
        &parts.headers,
        Arc::clone(&object),
        encoding,
    )
    .await;
    match derived {
        Some((variant, saved)) => {
            if let Some((identity, compressed)) = saved {
                tracing::debug!(
                    request = ctx.id,
                    encoding = encoding.as_str(),
                    identity,
                    compressed,
                    "compressed variant stored"
                );
            }
            Lookup::Fresh(variant)
        }
        None => Lookup::Fresh(object),
    }
}

/// Picks the encoding a viewer gets under a `compress = true` behavior (`ctx.encoding`) and
/// takes the viewer's `Accept-Encoding` out of the request: the cache sees only the normalized
/// encoding (never the raw header, which would split the cache per browser), and the origin
/// gets that one encoding (`origin_request`). A range request gets the identity object: ranges
/// of a compressed variant would be ranges of bytes no other response has.
pub fn negotiate_encoding(behavior: &BehaviorConfig, ctx: &mut RequestCtx, parts: &mut Parts) {
    if !behavior.compress {
        return;
    }
    ctx.encoding = if parts.headers.contains_key(RANGE) {
        None
    } else {
        compress::negotiate(&parts.headers)
    };
    parts.headers.remove(ACCEPT_ENCODING);
}

/// Looks the request up, waiting on another request's fetch if one is under way.
pub async fn lookup(
    node: &Node,
    behavior: &BehaviorConfig,
    ctx: &mut RequestCtx,
    parts: &Parts,
) -> CacheDecision {
    let decision = look(node, behavior, ctx, parts).await;
    ctx.mark("cache");
    decision
}

/// The cache key: the behavior's, or the one a viewer-request function set, plus the parts it
/// added. When a function sent the request to another origin than the behavior's, the origin
/// is part of the key: the same path from two origins is two objects.
fn key(node: &Node, behavior: &BehaviorConfig, ctx: &RequestCtx, parts: &Parts) -> CacheKey {
    // A tier request's key is the edge's, exactly: recomputing it here would miss the parts
    // the edge's viewer-request function added.
    if let Some(tier) = &ctx.tier {
        return tier.key.clone();
    }
    let mut key = match &ctx.cache_key_override {
        Some(custom) => CacheKey::custom(custom),
        None => CacheKey::build(&behavior.cache_key, parts),
    };
    for part in &ctx.cache_key_parts {
        key = key.variant(part);
    }
    if let Some(origin) = ctx.origin_override.filter(|o| *o != behavior.origin) {
        key = key.variant(&format!("origin={}", node.config.origins[origin].name));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn request(cc: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, cc.parse().expect("value"));
        headers
    }

    /// A 100 s object the origin said was already 10 s old.
    fn object() -> CachedObject {
        CachedObject::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(b"x"),
            Duration::from_secs(100),
            10,
        )
    }

    #[test]
    fn ignore_keeps_only_only_if_cached() {
        let d = ViewerDirectives::read(
            &request("no-cache, no-store, max-age=0, min-fresh=5, only-if-cached"),
            ViewerCacheControl::Ignore,
        );
        assert!(d.only_if_cached && !d.no_cache && !d.no_store);
        assert_eq!((d.max_age, d.min_fresh), (None, None));
        assert!(d.accepts(&object(), Instant::now()));
    }

    #[test]
    fn honor_checks_age_and_remaining_freshness() {
        let o = object();
        let now = o.stored_at + Duration::from_secs(30);
        let accepts = |cc: &str| {
            ViewerDirectives::read(&request(cc), ViewerCacheControl::Honor).accepts(&o, now)
        };
        assert!(accepts("max-age=41"), "40 s old");
        assert!(!accepts("max-age=39"));
        assert!(accepts("min-fresh=70"), "70 s left");
        assert!(!accepts("min-fresh=71"));
        assert!(!accepts("no-cache"));
        assert!(
            accepts("max-age=abc"),
            "a malformed value is ignored, not read as 0"
        );
        assert!(accepts("public"));
    }
}
