//! `edge dev`: a changed module is picked up without a restart and without emptying the cache;
//! a broken one is reported and the previous version keeps serving.

use std::time::Duration;

use crate::harness::{replace_file, site_dir, stamp_wat, Node, CHANGE_DEADLINE, SERVER};

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

#[test]
fn dev_rebuilds_a_changed_function_crate() -> anyhow::Result<()> {
    let dir = site_dir()?;
    let krate = dir.path().join("stamp-crate");
    std::fs::create_dir_all(krate.join("src"))?;
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"stamp-crate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\
         [lib]\ncrate-type = [\"cdylib\"]\n[workspace]\n\
         [profile.wasm]\ninherits = \"release\"\npanic = \"abort\"\n",
    )?;
    std::fs::write(krate.join("src/lib.rs"), crate_source("one"))?;
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
