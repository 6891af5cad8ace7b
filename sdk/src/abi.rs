//! ABI v1 as plain data: names, numbers and signatures from `sdk/ABI.md`, shared by the SDK and
//! the runtime so the two cannot drift. No imports, no behavior.

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
}

/// Size limits every implementation enforces.
pub mod limits {
    /// Longest header value a function may set.
    pub const MAX_HEADER_VALUE: usize = 8 * 1024;
    /// Largest total of names and values in one message's headers after a change.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// Most fields in one message after a change.
    pub const MAX_HEADER_COUNT: usize = 100;
    /// Longest log line kept (longer ones are truncated).
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
}

/// A WebAssembly value type in a host call signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValType {
    /// `i32`
    I32,
    /// `i64`
    I64,
}

/// One host call: its name in `edge_v1` and its signature.
#[derive(Debug, Clone, Copy)]
pub struct HostCall {
    /// Import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [ValType],
    /// Result types.
    pub results: &'static [ValType],
}

use ValType::{I32, I64};

const fn call(name: &'static str, params: &'static [ValType]) -> HostCall {
    HostCall {
        name,
        params,
        results: &[I32],
    }
}

/// Every host call of ABI v1, as ABI.md lists them.
pub const HOST_CALLS: &[HostCall] = &[
    call("request_get_method", &[I32, I32, I32]),
    call("request_get_uri", &[I32, I32, I32]),
    call("request_set_uri", &[I32, I32]),
    call("request_get_header", &[I32, I32, I32, I32, I32]),
    call("request_get_headers", &[I32, I32, I32]),
    call("request_set_header", &[I32, I32, I32, I32]),
    call("request_append_header", &[I32, I32, I32, I32]),
    call("request_remove_header", &[I32, I32]),
    call("request_get_client_ip", &[I32, I32, I32]),
    call("origin_set", &[I32, I32]),
    call("cache_key_set", &[I32, I32]),
    call("cache_key_add", &[I32, I32]),
    call("cache_set_ttl", &[I64]),
    call("response_get_status", &[I32]),
    call("response_set_status", &[I32]),
    call("response_get_header", &[I32, I32, I32, I32, I32]),
    call("response_get_headers", &[I32, I32, I32]),
    call("response_set_header", &[I32, I32, I32, I32]),
    call("response_append_header", &[I32, I32, I32, I32]),
    call("response_remove_header", &[I32, I32]),
    call("response_get_body", &[I32, I32, I32]),
    call("response_set_body", &[I32, I32]),
    call("log", &[I32, I32, I32]),
    call("kv_get", &[I32, I32, I32, I32, I32, I32, I32]),
];

/// Which host calls an event may make; others return [`status::NOT_ALLOWED`] (ABI.md's table).
pub fn is_allowed(event: Event, call: &str) -> bool {
    use Event::*;
    let request_event = event.is_request();
    match call {
        "request_get_method"
        | "request_get_uri"
        | "request_get_header"
        | "request_get_headers"
        | "request_get_client_ip"
        | "log"
        | "kv_get" => true,
        "request_set_uri"
        | "request_set_header"
        | "request_append_header"
        | "request_remove_header"
        | "origin_set" => request_event,
        "cache_key_set" | "cache_key_add" => event == ViewerRequest,
        "response_get_status" | "response_get_header" | "response_get_headers" => !request_event,
        "response_set_status"
        | "response_set_header"
        | "response_append_header"
        | "response_remove_header" => true,
        "response_set_body" => event != ViewerResponse,
        "response_get_body" | "cache_set_ttl" => event == OriginResponse,
        _ => false,
    }
}
