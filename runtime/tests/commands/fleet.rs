//! `edge invalidate` against several nodes: `--admin` repeated and `--fleet FILE` print one line
//! per node (its address and the accepted id, or the error); both nodes' caches are purged; an
//! unreachable node gets an error line and a non-zero exit while the others still invalidate.

use anyhow::Context as _;

use crate::harness::{edge, site_dir, Node, SERVER};

const TOKEN: &str = "fleet-token-0123456789";

/// Starts `edge serve` in its own directory with a bucket origin and a token-protected admin
/// API; answers the node, its admin URL and the directory (kept alive with the node).
fn start_node() -> anyhow::Result<(Node, String, tempfile::TempDir)> {
    let dir = site_dir()?;
    std::fs::write(
        dir.path().join("edge.toml"),
        format!(
            "{SERVER}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\
             [origins.bucket]\ntype = \"static\"\nroot = \"site\"\n\
             [[behaviors]]\npath = \"*\"\norigin = \"bucket\"\n"
        ),
    )?;
    let node = Node::start(dir.path(), &["serve", "--config", "edge.toml"])?;
    let url = format!(
        "http://{}",
        node.admin.context("the admin address is logged")?
    );
    Ok((node, url, dir))
}

/// Caches `/index.html` on `node` and checks it is a hit.
fn cached(node: &Node) -> anyhow::Result<()> {
    node.get("/index.html")?;
    let again = node.get("/index.html")?;
    anyhow::ensure!(again.header("x-cache") == "Hit", "not cached: {again:?}");
    Ok(())
}

#[test]
fn invalidate_reaches_every_node_and_names_each_result() -> anyhow::Result<()> {
    let (one, one_url, dir) = start_node()?;
    let (two, two_url, _two_dir) = start_node()?;
    let cwd = dir.path();

    // --- two --admin: one line per node, both purged ---
    cached(&one)?;
    cached(&two)?;
    let output = edge(
        cwd,
        &[
            "invalidate",
            "/index.html",
            "--admin",
            &one_url,
            "--admin",
            &two_url,
        ],
        &[("EDGE_ADMIN_TOKEN", TOKEN)],
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (line, url) in lines.iter().zip([&one_url, &two_url]) {
        assert!(
            line.starts_with(&format!("{url} accepted ")) && line.ends_with("(1 object removed)"),
            "{line}"
        );
    }
    assert_eq!(one.get("/index.html")?.header("x-cache"), "Miss");
    assert_eq!(two.get("/index.html")?.header("x-cache"), "Miss");

    // --- a fleet file with an unreachable node: its line says so, the exit code is 1 ---
    cached(&one)?;
    cached(&two)?;
    // Port 1 on loopback: nothing listens there and an unprivileged test cannot bind it.
    let dead = "http://127.0.0.1:1";
    std::fs::write(
        cwd.join("fleet.txt"),
        format!("# edges\n{one_url}\n\n{dead}   # gone\n{two_url}\n"),
    )?;
    let output = edge(
        cwd,
        &[
            "invalidate",
            "/index.html",
            "--fleet",
            "fleet.txt",
            "--token",
            TOKEN,
        ],
        &[],
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "one node failed: {stdout}");
    assert!(stderr.contains("1 of 3 nodes"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{one_url} accepted ")),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!("{dead} error: ")) && lines[1].contains("cannot reach"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!("{two_url} accepted ")),
        "{stdout}"
    );
    assert_eq!(one.get("/index.html")?.header("x-cache"), "Miss");
    assert_eq!(two.get("/index.html")?.header("x-cache"), "Miss");

    // --- a wrong token is an error line per node, not a success ---
    let output = edge(
        cwd,
        &[
            "invalidate",
            "/index.html",
            "--admin",
            &one_url,
            "--admin",
            &two_url,
            "--token",
            "wrong-token-0123456789",
        ],
        &[],
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("error: ") && l.contains("401"))
            .count(),
        2,
        "{stdout}"
    );

    // --- other commands talk to one node ---
    let output = edge(
        cwd,
        &[
            "list", "--admin", &one_url, "--admin", &two_url, "--token", TOKEN,
        ],
        &[],
    )?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("only `edge invalidate`"));
    Ok(())
}
