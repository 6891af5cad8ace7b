//! `edge dev`: a changed module (`.wat`, `.wasm`, or a rebuilt function crate) is picked up
//! without a restart and without emptying the cache; a broken one is reported and the previous
//! version keeps serving. A crate `edge new` wrote is built on start, though never built
//! before, and rebuilt on every edit. An uploaded LIVE version outranks the config's module.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context as _};

use crate::harness::{
    edge, json_of, replace_file, site_dir, stamp_wat, Node, CHANGE_DEADLINE, SERVER,
};

#[test]
fn dev_picks_up_a_changed_wat_file() -> anyhow::Result<()> {
    let dir = site_dir()?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [functions.stamp]\nmodule = \"stamp.wat\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    let mut node = Node::start(dir.path(), &["dev", "--config", "edge.toml"])?;

    // --- version A, and an object in the cache ---
    let first = node.get("/")?;
    assert_eq!(
        (first.status, first.header("x-version")),
        (200, "A"),
        "{first:?}"
    );
    assert_eq!(first.header("x-cache"), "Miss");
    let cached = node.get("/")?;
    assert_eq!(
        (cached.header("x-cache"), cached.header("x-version")),
        ("Hit", "A")
    );

    // --- the file changes: version B serves, the cached object is still a hit ---
    replace_file(&dir.path().join("stamp.wat"), &stamp_wat("B"))?;
    let swapped = node.get_until("/", |r| r.header("x-version") == "B")?;
    assert_eq!(
        swapped.header("x-cache"),
        "Hit",
        "the cache was kept: {swapped:?}"
    );
    assert!(swapped.body.contains("<h1>hi</h1>"));

    // --- a broken module is reported, B keeps serving ---
    replace_file(&dir.path().join("stamp.wat"), "(module (func $oops")?;
    let report = node.wait_for_log(CHANGE_DEADLINE, |l| l.contains("config not reloaded"))?;
    assert!(report.contains("stamp"), "names the function: {report}");
    assert!(report.contains("does not compile"), "says why: {report}");
    for _ in 0..3 {
        let still = node.get("/")?;
        assert_eq!(
            (still.status, still.header("x-version")),
            (200, "B"),
            "{still:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // --- fixed again: the watcher is still at work ---
    replace_file(&dir.path().join("stamp.wat"), &stamp_wat("C"))?;
    node.get_until("/", |r| r.header("x-version") == "C")?;
    assert!(node.is_running());
    Ok(())
}

/// A function crate with no dependencies: `viewer-response` sets `x-version: VERSION`.
fn crate_source(version: &str) -> String {
    format!(
        r#"#[link(wasm_import_module = "edge_v1")]
extern "C" {{
    fn response_set_header(name: *const u8, name_len: usize, value: *const u8, value_len: usize) -> i32;
}}

#[export_name = "viewer-response"]
pub extern "C" fn viewer_response() -> i32 {{
    let (name, value) = ("x-version", "{version}");
    unsafe {{ response_set_header(name.as_ptr(), name.len(), value.as_ptr(), value.len()) }};
    0
}}
"#
    )
}

/// Writes the dependency-free `stamp-crate` (version `one`) under `dir`.
fn stamp_crate(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let krate = dir.join("stamp-crate");
    std::fs::create_dir_all(krate.join("src"))?;
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"stamp-crate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [lib]\ncrate-type = [\"cdylib\"]\n[workspace]\n\
         [profile.wasm]\ninherits = \"release\"\npanic = \"abort\"\n",
    )?;
    std::fs::write(krate.join("src/lib.rs"), crate_source("one"))?;
    Ok(krate)
}

#[test]
fn dev_rebuilds_a_changed_function_crate() -> anyhow::Result<()> {
    let dir = site_dir()?;
    let krate = stamp_crate(dir.path())?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [functions.stamp]\nmodule = \"stamp-crate/target/wasm32-wasip1/wasm/stamp_crate.wasm\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    // `--crate`: the module does not exist until the first build.
    let mut node = Node::start(
        dir.path(),
        &["dev", "--config", "edge.toml", "--crate", "stamp-crate"],
    )?;
    let first = node.get("/")?;
    assert_eq!(
        (first.status, first.header("x-version")),
        (200, "one"),
        "{first:?}"
    );

    replace_file(&krate.join("src/lib.rs"), &crate_source("two"))?;
    let rebuilt = node.get_until("/", |r| r.header("x-version") == "two")?;
    assert_eq!(
        rebuilt.header("x-cache"),
        "Hit",
        "the cache was kept: {rebuilt:?}"
    );

    replace_file(&krate.join("src/lib.rs"), "pub fn broken( {")?;
    node.wait_for_log(CHANGE_DEADLINE, |l| l.contains("build failed"))?;
    let still = node.get("/")?;
    assert_eq!(still.header("x-version"), "two", "{still:?}");
    Ok(())
}

/// Writes `bytes` over `path` by rename, as [`replace_file`] does for text.
fn replace_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[test]
fn dev_picks_up_a_changed_wasm_file() -> anyhow::Result<()> {
    let dir = site_dir()?;
    std::fs::write(
        dir.path().join("stamp.wasm"),
        wat::parse_str(stamp_wat("A"))?,
    )?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [functions.stamp]\nmodule = \"stamp.wasm\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    let node = Node::start(dir.path(), &["dev", "--config", "edge.toml"])?;
    assert_eq!(node.get("/")?.header("x-version"), "A");
    replace_bytes(
        &dir.path().join("stamp.wasm"),
        &wat::parse_str(stamp_wat("B"))?,
    )?;
    let swapped = node.get_until("/", |r| r.header("x-version") == "B")?;
    assert_eq!(
        swapped.header("x-cache"),
        "Hit",
        "the cache was kept: {swapped:?}"
    );
    Ok(())
}

#[test]
fn dev_builds_a_new_crate_and_serves_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let created = edge(dir.path(), &["new", "greeter"], &[])?;
    ensure!(created.status.success(), "edge new: {created:?}");
    let krate = dir.path().join("greeter");
    // The scaffold's own edge.toml, on a free port and with compiled modules kept here.
    let config = std::fs::read_to_string(krate.join("edge.toml"))?;
    let test_config = config.replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:0\"\ncompile_cache = \"compiled\"",
    );
    ensure!(
        test_config != config,
        "edge.toml listens elsewhere: {config}"
    );
    std::fs::write(krate.join("edge.toml"), test_config)?;
    assert!(!krate.join("target").exists(), "never built");

    // --- plain `edge dev` in the crate: the module path leads to the crate, which is built ---
    let mut node = Node::start(&krate, &["dev"])?;
    let hello = node.get("/hello")?;
    assert_eq!(
        (hello.status, hello.body.as_str()),
        (200, "hello from greeter\n"),
        "{hello:?}"
    );
    assert_eq!(hello.header("x-cache"), "FunctionGeneratedResponse");
    let page = node.get("/")?;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("Served by the edge"), "{page:?}");

    // --- an edit is rebuilt and served ---
    let lib = krate.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib)?;
    replace_file(&lib, &source.replace("hello from greeter", "hello again"))?;
    node.get_until("/hello", |r| r.body == "hello again\n")?;
    assert!(node.is_running());
    Ok(())
}

#[test]
fn dev_keeps_an_uploaded_live_version() -> anyhow::Result<()> {
    let dir = site_dir()?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[admin]\nlisten = \"127.0.0.1:0\"\n\
             [origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [functions.stamp]\nmodule = \"stamp.wat\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    std::fs::write(dir.path().join("uploaded.wat"), stamp_wat("uploaded"))?;
    let mut node = Node::start(dir.path(), &["dev", "--config", "edge.toml"])?;
    let url = format!(
        "http://{}",
        node.admin.context("the admin address is logged")?
    );
    let admin = |args: &[&str]| edge(dir.path(), &[args, &["--admin", &url]].concat(), &[]);
    json_of(&admin(&["upload", "stamp", "uploaded.wat"])?)?;
    json_of(&admin(&["publish", "stamp"])?)?;
    assert_eq!(node.get("/")?.header("x-version"), "uploaded");

    // --- the config's module changes and is reloaded; the uploaded LIVE version stays ---
    replace_file(&dir.path().join("stamp.wat"), &stamp_wat("B"))?;
    node.wait_for_log(CHANGE_DEADLINE, |l| l.contains("config reloaded"))?;
    let after = node.get("/")?;
    assert_eq!(after.header("x-version"), "uploaded", "{after:?}");
    Ok(())
}

#[test]
fn dev_points_out_a_crate_whose_output_no_function_loads() -> anyhow::Result<()> {
    let dir = site_dir()?;
    stamp_crate(dir.path())?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [functions.stamp]\nmodule = \"stamp.wat\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    // Built with `--release` where cargo puts it; the path comes from cargo's own messages.
    let node = Node::start(
        dir.path(),
        &["dev", "--config", "edge.toml", "--crate", "stamp-crate"],
    )?;
    let built = dir
        .path()
        .join("stamp-crate/target/wasm32-wasip1/release/stamp_crate.wasm");
    assert!(built.is_file(), "no module at {}", built.display());
    let warning = node
        .passed
        .iter()
        .find(|l| l.contains("no [functions.*] module"))
        .with_context(|| format!("no warning in {:#?}", node.passed))?;
    assert!(
        warning.contains("stamp_crate.wasm"),
        "names the output: {warning}"
    );
    assert_eq!(node.get("/")?.header("x-version"), "A");
    Ok(())
}
