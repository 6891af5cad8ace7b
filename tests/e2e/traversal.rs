//! A static-origin traversal corpus over raw sockets: every way we know of spelling "the file
//! above the root" (dot segments raw and encoded, encoded slashes and backslashes, overlong
//! UTF-8, NUL, double encoding, absolute-form targets, symlinks out of the root) gets a 4xx, a
//! close, or a redirect that stays on this site, and no response ever carries the secret.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::harness::{Site, TestNode};

/// The file outside the root; no response may ever contain it.
const SECRET: &str = "TOP-SECRET-7f3a9c-do-not-serve";

/// Request targets that aim at `secret` (one level above the root), `outside/secret.txt` (a
/// sibling directory) or `/etc/passwd`. None of them names a file inside the root.
const CORPUS: &[&str] = &[
    // raw dot segments
    "/../secret",
    "/../../secret",
    "/a/../../secret",
    "/a/b/../../../secret",
    "/./../secret",
    "/a/./../.././secret",
    "/../site/../secret",
    "/../outside/secret.txt",
    "/../../../../../../../../etc/passwd",
    // percent-encoded dots and slashes, mixed case
    "/%2e%2e/secret",
    "/%2E%2E/secret",
    "/%2E%2e/secret",
    "/.%2e/secret",
    "/%2e./secret",
    "/.%2E/secret",
    "/%2e%2e%2fsecret",
    "/%2e%2e%2Fsecret",
    "/..%2fsecret",
    "/a/..%2f..%2fsecret",
    "/a%2f..%2f..%2fsecret",
    "/a/%2e%2e/%2e%2e/secret",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/%2fetc/passwd",
    "//etc/passwd",
    "////etc/passwd",
    // backslashes, raw and encoded
    "/..%5csecret",
    "/..%5Csecret",
    "/a/..%5c..%5csecret",
    "/%5c..%5csecret",
    "/..\\secret",
    "/a\\..\\..\\secret",
    "/\\..\\secret",
    // overlong and look-alike UTF-8 for '.' and '/'
    "/%c0%ae%c0%ae/secret",
    "/%c0%ae%c0%ae%c0%afsecret",
    "/%e0%80%ae%e0%80%ae/secret",
    "/%c0%2e%c0%2e/secret",
    "/%c1%9c..%c1%9csecret",
    "/%ef%bc%8e%ef%bc%8e/secret",
    "/%f0%80%80%ae%f0%80%80%ae/secret",
    // NUL
    "/secret%00",
    "/../secret%00.html",
    "/%00/../secret",
    "/a/%00/../../secret",
    "/..%00/secret",
    // double encoding
    "/%252e%252e/secret",
    "/%252e%252e%252fsecret",
    "/a/%252e%252e/%252e%252e/secret",
    "/%25%32%65%25%32%65/secret",
    "/..%252fsecret",
    // path parameters and odd segments
    "/..;/secret",
    "/a/..;/..;/secret",
    "/.../secret",
    // absolute-form targets
    "http://test/../secret",
    "http://test/%2e%2e/secret",
    "http://test/a/../../secret",
    "http://127.0.0.1/../../secret",
    "HTTP://TEST/%2E%2E/secret",
    "file:///etc/passwd",
    "http://test/../outside/secret.txt",
    // symlinks out of the root
    "/leak.txt",
    "/outside/secret.txt",
    "/outside%2fsecret.txt",
    "/a/../outside/secret.txt",
    "/outside/../../secret",
];

#[tokio::test(flavor = "multi_thread")]
async fn traversal_corpus_never_escapes_the_root() -> Result<()> {
    assert!(CORPUS.len() >= 40, "the corpus keeps at least 40 variants");
    let tree = Site::new(&[
        ("secret", SECRET),
        ("outside/secret.txt", SECRET),
        ("site/index.html", "home"),
        ("site/a/page.html", "page"),
        ("site/a/b/deep.html", "deep"),
    ])?;
    let root = tree.path().join("site");
    std::os::unix::fs::symlink(tree.path().join("secret"), root.join("leak.txt"))?;
    std::os::unix::fs::symlink(tree.path().join("outside"), root.join("outside"))?;
    let node = TestNode::start(&format!(
        r#"
[origins.bucket]
type = "static"
root = {root:?}

[[behaviors]]
path = "*"
origin = "bucket"
"#,
        root = root.display().to_string()
    ))
    .await?;
    let addr = node.node.addr();

    // The root's own absolute path, as a request path, names nothing inside the root.
    let absolute = format!("{}/secret", tree.path().display());
    let targets = CORPUS.iter().copied().chain([absolute.as_str()]);
    for target in targets {
        let raw = exchange(addr, target).await?;
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains(SECRET),
            "{target:?} leaked the secret:\n{text}"
        );
        assert!(
            !text.contains("root:x:0:0"),
            "{target:?} leaked /etc/passwd"
        );
        match status_of(&text) {
            // Closed without an answer: the node refused to parse it.
            None => {}
            Some(status) if (400..500).contains(&status) => {}
            Some(status) if (300..400).contains(&status) => {
                let location = header_of(&text, "location").unwrap_or("");
                assert!(
                    location.starts_with('/')
                        && !location.starts_with("//")
                        && !location.starts_with("/\\")
                        && !location.contains(".."),
                    "{target:?}: redirect to {location:?} leaves the site"
                );
            }
            Some(status) => panic!("{target:?}: status {status}, want 4xx:\n{text}"),
        }
    }

    // The node still serves the root normally.
    let raw = exchange(addr, "/a/b/deep.html").await?;
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(status_of(&text), Some(200), "{text}");
    assert!(text.ends_with("deep"), "{text}");
    Ok(())
}

/// Sends `GET target` as raw bytes on a fresh connection and reads until the node closes it
/// (bounded).
async fn exchange(addr: SocketAddr, target: &str) -> Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        // A reset after an error answer is fine: what arrived before it is what counts.
        let _ = stream.read_to_end(&mut raw).await;
    })
    .await
    .with_context(|| format!("{target:?}: the node neither answered nor closed in 10 s"))?;
    Ok(raw)
}

/// The status code of a raw response, if one arrived.
fn status_of(raw: &str) -> Option<u16> {
    raw.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// The first value of header `name` in a raw response.
fn header_of<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
