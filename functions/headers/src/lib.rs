//! **headers** (origin-response): what every response from the origin should carry, applied
//! once before the cache stores it, so hits pay nothing.
//!
//! - Security headers: `Strict-Transport-Security`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy`, and a `Content-Security-Policy` unless the origin sent its own.
//! - Hashed static assets (`app.3f9a2b1c.js`: the name changes whenever the content does) are
//!   cached for a year and marked `immutable`.
//! - An origin 404 gets a friendly HTML page instead of the origin's bare error.

use std::time::Duration;

use edge_sdk::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use edge_sdk::{Error, OriginResponse, Request, Response, StatusCode};

/// How long hashed assets are cached.
pub const HASHED_ASSET_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

const NOT_FOUND_PAGE: &str = "<!doctype html><title>Not found</title><h1>We could not find that page</h1><p><a href=\"/\">Go to the home page</a></p>\n";

/// The origin-response handler.
pub fn origin_response(
    req: Request<OriginResponse>,
    mut resp: Response<OriginResponse>,
) -> Result<(), Error> {
    resp.set_header(
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    )?;
    resp.set_header("x-content-type-options", "nosniff")?;
    resp.set_header("referrer-policy", "strict-origin-when-cross-origin")?;
    if resp.header(CONTENT_SECURITY_POLICY).is_none() {
        resp.set_header(CONTENT_SECURITY_POLICY, "default-src 'self'")?;
    }
    let status = resp.status();
    if status == StatusCode::OK && is_hashed_asset(req.path()) {
        resp.set_ttl(HASHED_ASSET_TTL)?;
        resp.set_header(CACHE_CONTROL, "public, max-age=31536000, immutable")?;
    }
    if status == StatusCode::NOT_FOUND {
        resp.set_body(NOT_FOUND_PAGE)?;
        resp.set_header(CONTENT_TYPE, "text/html; charset=utf-8")?;
    }
    Ok(())
}

/// A last segment like `name.<8 or more hex digits>.ext`.
pub fn is_hashed_asset(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or("");
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3 && {
        let hash = parts[parts.len() - 2];
        hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

edge_sdk::origin_response!(origin_response);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_sdk::testing::TestHost;

    #[test]
    fn adds_security_headers_and_keeps_origin_csp() {
        let run = TestHost::origin_response("/", 200)
            .response_header("content-security-policy", "default-src *")
            .run_response(origin_response);
        let resp = run.expect_continued().response.as_ref().expect("response");
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert!(resp.header("strict-transport-security").is_some());
        assert_eq!(
            resp.header("content-security-policy"),
            Some("default-src *")
        );
        assert_eq!(run.host.ttl, None);
    }

    #[test]
    fn hashed_assets_get_a_year() {
        let run =
            TestHost::origin_response("/assets/app.3f9a2b1c.js", 200).run_response(origin_response);
        let host = run.expect_continued();
        assert_eq!(host.ttl, Some(HASHED_ASSET_TTL.as_secs()));
        let resp = host.response.as_ref().expect("response");
        assert_eq!(
            resp.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
    }

    #[test]
    fn friendly_404() {
        let run = TestHost::origin_response("/nope", 404)
            .response_body(b"not found")
            .run_response(origin_response);
        let resp = run.expect_continued().response.as_ref().expect("response");
        assert!(resp.text().contains("We could not find that page"));
        assert_eq!(
            resp.header("content-type"),
            Some("text/html; charset=utf-8")
        );
    }

    #[test]
    fn hashed_names() {
        assert!(is_hashed_asset("/a/app.3f9a2b1c.js"));
        assert!(is_hashed_asset("/style.0123456789abcdef.css"));
        assert!(!is_hashed_asset("/app.js"));
        assert!(!is_hashed_asset("/app.v2.js"));
        assert!(!is_hashed_asset("/app.3f9a2b1x.js"));
    }
}
