//! Routing: which behavior a request falls under (first path match in file order), whether
//! that behavior allows the method, and which origin it fetches from.

use http::Request;

use super::RequestCtx;
use crate::body::EdgeBody;
use crate::config::{BehaviorConfig, Config};
use crate::error::Error;
use crate::origin::Origin;
use crate::Node;

/// The behavior for this request, recorded in `ctx`; 404 if none matches, 405 if it does not
/// allow the method.
pub fn behavior<'c>(
    config: &'c Config,
    ctx: &mut RequestCtx,
    request: &Request<EdgeBody>,
) -> Result<&'c BehaviorConfig, Error> {
    let path = request.uri().path();
    let (index, behavior) = config
        .behaviors
        .iter()
        .enumerate()
        .find(|(_, b)| b.pattern.matches(path))
        .ok_or_else(|| Error::NoBehavior {
            path: path.to_owned(),
        })?;
    ctx.behavior = Some(index);
    ctx.mark("routing");
    if !behavior.methods.contains(request.method()) {
        let allowed: Vec<&str> = behavior.methods.iter().map(|m| m.as_str()).collect();
        return Err(Error::MethodNotAllowed {
            method: request.method().clone(),
            allowed: allowed.join(", "),
        });
    }
    Ok(behavior)
}

/// The origin to fetch from: the one a function chose, else the behavior's; recorded in `ctx`.
pub fn origin<'n>(node: &'n Node, ctx: &mut RequestCtx, behavior: &BehaviorConfig) -> &'n Origin {
    let index = ctx.origin_override.unwrap_or(behavior.origin);
    ctx.origin = Some(index);
    &node.origins[index]
}
