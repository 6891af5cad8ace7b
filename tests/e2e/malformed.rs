//! Malformed viewer requests over raw sockets: each gets a 4xx (or the connection is closed),
//! is blamed on the viewer, never reaches the origin as something else, and the node keeps
//! serving: a normal request on a new connection succeeds afterwards.

use anyhow::Result;

use crate::harness::{raw_exchange, Origin, RawViewer, TestNode};

/// A node with `/api/*` (every method) uncached to `origin`.
async fn node_for(origin: &Origin) -> Result<TestNode> {
    TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = ["{}"]

[[behaviors]]
path = "*"
origin = "app"
methods = ["GET", "HEAD", "POST", "PUT"]
cache = {{ default_ttl = "0s", max_ttl = "60s" }}
"#,
        origin.url()
    ))
    .await
}

/// The node still answers a well-formed request on a new connection.
async fn still_serving(node: &TestNode) -> Result<()> {
    let reply = raw_exchange(
        node.node.addr(),
        b"GET /api/ok HTTP/1.1\r\nhost: edge.test\r\n\r\n",
    )
    .await?
    .expect("a well-formed request gets a response");
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_chunked_body_is_the_viewers_fault() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let node = node_for(&origin).await?;
    let mut viewer = RawViewer::connect(node.node.addr()).await?;
    viewer
        .send(
            b"POST /api/upload HTTP/1.1\r\nhost: edge.test\r\ntransfer-encoding: chunked\r\n\r\n\
              zz\r\nhello\r\n0\r\n\r\n",
        )
        .await?;
    let reply = viewer.response().await?;
    assert_eq!(
        (reply.status, reply.header("x-cache")),
        (400, Some("Error")),
        "{}{}",
        reply.head,
        reply.text()
    );
    still_serving(&node).await
}
