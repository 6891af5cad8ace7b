//! A fault-injecting origin on raw sockets: broken framing, resets, garbage, slow or absent
//! answers. For each: what the viewer gets, that the node keeps serving, and that nothing
//! broken is cached (the next good response is what gets served).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use http_body_util::Full;

use crate::harness::{
    black_hole, refused_addr, reply, Origin, RawAction, RawOrigin, RawViewer, Reply, TestNode,
};

/// A node caching everything from the origin at `url` for a day.
async fn caching_node(url: &str, extra: &str) -> Result<TestNode> {
    TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = ["{url}"]
{extra}

[[behaviors]]
path = "*"
origin = "app"
cache = {{ min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }}
"#
    ))
    .await
}

/// An ordinary keep-alive response with a correct length.
fn good(body: &str, cache_control: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncache-control: {cache_control}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const GET: &str = "GET {path} HTTP/1.1\r\nhost: edge.test\r\n\r\n";

fn get(path: &str) -> Vec<u8> {
    GET.replace("{path}", path).into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn length_beside_chunked_is_dropped_on_miss_and_hit() -> Result<()> {
    // RFC 9112 §6.3: the chunked framing wins over Content-Length.
    let origin = RawOrigin::start(|_| {
        RawAction::Send(
            b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: 5\r\n\
              transfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await?;
    let node = caching_node(&origin.url(), "").await?;

    // Miss, then hit, then a third request, all on one keep-alive connection: a response that
    // announces fewer bytes than it sends shows up as garbage at the start of the next one.
    let mut viewer = RawViewer::connect(node.node.addr()).await?;
    for expected in ["Miss", "Hit", "Hit"] {
        viewer.send(&get("/greeting")).await?;
        let reply = viewer.response().await?;
        assert_eq!(
            (reply.status, reply.header("x-cache"), reply.text().as_str()),
            (200, Some(expected), "hello world"),
            "{}",
            reply.head
        );
        if let Some(length) = reply.header("content-length") {
            assert_eq!(length, "11", "{}", reply.head);
        }
    }
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_length_matches_its_body() -> Result<()> {
    // A correct origin, for the keep-alive baseline: miss, hit and HEAD on one connection.
    let served = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&served);
    let origin = RawOrigin::start(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        RawAction::Send(good("twelve bytes", "max-age=600"))
    })
    .await?;
    let node = caching_node(&origin.url(), "").await?;
    let mut viewer = RawViewer::connect(node.node.addr()).await?;
    for _ in 0..2 {
        viewer.send(&get("/a")).await?;
        let reply = viewer.response().await?;
        assert_eq!(reply.text(), "twelve bytes");
        assert_eq!(reply.header("content-length"), Some("12"));
    }
    // A HEAD answered from the cache announces the object's length and sends no body.
    let mut head = RawViewer::connect(node.node.addr()).await?;
    head.send(b"HEAD /a HTTP/1.1\r\nhost: edge.test\r\nconnection: close\r\n\r\n")
        .await?;
    let rest = head.closed().await?;
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "HEAD carries no body: {text:?}");
    assert!(
        text.to_ascii_lowercase().contains("content-length: 12"),
        "{text}"
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
    Ok(())
}

/// A node with `/api/*` sent uncached to these targets, debug headers on.
async fn pool_node(targets: &[String], extra: &str) -> Result<TestNode> {
    let targets: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
    TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            r#"
[origins.app]
type = "http"
targets = [{}]
{extra}

[[behaviors]]
path = "/api/*"
origin = "app"
cache = {{ default_ttl = "0s", max_ttl = "60s" }}
"#,
            targets.join(", ")
        ),
    )
    .await
}

async fn debug_get(node: &TestNode, path: &str) -> Result<Reply> {
    node.send(
        node.request("GET", path)
            .header("x-edge-debug", "1")
            .body(Full::default())?,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_blackholed_target_is_tried_once_per_request() -> Result<()> {
    let (a, _guard_a) = black_hole()?;
    let (b, _guard_b) = black_hole()?;
    let node = pool_node(
        &[format!("http://{a}"), format!("http://{b}")],
        "connect_timeout = \"200ms\"",
    )
    .await?;
    // The first request finds both targets up; the second finds both marked down and still
    // tries each (one may have come back). Either way: once each.
    for round in ["both up", "both down"] {
        let r = debug_get(&node, "/api/x").await?;
        assert_eq!((r.status.as_u16(), r.x_cache()), (504, "Error"), "{round}");
        let error = r.header("x-edge-error").unwrap_or_default();
        for target in [a, b] {
            assert_eq!(
                error.matches(&target.to_string()).count(),
                1,
                "{round}: {target} attempted once: {error}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_target_is_not_attempted_again_within_the_down_time() -> Result<()> {
    let good = Origin::fixed("good", &[]).await?;
    let dead = refused_addr().await?;
    let node = pool_node(&[format!("http://{dead}"), good.url()], "").await?;
    // Round-robin starts at the first target: refused, marked down, retried on `good`.
    let first = node.get("/api/x").await?;
    assert_eq!(
        (first.status.as_u16(), first.text().as_str()),
        (200, "good")
    );
    // The dead target comes back at once; the pool must not notice for DEFAULT_DOWN_TIME (10 s).
    // Round-robin alone would send it every other request.
    let revived = Origin::start_at(dead, |_| async { reply(200, &[], "revived") }).await?;
    for _ in 0..6 {
        let r = node.get("/api/x").await?;
        assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "good"));
    }
    assert_eq!(revived.count(), 0, "a marked-down target is skipped");
    assert_eq!(good.count(), 7);
    Ok(())
}

/// What the first viewer must get from a faulty origin.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Exactly this status, with a complete body.
    Status(u16),
    /// The origin broke after its headers: either 502 (the node saw the break first) or the
    /// status line went out and the body is cut off. Never a complete response.
    Broken,
}

/// One fault for the origin's first answer; every later request gets a good, cacheable one.
struct Fault {
    name: &'static str,
    action: fn() -> RawAction,
    extra: &'static str,
    expect: Expect,
}

fn faults() -> Vec<Fault> {
    use RawAction::*;
    vec![
        Fault {
            name: "slow headers past response_timeout",
            action: || Delay(Duration::from_secs(3), good("late", "max-age=600")),
            extra: "response_timeout = \"300ms\"",
            expect: Expect::Status(504),
        },
        Fault {
            name: "reset mid-body (length)",
            action: || {
                SendAndReset(b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: 100\r\n\r\npartial".to_vec())
            },
            extra: "",
            expect: Expect::Broken,
        },
        Fault {
            name: "closed mid-body (length)",
            action: || {
                SendAndClose(b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: 100\r\n\r\npartial".to_vec())
            },
            extra: "",
            expect: Expect::Broken,
        },
        Fault {
            name: "reset mid-body (chunked)",
            action: || {
                SendAndReset(b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n".to_vec())
            },
            extra: "",
            expect: Expect::Broken,
        },
        Fault {
            name: "closed mid-body (chunked)",
            action: || {
                SendAndClose(b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n".to_vec())
            },
            extra: "",
            expect: Expect::Broken,
        },
        Fault {
            name: "closed before answering",
            action: || SendAndClose(Vec::new()),
            extra: "",
            expect: Expect::Status(502),
        },
        Fault {
            name: "garbage bytes",
            action: || SendAndClose(b"\x00\x01\x02 not http at all\r\n\r\n".to_vec()),
            extra: "",
            expect: Expect::Status(502),
        },
        Fault {
            name: "bad chunk size",
            action: || {
                SendAndClose(b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec())
            },
            extra: "",
            expect: Expect::Broken,
        },
        Fault {
            name: "oversized response header",
            action: || {
                let mut bytes =
                    b"HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\nx-big: ".to_vec();
                bytes.extend(std::iter::repeat_n(b'a', 1024 * 1024));
                bytes.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
                SendAndClose(bytes)
            },
            extra: "",
            expect: Expect::Status(502),
        },
        Fault {
            name: "too many response headers",
            action: || {
                let mut head = String::from("HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\n");
                for i in 0..500 {
                    head.push_str(&format!("x-h{i}: v\r\n"));
                }
                head.push_str("content-length: 2\r\n\r\nok");
                SendAndClose(head.into_bytes())
            },
            extra: "",
            expect: Expect::Status(502),
        },
        Fault {
            // With an explicit lifetime a 5xx is stored, as RFC 9111 §3 allows (see
            // conformance.rs); without one it is a fault and never cached.
            name: "500 without a lifetime",
            action: || {
                Send(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops".to_vec(),
                )
            },
            extra: "",
            expect: Expect::Status(500),
        },
        Fault {
            name: "503 without a lifetime",
            action: || {
                Send(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown".to_vec())
            },
            extra: "",
            expect: Expect::Status(503),
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn origin_faults_are_contained_and_never_cached() -> Result<()> {
    for fault in faults() {
        let action = fault.action;
        let origin = RawOrigin::start(move |i| match i {
            0 => action(),
            _ => RawAction::Send(good("fresh", "max-age=600")),
        })
        .await?;
        let node = caching_node(&origin.url(), fault.extra).await?;
        let name = fault.name;

        let mut viewer = RawViewer::connect(node.node.addr()).await?;
        viewer.send(&get("/object")).await?;
        match (fault.expect, viewer.response().await) {
            (Expect::Status(status), Ok(reply)) => {
                assert_eq!(reply.status, status, "{name}: {}", reply.head)
            }
            (Expect::Broken, Ok(reply)) => {
                assert_eq!(reply.status, 502, "{name}: a complete {}", reply.head)
            }
            (Expect::Broken, Err(_)) => {}
            (Expect::Status(status), Err(error)) => {
                panic!("{name}: expected {status}, got {error:#}")
            }
        }

        // The node keeps serving, and what it serves next is the origin's next good answer:
        // fetched (nothing of the fault was stored), then stored.
        for expected in ["Miss", "Hit"] {
            let mut viewer = RawViewer::connect(node.node.addr()).await?;
            viewer.send(&get("/object")).await?;
            let reply = viewer.response().await?;
            assert_eq!(
                (reply.status, reply.header("x-cache"), reply.text().as_str()),
                (200, Some(expected), "fresh"),
                "{name}: {}",
                reply.head
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_origin_gives_502_and_recovers() -> Result<()> {
    let dead = refused_addr().await?;
    let node = caching_node(&format!("http://{dead}"), "").await?;
    let mut viewer = RawViewer::connect(node.node.addr()).await?;
    viewer.send(&get("/object")).await?;
    assert_eq!(viewer.response().await?.status, 502);
    // The only target is down, but still tried: once it is back, it serves.
    let _origin = Origin::start_at(dead, |_| async {
        reply(200, &[("cache-control", "max-age=600")], "fresh")
    })
    .await?;
    for expected in ["Miss", "Hit"] {
        let r = node.get("/object").await?;
        assert_eq!(
            (r.status.as_u16(), r.x_cache(), r.text().as_str()),
            (200, expected, "fresh")
        );
    }
    Ok(())
}
