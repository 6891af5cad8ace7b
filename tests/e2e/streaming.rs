//! Streaming: viewers get bytes as the origin sends them, while the object is stored; objects
//! over `max_object_size` pass through unstored.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use edge_runtime::body::EdgeBody;
use http::Response;
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;

use crate::harness::{reply, Origin, TestNode};

#[tokio::test(flavor = "multi_thread")]
async fn viewer_gets_first_bytes_before_origin_finishes() -> Result<()> {
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let origin = Origin::start(move |_| {
        let gate = Arc::clone(&gate);
        async move {
            let (tx, body) = EdgeBody::channel(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Bytes::from_static(b"first;"))).await;
                gate.notified().await;
                let _ = tx.send(Ok(Bytes::from_static(b"second"))).await;
            });
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert("cache-control", "max-age=60".parse().expect("value"));
            response
        }
    })
    .await?;
    let node = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await?;

    let response = node
        .send_streaming(node.request("GET", "/s").body(Full::default())?)
        .await?;
    assert_eq!(response.headers()["x-cache"], "Miss");
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .context("the first chunk must arrive while the origin is still sending")?
        .context("body ended early")??;
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"first;"[..]));
    release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await??
        .to_bytes();
    assert_eq!(&rest[..], b"second");

    // The object was stored whole while it streamed: the viewer's body ends only once the
    // object is stored, so the next request is a hit (a miss would wait on the spent gate).
    let hit = node.get("/s").await?;
    assert_eq!(
        (hit.x_cache(), hit.text().as_str()),
        ("Hit", "first;second")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_objects_pass_through_unstored() -> Result<()> {
    const SIZE: usize = 200 * 1024;
    let origin = Origin::start(|r| async move {
        if r.uri == "/sized" {
            reply(200, &[("cache-control", "max-age=60")], vec![b'a'; SIZE])
        } else {
            // No Content-Length: the node only learns the size while streaming.
            let (tx, body) = EdgeBody::channel(4);
            tokio::spawn(async move {
                for _ in 0..(SIZE / 8192) {
                    if tx.send(Ok(Bytes::from(vec![b'b'; 8192]))).await.is_err() {
                        break;
                    }
                }
            });
            let mut response = Response::new(body);
            response
                .headers_mut()
                .insert("cache-control", "max-age=60".parse().expect("value"));
            response
        }
    })
    .await?;
    let node = TestNode::start(&format!(
        "[cache]\nmax_size = \"1 MiB\"\nmax_object_size = \"64 KiB\"\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await?;
    for path in ["/sized", "/chunked"] {
        for _ in 0..2 {
            let r = node.get(path).await?;
            assert_eq!(
                (r.status.as_u16(), r.x_cache(), r.body.len()),
                (200, "Miss", SIZE),
                "{path}"
            );
        }
    }
    assert_eq!(
        origin.count(),
        4,
        "objects over max_object_size are fetched every time"
    );
    Ok(())
}
