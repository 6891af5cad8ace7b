//! The dynamic (http) origin: what it receives, balancing, failover, timeouts, errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use edge_runtime::body::EdgeBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::{black_hole, refused_addr, reply, Origin, TestNode};

/// A node whose `/api/*` behavior sends every method to these targets, uncached.
async fn node_for(targets: &[String], extra: &str) -> Result<TestNode> {
    let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = [{}]
{extra}

[[behaviors]]
path = "/api/*"
origin = "app"
methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
cache = {{ default_ttl = "0s", max_ttl = "60s" }}
"#,
        targets.join(", ")
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_method_body_and_headers_with_proxy_headers() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let node = node_for(&[origin.url()], "").await?;
    let r = node
        .send(
            node.request("POST", "/api/items?q=1")
                .header("x-custom", "kept")
                .header("connection", "x-hop")
                .header("x-hop", "dropped")
                .header("x-forwarded-for", "203.0.113.9")
                .body(Full::new(Bytes::from("payload")))?,
        )
        .await?;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok"));
    assert!(
        r.header("via").is_some_and(|v| v.contains("1.1 edge")),
        "response Via: {:?}",
        r.header("via")
    );

    let got = origin.last();
    assert_eq!(got.method, http::Method::POST);
    assert_eq!(got.uri, "/api/items?q=1");
    assert_eq!(&got.body[..], b"payload");
    assert_eq!(got.header("x-custom"), Some("kept"));
    assert_eq!(
        got.header("x-hop"),
        None,
        "headers listed in Connection are hop-by-hop"
    );
    assert_eq!(
        got.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert!(got.header("via").is_some_and(|v| v.contains("1.1 edge")));
    assert_eq!(got.header("host"), Some(origin.addr.to_string().as_str()));
    assert_eq!(
        got.header("x-forwarded-host"),
        Some(node.node.addr().to_string().as_str())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_earlier_hop_of_x_forwarded_for_is_kept() -> Result<()> {
    // Two proxies before the node each added a line of their own: one list (RFC 9110 §5.3).
    let origin = Origin::fixed("ok", &[]).await?;
    let node = node_for(&[origin.url()], "").await?;
    let r = node
        .send(
            node.request("GET", "/api/hops")
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-for", "198.51.100.7, 192.0.2.1")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(r.status.as_u16(), 200);
    let got = origin.last();
    assert_eq!(
        got.headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect::<Vec<_>>(),
        ["203.0.113.9, 198.51.100.7, 192.0.2.1, 127.0.0.1"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn large_request_body_is_streamed_through() -> Result<()> {
    // The origin reports its first body chunk to the test, then reads the rest and answers
    // with the byte count. The viewer sends the rest only after that report: a node that read
    // the whole body before forwarding it would never let the report happen.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let origin_addr = listener.local_addr()?;
    let (first_tx, mut first_rx) = tokio::sync::mpsc::channel::<usize>(1);
    let origin = tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let first_tx = first_tx.clone();
            async move {
                let mut body = req.into_body();
                let mut total = 0;
                let mut reported = false;
                while let Some(frame) = body.frame().await {
                    let Ok(data) = frame?.into_data() else {
                        continue;
                    };
                    total += data.len();
                    if !reported {
                        reported = true;
                        let _ = first_tx.send(total).await;
                    }
                }
                Ok::<_, hyper::Error>(reply(200, &[], total.to_string()))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
    let node = node_for(&[format!("http://{origin_addr}")], "").await?;

    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 48; // 3 MiB
    let (tx, body) = EdgeBody::channel(1);
    let client = Client::builder(TokioExecutor::new()).build_http::<EdgeBody>();
    let request = http::Request::builder()
        .method("PUT")
        .uri(node.url("/api/upload"))
        .body(body)?;
    let response = tokio::spawn(async move { client.request(request).await });
    tx.send(Ok(Bytes::from(vec![7u8; CHUNK])))
        .await
        .context("the node stopped reading the body")?;
    let first = tokio::time::timeout(Duration::from_secs(10), first_rx.recv())
        .await
        .context("the origin got nothing while the viewer held back the rest of the body")?
        .context("origin gone")?;
    assert!(first <= CHUNK, "the origin's first chunk: {first} bytes");
    for _ in 1..CHUNKS {
        tx.send(Ok(Bytes::from(vec![7u8; CHUNK])))
            .await
            .context("the node stopped reading the body")?;
    }
    drop(tx);
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .context("no response within 10 s")???;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.into_body().collect().await?.to_bytes();
    assert_eq!(&text[..], (CHUNK * CHUNKS).to_string().as_bytes());
    origin.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_balanced_round_robin() -> Result<()> {
    let a = Origin::fixed("a", &[]).await?;
    let b = Origin::fixed("b", &[]).await?;
    let node = node_for(&[a.url(), b.url()], "").await?;
    for _ in 0..6 {
        assert_eq!(node.get("/api/x").await?.status.as_u16(), 200);
    }
    assert_eq!((a.count(), b.count()), (3, 3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_target_is_skipped_and_request_retried() -> Result<()> {
    let good = Origin::fixed("good", &[]).await?;
    let dead = format!("http://{}", refused_addr().await?);
    let node = node_for(&[dead, good.url()], "").await?;
    for _ in 0..6 {
        let r = node.get("/api/x").await?;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "good"));
    }
    assert_eq!(good.count(), 6, "every request landed on the live target");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn post_is_not_replayed_after_a_connect_failure() -> Result<()> {
    let good = Origin::fixed("good", &[]).await?;
    let dead = format!("http://{}", refused_addr().await?);
    let node = node_for(&[dead, good.url()], "").await?;
    // The first request goes to the first target: refused, and a POST body cannot be replayed.
    let first = node
        .send(
            node.request("POST", "/api/x")
                .body(Full::new(Bytes::from("once")))?,
        )
        .await?;
    assert_eq!((first.status.as_u16(), first.x_cache()), (502, "Error"));
    // The dead target is now skipped.
    let second = node
        .send(
            node.request("POST", "/api/x")
                .body(Full::new(Bytes::from("once")))?,
        )
        .await?;
    assert_eq!(second.status.as_u16(), 200);
    assert_eq!(good.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_origin_gives_502() -> Result<()> {
    let node = node_for(&[format!("http://{}", refused_addr().await?)], "").await?;
    let r = node.get("/api/x").await?;
    assert_eq!((r.status.as_u16(), r.x_cache()), (502, "Error"));
    assert_eq!(
        r.text(),
        "502 Bad Gateway\n",
        "the body names neither the origin nor its targets"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_gives_504() -> Result<()> {
    let (addr, _guard) = black_hole()?;
    let node = node_for(&[format!("http://{addr}")], "connect_timeout = \"300ms\"").await?;
    let r = node.get("/api/x").await?;
    assert_eq!(
        (r.status.as_u16(), r.x_cache()),
        (504, "Error"),
        "{}",
        r.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn response_timeout_gives_504() -> Result<()> {
    let origin = Origin::start(|_| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        reply(200, &[], "late")
    })
    .await?;
    let node = node_for(&[origin.url()], "response_timeout = \"300ms\"").await?;
    let r = node.get("/api/x").await?;
    assert_eq!((r.status.as_u16(), r.x_cache()), (504, "Error"));
    assert_eq!(r.text(), "504 Gateway Timeout\n");
    // The node keeps serving.
    let fast = Origin::fixed("fast", &[]).await?;
    let node = node_for(&[fast.url()], "response_timeout = \"300ms\"").await?;
    assert_eq!(node.get("/api/x").await?.status.as_u16(), 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_response_timeout_counts_from_each_request_on_a_kept_alive_connection() -> Result<()> {
    const TIMEOUT: Duration = Duration::from_millis(300);
    let origin = Origin::start(|received| async move {
        if received.uri == "/api/slow" {
            tokio::time::sleep(TIMEOUT * 3).await;
        }
        reply(200, &[], "ok")
    })
    .await?;
    let node = node_for(
        &[origin.url()],
        &format!("response_timeout = \"{}ms\"", TIMEOUT.as_millis()),
    )
    .await?;
    assert_eq!(node.get("/api/a").await?.status.as_u16(), 200);
    // The pooled connection idles for two timeouts: not a wait for an answer.
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!(node.get("/api/b").await?.status.as_u16(), 200);
    // Quick answers, half a timeout apart, for three timeouts: each is a wait of its own.
    for _ in 0..6 {
        tokio::time::sleep(TIMEOUT / 2).await;
        assert_eq!(node.get("/api/c").await?.status.as_u16(), 200);
    }
    assert_eq!(origin.connections(), 1, "the connection was kept");
    // A slow answer on the same connection: 504 one timeout after it was asked for.
    let asked = std::time::Instant::now();
    let slow = node.get("/api/slow").await?;
    let waited = asked.elapsed();
    assert_eq!((slow.status.as_u16(), slow.x_cache()), (504, "Error"));
    assert!(
        waited >= TIMEOUT - Duration::from_millis(50) && waited < TIMEOUT * 3,
        "504 after {waited:?}"
    );
    // The timed-out connection is not reused; the next request gets a new one.
    assert_eq!(node.get("/api/d").await?.status.as_u16(), 200);
    assert_eq!(origin.connections(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_target_stays_skipped_after_it_comes_back() -> Result<()> {
    let good = Origin::fixed("good", &[]).await?;
    let dead = refused_addr().await?;
    let node = node_for(&[format!("http://{dead}"), good.url()], "").await?;
    let first = node.get("/api/x").await?;
    assert_eq!(
        (first.status.as_u16(), first.text().as_str()),
        (200, "good")
    );

    // The dead target comes back, counting connections. Within the skip window (10 s) it must
    // get none: plain round-robin would send it every other request.
    let revived = tokio::net::TcpListener::bind(dead).await?;
    let accepted = Arc::new(AtomicUsize::new(0));
    let server = tokio::spawn({
        let accepted = Arc::clone(&accepted);
        async move {
            while let Ok((mut stream, _)) = revived.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let _ = tokio::io::AsyncWriteExt::write_all(
                    &mut stream,
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\ndead",
                )
                .await;
            }
        }
    });
    for _ in 0..6 {
        let r = node.get("/api/x").await?;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "good"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the refused target was skipped"
    );
    server.abort();
    Ok(())
}
