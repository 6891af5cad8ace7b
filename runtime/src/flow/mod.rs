//! The request flow: one function, [`handle`], that calls each phase of DESIGN.md's flow chart
//! in order. Read it top to bottom to learn what the node does with a request.
//!
//! Phases do not call each other; they take and return plain values (a request, a response, a
//! cache decision) and record shared facts in one [`RequestCtx`].

pub mod cache_lookup;
pub mod cache_store;
pub mod origin_fetch;
pub mod origin_request;
pub mod origin_response;
pub mod origin_select;
pub mod respond;
pub mod viewer_request;
pub mod viewer_response;

use std::net::SocketAddr;
use std::time::Instant;

use http::{Request, Response};

use crate::body::EdgeBody;
use crate::error::Error;
use crate::Node;
use cache_lookup::CacheDecision;
use viewer_request::HookOutcome;

/// How the cache took part in a request; its string form is exactly the `X-Cache` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePhase {
    /// Served from a fresh cached object.
    Hit,
    /// Fetched from the origin (stored or not).
    Miss,
    /// A stale object was revalidated with the origin (304) and served.
    RefreshHit,
    /// The node answered with an error.
    Error,
}

impl CachePhase {
    /// The `X-Cache` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CachePhase::Hit => "Hit",
            CachePhase::Miss => "Miss",
            CachePhase::RefreshHit => "RefreshHit",
            CachePhase::Error => "Error",
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
    let response = match run(node, ctx, request).await {
        Ok(response) => response,
        Err(error) => respond::error(node, ctx, &error),
    };
    respond::finish(ctx, response)
}

async fn run(
    node: &Node,
    ctx: &mut RequestCtx,
    request: Request<EdgeBody>,
) -> Result<Response<EdgeBody>, Error> {
    // Routing: on the normalized path, the first behavior whose pattern matches, and whether it
    // allows the method.
    let request = viewer_request::normalize(request)?;
    let behavior = origin_select::behavior(&node.config, ctx, &request)?;

    // viewer-request: may rewrite the request or answer it outright.
    let request = match viewer_request::run(ctx, request) {
        HookOutcome::Continue(request) => request,
        HookOutcome::Respond(response) => return Ok(viewer_response::run(ctx, response)),
    };
    let (parts, body) = request.into_parts();

    // Cache lookup: a fresh hit is answered at once; concurrent misses collapse into one fetch.
    let (key, leader, stale) = match cache_lookup::lookup(node, behavior, &parts).await {
        CacheDecision::Hit(object) => {
            let response = respond::from_cache(ctx, &parts, &object, CachePhase::Hit);
            return Ok(viewer_response::run(ctx, response));
        }
        CacheDecision::Fetch { key, leader, stale } => (key, Some(leader), stale),
        CacheDecision::Pass => {
            let origin = origin_select::origin(node, ctx, behavior);
            let forwarded = origin_request::prepare(ctx, &parts, body, None);
            let response = origin_fetch::fetch(origin, forwarded).await?;
            return Ok(viewer_response::run(ctx, origin_response::run(response)));
        }
    };

    // origin-request: the request as the origin will see it (revalidating a stale copy if any).
    let origin = origin_select::origin(node, ctx, behavior);
    let forwarded = origin_request::prepare(ctx, &parts, body, Some(stale.as_deref()));

    // Origin fetch.
    let response = origin_fetch::fetch(origin, forwarded).await?;

    // origin-response: the response as the cache will store it.
    let response = origin_response::run(response);

    // Cache store: a 304 refreshes the stale copy; otherwise store per policy while streaming.
    if let Some(refreshed) =
        cache_store::refresh(node, behavior, &key, &parts, stale.as_ref(), &response)
    {
        if let Some(leader) = leader {
            leader.finish(crate::cache::FlightOutcome::Stored(refreshed.clone()));
        }
        let response = respond::from_cache(ctx, &parts, &refreshed, CachePhase::RefreshHit);
        return Ok(viewer_response::run(ctx, response));
    }
    let response = cache_store::store(node, behavior, ctx, key, leader, &parts, response);

    // viewer-response, with the viewer's own conditional headers answered from the new object.
    Ok(viewer_response::run(
        ctx,
        respond::not_modified_if_matching(&parts, response),
    ))
}
