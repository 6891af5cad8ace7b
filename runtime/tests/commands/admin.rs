//! The admin commands against a node started with `[admin] listen`, `token` and `data_dir`:
//! upload a WAT module over a configured function, test it, publish it (the node serves it),
//! list, roll back (the node serves the config's module again), invalidate; a wrong or missing
//! token fails with a non-zero exit.

use std::path::Path;

use anyhow::Context as _;

use crate::harness::{edge, json_of, site_dir, stamp_wat, Node, SERVER};

const TOKEN: &str = "test-token-0123456789";

#[test]
fn admin_commands_drive_a_node() -> anyhow::Result<()> {
    let dir = site_dir()?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\ndata_dir = \"data\"\n\
             [origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [functions.stamp]\nmodule = \"stamp.wat\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_response = \"stamp\" }}\n"
        ),
    )?;
    std::fs::write(dir.path().join("uploaded.wat"), stamp_wat("uploaded"))?;
    std::fs::write(dir.path().join("request.json"), r#"{"uri": "/"}"#)?;
    std::fs::write(dir.path().join("response.json"), r#"{"status": 200}"#)?;
    let node = Node::start(dir.path(), &["serve", "--config", "edge.toml"])?;
    let url = format!(
        "http://{}",
        node.admin.context("the admin address is logged")?
    );
    let cwd = dir.path();
    // The token as an option here, from the environment below.
    let admin = |args: &[&str]| {
        edge(
            cwd,
            &[args, &["--admin", &url, "--token", TOKEN]].concat(),
            &[],
        )
    };
    assert_eq!(node.get("/")?.header("x-version"), "A");

    // --- upload: DEVELOPMENT, not serving ---
    let uploaded = json_of(&admin(&["upload", "stamp", "uploaded.wat"])?)?;
    assert_eq!(uploaded["development"]["source"], "upload", "{uploaded}");
    assert!(uploaded["live"]["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("config")));
    assert_eq!(node.get("/")?.header("x-version"), "A");

    // --- test: the DEVELOPMENT version runs on the node ---
    let test = [
        "test",
        "stamp",
        "--event",
        "viewer-response",
        "--request",
        "request.json",
        "--response",
        "response.json",
        "--admin",
        &url,
    ];
    let result = json_of(&edge(cwd, &test, &[("EDGE_ADMIN_TOKEN", TOKEN)])?)?;
    assert_eq!(result["action"], "continue", "{result}");
    assert_eq!(result["response"]["headers"]["x-version"], "uploaded");

    // --- publish: the node serves it ---
    let published = json_of(&admin(&["publish", "stamp"])?)?;
    assert_eq!(published["live"]["source"], "upload", "{published}");
    assert_eq!(node.get("/")?.header("x-version"), "uploaded");
    assert_stored(cwd, &published["live"]["hash"])?;

    // --- list ---
    let list = json_of(&admin(&["list"])?)?;
    let stamp = list
        .as_array()
        .and_then(|all| all.iter().find(|f| f["name"] == "stamp"))
        .with_context(|| format!("stamp is listed: {list}"))?;
    assert_eq!(stamp["live"]["source"], "upload");
    assert!(stamp["previous"]["source"]
        .as_str()
        .is_some_and(|s| s.starts_with("config")));
    assert_eq!(stamp["used_by"][0], "*");

    // --- rollback: the config's module serves again; testing LIVE shows it too ---
    json_of(&admin(&["rollback", "stamp"])?)?;
    assert_eq!(node.get("/")?.header("x-version"), "A");
    let live = json_of(&edge(
        cwd,
        &[&test[..], &["--stage", "live"]].concat(),
        &[("EDGE_ADMIN_TOKEN", TOKEN)],
    )?)?;
    assert_eq!(live["response"]["headers"]["x-version"], "A", "{live}");

    // --- invalidate: a cached object becomes a miss ---
    node.get("/index.html")?;
    assert_eq!(node.get("/index.html")?.header("x-cache"), "Hit");
    let invalidation = json_of(&admin(&["invalidate", "/index.html", "/nothing/*"])?)?;
    assert_eq!(invalidation["status"], "Completed", "{invalidation}");
    assert_eq!(invalidation["objects_removed"], 1);
    assert_eq!(node.get("/index.html")?.header("x-cache"), "Miss");

    // --- errors: a wrong or missing token, an unknown function ---
    for token in [&["--token", "wrong-token-0123456789"][..], &[]] {
        let output = edge(cwd, &[&["list", "--admin", &url][..], token].concat(), &[])?;
        assert!(!output.status.success(), "refused without the right token");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("401"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    let output = admin(&["publish", "nope"])?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("nope"),
        "{stderr}"
    );
    Ok(())
}

/// The published upload persisted in the data directory as the LIVE stage.
fn assert_stored(dir: &Path, hash: &serde_json::Value) -> anyhow::Result<()> {
    let stages: serde_json::Value = serde_json::from_slice(&std::fs::read(
        dir.join("data/functions/stamp/stages.json"),
    )?)?;
    assert!(hash.is_string(), "{hash}");
    assert_eq!(&stages["live"]["hash"], hash, "{stages}");
    Ok(())
}
