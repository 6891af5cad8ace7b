//! SIGHUP: `edge serve` reloads its config file; a valid one changes what it serves (and keeps
//! the cache), an invalid one is reported with its file, line and key and the node keeps the
//! config it has.

use crate::harness::{Node, CHANGE_DEADLINE, SERVER};

/// A config serving the directory `root`; every query is part of the cache key, so each
/// `?n=..` is a fresh miss.
fn config(root: &str, origin_ref: &str) -> String {
    format!(
        "{SERVER}[origins.bucket]\ntype = \"static\"\nroot = \"{root}\"\n\
         [[behaviors]]\npath = \"*\"\norigin = \"{origin_ref}\"\ncache_key = {{ query = \"all\" }}\n"
    )
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_the_old_one_on_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (root, text) in [("site-a", "A"), ("site-b", "B")] {
        std::fs::create_dir(dir.path().join(root))?;
        std::fs::write(dir.path().join(root).join("v.txt"), text)?;
    }
    let file = dir.path().join("edge.toml");
    std::fs::write(&file, config("site-a", "bucket"))?;
    let mut node = Node::start(dir.path(), &["serve", "--config", "edge.toml"])?;
    assert_eq!(node.get("/v.txt?n=0")?.body, "A");

    // --- a valid config: the new root serves, the cached object stays ---
    std::fs::write(&file, config("site-b", "bucket"))?;
    node.signal("HUP")?;
    node.wait_for_log(CHANGE_DEADLINE, |l| l.contains("config reloaded"))?;
    let fresh = node.get("/v.txt?n=1")?;
    assert_eq!(
        (fresh.body.as_str(), fresh.header("x-cache")),
        ("B", "Miss")
    );
    let cached = node.get("/v.txt?n=0")?;
    assert_eq!(
        (cached.body.as_str(), cached.header("x-cache")),
        ("A", "Hit")
    );

    // --- an invalid config: reported, and site-b keeps serving ---
    let invalid = config("site-a", "nope");
    std::fs::write(&file, &invalid)?;
    node.signal("HUP")?;
    let report = node.wait_for_log(CHANGE_DEADLINE, |l| l.contains("config not reloaded"))?;
    let line = invalid
        .lines()
        .position(|l| l.contains("\"nope\""))
        .map_or(0, |i| i + 1);
    assert!(
        report.contains(&format!("edge.toml:{line}: `behaviors[0].origin`")),
        "names file, line and key: {report}"
    );
    assert!(node.is_running());
    assert_eq!(node.get("/v.txt?n=2")?.body, "B");
    Ok(())
}

#[test]
fn sighup_loads_a_changed_function_module_and_keeps_the_old_one_if_broken() -> anyhow::Result<()> {
    let dir = crate::harness::site_dir()?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[functions.stamp]\nmodule = \"stamp.wat\"\n\
             [origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\n\
             functions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    let mut node = Node::start(dir.path(), &["serve", "--config", "edge.toml"])?;
    let first = node.get("/index.html")?;
    assert_eq!(
        (first.header("x-version"), first.header("x-cache")),
        ("A", "Miss")
    );

    // A changed module is not picked up by itself: `serve` loads it on SIGHUP.
    let stamp = dir.path().join("stamp.wat");
    crate::harness::replace_file(&stamp, &crate::harness::stamp_wat("B"))?;
    assert_eq!(node.get("/index.html")?.header("x-version"), "A");
    node.signal("HUP")?;
    node.wait_for_log(CHANGE_DEADLINE, |l| l.contains("config reloaded"))?;
    let swapped = node.get("/index.html")?;
    assert_eq!(
        (swapped.header("x-version"), swapped.header("x-cache")),
        ("B", "Hit"),
        "the new module runs, on the same cache"
    );

    // A module that does not compile: reported, and B keeps running.
    crate::harness::replace_file(&stamp, "(module (func $broken")?;
    node.signal("HUP")?;
    node.wait_for_log(CHANGE_DEADLINE, |l| l.contains("config not reloaded"))?;
    assert!(node.is_running());
    assert_eq!(node.get("/index.html")?.header("x-version"), "B");
    Ok(())
}
