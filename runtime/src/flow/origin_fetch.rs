//! Origin fetch: sends the prepared request to the behavior's origin and returns the response
//! as soon as its headers arrive; the body streams on.

use http::Response;

use super::origin_request::OriginRequest;
use crate::body::EdgeBody;
use crate::error::Error;
use crate::origin::Origin;

/// Fetches from `origin`.
pub async fn fetch(origin: &Origin, forwarded: OriginRequest) -> Result<Response<EdgeBody>, Error> {
    Ok(origin
        .fetch(forwarded.request, forwarded.replayable)
        .await?)
}
