//! **responder** (viewer-request): answers some requests at the edge, without the cache or an
//! origin.
//!
//! - Redirects: moved pages get 301, temporary campaigns 302, with `Location` keeping the
//!   viewer's query. The table is the node's key-value store [`REDIRECT_STORE`] when it has the
//!   path (so operators change redirects through the admin API, without redeploying), else the
//!   built-in [`REDIRECTS`].
//! - 403 for blocked paths ([`BLOCKED_PREFIXES`]: admin panels, VCS folders, probes) and for
//!   viewers in blocked IP ranges ([`BLOCKED_RANGES`], CIDR notation, IPv4 and IPv6).
//! - A maintenance page (503 with `Retry-After`) for site sections whose maintenance flag is on
//!   ([`MAINTENANCE`]); flip it and redeploy the function to take a section offline at the edge.

use std::net::IpAddr;

use edge_sdk::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use edge_sdk::{kv, log, redirect, Error, Outcome, Request, Response, StatusCode, ViewerRequest};

/// The key-value store read first: key = exact path, value = `"301 /target"` (or 302, 307,
/// 308). A path it does not have, or a node without the store, falls back to [`REDIRECTS`].
pub const REDIRECT_STORE: &str = "redirects";

/// `(from, to, status)`: exact paths.
pub const REDIRECTS: &[(&str, &str, StatusCode)] = &[
    ("/old-pricing", "/pricing", StatusCode::MOVED_PERMANENTLY),
    (
        "/blog/2019/launch",
        "/blog/launch",
        StatusCode::MOVED_PERMANENTLY,
    ),
    ("/black-friday", "/sale", StatusCode::FOUND),
];

/// Paths starting with these are refused.
pub const BLOCKED_PREFIXES: &[&str] = &["/admin", "/.git", "/.env", "/wp-login.php"];

/// Viewers from these ranges are refused.
pub const BLOCKED_RANGES: &[&str] = &["203.0.113.0/24", "198.51.100.7/32", "2001:db8:dead::/48"];

/// Section prefixes whose maintenance flag is on.
pub const MAINTENANCE: &[&str] = &["/checkout/"];

const MAINTENANCE_PAGE: &str = "<!doctype html><title>Back soon</title><h1>Back soon</h1><p>This part of the site is down for maintenance. Please try again in a few minutes.</p>\n";

/// The viewer-request handler.
pub fn viewer_request(req: Request<ViewerRequest>) -> Result<Outcome, Error> {
    let path = req.path();
    if let Some((status, to)) = find_redirect(path)? {
        let location = match req.query() {
            Some(q) if to.contains('?') => format!("{to}&{q}"),
            Some(q) => format!("{to}?{q}"),
            None => to,
        };
        return Ok(redirect(status, &location).into());
    }
    let ip = req.client_ip();
    if BLOCKED_PREFIXES.iter().any(|p| path.starts_with(p))
        || BLOCKED_RANGES.iter().any(|r| in_range(ip, r))
    {
        return Ok(Response::builder(StatusCode::FORBIDDEN)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(CACHE_CONTROL, "no-store")
            .body("403 Forbidden\n")
            .into());
    }
    if MAINTENANCE.iter().any(|p| path.starts_with(p)) {
        return Ok(Response::builder(StatusCode::SERVICE_UNAVAILABLE)
            .header(CONTENT_TYPE, "text/html; charset=utf-8")
            .header(RETRY_AFTER, "300")
            .header(CACHE_CONTROL, "no-store")
            .body(MAINTENANCE_PAGE)
            .into());
    }
    Ok(Outcome::Continue)
}

/// Where `path` redirects to, and with which status: the store's entry if it has a valid one,
/// else the built-in table's.
fn find_redirect(path: &str) -> Result<Option<(StatusCode, String)>, Error> {
    if let Some(entry) = kv::get(REDIRECT_STORE, path)? {
        match parse_redirect(&entry) {
            Some(redirect) => return Ok(Some(redirect)),
            None => log::warn(format_args!(
                "ignoring redirect {path:?} => {entry:?} from store {REDIRECT_STORE:?}: expected \"301 /target\""
            )),
        }
    }
    Ok(REDIRECTS
        .iter()
        .find(|(from, _, _)| *from == path)
        .map(|(_, to, status)| (*status, (*to).to_owned())))
}

/// `"301 /target"` → `(301, "/target")`; other statuses than 301, 302, 307 and 308, an empty
/// target or one with control characters (not a valid `Location`) is `None`.
pub fn parse_redirect(entry: &str) -> Option<(StatusCode, String)> {
    let (status, target) = entry.trim().split_once(' ')?;
    let status = status
        .parse::<u16>()
        .ok()
        .filter(|s| matches!(s, 301 | 302 | 307 | 308))
        .and_then(|s| StatusCode::from_u16(s).ok())?;
    let target = target.trim();
    (!target.is_empty() && !target.chars().any(char::is_control))
        .then(|| (status, target.to_owned()))
}

/// Whether `ip` lies in `cidr` (`a.b.c.d/n` or `x::/n`); a malformed range matches nothing.
pub fn in_range(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

edge_sdk::viewer_request!(viewer_request);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_sdk::testing::TestHost;

    #[test]
    fn redirects_keep_query() {
        let run = TestHost::viewer_request("/old-pricing?plan=pro").run_request(viewer_request);
        let reply = run.expect_response();
        assert_eq!(
            (reply.status.as_u16(), reply.header("location")),
            (301, Some("/pricing?plan=pro"))
        );
        let run = TestHost::viewer_request("/black-friday").run_request(viewer_request);
        assert_eq!(run.responded().map(|r| r.status.as_u16()), Some(302));
    }

    #[test]
    fn redirects_from_the_store_come_first() {
        let host = || {
            TestHost::viewer_request("/").kv(
                REDIRECT_STORE,
                &[
                    ("/old-pricing", "302 /pricing-2025"),
                    ("/docs", "301 /manual?v=2"),
                    ("/black-friday", "moved"),
                ],
            )
        };
        let with = |uri: &str| host().uri(uri).run_request(viewer_request);
        let run = with("/old-pricing?plan=pro");
        let reply = run.expect_response();
        assert_eq!(
            (reply.status.as_u16(), reply.header("location")),
            (302, Some("/pricing-2025?plan=pro"))
        );
        let run = with("/docs?page=3");
        let reply = run.expect_response();
        assert_eq!(
            (reply.status.as_u16(), reply.header("location")),
            (301, Some("/manual?v=2&page=3"))
        );
        // A malformed entry is logged and the built-in table answers.
        let run = with("/black-friday");
        assert_eq!(run.responded().map(|r| r.status.as_u16()), Some(302));
        assert_eq!(
            run.responded().and_then(|r| r.header("location")),
            Some("/sale")
        );
        assert!(run
            .host
            .logs
            .iter()
            .any(|(_, l)| l.contains("ignoring redirect")));
        // Paths the store lacks fall back to the built-in table.
        let run = with("/blog/2019/launch");
        assert_eq!(run.responded().map(|r| r.status.as_u16()), Some(301));
        with("/pricing").expect_continued();
    }

    #[test]
    fn redirect_entries() {
        assert_eq!(
            parse_redirect("301 /a"),
            Some((StatusCode::MOVED_PERMANENTLY, "/a".into()))
        );
        assert_eq!(
            parse_redirect(" 308  /a "),
            Some((StatusCode::PERMANENT_REDIRECT, "/a".into()))
        );
        assert_eq!(parse_redirect("200 /a"), None);
        assert_eq!(parse_redirect("301"), None);
        assert_eq!(parse_redirect("301 /a\nx: y"), None);
    }

    #[test]
    fn blocked_paths_and_ranges() {
        let run = TestHost::viewer_request("/admin/users").run_request(viewer_request);
        assert_eq!(run.responded().map(|r| r.status.as_u16()), Some(403));
        let run = TestHost::viewer_request("/")
            .client_ip("203.0.113.77")
            .run_request(viewer_request);
        assert_eq!(run.responded().map(|r| r.status.as_u16()), Some(403));
        let run = TestHost::viewer_request("/")
            .client_ip("203.0.114.1")
            .run_request(viewer_request);
        run.expect_continued();
    }

    #[test]
    fn maintenance_page() {
        let run = TestHost::viewer_request("/checkout/cart").run_request(viewer_request);
        let reply = run.expect_response();
        assert_eq!(
            (reply.status.as_u16(), reply.header("retry-after")),
            (503, Some("300"))
        );
    }

    #[test]
    fn ranges() {
        assert!(in_range(
            "198.51.100.7".parse().expect("ip"),
            "198.51.100.7/32"
        ));
        assert!(!in_range(
            "198.51.100.8".parse().expect("ip"),
            "198.51.100.7/32"
        ));
        assert!(in_range(
            "2001:db8:dead:1::1".parse().expect("ip"),
            "2001:db8:dead::/48"
        ));
        assert!(in_range("10.1.2.3".parse().expect("ip"), "0.0.0.0/0"));
        assert!(!in_range("10.1.2.3".parse().expect("ip"), "garbage"));
    }
}
