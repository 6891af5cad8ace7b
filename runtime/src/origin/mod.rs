//! Origins: where misses are fetched from. A static bucket ([`static_bucket`]), a pool of HTTP
//! and HTTPS targets ([`dynamic_pool`]) or an S3 bucket ([`s3`]); each answers a prepared
//! request with a streaming response. The network ones share one kind of client ([`client`]);
//! plain-`http` targets have a connection pool of their own ([`h1_pool`]).

pub mod client;
pub mod dynamic_pool;
pub mod h1_pool;
pub(crate) mod resend;
pub mod s3;
pub mod static_bucket;

use std::time::Duration;

use http::{Request, Response};

use crate::body::{BodyError, EdgeBody};
use crate::config::{OriginConfig, OriginKind};
use crate::interim::InterimSink;
pub use dynamic_pool::DynamicPool;
pub use s3::S3Bucket;
pub use static_bucket::StaticBucket;

/// A failed origin fetch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The target refused or reset the connection attempt.
    #[error("origin {origin:?} target {target} refused connection")]
    Refused {
        /// Origin name.
        origin: String,
        /// Target authority.
        target: String,
        /// The connector's error.
        #[source]
        source: BodyError,
    },
    /// The target did not accept a connection in time.
    #[error("origin {origin:?} target {target} did not accept a connection within {timeout:?}")]
    ConnectTimeout {
        /// Origin name.
        origin: String,
        /// Target authority.
        target: String,
        /// The configured `connect_timeout`.
        timeout: Duration,
    },
    /// The TLS handshake with an `https` target failed, most often on a certificate that does
    /// not verify; the request was not sent.
    #[error("origin {origin:?} target {target}: {reason}")]
    Tls {
        /// Origin name.
        origin: String,
        /// Target authority.
        target: String,
        /// `certificate not trusted for NAME: ...` or `TLS handshake with NAME failed: ...`.
        reason: String,
    },
    /// No response headers within `response_timeout`.
    #[error("origin {origin:?} target {target} sent no response within {timeout:?}")]
    ResponseTimeout {
        /// Origin name.
        origin: String,
        /// Target authority.
        target: String,
        /// The configured `response_timeout`.
        timeout: Duration,
    },
    /// The exchange failed after connecting (reset, malformed response).
    #[error("origin {origin:?} target {target} failed")]
    Exchange {
        /// Origin name.
        origin: String,
        /// Target authority.
        target: String,
        /// hyper's error.
        #[source]
        source: BodyError,
    },
    /// The viewer's request body broke (bad chunk size, cut off) while it was being sent to the
    /// origin: the viewer's fault, answered 400.
    #[error("the viewer's request body failed while being sent to origin {origin:?}")]
    ViewerBody {
        /// Origin name.
        origin: String,
        /// The client's error, which wraps the viewer body's.
        #[source]
        source: BodyError,
    },
    /// Every target was tried, once each, and none accepted a connection.
    #[error(
        "origin {origin:?}: no target accepted a connection ({})",
        attempts_list(attempts)
    )]
    Unreachable {
        /// Origin name.
        origin: String,
        /// Each attempt's error, in the order tried.
        attempts: Vec<Error>,
    },
    /// S3 answered with an error that is neither a missing key (404) nor denied access (403):
    /// a wrong secret, a missing bucket, a throttled or failing server.
    #[error("s3 origin {origin:?} answered {status} {code}: {message}")]
    S3 {
        /// Origin name.
        origin: String,
        /// The HTTP status S3 sent.
        status: u16,
        /// S3's `<Code>` (`SignatureDoesNotMatch`, `NoSuchBucket`, ...), or `-` when the
        /// response had none (a HEAD, or not S3's XML).
        code: String,
        /// S3's `<Message>`, if any.
        message: String,
    },
    /// A request to S3 could not be signed.
    #[error("s3 origin {origin:?}: cannot sign the request: {reason}")]
    Sign {
        /// Origin name.
        origin: String,
        /// The signer's error.
        reason: String,
    },
    /// The static bucket could not read a file that exists.
    #[error("static origin {origin:?} cannot read {path}")]
    Read {
        /// Origin name.
        origin: String,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether it is a timeout (504) rather than a failure (502). Several failed attempts are
    /// a timeout only when every one of them timed out.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::ConnectTimeout { .. } | Error::ResponseTimeout { .. } => true,
            Error::Unreachable { attempts, .. } => attempts.iter().all(Error::is_timeout),
            _ => false,
        }
    }
}

impl Error {
    /// Whether the viewer caused it (its request body broke), not the origin.
    pub fn is_viewer_fault(&self) -> bool {
        matches!(self, Error::ViewerBody { .. })
    }
}

/// `a; b; c`, each attempt with its own sources.
fn attempts_list(attempts: &[Error]) -> String {
    let mut list = String::new();
    for (i, attempt) in attempts.iter().enumerate() {
        if i > 0 {
            list.push_str("; ");
        }
        list.push_str(&attempt.to_string());
        let mut source = std::error::Error::source(attempt);
        while let Some(s) = source {
            list.push_str(": ");
            list.push_str(&s.to_string());
            source = s.source();
        }
    }
    list
}

/// A configured origin, ready to fetch.
// Built once per config version, so the size of the largest variant costs nothing per request.
#[allow(clippy::large_enum_variant)]
pub enum Origin {
    /// A directory.
    Static(StaticBucket),
    /// HTTP and HTTPS targets.
    Dynamic(DynamicPool),
    /// An S3 bucket.
    S3(S3Bucket),
}

impl Origin {
    /// Builds the origin for its config.
    pub fn new(config: &OriginConfig) -> Self {
        match &config.kind {
            OriginKind::Static { root } => {
                Origin::Static(StaticBucket::new(&config.name, root.clone()))
            }
            OriginKind::Http {
                targets,
                connect_timeout,
                response_timeout,
                tls,
            } => Origin::Dynamic(DynamicPool::new(
                &config.name,
                targets.clone(),
                *connect_timeout,
                *response_timeout,
                tls,
            )),
            OriginKind::S3(s3) => Origin::S3(S3Bucket::new(&config.name, s3)),
        }
    }

    /// Sends a prepared request (absolute path and query in the URI, proxy headers set).
    /// `replayable` says whether it may be sent again to another target after a connect failure.
    /// A dynamic origin's 1xx interim responses go to `interim` (the others send none).
    pub async fn fetch(
        &self,
        request: Request<EdgeBody>,
        replayable: bool,
        interim: Option<&InterimSink>,
    ) -> Result<Response<EdgeBody>, Error> {
        // The file and S3 fetches are boxed: inline, they made this future 3.7 KB rather than
        // 3.1, and every future that awaits it, for every origin's requests.
        match self {
            Origin::Static(bucket) => Box::pin(bucket.fetch(request)).await,
            Origin::Dynamic(pool) => pool.fetch(request, replayable, interim).await,
            Origin::S3(bucket) => Box::pin(bucket.fetch(request)).await,
        }
    }
}
