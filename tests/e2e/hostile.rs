//! Hostile and broken modules: each gets a clean error for its own request (or is refused at
//! load, naming what is wrong) and the node keeps serving everything else correctly.

use anyhow::Result;

use crate::harness::{Modules, Origin, Site, TestNode};

/// A node with `/bad/*` running `module` at `event` and `*` serving a static site.
async fn node_with_bad(
    module: &str,
    event: &str,
    extra: &str,
) -> Result<(TestNode, Site, Modules)> {
    let site = Site::new(&[("ok.txt", "still serving")])?;
    node_running("bad", module, event, "/bad/*", site, extra).await
}

/// A node whose `path` behavior runs `module` (named `name`, with `extra` config lines) at
/// `event`; both it and the `*` behavior serve `site` as the static origin `bucket`.
async fn node_running(
    name: &str,
    module: &str,
    event: &str,
    path: &str,
    site: Site,
    extra: &str,
) -> Result<(TestNode, Site, Modules)> {
    let modules = Modules::new(&[(name, module)])?;
    let node = TestNode::start(&format!(
        r#"
{functions}
[origins.bucket]
type = "static"
root = {root}

[[behaviors]]
path = "{path}"
origin = "bucket"
functions = {{ {event} = "{name}" }}

[[behaviors]]
path = "*"
origin = "bucket"
"#,
        functions = modules.toml(extra),
        root = site.root(),
    ))
    .await?;
    Ok((node, site, modules))
}

/// The bad path gets `status` with `X-Cache: Error`; the good path still works, twice.
async fn assert_contained(node: &TestNode, status: u16) -> Result<()> {
    let bad = node.get("/bad/x").await?;
    assert_eq!(
        (bad.status.as_u16(), bad.x_cache()),
        (status, "Error"),
        "{}",
        bad.text()
    );
    // The function's name and its trap stay in the log: the viewer gets the status line.
    assert_eq!(
        bad.text(),
        format!(
            "{} {}\n",
            status,
            bad.status.canonical_reason().unwrap_or("")
        ),
    );
    for _ in 0..2 {
        let ok = node.get("/ok.txt").await?;
        assert_eq!(
            (ok.status.as_u16(), ok.text().as_str()),
            (200, "still serving")
        );
    }
    // And the bad function fails the same way again (fresh instances are checked by
    // `every_invocation_starts_from_a_fresh_instance`).
    assert_eq!(node.get("/bad/y").await?.status.as_u16(), status);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_hits_the_cpu_limit() -> Result<()> {
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32) (loop $l (br $l)) (i32.const 0)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_request", "cpu_limit = \"20ms\"").await?;
    assert_contained(&node, 503).await
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_growth_stops_at_the_limit() -> Result<()> {
    // Grows one page at a time and traps when growth is refused, as an allocator would abort.
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32)
        (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_request", "memory_limit = \"2 MiB\"").await?;
    assert_contained(&node, 503).await
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_recursion_exhausts_the_stack() -> Result<()> {
    let wat = r#"(module (memory (export "memory") 1)
      (func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))
      (func (export "viewer-request") (result i32) (call $down (i32.const 0))))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_request", "").await?;
    assert_contained(&node, 503).await
}

#[tokio::test(flavor = "multi_thread")]
async fn trap_gives_502() -> Result<()> {
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32) unreachable))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_request", "").await?;
    assert_contained(&node, 502).await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_return_value_gives_502() -> Result<()> {
    // 7 is no outcome; 1 (respond) from a response event is not allowed either.
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32) (i32.const 7)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_request", "").await?;
    assert_contained(&node, 502).await?;
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "viewer-response") (result i32) (i32.const 1)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_response", "").await?;
    assert_contained(&node, 502).await
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_export_is_refused_at_load() -> Result<()> {
    let no_entry = r#"(module (memory (export "memory") 1) (func (export "handle") (result i32) (i32.const 0)))"#;
    let error = node_with_bad(no_entry, "viewer_request", "")
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("exports no entry point"),
        "{error:#}"
    );

    let no_memory = r#"(module (func (export "viewer-request") (result i32) (i32.const 0)))"#;
    let error = node_with_bad(no_memory, "viewer_request", "")
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("does not export its memory"),
        "{error:#}"
    );

    // Attached to an event it has no entry point for.
    let only_response = r#"(module (memory (export "memory") 1) (func (export "viewer-response") (result i32) (i32.const 0)))"#;
    let error = node_with_bad(only_response, "viewer_request", "")
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("no `viewer-request` entry point"),
        "{error:#}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_import_is_refused_at_load() -> Result<()> {
    let unknown = r#"(module (import "edge_v1" "open_socket" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "viewer-request") (result i32) (i32.const 0)))"#;
    let error = node_with_bad(unknown, "viewer_request", "")
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("unknown import `edge_v1::open_socket`"),
        "{error:#}"
    );

    let mistyped = r#"(module (import "edge_v1" "log" (func (param i64) (result i32)))
      (memory (export "memory") 1) (func (export "viewer-request") (result i32) (i32.const 0)))"#;
    let error = node_with_bad(mistyped, "viewer_request", "")
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("import `edge_v1::log` has type"),
        "{error:#}"
    );

    let other_module = r#"(module (import "env" "system" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "viewer-request") (result i32) (i32.const 0)))"#;
    let error = node_with_bad(other_module, "viewer_request", "")
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("unknown import `env::system`"),
        "{error:#}"
    );
    Ok(())
}

/// Sets a response header from memory and reports each call's status in `x-status-N` headers
/// (as a digit), so the test sees what the host answered.
fn header_probe(name: &str, value_len: usize, value_fill: &str) -> String {
    format!(
        r#"(module
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 32)
      (data (i32.const 0) "{name}")
      (data (i32.const 100) "x-status")
      (data (i32.const 1024) "{value_fill}")
      (func (export "viewer-response") (result i32)
        (i32.store8 (i32.const 200) (i32.add (i32.const 48)
          (call $set (i32.const 0) (i32.const {name_len}) (i32.const 1024) (i32.const {value_len}))))
        (drop (call $set (i32.const 100) (i32.const 8) (i32.const 200) (i32.const 1)))
        (i32.const 0)))"#,
        name_len = name.len()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn enormous_header_is_refused_with_a_status() -> Result<()> {
    // A 1 MiB value (zeros are not valid either, but size is checked first).
    let (node, _s, _m) = node_with_bad(
        &header_probe("x-huge", 1024 * 1024, "a"),
        "viewer_response",
        "",
    )
    .await?;
    let r = node.get("/bad/x").await?;
    assert_eq!(r.status.as_u16(), 404, "the request itself goes on");
    assert_eq!(r.header("x-status"), Some("5"), "LIMIT_EXCEEDED");
    assert!(r.header("x-huge").is_none());
    assert_eq!(node.get("/ok.txt").await?.text(), "still serving");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn crlf_in_header_value_cannot_split_the_response() -> Result<()> {
    let value = "ok\\0d\\0aset-cookie: stolen=1";
    let (node, _s, _m) =
        node_with_bad(&header_probe("x-split", 24, value), "viewer_response", "").await?;
    let r = node.get("/bad/x").await?;
    assert_eq!(r.header("x-status"), Some("2"), "INVALID_ARGUMENT");
    assert!(
        r.header("x-split").is_none() && r.header("set-cookie").is_none(),
        "{:?}",
        r.headers
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn host_call_from_the_wrong_event_gets_not_allowed() -> Result<()> {
    // viewer-response may not pick an origin, set a TTL or set the cache key.
    let wat = r#"(module
      (import "edge_v1" "origin_set" (func $origin (param i32 i32) (result i32)))
      (import "edge_v1" "cache_set_ttl" (func $ttl (param i64) (result i32)))
      (import "edge_v1" "cache_key_set" (func $key (param i32 i32) (result i32)))
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "bucket") (data (i32.const 100) "x-status")
      (func (export "viewer-response") (result i32)
        (i32.store8 (i32.const 200) (i32.add (i32.const 48) (call $origin (i32.const 0) (i32.const 6))))
        (i32.store8 (i32.const 201) (i32.add (i32.const 48) (call $ttl (i64.const 60))))
        (i32.store8 (i32.const 202) (i32.add (i32.const 48) (call $key (i32.const 0) (i32.const 6))))
        (drop (call $set (i32.const 100) (i32.const 8) (i32.const 200) (i32.const 3)))
        (i32.const 0)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_response", "").await?;
    let r = node.get("/bad/x").await?;
    assert_eq!(r.header("x-status"), Some("444"), "NOT_ALLOWED three times");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_bounds_pointers_are_a_status_not_a_crash() -> Result<()> {
    let wat = r#"(module
      (import "edge_v1" "request_get_uri" (func $uri (param i32 i32 i32) (result i32)))
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "x-status")
      (func (export "viewer-response") (result i32)
        ;; Buffer far outside the 64 KiB memory, and a length that wraps.
        (i32.store8 (i32.const 200) (i32.add (i32.const 48) (call $uri (i32.const 0x7fff0000) (i32.const 16) (i32.const 0))))
        (i32.store8 (i32.const 201) (i32.add (i32.const 48) (call $uri (i32.const 16) (i32.const -1) (i32.const 0))))
        (drop (call $set (i32.const 100) (i32.const 8) (i32.const 200) (i32.const 2)))
        (i32.const 0)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_response", "").await?;
    let r = node.get("/bad/x").await?;
    assert_eq!(
        r.header("x-status"),
        Some("22"),
        "INVALID_ARGUMENT for both"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_invocation_starts_from_a_fresh_instance() -> Result<()> {
    // Increments a mutable global and a memory cell, and reports both as digits: a reused
    // instance would report 2, 3, ... on later requests.
    let wat = r#"(module
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (global $calls (mut i32) (i32.const 0))
      (data (i32.const 0) "x-global") (data (i32.const 16) "x-memory")
      (func (export "viewer-response") (result i32)
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (i32.store (i32.const 300) (i32.add (i32.load (i32.const 300)) (i32.const 1)))
        (i32.store8 (i32.const 200) (i32.add (i32.const 48) (global.get $calls)))
        (i32.store8 (i32.const 201) (i32.add (i32.const 48) (i32.load (i32.const 300))))
        (drop (call $set (i32.const 0) (i32.const 8) (i32.const 200) (i32.const 1)))
        (drop (call $set (i32.const 16) (i32.const 8) (i32.const 201) (i32.const 1)))
        (i32.const 0)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_response", "").await?;
    for path in ["/bad/x", "/bad/x", "/bad/y", "/bad/x"] {
        let r = node.get(path).await?;
        assert_eq!(
            (r.header("x-global"), r.header("x-memory")),
            (Some("1"), Some("1")),
            "{path}: state from an earlier invocation survived"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn good_requests_are_served_while_a_function_loops() -> Result<()> {
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32) (loop $l (br $l)) (i32.const 0)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_request", "cpu_limit = \"20ms\"").await?;
    let node = std::sync::Arc::new(node);
    // Looping and good requests at the same time, interleaved.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let node = std::sync::Arc::clone(&node);
        tasks.push(tokio::spawn(async move {
            let path = if i % 3 == 0 {
                format!("/bad/{i}")
            } else {
                "/ok.txt".to_owned()
            };
            let r = node.get(&path).await?;
            anyhow::Ok((path, r.status.as_u16(), r.text()))
        }));
    }
    for task in tasks {
        let (path, status, text) = task.await??;
        if path.starts_with("/bad/") {
            assert_eq!(status, 503, "{path}: {text}");
        } else {
            assert_eq!((status, text.as_str()), (200, "still serving"), "{path}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn respond_without_a_response_gives_502() -> Result<()> {
    // `1` (respond) from viewer-request without any response_set_* call first.
    let wat = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32) (i32.const 1)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_request", "").await?;
    assert_contained(&node, 502).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_buffer_gets_the_length_and_nothing_copied() -> Result<()> {
    // The URI "/bad/xyz" (8 bytes) into a 2-byte buffer prefilled with "ZZ": the status, the
    // length written at 0, and the buffer's bytes afterwards are reported as headers.
    let wat = r#"(module
      (import "edge_v1" "request_get_uri" (func $uri (param i32 i32 i32) (result i32)))
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "x-status") (data (i32.const 116) "x-length") (data (i32.const 132) "x-buffer")
      (data (i32.const 300) "ZZ")
      (func (export "viewer-response") (result i32)
        (i32.store8 (i32.const 200) (i32.add (i32.const 48)
          (call $uri (i32.const 300) (i32.const 2) (i32.const 0))))
        (i32.store8 (i32.const 201) (i32.add (i32.const 48) (i32.load (i32.const 0))))
        (drop (call $set (i32.const 100) (i32.const 8) (i32.const 200) (i32.const 1)))
        (drop (call $set (i32.const 116) (i32.const 8) (i32.const 201) (i32.const 1)))
        (drop (call $set (i32.const 132) (i32.const 8) (i32.const 300) (i32.const 2)))
        (i32.const 0)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_response", "").await?;
    let r = node.get("/bad/xyz").await?;
    assert_eq!(
        (
            r.header("x-status"),
            r.header("x-length"),
            r.header("x-buffer")
        ),
        (Some("3"), Some("8"), Some("ZZ")),
        "BUFFER_TOO_SMALL, the URI's length, and the buffer untouched"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_gives_no_environment_arguments_or_directories() -> Result<()> {
    // Reports as digits: the environment's variable count, the argument count, and the errno
    // of asking for preopened directory 3 (8 = EBADF: there is none).
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "x-env") (data (i32.const 110) "x-args") (data (i32.const 120) "x-dir")
      ;; Counts start as 7s, so a call that writes nothing cannot pass for zero.
      (data (i32.const 0) "\07\07\07\07\07\07\07\07\07\07\07\07\07\07\07\07")
      (func (export "viewer-response") (result i32)
        (drop (call $env (i32.const 0) (i32.const 4)))
        (drop (call $args (i32.const 8) (i32.const 12)))
        (i32.store8 (i32.const 200) (i32.add (i32.const 48) (i32.load (i32.const 0))))
        (i32.store8 (i32.const 201) (i32.add (i32.const 48) (i32.load (i32.const 8))))
        (i32.store8 (i32.const 202) (i32.add (i32.const 48) (call $prestat (i32.const 3) (i32.const 16))))
        (drop (call $set (i32.const 100) (i32.const 5) (i32.const 200) (i32.const 1)))
        (drop (call $set (i32.const 110) (i32.const 6) (i32.const 201) (i32.const 1)))
        (drop (call $set (i32.const 120) (i32.const 5) (i32.const 202) (i32.const 1)))
        (i32.const 0)))"#;
    let (node, _s, _m) = node_with_bad(wat, "viewer_response", "").await?;
    let r = node.get("/bad/x").await?;
    assert_eq!(
        (r.header("x-env"), r.header("x-args"), r.header("x-dir")),
        (Some("0"), Some("0"), Some("8")),
        "no environment, no arguments, no preopened directory"
    );
    Ok(())
}

// --- WASI: prints, floods and the calls that would block the node ---

/// A node with `/fn/*` running `module` (named `name`, with `extra` config lines) at
/// viewer-request and `*` serving a static site that has `fn/x` and `ok.txt`.
async fn node_with_function(
    name: &str,
    module: &str,
    extra: &str,
) -> Result<(TestNode, Site, Modules)> {
    let site = Site::new(&[("ok.txt", "still serving"), ("fn/x", "served")])?;
    node_running(name, module, "viewer_request", "/fn/*", site, extra).await
}

/// Writes `text` to stdout `times` times with `fd_write`, then continues.
fn printer(text: &str, times: u32) -> String {
    format!(
        r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "{text}\n")
      (func (export "viewer-request") (result i32) (local $i i32)
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const {len}))
        (loop $again
          (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $again (i32.lt_u (local.get $i) (i32.const {times}))))
        (i32.const 0)))"#,
        len = text.len() + 1
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_printed_line_goes_to_the_log_and_the_request_is_served() -> Result<()> {
    crate::logs::capture();
    let (node, _s, _m) = node_with_function("printer", &printer("printer says hi", 1), "").await?;
    let r = node.get("/fn/x").await?;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "served"));
    let lines = crate::logs::lines_with("printer says hi");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    for field in [
        "function=\"printer\"",
        "event=\"viewer-request\"",
        "stream=\"stdout\"",
        "request=",
    ] {
        assert!(lines[0].contains(field), "{field} in {}", lines[0]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdout_flood_is_capped_and_the_request_served() -> Result<()> {
    crate::logs::capture();
    // 100 KiB of output in 2 000 lines; the limit is raised so that a debug build's slower host
    // calls cannot turn this into a CPU-limit test.
    let text = "flooder fills the log with this line, over and over";
    let (node, _s, _m) =
        node_with_function("flooder", &printer(text, 2_000), "cpu_limit = \"1s\"").await?;
    let r = node.get("/fn/x").await?;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "served"));
    let kept = crate::logs::lines_with(text);
    assert!(
        !kept.is_empty() && kept.len() <= 100,
        "{} lines kept",
        kept.len()
    );
    let notes: Vec<_> = crate::logs::lines_with("output truncated")
        .into_iter()
        .filter(|l| l.contains("function=\"flooder\""))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert_eq!(node.get("/ok.txt").await?.text(), "still serving");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn file_and_poll_calls_get_an_errno_not_a_stuck_node() -> Result<()> {
    // fd_read from stdin, poll_oneoff, path_open and fd_seek: each errno goes into the generated
    // response's headers as two digits.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_seek" (func $seek (param i32 i64 i32 i32) (result i32)))
      (import "edge_v1" "response_set_status" (func $status (param i32) (result i32)))
      (import "edge_v1" "response_set_header" (func $set (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 256) "x-fd-read") (data (i32.const 272) "x-poll")
      (data (i32.const 288) "x-path-open") (data (i32.const 304) "x-fd-seek")
      (data (i32.const 320) "/etc/passwd")
      (func $report (param $name i32) (param $len i32) (param $errno i32)
        (i32.store8 (i32.const 400) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
        (i32.store8 (i32.const 401) (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10))))
        (drop (call $set (local.get $name) (local.get $len) (i32.const 400) (i32.const 2))))
      (func (export "viewer-request") (result i32)
        (i32.store (i32.const 0) (i32.const 128))
        (i32.store (i32.const 4) (i32.const 16))
        (drop (call $status (i32.const 200)))
        (call $report (i32.const 256) (i32.const 9)
          (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (call $report (i32.const 272) (i32.const 6)
          (call $poll (i32.const 512) (i32.const 1024) (i32.const 1) (i32.const 8)))
        (call $report (i32.const 288) (i32.const 11)
          (call $open (i32.const 3) (i32.const 0) (i32.const 320) (i32.const 11) (i32.const 0)
            (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 8)))
        (call $report (i32.const 304) (i32.const 9)
          (call $seek (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 8)))
        (i32.const 1)))"#;
    let (node, _s, _m) = node_with_function("reader", wat, "").await?;
    let r = node.get("/fn/x").await?;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.header("x-fd-read"), Some("08"), "BADF: no stdin");
    assert_eq!(r.header("x-poll"), Some("58"), "NOTSUP: no sleeping");
    assert_eq!(
        r.header("x-path-open"),
        Some("08"),
        "BADF: no preopened directory"
    );
    assert_eq!(r.header("x-fd-seek"), Some("08"), "BADF");
    assert_eq!(node.get("/ok.txt").await?.text(), "still serving");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spinning_function_does_not_stop_other_requests() -> Result<()> {
    let spin = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32) (loop $l (br $l)) (i32.const 0)))"#;
    let (node, _s, _m) = node_with_function("spinner", spin, "").await?;
    let node = std::sync::Arc::new(node);
    // More spinning requests at once than the node has threads of any kind.
    let spinners: Vec<_> = (0..16)
        .map(|_| {
            let node = std::sync::Arc::clone(&node);
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    statuses.push(node.get("/fn/x").await?.status.as_u16());
                }
                anyhow::Ok(statuses)
            })
        })
        .collect();
    let others: Vec<_> = (0..4)
        .map(|_| {
            let node = std::sync::Arc::clone(&node);
            tokio::spawn(async move {
                for _ in 0..20 {
                    let r = node.get("/ok.txt").await?;
                    assert_eq!(
                        (r.status.as_u16(), r.text().as_str()),
                        (200, "still serving")
                    );
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in others {
        task.await??;
    }
    for task in spinners {
        for status in task.await?? {
            assert_eq!(status, 503, "the CPU limit, or every slow-lane thread busy");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_over_its_limit_is_refused_at_load() -> Result<()> {
    // 64 pages = 4 MiB of initial memory, against a 2 MiB limit.
    let wat = r#"(module (memory (export "memory") 64)
      (func (export "viewer-request") (result i32) (i32.const 0)))"#;
    let error = node_with_bad(wat, "viewer_request", "memory_limit = \"2 MiB\"")
        .await
        .err()
        .expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("memory_limit") && message.contains("\"bad\""),
        "{message}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_run_starts_over_in_the_slow_lane_and_counts_once() -> Result<()> {
    crate::logs::capture();
    // Prints, appends a header, then runs far past the inline budget (tens of milliseconds),
    // within a generous CPU limit: the inline attempt is abandoned and the invocation starts
    // over, so the origin must see the header once and the log the line once.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (import "edge_v1" "request_append_header" (func $append (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 64) "slow walker starts\n") (data (i32.const 128) "x-once") (data (i32.const 160) "a")
      (func (export "viewer-request") (result i32) (local $i i32)
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 19))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (drop (call $append (i32.const 128) (i32.const 6) (i32.const 160) (i32.const 1)))
        (loop $spin
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $spin (i32.lt_u (local.get $i) (i32.const 100000000))))
        (i32.const 0)))"#;
    let origin = Origin::fixed("from the app", &[("cache-control", "no-store")]).await?;
    let modules = Modules::new(&[("walker", wat)])?;
    let node = TestNode::start(&format!(
        r#"
{functions}
[origins.app]
type = "http"
targets = ["{app}"]

[[behaviors]]
path = "*"
origin = "app"
functions = {{ viewer_request = "walker" }}
"#,
        functions = modules.toml("cpu_limit = \"10s\""),
        app = origin.url(),
    ))
    .await?;
    for _ in 0..2 {
        let r = node.get("/walk").await?;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "from the app")
        );
        assert_eq!(
            origin.last().header("x-once"),
            Some("a"),
            "{:?}",
            origin.last().headers
        );
        assert_eq!(origin.last().headers.get_all("x-once").iter().count(), 1);
    }
    assert_eq!(
        crate::logs::lines_with("slow walker starts").len(),
        2,
        "one line per request: the abandoned attempt's output is dropped"
    );
    Ok(())
}

/// A function that loops to its CPU limit.
const SPINNER: &str = r#"(module (memory (export "memory") 1)
  (func (export "viewer-request") (result i32) (loop $l (br $l)) (i32.const 0)))"#;

/// `clients` tasks asking for `path` `times` times each; each yields the statuses it got.
fn clients(
    node: &std::sync::Arc<TestNode>,
    path: &'static str,
    clients: usize,
    times: usize,
) -> Vec<tokio::task::JoinHandle<Result<Vec<u16>>>> {
    (0..clients)
        .map(|_| {
            let node = std::sync::Arc::clone(node);
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..times {
                    statuses.push(node.get(path).await?.status.as_u16());
                }
                anyhow::Ok(statuses)
            })
        })
        .collect()
}

async fn statuses(tasks: Vec<tokio::task::JoinHandle<Result<Vec<u16>>>>) -> Result<Vec<u16>> {
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_requests_of_a_function_flooded_with_its_slow_ones_are_served() -> Result<()> {
    // Spins when the path's fifth byte is 's' (`/fn/spin`), returns at once otherwise: once
    // `/fn/spin` is known to run long it is sent to the slow lane, whose share for the function
    // fills, while `/fn/x` keeps running inline.
    let wat = r#"(module
      (import "edge_v1" "request_get_uri" (func $uri (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "viewer-request") (result i32)
        (drop (call $uri (i32.const 0) (i32.const 64) (i32.const 128)))
        (if (i32.eq (i32.load8_u (i32.const 4)) (i32.const 115))
          (then (loop $l (br $l))))
        (i32.const 0)))"#;
    let (node, _s, _m) = node_with_function("mixed", wat, "").await?;
    let node = std::sync::Arc::new(node);
    let spinners = clients(&node, "/fn/spin", 24, 3);
    let fast = clients(&node, "/fn/x", 4, 20);
    let fast = statuses(fast).await?;
    assert!(fast.iter().all(|&s| s == 200), "{fast:?}");
    let spun = statuses(spinners).await?;
    assert!(spun.iter().all(|&s| s == 503), "{spun:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flooded_function_leaves_room_in_the_slow_lane_for_another() -> Result<()> {
    // `walker` always runs far past the inline budget and within its CPU limit, so it always
    // runs in the slow lane; `spinner` floods the lane. Each may hold only half of it.
    let walker = r#"(module (memory (export "memory") 1)
      (func (export "viewer-request") (result i32) (local $i i32)
        (loop $spin
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $spin (i32.lt_u (local.get $i) (i32.const 30000000))))
        (i32.const 0)))"#;
    let spinner = Modules::new(&[("spinner", SPINNER)])?;
    let walkers = Modules::new(&[("walker", walker)])?;
    let site = Site::new(&[("spin/x", "spun"), ("walk/x", "walked")])?;
    let node = TestNode::start(&format!(
        r#"
{spinner}
{walker}
[origins.bucket]
type = "static"
root = {root}

[[behaviors]]
path = "/spin/*"
origin = "bucket"
functions = {{ viewer_request = "spinner" }}

[[behaviors]]
path = "/walk/*"
origin = "bucket"
functions = {{ viewer_request = "walker" }}
"#,
        spinner = spinner.toml(""),
        walker = walkers.toml("cpu_limit = \"10s\""),
        root = site.root(),
    ))
    .await?;
    let node = std::sync::Arc::new(node);
    let flood = clients(&node, "/spin/x", 24, 4);
    let walked = statuses(clients(&node, "/walk/x", 2, 3)).await?;
    assert!(walked.iter().all(|&s| s == 200), "{walked:?}");
    let spun = statuses(flood).await?;
    assert!(spun.iter().all(|&s| s == 503), "{spun:?}");
    Ok(())
}
