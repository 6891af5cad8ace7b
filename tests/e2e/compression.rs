//! Automatic compression (`compress = true`): the encoding each viewer gets, the variants kept
//! apart in the cache and built from one origin fetch, `Vary`, weak ETags, ranges from the
//! identity object, and what is left untouched (encoded, small, binary, `compress = false`).

use std::io::Read;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;

use crate::harness::{reply, Origin, Reply, TestNode, ADMIN_TOKEN};

/// A text page of a few KiB that compresses well.
fn page() -> String {
    (0..200)
        .map(|i| format!("<p>line {i} of the page</p>\n"))
        .collect()
}

/// An origin serving [`page`] as HTML with a strong ETag, cacheable for an hour.
async fn text_origin() -> Result<Origin> {
    Origin::start(|_| async move {
        reply(
            200,
            &[
                ("content-type", "text/html; charset=utf-8"),
                ("cache-control", "max-age=3600"),
                ("etag", "\"v1\""),
            ],
            page(),
        )
    })
    .await
}

async fn compressing(origin: &Origin) -> Result<TestNode> {
    TestNode::in_front_of(origin, "compress = true").await
}

/// GET `path` with these request headers.
async fn get(node: &TestNode, path: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    let mut request = node.request("GET", path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    node.send(request.body(Full::default())?).await
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .context("not gzip")?;
    Ok(out)
}

fn unbrotli(body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    brotli::Decompressor::new(body, 4096)
        .read_to_end(&mut out)
        .context("not brotli")?;
    Ok(out)
}

/// The `Vary` values of a reply, one name per entry, lowercase.
fn vary(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_encoding_gets_its_own_bytes_from_one_origin_fetch() -> Result<()> {
    let origin = text_origin().await?;
    let node = compressing(&origin).await?;
    let text = page();

    let identity = get(&node, "/p", &[]).await?;
    assert_eq!(
        (identity.x_cache(), identity.text()),
        ("Miss", text.clone())
    );
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(origin.last().header("accept-encoding"), None);

    for round in ["first", "second"] {
        let br = get(&node, "/p", &[("accept-encoding", "gzip, deflate, br")]).await?;
        assert_eq!(br.x_cache(), "Hit", "{round} br");
        assert_eq!(br.header("content-encoding"), Some("br"));
        assert_eq!(unbrotli(&br.body)?, text.as_bytes());
        assert!(br.body.len() < text.len() / 3, "{} bytes", br.body.len());
        assert_eq!(
            br.header("content-length"),
            Some(br.body.len().to_string().as_str())
        );

        let gzip = get(&node, "/p", &[("accept-encoding", "gzip")]).await?;
        assert_eq!(gzip.x_cache(), "Hit", "{round} gzip");
        assert_eq!(gzip.header("content-encoding"), Some("gzip"));
        assert_eq!(gunzip(&gzip.body)?, text.as_bytes());

        let plain = get(&node, "/p", &[("accept-encoding", "identity")]).await?;
        assert_eq!(plain.x_cache(), "Hit", "{round} identity");
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.text(), text);

        for reply in [&br, &gzip, &plain] {
            assert_eq!(vary(reply), ["accept-encoding"]);
        }
    }
    assert_eq!(origin.count(), 1, "variants come from the stored object");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miss_for_a_br_viewer_stores_identity_and_the_variant_from_one_fetch() -> Result<()> {
    let origin = text_origin().await?;
    let node = compressing(&origin).await?;
    let first = get(&node, "/p", &[("accept-encoding", "br, gzip")]).await?;
    assert_eq!(first.x_cache(), "Miss");
    assert_eq!(vary(&first), ["accept-encoding"]);
    // The origin is asked for the one encoding this viewer gets, not the raw header.
    assert_eq!(origin.last().header("accept-encoding"), Some("br"));
    let body = match first.header("content-encoding") {
        Some("br") => unbrotli(&first.body)?,
        None => first.body.to_vec(),
        other => anyhow::bail!("unexpected encoding {other:?}"),
    };
    assert_eq!(body, page().as_bytes());

    let br = get(&node, "/p", &[("accept-encoding", "br")]).await?;
    assert_eq!(
        (br.x_cache(), br.header("content-encoding")),
        ("Hit", Some("br"))
    );
    let plain = get(&node, "/p", &[]).await?;
    assert_eq!(
        (plain.x_cache(), plain.header("content-encoding")),
        ("Hit", None)
    );
    assert_eq!(plain.text(), page());
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn q_zero_refuses_an_encoding() -> Result<()> {
    let origin = text_origin().await?;
    let node = compressing(&origin).await?;
    get(&node, "/p", &[]).await?;
    let gzip = get(&node, "/p", &[("accept-encoding", "br;q=0, gzip")]).await?;
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gunzip(&gzip.body)?, page().as_bytes());
    let none = get(&node, "/p", &[("accept-encoding", "br;q=0, gzip;q=0")]).await?;
    assert_eq!(none.header("content-encoding"), None);
    assert_eq!(none.text(), page());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_variant_has_a_weak_etag_that_revalidates() -> Result<()> {
    let origin = text_origin().await?;
    let node = compressing(&origin).await?;
    let plain = get(&node, "/p", &[]).await?;
    assert_eq!(
        plain.header("etag"),
        Some("\"v1\""),
        "identity keeps its strong tag"
    );
    let br = get(&node, "/p", &[("accept-encoding", "br")]).await?;
    assert_eq!(br.header("etag"), Some("W/\"v1\""));

    let not_modified = get(
        &node,
        "/p",
        &[("accept-encoding", "br"), ("if-none-match", "W/\"v1\"")],
    )
    .await?;
    assert_eq!(not_modified.status.as_u16(), 304);
    assert!(not_modified.body.is_empty());
    assert_eq!(not_modified.header("etag"), Some("W/\"v1\""));
    assert_eq!(vary(&not_modified), ["accept-encoding"]);
    let changed = get(
        &node,
        "/p",
        &[("accept-encoding", "gzip"), ("if-none-match", "W/\"v0\"")],
    )
    .await?;
    assert_eq!(changed.status.as_u16(), 200);
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn head_matches_get_for_a_compressed_variant() -> Result<()> {
    let origin = text_origin().await?;
    let node = compressing(&origin).await?;
    get(&node, "/p", &[]).await?;
    let full = get(&node, "/p", &[("accept-encoding", "br")]).await?;
    let head = node
        .send(
            node.request("HEAD", "/p")
                .header("accept-encoding", "br")
                .body(Full::default())?,
        )
        .await?;
    assert!(head.body.is_empty());
    for name in ["content-encoding", "content-length", "etag", "vary"] {
        assert_eq!(head.header(name), full.header(name), "{name}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_is_answered_from_the_identity_object() -> Result<()> {
    let origin = text_origin().await?;
    let node = compressing(&origin).await?;
    get(&node, "/p", &[("accept-encoding", "br")]).await?;
    let part = get(
        &node,
        "/p",
        &[("accept-encoding", "br, gzip"), ("range", "bytes=0-9")],
    )
    .await?;
    assert_eq!(part.status.as_u16(), 206);
    assert_eq!(part.header("content-encoding"), None);
    assert_eq!(part.body, Bytes::from(page()).slice(0..10));
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 0-9/{}", page().len()).as_str())
    );
    assert_eq!(vary(&part), ["accept-encoding"]);
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encoded_origin_response_is_stored_untouched() -> Result<()> {
    let gzipped = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(page().as_bytes())?;
        Bytes::from(encoder.finish()?)
    };
    let served = gzipped.clone();
    let origin = Origin::start(move |r| {
        let served = served.clone();
        async move {
            if r.header("accept-encoding") == Some("gzip") {
                reply(
                    200,
                    &[
                        ("content-type", "text/html"),
                        ("content-encoding", "gzip"),
                        ("cache-control", "max-age=3600"),
                        ("etag", "\"gz\""),
                    ],
                    served,
                )
            } else {
                reply(
                    200,
                    &[
                        ("content-type", "text/html"),
                        ("cache-control", "max-age=3600"),
                    ],
                    page(),
                )
            }
        }
    })
    .await?;
    let node = compressing(&origin).await?;
    for expected in ["Miss", "Hit"] {
        let gzip = get(&node, "/p", &[("accept-encoding", "gzip")]).await?;
        assert_eq!(gzip.x_cache(), expected);
        assert_eq!(gzip.header("content-encoding"), Some("gzip"));
        assert_eq!(
            gzip.body, gzipped,
            "the origin's bytes, not compressed again"
        );
        assert_eq!(gzip.header("etag"), Some("\"gz\""), "the origin's own tag");
        assert_eq!(vary(&gzip), ["accept-encoding"]);
    }
    let plain = get(&node, "/p", &[]).await?;
    assert_eq!(
        plain.x_cache(),
        "Miss",
        "the identity object is another fetch"
    );
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.text(), page());
    assert_eq!(origin.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn small_and_binary_objects_are_not_compressed() -> Result<()> {
    let png: Bytes = Bytes::from(vec![0u8; 5000]);
    let body = png.clone();
    let origin = Origin::start(move |r| {
        let body = body.clone();
        async move {
            let cc = ("cache-control", "max-age=3600");
            match r.uri.as_str() {
                "/small.txt" => reply(200, &[("content-type", "text/plain"), cc], "x".repeat(999)),
                _ => reply(200, &[("content-type", "image/png"), cc], body),
            }
        }
    })
    .await?;
    let node = compressing(&origin).await?;
    for path in ["/small.txt", "/a.png"] {
        for expected in ["Miss", "Hit"] {
            let r = get(&node, path, &[("accept-encoding", "br, gzip")]).await?;
            assert_eq!(r.x_cache(), expected, "{path}");
            assert_eq!(r.header("content-encoding"), None, "{path}");
            assert!(vary(&r).is_empty(), "{path}: {:?}", vary(&r));
        }
    }
    assert_eq!(get(&node, "/small.txt", &[]).await?.body.len(), 999);
    assert_eq!(get(&node, "/a.png", &[]).await?.body, png);
    assert_eq!(origin.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn compress_false_leaves_responses_and_the_origin_request_alone() -> Result<()> {
    let origin = text_origin().await?;
    let node = TestNode::in_front_of(&origin, "").await?;
    for expected in ["Miss", "Hit"] {
        let r = get(&node, "/p", &[("accept-encoding", "gzip, br")]).await?;
        assert_eq!(r.x_cache(), expected);
        assert_eq!(r.header("content-encoding"), None);
        assert!(r.headers.get("vary").is_none());
        assert_eq!(r.header("etag"), Some("\"v1\""));
        assert_eq!(r.text(), page());
    }
    assert_eq!(
        origin.last().header("accept-encoding"),
        Some("gzip, br"),
        "forwarded as the viewer sent it"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidation_drops_the_compressed_variants() -> Result<()> {
    let origin = text_origin().await?;
    let data = tempfile::tempdir()?;
    let node = TestNode::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\ndata_dir = {data:?}\n\
         [origins.app]\ntype = \"http\"\ntargets = [\"{origin}\"]\n\
         [[behaviors]]\npath = \"*\"\norigin = \"app\"\nmethods = [\"GET\", \"HEAD\", \"POST\"]\n\
         compress = true\n",
        data = data.path().display().to_string(),
        origin = origin.url(),
    ))
    .await?;
    let br = |node| get(node, "/p", &[("accept-encoding", "br")]);
    br(&node).await?;
    assert_eq!(br(&node).await?.x_cache(), "Hit");

    let created = node
        .admin("POST", "/invalidations", r#"{"paths": ["/p"]}"#)
        .await?;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text());
    let after = br(&node).await?;
    assert_eq!(after.x_cache(), "Miss", "admin invalidation");
    assert_eq!(origin.count(), 2);
    assert_eq!(br(&node).await?.header("content-encoding"), Some("br"));

    node.send(node.request("POST", "/p").body(Full::default())?)
        .await?;
    assert_eq!(
        br(&node).await?.x_cache(),
        "Miss",
        "after an unsafe request"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refetched_identity_object_replaces_its_variants() -> Result<()> {
    let version = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let current = std::sync::Arc::clone(&version);
    let origin = Origin::start(move |_| {
        let v = current.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            let etag = format!("\"v{v}\"");
            reply(
                200,
                &[
                    ("content-type", "text/plain"),
                    ("cache-control", "max-age=3600"),
                    ("etag", etag.as_str()),
                ],
                format!("version {v}\n").repeat(200),
            )
        }
    })
    .await?;
    let node = TestNode::in_front_of(
        &origin,
        "compress = true\ncache = { viewer_cache_control = \"honor\" }",
    )
    .await?;
    get(&node, "/p", &[("accept-encoding", "br")]).await?;
    let before = get(&node, "/p", &[("accept-encoding", "br")]).await?;
    assert_eq!(before.x_cache(), "Hit");
    assert!(String::from_utf8(unbrotli(&before.body)?)?.starts_with("version 1"));

    // A viewer's no-cache makes the node ask again; the origin now has version 2.
    version.store(2, std::sync::atomic::Ordering::SeqCst);
    let fresh = get(&node, "/p", &[("cache-control", "no-cache")]).await?;
    assert!(fresh.text().starts_with("version 2"), "{}", fresh.text());

    let after = get(&node, "/p", &[("accept-encoding", "br")]).await?;
    assert_eq!(after.x_cache(), "Hit");
    assert!(
        String::from_utf8(unbrotli(&after.body)?)?.starts_with("version 2"),
        "the br variant of version 1 outlived its identity object"
    );
    assert_eq!(after.header("etag"), Some("W/\"v2\""));
    assert_eq!(origin.count(), 2);
    Ok(())
}
