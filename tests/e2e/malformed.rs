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

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_duplicate_host_is_refused() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let node = node_for(&origin).await?;
    for request in [
        &b"GET /api/x HTTP/1.1\r\n\r\n"[..],
        b"GET /api/x HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nhost: a.test\r\nhost: a.test\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nhost: user@a.test\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nhost: a.test:http\r\n\r\n",
    ] {
        let reply = raw_exchange(node.node.addr(), request)
            .await?
            .expect("a 400, not a closed connection");
        assert_eq!(
            reply.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(request),
            reply.head
        );
    }
    assert_eq!(origin.count(), 0, "no refused request reaches the origin");
    // HTTP/1.0 has no Host requirement.
    let old = raw_exchange(node.node.addr(), b"GET /api/x HTTP/1.0\r\n\r\n")
        .await?
        .expect("a response");
    assert_eq!(old.status, 200);
    still_serving(&node).await
}

#[tokio::test(flavor = "multi_thread")]
async fn absolute_form_target_host_wins_in_key_and_forwarding() -> Result<()> {
    let origin = Origin::start(|r| async move {
        let host = r.header("x-forwarded-host").unwrap_or("none").to_owned();
        crate::harness::reply(200, &[("cache-control", "max-age=60")], host)
    })
    .await?;
    let node = node_for(&origin).await?;
    // RFC 9112 §3.2.2: the target's authority replaces Host.
    let absolute = raw_exchange(
        node.node.addr(),
        b"GET http://a.test/page HTTP/1.1\r\nhost: b.test\r\n\r\n",
    )
    .await?
    .expect("a response");
    assert_eq!(
        (
            absolute.status,
            absolute.header("x-cache"),
            absolute.text().as_str()
        ),
        (200, Some("Miss"), "a.test")
    );
    // Stored under a.test: an origin-form request for a.test hits it, one for b.test does not.
    let same = raw_exchange(
        node.node.addr(),
        b"GET /page HTTP/1.1\r\nhost: a.test\r\n\r\n",
    )
    .await?
    .expect("a response");
    assert_eq!(
        (same.header("x-cache"), same.text().as_str()),
        (Some("Hit"), "a.test")
    );
    let other = raw_exchange(
        node.node.addr(),
        b"GET /page HTTP/1.1\r\nhost: b.test\r\n\r\n",
    )
    .await?
    .expect("a response");
    assert_eq!(
        (other.header("x-cache"), other.text().as_str()),
        (Some("Miss"), "b.test")
    );
    Ok(())
}
