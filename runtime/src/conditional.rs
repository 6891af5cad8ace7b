//! Conditional requests (RFC 9110 §13): whether a viewer's `If-None-Match` /
//! `If-Modified-Since` lets us answer 304 instead of sending the body again.

use std::time::SystemTime;

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue};

/// Whether a GET/HEAD with these request headers may be answered 304 for a representation with
/// this `ETag` and `Last-Modified`. `If-None-Match` takes precedence (§13.2.2): when present,
/// `If-Modified-Since` is ignored.
pub fn is_not_modified(
    request: &HeaderMap,
    etag: Option<&HeaderValue>,
    last_modified: Option<SystemTime>,
) -> bool {
    let mut lines = request.get_all(IF_NONE_MATCH).iter().peekable();
    if lines.peek().is_some() {
        let current = etag.and_then(|e| opaque_tag(e.as_bytes()));
        // Every line is part of one list (§5.3). `*` matches any current representation, with
        // or without a tag (§13.1.2); a tag matches by weak comparison (§8.8.3.2): `W/"x"`
        // matches `"x"`.
        return lines.any(|line| {
            EntityTags(line.as_bytes())
                .any(|tag| tag == b"*" || (current.is_some() && opaque_tag(tag) == current))
        });
    }
    if let (Some(ims), Some(modified)) = (request.get(IF_MODIFIED_SINCE), last_modified) {
        if let Some(since) = ims
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
        {
            return modified <= since;
        }
    }
    false
}

/// The opaque part of an entity-tag (`"x"` of `W/"x"`, quotes included); `None` if `tag` is not
/// one.
fn opaque_tag(tag: &[u8]) -> Option<&[u8]> {
    let tag = tag.trim_ascii();
    let tag = tag.strip_prefix(b"W/").unwrap_or(tag);
    let inner = tag.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    (!inner.contains(&b'"')).then_some(tag)
}

/// The members of an `If-None-Match` line: `*`, or entity-tags, which may hold commas inside
/// their quotes (§8.8.3), so a split on commas is not enough. Garbage between members is
/// skipped up to the next comma.
struct EntityTags<'a>(&'a [u8]);

impl<'a> Iterator for EntityTags<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0.trim_ascii_start();
        let rest = rest.strip_prefix(b",").unwrap_or(rest).trim_ascii_start();
        if rest.is_empty() {
            return None;
        }
        let start = usize::from(rest.starts_with(b"W/")) * 2;
        let end = match rest[start..].strip_prefix(b"\"") {
            // To the closing quote, which no entity-tag character is.
            Some(quoted) => quoted
                .iter()
                .position(|&b| b == b'"')
                .map_or(rest.len(), |close| start + close + 2),
            None => rest.iter().position(|&b| b == b',').unwrap_or(rest.len()),
        };
        let (member, after) = rest.split_at(end);
        self.0 = after;
        Some(member.trim_ascii_end())
    }
}

/// The parsed `Last-Modified` of a response, if present and valid.
pub fn last_modified(headers: &HeaderMap) -> Option<SystemTime> {
    headers
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
}

/// Whether the request is conditional at all (so a cacheable miss must strip it before asking
/// the origin for the full object).
pub fn is_conditional(request: &HeaderMap) -> bool {
    request.contains_key(IF_NONE_MATCH) || request.contains_key(IF_MODIFIED_SINCE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn req(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
        h
    }

    #[test]
    fn etag_matching_is_weak() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(is_not_modified(
            &req("if-none-match", "\"abc\""),
            Some(&etag),
            None
        ));
        assert!(is_not_modified(
            &req("if-none-match", "\"x\", W/\"abc\""),
            Some(&etag),
            None
        ));
        assert!(is_not_modified(
            &req("if-none-match", "*"),
            Some(&etag),
            None
        ));
        assert!(!is_not_modified(
            &req("if-none-match", "\"abd\""),
            Some(&etag),
            None
        ));
        assert!(!is_not_modified(
            &req("if-none-match", "\"abc\""),
            None,
            None
        ));
        assert!(
            is_not_modified(&req("if-none-match", "*"), None, None),
            "`*` matches a representation without a tag too"
        );
    }

    #[test]
    fn entity_tags_are_read_whole_from_every_line() {
        let etag = HeaderValue::from_static("\"a,b\"");
        let mut two_lines = req("if-none-match", "\"x\"");
        two_lines.append("if-none-match", HeaderValue::from_static(" W/\"a,b\" "));
        assert!(is_not_modified(&two_lines, Some(&etag), None));
        assert!(is_not_modified(
            &req("if-none-match", "\"q\", \"a,b\""),
            Some(&etag),
            None
        ));
        assert!(
            !is_not_modified(&req("if-none-match", "\"a\", \"b\""), Some(&etag), None),
            "pieces of the tag are not the tag"
        );
        assert!(
            !is_not_modified(&req("if-none-match", "a,b"), Some(&etag), None),
            "an unquoted tag is no entity-tag"
        );
        let members: Vec<&[u8]> = EntityTags(b" \"a,b\" ,W/\"c\",  *, junk , \"open").collect();
        assert_eq!(
            members,
            [&b"\"a,b\""[..], b"W/\"c\"", b"*", b"junk", b"\"open"]
        );
    }

    #[test]
    fn modified_since_compares_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = httpdate::fmt_http_date(t);
        let before = httpdate::fmt_http_date(t - Duration::from_secs(60));
        assert!(is_not_modified(
            &req("if-modified-since", &at),
            None,
            Some(t)
        ));
        assert!(!is_not_modified(
            &req("if-modified-since", &before),
            None,
            Some(t)
        ));
        assert!(!is_not_modified(
            &req("if-modified-since", "garbage"),
            None,
            Some(t)
        ));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn header(name: http::header::HeaderName, value: &str) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).ok()?);
        Some(h)
    }

    /// A second-resolution time between 1970 and 2100 (HTTP dates have whole seconds).
    fn time() -> impl Strategy<Value = SystemTime> {
        (0u64..4_102_444_800).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s))
    }

    proptest! {
        /// Arbitrary validator headers never panic.
        #[test]
        fn arbitrary_validators_never_panic(inm in "[ -~]{0,40}", ims in "[ -~]{0,40}", etag in "[ -~]{0,12}") {
            let etag = HeaderValue::from_str(&etag).ok();
            for h in [header(IF_NONE_MATCH, &inm), header(IF_MODIFIED_SINCE, &ims)].into_iter().flatten() {
                let _ = is_not_modified(&h, etag.as_ref(), Some(UNIX_EPOCH));
                let _ = is_not_modified(&h, etag.as_ref(), None);
            }
        }

        /// `If-None-Match` listing the current tag (weak or strong, anywhere in the list) is a
        /// 304; a list without it (and without `*`) never is, whatever `If-Modified-Since` says.
        #[test]
        fn if_none_match_decides(tag in "[a-z0-9]{1,8}", others in prop::collection::vec("[a-z0-9]{1,8}", 0..4), weak: bool, at in 0usize..4) {
            let etag = HeaderValue::from_str(&format!("\"{tag}\"")).expect("valid");
            let others: Vec<String> = others.into_iter().filter(|o| *o != tag).map(|o| format!("\"{o}\"")).collect();
            let mut with = others.clone();
            with.insert(at.min(with.len()), if weak { format!("W/\"{tag}\"") } else { format!("\"{tag}\"") });
            let h = header(IF_NONE_MATCH, &with.join(", ")).expect("valid");
            prop_assert!(is_not_modified(&h, Some(&etag), None));
            if !others.is_empty() {
                let mut h = header(IF_NONE_MATCH, &others.join(", ")).expect("valid");
                h.insert(IF_MODIFIED_SINCE, HeaderValue::from_static("Fri, 31 Dec 2100 00:00:00 GMT"));
                prop_assert!(!is_not_modified(&h, Some(&etag), Some(UNIX_EPOCH)));
            }
        }

        /// `If-Modified-Since` is a 304 exactly when the object is not newer than the date.
        #[test]
        fn if_modified_since_compares_dates(modified in time(), since in time()) {
            let h = header(IF_MODIFIED_SINCE, &httpdate::fmt_http_date(since)).expect("valid");
            prop_assert_eq!(is_not_modified(&h, None, Some(modified)), modified <= since);
            // A response date survives the round trip through `Last-Modified`.
            let lm = header(LAST_MODIFIED, &httpdate::fmt_http_date(modified)).expect("valid");
            prop_assert_eq!(last_modified(&lm), Some(modified));
        }
    }
}
