//! The ABI has one spec (`sdk/ABI.md`), one implementation of its rules (`edge_sdk::host`) and
//! two hosts that run it: the node and the SDK's test host. These tests check that they agree:
//! same calls, same signatures, same status codes, and the same answer and effect for the
//! same call in the same event.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use edge_sdk::abi::{self, calls, status, Event, HostCall, ValType, HOST_CALLS, IMPORT_MODULE};
use edge_sdk::testing::{raw, TestHost};
use http::HeaderMap;
use http_body_util::Full;

use crate::harness::{reply, Modules, Origin, Site, TestNode};

fn read(path: &str) -> Result<String> {
    Ok(std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path),
    )?)
}

fn wat_type(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
    }
}

/// A module importing every host call with the signature the shared table gives it loads into
/// the runtime: the runtime provides each, with that signature.
#[tokio::test(flavor = "multi_thread")]
async fn runtime_provides_every_host_call_with_its_signature() -> Result<()> {
    let imports: String = HOST_CALLS
        .iter()
        .map(|c| {
            let params: Vec<&str> = c.params.iter().map(wat_type).collect();
            let results: Vec<&str> = c.results.iter().map(wat_type).collect();
            format!(
                "(import \"{IMPORT_MODULE}\" \"{}\" (func (param {}) (result {})))\n",
                c.name,
                params.join(" "),
                results.join(" ")
            )
        })
        .collect();
    let wat = format!("(module {imports} (memory (export \"memory\") 1) (func (export \"viewer-request\") (result i32) (i32.const 0)))");
    let modules = Modules::new(&[("all", &wat)])?;
    let site = Site::new(&[("x", "ok")])?;
    let node = TestNode::start(&format!(
        "{}\n[origins.bucket]\ntype = \"static\"\nroot = {}\n[[behaviors]]\npath = \"*\"\norigin = \"bucket\"\nfunctions = {{ viewer_request = \"all\" }}\n",
        modules.toml(""),
        site.root()
    ))
    .await?;
    assert_eq!(node.get("/x").await?.text(), "ok");
    Ok(())
}

/// The SDK's `extern` block declares exactly the shared table's calls, with matching types
/// (pointers and `usize` are `i32` on wasm32).
#[test]
fn sdk_imports_match_the_table() -> Result<()> {
    let sys = read("sdk/src/sys.rs")?;
    let block = &sys[sys
        .find("unsafe extern \"C\" {")
        .expect("the SDK has an extern block")..];
    let block = &block[..block.find("\n    }").expect("the extern block ends")];
    let mut declared = BTreeSet::new();
    // Declarations may span lines (rustfmt): read them as `pub fn ...;` items.
    let flat: String = block.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in flat
        .split(';')
        .map(str::trim)
        .filter_map(|l| l.find("pub fn ").map(|i| &l[i..]))
    {
        let name = &line["pub fn ".len()..line.find('(').expect("a parameter list")];
        let params = &line[line.find('(').expect("(") + 1..line.rfind(')').expect(")")];
        let types: Vec<ValType> = params
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.ends_with("i64") {
                    ValType::I64
                } else {
                    ValType::I32
                }
            })
            .collect();
        let call = HOST_CALLS
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("the SDK imports {name}, which the table lacks"));
        assert_eq!(types, call.params, "parameters of {name}");
        assert!(
            line.replace(", )", ")").ends_with(") -> i32"),
            "{name} returns i32: {line}"
        );
        declared.insert(name.to_owned());
    }
    let table: BTreeSet<String> = HOST_CALLS.iter().map(|c| c.name.to_owned()).collect();
    assert_eq!(declared, table, "the SDK declares every host call");
    Ok(())
}

/// ABI.md documents exactly the table's calls, and the same status codes.
#[test]
fn spec_documents_every_call_and_status() -> Result<()> {
    let spec = read("sdk/ABI.md")?;
    let calls_section = &spec[spec.find("## Host calls").expect("a host calls section")..];
    let mut documented = BTreeSet::new();
    for line in calls_section.lines() {
        for part in line.split('`').skip(1).step_by(2) {
            if let Some(name) = part
                .split('(')
                .next()
                .filter(|_| part.contains('(') && part.contains("->"))
            {
                documented.insert(name.to_owned());
            }
        }
    }
    let table: BTreeSet<String> = HOST_CALLS.iter().map(|c| c.name.to_owned()).collect();
    assert_eq!(documented, table, "ABI.md's host calls");
    for call in HOST_CALLS {
        let documented = calls_section
            .lines()
            .find(|l| l.contains(&format!("`{}(", call.name)))
            .expect("documented");
        let params =
            &documented[documented.find('(').expect("(") + 1..documented.find(')').expect(")")];
        assert_eq!(
            params.split(',').filter(|p| !p.trim().is_empty()).count(),
            call.params.len(),
            "parameter count of {} in ABI.md",
            call.name
        );
    }
    for code in 0..=6 {
        let row = format!("| {code} | `{}` |", status::name(code));
        assert!(
            spec.contains(&row),
            "ABI.md lists status {code} as {}",
            status::name(code)
        );
    }
    assert!(
        spec.contains(&format!("version {}", abi::ABI_VERSION)),
        "ABI.md states the version"
    );
    Ok(())
}

/// One argument of a host call in a parity case.
#[derive(Debug, Clone)]
enum Arg {
    /// `(ptr, len)` of these bytes.
    Bytes(Vec<u8>),
    /// An `i32`.
    Int(i32),
    /// An `i64`.
    Long(i64),
    /// An output buffer: `(buf_ptr, buf_len, out_len_ptr)`.
    Out,
}

fn b(text: &str) -> Arg {
    Arg::Bytes(text.as_bytes().to_vec())
}

/// One (event, call, input) case; `probe` names a header whose value after the call both
/// hosts must agree on (on the request in request events, on the response otherwise).
struct Case {
    event: Event,
    call: &'static HostCall,
    args: Vec<Arg>,
    probe: Option<&'static str>,
}

fn case(event: Event, call: &'static HostCall, args: Vec<Arg>) -> Case {
    Case {
        event,
        call,
        args,
        probe: None,
    }
}

fn cases() -> Vec<Case> {
    use Event::*;
    let probe = |mut c: Case, name| {
        c.probe = Some(name);
        c
    };
    vec![
        probe(
            case(
                ViewerRequest,
                &calls::REQUEST_SET_HEADER,
                vec![b("x-a"), b("2")],
            ),
            "x-a",
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_SET_HEADER,
            vec![b("x a"), b("v")],
        ),
        probe(
            case(
                ViewerRequest,
                &calls::REQUEST_SET_HEADER,
                vec![b("x-a"), b("ok\r\nx-evil: 1")],
            ),
            "x-evil",
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_SET_HEADER,
            vec![b("content-length"), b("5")],
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_SET_HEADER,
            vec![
                b("x-big"),
                Arg::Bytes(vec![b'a'; abi::limits::MAX_HEADER_VALUE + 1]),
            ],
        ),
        probe(
            case(
                ViewerRequest,
                &calls::REQUEST_SET_HEADER,
                vec![b("x-obs"), Arg::Bytes(b"caf\xe9".to_vec())],
            ),
            "x-obs",
        ),
        probe(
            case(
                ViewerRequest,
                &calls::REQUEST_APPEND_HEADER,
                vec![b("X-A"), b("3")],
            ),
            "x-a",
        ),
        probe(
            case(ViewerRequest, &calls::REQUEST_REMOVE_HEADER, vec![b("x-a")]),
            "x-a",
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_REMOVE_HEADER,
            vec![b("x-none")],
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_REMOVE_HEADER,
            vec![b("transfer-encoding")],
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_SET_URI,
            vec![b("/moved?q=1")],
        ),
        case(ViewerRequest, &calls::REQUEST_SET_URI, vec![b("no-slash")]),
        case(ViewerRequest, &calls::REQUEST_SET_URI, vec![b("/a b")]),
        case(ViewerRequest, &calls::ORIGIN_SET, vec![b("app")]),
        case(ViewerRequest, &calls::ORIGIN_SET, vec![b("ap")]),
        case(
            ViewerRequest,
            &calls::CACHE_KEY_ADD,
            vec![b("device=mobile")],
        ),
        case(
            ViewerRequest,
            &calls::CACHE_KEY_ADD,
            vec![Arg::Bytes(vec![b'k'; abi::limits::MAX_CACHE_KEY + 1])],
        ),
        case(ViewerRequest, &calls::CACHE_KEY_ADD, vec![b("a\nb")]),
        case(
            ViewerRequest,
            &calls::CACHE_KEY_ADD,
            vec![Arg::Bytes(b"\xff".to_vec())],
        ),
        case(ViewerRequest, &calls::CACHE_KEY_SET, vec![b("my key")]),
        case(ViewerRequest, &calls::CACHE_SET_TTL, vec![Arg::Long(60)]),
        case(
            ViewerRequest,
            &calls::RESPONSE_GET_STATUS,
            vec![Arg::Int(0x2_0000)],
        ),
        case(ViewerRequest, &calls::RESPONSE_GET_BODY, vec![Arg::Out]),
        case(
            ViewerRequest,
            &calls::REQUEST_GET_HEADER,
            vec![b("X-A"), Arg::Out],
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_GET_HEADER,
            vec![b("x-none"), Arg::Out],
        ),
        case(
            ViewerRequest,
            &calls::REQUEST_GET_HEADER,
            vec![b("bad name"), Arg::Out],
        ),
        case(ViewerRequest, &calls::REQUEST_GET_METHOD, vec![Arg::Out]),
        case(ViewerRequest, &calls::REQUEST_GET_URI, vec![Arg::Out]),
        case(ViewerRequest, &calls::REQUEST_GET_CLIENT_IP, vec![Arg::Out]),
        case(ViewerRequest, &calls::LOG, vec![Arg::Int(9), b("x")]),
        case(ViewerRequest, &calls::LOG, vec![Arg::Int(2), b("hello")]),
        case(
            ViewerRequest,
            &calls::KV_GET,
            vec![b("nostore"), b("k"), Arg::Out],
        ),
        case(
            ViewerRequest,
            &calls::KV_GET,
            vec![Arg::Bytes(b"\xff".to_vec()), b("k"), Arg::Out],
        ),
        case(
            ViewerRequest,
            &calls::RESPONSE_SET_STATUS,
            vec![Arg::Int(1000)],
        ),
        case(OriginRequest, &calls::CACHE_KEY_ADD, vec![b("x")]),
        probe(
            case(
                OriginRequest,
                &calls::REQUEST_SET_HEADER,
                vec![b("x-a"), b("o")],
            ),
            "x-a",
        ),
        case(OriginRequest, &calls::ORIGIN_SET, vec![b("app")]),
        case(OriginResponse, &calls::CACHE_SET_TTL, vec![Arg::Long(-1)]),
        case(OriginResponse, &calls::CACHE_SET_TTL, vec![Arg::Long(60)]),
        probe(
            case(
                OriginResponse,
                &calls::RESPONSE_SET_HEADER,
                vec![b("x-r"), b("2")],
            ),
            "x-r",
        ),
        case(OriginResponse, &calls::RESPONSE_GET_BODY, vec![Arg::Out]),
        case(
            OriginResponse,
            &calls::REQUEST_SET_HEADER,
            vec![b("x-a"), b("2")],
        ),
        case(OriginResponse, &calls::ORIGIN_SET, vec![b("app")]),
        case(ViewerResponse, &calls::RESPONSE_SET_BODY, vec![b("x")]),
        case(ViewerResponse, &calls::CACHE_KEY_ADD, vec![b("x")]),
        case(
            ViewerResponse,
            &calls::RESPONSE_SET_STATUS,
            vec![Arg::Int(99)],
        ),
        case(
            ViewerResponse,
            &calls::RESPONSE_SET_STATUS,
            vec![Arg::Int(299)],
        ),
        probe(
            case(
                ViewerResponse,
                &calls::RESPONSE_SET_HEADER,
                vec![b("connection"), b("close")],
            ),
            "connection",
        ),
        probe(
            case(
                ViewerResponse,
                &calls::RESPONSE_REMOVE_HEADER,
                vec![b("x-r")],
            ),
            "x-r",
        ),
        case(
            ViewerResponse,
            &calls::RESPONSE_GET_HEADER,
            vec![b("x-r"), Arg::Out],
        ),
        case(
            ViewerResponse,
            &calls::RESPONSE_GET_STATUS,
            vec![Arg::Int(0x2_0000)],
        ),
        case(
            ViewerResponse,
            &calls::REQUEST_GET_HEADER,
            vec![b("x-a"), Arg::Out],
        ),
    ]
}

const OUT_BUF: i32 = 0x1_0000;
const OUT_BUF_LEN: i32 = 0x8000;
const OUT_LEN: i32 = 0x2_0000;

fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A module whose entry point for the case's event makes the call, then reports its status in
/// an `x-status` header (and a value it read in `x-value`) on the request in request events
/// (the origin receives it) or on the response otherwise (the viewer receives it).
fn wat(case: &Case) -> String {
    let params: Vec<&str> = case.call.params.iter().map(wat_type).collect();
    let report = if case.event.is_request() {
        "request_append_header"
    } else {
        "response_append_header"
    };
    let mut data = String::new();
    let mut args = String::new();
    let mut at = 0x1000;
    for arg in &case.args {
        match arg {
            Arg::Bytes(bytes) => {
                data.push_str(&format!(
                    "(data (i32.const {at}) \"{}\")\n",
                    wat_bytes(bytes)
                ));
                args.push_str(&format!(" (i32.const {at}) (i32.const {})", bytes.len()));
                at += bytes.len() + 16;
            }
            Arg::Int(v) => args.push_str(&format!(" (i32.const {v})")),
            Arg::Long(v) => args.push_str(&format!(" (i64.const {v})")),
            Arg::Out => args.push_str(&format!(
                " (i32.const {OUT_BUF}) (i32.const {OUT_BUF_LEN}) (i32.const {OUT_LEN})"
            )),
        }
    }
    let read_value = if case.args.iter().any(|a| matches!(a, Arg::Out)) {
        format!(
            "(if (i32.eqz (local.get $s)) (then (drop (call $report (i32.const 16) (i32.const 7) (i32.const {OUT_BUF}) (i32.load (i32.const {OUT_LEN}))))))"
        )
    } else {
        String::new()
    };
    format!(
        r#"(module
  (import "{IMPORT_MODULE}" "{name}" (func $call (param {params}) (result i32)))
  (import "{IMPORT_MODULE}" "{report}" (func $report (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 0) "x-status")
  (data (i32.const 16) "x-value")
  {data}
  (func (export "{export}") (result i32)
    (local $s i32)
    (local.set $s (call $call{args}))
    (i32.store8 (i32.const 256) (i32.add (i32.const 48) (local.get $s)))
    (drop (call $report (i32.const 0) (i32.const 8) (i32.const 256) (i32.const 1)))
    {read_value}
    (i32.const 0)))"#,
        name = case.call.name,
        params = params.join(" "),
        export = case.event.export_name(),
    )
}

/// What a host answered and what it left behind, in terms both hosts can show.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    status: i32,
    /// The value a read returned (status `OK` only).
    value: Option<Vec<u8>>,
    /// Request events: path and query after the call.
    uri: Option<String>,
    /// Request events: the origin the request went to.
    origin: Option<String>,
    /// Viewer-request: the cache key, as the debug header shows it.
    cache_key: Option<String>,
    /// Response events: the status after the call.
    response_status: Option<u16>,
    /// The probe header's lines after the call, raw bytes.
    probe: Vec<Vec<u8>>,
}

fn lines(headers: &HeaderMap, name: Option<&str>) -> Vec<Vec<u8>> {
    name.map(|n| {
        headers
            .get_all(n)
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    })
    .unwrap_or_default()
}

/// The key as the node's debug header shows it.
fn shown_key(key: &str) -> String {
    key.trim_start_matches('\n').replace('\n', " | ")
}

/// Runs the case's call through the SDK's test host, set up like the node below.
fn on_test_host(case: &Case, path: &str) -> Observed {
    let host = TestHost::new(case.event, path)
        .header("x-a", "1")
        .origins(&["bucket", "app"]);
    let host = if case.event.is_request() {
        host
    } else {
        let mut host = host
            .response_header("x-r", "1")
            .response_header("cache-control", "no-store");
        if case.event == Event::OriginResponse {
            host = host.response_body(b"hello");
        }
        host
    };
    let value: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let read = Arc::clone(&value);
    let args = case.args.clone();
    let name = case.call.name;
    let run = host.run_raw(move || {
        let mut buf = vec![0u8; OUT_BUF_LEN as usize];
        let mut out = 0u32;
        let bytes = |i: usize| match &args[i] {
            Arg::Bytes(b) => b.clone(),
            other => panic!("argument {i} of {name} is {other:?}, not bytes"),
        };
        let int = |i: usize| match &args[i] {
            Arg::Int(v) => *v,
            other => panic!("argument {i} of {name} is {other:?}, not an i32"),
        };
        let status = match name {
            "request_set_header" => raw::request_set_header(&bytes(0), &bytes(1)),
            "request_append_header" => raw::request_append_header(&bytes(0), &bytes(1)),
            "request_remove_header" => raw::request_remove_header(&bytes(0)),
            "request_set_uri" => raw::request_set_uri(&bytes(0)),
            "request_get_header" => raw::request_get_header(&bytes(0), &mut buf, &mut out),
            "request_get_method" => raw::request_get_method(&mut buf, &mut out),
            "request_get_uri" => raw::request_get_uri(&mut buf, &mut out),
            "request_get_client_ip" => raw::request_get_client_ip(&mut buf, &mut out),
            "origin_set" => raw::origin_set(&bytes(0)),
            "cache_key_add" => raw::cache_key_add(&bytes(0)),
            "cache_key_set" => raw::cache_key_set(&bytes(0)),
            "cache_set_ttl" => match &args[0] {
                Arg::Long(v) => raw::cache_set_ttl(*v),
                other => panic!("cache_set_ttl takes an i64, not {other:?}"),
            },
            "response_get_status" => raw::response_get_status(&mut out),
            "response_set_status" => raw::response_set_status(int(0)),
            "response_set_header" => raw::response_set_header(&bytes(0), &bytes(1)),
            "response_remove_header" => raw::response_remove_header(&bytes(0)),
            "response_get_header" => raw::response_get_header(&bytes(0), &mut buf, &mut out),
            "response_get_body" => raw::response_get_body(&mut buf, &mut out),
            "response_set_body" => raw::response_set_body(&bytes(0)),
            "log" => raw::log(int(0), &bytes(1)),
            "kv_get" => raw::kv_get(&bytes(0), &bytes(1), &mut buf, &mut out),
            other => panic!("no parity dispatch for {other}"),
        };
        if status == status::OK && args.iter().any(|a| matches!(a, Arg::Out)) {
            *read.lock().expect("value lock") = Some(buf[..out as usize].to_vec());
        }
        status
    });
    let status = run.result.expect("the raw call does not panic");
    let value = value.lock().expect("value lock").take();
    let h = &run.host;
    if case.event.is_request() {
        Observed {
            status,
            value,
            uri: Some(h.request.uri.clone()),
            origin: Some(h.origin.clone().unwrap_or_else(|| "bucket".into())),
            cache_key: (case.event == Event::ViewerRequest).then(|| shown_key(&run.cache_key())),
            response_status: None,
            probe: lines(&h.request.headers, case.probe),
        }
    } else {
        let r = h
            .response
            .as_ref()
            .expect("a response event has a response");
        Observed {
            status,
            value,
            uri: None,
            origin: None,
            cache_key: None,
            response_status: Some(r.status.as_u16()),
            probe: lines(&r.headers, case.probe),
        }
    }
}

/// The same (event, call, input) cases, on the SDK's test host and on a real node running a
/// module that makes the call, give the same status, the same value read and the same effect
/// on the request, origin, cache key and response.
#[tokio::test(flavor = "multi_thread")]
async fn test_host_and_node_agree_on_every_case() -> Result<()> {
    let cases = cases();
    let answer =
        |_| async move { reply(200, &[("x-r", "1"), ("cache-control", "no-store")], "hello") };
    let bucket = Origin::start(answer).await?;
    let app = Origin::start(answer).await?;
    let names: Vec<String> = (0..cases.len()).map(|i| format!("case{i}")).collect();
    let wats: Vec<String> = cases.iter().map(wat).collect();
    let modules: Vec<(&str, &str)> = names
        .iter()
        .zip(&wats)
        .map(|(n, w)| (n.as_str(), w.as_str()))
        .collect();
    let modules = Modules::new(&modules)?;
    let behaviors: String = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            format!(
                "[[behaviors]]\npath = \"/case/{i}\"\norigin = \"bucket\"\nfunctions = {{ {} = \"case{i}\" }}\n",
                c.event.config_name()
            )
        })
        .collect();
    let node = TestNode::start_with_server(
        "debug_header = \"x-edge-debug\"",
        &format!(
            "{}\n[origins.bucket]\ntype = \"http\"\ntargets = [\"{}\"]\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n{behaviors}",
            modules.toml(""),
            bucket.url(),
            app.url()
        ),
    )
    .await?;
    let mut disagreements = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let path = format!("/case/{i}");
        let before = (bucket.count(), app.count());
        let request = node
            .request("GET", &path)
            .header("host", "example.com")
            .header("x-a", "1")
            .header("x-edge-debug", "1")
            .body(Full::new(Bytes::new()))?;
        let r = node.send(request).await?;
        let received = if app.count() > before.1 {
            Some(("app", app.last()))
        } else if bucket.count() > before.0 {
            Some(("bucket", bucket.last()))
        } else {
            None
        };
        let on_node = if case.event.is_request() {
            let (origin, seen) = received.with_context(|| format!("case {i}: no origin fetch"))?;
            Observed {
                status: status_header(&seen.headers)?,
                value: seen.headers.get("x-value").map(|v| v.as_bytes().to_vec()),
                uri: Some(seen.uri.clone()),
                origin: Some(origin.to_owned()),
                cache_key: (case.event == Event::ViewerRequest)
                    .then(|| r.header("x-edge-cache-key").unwrap_or("").to_owned()),
                response_status: None,
                probe: lines(&seen.headers, case.probe),
            }
        } else {
            Observed {
                status: status_header(&r.headers)?,
                value: r.headers.get("x-value").map(|v| v.as_bytes().to_vec()),
                uri: None,
                origin: None,
                cache_key: None,
                response_status: Some(r.status.as_u16()),
                probe: lines(&r.headers, case.probe),
            }
        };
        let on_test_host = on_test_host(case, &path);
        if on_node != on_test_host {
            disagreements.push(format!(
                "case {i}: {} in {} with {:?}\n  node:      {on_node:?}\n  test host: {on_test_host:?}",
                case.call.name,
                case.event.export_name(),
                case.args.iter().map(|a| match a {
                    Arg::Bytes(b) if b.len() > 40 => format!("<{} bytes>", b.len()),
                    other => format!("{other:?}"),
                }).collect::<Vec<_>>()
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "the test host and the node disagree:\n{}",
        disagreements.join("\n")
    );
    Ok(())
}

fn status_header(headers: &HeaderMap) -> Result<i32> {
    let text = headers
        .get("x-status")
        .context("no x-status header")?
        .to_str()?;
    Ok(i32::from(text.as_bytes()[0]) - 48)
}

/// A host call the node refuses leaves a warning in the invocation's log that names the call,
/// the argument and the rule, as the SDK's test host reports it; the admin API's test result
/// shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_call_is_named_in_the_function_log() -> Result<()> {
    let picker = r#"(module
      (import "edge_v1" "origin_set" (func $origin (param i32 i32) (result i32)))
      (import "edge_v1" "cache_key_add" (func $key (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "ap")
      (func (export "viewer-request") (result i32)
        (drop (call $origin (i32.const 0) (i32.const 2)))
        (i32.const 0))
      (func (export "viewer-response") (result i32)
        (drop (call $key (i32.const 0) (i32.const 2)))
        (i32.const 0)))"#;
    let modules = Modules::new(&[("picker", picker)])?;
    let data = tempfile::tempdir()?;
    let app = Origin::fixed("ok", &[]).await?;
    let node = TestNode::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{}\"\ndata_dir = {:?}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[origins.bucket]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ viewer_request = \"picker\", viewer_response = \"picker\" }}\n",
        modules.toml(""),
        crate::harness::ADMIN_TOKEN,
        data.path().display().to_string(),
        app.url(),
        app.url(),
    ))
    .await?;
    assert_eq!(
        node.get("/x").await?.text(),
        "ok",
        "a refused call is a status, not a failure"
    );

    let expected = [
        (
            "viewer-request",
            "origin_set(\"ap\"): no origin \"ap\"; known: app, bucket",
        ),
        (
            "viewer-response",
            "cache_key_add is not allowed in viewer-response",
        ),
    ];
    for (event, message) in expected {
        let sample = format!(
            r#"{{"event":"{event}","request":{{"uri":"/x"}},"response":{{"status":200}}}}"#
        );
        let sample = if event == "viewer-request" {
            format!(r#"{{"event":"{event}","request":{{"uri":"/x"}}}}"#)
        } else {
            sample
        };
        let tested = node
            .admin("POST", "/functions/picker/test?stage=live", sample)
            .await?;
        let result = tested.json()?;
        let logs = &result["logs"];
        assert_eq!(
            logs,
            &serde_json::json!([{ "level": "warn", "message": message }]),
            "{}",
            tested.text()
        );
    }
    Ok(())
}

/// Log lines are kept the same way on the node and on the test host: made UTF-8 first, then cut
/// to 4 KiB at a character boundary; a bad level is refused with a warning.
#[tokio::test(flavor = "multi_thread")]
async fn log_lines_are_kept_alike_on_the_node_and_the_test_host() -> Result<()> {
    let mut long = vec![b'a'; abi::limits::MAX_LOG_LINE - 1];
    long.extend_from_slice("é".as_bytes());
    let lines: Vec<(i32, Vec<u8>)> = vec![
        (2, long),
        (1, b"a\xffb\xc3".to_vec()),
        (7, b"bad level".to_vec()),
        (0, b"last".to_vec()),
    ];
    let mut data = String::new();
    let mut body = String::new();
    let mut at = 0;
    for (level, line) in &lines {
        data.push_str(&format!(
            "(data (i32.const {at}) \"{}\")\n",
            wat_bytes(line)
        ));
        body.push_str(&format!(
            "(drop (call $log (i32.const {level}) (i32.const {at}) (i32.const {})))\n",
            line.len()
        ));
        at += line.len() + 8;
    }
    let logger = format!(
        r#"(module
      (import "edge_v1" "log" (func $log (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      {data}
      (func (export "viewer-request") (result i32)
        {body}
        (i32.const 0)))"#
    );
    let modules = Modules::new(&[("logger", &logger)])?;
    let data_dir = tempfile::tempdir()?;
    let app = Origin::fixed("ok", &[]).await?;
    let node = TestNode::start(&format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{}\"\ndata_dir = {:?}\n[origins.app]\ntype = \"http\"\ntargets = [\"{}\"]\n[[behaviors]]\npath = \"*\"\norigin = \"app\"\nfunctions = {{ viewer_request = \"logger\" }}\n",
        modules.toml(""),
        crate::harness::ADMIN_TOKEN,
        data_dir.path().display().to_string(),
        app.url(),
    ))
    .await?;
    let tested = node
        .admin(
            "POST",
            "/functions/logger/test?stage=live",
            r#"{"event":"viewer-request","request":{"uri":"/x"}}"#,
        )
        .await?;
    let on_node: Vec<(String, String)> = tested.json()?["logs"]
        .as_array()
        .context("logs")?
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap_or("?").to_owned(),
                l["message"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();

    let calls = lines.clone();
    let run = TestHost::viewer_request("/x").run_raw(move || {
        for (level, line) in &calls {
            raw::log(*level, line);
        }
        abi::outcome::CONTINUE
    });
    let on_test_host: Vec<(String, String)> = run
        .host
        .logs
        .iter()
        .map(|(level, line)| {
            (
                abi::log_level::name(*level).unwrap_or("?").to_owned(),
                line.clone(),
            )
        })
        .collect();
    assert_eq!(on_node, on_test_host);
    assert_eq!(on_node.len(), 4, "{on_node:?}");
    assert_eq!(
        on_node[0].1.len(),
        abi::limits::MAX_LOG_LINE - 1,
        "the é does not fit whole"
    );
    assert_eq!(on_node[1].1, "a\u{fffd}b\u{fffd}");
    assert_eq!(
        on_node[2],
        (
            "warn".to_owned(),
            "log: level 7 is not one of 0 (error) to 4 (trace)".to_owned()
        )
    );
    Ok(())
}
