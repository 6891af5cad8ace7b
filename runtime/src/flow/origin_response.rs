//! origin-response: the origin's response as the cache will store it and viewers will see it:
//! hop-by-hop headers removed, this hop added to `Via`, then the behavior's `origin-response`
//! function (status, headers, body, caching lifetime) before the cache stores anything.

use edge_sdk::abi::Event;
use http::request::Parts;
use http::Response;

use super::functions::{self, Started};
use super::RequestCtx;
use crate::body::EdgeBody;
use crate::error::Error;
use crate::proxy_headers::{add_via, strip_hop_by_hop};
use crate::Node;

/// Runs the origin-response phase.
pub async fn run(
    node: &Node,
    ctx: &mut RequestCtx,
    request: &Parts,
    mut response: Response<EdgeBody>,
) -> Result<Response<EdgeBody>, Error> {
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    add_via(headers);
    match functions::attached(node, ctx, Event::OriginResponse) {
        None => Ok(response),
        Some(function) => {
            let event = Event::OriginResponse;
            let run = match functions::start_response_event(
                node, ctx, event, &function, request, response,
            ) {
                Started::Replayed(outcome) => return outcome,
                Started::Fresh(run) => run,
            };
            run.await
        }
    }
}
