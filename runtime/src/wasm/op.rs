//! Host calls as data. Each call a guest makes is decoded from its guest memory into an
//! [`Op`] (the call and the values of its arguments), applied to the invocation's `HostState`,
//! and its [`Outcome`] (status and the value it gives the guest) written back. The same `Op`
//! applied again to a live request is what decision replay (`wasm::replay`) does instead of
//! running the guest: one implementation of each call serves both.

use std::borrow::Cow;

use bytes::Bytes;
use edge_sdk::abi::{calls, status, HostCall};
use edge_sdk::host::headers::{self, Change};
use edge_sdk::host::{self, cache_key, Refusal};
use http::{HeaderMap, HeaderName, StatusCode};

use super::state::{BodyView, HostState, ResponseView};
use super::wasi::Stream;

/// Which message a header call reads or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Message {
    /// The request.
    Request,
    /// The response (in request events, the generated one).
    Response,
}

/// One host call with its arguments read out of guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// A call the event may not make (`NOT_ALLOWED`, with its log line).
    NotAllowed(&'static HostCall),
    /// `request_get_method`
    GetMethod,
    /// `request_get_uri`
    GetUri,
    /// `request_get_client_ip`
    GetClientIp,
    /// `request_set_uri`
    SetUri(Box<[u8]>),
    /// `*_get_header`
    GetHeader(&'static HostCall, Message, Name),
    /// `*_get_headers`
    GetHeaders(Message),
    /// `*_set_header`, `*_append_header`, `*_remove_header`: name and value.
    ChangeHeader(&'static HostCall, Message, Change, Name, Box<[u8]>),
    /// `origin_set`
    OriginSet(Box<[u8]>),
    /// `cache_key_set`
    CacheKeySet(Box<[u8]>),
    /// `cache_key_add`
    CacheKeyAdd(Box<[u8]>),
    /// `cache_set_ttl`
    SetTtl(i64),
    /// `response_get_status`
    GetStatus,
    /// `response_set_status`
    SetStatus(i32),
    /// `response_get_body`
    GetBody,
    /// `response_set_body`
    SetBody(Bytes),
    /// `log`: the level and the first `MAX_LOG_LINE` bytes (the rest is cut anyway).
    Log(i32, Box<[u8]>),
    /// `kv_get`: store and key.
    KvGet(Box<[u8]>, Box<[u8]>),
    /// WASI `fd_write` to stdout or stderr.
    Output(Stream, Box<[u8]>),
}

/// A header name as the guest gave it (to read or change), parsed once if it is valid: a
/// recorded call is replayed many times. Two are the same call when the guest gave the same bytes.
#[derive(Debug, Clone)]
pub(crate) struct Name {
    raw: Box<[u8]>,
    parsed: Option<HeaderName>,
}

impl Name {
    /// `raw`, parsed.
    pub(crate) fn new(raw: Box<[u8]>) -> Self {
        let parsed = HeaderName::from_bytes(&raw).ok();
        Name { raw, parsed }
    }

    /// [`headers::value`] of this name. An invalid name goes the long way, which refuses it
    /// with a message.
    fn value<'a>(&self, call: &HostCall, headers: &'a HeaderMap) -> Result<Cow<'a, [u8]>, Refusal> {
        match &self.parsed {
            Some(name) => headers::value_of(name, headers),
            None => headers::value(call, headers, &self.raw),
        }
    }

    /// [`headers::change`] of this name, refused the same way when it is invalid.
    fn change(
        &self,
        call: &HostCall,
        headers: &mut HeaderMap,
        value: &[u8],
        how: Change,
    ) -> Result<(), Refusal> {
        match &self.parsed {
            Some(name) => headers::change_named(call, headers, name.clone(), value, how),
            None => headers::change(call, headers, &self.raw, value, how),
        }
    }

    /// Bytes it holds: the parsed name may hold a copy of the raw bytes.
    fn weight(&self) -> usize {
        self.raw.len() * 2
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Name {}

/// What a call gives the guest besides its status.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Value {
    /// Nothing (a change, or a refusal).
    None,
    /// Bytes for an output buffer.
    Bytes(Vec<u8>),
    /// A number (`response_get_status`).
    U32(u32),
}

/// A call's result as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Outcome {
    /// The ABI status (or WASI errno).
    pub status: i32,
    /// The value, for `OK`.
    pub value: Value,
}

impl Outcome {
    /// A call refused with `status`: the guest gets no value.
    pub fn refused(status: i32) -> Self {
        Outcome {
            status,
            value: Value::None,
        }
    }

    /// Bytes this outcome holds, for a recording's memory budget.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + match &self.value {
                Value::Bytes(b) => b.len(),
                _ => 0,
            }
    }
}

/// What a read gives the guest, borrowed from the state where it can be ([`HostState::read`]).
pub(crate) enum Got<'a> {
    /// Bytes for an output buffer.
    Bytes(Cow<'a, [u8]>),
    /// A number (`response_get_status`).
    U32(u32),
}

impl<'a> Got<'a> {
    fn borrowed(bytes: &'a [u8]) -> Self {
        Got::Bytes(Cow::Borrowed(bytes))
    }

    /// The value the guest gets, owned.
    fn into_value(self) -> Value {
        match self {
            Got::Bytes(bytes) => Value::Bytes(bytes.into_owned()),
            Got::U32(n) => Value::U32(n),
        }
    }

    /// Whether `outcome` is what this read gives: status `OK` and the same value.
    pub(crate) fn is(&self, outcome: &Outcome) -> bool {
        outcome.status == status::OK
            && match (self, &outcome.value) {
                (Got::Bytes(got), Value::Bytes(value)) => got[..] == value[..],
                (Got::U32(got), Value::U32(value)) => got == value,
                _ => false,
            }
    }

    /// The outcome this read gives the guest.
    pub(crate) fn into_outcome(self) -> Outcome {
        Outcome {
            status: status::OK,
            value: self.into_value(),
        }
    }
}

impl Op {
    /// Bytes this op holds beyond its own size.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Op::SetUri(b)
                | Op::OriginSet(b)
                | Op::CacheKeySet(b)
                | Op::CacheKeyAdd(b)
                | Op::Log(_, b)
                | Op::Output(_, b) => b.len(),
                Op::KvGet(a, b) => a.len() + b.len(),
                Op::ChangeHeader(_, _, _, name, value) => name.weight() + value.len(),
                Op::GetHeader(_, _, name) => name.weight(),
                Op::SetBody(b) => b.len(),
                _ => 0,
            }
    }
}

/// The response to change: the event's, or in request events the generated one (created as
/// `200`, no headers, empty body on first use).
fn response(s: &mut HostState) -> &mut ResponseView {
    s.response.get_or_insert_with(|| ResponseView {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: BodyView::Replaced(Bytes::new()),
    })
}

fn headers_of(s: &HostState, message: Message) -> Option<&HeaderMap> {
    match message {
        Message::Request => Some(&s.request.headers),
        Message::Response => s.response.as_ref().map(|r| &r.headers),
    }
}

impl HostState {
    /// Applies `op`: the call's effect on this state and what it gives the guest. A refusal
    /// with a message is added to the invocation's log lines here, as ABI.md says.
    pub(crate) fn apply(&mut self, op: &Op) -> Outcome {
        match self.apply_inner(op) {
            Ok(value) => Outcome {
                status: status::OK,
                value,
            },
            Err(refusal) => {
                host::record_refusal(&mut self.logs, &refusal);
                Outcome::refused(refusal.status)
            }
        }
    }

    /// What a read (a call that changes nothing) gives, borrowed from the state where it can
    /// be; `None` for a call that is not such a read. Decision replay compares it with a
    /// node's recorded outcomes without copying the value; [`apply`](Self::apply) copies it
    /// for the guest.
    pub(crate) fn read(&self, op: &Op) -> Option<Result<Got<'_>, Refusal>> {
        let owned = |b: Vec<u8>| Got::Bytes(Cow::Owned(b));
        Some(Ok(match op {
            Op::GetMethod => Got::borrowed(self.request.method.as_str().as_bytes()),
            Op::GetUri => Got::borrowed(
                self.request
                    .uri
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str())
                    .as_bytes(),
            ),
            Op::GetClientIp => owned(self.client_ip.to_string().into_bytes()),
            Op::GetHeader(call, message, name) => match headers_of(self, *message) {
                Some(headers) => match name.value(call, headers) {
                    Ok(value) => Got::Bytes(value),
                    Err(refusal) => return Some(Err(refusal)),
                },
                None => return Some(Err(Refusal::quiet(status::NOT_FOUND))),
            },
            Op::GetHeaders(message) => owned(
                headers_of(self, *message)
                    .map(headers::list)
                    .unwrap_or_default(),
            ),
            Op::GetStatus => Got::U32(u32::from(
                self.response.as_ref().map_or(200, |r| r.status.as_u16()),
            )),
            Op::GetBody => {
                // The flow buffers the body only when it is within the body limit.
                let body = match self.response.as_ref().map(|r| &r.body) {
                    Some(BodyView::Buffered(b) | BodyView::Replaced(b)) => Some(&b[..]),
                    _ => None,
                };
                match host::readable_body(body, usize::MAX) {
                    Ok(body) => Got::borrowed(body),
                    Err(refusal) => return Some(Err(refusal)),
                }
            }
            _ => return None,
        }))
    }

    fn apply_inner(&mut self, op: &Op) -> Result<Value, Refusal> {
        if let Some(read) = self.read(op) {
            return read.map(Got::into_value);
        }
        Ok(match op {
            Op::NotAllowed(call) => {
                return host::check_allowed(call, self.event).map(|()| Value::None)
            }
            Op::SetUri(raw) => {
                self.request.uri = host::parse_uri(&calls::REQUEST_SET_URI, raw)?;
                Value::None
            }
            Op::ChangeHeader(call, message, how, name, value) => {
                let target = match message {
                    Message::Request => &mut self.request.headers,
                    Message::Response => &mut response(self).headers,
                };
                name.change(call, target, value, *how)?;
                Value::None
            }
            Op::OriginSet(name) => {
                let known = self.config.origins.iter().map(|o| o.name.as_str());
                self.origin = Some(host::find_origin(&calls::ORIGIN_SET, name, known)?);
                Value::None
            }
            Op::CacheKeySet(raw) => {
                self.cache_key = Some(cache_key::text(&calls::CACHE_KEY_SET, raw)?);
                Value::None
            }
            Op::CacheKeyAdd(raw) => {
                cache_key::add_part(&calls::CACHE_KEY_ADD, &mut self.cache_key_parts, raw)?;
                Value::None
            }
            Op::SetTtl(seconds) => {
                self.ttl = Some(host::parse_ttl(&calls::CACHE_SET_TTL, *seconds)?);
                Value::None
            }
            Op::SetStatus(code) => {
                response(self).status = host::parse_status(&calls::RESPONSE_SET_STATUS, *code)?;
                Value::None
            }
            Op::SetBody(body) => {
                host::check_body(&calls::RESPONSE_SET_BODY, body.len(), self.body_limit)?;
                response(self).body = BodyView::Replaced(body.clone());
                Value::None
            }
            Op::Log(level, raw) => {
                let line = host::log_line(&calls::LOG, *level, raw)?;
                host::push_log(&mut self.logs, *level, line);
                Value::None
            }
            Op::KvGet(store, key) => {
                let store = host::text(&calls::KV_GET, store)?;
                let key = host::text(&calls::KV_GET, key)?;
                // A missing store reads like a missing key: an expected answer, not a mistake.
                let value = self
                    .kv_get(store, key)
                    .ok_or(Refusal::quiet(status::NOT_FOUND))?;
                Value::Bytes(value.to_vec())
            }
            Op::Output(stream, data) => {
                self.output.write(*stream, data);
                Value::None
            }
            Op::GetMethod
            | Op::GetUri
            | Op::GetClientIp
            | Op::GetHeader(..)
            | Op::GetHeaders(_)
            | Op::GetStatus
            | Op::GetBody => unreachable!("`read` answers every read"),
        })
    }
}
