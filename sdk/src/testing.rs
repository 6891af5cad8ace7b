//! A simulated host for unit-testing handlers natively with `cargo test`: it keeps a request
//! (and a response) in memory and answers the SDK's host calls the way the node does, with the
//! same statuses, validation and per-event permissions.
//!
//! ```
//! use edge_sdk::testing::TestHost;
//! use edge_sdk::{Outcome, Request};
//!
//! fn handler(req: Request) -> Result<Outcome, edge_sdk::Error> {
//!     if req.path()?.starts_with("/api/") {
//!         req.set_origin("app")?;
//!     }
//!     Ok(Outcome::Continue)
//! }
//!
//! let run = TestHost::viewer_request("/api/users").origins(&["app", "bucket"]).run_request(handler);
//! assert!(run.continued());
//! assert_eq!(run.host.origin.as_deref(), Some("app"));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::abi::{self, limits, status, Event};
use crate::{Error, Outcome, Request, Response};

/// A request as the simulated host holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Fields in order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// The viewer's address.
    pub client_ip: String,
}

/// A response as the simulated host holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestResponse {
    /// Status code.
    pub status: u16,
    /// Fields in order, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The first value of a field.
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

/// The simulated host: what a handler sees and what it changed.
#[derive(Debug, Clone)]
pub struct TestHost {
    /// The event being run.
    pub event: Event,
    /// The request (changed in place by request events).
    pub request: TestRequest,
    /// The response in response events; the generated response, once set, in request events.
    pub response: Option<TestResponse>,
    /// Origin names the config would have (`origin_set` refuses others).
    pub known_origins: Vec<String>,
    /// The origin chosen with `origin_set`.
    pub origin: Option<String>,
    /// A cache key set outright.
    pub cache_key: Option<String>,
    /// Parts added to the cache key.
    pub cache_key_parts: Vec<String>,
    /// A caching lifetime set by the function, in seconds.
    pub ttl: Option<u64>,
    /// Log lines: level and text.
    pub logs: Vec<(i32, String)>,
    /// Largest body the function may read or write.
    pub body_limit: usize,
    /// Key-value stores by name, each a map of key to value (`kv_get` reads them).
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
}

/// The result of running a handler.
#[derive(Debug)]
pub struct TestRun {
    /// The entry point's result (`abi::outcome`).
    pub result: i32,
    /// The host afterwards.
    pub host: TestHost,
}

impl TestRun {
    /// The handler let the request or response go on.
    pub fn continued(&self) -> bool {
        self.result == abi::outcome::CONTINUE
    }

    /// The generated response, if the handler answered the viewer.
    pub fn responded(&self) -> Option<&TestResponse> {
        (self.result == abi::outcome::RESPOND)
            .then_some(self.host.response.as_ref())
            .flatten()
    }

    /// The handler failed (the node would answer 502).
    pub fn failed(&self) -> bool {
        !matches!(self.result, abi::outcome::CONTINUE | abi::outcome::RESPOND)
    }
}

impl TestHost {
    /// A host for `event` with a GET of `uri` from 127.0.0.1.
    pub fn new(event: Event, uri: &str) -> Self {
        let response = (!event.is_request()).then(|| TestResponse {
            status: 200,
            ..Default::default()
        });
        TestHost {
            event,
            request: TestRequest {
                method: "GET".into(),
                uri: uri.into(),
                headers: vec![("host".into(), "example.com".into())],
                client_ip: "127.0.0.1".into(),
            },
            response,
            known_origins: Vec::new(),
            origin: None,
            cache_key: None,
            cache_key_parts: Vec::new(),
            ttl: None,
            logs: Vec::new(),
            body_limit: 1024 * 1024,
            kv: BTreeMap::new(),
        }
    }

    /// A viewer-request host.
    pub fn viewer_request(uri: &str) -> Self {
        Self::new(Event::ViewerRequest, uri)
    }

    /// An origin-request host.
    pub fn origin_request(uri: &str) -> Self {
        Self::new(Event::OriginRequest, uri)
    }

    /// An origin-response host with a response of `status`.
    pub fn origin_response(uri: &str, status: u16) -> Self {
        let mut host = Self::new(Event::OriginResponse, uri);
        host.response = Some(TestResponse {
            status,
            ..Default::default()
        });
        host
    }

    /// A viewer-response host with a response of `status`.
    pub fn viewer_response(uri: &str, status: u16) -> Self {
        let mut host = Self::new(Event::ViewerResponse, uri);
        host.response = Some(TestResponse {
            status,
            ..Default::default()
        });
        host
    }

    /// Sets the request method.
    pub fn method(mut self, method: &str) -> Self {
        self.request.method = method.into();
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request
            .headers
            .push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// Sets the viewer's IP address.
    pub fn client_ip(mut self, ip: &str) -> Self {
        self.request.client_ip = ip.into();
        self
    }

    /// Declares the config's origin names.
    pub fn origins(mut self, names: &[&str]) -> Self {
        self.known_origins = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Adds these pairs to the key-value store `store` (created if absent), as a `[kv.NAME]`
    /// of the node's config would hold them.
    pub fn kv(mut self, store: &str, pairs: &[(&str, &str)]) -> Self {
        let entries = self.kv.entry(store.to_owned()).or_default();
        for (key, value) in pairs {
            entries.insert((*key).to_owned(), (*value).to_owned());
        }
        self
    }

    /// Adds a response header (response events).
    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        if let Some(r) = &mut self.response {
            r.headers.push((name.to_ascii_lowercase(), value.into()));
        }
        self
    }

    /// Sets the response body (response events).
    pub fn response_body(mut self, body: &[u8]) -> Self {
        if let Some(r) = &mut self.response {
            r.body = body.to_vec();
        }
        self
    }

    /// The first value of a request header.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        find(&self.request.headers, name)
    }

    /// Runs a request-event handler the way its exported entry point would.
    pub fn run_request(self, handler: fn(Request) -> Result<Outcome, Error>) -> TestRun {
        let event = self.event;
        self.run(|| crate::__private::run_request_event(event, handler))
    }

    /// Runs a response-event handler the way its exported entry point would.
    pub fn run_response(self, handler: fn(Request, Response) -> Result<(), Error>) -> TestRun {
        let event = self.event;
        self.run(|| crate::__private::run_response_event(event, handler))
    }

    fn run(self, entry: impl FnOnce() -> i32) -> TestRun {
        HOST.with(|h| *h.borrow_mut() = Some(self));
        let result = entry();
        let host = HOST
            .with(|h| h.borrow_mut().take())
            .expect("the host stays installed during a run");
        TestRun { result, host }
    }
}

thread_local! {
    static HOST: RefCell<Option<TestHost>> = const { RefCell::new(None) };
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The simulated implementations of each host call, with the ABI's semantics.
pub(crate) mod sim {
    use super::*;

    fn with<R>(call: &str, f: impl FnOnce(&mut TestHost) -> R, not_allowed: R) -> R {
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            let host = h.as_mut().expect(
                "no TestHost is running: call handlers through edge_sdk::testing::TestHost",
            );
            if abi::is_allowed(host.event, call) {
                f(host)
            } else {
                not_allowed
            }
        })
    }

    fn write(value: &[u8], buf: &mut [u8], out: &mut u32) -> i32 {
        *out = value.len() as u32;
        if value.len() > buf.len() {
            return status::BUFFER_TOO_SMALL;
        }
        buf[..value.len()].copy_from_slice(value);
        status::OK
    }

    fn get(
        call: &str,
        buf: &mut [u8],
        out: &mut u32,
        f: impl FnOnce(&TestHost) -> Option<Vec<u8>>,
    ) -> i32 {
        with(
            call,
            |h| match f(h) {
                Some(v) => write(&v, buf, out),
                None => status::NOT_FOUND,
            },
            status::NOT_ALLOWED,
        )
    }

    fn joined(headers: &[(String, String)], name: &[u8], sep: &str) -> Option<Vec<u8>> {
        let name = std::str::from_utf8(name).ok()?;
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(sep).into_bytes())
    }

    fn list(headers: &[(String, String)]) -> Vec<u8> {
        headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\n"))
            .collect::<String>()
            .into_bytes()
    }

    /// Header change with the ABI's validation; `replace` removes existing lines first.
    fn change(
        headers: &mut Vec<(String, String)>,
        name: &[u8],
        value: Option<&[u8]>,
        replace: bool,
    ) -> i32 {
        let Ok(name) = http::HeaderName::from_bytes(name) else {
            return status::INVALID_ARGUMENT;
        };
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            return status::INVALID_ARGUMENT;
        }
        let value = match value {
            Some(v) => match (http::HeaderValue::from_bytes(v), std::str::from_utf8(v)) {
                _ if v.len() > limits::MAX_HEADER_VALUE => return status::LIMIT_EXCEEDED,
                (Ok(_), Ok(v)) => Some(v.to_owned()),
                _ => return status::INVALID_ARGUMENT,
            },
            None => None,
        };
        if value.is_none() && !headers.iter().any(|(n, _)| n == name.as_str()) {
            return status::NOT_FOUND;
        }
        let mut next = headers.clone();
        if replace || value.is_none() {
            next.retain(|(n, _)| n != name.as_str());
        }
        if let Some(v) = value {
            next.push((name.as_str().to_owned(), v));
        }
        let bytes: usize = next.iter().map(|(n, v)| n.len() + v.len()).sum();
        if next.len() > limits::MAX_HEADER_COUNT || bytes > limits::MAX_HEADER_BYTES {
            return status::LIMIT_EXCEEDED;
        }
        *headers = next;
        status::OK
    }

    fn response(h: &mut TestHost) -> &mut TestResponse {
        h.response.get_or_insert_with(|| TestResponse {
            status: 200,
            ..Default::default()
        })
    }

    pub fn request_get_method(buf: &mut [u8], out: &mut u32) -> i32 {
        get("request_get_method", buf, out, |h| {
            Some(h.request.method.clone().into_bytes())
        })
    }
    pub fn request_get_uri(buf: &mut [u8], out: &mut u32) -> i32 {
        get("request_get_uri", buf, out, |h| {
            Some(h.request.uri.clone().into_bytes())
        })
    }
    pub fn request_set_uri(uri: &[u8]) -> i32 {
        with(
            "request_set_uri",
            |h| match std::str::from_utf8(uri)
                .ok()
                .filter(|u| u.starts_with('/') && u.parse::<http::uri::PathAndQuery>().is_ok())
            {
                Some(u) => {
                    h.request.uri = u.to_owned();
                    status::OK
                }
                None => status::INVALID_ARGUMENT,
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn request_get_header(name: &[u8], buf: &mut [u8], out: &mut u32) -> i32 {
        get("request_get_header", buf, out, |h| {
            joined(&h.request.headers, name, ", ")
        })
    }
    pub fn request_get_headers(buf: &mut [u8], out: &mut u32) -> i32 {
        get("request_get_headers", buf, out, |h| {
            Some(list(&h.request.headers))
        })
    }
    pub fn request_set_header(name: &[u8], value: &[u8]) -> i32 {
        with(
            "request_set_header",
            |h| change(&mut h.request.headers, name, Some(value), true),
            status::NOT_ALLOWED,
        )
    }
    pub fn request_append_header(name: &[u8], value: &[u8]) -> i32 {
        with(
            "request_append_header",
            |h| change(&mut h.request.headers, name, Some(value), false),
            status::NOT_ALLOWED,
        )
    }
    pub fn request_remove_header(name: &[u8]) -> i32 {
        with(
            "request_remove_header",
            |h| change(&mut h.request.headers, name, None, false),
            status::NOT_ALLOWED,
        )
    }
    pub fn request_get_client_ip(buf: &mut [u8], out: &mut u32) -> i32 {
        get("request_get_client_ip", buf, out, |h| {
            Some(h.request.client_ip.clone().into_bytes())
        })
    }
    pub fn origin_set(name: &[u8]) -> i32 {
        with(
            "origin_set",
            |h| match std::str::from_utf8(name)
                .ok()
                .filter(|n| h.known_origins.iter().any(|o| o == n))
            {
                Some(n) => {
                    h.origin = Some(n.to_owned());
                    status::OK
                }
                None => status::NOT_FOUND,
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn cache_key_set(key: &[u8]) -> i32 {
        with(
            "cache_key_set",
            |h| match std::str::from_utf8(key) {
                Ok(k) => {
                    h.cache_key = Some(k.to_owned());
                    status::OK
                }
                Err(_) => status::INVALID_ARGUMENT,
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn cache_key_add(part: &[u8]) -> i32 {
        with(
            "cache_key_add",
            |h| match std::str::from_utf8(part) {
                Ok(p) => {
                    h.cache_key_parts.push(p.to_owned());
                    status::OK
                }
                Err(_) => status::INVALID_ARGUMENT,
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn cache_set_ttl(seconds: i64) -> i32 {
        with(
            "cache_set_ttl",
            |h| match u64::try_from(seconds) {
                Ok(s) => {
                    h.ttl = Some(s);
                    status::OK
                }
                Err(_) => status::INVALID_ARGUMENT,
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn response_get_status(out: &mut u32) -> i32 {
        with(
            "response_get_status",
            |h| {
                *out = h.response.as_ref().map_or(200, |r| u32::from(r.status));
                status::OK
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn response_set_status(code: i32) -> i32 {
        with(
            "response_set_status",
            |h| match u16::try_from(code).ok().filter(|c| (100..=999).contains(c)) {
                Some(c) => {
                    response(h).status = c;
                    status::OK
                }
                None => status::INVALID_ARGUMENT,
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn response_get_header(name: &[u8], buf: &mut [u8], out: &mut u32) -> i32 {
        let sep = if name.eq_ignore_ascii_case(b"set-cookie") {
            "\n"
        } else {
            ", "
        };
        get("response_get_header", buf, out, |h| {
            h.response
                .as_ref()
                .and_then(|r| joined(&r.headers, name, sep))
        })
    }
    pub fn response_get_headers(buf: &mut [u8], out: &mut u32) -> i32 {
        get("response_get_headers", buf, out, |h| {
            Some(list(
                &h.response
                    .as_ref()
                    .map(|r| r.headers.clone())
                    .unwrap_or_default(),
            ))
        })
    }
    pub fn response_set_header(name: &[u8], value: &[u8]) -> i32 {
        with(
            "response_set_header",
            |h| change(&mut response(h).headers, name, Some(value), true),
            status::NOT_ALLOWED,
        )
    }
    pub fn response_append_header(name: &[u8], value: &[u8]) -> i32 {
        with(
            "response_append_header",
            |h| change(&mut response(h).headers, name, Some(value), false),
            status::NOT_ALLOWED,
        )
    }
    pub fn response_remove_header(name: &[u8]) -> i32 {
        with(
            "response_remove_header",
            |h| change(&mut response(h).headers, name, None, false),
            status::NOT_ALLOWED,
        )
    }
    pub fn response_get_body(buf: &mut [u8], out: &mut u32) -> i32 {
        with(
            "response_get_body",
            |h| {
                let body = h
                    .response
                    .as_ref()
                    .map(|r| r.body.clone())
                    .unwrap_or_default();
                if body.len() > h.body_limit {
                    return status::UNAVAILABLE;
                }
                write(&body, buf, out)
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn response_set_body(body: &[u8]) -> i32 {
        with(
            "response_set_body",
            |h| {
                if body.len() > h.body_limit {
                    return status::LIMIT_EXCEEDED;
                }
                response(h).body = body.to_vec();
                status::OK
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn kv_get(store: &[u8], key: &[u8], buf: &mut [u8], out: &mut u32) -> i32 {
        with(
            "kv_get",
            |h| match (std::str::from_utf8(store), std::str::from_utf8(key)) {
                (Ok(store), Ok(key)) => match h.kv.get(store).and_then(|s| s.get(key)) {
                    Some(value) => write(value.as_bytes(), buf, out),
                    None => status::NOT_FOUND,
                },
                _ => status::INVALID_ARGUMENT,
            },
            status::NOT_ALLOWED,
        )
    }
    pub fn log(level: i32, line: &[u8]) -> i32 {
        with(
            "log",
            |h| {
                if !(abi::log_level::ERROR..=abi::log_level::TRACE).contains(&level) {
                    return status::INVALID_ARGUMENT;
                }
                if h.logs.len() < limits::MAX_LOG_LINES {
                    let mut text = String::from_utf8_lossy(line).into_owned();
                    let mut end = text.len().min(limits::MAX_LOG_LINE);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    text.truncate(end);
                    h.logs.push((level, text));
                }
                status::OK
            },
            status::NOT_ALLOWED,
        )
    }
}
