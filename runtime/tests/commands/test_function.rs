//! `edge test-function`: a module runs against a sample event with no node, and the command
//! prints the request and response as the function left them.

use crate::harness::{edge, json_of, stamp_wat};

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
    assert!(stderr.contains("returned 2"), "{stderr}");
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
