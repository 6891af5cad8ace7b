//! The `edge` command line: `check` accepts a valid config and names the file, line and key of
//! a bad one; `serve` refuses a config it cannot read. Only commands that exit on their own run
//! here (never `serve` with a valid config).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Every command here exits at once; one that does not is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `edge` with `args` in `cwd` and waits (bounded) for it to exit.
fn edge(cwd: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge"))
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting edge")?;
    let started = Instant::now();
    while child.try_wait()?.is_none() {
        if started.elapsed() > DEADLINE {
            child.kill()?;
            let output = child.wait_with_output()?;
            bail!(
                "edge {args:?} still running after {DEADLINE:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child.wait_with_output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle is in the text")
        + 1
}

/// A valid config: a static origin at `./site` (relative to the config file) and an http one.
const VALID: &str = r#"[server]
listen = "127.0.0.1:0"

[origins.bucket]
type = "static"
root = "site"

[origins.app]
type = "http"
targets = ["http://127.0.0.1:3000"]

[[behaviors]]
path = "/api/*"
origin = "app"
methods = ["GET", "HEAD", "POST"]

[[behaviors]]
path = "*"
origin = "bucket"
"#;

/// A temp dir holding `edge.toml` with `text` and an empty `site/` directory.
fn config_dir(text: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("site"))?;
    std::fs::write(dir.path().join("edge.toml"), text)?;
    Ok(dir)
}

/// Runs `edge check` on `text`, asserts it fails, and returns the file, the output and stderr.
fn check_refuses(text: &str) -> anyhow::Result<(std::path::PathBuf, Output, String)> {
    let dir = config_dir(text)?;
    let file = dir.path().join("edge.toml");
    let output = edge(
        dir.path(),
        &["check", "--config", file.to_str().context("utf-8 path")?],
    )?;
    assert!(!output.status.success(), "the config is refused");
    let err = stderr(&output);
    Ok((file, output, err))
}

#[test]
fn check_accepts_a_valid_config() -> anyhow::Result<()> {
    let dir = config_dir(VALID)?;
    let file = dir.path().join("edge.toml");
    // Run from elsewhere: `root = "site"` resolves against the config file's directory.
    let elsewhere = tempfile::tempdir()?;
    let output = edge(
        elsewhere.path(),
        &["check", "--config", file.to_str().context("utf-8 path")?],
    )?;
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        stderr(&output)
    );
    let out = stdout(&output);
    assert!(out.contains(&format!("{}: ok", file.display())), "{out}");
    assert!(out.contains("2 origins, 2 behaviors"), "{out}");
    Ok(())
}

#[test]
fn check_defaults_to_edge_toml_in_the_working_directory() -> anyhow::Result<()> {
    let dir = config_dir(VALID)?;
    let output = edge(dir.path(), &["check"])?;
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(
        stdout(&output).contains("edge.toml: ok"),
        "{}",
        stdout(&output)
    );

    let empty = tempfile::tempdir()?;
    let output = edge(empty.path(), &["check"])?;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("edge.toml"), "{}", stderr(&output));
    Ok(())
}

#[test]
fn check_names_file_line_and_key_of_an_unknown_origin() -> anyhow::Result<()> {
    let text = VALID.replace("origin = \"app\"", "origin = \"ap\"");
    let (file, output, err) = check_refuses(&text)?;
    let line = line_of(&text, "origin = \"ap\"");
    assert!(
        err.contains(&format!("{}:{line}: `behaviors[0].origin`", file.display())),
        "{err}"
    );
    assert!(err.contains("unknown origin \"ap\""), "{err}");
    assert!(
        err.contains("app") && err.contains("bucket"),
        "lists the known origins: {err}"
    );
    assert!(
        stdout(&output).is_empty(),
        "no `ok` on failure: {}",
        stdout(&output)
    );
    Ok(())
}

#[test]
fn check_names_file_line_and_key_of_a_missing_static_root() -> anyhow::Result<()> {
    let text = VALID.replace("root = \"site\"", "root = \"no-such-dir\"");
    let (file, _, err) = check_refuses(&text)?;
    let line = line_of(&text, "no-such-dir");
    assert!(
        err.contains(&format!("{}:{line}: `origins.bucket.root`", file.display())),
        "{err}"
    );
    assert!(err.contains("not a directory"), "{err}");
    Ok(())
}

#[test]
fn check_names_the_line_of_a_toml_syntax_error() -> anyhow::Result<()> {
    let text = VALID.replace("path = \"/api/*\"", "path = \"/api/*");
    let (file, _, err) = check_refuses(&text)?;
    assert!(
        err.contains(&file.display().to_string()),
        "names the file: {err}"
    );
    let line = line_of(&text, "path = \"/api/*");
    assert!(
        err.contains(&format!("line {line}")),
        "names line {line}: {err}"
    );
    Ok(())
}

#[test]
fn check_names_the_line_and_field_of_an_unknown_field() -> anyhow::Result<()> {
    let text = VALID.replace("methods = [", "method = [");
    let (file, _, err) = check_refuses(&text)?;
    assert!(
        err.contains(&file.display().to_string()),
        "names the file: {err}"
    );
    let line = line_of(&text, "method = [");
    assert!(
        err.contains(&format!("line {line}")),
        "names line {line}: {err}"
    );
    assert!(
        err.contains("unknown field `method`"),
        "names the field: {err}"
    );
    Ok(())
}

#[test]
fn serve_with_a_missing_config_exits_with_the_file_name() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = edge(dir.path(), &["serve", "--config", "missing.toml"])?;
    assert!(
        !output.status.success(),
        "serve must not start without a config"
    );
    let err = stderr(&output);
    assert!(err.contains("missing.toml"), "{err}");
    assert!(err.contains("cannot read config file"), "{err}");
    Ok(())
}

#[test]
fn serve_with_an_invalid_config_exits_before_listening() -> anyhow::Result<()> {
    let text = VALID.replace("origin = \"bucket\"", "origin = \"buckit\"");
    let dir = config_dir(&text)?;
    let output = edge(dir.path(), &["serve", "--config", "edge.toml"])?;
    assert!(!output.status.success());
    let err = stderr(&output);
    let line = line_of(&text, "buckit");
    assert!(
        err.contains(&format!("edge.toml:{line}: `behaviors[1].origin`")),
        "{err}"
    );
    assert!(!err.contains("listening"), "{err}");
    Ok(())
}

/// A valid config with one function, `f`, whose module `f.wat` holds `module`.
fn config_with_function(module: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = config_dir(&format!(
        "{VALID}functions = {{ viewer_request = \"f\" }}\n\n[functions.f]\nmodule = \"f.wat\"\n"
    ))?;
    std::fs::write(dir.path().join("f.wat"), module)?;
    Ok(dir)
}

#[test]
fn check_loads_functions_as_serve_does() -> anyhow::Result<()> {
    // --- a valid module passes and is counted ---
    let dir = config_with_function(
        r#"(module (memory (export "memory") 1) (func (export "viewer-request") (result i32) (i32.const 0)))"#,
    )?;
    let output = edge(dir.path(), &["check"])?;
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(
        stdout(&output).contains("1 functions"),
        "{}",
        stdout(&output)
    );

    // --- garbage: refused, naming the function and why ---
    let dir = config_with_function("this is not WebAssembly")?;
    let output = edge(dir.path(), &["check"])?;
    assert!(!output.status.success(), "garbage passed");
    let err = stderr(&output);
    assert!(
        err.contains("function \"f\"") && err.contains("does not compile"),
        "{err}"
    );

    // --- an import the node does not provide ---
    let dir = config_with_function(
        r#"(module (import "edge_v1" "teleport" (func (result i32))) (memory (export "memory") 1)
          (func (export "viewer-request") (result i32) (i32.const 0)))"#,
    )?;
    let output = edge(dir.path(), &["check"])?;
    assert!(!output.status.success(), "an unknown import passed");
    let err = stderr(&output);
    assert!(
        err.contains("function \"f\"") && err.contains("unknown import `edge_v1::teleport`"),
        "{err}"
    );

    // --- a memory over its memory_limit ---
    let dir = config_with_function(
        r#"(module (memory (export "memory") 300) (func (export "viewer-request") (result i32) (i32.const 0)))"#,
    )?;
    let output = edge(dir.path(), &["check"])?;
    assert!(
        !output.status.success(),
        "a 19 MiB memory passed a 16 MiB limit"
    );
    assert!(
        stderr(&output).contains("memory_limit"),
        "{}",
        stderr(&output)
    );
    Ok(())
}
