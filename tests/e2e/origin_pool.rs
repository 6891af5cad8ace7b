//! Keep-alive connections to an `http` origin: reused across requests whatever the response
//! framing, never shared between two exchanges at once, dropped when the origin closes them or
//! when a response body was not read to its end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use edge_runtime::body::EdgeBody;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{accept_until_shutdown, reply, Origin, TestNode};

/// The pool tests' origin, which counts its connections (`Origin::connections`). `/cl/X`
/// answers `X` with a length, `/chunked/X` answers `X` in two chunks, `/empty` answers 204,
/// `/slow/X` answers `X` after 20 ms, `/big` streams 4 MiB slowly; every answer is `no-store`,
/// so each request reaches it.
async fn counting_origin() -> Result<Origin> {
    Origin::start(|received| async move { answer(&received.uri).await }).await
}

async fn answer(path: &str) -> Response<EdgeBody> {
    let no_store = [("cache-control", "no-store")];
    let path = path.trim_start_matches("/api");
    if let Some(text) = path.strip_prefix("/cl/") {
        return reply(200, &no_store, text.to_owned());
    }
    if let Some(text) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(20)).await;
        return reply(200, &no_store, text.to_owned());
    }
    if let Some(text) = path.strip_prefix("/chunked/") {
        let (tx, body) = EdgeBody::channel(2);
        let (head, tail) = text.split_at(text.len() / 2);
        let (head, tail) = (Bytes::from(head.to_owned()), Bytes::from(tail.to_owned()));
        tokio::spawn(async move {
            let _ = tx.send(Ok(head)).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = tx.send(Ok(tail)).await;
        });
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-store"));
        return response;
    }
    if path == "/big" {
        let (tx, body) = EdgeBody::channel(1);
        tokio::spawn(async move {
            for _ in 0..64 {
                if tx
                    .send(Ok(Bytes::from(vec![b'x'; 64 * 1024])))
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert("cache-control", http::HeaderValue::from_static("no-store"));
        return response;
    }
    reply(204, &no_store, "")
}

async fn node_for(origin: &Origin) -> Result<TestNode> {
    TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = ["{}"]

[[behaviors]]
path = "/api/*"
origin = "app"
"#,
        origin.url()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_serves_sequential_requests_of_every_framing() -> Result<()> {
    let origin = counting_origin().await?;
    let node = node_for(&origin).await?;
    for round in 0..3 {
        let cl = node.get(&format!("/api/cl/length-{round}")).await?;
        assert_eq!(
            (cl.status.as_u16(), cl.text()),
            (200, format!("length-{round}"))
        );
        let chunked = node.get(&format!("/api/chunked/chunks-{round}")).await?;
        assert_eq!(
            (chunked.status.as_u16(), chunked.text()),
            (200, format!("chunks-{round}"))
        );
        let head = node
            .send(
                node.request("HEAD", "/api/cl/head")
                    .body(Default::default())?,
            )
            .await?;
        assert_eq!((head.status.as_u16(), head.body.len()), (200, 0));
        let empty = node.get("/api/empty").await?;
        assert_eq!(empty.status.as_u16(), 204);
    }
    assert_eq!(
        origin.connections(),
        1,
        "every response was read to its end, so its connection was reused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_get_their_own_answers_and_connections_are_kept() -> Result<()> {
    let origin = counting_origin().await?;
    let node = Arc::new(node_for(&origin).await?);
    let burst = |round: usize| {
        let node = Arc::clone(&node);
        async move {
            let requests = (0..16).map(|i| {
                let node = Arc::clone(&node);
                tokio::spawn(async move { node.get(&format!("/api/slow/r{round}-{i}")).await })
            });
            for (i, request) in requests.enumerate() {
                let reply = request.await??;
                assert_eq!(
                    (reply.status.as_u16(), reply.text()),
                    (200, format!("r{round}-{i}"))
                );
            }
            anyhow::Ok(())
        }
    };
    burst(0).await?;
    let after_first = origin.connections();
    assert!(
        (1..=16).contains(&after_first),
        "16 concurrent requests need at most 16 connections, opened {after_first}"
    );
    burst(1).await?;
    burst(2).await?;
    assert_eq!(
        origin.connections(),
        after_first,
        "later bursts reuse the connections the first one opened"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_the_viewer_abandons_does_not_leak_into_the_next_answer() -> Result<()> {
    let origin = counting_origin().await?;
    let node = node_for(&origin).await?;
    let mut viewer = tokio::net::TcpStream::connect(node.node.addr()).await?;
    viewer
        .write_all(b"GET /api/big HTTP/1.1\r\nhost: edge.test\r\n\r\n")
        .await?;
    let mut start = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), viewer.read(&mut start)).await??;
    assert!(start[..read].starts_with(b"HTTP/1.1 200"));
    drop(viewer);
    // The node notices the closed viewer on its next write, within a chunk or two.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..4 {
        let reply = node.get(&format!("/api/cl/after-{i}")).await?;
        assert_eq!(
            (reply.status.as_u16(), reply.text()),
            (200, format!("after-{i}"))
        );
    }
    assert_eq!(
        origin.connections(),
        2,
        "the half-read connection was closed, the one after it kept"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_origin_closed_while_idle_is_not_used() -> Result<()> {
    // An origin that keeps a connection open 50 ms after each answer, then closes it without
    // having said so (a short keep-alive timeout, like Node's).
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let _shutdown = accept_until_shutdown(listener, move |mut stream| {
        counter.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: 2\r\n\r\nok",
                )
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
    });
    let node = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{url}\"]\n\n[[behaviors]]\npath = \"/api/*\"\norigin = \"app\"\n"
    ))
    .await?;
    for _ in 0..3 {
        let reply = node.get("/api/x").await?;
        assert_eq!(
            (reply.status.as_u16(), reply.text()),
            (200, "ok".to_owned())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_the_origin_sent_unasked_never_answers_the_next_request() -> Result<()> {
    // The first answer comes with a second one glued behind it: a lying or desynchronized
    // origin. A connection with bytes nobody asked for is not reused.
    let origin = crate::harness::RawOrigin::start(|index| {
        let answer = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let bytes = if index == 0 {
            answer("first") + &answer("unasked")
        } else {
            answer(&format!("answer-{index}"))
        };
        crate::harness::RawAction::Send(bytes.into_bytes())
    })
    .await?;
    let node = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n[[behaviors]]\npath = \"/api/*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await?;
    let first = node.get("/api/a").await?;
    assert_eq!(
        (first.status.as_u16(), first.text()),
        (200, "first".to_owned())
    );
    for _ in 0..3 {
        let next = node.get("/api/b").await?;
        assert_eq!(next.status.as_u16(), 200);
        assert!(
            next.text().starts_with("answer-"),
            "got {:?}, the origin's unasked answer",
            next.text()
        );
    }
    Ok(())
}

/// An origin whose first connection answers its first request, then reads the next one and
/// closes without answering: a keep-alive timeout crossing the request on the wire, as with
/// an origin whose timeout is shorter than the node's. Later connections answer everything,
/// each answer after a `103 Early Hints`.
/// Gives the request lines it read, in order, with the connection each came on.
pub(crate) async fn closes_after_first_answer() -> Result<(
    String,
    Arc<std::sync::Mutex<Vec<String>>>,
    tokio::sync::oneshot::Sender<()>,
)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let accepted = Arc::new(AtomicUsize::new(0));
    let log = Arc::clone(&seen);
    let shutdown = accept_until_shutdown(listener, move |stream| {
        let connection = accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(answer_but_close_under_second(
            stream,
            connection,
            Arc::clone(&log),
        ));
    });
    Ok((url, seen, shutdown))
}

/// One connection of [`closes_after_first_answer`]'s origin, over any stream (the HTTPS tests
/// run it over TLS): answers every request, except that connection 0 closes on its second.
pub(crate) async fn answer_but_close_under_second<S>(
    mut stream: S,
    connection: usize,
    log: Arc<std::sync::Mutex<Vec<String>>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buffer = Vec::new();
    for exchange in 0.. {
        // One request head (these requests have no body).
        let end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = buffer.drain(..end).collect();
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned();
        log.lock()
            .expect("origin log lock")
            .push(format!("{connection}: {line}"));
        if connection == 0 && exchange == 1 {
            // Over TLS, a close_notify first, as a server closing an idle connection sends.
            let _ = stream.shutdown().await;
            return;
        }
        let body = format!("{connection}-{exchange}");
        let mut answer = format!(
            "HTTP/1.1 103 Early Hints\r\nlink: </{body}.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if !line.starts_with("HEAD") {
            answer.push_str(&body);
        }
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn api_node_config(url: &str) -> String {
    format!("[origins.app]\ntype = \"http\"\ntargets = [\"{url}\"]\n\n[[behaviors]]\npath = \"/api/*\"\norigin = \"app\"\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_the_origin_closed_a_reused_connection_on_is_sent_again_on_a_new_one() -> Result<()> {
    let (url, seen, _shutdown) = closes_after_first_answer().await?;
    let node = TestNode::start(&api_node_config(&url)).await?;
    let first = node.get("/api/a").await?;
    assert_eq!(
        (first.status.as_u16(), first.text()),
        (200, "0-0".to_owned())
    );
    let (second, hints) = node.get_with_interim("/api/b").await?;
    assert_eq!(
        (second.status.as_u16(), second.text()),
        (200, "1-0".to_owned()),
        "the GET lost with the reused connection went out again on a fresh one"
    );
    assert_eq!(
        hints,
        [(103, Some(http::HeaderValue::from_static("</1-0.css>")))],
        "the second exchange's 1xx still reaches the viewer"
    );
    let head = node
        .send(node.request("HEAD", "/api/c").body(Default::default())?)
        .await?;
    assert_eq!(head.status.as_u16(), 200);
    assert_eq!(
        *seen.lock().expect("origin log lock"),
        [
            "0: GET /api/a HTTP/1.1",
            "0: GET /api/b HTTP/1.1",
            "1: GET /api/b HTTP/1.1",
            "1: HEAD /api/c HTTP/1.1",
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_the_origin_closed_a_reused_connection_on_is_not_sent_again() -> Result<()> {
    let (url, seen, _shutdown) = closes_after_first_answer().await?;
    let node = TestNode::start(&format!(
        "{}methods = [\"GET\", \"HEAD\", \"POST\"]\n",
        api_node_config(&url)
    ))
    .await?;
    let first = node.get("/api/a").await?;
    assert_eq!(first.status.as_u16(), 200);
    let post = node
        .send(
            node.request("POST", "/api/order")
                .body("one order".into())?,
        )
        .await?;
    assert_eq!(
        post.status.as_u16(),
        502,
        "the POST may have reached the origin: the viewer decides whether to send it again"
    );
    assert_eq!(
        *seen.lock().expect("origin log lock"),
        ["0: GET /api/a HTTP/1.1", "0: POST /api/order HTTP/1.1"]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn gets_spaced_around_the_origin_keep_alive_timeout_never_fail() -> Result<()> {
    // An origin that closes a connection 20 ms after its last answer (without saying so), and
    // a viewer whose requests come 14-26 ms apart: some reach a connection as it closes. A new
    // connection waits longer for its first request, so a loaded machine cannot fail that one.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let _shutdown = accept_until_shutdown(listener, |mut stream| {
        tokio::spawn(async move {
            let mut buffer = Vec::new();
            let mut idle = Duration::from_secs(5);
            loop {
                let head_end = loop {
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                    let mut chunk = [0u8; 4096];
                    let read = tokio::time::timeout(idle, stream.read(&mut chunk));
                    match read.await {
                        Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                };
                buffer.drain(..head_end);
                idle = Duration::from_millis(20);
                let answer =
                    b"HTTP/1.1 200 OK\r\ncache-control: no-store\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
            }
        });
    });
    let node = TestNode::start(&api_node_config(&url)).await?;
    let mut failed = Vec::new();
    for i in 0..150u64 {
        let reply = node.get(&format!("/api/r{i}")).await?;
        if reply.status != 200 {
            failed.push((i, reply.status.as_u16()));
        }
        tokio::time::sleep(Duration::from_millis(14 + i * 7 % 13)).await;
    }
    assert_eq!(failed, [], "requests that failed");
    Ok(())
}
