//! Stale objects and invalidation: when a stale copy may be served (stale-while-revalidate,
//! stale-if-error, and the directives that forbid both), and how unsafe requests invalidate
//! what the cache holds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use http_body_util::Full;
use tokio::sync::Notify;

use crate::harness::{reply, Origin, TestNode};

/// A node with one behavior `*` in front of `origin`, allowing `methods`, with this `cache`
/// table and every query parameter in the key.
async fn node_for(origin: &Origin, methods: &str, cache: &str) -> Result<TestNode> {
    TestNode::in_front_of(
        origin,
        &format!("methods = {methods}\ncache = {cache}\ncache_key = {{ query = \"all\" }}"),
    )
    .await
}

const GET: &str = r#"["GET", "HEAD"]"#;

// --- invalidation by unsafe methods ---------------------------------------------------------

/// How an origin answers an unsafe request to a path: status and headers.
type UnsafeAnswer = fn(&str) -> (u16, Vec<(&'static str, &'static str)>);

/// An origin whose GETs are fresh for an hour with a body naming the path and the origin's
/// request count, and whose other methods answer as `unsafe_answer` says for the path.
async fn writable_origin(unsafe_answer: UnsafeAnswer) -> Result<Origin> {
    let count = Arc::new(AtomicUsize::new(0));
    Origin::start(move |r| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if r.method == http::Method::GET {
                reply(
                    200,
                    &[("cache-control", "max-age=3600")],
                    format!("{} #{n}", r.uri),
                )
            } else {
                let (status, headers) = unsafe_answer(&r.uri);
                reply(status, &headers, "done")
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn successful_unsafe_requests_invalidate_the_uri_and_same_host_locations() -> Result<()> {
    let origin = writable_origin(|path| match path {
        "/a" => (
            201,
            vec![
                ("location", "/b"),
                ("content-location", "http://elsewhere.example/c"),
            ],
        ),
        "/d" => (204, vec![("content-location", "e")]),
        _ => (500, vec![]),
    })
    .await?;
    let node = node_for(
        &origin,
        r#"["GET", "HEAD", "POST", "PUT", "DELETE", "M-SEARCH"]"#,
        "{}",
    )
    .await?;
    let paths = ["/a", "/a?page=2", "/b", "/c", "/d", "/e", "/f"];
    for path in paths {
        node.get(path).await?;
        ensure!(node.get(path).await?.x_cache() == "Hit", "{path} cached");
    }
    let send = |method: &str, path: &str| {
        node.send(
            node.request(method, path)
                .body(Full::new("abc".into()))
                .expect("request"),
        )
    };

    // POST /a: 201 with `Location: /b` and a `Content-Location` on another host.
    assert_eq!(send("POST", "/a").await?.status.as_u16(), 201);
    for (path, after) in [
        ("/a", "Miss"),
        ("/a?page=2", "Miss"),
        ("/b", "Miss"),
        ("/c", "Hit"),
        ("/d", "Hit"),
    ] {
        assert_eq!(
            node.get(path).await?.x_cache(),
            after,
            "{path} after POST /a"
        );
    }
    assert_eq!(node.get("/a").await?.x_cache(), "Hit", "stored again");

    // PUT /d: 204 with a relative `Content-Location`.
    assert_eq!(send("PUT", "/d").await?.status.as_u16(), 204);
    assert_eq!(node.get("/d").await?.x_cache(), "Miss");
    assert_eq!(node.get("/e").await?.x_cache(), "Miss");

    // A failed DELETE changes nothing; an extension method reaches the origin and is unsafe.
    assert_eq!(send("DELETE", "/f").await?.status.as_u16(), 500);
    assert_eq!(node.get("/f").await?.x_cache(), "Hit");
    let before = origin.count();
    let _ = send("M-SEARCH", "/a").await?;
    assert_eq!(origin.count(), before + 1);
    assert_eq!(origin.last().method.as_str(), "M-SEARCH");
    assert_eq!(node.get("/a").await?.x_cache(), "Miss");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidation_reaches_every_vary_variant() -> Result<()> {
    let origin = Origin::start(|r| async move {
        if r.method == http::Method::GET {
            let lang = r.header("accept-language").unwrap_or("none").to_owned();
            reply(
                200,
                &[
                    ("cache-control", "max-age=3600"),
                    ("vary", "Accept-Language"),
                ],
                lang,
            )
        } else {
            reply(200, &[], "done")
        }
    })
    .await?;
    let node = node_for(&origin, r#"["GET", "HEAD", "POST"]"#, "{}").await?;
    let get = |lang: &'static str| {
        node.send(
            node.request("GET", "/v")
                .header("accept-language", lang)
                .body(Full::default())
                .expect("request"),
        )
    };
    for lang in ["en", "fr"] {
        get(lang).await?;
        assert_eq!(get(lang).await?.x_cache(), "Hit");
    }
    node.send(node.request("POST", "/v").body(Full::default())?)
        .await?;
    for lang in ["en", "fr"] {
        let after = get(lang).await?;
        assert_eq!((after.x_cache(), after.text()), ("Miss", lang.to_owned()));
    }
    Ok(())
}

// --- stale-if-error ----------------------------------------------------------------------------

/// An origin that answers GETs with `cache-control` from the `cc` query parameter (`_` for
/// spaces) and an ETag, until `failing` is set; then 503.
async fn failing_origin(failing: Arc<AtomicBool>) -> Result<Origin> {
    Origin::start(move |r| {
        let fail = failing.load(Ordering::SeqCst);
        async move {
            if fail {
                return reply(503, &[], "down");
            }
            let cc = r
                .uri
                .split_once("cc=")
                .map(|(_, v)| v.replace('_', " "))
                .unwrap_or_default();
            reply(200, &[("cache-control", &cc), ("etag", "\"v1\"")], "copy")
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_copy_is_never_served_when_the_response_demanded_revalidation() -> Result<()> {
    let failing = Arc::new(AtomicBool::new(false));
    let origin = failing_origin(Arc::clone(&failing)).await?;
    let node = node_for(&origin, GET, "{}").await?;
    // Each is stored already stale (a zero lifetime with an ETag), so the next GET revalidates.
    let forbidding = [
        "/a?cc=max-age=0,_must-revalidate",
        "/a?cc=max-age=0,_proxy-revalidate",
        "/a?cc=max-age=0,_s-maxage=0",
        "/a?cc=no-cache",
        "/a?cc=max-age=0,_must-revalidate,_stale-if-error=60",
    ];
    let allowing = ["/a?cc=max-age=0", "/a?cc=s-maxage=0,_stale-if-error=60"];
    for path in forbidding.iter().chain(&allowing) {
        assert_eq!(node.get(path).await?.text(), "copy", "{path}");
    }
    failing.store(true, Ordering::SeqCst);
    for path in forbidding {
        let r = node.get(path).await?;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (503, "down"),
            "{path}"
        );
    }
    for path in allowing {
        let r = node.get(path).await?;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "copy"),
            "{path}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_origin_gets_no_stale_stand_in_against_must_revalidate() -> Result<()> {
    let origin = Origin::start(|r| async move {
        let cc = if r.uri == "/strict" {
            "max-age=0, must-revalidate"
        } else {
            "max-age=0"
        };
        // `connection: close`: no pooled connection outlives the origin.
        let headers = [
            ("cache-control", cc),
            ("etag", "\"v1\""),
            ("connection", "close"),
        ];
        reply(200, &headers, "copy")
    })
    .await?;
    let node = node_for(&origin, GET, "{}").await?;
    assert_eq!(node.get("/strict").await?.text(), "copy");
    assert_eq!(node.get("/lenient").await?.text(), "copy");
    let addr = origin.addr;
    drop(origin);
    // Bounded wait until the stopped origin refuses connections.
    let mut refusing = false;
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refusing = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ensure!(refusing, "{addr} still accepts connections");
    assert_eq!(node.get("/strict").await?.status.as_u16(), 502);
    let lenient = node.get("/lenient").await?;
    assert_eq!(
        (lenient.status.as_u16(), lenient.text().as_str()),
        (200, "copy")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_if_error_zero_turns_the_default_off_but_not_the_directive() -> Result<()> {
    let failing = Arc::new(AtomicBool::new(false));
    let origin = failing_origin(Arc::clone(&failing)).await?;
    let node = node_for(&origin, GET, r#"{ stale_if_error = "0s" }"#).await?;
    let (plain, granted) = ("/a?cc=max-age=0", "/a?cc=max-age=0,_stale-if-error=60");
    node.get(plain).await?;
    node.get(granted).await?;
    failing.store(true, Ordering::SeqCst);
    assert_eq!(node.get(plain).await?.status.as_u16(), 503);
    let r = node.get(granted).await?;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "copy"));
    Ok(())
}

// --- stale-while-revalidate ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn stale_while_revalidate_serves_at_once_and_revalidates_once_in_the_background() -> Result<()>
{
    let count = Arc::new(AtomicUsize::new(0));
    let (gate, arrived) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (held, told) = (Arc::clone(&gate), Arc::clone(&arrived));
    let origin = Origin::start(move |_| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let (gate, arrived) = (Arc::clone(&held), Arc::clone(&told));
        async move {
            if n == 1 {
                // Stored already stale, usable for a minute while revalidating.
                let headers = [
                    ("cache-control", "max-age=0, stale-while-revalidate=60"),
                    ("etag", "\"v1\""),
                ];
                return reply(200, &headers, "v1");
            }
            // The revalidation waits until the test has seen the stale copy served.
            arrived.notify_one();
            gate.notified().await;
            reply(200, &[("cache-control", "max-age=60")], format!("v{n}"))
        }
    })
    .await?;
    let node = node_for(&origin, GET, "{}").await?;
    assert_eq!(node.get("/s").await?.text(), "v1");

    // While the origin holds the revalidation, every viewer gets the stale copy at once (each
    // would hang on the origin otherwise), and no second revalidation starts.
    for _ in 0..5 {
        let r = node.get("/s").await?;
        assert_eq!((r.x_cache(), r.text().as_str()), ("Hit", "v1"));
    }
    tokio::time::timeout(Duration::from_secs(10), arrived.notified()).await?;
    let received = origin.received();
    assert_eq!(received.len(), 2, "one background revalidation");
    assert_eq!(received[1].header("if-none-match"), Some("\"v1\""));

    // Released, the revalidation stores the new object.
    gate.notify_one();
    let mut served = String::new();
    for _ in 0..500 {
        served = node.get("/s").await?.text();
        if served == "v2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served, "v2");
    assert_eq!(origin.count(), 2);
    Ok(())
}

// --- interim responses ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn interim_responses_reach_the_viewer_and_are_never_stored() -> Result<()> {
    use crate::harness::{RawAction, RawOrigin};
    let origin = RawOrigin::start(|_| {
        RawAction::Send(
            b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\ncache-control: max-age=3600\r\ncontent-length: 5\r\n\r\nfinal"
                .to_vec(),
        )
    })
    .await?;
    let node = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\
         [[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await?;
    let (first, interim) = node.get_with_interim("/page").await?;
    assert_eq!(
        (
            first.status.as_u16(),
            first.x_cache(),
            first.text().as_str()
        ),
        (200, "Miss", "final")
    );
    assert_eq!(
        interim,
        vec![(103, Some("</s.css>; rel=preload".parse()?))],
        "the origin's 103, ahead of the final response"
    );
    assert_eq!(
        first.header("link"),
        None,
        "the hint is not the final response's"
    );

    let (second, interim) = node.get_with_interim("/page").await?;
    assert_eq!(
        (
            second.status.as_u16(),
            second.x_cache(),
            second.text().as_str()
        ),
        (200, "Hit", "final"),
        "the final response was stored"
    );
    assert!(interim.is_empty(), "a hit sends no interim response");
    assert_eq!(origin.count(), 1);
    Ok(())
}
