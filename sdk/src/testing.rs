//! A simulated host for unit-testing handlers natively with `cargo test`. It keeps a request
//! (and a response) in memory and answers the SDK's host calls with the node's own rules
//! ([`crate::host`]: the same code the node runs), so statuses, validation, limits, per-event
//! permissions and the cache key agree with the node.
//!
//! Like the node it gives a handler a CPU budget (5 ms by default, [`TestHost::cpu_limit`]):
//! a handler that runs past it fails the test instead of hanging it. A refused host call fails
//! the handler with a message naming the call, the argument and the rule, and leaves the same
//! warning in the logs as on the node. A panic is reported with its message and location.
//!
//! ```
//! use edge_sdk::testing::TestHost;
//! use edge_sdk::{Error, Outcome, Request, ViewerRequest};
//!
//! fn handler(mut req: Request<ViewerRequest>) -> Result<Outcome, Error> {
//!     if req.path().starts_with("/api/") {
//!         req.set_origin("app")?;
//!     }
//!     Ok(Outcome::Continue)
//! }
//!
//! let run = TestHost::viewer_request("/api/users").origins(&["bucket", "app"]).run_request(handler);
//! let host = run.expect_continued();
//! assert_eq!(host.origin.as_deref(), Some("app"));
//! // The key the node would look the object up by: host, path, and the origin the function
//! // picked, since it is not the behavior's (the first origin declared).
//! assert_eq!(run.cache_key(), "example.com/api/users\norigin=app");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Once;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use crate::abi::{self, calls, log_level, status, Event, HostCall};
use crate::host::{self, cache_key, headers::Change, Refusal};
use crate::{event, Error, Outcome, Request, Response};

/// The node's default CPU time per invocation.
pub const DEFAULT_CPU_LIMIT: Duration = Duration::from_millis(5);

/// The node's default body limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A request as the simulated host holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// Fields in order.
    pub headers: HeaderMap,
    /// The viewer's address.
    pub client_ip: IpAddr,
}

impl TestRequest {
    /// A header's first value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// A response as the simulated host holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Fields in order.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl TestResponse {
    fn new(status: StatusCode) -> Self {
        TestResponse {
            status,
            headers: HeaderMap::new(),
            body: Vec::new(),
        }
    }

    /// A header's first value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A behavior's `cache_key` config, as the node would have it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheKeyRules {
    /// `query`: `None` (default) ignores it, `Some(empty)` keeps every parameter, else these.
    pub query: Option<Vec<String>>,
    /// `headers`.
    pub headers: Vec<HeaderName>,
    /// `cookies`.
    pub cookies: Vec<String>,
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
    /// Origin names the config would have (`origin_set` refuses others); the first is the
    /// behavior's. Empty until [`origins`](Self::origins) declares them.
    pub known_origins: Vec<String>,
    /// The origin chosen with `origin_set`.
    pub origin: Option<String>,
    /// A cache key set outright.
    pub cache_key: Option<String>,
    /// Parts added to the cache key.
    pub cache_key_parts: Vec<String>,
    /// The behavior's `cache_key` config, for [`TestRun::cache_key`].
    pub cache_key_rules: CacheKeyRules,
    /// A caching lifetime set by the function, in seconds.
    pub ttl: Option<u64>,
    /// Log lines: level and text, as the node keeps them (refused calls add a warning).
    pub logs: Vec<(i32, String)>,
    /// Largest body the function may read or write.
    pub body_limit: usize,
    /// CPU time a handler may use before the test fails, as the node's `cpu_limit`.
    pub cpu_limit: Duration,
    /// Key-value stores by name, each a map of key to value (`kv_get` reads them).
    pub kv: BTreeMap<String, BTreeMap<String, String>>,
    /// Why the last host call was refused, for the SDK's error.
    last_refusal: Option<String>,
}

/// The result of running a handler.
#[derive(Debug)]
pub struct TestRun {
    /// The entry point's result (`abi::outcome`), or `None` if the handler panicked.
    pub result: Option<i32>,
    /// The panic message with its location (`panicked at src/lib.rs:12:5: ...`), if any.
    pub panic: Option<String>,
    /// The host afterwards.
    pub host: TestHost,
}

impl TestRun {
    /// The handler let the request or response go on.
    pub fn continued(&self) -> bool {
        self.result == Some(abi::outcome::CONTINUE)
    }

    /// The generated response, if the handler answered the viewer.
    pub fn responded(&self) -> Option<&TestResponse> {
        (self.result == Some(abi::outcome::RESPOND))
            .then_some(self.host.response.as_ref())
            .flatten()
    }

    /// The handler failed or panicked (the node would answer 502).
    pub fn failed(&self) -> bool {
        !self.continued() && self.responded().is_none()
    }

    /// The host, after checking that the handler continued; else panics with the logs.
    #[track_caller]
    pub fn expect_continued(&self) -> &TestHost {
        if !self.continued() {
            panic!("expected the handler to continue, but it {self}");
        }
        &self.host
    }

    /// The generated response, after checking that there is one; else panics with the logs.
    #[track_caller]
    pub fn expect_response(&self) -> &TestResponse {
        match self.responded() {
            Some(r) => r,
            None => panic!("expected the handler to respond, but it {self}"),
        }
    }

    /// The logs, after checking that the handler failed; else panics.
    #[track_caller]
    pub fn expect_failed(&self) -> String {
        if !self.failed() {
            panic!("expected the handler to fail, but it {self}");
        }
        self.logs()
    }

    /// The log lines as the node writes them, one per line: `level: text`.
    pub fn logs(&self) -> String {
        self.host
            .logs
            .iter()
            .map(|(level, line)| format!("{}: {line}\n", log_level::name(*level).unwrap_or("?")))
            .collect()
    }

    /// The cache key the node would look the object up by after this viewer-request run,
    /// built by the node's own code from the (changed) request, the behavior's
    /// [`cache_key_rules`](TestHost::cache_key_rules) and what the function set.
    pub fn cache_key(&self) -> String {
        let h = &self.host;
        let behavior_origin = h.known_origins.first();
        let other_origin = h
            .origin
            .as_ref()
            .filter(|o| Some(*o) != behavior_origin)
            .map(String::as_str);
        cache_key::after_function(
            || {
                let uri: Uri = h
                    .request
                    .uri
                    .parse()
                    .unwrap_or_else(|_| Uri::from_static("/"));
                let rules = &h.cache_key_rules;
                let query = match &rules.query {
                    None => cache_key::Query::None,
                    Some(names) if names.is_empty() => cache_key::Query::All,
                    Some(names) => cache_key::Query::Allow(names),
                };
                cache_key::build(
                    &cache_key::Rules {
                        query,
                        headers: &rules.headers,
                        cookies: &rules.cookies,
                    },
                    &uri,
                    &h.request.headers,
                )
            },
            h.cache_key.as_deref(),
            &h.cache_key_parts,
            other_origin,
        )
    }
}

impl fmt::Display for TestRun {
    /// What happened, with the logs: what a failed expectation shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.panic, self.result) {
            (Some(p), _) => write!(f, "panicked ({p})")?,
            (None, Some(abi::outcome::CONTINUE)) => f.write_str("continued")?,
            (None, Some(abi::outcome::RESPOND)) => match &self.host.response {
                Some(r) => write!(f, "responded {}", r.status.as_u16())?,
                None => f.write_str("returned 1 without a response")?,
            },
            (None, _) => f.write_str("failed (the node answers 502)")?,
        }
        if self.host.logs.is_empty() {
            f.write_str("; no log lines")
        } else {
            write!(f, "; its log:\n{}", self.logs())
        }
    }
}

impl TestHost {
    /// A host for `event` with a GET of `uri` for `example.com` from 127.0.0.1; response events
    /// get a `200` response with no headers.
    pub fn new(event: Event, uri: &str) -> Self {
        let response = (!event.is_request()).then(|| TestResponse::new(StatusCode::OK));
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("example.com"));
        TestHost {
            event,
            request: TestRequest {
                method: Method::GET,
                uri: uri.into(),
                headers,
                client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
            response,
            known_origins: Vec::new(),
            origin: None,
            cache_key: None,
            cache_key_parts: Vec::new(),
            cache_key_rules: CacheKeyRules::default(),
            ttl: None,
            logs: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            cpu_limit: DEFAULT_CPU_LIMIT,
            kv: BTreeMap::new(),
            last_refusal: None,
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
        Self::new(Event::OriginResponse, uri).status(status)
    }

    /// A viewer-response host with a response of `status`.
    pub fn viewer_response(uri: &str, status: u16) -> Self {
        Self::new(Event::ViewerResponse, uri).status(status)
    }

    fn status(mut self, status: u16) -> Self {
        let status = StatusCode::from_u16(status).expect("TestHost: a status of 100 to 999");
        self.response = Some(TestResponse::new(status));
        self
    }

    /// Sets the request method.
    pub fn method(mut self, method: &str) -> Self {
        self.request.method =
            Method::from_bytes(method.as_bytes()).expect("TestHost: a valid method");
        self
    }

    /// Replaces path and query.
    pub fn uri(mut self, uri: &str) -> Self {
        self.request.uri = uri.into();
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let (name, value) = pair(name, value);
        self.request.headers.append(name, value);
        self
    }

    /// Sets the viewer's IP address.
    pub fn client_ip(mut self, ip: &str) -> Self {
        self.request.client_ip = ip.parse().expect("TestHost: a valid IP address");
        self
    }

    /// Declares the config's origin names; the first is the behavior's.
    pub fn origins(mut self, names: &[&str]) -> Self {
        self.known_origins = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Sets the behavior's `cache_key` config.
    pub fn cache_key_rules(mut self, rules: CacheKeyRules) -> Self {
        self.cache_key_rules = rules;
        self
    }

    /// Sets the CPU budget (the node's `cpu_limit`).
    pub fn cpu_limit(mut self, limit: Duration) -> Self {
        self.cpu_limit = limit;
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
        let (name, value) = pair(name, value);
        if let Some(r) = &mut self.response {
            r.headers.append(name, value);
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
        self.request.header(name)
    }

    /// Runs a request-event handler the way its exported entry point would.
    pub fn run_request<E: event::RequestEvent>(
        self,
        handler: fn(Request<E>) -> Result<Outcome, Error>,
    ) -> TestRun {
        self.run(E::EVENT, move || crate::__private::request_event(handler))
    }

    /// Runs a response-event handler the way its exported entry point would.
    pub fn run_response<E: event::ResponseEvent>(
        self,
        handler: fn(Request<E>, Response<E>) -> Result<(), Error>,
    ) -> TestRun {
        self.run(E::EVENT, move || crate::__private::response_event(handler))
    }

    /// Runs `entry` as this host's event's entry point, for tests of raw host calls
    /// ([`raw`]); its return value is the [`TestRun::result`].
    pub fn run_raw(self, entry: impl FnOnce() -> i32 + Send + 'static) -> TestRun {
        let event = self.event;
        self.run(event, entry)
    }

    /// Runs `entry` on a thread of its own with this host installed, as the node would: a
    /// panic is caught and reported, and a handler past the CPU budget fails the test.
    #[track_caller]
    fn run(self, event: Event, entry: impl FnOnce() -> i32 + Send + 'static) -> TestRun {
        assert_eq!(
            self.event,
            event,
            "a {} handler run on a {} TestHost",
            event.export_name(),
            self.event.export_name()
        );
        install_panic_hook();
        let limit = self.cpu_limit;
        let (done_tx, done) = mpsc::channel();
        let (clock_tx, clock) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("edge-test-{}", event.export_name()))
            .spawn(move || {
                let _ = clock_tx.send(CpuClock::of_this_thread());
                HOST.with(|h| *h.borrow_mut() = Some(self));
                IN_HANDLER.with(|p| *p.borrow_mut() = Some(None));
                let result = panic::catch_unwind(AssertUnwindSafe(entry)).ok();
                let panic = IN_HANDLER.with(|p| p.borrow_mut().take()).flatten();
                let mut host = HOST
                    .with(|h| h.borrow_mut().take())
                    .expect("the host stays installed during a run");
                if let Some(p) = &panic {
                    host::push_log(&mut host.logs, log_level::ERROR, p.clone());
                }
                let _ = done_tx.send(TestRun {
                    result,
                    panic,
                    host,
                });
            });
        if let Err(e) = spawned {
            panic!("TestHost: cannot start a thread for the handler: {e}");
        }
        let clock = clock.recv().unwrap_or(CpuClock::Wall(Instant::now()));
        let mut wait = limit;
        loop {
            match done.recv_timeout(wait) {
                Ok(run) => return run,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("TestHost: the handler's thread ended without a result")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let used = clock.used();
                    if used >= limit {
                        // The thread cannot be stopped from outside; it spins until the test
                        // process exits, as a runaway guest would until the node's deadline.
                        panic!(
                            "the {} handler ran past its CPU limit of {limit:?} (the node stops it and answers 503); raise TestHost::cpu_limit if it needs more",
                            event.export_name()
                        );
                    }
                    wait = (limit - used).max(Duration::from_millis(1));
                }
            }
        }
    }
}

fn pair(name: &str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_bytes(name.as_bytes()).expect("TestHost: a valid header name"),
        HeaderValue::from_str(value).expect("TestHost: a valid header value"),
    )
}

/// How much CPU time the handler's thread has used: from the kernel where it says
/// (Linux: `/proc/.../schedstat`), else wall time since the start.
enum CpuClock {
    Schedstat(std::path::PathBuf),
    Wall(Instant),
}

impl CpuClock {
    fn of_this_thread() -> Self {
        match std::fs::read_link("/proc/thread-self") {
            Ok(task) => {
                CpuClock::Schedstat(std::path::Path::new("/proc").join(task).join("schedstat"))
            }
            Err(_) => CpuClock::Wall(Instant::now()),
        }
    }

    fn used(&self) -> Duration {
        match self {
            CpuClock::Wall(start) => start.elapsed(),
            CpuClock::Schedstat(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .map_or(Duration::ZERO, Duration::from_nanos),
        }
    }
}

thread_local! {
    static HOST: RefCell<Option<TestHost>> = const { RefCell::new(None) };
    /// `Some` on a handler's thread; holds the panic message once the handler panicked.
    static IN_HANDLER: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Records a handler's panic as the node logs it (`panicked at file:line:col: message`); other
/// panics (a failed assertion in the test itself) go to the previous hook as usual.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let message = info.payload_as_str().unwrap_or("Box<dyn Any>");
            let line = match info.location() {
                Some(l) => format!(
                    "panicked at {}:{}:{}: {message}",
                    l.file(),
                    l.line(),
                    l.column()
                ),
                None => format!("panicked: {message}"),
            };
            let in_handler = IN_HANDLER.with(|p| match p.borrow_mut().as_mut() {
                Some(slot) => {
                    slot.get_or_insert(line);
                    true
                }
                None => false,
            });
            // A handler's panic is reported in its `TestRun`; the default hook's backtrace
            // would only eat into the handler's CPU budget.
            if !in_handler {
                previous(info);
            }
        }));
    });
}

/// The simulated host calls over byte slices, one per import of ABI.md with the same name and
/// status, for ABI-level tests (the SDK's own types call these natively). Call them inside
/// [`TestHost::run_raw`].
pub mod raw {
    #![allow(missing_docs)]
    use super::*;

    /// Runs a call on the installed host after the per-event check; a refusal is logged as the
    /// node logs it and kept for the SDK's error.
    fn with(call: &HostCall, f: impl FnOnce(&mut TestHost) -> Result<(), Refusal>) -> i32 {
        HOST.with(|h| {
            let mut h = h.borrow_mut();
            let host = h.as_mut().expect(
                "no TestHost is running: call handlers through edge_sdk::testing::TestHost",
            );
            match host::check_allowed(call, host.event).and_then(|()| f(host)) {
                Ok(()) => status::OK,
                Err(refusal) => {
                    host::record_refusal(&mut host.logs, &refusal);
                    host.last_refusal = refusal.message;
                    refusal.status
                }
            }
        })
    }

    pub(crate) fn take_refusal() -> Option<String> {
        HOST.with(|h| h.borrow_mut().as_mut().and_then(|h| h.last_refusal.take()))
    }

    fn write(value: &[u8], buf: &mut [u8], out: &mut u32) -> Result<(), Refusal> {
        *out = u32::try_from(value.len()).map_err(|_| Refusal::quiet(status::LIMIT_EXCEEDED))?;
        let dest = buf
            .get_mut(..value.len())
            .ok_or(Refusal::quiet(status::BUFFER_TOO_SMALL))?;
        dest.copy_from_slice(value);
        Ok(())
    }

    fn response(h: &mut TestHost) -> &mut TestResponse {
        h.response
            .get_or_insert_with(|| TestResponse::new(StatusCode::OK))
    }

    pub fn request_get_method(buf: &mut [u8], out: &mut u32) -> i32 {
        with(&calls::REQUEST_GET_METHOD, |h| {
            write(h.request.method.as_str().as_bytes(), buf, out)
        })
    }
    pub fn request_get_uri(buf: &mut [u8], out: &mut u32) -> i32 {
        with(&calls::REQUEST_GET_URI, |h| {
            write(h.request.uri.as_bytes(), buf, out)
        })
    }
    pub fn request_set_uri(uri: &[u8]) -> i32 {
        with(&calls::REQUEST_SET_URI, |h| {
            let uri = host::parse_uri(&calls::REQUEST_SET_URI, uri)?;
            h.request.uri = uri
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned();
            Ok(())
        })
    }
    pub fn request_get_header(name: &[u8], buf: &mut [u8], out: &mut u32) -> i32 {
        let call = &calls::REQUEST_GET_HEADER;
        with(call, |h| {
            write(
                &host::headers::get(call, &h.request.headers, name)?,
                buf,
                out,
            )
        })
    }
    pub fn request_get_headers(buf: &mut [u8], out: &mut u32) -> i32 {
        with(&calls::REQUEST_GET_HEADERS, |h| {
            write(&host::headers::list(&h.request.headers), buf, out)
        })
    }
    fn request_change(call: &'static HostCall, name: &[u8], value: &[u8], how: Change) -> i32 {
        with(call, |h| {
            host::headers::change(call, &mut h.request.headers, name, value, how)
        })
    }
    pub fn request_set_header(name: &[u8], value: &[u8]) -> i32 {
        request_change(&calls::REQUEST_SET_HEADER, name, value, Change::Set)
    }
    pub fn request_append_header(name: &[u8], value: &[u8]) -> i32 {
        request_change(&calls::REQUEST_APPEND_HEADER, name, value, Change::Append)
    }
    pub fn request_remove_header(name: &[u8]) -> i32 {
        request_change(&calls::REQUEST_REMOVE_HEADER, name, b"", Change::Remove)
    }
    pub fn request_get_client_ip(buf: &mut [u8], out: &mut u32) -> i32 {
        with(&calls::REQUEST_GET_CLIENT_IP, |h| {
            write(h.request.client_ip.to_string().as_bytes(), buf, out)
        })
    }
    pub fn origin_set(name: &[u8]) -> i32 {
        let call = &calls::ORIGIN_SET;
        with(call, |h| {
            let index = host::find_origin(call, name, h.known_origins.iter().map(String::as_str))
                .map_err(|mut r| {
                if h.known_origins.is_empty() {
                    if let Some(m) = &mut r.message {
                        m.push_str(" (declare the config's origins with TestHost::origins)");
                    }
                }
                r
            })?;
            h.origin = Some(h.known_origins[index].clone());
            Ok(())
        })
    }
    pub fn cache_key_set(key: &[u8]) -> i32 {
        let call = &calls::CACHE_KEY_SET;
        with(call, |h| {
            h.cache_key = Some(cache_key::text(call, key)?);
            Ok(())
        })
    }
    pub fn cache_key_add(part: &[u8]) -> i32 {
        let call = &calls::CACHE_KEY_ADD;
        with(call, |h| {
            cache_key::add_part(call, &mut h.cache_key_parts, part)
        })
    }
    pub fn cache_set_ttl(seconds: i64) -> i32 {
        let call = &calls::CACHE_SET_TTL;
        with(call, |h| {
            h.ttl = Some(host::parse_ttl(call, seconds)?);
            Ok(())
        })
    }
    pub fn response_get_status(out: &mut u32) -> i32 {
        with(&calls::RESPONSE_GET_STATUS, |h| {
            *out = h
                .response
                .as_ref()
                .map_or(200, |r| u32::from(r.status.as_u16()));
            Ok(())
        })
    }
    pub fn response_set_status(code: i32) -> i32 {
        let call = &calls::RESPONSE_SET_STATUS;
        with(call, |h| {
            response(h).status = host::parse_status(call, code)?;
            Ok(())
        })
    }
    pub fn response_get_header(name: &[u8], buf: &mut [u8], out: &mut u32) -> i32 {
        let call = &calls::RESPONSE_GET_HEADER;
        with(call, |h| {
            let headers = h.response.as_ref().map(|r| &r.headers);
            let value = host::headers::get(call, headers.unwrap_or(&HeaderMap::new()), name)?;
            write(&value, buf, out)
        })
    }
    pub fn response_get_headers(buf: &mut [u8], out: &mut u32) -> i32 {
        with(&calls::RESPONSE_GET_HEADERS, |h| {
            let list = h
                .response
                .as_ref()
                .map_or_else(Vec::new, |r| host::headers::list(&r.headers));
            write(&list, buf, out)
        })
    }
    fn response_change(call: &'static HostCall, name: &[u8], value: &[u8], how: Change) -> i32 {
        with(call, |h| {
            host::headers::change(call, &mut response(h).headers, name, value, how)
        })
    }
    pub fn response_set_header(name: &[u8], value: &[u8]) -> i32 {
        response_change(&calls::RESPONSE_SET_HEADER, name, value, Change::Set)
    }
    pub fn response_append_header(name: &[u8], value: &[u8]) -> i32 {
        response_change(&calls::RESPONSE_APPEND_HEADER, name, value, Change::Append)
    }
    pub fn response_remove_header(name: &[u8]) -> i32 {
        response_change(&calls::RESPONSE_REMOVE_HEADER, name, b"", Change::Remove)
    }
    pub fn response_get_body(buf: &mut [u8], out: &mut u32) -> i32 {
        with(&calls::RESPONSE_GET_BODY, |h| {
            let body = h.response.as_ref().map(|r| r.body.as_slice());
            write(host::readable_body(body, h.body_limit)?, buf, out)
        })
    }
    pub fn response_set_body(body: &[u8]) -> i32 {
        let call = &calls::RESPONSE_SET_BODY;
        with(call, |h| {
            host::check_body(call, body.len(), h.body_limit)?;
            response(h).body = body.to_vec();
            Ok(())
        })
    }
    pub fn kv_get(store: &[u8], key: &[u8], buf: &mut [u8], out: &mut u32) -> i32 {
        let call = &calls::KV_GET;
        with(call, |h| {
            let store = host::text(call, store)?;
            let key = host::text(call, key)?;
            match h.kv.get(store).and_then(|s| s.get(key)) {
                Some(value) => write(value.as_bytes(), buf, out),
                None => Err(Refusal::quiet(status::NOT_FOUND)),
            }
        })
    }
    pub fn log(level: i32, line: &[u8]) -> i32 {
        let call = &calls::LOG;
        with(call, |h| {
            let line = host::log_line(call, level, line)?;
            host::push_log(&mut h.logs, level, line);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{redirect, OriginResponse, ViewerRequest, ViewerResponse};

    fn loops(_req: Request<ViewerRequest>) -> Result<Outcome, Error> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    #[test]
    #[should_panic(expected = "ran past its CPU limit")]
    fn an_endless_handler_fails_at_the_cpu_limit() {
        TestHost::viewer_request("/").run_request(loops);
    }

    fn panics(req: Request<ViewerRequest>) -> Result<Outcome, Error> {
        if req.path() == "/boom" {
            panic!("no route for {}", req.path());
        }
        Ok(Outcome::Continue)
    }

    #[test]
    fn a_panic_is_reported_with_its_message_and_location() {
        let run = TestHost::viewer_request("/boom").run_request(panics);
        assert!(run.failed());
        let panic = run.panic.as_deref().expect("panicked");
        assert!(
            panic.starts_with("panicked at sdk/src/testing.rs:"),
            "{panic}"
        );
        assert!(panic.ends_with(": no route for /boom"), "{panic}");
        assert!(run.logs().contains("error: panicked at"), "{}", run.logs());
    }

    fn picks(mut req: Request<ViewerRequest>) -> Result<Outcome, Error> {
        req.set_origin("ap")?;
        Ok(Outcome::Continue)
    }

    #[test]
    fn a_refused_call_names_call_argument_and_rule() {
        let run = TestHost::viewer_request("/")
            .origins(&["app", "bucket"])
            .run_request(picks);
        let logs = run.expect_failed();
        assert!(
            logs.contains("warn: origin_set(\"ap\"): no origin \"ap\"; known: app, bucket\n"),
            "{logs}"
        );
        assert!(
            logs.contains("error: viewer-request handler failed: origin_set(\"ap\"): no origin"),
            "{logs}"
        );
        let run = TestHost::viewer_request("/").run_request(picks);
        assert!(
            run.expect_failed()
                .contains("declare the config's origins with TestHost::origins"),
            "{run}"
        );
    }

    #[test]
    fn expectations_show_the_logs() {
        let run = TestHost::viewer_request("/").run_request(picks);
        let shown = panic::catch_unwind(AssertUnwindSafe(|| {
            run.expect_continued();
        }))
        .expect_err("the handler failed");
        let text = shown.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            text.contains("its log:\nwarn: origin_set(\"ap\")"),
            "{text}"
        );
    }

    fn moved(_req: Request<ViewerRequest>) -> Result<Outcome, Error> {
        Ok(crate::Response::builder(StatusCode::MOVED_PERMANENTLY).into())
    }

    #[test]
    fn a_redirect_without_location_is_a_warning() {
        let run = TestHost::viewer_request("/").run_request(moved);
        assert_eq!(run.expect_response().status, StatusCode::MOVED_PERMANENTLY);
        assert!(
            run.logs()
                .contains("warn: generated 301 response has no Location header"),
            "{}",
            run.logs()
        );
        fn with_location(_req: Request<ViewerRequest>) -> Result<Outcome, Error> {
            Ok(redirect(StatusCode::FOUND, "/x").into())
        }
        let run = TestHost::viewer_request("/").run_request(with_location);
        assert_eq!(run.expect_response().header("location"), Some("/x"));
        assert_eq!(run.logs(), "");
    }

    fn keyed(mut req: Request<ViewerRequest>) -> Result<Outcome, Error> {
        req.add_to_cache_key("device=mobile")?;
        req.set_uri("/b?z=1&a=2")?;
        Ok(Outcome::Continue)
    }

    #[test]
    fn the_cache_key_is_the_nodes() {
        let run = TestHost::viewer_request("/a")
            .cache_key_rules(CacheKeyRules {
                query: Some(Vec::new()),
                ..Default::default()
            })
            .run_request(keyed);
        run.expect_continued();
        assert_eq!(run.cache_key(), "example.com/b?a=2&z=1\ndevice=mobile");
    }

    fn adds_many(mut req: Request<ViewerRequest>) -> Result<Outcome, Error> {
        for i in 0..=abi::limits::MAX_CACHE_KEY_PARTS {
            req.add_to_cache_key(&format!("p{i}"))?;
        }
        Ok(Outcome::Continue)
    }

    #[test]
    fn the_cache_key_part_limit_holds_in_tests_too() {
        let run = TestHost::viewer_request("/").run_request(adds_many);
        assert!(
            run.expect_failed().contains("at most 32 added parts"),
            "{run}"
        );
    }

    fn reads(
        req: Request<OriginResponse>,
        mut resp: Response<OriginResponse>,
    ) -> Result<(), Error> {
        let body = resp.body()?.unwrap_or_default();
        resp.set_header("x-len", body.len().to_string())?;
        resp.set_header("x-path", req.path())?;
        Ok(())
    }

    #[test]
    fn response_events_read_and_write_through() {
        let run = TestHost::origin_response("/p", 200)
            .response_body(b"hello")
            .run_response(reads);
        let host = run.expect_continued();
        let resp = host.response.as_ref().expect("a response");
        assert_eq!(
            (resp.header("x-len"), resp.header("x-path")),
            (Some("5"), Some("/p"))
        );
    }

    fn bad_value(
        _req: Request<ViewerResponse>,
        mut resp: Response<ViewerResponse>,
    ) -> Result<(), Error> {
        resp.set_header("content-length", "5")?;
        Ok(())
    }

    #[test]
    fn framing_headers_are_refused_with_a_reason() {
        let run = TestHost::viewer_response("/", 200).run_response(bad_value);
        assert!(
            run.expect_failed().contains(
                "response_set_header(\"content-length\"): content-length frames the message"
            ),
            "{run}"
        );
    }

    #[test]
    fn question_mark_works_on_any_error() {
        fn parses(req: Request<ViewerRequest>) -> Result<Outcome, Error> {
            let n: u32 = req.query().unwrap_or("").parse()?;
            Ok(crate::Response::builder(StatusCode::OK)
                .body(n.to_string())
                .into())
        }
        let run = TestHost::viewer_request("/?x").run_request(parses);
        assert!(
            run.expect_failed()
                .contains("viewer-request handler failed: invalid digit found in string"),
            "{run}"
        );
        let run = TestHost::viewer_request("/?42").run_request(parses);
        assert_eq!(run.expect_response().text(), "42");
    }
}
