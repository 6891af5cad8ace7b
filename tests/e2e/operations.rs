//! Operations: graceful shutdown finishes in-flight requests and then stops accepting; the
//! debug header explains how a request was handled.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use http_body_util::Full;
use tokio::sync::Notify;

use crate::harness::{reply, Origin, TestNode};

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
