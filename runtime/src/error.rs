//! The node's top-level error: every way a request can fail, which side caused it, and the one
//! mapping from error to HTTP status that viewers see.

use http::{Method, StatusCode};

use crate::{kv, origin, tier, wasm};

/// Who caused an error; decides the status class and where operators look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The viewer sent something we refuse (4xx).
    Viewer,
    /// The origin failed or timed out (502/504).
    Origin,
    /// An edge function failed (502) or hit a limit (503).
    Function,
    /// The node itself (500).
    Internal,
}

/// A request that cannot be served normally; `flow::respond` turns it into a short response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No behavior's path pattern matches the request path.
    #[error("no behavior matches path {path:?}")]
    NoBehavior {
        /// The request path.
        path: String,
    },
    /// The behavior does not allow this method.
    #[error("method {method} is not allowed for this path; allowed: {allowed}")]
    MethodNotAllowed {
        /// The method used.
        method: Method,
        /// Allowed methods, comma separated (also sent as `Allow`).
        allowed: String,
    },
    /// The behavior serves HTTPS viewers only (`viewer_protocol = "https-only"`).
    #[error("this path is served over HTTPS only")]
    HttpsRequired,
    /// The request is malformed in a way hyper let through.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Fetching from the origin failed.
    #[error(transparent)]
    Origin(#[from] origin::Error),
    /// An edge function failed or hit a limit.
    #[error(transparent)]
    Function(#[from] wasm::Error),
    /// A tier request this node refuses (wrong token, malformed tier headers).
    #[error(transparent)]
    TierRefused(#[from] tier::Refusal),
    /// No parent answered and `on_parent_failure = "error"`.
    #[error("no parent of the regional tier answered")]
    ParentsFailed,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listener could not bind.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A function could not be loaded.
    #[error(transparent)]
    Function(#[from] wasm::Error),
    /// A key-value store could not be loaded.
    #[error(transparent)]
    Kv(#[from] kv::Error),
}

impl Error {
    /// Which side caused it.
    pub fn side(&self) -> Side {
        match self {
            Error::NoBehavior { .. }
            | Error::MethodNotAllowed { .. }
            | Error::BadRequest(_)
            | Error::HttpsRequired => Side::Viewer,
            Error::Origin(e) if e.is_viewer_fault() => Side::Viewer,
            Error::Origin(_) => Side::Origin,
            Error::Function(_) => Side::Function,
            Error::TierRefused(_) => Side::Viewer,
            Error::ParentsFailed => Side::Origin,
        }
    }

    /// The status a viewer gets for it: viewer 4xx, origin 502/504, internal 500.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NoBehavior { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::HttpsRequired => StatusCode::FORBIDDEN,
            Error::Origin(e) if e.is_viewer_fault() => StatusCode::BAD_REQUEST,
            Error::Origin(e) if e.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            Error::Origin(_) => StatusCode::BAD_GATEWAY,
            Error::Function(e) if e.is_limit() => StatusCode::SERVICE_UNAVAILABLE,
            Error::Function(_) => StatusCode::BAD_GATEWAY,
            Error::TierRefused(_) => StatusCode::FORBIDDEN,
            Error::ParentsFailed => StatusCode::BAD_GATEWAY,
        }
    }
}
