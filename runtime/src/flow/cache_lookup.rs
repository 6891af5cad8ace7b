//! Cache lookup: builds the key, finds a fresh object, or arranges the one fetch that
//! concurrent misses for the key share. Only GET and HEAD use the cache.

use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::Method;

use super::RequestCtx;
use crate::cache::stale::{self, StaleWindows};
use crate::cache::{coalesce, CacheKey, CachedObject, FlightOutcome, Join, Leader, Lookup};
use crate::config::BehaviorConfig;
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
    /// Forward to the origin and store nothing: not a cacheable method, a HEAD miss, or a
    /// collapsed request whose leader's response could not be shared.
    Pass,
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
    let now = Instant::now();
    let stale = match node.store.lookup_current(&key, &parts.headers, now) {
        Lookup::Fresh(object) => return CacheDecision::Hit(object),
        Lookup::Stale(object) => Some(object),
        Lookup::Miss => None,
    };
    if let Some(object) = stale.as_ref().filter(|o| !is_head && !o.is_fresh(now)) {
        let windows = StaleWindows::of(&object.headers, &behavior.cache);
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
            if let Lookup::Fresh(object) =
                node.store
                    .lookup_current(&key, &parts.headers, Instant::now())
            {
                leader.finish(FlightOutcome::Stored(object.clone()));
                return CacheDecision::Hit(object);
            }
            CacheDecision::Fetch { key, leader, stale }
        }
        Join::Waiter(rx) => match coalesce::wait(rx).await {
            // Look up again rather than take the leader's object: under `Vary` the leader's
            // variant may not be this request's.
            FlightOutcome::Stored(_) => {
                match node
                    .store
                    .lookup_current(&key, &parts.headers, Instant::now())
                {
                    Lookup::Fresh(object) => CacheDecision::Hit(object),
                    _ => CacheDecision::Pass,
                }
            }
            FlightOutcome::Forward | FlightOutcome::Pending => CacheDecision::Pass,
        },
    }
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
