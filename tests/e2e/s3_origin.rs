//! The S3 origin against a real S3 API server: s3s-fs (S3 over a temp dir) with SigV4
//! authentication by s3s, served by hyper on loopback. Every request the node signs is checked
//! by s3s, so a signature or key-encoding mistake shows up as a 403/502 here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::Bytes;
use http::header::{ETAG, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::harness::{accept_until_shutdown, Reply, TestNode};

const ACCESS_KEY: &str = "AKIDEDGETEST";
const SECRET: &str = "edge-test-secret-key";
const BUCKET: &str = "assets";

/// What the S3 server received.
#[derive(Debug, Clone)]
struct SeenS3 {
    method: Method,
    /// The raw request path, as encoded by the node.
    path: String,
    headers: HeaderMap,
}

/// s3s-fs over a temp dir holding bucket `assets`, one access key. Shut down on drop.
struct S3Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenS3>>>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

type S3Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

impl S3Server {
    async fn start(objects: &[(&str, &[u8])]) -> Result<S3Server> {
        let dir = tempfile::tempdir()?;
        let bucket = dir.path().join(BUCKET);
        std::fs::create_dir(&bucket)?;
        for (key, body) in objects {
            let path = bucket.join(key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, body)?;
        }
        let mut builder = s3s::service::S3ServiceBuilder::new(
            s3s_fs::FileSystem::new(dir.path()).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?,
        );
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET));
        let service = builder.build().into_shared();

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let tx = accept_until_shutdown(listener, move |stream| {
            let service = service.clone();
            let log = Arc::clone(&log);
            let wrapped = hyper::service::service_fn(move |req: Request<Incoming>| {
                log.lock().expect("s3 log lock").push(SeenS3 {
                    method: req.method().clone(),
                    path: req.uri().path().to_owned(),
                    headers: req.headers().clone(),
                });
                let if_none_match = req.headers().get(IF_NONE_MATCH).cloned();
                let call = service.call(req);
                async move {
                    let response = call.await.map(|r| r.map(|b| b.boxed()));
                    Ok::<_, s3s::S3Error>(match response {
                        Ok(r) => not_modified(r, if_none_match.as_ref()),
                        Err(e) => return Err(e),
                    })
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), wrapped),
            );
        });
        Ok(S3Server {
            addr,
            seen,
            shutdown: Some(tx),
            _dir: dir,
        })
    }

    fn seen(&self) -> Vec<SeenS3> {
        self.seen.lock().expect("s3 log lock").clone()
    }
}

/// s3s-fs answers GetObject without looking at `If-None-Match`; S3 answers 304 when it
/// matches (RFC 9110 §13.1.2). This does what S3 would, from the ETag s3s-fs computed.
fn not_modified(
    response: Response<S3Body>,
    if_none_match: Option<&http::HeaderValue>,
) -> Response<S3Body> {
    let matches = response.status() == StatusCode::OK
        && if_none_match.is_some()
        && response.headers().get(ETAG) == if_none_match;
    if !matches {
        return response;
    }
    let mut not_modified = Response::new(Empty::new().map_err(|e| match e {}).boxed());
    *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [ETAG, LAST_MODIFIED] {
        if let Some(v) = response.headers().get(&name) {
            not_modified.headers_mut().insert(name, v.clone());
        }
    }
    not_modified
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Writes the secret to a file and starts a node with debug headers whose one behavior sends
/// everything to the S3 origin `assets`; `origin_extra` and `behavior_extra` are further lines.
async fn s3_node(
    s3: &S3Server,
    secret: &str,
    origin_extra: &str,
    behavior_extra: &str,
) -> Result<(TestNode, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let secret_file = dir.path().join("s3-secret");
    std::fs::write(&secret_file, format!("{secret}\n"))?;
    let node = TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            r#"
[origins.assets]
type = "s3"
endpoint = "http://{addr}"
bucket = "{BUCKET}"
region = "us-east-1"
access_key_id = "{ACCESS_KEY}"
secret_access_key_file = {secret_file:?}
{origin_extra}

[[behaviors]]
path = "*"
origin = "assets"
{behavior_extra}
"#,
            addr = s3.addr,
            secret_file = secret_file.display().to_string(),
        ),
    )
    .await?;
    Ok((node, dir))
}

async fn send(
    node: &TestNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Reply> {
    let mut request = node.request(method, path).header("x-edge-debug", "1");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    node.send(request.body(Full::<Bytes>::default())?).await
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_are_fetched_signed_and_cached_with_their_validators() -> Result<()> {
    let s3 = S3Server::start(&[("hello.txt", b"hello from s3")]).await?;
    let (node, _secret) = s3_node(&s3, SECRET, "", "").await?;

    let first = send(&node, "GET", "/hello.txt", &[]).await?;
    assert_eq!(first.status, 200, "{:?}", first.header("x-edge-error"));
    assert_eq!(first.text(), "hello from s3");
    assert_eq!(first.x_cache(), "Miss");
    let etag = first.header("etag").expect("S3's ETag is kept").to_owned();
    assert!(first.header("last-modified").is_some());
    let second = send(&node, "GET", "/hello.txt", &[]).await?;
    assert_eq!(
        (second.x_cache(), second.text().as_str()),
        ("Hit", "hello from s3")
    );
    assert_eq!(second.header("etag"), Some(etag.as_str()));

    let seen = s3.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (&seen[0].method, seen[0].path.as_str()),
        (&Method::GET, "/assets/hello.txt")
    );
    let auth = seen[0]
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    assert!(
        auth.is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEDGETEST/")),
        "{auth:?}"
    );
    // Nothing of the viewer's request but what S3 answers itself.
    assert!(seen[0].headers.get("x-forwarded-for").is_none());
    assert!(seen[0].headers.get("x-edge-debug").is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_with_spaces_unicode_and_reserved_characters() -> Result<()> {
    let objects: &[(&str, &[u8])] = &[
        ("docs/a b.txt", b"space"),
        ("caf\u{e9}/\u{fc}ber \u{1f600}.txt", b"unicode"),
        ("x+y=(1)!'*,;@$&.txt", b"reserved"),
        ("100%.txt", b"percent"),
        ("tilde~dash-under_score.txt", b"unreserved"),
    ];
    let s3 = S3Server::start(objects).await?;
    let (node, _secret) = s3_node(&s3, SECRET, "", "").await?;
    for (path, body) in [
        ("/docs/a%20b.txt", "space"),
        ("/caf%C3%A9/%C3%BCber%20%F0%9F%98%80.txt", "unicode"),
        ("/caf%c3%a9/%c3%bcber%20%f0%9f%98%80.txt", "unicode"),
        ("/x+y=(1)!'*,;@$&.txt", "reserved"),
        ("/x%2By%3D%281%29%21%27%2A%2C%3B%40%24%26.txt", "reserved"),
        ("/100%25.txt", "percent"),
        ("/tilde~dash-under_score.txt", "unreserved"),
    ] {
        let r = send(&node, "GET", path, &[]).await?;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, body),
            "{path}: {:?}",
            r.header("x-edge-error")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn index_answers_paths_ending_in_a_slash() -> Result<()> {
    let s3 = S3Server::start(&[
        ("index.html", b"root index"),
        ("dir/index.html", b"dir index"),
    ])
    .await?;
    let (node, _secret) = s3_node(&s3, SECRET, "index = \"index.html\"", "").await?;
    let root = send(&node, "GET", "/", &[]).await?;
    assert_eq!(
        (root.status.as_u16(), root.text().as_str()),
        (200, "root index")
    );
    let dir = send(&node, "GET", "/dir/", &[]).await?;
    assert_eq!(
        (dir.status.as_u16(), dir.text().as_str()),
        (200, "dir index")
    );
    let paths: Vec<String> = s3.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/assets/index.html", "/assets/dir/index.html"]);

    // Without `index` the bucket root is not listed.
    let (bare, _secret) = s3_node(&s3, SECRET, "", "").await?;
    assert_eq!(send(&bare, "GET", "/", &[]).await?.status, 404);
    assert_eq!(s3.seen().len(), 2, "no ListObjects request");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_key_is_404_for_get_and_head() -> Result<()> {
    let s3 = S3Server::start(&[("present.txt", b"here")]).await?;
    let (node, _secret) = s3_node(&s3, SECRET, "", "").await?;
    let get = send(&node, "GET", "/absent.txt", &[]).await?;
    assert_eq!(
        (get.status.as_u16(), get.text().as_str()),
        (404, "not found\n")
    );
    let head = send(&node, "HEAD", "/absent-too.txt", &[]).await?;
    assert_eq!(head.status, 404);
    assert_eq!(s3.seen().len(), 2, "both asked S3");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secret_is_502_naming_the_s3_error_code() -> Result<()> {
    let s3 = S3Server::start(&[("hello.txt", b"hello")]).await?;
    let (node, _secret) = s3_node(&s3, "not-the-secret", "", "").await?;
    let r = send(&node, "GET", "/hello.txt", &[]).await?;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (502, "502 Bad Gateway\n")
    );
    let error = r.header("x-edge-error").unwrap_or_default();
    assert!(
        error.contains("SignatureDoesNotMatch") && error.contains("\"assets\""),
        "{error}"
    );
    assert_eq!(s3.seen().len(), 1, "S3 refused the request it received");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_object_is_revalidated_with_if_none_match() -> Result<()> {
    let s3 = S3Server::start(&[("page.html", b"<p>v1</p>")]).await?;
    // No Cache-Control from S3 and a default TTL of 0: stored (it has validators), stale at once.
    let (node, _secret) = s3_node(&s3, SECRET, "", "cache = { default_ttl = \"0s\" }").await?;
    let first = send(&node, "GET", "/page.html", &[]).await?;
    assert_eq!((first.status.as_u16(), first.x_cache()), (200, "Miss"));
    let etag = first.header("etag").expect("an ETag").to_owned();

    let again = send(&node, "GET", "/page.html", &[]).await?;
    assert_eq!(
        (
            again.status.as_u16(),
            again.x_cache(),
            again.text().as_str()
        ),
        (200, "RefreshHit", "<p>v1</p>"),
        "{:?}",
        again.header("x-edge-error")
    );
    let seen = s3.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1]
            .headers
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok()),
        Some(etag.as_str()),
        "the revalidation is signed with the stored ETag and S3 accepted it"
    );

    // A viewer's own conditional is answered with 304 against the kept ETag.
    let viewer = send(&node, "GET", "/page.html", &[("if-none-match", &etag)]).await?;
    assert_eq!(viewer.status, 304);
    assert!(viewer.body.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn range_and_head_requests() -> Result<()> {
    let s3 = S3Server::start(&[("digits.txt", b"0123456789")]).await?;
    let (node, _secret) = s3_node(
        &s3,
        SECRET,
        "",
        "cache = { viewer_cache_control = \"honor\" }",
    )
    .await?;
    // Passed through (the viewer's `no-store`): S3 answers the range itself.
    let passed = send(
        &node,
        "GET",
        "/digits.txt",
        &[("range", "bytes=2-5"), ("cache-control", "no-store")],
    )
    .await?;
    assert_eq!(
        (passed.status.as_u16(), passed.text().as_str()),
        (206, "2345"),
        "{:?}",
        passed.header("x-edge-error")
    );
    assert_eq!(passed.header("content-range"), Some("bytes 2-5/10"));
    let seen = s3.seen();
    assert_eq!(
        seen[0].headers.get("range").and_then(|v| v.to_str().ok()),
        Some("bytes=2-5")
    );

    // Filled once, then ranges come from the cache.
    assert_eq!(send(&node, "GET", "/digits.txt", &[]).await?.status, 200);
    let hit = send(&node, "GET", "/digits.txt", &[("range", "bytes=-3")]).await?;
    assert_eq!(
        (hit.status.as_u16(), hit.x_cache(), hit.text().as_str()),
        (206, "Hit", "789")
    );

    // A HEAD miss goes to S3 as a signed HEAD.
    let head = send(
        &node,
        "HEAD",
        "/digits.txt",
        &[("cache-control", "no-store")],
    )
    .await?;
    assert_eq!(head.status, 200, "{:?}", head.header("x-edge-error"));
    assert_eq!(head.header("content-length"), Some("10"));
    assert!(head.body.is_empty());
    // s3s-fs's HeadObject sends no ETag; S3's would.
    assert!(head.header("last-modified").is_some());
    assert_eq!(
        s3.seen().last().map(|s| s.method.clone()),
        Some(Method::HEAD)
    );
    assert_eq!(s3.seen().len(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn other_methods_are_405_from_the_origin() -> Result<()> {
    let s3 = S3Server::start(&[("form", b"x")]).await?;
    let (node, _secret) = s3_node(
        &s3,
        SECRET,
        "",
        "methods = [\"GET\", \"HEAD\", \"POST\", \"DELETE\"]",
    )
    .await?;
    for method in ["POST", "DELETE"] {
        let r = send(&node, method, "/form", &[]).await?;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    assert!(
        s3.seen().is_empty(),
        "nothing but GET and HEAD is sent to S3"
    );
    Ok(())
}
