//! Edge functions end to end: each example function in `functions/` through a real node, and
//! every capability of ABI v1 per event.

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;

use crate::harness::{function, reply, Modules, Origin, Site, TestNode};

include!(concat!(env!("OUT_DIR"), "/functions.rs"));

/// Fails to compile if an example function has no test here.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
for_each_function!(assert_test_exists);

/// A node with the static bucket `bucket`, the http origin `app`, and one behavior `*` to
/// the bucket with `functions` attached.
async fn node_with(
    site: &Site,
    app: &Origin,
    functions: &str,
    attach: &str,
    cache: &str,
) -> Result<TestNode> {
    TestNode::start(&format!(
        r#"
{functions}
[origins.bucket]
type = "static"
root = {root}

[origins.app]
type = "http"
targets = ["{app}"]

[[behaviors]]
path = "*"
origin = "bucket"
methods = ["GET", "HEAD", "POST"]
functions = {attach}
cache = {cache}
"#,
        root = site.root(),
        app = app.url(),
    ))
    .await
}

const LONG: &str = r#"{ default_ttl = "1d" }"#;

#[tokio::test(flavor = "multi_thread")]
async fn router() -> Result<()> {
    let site = Site::new(&[("index.html", "app shell"), ("css/site.css", "body{}")])?;
    // The app's answers are cacheable, so a session `/` is stored: the anonymous `/` below
    // shows whether the cache keeps the app's object apart from the bucket's.
    let app = Origin::start(|r| async move {
        reply(
            200,
            &[("cache-control", "max-age=60")],
            format!("app saw {} {}", r.method, r.uri),
        )
    })
    .await?;
    let node = node_with(
        &site,
        &app,
        &function("router", ROUTER),
        r#"{ viewer_request = "router" }"#,
        LONG,
    )
    .await?;

    assert_eq!(node.get("/css/site.css").await?.text(), "body{}");
    assert_eq!(
        node.get("/api/users?id=7").await?.text(),
        "app saw GET /api/users?id=7"
    );
    let post = node
        .send(
            node.request("POST", "/form")
                .body(Full::new(Bytes::from("x")))?,
        )
        .await?;
    assert_eq!(post.text(), "app saw POST /form");
    let session = node
        .send(
            node.request("GET", "/")
                .header("cookie", "session=abc")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(session.text(), "app saw GET /");
    // Single-page-app fallback: a client route loads the shell from the bucket.
    let deep = node.get("/app/settings/profile").await?;
    assert_eq!(
        (deep.status.as_u16(), deep.text().as_str()),
        (200, "app shell")
    );
    // An anonymous `/` is the bucket's; the session's stored `/` from the app must not be
    // served to it (the function-chosen origin is part of the cache key).
    let anonymous = node.get("/").await?;
    assert_eq!(
        (anonymous.x_cache(), anonymous.text().as_str()),
        ("Miss", "app shell")
    );
    let again = node
        .send(
            node.request("GET", "/")
                .header("cookie", "session=abc")
                .body(Full::default())?,
        )
        .await?;
    assert_eq!(
        (again.x_cache(), again.text().as_str()),
        ("Hit", "app saw GET /"),
        "the app's `/` was stored under its own key"
    );
    assert_eq!(app.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_key() -> Result<()> {
    let app = Origin::start(|r| async move {
        let class = r.header("x-device-class").unwrap_or("none").to_owned();
        reply(
            200,
            &[("cache-control", "max-age=60")],
            format!("{class} {}", r.uri),
        )
    })
    .await?;
    let node = TestNode::start(&format!(
        "{}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ viewer_request = \"cache_key\" }}\ncache_key = {{ query = \"all\" }}\n",
        function("cache_key", CACHE_KEY),
        app.url()
    ))
    .await?;
    let get = |path: &'static str, ua: &'static str| {
        let node = &node;
        async move {
            node.send(
                node.request("GET", path)
                    .header("user-agent", ua)
                    .body(Full::default())?,
            )
            .await
        }
    };
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/128.0";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";

    let first = get("/p?b=2&utm_source=news&a=1&fbclid=xyz", FIREFOX).await?;
    assert_eq!(
        first.text(),
        "desktop /p?a=1&b=2",
        "tracking stripped, query sorted, class sent"
    );
    let same = get("/p?a=1&gclid=1&b=2", CHROME).await?;
    assert_eq!(
        (same.x_cache(), same.text().as_str()),
        ("Hit", "desktop /p?a=1&b=2"),
        "another desktop browser shares the object"
    );
    let mobile = get("/p?a=1&b=2", IPHONE).await?;
    assert_eq!(
        (mobile.x_cache(), mobile.text().as_str()),
        ("Miss", "mobile /p?a=1&b=2"),
        "the device class splits the cache"
    );
    assert_eq!(app.count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn responder() -> Result<()> {
    let site = Site::new(&[("index.html", "home"), ("pricing", "prices")])?;
    let app = Origin::fixed("app", &[]).await?;
    let node = node_with(
        &site,
        &app,
        &function("responder", RESPONDER),
        r#"{ viewer_request = "responder" }"#,
        LONG,
    )
    .await?;

    let moved = node.get("/old-pricing?plan=pro").await?;
    assert_eq!(
        (moved.status.as_u16(), moved.header("location")),
        (301, Some("/pricing?plan=pro"))
    );
    assert_eq!(moved.x_cache(), "FunctionGeneratedResponse");
    assert_eq!(node.get("/black-friday").await?.status.as_u16(), 302);
    let admin = node.get("/admin/users").await?;
    assert_eq!(
        (admin.status.as_u16(), admin.text().as_str()),
        (403, "403 Forbidden\n")
    );
    let maintenance = node.get("/checkout/cart").await?;
    assert_eq!(
        (
            maintenance.status.as_u16(),
            maintenance.header("retry-after")
        ),
        (503, Some("300"))
    );
    assert!(maintenance.text().contains("Back soon"));
    assert_eq!(
        node.get("/").await?.text(),
        "home",
        "other paths go on to the origin"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn headers() -> Result<()> {
    let app = Origin::start(|r| async move {
        match r.uri.as_str() {
            "/assets/app.3f9a2b1c.js" => reply(200, &[("cache-control", "no-cache")], "js"),
            "/missing" => reply(404, &[("cache-control", "no-store")], "bare 404"),
            _ => reply(200, &[("content-security-policy", "default-src *")], "page"),
        }
    })
    .await?;
    let node = TestNode::start(&format!(
        "{}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ origin_response = \"headers\" }}\ncache = {{ default_ttl = \"0s\", max_ttl = \"60s\" }}\n",
        function("headers", HEADERS),
        app.url()
    ))
    .await?;
    let page = node.get("/page").await?;
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.header("strict-transport-security").is_some());
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src *"),
        "the origin's own CSP is kept"
    );

    // The function's lifetime overrides `no-cache` and max_ttl: the hashed asset is a hit.
    node.get("/assets/app.3f9a2b1c.js").await?;
    let asset = node.get("/assets/app.3f9a2b1c.js").await?;
    assert_eq!(
        (asset.x_cache(), asset.header("cache-control")),
        ("Hit", Some("public, max-age=31536000, immutable"))
    );
    assert!(
        asset.header("x-content-type-options").is_some(),
        "hits carry the headers stored with the object"
    );

    let missing = node.get("/missing").await?;
    assert_eq!(missing.status.as_u16(), 404);
    assert!(
        missing.text().contains("We could not find that page"),
        "{}",
        missing.text()
    );
    assert_eq!(
        missing.header("content-length"),
        Some(missing.body.len().to_string().as_str())
    );
    assert_eq!(app.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wat_server_header() -> Result<()> {
    let site = Site::new(&[("index.html", "<p>hi</p>"), ("data.json", "{}")])?;
    let app = Origin::fixed("app", &[]).await?;
    let node = node_with(
        &site,
        &app,
        &function("marker", WAT_SERVER_HEADER),
        r#"{ viewer_response = "marker" }"#,
        LONG,
    )
    .await?;
    let html = node.get("/").await?;
    assert_eq!(
        (html.header("x-served-by"), html.header("x-frame-options")),
        (Some("edge-wat"), Some("DENY"))
    );
    let hit = node.get("/").await?;
    assert_eq!(
        (hit.x_cache(), hit.header("x-served-by")),
        ("Hit", Some("edge-wat")),
        "viewer-response runs on hits too"
    );
    let json = node.get("/data.json").await?;
    assert_eq!(
        (json.header("x-served-by"), json.header("x-frame-options")),
        (Some("edge-wat"), None)
    );
    Ok(())
}

/// origin-request: change the request, pick the origin, or answer; origin-response: read and
/// replace the body.
#[tokio::test(flavor = "multi_thread")]
async fn origin_events_change_request_pick_origin_and_body() -> Result<()> {
    const ORIGIN_REQUEST: &str = r#"(module
      (import "edge_v1" "request_get_uri" (func $uri (param i32 i32 i32) (result i32)))
      (import "edge_v1" "request_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (import "edge_v1" "origin_set" (func $origin (param i32 i32) (result i32)))
      (import "edge_v1" "response_set_status" (func $status (param i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-stage") (data (i32.const 16) "origin-request") (data (i32.const 32) "app")
      (func (export "origin-request") (result i32)
        (drop (call $uri (i32.const 100) (i32.const 100) (i32.const 200)))
        ;; "/deny..." is answered 451 here; "/app..." goes to the app; everything gets x-stage.
        (if (i32.eq (i32.load (i32.const 100)) (i32.const 0x6e65642f)) ;; "/den"
          (then (drop (call $status (i32.const 451))) (return (i32.const 1))))
        (if (i32.eq (i32.load (i32.const 100)) (i32.const 0x7070612f)) ;; "/app"
          (then (drop (call $origin (i32.const 32) (i32.const 3)))))
        (drop (call $set (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 14)))
        (i32.const 0)))"#;
    const ORIGIN_RESPONSE: &str = r#"(module
      (import "edge_v1" "response_get_body" (func $get (param i32 i32 i32) (result i32)))
      (import "edge_v1" "response_set_body" (func $set (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "origin-response") (result i32)
        (local $len i32)
        ;; Body at 1024, its length at 0; append "!" and write it back.
        (if (i32.eqz (call $get (i32.const 1024) (i32.const 60000) (i32.const 0)))
          (then
            (local.set $len (i32.load (i32.const 0)))
            (i32.store8 (i32.add (i32.const 1024) (local.get $len)) (i32.const 33))
            (drop (call $set (i32.const 1024) (i32.add (local.get $len) (i32.const 1))))))
        (i32.const 0)))"#;
    let modules = Modules::new(&[("req", ORIGIN_REQUEST), ("resp", ORIGIN_RESPONSE)])?;
    let site = Site::new(&[("page", "from bucket")])?;
    let app = Origin::start(|r| async move {
        reply(
            200,
            &[],
            format!("from app {}", r.header("x-stage").unwrap_or("-")),
        )
    })
    .await?;
    let node = node_with(
        &site,
        &app,
        &modules.toml(""),
        r#"{ origin_request = "req", origin_response = "resp" }"#,
        LONG,
    )
    .await?;

    assert_eq!(node.get("/page").await?.text(), "from bucket!");
    let switched = node.get("/app/x").await?;
    assert_eq!(
        switched.text(),
        "from app origin-request!",
        "origin switched, header added, body appended"
    );
    let denied = node.get("/deny").await?;
    assert_eq!(
        (denied.status.as_u16(), denied.x_cache()),
        (451, "FunctionGeneratedResponse")
    );
    assert_eq!(app.count(), 1);
    Ok(())
}

/// viewer-request: set the cache key outright, and a generated body.
#[tokio::test(flavor = "multi_thread")]
async fn viewer_request_sets_cache_key_outright() -> Result<()> {
    const KEY: &str = r#"(module
      (import "edge_v1" "cache_key_set" (func $key (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "one-key-for-all")
      (func (export "viewer-request") (result i32)
        (drop (call $key (i32.const 0) (i32.const 15)))
        (i32.const 0)))"#;
    let modules = Modules::new(&[("key", KEY)])?;
    let site = Site::new(&[("a", "A"), ("b", "B")])?;
    let app = Origin::fixed("app", &[]).await?;
    let node = node_with(
        &site,
        &app,
        &modules.toml(""),
        r#"{ viewer_request = "key" }"#,
        LONG,
    )
    .await?;
    assert_eq!(node.get("/a").await?.text(), "A");
    let b = node.get("/b").await?;
    assert_eq!(
        (b.x_cache(), b.text().as_str()),
        ("Hit", "A"),
        "one key for every path: /b is /a's object"
    );
    Ok(())
}

/// An origin-response module that calls `cache_set_ttl(ttl)` and reports the call's status
/// as a digit in `x-ttl-status`.
fn ttl_setter(ttl: i64) -> String {
    format!(
        r#"(module
      (import "edge_v1" "cache_set_ttl" (func $ttl (param i64) (result i32)))
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-ttl-status")
      (func (export "origin-response") (result i32)
        (i32.store8 (i32.const 200) (i32.add (i32.const 48) (call $ttl (i64.const {ttl}))))
        (drop (call $set (i32.const 0) (i32.const 12) (i32.const 200) (i32.const 1)))
        (i32.const 0)))"#
    )
}

/// A node whose `*` behavior (GET and POST, nothing stored by default) runs `ttl_setter(ttl)`
/// on origin-response in front of `app`.
async fn ttl_node(app: &Origin, ttl: i64) -> Result<(TestNode, Modules)> {
    let modules = Modules::new(&[("ttl", &ttl_setter(ttl))])?;
    let node = TestNode::start(&format!(
        "{}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nmethods = [\"GET\", \"POST\"]\nfunctions = {{ origin_response = \"ttl\" }}\ncache = {{ default_ttl = \"0s\", max_ttl = \"60s\" }}\n",
        modules.toml(""),
        app.url()
    ))
    .await?;
    Ok((node, modules))
}

#[tokio::test(flavor = "multi_thread")]
async fn cache_set_ttl_never_stores_what_must_not_be_shared() -> Result<()> {
    let app = Origin::start(|r| async move {
        match r.uri.as_str() {
            "/cookie" => reply(200, &[("set-cookie", "id=alice")], "alice's page"),
            "/private" => reply(200, &[("cache-control", "private")], "alice's data"),
            "/cacheable" => reply(200, &[("cache-control", "max-age=60")], "shared"),
            _ => reply(200, &[], "plain"),
        }
    })
    .await?;
    let fetched = |path: &str| app.received().iter().filter(|r| r.uri == path).count();

    let (node, _m) = ttl_node(&app, 3600).await?;
    let plain = [node.get("/plain").await?, node.get("/plain").await?];
    assert_eq!(
        (plain[0].header("x-ttl-status"), plain[1].x_cache()),
        (Some("0"), "Hit"),
        "the function's TTL stores what the behavior would not"
    );
    for path in ["/cookie", "/private"] {
        for _ in 0..2 {
            let r = node.get(path).await?;
            assert_eq!(r.x_cache(), "Miss", "{path} is never stored");
        }
        assert_eq!(fetched(path), 2, "{path}: each viewer reached the origin");
    }
    let second = node.get("/cookie").await?;
    assert_eq!(second.header("set-cookie"), Some("id=alice"));
    for _ in 0..2 {
        let post = node
            .send(
                node.request("POST", "/posted")
                    .body(Full::new(Bytes::from("x")))?,
            )
            .await?;
        assert_eq!(post.x_cache(), "Miss", "a POST response is never stored");
    }
    assert_eq!(fetched("/posted"), 2);

    // 0: do not store, whatever the origin says.
    let (node, _m) = ttl_node(&app, 0).await?;
    let before = fetched("/cacheable");
    for _ in 0..2 {
        let r = node.get("/cacheable").await?;
        assert_eq!((r.header("x-ttl-status"), r.x_cache()), (Some("0"), "Miss"));
    }
    assert_eq!(fetched("/cacheable") - before, 2);

    // Negative: INVALID_ARGUMENT, and the origin's own lifetime stands.
    let (node, _m) = ttl_node(&app, -5).await?;
    let first = node.get("/cacheable").await?;
    assert_eq!(first.header("x-ttl-status"), Some("2"), "INVALID_ARGUMENT");
    assert_eq!(node.get("/cacheable").await?.x_cache(), "Hit");
    let plain = node.get("/plain").await?;
    assert_eq!(plain.header("x-ttl-status"), Some("2"));
    assert_eq!(node.get("/plain").await?.x_cache(), "Miss");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn body_limit_bounds_what_origin_response_reads_and_writes() -> Result<()> {
    // Reads the body (status in x-get), then tries to write 2 KiB (status in x-set).
    const BODY: &str = r#"(module
      (import "edge_v1" "response_get_body" (func $get (param i32 i32 i32) (result i32)))
      (import "edge_v1" "response_set_body" (func $put (param i32 i32) (result i32)))
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 2)
      (data (i32.const 100) "x-get") (data (i32.const 110) "x-set")
      (func (export "origin-response") (result i32)
        (i32.store8 (i32.const 200) (i32.add (i32.const 48)
          (call $get (i32.const 1024) (i32.const 60000) (i32.const 0))))
        (i32.store8 (i32.const 201) (i32.add (i32.const 48)
          (call $put (i32.const 1024) (i32.const 2048))))
        (drop (call $set (i32.const 100) (i32.const 5) (i32.const 200) (i32.const 1)))
        (drop (call $set (i32.const 110) (i32.const 5) (i32.const 201) (i32.const 1)))
        (i32.const 0)))"#;
    let modules = Modules::new(&[("body", BODY)])?;
    let app = Origin::start(|r| async move {
        let size = if r.uri == "/big" { 4096 } else { 100 };
        reply(200, &[], vec![b'a'; size])
    })
    .await?;
    let node = TestNode::start(&format!(
        "{}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ origin_response = \"body\" }}\n",
        modules.toml("body_limit = \"1 KiB\""),
        app.url()
    ))
    .await?;
    let small = node.get("/small").await?;
    assert_eq!(
        (
            small.status.as_u16(),
            small.header("x-get"),
            small.header("x-set")
        ),
        (200, Some("0"), Some("5")),
        "a small body is read; a write over the limit is LIMIT_EXCEEDED"
    );
    assert_eq!(
        &small.body[..],
        &[b'a'; 100][..],
        "the refused write changed nothing"
    );
    let big = node.get("/big").await?;
    assert_eq!(
        (
            big.status.as_u16(),
            big.header("x-get"),
            big.header("x-set")
        ),
        (200, Some("6"), Some("5")),
        "a body over the limit is UNAVAILABLE"
    );
    assert_eq!(
        &big.body[..],
        &[b'a'; 4096][..],
        "it reaches the viewer untouched"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_response_headers_are_joined_as_abi_md_says() -> Result<()> {
    // Reads `set-cookie` and `x-multi` and makes them the body, one per line pair.
    const JOIN: &str = r#"(module
      (import "edge_v1" "response_get_header" (func $get (param i32 i32 i32 i32 i32) (result i32)))
      (import "edge_v1" "response_set_body" (func $body (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "set-cookie") (data (i32.const 16) "x-multi")
      (func (export "origin-response") (result i32)
        (local $a i32)
        (drop (call $get (i32.const 0) (i32.const 10) (i32.const 1024) (i32.const 1000) (i32.const 100)))
        (local.set $a (i32.load (i32.const 100)))
        (i32.store8 (i32.add (i32.const 1024) (local.get $a)) (i32.const 124)) ;; "|"
        (drop (call $get (i32.const 16) (i32.const 7)
          (i32.add (i32.const 1025) (local.get $a)) (i32.const 1000) (i32.const 104)))
        (drop (call $body (i32.const 1024)
          (i32.add (i32.add (local.get $a) (i32.const 1)) (i32.load (i32.const 104)))))
        (i32.const 0)))"#;
    let modules = Modules::new(&[("join", JOIN)])?;
    let app = Origin::start(|_| async {
        reply(
            200,
            &[
                ("set-cookie", "a=1; Path=/"),
                ("set-cookie", "b=2"),
                ("x-multi", "one"),
                ("x-multi", "two"),
            ],
            "origin body",
        )
    })
    .await?;
    let node = TestNode::start(&format!(
        "{}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ origin_response = \"join\" }}\n",
        modules.toml(""),
        app.url()
    ))
    .await?;
    assert_eq!(
        node.get("/").await?.text(),
        "a=1; Path=/\nb=2|one, two",
        "set-cookie lines joined with \\n, others with \", \""
    );
    Ok(())
}

/// `functions/faulty` (prints on `/print/*`, panics on `/panic/*`) through a node, its admin
/// `test` call, and what `edge test-function` runs: prints reach the log, a panic is a 502 with
/// its message on one log line, and nothing takes the node down.
#[tokio::test(flavor = "multi_thread")]
async fn faulty() -> Result<()> {
    crate::logs::capture();
    let site = Site::new(&[("print/x", "printed"), ("panic/x", "never served")])?;
    let data = tempfile::tempdir()?;
    let node = TestNode::start(&format!(
        r#"
{function}
[admin]
listen = "127.0.0.1:0"
token = "{token}"
data_dir = {data:?}

[origins.bucket]
type = "static"
root = {root}

[[behaviors]]
path = "*"
origin = "bucket"
functions = {{ viewer_request = "faulty" }}
"#,
        function = function("faulty", FAULTY),
        token = crate::harness::ADMIN_TOKEN,
        data = data.path().display().to_string(),
        root = site.root(),
    ))
    .await?;

    // --- println! and eprintln!: lines in the log, the request served ---
    let r = node.get("/print/x").await?;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "printed"));
    for (text, stream) in [
        ("faulty printed for /print/x", "stream=\"stdout\""),
        ("faulty warned for /print/x", "stream=\"stderr\""),
    ] {
        let lines = crate::logs::lines_with(text);
        assert_eq!(lines.len(), 1, "{text}: {lines:#?}");
        assert!(
            lines[0].contains(stream) && lines[0].contains("function=\"faulty\""),
            "{}",
            lines[0]
        );
    }

    // --- panic!: 502, one log line with the panic message ---
    let r = node.get("/panic/x").await?;
    assert_eq!((r.status.as_u16(), r.x_cache()), (502, "Error"));
    let lines = crate::logs::lines_with("faulty was asked to panic at /panic/x");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    for part in [
        "panicked at ",
        "src/lib.rs:",
        "function=\"faulty\"",
        "event=\"viewer-request\"",
        "request=",
    ] {
        assert!(lines[0].contains(part), "{part} in {}", lines[0]);
    }
    assert_eq!(
        node.get("/print/x").await?.text(),
        "printed",
        "still serving"
    );

    // --- the admin `test` call shows the same ---
    let test = |uri: &str| format!(r#"{{"event":"viewer-request","request":{{"uri":"{uri}"}}}}"#);
    let panicked = node
        .admin(
            "POST",
            "/functions/faulty/test?stage=live",
            test("/panic/admin"),
        )
        .await?
        .json()?;
    assert_eq!(panicked["action"], "error", "{panicked}");
    let error = panicked["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("panicked at ")
            && error.contains("faulty was asked to panic at /panic/admin"),
        "{panicked}"
    );
    let printed = node
        .admin(
            "POST",
            "/functions/faulty/test?stage=live",
            test("/print/admin"),
        )
        .await?
        .json()?;
    assert_eq!(printed["action"], "continue", "{printed}");
    assert_eq!(printed["output"][0]["stream"], "stdout", "{printed}");
    assert_eq!(
        printed["output"][0]["line"],
        "faulty printed for /print/admin"
    );
    assert_eq!(
        printed["output"][1]["line"],
        "faulty warned for /print/admin"
    );

    // --- what `edge test-function` runs, with no node and no tokio runtime in the way ---
    let config = edge_runtime::config::FunctionConfig {
        name: "faulty".into(),
        module: FAULTY.into(),
        limits: Default::default(),
    };
    let engine = edge_runtime::wasm::FunctionEngine::new(config.limits.memory, None)?;
    let function = engine.load_file(&config)?;
    let event: edge_runtime::wasm::test_event::TestEvent =
        serde_json::from_str(&test("/panic/cli"))?;
    let result = edge_runtime::wasm::test_event::run(
        &engine,
        &function,
        std::sync::Arc::new(
            "[origins.o]\ntype = \"static\"\nroot = \"/\"\n[[behaviors]]\npath = \"*\"\norigin = \"o\"\n"
                .parse()?,
        ),
        std::sync::Arc::new(edge_runtime::kv::KvStores::default()),
        &event,
    )
    .map_err(anyhow::Error::msg)?;
    assert_eq!(result.action, "error");
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("panicked at ") && e.contains("/panic/cli")),
        "{:?}",
        result.error
    );
    Ok(())
}
