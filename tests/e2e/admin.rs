//! The admin API through a real node: auth, the function lifecycle (upload, test, publish,
//! rollback, delete), durability across restarts, invalidation, metrics.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};

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
    let origin = Origin::fixed("ok", &[("cache-control", "max-age=600")]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    // Something cached, so a refused invalidation has something to leave alone.
    node.get("/x").await?;
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
    assert_eq!(
        node.get("/x").await?.x_cache(),
        "Hit",
        "the refused invalidation removed nothing"
    );
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
        (
            b"\x89PNG\r\n\x1a\n\xff\xfe".to_vec(),
            "neither a WebAssembly binary nor WAT text (not UTF-8)",
        ),
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
    // The load ran; how much of it is a benchmark's business, not this test's.
    assert!(ok.load(Ordering::Relaxed) > 0, "no request completed");
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

    // A crash mid-upload leaves a temp file behind at worst; the stages still load, and the
    // next start removes it.
    let dir = data.path().join("functions/tag");
    let stale = dir.join("stages.tmp-99999");
    std::fs::write(&stale, b"{ half written")?;
    drop(node);
    let node = self::node(&origin, &modules, data.path()).await?;
    assert_eq!(version(&node).await?, "3");
    assert!(!stale.exists(), "the stale temp file was removed at start");

    // The history survived too, back to the config's module.
    for expected in ["2", "1"] {
        let rolled = node.admin("POST", "/functions/tag/rollback", "").await?;
        assert_eq!(rolled.status.as_u16(), 200, "{}", rolled.text());
        assert_eq!(version(&node).await?, expected);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_publish_changes_nothing() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    node.admin("PUT", "/functions/tag", tagger("2")).await?;
    node.admin("POST", "/functions/tag/publish", "").await?;
    let before: serde_json::Value = node.admin("GET", "/functions/tag", "").await?.json()?;
    let stored = || -> Result<serde_json::Value> {
        let stages: serde_json::Value = serde_json::from_slice(&std::fs::read(
            data.path().join("functions/tag/stages.json"),
        )?)?;
        Ok(serde_json::json!([stages["live"], stages["history"]]))
    };
    let stored_before = stored()?;

    // A version without the viewer-response entry point the behavior needs.
    let no_response = "(module (memory (export \"memory\") 1) (func (export \"viewer-request\") (result i32) (i32.const 0)))";
    let uploaded = node.admin("PUT", "/functions/tag", no_response).await?;
    assert_eq!(uploaded.status.as_u16(), 201, "{}", uploaded.text());
    let refused = node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(refused.status.as_u16(), 409, "{}", refused.text());
    assert!(
        refused.text().contains("viewer-response"),
        "{}",
        refused.text()
    );

    let after: serde_json::Value = node.admin("GET", "/functions/tag", "").await?.json()?;
    for stage in ["live", "previous", "history"] {
        assert_eq!(after[stage], before[stage], "{stage} unchanged");
    }
    assert_eq!(stored()?, stored_before, "the data directory is unchanged");
    assert_eq!(version(&node).await?, "2");
    let rolled = node.admin("POST", "/functions/tag/rollback", "").await?;
    assert_eq!(rolled.status.as_u16(), 200, "{}", rolled.text());
    assert_eq!(
        version(&node).await?,
        "1",
        "rollback reaches the version before"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_walks_back_through_every_earlier_live_version() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    let hash =
        |info: &serde_json::Value, stage: &str| info[stage]["hash"].as_str().map(str::to_owned);
    let v1 = hash(
        &node.admin("GET", "/functions/tag", "").await?.json()?,
        "live",
    );

    node.admin("PUT", "/functions/tag", tagger("2")).await?;
    let published: serde_json::Value = node
        .admin("POST", "/functions/tag/publish", "")
        .await?
        .json()?;
    let v2 = hash(&published, "live");
    // Publishing DEVELOPMENT while it is already LIVE changes nothing: LIVE does not become its
    // own predecessor.
    let again = node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(again.status.as_u16(), 200, "{}", again.text());
    node.admin("PUT", "/functions/tag", tagger("3")).await?;
    let info: serde_json::Value = node
        .admin("POST", "/functions/tag/publish", "")
        .await?
        .json()?;
    assert_eq!(version(&node).await?, "3");

    let history: Vec<Option<String>> = info["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|v| v["hash"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(history, [v2, v1], "{info}");
    assert!(info["history"][1]["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("config")));
    // Times are RFC 3339, readable as they are.
    for time in [
        &info["live"]["live_from"],
        &info["history"][0]["live_until"],
        &info["live"]["created"],
    ] {
        let text = time.as_str().unwrap_or_default();
        assert!(
            text.len() == 20 && text.as_bytes()[10] == b'T' && text.ends_with('Z'),
            "{info}"
        );
    }

    for expected in ["2", "1"] {
        let rolled = node.admin("POST", "/functions/tag/rollback", "").await?;
        assert_eq!(rolled.status.as_u16(), 200, "{}", rolled.text());
        assert_eq!(version(&node).await?, expected);
    }
    let none = node.admin("POST", "/functions/tag/rollback", "").await?;
    assert_eq!(none.status.as_u16(), 404, "{}", none.text());
    assert!(
        none.text().contains("no earlier LIVE version"),
        "{}",
        none.text()
    );
    assert_eq!(version(&node).await?, "1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn names_are_decoded_and_invalid_ones_are_a_bad_request() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    for (path, name) in [
        ("/functions/bad%20name", "bad name"),
        ("/functions/a%2Fb", "a/b"),
    ] {
        let r = node.admin("PUT", path, tagger("2")).await?;
        assert_eq!(r.status.as_u16(), 400, "{}", r.text());
        assert!(
            r.text()
                .contains(&format!("invalid function name \\\"{name}\\\"")),
            "{}",
            r.text()
        );
    }
    // A name that needs no escaping may still arrive escaped.
    let r = node.admin("GET", "/functions/%74ag", "").await?;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.json()?["name"], "tag");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auth_scheme_is_case_insensitive() -> Result<()> {
    let origin = Origin::fixed("ok", &[]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    let addr = node.node.admin_addr().context("admin API")?;
    for (authorization, status) in [
        (format!("bearer {ADMIN_TOKEN}"), 200),
        (format!("BEARER {ADMIN_TOKEN}"), 200),
        (format!("Basic {ADMIN_TOKEN}"), 401),
        (format!("bearer{ADMIN_TOKEN}"), 401),
    ] {
        let request = http::Request::builder()
            .uri(format!("http://{addr}/functions"))
            .header("authorization", &authorization)
            .body(http_body_util::Full::default())?;
        let r = node.send(request).await?;
        assert_eq!(r.status.as_u16(), status, "{authorization}: {}", r.text());
    }
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
    // The body is OpenMetrics text, so it says so (a Prometheus 0.0.4 parser would misread
    // its counter families); Prometheus asks for this type first when it scrapes.
    assert_eq!(
        before.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(before.text().ends_with("# EOF\n"), "{}", before.text());
    // A scraper that takes only Prometheus text 0.0.4 gets that.
    let addr = node.node.admin_addr().context("admin API")?;
    let old_scraper = node
        .send(
            http::Request::builder()
                .uri(format!("http://{addr}/metrics"))
                .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
                .header("accept", "text/plain;version=0.0.4")
                .body(http_body_util::Full::default())?,
        )
        .await?;
    assert_eq!(
        old_scraper.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        old_scraper
            .text()
            .contains("# TYPE edge_requests_total counter"),
        "{}",
        old_scraper.text()
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
async fn an_upload_over_the_limit_is_refused_before_its_body_is_sent() -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let origin = Origin::fixed("ok", &[]).await?;
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = node(&origin, &modules, data.path()).await?;
    let addr = node.node.admin_addr().context("admin API")?;
    // The client waits for `100 Continue` before it sends the body (RFC 9110 §10.1.1), so the
    // final answer must come first, and nothing is read.
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!(
                "PUT /functions/tag HTTP/1.1\r\nhost: admin\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
                 content-length: 1000000000\r\nexpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await??;
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_in_flight_during_a_publish_finishes_on_the_old_version() -> Result<()> {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let origin = {
        let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
        Origin::start(move |r| {
            let (arrived, release) = (Arc::clone(&arrived), Arc::clone(&release));
            async move {
                if r.uri == "/held" {
                    arrived.notify_one();
                    release.notified().await;
                }
                crate::harness::reply(200, &[("cache-control", "no-store")], "ok")
            }
        })
        .await?
    };
    let modules = Modules::new(&[("tag", &tagger("1"))])?;
    let data = tempfile::tempdir()?;
    let node = Arc::new(node(&origin, &modules, data.path()).await?);

    // --- a request reaches the origin on version 1 and is held there ---
    let held = {
        let node = Arc::clone(&node);
        tokio::spawn(async move { node.get("/held").await })
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), arrived.notified())
        .await
        .context("the held request reached the origin")?;

    // --- publish version 2 meanwhile: new requests use it ---
    node.admin("PUT", "/functions/tag", tagger("2")).await?;
    let published = node.admin("POST", "/functions/tag/publish", "").await?;
    assert_eq!(published.status.as_u16(), 200, "{}", published.text());
    assert_eq!(version(&node).await?, "2");

    // --- the held request finishes on the version it started with ---
    release.notify_one();
    let held = held.await??;
    assert_eq!(held.status.as_u16(), 200);
    assert_eq!(held.header("x-version"), Some("1"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_built_wasm_binary_goes_through_upload_test_and_publish() -> Result<()> {
    let origin = Origin::fixed("ok", &[("cache-control", "no-store")]).await?;
    // A placeholder origin-response function from the config; the upload replaces it.
    let placeholder = r#"(module (memory (export "memory") 1)
      (func (export "origin-response") (result i32) (i32.const 0)))"#;
    let modules = Modules::new(&[("headers", placeholder)])?;
    let data = tempfile::tempdir()?;
    let node = TestNode::start(&format!(
        "{functions}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\ndata_dir = {data:?}\n\
         [origins.app]\ntype = \"http\"\ntargets = [\"{origin}\"]\n\
         [[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ origin_response = \"headers\" }}\n",
        functions = modules.toml(""),
        data = data.path().display().to_string(),
        origin = origin.url(),
    ))
    .await?;
    assert_eq!(node.get("/a").await?.header("x-content-type-options"), None);

    let binary = std::fs::read(crate::functions::HEADERS)?;
    assert!(binary.starts_with(b"\0asm"), "a binary module");
    let uploaded = node.admin("PUT", "/functions/headers", binary).await?;
    assert_eq!(uploaded.status.as_u16(), 201, "{}", uploaded.text());
    let event = r#"{"event":"origin-response","request":{"uri":"/a"},"response":{"status":200}}"#;
    let tested: serde_json::Value = node
        .admin("POST", "/functions/headers/test", event)
        .await?
        .json()?;
    assert_eq!(
        tested["response"]["headers"]["x-content-type-options"], "nosniff",
        "{tested}"
    );
    let published = node.admin("POST", "/functions/headers/publish", "").await?;
    assert_eq!(published.status.as_u16(), 200, "{}", published.text());
    assert_eq!(
        node.get("/b").await?.header("x-content-type-options"),
        Some("nosniff")
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
