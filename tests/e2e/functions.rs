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
    let app = Origin::start(|r| async move {
        reply(
            200,
            &[("cache-control", "no-store")],
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
    // An anonymous `/` is the bucket's; the session's `/` from the app must not be served to it.
    assert_eq!(node.get("/").await?.text(), "app shell");
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
