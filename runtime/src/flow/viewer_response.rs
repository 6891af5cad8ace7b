//! viewer-response: the last phase, on every response that goes to the viewer (hit, miss,
//! generated), just before `X-Cache` and `Age` are added. Runs the behavior's
//! `viewer-response` function, which may change status and headers.

use edge_sdk::abi::Event;
use http::request::Parts;
use http::Response;

use super::functions::{self, Started};
use super::RequestCtx;
use crate::body::EdgeBody;
use crate::error::Error;
use crate::Node;

/// Runs the behavior's viewer-response function, if it has one.
pub async fn run(
    node: &Node,
    ctx: &mut RequestCtx,
    request: &Parts,
    response: Response<EdgeBody>,
) -> Result<Response<EdgeBody>, Error> {
    match functions::attached(node, ctx, Event::ViewerResponse) {
        None => Ok(response),
        Some(function) => {
            let event = Event::ViewerResponse;
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
