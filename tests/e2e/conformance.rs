//! HTTP caching conformance (issue 13): the behaviours the public suite http-tests/cache-tests
//! checks, each pinned here with real origins so CI catches a regression without the suite,
//! and the suite's own configuration (`bench/cache-tests.sh`) kept equal to the README's.

use std::path::PathBuf;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;

use crate::harness::{reply, Origin, TestNode};

/// The text between `begin` and `end` in `text`, both markers required and in order.
fn between<'a>(text: &'a str, begin: &str, end: &str, file: &str) -> Result<&'a str> {
    let start = text
        .find(begin)
        .with_context(|| format!("{file} has no {begin:?}"))?
        + begin.len();
    let len = text[start..]
        .find(end)
        .with_context(|| format!("{file} has no {end:?} after {begin:?}"))?;
    Ok(&text[start..start + len])
}

fn repo_file(relative: &str) -> Result<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

#[test]
fn cache_tests_config_in_script_is_the_one_in_readme() -> Result<()> {
    let script = repo_file("bench/cache-tests.sh")?;
    let readme = repo_file("README.md")?;
    let in_script = between(
        &script,
        "# BEGIN cache-tests config\nCONFIG='",
        "'\n# END cache-tests config",
        "bench/cache-tests.sh",
    )?;
    let in_readme = between(
        &readme,
        "<!-- BEGIN cache-tests config -->\n```toml\n",
        "```\n<!-- END cache-tests config -->",
        "README.md",
    )?;
    if in_script.trim().is_empty() {
        bail!("the script's config is empty");
    }
    assert_eq!(
        in_script, in_readme,
        "bench/cache-tests.sh and README.md document different suite configs"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Behaviours the suite checks, with real origins.
// ---------------------------------------------------------------------------------------------

/// A node with one behavior `*` in front of `origin` with this `cache` table.
async fn node_for(origin: &Origin, cache: &str) -> Result<TestNode> {
    TestNode::in_front_of(origin, &format!("cache = {cache}")).await
}

/// The suite's setting: nothing is cached without an explicit lifetime.
const NO_DEFAULT: &str = r#"{ default_ttl = "0s" }"#;

/// Two GETs of `path`: the second's `X-Cache` and how many requests the origin saw in all.
async fn twice(node: &TestNode, origin: &Origin, path: &str) -> Result<(String, usize)> {
    node.get(path).await?;
    let second = node.get(path).await?;
    Ok((second.x_cache().to_owned(), origin.count()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_age_that_is_not_one_integer_is_never_served_fresh() -> Result<()> {
    for age in ["7200, 0", "abc", "-7200", "7200;foo=bar"] {
        let origin = Origin::start(move |_| async move {
            reply(200, &[("cache-control", "max-age=3600"), ("age", age)], "x")
        })
        .await?;
        let node = node_for(&origin, NO_DEFAULT).await?;
        assert_eq!(
            twice(&node, &origin, "/a").await?,
            ("Miss".into(), 2),
            "Age: {age}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_and_errors_with_explicit_freshness_are_hits() -> Result<()> {
    for status in [302u16, 307, 400, 503] {
        let origin = Origin::start(move |_| async move {
            reply(
                status,
                &[("cache-control", "max-age=60"), ("location", "/b")],
                "x",
            )
        })
        .await?;
        let node = node_for(&origin, NO_DEFAULT).await?;
        let first = node.get("/a").await?;
        let second = node.get("/a").await?;
        assert_eq!(
            (
                first.status.as_u16(),
                second.status.as_u16(),
                second.x_cache(),
                origin.count()
            ),
            (status, status, "Hit", 1),
            "{status}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn expires_in_asctime_with_a_wrong_day_name_gives_freshness() -> Result<()> {
    // 1994-11-06 was a Sunday; the lifetime is Expires - Date, one hour, whatever today is.
    let origin = Origin::fixed(
        "x",
        &[
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ("expires", "Mon Nov  6 09:49:37 1994"),
        ],
    )
    .await?;
    let node = node_for(&origin, NO_DEFAULT).await?;
    assert_eq!(twice(&node, &origin, "/a").await?, ("Hit".into(), 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn cdn_cache_control_overrides_cache_control_and_a_behavior_names_its_own() -> Result<()> {
    let origin = Origin::start(|received| async move {
        if received.uri.starts_with("/own") {
            reply(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "max-age=60"),
                    ("edge-cache-control", "no-store"),
                ],
                "own",
            )
        } else {
            reply(
                200,
                &[
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=60"),
                ],
                "cdn",
            )
        }
    })
    .await?;
    let node = TestNode::start(&format!(
        r#"
[origins.app]
type = "http"
targets = ["{}"]

[[behaviors]]
path = "/own/*"
origin = "app"
cache = {{ default_ttl = "0s", targeted_cache_control = ["Edge-Cache-Control", "CDN-Cache-Control"] }}

[[behaviors]]
path = "*"
origin = "app"
cache = {{ default_ttl = "0s" }}
"#,
        origin.url()
    ))
    .await?;
    node.get("/a").await?;
    let hit = node.get("/a").await?;
    assert_eq!(
        hit.x_cache(),
        "Hit",
        "CDN-Cache-Control: max-age beats no-store"
    );
    assert_eq!(
        hit.header("cdn-cache-control"),
        Some("max-age=60"),
        "the targeted field is forwarded"
    );
    node.get("/own/a").await?;
    assert_eq!(
        node.get("/own/a").await?.x_cache(),
        "Miss",
        "Edge-Cache-Control: no-store comes first"
    );
    assert_eq!(origin.count(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn heuristic_ttl_makes_old_last_modified_fresh() -> Result<()> {
    let origin = Origin::fixed("x", &[("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]).await?;
    let off = node_for(&origin, NO_DEFAULT).await?;
    assert_eq!(twice(&off, &origin, "/a").await?, ("Miss".into(), 2));
    let on = node_for(&origin, r#"{ default_ttl = "0s", heuristic_ttl = "10%" }"#).await?;
    assert_eq!(twice(&on, &origin, "/a").await?, ("Hit".into(), 3));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn strip_set_cookie_stores_the_response_without_its_cookie() -> Result<()> {
    let origin = Origin::fixed(
        "x",
        &[("cache-control", "max-age=60"), ("set-cookie", "id=1")],
    )
    .await?;
    let default = node_for(&origin, NO_DEFAULT).await?;
    assert_eq!(twice(&default, &origin, "/a").await?, ("Miss".into(), 2));

    let node = node_for(
        &origin,
        r#"{ default_ttl = "0s", strip_set_cookie = true }"#,
    )
    .await?;
    let first = node.get("/a").await?;
    assert_eq!(
        first.header("set-cookie"),
        Some("id=1"),
        "the fetching viewer keeps its cookie"
    );
    let second = node.get("/a").await?;
    assert_eq!(second.x_cache(), "Hit");
    assert_eq!(
        second.header("set-cookie"),
        None,
        "a hit never carries another viewer's cookie"
    );
    assert_eq!(origin.count(), 3);
    Ok(())
}

/// A GET of `path` with this request `Cache-Control`.
async fn with(node: &TestNode, path: &str, cc: &str) -> Result<crate::harness::Reply> {
    node.send(
        node.request("GET", path)
            .header("cache-control", cc)
            .body(Full::<Bytes>::default())?,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn viewer_cache_control_is_ignored_by_default_and_obeyed_when_honored() -> Result<()> {
    let origin = Origin::fixed("x", &[("cache-control", "max-age=60")]).await?;

    let default = node_for(&origin, NO_DEFAULT).await?;
    let miss = with(&default, "/a", "only-if-cached").await?;
    assert_eq!(
        (miss.status.as_u16(), origin.count()),
        (504, 0),
        "only-if-cached never reaches the origin"
    );
    default.get("/a").await?;
    for cc in ["no-cache", "max-age=0", "no-store", "min-fresh=3600"] {
        assert_eq!(with(&default, "/a", cc).await?.x_cache(), "Hit", "{cc}");
    }
    assert_eq!(
        with(&default, "/a", "only-if-cached").await?.x_cache(),
        "Hit"
    );
    assert_eq!(origin.count(), 1);

    let honor = node_for(
        &origin,
        r#"{ default_ttl = "0s", viewer_cache_control = "honor" }"#,
    )
    .await?;
    honor.get("/b").await?;
    assert_eq!(honor.get("/b").await?.x_cache(), "Hit");
    let mut fetches = origin.count();
    for cc in ["no-cache", "max-age=0", "no-store", "min-fresh=3600"] {
        with(&honor, "/b", cc).await?;
        fetches += 1;
        assert_eq!(origin.count(), fetches, "{cc} goes to the origin");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_304_does_not_replace_the_stored_etag_or_content_encoding() -> Result<()> {
    let revalidations = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&revalidations);
    let origin = Origin::start(move |received| {
        let seen = Arc::clone(&seen);
        async move {
            if received.header("if-none-match") == Some("\"a\"") {
                seen.fetch_add(1, Ordering::SeqCst);
                reply(
                    304,
                    &[
                        ("etag", "\"b\""),
                        ("content-encoding", "other"),
                        ("cache-control", "max-age=60"),
                        ("x-version", "2"),
                    ],
                    "",
                )
            } else {
                reply(
                    200,
                    &[
                        ("etag", "\"a\""),
                        ("content-encoding", "identity"),
                        ("cache-control", "max-age=0"),
                        ("x-version", "1"),
                    ],
                    "body",
                )
            }
        }
    })
    .await?;
    let node = node_for(&origin, NO_DEFAULT).await?;
    node.get("/a").await?;
    let refreshed = node.get("/a").await?;
    assert_eq!(revalidations.load(Ordering::SeqCst), 1);
    assert_eq!(refreshed.x_cache(), "RefreshHit");
    let hit = node.get("/a").await?;
    for reply in [&refreshed, &hit] {
        assert_eq!(
            (
                reply.header("etag"),
                reply.header("content-encoding"),
                reply.header("x-version")
            ),
            (Some("\"a\""), Some("identity"), Some("2"))
        );
        assert_eq!(reply.text(), "body");
    }
    assert_eq!(hit.x_cache(), "Hit");
    Ok(())
}
