//! The admin API through a real node: auth, the function lifecycle (upload, test, publish,
//! rollback, delete), durability across restarts, invalidation, metrics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;

use crate::harness::{Modules, Origin, TestNode, ADMIN_TOKEN};

/// A viewer-response module that tags responses with `x-version: VERSION`.
fn tagger(version: &str) -> String {
    format!(
        r#"(module
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-version") (data (i32.const 16) "{version}")
      (func (export "viewer-response") (result i32)
        (drop (call $set (i32.const 0) (i32.const 9) (i32.const 16) (i32.const {len})))
        (i32.const 0)))"#,
        len = version.len()
    )
}

/// A node whose `*` behavior runs the function `tag` (v1 from the config) in front of `origin`,
/// with the admin API on, token-protected, persisting to `data_dir`.
async fn node(origin: &Origin, modules: &Modules, data_dir: &std::path::Path) -> Result<TestNode> {
    TestNode::start(&format!(
        r#"
{functions}
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"
data_dir = {data:?}

[origins.app]
type = "http"
targets = ["{origin}"]

[[behaviors]]
path = "*"
origin = "app"
functions = {{ viewer_response = "tag" }}
"#,
        functions = modules.toml(""),
        data = data_dir.display().to_string(),
        origin = origin.url(),
    ))
    .await
}

async fn version(node: &TestNode) -> Result<String> {
    let r = node.get("/x").await?;
    anyhow::ensure!(r.status.as_u16() == 200, "status {} {}", r.status, r.text());
    Ok(r.header("x-version").unwrap_or("none").to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_the_token_are_refused_and_change_nothing() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    let v2 = tagger("2");
    for token in [None, Some("wrong-token-wrong-token-000")] {
        for (method, path, body) in [
            ("GET", "/functions", ""),
            ("GET", "/functions/tag", ""),
            ("PUT", "/functions/tag", v2.as_str()),
            ("POST", "/functions/tag/publish", ""),
            ("POST", "/functions/tag/rollback", ""),
            ("POST", "/functions/tag/test", "{}"),
            ("DELETE", "/functions/tag", ""),
            ("POST", "/invalidations", r#"{"paths":["/*"]}"#),
            ("GET", "/invalidations/I1", ""),
            ("GET", "/metrics", ""),
            ("GET", "/no-such-route", ""),
        ] {
            let r = node.admin_as(token, method, path, body.to_owned()).await?;
            assert_eq!(r.status.as_u16(), 401, "{method} {path} with {token:?}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    let described = node.admin("GET", "/functions/tag", "").await?;
    assert!(
        described.text().contains("\"development\": null"),
        "no upload happened: {}",
        described.text()
    );
    assert_eq!(version(&node).await?, "1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_test_publish_rollback_cycle() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;

    let uploaded = node.admin("PUT", "/functions/tag", tagger("2")).await?;
    assert_eq!(uploaded.status.as_u16(), 201, "{}", uploaded.text());
    assert_eq!(
        version(&node).await?,
        "1",
        "an upload goes to DEVELOPMENT only"
    );

    let event = r#"{"event":"viewer-response","request":{"uri":"/x"},"response":{"status":200}}"#;
    let tested = node.admin("POST", "/functions/tag/test", event).await?;
    let result: serde_json::Value = tested.json()?;
    assert_eq!(result["action"], "continue", "{}", tested.text());
    assert_eq!(
        result["response"]["headers"]["x-version"], "2",
        "the test ran DEVELOPMENT"
    );
    assert!(
        result["duration_us"].as_u64().is_some()
            && result["peak_memory_bytes"].as_u64() >= Some(65536)
    );
    assert!(result["compute_utilization"].as_f64().is_some());
    let live = node
        .admin("POST", "/functions/tag/test?stage=live", event)
        .await?
        .json()?;
    assert_eq!(live["response"]["headers"]["x-version"], "1");

    let published = node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(published.status.as_u16(), 200, "{}", published.text());
    assert_eq!(version(&node).await?, "2");

    let listed: serde_json::Value = node.admin("GET", "/functions", "").await?.json()?;
    assert_eq!(listed[0]["name"], "tag");
    assert_eq!(listed[0]["used_by"][0], "*");
    assert!(listed[0]["live"]["hash"]
        .as_str()
        .is_some_and(|h| h.len() == 64));

    let rolled = node.admin("POST", "/functions/tag/rollback", "").await?;
    assert_eq!(rolled.status.as_u16(), 200, "{}", rolled.text());
    assert_eq!(version(&node).await?, "1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_with_the_reason_and_change_nothing() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    node.admin("PUT", "/functions/tag", tagger("2")).await?;
    let before = node.admin("GET", "/functions/tag", "").await?.text();

    let wasm = wat_to_wasm(&tagger("3"));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (wasm[..wasm.len() / 2].to_vec(), "does not compile"),
        (b"\0asm\x01\0\0\0garbage".to_vec(), "does not compile"),
        (b"(module (memory (export \"memory\") 1))".to_vec(), "no entry point"),
        (b"(module (import \"edge_v1\" \"nope\" (func)) (memory (export \"memory\") 1) (func (export \"viewer-response\") (result i32) (i32.const 0)))".to_vec(), "unknown import `edge_v1::nope`"),
    ];
    for (module, reason) in cases {
        let r = node.admin("PUT", "/functions/tag", module).await?;
        assert_eq!(r.status.as_u16(), 400, "{}", r.text());
        assert!(r.text().contains(reason), "{reason}: {}", r.text());
    }
    assert_eq!(
        node.admin("GET", "/functions/tag", "").await?.text(),
        before,
        "DEVELOPMENT is still the last good upload"
    );
    let too_big = node
        .admin("PUT", "/functions/tag", vec![0u8; 9 * 1024 * 1024])
        .await?;
    assert_eq!(too_big.status.as_u16(), 413);

    // Publishing a version without the entry point a behavior needs is refused too.
    let no_response = "(module (memory (export \"memory\") 1) (func (export \"viewer-request\") (result i32) (i32.const 0)))";
    assert_eq!(
        node.admin("PUT", "/functions/tag", no_response)
            .await?
            .status
            .as_u16(),
        201
    );
    let publish = node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(publish.status.as_u16(), 409, "{}", publish.text());
    assert_eq!(version(&node).await?, "1", "LIVE unchanged");
    Ok(())
}

/// Minimal WAT to binary through the node's own test route would need a node; the `wat` crate
/// is what the node uses, so use it here too.
fn wat_to_wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("valid WAT")
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_under_load_fails_no_request() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = Arc::new(node(&origin, &modules, data.path()).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (node, stop, ok, failed) = (
            Arc::clone(&node),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match version(&node).await {
                    Ok(v) if v == "1" || v == "2" || v == "3" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for v in ["2", "3", "2", "3"] {
        assert_eq!(
            node.admin("PUT", "/functions/tag", tagger(v))
                .await?
                .status
                .as_u16(),
            201
        );
        assert_eq!(
            node.admin("POST", "/functions/tag/publish", "")
                .await?
                .status
                .as_u16(),
            200
        );
        assert_eq!(version(&node).await?, v, "new requests use the new version");
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await?;
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed during publishes"
    );
    assert!(ok.load(Ordering::Relaxed) > 0, "the load ran");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_live_functions() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    {
        let node = node(&origin, &modules, data.path()).await?;
        node.admin("PUT", "/functions/tag", tagger("2")).await?;
        node.admin("POST", "/functions/tag/publish", "").await?;
        node.admin("PUT", "/functions/tag", tagger("3")).await?;
        assert_eq!(version(&node).await?, "2");
        node.node.shutdown().await;
    }
    let node = node(&origin, &modules, data.path()).await?;
    assert_eq!(version(&node).await?, "2", "LIVE survived the restart");
    let described: serde_json::Value = node.admin("GET", "/functions/tag", "").await?.json()?;
    assert_eq!(
        described["development"]["source"], "upload",
        "DEVELOPMENT survived too"
    );
    node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(version(&node).await?, "3");

    // A crash mid-upload leaves a temp file behind at worst; the stages still load.
    let dir = data.path().join("functions/tag");
    std::fs::write(dir.join("stages.tmp-99999"), b"{ half written")?;
    drop(node);
    let node = self::node(&origin, &modules, data.path()).await?;
    assert_eq!(version(&node).await?, "3");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_is_refused_while_a_behavior_uses_the_function() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    let refused = node.admin("DELETE", "/functions/tag", "").await?;
    assert_eq!(refused.status.as_u16(), 409);
    assert!(refused.text().contains("used by"), "{}", refused.text());
    assert_eq!(
        node.admin("PUT", "/functions/spare", tagger("9"))
            .await?
            .status
            .as_u16(),
        201
    );
    assert_eq!(
        node.admin("DELETE", "/functions/spare", "")
            .await?
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        node.admin("GET", "/functions/spare", "")
            .await?
            .status
            .as_u16(),
        404
    );
    assert!(
        !data.path().join("functions/spare").exists(),
        "its stored versions are gone"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidation_exact_and_wildcard() -> Result<()> {
    let origin = Origin::start(|r| async move {
        crate::harness::reply(200, &[("cache-control", "max-age=600")], r.uri)
    })
    .await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    for path in ["/index.html", "/img/a.png", "/img/b/c.png", "/css/site.css"] {
        node.get(path).await?;
        assert_eq!(node.get(path).await?.x_cache(), "Hit", "{path}");
    }
    let created = node
        .admin(
            "POST",
            "/invalidations",
            r#"{"paths": ["/index.html", "/img/*"]}"#,
        )
        .await?;
    assert_eq!(created.status.as_u16(), 201, "{}", created.text());
    let record: serde_json::Value = created.json()?;
    assert_eq!(record["status"], "Completed");
    assert_eq!(record["objects_removed"], 3);
    for (path, expected) in [
        ("/index.html", "Miss"),
        ("/img/a.png", "Miss"),
        ("/img/b/c.png", "Miss"),
        ("/css/site.css", "Hit"),
    ] {
        assert_eq!(node.get(path).await?.x_cache(), expected, "{path}");
    }
    let id = record["id"].as_str().unwrap_or_default();
    let status = node
        .admin("GET", &format!("/invalidations/{id}"), "")
        .await?;
    assert_eq!(status.status.as_u16(), 200);
    assert!(status.text().contains("/img/*"));
    assert_eq!(
        node.admin("POST", "/invalidations", r#"{"paths": ["no-slash"]}"#)
            .await?
            .status
            .as_u16(),
        400
    );
    assert_eq!(
        node.admin("GET", "/invalidations/I999", "")
            .await?
            .status
            .as_u16(),
        404
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_change_as_requests_are_served() -> Result<()> {
    let origin = Origin::fixed("0123456789", &[("cache-control", "max-age=600")]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    let before = node.admin("GET", "/metrics", "").await?;
    assert_eq!(
        before.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        !before.text().contains("x_cache=\"Hit\"} 1"),
        "{}",
        before.text()
    );
    node.get("/a").await?;
    node.get("/a").await?;
    node.get("/a").await?;
    let text = node.admin("GET", "/metrics", "").await?.text();
    for expected in [
        r#"edge_requests_total{status_class="2xx",x_cache="Miss"} 1"#,
        r#"edge_requests_total{status_class="2xx",x_cache="Hit"} 2"#,
        "edge_served_bytes_total 30",
        "edge_cache_hit_ratio 0.666",
        r#"edge_origin_fetch_seconds_count{origin="app"} 1"#,
        r#"edge_function_invocations_total{function="tag",event="viewer-response"} 3"#,
        "edge_cache_objects 1",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_built_wasm_goes_through_upload_test_and_publish() -> Result<()> {
    // The config's `tag` is a WAT placeholder on origin-response; the upload is the binary
    // `functions/headers` as cargo built it for wasm32-wasip1.
    let placeholder = r#"(module (memory (export "memory") 1)
      (func (export "origin-response") (result i32) (i32.const 0)))"#;
    let modules = Modules::new(&[("tag", placeholder)])?;
    let origin = Origin::start(|r| async move {
        if r.uri == "/missing" {
            crate::harness::reply(404, &[("cache-control", "no-store")], "bare 404")
        } else {
            crate::harness::reply(200, &[("cache-control", "no-store")], "page")
        }
    })
    .await?;
    let data = tempfile::tempdir()?;
    let node = TestNode::start(&format!(
        r#"
{functions}
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"
data_dir = {data:?}

[origins.app]
type = "http"
targets = ["{origin}"]

[[behaviors]]
path = "*"
origin = "app"
functions = {{ origin_response = "tag" }}
"#,
        functions = modules.toml(""),
        data = data.path().display().to_string(),
        origin = origin.url(),
    ))
    .await?;
    assert_eq!(
        node.get("/page").await?.header("x-content-type-options"),
        None
    );

    let wasm = std::fs::read(crate::functions::HEADERS)?;
    assert!(wasm.starts_with(b"\0asm"), "a binary module");
    let uploaded = node.admin("PUT", "/functions/tag", wasm).await?;
    assert_eq!(uploaded.status.as_u16(), 201, "{}", uploaded.text());

    let event =
        r#"{"event":"origin-response","request":{"uri":"/page"},"response":{"status":200}}"#;
    let tested = node.admin("POST", "/functions/tag/test", event).await?;
    let result = tested.json()?;
    assert_eq!(result["action"], "continue", "{}", tested.text());
    assert_eq!(
        result["response"]["headers"]["x-content-type-options"],
        "nosniff",
        "the test ran the uploaded binary: {}",
        tested.text()
    );
    assert_eq!(
        node.get("/page").await?.header("x-content-type-options"),
        None,
        "an upload is DEVELOPMENT only"
    );

    let published = node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(published.status.as_u16(), 200, "{}", published.text());
    let page = node.get("/page").await?;
    assert_eq!(
        (page.text().as_str(), page.header("x-content-type-options")),
        ("page", Some("nosniff"))
    );
    let missing = node.get("/missing").await?;
    assert_eq!(missing.status.as_u16(), 404);
    assert!(
        missing.text().contains("We could not find that page"),
        "{}",
        missing.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_requests_finish_on_the_version_they_started_with() -> Result<()> {
    // The origin holds `/held` until released, so a publish lands while that request is in
    // flight.
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let origin = Origin::start({
        let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
        move |r| {
            let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
            async move {
                if r.uri == "/held" {
                    arrived.notify_one();
                    release.notified().await;
                }
                crate::harness::reply(200, &[("cache-control", "no-store")], "ok")
            }
        }
    })
    .await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = Arc::new(node(&origin, &modules, data.path()).await?);
    let held = tokio::spawn({
        let node = Arc::clone(&node);
        async move { node.get("/held").await }
    });
    tokio::time::timeout(std::time::Duration::from_secs(10), arrived.notified()).await?;

    assert_eq!(
        node.admin("PUT", "/functions/tag", tagger("2"))
            .await?
            .status
            .as_u16(),
        201
    );
    let published = node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(published.status.as_u16(), 200, "{}", published.text());
    assert_eq!(
        version(&node).await?,
        "2",
        "new requests use the new version"
    );

    release.notify_one();
    let held = held.await??;
    assert_eq!(
        (held.status.as_u16(), held.header("x-version")),
        (200, Some("1")),
        "the request in flight during the publish finished on the old version"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn function_errors_and_durations_are_in_the_metrics() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    let trap = r#"(module (memory (export "memory") 1)
      (func (export "viewer-response") (result i32) unreachable))"#;
    assert_eq!(
        node.admin("PUT", "/functions/tag", trap)
            .await?
            .status
            .as_u16(),
        201
    );
    assert_eq!(
        node.admin("POST", "/functions/tag/publish", "")
            .await?
            .status
            .as_u16(),
        200
    );
    for _ in 0..2 {
        assert_eq!(node.get("/x").await?.status.as_u16(), 502);
    }
    let text = node.admin("GET", "/metrics", "").await?.text();
    for expected in [
        r#"edge_function_errors_total{function="tag",event="viewer-response"} 2"#,
        r#"edge_function_duration_seconds_count{function="tag",event="viewer-response"} 2"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    Ok(())
}
