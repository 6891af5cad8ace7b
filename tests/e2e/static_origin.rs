//! The static origin (a directory served like an S3 bucket) through the node: content types,
//! validators, directories and redirects, HEAD, conditional GET, and no way out of the root.

use std::path::Path;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;

use crate::harness::{Reply, Site, TestNode};

/// The first bytes of a PNG file, so the body is binary (not UTF-8).
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// What a file outside the root holds; no response may ever contain it.
const SECRET: &str = "top-secret-5f3a9c: this file lives outside the site root";

/// A GET with one extra request header.
async fn get_with(node: &TestNode, path: &str, name: &str, value: &str) -> anyhow::Result<Reply> {
    node.send(
        node.request("GET", path)
            .header(name, value)
            .body(Full::default())?,
    )
    .await
}

/// A path as a TOML string value.
fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A node with one behavior `*` serving `site` as the static origin `bucket`.
async fn bucket_node(site: &Site) -> anyhow::Result<TestNode> {
    TestNode::start(&format!(
        "[origins.bucket]\ntype = \"static\"\nroot = {}\n\n[[behaviors]]\npath = \"*\"\norigin = \"bucket\"\n",
        site.root()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn content_type_follows_the_file_extension() -> anyhow::Result<()> {
    let site = Site::new(&[
        ("index.html", "<h1>home</h1>"),
        ("style.css", "body { color: red }"),
        ("app.js", "console.log(1)"),
        ("data.xyzzy", "opaque"),
        ("LICENSE", "no extension"),
    ])?;
    std::fs::write(site.path().join("logo.png"), PNG)?;
    let node = bucket_node(&site).await?;

    let cases: [(&str, &str, &[u8]); 6] = [
        ("/index.html", "text/html; charset=utf-8", b"<h1>home</h1>"),
        (
            "/style.css",
            "text/css; charset=utf-8",
            b"body { color: red }",
        ),
        (
            "/app.js",
            "text/javascript; charset=utf-8",
            b"console.log(1)",
        ),
        ("/logo.png", "image/png", PNG),
        ("/data.xyzzy", "application/octet-stream", b"opaque"),
        ("/LICENSE", "application/octet-stream", b"no extension"),
    ];
    for (path, content_type, body) in cases {
        let reply = node.get(path).await?;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            reply.header("content-length"),
            Some(body.len().to_string().as_str()),
            "{path}"
        );
        assert_eq!(reply.body, Bytes::from_static(body), "{path}");
        assert_eq!(reply.x_cache(), "Miss", "{path}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_and_last_modified_are_present_and_stable() -> anyhow::Result<()> {
    let site = Site::new(&[
        ("style.css", "body { color: red }"),
        ("other.css", "body { color: blue }"),
    ])?;
    let config = format!(
        r#"
[origins.bucket]
type = "static"
root = {root}

[[behaviors]]
path = "*"
origin = "bucket"
"#,
        root = site.root()
    );
    let node = TestNode::start(&config).await?;

    let first = node.get("/style.css").await?;
    assert_eq!(first.status, StatusCode::OK);
    let etag = first
        .header("etag")
        .expect("a static file has an ETag")
        .to_owned();
    let last_modified = first
        .header("last-modified")
        .expect("a static file has Last-Modified")
        .to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong, quoted ETag: {etag}"
    );
    assert!(
        last_modified.ends_with(" GMT"),
        "HTTP date: {last_modified}"
    );

    // Same node (now a hit), and a second node with an empty cache reading the same file.
    let again = node.get("/style.css").await?;
    assert_eq!(again.x_cache(), "Hit");
    let fresh_node = TestNode::start(&config).await?;
    let from_disk = fresh_node.get("/style.css").await?;
    assert_eq!(from_disk.x_cache(), "Miss");
    for reply in [&again, &from_disk] {
        assert_eq!(reply.header("etag"), Some(etag.as_str()));
        assert_eq!(reply.header("last-modified"), Some(last_modified.as_str()));
    }

    // A different file (different size) has a different ETag.
    let other = node.get("/other.css").await?;
    let other_etag = other.header("etag").expect("every file has an ETag");
    assert_ne!(other_etag, etag.as_str());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_file_is_404() -> anyhow::Result<()> {
    let site = Site::new(&[("index.html", "home"), ("docs/index.html", "docs")])?;
    let node = bucket_node(&site).await?;

    for path in [
        "/nope.html",
        "/docs/nope.html",
        "/no/such/dir/",
        "/index.html/extra",
    ] {
        let reply = node.get(path).await?;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.text(), "not found\n", "{path}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn root_and_directory_with_slash_serve_index_html() -> anyhow::Result<()> {
    let site = Site::new(&[
        ("index.html", "<h1>home</h1>"),
        ("docs/index.html", "<h1>docs</h1>"),
        ("docs/guide/index.html", "<h1>guide</h1>"),
        ("empty/readme.txt", "a directory without an index"),
    ])?;
    let node = bucket_node(&site).await?;

    for (path, body) in [
        ("/", "<h1>home</h1>"),
        ("/docs/", "<h1>docs</h1>"),
        ("/docs/guide/", "<h1>guide</h1>"),
    ] {
        let reply = node.get(path).await?;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.text(), body, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
    }

    let no_index = node.get("/empty/").await?;
    assert_eq!(
        no_index.status,
        StatusCode::NOT_FOUND,
        "no index.html, no listing"
    );
    assert!(!no_index.text().contains("readme"), "{}", no_index.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_without_slash_redirects_to_slash() -> anyhow::Result<()> {
    let site = Site::new(&[
        ("docs/index.html", "docs"),
        ("docs/guide/index.html", "guide"),
    ])?;
    let node = bucket_node(&site).await?;

    let reply = node.get("/docs").await?;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.header("location"), Some("/docs/"));

    // The query string survives the redirect.
    let reply = node.get("/docs/guide?lang=en").await?;
    assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(reply.header("location"), Some("/docs/guide/?lang=en"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_redirect_stays_on_this_site() -> anyhow::Result<()> {
    let site = Site::new(&[
        ("docs/index.html", "docs"),
        ("example.com/index.html", "a folder named like a host"),
    ])?;
    let node = bucket_node(&site).await?;

    for path in ["//docs", "//example.com"] {
        let reply = node.get(path).await?;
        assert_eq!(reply.status, StatusCode::MOVED_PERMANENTLY, "{path}");
        let location = reply.header("location").unwrap_or_default();
        assert!(
            location.starts_with('/') && !location.starts_with("//"),
            "{path}: Location {location:?} leaves the site (a browser reads `//host/` as another host)"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_redirect_keeps_each_viewers_own_query() -> anyhow::Result<()> {
    let site = Site::new(&[("docs/index.html", "docs")])?;
    let node = bucket_node(&site).await?;

    let first = node.get("/docs?token=alice-secret").await?;
    assert_eq!(first.header("location"), Some("/docs/?token=alice-secret"));
    let second = node.get("/docs?token=bob").await?;
    assert_eq!(second.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        second.header("location"),
        Some("/docs/?token=bob"),
        "X-Cache: {}",
        second.x_cache()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn head_returns_headers_without_body() -> anyhow::Result<()> {
    const PAGE: &str = "<p>a small page</p>";
    let site = Site::new(&[("page.html", PAGE)])?;
    let node = bucket_node(&site).await?;
    let head = || async {
        node.send(node.request("HEAD", "/page.html").body(Full::default())?)
            .await
    };

    // --- HEAD on an empty cache goes to the bucket as HEAD ---
    let miss = head().await?;
    assert_eq!(miss.status, StatusCode::OK);
    assert!(miss.body.is_empty(), "HEAD has no body: {:?}", miss.body);
    assert_eq!(
        miss.header("content-length"),
        Some(PAGE.len().to_string().as_str())
    );
    assert_eq!(
        miss.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(miss.header("etag").is_some() && miss.header("last-modified").is_some());

    // --- HEAD answered from the cached object ---
    let get = node.get("/page.html").await?;
    assert_eq!(get.text(), PAGE);
    let hit = head().await?;
    assert_eq!(hit.x_cache(), "Hit");
    assert_eq!(hit.status, StatusCode::OK);
    assert!(hit.body.is_empty(), "HEAD has no body: {:?}", hit.body);
    assert_eq!(
        hit.header("content-length"),
        Some(PAGE.len().to_string().as_str())
    );
    assert_eq!(hit.header("etag"), miss.header("etag"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn traversal_never_escapes_the_root() -> anyhow::Result<()> {
    // The secret sits right above the root, where `..` would land.
    let tree = Site::new(&[
        ("secret", SECRET),
        ("site/index.html", "home"),
        ("site/a/page.html", "page"),
    ])?;
    let node = TestNode::start(&format!(
        r#"
[origins.bucket]
type = "static"
root = {root}

[[behaviors]]
path = "*"
origin = "bucket"
"#,
        root = toml_path(&tree.path().join("site"))
    ))
    .await?;

    let attempts = [
        "/../secret",
        "/%2e%2e/secret",
        "/%2E%2E/secret",
        "/.%2e/secret",
        "/%2e%2e%2fsecret",
        "/a/../../secret",
        "/a/..%2f..%2fsecret",
        "/a/%2e%2e/%2e%2e/secret",
        "/..%5csecret",
        "/a/..%5c..%5csecret",
        "/secret%00.html",
        "//etc/passwd",
        "/%2fetc/passwd",
    ];
    for path in attempts {
        let reply = node
            .send(node.request("GET", path).body(Full::default())?)
            .await?;
        assert!(
            reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::NOT_FOUND,
            "{path}: {} {:?}",
            reply.status,
            reply.text()
        );
        assert!(
            !reply.text().contains("top-secret"),
            "{path} leaked the secret: {:?}",
            reply.text()
        );
        assert!(!reply.text().contains("root:"), "{path} leaked /etc/passwd");
    }
    // Still serving normally afterwards.
    assert_eq!(node.get("/a/page.html").await?.text(), "page");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn symlink_out_of_the_root_is_not_served() -> anyhow::Result<()> {
    let outside = Site::new(&[("secret.txt", SECRET)])?;
    let site = Site::new(&[("index.html", "home")])?;
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        site.path().join("leak.txt"),
    )?;
    std::os::unix::fs::symlink(outside.path(), site.path().join("outside"))?;
    let node = bucket_node(&site).await?;

    for path in ["/leak.txt", "/outside/secret.txt", "/outside/", "/outside"] {
        let reply = node.get(path).await?;
        assert!(
            reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::NOT_FOUND,
            "{path}: {} {:?}",
            reply.status,
            reply.text()
        );
        assert!(
            !reply.text().contains("top-secret"),
            "{path} leaked the secret: {:?}",
            reply.text()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn symlink_inside_the_root_is_served() -> anyhow::Result<()> {
    let site = Site::new(&[
        ("assets/app-v2.css", "body { margin: 0 }"),
        ("docs/index.html", "docs"),
    ])?;
    std::os::unix::fs::symlink("assets/app-v2.css", site.path().join("app.css"))?;
    std::os::unix::fs::symlink(site.path().join("docs"), site.path().join("manual"))?;
    let node = bucket_node(&site).await?;

    let file = node.get("/app.css").await?;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.text(), "body { margin: 0 }");
    assert_eq!(file.header("content-type"), Some("text/css; charset=utf-8"));

    let dir = node.get("/manual/").await?;
    assert_eq!(dir.status, StatusCode::OK);
    assert_eq!(dir.text(), "docs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_other_than_get_and_head_get_405_from_the_bucket() -> anyhow::Result<()> {
    let site = Site::new(&[("index.html", "home")])?;
    let node = TestNode::start(&format!(
        r#"
[origins.bucket]
type = "static"
root = {root}

[[behaviors]]
path = "*"
origin = "bucket"
methods = ["GET", "HEAD", "OPTIONS", "PUT", "POST", "PATCH", "DELETE"]
"#,
        root = site.root()
    ))
    .await?;

    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let request = node
            .request(method, "/index.html")
            .body(Full::new(Bytes::from_static(b"payload")))?;
        let reply = node.send(request).await?;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
        assert!(
            reply.text().contains("method not allowed"),
            "{method}: {:?}",
            reply.text()
        );
    }
    // Nothing was written or deleted.
    assert_eq!(
        std::fs::read_to_string(site.path().join("index.html"))?,
        "home"
    );
    assert_eq!(node.get("/index.html").await?.text(), "home");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_get_with_matching_validator_gets_304() -> anyhow::Result<()> {
    let site = Site::new(&[("style.css", "body { color: red }")])?;
    let config = format!(
        r#"
[origins.bucket]
type = "static"
root = {root}

[[behaviors]]
path = "*"
origin = "bucket"
"#,
        root = site.root()
    );
    let node = TestNode::start(&config).await?;
    let first = node.get("/style.css").await?;
    let etag = first.header("etag").expect("ETag").to_owned();
    let last_modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();

    // --- answered from the cached object ---
    let hit = get_with(&node, "/style.css", "if-none-match", &etag).await?;
    assert_eq!(hit.status, StatusCode::NOT_MODIFIED);
    assert!(hit.body.is_empty(), "a 304 has no body: {:?}", hit.body);
    assert_eq!(hit.header("etag"), Some(etag.as_str()));
    assert_eq!(hit.x_cache(), "Hit");

    let by_date = get_with(&node, "/style.css", "if-modified-since", &last_modified).await?;
    assert_eq!(by_date.status, StatusCode::NOT_MODIFIED);
    assert!(by_date.body.is_empty());

    let other = get_with(&node, "/style.css", "if-none-match", "\"something-else\"").await?;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.text(), "body { color: red }");

    // --- on a miss: another node, empty cache, same file ---
    let fresh_node = TestNode::start(&config).await?;
    let miss = get_with(&fresh_node, "/style.css", "if-none-match", &etag).await?;
    assert_eq!(miss.status, StatusCode::NOT_MODIFIED);
    assert!(miss.body.is_empty(), "a 304 has no body: {:?}", miss.body);
    assert_eq!(miss.header("etag"), Some(etag.as_str()));
    // The miss still filled the cache with the full object.
    let full = fresh_node.get("/style.css").await?;
    assert_eq!(full.x_cache(), "Hit");
    assert_eq!(full.text(), "body { color: red }");
    Ok(())
}
