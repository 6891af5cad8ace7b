//! viewer-request: the first phase after routing, before the cache is looked up.
//!
//! This is where a behavior's `viewer-request` edge function will run: it may rewrite the URI,
//! headers and query, change the cache key, pick the origin, or answer at once. Edge functions
//! arrive with the functions issue; until then the request continues unchanged.

use http::{Request, Response};

use super::RequestCtx;
use crate::body::EdgeBody;

/// What a request-phase hook decided.
#[derive(Debug)]
pub enum HookOutcome {
    /// Go on with this (possibly changed) request.
    Continue(Request<EdgeBody>),
    /// Answer the viewer with this response; the cache and origin are skipped.
    Respond(Response<EdgeBody>),
}

/// Runs the viewer-request phase.
pub fn run(_ctx: &mut RequestCtx, request: Request<EdgeBody>) -> HookOutcome {
    HookOutcome::Continue(request)
}
