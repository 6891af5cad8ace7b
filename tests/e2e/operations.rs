//! Operations: graceful shutdown finishes in-flight requests and then stops accepting; the
//! health endpoints for orchestrators (`/readyz` says 503 from the moment shutdown begins); the
//! debug header explains how a request was handled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use http_body_util::Full;
use tokio::sync::Notify;

use crate::harness::{reply, Origin, TestNode, ADMIN_TOKEN};

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_in_flight_requests() -> Result<()> {
    // The origin tells the test when it has the request, then holds its answer until released:
    // shutdown starts while the request is certainly in flight.
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let origin = Origin::start({
        let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
        move |_| {
            let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
            async move {
                arrived.notify_one();
                release.notified().await;
                reply(200, &[], "finished")
            }
        }
    })
    .await?;
    let TestNode { node, .. } = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await?;
    let addr = node.addr();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            let response = client.get(format!("http://{addr}/slow").parse()?).await?;
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await?
                .to_bytes();
            anyhow::Ok(body)
        }
    });
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .context("the node never forwarded the request to the origin")?;
    let shutdown = tokio::spawn(async move { node.shutdown().await });
    // Shutdown must wait for the held request: it cannot finish before the release.
    tokio::task::yield_now().await;
    assert!(
        !shutdown.is_finished(),
        "shutdown finished while a request was in flight"
    );
    release.notify_one();
    let body = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .context("the in-flight request did not complete")???;
    assert_eq!(&body[..], b"finished", "the in-flight request completed");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .context("shutdown did not finish after the last request")??;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after shutdown"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_header_explains_how_the_request_was_handled() -> Result<()> {
    use crate::functions::{HEADERS, ROUTER};
    use crate::harness::{function, Site};
    let site = Site::new(&[("index.html", "shell")])?;
    let node = TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            r#"
{router}{headers}
[origins.bucket]
type = "static"
root = {root}

[origins.app]
type = "http"
targets = ["http://127.0.0.1:9"]

[[behaviors]]
path = "*"
origin = "bucket"
functions = {{ viewer_request = "router", origin_response = "headers" }}
"#,
            router = function("router", ROUTER),
            headers = function("headers", HEADERS),
            root = site.root()
        ),
    )
    .await?;

    let debug = node
        .send(
            node.request("GET", "/app/profile")
                .header("x-edge-debug", "1")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(
        (debug.status.as_u16(), debug.text().as_str()),
        (200, "shell")
    );
    assert_eq!(debug.header("x-edge-behavior"), Some("*"));
    assert_eq!(debug.header("x-edge-origin"), Some("bucket"));
    let key = debug.header("x-edge-cache-key").unwrap_or_default();
    assert!(
        key.ends_with("/index.html"),
        "the key follows the rewritten path: {key}"
    );
    let functions = debug.header("x-edge-functions").unwrap_or_default();
    assert!(
        functions.contains("viewer-request=router: uri /app/profile -> /index.html, origin bucket"),
        "{functions}"
    );
    assert!(
        functions.contains("origin-response=headers: set strict-transport-security"),
        "{functions}"
    );
    let timing = debug.header("server-timing").unwrap_or_default();
    for stage in [
        "routing;dur=",
        "viewer-request;dur=",
        "cache;dur=",
        "origin;dur=",
        "origin-response;dur=",
        "total;dur=",
    ] {
        assert!(timing.contains(stage), "{stage} in {timing}");
    }

    let plain = node.get("/app/settings").await?;
    assert_eq!(plain.x_cache(), "Hit");
    assert!(
        plain.header("server-timing").is_none() && plain.header("x-edge-behavior").is_none(),
        "no debug headers unless asked"
    );
    Ok(())
}

/// A node with the admin API behind a token, in front of `origin`.
async fn node_with_admin(origin: &Origin) -> Result<TestNode> {
    TestNode::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\
         [origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn health_endpoints_answer_probes_without_a_token() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let node = node_with_admin(&origin).await?;
    for path in ["/healthz", "/readyz"] {
        let probe = node.admin_as(None, "GET", path, "").await?;
        assert_eq!(probe.status, 200, "{path}: {}", probe.text());
        // The state and nothing else: no version, no paths, no config.
        assert_eq!(probe.text(), "ok\n", "{path}");
        assert_eq!(probe.header("cache-control"), Some("no-store"), "{path}");
    }
    // Only the probes are open: every other route still needs the token.
    let metrics = node.admin_as(None, "GET", "/metrics", "").await?;
    assert_eq!(metrics.status, 401);
    assert_eq!(origin.count(), 0, "probes never reach an origin");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_fails_once_shutdown_begins_while_requests_drain() -> Result<()> {
    let arrived = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let origin = Origin::start({
        let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
        move |_| {
            let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
            async move {
                arrived.notify_one();
                release.notified().await;
                reply(200, &[], "finished")
            }
        }
    })
    .await?;
    let test_node = node_with_admin(&origin).await?;
    let admin = test_node.node.admin_addr().context("admin is on")?;
    assert_eq!(
        test_node.admin_as(None, "GET", "/readyz", "").await?.status,
        200
    );
    let in_flight = tokio::spawn({
        let url = test_node.url("/slow");
        async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Full<bytes::Bytes>>();
            let response = client.get(url.parse()?).await?;
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await?
                .to_bytes();
            anyhow::Ok(body)
        }
    });
    tokio::time::timeout(Duration::from_secs(10), arrived.notified())
        .await
        .context("the node never forwarded the request to the origin")?;

    // --- shutdown begins: not ready, still alive, while the held request drains ---
    let probe = |path: &'static str| {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<bytes::Bytes>>();
        async move {
            let response = client.get(format!("http://{admin}{path}").parse()?).await?;
            let status = response.status().as_u16();
            let body = http_body_util::BodyExt::collect(response.into_body())
                .await?
                .to_bytes();
            anyhow::Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
    };
    let TestNode { node, .. } = test_node;
    let shutdown = tokio::spawn(async move { node.shutdown().await });
    // The shutdown signal travels through a spawned task: wait (bounded) for /readyz to see it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = probe("/readyz").await?;
        if status != 200 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status, 503, "/readyz during the drain: {body}");
    assert_eq!(body, "not ready: shutting down\n");
    assert_eq!(probe("/healthz").await?.0, 200, "alive while draining");
    assert!(
        !shutdown.is_finished(),
        "the held request keeps the node up"
    );

    release.notify_one();
    let body = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .context("the in-flight request did not complete")???;
    assert_eq!(&body[..], b"finished");
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .context("shutdown did not finish after the last request")??;
    assert!(
        tokio::net::TcpStream::connect(admin).await.is_err(),
        "the admin API closes once viewers are drained"
    );
    Ok(())
}
