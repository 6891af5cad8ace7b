//! `edge demo`, the README's first command, as a real process on a free port: everything the
//! README says the demo shows.

use std::time::{Duration, Instant};

use crate::harness::{get_with, Node};

/// `edge demo` builds its two functions with cargo before it listens: allow a cold build.
const BUILD_DEADLINE: Duration = Duration::from_secs(600);

/// The demo app's `/api/time` lifetime (`public, max-age=5`).
const TIME_TTL: Duration = Duration::from_secs(5);

#[test]
fn demo_shows_what_the_readme_says() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("xdg-cache");
    let node = Node::start_with(
        dir.path(),
        &["demo", "--listen", "127.0.0.1:0"],
        &[("XDG_CACHE_HOME", cache.to_str().expect("UTF-8 temp path"))],
        BUILD_DEADLINE,
    )?;
    let shell = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/site/index.html"),
    )?;

    // `/` from demo/site: a Miss, then a Hit whose Age is no older than the object.
    let stored = Instant::now();
    let first = node.get("/")?;
    assert_eq!(
        (first.status, first.header("x-cache"), first.body.as_str()),
        (200, "Miss", shell.as_str())
    );
    let hit = node.get("/")?;
    assert_eq!((hit.status, hit.header("x-cache")), (200, "Hit"));
    let age: u64 = hit.header("age").parse()?;
    assert!(age <= stored.elapsed().as_secs(), "Age {age}");
    // `headers` adds the security headers to every page, hits included.
    assert_eq!(hit.header("x-content-type-options"), "nosniff");

    // `/api/hello`: JSON from app-1 and app-2 in turn, never cached.
    let mut instances = Vec::new();
    for _ in 0..2 {
        let hello = node.get("/api/hello")?;
        assert_eq!((hello.status, hello.header("x-cache")), (200, "Miss"));
        let json: serde_json::Value = serde_json::from_str(json_line(&hello.body)?)?;
        assert_eq!(json["message"], "hello from the demo app");
        instances.push(json["instance"].as_str().unwrap_or("").to_owned());
    }
    instances.sort();
    assert_eq!(
        instances,
        ["app-1", "app-2"],
        "round-robin over two instances"
    );

    // `/api/time` is cacheable for 5 s: the second request is a Hit unless 5 s have passed.
    let fetched = Instant::now();
    let time = node.get("/api/time")?;
    assert_eq!((time.status, time.header("x-cache")), (200, "Miss"));
    let again = node.get("/api/time")?;
    if again.header("x-cache") != "Hit" {
        assert!(fetched.elapsed() >= TIME_TTL, "{again:?}");
    }

    // `/api/echo` shows what the origin received, proxy headers included.
    let echo = node.get("/api/echo")?;
    let seen = echo.body.to_ascii_lowercase();
    assert!(
        seen.contains("via: 1.1 edge") && seen.contains("x-forwarded-for: 127.0.0.1"),
        "{}",
        echo.body
    );

    // The router: a session cookie goes to `app`; client routes load the single-page-app shell.
    let signed_in = get_with(node.addr, "/", &[("cookie", "session=1")])?;
    assert_eq!(signed_in.status, 200);
    assert!(
        signed_in.body.contains("home for a signed-in viewer"),
        "{}",
        signed_in.body
    );
    let settings = node.get("/app/settings")?;
    assert_eq!(
        (settings.status, settings.body.as_str()),
        (200, shell.as_str())
    );
    let anonymous = node.get("/")?;
    assert_eq!(
        anonymous.body, shell,
        "the signed-in page never reaches an anonymous viewer"
    );

    // `/nope`: the friendly 404 page from `headers`.
    let nope = node.get("/nope")?;
    assert_eq!(nope.status, 404);
    assert!(
        nope.body.contains("We could not find that page"),
        "{}",
        nope.body
    );
    Ok(())
}

/// The JSON object line of a body (the body may be chunked on the wire).
fn json_line(body: &str) -> anyhow::Result<&str> {
    body.lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("no JSON in {body:?}"))
}
