//! Range requests (RFC 9110 §14) answered from cached objects: one `bytes=` range gets 206 with
//! a slice of the stored body (no copy); an unsatisfiable one gets 416. Several ranges, other
//! units or a stale `If-Range` get the whole object, which RFC 9110 §14.2 allows.

use http::header::{IF_RANGE, RANGE};
use http::{HeaderMap, HeaderValue};

/// What to send for a request's `Range` against a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole representation (no range, or one we choose not to honor).
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// No byte of the range exists.
    Unsatisfiable,
}

/// Decides how to answer `request`'s range for a representation of `len` bytes whose validators
/// are `etag` and `last_modified` (as sent).
pub fn answer(
    request: &HeaderMap,
    len: u64,
    etag: Option<&HeaderValue>,
    last_modified: Option<&HeaderValue>,
) -> RangeAnswer {
    let Some(range) = request.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if let Some(if_range) = request.get(IF_RANGE) {
        // §13.1.5: a strong ETag or the exact Last-Modified date must match, else send it all.
        let strong_etag = etag.filter(|e| !e.as_bytes().starts_with(b"W/"));
        if Some(if_range) != strong_etag && Some(if_range) != last_modified {
            return RangeAnswer::Full;
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.parse::<u64>(), last.parse::<u64>()) {
        // `bytes=-N`: the last N bytes.
        (Err(_), Ok(suffix)) if first.is_empty() => {
            if suffix == 0 || len == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start: len.saturating_sub(suffix),
                    end: len - 1,
                }
            }
        }
        // `bytes=N-`: from N to the end.
        (Ok(start), Err(_)) if last.is_empty() => {
            if start >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start,
                    end: len - 1,
                }
            }
        }
        (Ok(start), Ok(end)) if start <= end => {
            if start >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Partial {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
        // Malformed: ignore the header (§14.2).
        _ => RangeAnswer::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(range: &str, len: u64) -> RangeAnswer {
        let mut h = HeaderMap::new();
        h.insert(RANGE, range.parse().expect("value"));
        answer(&h, len, None, None)
    }

    #[test]
    fn single_ranges() {
        assert_eq!(
            ask("bytes=0-9", 100),
            RangeAnswer::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            ask("bytes=90-200", 100),
            RangeAnswer::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            ask("bytes=10-", 100),
            RangeAnswer::Partial { start: 10, end: 99 }
        );
        assert_eq!(
            ask("bytes=-5", 100),
            RangeAnswer::Partial { start: 95, end: 99 }
        );
        assert_eq!(
            ask("bytes=-500", 100),
            RangeAnswer::Partial { start: 0, end: 99 }
        );
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(ask("bytes=100-", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(ask("bytes=-0", 100), RangeAnswer::Unsatisfiable);
        assert_eq!(ask("bytes=5-1", 100), RangeAnswer::Full);
        assert_eq!(ask("bytes=0-1,5-6", 100), RangeAnswer::Full);
        assert_eq!(ask("items=0-1", 100), RangeAnswer::Full);
        assert_eq!(ask("bytes=x-y", 100), RangeAnswer::Full);
    }

    #[test]
    fn if_range_must_match_a_strong_validator() {
        let mut h = HeaderMap::new();
        h.insert(RANGE, "bytes=0-0".parse().expect("value"));
        h.insert(IF_RANGE, "\"v1\"".parse().expect("value"));
        let strong = HeaderValue::from_static("\"v1\"");
        let weak = HeaderValue::from_static("W/\"v1\"");
        assert_eq!(
            answer(&h, 10, Some(&strong), None),
            RangeAnswer::Partial { start: 0, end: 0 }
        );
        assert_eq!(answer(&h, 10, Some(&weak), None), RangeAnswer::Full);
        assert_eq!(
            answer(&h, 10, Some(&HeaderValue::from_static("\"v2\"")), None),
            RangeAnswer::Full
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn headers(range: &str, if_range: Option<&str>) -> Option<HeaderMap> {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_str(range).ok()?);
        if let Some(v) = if_range {
            h.insert(IF_RANGE, HeaderValue::from_str(v).ok()?);
        }
        Some(h)
    }

    /// Range values a viewer might send: well-formed, near misses, and noise.
    fn range_value() -> impl Strategy<Value = String> {
        let num = prop_oneof![
            Just(String::new()),
            (0u64..40).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("18446744073709551616".to_owned()),
            Just("-1".to_owned()),
            Just(" 3 ".to_owned()),
        ];
        prop_oneof![
            (num.clone(), num).prop_map(|(a, b)| format!("bytes={a}-{b}")),
            "[ -~]{0,24}",
            "bytes=[0-9, -]{0,16}",
        ]
    }

    proptest! {
        /// Whatever the header says, the answer never panics and a partial range lies inside
        /// the object, first byte before last.
        #[test]
        fn a_partial_range_lies_within_the_object(value in range_value(), len in 0u64..64) {
            let Some(h) = headers(&value, None) else { return Ok(()) };
            match answer(&h, len, None, None) {
                RangeAnswer::Partial { start, end } => {
                    prop_assert!(start <= end && end < len, "{value:?} of {len}: {start}-{end}");
                }
                RangeAnswer::Unsatisfiable => {
                    prop_assert!(value.trim().starts_with("bytes="), "{value:?}");
                }
                RangeAnswer::Full => {}
            }
        }

        /// `bytes=a-b` with a <= b < len is honoured exactly.
        #[test]
        fn a_satisfiable_range_is_served_exactly(len in 1u64..10_000, a in 0u64..10_000, b in 0u64..10_000) {
            let (start, end) = (a.min(b) % len, a.max(b) % len);
            let (start, end) = (start.min(end), start.max(end));
            let h = headers(&format!("bytes={start}-{end}"), None).expect("valid value");
            prop_assert_eq!(answer(&h, len, None, None), RangeAnswer::Partial { start, end });
        }

        /// An `If-Range` that is neither the strong ETag nor the Last-Modified date always
        /// gets the whole object.
        #[test]
        fn a_stale_if_range_gets_the_whole_object(value in range_value(), tag in "[a-z0-9]{1,8}", other in "[a-z0-9]{1,8}") {
            prop_assume!(tag != other);
            let etag = HeaderValue::from_str(&format!("\"{tag}\"")).expect("valid");
            let Some(h) = headers(&value, Some(&format!("\"{other}\""))) else { return Ok(()) };
            prop_assert_eq!(answer(&h, 10, Some(&etag), None), RangeAnswer::Full);
            // A weak ETag never validates a range, even when it matches.
            let weak = HeaderValue::from_str(&format!("W/\"{tag}\"")).expect("valid");
            let Some(h) = headers(&value, Some(&format!("W/\"{tag}\""))) else { return Ok(()) };
            prop_assert_eq!(answer(&h, 10, Some(&weak), None), RangeAnswer::Full);
        }
    }
}
