//! Cache privacy: one viewer's response must never be served to another unless the origin said
//! it may be shared. `Authorization` (RFC 9111 §3.5), `Set-Cookie`, `private`, `Vary`.

use anyhow::Result;
use http_body_util::Full;

use crate::harness::{reply, Modules, Origin, Reply, TestNode};

/// A node caching everything from `origin` for a day unless the origin says otherwise.
async fn node_for(origin: &Origin) -> Result<TestNode> {
    TestNode::in_front_of(
        origin,
        r#"cache = { min_ttl = "0s", default_ttl = "1d", max_ttl = "365d" }"#,
    )
    .await
}

/// An origin that answers with the request's `Authorization` (or `anonymous`) as the body and
/// these response headers.
async fn echo_credentials(headers: &'static [(&'static str, &'static str)]) -> Result<Origin> {
    Origin::start(move |r| async move {
        let who = r.header("authorization").unwrap_or("anonymous").to_owned();
        reply(200, headers, who)
    })
    .await
}

async fn get_as(node: &TestNode, path: &str, authorization: Option<&str>) -> Result<Reply> {
    let mut request = node.request("GET", path);
    if let Some(token) = authorization {
        request = request.header("authorization", token);
    }
    node.send(request.body(Full::default())?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn authorized_response_is_not_served_to_anyone_else() -> Result<()> {
    let origin = echo_credentials(&[("cache-control", "max-age=600")]).await?;
    let node = node_for(&origin).await?;

    let alice = get_as(&node, "/account", Some("Bearer alice-token")).await?;
    assert_eq!(
        (alice.x_cache(), alice.text().as_str()),
        ("Miss", "Bearer alice-token")
    );
    let bob = get_as(&node, "/account", Some("Bearer bob-token")).await?;
    assert_eq!(
        (bob.x_cache(), bob.text().as_str()),
        ("Miss", "Bearer bob-token"),
        "Bob must not get Alice's response"
    );
    let again = get_as(&node, "/account", Some("Bearer alice-token")).await?;
    assert_eq!(
        (again.x_cache(), again.text().as_str()),
        ("Miss", "Bearer alice-token"),
        "an authorized response is not stored at all"
    );
    let anonymous = get_as(&node, "/account", None).await?;
    assert_eq!(
        (anonymous.x_cache(), anonymous.text().as_str()),
        ("Miss", "anonymous"),
        "a viewer without credentials must not get an authorized response"
    );
    assert_eq!(origin.count(), 4);

    // The anonymous response was shareable and is stored as usual.
    let hit = get_as(&node, "/account", None).await?;
    assert_eq!((hit.x_cache(), hit.text().as_str()), ("Hit", "anonymous"));
    // RFC 9111 §3.5 restricts reusing responses *to* authorized requests; a shareable object
    // may answer one (an origin that varies on credentials says `Vary: Authorization`).
    let later = get_as(&node, "/account", Some("Bearer alice-token")).await?;
    assert_eq!(
        (later.x_cache(), later.text().as_str()),
        ("Hit", "anonymous")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn function_lifetime_cannot_share_an_authorized_response() -> Result<()> {
    let modules = Modules::new(&[(
        "ttl",
        r#"(module
      (import "edge_v1" "cache_set_ttl" (func $ttl (param i64) (result i32)))
      (memory (export "memory") 1)
      (func (export "origin-response") (result i32)
        (drop (call $ttl (i64.const 3600)))
        (i32.const 0)))"#,
    )])?;
    let origin = echo_credentials(&[]).await?;
    let node = TestNode::start(&format!(
        r#"
{functions}
[origins.app]
type = "http"
targets = ["{url}"]

[[behaviors]]
path = "*"
origin = "app"
functions = {{ origin_response = "ttl" }}
"#,
        functions = modules.toml(""),
        url = origin.url()
    ))
    .await?;
    let alice = get_as(&node, "/account", Some("Bearer alice-token")).await?;
    assert_eq!(alice.x_cache(), "Miss");
    let bob = get_as(&node, "/account", Some("Bearer bob-token")).await?;
    assert_eq!(
        (bob.x_cache(), bob.text().as_str()),
        ("Miss", "Bearer bob-token")
    );
    // The same function does store what may be shared.
    for expected in ["Miss", "Hit"] {
        let anonymous = get_as(&node, "/account", None).await?;
        assert_eq!(
            (anonymous.x_cache(), anonymous.text().as_str()),
            (expected, "anonymous")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn authorized_response_marked_shareable_is_shared() -> Result<()> {
    for (path, cache_control) in [
        ("/public", "public, max-age=600"),
        ("/s-maxage", "s-maxage=600"),
        ("/must-revalidate", "max-age=600, must-revalidate"),
    ] {
        let origin = Origin::start(move |r| async move {
            let who = r.header("authorization").unwrap_or("anonymous").to_owned();
            reply(200, &[("cache-control", cache_control)], who)
        })
        .await?;
        let node = node_for(&origin).await?;
        let alice = get_as(&node, path, Some("Bearer alice-token")).await?;
        assert_eq!(alice.x_cache(), "Miss", "{cache_control}");
        let bob = get_as(&node, path, Some("Bearer bob-token")).await?;
        assert_eq!(
            (bob.x_cache(), bob.text().as_str()),
            ("Hit", "Bearer alice-token"),
            "{cache_control}: the origin declared the response shareable"
        );
        assert_eq!(origin.count(), 1, "{cache_control}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn set_cookie_and_private_responses_are_not_shared() -> Result<()> {
    for headers in [
        &[
            ("cache-control", "max-age=600"),
            ("set-cookie", "session=s1"),
        ][..],
        &[("cache-control", "private, max-age=600")][..],
        &[("cache-control", "no-store")][..],
    ] {
        let origin = Origin::start(move |r| async move {
            let who = r.header("x-viewer").unwrap_or("nobody").to_owned();
            reply(200, headers, who)
        })
        .await?;
        let node = node_for(&origin).await?;
        for viewer in ["alice", "bob"] {
            let r = node
                .send(
                    node.request("GET", "/me")
                        .header("x-viewer", viewer)
                        .body(Full::default())?,
                )
                .await?;
            assert_eq!(
                (r.x_cache(), r.text().as_str()),
                ("Miss", viewer),
                "{headers:?}"
            );
        }
        assert_eq!(origin.count(), 2, "{headers:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn vary_keeps_each_viewers_variant_apart() -> Result<()> {
    let origin = Origin::start(|r| async move {
        let cookie = r.header("cookie").unwrap_or("none").to_owned();
        reply(
            200,
            &[("cache-control", "max-age=600"), ("vary", "Cookie")],
            format!("page for {cookie}"),
        )
    })
    .await?;
    let node = node_for(&origin).await?;
    let node = &node;
    let as_viewer = |cookie: &'static str| async move {
        let request = node
            .request("GET", "/home")
            .header("cookie", cookie)
            .body(Full::default())?;
        node.send(request).await
    };
    let alice = as_viewer("user=alice").await?;
    assert_eq!(
        (alice.x_cache(), alice.text().as_str()),
        ("Miss", "page for user=alice")
    );
    let bob = as_viewer("user=bob").await?;
    assert_eq!(
        (bob.x_cache(), bob.text().as_str()),
        ("Miss", "page for user=bob")
    );
    let alice_again = as_viewer("user=alice").await?;
    assert_eq!(
        (alice_again.x_cache(), alice_again.text().as_str()),
        ("Hit", "page for user=alice")
    );
    let anonymous = node.get("/home").await?;
    assert_eq!(
        (anonymous.x_cache(), anonymous.text().as_str()),
        ("Miss", "page for none")
    );
    assert_eq!(origin.count(), 3);
    Ok(())
}
