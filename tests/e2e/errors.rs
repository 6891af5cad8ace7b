//! What a viewer sees of a failure: the status line's words and nothing about origins,
//! targets or functions. The detail goes to the log, and to `X-Edge-Error` on a request that
//! carries the debug header.

use anyhow::Result;
use http_body_util::Full;

use crate::harness::{refused_addr, Modules, Reply, TestNode};

const TRAP: &str = r#"(module (memory (export "memory") 1)
  (func (export "viewer-request") (result i32) unreachable))"#;

/// `/app/*` to an unreachable origin named `secret-app`; `/fn/*` runs a trapping function
/// named `secret-fn`. Debug headers on.
async fn node(modules: &Modules) -> Result<TestNode> {
    TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            r#"
{functions}
[origins.secret-app]
type = "http"
targets = ["http://{dead}"]

[[behaviors]]
path = "/fn/*"
origin = "secret-app"
functions = {{ viewer_request = "secret-fn" }}

[[behaviors]]
path = "*"
origin = "secret-app"
"#,
            functions = modules.toml(""),
            dead = refused_addr().await?,
        ),
    )
    .await
}

async fn get(node: &TestNode, path: &str, debug: bool) -> Result<Reply> {
    let mut request = node.request("GET", path);
    if debug {
        request = request.header("x-edge-debug", "1");
    }
    node.send(request.body(Full::default())?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn error_bodies_name_no_origin_or_function() -> Result<()> {
    let modules = Modules::new(&[("secret-fn", TRAP)])?;
    let node = node(&modules).await?;
    for (path, status, body) in [
        ("/app/x", 502, "502 Bad Gateway\n"),
        ("/fn/x", 502, "502 Bad Gateway\n"),
    ] {
        let plain = get(&node, path, false).await?;
        assert_eq!(
            (
                plain.status.as_u16(),
                plain.x_cache(),
                plain.text().as_str()
            ),
            (status, "Error", body),
            "{path}"
        );
        assert!(plain.header("x-edge-error").is_none(), "{path}");
    }
    // A debug request gets the detail in a header; the body stays generic.
    let origin = get(&node, "/app/x", true).await?;
    assert_eq!(origin.text(), "502 Bad Gateway\n");
    let detail = origin.header("x-edge-error").unwrap_or_default();
    assert!(detail.contains("secret-app"), "{detail}");
    let function = get(&node, "/fn/x", true).await?;
    assert_eq!(function.text(), "502 Bad Gateway\n");
    let detail = function.header("x-edge-error").unwrap_or_default();
    assert!(detail.contains("secret-fn"), "{detail}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_requests_still_say_why() -> Result<()> {
    let modules = Modules::new(&[("secret-fn", TRAP)])?;
    let node = node(&modules).await?;
    let post = node
        .send(node.request("POST", "/app/x").body(Full::default())?)
        .await?;
    assert_eq!(post.status.as_u16(), 405);
    assert!(
        post.text()
            .starts_with("405 Method Not Allowed: method POST is not allowed"),
        "{}",
        post.text()
    );
    Ok(())
}
