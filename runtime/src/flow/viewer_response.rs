//! viewer-response: the last phase, on every response (hit, miss, generated or error-free),
//! just before `X-Cache` and `Age` are added.
//!
//! This is where a behavior's `viewer-response` edge function will run (functions issue);
//! until then the response goes out unchanged.

use http::Response;

use super::RequestCtx;
use crate::body::EdgeBody;

/// Runs the viewer-response phase.
pub fn run(_ctx: &mut RequestCtx, response: Response<EdgeBody>) -> Response<EdgeBody> {
    response
}
