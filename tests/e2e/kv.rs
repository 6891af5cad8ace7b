//! Key-value stores end to end: functions read `[kv.NAME]` stores through `kv_get`, the admin
//! API replaces and patches them while the node runs, and a node restarted on the same data
//! directory serves what the admin API last wrote.

use std::path::Path;

use anyhow::Result;

use crate::functions::RESPONDER;
use crate::harness::{function, Modules, Site, TestNode};

/// A viewer-response module that reads the store `flags` and reports each `kv_get` status as a
/// digit in `x-kv-status`: a buffer too small, a missing store, a missing key, a store name
/// outside memory, a store name that is not UTF-8, and the value of `greeting` (which goes to
/// `x-greeting`). `x-version` tells uploaded versions apart.
fn stamp(version: &str) -> String {
    format!(
        r#"(module
  (import "edge_v1" "kv_get" (func $kv_get (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "flags")
  (data (i32.const 16) "greeting")
  (data (i32.const 32) "nope")
  (data (i32.const 48) "x-greeting")
  (data (i32.const 64) "x-kv-status")
  (data (i32.const 80) "x-version")
  (data (i32.const 96) "{version}")
  (data (i32.const 112) "\ff\fe")
  (func $digit (param $at i32) (param $status i32)
    (i32.store8 (local.get $at) (i32.add (i32.const 48) (local.get $status))))
  (func (export "viewer-response") (result i32)
    (local $status i32)
    (call $digit (i32.const 128)
      (call $kv_get (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8) (i32.const 256) (i32.const 1) (i32.const 252)))
    (call $digit (i32.const 129)
      (call $kv_get (i32.const 32) (i32.const 4) (i32.const 16) (i32.const 8) (i32.const 256) (i32.const 1024) (i32.const 252)))
    (call $digit (i32.const 130)
      (call $kv_get (i32.const 0) (i32.const 5) (i32.const 32) (i32.const 4) (i32.const 256) (i32.const 1024) (i32.const 252)))
    (call $digit (i32.const 131)
      (call $kv_get (i32.const 0xfffffff0) (i32.const 5) (i32.const 16) (i32.const 8) (i32.const 256) (i32.const 1024) (i32.const 252)))
    (call $digit (i32.const 132)
      (call $kv_get (i32.const 112) (i32.const 2) (i32.const 16) (i32.const 8) (i32.const 256) (i32.const 1024) (i32.const 252)))
    (local.set $status
      (call $kv_get (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 8) (i32.const 256) (i32.const 1024) (i32.const 252)))
    (call $digit (i32.const 133) (local.get $status))
    (if (i32.eqz (local.get $status))
      (then (drop (call $set (i32.const 48) (i32.const 10) (i32.const 256) (i32.load (i32.const 252))))))
    (drop (call $set (i32.const 64) (i32.const 11) (i32.const 128) (i32.const 6)))
    (drop (call $set (i32.const 80) (i32.const 9) (i32.const 96) (i32.const {len})))
    (i32.const 0)))"#,
        len = version.len()
    )
}

/// `[kv.NAME]` with its JSON written to `dir`.
fn store(dir: &Path, name: &str, json: &str) -> Result<String> {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, json)?;
    Ok(format!(
        "[kv.{name}]\nfile = {:?}\n",
        file.display().to_string()
    ))
}

/// `[admin]` on an ephemeral loopback port, persisting to `data_dir`.
fn admin(data_dir: &Path) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
        data_dir.display().to_string()
    )
}

/// One behavior `*` on a static bucket at `site`, with `attach` as its functions.
fn behavior(site: &Site, attach: &str) -> String {
    format!(
        "[origins.bucket]\ntype = \"static\"\nroot = {}\n[[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {attach}\n",
        site.root()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_lookups_from_a_function() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let site = Site::new(&[("index.html", "home"), ("pricing", "prices")])?;

    // --- responder reads its redirect table from the store, the built-in one for the rest ---
    let node = TestNode::start(&format!(
        "{}{}{}",
        function("responder", RESPONDER),
        behavior(&site, r#"{ viewer_request = "responder" }"#),
        store(
            dir.path(),
            "redirects",
            r#"{"/moved": "301 /pricing", "/old-pricing": "302 /pricing-2025"}"#
        )?,
    ))
    .await?;
    let moved = node.get("/moved?ref=mail").await?;
    assert_eq!(
        (moved.status.as_u16(), moved.header("location")),
        (301, Some("/pricing?ref=mail"))
    );
    let overridden = node.get("/old-pricing").await?;
    assert_eq!(
        (overridden.status.as_u16(), overridden.header("location")),
        (302, Some("/pricing-2025")),
        "the store wins over the built-in table"
    );
    let built_in = node.get("/black-friday").await?;
    assert_eq!(
        (built_in.status.as_u16(), built_in.header("location")),
        (302, Some("/sale"))
    );
    assert_eq!(node.get("/pricing").await?.text(), "prices");
    drop(node);

    // --- every status of kv_get, from a response event, on a miss and on a hit ---
    let modules = Modules::new(&[("stamp", &stamp("1"))])?;
    let node = TestNode::start(&format!(
        "{}{}{}",
        modules.toml(""),
        behavior(&site, r#"{ viewer_response = "stamp" }"#),
        store(
            dir.path(),
            "flags",
            r#"{"greeting": "hello from the store"}"#
        )?,
    ))
    .await?;
    for x_cache in ["Miss", "Hit"] {
        let reply = node.get("/index.html").await?;
        assert_eq!(reply.text(), "home");
        assert_eq!(reply.x_cache(), x_cache);
        assert_eq!(reply.header("x-greeting"), Some("hello from the store"));
        assert_eq!(
            reply.header("x-kv-status"),
            Some("311220"),
            "BUFFER_TOO_SMALL, NOT_FOUND (store), NOT_FOUND (key), INVALID_ARGUMENT (range), INVALID_ARGUMENT (UTF-8), OK"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_put_and_patch_apply_without_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let site = Site::new(&[("index.html", "home"), ("promo", "promo page")])?;
    let node = TestNode::start(&format!(
        "{}{}{}{}",
        function("responder", RESPONDER),
        behavior(&site, r#"{ viewer_request = "responder" }"#),
        store(dir.path(), "redirects", r#"{"/moved": "301 /index.html"}"#)?,
        admin(data.path()),
    ))
    .await?;
    assert_eq!(node.get("/moved").await?.status.as_u16(), 301);
    assert_eq!(node.get("/promo").await?.text(), "promo page");

    // --- PUT replaces the whole store ---
    let put = node
        .admin(
            "PUT",
            "/kv/redirects",
            r#"{"/moved": "302 /elsewhere", "/promo": "302 /deals"}"#,
        )
        .await?;
    assert_eq!(put.status.as_u16(), 200, "{}", put.text());
    assert_eq!(put.json()?["keys"], 2);
    let moved = node.get("/moved").await?;
    assert_eq!(
        (moved.status.as_u16(), moved.header("location")),
        (302, Some("/elsewhere"))
    );
    assert_eq!(node.get("/promo").await?.header("location"), Some("/deals"));

    // --- PATCH sets and deletes in one step ---
    let patch = node
        .admin(
            "PATCH",
            "/kv/redirects",
            r#"{"set": {"/later": "301 /now"}, "delete": ["/promo", "/never-there"]}"#,
        )
        .await?;
    assert_eq!(patch.status.as_u16(), 200, "{}", patch.text());
    let later = node.get("/later").await?;
    assert_eq!(
        (later.status.as_u16(), later.header("location")),
        (301, Some("/now"))
    );
    assert_eq!(
        node.get("/promo").await?.text(),
        "promo page",
        "a deleted redirect no longer applies"
    );

    // --- reading: the whole store, one key (a path, so percent-encoded or after `//`) ---
    let all = node.admin("GET", "/kv/redirects", "").await?.json()?;
    assert_eq!(
        all,
        serde_json::json!({"/later": "301 /now", "/moved": "302 /elsewhere"})
    );
    let one = node.admin("GET", "/kv/redirects/%2Flater", "").await?;
    assert_eq!(
        one.json()?,
        serde_json::json!({"key": "/later", "value": "301 /now"})
    );
    let one = node.admin("GET", "/kv/redirects//moved", "").await?;
    assert_eq!(one.json()?["value"], "302 /elsewhere");
    assert_eq!(
        node.admin("GET", "/kv/redirects/%2Fpromo", "")
            .await?
            .status
            .as_u16(),
        404
    );

    // --- refused changes: 400 with a reason, nothing changes ---
    for (method, body, reason) in [
        ("PUT", "{\"/a\": \"301 /b\",", "line 1"),
        ("PUT", r#"{"/a": 301}"#, "\"/a\" is a number"),
        ("PUT", r#"["/a"]"#, "expected a JSON object"),
        ("PATCH", r#"{"set": {"/a": 301}}"#, "expected {\"set\""),
        ("PATCH", r#"{"sett": {}}"#, "unknown field"),
        (
            "PATCH",
            r#"{"set": {"/later": "302 /x"}, "delete": ["/later"]}"#,
            "both set and deleted",
        ),
    ] {
        let refused = node.admin(method, "/kv/redirects", body).await?;
        assert_eq!(refused.status.as_u16(), 400, "{method} {body}");
        let error = refused.json()?["error"].as_str().unwrap_or("").to_owned();
        assert!(error.contains(reason), "{method} {body}: {error}");
    }
    assert_eq!(
        node.admin("GET", "/kv/redirects", "").await?.json()?,
        all,
        "refused changes leave the store alone"
    );
    assert_eq!(node.get("/later").await?.header("location"), Some("/now"));

    // --- unknown stores ---
    for (method, path, body) in [
        ("GET", "/kv/nope", ""),
        ("GET", "/kv/nope/key", ""),
        ("PUT", "/kv/nope", "{}"),
        ("PUT", "/kv/nope", "not json"),
        ("PATCH", "/kv/nope", "{}"),
    ] {
        let reply = node.admin(method, path, body).await?;
        assert_eq!(
            reply.status.as_u16(),
            404,
            "{method} {path}: {}",
            reply.text()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_live_functions_and_kv_data() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    let site = Site::new(&[("index.html", "home")])?;
    let modules = Modules::new(&[("stamp", &stamp("1"))])?;
    let toml = format!(
        "{}{}{}{}",
        modules.toml(""),
        behavior(&site, r#"{ viewer_response = "stamp" }"#),
        store(dir.path(), "flags", r#"{"greeting": "from the file"}"#)?,
        admin(data.path()),
    );
    let node = TestNode::start(&toml).await?;
    let reply = node.get("/").await?;
    assert_eq!(
        (reply.header("x-version"), reply.header("x-greeting")),
        (Some("1"), Some("from the file"))
    );

    // --- a new LIVE version and patched data, through the admin API ---
    let upload = node.admin("PUT", "/functions/stamp", stamp("2")).await?;
    assert_eq!(upload.status.as_u16(), 201, "{}", upload.text());
    let publish = node.admin("POST", "/functions/stamp/publish", "").await?;
    assert_eq!(publish.status.as_u16(), 200, "{}", publish.text());
    let patch = node
        .admin(
            "PATCH",
            "/kv/flags",
            r#"{"set": {"greeting": "patched", "extra": "1"}}"#,
        )
        .await?;
    assert_eq!(patch.status.as_u16(), 200, "{}", patch.text());
    let reply = node.get("/").await?;
    assert_eq!(
        (reply.header("x-version"), reply.header("x-greeting")),
        (Some("2"), Some("patched"))
    );
    node.node.shutdown().await;

    // --- the same config and data directory: the admin state wins over the files ---
    let node = TestNode::start(&toml).await?;
    let reply = node.get("/").await?;
    assert_eq!(
        (reply.header("x-version"), reply.header("x-greeting")),
        (Some("2"), Some("patched"))
    );
    assert_eq!(
        node.admin("GET", "/kv/flags", "").await?.json()?,
        serde_json::json!({"greeting": "patched", "extra": "1"})
    );
    Ok(())
}
