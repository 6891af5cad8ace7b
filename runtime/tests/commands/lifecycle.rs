//! Function stages across process deaths, and the CLI finding a local node by itself: a node
//! on port 0 writes its addresses to its data directory, `--data-dir`, `--config` and
//! `EDGE_ADMIN` lead the commands to it; the LIVE history (the config's module included)
//! survives kill -9; temp files a crash leaves are gone at the next start; an upload that
//! shadows the config's module is reported, and `publish --from-config` is the way back.

use std::path::Path;

use anyhow::Context as _;

use crate::harness::{edge, json_of, site_dir, stamp_wat, Node, DEADLINE, SERVER};

const TOKEN: &str = "test-token-0123456789";

/// `stamp` (the `A` module) on `*`, a `flags` store, the admin API on port 0 with `data/`.
fn write_config(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("flags.json"), r#"{"mode": "calm"}"#)?;
    std::fs::write(
        dir.join("edge.toml"),
        format!(
            "{SERVER}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\ndata_dir = \"data\"\n\
             [kv.flags]\nfile = \"flags.json\"\n\
             [origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [functions.stamp]\nmodule = \"stamp.wat\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    Ok(())
}

/// The admin address the node wrote to `data/addresses.json`.
fn written_admin(dir: &Path) -> anyhow::Result<String> {
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("data/addresses.json"))?)?;
    file["admin"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no admin address in {file}"))
}

#[test]
fn live_history_survives_kill_9_and_the_cli_finds_the_node() -> anyhow::Result<()> {
    let dir = site_dir()?;
    let cwd = dir.path();
    write_config(cwd)?;
    std::fs::write(cwd.join("uploaded.wat"), stamp_wat("uploaded"))?;
    let node = Node::start(cwd, &["serve", "--config", "edge.toml"])?;
    let admin = node.admin.context("admin address logged")?;
    assert_eq!(written_admin(cwd)?, admin.to_string(), "addresses.json");

    // --- through --config: the address file in its data_dir, and its token ---
    let by_config = |args: &[&str]| edge(cwd, &[args, &["--config", "edge.toml"]].concat(), &[]);
    json_of(&by_config(&["upload", "stamp", "uploaded.wat"])?)?;
    let published = json_of(&by_config(&["publish", "stamp"])?)?;
    assert_eq!(published["live"]["source"], "upload", "{published}");
    assert_eq!(node.get("/")?.header("x-version"), "uploaded");

    // --- kill -9, with a temp file a crash mid-write would leave ---
    let stale = cwd.join("data/functions/stamp/0123abcd.tmp-99999");
    std::fs::write(&stale, vec![0u8; 1 << 20])?;
    drop(node); // SIGKILL
    assert!(
        cwd.join("data/addresses.json").exists(),
        "a killed node cannot clean up"
    );
    let mut node = Node::start(cwd, &["serve", "--config", "edge.toml"])?;
    let admin = node.admin.context("admin address logged")?;
    assert_eq!(
        written_admin(cwd)?,
        admin.to_string(),
        "the new node's address"
    );
    assert!(!stale.exists(), "the stale temp file was removed at start");
    assert_eq!(node.get("/")?.header("x-version"), "uploaded");

    // --- through --data-dir: describe shows the config's module before the upload ---
    let token = [("EDGE_ADMIN_TOKEN", TOKEN)];
    let described = json_of(&edge(
        cwd,
        &["describe", "stamp", "--data-dir", "data"],
        &token,
    )?)?;
    assert_eq!(described["live"]["source"], "upload", "{described}");
    assert!(
        described["previous"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("config")),
        "the config's version survived kill -9: {described}"
    );
    assert_eq!(described["shadowed"], true, "{described}");

    // --- through EDGE_ADMIN: rollback reaches the config's module ---
    let url = format!("http://{admin}");
    let env = [("EDGE_ADMIN_TOKEN", TOKEN), ("EDGE_ADMIN", url.as_str())];
    json_of(&edge(cwd, &["rollback", "stamp"], &env)?)?;
    assert_eq!(node.get("/")?.header("x-version"), "A");

    // --- a clean stop removes the address file ---
    node.signal("TERM")?;
    node.wait_for_exit()?;
    assert!(!cwd.join("data/addresses.json").exists());
    let output = edge(cwd, &["list", "--data-dir", "data"], &token)?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is a node with this data_dir running?"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn an_upload_shadowing_the_config_module_is_reported_and_can_be_undone() -> anyhow::Result<()> {
    let dir = site_dir()?;
    let cwd = dir.path();
    write_config(cwd)?;
    std::fs::write(cwd.join("uploaded.wat"), stamp_wat("uploaded"))?;
    let mut node = Node::start(cwd, &["serve", "--config", "edge.toml"])?;
    let cli = |args: &[&str]| edge(cwd, &[args, &["--config", "edge.toml"]].concat(), &[]);
    json_of(&cli(&["upload", "stamp", "uploaded.wat"])?)?;
    json_of(&cli(&["publish", "stamp"])?)?;

    // --- the module file changes; a reload keeps the upload and says so ---
    std::fs::write(cwd.join("stamp.wat"), stamp_wat("B"))?;
    node.signal("HUP")?;
    let warning = node.wait_for_log(DEADLINE, |l| l.contains("keeps serving"))?;
    assert!(
        warning.contains("WARN") && warning.contains("stamp") && warning.contains("--from-config"),
        "{warning}"
    );
    assert_eq!(node.get("/")?.header("x-version"), "uploaded");
    let listed = cli(&["list"])?;
    let list = json_of(&listed)?;
    assert_eq!(list[0]["shadowed"], true, "{list}");
    assert_eq!(list[0]["live"]["source"], "upload", "{list}");
    assert!(
        String::from_utf8_lossy(&listed.stderr).contains("edge publish stamp --from-config"),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    // --- the way back: the file's current module is LIVE, the upload one rollback away ---
    let back = json_of(&cli(&["publish", "stamp", "--from-config"])?)?;
    assert_eq!(back["shadowed"], false, "{back}");
    assert_eq!(node.get("/")?.header("x-version"), "B");
    assert_eq!(back["previous"]["source"], "upload", "{back}");
    Ok(())
}

#[test]
fn kv_describe_and_delete_commands() -> anyhow::Result<()> {
    let dir = site_dir()?;
    let cwd = dir.path();
    write_config(cwd)?;
    std::fs::write(cwd.join("spare.wat"), stamp_wat("spare"))?;
    let _node = Node::start(cwd, &["serve", "--config", "edge.toml"])?;
    let cli = |args: &[&str]| edge(cwd, &[args, &["--config", "edge.toml"]].concat(), &[]);

    // --- kv: list the stores, put, get, list a store, delete ---
    assert_eq!(
        json_of(&cli(&["kv", "list"])?)?,
        serde_json::json!({"flags": 1})
    );
    json_of(&cli(&["kv", "put", "flags", "/a path?", "on"])?)?;
    let got = json_of(&cli(&["kv", "get", "flags", "/a path?"])?)?;
    assert_eq!(got, serde_json::json!({"key": "/a path?", "value": "on"}));
    assert_eq!(
        json_of(&cli(&["kv", "list", "flags"])?)?,
        serde_json::json!({"/a path?": "on", "mode": "calm"})
    );
    json_of(&cli(&["kv", "delete", "flags", "mode"])?)?;
    let missing = cli(&["kv", "get", "flags", "mode"])?;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    // --- describe and delete: a function in use stays, a spare one goes ---
    json_of(&cli(&["upload", "spare", "spare.wat"])?)?;
    let spare = json_of(&cli(&["describe", "spare"])?)?;
    assert_eq!(spare["development"]["source"], "upload", "{spare}");
    let refused = cli(&["delete", "stamp"])?;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("409"));
    json_of(&cli(&["delete", "spare"])?)?;
    let gone = cli(&["describe", "spare"])?;
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404"));
    Ok(())
}

#[test]
fn an_oversized_upload_shows_the_413() -> anyhow::Result<()> {
    let dir = site_dir()?;
    let cwd = dir.path();
    write_config(cwd)?;
    let _node = Node::start(cwd, &["serve", "--config", "edge.toml"])?;
    // Past what the node drains before it answers (64 MiB): sent whole, this body met a closed
    // connection and the command printed "Broken pipe".
    std::fs::write(cwd.join("huge.wasm"), vec![0u8; 80 << 20])?;
    let output = edge(
        cwd,
        &["upload", "stamp", "huge.wasm", "--config", "edge.toml"],
        &[],
    )?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("413 Payload Too Large: body over the limit of 8388608 bytes"),
        "{stderr}"
    );
    // An upload within the limit still goes through the same path.
    std::fs::write(cwd.join("ok.wat"), stamp_wat("ok"))?;
    let uploaded = json_of(&edge(
        cwd,
        &["upload", "stamp", "ok.wat", "--config", "edge.toml"],
        &[],
    )?)?;
    assert_eq!(uploaded["development"]["source"], "upload", "{uploaded}");
    Ok(())
}
