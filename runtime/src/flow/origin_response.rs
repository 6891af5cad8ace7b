//! origin-response: the origin's response as the cache will store it and viewers will see it:
//! hop-by-hop headers removed, this hop added to `Via`. A behavior's `origin-response` edge
//! function will run here (functions issue), before the cache stores anything.

use http::Response;

use crate::body::EdgeBody;
use crate::proxy_headers::{add_via, strip_hop_by_hop};

/// Runs the origin-response phase.
pub fn run(mut response: Response<EdgeBody>) -> Response<EdgeBody> {
    let headers = response.headers_mut();
    strip_hop_by_hop(headers);
    add_via(headers);
    response
}
