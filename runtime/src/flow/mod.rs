//! The request flow: one function, [`handle`], that calls each phase of DESIGN.md's flow chart
//! in order. Read it top to bottom to learn what the node does with a request.
//!
//! Phases do not call each other; they take and return plain values (a request, a response, a
//! cache decision) and record shared facts in one [`RequestCtx`]. Edge functions run inside the
//! phases named for their events, through [`functions`]; a behavior without functions never
//! reaches Wasm code.

pub mod cache_lookup;
pub mod cache_store;
pub mod debug;
pub mod functions;
pub mod origin_fetch;
pub mod origin_request;
pub mod origin_response;
pub mod origin_select;
pub mod respond;
pub mod viewer_request;
pub mod viewer_response;

use std::net::SocketAddr;
use std::time::Instant;

use http::request::Parts;
use http::{Request, Response, Version};
use http_body_util::BodyExt;

use crate::body::EdgeBody;
use crate::cache::FlightOutcome;
use crate::config::OnParentFailure;
use crate::error::Error;
use crate::interim::InterimSink;
use crate::tier;
use crate::Node;
use cache_lookup::CacheDecision;
use cache_store::Fetched;
use functions::HookOutcome;
use origin_request::Forward;

/// How the cache took part in a request; its string form is exactly the `X-Cache` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePhase {
    /// Served from a fresh cached object.
    Hit,
    /// Fetched from the origin (stored or not).
    Miss,
    /// A stale object was revalidated with the origin (304) and served.
    RefreshHit,
    /// An edge function answered; the cache and origin were skipped.
    Generated,
    /// The node answered with an error.
    Error,
    /// A plain-HTTP viewer was sent to HTTPS (`viewer_protocol = "redirect-to-https"`).
    Redirect,
}

impl CachePhase {
    /// The `X-Cache` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CachePhase::Hit => "Hit",
            CachePhase::Miss => "Miss",
            CachePhase::RefreshHit => "RefreshHit",
            CachePhase::Generated => "FunctionGeneratedResponse",
            CachePhase::Error => "Error",
            CachePhase::Redirect => "Redirect",
        }
    }
}

/// Facts about one request that several phases need, filled in as the flow goes.
#[derive(Debug)]
pub struct RequestCtx {
    /// Per-node request counter, for logs.
    pub id: u64,
    /// The viewer's socket address.
    pub viewer: SocketAddr,
    /// When the request arrived.
    pub started: Instant,
    /// Index of the matched behavior (set by `origin_select`).
    pub behavior: Option<usize>,
    /// Index of the origin fetched from, if any.
    pub origin: Option<usize>,
    /// How the cache took part (`X-Cache`).
    pub cache: CachePhase,
    /// Seconds for the `Age` header, when the response went through the cache.
    pub age: Option<u64>,
    /// Origin chosen by a request-event function.
    pub origin_override: Option<usize>,
    /// Cache key set outright by the viewer-request function.
    pub cache_key_override: Option<String>,
    /// Parts the viewer-request function added to the cache key.
    pub cache_key_parts: Vec<String>,
    /// Caching lifetime set by the origin-response function, in seconds.
    pub ttl_override: Option<u64>,
    /// The content coding this viewer gets under a `compress = true` behavior (set by
    /// `cache_lookup::negotiate_encoding`); `None`: identity.
    pub encoding: Option<crate::cache::compress::Encoding>,
    /// What the debug headers will report; `None` unless the request asked for them.
    pub debug: Option<Box<debug::DebugInfo>>,
    /// Where an origin's 1xx interim responses go (set by the listener for HTTP/1.1 viewers).
    pub interim: Option<InterimSink>,
    /// The viewer came in over the HTTPS listener (set by the listener).
    pub https: bool,
    /// The HTTPS listener's port, where `redirect-to-https` sends plain-HTTP viewers.
    pub https_port: Option<u16>,
    /// What the edge decided, when this is a tier request from an edge (this node its parent).
    pub tier: Option<crate::tier::TierRequest>,
}

impl RequestCtx {
    /// A context for a request that just arrived.
    pub fn new(id: u64, viewer: SocketAddr) -> Self {
        RequestCtx {
            id,
            viewer,
            started: Instant::now(),
            behavior: None,
            origin: None,
            cache: CachePhase::Miss,
            age: None,
            origin_override: None,
            cache_key_override: None,
            cache_key_parts: Vec::new(),
            ttl_override: None,
            encoding: None,
            debug: None,
            interim: None,
            https: false,
            https_port: None,
            tier: None,
        }
    }

    /// Ends a stage for `Server-Timing` (only when debugging).
    pub fn mark(&mut self, stage: &'static str) {
        if let Some(debug) = &mut self.debug {
            debug.mark(stage);
        }
    }
}

/// Serves one viewer request. Never fails: errors become short responses with
/// `X-Cache: Error`.
pub async fn handle(
    node: &Node,
    ctx: &mut RequestCtx,
    request: Request<EdgeBody>,
) -> Response<EdgeBody> {
    if let Some(name) = &node.config.server.debug_header {
        if request.headers().contains_key(name) {
            ctx.debug = Some(Box::new(debug::DebugInfo::new(ctx.started)));
        }
    }
    let tiered = tier::has_tier_headers(request.headers());
    if tiered && request.uri().path() == tier::INVALIDATION_PATH {
        return tier::invalidation::serve(node, request).await;
    }
    let head = request.method() == http::Method::HEAD;
    let response = match run(node, ctx, request).await {
        Ok(response) => response,
        Err(error) => {
            let mut response = respond::error(node, ctx, &error);
            if tiered {
                // The edge must tell this node's own failures from an origin's it passes on.
                response
                    .headers_mut()
                    .insert(tier::TIER_ERROR.clone(), tier_error_side(&error));
            }
            response
        }
    };
    let mut response = respond::frame(head, respond::finish(ctx, response));
    if let Some(debug) = &ctx.debug {
        let behavior = ctx.behavior.map(|i| node.config.behaviors[i].path.as_str());
        let origin = ctx.origin.map(|i| node.config.origins[i].name.as_str());
        debug.write(
            response.headers_mut(),
            behavior,
            origin,
            ctx.started.elapsed(),
        );
    }
    response
}

async fn run(
    node: &Node,
    ctx: &mut RequestCtx,
    request: Request<EdgeBody>,
) -> Result<Response<EdgeBody>, Error> {
    // Routing: on the normalized path, the first behavior whose pattern matches, and whether it
    // allows the method.
    let mut request = viewer_request::normalize(request)?;
    // A tier request from an edge carries the key and origin the edge decided; a request with
    // tier headers but not this node's token is refused, so viewers cannot inject them.
    let origins = &node.config.origins;
    ctx.tier = node
        .tier
        .accept(request.headers_mut(), |name| {
            origins.iter().position(|o| o.name == name)
        })
        .inspect_err(|refusal| {
            tracing::warn!(request = ctx.id, viewer = %ctx.viewer, error = %refusal, "tier request refused");
        })?;
    if let Some(tier) = &ctx.tier {
        ctx.origin_override = Some(tier.origin);
    }
    let behavior = origin_select::behavior(&node.config, ctx, &request)?;
    // The viewer protocol policy comes before any function, as CloudFront applies it.
    if let Some(redirect) = viewer_request::enforce_protocol(behavior, ctx, &request)? {
        return Ok(redirect);
    }

    // viewer-request: the function may rewrite the request or answer it outright.
    let request = match viewer_request::run(node, ctx, request).await? {
        HookOutcome::Continue(request) => request,
        HookOutcome::Respond { request, response } => {
            let (parts, _) = request.into_parts();
            return viewer_response::run(node, ctx, &parts, response).await;
        }
    };
    let (mut parts, body) = request.into_parts();
    cache_lookup::negotiate_encoding(behavior, ctx, &mut parts);

    // Cache lookup: a fresh hit is answered at once, and so is a stale copy within its
    // stale-while-revalidate window (revalidated in the background); concurrent misses
    // collapse into one fetch.
    let (key, leader, stale) = match cache_lookup::lookup(node, behavior, ctx, &parts).await {
        CacheDecision::Hit(object) => {
            let response = respond::from_cache(ctx, &parts, &object, CachePhase::Hit);
            return viewer_response::run(node, ctx, &parts, response).await;
        }
        CacheDecision::Stale {
            object,
            revalidation,
        } => {
            if let Some(revalidation) = revalidation {
                spawn_revalidation(node, ctx, &parts, revalidation);
            }
            let response = respond::from_cache(ctx, &parts, &object, CachePhase::Hit);
            return viewer_response::run(node, ctx, &parts, response).await;
        }
        CacheDecision::Fetch { key, leader, stale } => (key, Some(leader), stale),
        CacheDecision::Pass => {
            let forwarded = origin_request::prepare(ctx, &parts, body, None);
            return pass(node, ctx, behavior, &parts, forwarded).await;
        }
        CacheDecision::Respond(response) => {
            return viewer_response::run(node, ctx, &parts, response).await;
        }
    };

    // origin-request: the request as the origin will see it (revalidating a stale copy if any);
    // the function may change it, pick another origin, or answer.
    let forwarded = origin_request::prepare(ctx, &parts, body, Some(stale.as_deref()));

    // Parent tier: an edge fills from one parent, chosen by the key; the origin-facing
    // functions run there, where the origin is fetched.
    let forwarded = match tier_fill(node, ctx, behavior, &key, forwarded).await {
        TierFill::Origin(forwarded) => forwarded,
        TierFill::Fetched(fetched) => {
            let response =
                match cache_store::stale_if_error(ctx, behavior, stale.as_deref(), fetched)? {
                    Fetched::Response(response) => response,
                    Fetched::Stale(object) => {
                        let response = respond::from_cache(ctx, &parts, object, CachePhase::Hit);
                        return viewer_response::run(node, ctx, &parts, response).await;
                    }
                };
            return store_fill(node, ctx, behavior, key, leader, &parts, stale, response).await;
        }
    };

    let forwarded = match origin_request::run(node, ctx, forwarded).await? {
        Forward::Fetch(forwarded) => forwarded,
        Forward::Respond(response) => {
            return viewer_response::run(node, ctx, &parts, response).await
        }
    };

    // Origin fetch (a dropped leader releases collapsed waiters if this fails). An origin that
    // fails while a stale copy may stand in gets the stale copy served instead (stale-if-error).
    let origin = origin_select::origin(node, ctx, behavior);
    let interim = interim(ctx, &parts);
    let fetched = origin_fetch::fetch(node, ctx, origin, forwarded, interim.as_ref()).await;
    let response = match cache_store::stale_if_error(ctx, behavior, stale.as_deref(), fetched)? {
        Fetched::Response(response) => response,
        Fetched::Stale(object) => {
            let response = respond::from_cache(ctx, &parts, object, CachePhase::Hit);
            return viewer_response::run(node, ctx, &parts, response).await;
        }
    };

    // origin-response: the response as the cache will store it.
    let response = origin_response::run(node, ctx, &parts, response).await?;
    store_fill(node, ctx, behavior, key, leader, &parts, stale, response).await
}

/// The end of a fill, from the origin or a parent: a 304 refreshes the stale copy; otherwise
/// the response is stored per policy while it streams, then viewer-response runs, with the
/// viewer's own conditional headers answered from the new object.
#[allow(clippy::too_many_arguments)]
async fn store_fill(
    node: &Node,
    ctx: &mut RequestCtx,
    behavior: &crate::config::BehaviorConfig,
    key: crate::cache::CacheKey,
    leader: Option<crate::cache::Leader>,
    parts: &Parts,
    stale: Option<std::sync::Arc<crate::cache::CachedObject>>,
    response: Response<EdgeBody>,
) -> Result<Response<EdgeBody>, Error> {
    if let Some(refreshed) =
        cache_store::refresh(node, behavior, &key, parts, stale.as_ref(), &response)
    {
        if let Some(leader) = leader {
            leader.finish(FlightOutcome::Stored(refreshed.clone()));
        }
        let response = respond::from_cache(ctx, parts, &refreshed, CachePhase::RefreshHit);
        return viewer_response::run(node, ctx, parts, response).await;
    }
    let response = cache_store::store(node, behavior, ctx, key, leader, parts, response);
    viewer_response::run(
        node,
        ctx,
        parts,
        respond::not_modified_if_matching(parts, response),
    )
    .await
}

/// What the parent tier did with a fill.
enum TierFill {
    /// The node has no parents, or none answered and `on_parent_failure = "origin"`: fetch
    /// from the origin with this request.
    Origin(origin_request::OriginRequest),
    /// A parent answered, or none did and `on_parent_failure = "error"`.
    Fetched(Result<Response<EdgeBody>, Error>),
}

/// Asks the parents for a fill when the node has any. The parent's response is treated as the
/// origin's (hop-by-hop headers go, this hop joins `Via`); the origin-facing functions do not
/// run here, since the parent ran them.
async fn tier_fill(
    node: &Node,
    ctx: &mut RequestCtx,
    behavior: &crate::config::BehaviorConfig,
    key: &crate::cache::CacheKey,
    forwarded: origin_request::OriginRequest,
) -> TierFill {
    if !node.tier.has_parents() {
        return TierFill::Origin(forwarded);
    }
    let index = ctx.origin_override.unwrap_or(behavior.origin);
    let origin = &node.config.origins[index];
    let response_timeout = match &origin.kind {
        crate::config::OriginKind::Http {
            response_timeout, ..
        } => *response_timeout,
        #[allow(unreachable_patterns)]
        _ => crate::config::DEFAULT_RESPONSE_TIMEOUT,
    };
    let fetched = node
        .tier
        .fetch(
            &node.metrics,
            key,
            &origin.name,
            &forwarded.request,
            response_timeout,
            node.config.server.debug_header.as_ref(),
        )
        .await;
    ctx.mark("parent");
    match fetched {
        tier::ParentFetch::Answered {
            mut response,
            parent,
            parent_cache,
        } => {
            ctx.origin = Some(index);
            if let Some(debug) = &mut ctx.debug {
                let cache = parent_cache
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                debug.parent = Some((parent, cache.to_owned()));
            }
            let headers = response.headers_mut();
            crate::proxy_headers::strip_hop_by_hop(headers);
            crate::proxy_headers::add_via(headers);
            TierFill::Fetched(Ok(*response))
        }
        tier::ParentFetch::Failed(OnParentFailure::Origin) => TierFill::Origin(forwarded),
        tier::ParentFetch::Failed(OnParentFailure::Error) => {
            ctx.origin = Some(index);
            TierFill::Fetched(Err(Error::ParentsFailed))
        }
    }
}

/// The `X-Edge-Tier-Error` value for an error this node answered a tier request with.
fn tier_error_side(error: &Error) -> http::HeaderValue {
    use crate::error::Side;
    http::HeaderValue::from_static(match (error, error.side()) {
        (Error::TierRefused(_), _) => "refused",
        (_, Side::Viewer) => "viewer",
        (_, Side::Origin) => "origin",
        (_, Side::Function) => "function",
        (_, Side::Internal) => "internal",
    })
}

/// The path for requests the cache does not take part in: origin-request, fetch,
/// origin-response, viewer-response.
async fn pass(
    node: &Node,
    ctx: &mut RequestCtx,
    behavior: &crate::config::BehaviorConfig,
    parts: &Parts,
    forwarded: origin_request::OriginRequest,
) -> Result<Response<EdgeBody>, Error> {
    let forwarded = match origin_request::run(node, ctx, forwarded).await? {
        Forward::Fetch(forwarded) => forwarded,
        Forward::Respond(response) => {
            return viewer_response::run(node, ctx, parts, response).await
        }
    };
    let origin = origin_select::origin(node, ctx, behavior);
    let interim = interim(ctx, parts);
    let response = origin_fetch::fetch(node, ctx, origin, forwarded, interim.as_ref()).await?;
    // A successful unsafe request changed what the origin holds: stored copies go.
    cache_store::invalidate_after_unsafe(node, ctx, parts, &response);
    let response = origin_response::run(node, ctx, parts, response).await?;
    viewer_response::run(node, ctx, parts, response).await
}

/// Where the origin's 1xx interim responses go: to the viewer, which must not get them over
/// HTTP/1.0 (RFC 9110 §15.2). Passed to the fetch beside the request rather than in its
/// extensions: the map allocated on first insert, and the insert and lookup cost about 1,400
/// instructions a pass-through request.
fn interim(ctx: &RequestCtx, parts: &Parts) -> Option<InterimSink> {
    ctx.interim
        .as_ref()
        .filter(|_| parts.version >= Version::HTTP_11)
        .cloned()
}

/// Starts the background revalidation of a stale object that was just served
/// (`stale-while-revalidate`): the fill path of [`run`] without a viewer. It runs the
/// origin-facing functions as a fill would, and leads the key's flight until it is done, so
/// there is one per object at a time.
fn spawn_revalidation(
    node: &Node,
    ctx: &RequestCtx,
    parts: &Parts,
    revalidation: cache_lookup::Revalidation,
) {
    let Some(index) = ctx.behavior else {
        return;
    };
    let node = node.clone();
    let parts = parts.clone();
    let mut background = RequestCtx::new(ctx.id, ctx.viewer);
    background.behavior = ctx.behavior;
    background.origin_override = ctx.origin_override;
    tokio::spawn(async move {
        let behavior = &node.config.behaviors[index];
        let id = background.id;
        if let Err(error) = revalidate(&node, &mut background, behavior, &parts, revalidation).await
        {
            tracing::warn!(request = id, error = %error, "background revalidation failed; the stale copy stays");
        }
    });
}

async fn revalidate(
    node: &Node,
    ctx: &mut RequestCtx,
    behavior: &crate::config::BehaviorConfig,
    parts: &Parts,
    revalidation: cache_lookup::Revalidation,
) -> Result<(), Error> {
    let cache_lookup::Revalidation { key, leader, stale } = revalidation;
    let forwarded = origin_request::prepare(ctx, parts, EdgeBody::Empty, Some(Some(&stale)));
    let response = match tier_fill(node, ctx, behavior, &key, forwarded).await {
        TierFill::Fetched(fetched) => {
            let response = fetched?;
            // As below: the stale copy stays.
            if cache_store::is_origin_failure(response.status()) {
                return Ok(());
            }
            response
        }
        TierFill::Origin(forwarded) => {
            let forwarded = match origin_request::run(node, ctx, forwarded).await? {
                Forward::Fetch(forwarded) => forwarded,
                // A generated answer is for a viewer; there is none, and nothing to store.
                Forward::Respond(_) => return Ok(()),
            };
            let origin = origin_select::origin(node, ctx, behavior);
            let response = origin_fetch::fetch(node, ctx, origin, forwarded, None).await?;
            // A failing origin leaves the stale copy in place (the dropped leader releases
            // waiters).
            if cache_store::is_origin_failure(response.status()) {
                return Ok(());
            }
            origin_response::run(node, ctx, parts, response).await?
        }
    };
    if let Some(refreshed) =
        cache_store::refresh(node, behavior, &key, parts, Some(&stale), &response)
    {
        leader.finish(FlightOutcome::Stored(refreshed));
        return Ok(());
    }
    let response = cache_store::store(node, behavior, ctx, key, Some(leader), parts, response);
    // Reading the body to its end is what completes the stored object.
    let _ = response.into_body().collect().await;
    Ok(())
}
