//! Sending a request again when the target closed its connection under it: a keep-alive
//! timeout that crossed the request on the wire. Only replayable requests (idempotent, no body)
//! are, once, as nginx does with a cached upstream connection and browsers with their own
//! (RFC 9112 §9.3.1); anything else may have reached the target and fails.

use std::io;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::Connect, Client};

use crate::body::EdgeBody;
use crate::interim::InterimSink;

/// Sends on hyper-util's client (`https` targets, tier parents), once more if the connection
/// closed under a replayable request, with its 1xx going to `interim` as the first time's did.
/// The client does not say whether the connection was reused, so a fresh one that closes that
/// way gets the second try too.
pub(crate) async fn on_legacy_client<C>(
    client: &Client<C, EdgeBody>,
    request: Request<EdgeBody>,
    replayable: bool,
    interim: Option<&InterimSink>,
) -> Result<Response<Incoming>, hyper_util::client::legacy::Error>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let again = replayable.then(|| copy(&request));
    match (client.request(request).await, again) {
        (Err(e), Some(mut copy)) if !e.is_connect() && closed_under_request(&e) => {
            tracing::debug!(uri = %copy.uri(), error = %e, "a connection closed under a replayable request; sending it again");
            if let Some(sink) = interim {
                sink.attach(&mut copy);
            }
            client.request(copy).await
        }
        (result, _) => result,
    }
}

/// A bodiless request as it is before sending, but for its extensions: the 1xx callback is all
/// hyper's client reads of them, attached again only if the copy is sent (a clone of the map,
/// or a new callback, cost as much as the headers' copy, on every request).
pub(super) fn copy(request: &Request<EdgeBody>) -> Request<EdgeBody> {
    let mut copy = Request::new(EdgeBody::Empty);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Whether an exchange failed because the target closed or reset the connection before any
/// response: what a keep-alive timeout crossing the request looks like. A malformed or
/// refused answer is the target's answer, not sent again.
pub(super) fn closed_under_request(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            );
        }
        source = e.source();
    }
    false
}
