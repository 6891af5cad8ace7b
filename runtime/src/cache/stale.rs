//! Serving stale: how long past its freshness a stored object may still be served, and on what
//! occasion (RFC 9111 §4.2.4, RFC 5861).
//!
//! Two windows, both measured from the end of freshness:
//! - **while revalidating** (`stale-while-revalidate=N`): the stale copy is served at once and
//!   the origin is asked in the background;
//! - **if error** (`stale-if-error=N`, else the behavior's `cache.stale_if_error`): the stale
//!   copy stands in for an origin that failed (unreachable, timed out, 500/502/503/504).
//!
//! `must-revalidate`, `proxy-revalidate` and `no-cache` close both windows: such a response is
//! never served stale without a successful revalidation (§5.2.2.2, §5.2.2.8, §5.2.2.4). So does
//! `s-maxage`, which implies `proxy-revalidate` for a shared cache (§5.2.2.10), unless the same
//! response grants a window explicitly with `stale-while-revalidate` or `stale-if-error`: the
//! origin that wrote both asked for that window, as `s-maxage=60, stale-while-revalidate=30`
//! does on most CDNs.

use std::time::{Duration, Instant};

use http::HeaderMap;

use super::policy::CacheControl;
use super::store::CachedObject;
use crate::config::CachePolicyConfig;

/// How long past its freshness a stored response may be served stale, per occasion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleWindows {
    /// Served at once while a background revalidation runs.
    pub while_revalidate: Duration,
    /// Served in place of an origin failure.
    pub if_error: Duration,
}

impl StaleWindows {
    /// No stale serving at all.
    pub const NONE: StaleWindows = StaleWindows {
        while_revalidate: Duration::ZERO,
        if_error: Duration::ZERO,
    };

    /// The windows a stored response's headers allow under a behavior's policy, whose
    /// `stale_if_error` applies when the response names no `stale-if-error` of its own.
    pub fn of(headers: &HeaderMap, policy: &CachePolicyConfig) -> Self {
        // The targeted field (`CDN-Cache-Control`), when present, governs the windows too.
        let cc = crate::cache::policy::directives(headers, policy).cc;
        StaleWindows::from_directives(&cc, policy.stale_if_error)
    }

    /// The windows these response directives allow, with `default_if_error` standing in for
    /// an absent `stale-if-error`.
    pub fn from_directives(cc: &CacheControl, default_if_error: Duration) -> Self {
        if cc.must_revalidate || cc.proxy_revalidate || cc.no_cache {
            return StaleWindows::NONE;
        }
        let explicit = cc.stale_while_revalidate.is_some() || cc.stale_if_error.is_some();
        if cc.s_maxage.is_some() && !explicit {
            return StaleWindows::NONE;
        }
        StaleWindows {
            while_revalidate: Duration::from_secs(cc.stale_while_revalidate.unwrap_or(0)),
            if_error: cc
                .stale_if_error
                .map_or(default_if_error, Duration::from_secs),
        }
    }
}

/// Whether `object`, stale at `now`, is at most `window` past its freshness.
pub fn within(object: &CachedObject, window: Duration, now: Instant) -> bool {
    !window.is_zero()
        && now.saturating_duration_since(object.stored_at) < object.ttl.saturating_add(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::header::CACHE_CONTROL;
    use http::StatusCode;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn windows_with(cache_control: &str, default_if_error: Duration) -> StaleWindows {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, cache_control.parse().expect("value"));
        StaleWindows::from_directives(&CacheControl::parse(&headers), default_if_error)
    }

    fn windows(cache_control: &str) -> StaleWindows {
        windows_with(cache_control, DAY)
    }

    #[test]
    fn revalidation_directives_forbid_stale() {
        for cc in [
            "max-age=2, must-revalidate",
            "max-age=2, proxy-revalidate",
            "max-age=2, no-cache",
            "max-age=2, s-maxage=2",
            "max-age=2, must-revalidate, stale-if-error=60",
            "no-cache, stale-while-revalidate=60",
        ] {
            assert_eq!(windows(cc), StaleWindows::NONE, "{cc}");
        }
    }

    #[test]
    fn response_directives_set_the_windows() {
        assert_eq!(
            windows("max-age=2"),
            StaleWindows {
                while_revalidate: Duration::ZERO,
                if_error: DAY
            },
            "the behavior's default"
        );
        assert_eq!(
            windows("max-age=1, stale-while-revalidate=30, stale-if-error=60"),
            StaleWindows {
                while_revalidate: Duration::from_secs(30),
                if_error: Duration::from_secs(60)
            }
        );
        assert_eq!(
            windows("max-age=2, stale-if-error=0").if_error,
            Duration::ZERO,
            "the response's own window replaces the default"
        );
        assert_eq!(
            windows("s-maxage=60, stale-while-revalidate=30").while_revalidate,
            Duration::from_secs(30),
            "an explicit window beats s-maxage's implied proxy-revalidate"
        );
        let off = windows_with("max-age=2", Duration::ZERO);
        assert_eq!(off, StaleWindows::NONE, "stale_if_error = \"0s\"");
    }

    #[test]
    fn within_counts_from_the_end_of_freshness() {
        let object = CachedObject::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::new(),
            Duration::from_secs(60),
            0,
        );
        let stale_by = |past: u64| object.stored_at + object.ttl + Duration::from_secs(past);
        let window = Duration::from_secs(30);
        assert!(within(&object, window, stale_by(0)));
        assert!(within(&object, window, stale_by(29)));
        assert!(!within(&object, window, stale_by(31)));
        assert!(!within(&object, Duration::ZERO, stale_by(0)));
    }
}
