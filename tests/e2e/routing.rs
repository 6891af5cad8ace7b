//! Routing by behavior: the first path pattern in file order wins, each behavior's allowed
//! methods (405 with `Allow` otherwise), and 404 when no behavior matches.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;

use crate::harness::{Origin, Reply, Site, TestNode};

/// Sends `method` to `path` with an optional body.
async fn send(
    node: &TestNode,
    method: &str,
    path: &str,
    body: &'static [u8],
) -> anyhow::Result<Reply> {
    node.send(
        node.request(method, path)
            .body(Full::new(Bytes::from_static(body)))?,
    )
    .await
}

/// A node with the http origin `app` (`api`) and the static origin `bucket` (`site`), and
/// these `[[behaviors]]`.
async fn api_and_bucket(api: &Origin, site: &Site, behaviors: &str) -> anyhow::Result<TestNode> {
    TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n[origins.bucket]\ntype = \"static\"\nroot = {}\n\n{behaviors}",
        api.url(),
        site.root()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn first_matching_behavior_in_file_order_wins() -> anyhow::Result<()> {
    let api = Origin::fixed("from the api", &[]).await?;
    let site = Site::new(&[
        ("index.html", "from the bucket"),
        ("api.html", "bucket page named api"),
    ])?;

    // --- `/api/*` listed before `*`: API paths go to the app, the rest to the bucket ---
    let node = api_and_bucket(
        &api,
        &site,
        r#"
[[behaviors]]
path = "/api/*"
origin = "app"

[[behaviors]]
path = "*"
origin = "bucket"
"#,
    )
    .await?;

    let reply = node.get("/api/users?page=2").await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "from the api");
    assert_eq!(api.count(), 1);
    assert_eq!(api.last().uri, "/api/users?page=2");

    for (path, body) in [
        ("/index.html", "from the bucket"),
        ("/", "from the bucket"),
        ("/api.html", "bucket page named api"),
    ] {
        let reply = node.get(path).await?;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.text(), body, "{path}");
    }
    // `/api` itself is not under `/api/*`.
    assert_eq!(node.get("/api").await?.status, StatusCode::NOT_FOUND);
    assert_eq!(api.count(), 1, "the app saw only the /api/ request");

    // --- `*` listed first swallows everything, `/api/*` after it never matches ---
    let shadowed = api_and_bucket(
        &api,
        &site,
        r#"
[[behaviors]]
path = "*"
origin = "bucket"

[[behaviors]]
path = "/api/*"
origin = "app"
"#,
    )
    .await?;
    let reply = shadowed.get("/api/users").await?;
    assert_eq!(
        reply.status,
        StatusCode::NOT_FOUND,
        "served by the bucket, which has no api/users"
    );
    assert_eq!(api.count(), 1, "the app saw nothing more");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn method_not_allowed_gets_405_with_allow_and_origin_sees_nothing() -> anyhow::Result<()> {
    let api = Origin::fixed("from the api", &[]).await?;
    let site = Site::new(&[("index.html", "home")])?;
    let node = api_and_bucket(
        &api,
        &site,
        r#"
[[behaviors]]
path = "/api/*"
origin = "app"
methods = ["GET", "HEAD", "POST"]

[[behaviors]]
path = "*"
origin = "bucket"
"#,
    )
    .await?;

    // --- refused methods never reach the origin ---
    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let reply = send(&node, method, "/api/items/1", b"{}").await?;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"), "{method}");
        assert_eq!(reply.x_cache(), "Error", "{method}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{method}");
        let text = reply.text();
        assert!(
            text.starts_with("405 Method Not Allowed"),
            "{method}: {text:?}"
        );
        assert!(
            text.contains(&format!("method {method} is not allowed")),
            "{method}: {text:?}"
        );
        assert!(text.contains("GET, HEAD, POST"), "{method}: {text:?}");
    }
    assert_eq!(
        api.count(),
        0,
        "the origin saw none of the refused requests"
    );

    // --- an allowed method goes through, body and all ---
    let reply = send(&node, "POST", "/api/items", b"{\"name\":\"x\"}").await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "from the api");
    assert_eq!(api.count(), 1);
    let received = api.last();
    assert_eq!(received.method, "POST");
    assert_eq!(received.body, Bytes::from_static(b"{\"name\":\"x\"}"));

    // --- the allowed set is per behavior: POST outside /api/ is refused ---
    let reply = send(&node, "POST", "/index.html", b"x").await?;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(reply.x_cache(), "Error");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_default_to_get_and_head() -> anyhow::Result<()> {
    let api = Origin::fixed("from the api", &[]).await?;
    let node = TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = ["{api}"]

[[behaviors]]
path = "*"
origin = "app"
"#,
        api = api.url()
    ))
    .await?;

    let head = send(&node, "HEAD", "/head", b"").await?;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    let get = node.get("/get").await?;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.text(), "from the api");
    let seen: Vec<(String, String)> = api
        .received()
        .into_iter()
        .map(|r| (r.method.to_string(), r.uri))
        .collect();
    assert_eq!(
        seen,
        [
            ("HEAD".to_owned(), "/head".to_owned()),
            ("GET".to_owned(), "/get".to_owned())
        ]
    );

    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let reply = send(&node, method, "/get", b"").await?;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method}");
        assert_eq!(reply.x_cache(), "Error", "{method}");
    }
    assert_eq!(api.count(), 2, "refused methods never reached the origin");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn path_matching_no_behavior_gets_404() -> anyhow::Result<()> {
    let api = Origin::fixed("from the api", &[]).await?;
    let node = TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = ["{api}"]

[[behaviors]]
path = "/api/*"
origin = "app"
methods = ["GET", "HEAD", "POST"]
"#,
        api = api.url()
    ))
    .await?;

    for (method, path) in [
        ("GET", "/"),
        ("GET", "/index.html"),
        ("GET", "/apix/users"),
        ("POST", "/other"),
    ] {
        let reply = send(&node, method, path, b"").await?;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.x_cache(), "Error", "{method} {path}");
        assert_eq!(
            reply.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
        assert!(
            reply.text().contains("no behavior matches path"),
            "{method} {path}: {:?}",
            reply.text()
        );
    }
    assert_eq!(api.count(), 0);

    assert_eq!(node.get("/api/users").await?.text(), "from the api");
    assert_eq!(api.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn extension_pattern_matches_only_its_files() -> anyhow::Result<()> {
    let png = Origin::fixed("png origin", &[]).await?;
    let rest = Origin::fixed("default origin", &[]).await?;
    let node = TestNode::start(&format!(
        r#"
[origins.images]
type = "http"
targets = ["{png}"]

[origins.rest]
type = "http"
targets = ["{rest}"]

[[behaviors]]
path = "/images/*.png"
origin = "images"

[[behaviors]]
path = "*"
origin = "rest"
"#,
        png = png.url(),
        rest = rest.url()
    ))
    .await?;

    let matching = [
        "/images/logo.png",
        "/images/2024/06/photo.png",
        "/images/q.png?v=3",
    ];
    let not_matching = [
        "/images/logo.jpg",
        "/images/logo.png.jpg",
        "/images/logo.PNG",
        "/images/png",
        "/images",
        "/img/logo.png",
        "/static/images/logo.png",
        "/logo.png",
    ];
    for path in matching {
        assert_eq!(node.get(path).await?.text(), "png origin", "{path}");
    }
    for path in not_matching {
        assert_eq!(node.get(path).await?.text(), "default origin", "{path}");
    }
    let uris = |origin: &Origin| {
        origin
            .received()
            .into_iter()
            .map(|r| r.uri)
            .collect::<Vec<_>>()
    };
    assert_eq!(uris(&png), matching);
    assert_eq!(uris(&rest), not_matching);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_segments_are_resolved_before_routing() -> anyhow::Result<()> {
    let api = Origin::fixed("api", &[]).await?;
    let site = Site::new(&[("index.html", "site")])?;
    let node = api_and_bucket(
        &api,
        &site,
        r#"
[[behaviors]]
path = "/api/*"
origin = "app"
methods = ["GET"]

[[behaviors]]
path = "*"
origin = "bucket"
methods = ["GET", "POST"]
"#,
    )
    .await?;
    // `/x/../api/y` is `/api/y`: it must fall under `/api/*` and its method list.
    let reply = node.get("/x/%2e%2e/api/y?q=1").await?;
    assert_eq!(reply.text(), "api");
    assert_eq!(
        api.last().uri,
        "/api/y?q=1",
        "the origin gets the normalized path"
    );
    let post = node
        .send(
            node.request("POST", "/x/../api/y")
                .body(http_body_util::Full::default())?,
        )
        .await?;
    assert_eq!(post.status.as_u16(), 405, "the /api/* method list applies");
    assert_eq!(node.get("/../etc/passwd").await?.status.as_u16(), 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_form_request_is_refused_cleanly() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = Origin::fixed("api", &[]).await?;
    let node = TestNode::start(&format!(
        "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nmethods = [\"GET\", \"OPTIONS\"]\n",
        api.url()
    ))
    .await?;
    let mut stream = tokio::net::TcpStream::connect(node.node.addr()).await?;
    stream
        .write_all(b"OPTIONS * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_string(&mut response),
    )
    .await??;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert_eq!(api.count(), 0);
    assert_eq!(node.get("/still-up").await?.text(), "api");
    Ok(())
}

/// viewer-request: `origin_set("app")` for every request (README: "Functions choose origins;
/// behaviors set the rules").
const TO_APP: &str = r#"(module
  (import "edge_v1" "origin_set" (func $origin_set (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "app")
  (func (export "viewer-request") (result i32)
    (drop (call $origin_set (i32.const 0) (i32.const 3)))
    (i32.const 0)))"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_function_switches_the_origin_but_the_path_behavior_keeps_its_rules() -> anyhow::Result<()>
{
    let api = Origin::fixed("from the api", &[]).await?;
    let site = Site::new(&[("index.html", "home")])?;
    let modules = crate::harness::Modules::new(&[("to_app", TO_APP)])?;

    // --- routed from `*`: the bucket's methods and TTLs apply to the app's answers ---
    let node = api_and_bucket(
        &api,
        &site,
        &format!(
            "{}\n[[behaviors]]\npath = \"*\"\norigin = \"bucket\"\n\
             cache = {{ default_ttl = \"1d\" }}\nfunctions = {{ viewer_request = \"to_app\" }}\n",
            modules.toml("")
        ),
    )
    .await?;
    let post = send(&node, "POST", "/api/items", b"{}").await?;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(api.count(), 0, "refused before the function could route it");
    let first = node.get("/api/items").await?;
    assert_eq!(
        (first.text(), first.x_cache()),
        ("from the api".into(), "Miss")
    );
    let second = node.get("/api/items").await?;
    assert_eq!(
        (second.text(), second.x_cache()),
        ("from the api".into(), "Hit"),
        "no Cache-Control from the app: stored for the `*` behavior's default_ttl"
    );
    assert_eq!(api.count(), 1);

    // --- the pattern that works: `/api/*` has a behavior with the app's rules ---
    let node = api_and_bucket(
        &api,
        &site,
        &format!(
            "{}\n[[behaviors]]\npath = \"/api/*\"\norigin = \"app\"\n\
             methods = [\"GET\", \"HEAD\", \"POST\"]\ncache = {{ default_ttl = \"0s\" }}\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\n\
             functions = {{ viewer_request = \"to_app\" }}\n",
            modules.toml("")
        ),
    )
    .await?;
    let post = send(&node, "POST", "/api/items", b"{}").await?;
    assert_eq!(
        (post.status, post.text()),
        (StatusCode::OK, "from the api".into())
    );
    for _ in 0..2 {
        assert_eq!(node.get("/api/items").await?.x_cache(), "Miss");
    }
    assert_eq!(api.count(), 4, "1 before, the POST and both GETs");
    Ok(())
}
