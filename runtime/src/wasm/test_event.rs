//! Running a function against a sample event, without a node: what the admin API's test call
//! and `edge test-function` do. The event and the result are JSON, so they can be written by
//! hand and read by a person.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use edge_sdk::abi::{log_level, Event};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::invoke::{invoke, Decision, Input};
use super::{BodyView, Function, FunctionEngine, RequestView, ResponseView};
use crate::config::Config;
use crate::kv::KvStores;

/// A sample event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEvent {
    /// `viewer-request`, `origin-request`, `origin-response` or `viewer-response`.
    pub event: String,
    /// The request.
    pub request: TestRequest,
    /// The response, for response events.
    pub response: Option<TestResponse>,
}

/// A request in a sample event or a result.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// Method (default GET).
    #[serde(default = "get")]
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Viewer address (default 127.0.0.1).
    #[serde(default = "loopback")]
    pub client_ip: String,
}

/// A response in a sample event or a result.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestResponse {
    /// Status.
    pub status: u16,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body as text (lossy UTF-8 in results).
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

fn loopback() -> String {
    "127.0.0.1".into()
}

/// What the function did.
#[derive(Debug, Serialize)]
pub struct TestResult {
    /// `continue`, `respond` or `error`.
    pub action: &'static str,
    /// The error, when `action` is `error`.
    pub error: Option<String>,
    /// The request after the function.
    pub request: TestRequest,
    /// The response after the function (response events), or the generated one.
    pub response: Option<TestResponse>,
    /// Origin chosen with `origin_set`.
    pub origin: Option<String>,
    /// Cache key set outright.
    pub cache_key: Option<String>,
    /// Parts added to the cache key.
    pub cache_key_parts: Vec<String>,
    /// Caching lifetime set, in seconds.
    pub ttl: Option<u64>,
    /// Log lines.
    pub logs: Vec<LogLine>,
    /// Lines written to stdout and stderr (a panic's message is in `error` instead), capped as
    /// on a node.
    pub output: Vec<OutputLine>,
    /// Whether stdout and stderr went over the cap and lost lines.
    pub output_truncated: bool,
    /// Wall time of the invocation (instantiate and run), in microseconds.
    pub duration_us: u64,
    /// Largest linear memory size, in bytes.
    pub peak_memory_bytes: usize,
    /// Share of the CPU time limit used, in percent.
    pub compute_utilization: f64,
    /// Whether the node could replay an invocation like this one from its recorded decision
    /// instead of running the guest (`wasm::replay`).
    pub replayable: bool,
    /// Why not, when it could not: the clock or randomness read, the failure, `replay = false`.
    pub not_replayable: Option<String>,
}

/// One log line.
#[derive(Debug, Serialize)]
pub struct LogLine {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: &'static str,
    /// The text.
    pub message: String,
}

/// One line of stdout or stderr.
#[derive(Debug, Serialize)]
pub struct OutputLine {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The text.
    pub line: String,
}

fn headers(map: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for (n, v) in map {
        let name = HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| format!("invalid header name {n:?}"))?;
        let value =
            HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {n:?}"))?;
        out.append(name, value);
    }
    Ok(out)
}

fn header_list(map: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (n, v) in map {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(n.as_str().to_owned())
            .and_modify(|e| *e = format!("{e}, {v}"))
            .or_insert(v);
    }
    out
}

/// Runs `function` on `event`, reading the node's key-value stores `kv`; `Err` is a malformed
/// event (the function did not run).
pub fn run(
    engine: &FunctionEngine,
    function: &Function,
    config: Arc<Config>,
    kv: Arc<KvStores>,
    event: &TestEvent,
) -> Result<TestResult, String> {
    let kind = Event::ALL.into_iter().find(|e| e.export_name() == event.event).ok_or_else(|| {
        format!("unknown event {:?}; expected viewer-request, origin-request, origin-response or viewer-response", event.event)
    })?;
    if !function.handles(kind) {
        return Err(format!(
            "the module exports no `{}` entry point",
            kind.export_name()
        ));
    }
    let request = RequestView {
        method: Method::from_bytes(event.request.method.as_bytes())
            .map_err(|_| format!("invalid method {:?}", event.request.method))?,
        uri: event
            .request
            .uri
            .parse()
            .map_err(|_| format!("invalid uri {:?}", event.request.uri))?,
        headers: headers(&event.request.headers)?,
    };
    let client_ip = event
        .request
        .client_ip
        .parse()
        .map_err(|_| format!("invalid client_ip {:?}", event.request.client_ip))?;
    let response = match (&event.response, kind.is_request()) {
        (_, true) => None,
        (None, false) => return Err(format!("a {} event needs a `response`", kind.export_name())),
        (Some(r), false) => Some(ResponseView {
            status: StatusCode::from_u16(r.status)
                .map_err(|_| format!("invalid status {}", r.status))?,
            headers: headers(&r.headers)?,
            body: match (&r.body, kind) {
                (Some(b), Event::OriginResponse) => BodyView::Buffered(Bytes::from(b.clone())),
                (None, Event::OriginResponse) => BodyView::Buffered(Bytes::new()),
                _ => BodyView::Unavailable,
            },
        }),
    };
    let input = Input {
        config: Arc::clone(&config),
        request,
        client_ip,
        response,
        kv: Some(kv),
    };
    let started = Instant::now();
    let state = invoke(engine, function, kind, 0, input);
    let elapsed = started.elapsed();
    let (action, error, generated) = match &state.result {
        Ok(Decision::Continue) => ("continue", None, None),
        Ok(Decision::Respond(r)) => ("respond", None, Some(r)),
        Err(e) => ("error", Some(e.to_string()), None),
    };
    let response = generated.or(state.response.as_ref()).map(|r| TestResponse {
        status: r.status.as_u16(),
        headers: header_list(&r.headers),
        body: match &r.body {
            BodyView::Buffered(b) | BodyView::Replaced(b) => {
                Some(String::from_utf8_lossy(b).into_owned())
            }
            BodyView::Unavailable => None,
        },
    });
    Ok(TestResult {
        action,
        error,
        request: TestRequest {
            method: state.request.method.to_string(),
            uri: state
                .request
                .uri
                .path_and_query()
                .map_or("/".into(), |pq| pq.to_string()),
            headers: header_list(&state.request.headers),
            client_ip: event.request.client_ip.clone(),
        },
        response,
        origin: state.origin.map(|i| config.origins[i].name.clone()),
        cache_key: state.cache_key.clone(),
        cache_key_parts: state.cache_key_parts.clone(),
        ttl: state.ttl,
        logs: state
            .logs
            .iter()
            .map(|(level, message)| LogLine {
                level: log_level::name(*level).unwrap_or("trace"),
                message: message.clone(),
            })
            .collect(),
        output: state
            .output
            .lines()
            .iter()
            .map(|(stream, line)| OutputLine {
                stream: stream.as_str(),
                line: line.clone(),
            })
            .collect(),
        output_truncated: state.output.truncated(),
        duration_us: elapsed.as_micros() as u64,
        peak_memory_bytes: state.peak_memory,
        compute_utilization: (elapsed.as_secs_f64() / function.limits.cpu.as_secs_f64()
            * 100.0
            * 100.0)
            .round()
            / 100.0,
        replayable: state.not_replayable.is_none(),
        not_replayable: state.not_replayable.clone(),
    })
}
