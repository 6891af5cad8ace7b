//! ABI v1 as plain data: names, numbers, signatures, limits and per-event permissions from
//! `sdk/ABI.md`, shared by the SDK and the runtime so the two cannot drift. No imports; the
//! rules that act on this data live in [`crate::host`].

/// The ABI version this crate implements.
pub const ABI_VERSION: u32 = 1;

/// The import module every host call comes from.
pub const IMPORT_MODULE: &str = "edge_v1";

/// Status codes returned by host calls.
pub mod status {
    /// Done.
    pub const OK: i32 = 0;
    /// No such header, origin, value, or key-value store or key.
    pub const NOT_FOUND: i32 = 1;
    /// Bad pointer range, bad UTF-8, invalid header name or value, URI or status.
    pub const INVALID_ARGUMENT: i32 = 2;
    /// The value did not fit; its length was written to `out_len_ptr`.
    pub const BUFFER_TOO_SMALL: i32 = 3;
    /// The call is not allowed in this event.
    pub const NOT_ALLOWED: i32 = 4;
    /// A configured or ABI size limit would be exceeded.
    pub const LIMIT_EXCEEDED: i32 = 5;
    /// The value exists but cannot be had (a body over the body limit).
    pub const UNAVAILABLE: i32 = 6;

    /// The status's name as in ABI.md, for messages.
    pub fn name(status: i32) -> &'static str {
        match status {
            OK => "OK",
            NOT_FOUND => "NOT_FOUND",
            INVALID_ARGUMENT => "INVALID_ARGUMENT",
            BUFFER_TOO_SMALL => "BUFFER_TOO_SMALL",
            NOT_ALLOWED => "NOT_ALLOWED",
            LIMIT_EXCEEDED => "LIMIT_EXCEEDED",
            UNAVAILABLE => "UNAVAILABLE",
            _ => "UNKNOWN",
        }
    }
}

/// What an entry point returns.
pub mod outcome {
    /// Go on with the (possibly changed) request or response.
    pub const CONTINUE: i32 = 0;
    /// Answer with the generated response (request events only).
    pub const RESPOND: i32 = 1;
    /// What the SDK returns when a handler returned `Err` (any other value also means failure).
    pub const FAILED: i32 = 2;
}

/// `log` levels.
pub mod log_level {
    /// Error.
    pub const ERROR: i32 = 0;
    /// Warning.
    pub const WARN: i32 = 1;
    /// Information.
    pub const INFO: i32 = 2;
    /// Debug.
    pub const DEBUG: i32 = 3;
    /// Trace.
    pub const TRACE: i32 = 4;

    /// The level's name (`error`, `warn`, ...), or `None` for a number ABI.md does not define.
    pub fn name(level: i32) -> Option<&'static str> {
        Some(match level {
            ERROR => "error",
            WARN => "warn",
            INFO => "info",
            DEBUG => "debug",
            TRACE => "trace",
            _ => return None,
        })
    }
}

/// Size limits every implementation enforces (ABI.md lists each).
pub mod limits {
    /// Longest header value a function may set.
    pub const MAX_HEADER_VALUE: usize = 8 * 1024;
    /// Largest total of names and values in one message's headers after a change.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// Most fields in one message after a change.
    pub const MAX_HEADER_COUNT: usize = 100;
    /// Longest cache key (`cache_key_set`) or key part (`cache_key_add`); keys are held in
    /// memory for every cached object.
    pub const MAX_CACHE_KEY: usize = 4 * 1024;
    /// Most parts `cache_key_add` may add in one invocation.
    pub const MAX_CACHE_KEY_PARTS: usize = 32;
    /// Longest log line kept, in bytes of UTF-8 (longer ones are cut at a character boundary).
    pub const MAX_LOG_LINE: usize = 4 * 1024;
    /// Most log lines kept per invocation.
    pub const MAX_LOG_LINES: usize = 100;
}

/// The four events, in flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Before the cache lookup.
    ViewerRequest,
    /// Before the origin fetch, on a miss.
    OriginRequest,
    /// After the origin answered, before the cache stores.
    OriginResponse,
    /// On every response, before it goes to the viewer.
    ViewerResponse,
}

impl Event {
    /// All events, in flow order.
    pub const ALL: [Event; 4] = [
        Event::ViewerRequest,
        Event::OriginRequest,
        Event::OriginResponse,
        Event::ViewerResponse,
    ];

    /// The export name of its entry point (and its name in logs): `viewer-request`, ...
    pub fn export_name(self) -> &'static str {
        match self {
            Event::ViewerRequest => "viewer-request",
            Event::OriginRequest => "origin-request",
            Event::OriginResponse => "origin-response",
            Event::ViewerResponse => "viewer-response",
        }
    }

    /// Its key in a behavior's `functions` table: `viewer_request`, ...
    pub fn config_name(self) -> &'static str {
        match self {
            Event::ViewerRequest => "viewer_request",
            Event::OriginRequest => "origin_request",
            Event::OriginResponse => "origin_response",
            Event::ViewerResponse => "viewer_response",
        }
    }

    /// Whether it is a request event (may generate a response).
    pub fn is_request(self) -> bool {
        matches!(self, Event::ViewerRequest | Event::OriginRequest)
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of events: where a host call is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventSet(u8);

impl EventSet {
    /// Every event.
    pub const ALL: EventSet = EventSet(0b1111);
    /// `viewer-request` and `origin-request`.
    pub const REQUEST: EventSet = EventSet(Event::ViewerRequest.bit() | Event::OriginRequest.bit());
    /// `origin-response` and `viewer-response`.
    pub const RESPONSE: EventSet =
        EventSet(Event::OriginResponse.bit() | Event::ViewerResponse.bit());
    /// Every event but `viewer-response`.
    pub const NOT_VIEWER_RESPONSE: EventSet = EventSet(0b1111 & !Event::ViewerResponse.bit());

    /// The set of one event.
    pub const fn only(event: Event) -> EventSet {
        EventSet(event.bit())
    }

    /// Whether `event` is in the set.
    pub const fn contains(self, event: Event) -> bool {
        self.0 & event.bit() != 0
    }
}

/// A WebAssembly value type in a host call signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    /// `i32`
    I32,
    /// `i64`
    I64,
}

/// One host call: its name in `edge_v1`, its signature and the events that may make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCall {
    /// Import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
    /// The events that may make it; others get [`status::NOT_ALLOWED`] (ABI.md's table).
    pub allowed: EventSet,
}

impl HostCall {
    /// Whether `event` may make this call.
    pub const fn is_allowed(&self, event: Event) -> bool {
        self.allowed.contains(event)
    }
}

use ValType::{I32, I64};

const fn call(name: &'static str, params: &'static [ValType], allowed: EventSet) -> HostCall {
    HostCall {
        name,
        params,
        results: &[I32],
        allowed,
    }
}

/// Every host call by name, so code spells each one once.
pub mod calls {
    use super::{call, Event, EventSet, HostCall, I32, I64};

    const ALL: EventSet = EventSet::ALL;
    const REQ: EventSet = EventSet::REQUEST;
    const RESP: EventSet = EventSet::RESPONSE;
    const VIEWER_REQUEST: EventSet = EventSet::only(Event::ViewerRequest);
    const ORIGIN_RESPONSE: EventSet = EventSet::only(Event::OriginResponse);

    /// `request_get_method`
    pub const REQUEST_GET_METHOD: HostCall = call("request_get_method", &[I32, I32, I32], ALL);
    /// `request_get_uri`
    pub const REQUEST_GET_URI: HostCall = call("request_get_uri", &[I32, I32, I32], ALL);
    /// `request_set_uri`
    pub const REQUEST_SET_URI: HostCall = call("request_set_uri", &[I32, I32], REQ);
    /// `request_get_header`
    pub const REQUEST_GET_HEADER: HostCall =
        call("request_get_header", &[I32, I32, I32, I32, I32], ALL);
    /// `request_get_headers`
    pub const REQUEST_GET_HEADERS: HostCall = call("request_get_headers", &[I32, I32, I32], ALL);
    /// `request_set_header`
    pub const REQUEST_SET_HEADER: HostCall = call("request_set_header", &[I32, I32, I32, I32], REQ);
    /// `request_append_header`
    pub const REQUEST_APPEND_HEADER: HostCall =
        call("request_append_header", &[I32, I32, I32, I32], REQ);
    /// `request_remove_header`
    pub const REQUEST_REMOVE_HEADER: HostCall = call("request_remove_header", &[I32, I32], REQ);
    /// `request_get_client_ip`
    pub const REQUEST_GET_CLIENT_IP: HostCall =
        call("request_get_client_ip", &[I32, I32, I32], ALL);
    /// `origin_set`
    pub const ORIGIN_SET: HostCall = call("origin_set", &[I32, I32], REQ);
    /// `cache_key_set`
    pub const CACHE_KEY_SET: HostCall = call("cache_key_set", &[I32, I32], VIEWER_REQUEST);
    /// `cache_key_add`
    pub const CACHE_KEY_ADD: HostCall = call("cache_key_add", &[I32, I32], VIEWER_REQUEST);
    /// `cache_set_ttl`
    pub const CACHE_SET_TTL: HostCall = call("cache_set_ttl", &[I64], ORIGIN_RESPONSE);
    /// `response_get_status`
    pub const RESPONSE_GET_STATUS: HostCall = call("response_get_status", &[I32], RESP);
    /// `response_set_status`
    pub const RESPONSE_SET_STATUS: HostCall = call("response_set_status", &[I32], ALL);
    /// `response_get_header`
    pub const RESPONSE_GET_HEADER: HostCall =
        call("response_get_header", &[I32, I32, I32, I32, I32], RESP);
    /// `response_get_headers`
    pub const RESPONSE_GET_HEADERS: HostCall = call("response_get_headers", &[I32, I32, I32], RESP);
    /// `response_set_header`
    pub const RESPONSE_SET_HEADER: HostCall =
        call("response_set_header", &[I32, I32, I32, I32], ALL);
    /// `response_append_header`
    pub const RESPONSE_APPEND_HEADER: HostCall =
        call("response_append_header", &[I32, I32, I32, I32], ALL);
    /// `response_remove_header`
    pub const RESPONSE_REMOVE_HEADER: HostCall = call("response_remove_header", &[I32, I32], ALL);
    /// `response_get_body`
    pub const RESPONSE_GET_BODY: HostCall =
        call("response_get_body", &[I32, I32, I32], ORIGIN_RESPONSE);
    /// `response_set_body`
    pub const RESPONSE_SET_BODY: HostCall = call(
        "response_set_body",
        &[I32, I32],
        EventSet::NOT_VIEWER_RESPONSE,
    );
    /// `log`
    pub const LOG: HostCall = call("log", &[I32, I32, I32], ALL);
    /// `kv_get`
    pub const KV_GET: HostCall = call("kv_get", &[I32, I32, I32, I32, I32, I32, I32], ALL);
}

/// Every host call of ABI v1, as ABI.md lists them.
pub const HOST_CALLS: &[HostCall] = &[
    calls::REQUEST_GET_METHOD,
    calls::REQUEST_GET_URI,
    calls::REQUEST_SET_URI,
    calls::REQUEST_GET_HEADER,
    calls::REQUEST_GET_HEADERS,
    calls::REQUEST_SET_HEADER,
    calls::REQUEST_APPEND_HEADER,
    calls::REQUEST_REMOVE_HEADER,
    calls::REQUEST_GET_CLIENT_IP,
    calls::ORIGIN_SET,
    calls::CACHE_KEY_SET,
    calls::CACHE_KEY_ADD,
    calls::CACHE_SET_TTL,
    calls::RESPONSE_GET_STATUS,
    calls::RESPONSE_SET_STATUS,
    calls::RESPONSE_GET_HEADER,
    calls::RESPONSE_GET_HEADERS,
    calls::RESPONSE_SET_HEADER,
    calls::RESPONSE_APPEND_HEADER,
    calls::RESPONSE_REMOVE_HEADER,
    calls::RESPONSE_GET_BODY,
    calls::RESPONSE_SET_BODY,
    calls::LOG,
    calls::KV_GET,
];

/// Which host calls an event may make; others return [`status::NOT_ALLOWED`] (ABI.md's table).
/// Unknown names are not allowed anywhere.
pub fn is_allowed(event: Event, call: &str) -> bool {
    HOST_CALLS
        .iter()
        .find(|c| c.name == call)
        .is_some_and(|c| c.is_allowed(event))
}
