//! The regional tier: edges that fill from parents chosen by rendezvous hashing, in one test
//! process. Every node is a real node on loopback; the origin counts what it receives.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::Full;

use crate::functions::HEADERS;
use crate::harness::{function, refused_addr, reply, Origin, Reply, TestNode, ADMIN_TOKEN};
use edge_runtime::tier::rendezvous;

const TOKEN: &str = "tier-secret-0123456789";

/// A token file in a temp dir (kept alive by the returned guard).
struct TokenFile {
    _dir: tempfile::TempDir,
    path: String,
}

fn token_file(secret: &str) -> Result<TokenFile> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tier-token");
    // A trailing newline, as `echo` and editors leave: the node trims it.
    std::fs::write(&path, format!("{secret}\n"))?;
    Ok(TokenFile {
        path: path.display().to_string(),
        _dir: dir,
    })
}

/// The `[tier]` table (after the behavior lines `in_front_of` writes).
fn tier(parents: &[String], token: &TokenFile, extra: &str) -> String {
    let parents: Vec<String> = parents.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "\n[tier]\nparents = [{}]\ntoken_file = {:?}\n{extra}\n",
        parents.join(", "),
        token.path
    )
}

fn url(node: &TestNode) -> String {
    format!("http://{}", node.node.addr())
}

/// A regional node in front of `origin`: no parents, accepts tier requests with `token`.
async fn parent(origin: &Origin, token: &TokenFile) -> Result<TestNode> {
    TestNode::in_front_of(origin, &tier(&[], token, "")).await
}

/// An edge in front of `origin` with these parents, debug headers on.
async fn edge(
    origin: &Origin,
    parents: &[String],
    token: &TokenFile,
    extra: &str,
) -> Result<TestNode> {
    TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            "[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nmethods = [\"GET\", \"HEAD\", \"POST\"]\n{}",
            origin.url(),
            tier(parents, token, extra)
        ),
    )
    .await
}

/// The site's host: viewers of every edge ask for the same one, so the edges' keys agree.
const HOST: &str = "www.example.com";

async fn debug_get(node: &TestNode, path: &str) -> Result<Reply> {
    node.send(
        node.request("GET", path)
            .header("host", HOST)
            .header("x-edge-debug", "1")
            .body(Full::default())?,
    )
    .await
}

async fn get(node: &TestNode, path: &str) -> Result<Reply> {
    node.send(
        node.request("GET", path)
            .header("host", HOST)
            .body(Full::default())?,
    )
    .await
}

fn no_tier_headers_reached(origin: &Origin) {
    for received in origin.received() {
        for name in received.headers.keys() {
            assert!(
                !name.as_str().starts_with("x-edge-tier"),
                "the origin received {name}"
            );
        }
    }
}

#[test]
fn rendezvous_is_balanced_and_removing_a_parent_moves_only_its_keys() {
    let parents = [
        "http://rec-0.rec:8080",
        "http://rec-1.rec:8080",
        "http://rec-2.rec:8080",
    ];
    let two = [parents[0], parents[2]];
    let mut counts = [0usize; 3];
    for n in 0..10_000 {
        let key = format!("example.com/objects/{n}.css");
        let first = rendezvous::order(&key, &parents)[0];
        counts[first] += 1;
        // The same key always picks the same parent.
        assert_eq!(rendezvous::order(&key, &parents)[0], first);
        let after = two[rendezvous::order(&key, &two)[0]];
        if first != 1 {
            assert_eq!(
                after, parents[first],
                "{key} moved off a parent that stayed"
            );
        }
    }
    for count in counts {
        assert!(
            (3000..=3667).contains(&count),
            "not within ±10% of a third: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn edges_fill_from_the_parent_and_the_origin_sees_it_once() -> Result<()> {
    let origin = Origin::fixed("object", &[("cache-control", "max-age=600")]).await?;
    let token = token_file(TOKEN)?;
    let rec = parent(&origin, &token).await?;
    let edge_a = edge(&origin, &[url(&rec)], &token, "").await?;
    let edge_b = edge(&origin, &[url(&rec)], &token, "").await?;

    let first = debug_get(&edge_a, "/a.css").await?;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "object");
    assert_eq!(first.x_cache(), "Miss", "X-Cache at the edge is the edge's");
    assert_eq!(first.header("x-edge-tier-parent"), Some(url(&rec).as_str()));
    assert_eq!(first.header("x-edge-tier-parent-cache"), Some("Miss"));
    assert_eq!(origin.count(), 1);

    assert_eq!(debug_get(&edge_a, "/a.css").await?.x_cache(), "Hit");
    let other = debug_get(&edge_b, "/a.css").await?;
    assert_eq!(other.x_cache(), "Miss");
    assert_eq!(other.header("x-edge-tier-parent-cache"), Some("Hit"));
    assert_eq!(
        origin.count(),
        1,
        "the second edge's miss was the parent's hit"
    );
    no_tier_headers_reached(&origin);

    // Both hops are in Via, and the parent forwarded the viewer's host.
    let seen = origin.last();
    assert_eq!(
        seen.headers.get_all("via").iter().count(),
        2,
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-forwarded-host"), Some(HOST));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_from_three_edges_reach_the_origin_once() -> Result<()> {
    let origin = Origin::start(|_| async {
        // Slow enough that the three edges' fills overlap at the parent.
        tokio::time::sleep(Duration::from_millis(300)).await;
        reply(200, &[("cache-control", "max-age=600")], "shared")
    })
    .await?;
    let token = token_file(TOKEN)?;
    let rec = parent(&origin, &token).await?;
    let edges = [
        edge(&origin, &[url(&rec)], &token, "").await?,
        edge(&origin, &[url(&rec)], &token, "").await?,
        edge(&origin, &[url(&rec)], &token, "").await?,
    ];
    let (a, b, c) = tokio::join!(
        get(&edges[0], "/hot.js"),
        get(&edges[1], "/hot.js"),
        get(&edges[2], "/hot.js")
    );
    for reply in [a, b, c] {
        let reply = reply?;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "shared");
    }
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_parent_fails_over_to_the_next_then_to_the_origin() -> Result<()> {
    let origin = Origin::fixed("object", &[("cache-control", "max-age=600")]).await?;
    let token = token_file(TOKEN)?;
    let rec = parent(&origin, &token).await?;
    let dead = format!("http://{}", refused_addr().await?);
    let parents = [dead.clone(), url(&rec)];
    let edge = edge(&origin, &parents, &token, "").await?;
    // A path whose first choice is the dead parent.
    let names: Vec<&str> = parents.iter().map(String::as_str).collect();
    let path = (0..)
        .map(|n| format!("/f{n}"))
        .find(|p| {
            let key = format!("{HOST}{p}");
            rendezvous::order(&key, &names)[0] == 0
        })
        .expect("some key prefers the dead parent");
    let reply = debug_get(&edge, &path).await?;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-edge-tier-parent"), Some(url(&rec).as_str()));
    assert_eq!(origin.count(), 1);

    // Every parent down: `on_parent_failure = "origin"` (the default) fetches directly.
    drop(rec);
    let lone = edge_with_only(&origin, &dead, &token, "").await?;
    let reply = debug_get(&lone, "/direct").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.x_cache(), "Miss");
    assert_eq!(reply.header("x-edge-tier-parent"), None);
    assert_eq!(origin.count(), 2);
    no_tier_headers_reached(&origin);
    Ok(())
}

async fn edge_with_only(
    origin: &Origin,
    parent: &str,
    token: &TokenFile,
    extra: &str,
) -> Result<TestNode> {
    edge(origin, &[parent.to_owned()], token, extra).await
}

#[tokio::test(flavor = "multi_thread")]
async fn error_mode_answers_502_when_no_parent_answers() -> Result<()> {
    let origin = Origin::fixed("object", &[("cache-control", "max-age=600")]).await?;
    let token = token_file(TOKEN)?;
    let dead = format!("http://{}", refused_addr().await?);
    let edge = edge_with_only(&origin, &dead, &token, "on_parent_failure = \"error\"").await?;
    let reply = edge.get("/x").await?;
    assert_eq!(reply.status, 502);
    assert_eq!(origin.count(), 0, "error mode never goes to the origin");

    // Non-cacheable requests go to the origin directly, parents or not.
    let post = edge
        .send(
            edge.request("POST", "/form")
                .body(Full::new(Bytes::from("a=1")))?,
        )
        .await?;
    assert_eq!(post.status, 200);
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_tokens_and_injected_tier_headers_are_refused() -> Result<()> {
    let origin = Origin::fixed("object", &[("cache-control", "max-age=600")]).await?;
    let token = token_file(TOKEN)?;
    let wrong = token_file("some-other-token-000")?;
    let rec = parent(&origin, &token).await?;

    // An edge with the wrong token: the parent refuses (403), the edge counts it a parent
    // failure and goes to the origin itself.
    let stranger = edge(&origin, &[url(&rec)], &wrong, "").await?;
    let reply = debug_get(&stranger, "/t").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-edge-tier-parent"), None);
    assert_eq!(origin.count(), 1);

    // A viewer sending tier headers to a parent or an edge gets 403, and nothing is fetched.
    let good = edge(&origin, &[url(&rec)], &token, "").await?;
    for node in [&rec, &good] {
        for token_header in [None, Some("guess")] {
            let mut request = node
                .request("GET", "/injected")
                .header("x-edge-tier-key", "evil.example/poisoned")
                .header("x-edge-tier-origin", "app");
            if let Some(t) = token_header {
                request = request.header("x-edge-tier-token", t);
            }
            let reply = node.send(request.body(Full::default())?).await?;
            assert_eq!(reply.status, 403);
        }
    }
    assert_eq!(origin.count(), 1);
    no_tier_headers_reached(&origin);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn age_accumulates_across_the_tier() -> Result<()> {
    let origin =
        Origin::fixed("aged", &[("cache-control", "max-age=3600"), ("age", "100")]).await?;
    let token = token_file(TOKEN)?;
    let rec = parent(&origin, &token).await?;
    let edge_a = edge(&origin, &[url(&rec)], &token, "").await?;
    let edge_b = edge(&origin, &[url(&rec)], &token, "").await?;
    for node in [&edge_a, &edge_b, &edge_a] {
        let reply = get(node, "/aged").await?;
        let age: u64 = reply.header("age").unwrap_or("0").parse()?;
        assert!(
            (100..200).contains(&age),
            "Age {age} does not start at the origin's 100"
        );
    }
    assert_eq!(origin.count(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn revalidation_goes_edge_to_parent_to_origin() -> Result<()> {
    // `no-cache`: stored, but every reuse revalidates, at the edge and at the parent.
    let origin = Origin::start(|r| async move {
        if r.header("if-none-match") == Some("\"v1\"") {
            reply(
                304,
                &[("etag", "\"v1\""), ("cache-control", "no-cache")],
                "",
            )
        } else {
            reply(
                200,
                &[("etag", "\"v1\""), ("cache-control", "no-cache")],
                "version one",
            )
        }
    })
    .await?;
    let token = token_file(TOKEN)?;
    let rec = parent(&origin, &token).await?;
    let edge = edge(&origin, &[url(&rec)], &token, "").await?;
    assert_eq!(debug_get(&edge, "/r").await?.x_cache(), "Miss");
    assert_eq!(origin.count(), 1);

    let again = debug_get(&edge, "/r").await?;
    assert_eq!(again.status, 200);
    assert_eq!(again.text(), "version one");
    assert_eq!(
        again.x_cache(),
        "RefreshHit",
        "the edge's copy was refreshed"
    );
    assert_eq!(
        again.header("x-edge-tier-parent-cache"),
        Some("RefreshHit"),
        "the parent's copy was refreshed by the same 304"
    );
    let received = origin.received();
    assert_eq!(
        received.len(),
        2,
        "one conditional request reached the origin"
    );
    assert_eq!(received[1].header("if-none-match"), Some("\"v1\""));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidation_at_an_edge_reaches_its_parents() -> Result<()> {
    let origin = Origin::fixed("object", &[("cache-control", "max-age=600")]).await?;
    let token = token_file(TOKEN)?;
    let rec = parent(&origin, &token).await?;
    let admin = format!("\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n");
    let edge = edge(&origin, &[url(&rec)], &token, &admin).await?;
    assert_eq!(edge.get("/inv.css").await?.status, 200);
    assert_eq!(edge.get("/inv.css").await?.x_cache(), "Hit");
    assert_eq!(origin.count(), 1);

    let answer = edge
        .admin("POST", "/invalidations", r#"{"paths": ["/inv.css"]}"#)
        .await?;
    assert_eq!(answer.status, 201, "{}", answer.text());
    let json = answer.json()?;
    assert_eq!(json["parents"][0]["parent"], url(&rec));
    assert_eq!(json["parents"][0]["result"], "Completed");
    assert!(
        json["parents"][0]["objects_removed"].as_u64() >= Some(1),
        "{json}"
    );

    // Gone from both: the next request reaches the origin.
    assert_eq!(edge.get("/inv.css").await?.x_cache(), "Miss");
    assert_eq!(origin.count(), 2);

    // The tier endpoint refuses a caller without the token.
    let forged = rec
        .send(
            rec.request("POST", "/.edge-tier/invalidations")
                .header("x-edge-tier-token", "guess")
                .body(Full::new(Bytes::from(r#"{"paths": ["/*"]}"#)))?,
        )
        .await?;
    assert_eq!(forged.status, 403);

    // Per-parent metrics at the edge.
    let metrics = edge.admin("GET", "/metrics", "").await?.text();
    let series = format!(
        "edge_tier_parent_requests_total{{parent=\"{}\"}} 2",
        url(&rec)
    );
    assert!(metrics.contains(&series), "{metrics}");
    Ok(())
}

/// CloudFront runs origin-facing functions at the regional cache: a fill through a parent runs
/// the origin-response function there, once, and the edge stores what it produced.
#[tokio::test(flavor = "multi_thread")]
async fn origin_facing_functions_run_at_the_parent_not_at_the_edge() -> Result<()> {
    let origin = Origin::fixed("page", &[("cache-control", "max-age=60")]).await?;
    let token = token_file(TOKEN)?;
    let admin = format!("\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n");
    let config = |parents: &[String]| {
        format!(
            "{}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ origin_response = \"headers\" }}\n{}",
            function("headers", HEADERS),
            origin.url(),
            tier(parents, &token, &admin)
        )
    };
    let server = "debug_header = \"x-edge-debug\"";
    let parent = TestNode::start_with_server(server, &config(&[])).await?;
    let edge = TestNode::start_with_server(server, &config(&[url(&parent)])).await?;

    let first = get(&edge, "/page").await?;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-content-type-options"), Some("nosniff"));
    let second = get(&edge, "/page").await?;
    assert_eq!(second.x_cache(), "Hit");
    assert_eq!(second.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(origin.count(), 1);

    let ran = r#"edge_function_invocations_total{function="headers",event="origin-response"} 1"#;
    let at_parent = parent.admin("GET", "/metrics", "").await?.text();
    assert!(at_parent.contains(ran), "{at_parent}");
    let at_edge = edge.admin("GET", "/metrics", "").await?.text();
    assert!(
        !at_edge.contains(r#"edge_function_invocations_total{function="headers""#),
        "the edge ran the origin-facing function itself: {at_edge}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parent_that_closed_a_connection_under_a_fill_gets_it_again_and_stays_up() -> Result<()> {
    // The "parent" answers on its first connection once, then closes under the next request,
    // as a regional node's header read timeout crossing a fill on a reused connection would.
    let origin = Origin::fixed("from the origin", &[("cache-control", "max-age=60")]).await?;
    let (parent_url, seen, _shutdown) = crate::origin_pool::closes_after_first_answer().await?;
    let token = token_file("a-long-random-secret")?;
    let edge = edge(&origin, &[parent_url], &token, "").await?;
    let first = get(&edge, "/a").await?;
    assert_eq!(
        (first.status.as_u16(), first.text()),
        (200, "0-0".to_owned())
    );
    let second = get(&edge, "/b").await?;
    assert_eq!(
        (second.status.as_u16(), second.text()),
        (200, "1-0".to_owned()),
        "the fill went to the parent again, not to the origin"
    );
    let third = get(&edge, "/c").await?;
    assert_eq!(third.text(), "1-1", "the parent was not marked down");
    assert_eq!(origin.count(), 0);
    assert_eq!(seen.lock().expect("parent log lock").len(), 4);
    Ok(())
}
