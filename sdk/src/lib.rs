//! # edge-sdk: write edge functions in Rust
//!
//! An edge function is a WebAssembly module the edge node runs at one of four points of a
//! request: **viewer-request** (before the cache), **origin-request** (before the origin fetch),
//! **origin-response** (before the cache stores) and **viewer-response** (before the viewer gets
//! the response). This crate hides the raw ABI (`sdk/ABI.md`) behind ordinary Rust types.
//!
//! ## A whole function
//!
//! ```
//! use edge_sdk::{respond, Error, Outcome, Request};
//!
//! /// Sends API traffic to the app, redirects the old blog, and lets the rest through.
//! fn viewer_request(req: Request) -> Result<Outcome, Error> {
//!     let path = req.path()?;
//!     if path.starts_with("/old-blog/") {
//!         let location = path.replacen("/old-blog/", "/blog/", 1);
//!         return Ok(Outcome::Respond(respond(301).header("location", &location)));
//!     }
//!     if path.starts_with("/api/") || req.cookie("session")?.is_some() {
//!         req.set_origin("app")?;
//!     }
//!     Ok(Outcome::Continue)
//! }
//!
//! // One line registers the handler as the module's `viewer-request` entry point:
//! edge_sdk::viewer_request!(viewer_request);
//! #
//! # let run = edge_sdk::testing::TestHost::viewer_request("/old-blog/post").run_request(viewer_request);
//! # assert_eq!(run.responded().map(|r| r.status), Some(301));
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1` (a `cdylib` crate), attach it
//! to a behavior in the node's config, and every request under that behavior runs it:
//!
//! ```toml
//! [functions.router]
//! module = "target/wasm32-wasip1/release/router.wasm"
//!
//! [[behaviors]]
//! path = "*"
//! origin = "bucket"
//! functions = { viewer_request = "router" }
//! ```
//!
//! ## Events and handlers
//!
//! | event | register with | handler signature |
//! |---|---|---|
//! | viewer-request | [`viewer_request!`] | `fn(Request) -> Result<Outcome, Error>` |
//! | origin-request | [`origin_request!`] | `fn(Request) -> Result<Outcome, Error>` |
//! | origin-response | [`origin_response!`] | `fn(Request, Response) -> Result<(), Error>` |
//! | viewer-response | [`viewer_response!`] | `fn(Request, Response) -> Result<(), Error>` |
//!
//! Request events may change the request, pick the origin ([`Request::set_origin`]), tune the
//! cache key ([`cache_key`], viewer-request only) or answer at once ([`Outcome::Respond`]).
//! Every event may read the node's key-value stores ([`kv`]) and log ([`log`]).
//! Response events may change status and headers; origin-response may also replace the body and
//! set the caching lifetime ([`Response::set_ttl`]). A call an event may not make returns
//! [`Error`] with status `NOT_ALLOWED`; it never traps.
//!
//! An `Err` from a handler (or a panic) makes the node answer 502 and log the error with the
//! function's name; the node keeps serving other requests.
//!
//! ## Testing
//!
//! On a native target the host calls go to [`testing::TestHost`], a simulated host with the
//! node's semantics, so `cargo test` runs handlers without a node.

#![deny(missing_docs)]

pub mod abi;
mod sys;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

use std::fmt;
use std::net::IpAddr;

pub use http;
pub use http::{Method, StatusCode};

use abi::status;

/// A failed host call, or an error a handler reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A host call returned a status other than `OK`.
    Host {
        /// The host call.
        call: &'static str,
        /// Its status (see [`abi::status`]).
        status: i32,
    },
    /// A value from the host was not what the ABI promises (e.g. not UTF-8).
    Malformed(&'static str),
    /// An error from the handler itself.
    Message(String),
}

impl Error {
    /// A handler error with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Error::Message(message.into())
    }

    /// The host status, if this is a failed host call.
    pub fn status(&self) -> Option<i32> {
        match self {
            Error::Host { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Host { call, status } => {
                write!(f, "host call {call} failed: {}", status::name(*status))
            }
            Error::Malformed(what) => write!(f, "host returned a malformed {what}"),
            Error::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

fn check(call: &'static str, status: i32) -> Result<(), Error> {
    if status == status::OK {
        Ok(())
    } else {
        Err(Error::Host { call, status })
    }
}

/// Reads a value through an output-buffer host call, growing the buffer once if needed.
/// `NOT_FOUND` is `Ok(None)`.
fn read(
    call: &'static str,
    mut f: impl FnMut(&mut [u8], &mut u32) -> i32,
) -> Result<Option<Vec<u8>>, Error> {
    let mut buf = vec![0u8; 256];
    loop {
        let mut len = 0u32;
        match f(&mut buf, &mut len) {
            status::OK => {
                buf.truncate(len as usize);
                return Ok(Some(buf));
            }
            status::NOT_FOUND => return Ok(None),
            status::BUFFER_TOO_SMALL if len as usize > buf.len() => buf.resize(len as usize, 0),
            s => return Err(Error::Host { call, status: s }),
        }
    }
}

fn read_string(
    call: &'static str,
    f: impl FnMut(&mut [u8], &mut u32) -> i32,
) -> Result<Option<String>, Error> {
    match read(call, f)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::Malformed("string")),
        None => Ok(None),
    }
}

fn parse_header_list(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()))
        .collect()
}

/// What a request-event handler decided.
#[derive(Debug)]
pub enum Outcome {
    /// Go on with the (possibly changed) request.
    Continue,
    /// Answer the viewer with this response; the cache and the origin are skipped.
    Respond(Reply),
}

/// The request being handled. In response events it is read-only.
#[derive(Debug)]
pub struct Request {
    _private: (),
}

impl Request {
    /// The method.
    pub fn method(&self) -> Result<Method, Error> {
        let m = read_string("request_get_method", sys::request_get_method)?
            .ok_or(Error::Malformed("method"))?;
        Method::from_bytes(m.as_bytes()).map_err(|_| Error::Malformed("method"))
    }

    /// Path and query, e.g. `/a/b?x=1`.
    pub fn uri(&self) -> Result<String, Error> {
        read_string("request_get_uri", sys::request_get_uri)?.ok_or(Error::Malformed("uri"))
    }

    /// The path, without the query.
    pub fn path(&self) -> Result<String, Error> {
        let uri = self.uri()?;
        Ok(uri
            .split_once('?')
            .map_or(uri.as_str(), |(p, _)| p)
            .to_owned())
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Result<Option<String>, Error> {
        Ok(self.uri()?.split_once('?').map(|(_, q)| q.to_owned()))
    }

    /// The query's `name=value` pairs, as written (not percent-decoded), in order.
    pub fn query_pairs(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(self
            .query()?
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => (p.to_owned(), String::new()),
            })
            .collect())
    }

    /// A header's value (several lines joined with `, `), if present.
    pub fn header(&self, name: &str) -> Result<Option<String>, Error> {
        read_string("request_get_header", |buf, out| {
            sys::request_get_header(name.as_bytes(), buf, out)
        })
    }

    /// Every header, in order, names lowercase.
    pub fn headers(&self) -> Result<Vec<(String, String)>, Error> {
        let text =
            read_string("request_get_headers", sys::request_get_headers)?.unwrap_or_default();
        Ok(parse_header_list(&text))
    }

    /// A cookie's value from the `Cookie` header, if present.
    pub fn cookie(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.header("cookie")?.and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_owned())
        }))
    }

    /// The viewer's IP address.
    pub fn client_ip(&self) -> Result<IpAddr, Error> {
        read_string("request_get_client_ip", sys::request_get_client_ip)?
            .and_then(|ip| ip.parse().ok())
            .ok_or(Error::Malformed("client ip"))
    }

    /// Replaces path and query (`/path?query`).
    pub fn set_uri(&self, uri: &str) -> Result<(), Error> {
        check("request_set_uri", sys::request_set_uri(uri.as_bytes()))
    }

    /// Replaces the path, keeping the query.
    pub fn set_path(&self, path: &str) -> Result<(), Error> {
        match self.query()? {
            Some(q) => self.set_uri(&format!("{path}?{q}")),
            None => self.set_uri(path),
        }
    }

    /// Replaces the query (`None` removes it), keeping the path.
    pub fn set_query(&self, query: Option<&str>) -> Result<(), Error> {
        let path = self.path()?;
        match query.filter(|q| !q.is_empty()) {
            Some(q) => self.set_uri(&format!("{path}?{q}")),
            None => self.set_uri(&path),
        }
    }

    /// Sets a header, replacing every existing line of it.
    pub fn set_header(&self, name: &str, value: &str) -> Result<(), Error> {
        check(
            "request_set_header",
            sys::request_set_header(name.as_bytes(), value.as_bytes()),
        )
    }

    /// Adds a header line.
    pub fn append_header(&self, name: &str, value: &str) -> Result<(), Error> {
        check(
            "request_append_header",
            sys::request_append_header(name.as_bytes(), value.as_bytes()),
        )
    }

    /// Removes a header; `Ok(false)` if it was not there.
    pub fn remove_header(&self, name: &str) -> Result<bool, Error> {
        match sys::request_remove_header(name.as_bytes()) {
            status::OK => Ok(true),
            status::NOT_FOUND => Ok(false),
            s => Err(Error::Host {
                call: "request_remove_header",
                status: s,
            }),
        }
    }

    /// Fetches from the origin with this config name instead of the behavior's.
    pub fn set_origin(&self, name: &str) -> Result<(), Error> {
        check("origin_set", sys::origin_set(name.as_bytes()))
    }
}

/// The response being handled (origin-response and viewer-response).
#[derive(Debug)]
pub struct Response {
    _private: (),
}

impl Response {
    /// The status code.
    pub fn status(&self) -> Result<StatusCode, Error> {
        let mut code = 0u32;
        check("response_get_status", sys::response_get_status(&mut code))?;
        u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(Error::Malformed("status"))
    }

    /// Sets the status code.
    pub fn set_status(&self, status: u16) -> Result<(), Error> {
        check(
            "response_set_status",
            sys::response_set_status(i32::from(status)),
        )
    }

    /// A header's value (several lines joined with `, `; `set-cookie` lines with `\n`).
    pub fn header(&self, name: &str) -> Result<Option<String>, Error> {
        read_string("response_get_header", |buf, out| {
            sys::response_get_header(name.as_bytes(), buf, out)
        })
    }

    /// Every header, in order, names lowercase.
    pub fn headers(&self) -> Result<Vec<(String, String)>, Error> {
        let text =
            read_string("response_get_headers", sys::response_get_headers)?.unwrap_or_default();
        Ok(parse_header_list(&text))
    }

    /// Sets a header, replacing every existing line of it.
    pub fn set_header(&self, name: &str, value: &str) -> Result<(), Error> {
        check(
            "response_set_header",
            sys::response_set_header(name.as_bytes(), value.as_bytes()),
        )
    }

    /// Adds a header line.
    pub fn append_header(&self, name: &str, value: &str) -> Result<(), Error> {
        check(
            "response_append_header",
            sys::response_append_header(name.as_bytes(), value.as_bytes()),
        )
    }

    /// Removes a header; `Ok(false)` if it was not there.
    pub fn remove_header(&self, name: &str) -> Result<bool, Error> {
        match sys::response_remove_header(name.as_bytes()) {
            status::OK => Ok(true),
            status::NOT_FOUND => Ok(false),
            s => Err(Error::Host {
                call: "response_remove_header",
                status: s,
            }),
        }
    }

    /// The whole body (origin-response); `Ok(None)` when it is over the function's body limit
    /// and streams through untouched.
    pub fn body(&self) -> Result<Option<Vec<u8>>, Error> {
        match read("response_get_body", sys::response_get_body) {
            Err(Error::Host {
                status: status::UNAVAILABLE,
                ..
            }) => Ok(None),
            other => other,
        }
    }

    /// Replaces the body (origin-response).
    pub fn set_body(&self, body: impl AsRef<[u8]>) -> Result<(), Error> {
        check("response_set_body", sys::response_set_body(body.as_ref()))
    }

    /// Overrides the caching lifetime (origin-response); zero means do not store.
    pub fn set_ttl(&self, ttl: std::time::Duration) -> Result<(), Error> {
        check(
            "cache_set_ttl",
            sys::cache_set_ttl(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        )
    }
}

/// A response a request-event handler generates; start one with [`respond`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Starts a generated response with this status.
pub fn respond(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

impl Reply {
    /// Adds a header line.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn send(&self) -> Result<(), Error> {
        check(
            "response_set_status",
            sys::response_set_status(i32::from(self.status)),
        )?;
        for (n, v) in &self.headers {
            check(
                "response_append_header",
                sys::response_append_header(n.as_bytes(), v.as_bytes()),
            )?;
        }
        check("response_set_body", sys::response_set_body(&self.body))
    }
}

/// The cache key (viewer-request only).
///
/// The behavior's `cache_key` config builds the key from host, path and the listed query
/// parameters, headers and cookies. [`add`](cache_key::add) puts more into it (e.g. a device
/// class); [`set`](cache_key::set) replaces it. A key that leaves out something the response
/// depends on serves one viewer's object to another.
pub mod cache_key {
    use super::{check, sys, Error};

    /// Replaces the whole cache key.
    pub fn set(key: &str) -> Result<(), Error> {
        check("cache_key_set", sys::cache_key_set(key.as_bytes()))
    }

    /// Adds a part to the behavior's cache key.
    pub fn add(part: &str) -> Result<(), Error> {
        check("cache_key_add", sys::cache_key_add(part.as_bytes()))
    }
}

/// Key-value stores: read-only data the node keeps for functions (a redirect table, feature
/// flags), allowed in every event.
///
/// Each `[kv.NAME]` of the node's config is one store, loaded from a JSON file of string keys
/// to string values; operators replace or patch it through the admin API without redeploying
/// the function. A change is atomic: within one invocation every lookup in a store sees the
/// same version of it, never half of a replace or patch. A missing store reads like a missing
/// key (`Ok(None)`), so a function can ship defaults and let a store override them:
///
/// ```
/// use edge_sdk::{kv, respond, Error, Outcome, Request};
///
/// fn viewer_request(req: Request) -> Result<Outcome, Error> {
///     if kv::get("flags", "maintenance")?.as_deref() == Some("on") {
///         return Ok(Outcome::Respond(respond(503).body("back soon")));
///     }
///     Ok(Outcome::Continue)
/// }
/// #
/// # use edge_sdk::testing::TestHost;
/// # let run = TestHost::viewer_request("/").kv("flags", &[("maintenance", "on")]).run_request(viewer_request);
/// # assert_eq!(run.responded().map(|r| r.status), Some(503));
/// # assert!(TestHost::viewer_request("/").run_request(viewer_request).continued());
/// ```
pub mod kv {
    use super::{read, sys, Error};

    /// The value of `key` in `store` as text; `Ok(None)` when the store or the key does not
    /// exist. Values the admin API or a config file put in a store are always UTF-8.
    pub fn get(store: &str, key: &str) -> Result<Option<String>, Error> {
        match get_bytes(store, key)? {
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Error::Malformed("kv value")),
            None => Ok(None),
        }
    }

    /// The value of `key` in `store` as bytes; `Ok(None)` when the store or the key does not
    /// exist.
    pub fn get_bytes(store: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        read("kv_get", |buf, out| {
            sys::kv_get(store.as_bytes(), key.as_bytes(), buf, out)
        })
    }
}

/// Logging to the node's log, tagged with the function name, event and request id.
pub mod log {
    use super::{abi::log_level, sys};

    fn write(level: i32, message: &str) {
        // A log line that cannot be written is not worth failing the request for.
        let _ = sys::log(level, message.as_bytes());
    }

    /// Logs at error level.
    pub fn error(message: &str) {
        write(log_level::ERROR, message)
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        write(log_level::WARN, message)
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        write(log_level::INFO, message)
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        write(log_level::DEBUG, message)
    }
}

#[doc(hidden)]
pub mod __private {
    //! What the registration macros expand to; not a public API.
    use super::*;

    /// Runs a request-event handler and turns its result into the entry point's return value.
    pub fn run_request_event(
        event: abi::Event,
        handler: fn(Request) -> Result<Outcome, Error>,
    ) -> i32 {
        match handler(Request { _private: () }) {
            Ok(Outcome::Continue) => abi::outcome::CONTINUE,
            Ok(Outcome::Respond(reply)) => match reply.send() {
                Ok(()) => abi::outcome::RESPOND,
                Err(e) => fail(event, &e),
            },
            Err(e) => fail(event, &e),
        }
    }

    /// Runs a response-event handler and turns its result into the entry point's return value.
    pub fn run_response_event(
        event: abi::Event,
        handler: fn(Request, Response) -> Result<(), Error>,
    ) -> i32 {
        match handler(Request { _private: () }, Response { _private: () }) {
            Ok(()) => abi::outcome::CONTINUE,
            Err(e) => fail(event, &e),
        }
    }

    fn fail(event: abi::Event, error: &Error) -> i32 {
        log::error(&format!("{} handler failed: {error}", event.export_name()));
        abi::outcome::FAILED
    }
}

/// Registers `fn(Request) -> Result<Outcome, Error>` as the `viewer-request` entry point.
#[macro_export]
macro_rules! viewer_request {
    ($handler:path) => {
        /// The `viewer-request` entry point (ABI v1).
        #[allow(unsafe_code)]
        #[unsafe(export_name = "viewer-request")]
        pub extern "C" fn __edge_viewer_request() -> i32 {
            $crate::__private::run_request_event($crate::abi::Event::ViewerRequest, $handler)
        }
    };
}

/// Registers `fn(Request) -> Result<Outcome, Error>` as the `origin-request` entry point.
#[macro_export]
macro_rules! origin_request {
    ($handler:path) => {
        /// The `origin-request` entry point (ABI v1).
        #[allow(unsafe_code)]
        #[unsafe(export_name = "origin-request")]
        pub extern "C" fn __edge_origin_request() -> i32 {
            $crate::__private::run_request_event($crate::abi::Event::OriginRequest, $handler)
        }
    };
}

/// Registers `fn(Request, Response) -> Result<(), Error>` as the `origin-response` entry point.
#[macro_export]
macro_rules! origin_response {
    ($handler:path) => {
        /// The `origin-response` entry point (ABI v1).
        #[allow(unsafe_code)]
        #[unsafe(export_name = "origin-response")]
        pub extern "C" fn __edge_origin_response() -> i32 {
            $crate::__private::run_response_event($crate::abi::Event::OriginResponse, $handler)
        }
    };
}

/// Registers `fn(Request, Response) -> Result<(), Error>` as the `viewer-response` entry point.
#[macro_export]
macro_rules! viewer_response {
    ($handler:path) => {
        /// The `viewer-response` entry point (ABI v1).
        #[allow(unsafe_code)]
        #[unsafe(export_name = "viewer-response")]
        pub extern "C" fn __edge_viewer_response() -> i32 {
            $crate::__private::run_response_event($crate::abi::Event::ViewerResponse, $handler)
        }
    };
}
