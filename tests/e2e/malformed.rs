//! Malformed viewer requests over raw sockets: each gets a 4xx (or the connection is closed),
//! is blamed on the viewer, never reaches the origin as something else, and the node keeps
//! serving: a normal request on a new connection succeeds afterwards.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::harness::{raw_exchange, Origin, RawAction, RawOrigin, RawViewer, TestNode};

/// A node with everything sent (GET, HEAD, POST, PUT) to the origin at `url`.
async fn node_for(url: &str) -> Result<TestNode> {
    node_with_server("", url).await
}

/// [`node_for`], with these lines in its `[server]` table.
async fn node_with_server(server: &str, url: &str) -> Result<TestNode> {
    TestNode::start_with_server(
        server,
        &format!(
            r#"
[origins.app]
type = "http"
targets = ["{url}"]

[[behaviors]]
path = "*"
origin = "app"
methods = ["GET", "HEAD", "POST", "PUT"]
cache = {{ default_ttl = "0s", max_ttl = "60s" }}
"#
        ),
    )
    .await
}

/// An origin on raw sockets that answers `ok` to anything: it has no header limits of its own
/// to get in the way of the node's.
async fn ok_origin() -> Result<RawOrigin> {
    RawOrigin::start(|_| {
        RawAction::Send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    })
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
    // A hyper origin, which reads the whole body before it answers.
    let origin = Origin::fixed("ok", &[]).await?;
    let node = node_for(&origin.url()).await?;
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
    let origin = ok_origin().await?;
    let node = node_for(&origin.url()).await?;
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
    let node = node_for(&origin.url()).await?;
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

/// A request to `/api/x` with `extra` header lines after Host.
fn with_headers(extra: &[String]) -> Vec<u8> {
    let mut request = String::from("GET /api/x HTTP/1.1\r\nhost: edge.test\r\n");
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// What the node answers `request` with: a status, or `None` for a closed connection.
async fn status_of(node: &TestNode, request: &[u8]) -> Result<Option<u16>> {
    Ok(raw_exchange(node.node.addr(), request)
        .await?
        .map(|reply| reply.status))
}

#[tokio::test(flavor = "multi_thread")]
async fn header_limits_default_to_32_kib_and_100_lines() -> Result<()> {
    let origin = ok_origin().await?;
    let node = node_for(&origin.url()).await?;
    let big = |size: usize| vec![format!("x-big: {}", "a".repeat(size))];
    assert_eq!(
        status_of(&node, &with_headers(&big(30 * 1024))).await?,
        Some(200)
    );
    assert_eq!(
        status_of(&node, &with_headers(&big(33 * 1024))).await?,
        Some(431)
    );
    let lines = |n: usize| (0..n).map(|i| format!("x-h{i}: v")).collect::<Vec<_>>();
    // Host is one of the lines.
    assert_eq!(
        status_of(&node, &with_headers(&lines(99))).await?,
        Some(200)
    );
    assert_eq!(
        status_of(&node, &with_headers(&lines(100))).await?,
        Some(431)
    );
    still_serving(&node).await
}

#[tokio::test(flavor = "multi_thread")]
async fn header_limits_are_configurable() -> Result<()> {
    let origin = ok_origin().await?;
    let node = node_with_server(
        "max_request_header_size = \"2 KiB\"\nmax_request_headers = 10",
        &origin.url(),
    )
    .await?;
    let big = |size: usize| vec![format!("x-big: {}", "a".repeat(size))];
    assert_eq!(
        status_of(&node, &with_headers(&big(1500))).await?,
        Some(200)
    );
    assert_eq!(
        status_of(&node, &with_headers(&big(2100))).await?,
        Some(431)
    );
    let lines = |n: usize| (0..n).map(|i| format!("x-h{i}: v")).collect::<Vec<_>>();
    assert_eq!(status_of(&node, &with_headers(&lines(9))).await?, Some(200));
    assert_eq!(
        status_of(&node, &with_headers(&lines(10))).await?,
        Some(431)
    );
    still_serving(&node).await
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_4xx_or_a_close() -> Result<()> {
    let origin = ok_origin().await?;
    let node = node_for(&origin.url()).await?;
    let long_method = format!(
        "{} /api/x HTTP/1.1\r\nhost: a.test\r\n\r\n",
        "X".repeat(4000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no target or version", b"GET\r\n\r\n".to_vec()),
        ("a status line", b"HTTP/1.1 200 OK\r\n\r\n".to_vec()),
        ("bad version", b"GET /api/x HTTP/9.9\r\nhost: a.test\r\n\r\n".to_vec()),
        ("binary garbage", b"\x00\x01\x02\xff\xfe\r\n\r\n".to_vec()),
        ("header without colon", b"GET /api/x HTTP/1.1\r\nhost: a.test\r\nno colon here\r\n\r\n".to_vec()),
        ("space before colon", b"GET /api/x HTTP/1.1\r\nhost : a.test\r\n\r\n".to_vec()),
        ("two different lengths", b"POST /api/x HTTP/1.1\r\nhost: a.test\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec()),
        ("bad length", b"POST /api/x HTTP/1.1\r\nhost: a.test\r\ncontent-length: -1\r\n\r\n".to_vec()),
        ("unknown transfer coding", b"POST /api/x HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: gzip\r\n\r\nabcd".to_vec()),
        ("non-ASCII path", "GET /café HTTP/1.1\r\nhost: a.test\r\n\r\n".as_bytes().to_vec()),
        ("control byte in path", b"GET /a\x01b HTTP/1.1\r\nhost: a.test\r\n\r\n".to_vec()),
        ("method with a NUL", b"G\x00T /api/x HTTP/1.1\r\nhost: a.test\r\n\r\n".to_vec()),
        ("unknown method", b"BREW /api/x HTTP/1.1\r\nhost: a.test\r\n\r\n".to_vec()),
        ("4000-byte method", long_method.into_bytes()),
        ("CONNECT", b"CONNECT a.test:443 HTTP/1.1\r\nhost: a.test:443\r\n\r\n".to_vec()),
        ("asterisk target", b"OPTIONS * HTTP/1.1\r\nhost: a.test\r\n\r\n".to_vec()),
        ("climbing path", b"GET /../../etc/passwd HTTP/1.1\r\nhost: a.test\r\n\r\n".to_vec()),
    ];
    for (name, request) in &cases {
        match raw_exchange(node.node.addr(), request)
            .await
            .with_context(|| name.to_string())?
        {
            None => {}
            Some(reply) => assert!(
                (400..500).contains(&reply.status),
                "{name}: {}{}",
                reply.head,
                reply.text()
            ),
        }
        still_serving(&node).await?;
    }
    // Only the well-formed requests of `still_serving` reached the origin.
    assert!(
        origin.heads().iter().all(|h| h.starts_with("GET /api/ok ")),
        "{:?}",
        origin.heads()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn length_beside_chunked_cannot_smuggle_a_request() -> Result<()> {
    let origin = ok_origin().await?;
    let node = node_for(&origin.url()).await?;
    // Both orders: RFC 9112 §6.1 lets a server use the chunked framing, but it must then close
    // the connection, so whatever the other framing would have left over is never read as a
    // request.
    for (name, headers) in [
        (
            "length first",
            "content-length: 4\r\ntransfer-encoding: chunked",
        ),
        (
            "chunked first",
            "transfer-encoding: chunked\r\ncontent-length: 4",
        ),
    ] {
        let mut viewer = RawViewer::connect(node.node.addr()).await?;
        viewer
            .send(
                format!(
                    "POST /api/x HTTP/1.1\r\nhost: a.test\r\n{headers}\r\n\r\n0\r\n\r\n\
                     GET /api/smuggled HTTP/1.1\r\nhost: a.test\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        // An error here is a close without a response, which is fine too.
        if let Ok(reply) = viewer.response().await {
            assert!(
                reply.status == 200 || (400..500).contains(&reply.status),
                "{name}: {}",
                reply.head
            );
            let rest = viewer.closed().await?;
            assert!(rest.is_empty(), "{name}: a second response: {rest:?}");
        }
        still_serving(&node).await?;
    }
    assert!(
        !origin.heads().iter().any(|h| h.contains("/api/smuggled")),
        "{:?}",
        origin.heads()
    );
    Ok(())
}

/// The header read timeout the next two tests give the node: short, so that a test waits for it.
const HEAD_TIMEOUT: Duration = Duration::from_millis(300);

/// A node like [`node_for`] whose connections may wait [`HEAD_TIMEOUT`] for a request head.
async fn node_with_head_timeout(url: &str) -> Result<TestNode> {
    let server = format!("header_read_timeout = \"{}ms\"", HEAD_TIMEOUT.as_millis());
    node_with_server(&server, url).await
}

const GET_OK: &[u8] = b"GET /api/ok HTTP/1.1\r\nhost: edge.test\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_stalled_in_its_head_or_idle_after_a_response_is_cut_at_the_header_read_timeout(
) -> Result<()> {
    let origin = ok_origin().await?;
    let node = node_with_head_timeout(&origin.url()).await?;
    // Slow loris: half a head, then nothing.
    let mut loris = RawViewer::connect(node.node.addr()).await?;
    let sent = Instant::now();
    loris
        .send(b"GET /api/ok HTTP/1.1\r\nhost: edge.test\r\n")
        .await?;
    let rest = loris.closed().await?;
    let waited = sent.elapsed();
    assert!(rest.is_empty(), "an answer to half a head: {rest:?}");
    assert!(
        waited >= HEAD_TIMEOUT - Duration::from_millis(50) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // A keep-alive viewer that is answered, then sends nothing more.
    let mut idle = RawViewer::connect(node.node.addr()).await?;
    idle.send(GET_OK).await?;
    assert_eq!(idle.response().await?.status, 200);
    let answered = Instant::now();
    let rest = idle.closed().await?;
    let waited = answered.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        waited >= HEAD_TIMEOUT - Duration::from_millis(100) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    still_serving(&node).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_header_read_timeout_never_cuts_a_request_in_progress_or_a_busy_connection(
) -> Result<()> {
    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
    let origin = RawOrigin::start(move |index| match index {
        // Slower than the header read timeout.
        0 => RawAction::Delay(HEAD_TIMEOUT * 3, ok.clone()),
        _ => RawAction::Send(ok.clone()),
    })
    .await?;
    let node = node_with_head_timeout(&origin.url()).await?;
    let mut viewer = RawViewer::connect(node.node.addr()).await?;
    // A response that takes three timeouts to come.
    viewer.send(GET_OK).await?;
    assert_eq!(viewer.response().await?.status, 200);
    // A body that takes two timeouts to arrive.
    viewer
        .send(b"POST /api/up HTTP/1.1\r\nhost: edge.test\r\ncontent-length: 6\r\n\r\nabc")
        .await?;
    tokio::time::sleep(HEAD_TIMEOUT * 2).await;
    viewer.send(b"def").await?;
    assert_eq!(viewer.response().await?.status, 200);
    // Requests half a timeout apart, for three timeouts: the wait restarts at each response.
    for _ in 0..6 {
        tokio::time::sleep(HEAD_TIMEOUT / 2).await;
        viewer.send(GET_OK).await?;
        assert_eq!(viewer.response().await?.status, 200);
    }
    let heads = origin.heads();
    assert_eq!(heads.len(), 8, "{heads:?}");
    assert!(heads[1].starts_with("POST /api/up "), "{heads:?}");
    Ok(())
}
