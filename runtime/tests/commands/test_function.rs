//! `edge test-function`: a module runs against a sample event with no node, and the command
//! prints the request and response as the function left them.

use crate::harness::{edge, json_of, stamp_wat, Node, DEADLINE, SERVER};

/// A viewer-request function: adds `x-routed: yes`, rewrites the URI to `/rewritten`, logs,
/// and picks the origin `app`; it fails (returns 2) when there is no such origin.
const ROUTE: &str = r#"(module
  (import "edge_v1" "request_set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "edge_v1" "request_set_uri" (func $set_uri (param i32 i32) (result i32)))
  (import "edge_v1" "origin_set" (func $origin_set (param i32 i32) (result i32)))
  (import "edge_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-routed")
  (data (i32.const 16) "yes")
  (data (i32.const 32) "/rewritten")
  (data (i32.const 48) "app")
  (data (i32.const 64) "routing to app")
  (func (export "viewer-request") (result i32)
    (drop (call $set_header (i32.const 0) (i32.const 8) (i32.const 16) (i32.const 3)))
    (drop (call $set_uri (i32.const 32) (i32.const 10)))
    (drop (call $log (i32.const 2) (i32.const 64) (i32.const 14)))
    (if (result i32) (i32.eqz (call $origin_set (i32.const 48) (i32.const 3)))
      (then (i32.const 0))
      (else (i32.const 2)))))
"#;

#[test]
fn test_function_prints_the_changed_request() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("route.wat"), ROUTE)?;
    std::fs::write(
        dir.path().join("request.json"),
        r#"{"uri": "/old?x=1", "headers": {"accept": "text/html"}}"#,
    )?;
    std::fs::write(
        dir.path().join("edge.toml"),
        "[origins.app]\ntype = \"http\"\ntargets = [\"http://127.0.0.1:9\"]\n\
         [[behaviors]]\npath = \"*\"\norigin = \"app\"\n",
    )?;
    let args = [
        "test-function",
        "route.wat",
        "--event",
        "viewer-request",
        "--request",
        "request.json",
    ];

    // --- with a config naming `app`: the function continues to it ---
    let output = edge(
        dir.path(),
        &[&args[..], &["--config", "edge.toml"]].concat(),
        &[],
    )?;
    let result = json_of(&output)?;
    assert_eq!(result["action"], "continue", "{result}");
    assert_eq!(result["origin"], "app");
    assert_eq!(result["request"]["uri"], "/rewritten");
    assert_eq!(result["request"]["headers"]["x-routed"], "yes");
    assert_eq!(result["request"]["headers"]["accept"], "text/html");
    assert_eq!(result["logs"][0]["message"], "routing to app");

    // --- no config, no origins: the function fails, and so does the command ---
    let output = edge(dir.path(), &args, &[])?;
    assert!(
        !output.status.success(),
        "a failed function fails the command"
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(result["action"], "error", "{result}");
    assert_eq!(result["origin"], serde_json::Value::Null);
    assert_eq!(
        result["request"]["uri"], "/rewritten",
        "what it did before failing"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"returned 2 (origin_set("app"): no origin "app"; known: none)"#),
        "the failure names the refused call: {stderr}"
    );
    assert_eq!(
        result["logs"][1],
        serde_json::json!({"level": "warn", "message": "origin_set(\"app\"): no origin \"app\"; known: none"}),
        "the refused call is named, with its argument and the rule: {result}"
    );
    Ok(())
}

#[test]
fn test_function_prints_the_changed_response() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("stamp.wat"), stamp_wat("v7"))?;
    std::fs::write(dir.path().join("request.json"), r#"{"uri": "/"}"#)?;
    std::fs::write(
        dir.path().join("response.json"),
        r#"{"status": 404, "headers": {"content-type": "text/html"}}"#,
    )?;
    let event = ["--event", "viewer-response", "--request", "request.json"];
    let output = edge(
        dir.path(),
        &[
            &["test-function", "stamp.wat"],
            &event[..],
            &["--response", "response.json"],
        ]
        .concat(),
        &[],
    )?;
    let result = json_of(&output)?;
    assert_eq!(result["action"], "continue", "{result}");
    assert_eq!(result["response"]["status"], 404);
    assert_eq!(result["response"]["headers"]["x-version"], "v7");
    assert_eq!(result["response"]["headers"]["content-type"], "text/html");

    // A response event without a response is a bad sample, not a run.
    let output = edge(
        dir.path(),
        &[&["test-function", "stamp.wat"], &event[..]].concat(),
        &[],
    )?;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("needs a `response`"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// What a Rust function's panic looks like to the host: the standard hook's message on stderr,
/// then a trap.
fn panicking_wat() -> String {
    let message =
        "thread 'main' panicked at src/lib.rs:12:5:\\nboom\\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\\n";
    let len = message.replace("\\n", "n").len();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{message}")
  (data (i32.const 1024) "printed before the panic\n")
  (func (export "viewer-request") (result i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 25))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    unreachable))"#
    )
}

#[test]
fn test_function_reports_a_panic_and_prints() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("panics.wat"), panicking_wat())?;
    std::fs::write(dir.path().join("request.json"), r#"{"uri": "/"}"#)?;
    let output = edge(
        dir.path(),
        &[
            "test-function",
            "panics.wat",
            "--event",
            "viewer-request",
            "--request",
            "request.json",
        ],
        &[],
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "a failure, not a crash: {stderr}"
    );
    assert!(
        stderr.contains("panicked at src/lib.rs:12:5: boom"),
        "{stderr}"
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(result["action"], "error", "{result}");
    assert_eq!(
        result["error"],
        "function \"panics\" (viewer-request) panicked at src/lib.rs:12:5: boom"
    );
    assert_eq!(result["output"][0]["line"], "printed before the panic");
    assert_eq!(result["output"][0]["stream"], "stdout");
    assert_eq!(
        result["output"].as_array().map(Vec::len),
        Some(1),
        "the panic is reported once, as the error: {result}"
    );
    Ok(())
}

/// The same panicking module on a node: the viewer gets a 502, the node's log one line with the
/// function, event, request id, the panic message and the escaped backtrace; a printed line is
/// logged with its stream.
#[test]
fn a_panic_on_a_node_is_one_log_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("panics.wat"), panicking_wat())?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[origins.bucket]\ntype = \"static\"\nroot = \".\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\n\
             functions = {{ viewer_request = \"panics\" }}\n\
             [functions.panics]\nmodule = \"panics.wat\"\n"
        ),
    )?;
    let mut node = Node::start(dir.path(), &["serve", "--config", "edge.toml"])?;
    let response = node.get("/x")?;
    assert_eq!(
        (response.status, response.header("x-cache")),
        (502, "Error")
    );
    let printed = node.wait_for_log(DEADLINE, |l| l.contains("printed before the panic"))?;
    assert!(printed.contains("stream=\"stdout\""), "{printed}");
    let failure = node.wait_for_log(DEADLINE, |l| l.contains("panicked at"))?;
    for part in [
        "function=\"panics\"",
        "event=\"viewer-request\"",
        "request=",
        "panicked at src/lib.rs:12:5: boom",
        "backtrace=",
    ] {
        assert!(failure.contains(part), "{part} in {failure}");
    }
    // Nothing else about this failure follows: no second line, no raw backtrace lines.
    node.get("/y")?;
    let next = node.wait_for_log(DEADLINE, |l| l.contains("panicked at") || l.contains("0x"))?;
    assert!(
        next.contains("function=\"panics\"") && next.contains("panicked at") && next != failure,
        "only the next request's own line, no backtrace lines: {next}"
    );
    Ok(())
}
