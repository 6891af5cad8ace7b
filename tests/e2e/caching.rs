//! The cache: hits and misses, TTL bounds, what is never stored, Vary, 304s, HEAD, cache keys,
//! revalidation, size bound.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;

use crate::harness::{reply, Origin, TestNode};

/// A node with one behavior `*` in front of `origin`, with this `cache` and `cache_key` table.
async fn node_for(origin: &Origin, cache: &str, cache_key: &str) -> Result<TestNode> {
    TestNode::in_front_of(origin, &format!("cache = {cache}\ncache_key = {cache_key}")).await
}

const LONG: &str = r#"{ min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }"#;

#[tokio::test(flavor = "multi_thread")]
async fn cache_hit_skips_origin() -> Result<()> {
    let origin = Origin::fixed("hello", &[("cache-control", "max-age=60")]).await?;
    let node = node_for(&origin, LONG, "{}").await?;
    let started = std::time::Instant::now();
    let first = node.get("/a").await?;
    assert_eq!(
        (
            first.status.as_u16(),
            first.x_cache(),
            first.text().as_str()
        ),
        (200, "Miss", "hello")
    );
    let second = node.get("/a").await?;
    assert_eq!(
        (
            second.status.as_u16(),
            second.x_cache(),
            second.text().as_str()
        ),
        (200, "Hit", "hello")
    );
    // Age counts whole seconds since the object was stored, which was after `started`.
    let age: u64 = second.header("age").unwrap_or("none").parse()?;
    assert!(
        age <= started.elapsed().as_secs(),
        "Age {age} is older than the object"
    );
    assert_eq!(second.header("cache-control"), Some("max-age=60"));
    assert_eq!(origin.count(), 1, "a hit must not reach the origin");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn default_ttl_applies_only_when_origin_is_silent() -> Result<()> {
    let origin = Origin::fixed("plain", &[]).await?;
    let cached = node_for(&origin, LONG, "{}").await?;
    cached.get("/a").await?;
    assert_eq!(cached.get("/a").await?.x_cache(), "Hit");
    assert_eq!(origin.count(), 1);

    let origin = Origin::fixed("plain", &[]).await?;
    let uncached = node_for(&origin, r#"{ default_ttl = "0s", max_ttl = "60s" }"#, "{}").await?;
    assert_eq!(uncached.get("/a").await?.x_cache(), "Miss");
    assert_eq!(uncached.get("/a").await?.x_cache(), "Miss");
    assert_eq!(
        origin.count(),
        2,
        "default_ttl 0 with a silent origin stores nothing"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn max_ttl_caps_and_min_ttl_raises_origin_lifetime() -> Result<()> {
    let origin = Origin::fixed("long", &[("cache-control", "max-age=3600")]).await?;
    let node = node_for(
        &origin,
        r#"{ min_ttl = "0s", default_ttl = "1s", max_ttl = "1s" }"#,
        "{}",
    )
    .await?;
    // The hit must come within the 1 s lifetime; on a stalled machine it may not, so a Miss
    // counts only when the second has passed, and then the pair is tried again.
    let mut fills = 0;
    loop {
        let filled = std::time::Instant::now();
        node.get("/a").await?;
        fills += 1;
        let second = node.get("/a").await?;
        if second.x_cache() == "Hit" {
            break;
        }
        assert!(
            filled.elapsed() >= Duration::from_secs(1) && fills < 5,
            "a Miss {:?} after the fill, within max_ttl",
            filled.elapsed()
        );
    }
    let fetched = origin.count();
    tokio::time::sleep(Duration::from_millis(1100)).await; // let the 1 s max_ttl pass
    assert_eq!(
        node.get("/a").await?.x_cache(),
        "Miss",
        "max_ttl 1s overrides max-age=3600"
    );
    assert_eq!(origin.count(), fetched + 1);

    let origin = Origin::fixed("short", &[("cache-control", "max-age=0")]).await?;
    let node = node_for(
        &origin,
        r#"{ min_ttl = "60s", default_ttl = "60s", max_ttl = "60s" }"#,
        "{}",
    )
    .await?;
    node.get("/a").await?;
    assert_eq!(
        node.get("/a").await?.x_cache(),
        "Hit",
        "min_ttl 60s raises max-age=0"
    );
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn expires_header_sets_lifetime() -> Result<()> {
    let origin = Origin::start(|_| async {
        let now = std::time::SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let expires = httpdate::fmt_http_date(now + Duration::from_secs(120));
        reply(200, &[("date", &date), ("expires", &expires)], "x")
    })
    .await?;
    let node = node_for(&origin, r#"{ default_ttl = "0s", max_ttl = "1d" }"#, "{}").await?;
    node.get("/a").await?;
    assert_eq!(
        node.get("/a").await?.x_cache(),
        "Hit",
        "Expires 2 minutes ahead is fresh although default_ttl is 0"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_that_forbid_sharing_are_never_stored() -> Result<()> {
    for headers in [
        &[("cache-control", "no-store")][..],
        &[("cache-control", "private, max-age=60")][..],
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=abc"),
        ][..],
        &[("cache-control", "max-age=60"), ("vary", "*")][..],
        &[("cache-control", "max-age=60, s-maxage=0")][..],
    ] {
        let headers: &'static [(&'static str, &'static str)] =
            Box::leak(headers.to_vec().into_boxed_slice());
        let origin = Origin::fixed("secret", headers).await?;
        let node = node_for(&origin, LONG, "{}").await?;
        for _ in 0..2 {
            let r = node.get("/a").await?;
            assert_eq!(
                (r.status.as_u16(), r.x_cache()),
                (200, "Miss"),
                "{headers:?}"
            );
        }
        assert_eq!(
            origin.count(),
            2,
            "{headers:?} must reach the origin every time"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn error_statuses_404_cached_500_not() -> Result<()> {
    let origin = Origin::start(|r| async move {
        let status = if r.uri == "/missing" { 404 } else { 500 };
        reply(status, &[], "nope")
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    node.get("/missing").await?;
    let again = node.get("/missing").await?;
    assert_eq!((again.status.as_u16(), again.x_cache()), (404, "Hit"));
    node.get("/broken").await?;
    let again = node.get("/broken").await?;
    assert_eq!((again.status.as_u16(), again.x_cache()), (500, "Miss"));
    assert_eq!(origin.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_keeps_variants_apart() -> Result<()> {
    let origin = Origin::start(|r| async move {
        let body = if r.header("accept-language") == Some("fr") {
            "bonjour"
        } else {
            "hello"
        };
        reply(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            body,
        )
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    let get = |lang: &'static str| {
        let node = &node;
        async move {
            node.send(
                node.request("GET", "/a")
                    .header("accept-language", lang)
                    .body(Full::default())?,
            )
            .await
        }
    };
    assert_eq!(get("en").await?.x_cache(), "Miss");
    assert_eq!(get("fr").await?.x_cache(), "Miss");
    let en = get("en").await?;
    let fr = get("fr").await?;
    assert_eq!((en.x_cache(), en.text().as_str()), ("Hit", "hello"));
    assert_eq!((fr.x_cache(), fr.text().as_str()), ("Hit", "bonjour"));
    assert_eq!(origin.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_requests_get_304() -> Result<()> {
    let origin = Origin::fixed(
        "body",
        &[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ],
    )
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;

    // On a miss the node asks for the full object, stores it, and answers the viewer 304.
    let first = node
        .send(
            node.request("GET", "/a")
                .header("if-none-match", "\"v1\"")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!((first.status.as_u16(), first.body.len()), (304, 0));
    assert_eq!(first.header("etag"), Some("\"v1\""));
    assert_eq!(
        origin.last().header("if-none-match"),
        None,
        "the viewer's validator is not forwarded on a fill"
    );

    let hit = node
        .send(
            node.request("GET", "/a")
                .header("if-none-match", "W/\"v1\"")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(
        (hit.status.as_u16(), hit.x_cache(), hit.body.len()),
        (304, "Hit", 0)
    );
    // A list may come in several lines (RFC 9110 §5.3): the match is on the second.
    let listed = node
        .send(
            node.request("GET", "/a")
                .header("if-none-match", "\"v0\"")
                .header("if-none-match", "\"old\", W/\"v1\"")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!((listed.status.as_u16(), listed.x_cache()), (304, "Hit"));
    let since = node
        .send(
            node.request("GET", "/a")
                .header("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!((since.status.as_u16(), since.x_cache()), (304, "Hit"));
    let changed = node
        .send(
            node.request("GET", "/a")
                .header("if-none-match", "\"v0\"")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(
        (changed.status.as_u16(), changed.text().as_str()),
        (200, "body")
    );
    let modified = node
        .send(
            node.request("GET", "/a")
                .header("if-modified-since", "Wed, 21 Oct 2015 07:27:59 GMT")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(modified.status.as_u16(), 200);
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn head_is_answered_from_cached_get() -> Result<()> {
    let origin = Origin::fixed("twelve bytes", &[("cache-control", "max-age=60")]).await?;
    let node = node_for(&origin, LONG, "{}").await?;

    // A HEAD miss is forwarded as HEAD and stores nothing.
    let head_miss = node
        .send(node.request("HEAD", "/a").body(Full::default())?)
        .await?;
    assert_eq!(
        (head_miss.status.as_u16(), head_miss.x_cache()),
        (200, "Miss")
    );
    assert_eq!(origin.last().method, http::Method::HEAD);

    node.get("/a").await?;
    let head = node
        .send(node.request("HEAD", "/a").body(Full::default())?)
        .await?;
    assert_eq!(
        (head.status.as_u16(), head.x_cache(), head.body.len()),
        (200, "Hit", 0)
    );
    assert_eq!(head.header("content-length"), Some("12"));
    assert_eq!(origin.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn query_in_key_is_normalised_and_still_forwarded() -> Result<()> {
    let origin =
        Origin::start(|r| async move { reply(200, &[("cache-control", "max-age=60")], r.uri) })
            .await?;
    let all = node_for(&origin, LONG, r#"{ query = "all" }"#).await?;
    assert_eq!(all.get("/a?x=1&y=2").await?.x_cache(), "Miss");
    assert_eq!(
        all.get("/a?y=2&x=1").await?.x_cache(),
        "Hit",
        "parameter order must not split the cache"
    );
    assert_eq!(all.get("/a?x=1&y=3").await?.x_cache(), "Miss");

    let none = node_for(&origin, LONG, r#"{ query = "none" }"#).await?;
    assert_eq!(
        none.get("/b?x=1").await?.text(),
        "/b?x=1",
        "the query still reaches the origin"
    );
    let ignored = none.get("/b?x=2").await?;
    assert_eq!(
        (ignored.x_cache(), ignored.text().as_str()),
        ("Hit", "/b?x=1")
    );

    let allow = node_for(&origin, LONG, r#"{ query = ["page"] }"#).await?;
    allow.get("/c?page=1&utm_source=a").await?;
    assert_eq!(allow.get("/c?utm_source=b&page=1").await?.x_cache(), "Hit");
    assert_eq!(allow.get("/c?page=2").await?.x_cache(), "Miss");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_listed_headers_and_cookies_split_the_cache() -> Result<()> {
    let origin = Origin::fixed("x", &[("cache-control", "max-age=60")]).await?;
    let node = node_for(
        &origin,
        LONG,
        r#"{ headers = ["Accept-Language"], cookies = ["session"] }"#,
    )
    .await?;
    let get = |lang: &'static str, cookie: &'static str| {
        let node = &node;
        async move {
            let r = node
                .send(
                    node.request("GET", "/a")
                        .header("accept-language", lang)
                        .header("cookie", cookie)
                        .header("user-agent", cookie)
                        .body(Full::default())?,
                )
                .await?;
            anyhow::Ok(r.x_cache().to_owned())
        }
    };
    assert_eq!(get("en", "session=1; theme=dark").await?, "Miss");
    assert_eq!(
        get("en", "theme=light; session=1").await?,
        "Hit",
        "unlisted cookies and headers are ignored"
    );
    assert_eq!(get("en", "session=2").await?, "Miss");
    assert_eq!(get("fr", "session=1").await?, "Miss");
    assert_eq!(origin.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_object_is_revalidated_with_its_etag() -> Result<()> {
    let origin = Origin::start(|r| async move {
        if r.header("if-none-match") == Some("\"v1\"") {
            reply(
                304,
                &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
                Bytes::new(),
            )
        } else {
            reply(
                200,
                &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
                "original body",
            )
        }
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    node.get("/a").await?;
    tokio::time::sleep(Duration::from_millis(1100)).await; // let max-age=1 run out
    let refreshed = node.get("/a").await?;
    assert_eq!(
        (
            refreshed.status.as_u16(),
            refreshed.x_cache(),
            refreshed.text().as_str()
        ),
        (200, "RefreshHit", "original body")
    );
    assert_eq!(origin.last().header("if-none-match"), Some("\"v1\""));
    assert_eq!(
        refreshed.header("cache-control"),
        Some("max-age=60"),
        "headers from the 304 replace the stored ones"
    );
    let hit = node.get("/a").await?;
    assert_eq!(
        hit.x_cache(),
        "Hit",
        "the 304's max-age=60 made it fresh again"
    );
    assert_eq!(origin.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_methods_always_reach_the_origin() -> Result<()> {
    let origin = Origin::fixed("done", &[("cache-control", "max-age=60")]).await?;
    let node = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nmethods = [\"GET\", \"POST\"]\n",
        origin.url()
    ))
    .await?;
    for _ in 0..2 {
        let r = node
            .send(
                node.request("POST", "/a")
                    .body(Full::new(Bytes::from("x")))?,
            )
            .await?;
        assert_eq!((r.status.as_u16(), r.x_cache()), (200, "Miss"));
    }
    assert_eq!(origin.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_stays_within_max_size() -> Result<()> {
    let origin = Origin::start(|_| async {
        reply(
            200,
            &[("cache-control", "max-age=600")],
            vec![b'x'; 8 * 1024],
        )
    })
    .await?;
    let node = TestNode::start(&format!(
        "[cache]\nmax_size = \"64 KiB\"\nmax_object_size = \"16 KiB\"\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
        origin.url()
    ))
    .await?;
    for i in 0..40 {
        assert_eq!(node.get(&format!("/{i}")).await?.body.len(), 8 * 1024);
    }
    let current = node.node.node();
    let store = current.cache();
    assert!(
        store.weight() <= 64 * 1024,
        "cache holds {} bytes, over max_size",
        store.weight()
    );
    assert_eq!(
        node.get("/39").await?.x_cache(),
        "Hit",
        "the newest object is kept"
    );
    assert_eq!(
        node.get("/0").await?.x_cache(),
        "Miss",
        "the oldest was evicted to make room"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_ranges_are_served_from_the_cache() -> Result<()> {
    let origin = Origin::fixed(
        "0123456789",
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
    )
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    let range = |spec: &'static str| {
        let node = &node;
        async move {
            node.send(
                node.request("GET", "/r")
                    .header("range", spec)
                    .body(Full::default())?,
            )
            .await
        }
    };
    // A miss fetches and returns the whole object (the range is not forwarded).
    let first = range("bytes=2-4").await?;
    assert_eq!(
        (first.status.as_u16(), first.text().as_str()),
        (200, "0123456789")
    );
    assert_eq!(origin.last().header("range"), None);

    let part = range("bytes=2-4").await?;
    assert_eq!(
        (part.status.as_u16(), part.x_cache(), part.text().as_str()),
        (206, "Hit", "234")
    );
    assert_eq!(part.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(part.header("content-length"), Some("3"));
    assert_eq!(range("bytes=-3").await?.text(), "789");
    assert_eq!(range("bytes=7-").await?.text(), "789");
    let beyond = range("bytes=10-").await?;
    assert_eq!(
        (beyond.status.as_u16(), beyond.header("content-range")),
        (416, Some("bytes */10"))
    );
    assert_eq!(
        range("bytes=0-1,4-5").await?.status.as_u16(),
        200,
        "several ranges: the whole object"
    );
    let whole = node.get("/r").await?;
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let stale_if_range = node
        .send(
            node.request("GET", "/r")
                .header("range", "bytes=0-0")
                .header("if-range", "\"v0\"")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(
        stale_if_range.status.as_u16(),
        200,
        "If-Range with another ETag: the whole object"
    );
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_copy_stands_in_for_a_failing_origin() -> Result<()> {
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = std::sync::Arc::clone(&healthy);
    let origin = Origin::start(move |_| {
        let ok = flag.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            if ok {
                reply(200, &[("cache-control", "max-age=1")], "good copy")
            } else {
                reply(503, &[], "down")
            }
        }
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    assert_eq!(node.get("/a").await?.text(), "good copy");
    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await; // let max-age=1 run out
    let served = node.get("/a").await?;
    assert_eq!(
        (served.status.as_u16(), served.text().as_str()),
        (200, "good copy"),
        "the stale copy, not the 503"
    );
    assert_eq!(origin.count(), 2, "the origin was asked first");
    // A path never cached has no stand-in: the origin's error goes through.
    assert_eq!(node.get("/b").await?.status.as_u16(), 503);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_cache_is_stored_but_revalidated_every_time() -> Result<()> {
    let origin = Origin::start(|r| async move {
        let headers = [("cache-control", "no-cache"), ("etag", "\"v1\"")];
        if r.header("if-none-match") == Some("\"v1\"") {
            reply(304, &headers, Bytes::new())
        } else {
            reply(200, &headers, "the body")
        }
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    let first = node.get("/a").await?;
    assert_eq!(
        (first.x_cache(), first.text().as_str()),
        ("Miss", "the body")
    );
    for n in 2..=3 {
        let again = node.get("/a").await?;
        assert_eq!(
            (
                again.status.as_u16(),
                again.x_cache(),
                again.text().as_str()
            ),
            (200, "RefreshHit", "the body"),
            "request {n}: served from the cache after a 304"
        );
        assert_eq!(origin.last().header("if-none-match"), Some("\"v1\""));
        assert_eq!(origin.count(), n, "every reuse asks the origin");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn last_modified_alone_revalidates_with_if_modified_since() -> Result<()> {
    const MODIFIED: &str = "Tue, 01 Sep 2026 10:00:00 GMT";
    let origin = Origin::start(|r| async move {
        // max-age=0: stored (it has a validator) but stale at once.
        let headers = [("cache-control", "max-age=0"), ("last-modified", MODIFIED)];
        if r.header("if-modified-since") == Some(MODIFIED) {
            reply(304, &headers, Bytes::new())
        } else {
            reply(200, &headers, "dated body")
        }
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    assert_eq!(node.get("/a").await?.x_cache(), "Miss");
    let again = node.get("/a").await?;
    assert_eq!(
        (
            again.status.as_u16(),
            again.x_cache(),
            again.text().as_str()
        ),
        (200, "RefreshHit", "dated body")
    );
    let asked = origin.last();
    assert_eq!(asked.header("if-modified-since"), Some(MODIFIED));
    assert_eq!(asked.header("if-none-match"), None, "no ETag was stored");
    assert_eq!(origin.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_object_on_revalidation_replaces_the_stored_one() -> Result<()> {
    let version = Arc::new(AtomicUsize::new(1));
    let current = Arc::clone(&version);
    let origin = Origin::start(move |r| {
        let v = current.load(Ordering::SeqCst);
        async move {
            let etag = format!("\"v{v}\"");
            let headers = [("cache-control", "max-age=0"), ("etag", etag.as_str())];
            if r.header("if-none-match") == Some(etag.as_str()) {
                reply(304, &headers, Bytes::new())
            } else {
                reply(200, &headers, format!("version {v}"))
            }
        }
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    assert_eq!(node.get("/a").await?.text(), "version 1");
    version.store(2, Ordering::SeqCst);
    let changed = node.get("/a").await?;
    assert_eq!(origin.last().header("if-none-match"), Some("\"v1\""));
    assert_eq!(
        (changed.status.as_u16(), changed.text().as_str()),
        (200, "version 2"),
        "the origin's 200 is served, not the stored copy"
    );
    let refreshed = node.get("/a").await?;
    assert_eq!(
        origin.last().header("if-none-match"),
        Some("\"v2\""),
        "the new object replaced the old one in the cache"
    );
    assert_eq!(
        (refreshed.x_cache(), refreshed.text().as_str()),
        ("RefreshHit", "version 2")
    );
    assert_eq!(origin.count(), 3);
    Ok(())
}

/// How a test origin for stale-if-error fails once told to.
#[derive(Clone, Copy)]
enum Failure {
    Status(u16),
    /// Answers later than the node's `response_timeout`.
    Slow,
}

/// An origin that serves a stale-at-once object until `failing` is set, then fails.
async fn failing_origin(failure: Failure, failing: Arc<AtomicBool>) -> Result<Origin> {
    Origin::start(move |_| {
        let failing = failing.load(Ordering::SeqCst);
        async move {
            // `connection: close` so no pooled connection outlives the origin (see `refused`).
            let headers = [
                ("cache-control", "max-age=0"),
                ("etag", "\"v1\""),
                ("connection", "close"),
            ];
            match (failing, failure) {
                (false, _) => reply(200, &headers, "good copy"),
                (true, Failure::Status(status)) => reply(status, &[], "failed"),
                (true, Failure::Slow) => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    reply(200, &[], "too late")
                }
            }
        }
    })
    .await
}

async fn stale_node(origin: &Origin) -> Result<TestNode> {
    TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = ["{}"]
response_timeout = "300ms"

[[behaviors]]
path = "*"
origin = "app"
cache = {LONG}
"#,
        origin.url()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_copy_stands_in_for_every_kind_of_origin_failure() -> Result<()> {
    for failure in [
        Failure::Status(500),
        Failure::Status(502),
        Failure::Status(503),
        Failure::Status(504),
        Failure::Slow,
    ] {
        let failing = Arc::new(AtomicBool::new(false));
        let origin = failing_origin(failure, Arc::clone(&failing)).await?;
        let node = stale_node(&origin).await?;
        assert_eq!(node.get("/a").await?.text(), "good copy");
        failing.store(true, Ordering::SeqCst);
        let served = node.get("/a").await?;
        let label = match failure {
            Failure::Status(s) => s.to_string(),
            Failure::Slow => "timeout".into(),
        };
        assert_eq!(
            (served.status.as_u16(), served.text().as_str()),
            (200, "good copy"),
            "{label}: the stale copy, not the failure"
        );
        assert_eq!(origin.count(), 2, "{label}: the origin was asked first");
        // Without a stored copy the failure goes through.
        assert!(
            node.get("/never-stored").await?.status.as_u16() >= 500,
            "{label}"
        );
    }

    // An unreachable origin: stopped, and refusing connections before the request.
    let failing = Arc::new(AtomicBool::new(false));
    let origin = failing_origin(Failure::Status(500), failing).await?;
    let node = stale_node(&origin).await?;
    assert_eq!(node.get("/a").await?.text(), "good copy");
    let addr = origin.addr;
    drop(origin);
    refused(addr).await?;
    let served = node.get("/a").await?;
    assert_eq!(
        (served.status.as_u16(), served.text().as_str()),
        (200, "good copy"),
        "unreachable: the stale copy"
    );
    assert_eq!(node.get("/b").await?.status.as_u16(), 502);
    Ok(())
}

/// Waits (bounded) until connections to `addr` are refused.
async fn refused(addr: std::net::SocketAddr) -> Result<()> {
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("{addr} still accepts connections")
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_content_from_the_origin_is_never_stored() -> Result<()> {
    let origin = Origin::start(|_| async {
        reply(
            206,
            &[
                ("cache-control", "max-age=600"),
                ("content-range", "bytes 0-3/10"),
            ],
            "part",
        )
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    for _ in 0..2 {
        let r = node.get("/a").await?;
        assert_eq!((r.status.as_u16(), r.x_cache()), (206, "Miss"));
    }
    assert_eq!(
        origin.count(),
        2,
        "a 206 is never stored as the whole object"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn if_range_with_the_current_validator_gets_the_range() -> Result<()> {
    const MODIFIED: &str = "Tue, 01 Sep 2026 10:00:00 GMT";
    let origin = Origin::fixed(
        "0123456789",
        &[
            ("cache-control", "max-age=600"),
            ("etag", "\"v1\""),
            ("last-modified", MODIFIED),
        ],
    )
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    node.get("/r").await?;
    let ranged = |if_range: &'static str| {
        let node = &node;
        async move {
            node.send(
                node.request("GET", "/r")
                    .header("range", "bytes=2-4")
                    .header("if-range", if_range)
                    .body(Full::default())?,
            )
            .await
        }
    };
    for validator in ["\"v1\"", MODIFIED] {
        let r = ranged(validator).await?;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (206, "234"),
            "If-Range: {validator}"
        );
    }
    let other_date = ranged("Mon, 31 Aug 2026 10:00:00 GMT").await?;
    assert_eq!(
        (other_date.status.as_u16(), other_date.text().as_str()),
        (200, "0123456789"),
        "another date: the whole object"
    );
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_is_part_of_the_key() -> Result<()> {
    let origin = Origin::start(|r| async move {
        let host = r.header("x-forwarded-host").unwrap_or("-").to_owned();
        reply(200, &[("cache-control", "max-age=60")], host)
    })
    .await?;
    let node = node_for(&origin, LONG, "{}").await?;
    let get = |host: &'static str| {
        let node = &node;
        async move {
            node.send(
                node.request("GET", "/a")
                    .header("host", host)
                    .body(Full::default())?,
            )
            .await
        }
    };
    assert_eq!(get("a.test").await?.x_cache(), "Miss");
    let b = get("b.test").await?;
    assert_eq!(
        (b.x_cache(), b.text().as_str()),
        ("Miss", "b.test"),
        "another site's object is not shared"
    );
    let a = get("A.TEST").await?;
    assert_eq!(
        (a.x_cache(), a.text().as_str()),
        ("Hit", "a.test"),
        "host names are case-insensitive"
    );
    assert_eq!(origin.count(), 2);
    Ok(())
}
