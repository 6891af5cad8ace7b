//! Origin fetch: sends the prepared request to the chosen origin and returns the response as
//! soon as its headers arrive; the body streams on. The time to headers goes to the metrics.

use std::time::Instant;

use http::Response;

use super::origin_request::OriginRequest;
use super::RequestCtx;
use crate::body::EdgeBody;
use crate::error::Error;
use crate::interim::InterimSink;
use crate::origin::Origin;
use crate::Node;

/// Fetches from `origin` (the one `origin_select` recorded in `ctx`); the origin's 1xx go to
/// `interim`.
pub async fn fetch(
    node: &Node,
    ctx: &mut RequestCtx,
    origin: &Origin,
    forwarded: OriginRequest,
    interim: Option<&InterimSink>,
) -> Result<Response<EdgeBody>, Error> {
    let started = Instant::now();
    let result = origin
        .fetch(forwarded.request, forwarded.replayable, interim)
        .await;
    if let Some(index) = ctx.origin {
        node.metrics
            .origin_fetch(&node.config.origins[index].name, started.elapsed());
    }
    ctx.mark("origin");
    Ok(result?)
}
