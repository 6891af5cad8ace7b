//! The host model: ABI v1's rules (`sdk/ABI.md`) as plain functions over `http` types. The node
//! (`runtime/src/wasm/abi/`) and the SDK's simulated host ([`crate::testing`]) both call these,
//! so a function that passes `cargo test` meets the same rules on the node: which event may
//! make which call, header validation, every limit, log line handling and the cache key.
//!
//! A rule that refuses returns a [`Refusal`]: the status the guest gets and, when the guest
//! made a mistake its author should hear about, a message naming the call, the argument and
//! the rule (`origin_set("ap"): no origin "ap"; known: app, bucket`). Expected answers such as
//! `NOT_FOUND` for an absent header carry no message.

use std::borrow::Cow;

use http::header::{CONNECTION, CONTENT_LENGTH, COOKIE, HOST, SET_COOKIE, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};

use crate::abi::{limits, log_level, status, Event, HostCall};

/// A host call refused: the status for the guest and, for a guest mistake, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The ABI status the call returns.
    pub status: i32,
    /// What went wrong, naming the call, the argument and the rule; `None` for an expected
    /// answer (an absent header or key, a buffer to grow) that is not worth a log line.
    pub message: Option<String>,
}

impl Refusal {
    /// A refusal worth telling the function's author about.
    pub fn new(status: i32, message: String) -> Self {
        Refusal {
            status,
            message: Some(message),
        }
    }

    /// An expected answer, such as `NOT_FOUND` for an absent header.
    pub fn quiet(status: i32) -> Self {
        Refusal {
            status,
            message: None,
        }
    }
}

/// `NOT_ALLOWED` unless `event` may make `call` (ABI.md's table).
pub fn check_allowed(call: &HostCall, event: Event) -> Result<(), Refusal> {
    if call.is_allowed(event) {
        Ok(())
    } else {
        Err(Refusal::new(
            status::NOT_ALLOWED,
            format!("{} is not allowed in {}", call.name, event.export_name()),
        ))
    }
}

/// A pointer range outside the module's memory.
pub fn bad_memory(call: &HostCall) -> Refusal {
    Refusal::new(
        status::INVALID_ARGUMENT,
        format!(
            "{}: a pointer range lies outside the module's memory",
            call.name
        ),
    )
}

/// An argument as messages show it: quoted, invalid UTF-8 replaced, long ones cut.
pub fn shown(raw: &[u8]) -> String {
    const MAX_SHOWN: usize = 64;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_SHOWN)]);
    if raw.len() > MAX_SHOWN {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

/// A guest string that must be UTF-8.
pub fn text<'a>(call: &HostCall, raw: &'a [u8]) -> Result<&'a str, Refusal> {
    std::str::from_utf8(raw).map_err(|_| {
        Refusal::new(
            status::INVALID_ARGUMENT,
            format!("{}({}): not UTF-8", call.name, shown(raw)),
        )
    })
}

/// `request_set_uri`: a path and query that starts with `/` and is a valid request target.
pub fn parse_uri(call: &HostCall, raw: &[u8]) -> Result<Uri, Refusal> {
    let refuse = |why: &str| {
        Refusal::new(
            status::INVALID_ARGUMENT,
            format!("{}({}): {why}", call.name, shown(raw)),
        )
    };
    if raw.first() != Some(&b'/') {
        return Err(refuse("must start with /"));
    }
    let pq =
        http::uri::PathAndQuery::try_from(raw).map_err(|_| refuse("not a valid path and query"))?;
    pq.as_str()
        .parse()
        .map_err(|_| refuse("not a valid path and query"))
}

/// `response_set_status`: `100..=999`.
pub fn parse_status(call: &HostCall, code: i32) -> Result<StatusCode, Refusal> {
    u16::try_from(code)
        .ok()
        .filter(|c| *c >= 100)
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            Refusal::new(
                status::INVALID_ARGUMENT,
                format!("{}({code}): a status is 100 to 999", call.name),
            )
        })
}

/// `cache_set_ttl`: seconds, not negative.
pub fn parse_ttl(call: &HostCall, seconds: i64) -> Result<u64, Refusal> {
    u64::try_from(seconds).map_err(|_| {
        Refusal::new(
            status::INVALID_ARGUMENT,
            format!("{}({seconds}): a lifetime cannot be negative", call.name),
        )
    })
}

/// `response_set_body`: within the function's body limit.
pub fn check_body(call: &HostCall, len: usize, limit: usize) -> Result<(), Refusal> {
    if len > limit {
        return Err(Refusal::new(
            status::LIMIT_EXCEEDED,
            format!(
                "{}: a body of {len} bytes is over the function's body limit of {limit} bytes",
                call.name
            ),
        ));
    }
    Ok(())
}

/// `response_get_body`: the body, unless it is over the body limit (`UNAVAILABLE`, and it
/// streams to the viewer untouched: not a mistake).
pub fn readable_body(body: Option<&[u8]>, limit: usize) -> Result<&[u8], Refusal> {
    match body {
        Some(body) if body.len() <= limit => Ok(body),
        _ => Err(Refusal::quiet(status::UNAVAILABLE)),
    }
}

/// `origin_set`: the index of the origin named `raw` among `known` (the config's origins).
pub fn find_origin<'a>(
    call: &HostCall,
    raw: &[u8],
    known: impl Iterator<Item = &'a str> + Clone,
) -> Result<usize, Refusal> {
    if let Some(index) = known.clone().position(|o| o.as_bytes() == raw) {
        return Ok(index);
    }
    let names: Vec<&str> = known.collect();
    let known = if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    };
    let name = shown(raw);
    Err(Refusal::new(
        status::NOT_FOUND,
        format!("{}({name}): no origin {name}; known: {known}", call.name),
    ))
}

/// Header reads and changes with the ABI's validation: valid names and values (no CR/LF: a
/// function cannot split a message), framing headers off limits, size limits.
pub mod headers {
    use super::*;

    /// How a change applies.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Change {
        /// Replace every line.
        Set,
        /// Add a line.
        Append,
        /// Remove every line.
        Remove,
    }

    fn name(call: &HostCall, raw: &[u8]) -> Result<HeaderName, Refusal> {
        HeaderName::from_bytes(raw).map_err(|_| {
            Refusal::new(
                status::INVALID_ARGUMENT,
                format!("{}({}): not a valid header name", call.name, shown(raw)),
            )
        })
    }

    /// A header's value, lines joined with `, ` (`\n` for `set-cookie`); `NOT_FOUND` (quiet)
    /// if absent.
    pub fn get(call: &HostCall, headers: &HeaderMap, raw_name: &[u8]) -> Result<Vec<u8>, Refusal> {
        value(call, headers, raw_name).map(Cow::into_owned)
    }

    /// [`get`] without a copy when the header has one line (the usual case): what the node's
    /// decision replay compares with recorded values.
    pub fn value<'a>(
        call: &HostCall,
        headers: &'a HeaderMap,
        raw_name: &[u8],
    ) -> Result<Cow<'a, [u8]>, Refusal> {
        value_of(&name(call, raw_name)?, headers)
    }

    /// [`value`] for a name already parsed.
    pub fn value_of<'a>(
        name: &HeaderName,
        headers: &'a HeaderMap,
    ) -> Result<Cow<'a, [u8]>, Refusal> {
        let mut lines = headers.get_all(name).into_iter();
        let first = lines.next().ok_or(Refusal::quiet(status::NOT_FOUND))?;
        let Some(second) = lines.next() else {
            return Ok(Cow::Borrowed(first.as_bytes()));
        };
        let separator: &[u8] = if name == SET_COOKIE { b"\n" } else { b", " };
        let mut out = first.as_bytes().to_vec();
        for value in std::iter::once(second).chain(lines) {
            out.extend_from_slice(separator);
            out.extend_from_slice(value.as_bytes());
        }
        Ok(Cow::Owned(out))
    }

    /// Every header as a header list: `name: value\n` lines in message order.
    pub fn list(headers: &HeaderMap) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Applies a change (`value` is ignored for [`Change::Remove`]), or says why not.
    pub fn change(
        call: &HostCall,
        headers: &mut HeaderMap,
        raw_name: &[u8],
        value: &[u8],
        how: Change,
    ) -> Result<(), Refusal> {
        change_named(call, headers, name(call, raw_name)?, value, how)
    }

    /// [`change`] for a name already parsed.
    pub fn change_named(
        call: &HostCall,
        headers: &mut HeaderMap,
        name: HeaderName,
        value: &[u8],
        how: Change,
    ) -> Result<(), Refusal> {
        let refuse = |status, why: String| {
            Refusal::new(status, format!("{}({:?}): {why}", call.name, name.as_str()))
        };
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION {
            return Err(refuse(
                status::INVALID_ARGUMENT,
                format!("{name} frames the message; only the node sets it"),
            ));
        }
        if how == Change::Remove {
            if headers.remove(&name).is_none() {
                return Err(Refusal::quiet(status::NOT_FOUND));
            }
            return Ok(());
        }
        if value.len() > limits::MAX_HEADER_VALUE {
            return Err(refuse(
                status::LIMIT_EXCEEDED,
                format!(
                    "a value of {} bytes is over the limit of {} bytes",
                    value.len(),
                    limits::MAX_HEADER_VALUE
                ),
            ));
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| {
            refuse(
                status::INVALID_ARGUMENT,
                "the value has a control character (CR, LF, NUL, ...)".to_owned(),
            )
        })?;
        // The headers as they would be after the change: a set first drops every line.
        let field = |v: &HeaderValue| name.as_str().len() + v.len();
        let (dropped_bytes, dropped_count) = if how == Change::Set {
            headers
                .get_all(&name)
                .iter()
                .fold((0, 0), |(b, c), v| (b + field(v), c + 1))
        } else {
            (0, 0)
        };
        let bytes = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum::<usize>()
            - dropped_bytes
            + field(&value);
        let count = headers.len() - dropped_count + 1;
        if count > limits::MAX_HEADER_COUNT {
            return Err(refuse(
                status::LIMIT_EXCEEDED,
                format!(
                    "the headers would have more than {} fields",
                    limits::MAX_HEADER_COUNT
                ),
            ));
        }
        if bytes > limits::MAX_HEADER_BYTES {
            return Err(refuse(
                status::LIMIT_EXCEEDED,
                format!(
                    "the headers would exceed {} bytes",
                    limits::MAX_HEADER_BYTES
                ),
            ));
        }
        if how == Change::Set {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
        Ok(())
    }
}

/// The cache key: what `cache_key_set` and `cache_key_add` accept, and how the node builds the
/// key it looks objects up by.
pub mod cache_key {
    use super::*;

    /// Separates key parts. No part can contain it: hyper refuses control bytes in URIs and
    /// header values, and function-given parts are checked.
    pub const SEP: char = '\n';

    /// Which query parameters go into the key (a behavior's `cache_key.query`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Query<'a> {
        /// None: the query is ignored (and still forwarded).
        None,
        /// Every parameter, sorted by name.
        All,
        /// Only these parameters (sorted, for binary search), sorted by name.
        Allow(&'a [String]),
    }

    /// A behavior's `cache_key` rules, borrowed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Rules<'a> {
        /// Query parameters in the key.
        pub query: Query<'a>,
        /// Request headers in the key.
        pub headers: &'a [HeaderName],
        /// Cookie names in the key.
        pub cookies: &'a [String],
    }

    /// A key or key part from a function: UTF-8, at most [`limits::MAX_CACHE_KEY`] bytes and no
    /// [`SEP`] (which would let one function's key pose as another's).
    pub fn text(call: &HostCall, raw: &[u8]) -> Result<String, Refusal> {
        if raw.len() > limits::MAX_CACHE_KEY {
            return Err(Refusal::new(
                status::LIMIT_EXCEEDED,
                format!(
                    "{}({}): {} bytes is over the limit of {} bytes",
                    call.name,
                    shown(raw),
                    raw.len(),
                    limits::MAX_CACHE_KEY
                ),
            ));
        }
        let text = super::text(call, raw)?;
        if text.contains(SEP) {
            return Err(Refusal::new(
                status::INVALID_ARGUMENT,
                format!("{}({}): contains a line break", call.name, shown(raw)),
            ));
        }
        Ok(text.to_owned())
    }

    /// `cache_key_add`: one more part, at most [`limits::MAX_CACHE_KEY_PARTS`] in all.
    pub fn add_part(call: &HostCall, parts: &mut Vec<String>, raw: &[u8]) -> Result<(), Refusal> {
        let part = text(call, raw)?;
        if parts.len() >= limits::MAX_CACHE_KEY_PARTS {
            return Err(Refusal::new(
                status::LIMIT_EXCEEDED,
                format!(
                    "{}({}): a key has at most {} added parts",
                    call.name,
                    shown(raw),
                    limits::MAX_CACHE_KEY_PARTS
                ),
            ));
        }
        parts.push(part);
        Ok(())
    }

    /// The key the node builds for a request: lowercase host, path, then the query, headers
    /// and cookies the rules list, and nothing else.
    pub fn build(rules: &Rules<'_>, uri: &Uri, headers: &HeaderMap) -> String {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let path = uri.path();
        let mut key = String::with_capacity(host.len() + path.len() + 16);
        key.push_str(host);
        key.make_ascii_lowercase();
        key.push_str(path);
        push_query(&mut key, rules.query, uri.query().unwrap_or(""));
        for name in rules.headers {
            key.push(SEP);
            key.push_str(name.as_str());
            key.push(':');
            push_header_values(&mut key, headers, name);
        }
        for name in rules.cookies {
            key.push(SEP);
            key.push_str("cookie:");
            key.push_str(name);
            key.push('=');
            if let Some(value) = cookie(headers, name) {
                key.push_str(value);
            }
        }
        key
    }

    /// A key a function set outright. The prefix keeps it apart from every key [`build`]
    /// makes, which start with a host and never with a separator.
    pub fn custom(key: &str) -> String {
        format!("{SEP}fn{SEP}{key}")
    }

    /// Adds a part (a function's `cache_key_add`, a `Vary` variant, an origin) to a key.
    pub fn push_part(key: &mut String, part: &str) {
        key.push(SEP);
        key.push_str(part);
    }

    /// The whole key as the node looks an object up by after a viewer-request function: its
    /// custom key or the behavior's, then its added parts, then the origin it picked when
    /// that is not the behavior's (the same path from two origins is two objects).
    pub fn after_function(
        built: impl FnOnce() -> String,
        custom_key: Option<&str>,
        parts: &[String],
        other_origin: Option<&str>,
    ) -> String {
        let mut key = match custom_key {
            Some(k) => custom(k),
            None => built(),
        };
        for part in parts {
            push_part(&mut key, part);
        }
        if let Some(origin) = other_origin {
            push_part(&mut key, &format!("origin={origin}"));
        }
        key
    }

    /// Appends the query part: parameters sorted by name (stable, so repeated names keep their
    /// order) so that `?b=2&a=1` and `?a=1&b=2` share one object.
    fn push_query(key: &mut String, mode: Query<'_>, query: &str) {
        if matches!(mode, Query::None) || query.is_empty() {
            return;
        }
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| match mode {
                Query::Allow(names) => {
                    let name = p.split('=').next().unwrap_or("");
                    names.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
                }
                _ => true,
            })
            .collect();
        if params.is_empty() {
            return;
        }
        params.sort_by(|a, b| a.split('=').next().cmp(&b.split('=').next()));
        key.push('?');
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                key.push('&');
            }
            key.push_str(p);
        }
    }

    /// Appends every line of header `name`, joined with ", " as RFC 9110 §5.3 allows.
    pub fn push_header_values(out: &mut String, headers: &HeaderMap, name: &HeaderName) {
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&String::from_utf8_lossy(v.as_bytes()));
        }
    }

    /// The value of cookie `name` in the request's `Cookie` headers, if present.
    pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// `log`: the line as the node keeps it. The bytes are made UTF-8 first (invalid sequences
/// become U+FFFD), then cut to at most [`limits::MAX_LOG_LINE`] bytes at a character boundary.
pub fn log_line(call: &HostCall, level: i32, raw: &[u8]) -> Result<String, Refusal> {
    if log_level::name(level).is_none() {
        return Err(Refusal::new(
            status::INVALID_ARGUMENT,
            format!(
                "{}: level {level} is not one of 0 (error) to 4 (trace)",
                call.name
            ),
        ));
    }
    // Each input byte gives at least one output byte, so the first MAX_LOG_LINE input bytes
    // decide the kept line; decoding only those keeps a huge line cheap.
    let mut text =
        String::from_utf8_lossy(&raw[..raw.len().min(limits::MAX_LOG_LINE)]).into_owned();
    let mut end = text.len().min(limits::MAX_LOG_LINE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    Ok(text)
}

/// Keeps a log line unless the invocation already has [`limits::MAX_LOG_LINES`].
pub fn push_log(logs: &mut Vec<(i32, String)>, level: i32, line: String) {
    if logs.len() < limits::MAX_LOG_LINES {
        logs.push((level, line));
    }
}

/// Records a refused call the way the node does: a warn-level line in the invocation's log
/// with the refusal's message, so the author sees which call failed and why.
pub fn record_refusal(logs: &mut Vec<(i32, String)>, refusal: &Refusal) {
    if let Some(message) = &refusal.message {
        push_log(logs, log_level::WARN, message.clone());
    }
}

/// A generated response that redirects (3xx) must say where to: a warning for the log
/// otherwise, since browsers show such a response as an empty page.
pub fn redirect_warning(status: StatusCode, has_location: bool) -> Option<String> {
    (status.is_redirection() && status != StatusCode::NOT_MODIFIED && !has_location).then(|| {
        format!(
            "generated {} response has no Location header",
            status.as_u16()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::headers::{change, get, list, Change};
    use super::*;
    use crate::abi::calls;

    const SET: &HostCall = &calls::RESPONSE_SET_HEADER;

    #[test]
    fn refuses_splitting_and_framing() {
        let mut h = HeaderMap::new();
        let status_of = |r: Result<(), Refusal>| r.map_or_else(|r| r.status, |()| status::OK);
        assert_eq!(
            status_of(change(SET, &mut h, b"x-a", b"ok\r\nx-evil: 1", Change::Set)),
            status::INVALID_ARGUMENT
        );
        assert_eq!(
            status_of(change(SET, &mut h, b"x a", b"v", Change::Set)),
            status::INVALID_ARGUMENT
        );
        let framing = change(SET, &mut h, b"content-length", b"5", Change::Set);
        assert_eq!(
            framing.expect_err("refused").message.as_deref(),
            Some("response_set_header(\"content-length\"): content-length frames the message; only the node sets it")
        );
        assert_eq!(
            status_of(change(
                SET,
                &mut h,
                b"x-big",
                &vec![b'a'; limits::MAX_HEADER_VALUE + 1],
                Change::Set
            )),
            status::LIMIT_EXCEEDED
        );
        assert!(h.is_empty());
    }

    #[test]
    fn set_append_remove() {
        let mut h = HeaderMap::new();
        assert_eq!(change(SET, &mut h, b"X-A", b"1", Change::Append), Ok(()));
        assert_eq!(change(SET, &mut h, b"x-a", b"2", Change::Append), Ok(()));
        assert_eq!(get(SET, &h, b"x-a"), Ok(b"1, 2".to_vec()));
        assert_eq!(change(SET, &mut h, b"x-a", b"3", Change::Set), Ok(()));
        assert_eq!(list(&h), b"x-a: 3\n");
        assert_eq!(change(SET, &mut h, b"x-a", b"", Change::Remove), Ok(()));
        assert_eq!(
            change(SET, &mut h, b"x-a", b"", Change::Remove),
            Err(Refusal::quiet(status::NOT_FOUND))
        );
    }

    #[test]
    fn a_value_borrows_one_line_and_joins_several() {
        let mut h = HeaderMap::new();
        assert_eq!(
            headers::value(SET, &h, b"x-a"),
            Err(Refusal::quiet(status::NOT_FOUND))
        );
        h.append("x-a", HeaderValue::from_static("1"));
        assert!(matches!(
            headers::value(SET, &h, b"X-A"),
            Ok(Cow::Borrowed(b"1"))
        ));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("x-a", HeaderValue::from_static("3"));
        assert_eq!(get(SET, &h, b"x-a"), Ok(b"1, 2, 3".to_vec()));
        h.append(SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(SET_COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(get(SET, &h, b"set-cookie"), Ok(b"a=1\nb=2".to_vec()));
        assert_eq!(
            headers::value(SET, &h, b"x a").map_err(|r| r.status),
            Err(status::INVALID_ARGUMENT)
        );
    }

    #[test]
    fn count_and_byte_limits() {
        let mut h = HeaderMap::new();
        for i in 0..limits::MAX_HEADER_COUNT {
            let name = format!("x-{i}");
            assert_eq!(
                change(SET, &mut h, name.as_bytes(), b"v", Change::Append),
                Ok(())
            );
        }
        assert_eq!(
            change(SET, &mut h, b"x-more", b"v", Change::Append).map_err(|r| r.status),
            Err(status::LIMIT_EXCEEDED)
        );
        assert_eq!(
            change(SET, &mut h, b"x-0", b"w", Change::Set),
            Ok(()),
            "replacing does not add a field"
        );
        let mut h = HeaderMap::new();
        let big = vec![b'a'; limits::MAX_HEADER_VALUE];
        for i in 0..7 {
            let name = format!("x-{i}");
            assert_eq!(
                change(SET, &mut h, name.as_bytes(), &big, Change::Set),
                Ok(())
            );
        }
        assert_eq!(
            change(SET, &mut h, b"x-7", &big, Change::Set).map_err(|r| r.status),
            Err(status::LIMIT_EXCEEDED),
            "8 values of 8 KiB plus names exceed 64 KiB"
        );
        assert_eq!(change(SET, &mut h, b"x-0", &big, Change::Set), Ok(()));
    }

    #[test]
    fn log_lines_are_made_utf8_then_cut_at_a_char_boundary() {
        let mut raw = vec![b'a'; limits::MAX_LOG_LINE - 1];
        raw.extend_from_slice("é".as_bytes());
        let line = log_line(&calls::LOG, 2, &raw).expect("valid level");
        assert_eq!(
            line.len(),
            limits::MAX_LOG_LINE - 1,
            "the é does not fit whole"
        );
        let line = log_line(&calls::LOG, 2, b"a\xffb").expect("valid level");
        assert_eq!(line, "a\u{fffd}b");
        assert_eq!(
            log_line(&calls::LOG, 9, b"x").map_err(|r| r.status),
            Err(status::INVALID_ARGUMENT)
        );
    }

    #[test]
    fn origin_refusal_names_the_known_origins() {
        let known = ["app", "bucket"];
        let refusal = find_origin(&calls::ORIGIN_SET, b"ap", known.iter().copied())
            .expect_err("no such origin");
        assert_eq!(
            refusal.message.as_deref(),
            Some("origin_set(\"ap\"): no origin \"ap\"; known: app, bucket")
        );
        assert_eq!(
            find_origin(&calls::ORIGIN_SET, b"bucket", known.iter().copied()),
            Ok(1)
        );
    }

    #[test]
    fn cache_key_limits() {
        let mut parts = Vec::new();
        for i in 0..limits::MAX_CACHE_KEY_PARTS {
            let part = format!("p{i}");
            assert_eq!(
                cache_key::add_part(&calls::CACHE_KEY_ADD, &mut parts, part.as_bytes()),
                Ok(())
            );
        }
        assert_eq!(
            cache_key::add_part(&calls::CACHE_KEY_ADD, &mut parts, b"one more")
                .map_err(|r| r.status),
            Err(status::LIMIT_EXCEEDED)
        );
        let long = vec![b'k'; limits::MAX_CACHE_KEY + 1];
        assert_eq!(
            cache_key::text(&calls::CACHE_KEY_SET, &long).map_err(|r| r.status),
            Err(status::LIMIT_EXCEEDED)
        );
        assert_eq!(
            cache_key::text(&calls::CACHE_KEY_SET, &long[1..]).map(|k| k.len()),
            Ok(limits::MAX_CACHE_KEY)
        );
    }

    #[test]
    fn not_allowed_names_call_and_event() {
        let refusal = check_allowed(&calls::CACHE_KEY_ADD, Event::ViewerResponse)
            .expect_err("viewer-response may not");
        assert_eq!(refusal.status, status::NOT_ALLOWED);
        assert_eq!(
            refusal.message.as_deref(),
            Some("cache_key_add is not allowed in viewer-response")
        );
    }
}
