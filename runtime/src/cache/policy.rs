//! Freshness: whether a response may be stored and for how long (RFC 9111 §3, §4.2), clamped
//! by the behavior's TTL bounds the way CloudFront applies min/default/max TTL.
//!
//! The directives come from the behavior's targeted field (`CDN-Cache-Control`, RFC 9213) when
//! the response has a valid one, else from `Cache-Control`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{
    HeaderName, HeaderValue, AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    DATE, ETAG, EXPIRES, LAST_MODIFIED, SET_COOKIE, TRANSFER_ENCODING, VARY,
};
use http::{HeaderMap, StatusCode};

use crate::config::CachePolicyConfig;

/// Lifetime of an error status (404, 410, ...) when the origin gives none: a missing file that
/// appears a minute later should not stay missing for the behavior's full default TTL.
/// CloudFront's default error-caching TTL.
pub const DEFAULT_ERROR_TTL: Duration = Duration::from_secs(10);

/// The directives of `Cache-Control` that decide storing and freshness.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`
    pub no_store: bool,
    /// `no-cache` (unqualified or with field names: both mean revalidate before reuse here)
    pub no_cache: bool,
    /// `private`
    pub private: bool,
    /// `public`
    pub public: bool,
    /// `must-revalidate`
    pub must_revalidate: bool,
    /// `max-age=N`
    pub max_age: Option<u64>,
    /// `s-maxage=N` (a shared cache prefers it over `max-age`)
    pub s_maxage: Option<u64>,
    /// `proxy-revalidate` (`must-revalidate` for shared caches, RFC 9111 §5.2.2.8)
    pub proxy_revalidate: bool,
    /// `stale-while-revalidate=N` (RFC 5861 §3)
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861 §4)
    pub stale_if_error: Option<u64>,
    /// `must-understand`: store only statuses the cache knows, then ignoring `no-store`
    pub must_understand: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` line; unknown directives are ignored (RFC 9111 §5.2.3), a
    /// malformed `max-age` counts as 0 (§4.2.1: treat invalid freshness as stale).
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut cc = CacheControl::default();
        for (name, value) in cache_control_directives(headers) {
            let seconds = || value.and_then(|v| v.parse::<u64>().ok()).or(Some(0));
            match name.to_ascii_lowercase().as_str() {
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "private" => cc.private = true,
                "public" => cc.public = true,
                "must-revalidate" => cc.must_revalidate = true,
                "max-age" => cc.max_age = seconds(),
                "s-maxage" => cc.s_maxage = seconds(),
                "proxy-revalidate" => cc.proxy_revalidate = true,
                "stale-while-revalidate" => cc.stale_while_revalidate = seconds(),
                "stale-if-error" => cc.stale_if_error = seconds(),
                "must-understand" => cc.must_understand = true,
                _ => {}
            }
        }
        cc
    }
}

/// Every directive of every `Cache-Control` line of `headers` (request or response), as its
/// name and its value without quotes; lines that are not text are skipped.
pub fn cache_control_directives(headers: &HeaderMap) -> impl Iterator<Item = (&str, Option<&str>)> {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|directive| match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        })
}

/// What to do with a response from the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storability {
    /// Store it; it stays fresh for `ttl` from now (zero: revalidate before every reuse).
    Store {
        /// Remaining freshness, already net of the origin's `Age`.
        ttl: Duration,
    },
    /// Do not store; the reason goes to the debug log.
    NotStorable(&'static str),
}

/// The cache directives this node obeys for a response: those of the first field of the
/// behavior's `targeted_cache_control` list that the response carries with a valid value
/// (RFC 9213 §2.1), else those of `Cache-Control`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The directives.
    pub cc: CacheControl,
    /// Whether they came from a targeted field, which then also overrides `Expires`.
    pub targeted: bool,
}

/// Reads the directives that apply to this node (see [`Directives`]).
pub fn directives(headers: &HeaderMap, policy: &CachePolicyConfig) -> Directives {
    for name in &policy.targeted_cache_control {
        let lines: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if lines.is_empty() {
            continue;
        }
        // RFC 9213 §2.1: a targeted field is a Structured Field Dictionary; one that fails to
        // parse is ignored as if absent, and the next field (finally Cache-Control) applies.
        let Some(members) = targeted_field_members(&lines.join(", ")) else {
            continue;
        };
        let Ok(value) = HeaderValue::from_str(&members) else {
            continue;
        };
        // Same directive names and meanings as Cache-Control: parse it the same way.
        let mut as_cc = HeaderMap::new();
        as_cc.insert(CACHE_CONTROL, value);
        return Directives {
            cc: CacheControl::parse(&as_cc),
            targeted: true,
        };
    }
    Directives {
        cc: CacheControl::parse(headers),
        targeted: false,
    }
}

/// The members of `value` without their parameters, joined with `, `, if it is a valid
/// Structured Field Dictionary (RFC 8941 §3.2) whose lifetime directives are integers:
/// `max-age="60"` is a string, so RFC 9213 has the whole field ignored. Directive names are
/// accepted in any case, as in `Cache-Control`.
fn targeted_field_members(value: &str) -> Option<String> {
    let mut rest = value.trim_matches([' ', '\t']);
    let mut members: Vec<&str> = Vec::new();
    if rest.is_empty() {
        return None;
    }
    loop {
        let member_start = rest;
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-.*".contains(c)))
            .unwrap_or(rest.len());
        let key = &rest[..key_len];
        if key.is_empty() || !(key.as_bytes()[0].is_ascii_alphabetic() || key.starts_with('*')) {
            return None;
        }
        rest = &rest[key_len..];
        let mut value_kind = SfItem::Boolean;
        if let Some(after) = rest.strip_prefix('=') {
            match sf_bare_item(after) {
                Some((kind, tail)) => {
                    value_kind = kind;
                    rest = tail;
                }
                None => return None,
            }
        }
        if matches!(key.to_ascii_lowercase().as_str(), "max-age" | "s-maxage")
            && value_kind != SfItem::Integer
        {
            return None;
        }
        members.push(&member_start[..member_start.len() - rest.len()]);
        // Parameters (`;name[=item]`) are allowed and ignored.
        while let Some(after) = rest.strip_prefix(';') {
            let after = after.trim_start_matches(' ');
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_-.*".contains(c)))
                .unwrap_or(after.len());
            if len == 0 {
                return None;
            }
            rest = &after[len..];
            if let Some(after) = rest.strip_prefix('=') {
                rest = sf_bare_item(after)?.1;
            }
        }
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Some(members.join(", "));
        }
        rest = rest.strip_prefix(',')?.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return None;
        }
    }
}

/// The type of a Structured Field bare item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SfItem {
    Integer,
    Decimal,
    String,
    Token,
    Bytes,
    Boolean,
}

/// Parses one bare item (RFC 8941 §3.3) at the start of `s`: its type and what follows.
fn sf_bare_item(s: &str) -> Option<(SfItem, &str)> {
    let bytes = s.as_bytes();
    match *bytes.first()? {
        b'-' | b'0'..=b'9' => {
            let unsigned = s.strip_prefix('-').unwrap_or(s);
            let digits = unsigned
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(unsigned.len());
            if digits == 0 || digits > 15 {
                return None;
            }
            let tail = &unsigned[digits..];
            if let Some(fraction) = tail.strip_prefix('.') {
                let decimals = fraction
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(fraction.len());
                if decimals == 0 || decimals > 3 || digits > 12 {
                    return None;
                }
                return Some((SfItem::Decimal, &fraction[decimals..]));
            }
            Some((SfItem::Integer, tail))
        }
        b'"' => {
            let mut escaped = false;
            for (i, c) in s.char_indices().skip(1) {
                match c {
                    _ if escaped => {
                        if c != '"' && c != '\\' {
                            return None;
                        }
                        escaped = false;
                    }
                    '\\' => escaped = true,
                    '"' => return Some((SfItem::String, &s[i + 1..])),
                    ' '..='~' => {}
                    _ => return None,
                }
            }
            None
        }
        b':' => {
            let end = s[1..].find(':')? + 1;
            s[1..end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                .then(|| (SfItem::Bytes, &s[end + 1..]))
        }
        b'?' => match bytes.get(1)? {
            b'0' | b'1' => Some((SfItem::Boolean, &s[2..])),
            _ => None,
        },
        b'a'..=b'z' | b'A'..=b'Z' | b'*' => {
            let len = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c)))
                .unwrap_or(s.len());
            Some((SfItem::Token, &s[len..]))
        }
        _ => None,
    }
}

/// Statuses a cache may store with a heuristic lifetime (RFC 9110 §15.1 "heuristically
/// cacheable"); with an explicit lifetime any final status may be stored (RFC 9111 §3).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses whose semantics this node knows (those RFC 9110 defines), for `must-understand`
/// (RFC 9111 §5.2.2.3).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// Whether the response's status is one of the client or server errors that get at most
/// [`DEFAULT_ERROR_TTL`] when the origin gives no lifetime.
fn is_error(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// Decides whether a response to a GET may be stored and for how long. `authorized` says
/// whether the request carried `Authorization`.
///
/// Rules, in order: a partial (206) or not-modified (304) response, `no-store` (unless
/// `must-understand` with a known status), `must-understand` with an unknown status, `private`,
/// `Set-Cookie` (one viewer's cookie must never reach another; unless the behavior strips it from
/// the stored copy), `Vary: *`, and a response to an authorized request without `public`,
/// `s-maxage` or `must-revalidate` refuse storing. The origin's lifetime (the targeted field's
/// or `Cache-Control`'s `s-maxage`, else `max-age`, else `Expires - Date`) is clamped to
/// `[min_ttl, max_ttl]`, for any status. Without one, only heuristically cacheable statuses (or
/// any with `public`) are stored: for `heuristic_ttl` the given share of the time since
/// `Last-Modified`, else `default_ttl`, either at most [`DEFAULT_ERROR_TTL`] for error statuses.
/// `no-cache` stores with a zero lifetime, so every reuse revalidates. An `Age` that is not one
/// non-negative integer makes the response stale. A zero lifetime is worth storing only with a
/// validator to revalidate with.
pub fn storability(
    status: StatusCode,
    headers: &HeaderMap,
    authorized: bool,
    policy: &CachePolicyConfig,
    now: SystemTime,
) -> Storability {
    // Partial content is not assembled into objects, and a 304 has no body to store.
    if matches!(status.as_u16(), 206 | 304) || status.is_informational() {
        return Storability::NotStorable("status");
    }
    let Directives { cc, targeted } = directives(headers, policy);
    // RFC 9111 §5.2.2.3: `must-understand` stores only statuses the cache understands, and then
    // overrides `no-store` (which is there for caches that do not know the directive).
    if cc.must_understand && !understood(status) {
        return Storability::NotStorable("must-understand");
    }
    if cc.no_store && !cc.must_understand {
        return Storability::NotStorable("no-store");
    }
    if cc.private {
        return Storability::NotStorable("private");
    }
    if headers.contains_key(SET_COOKIE) && !policy.strip_set_cookie {
        return Storability::NotStorable("set-cookie");
    }
    if headers.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|n| n.trim_ascii() == b"*")
    }) {
        return Storability::NotStorable("vary-star");
    }
    // RFC 9111 §3.5: a shared cache must not reuse a response to a request with `Authorization`
    // for any other request unless the origin said it may be shared. Everything stored is served
    // to every viewer with the same key, so "reused for others" and "stored" are one decision.
    // The rule restricts responses *to* authorized requests only: an object stored from an
    // anonymous request is already declared shareable and may answer an authorized request,
    // as the RFC allows (an origin that answers authorized viewers differently must say so with
    // `Vary: Authorization` or `private`).
    if authorized && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
        return Storability::NotStorable("authorization");
    }

    let explicit = origin_lifetime(&cc, targeted, headers, now);
    if explicit.is_none() && !(heuristically_cacheable(status) || cc.public) {
        return Storability::NotStorable("status");
    }
    let lifetime = if cc.no_cache {
        Duration::ZERO
    } else {
        match explicit {
            Some(t) => t.clamp(policy.min_ttl, policy.max_ttl),
            None => {
                let lifetime = match policy.heuristic_ttl {
                    Some(percent) => heuristic_lifetime(percent, headers, now)
                        .map(|t| t.clamp(policy.min_ttl, policy.max_ttl))
                        .unwrap_or(policy.default_ttl),
                    None => policy.default_ttl,
                };
                if is_error(status) {
                    lifetime.min(DEFAULT_ERROR_TTL)
                } else {
                    lifetime
                }
            }
        }
    };
    let ttl = match origin_age(headers) {
        OriginAge::Seconds(age) => lifetime.saturating_sub(Duration::from_secs(age)),
        OriginAge::Invalid => Duration::ZERO,
    };
    if ttl.is_zero() && !has_validator(headers) {
        return Storability::NotStorable("zero-ttl");
    }
    Storability::Store { ttl }
}

/// RFC 9111 §4.2.2: `percent` of the time between `Last-Modified` and `Date` (or now), when the
/// response has a `Last-Modified` in the past.
fn heuristic_lifetime(percent: u32, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let last_modified = header_date(headers, &LAST_MODIFIED)?;
    let date = header_date(headers, &DATE).unwrap_or(now);
    let since = date.duration_since(last_modified).ok()?;
    Some(since * percent / 100)
}

/// The freshness lifetime the origin gave, if any (RFC 9111 §4.2.1). With a targeted field
/// its `max-age` replaces `Expires` as well (RFC 9213 §2.1).
fn origin_lifetime(
    cc: &CacheControl,
    targeted: bool,
    headers: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(s) = cc.s_maxage.or(cc.max_age) {
        return Some(Duration::from_secs(s));
    }
    if targeted {
        return None;
    }
    if !headers.contains_key(EXPIRES) {
        return None;
    }
    // An invalid Expires (often "0"), or more than one, means already expired (§5.3).
    let Some(expires) = single_date(headers, &EXPIRES) else {
        return Some(Duration::ZERO);
    };
    let date = header_date(headers, &DATE).unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// The one value of a date header, if it has exactly one line and it parses.
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_http_date(value.to_str().ok()?)
}

/// The first value of a date header, if it parses.
fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    parse_http_date(headers.get(name)?.to_str().ok()?)
}

/// Parses an HTTP-date in any of the three formats of RFC 9110 §5.6.7: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`). The day name is not checked against the date, as most caches do
/// not (origins get it wrong); month names and `GMT` are matched without regard to case.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let (weekday, rest) = value.split_once([',', ' '])?;
    if weekday.len() < 3 || !weekday.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let (day, month, year, time) = if value.as_bytes()[weekday.len()] == b',' {
        let rest = rest.strip_prefix(' ')?;
        if let Some((date, time)) = rest.split_once(' ').filter(|(d, _)| d.contains('-')) {
            // RFC 850: DD-Mon-YY; a two-digit year more than 50 years ahead is in the past
            // century (RFC 9110 §5.6.7), which for any current date means 19YY above 70.
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || year.len() != 2 || day.len() != 2 {
                return None;
            }
            let year: i64 = digits(year)?;
            let year = if year >= 70 { 1900 + year } else { 2000 + year };
            (digits(day)?, month, year, time.strip_suffix_ci(" GMT")?)
        } else {
            // IMF-fixdate: DD Mon YYYY HH:MM:SS GMT
            let mut parts = rest.splitn(4, ' ');
            let (day, month, year, time) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if day.len() != 2 || year.len() != 4 {
                return None;
            }
            (
                digits(day)?,
                month,
                digits(year)?,
                time.strip_suffix_ci(" GMT")?,
            )
        }
    } else {
        // asctime: Mon _D HH:MM:SS YYYY (the day padded to two characters with a space)
        let (month, rest) = (rest.get(..3)?, rest.get(3..)?.strip_prefix(' ')?);
        let day = rest.get(..2)?;
        let rest = rest.get(2..)?.strip_prefix(' ')?;
        let (time, year) = rest.split_once(' ')?;
        if year.len() != 4 {
            return None;
        }
        (digits(day.trim_start())?, month, digits(year)?, time)
    };
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(month))? as i64 + 1;
    let mut hms = time.split(':');
    let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
    if hms.next().is_some() || h.len() != 2 || m.len() != 2 || s.len() != 2 {
        return None;
    }
    let (h, m, s): (i64, i64, i64) = (digits(h)?, digits(m)?, digits(s)?);
    // A leap second (:60) is folded into the next second's minute rather than refused.
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A run of ASCII digits as a number; anything else (signs, spaces) is refused.
fn digits(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146097 + day_of_era - 719468
}

/// `str::strip_suffix` ignoring ASCII case.
trait StripSuffixCi {
    fn strip_suffix_ci(&self, suffix: &str) -> Option<&str>;
}

impl StripSuffixCi for str {
    fn strip_suffix_ci(&self, suffix: &str) -> Option<&str> {
        let split = self.len().checked_sub(suffix.len())?;
        let (head, tail) = (self.get(..split)?, self.get(split..)?);
        tail.eq_ignore_ascii_case(suffix).then_some(head)
    }
}

/// The origin's `Age` (RFC 9111 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginAge {
    /// Absent (0) or one non-negative integer, in seconds (saturating when huge).
    Seconds(u64),
    /// Anything else: a list (`7200, 0`), several lines, a sign, a fraction, a parameter, text.
    /// The age cannot be known, so the response is treated as already stale rather than
    /// risk serving something older than its lifetime allows.
    Invalid,
}

/// Reads the origin's `Age`.
pub fn origin_age(headers: &HeaderMap) -> OriginAge {
    let mut values = headers.get_all(AGE).iter();
    let Some(value) = values.next() else {
        return OriginAge::Seconds(0);
    };
    if values.next().is_some() {
        return OriginAge::Invalid;
    }
    let value = value.as_bytes().trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return OriginAge::Invalid;
    }
    // All digits: only too many of them fails to parse, and that is very old indeed.
    let seconds = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    OriginAge::Seconds(seconds)
}

/// The origin's `Age` in seconds, as the starting point of the `Age` the node sends (0 when
/// absent or invalid: an invalid one already made the object stale).
pub fn age(headers: &HeaderMap) -> u64 {
    match origin_age(headers) {
        // Bounded so that adding the time in cache cannot overflow (RFC 9111 §1.2.2's 2^31).
        OriginAge::Seconds(seconds) => seconds.min(1 << 31),
        OriginAge::Invalid => 0,
    }
}

/// Whether the response carries a validator a conditional request can use.
pub fn has_validator(headers: &HeaderMap) -> bool {
    headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED)
}

/// Whether a stored header keeps its stored value when a 304 refreshes the object. Framing
/// headers describe the stored body, not the 304; `Content-Encoding`, `Content-Range` and
/// `Content-MD5` describe the stored bytes too; and the stored `ETag` is the validator that
/// the 304 just confirmed (RFC 9111 §3.2 lets caches keep fields the stored response depends on).
pub fn kept_on_refresh(name: &HeaderName) -> bool {
    name == CONTENT_LENGTH
        || name == TRANSFER_ENCODING
        || name == CONTENT_ENCODING
        || name == CONTENT_RANGE
        || name == ETAG
        || name.as_str() == "content-md5"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: u64, default: u64, max: u64) -> CachePolicyConfig {
        CachePolicyConfig {
            min_ttl: Duration::from_secs(min),
            default_ttl: Duration::from_secs(default),
            max_ttl: Duration::from_secs(max),
            stale_if_error: crate::config::DEFAULT_STALE_IF_ERROR,
            heuristic_ttl: None,
            targeted_cache_control: vec![HeaderName::from_static("cdn-cache-control")],
            strip_set_cookie: false,
            viewer_cache_control: Default::default(),
        }
    }

    fn decide(status: u16, headers: &[(&str, &str)], p: &CachePolicyConfig) -> Storability {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        storability(
            StatusCode::from_u16(status).expect("status"),
            &map,
            false,
            p,
            SystemTime::now(),
        )
    }

    fn ttl(secs: u64) -> Storability {
        Storability::Store {
            ttl: Duration::from_secs(secs),
        }
    }

    #[test]
    fn parses_directives_case_insensitively() {
        let mut h = HeaderMap::new();
        h.append(CACHE_CONTROL, "Public, MAX-AGE=60".parse().expect("v"));
        h.append(
            CACHE_CONTROL,
            "s-maxage=\"5\", no-cache".parse().expect("v"),
        );
        let cc = CacheControl::parse(&h);
        assert_eq!(
            (cc.max_age, cc.s_maxage, cc.no_cache, cc.no_store),
            (Some(60), Some(5), true, false)
        );
    }

    #[test]
    fn s_maxage_beats_max_age_and_bounds_clamp() {
        let p = policy(10, 100, 1000);
        assert_eq!(
            decide(200, &[("cache-control", "max-age=50, s-maxage=70")], &p),
            ttl(70)
        );
        assert_eq!(decide(200, &[("cache-control", "max-age=5")], &p), ttl(10));
        assert_eq!(
            decide(200, &[("cache-control", "max-age=5000")], &p),
            ttl(1000)
        );
        assert_eq!(decide(200, &[], &p), ttl(100));
    }

    #[test]
    fn expires_relative_to_date() {
        let p = policy(0, 100, 1000);
        let h = [
            ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("expires", "Wed, 21 Oct 2015 07:30:00 GMT"),
        ];
        assert_eq!(decide(200, &h, &p), ttl(120));
        assert_eq!(
            decide(200, &[("expires", "0")], &p),
            Storability::NotStorable("zero-ttl")
        );
    }

    #[test]
    fn refusals() {
        let p = policy(0, 100, 1000);
        assert_eq!(
            decide(200, &[("cache-control", "no-store")], &p),
            Storability::NotStorable("no-store")
        );
        assert_eq!(
            decide(200, &[("cache-control", "private, max-age=60")], &p),
            Storability::NotStorable("private")
        );
        assert_eq!(
            decide(200, &[("set-cookie", "a=b")], &p),
            Storability::NotStorable("set-cookie")
        );
        assert_eq!(
            decide(200, &[("vary", "accept, *")], &p),
            Storability::NotStorable("vary-star")
        );
        assert_eq!(decide(500, &[], &p), Storability::NotStorable("status"));
        assert_eq!(decide(206, &[], &p), Storability::NotStorable("status"));
        assert_eq!(
            decide(206, &[("cache-control", "max-age=60")], &p),
            Storability::NotStorable("status")
        );
    }

    #[test]
    fn authorized_responses_are_stored_only_when_marked_shareable() {
        let p = policy(0, 100, 1000);
        let authorized = |headers: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (n, v) in headers {
                map.append(
                    http::header::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                );
            }
            storability(StatusCode::OK, &map, true, &p, SystemTime::now())
        };
        assert_eq!(
            authorized(&[("cache-control", "max-age=600")]),
            Storability::NotStorable("authorization")
        );
        assert_eq!(authorized(&[]), Storability::NotStorable("authorization"));
        assert_eq!(
            authorized(&[("cache-control", "public, max-age=600")]),
            ttl(600)
        );
        assert_eq!(authorized(&[("cache-control", "s-maxage=60")]), ttl(60));
        assert_eq!(
            authorized(&[("cache-control", "max-age=60, must-revalidate")]),
            ttl(60)
        );
        // `public` does not override the refusals that come first.
        assert_eq!(
            authorized(&[("cache-control", "public, private")]),
            Storability::NotStorable("private")
        );
    }

    #[test]
    fn no_cache_stores_only_with_validator() {
        let p = policy(0, 100, 1000);
        assert_eq!(
            decide(200, &[("cache-control", "no-cache")], &p),
            Storability::NotStorable("zero-ttl")
        );
        assert_eq!(
            decide(200, &[("cache-control", "no-cache"), ("etag", "\"x\"")], &p),
            ttl(0)
        );
    }

    #[test]
    fn zero_default_ttl_means_not_stored_unless_origin_says() {
        let p = policy(0, 0, 60);
        assert_eq!(decide(200, &[], &p), Storability::NotStorable("zero-ttl"));
        assert_eq!(
            decide(200, &[("cache-control", "max-age=600")], &p),
            ttl(60)
        );
    }

    #[test]
    fn errors_get_short_default_and_age_is_subtracted() {
        let p = policy(0, 86400, 86400 * 365);
        assert_eq!(decide(404, &[], &p), ttl(10));
        assert_eq!(
            decide(404, &[("cache-control", "max-age=300")], &p),
            ttl(300)
        );
        assert_eq!(
            decide(200, &[("cache-control", "max-age=300"), ("age", "100")], &p),
            ttl(200)
        );
    }

    #[test]
    fn any_final_status_with_explicit_freshness_is_stored() {
        let p = policy(0, 100, 1000);
        for status in [302, 303, 307, 400, 403, 500, 502, 503, 599] {
            assert_eq!(
                decide(status, &[("cache-control", "max-age=60")], &p),
                ttl(60),
                "{status}"
            );
            assert_eq!(
                decide(status, &[], &p),
                Storability::NotStorable("status"),
                "{status} without a lifetime is not heuristically cacheable"
            );
        }
        // `public` makes any status heuristically cacheable (RFC 9111 §4.2.2).
        assert_eq!(decide(599, &[("cache-control", "public")], &p), ttl(10));
    }

    #[test]
    fn must_understand_stores_known_statuses_only_and_overrides_no_store() {
        let p = policy(0, 100, 1000);
        assert_eq!(
            decide(599, &[("cache-control", "max-age=60, must-understand")], &p),
            Storability::NotStorable("must-understand")
        );
        assert_eq!(
            decide(
                200,
                &[("cache-control", "max-age=60, must-understand, no-store")],
                &p
            ),
            ttl(60)
        );
    }

    #[test]
    fn age_must_be_one_non_negative_integer() {
        let p = policy(0, 100, 1000);
        let with_age = |age: &[&str]| {
            let mut h = vec![("cache-control", "max-age=3600")];
            h.extend(age.iter().map(|a| ("age", *a)));
            decide(200, &h, &p)
        };
        assert_eq!(with_age(&["100"]), ttl(900), "max_ttl 1000 less 100");
        assert_eq!(with_age(&[" 7 "]), ttl(993));
        for bad in [
            &["abc"][..],
            &["-7200"],
            &["7200.0"],
            &["7200, 0"],
            &["0,7200"],
            &["0, 0"],
            &["7200;foo=bar"],
            &["0", "0"],
            &["0", "7200"],
            &[""],
        ] {
            assert_eq!(
                with_age(bad),
                Storability::NotStorable("zero-ttl"),
                "{bad:?}"
            );
        }
        assert_eq!(
            with_age(&["99999999999999999999999"]),
            Storability::NotStorable("zero-ttl")
        );
        let mut h = HeaderMap::new();
        h.insert(AGE, "7200, 0".parse().expect("v"));
        assert_eq!(age(&h), 0, "an invalid Age starts the node's own at 0");
        h.insert(AGE, "99999999999".parse().expect("v"));
        assert_eq!(age(&h), 1 << 31);
    }

    #[test]
    fn http_dates_in_all_three_formats() {
        let at = |s: &str| {
            parse_http_date(s).map(|t| t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs())
        };
        // RFC 9110 §5.6.7's example instant, 1994-11-06 08:49:37 UTC.
        let example = Some(784_111_777);
        assert_eq!(at("Sun, 06 Nov 1994 08:49:37 GMT"), example);
        assert_eq!(at("Sunday, 06-Nov-94 08:49:37 GMT"), example);
        assert_eq!(at("Sun Nov  6 08:49:37 1994"), example);
        // A wrong day name, other letter cases of month and zone.
        assert_eq!(at("Thu, 06 Nov 1994 08:49:37 GMT"), example);
        assert_eq!(
            at("Sun Nov  6 08:49:37 1994"),
            at("Mon Nov  6 08:49:37 1994")
        );
        assert_eq!(at("Sun, 06 NOV 1994 08:49:37 gmt"), example);
        // Two-digit years: 70 and later are 19xx.
        assert_eq!(
            at("Thursday, 18-Aug-50 02:01:18 GMT"),
            at("Thu, 18 Aug 2050 02:01:18 GMT")
        );
        assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(at("Tue, 29 Feb 2000 12:00:00 GMT"), Some(951_825_600));
        for bad in [
            "0",
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08.49.37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expires_in_asctime_and_wrong_weekday_count() {
        let p = policy(0, 0, 100_000);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            decide(
                200,
                &[("date", date), ("expires", "Mon Nov  6 09:49:37 1994")],
                &p
            ),
            ttl(3600)
        );
        assert_eq!(
            decide(
                200,
                &[("date", date), ("expires", "Fri, 06 Nov 1994 09:49:37 GMT")],
                &p
            ),
            ttl(3600)
        );
        // Two Expires lines are invalid: already expired.
        assert_eq!(
            decide(
                200,
                &[
                    ("date", date),
                    ("expires", "Sun, 06 Nov 1994 09:49:37 GMT"),
                    ("expires", "Sun, 06 Nov 1994 09:49:38 GMT")
                ],
                &p
            ),
            Storability::NotStorable("zero-ttl")
        );
    }

    #[test]
    fn targeted_field_replaces_cache_control_and_expires() {
        let p = policy(0, 0, 100_000);
        assert_eq!(
            decide(
                200,
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=600")
                ],
                &p
            ),
            ttl(600)
        );
        assert_eq!(
            decide(
                200,
                &[
                    ("cache-control", "max-age=600"),
                    ("cdn-cache-control", "no-store")
                ],
                &p
            ),
            Storability::NotStorable("no-store")
        );
        assert_eq!(
            decide(
                200,
                &[
                    ("cache-control", "max-age=600"),
                    ("cdn-cache-control", "private")
                ],
                &p
            ),
            Storability::NotStorable("private")
        );
        // Without a lifetime in the targeted field, Expires does not count either.
        assert_eq!(
            decide(
                200,
                &[
                    ("cdn-cache-control", "public"),
                    ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                    ("expires", "Sun, 06 Nov 1994 09:49:37 GMT")
                ],
                &p
            ),
            Storability::NotStorable("zero-ttl")
        );
        // Parameters are ignored; an invalid dictionary or a string max-age is ignored whole.
        assert_eq!(
            decide(200, &[("cdn-cache-control", "max-age=60;foo, x")], &p),
            ttl(60)
        );
        for invalid in [
            "max-age=10000, &&&&&",
            "max-age=\"10000\"",
            "max-age=1,",
            "",
        ] {
            assert_eq!(
                decide(
                    200,
                    &[
                        ("cache-control", "no-store"),
                        ("cdn-cache-control", invalid)
                    ],
                    &p
                ),
                Storability::NotStorable("no-store"),
                "{invalid:?}"
            );
        }
        // A behavior's own list, first present field first; other fields are not targeted.
        let mut own = p.clone();
        own.targeted_cache_control = vec![
            HeaderName::from_static("edge-cache-control"),
            HeaderName::from_static("cdn-cache-control"),
        ];
        let h = [
            ("cache-control", "max-age=5"),
            ("edge-cache-control", "max-age=50"),
            ("cdn-cache-control", "max-age=500"),
        ];
        assert_eq!(decide(200, &h, &own), ttl(50));
        assert_eq!(decide(200, &h[..1], &own), ttl(5));
        own.targeted_cache_control.clear();
        assert_eq!(decide(200, &h, &own), ttl(5));
    }

    #[test]
    fn heuristic_ttl_is_a_share_of_the_time_since_last_modified() {
        let mut p = policy(0, 7, 3000);
        let h = [
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("last-modified", "Sun, 06 Nov 1994 07:49:37 GMT"),
        ];
        assert_eq!(decide(200, &h, &p), ttl(7), "off: default_ttl");
        p.heuristic_ttl = Some(10);
        assert_eq!(decide(200, &h, &p), ttl(360));
        assert_eq!(decide(404, &h, &p), ttl(10), "errors keep their short TTL");
        assert_eq!(decide(200, &h[..1], &p), ttl(7), "no Last-Modified");
        p.heuristic_ttl = Some(100);
        assert_eq!(decide(200, &h, &p), ttl(3000), "capped by max_ttl");
        assert_eq!(
            decide(200, &[h[0], h[1], ("cache-control", "max-age=5")], &p),
            ttl(5),
            "explicit freshness wins"
        );
    }

    #[test]
    fn set_cookie_is_stored_only_when_the_behavior_strips_it() {
        let mut p = policy(0, 100, 1000);
        let h = [("set-cookie", "a=b"), ("cache-control", "max-age=60")];
        assert_eq!(decide(200, &h, &p), Storability::NotStorable("set-cookie"));
        p.strip_set_cookie = true;
        assert_eq!(decide(200, &h, &p), ttl(60));
        assert_eq!(
            decide(200, &[h[0], ("cache-control", "private")], &p),
            Storability::NotStorable("private")
        );
    }

    #[test]
    fn a_304_keeps_the_stored_validator_and_content_coding() {
        for name in [
            "etag",
            "content-encoding",
            "content-range",
            "content-md5",
            "content-length",
        ] {
            assert!(kept_on_refresh(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["cache-control", "expires", "content-type", "x-custom"] {
            assert!(!kept_on_refresh(&HeaderName::from_static(name)), "{name}");
        }
    }
}
