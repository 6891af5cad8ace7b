//! Operations: graceful shutdown finishes in-flight requests and then stops accepting; the
//! debug header explains how a request was handled.

use std::time::Duration;

use anyhow::Result;
use http_body_util::Full;

use crate::harness::{reply, Origin, TestNode};

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_finishes_in_flight_requests() -> Result<()> {
    let origin = Origin::start(|_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        reply(200, &[], "finished")
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
    // Shut down once the origin has the request, i.e. the request is in flight.
    while origin.count() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await;
    assert_eq!(
        &in_flight.await??[..],
        b"finished",
        "the in-flight request completed"
    );
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
