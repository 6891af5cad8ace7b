//! Decision replay (`runtime/src/wasm/replay.rs`, ABI.md "Decision replay"): a replayed
//! invocation is indistinguishable from a fresh one. The property test runs every example
//! function in `functions/` over long random sequences of requests that repeat (methods, paths,
//! queries, headers, cookies, client addresses) while the KV store changes, twice: as a version
//! with replay on and as one with `replay = false`, and compares everything the node takes from
//! an invocation (decision, generated response, request, response, origin, cache key, TTL, log
//! lines and output). Through a node: the debug header says ran or replayed, the metrics count
//! it, and the admin `test` result says whether an invocation could be replayed.

use std::sync::Arc;

use anyhow::Result;
use edge_runtime::config::{Config, FunctionConfig, FunctionLimits};
use edge_runtime::kv::{KvStores, Patch};
use edge_runtime::wasm::invoke::{self, Decision, Input, Invoked};
use edge_runtime::wasm::replay::Replay;
use edge_runtime::wasm::{BodyView, Function, FunctionEngine, RequestView, ResponseView};
use edge_sdk::abi::Event;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use crate::harness::{function, reply, Origin, Site, TestNode, ADMIN_TOKEN};

include!(concat!(env!("OUT_DIR"), "/functions.rs"));

/// Fails to compile if an example function has no property test here.
macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
for_each_function!(assert_test_exists);

/// Paths the example functions treat differently: routes, client routes, files, hashed assets,
/// redirects (built in and from the store), blocked and maintenance sections, prints, panics.
const PATHS: &[&str] = &[
    "/",
    "/api/users",
    "/app/settings/profile",
    "/app/main.js",
    "/css/site.css",
    "/js/app.3f9a2b1c9d.js",
    "/old-pricing",
    "/black-friday",
    "/moved",
    "/admin/login",
    "/checkout/cart",
    "/print/x",
    "/panic/x",
];
const QUERIES: &[Option<&str>] = &[
    None,
    Some("v=2"),
    Some("utm_source=news&b=2&a=1"),
    Some("fbclid=x&page=3"),
];
const METHODS: &[&str] = &["GET", "GET", "HEAD", "POST", "PUT"];
const AGENTS: &[Option<&str>] = &[
    None,
    Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"),
    Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148"),
    Some("Mozilla/5.0 (iPad; CPU OS 17_0) Safari/604.1"),
];
const COOKIES: &[Option<&str>] = &[
    None,
    Some("theme=dark"),
    Some("theme=dark; session=abc"),
    Some("session=xyz"),
];
const IPS: &[&str] = &[
    "127.0.0.1",
    "203.0.113.77",
    "10.1.2.3",
    "::1",
    "2001:db8:dead::1",
];
const STATUSES: &[u16] = &[200, 200, 404, 500, 301];
const CONTENT_TYPES: &[Option<&str>] = &[None, Some("text/html; charset=utf-8"), Some("image/png")];
const CSPS: &[Option<&str>] = &[None, Some("default-src 'none'")];
const REDIRECT_VALUES: &[&str] = &["301 /new", "302 /elsewhere?x=1", "bogus", "308 /kept"];

/// One request (and, for response events, the origin's response), as indices into the tables.
#[derive(Debug, Clone)]
struct Sample {
    method: usize,
    path: usize,
    query: usize,
    agent: usize,
    cookie: usize,
    ip: usize,
    status: usize,
    content_type: usize,
    csp: usize,
    body: u8,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        0..METHODS.len(),
        0..PATHS.len(),
        0..QUERIES.len(),
        0..AGENTS.len(),
        0..COOKIES.len(),
        0..IPS.len(),
        0..STATUSES.len(),
        0..CONTENT_TYPES.len(),
        0..CSPS.len(),
        0u8..3,
    )
        .prop_map(
            |(method, path, query, agent, cookie, ip, status, content_type, csp, body)| Sample {
                method,
                path,
                query,
                agent,
                cookie,
                ip,
                status,
                content_type,
                csp,
                body,
            },
        )
}

/// A step of a sequence: a request (an index into the sequence's few samples, so inputs
/// repeat), or a change to the `redirects` store.
#[derive(Debug, Clone)]
enum Step {
    Request(usize),
    Kv { path: usize, value: Option<usize> },
}

fn steps(samples: usize) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        8 => (0..samples).prop_map(Step::Request),
        1 => (0..PATHS.len(), proptest::option::of(0..REDIRECT_VALUES.len()))
            .prop_map(|(path, value)| Step::Kv { path, value }),
    ];
    prop::collection::vec(step, 20..80)
}

fn header(name: &str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_bytes(name.as_bytes()).expect("name"),
        HeaderValue::from_str(value).expect("value"),
    )
}

impl Sample {
    fn input(&self, config: &Arc<Config>, kv: &Arc<KvStores>, event: Event) -> Input {
        let uri = match QUERIES[self.query] {
            Some(q) => format!("{}?{q}", PATHS[self.path]),
            None => PATHS[self.path].to_owned(),
        };
        let mut headers = HeaderMap::new();
        let (name, value) = header("host", "www.example.com");
        headers.insert(name, value);
        for (name, value) in [
            ("user-agent", AGENTS[self.agent]),
            ("cookie", COOKIES[self.cookie]),
        ] {
            if let Some(value) = value {
                let (name, value) = header(name, value);
                headers.append(name, value);
            }
        }
        let response = (!event.is_request()).then(|| {
            let mut headers = HeaderMap::new();
            for (name, value) in [
                ("content-type", CONTENT_TYPES[self.content_type]),
                ("content-security-policy", CSPS[self.csp]),
            ] {
                if let Some(value) = value {
                    let (name, value) = header(name, value);
                    headers.append(name, value);
                }
            }
            ResponseView {
                status: StatusCode::from_u16(STATUSES[self.status]).expect("status"),
                headers,
                body: if event == Event::OriginResponse {
                    BodyView::Buffered(bytes::Bytes::from(vec![b'x'; usize::from(self.body) * 7]))
                } else {
                    BodyView::Unavailable
                },
            }
        });
        Input {
            config: Arc::clone(config),
            request: RequestView {
                method: Method::from_bytes(METHODS[self.method].as_bytes()).expect("method"),
                uri: uri.parse().expect("uri"),
                headers,
            },
            client_ip: IPS[self.ip].parse().expect("ip"),
            response,
            kv: Some(Arc::clone(kv)),
        }
    }
}

fn headers_text(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn response_text(response: &ResponseView) -> String {
    format!(
        "{} {:?} {:?}",
        response.status,
        headers_text(&response.headers),
        response.body
    )
}

/// Everything the node takes from an invocation, as comparable text.
fn outcome(invoked: &Invoked) -> String {
    let result = match &invoked.result {
        Ok(Decision::Continue) => "continue".to_owned(),
        Ok(Decision::Respond(r)) => format!("respond {}", response_text(r)),
        Err(e) => format!("error {e}"),
    };
    let mut output = String::new();
    for (stream, line) in invoked.output.lines() {
        output.push_str(&format!("{}: {line}\n", stream.as_str()));
    }
    format!(
        "result: {result}\nrequest: {} {} {:?}\nresponse: {:?}\norigin: {:?}\ncache key: {:?} {:?}\nttl: {:?}\nlogs: {:?}\noutput: {output} truncated {}",
        invoked.request.method,
        invoked.request.uri,
        headers_text(&invoked.request.headers),
        invoked.response.as_ref().map(response_text),
        invoked.origin,
        invoked.cache_key,
        invoked.cache_key_parts,
        invoked.ttl,
        invoked.logs,
        invoked.output.truncated(),
    )
}

/// Runs the property for the function in `module`: over random sequences, every invocation of
/// the replaying version gives what the fresh one gives. Returns how many were replayed.
fn replay_is_indistinguishable(module: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let redirects = dir.path().join("redirects.json");
    std::fs::write(&redirects, r#"{"/moved": "301 /new-home"}"#)?;
    let config: Config = format!(
        r#"
[origins.bucket]
type = "static"
root = {root:?}

[origins.app]
type = "http"
targets = ["http://127.0.0.1:1"]

[[behaviors]]
path = "*"
origin = "bucket"

[kv.redirects]
file = {file:?}
"#,
        root = dir.path().display().to_string(),
        file = redirects.display().to_string(),
    )
    .parse()?;
    let config = Arc::new(config);
    let engine = Arc::new(FunctionEngine::new(16 << 20, None)?);
    let bytes = std::fs::read(module)?;
    let load = |replay: bool| -> Result<Arc<Function>> {
        let function_config = FunctionConfig {
            name: "f".into(),
            module: module.into(),
            limits: FunctionLimits {
                replay,
                ..FunctionLimits::default()
            },
        };
        Ok(Arc::new(engine.load(&function_config, &bytes)?))
    };
    let (fresh, replaying) = (load(false)?, load(true)?);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let replayed = std::cell::Cell::new(0usize);
    let invocations = std::cell::Cell::new(0usize);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = prop::collection::vec(sample(), 1..6)
        .prop_flat_map(|samples| (Just(samples.clone()), steps(samples.len())));
    runner
        .run(&strategy, |(samples, steps)| {
            // Each sequence starts from the store's file; the trees carry over, as on a node.
            let kv = Arc::new(KvStores::load(&config).expect("stores"));
            for step in &steps {
                match step {
                    Step::Kv { path, value } => {
                        let mut patch = Patch::default();
                        match value {
                            Some(v) => {
                                patch
                                    .set
                                    .insert(PATHS[*path].into(), REDIRECT_VALUES[*v].into());
                            }
                            None => patch.delete.push(PATHS[*path].into()),
                        }
                        kv.patch("redirects", patch).expect("patched");
                    }
                    Step::Request(i) => {
                        for &event in &fresh.events {
                            let run = |function: &Arc<Function>| {
                                runtime.block_on(invoke::run(
                                    &engine,
                                    function,
                                    event,
                                    7,
                                    samples[*i].input(&config, &kv, event),
                                ))
                            };
                            let expected = run(&fresh);
                            let got = run(&replaying);
                            invocations.set(invocations.get() + 1);
                            replayed
                                .set(replayed.get() + usize::from(got.replay == Replay::Replayed));
                            prop_assert_eq!(
                                outcome(&got),
                                outcome(&expected),
                                "{} at {} on {:?} ({:?})",
                                module,
                                event.export_name(),
                                &samples[*i],
                                got.replay
                            );
                        }
                    }
                }
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // Without replays the property says nothing: the sequences repeat inputs, so most are.
    let (replayed, invocations) = (replayed.get(), invocations.get());
    assert!(
        replayed * 2 > invocations,
        "{module}: only {replayed} of {invocations} invocations were replayed"
    );
    Ok(())
}

#[test]
fn cache_key() -> Result<()> {
    replay_is_indistinguishable(CACHE_KEY)
}

#[test]
fn faulty() -> Result<()> {
    replay_is_indistinguishable(FAULTY)
}

#[test]
fn headers() -> Result<()> {
    replay_is_indistinguishable(HEADERS)
}

#[test]
fn responder() -> Result<()> {
    replay_is_indistinguishable(RESPONDER)
}

#[test]
fn router() -> Result<()> {
    replay_is_indistinguishable(ROUTER)
}

#[test]
fn wat_server_header() -> Result<()> {
    replay_is_indistinguishable(WAT_SERVER_HEADER)
}

/// Through a node: the first request runs the router, the next ones replay it; the debug header
/// says which, the viewer and the origin see the same, and the metrics count both.
#[tokio::test(flavor = "multi_thread")]
async fn the_node_replays_a_router_and_says_so() -> Result<()> {
    let site = Site::new(&[("index.html", "shell"), ("css/site.css", "body{}")])?;
    let app = Origin::start(|_req| async { reply(200, &[], "from app") }).await?;
    let node = TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

{router}

[origins.bucket]
type = "static"
root = {root}

[origins.app]
type = "http"
targets = ["{app}"]

[[behaviors]]
path = "*"
origin = "bucket"
functions = {{ viewer_request = "router" }}
"#,
            router = function("router", ROUTER),
            root = site.root(),
            app = app.url(),
        ),
    )
    .await?;
    let get = |path: &'static str| {
        let node = &node;
        async move {
            node.send(
                node.request("GET", path)
                    .header("x-edge-debug", "1")
                    .body(Default::default())?,
            )
            .await
        }
    };
    let first = get("/app/profile").await?;
    assert_eq!(
        (first.status.as_u16(), first.text().as_str()),
        (200, "shell")
    );
    let functions = first
        .header("x-edge-functions")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        functions,
        "viewer-request=router: uri /app/profile -> /index.html, origin bucket (ran)"
    );
    for _ in 0..3 {
        let again = get("/app/profile").await?;
        assert_eq!(
            (again.status.as_u16(), again.text().as_str()),
            (200, "shell")
        );
        assert_eq!(
            again.header("x-edge-functions"),
            Some(
                "viewer-request=router: uri /app/profile -> /index.html, origin bucket (replayed)"
            )
        );
    }
    // Another result of a read (a session cookie): the guest runs, and the request goes where
    // the router sends it.
    let session = node
        .send(
            node.request("GET", "/app/profile")
                .header("x-edge-debug", "1")
                .header("cookie", "session=1")
                .body(Default::default())?,
        )
        .await?;
    assert_eq!(session.text(), "from app");
    assert!(
        session
            .header("x-edge-functions")
            .unwrap_or_default()
            .ends_with("origin app (ran)"),
        "{:?}",
        session.header("x-edge-functions")
    );
    assert_eq!(app.count(), 1);
    let metrics = node.admin("GET", "/metrics", "").await?.text();
    for line in [
        r#"edge_function_replays_total{function="router",event="viewer-request",result="replayed"} 3"#,
        r#"edge_function_replays_total{function="router",event="viewer-request",result="ran"} 2"#,
        r#"edge_function_recorded_total{function="router",event="viewer-request"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    Ok(())
}

/// The admin `test` result says whether an invocation could be replayed, and why not.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_test_says_whether_an_invocation_is_replayable() -> Result<()> {
    let site = Site::new(&[("index.html", "shell")])?;
    let node = TestNode::start(&format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

{router}
{faulty}

[origins.bucket]
type = "static"
root = {root}

[origins.app]
type = "http"
targets = ["http://127.0.0.1:1"]

[[behaviors]]
path = "*"
origin = "bucket"
functions = {{ viewer_request = "router" }}

[[behaviors]]
path = "/faulty/*"
origin = "bucket"
functions = {{ viewer_request = "faulty" }}
"#,
        router = function("router", ROUTER),
        faulty = function("faulty", FAULTY),
        root = site.root(),
    ))
    .await?;
    let test = |name: &'static str, uri: &'static str| {
        let node = &node;
        async move {
            let body = format!(r#"{{"event": "viewer-request", "request": {{"uri": "{uri}"}}}}"#);
            node.admin("POST", &format!("/functions/{name}/test?stage=live"), body)
                .await?
                .json()
        }
    };
    let router = test("router", "/css/site.css").await?;
    assert_eq!(router["replayable"], true, "{router}");
    assert_eq!(
        router["not_replayable"],
        serde_json::Value::Null,
        "{router}"
    );
    let panics = test("faulty", "/panic/now").await?;
    assert_eq!(panics["replayable"], false, "{panics}");
    let why = panics["not_replayable"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("it failed: ") && why.contains("faulty was asked to panic"),
        "{why}"
    );
    Ok(())
}
