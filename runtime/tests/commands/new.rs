//! `edge new`: the crate it writes builds with the one documented command and passes its own
//! tests, offline, even inside a directory that belongs to another cargo workspace; the module
//! it builds answers on the node. Bad names and occupied directories are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{ensure, Context as _};

use crate::harness::{edge, json_of};

/// Where the nested builds of scaffolded crates keep their output: shared by runs, so only the
/// first run compiles the SDK and `http`.
pub fn scaffold_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("edge-new")
}

/// Runs `cargo args` in `dir` the way a user would, offline, with output under
/// [`scaffold_target_dir`].
fn cargo(dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", scaffold_target_dir())
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .context("running cargo")?;
    ensure!(
        output.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

#[test]
fn new_crate_builds_for_wasm_and_passes_its_tests() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // A workspace above: without a `[workspace]` of its own the new crate would be refused as
    // "believes it's in a workspace when it's not".
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n")?;
    let created = edge(dir.path(), &["new", "hello-edge"], &[])?;
    ensure!(
        created.status.success(),
        "edge new failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let next = String::from_utf8_lossy(&created.stdout);
    assert!(
        next.contains("cargo build --release --target wasm32-wasip1"),
        "says how to build: {next}"
    );
    let krate = dir.path().join("hello-edge");

    // --- the one build command, offline (the target installed as the README says) ---
    let _ = Command::new("rustup")
        .args(["target", "add", "wasm32-wasip1"])
        .output();
    cargo(&krate, &["build", "--release", "--target", "wasm32-wasip1"])?;
    let module = scaffold_target_dir().join("wasm32-wasip1/release/hello_edge.wasm");
    ensure!(module.is_file(), "no module at {}", module.display());

    // --- its own tests, natively, against the SDK's TestHost ---
    let tested = cargo(&krate, &["test"])?;
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(
        report.contains("test result: ok. 2 passed"),
        "both handler tests ran: {report}"
    );

    // --- the module answers on the node ---
    std::fs::write(krate.join("request.json"), r#"{"uri": "/hello"}"#)?;
    let module = module.to_str().context("UTF-8 path")?;
    let run = json_of(&edge(
        &krate,
        &[
            "test-function",
            module,
            "--event",
            "viewer-request",
            "--request",
            "request.json",
        ],
        &[],
    )?)?;
    assert_eq!(run["action"], "respond", "{run}");
    assert_eq!(run["response"]["status"], 200, "{run}");
    assert_eq!(run["response"]["body"], "hello from hello-edge\n", "{run}");

    // --- with panic = "abort", a panic's message still reaches the log ---
    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib)?;
    let signature = source
        .lines()
        .find(|l| l.starts_with("pub fn viewer_request") && l.ends_with('{'))
        .context("the handler's signature on one line")?;
    let panicking = source.replacen(
        signature,
        &format!(
            "{signature}\n    if std::hint::black_box(true) {{ panic!(\"boom: keep this message\") }}"
        ),
        1,
    );
    std::fs::write(&lib, panicking)?;
    cargo(&krate, &["build", "--release", "--target", "wasm32-wasip1"])?;
    let failed = edge(
        &krate,
        &[
            "test-function",
            module,
            "--event",
            "viewer-request",
            "--request",
            "request.json",
        ],
        &[],
    )?;
    let log = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{log}");
    assert!(
        log.contains("boom: keep this message") && log.contains("src/lib.rs"),
        "the panic message and its place are logged: {log}"
    );
    Ok(())
}

#[test]
fn new_refuses_bad_names_and_occupied_directories() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let refused = |args: &[&str], says: &str| -> anyhow::Result<()> {
        let output = edge(dir.path(), args, &[])?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        ensure!(!output.status.success(), "edge {args:?} succeeded");
        ensure!(
            stderr.contains(says),
            "edge {args:?} should say {says:?}: {stderr}"
        );
        Ok(())
    };
    refused(
        &["new", "Hello World"],
        "invalid crate name \"Hello World\"",
    )?;
    refused(&["new", "test"], "reserved")?;

    std::fs::create_dir(dir.path().join("taken"))?;
    std::fs::write(dir.path().join("taken/notes.txt"), "mine")?;
    refused(&["new", "taken"], "already exists and is not empty")?;
    refused(
        &["new", "other", "--path", "taken"],
        "already exists and is not empty",
    )?;
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/notes.txt"))?,
        "mine"
    );
    assert!(!dir.path().join("taken/Cargo.toml").exists());

    refused(&["new", "fresh", "--sdk", "nowhere"], "--sdk")?;
    assert!(!dir.path().join("fresh").exists(), "nothing written");

    // An empty directory is fine.
    std::fs::create_dir(dir.path().join("empty"))?;
    let output = edge(dir.path(), &["new", "fresh", "--path", "empty"], &[])?;
    ensure!(output.status.success(), "{output:?}");
    assert!(dir.path().join("empty/src/lib.rs").is_file());
    Ok(())
}
