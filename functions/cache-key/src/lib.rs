//! **cache-key** (viewer-request): one cached object per page and device class, whatever
//! tracking parameters or browser a viewer comes with.
//!
//! - Tracking parameters (`utm_*`, `fbclid`, `gclid`) are removed from the query, so they
//!   neither split the cache nor reach the origin; the rest is sorted by name.
//! - `User-Agent` is bucketed into `desktop`, `mobile` or `tablet`; the bucket (not the raw
//!   header, which has thousands of values) goes into the cache key and to the origin as
//!   `X-Device-Class`, so the origin can tailor the page per class and the cache keeps one copy
//!   per class.

use edge_sdk::http::header::USER_AGENT;
use edge_sdk::{Error, Outcome, Request, ViewerRequest};

/// The viewer-request handler.
pub fn viewer_request(mut req: Request<ViewerRequest>) -> Result<Outcome, Error> {
    let mut pairs: Vec<(&str, &str)> = req
        .query_pairs()
        .filter(|(name, _)| !is_tracking(name))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let query: Vec<String> = pairs
        .iter()
        .map(|(n, v)| {
            if v.is_empty() {
                (*n).to_owned()
            } else {
                format!("{n}={v}")
            }
        })
        .collect();
    let class = device_class(req.header(USER_AGENT).unwrap_or(""));
    req.set_query(Some(&query.join("&")))?;
    req.set_header("x-device-class", class)?;
    req.add_to_cache_key(&format!("device={class}"))?;
    Ok(Outcome::Continue)
}

fn is_tracking(name: &str) -> bool {
    name.starts_with("utm_") || name == "fbclid" || name == "gclid"
}

/// `desktop`, `mobile` or `tablet` from a User-Agent string.
pub fn device_class(user_agent: &str) -> &'static str {
    let ua = user_agent.to_ascii_lowercase();
    if ua.contains("ipad")
        || ua.contains("tablet")
        || (ua.contains("android") && !ua.contains("mobile"))
    {
        "tablet"
    } else if ua.contains("mobi") || ua.contains("iphone") || ua.contains("android") {
        "mobile"
    } else {
        "desktop"
    }
}

edge_sdk::viewer_request!(viewer_request);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_sdk::testing::TestHost;

    #[test]
    fn strips_tracking_and_sorts() {
        let run = TestHost::viewer_request("/p?utm_source=x&b=2&fbclid=y&a=1&gclid=z&utm_medium=m")
            .run_request(viewer_request);
        assert_eq!(run.expect_continued().request.uri, "/p?a=1&b=2");
    }

    #[test]
    fn only_tracking_leaves_no_query() {
        let run = TestHost::viewer_request("/p?utm_source=x").run_request(viewer_request);
        assert_eq!(run.host.request.uri, "/p");
    }

    #[test]
    fn device_class_goes_into_key_and_header() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
        let run = TestHost::viewer_request("/")
            .header("user-agent", iphone)
            .run_request(viewer_request);
        let host = run.expect_continued();
        assert_eq!(host.cache_key_parts, vec!["device=mobile".to_string()]);
        assert_eq!(host.request_header("x-device-class"), Some("mobile"));
        // The object the node looks up: one per page and device class.
        assert_eq!(run.cache_key(), "example.com/\ndevice=mobile");
    }

    #[test]
    fn classes() {
        assert_eq!(
            device_class("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)"),
            "tablet"
        );
        assert_eq!(
            device_class("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari"),
            "mobile"
        );
        assert_eq!(
            device_class("Mozilla/5.0 (Linux; Android 14; SM-X910) Safari"),
            "tablet"
        );
        assert_eq!(
            device_class("Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"),
            "desktop"
        );
        assert_eq!(device_class(""), "desktop");
    }
}
