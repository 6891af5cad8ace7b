//! **router** (viewer-request): sends dynamic traffic to the app and everything else to the
//! static bucket, with a single-page-app fallback.
//!
//! - `/api/*`, any method other than GET/HEAD, and requests with a `session` cookie go to the
//!   origin `app`: they are per user, or change state.
//! - Everything else goes to `bucket`. Paths under `/app/` without a file extension are client
//!   routes of the single-page app and are rewritten to `/index.html`, so a deep link like
//!   `/app/settings/profile` loads the app shell instead of a 404.

use edge_sdk::{Error, Method, Outcome, Request, ViewerRequest};

/// The origin for per-user and state-changing traffic.
pub const APP: &str = "app";
/// The origin for static files.
pub const BUCKET: &str = "bucket";

/// The viewer-request handler.
pub fn viewer_request(mut req: Request<ViewerRequest>) -> Result<Outcome, Error> {
    let dynamic = req.path().starts_with("/api/")
        || !matches!(*req.method(), Method::GET | Method::HEAD)
        || req.cookie("session").is_some();
    if dynamic {
        req.set_origin(APP)?;
        return Ok(Outcome::Continue);
    }
    req.set_origin(BUCKET)?;
    if is_client_route(req.path()) {
        req.set_path("/index.html")?;
    }
    Ok(Outcome::Continue)
}

/// `/app/...` without a file extension in its last segment.
fn is_client_route(path: &str) -> bool {
    path.strip_prefix("/app/")
        .is_some_and(|rest| !rest.rsplit('/').next().unwrap_or("").contains('.'))
}

edge_sdk::viewer_request!(viewer_request);

#[cfg(test)]
mod tests {
    use super::*;
    use edge_sdk::testing::TestHost;

    fn run(host: TestHost) -> TestHost {
        let run = host.origins(&[BUCKET, APP]).run_request(viewer_request);
        run.expect_continued().clone()
    }

    #[test]
    fn api_goes_to_app() {
        assert_eq!(
            run(TestHost::viewer_request("/api/users?id=1"))
                .origin
                .as_deref(),
            Some(APP)
        );
    }

    #[test]
    fn writes_and_sessions_go_to_app() {
        assert_eq!(
            run(TestHost::viewer_request("/form").method("POST"))
                .origin
                .as_deref(),
            Some(APP)
        );
        let host = run(TestHost::viewer_request("/").header("cookie", "theme=dark; session=abc"));
        assert_eq!(host.origin.as_deref(), Some(APP));
    }

    #[test]
    fn static_goes_to_bucket_unchanged() {
        let host = run(TestHost::viewer_request("/css/site.css?v=2"));
        assert_eq!(
            (host.origin.as_deref(), host.request.uri.as_str()),
            (Some(BUCKET), "/css/site.css?v=2")
        );
    }

    #[test]
    fn client_routes_fall_back_to_index() {
        let host = run(TestHost::viewer_request("/app/settings/profile?tab=2"));
        assert_eq!(
            (host.origin.as_deref(), host.request.uri.as_str()),
            (Some(BUCKET), "/index.html?tab=2")
        );
        // Real files under /app/ are served as they are.
        assert_eq!(
            run(TestHost::viewer_request("/app/main.js")).request.uri,
            "/app/main.js"
        );
    }
}
