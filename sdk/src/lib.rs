//! # edge-sdk: write edge functions in Rust
//!
//! An edge function is a WebAssembly module the edge node runs at one of four points of a
//! request: **viewer-request** (before the cache), **origin-request** (before the origin fetch),
//! **origin-response** (before the cache stores) and **viewer-response** (before the viewer gets
//! the response). This crate hides the raw ABI (`sdk/ABI.md`) behind ordinary Rust types: the
//! `http` crate's [`Method`], [`StatusCode`], [`HeaderName`] and [`HeaderValue`], plain `&str`
//! getters, and `?` on any error.
//!
//! ## A whole function
//!
//! ```
//! use edge_sdk::{redirect, Error, Outcome, Request, StatusCode, ViewerRequest};
//!
//! /// Sends API traffic to the app, redirects the old blog, and lets the rest through.
//! fn viewer_request(mut req: Request<ViewerRequest>) -> Result<Outcome, Error> {
//!     if let Some(post) = req.path().strip_prefix("/old-blog/") {
//!         let location = format!("/blog/{post}");
//!         return Ok(redirect(StatusCode::MOVED_PERMANENTLY, &location).into());
//!     }
//!     if req.path().starts_with("/api/") || req.cookie("session").is_some() {
//!         req.set_origin("app")?;
//!     }
//!     Ok(Outcome::Continue)
//! }
//!
//! // One line registers the handler as the module's `viewer-request` entry point:
//! edge_sdk::viewer_request!(viewer_request);
//! #
//! # let run = edge_sdk::testing::TestHost::viewer_request("/old-blog/post").run_request(viewer_request);
//! # assert_eq!(run.expect_response().header("location"), Some("/blog/post"));
//! ```
//!
//! The request head (method, URI, headers) is read from the node once, on first use; setters
//! write through to the node at once and keep the local copy in step. The crate is a `cdylib`
//! (the `.wasm`) and an `rlib` (so `cargo test` runs handlers natively):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//! ```
//!
//! Build it with (the example above, as a crate of its own, is a 72 KB module)
//!
//! ```text
//! cargo build --release --target wasm32-wasip1
//! ```
//!
//! attach the `.wasm` to a behavior in the node's config, and every request under that
//! behavior runs it:
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
//! | viewer-request | `viewer_request!` | `fn(Request<ViewerRequest>) -> Result<Outcome, Error>` |
//! | origin-request | `origin_request!` | `fn(Request<OriginRequest>) -> Result<Outcome, Error>` |
//! | origin-response | `origin_response!` | `fn(Request<OriginResponse>, Response<OriginResponse>) -> Result<(), Error>` |
//! | viewer-response | `viewer_response!` | `fn(Request<ViewerResponse>, Response<ViewerResponse>) -> Result<(), Error>` |
//!
//! The event is part of the types, so a call the event may not make does not compile:
//! request events may change the request and pick the origin ([`Request::set_origin`]);
//! only viewer-request may tune the cache key ([`Request::add_to_cache_key`]); response events
//! see the request read-only; only origin-response may read or replace the body and set the
//! caching lifetime ([`Response::set_ttl`]). Request events answer at once with a generated
//! response ([`Response::builder`], [`redirect`]). Every event may read the node's key-value
//! stores ([`kv`]) and log ([`log`]).
//!
//! ## Errors
//!
//! `?` works on any error type (as with `anyhow`): it becomes an [`Error`], and an `Err` from a
//! handler makes the node answer 502 and log `<event> handler failed: <message>` with the
//! function's name and the request id; the node keeps serving other requests. A host call the
//! node refuses also leaves a warning in the log naming the call, the argument and the rule
//! (`origin_set("ap"): no origin "ap"; known: app, bucket`). A panic is a 502 too, logged
//! with its message.
//!
//! ## Testing
//!
//! On a native target the host calls go to [`testing::TestHost`], a simulated host that applies
//! the node's own rules ([`host`], the same code the node runs), with the node's CPU budget, so
//! `cargo test` runs handlers without a node.

#![deny(missing_docs)]

pub mod abi;
pub mod host;
mod sys;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

use std::cell::OnceCell;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr};

pub use http;
pub use http::{HeaderName, HeaderValue, Method, StatusCode};

use abi::{calls, status, HostCall};
pub use event::{OriginRequest, OriginResponse, ViewerRequest, ViewerResponse};

/// The four events as types, so that each event's handler gets only the calls it may make.
///
/// Only viewer-request may change the cache key:
///
/// ```compile_fail
/// use edge_sdk::{Error, OriginRequest, Outcome, Request};
/// fn origin_request(mut req: Request<OriginRequest>) -> Result<Outcome, Error> {
///     req.add_to_cache_key("device=mobile")?; // no such method on Request<OriginRequest>
///     Ok(Outcome::Continue)
/// }
/// ```
///
/// Response events see the request read-only:
///
/// ```compile_fail
/// use edge_sdk::{Error, Request, Response, ViewerResponse};
/// fn viewer_response(
///     mut req: Request<ViewerResponse>,
///     _resp: Response<ViewerResponse>,
/// ) -> Result<(), Error> {
///     req.set_header("x-a", "1")?; // setters exist only in request events
///     Ok(())
/// }
/// ```
///
/// Only origin-response may replace the body or set the caching lifetime:
///
/// ```compile_fail
/// use edge_sdk::{Error, Request, Response, ViewerResponse};
/// fn viewer_response(
///     _req: Request<ViewerResponse>,
///     mut resp: Response<ViewerResponse>,
/// ) -> Result<(), Error> {
///     resp.set_body("replaced")?;
///     Ok(())
/// }
/// ```
///
/// and the handler's types must match the event it is registered for:
///
/// ```compile_fail
/// use edge_sdk::{Error, OriginRequest, Outcome, Request};
/// fn handler(_req: Request<OriginRequest>) -> Result<Outcome, Error> {
///     Ok(Outcome::Continue)
/// }
/// edge_sdk::viewer_request!(handler);
/// ```
pub mod event {
    use crate::abi;

    mod sealed {
        pub trait Sealed {}
    }

    /// An event a function can handle.
    pub trait Event: sealed::Sealed + 'static {
        /// The event's ABI identity.
        const EVENT: abi::Event;
    }
    /// `viewer-request` and `origin-request`: may change the request and generate a response.
    pub trait RequestEvent: Event {}
    /// `origin-response` and `viewer-response`: may change the response.
    pub trait ResponseEvent: Event {}

    macro_rules! events {
        ($($(#[$doc:meta])* $name:ident: $kind:ident;)*) => {$(
            $(#[$doc])*
            #[derive(Debug)]
            pub enum $name {}
            impl sealed::Sealed for $name {}
            impl Event for $name {
                const EVENT: abi::Event = abi::Event::$name;
            }
            impl $kind for $name {}
        )*};
    }

    events! {
        /// Before the cache lookup: rewrite, route, tune the cache key, or answer at once.
        ViewerRequest: RequestEvent;
        /// Before the origin fetch, on a miss: change the forwarded request or the origin.
        OriginRequest: RequestEvent;
        /// After the origin answered, before the cache stores: status, headers, body, lifetime.
        OriginResponse: ResponseEvent;
        /// On every response, hit or miss, before it goes to the viewer: status and headers.
        ViewerResponse: ResponseEvent;
    }

    /// A response a request-event handler builds ([`crate::Response::builder`]).
    #[derive(Debug)]
    pub enum Generated {}
}

/// An error in a handler: a host call the node refused, or any error `?` met.
///
/// Like `anyhow::Error`, it converts from every `std::error::Error` (so `?` works on any of
/// them) and does not implement `std::error::Error` itself. Its message, with the chain of
/// sources, is what the node logs when a handler returns it.
pub struct Error(Repr);

enum Repr {
    /// A host call returned a status other than `OK`.
    Host {
        call: &'static str,
        status: i32,
        /// Why, when the host said (the simulated host does; the node writes it to its log).
        detail: Option<String>,
    },
    /// A message from the handler or another error.
    Message(String),
}

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error(Repr::Message(message.to_string()))
    }

    /// The ABI status, if this is a host call the node refused (see [`abi::status`]).
    pub fn status(&self) -> Option<i32> {
        match &self.0 {
            Repr::Host { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The refused host call's name, if this is one.
    pub fn call(&self) -> Option<&'static str> {
        match &self.0 {
            Repr::Host { call, .. } => Some(call),
            _ => None,
        }
    }

    fn host(call: &HostCall, status: i32) -> Self {
        Error(Repr::Host {
            call: call.name,
            status,
            detail: sys::take_refusal(),
        })
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error(Repr::Message(message))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Host {
                detail: Some(detail),
                ..
            } => f.write_str(detail),
            Repr::Host { call, status, .. } => {
                write!(f, "{call} failed: {}", status::name(*status))
            }
            Repr::Message(m) => f.write_str(m),
        }
    }
}

impl fmt::Debug for Error {
    // The message, as `anyhow` does: what `unwrap` and test failures should show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn check(call: &HostCall, status: i32) -> Result<(), Error> {
    if status == status::OK {
        Ok(())
    } else {
        Err(Error::host(call, status))
    }
}

/// A first read buffer that fits a method, a URI, a header value or a key-value entry.
const SMALL_READ: usize = 256;
/// A first read buffer that fits a typical browser's header list (0.5 to 2 KB), so reading
/// one takes one host call, not two.
const HEADER_LIST_READ: usize = 4096;

/// Reads a value through an output-buffer host call, starting with a buffer of `initial`
/// bytes and growing it if needed. `NOT_FOUND` is `Ok(None)`.
fn read(
    call: &HostCall,
    initial: usize,
    mut f: impl FnMut(&mut [u8], &mut u32) -> i32,
) -> Result<Option<Vec<u8>>, Error> {
    let mut buf = vec![0u8; initial];
    loop {
        let mut len = 0u32;
        match f(&mut buf, &mut len) {
            status::OK => {
                buf.truncate(len as usize);
                return Ok(Some(buf));
            }
            status::NOT_FOUND => return Ok(None),
            status::BUFFER_TOO_SMALL if len as usize > buf.len() => buf.resize(len as usize, 0),
            s => return Err(Error::host(call, s)),
        }
    }
}

/// A read every event may make and the node always answers; should it not, the SDK logs why
/// and the handler sees `fallback`, rather than every getter returning a `Result`.
fn read_or<T>(
    call: &HostCall,
    initial: usize,
    f: impl FnMut(&mut [u8], &mut u32) -> i32,
    parse: impl FnOnce(Vec<u8>) -> Option<T>,
    fallback: impl FnOnce() -> T,
) -> T {
    match read(call, initial, f) {
        Ok(Some(bytes)) => match parse(bytes) {
            Some(value) => value,
            None => {
                log::error(format_args!(
                    "edge-sdk: {} returned a malformed value",
                    call.name
                ));
                fallback()
            }
        },
        Ok(None) => fallback(),
        Err(e) => {
            log::error(format_args!("edge-sdk: {e}"));
            fallback()
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// What a header setter takes as a name: `&str`, `String` or `http`'s [`HeaderName`] (e.g.
/// `http::header::CACHE_CONTROL`). The node validates it (ABI.md's rules), so the module
/// carries no header parser.
pub trait IntoHeaderName: sealed::Sealed {
    #[doc(hidden)]
    fn name_bytes(&self) -> &[u8];
}

/// What a header setter takes as a value: `&str`, `String` or `http`'s [`HeaderValue`]. The
/// node validates it (no CR, LF or other control bytes).
pub trait IntoHeaderValue: sealed::Sealed {
    #[doc(hidden)]
    fn value_bytes(&self) -> &[u8];
}

macro_rules! header_args {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl IntoHeaderName for $t {
            fn name_bytes(&self) -> &[u8] {
                AsRef::<[u8]>::as_ref(self)
            }
        }
        impl IntoHeaderValue for $t {
            fn value_bytes(&self) -> &[u8] {
                AsRef::<[u8]>::as_ref(self)
            }
        }
    )*};
}

header_args!(&str, String, &String);

impl sealed::Sealed for HeaderName {}
impl sealed::Sealed for &HeaderName {}
impl IntoHeaderName for HeaderName {
    fn name_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}
impl IntoHeaderName for &HeaderName {
    fn name_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}
impl sealed::Sealed for HeaderValue {}
impl sealed::Sealed for &HeaderValue {}
impl IntoHeaderValue for HeaderValue {
    fn value_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}
impl IntoHeaderValue for &HeaderValue {
    fn value_bytes(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// A raw header write: `(name, value) -> status`.
type HeaderWrite = fn(&[u8], &[u8]) -> i32;

/// The header calls of one message (request or response), for shared write-through code.
struct HeaderCalls {
    set: (&'static HostCall, HeaderWrite),
    append: (&'static HostCall, HeaderWrite),
    remove: (&'static HostCall, fn(&[u8]) -> i32),
}

const REQUEST_HEADERS: HeaderCalls = HeaderCalls {
    set: (&calls::REQUEST_SET_HEADER, sys::request_set_header),
    append: (&calls::REQUEST_APPEND_HEADER, sys::request_append_header),
    remove: (&calls::REQUEST_REMOVE_HEADER, sys::request_remove_header),
};

const RESPONSE_HEADERS: HeaderCalls = HeaderCalls {
    set: (&calls::RESPONSE_SET_HEADER, sys::response_set_header),
    append: (&calls::RESPONSE_APPEND_HEADER, sys::response_append_header),
    remove: (&calls::RESPONSE_REMOVE_HEADER, sys::response_remove_header),
};

impl HeaderCalls {
    fn set(
        &self,
        cache: &mut OnceCell<HeaderList>,
        name: &[u8],
        value: &[u8],
        append: bool,
    ) -> Result<(), Error> {
        let (call, f) = if append { self.append } else { self.set };
        check(call, f(name, value))?;
        if let Some(headers) = cache.get_mut() {
            // The node took the name, so it is a token: ASCII, which the list keeps lowercase.
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if !append {
                headers.remove(&name);
            }
            headers.append(&name, &String::from_utf8_lossy(value));
        }
        Ok(())
    }

    fn remove(&self, cache: &mut OnceCell<HeaderList>, name: &[u8]) -> Result<bool, Error> {
        let (call, f) = self.remove;
        match f(name) {
            status::OK => {
                if let Some(headers) = cache.get_mut() {
                    headers.remove(&String::from_utf8_lossy(name));
                }
                Ok(true)
            }
            status::NOT_FOUND => Ok(false),
            s => Err(Error::host(call, s)),
        }
    }
}

/// One request header's value (lines joined with `, `) through `request_get_header`.
fn read_header(name: &str) -> Option<String> {
    let read = read(&calls::REQUEST_GET_HEADER, SMALL_READ, |buf, out| {
        sys::request_get_header(name.as_bytes(), buf, out)
    });
    match read {
        Ok(value) => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
        Err(e) => {
            log::error(format_args!("edge-sdk: {e}"));
            None
        }
    }
}

/// A message's header list as the host sends it (`name: value\n` lines, names lowercase),
/// searched in place: a handler that reads two headers pays for no map.
struct HeaderList(String);

impl HeaderList {
    fn read(call: &HostCall, f: impl FnMut(&mut [u8], &mut u32) -> i32) -> Self {
        HeaderList(read_or(
            call,
            HEADER_LIST_READ,
            f,
            // Values may hold obs-text bytes; the SDK's getters are text.
            |b| Some(String::from_utf8_lossy(&b).into_owned()),
            String::new,
        ))
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.lines().filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name, value.strip_prefix(' ').unwrap_or(value)))
        })
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn remove(&mut self, name: &str) {
        let kept: String = self
            .0
            .lines()
            .filter(|line| {
                !line
                    .split_once(':')
                    .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        self.0 = kept;
    }

    fn append(&mut self, name: &str, value: &str) {
        self.0.push_str(name);
        self.0.push_str(": ");
        self.0.push_str(value);
        self.0.push('\n');
    }
}

/// What a request-event handler decided.
#[derive(Debug)]
pub enum Outcome {
    /// Go on with the (possibly changed) request.
    Continue,
    /// Answer the viewer with this response; the cache and the origin are skipped.
    Respond(ResponseBuilder),
}

impl From<ResponseBuilder> for Outcome {
    fn from(response: ResponseBuilder) -> Self {
        Outcome::Respond(response)
    }
}

/// The request being handled, typed by its event `E`: in request events it can be changed
/// (every change goes to the node at once), in response events it is read-only.
pub struct Request<E> {
    method: OnceCell<Method>,
    uri: OnceCell<String>,
    headers: OnceCell<HeaderList>,
    /// Headers read one at a time, before (or instead of) the whole list: most handlers read
    /// one or two, and one `request_get_header` costs less than copying and scanning the list.
    singles: [OnceCell<(String, Option<String>)>; SINGLE_HEADERS],
    client_ip: OnceCell<IpAddr>,
    _event: PhantomData<E>,
}

/// Distinct header names [`Request::header`] reads one at a time before reading the list.
const SINGLE_HEADERS: usize = 4;

impl<E: event::Event> fmt::Debug for Request<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("event", &E::EVENT)
            .field("method", self.method())
            .field("uri", &self.uri())
            .finish_non_exhaustive()
    }
}

impl<E: event::Event> Request<E> {
    fn new() -> Self {
        Request {
            method: OnceCell::new(),
            uri: OnceCell::new(),
            headers: OnceCell::new(),
            singles: Default::default(),
            client_ip: OnceCell::new(),
            _event: PhantomData,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.method.get_or_init(|| {
            read_or(
                &calls::REQUEST_GET_METHOD,
                SMALL_READ,
                sys::request_get_method,
                |b| Method::from_bytes(&b).ok(),
                || Method::GET,
            )
        })
    }

    /// Path and query as sent to the origin, e.g. `/a/b?x=1`.
    pub fn uri(&self) -> &str {
        self.uri.get_or_init(|| {
            read_or(
                &calls::REQUEST_GET_URI,
                SMALL_READ,
                sys::request_get_uri,
                |b| String::from_utf8(b).ok(),
                || "/".to_owned(),
            )
        })
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        let uri = self.uri();
        uri.split_once('?').map_or(uri, |(p, _)| p)
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.uri().split_once('?').map(|(_, q)| q)
    }

    /// The query's `name=value` pairs, as written (not percent-decoded), in order.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    }

    fn header_list(&self) -> &HeaderList {
        self.headers
            .get_or_init(|| HeaderList::read(&calls::REQUEST_GET_HEADERS, sys::request_get_headers))
    }

    /// Every header line as `(name, value)`, in message order, names lowercase.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.header_list().iter()
    }

    /// A header's value, if present (`"user-agent"` or `http::header::USER_AGENT`); the lines
    /// of a repeated header are joined with `, ` (once [`headers`](Self::headers) has been
    /// read, or after four other names, its first line). [`header_all`](Self::header_all)
    /// gives each line.
    pub fn header(&self, name: impl AsRef<str>) -> Option<&str> {
        let name = name.as_ref();
        if let Some(list) = self.headers.get() {
            return list.first(name);
        }
        for slot in &self.singles {
            match slot.get() {
                Some((n, value)) if n.eq_ignore_ascii_case(name) => return value.as_deref(),
                Some(_) => {}
                None => {
                    let (_, value) = slot.get_or_init(|| (name.to_owned(), read_header(name)));
                    return value.as_deref();
                }
            }
        }
        self.header_list().first(name)
    }

    /// Every value of a repeated header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.header_list().get_all(name)
    }

    /// A cookie's value from the `Cookie` header, if present.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        // Cookie lines are joined with `, ` (HTTP/2 sends one line per cookie); a cookie value
        // cannot contain a comma (RFC 6265 section 4.1.1), so both separate pairs.
        self.header("cookie")?
            .split([';', ','])
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Forgets what was read of a header the handler just changed.
    fn changed(&mut self, name: &[u8]) {
        for slot in &mut self.singles {
            if slot
                .get()
                .is_some_and(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            {
                slot.take();
            }
        }
    }

    /// The viewer's IP address.
    pub fn client_ip(&self) -> IpAddr {
        *self.client_ip.get_or_init(|| {
            read_or(
                &calls::REQUEST_GET_CLIENT_IP,
                SMALL_READ,
                sys::request_get_client_ip,
                |b| std::str::from_utf8(&b).ok()?.parse().ok(),
                || IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            )
        })
    }
}

impl<E: event::RequestEvent> Request<E> {
    /// Replaces path and query (`/path?query`).
    pub fn set_uri(&mut self, uri: &str) -> Result<(), Error> {
        check(
            &calls::REQUEST_SET_URI,
            sys::request_set_uri(uri.as_bytes()),
        )?;
        self.uri = OnceCell::from(uri.to_owned());
        Ok(())
    }

    /// Replaces the path, keeping the query.
    pub fn set_path(&mut self, path: &str) -> Result<(), Error> {
        let uri = match self.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        self.set_uri(&uri)
    }

    /// Replaces the query (`None` or empty removes it), keeping the path.
    pub fn set_query(&mut self, query: Option<&str>) -> Result<(), Error> {
        let uri = match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{}?{q}", self.path()),
            None => self.path().to_owned(),
        };
        self.set_uri(&uri)
    }

    /// Sets a header, replacing every existing line of it.
    pub fn set_header(
        &mut self,
        name: impl IntoHeaderName,
        value: impl IntoHeaderValue,
    ) -> Result<(), Error> {
        let (name, value) = (name.name_bytes(), value.value_bytes());
        REQUEST_HEADERS.set(&mut self.headers, name, value, false)?;
        self.changed(name);
        Ok(())
    }

    /// Adds a header line.
    pub fn append_header(
        &mut self,
        name: impl IntoHeaderName,
        value: impl IntoHeaderValue,
    ) -> Result<(), Error> {
        let (name, value) = (name.name_bytes(), value.value_bytes());
        REQUEST_HEADERS.set(&mut self.headers, name, value, true)?;
        self.changed(name);
        Ok(())
    }

    /// Removes every line of a header; `Ok(false)` if it was not there.
    pub fn remove_header(&mut self, name: impl IntoHeaderName) -> Result<bool, Error> {
        let name = name.name_bytes();
        let removed = REQUEST_HEADERS.remove(&mut self.headers, name)?;
        self.changed(name);
        Ok(removed)
    }

    /// Fetches from the origin with this config name (an `[origins.NAME]`) instead of the
    /// behavior's. The behavior matched by path still decides methods and cache lifetimes.
    pub fn set_origin(&mut self, name: &str) -> Result<(), Error> {
        check(&calls::ORIGIN_SET, sys::origin_set(name.as_bytes()))
    }
}

impl Request<ViewerRequest> {
    /// Replaces the whole cache key with this text (kept apart from keys the node builds).
    /// A key that leaves out something the response depends on serves one viewer's object to
    /// another: include everything that matters.
    pub fn set_cache_key(&mut self, key: &str) -> Result<(), Error> {
        check(&calls::CACHE_KEY_SET, sys::cache_key_set(key.as_bytes()))
    }

    /// Adds a part (e.g. `device=mobile`) to the key the behavior's `cache_key` builds.
    pub fn add_to_cache_key(&mut self, part: &str) -> Result<(), Error> {
        check(&calls::CACHE_KEY_ADD, sys::cache_key_add(part.as_bytes()))
    }
}

/// The response being handled in a response event `E`; [`Response::builder`] starts a
/// generated one in a request event.
pub struct Response<E> {
    status: OnceCell<StatusCode>,
    headers: OnceCell<HeaderList>,
    _event: PhantomData<E>,
}

impl<E: event::ResponseEvent> fmt::Debug for Response<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("event", &E::EVENT)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl Response<event::Generated> {
    /// Starts a generated response with this status, no headers and an empty body.
    pub fn builder(status: StatusCode) -> ResponseBuilder {
        ResponseBuilder {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl<E: event::ResponseEvent> Response<E> {
    fn new() -> Self {
        Response {
            status: OnceCell::new(),
            headers: OnceCell::new(),
            _event: PhantomData,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        *self.status.get_or_init(|| {
            let mut code = 0u32;
            let s = sys::response_get_status(&mut code);
            u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .filter(|_| s == status::OK)
                .unwrap_or_else(|| {
                    log::error(format_args!(
                        "edge-sdk: response_get_status returned {}",
                        status::name(s)
                    ));
                    StatusCode::OK
                })
        })
    }

    /// Sets the status code.
    pub fn set_status(&mut self, status: StatusCode) -> Result<(), Error> {
        check(
            &calls::RESPONSE_SET_STATUS,
            sys::response_set_status(i32::from(status.as_u16())),
        )?;
        self.status = OnceCell::from(status);
        Ok(())
    }

    fn header_list(&self) -> &HeaderList {
        self.headers.get_or_init(|| {
            HeaderList::read(&calls::RESPONSE_GET_HEADERS, sys::response_get_headers)
        })
    }

    /// Every header line as `(name, value)`, in message order, names lowercase.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.header_list().iter()
    }

    /// A header's first value, if present (`"etag"` or `http::header::ETAG`).
    pub fn header(&self, name: impl AsRef<str>) -> Option<&str> {
        self.header_list().first(name.as_ref())
    }

    /// Every value of a repeated header (each `Set-Cookie`), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.header_list().get_all(name)
    }

    /// Sets a header, replacing every existing line of it.
    pub fn set_header(
        &mut self,
        name: impl IntoHeaderName,
        value: impl IntoHeaderValue,
    ) -> Result<(), Error> {
        let (name, value) = (name.name_bytes(), value.value_bytes());
        RESPONSE_HEADERS.set(&mut self.headers, name, value, false)
    }

    /// Adds a header line.
    pub fn append_header(
        &mut self,
        name: impl IntoHeaderName,
        value: impl IntoHeaderValue,
    ) -> Result<(), Error> {
        let (name, value) = (name.name_bytes(), value.value_bytes());
        RESPONSE_HEADERS.set(&mut self.headers, name, value, true)
    }

    /// Removes every line of a header; `Ok(false)` if it was not there.
    pub fn remove_header(&mut self, name: impl IntoHeaderName) -> Result<bool, Error> {
        let name = name.name_bytes();
        RESPONSE_HEADERS.remove(&mut self.headers, name)
    }
}

impl Response<OriginResponse> {
    /// The whole body; `Ok(None)` when it is over the function's body limit and streams
    /// through untouched.
    pub fn body(&self) -> Result<Option<Vec<u8>>, Error> {
        match read(
            &calls::RESPONSE_GET_BODY,
            SMALL_READ,
            sys::response_get_body,
        ) {
            Err(e) if e.status() == Some(status::UNAVAILABLE) => Ok(None),
            other => other,
        }
    }

    /// Replaces the body (`Content-Length` follows).
    pub fn set_body(&mut self, body: impl AsRef<[u8]>) -> Result<(), Error> {
        check(
            &calls::RESPONSE_SET_BODY,
            sys::response_set_body(body.as_ref()),
        )
    }

    /// Overrides the caching lifetime, ignoring `Cache-Control` and the behavior's TTL bounds;
    /// zero means do not store.
    pub fn set_ttl(&mut self, ttl: std::time::Duration) -> Result<(), Error> {
        check(
            &calls::CACHE_SET_TTL,
            sys::cache_set_ttl(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
        )
    }
}

/// A response a request-event handler generates: start one with [`Response::builder`] or
/// [`redirect`], return it as [`Outcome::Respond`] (or `.into()`).
#[derive(Debug)]
pub struct ResponseBuilder {
    status: StatusCode,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl ResponseBuilder {
    /// Adds a header line. An invalid name or value fails the handler when the response is
    /// sent: the node refuses it and logs why.
    pub fn header(mut self, name: impl IntoHeaderName, value: impl IntoHeaderValue) -> Self {
        self.headers
            .push((name.name_bytes().to_vec(), value.value_bytes().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status it will have.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The first value of a header it will have, if any and text.
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    fn send(self) -> Result<(), Error> {
        let has_location = self.get_header("location").is_some();
        if let Some(warning) = host::redirect_warning(self.status, has_location) {
            log::warn(warning);
        }
        check(
            &calls::RESPONSE_SET_STATUS,
            sys::response_set_status(i32::from(self.status.as_u16())),
        )?;
        for (n, v) in &self.headers {
            check(
                &calls::RESPONSE_APPEND_HEADER,
                sys::response_append_header(n, v),
            )?;
        }
        check(
            &calls::RESPONSE_SET_BODY,
            sys::response_set_body(&self.body),
        )
    }
}

/// A generated redirect: `status` (301, 302, 307 or 308) with `Location: location`.
pub fn redirect(status: StatusCode, location: &str) -> ResponseBuilder {
    Response::builder(status).header(http::header::LOCATION, location)
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
/// use edge_sdk::{kv, Error, Outcome, Request, Response, StatusCode, ViewerRequest};
///
/// fn viewer_request(req: Request<ViewerRequest>) -> Result<Outcome, Error> {
///     if kv::get("flags", "maintenance")?.as_deref() == Some("on") {
///         return Ok(Response::builder(StatusCode::SERVICE_UNAVAILABLE).body("back soon").into());
///     }
///     Ok(Outcome::Continue)
/// }
/// #
/// # use edge_sdk::testing::TestHost;
/// # let run = TestHost::viewer_request("/").kv("flags", &[("maintenance", "on")]).run_request(viewer_request);
/// # assert_eq!(run.expect_response().status, StatusCode::SERVICE_UNAVAILABLE);
/// # TestHost::viewer_request("/").run_request(viewer_request).expect_continued();
/// ```
pub mod kv {
    use super::{calls, read, sys, Error, SMALL_READ};

    /// The value of `key` in `store` as text; `Ok(None)` when the store or the key does not
    /// exist. Values the admin API or a config file put in a store are always UTF-8.
    pub fn get(store: &str, key: &str) -> Result<Option<String>, Error> {
        match get_bytes(store, key)? {
            Some(bytes) => Ok(Some(String::from_utf8(bytes)?)),
            None => Ok(None),
        }
    }

    /// The value of `key` in `store` as bytes; `Ok(None)` when the store or the key does not
    /// exist.
    pub fn get_bytes(store: &str, key: &str) -> Result<Option<Vec<u8>>, Error> {
        read(&calls::KV_GET, SMALL_READ, |buf, out| {
            sys::kv_get(store.as_bytes(), key.as_bytes(), buf, out)
        })
    }
}

/// Logging to the node's log, tagged with the function name, event and request id. Lines over
/// 4 KiB are cut; at most 100 lines per invocation are kept.
pub mod log {
    use std::fmt::Display;

    use super::{abi::log_level, sys};

    fn write(level: i32, message: impl Display) {
        // A log line that cannot be written is not worth failing the request for.
        let _ = sys::log(level, message.to_string().as_bytes());
    }

    /// Logs at error level.
    pub fn error(message: impl Display) {
        write(log_level::ERROR, message)
    }
    /// Logs at warn level.
    pub fn warn(message: impl Display) {
        write(log_level::WARN, message)
    }
    /// Logs at info level.
    pub fn info(message: impl Display) {
        write(log_level::INFO, message)
    }
    /// Logs at debug level.
    pub fn debug(message: impl Display) {
        write(log_level::DEBUG, message)
    }
}

#[doc(hidden)]
pub mod __private {
    //! What the registration macros expand to; not a public API.
    use super::*;

    /// Runs a request-event handler and turns its result into the entry point's return value.
    pub fn request_event<E: event::RequestEvent>(
        handler: fn(Request<E>) -> Result<Outcome, Error>,
    ) -> i32 {
        match handler(Request::new()) {
            Ok(Outcome::Continue) => abi::outcome::CONTINUE,
            Ok(Outcome::Respond(response)) => match response.send() {
                Ok(()) => abi::outcome::RESPOND,
                Err(e) => fail(E::EVENT, &e),
            },
            Err(e) => fail(E::EVENT, &e),
        }
    }

    /// Runs a response-event handler and turns its result into the entry point's return value.
    pub fn response_event<E: event::ResponseEvent>(
        handler: fn(Request<E>, Response<E>) -> Result<(), Error>,
    ) -> i32 {
        match handler(Request::new(), Response::new()) {
            Ok(()) => abi::outcome::CONTINUE,
            Err(e) => fail(E::EVENT, &e),
        }
    }

    fn fail(event: abi::Event, error: &Error) -> i32 {
        log::error(format_args!(
            "{} handler failed: {error}",
            event.export_name()
        ));
        abi::outcome::FAILED
    }
}

/// Defines the four registration macros from one definition (`$d` is a literal `$`, which a
/// macro-generated macro needs for its own metavariables).
macro_rules! event_macros {
    ($d:tt $($(#[$doc:meta])* $name:ident, $export:literal, $entry:ident, $event:ident, $runner:ident;)*) => {$(
        $(#[$doc])*
        #[macro_export]
        macro_rules! $name {
            ($d handler:path) => {
                #[doc = concat!("The `", $export, "` entry point (ABI v1).")]
                #[allow(unsafe_code)]
                #[unsafe(export_name = $export)]
                pub extern "C" fn $entry() -> i32 {
                    $crate::__private::$runner::<$crate::event::$event>($d handler)
                }
            };
        }
    )*};
}

event_macros! { $
    /// Registers `fn(Request<ViewerRequest>) -> Result<Outcome, Error>` as the
    /// `viewer-request` entry point.
    viewer_request, "viewer-request", __edge_viewer_request, ViewerRequest, request_event;
    /// Registers `fn(Request<OriginRequest>) -> Result<Outcome, Error>` as the
    /// `origin-request` entry point.
    origin_request, "origin-request", __edge_origin_request, OriginRequest, request_event;
    /// Registers `fn(Request<OriginResponse>, Response<OriginResponse>) -> Result<(), Error>`
    /// as the `origin-response` entry point.
    origin_response, "origin-response", __edge_origin_response, OriginResponse, response_event;
    /// Registers `fn(Request<ViewerResponse>, Response<ViewerResponse>) -> Result<(), Error>`
    /// as the `viewer-response` entry point.
    viewer_response, "viewer-response", __edge_viewer_response, ViewerResponse, response_event;
}
